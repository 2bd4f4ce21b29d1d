"""Fractional reads (deformable convolution, interpolation): each kernel tap's sampling point drawn at its real
fractional position — the coefficient-weighted mean of the input cells the tap reads (exact for bilinear
sampling) — with its strength (bilinear weights × a DCNv2 mask) as opacity, an arrow from the regular grid point
(the same layer with its side branch's output set to zero) and the bilinear neighbours shaded. Points that fall
close together keep their exact position (a small dot, where the arrow ends) but their numbered discs are pushed
apart (``spread``) and tied to the dot by a leader line, so no sampling point hides another; the cells around the
points are drawn again enlarged beside the plane (the plane keeps small dots at the same cell size as the
output)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch, Rectangle

from .draw import EDGE, INPUT, SMALL, Block, Cell, cells, column, fmt, label, row, tap_colours
from .planes import Plane
from .reads import Reads

NEIGHBOUR = "#9fb6cc"
DISC = 0.62  # diameter of a numbered disc, in cells (13 pt at 0.3 in per cell)
MIN_GAP = 0.7  # discs' centres at least this far apart (cells)


def _part(pos: np.ndarray, min_gap: float) -> bool:
    """One pass pushing apart every pair of labels closer than ``min_gap``; True if any moved."""
    moved = False
    for i in range(len(pos)):
        for j in range(i + 1, len(pos)):
            d = pos[j] - pos[i]
            dist = float(np.hypot(*d))
            if dist >= min_gap - 1e-9:
                continue
            if dist < 1e-6:
                angle = 2.399963 * (i + 1) + 0.7 * j  # golden-angle directions: coincident points part ways
                d, dist = np.array([np.sin(angle), np.cos(angle)]), 1.0
            push = (min_gap - min(dist, min_gap)) / 2 + 1e-3
            pos[i] -= d / dist * push
            pos[j] += d / dist * push
            moved = True
    return moved


def spread(points: np.ndarray, min_gap: float = MIN_GAP, iterations: int = 300) -> np.ndarray:
    """Positions (n, 2) for labels of ``points`` (n, 2): each starts on its point; pairs closer than ``min_gap``
    are pushed apart along the line between them (coincident ones at fixed angles) — always, until none is — and a
    label is moved off another point it would cover (within ``min_gap / 2``) where that leaves room."""
    anchors = np.asarray(points, dtype=float)
    pos = anchors.copy()
    for _ in range(iterations):
        moved = _part(pos, min_gap)
        for i in range(len(pos)):
            for j in range(len(anchors)):
                d = pos[i] - anchors[j]
                dist = float(np.hypot(*d))
                if i == j or dist >= min_gap / 2 - 1e-9 or float(np.hypot(*(anchors[i] - anchors[j]))) < 1e-6:
                    continue
                if dist < 1e-6:
                    d, dist = np.array([1.0, 0.0]), 1.0
                pos[i] += d / dist * (min_gap / 2 - dist + 1e-3)
                moved = True
        if not moved:
            break
    while _part(pos, min_gap):  # labels never overlap, whatever the points they cover
        pass
    return pos


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


def zoom_region(points: Sequence[tuple[int, np.ndarray, float]], regular: dict, size: Sequence[int]
                ) -> tuple[int, int, int, int]:
    """(row0, col0, rows, cols): the cells around every sampling point and regular grid point (half a cell of
    margin), inside the plane."""
    spots = [p[:2] for _, p, _ in points] + [np.array(q, dtype=float) for q in regular.values()]
    lo = np.floor(np.min(spots, axis=0) - 0.5).astype(int)
    hi = np.ceil(np.max(spots, axis=0) + 0.5).astype(int)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array(size[:2]) - 1)
    return int(lo[0]), int(lo[1]), int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)


def _points_layer(points, regular, colours, scale: float, origin: tuple[float, float], numbered: bool):
    """Paint the regular grid points, arrows and sampling points; ``scale`` cells per input cell, ``origin`` the
    input cell drawn at (0, 0); numbered discs pushed apart so none hides another."""
    oy, ox = origin
    spots = np.array([(p[0] - oy, p[1] - ox) for _, p, _ in points]) * scale if points else np.zeros((0, 2))
    discs = spread(spots + scale / 2) if numbered else spots + scale / 2

    def draw(ax: Axes, x: float, y: float) -> None:
        for (t, p, strength), d in zip(points, discs):
            px, py = x + (p[1] - ox + 0.5) * scale, y + (p[0] - oy + 0.5) * scale
            dx, dy = x + d[1], y + d[0]
            moved = abs(dx - px) + abs(dy - py) > 0.05
            if t in regular:
                gy, gx = regular[t]
                sx, sy = x + (gx - ox + 0.5) * scale, y + (gy - oy + 0.5) * scale
                ax.plot(sx, sy, "o", markersize=5 if numbered else 3.5, markerfacecolor="white",
                        markeredgecolor="black", markeredgewidth=1.0, zorder=4)
                ax.add_patch(FancyArrowPatch((sx, sy), (px, py), arrowstyle="-|>", mutation_scale=9 if numbered else 6,
                                             color="#333333", linewidth=1.0 if numbered else 0.7, zorder=5,
                                             shrinkA=2, shrinkB=2 if moved or not numbered else 7))
            alpha = max(0.15, min(1.0, strength))
            if not numbered:
                ax.plot(px, py, "o", markersize=5, markerfacecolor=colours[t][:3] + (alpha,), markeredgecolor="black",
                        markeredgewidth=0.5, zorder=7)
                continue
            if moved:  # the disc was pushed aside: a leader line to the exact point
                ax.plot([px, dx], [py, dy], color="#333333", linewidth=0.7, zorder=6)
                ax.plot(px, py, "o", markersize=3.5, markerfacecolor="black", markeredgecolor="white",
                        markeredgewidth=0.6, zorder=8)
            ax.plot(dx, dy, "o", markersize=13, markerfacecolor=colours[t][:3] + (alpha,),
                    markeredgecolor="black", markeredgewidth=0.8, zorder=7)
            ax.text(dx, dy + 0.03, str(t), fontsize=SMALL, ha="center", va="center", zorder=9)

    return draw, discs


ZOOM_CELLS = 9.0  # the zoomed panel's larger side, in cells


def irregular_input(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                    channels: Sequence[int], owner: dict[int, int] | None = None, zoom: bool = True) -> Block:
    """Input planes with the sampling points of the highlighted output (2-D; other dims: shaded reads only);
    ``owner``: the output channel drawn on each input channel (default ``out_channel`` on all). With ``zoom`` the
    cells around the points are drawn again, enlarged, with the numbered points (the plane keeps small dots)."""
    plane = Plane(tuple(r.input_shape[1:]))
    colours = tap_colours(r.n_taps)
    tiles = []
    for c in channels:
        j = owner.get(c, out_channel) if owner else out_channel
        grid = plane.empty()
        read = (r.index[(j, *position, c)] != -1)
        strength = (r.tap_map.coefficients[(slice(None), j, *position, c)].abs().sum(0)
                    if r.tap_map is not None else read.double())
        fills: dict[tuple[int, ...], Cell] = {}
        for q in np.ndindex(*plane.size):
            rr, cc = plane.cell(q)
            text = fmt(float(r.x[(c, *q)])) if numbers else ""
            grid[rr][cc] = Cell(NEIGHBOUR, text, alpha=0.35 + 0.65 * min(1.0, float(strength[q]))) if read[q] \
                else Cell(INPUT, text)
            fills[q] = grid[rr][cc]
        points = sampling_points(r, j, position, c) if len(plane.size) == 2 else []
        regular = dict(r.regular.window(tuple(position))) if r.regular is not None and r.regular.kind == "gather" \
            else {}
        region = zoom_region(points, regular, plane.size) if points and zoom else None
        scale = ZOOM_CELLS / max(region[2], region[3]) if region else 1.0
        if region is None or scale < 1.3:  # nothing to gain: number the points on the plane itself
            draw, _ = _points_layer(points, regular, colours, 1.0, (0.0, 0.0), True)
            tiles.append(column([label(f"c{c}", SMALL), _overlay(cells(grid), draw)], gap=0.15))
            continue
        r0, c0, nr, nc = region
        small, _ = _points_layer(points, regular, colours, 1.0, (0.0, 0.0), False)

        def frame(ax: Axes, x: float, y: float, small=small, r0=r0, c0=c0, nr=nr, nc=nc) -> None:
            small(ax, x, y)
            ax.add_patch(Rectangle((x + c0, y + r0), nc, nr, fill=False, edgecolor="black", linewidth=1.2,
                                   linestyle=(0, (3, 2)), zorder=9))

        big, _ = _points_layer(points, regular, colours, scale, (float(r0), float(c0)), True)

        def enlarged(ax: Axes, x: float, y: float, r0=r0, c0=c0, nr=nr, nc=nc, scale=scale, fills=fills,
                     big=big) -> None:
            for a in range(nr):
                for b in range(nc):
                    cell = fills[(r0 + a, c0 + b)]
                    rgba = to_rgba(cell.fill)
                    ax.add_patch(Rectangle((x + b * scale, y + a * scale), scale, scale, facecolor=rgba[:3] + (
                        rgba[3] * cell.alpha,), edgecolor=EDGE, linewidth=0.6))
            big(ax, x, y)

        zoomed = Block(nc * scale, nr * scale, enlarged)
        tiles.append(row([column([label(f"c{c}", SMALL), _overlay(cells(grid), frame)], gap=0.15),
                          column([label(f"zoom ×{scale:.1f} (dashed frame)", SMALL), zoomed], gap=0.15)],
                         gap=0.8))
    lines = [row(tiles[i:i + 2], gap=0.8) for i in range(0, len(tiles), 2)]
    which = f" (plane c{channels[0]})" if len(channels) == 1 and r.input_shape[0] > 1 else ""
    return column([label(f"INPUT {'×'.join(map(str, r.input_shape))}{which}: sampling points", weight="bold"),
                   column(lines, gap=0.4)], gap=0.3)
