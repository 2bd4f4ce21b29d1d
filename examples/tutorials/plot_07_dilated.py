"""
Dilated (atrous) convolution
============================

Article 001 §7, article 003 §2.2. Families: `dilated`.

Dilation l inserts l − 1 holes between the kernel taps: the 3×3 kernel covers (2l + 1)×(2l + 1) with the same 9
weights. Stacking l = 1, 2, 4 grows the receptive field exponentially: 3, 7, 15.
"""

# %%
import torch

import convzoo as cz

stack = torch.nn.Sequential(*[cz.Conv2d(1, 1, 3, dilation=d, padding=d) for d in (1, 2, 4)])
rf = cz.receptive_field(stack, (1, 1, 32, 32))
for row in rf.layers:
    print(f"after layer {row.name}: receptive field {row.size}")
print("params:", cz.cost(stack, (1, 1, 32, 32)).params, "(3 × 10)")

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-7_dilated-receptive-field").figure()
