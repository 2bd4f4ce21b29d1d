"""
Depthwise separable convolution: 86,400 → 10,275
================================================

Article 001 §8.2 (and 000, 002, 003 §2.1). Families: `depthwise`, `depthwise_separable`.

The article's worked example: a 7×7×3 input, a 3×3 kernel without padding, 128 output channels, so a 5×5×128
output. A standard convolution needs 128 filters of 3×3×3, each visiting 5×5 positions.
"""

# %%
# Build the two layers the article compares and let ``convzoo.cost`` count the multiplications:

import convzoo as cz

standard = cz.Conv2d(3, 128, 3, bias=False)
separable = cz.DepthwiseSeparableConv2d(3, 128, 3, bias=False)
x_shape = (1, 3, 7, 7)

std = cz.cost(standard, x_shape)
sep = cz.cost(separable, x_shape)
print("output shape:", tuple(std.output_shape))
print(f"standard: 128·3·3·3·5·5 = {std.macs:,} multiplications")
print(f"depthwise separable: {sep.macs:,} multiplications")

# %%
# The separable block is two convolutions. Costing its two parts separately splits the total the way the
# article does: the depthwise step applies one 3×3×1 kernel per input channel (3·3·3·5·5 = 675), the
# pointwise step 128 kernels of 1×1×3 at every position (128·3·5·5 = 9,600).

depthwise = cz.cost(separable.depthwise, x_shape)
pointwise = cz.cost(separable.pointwise, depthwise.output_shape)
print(f"depthwise 3·3·3·5·5 = {depthwise.macs:,}")
print(f"pointwise 128·3·5·5 = {pointwise.macs:,}")
print(f"sum = {depthwise.macs + pointwise.macs:,}")
print(f"ratio: {sep.macs / std.macs:.3f} (the article: about 12% of the cost)")

# %%
# The article's general formula: the ratio is 1/C_out + 1/k². For 128 channels and 3×3 kernels:

print(f"1/128 + 1/9 = {1 / 128 + 1 / 9:.4f}")

# %%
# The picture of the article's comparison, drawn from these layers:

from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-8.2_standard-vs-depthwise-separable").figure()

# %%
# And the family's own picture: stage 1 (depthwise, a diagonal channel matrix), stage 2 (pointwise, a full
# 1×1 matrix):

import convzoo.viz as viz

viz.layer_figure(cz.DepthwiseSeparableConv2d(4, 4, 3, padding=1), (4, 5, 5))
