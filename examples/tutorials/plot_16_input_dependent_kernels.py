"""
Input-dependent kernels: dynamic, CondConv, ODConv, involution, selective kernel
================================================================================

Article 003 §2.1 and §2.3 (the families since 2019). Families: `dynamic`, `condconv`, `odconv`, `involution`,
`selective_kernel`.

A standard convolution applies the same kernel to every input. These five compute the kernel — or how kernels
are mixed — from the input itself:

- dynamic convolution (Chen et al. 2020) and CondConv (Yang et al. 2019) mix K kernels with weights computed
  from the globally pooled input (softmax vs sigmoid routing);
- ODConv (Li et al. 2022) also scales the kernel along its spatial, input-channel and output-channel
  dimensions;
- involution (Li et al. 2021) generates a k×k kernel at every position from that position's features, shared
  across the channels of a group;
- selective kernel convolution (SKNet, Li et al. 2019) runs 3×3 and dilated branches and mixes them per channel
  with input-dependent softmax weights.

All numbers and pictures below were computed when this page was built.
"""

# %%
# Cost
# ----
# Each family at 32 → 32 channels, 3×3, on a 28×28 map, next to the standard conv. The kernel-generating
# parts (pooling, small linear layers, the attention) add few multiply-adds; what grows is the parameter count
# (K kernels) — capacity without a proportional cost.

import torch

import convzoo as cz

NAMES = ["standard", "dynamic", "condconv", "odconv", "involution", "selective_kernel"]
shape = (1, 32, 28, 28)
torch.manual_seed(0)
layers = {name: cz.build(name, 32, 32, 3, 2).eval() for name in NAMES}
costs = {name: cz.cost(layer, shape) for name, layer in layers.items()}
base = costs["standard"]
print(f"{'family':<18}{'params':>9}{'× std':>7}{'MACs':>12}{'× std':>7}{'act. MACs':>11}{'other ops':>11}")
for name, c in costs.items():
    print(f"{name:<18}{c.params:>9,}{c.params / base.params:>7.2f}{c.macs:>12,}{c.macs / base.macs:>7.2f}"
          f"{c.activation_macs:>11,}{c.other_ops:>11,}")

# %%
# The kernel depends on the input
# -------------------------------
# At initialisation the kernel-generating parts barely react to the input: dynamic convolution starts its softmax
# at temperature 30 (nearly uniform over the K kernels, annealed to 1 during training) and the routing layers
# start small. Trained layers are what matter here, so every parameter is drawn from U(−0.5, 0.5) — as
# ``convzoo verify`` does — and dynamic conv is set to the end of its annealing, T = 1.
#
# A standard conv is linear in its input (up to its bias): f(a + b) − f(0) = (f(a) − f(0)) + (f(b) − f(0)).
# A kernel computed from the input breaks that. The relative deviation
# ‖f(a + b) − f(a) − f(b) + f(0)‖ / ‖f(a + b) − f(0)‖ measures it on two random inputs:

generator = torch.Generator().manual_seed(3)
with torch.no_grad():
    for layer in layers.values():
        for p in layer.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) - 0.5)
layers["dynamic"].temperature = 1.0

a, b = torch.randn(2, 32, 28, 28), torch.randn(2, 32, 28, 28) + torch.randn(2, 32, 1, 1)
zero = torch.zeros_like(a)
with torch.no_grad():
    for name, layer in layers.items():
        deviation = (layer(a + b) - layer(a) - layer(b) + layer(zero)).norm() / (layer(a + b) - layer(zero)).norm()
        print(f"{name:<18} deviation from linearity {deviation.item():.2e}")

# %%
# The local kernel each input sees: the derivative of one output (channel 0, at the centre) with respect to the
# 3×3 window of input channel 0 under it, for two different inputs. For the standard conv it is its weight,
# whatever the input; for the others it changes from one input to the next (it also carries the derivative of
# the generated weights, which is how they are trained). The two inputs have their own per-channel means, as two
# images do, since the routing of dynamic conv, CondConv, ODConv and SK reads the globally pooled input.


def local_kernel(layer, x):
    x = x.clone().requires_grad_()
    y = layer(x)
    centre = y.shape[-1] // 2
    y[0, 0, centre, centre].backward()
    return x.grad[0, 0, centre - 1:centre + 2, centre - 1:centre + 2]


import matplotlib.pyplot as plt

def image_like(seed):
    """Random features with their own per-channel means, as two different images have."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 32, 28, 28, generator=g) + torch.randn(1, 32, 1, 1, generator=g)


inputs = [image_like(1), image_like(2)]
fig, axes = plt.subplots(2, len(NAMES), figsize=(2.2 * len(NAMES), 4.6))
for col, (name, layer) in enumerate(layers.items()):
    kernels = [local_kernel(layer, x) for x in inputs]
    limit = float(max(k.abs().max() for k in kernels))
    change = ((kernels[0] - kernels[1]).norm() / kernels[0].norm()).item()
    for row, kernel in enumerate(kernels):
        ax = axes[row][col]
        ax.imshow(kernel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        for (i, j), v in zip([(i, j) for i in range(3) for j in range(3)], kernel.flatten().tolist()):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v) > 0.6 * limit else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        if row == 0:
            ax.set_title(name, fontsize=9)
        else:
            ax.set_xlabel(f"change {change:.0%}", fontsize=8)
    print(f"{name:<18} local kernel changes by {change:.1%} between the two inputs")
axes[0][0].set_ylabel("input 1")
axes[1][0].set_ylabel("input 2")
fig.suptitle("∂ output(channel 0, centre) / ∂ input(channel 0, 3×3 window) for two inputs", fontsize=10)
fig.tight_layout()

# %%
# Verified and measured
# ---------------------
# ``convzoo.compare`` times each family's forward and forward + backward round-robin against the standard conv
# (batch 4, one thread, 9 rounds) and checks its output against the NumPy reference of its paper's equations
# (``max error``).

threads = torch.get_num_threads()
torch.set_num_threads(1)
try:
    rows = cz.compare(batch=4, in_channels=32, out_channels=32, size=28, families=NAMES[1:], repeats=9)
finally:
    torch.set_num_threads(threads)
print(f"{'family':<18}{'MACs ×':>8}{'fwd ms':>9}{'fwd+bwd ms':>12}{'time ×':>8}{'max error':>11}")
for r in rows:
    print(f"{r.family:<18}{r.mac_ratio:>8.2f}{r.forward_ms:>9.3f}{r.forward_backward_ms:>12.3f}"
          f"{1 / r.speed_ratio:>8.2f}{r.max_error:>11.1e}")

# %%
# How each one builds its kernel
# ------------------------------
# Dynamic convolution's attention over its K kernels (the article's picture, drawn from the layer):

from convzoo.viz.article_figures import FIGURES

next(f for f in FIGURES if f.name == "003-2.3_dynamic-attention").figure()

# %%
# Involution's kernel, generated at each position from that position's features:

next(f for f in FIGURES if f.name == "beyond_involution-kernels").figure()

# %%
# Selective kernel convolution only re-weights two fixed branches per channel, so its local kernel moves least;
# its stages, and those of CondConv and ODConv, are drawn on the [family pages](../../gallery.md).
