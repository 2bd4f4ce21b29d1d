"""
Structural re-parameterisation: train with branches, deploy one conv
====================================================================

Article 003 §2.1–2.2 (the families since 2019). Families: `acnet`, `repvgg`, `large_kernel`.

ACNet (Ding et al. 2019), RepVGG (2021) and RepLKNet's large kernels (2022) train a block of parallel convs,
each followed by its BatchNorm, and sum them. At inference BatchNorm is an affine map per channel,
BN(z) = γ·(z − μ)/√(σ² + ε) + β = t·z + s, and convolution is linear, so every branch folds into one kernel
t·W (and a bias), a smaller kernel embeds into the centre of the largest one (zeros around it), an identity
branch is a kernel with a single 1 at the centre, and the sum of the branches is ONE conv:
W = Σ_b t_b·embed(W_b), b = Σ_b s_b. The block trains with the branches' richer optimisation and deploys at the
cost of a plain conv.
"""

# %%
# Train each block
# ----------------
# Each block (8 → 8 channels) is fitted for 100 SGD steps to imitate a fixed random conv of the same window on
# random inputs, so that its weights and BatchNorm statistics are really trained — none is left at its
# initialisation. (One torch thread throughout: these layers are too small to split, and the times below stay
# comparable between build machines.)

import torch
from torch import nn

import convzoo as cz

threads = torch.get_num_threads()
torch.set_num_threads(1)  # given back at the end of the page
BLOCKS = {"acnet": 3, "repvgg": 3, "large_kernel": 13}  # family → kernel size (RepLKNet: 13×13 with a 5×5)
trained = {}
for name, k in BLOCKS.items():
    torch.manual_seed(0)
    block = cz.build(name, 8, 8, k, 2)
    groups = block.groups  # the large kernel is depthwise: so is its teacher
    teacher = nn.Conv2d(8, 8, k, padding=k // 2, groups=groups)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.05, momentum=0.9)
    block.train()
    losses = []
    for step in range(100):
        x = torch.randn(8, 8, 12, 12)
        with torch.no_grad():
            target = teacher(x)
        loss = torch.nn.functional.mse_loss(block(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    trained[name] = block.eval()
    print(f"{name:<13} {block.extra_repr()}")
    print(f"{'':<13} loss {losses[0]:.3f} → {losses[-1]:.4f} after 100 steps")

# %%
# Fold and verify
# ---------------
# ``fused_conv()`` returns the single conv; ``convzoo.reparameterize`` does it for every such block of a model.
# The fused conv must give the branched block's output: checked here against the block itself and against the
# NumPy reference of the block's equation (``reference_output``: each branch as a correlation, its BatchNorm,
# the sum — no fusion involved), on a new input.

import numpy as np

x = torch.randn(4, 8, 20, 20)
for name, block in trained.items():
    fused = block.fused_conv()
    with torch.no_grad():
        y_branches, y_fused = block(x), fused(x)
    reference = block.reference_output(x.double().numpy())
    scale = np.abs(reference).max()
    print(f"{name:<13} one {type(fused).__name__}{tuple(fused.weight.shape)}: "
          f"max |fused − branches| / max |y| = {(y_fused - y_branches).abs().max().item() / scale:.1e}, "
          f"max |fused − NumPy reference| / max |y| = "
          f"{np.abs(y_fused.double().numpy() - reference).max() / scale:.1e}")

# %%
# The fusion by hand
# ------------------
# The same sum written out for one output channel and one input channel (0, 0): each branch's kernel times its
# BatchNorm scale t = γ/√(σ² + ε), embedded at the centre of the block's window, plus the identity's t at the
# centre (RepVGG). Their sum is the fused kernel, exactly what ``fused_conv()`` computed.


def folded(block):
    """{branch: its kernel for channel pair (0, 0), BatchNorm-scaled and embedded in the block's window}."""
    size = block.kernel_size
    parts = {}
    for branch_name, branch in block.branches.items():
        t = branch.bn.weight / torch.sqrt(branch.bn.running_var + branch.bn.eps)
        w = (branch.conv.weight[0, 0] * t[0]).detach()
        full = torch.zeros(size)
        top, left = (size[0] - w.shape[0]) // 2, (size[1] - w.shape[1]) // 2
        full[top:top + w.shape[0], left:left + w.shape[1]] = w
        parts[branch_name] = full
    if block.identity is not None:
        t = block.identity.weight / torch.sqrt(block.identity.running_var + block.identity.eps)
        eye = torch.zeros(size)
        eye[size[0] // 2, size[1] // 2] = t[0].detach()
        parts["identity"] = eye
    return parts


import matplotlib.pyplot as plt

columns = max(len(folded(b)) for b in trained.values()) + 1
fig, axes = plt.subplots(len(trained), columns, figsize=(2.6 * columns, 2.7 * len(trained)), squeeze=False)
for row, (name, block) in enumerate(trained.items()):
    parts = folded(block)
    by_hand = sum(parts.values())
    library = block.fused_conv().weight[0, 0].detach()
    assert torch.allclose(by_hand, library, atol=1e-6), name
    panels = list(parts.items()) + [("= fused kernel", by_hand)]
    limit = float(max(p.abs().max() for _, p in panels))
    for col in range(columns):
        ax = axes[row][col]
        ax.set_xticks([])
        ax.set_yticks([])
        if col >= len(panels):
            ax.axis("off")
            continue
        label, kernel = panels[col]
        ax.imshow(kernel.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(("+ " if 0 < col < len(panels) - 1 else "") + f"{label}", fontsize=9)
        if kernel.shape[0] <= 5:
            for (i, j), v in np.ndenumerate(kernel.numpy()):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(v) > 0.6 * limit else "black")
    axes[row][0].set_ylabel(name, fontsize=10)
    print(f"{name:<13} by hand vs fused_conv(): max difference "
          f"{(by_hand - library).abs().max().item():.1e}")
fig.suptitle("BatchNorm-folded branch kernels (channel pair 0, 0) and their sum, the deployed kernel "
             "(red > 0 > blue, one scale per row)", fontsize=10)
fig.tight_layout()

# %%
# What deployment saves
# ---------------------
# Four blocks in a row at 32 channels on a 56×56 map (batch 2), before and after ``convzoo.reparameterize``:
# parameters, multiply-adds (BatchNorm's are not MACs, the branches' convs are) and the forward time measured
# round-robin in one run on this build machine, one thread.

for name, k in BLOCKS.items():
    torch.manual_seed(1)
    model = nn.Sequential(*[cz.build(name, 32, 32, k, 2) for _ in range(4)]).eval()
    for module in model.modules():  # running statistics away from (0, 1), as after training
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    deployed, report = cz.reparameterize(model, (2, 32, 56, 56), time=True, min_time=0.3)
    x = torch.randn(2, 32, 56, 56)
    with torch.no_grad():
        error = ((deployed(x) - model(x)).abs().max() / model(x).abs().max()).item()
    print(f"{name}: {report.summary()}; max relative difference {error:.1e}")
torch.set_num_threads(threads)
