"""
MixConv, HetConv and global depthwise convolution
=================================================

Article 003 §2.1 and §2.3. Families: `mixconv`, `hetconv`, `global_depthwise`.

MixConv splits the channels into groups with 3×3, 5×5 and 7×7 depthwise kernels; HetConv gives each filter
k×k kernels on 1/p of the channels and 1×1 on the rest; a global depthwise conv has a kernel as large as the map.
"""

# %%
import convzoo as cz

shape = (1, 48, 14, 14)
std = cz.cost(cz.Conv2d(48, 48, 3, padding=1), shape).macs
for layer in (cz.MixConv2d(48, 48), cz.HetConv2d(48, 48, 3, padding=1, p=4)):
    macs = cz.cost(layer, shape).macs
    print(f"{type(layer).__name__}: {macs:,} MACs ({macs / std:.3f} of a 3×3 conv)")
gdc = cz.GlobalDepthwiseConv2d(48)
print("GDC:", tuple(cz.cost(gdc, (1, 48, 7, 7)).output_shape), cz.cost(gdc, (1, 48, 7, 7)).macs, "MACs")

# %%
from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "003-2.1_mixconv").figure()

# %%
next(f for f in FIGURES if f.name == "003-2.3_hetconv").figure()
