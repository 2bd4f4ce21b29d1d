"""
Dynamic convolution
===================

Article 001 §13, article 003 §2.3. Families: `dynamic`.

K candidate kernels are aggregated per sample by an attention branch (pool → FC → softmax(z/T)); the conv then
runs with the aggregated kernel Σ πₖWₖ. Capacity grows K-fold for a small extra cost.
"""

# %%
import convzoo as cz

shape = (1, 32, 28, 28)
dyn = cz.cost(cz.DynamicConv2d(32, 64, 3, padding=1, num_kernels=4), shape)
std = cz.cost(cz.Conv2d(32, 64, 3, padding=1), shape)
print(f"params {dyn.params:,} vs {std.params:,}; MACs {dyn.macs:,} vs {std.macs:,} (+{dyn.macs / std.macs - 1:.1%})")

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "003-2.3_dynamic-attention").figure()
