"""
Single- and multi-channel convolution
=====================================

Article 001 §2. Families: `standard`.

The article's single-channel example: a 5×5 input with padding 0 and the 3×3 kernel [[0,1,2],[2,2,0],[0,1,2]]
gives a 3×3 output. With several input channels, each filter has one kernel per channel and sums all of them
into one output value.
"""

# %%
import torch

import convzoo as cz

x = torch.tensor([[3.0, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]])
conv = cz.Conv2d(1, 1, 3, bias=False)
with torch.no_grad():
    conv.weight.copy_(torch.tensor([[0.0, 1, 2], [2, 2, 0], [0, 1, 2]]))
print(conv(x[None, None])[0, 0])

# %%
# Multi-channel: a 5×5×3 input, one filter of 3×3×3, padding 1 → one 5×5 output channel. ``cz.cost`` counts
# 3·3·3 = 27 multiplications per output value:

multi = cz.Conv2d(3, 1, 3, padding=1)
report = cz.cost(multi, (1, 3, 5, 5))
print(tuple(report.output_shape), report.macs, report.macs // 25)

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-2_single-channel").figure()

# %%
next(f for f in FIGURES if f.name == "001-2_multi-channel").figure()
