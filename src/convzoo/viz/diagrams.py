"""Diagram blocks beyond cell grids, each drawn from numbers computed by the caller from real layers:
a feature-map volume (H × W × C as stacked planes), an image, a matrix with coloured entries, 1-D transposed
overlap (input row, output row, the lines each input writes, counts), and a channel-flow diagram (channels as
columns of cells, one line per connected channel pair, stage after stage)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Polygon, Rectangle

from .draw import EDGE, INPUT, MUTED, OUTPUT, SMALL, Block, Cell, cells, column, fmt, label, row, tap_colours, \
    text_colour

SKEW = 0.45  # depth offset per drawn plane, in cells


def volume(h: int, w: int, depth: int, colour: str = INPUT, scale: float = 0.5, max_planes: int = 8,
           depth_colours: Sequence[str] | None = None) -> Block:
    """An h × w × depth feature map as up to ``max_planes`` stacked planes (cell = ``scale`` cells), labelled."""
    planes = min(depth, max_planes)
    pw, ph = w * scale, h * scale
    step = SKEW
    bw, bh = pw + step * (planes - 1), ph + step * (planes - 1)
    text = f"{h}×{w}×{depth}"
    tw = label(text, SMALL)

    def paint(ax: Axes, x: float, y: float) -> None:
        for i in reversed(range(planes)):
            ox, oy = x + step * i, y + step * (planes - 1 - i)
            fill = depth_colours[i * depth // planes] if depth_colours else colour
            ax.add_patch(Rectangle((ox, oy), pw, ph, facecolor=fill, edgecolor=EDGE, linewidth=0.8))
            if i == 0 and scale >= 0.3:
                for r in range(1, h):
                    ax.plot([ox, ox + pw], [oy + r * scale] * 2, color=EDGE, linewidth=0.3)
                for c in range(1, w):
                    ax.plot([ox + c * scale] * 2, [oy, oy + ph], color=EDGE, linewidth=0.3)
        tw.paint(ax, x, y + bh + 0.2)

    return Block(max(bw, tw.w), bh + 0.2 + tw.h, paint)


def image(img: np.ndarray, width: float, cmap: str = "gray", vmin: float | None = None,
          vmax: float | None = None) -> Block:
    """A 2-D array as an image ``width`` cells wide (nearest-neighbour pixels, so artifacts stay visible)."""
    height = width * img.shape[0] / img.shape[1]

    def paint(ax: Axes, x: float, y: float) -> None:
        ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                  extent=(x, x + width, y + height, y), zorder=1)
        ax.add_patch(Rectangle((x, y), width, height, fill=False, edgecolor=EDGE, linewidth=0.8))

    return Block(width, height, paint)


def matrix(values: np.ndarray, taps: np.ndarray | None = None, n_taps: int = 9, cell: float = 0.6,
           numbers: bool = True, fills: np.ndarray | None = None) -> Block:
    """A matrix of (small) cells: entries coloured by ``taps`` (the kernel tap they hold, -1: none, blank) with
    their values printed; without ``taps`` (a vector) every value is printed."""
    colours = tap_colours(n_taps)
    rows_, cols_ = values.shape

    def paint(ax: Axes, x: float, y: float) -> None:
        for r in range(rows_):
            for c in range(cols_):
                v = values[r, c]
                t = -1 if taps is None else int(taps[r, c])
                fill = colours[t] if t >= 0 else ("#e4e4e4" if v != 0 or taps is None else "white")
                if fills is not None:
                    fill = tuple(fills[r, c])
                ax.add_patch(Rectangle((x + c * cell, y + r * cell), cell, cell, facecolor=fill, edgecolor="#c8c8c8",
                                       linewidth=0.5))
                if numbers and (v != 0 or t >= 0 or taps is None):
                    ax.text(x + (c + 0.5) * cell, y + (r + 0.53) * cell, fmt(v), ha="center", va="center",
                            fontsize=SMALL, color=text_colour(fill))
        ax.add_patch(Rectangle((x, y), cols_ * cell, rows_ * cell, fill=False, edgecolor=EDGE, linewidth=1.0))

    return Block(cols_ * cell, rows_ * cell, paint)


def overlap_1d(n_in: int, writes: Sequence[Sequence[int]], n_out: int, counts: Sequence[int]) -> Block:
    """Transposed conv in 1-D: input cells (top), output cells (bottom) with the number of inputs each receives,
    and lines from each input cell to the output cells it writes (one colour per input cell)."""
    colours = tap_colours(max(n_in, 2))
    offset = (n_out - n_in) / 2
    top = max(counts) if counts else 1

    def paint(ax: Axes, x: float, y: float) -> None:
        for i in range(n_in):
            ax.add_patch(Rectangle((x + offset + i, y), 1, 1, facecolor=colours[i], edgecolor=EDGE, linewidth=0.8))
            for o in writes[i]:
                ax.plot([x + offset + i + 0.5, x + o + 0.5], [y + 1, y + 3], color=colours[i][:3], linewidth=1.6)
        for o in range(n_out):
            shade = 1 - 0.6 * counts[o] / max(top, 4)  # one scale for every panel
            ax.add_patch(Rectangle((x + o, y + 3), 1, 1, facecolor=(shade, shade, 1.0), edgecolor=EDGE,
                                   linewidth=0.8))
            ax.text(x + o + 0.5, y + 3.53, str(counts[o]), ha="center", va="center", fontsize=SMALL)

    return Block(float(max(n_out, n_in)), 4.0, paint)


def channel_flow(maps: Sequence[np.ndarray], names: Sequence[str], colours: Sequence[str]) -> Block:
    """Channels as columns of cells, stage after stage; ``maps[i]`` is the bool (C_out, C_in) channel map of stage
    i. A channel's colour is the colour of the input group it depends on (mixed: grey), so a shuffle shows as
    groups that now see every group."""
    columns_ = [maps[0].shape[1]] + [m.shape[0] for m in maps]
    gap = 5.0
    height = float(max(columns_))
    # Colour each channel by the set of input groups it depends on.
    n_groups = len(colours)
    dep = [np.eye(columns_[0], dtype=bool)]
    for m in maps:
        dep.append((m.astype(int) @ dep[-1].astype(int)) > 0)
    group_of = np.arange(columns_[0]) * n_groups // columns_[0]

    def fill(stage: int, ch: int) -> str:
        groups = sorted(set(group_of[dep[stage][ch]].tolist()))
        return colours[groups[0]] if len(groups) == 1 else "#9e9e9e"

    def paint(ax: Axes, x: float, y: float) -> None:
        for s, n in enumerate(columns_):
            cx = x + s * (1 + gap)
            for ch in range(n):
                ax.add_patch(Rectangle((cx, y + 1 + ch), 1, 1, facecolor=fill(s, ch), edgecolor=EDGE, linewidth=0.8))
            ax.text(cx + 0.5, y + 0.8, names[s], ha="center", va="bottom", fontsize=SMALL)
            if s < len(maps):
                for o, i in zip(*np.nonzero(maps[s])):
                    ax.plot([cx + 1, cx + 1 + gap], [y + 1.5 + i, y + 1.5 + o], color=fill(s, i), linewidth=1.0)

    return Block(len(columns_) * (1 + gap) - gap, height + 1.2, paint)


def dots_on_grid(h: int, w: int, centres: Sequence[tuple[float, float]], colour: str = OUTPUT) -> Block:
    """An h × w input grid with a dot at each scan position (row, col) in cell coordinates."""
    grid = cells([[Cell(INPUT) for _ in range(w)] for _ in range(h)])

    def paint(ax: Axes, x: float, y: float) -> None:
        grid.paint(ax, x, y)
        for r, c in centres:
            ax.plot(x + c + 0.5, y + r + 0.5, "o", color="#c0392b", markersize=7, zorder=5)

    del colour
    return Block(grid.w, grid.h, paint)


def polygon_note(text: str) -> Block:
    """A boxed note (used for captions inside a figure)."""
    body = label(text, SMALL, color=MUTED)

    def paint(ax: Axes, x: float, y: float) -> None:
        ax.add_patch(Polygon([(x - 0.2, y - 0.2), (x + body.w + 0.2, y - 0.2), (x + body.w + 0.2, y + body.h + 0.1),
                              (x - 0.2, y + body.h + 0.1)], closed=True, fill=False, edgecolor="#cccccc"))
        body.paint(ax, x, y)

    return Block(body.w, body.h, paint)


__all__ = ["channel_flow", "column", "dots_on_grid", "image", "matrix", "overlap_1d", "polygon_note", "row",
           "volume"]
