"""
Grouped, shuffled grouped and pointwise grouped convolution
===========================================================

Article 001 §10–12, article 003 §2.1. Families: `grouped`, `shuffled_grouped`, `pointwise_grouped`.

With g groups each filter reads only C_in/g channels: g times fewer parameters and MACs. Stacked grouped convs
never mix information across groups; ShuffleNet's channel shuffle between them fixes that.
"""

# %%
import convzoo as cz

shape = (1, 64, 28, 28)
for g in (1, 2, 4, 8):
    print(f"groups={g}: {cz.cost(cz.Conv2d(64, 128, 3, padding=1, groups=g), shape).macs:,} MACs")

# %%
shuffled = cz.ShuffledGroupedConv2d(64, 128, 3, padding=1, groups=4)
print(shuffled)
print(f"{cz.cost(shuffled, shape).macs:,} MACs (the shuffle itself is free)")
print(f"pointwise grouped: {cz.cost(cz.PointwiseConv2d(64, 128, groups=4), shape).macs:,} MACs")

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-11_shuffle-gconv1-gconv2").figure()
