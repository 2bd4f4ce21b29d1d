"""
1×1 convolution
===============

Article 001 §4. Families: `pointwise`.

A 1×1 convolution maps every pixel's channel vector linearly: it changes the depth (dimensionality reduction
as in Inception), adds a non-linearity after it cheaply, and costs C_in·C_out per pixel.
"""

# %%
import convzoo as cz

reduce = cz.PointwiseConv2d(256, 64)
report = cz.cost(reduce, (1, 256, 28, 28))
print(tuple(report.output_shape), f"{report.macs:,} MACs = 28·28·256·64 = {28 * 28 * 256 * 64:,}")

# %%
# Against a 3×3 conv with the same channels, the ratio is 1/9:
full = cz.cost(cz.Conv2d(256, 64, 3, padding=1), (1, 256, 28, 28))
print(f"{report.macs / full.macs:.4f}")

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-4_1x1-conv").figure()
