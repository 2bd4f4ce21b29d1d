"""
Transposed convolution and the checkerboard
===========================================

Article 001 §6. Families: `transposed`, `resize`.

A transposed convolution is the adjoint of a strided conv: it maps the small map back to the large one (its
matrix is Cᵀ). When the kernel size is not divisible by the stride, output pixels receive uneven numbers of
contributions — the checkerboard artifact. Resize-convolution (upsample, then a conv) avoids it.
"""

# %%
import convzoo as cz

up = cz.TransposedConv2d(1, 1, 3, stride=2, padding=1, output_padding=1)
print("2×2 → ", tuple(cz.cost(up, (1, 1, 2, 2)).output_shape))
print("output sizes:", cz.transposed_output_size(4, 3, 2, 1, 1), cz.transposed_output_size(2, 3, 1, 0))

# %%
# How many inputs reach each output, along one dimension (k=3, s=2 is uneven; k=4, s=2 is even):

print("k=3, s=2:", cz.overlap_map(3, 2, dim=1).tolist(), "even:", cz.is_even_overlap(3, 2))
print("k=4, s=2:", cz.overlap_map(4, 2, dim=1).tolist(), "even:", cz.is_even_overlap(4, 2))

# %%
# Resize-convolution costs the conv on the upsampled map but has no uneven overlap:

resize = cz.ResizeConv2d(1, 1, 3, scale_factor=2)
print("resize-conv output:", tuple(cz.cost(resize, (1, 1, 2, 2)).output_shape))

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-6_overlap-1d-stride2").figure()

# %%
next(f for f in FIGURES if f.name == "001-6_checkerboard-image").figure()
