"""
Convolution arithmetic
======================

Article 001 §5, article 003 §1.3–1.4. Families: `standard`.

The output size along a dimension is ⌊(i + 2p − d·(k − 1) − 1) / s⌋ + 1. A convolution is also a matrix: the
sparse matrix C that maps the flattened input to the flattened output.
"""

# %%
import convzoo as cz

for i, k, s, p in [(5, 3, 1, 0), (5, 3, 2, 1), (7, 3, 2, 0), (224, 7, 2, 3)]:
    print(f"i={i} k={k} s={s} p={p} → o={cz.conv_output_size(i, k, s, p)}")

# %%
# The conv matrix of a 3×3 conv on a 4×4 input is 4×16 (the article's figure), computed as the layer's Jacobian:

from convzoo.viz import conv_matrix

C = conv_matrix(cz.Conv2d(1, 1, 3, bias=False), (1, 4, 4))
print(tuple(C.shape), "non-zeros per row:", (C != 0).sum(1).tolist())

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-6_conv-matrix").figure()
