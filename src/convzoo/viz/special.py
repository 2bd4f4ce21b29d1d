"""The special pictures of the seed articles, each computed from real modules (connectivity or forward pass):

- ``overlap``: transposed-conv overlap heatmaps, k=3,s=2 (uneven → checkerboard) vs k=4,s=2 (even); the count
  at each output is the size of its dependency set in the autograd connectivity of a 1-channel transposed conv.
- ``checkerboard``: a real photograph (scikit-learn's bundled china.jpg) through a randomly initialised
  transposed conv vs a resize-conv.
- ``receptive_field``: the input region seen by the centre output of 1, 2, 3 stacked 3×3 convs with dilation
  1, 2, 4 (3, 7, 15), from the connectivity of each stack.
- ``deformable_sampling``: a deformable conv's sampling points for given offsets on a real image, with the input
  pixels the output actually depends on (its connectivity: the bilinear neighbours).
- ``sobel``: the Sobel kernel as column × row (``separate_kernel``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..layers import DeformConv2d, separate_kernel
from ..registry import build
from .connectivity import connectivity
from .figures import plt


def _photo(size: int = 96) -> torch.Tensor:
    """Grey crop of scikit-learn's bundled photograph as (1, 1, size, size) in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg")[100:100 + 4 * size, 150:150 + 4 * size]
    grey = Image.fromarray(rgb).convert("L").resize((size, size), Image.BILINEAR)
    return torch.tensor(np.asarray(grey), dtype=torch.float32)[None, None] / 255


def overlap_figure():
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, k in zip(axes, (3, 4)):
        size = 6
        layer = build("transposed", 1, 1, k, stride=2, padding=0, output_padding=0)
        conn = connectivity(layer, (1, size, size))
        counts = conn.fan_in()[0].numpy()
        # Drop the border, where taps fall off the input, to show the interior period.
        inner = counts[k:-k, k:-k]
        im = ax.imshow(inner, cmap="magma", vmin=0, vmax=4, interpolation="nearest")
        for (r, c), v in np.ndenumerate(inner):
            ax.text(c, r, str(v), ha="center", va="center", color="white" if v < 3 else "black", fontsize=8)
        even = "even → no checkerboard" if k % 2 == 0 else "uneven → checkerboard"
        ax.set_title(f"transposed conv k={k}, s=2: taps per OUTPUT pixel\n(interior of a {size}×{size} input; {even})",
                     fontsize=9)
        ax.set_xticks([]); ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("Overlap of a transposed convolution (counted from its autograd connectivity)", fontsize=10)
    fig.tight_layout()
    return fig


def checkerboard_figure(seed: int = 0):
    x = _photo()
    torch.manual_seed(seed)
    transposed = build("transposed", 1, 1, 3, stride=2, padding=1, output_padding=1).eval()
    torch.manual_seed(seed)
    resize = build("resize", 1, 1, 3).eval()
    with torch.no_grad():
        outs = [("INPUT photograph (china.jpg, grey)", x), ("transposed conv k=3, s=2 (random init)", transposed(x)),
                ("resize-conv: nearest ×2 + 3×3 conv (random init)", resize(x))]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4), gridspec_kw={"height_ratios": [3, 1.6]})
    for col, (title, y) in enumerate(outs):
        img = y[0, 0].numpy()
        axes[0, col].imshow(img, cmap="gray", interpolation="nearest")
        axes[0, col].set_title(f"{title}\n{tuple(img.shape)}", fontsize=9)
        crop = img[:16, :16] if col == 0 else img[:32, :32]
        axes[1, col].imshow(crop, cmap="gray", interpolation="nearest")
        axes[1, col].set_title("zoom: top-left corner", fontsize=8)
        for ax in axes[:, col]:
            ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle("Checkerboard artifacts: transposed conv (uneven overlap) vs resize-conv, same photograph",
                 fontsize=10)
    fig.tight_layout()
    return fig


def receptive_field_figure(size: int = 17):
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    layers: list[nn.Module] = []
    for ax, d in zip(axes, (1, 2, 4)):
        layers.append(build("dilated", 1, 1, 3, dilation=d))
        stack = nn.Sequential(*layers)
        conn = connectivity(stack, (1, size, size))
        seen = conn.footprint().numpy().astype(float)
        rows, cols = np.nonzero(seen)
        extent = rows.max() - rows.min() + 1
        ax.imshow(np.where(seen > 0, 1.0, 0.0), cmap="Blues", vmin=-0.2, vmax=1.2, interpolation="nearest")
        ax.plot(size // 2, size // 2, "s", color="#d62728", markersize=5)
        ax.set_title(f"{len(layers)} stacked 3×3 conv(s), dilations {[1, 2, 4][:len(layers)]}\n"
                     f"INPUT pixels seen by the centre output: {extent}×{extent}", fontsize=9)
        ax.set_xticks(np.arange(-0.5, size, 1), minor=True); ax.set_yticks(np.arange(-0.5, size, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.5)
        ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle("Receptive field growth of stacked dilated convolutions (3, 7, 15), from autograd connectivity",
                 fontsize=10)
    fig.tight_layout()
    return fig


def default_offsets(k: int = 3, scale: float = 1.6, angle: float = 0.5) -> torch.Tensor:
    """Offsets (2·k·k,) in torchvision's (dy, dx) per tap layout that turn the k×k grid into a scaled, rotated one."""
    r = torch.arange(k, dtype=torch.float32) - k // 2
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    cos, sin = np.cos(angle), np.sin(angle)
    ny, nx = scale * (cos * dy - sin * dx), scale * (sin * dy + cos * dx)
    return torch.stack([ny - dy, nx - dx], dim=-1).reshape(-1)


def deformable_figure(offsets: torch.Tensor | None = None, size: int = 24):
    k = 3
    offsets = default_offsets(k) if offsets is None else torch.as_tensor(offsets, dtype=torch.float32).reshape(-1)
    if offsets.numel() != 2 * k * k:
        raise ValueError(f"offsets must have 2·k·k = {2 * k * k} values (dy, dx per tap), got {offsets.numel()}")
    x = _photo(size)
    layer = DeformConv2d(1, 1, k, padding=1)
    offset_field = offsets.view(1, -1, 1, 1).expand(1, -1, size, size).contiguous()
    run: Callable[[torch.Tensor], torch.Tensor] = lambda inp: layer(inp, offset=offset_field.expand(
        inp.shape[0], -1, -1, -1))
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
    conn = connectivity(run, (1, size, size), randomise=False)
    cy = cx = size // 2
    seen = conn.deps(0, cy, cx)[0].numpy()
    r = np.arange(k) - k // 2
    gy, gx = np.meshgrid(r, r, indexing="ij")
    points = offsets.view(k * k, 2).numpy()
    py, px = cy + gy.reshape(-1) + points[:, 0], cx + gx.reshape(-1) + points[:, 1]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    for ax, title in zip(axes, ("regular 3×3 grid (standard conv)", "deformable: grid + given offsets Δp")):
        ax.imshow(x[0, 0].numpy(), cmap="gray", interpolation="nearest")
        ax.set_xticks([]); ax.set_yticks([])
        ax.set_title(f"INPUT image, output pixel ({cy}, {cx})\n{title}", fontsize=9)
    axes[0].plot(cx + gx.reshape(-1), cy + gy.reshape(-1), "o", color="#2b7bba", markersize=7)
    ys, xs = np.nonzero(seen)
    axes[1].plot(xs, ys, "s", markerfacecolor="none", markeredgecolor="#ffbf00", markersize=9,
                 label="pixels the output depends on (autograd)")
    axes[1].plot(px, py, "o", color="#d62728", markersize=7, label="sampling points p + pₖ + Δpₖ")
    axes[1].plot(cx + gx.reshape(-1), cy + gy.reshape(-1), "x", color="#2b7bba", markersize=6, label="regular grid")
    axes[1].legend(loc="lower left", fontsize=7)
    fig.suptitle("Deformable convolution: sampling points for given offsets, read bilinearly", fontsize=10)
    fig.tight_layout()
    return fig


def sobel_figure():
    sobel = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
    column, row, error = separate_kernel(sobel)
    # separate_kernel's scale split is arbitrary; show the integer form (1,2,1)ᵀ × (1,0,−1) when it is one.
    scale = column[0].item()
    column, row = column / scale, row * scale
    fig, axes = plt.subplots(1, 4, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1, 3, 3, 3]})
    panels = [(column.view(3, 1), "column (3×1)"), (row.view(1, 3), "row (1×3)"),
              (column.view(3, 1) @ row.view(1, 3), "column × row"), (sobel, "Sobel kernel")]
    axes_list = [axes[0], axes[1], axes[2], axes[3]]
    for ax, (m, title) in zip(axes_list, panels):
        a = m.numpy() + 0.0  # no "-0" labels
        ax.imshow(a, cmap="coolwarm", vmin=-2, vmax=2)
        for (r, c), v in np.ndenumerate(a):
            ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=10)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([]); ax.set_yticks([])
    fig.suptitle(f"Sobel = column × row (rank 1; relative error of the split {error:.1e})", fontsize=10)
    fig.tight_layout()
    return fig


SPECIAL: dict[str, Callable[[], object]] = {
    "overlap": overlap_figure,
    "checkerboard": checkerboard_figure,
    "receptive_field": receptive_field_figure,
    "deformable_sampling": deformable_figure,
    "sobel": sobel_figure,
}


def special_figure(name: str):
    try:
        return SPECIAL[name]()
    except KeyError:
        raise ValueError(f"unknown special picture {name!r}; known: {', '.join(SPECIAL)}") from None
