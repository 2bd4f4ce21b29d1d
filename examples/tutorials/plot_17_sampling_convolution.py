"""
Sampling-based convolution: deformable v1, v2 and DCNv3
=======================================================

Article 003 §1.3 and §2.2 (and the families since 2020). Families: `deformable`, `deformable_v2`, `dcnv3`.

A standard k×k conv reads its input on a fixed grid, p + p_k. A deformable conv (Dai et al. 2017) adds a learned
offset Δp_k(p) per tap and position, predicted by a parallel conv, and reads the input there by bilinear
interpolation: y(p) = Σ_k w_k · x(p + p_k + Δp_k(p)). v2 (Zhu et al. 2019) multiplies each sample by a learned
mask m_k(p) ∈ (0, 1). DCNv3 (InternImage, Wang et al. 2023) splits the channels into groups with their own
sampling points, normalises the masks with a softmax over the points, and shares one projection among all
points instead of a weight per tap: y(p) = W_out Σ_g Σ_k m_gk(p) · (W_in x)_g(p + p_k + Δp_gk(p)).
Every number and picture below was computed when this page was built.
"""

# %%
# The grid is the special case
# ----------------------------
# The offsets start at zero, so an untrained deformable conv IS a standard conv with its weight; a constant
# offset of one row moves every sampling point down by one, which is a standard conv of the input padded
# differently; v2's masks start at sigmoid(0) = ½. Each is checked against ``torch.nn.functional.conv2d``:

import torch
import torch.nn.functional as F

import convzoo as cz

torch.manual_seed(0)
x = torch.randn(2, 8, 12, 12)
v1 = cz.DeformConv2d(8, 8, 3, padding=1)
with torch.no_grad():
    plain = F.conv2d(x, v1.weight, v1.bias, padding=1)
    print(f"v1, zero offsets vs conv2d: max |Δ| = {(v1(x) - plain).abs().max().item():.1e}")
    v1.offset_conv.bias[0::2] = 1.0  # Δy = +1 for every tap (offsets are (Δy, Δx) pairs)
    shifted = F.conv2d(F.pad(x, (1, 1, 0, 2)), v1.weight, v1.bias)  # rows i..i+2 instead of i-1..i+1
    print(f"v1, every point one row down vs conv2d of the shifted window: max |Δ| = "
          f"{(v1(x) - shifted).abs().max().item():.1e}")
    v2 = cz.DeformConv2d(8, 8, 3, padding=1, modulated=True)
    half = 0.5 * F.conv2d(x, v2.weight, None, padding=1) + v2.bias.reshape(1, -1, 1, 1)
    print(f"v2, zero offsets, masks ½ vs ½·conv2d + bias: max |Δ| = {(v2(x) - half).abs().max().item():.1e}")

# %%
# Cost
# ----
# At 32 → 32 channels, 3×3, on a 28×28 map. Bilinear sampling is not a weight multiply-add: it appears as
# "other ops" (4 multiply-adds per sampled value), and so does DCNv3's softmax; DCNv3's mask × sampled value,
# summed over the points, is a product of two activations: "act. MACs", apart from the weight MACs. DCNv3's
# parameters do not grow with the number of points: its weight is the shared projection.

names = ["standard", "deformable", "deformable_v2", "dcnv3"]
shape = (1, 32, 28, 28)
costs = {name: cz.cost(cz.build(name, 32, 32, 3, 2), shape) for name in names}
print(f"{'family':<15}{'params':>9}{'MACs':>12}{'× std':>7}{'act. MACs':>11}{'other ops':>12}")
for name, c in costs.items():
    print(f"{name:<15}{c.params:>9,}{c.macs:>12,}{c.macs / costs['standard'].macs:>7.2f}{c.activation_macs:>11,}"
          f"{c.other_ops:>12,}")

# %%
# Parameters as the width grows: a v2 layer holds C²·k² weights plus its offset-and-mask conv, C·3k²·k²; DCNv3
# holds two C×C projections and small per-group linears.

print(f"{'C':>6}{'deformable_v2':>15}{'dcnv3':>10}{'ratio':>8}")
for c in (32, 64, 128, 256):
    p2 = sum(p.numel() for p in cz.build("deformable_v2", c, c, 3, 2).parameters())
    p3 = sum(p.numel() for p in cz.build("dcnv3", c, c, 3, 2).parameters())
    print(f"{c:>6}{p2:>15,}{p3:>10,}{p2 / p3:>8.2f}")

# %%
# Verified and measured
# ---------------------
# ``convzoo.compare`` times forward and forward + backward round-robin against the standard conv (batch 4, one
# thread, 9 rounds) and checks each layer against the NumPy reference of its paper's equation (``max error``; the layers
# are timed as built, with zero offsets — the bilinear sampling costs the same wherever it reads).

threads = torch.get_num_threads()
torch.set_num_threads(1)
try:
    rows = cz.compare(batch=4, in_channels=32, out_channels=32, size=28, families=names[1:], repeats=9)
finally:
    torch.set_num_threads(threads)
print(f"{'family':<15}{'MACs ×':>8}{'fwd ms':>9}{'fwd+bwd ms':>12}{'time ×':>8}{'max error':>11}")
for r in rows:
    print(f"{r.family:<15}{r.mac_ratio:>8.2f}{r.forward_ms:>9.3f}{r.forward_backward_ms:>12.3f}"
          f"{1 / r.speed_ratio:>8.2f}{r.max_error:>11.1e}")

# %%
# Where the points go
# -------------------
# The sampling matrix of a standard conv (the regular grid) next to deformable ones — the article's figure,
# drawn from a ``DeformConv2d`` whose offsets are set by hand:

from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "003-2.2_sampling-matrix-deformable").figure()

# %%
# v2's modulation: each sampled value weighted by its mask (drawn from a ``DeformConv2d(modulated=True)``):

next(f for f in FIGURES if f.name == "003-2.2_dcnv2-modulation").figure()

# %%
# DCNv3 stage by stage: the input projection, the per-group sampling with softmax masks, and the output
# projection (the picture seeds the offsets and masks, which the layer as built has at zero, so that the points
# move — its caption says so).

import convzoo.viz as viz

torch.manual_seed(0)
viz.layer_figure(cz.build("dcnv3", 4, 4, 3, 2), (4, 6, 6))
