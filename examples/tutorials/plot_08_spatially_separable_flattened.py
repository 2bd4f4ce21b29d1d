"""
Spatially separable and flattened convolution
=============================================

Article 001 §8.1 and §9, article 003 §2.2. Families: `spatially_separable`, `flattened`.

A rank-1 kernel splits into a k×1 column and a 1×k row: Sobel = [1, 2, 1]ᵀ · [−1, 0, 1]. On a 5×5 input the
3×3 conv needs 9 positions × 9 = 81 multiplications, the separable pair 15·3 + 9·3 = 72. Flattened convolution
goes further: a 1×1 across channels, then k×1 and 1×k per channel.
"""

# %%
import torch

import convzoo as cz

sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
column, row, err = cz.separate_kernel(sobel)
print("column:", column.flatten().tolist(), "row:", row.flatten().tolist(), "relative error:", err)

# %%
full = cz.cost(cz.Conv2d(1, 1, 3, bias=False), (1, 1, 5, 5)).macs
sep = cz.cost(cz.SpatiallySeparableConv2d(1, 1, 3, bias=False), (1, 1, 5, 5)).macs
print("3×3:", full, " separable:", sep)

# %%
flat = cz.cost(cz.FlattenedConv2d(64, 64, 3, padding=1), (1, 64, 32, 32))
std = cz.cost(cz.Conv2d(64, 64, 3, padding=1), (1, 64, 32, 32))
print(f"flattened {flat.macs:,} vs standard {std.macs:,} MACs ({flat.macs / std.macs:.3f})")

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "001-8.1_scan-positions").figure()

# %%
next(f for f in FIGURES if f.name == "001-9_flattened").figure()
