"""
Deformable convolution v1 and v2
================================

Article 003 §1.3 and §2.2. Families: `deformable`, `deformable_v2`.

A deformable conv learns an offset per kernel tap and position; the input is sampled bilinearly at the shifted
points. v2 adds a modulation mask per sampling point.
"""

# %%
import convzoo as cz

shape = (1, 16, 16, 16)
for modulated in (False, True):
    report = cz.cost(cz.DeformConv2d(16, 16, 3, padding=1, modulated=modulated), shape)
    print(f"modulated={modulated}: {report.params:,} params, {report.macs:,} MACs, {report.other_ops:,} other ops")

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "003-2.2_sampling-matrix-deformable").figure()
