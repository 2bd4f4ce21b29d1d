"""Static pictures (PNG / SVG via matplotlib) of a module, drawn from its autograd connectivity.

Three panels: the input grid with the elements one output element reads (one tile per input channel, so a
group, depthwise or HetConv pattern shows which channels are read and through how big a window), the output grid
with that element marked, and the channel matrix — taps per (output channel, input channel) pair at that output
position, coloured by count, which shows groups, depthwise diagonals, the shuffle permutation, HetConv's k×k/1×1
pattern and MixConv's kernel groups. 1-D grids are one row, 3-D grids are shown as depth slices side by side.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from torch import nn  # noqa: E402

from .connectivity import Connectivity, connectivity  # noqa: E402
from .spec import describe  # noqa: E402

MAX_CHANNELS_SHOWN = 8
READ = "#2b7bba"
PICKED = "#d62728"
IDLE = "#eeeeee"


def flat2d(spatial: torch.Tensor | np.ndarray) -> np.ndarray:
    """A spatial array (L,), (H, W) or (D, H, W) as one 2-D float image; 3-D slices side by side, NaN gaps."""
    a = np.asarray(spatial, dtype=float)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim == 2:
        return a
    if a.ndim == 3:
        gap = np.full((a.shape[1], 1), np.nan)
        parts = []
        for i, s in enumerate(a):
            parts += ([gap] if i else []) + [s]
        return np.concatenate(parts, axis=1)
    raise ValueError(f"cannot draw {a.ndim}-D spatial data")


def stack_channels(per_channel: np.ndarray, shown: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """(C, *S) → one image with the first ``shown`` channel tiles in a grid (NaN gaps between tiles): 2-D tiles
    up to 4 per row, 1-D and 3-D (already wide) tiles one per row; also each tile's top-left (row, col)."""
    n = min(shown, per_channel.shape[0])
    tiles = [flat2d(per_channel[c]) for c in range(n)]
    th, tw = tiles[0].shape
    per_row = min(n, 4) if per_channel.ndim == 3 else 1
    rows = -(-n // per_row)
    image = np.full((rows * (th + 1) - 1, per_row * (tw + 1) - 1), np.nan)
    corners = []
    for c, tile in enumerate(tiles):
        r0, c0 = (c // per_row) * (th + 1), (c % per_row) * (tw + 1)
        image[r0:r0 + th, c0:c0 + tw] = tile
        corners.append((r0, c0))
    return image, corners


def _grid(ax, image: np.ndarray) -> None:
    """White cell borders, drawn as two line collections (one tick artist per cell would be ~10× slower)."""
    h, w = image.shape
    width = 0.8 if max(h, w) < 40 else 0.3
    ax.hlines(np.arange(-0.5, h, 1), -0.5, w - 0.5, colors="white", linewidth=width)
    ax.vlines(np.arange(-0.5, w, 1), -0.5, h - 0.5, colors="white", linewidth=width)
    ax.set_xticks([])
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)


def _cmap(colour: str) -> ListedColormap:
    return ListedColormap([IDLE, colour]).with_extremes(bad="white")


class ConnectivityPanels:
    """The input and output panels of one connectivity; ``show(out_channel, position)`` redraws them in place
    (used for the static figure and for every frame of the animation)."""

    def __init__(self, conn: Connectivity, ax_in, ax_out, shown: int = MAX_CHANNELS_SHOWN) -> None:
        self.conn, self.shown = conn, shown
        c_in, c_out = conn.input_shape[0], conn.output_shape[0]
        zeros_in, self.in_rows = stack_channels(np.zeros(conn.input_shape), shown)
        zeros_out, self.out_rows = stack_channels(np.zeros(conn.output_shape), shown)
        # Input cells: shade = read (1) or not (0); annotated later with the number of taps when several.
        self.in_shape, self.out_shape = zeros_in.shape, zeros_out.shape
        self.im_in = ax_in.imshow(zeros_in, cmap=_cmap(READ), vmin=0, vmax=1, interpolation="nearest")
        self.im_out = ax_out.imshow(zeros_out, cmap=_cmap(PICKED), vmin=0, vmax=1, interpolation="nearest")
        for ax, image, rows, channels, name in ((ax_in, zeros_in, self.in_rows, c_in, "in"),
                                                (ax_out, zeros_out, self.out_rows, c_out, "out")):
            _grid(ax, image)
            ax.set_yticks([])
            for c, (r0, c0) in enumerate(rows):
                ax.text(c0 - 0.5, r0 - 0.5, f"c{c}", fontsize=6, va="bottom", ha="left", color="#555555")
        spatial_in = "×".join(map(str, conn.input_shape[1:]))
        spatial_out = "×".join(map(str, conn.output_shape[1:]))
        more_in = f" (first {shown} shown)" if c_in > shown else ""
        more_out = f" (first {shown} shown)" if c_out > shown else ""
        ax_in.set_title(f"INPUT x: {c_in} ch × {spatial_in}{more_in}\nblue = elements read by the red output",
                        fontsize=9)
        ax_out.set_title(f"OUTPUT y: {c_out} ch × {spatial_out}{more_out}", fontsize=9)
        if len(conn.input_shape) == 4:
            ax_in.set_xlabel("depth slices d = 0, 1, … left to right", fontsize=7)
        self.ax_in, self.ax_out = ax_in, ax_out

    def show(self, out_channel: int, position: Sequence[int]) -> None:
        deps = self.conn.deps(out_channel, *position).numpy().astype(float)
        img, _ = stack_channels(deps, self.shown)
        self.im_in.set_data(img)
        marker = np.zeros(self.conn.output_shape)
        marker[(out_channel, *position)] = 1
        out, _ = stack_channels(marker, self.shown)
        self.im_out.set_data(out)


def channel_panel(conn: Connectivity, ax, position: Sequence[int] | None = None) -> None:
    """Taps per (output channel, input channel): 0 = not connected; k² for k×k; 1 for 1×1."""
    taps = conn.channel_taps(*(position or conn.centre())).numpy()
    masked = np.ma.masked_equal(taps, 0)
    cmap = plt.get_cmap("viridis").with_extremes(bad=IDLE)
    ax.imshow(masked, cmap=cmap, vmin=0, vmax=max(int(taps.max()), 1), interpolation="nearest", aspect="auto" if max(taps.shape) > 16 else "equal")
    ax.set_xlabel("input channel c_in", fontsize=8)
    ax.set_ylabel("output channel c_out", fontsize=8)
    ax.set_title("CHANNELS: taps read per (c_out, c_in)\nat the centre output (grey = not connected)", fontsize=9)
    if max(taps.shape) <= 16:
        for (j, c), v in np.ndenumerate(taps):
            if v:
                ax.text(c, j, str(v), ha="center", va="center", fontsize=6 if v > 99 else 7,
                        color="white" if v < taps.max() * 0.6 else "black")
    ax.set_xticks(range(taps.shape[1]) if taps.shape[1] <= 16 else [])
    ax.set_yticks(range(taps.shape[0]) if taps.shape[0] <= 16 else [])
    ax.tick_params(labelsize=6)


def connectivity_figure(module: nn.Module, input_shape: Sequence[int], title: str | None = None,
                        out_channel: int = 0, position: Sequence[int] | None = None,
                        conn: Connectivity | None = None):
    """A matplotlib Figure: input / output / channel panels for one output element (default: centre)."""
    conn = conn or connectivity(module, input_shape)
    position = tuple(position) if position is not None else conn.centre()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    panels = ConnectivityPanels(conn, axes[0], axes[1])
    panels.show(out_channel, position)
    channel_panel(conn, axes[2], position)
    fig.suptitle((title or type(module).__name__) + f"\n{type(module).__name__}({describe(module)}); "
                 f"red output: channel {out_channel}, position {tuple(position)}", fontsize=10)
    fig.tight_layout()
    return fig


def article_figures() -> list:
    """Every figure of the seed articles (``article_figures.FIGURES``): items with ``name``, ``caption`` and
    ``figure()`` (a matplotlib Figure drawn from real layers)."""
    from .article_figures import FIGURES

    return list(FIGURES)


def save_figure(fig, path: str | Path, dpi: float = 110) -> Path:
    """Write ``fig`` to ``path`` (.png or .svg) at ``dpi`` and close it."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg"):
        raise ValueError(f"figure format {fmt!r} not supported: use .png or .svg")
    fig.savefig(path, format=fmt, dpi=dpi)
    plt.close(fig)
    return path


def figure_bytes(fig, fmt: str = "png", dpi: int = 90) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
