"""
MobileNet: the width multiplier α and the resolution multiplier ρ
=================================================================

Article 002 (and 000, 001 §8.2). Families: `depthwise_separable`, `depthwise`, `pointwise`.

MobileNet v1 (Howard et al. 2017) is 13 depthwise separable blocks after one 3×3 stem conv. The article's two
"brutal" ways to shrink it are the width multiplier α (every layer's channels × α) and the resolution
multiplier ρ (the input side, 224·ρ). Every number below is recomputed by ``convzoo.cost`` on
``convzoo.models.mobilenet_v1`` when this page is built, next to the paper's tables.
"""

# %%
# The cost of one block
# ---------------------
# A standard conv of D_K×D_K with M input and N output channels on a D_F×D_F map costs D_K²·M·N·D_F²
# multiply-adds; the depthwise separable block costs D_K²·M·D_F² (depthwise) + M·N·D_F² (pointwise), a ratio of
# 1/N + 1/D_K². For MobileNet's 13 blocks at α = 1, ρ = 224 (the block's own stride applies to the depthwise
# step):

import convzoo as cz
from convzoo.models import mobilenet_v1

model = mobilenet_v1(1.0, 224)
report = cz.cost(model, (1, 3, 224, 224))
blocks = [row for row in report.layers if row.type == "DepthwiseSeparableConv2d"]
print(f"{'block':<6}{'input':>18}{'N':>6}{'separable MACs':>16}{'standard MACs':>16}{'ratio':>8}{'1/N + 1/9':>11}")
for i, row in enumerate(blocks, 1):
    block = model.get_submodule(row.name)
    standard = cz.Conv2d(block.in_channels, block.out_channels, 3, stride=block.depthwise.stride, padding=1,
                         bias=False)
    full = cz.cost(standard, row.input_shape).macs
    n = block.out_channels
    print(f"{i:<6}{str(row.input_shape[1:]):>18}{n:>6}{row.macs:>16,}{full:>16,}{row.macs / full:>8.4f}"
          f"{1 / n + 1 / 9:>11.4f}")

# %%
# Where the multiply-adds go (the paper's Table 2)
# ------------------------------------------------
# Splitting every block into its depthwise and pointwise convs (``convzoo.cost`` of each part on its own input)
# shows that MobileNet spends almost all of its
# compute in 1×1 convolutions — dense matrix products, which is why it runs well — and most of its parameters
# there and in the classifier.

from collections import defaultdict

macs, params = defaultdict(int), defaultdict(int)
for row in report.layers:
    module = model.get_submodule(row.name)
    if row.type == "DepthwiseSeparableConv2d":
        dw = cz.cost(module.depthwise, row.input_shape)
        pw = cz.cost(module.pointwise, dw.output_shape)
        macs["Conv DW 3×3"] += dw.macs
        macs["Conv 1×1"] += pw.macs
        params["Conv DW 3×3"] += module.depthwise.weight.numel()
        params["Conv 1×1"] += module.pointwise.weight.numel()
    elif row.type == "Conv2d":
        macs["Conv 3×3 (stem)"] += row.macs
        params["Conv 3×3 (stem)"] += module.weight.numel()
    elif row.type == "Linear":
        macs["Fully connected"] += row.macs
        params["Fully connected"] += module.weight.numel()  # weights only, as the paper counts
paper = {"Conv 1×1": (94.86, 74.59), "Conv DW 3×3": (3.06, 1.06), "Conv 3×3 (stem)": (1.19, 0.02),
         "Fully connected": (0.18, 24.33)}
total_macs, total_params = sum(macs.values()), sum(params.values())
print(f"{'type':<18}{'MACs %':>9}{'paper':>8}{'params %':>10}{'paper':>8}")
for kind, (paper_macs, paper_params) in paper.items():
    print(f"{kind:<18}{100 * macs[kind] / total_macs:>9.2f}{paper_macs:>8.2f}"
          f"{100 * params[kind] / total_params:>10.2f}{paper_params:>8.2f}")
print(f"{'sum':<18}{sum(100 * macs[k] / total_macs for k in paper):>9.2f}{sum(v[0] for v in paper.values()):>8.2f}"
      f"{sum(100 * params[k] / total_params for k in paper):>10.2f}{sum(v[1] for v in paper.values()):>8.2f}")
print(f"the separable blocks' share of the MACs: {100 * sum(r.macs for r in blocks) / report.macs:.2f} %")

# %%
# The stem conv's share is 3·3·3·32·112² = 10,838,016 of 568,740,352 MACs, 1.91 %; the paper prints 1.19 %, and
# its four shares then add to 99.29 %, not 100 — two swapped digits. The parameter shares count weights only
# (no BatchNorm, no classifier bias), as the paper's do.

# %%
# Depthwise separable vs full convolution (Table 4)
# -------------------------------------------------
# ``conv='standard'`` builds the same network with a full 3×3 conv in every block.

conv_net = cz.cost(mobilenet_v1(1.0, 224, conv="standard"), (1, 3, 224, 224))
print(f"Conv MobileNet: {conv_net.macs / 1e6:,.0f} M MACs, {conv_net.params / 1e6:.1f} M params "
      f"(paper: 4866 M, 29.3 M)")
print(f"MobileNet:      {report.macs / 1e6:,.0f} M MACs, {report.params / 1e6:.1f} M params (paper: 569 M, 4.2 M)")
print(f"ratio: {report.macs / conv_net.macs:.3f} of the MACs, {report.params / conv_net.params:.3f} of the params")

# %%
# The width multiplier α (Table 6) and the resolution multiplier ρ (Table 7)
# --------------------------------------------------------------------------
# α thins every layer: a block's MACs scale as α² (both M and N shrink), the stem and the classifier as α. ρ
# shrinks every feature map: every conv's MACs scale as ρ², the parameters do not change at all.

paper_width = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}
paper_resolution = {224: (569, 4.2), 192: (418, 4.2), 160: (290, 4.2), 128: (186, 4.2)}
width = {a: cz.cost(mobilenet_v1(a, 224), (1, 3, 224, 224)) for a in paper_width}
resolution = {r: cz.cost(mobilenet_v1(1.0, r), (1, 3, r, r)) for r in paper_resolution}
print(f"{'α':>6}{'M MACs':>9}{'paper':>7}{'M params':>10}{'paper':>7}{'MACs / α=1':>12}{'α²':>7}")
for a, (pm, pp) in paper_width.items():
    c = width[a]
    print(f"{a:>6}{c.macs / 1e6:>9.0f}{pm:>7}{c.params / 1e6:>10.2f}{pp:>7}{c.macs / report.macs:>12.3f}{a * a:>7.3f}")
print(f"{'ρ':>6}{'M MACs':>9}{'paper':>7}{'M params':>10}{'paper':>7}{'MACs / 224':>12}{'ρ²':>7}")
for r, (pm, pp) in paper_resolution.items():
    c = resolution[r]
    rho = r / 224
    print(f"{r:>6}{c.macs / 1e6:>9.1f}{pm:>7}{c.params / 1e6:>10.2f}{pp:>7}{c.macs / report.macs:>12.3f}"
          f"{rho * rho:>7.3f}")

# %%
# The same numbers as a picture: the MACs that α and ρ leave (bars: convzoo.cost; ×: the paper's tables), and
# the share of the MACs and parameters by layer type.

import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1, 1, 1.3]})
for ax, table, costs, label in ((axes[0], paper_width, width, "width multiplier α (ρ = 224)"),
                                (axes[1], paper_resolution, resolution, "input size 224·ρ (α = 1)")):
    keys = list(table)
    ax.bar(range(len(keys)), [costs[k].macs / 1e6 for k in keys], color="tab:blue", label="convzoo.cost")
    ax.scatter(range(len(keys)), [table[k][0] for k in keys], marker="x", color="black", zorder=3,
               label="paper")
    for i, k in enumerate(keys):
        ax.annotate(f"{costs[k].macs / 1e6:.0f} M\n{costs[k].params / 1e6:.1f} M params", (i, costs[k].macs / 1e6),
                    xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(keys)), [str(k) for k in keys])
    ax.set_xlabel(label)
    ax.set_ylabel("multiply-adds (M)")
    ax.set_ylim(0, 700)
    ax.legend(loc="upper right", fontsize=8)
kinds = list(paper)
y = range(len(kinds))
axes[2].barh([i + 0.2 for i in y], [100 * macs[k] / total_macs for k in kinds], height=0.4, label="MACs")
axes[2].barh([i - 0.2 for i in y], [100 * params[k] / total_params for k in kinds], height=0.4, label="params")
for i, k in enumerate(kinds):
    axes[2].annotate(f"{100 * macs[k] / total_macs:.2f} %", (100 * macs[k] / total_macs, i + 0.2), xytext=(3, 0),
                     textcoords="offset points", va="center", fontsize=8)
    axes[2].annotate(f"{100 * params[k] / total_params:.2f} %", (100 * params[k] / total_params, i - 0.2),
                     xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
axes[2].set_yticks(list(y), kinds)
axes[2].invert_yaxis()
axes[2].set_xlim(0, 110)
axes[2].set_xlabel("share of MobileNet (α = 1, 224), %")
axes[2].legend(loc="lower right", fontsize=8)
fig.suptitle("MobileNet v1: what α and ρ leave, and where the multiply-adds go (computed at build time)")
fig.tight_layout()

# %%
# MACs are not time: how fast each of these runs depends on the machine and on how well the depthwise step is
# implemented — the [latency-budget how-to](../howto/plot_1_latency_budget.md) and the
# [comparison of the eight types](plot_00_eight_types.md) measure it.
