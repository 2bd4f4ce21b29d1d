"""
The eight types of convolution, side by side
============================================

Article 004 ("eight types of convolution in deep learning"), with article 001 for the details. Families:
`standard`, `dilated`, `transposed`, `depthwise_separable`, `pointwise`, `grouped`.

The article walks through 1-D, 2-D (single- and multi-channel) and 3-D convolution, dilated, transposed,
depthwise separable, 1×1 and grouped convolution. Here each one is a layer from ``convzoo.families()`` — its title
and summary are the registry's —, drawn from the real operator, costed by ``convzoo.cost`` and timed on this build
machine, all computed while the page was built.
"""

# %%
# The eight types as registry families
# ------------------------------------
# One row per type: the family, the dimension, and a layer shape to cost and time it on (32 → 32 channels, 3-tap
# kernels, batch 8; the registry's default geometry: stride 1 and 'same' padding, a transposed conv upsamples by
# 2, a dilated conv spaces its taps 2 apart, a grouped conv uses 4 groups).

import convzoo as cz

TYPES = [  # (type in the article, family, dim, timing input)
    ("1-D convolution", "standard", 1, (8, 32, 1024)),
    ("2-D convolution", "standard", 2, (8, 32, 32, 32)),
    ("3-D convolution", "standard", 3, (8, 32, 12, 12, 12)),
    ("dilated convolution", "dilated", 2, (8, 32, 32, 32)),
    ("transposed convolution", "transposed", 2, (8, 32, 32, 32)),
    ("depthwise separable convolution", "depthwise_separable", 2, (8, 32, 32, 32)),
    ("1×1 convolution", "pointwise", 2, (8, 32, 32, 32)),
    ("grouped convolution", "grouped", 2, (8, 32, 32, 32)),
]
layers, costs = {}, {}
for kind, name, dim, shape in TYPES:
    fam = cz.family(name)
    layers[kind] = fam.build(32, 32, 3 if fam.window else None, dim).eval()
    costs[kind] = cz.cost(layers[kind], shape)
    print(f"{kind:<32} → {name:<20} {fam.title} (article {fam.article})")

# %%
# Measured speed
# --------------
# Every layer runs forward (no gradient) round-robin with the others, 15 rounds, so that load from other
# processes on the build machine hits every type alike; the table keeps the median. Each type is compared with
# the standard conv of its own dimension: "MACs ×" and "time ×" are relative to it, and GMAC/s is what the
# layer achieved. The depthwise step moves as many bytes as a dense conv but does 1/C_in of the arithmetic, so
# its arithmetic intensity (FLOPs per byte moved) is low and its time ratio stays far above its MAC ratio.

import torch

from convzoo.perf.timing import make_inputs, round_robin

threads = torch.get_num_threads()
torch.set_num_threads(1)  # one thread: comparable across build machines, and the least disturbed by others
try:
    with torch.no_grad():
        timings = round_robin({kind: (layers[kind], make_inputs(shape, count=2))
                               for kind, _, _, shape in TYPES}, rounds=15)
finally:
    torch.set_num_threads(threads)
baseline = {dim: kind for kind, name, dim, _ in TYPES if name == "standard"}
rows = []
for kind, name, dim, shape in TYPES:
    c, t = costs[kind], timings[kind].median_ms
    base_kind = baseline[dim]
    rows.append((kind, dim, c.params, c.macs, c.macs / costs[base_kind].macs, t, t / timings[base_kind].median_ms,
                 c.macs / t / 1e6, 2 * c.macs / c.bytes))
print(f"{'type':<32}{'dim':>4}{'params':>9}{'MACs':>13}{'MACs ×':>8}{'fwd ms':>8}{'time ×':>8}{'GMAC/s':>8}"
      f"{'FLOP/B':>8}")
for kind, dim, params, macs, mac_ratio, ms, time_ratio, gmacs, intensity in rows:
    print(f"{kind:<32}{dim:>4}{params:>9,}{macs:>13,}{mac_ratio:>8.3f}{ms:>8.3f}{time_ratio:>8.2f}{gmacs:>8.1f}"
          f"{intensity:>8.1f}")

# %%
# Side by side: each type's share of its standard conv's multiply-adds next to its share of the time. Bars of
# equal height would mean MACs predict speed; they rarely do.

import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(12, 4))
x = range(len(rows))
ax.bar([i - 0.2 for i in x], [r[4] for r in rows], width=0.4, label="MACs / standard conv's (same dim)")
ax.bar([i + 0.2 for i in x], [r[6] for r in rows], width=0.4, label="measured time / standard conv's")
for i, r in enumerate(rows):
    ax.annotate(f"{r[4]:.2f}", (i - 0.2, r[4]), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
    ax.annotate(f"{r[6]:.2f}", (i + 0.2, r[6]), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=8)
ax.set_xticks(list(x), [r[0].replace(" convolution", "\nconvolution") for r in rows], fontsize=8)
ax.set_yscale("log")
ax.axhline(1.0, color="0.5", lw=0.8)
ax.set_ylabel("relative to the standard conv (log scale)")
ax.set_title(f"Eight types on this build machine (1 thread, median of 15 interleaved rounds; "
             f"torch {torch.__version__})")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# What each type computes
# -----------------------
# The pictures below are drawn by ``convzoo.viz.layer_figure`` from small layers of the same families (a few
# channels, small maps, the article's examples where it gives one): the kernel taps, which input cells feed the
# highlighted output, and the channel connectivity matrix.
#
# **1-D convolution** slides a kernel along one axis (sequences, signals):

import convzoo.viz as viz

PICTURES = {  # type → (family, dim, in, out, spatial size, extra constructor arguments)
    "1-D convolution": ("standard", 1, 2, 2, (9,), {}),
    "2-D convolution": ("standard", 2, 3, 2, (5, 5), {}),
    "3-D convolution": ("standard", 3, 2, 2, (4, 4, 4), {}),
    "dilated convolution": ("dilated", 2, 1, 1, (7, 7), {}),
    "transposed convolution": ("transposed", 2, 1, 1, (2, 2), {}),
    "depthwise separable convolution": ("depthwise_separable", 2, 3, 4, (5, 5), {}),
    "1×1 convolution": ("pointwise", 2, 3, 2, (4, 4), {}),
    "grouped convolution": ("grouped", 2, 4, 4, (5, 5), {"groups": 2}),
}
summary = {r[0]: r for r in rows}


def picture(kind):
    name, dim, cin, cout, size, kwargs = PICTURES[kind]
    fam = cz.family(name)
    torch.manual_seed(0)
    layer = fam.build(cin, cout, 3 if fam.window else None, dim, **kwargs)
    r = summary[kind]
    note = (f"{fam.summary}  At 32 → 32 channels: {r[3]:,} MACs ({r[4]:.2f}× the standard conv's), "
            f"{r[5]:.2f} ms ({r[6]:.2f}× its time) on this machine.")
    return viz.layer_figure(layer, (cin, *size), title=f"{kind[0].upper()}{kind[1:]} (family {name!r})", subtitle=note)


picture("1-D convolution")

# %%
# **2-D convolution**, multi-channel: each filter has one 3×3 kernel per input channel, and their products are
# summed into one output channel (the article's 5×5×3 input):

picture("2-D convolution")

# %%
# **3-D convolution**: the kernel also slides along depth (video, volumes); depth slices are drawn left to
# right:

picture("3-D convolution")

# %%
# **Dilated convolution**: taps spaced 2 apart see a 5×5 window with 9 weights:

picture("dilated convolution")

# %%
# **Transposed convolution**: each input cell scatters a weighted copy of the kernel into the output; the article's
# 2×2 input grows to 4×4 (stride 2):

picture("transposed convolution")

# %%
# **Depthwise separable convolution**: one 3×3 kernel per channel, then a 1×1 conv mixing the channels:

picture("depthwise separable convolution")

# %%
# **1×1 convolution**: a per-pixel linear map across channels:

picture("1×1 convolution")

# %%
# **Grouped convolution**, 2 groups as in the article: each filter sees half of the input channels (the
# block-diagonal channel matrix):

picture("grouped convolution")
