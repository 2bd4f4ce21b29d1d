"""Fractional reads (deformable convolution, interpolation): each kernel tap's sampling point drawn at its real
fractional position — the coefficient-weighted mean of the input cells the tap reads (exact for bilinear
sampling) — with its strength (bilinear weights × a DCNv2 mask) as opacity, an arrow from the regular grid point
(the same layer with its side branch's output set to zero) and the bilinear neighbours shaded."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch

from .draw import INPUT, Block, Cell, cells, column, fmt, label, row, tap_colours, SMALL
from .planes import Plane
from .reads import Reads

NEIGHBOUR = "#9fb6cc"


def sampling_points(r: Reads, out_channel: int, position: Sequence[int], in_channel: int
                    ) -> list[tuple[int, np.ndarray, float]]:
    """(tap, fractional input position, strength Σ coefficients) for every tap that reads ``in_channel``."""
    if r.tap_map is None:
        return []
    coef = r.tap_map.coefficients[(slice(None), out_channel, *position, in_channel)]  # (T, *S)
    points = []
    grids = np.stack(np.meshgrid(*(np.arange(s) for s in coef.shape[1:]), indexing="ij"), -1)
    for t in range(coef.shape[0]):
        w = coef[t].numpy()
        total = float(w.sum())
        if total > 1e-9:
            points.append((t, (grids * w[..., None]).reshape(-1, grids.shape[-1]).sum(0) / total, total))
    return points


def _overlay(block: Block, draw) -> Block:
    def paint(ax: Axes, x: float, y: float) -> None:
        block.paint(ax, x, y)
        draw(ax, x, y)

    return Block(block.w, block.h, paint)


def irregular_input(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                    channels: Sequence[int], owner: dict[int, int] | None = None) -> Block:
    """Input planes with the sampling points of the highlighted output (2-D; other dims: shaded reads only);
    ``owner``: the output channel drawn on each input channel (default ``out_channel`` on all)."""
    plane = Plane(tuple(r.input_shape[1:]))
    colours = tap_colours(r.n_taps)
    tiles = []
    for c in channels:
        j = owner.get(c, out_channel) if owner else out_channel
        grid = plane.empty()
        read = (r.index[(j, *position, c)] != -1)
        strength = (r.tap_map.coefficients[(slice(None), j, *position, c)].abs().sum(0)
                    if r.tap_map is not None else read.double())
        for q in np.ndindex(*plane.size):
            rr, cc = plane.cell(q)
            text = fmt(float(r.x[(c, *q)])) if numbers else ""
            grid[rr][cc] = Cell(NEIGHBOUR, text, alpha=0.35 + 0.65 * min(1.0, float(strength[q]))) if read[q] \
                else Cell(INPUT, text)
        block = cells(grid)
        points = sampling_points(r, j, position, c) if len(plane.size) == 2 else []
        regular = dict(r.regular.window(tuple(position))) if r.regular is not None and r.regular.kind == "gather" \
            else {}

        def draw(ax: Axes, x: float, y: float, points=points, regular=regular) -> None:
            for t, p, strength in points:
                px, py = x + p[1] + 0.5, y + p[0] + 0.5
                if t in regular:
                    gy, gx = regular[t]
                    ax.plot(x + gx + 0.5, y + gy + 0.5, "o", markersize=5, markerfacecolor="white",
                            markeredgecolor="black", markeredgewidth=1.0, zorder=4)
                    ax.add_patch(FancyArrowPatch((x + gx + 0.5, y + gy + 0.5), (px, py), arrowstyle="-|>",
                                                 mutation_scale=9, color="#333333", linewidth=1.0, zorder=5,
                                                 shrinkA=2, shrinkB=7))
                alpha = max(0.15, min(1.0, strength))
                ax.plot(px, py, "o", markersize=15, markerfacecolor=colours[t][:3] + (alpha,),
                        markeredgecolor="black", markeredgewidth=0.8, zorder=6)
                ax.text(px, py + 0.03, str(t), fontsize=SMALL, ha="center", va="center", zorder=7)

        tiles.append(column([label(f"c{c}", SMALL), _overlay(block, draw)], gap=0.15))
    more = r.input_shape[0] - len(channels)
    lines = [row(tiles[i:i + 2], gap=0.8) for i in range(0, len(tiles), 2)]
    if more:
        lines.append(label(f"+ {more} more channels not drawn", SMALL))
    return column([label(f"INPUT {'×'.join(map(str, r.input_shape))}: sampling points", weight="bold"),
                   column(lines, gap=0.4)], gap=0.3)

