"""
3-D convolution
===============

Article 001 §3. Families: `standard`.

A 3-D filter is smaller than the input in depth too, so it slides along depth, height and width and its output
is a 3-D volume — used for video and medical volumes.
"""

# %%
import convzoo as cz

conv3d = cz.Conv3d(1, 1, 3)
report = cz.cost(conv3d, (1, 1, 7, 7, 7))
print("output:", tuple(report.output_shape), "MACs:", report.macs, "=", 5 * 5 * 5, "positions × 27")

# %%
# Every family with a 3-D form, from the registry:

print([f.name for f in cz.families() if 3 in f.dims])

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-3_3d-conv").figure()
