"""Fractional reads (deformable convolution, interpolation): each kernel tap's sampling point drawn at its real
fractional position — the coefficient-weighted mean of the input cells the tap reads (exact for bilinear
sampling) — with its strength (bilinear weights × a DCNv2 mask, a DCNv3 softmax weight) relative to the strongest
point of its plane as opacity (``relative_strengths``), an arrow from the regular grid point
(the same layer with its side branch's output set to zero) and the bilinear neighbours shaded. The plane keeps
small dots at the same cell size as the output; the cells around the points are drawn again enlarged beside it,
where every point is a dot at its exact place and its number sits in a disc placed clear of every dot, grid point,
arrow and other disc (``layout_points``), tied to its dot by a short leader, so no point hides another. Taps that
sample the same place (dots closer than half a dot's width, ``stacks``) are drawn as one dot ringed once per
further tap, a tag naming them beside it where no numbered discs are ("×2: 5, 8"), and in a line under the plane.
A tap that samples past the input's edge is placed from the layer's reads on the input extended with zeros
(``extended_points``), so it sits in or past the padding where it samples, on padding cells drawn for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import nn

from .draw import (EDGE, INPUT, PADDING, SMALL, UNREAD, Block, Cell, cells, column, fmt, label, row, tap_colours,
                   text_colour)
from .planes import Plane
from .reads import Reads
from .taps import EPS, extended_rows
from .window import Geometry

NEIGHBOUR = "#9fb6cc"
DISC = 0.62  # diameter of a numbered disc, in cells (13 pt at 0.3 in per cell)
PT = 1 / 72 / 0.3  # cells per point (0.3 in per cell)
GRID_R = 2.6 * PT  # a regular grid point's marker radius (5 pt marker, its edge)
DOT_PT, PLANE_DOT_PT = 4.0, 5.0  # a sampling point's marker size in the enlarged view, on the plane
DOT_R = 2.2 * PT  # an exact sampling point's dot (4 pt marker, its edge)
LINE_R = 1.2 * PT  # half an arrow's width (its head's half-width, 9 pt mutation scale)
CLEAR = 0.06  # white kept between a disc and anything else (cells)
RING = 4.0  # points added to a dot's diameter per further tap sampling the same place (a 2 pt coloured ring)
SAME = 0.5  # dots closer than this many diameters (one radius) hide each other: drawn as one stack of rings


def stacks(dots: np.ndarray, near: float) -> list[list[int]]:
    """Groups (≥ 2, indices ascending) of the (n, 2) ``dots`` that lie within ``near`` of another member (single
    linkage): points a reader could not tell apart, drawn as one stack."""
    dots = np.asarray(dots, float).reshape(-1, 2)
    parent = list(range(len(dots)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(dots)):
        for j in range(i + 1, len(dots)):
            if np.hypot(*(dots[i] - dots[j])) < near:
                parent[root(j)] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(dots)):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def ring_levels(dots: np.ndarray, diameter_pt: float) -> np.ndarray:
    """Per dot, its place in its stack (0: a lone dot, or the stack's centre): the stack's lowest tap is the dot,
    the k-th further tap a ring ``k·RING`` pt wider than it, drawn behind."""
    levels = np.zeros(len(dots), int)
    for group in stacks(dots, SAME * diameter_pt * PT):
        for k, i in enumerate(group):
            levels[i] = k
    return levels


def sampling_points(r: Reads, out_channel: int, position: Sequence[int], in_channel: int
                    ) -> list[tuple[int, np.ndarray, float]]:
    """(tap, fractional input position, strength Σ coefficients) for every tap that reads ``in_channel``: the
    coefficient-weighted mean of the cells it reads. A tap that reads past the input's edge is placed from its
    reads on the input extended with zeros (``extended_points``): where it samples, in or past the padding, not
    pulled onto the edge cell, and drawn even where it reads only zeros."""
    if r.tap_map is None:
        return []
    coef = r.tap_map.coefficients[(slice(None), out_channel, *position, in_channel)]  # (T, *S)
    exact = extended_points(r, [(out_channel, *position)])
    past = exact[:, 0, in_channel] if exact is not None else None  # (T, d + 1)
    points = []
    grids = np.stack(np.meshgrid(*(np.arange(s) for s in coef.shape[1:]), indexing="ij"), -1)
    for t in range(coef.shape[0]):
        w = coef[t].numpy()
        total = float(w.sum())
        if past is not None and past_the_edge(total, past[t]):
            points.append((t, past[t, :-1].copy(), float(past[t, -1])))
        elif total > 1e-9:
            points.append((t, (grids * w[..., None]).reshape(-1, grids.shape[-1]).sum(0) / total, total))
    return points


PAST = 1e-5  # a tap whose reads past the edge weigh more than this is placed from the extended input


def past_the_edge(total: float, past: np.ndarray) -> bool:
    """Whether a tap that reads ``total`` (Σ coefficients) on the input is placed from its row ``past`` (d + 1) of
    ``extended_points``: it reads there, and its reads past the edge weigh more than ``PAST`` (else the mean of its
    in-map reads is where it samples)."""
    return not np.isnan(past).any() and abs(float(past[-1]) - total) > PAST


EXTEND_TRIES = 3  # extensions tried, each twice as wide: a point farther out keeps the mean of its in-map reads
ROWS = 128  # output rows per extended pass (memory: ROWS × the extended input, per tap)


def extended_points(r: Reads, rows: Sequence[Sequence[int]]) -> np.ndarray | None:
    """Float (T, R, C_in, d + 1): per tap, output row (c_out, *o) of ``rows`` and input channel, the weighted mean
    position of its reads on the input extended with zeros (``taps.extended_rows``) — exactly where a bilinear tap
    samples, in or past the padding — and Σ coefficients (the bilinear weights × a mask, zeros read included); NaN
    where the tap reads nothing. None where the extension does not apply (no fitted regular window, a side branch
    that is not an output-sized map) or changes what the input's own cells are read with (checked on every row
    computed). Each row is computed once per ``Reads`` and only when asked for: a picture draws one output channel
    at a few positions, and extending every row ran the layer T + 1 times on all C_out·|O| of them."""
    cache = vars(r)
    if cache.get("_not_extended"):
        return None
    known: dict[tuple[int, ...], np.ndarray] = cache.setdefault("_extended_rows", {})
    wanted = [tuple(int(v) for v in row) for row in rows]
    missing = [row for row in dict.fromkeys(wanted) if row not in known]
    if missing:
        found = _extend(r, missing)
        if found is None:
            cache["_not_extended"] = True
            return None
        known.update(zip(missing, found.swapaxes(0, 1)))  # per row: (T, C_in, d + 1)
    if not wanted:
        return np.zeros((r.n_taps, 0, r.input_shape[0], len(r.input_shape)))
    return np.stack([known[row] for row in wanted], 1)


def _extend(r: Reads, rows: list[tuple[int, ...]]) -> np.ndarray | None:
    if r.tap_map is None:
        return None
    coefficients = r.tap_map.coefficients
    return extended_means(r.module, r.x, rows, r.regular, r.tap_map.parameter or None,
                          lambda chunk: torch.stack([coefficients[(slice(None), *row)] for row in chunk], 1))


def extended_means(module: nn.Module, x: torch.Tensor, rows: Sequence[tuple[int, ...]], regular: Geometry | None,
                   parameter: str | None, own: Callable[[Sequence[tuple[int, ...]]], torch.Tensor]
                   ) -> np.ndarray | None:
    """``extended_points`` of ``module`` on ``x`` (C_in, *S) for output rows (c_out, *o), its regular window
    ``regular`` (the side branches at zero) and kernel ``parameter``; ``own(chunk)`` (T, len(chunk), C_in, *S) are the
    coefficients those rows read on ``x`` itself (what the extension must keep). Float (T, R, C_in, d + 1), or None
    where the extension does not apply — what the explorer calls for the output it draws."""
    if regular is None or regular.kind != "gather":
        return None
    size = np.array(x.shape[1:])
    found: list[np.ndarray] = []
    for shift, stride, margin in _tries(regular):
        found, unresolved = [], False
        for start in range(0, len(rows), ROWS):
            chunk = list(rows[start:start + ROWS])
            coef = _extended(module, x, chunk, shift, stride, margin, size, parameter, own(chunk))
            if coef is None:
                return None
            points, open_ = _means(coef.double().numpy(), margin)
            found.append(points)
            unresolved |= open_
        if not unresolved:
            break
    return np.concatenate(found, 1)  # (T, rows, C_in, d + 1)


def extended_reach(module: nn.Module, x: torch.Tensor, regular: Geometry | None, parameter: str | None
                   ) -> tuple[tuple[int, int], ...] | None:
    """(before, after) cells per spatial dim past ``x``'s edge that some tap of some output reads on the input
    extended with zeros (``taps.extended_rows`` summed over every output, one pass per tap): the zeros a whole map's
    sampling points read, for a drawing whose planes keep one size. None where the extension does not apply."""
    if regular is None or regular.kind != "gather":
        return None
    d = x.dim() - 1
    size = np.array(x.shape[1:])
    try:
        own = extended_rows(module, x, None, [0] * d, [1] * d, parameter)  # the same sum on x itself
    except ValueError:
        return None
    if own is None:
        return None
    reach = tuple((0, 0) for _ in range(d))
    for shift, stride, margin in _tries(regular):
        coef = _extended(module, x, None, shift, stride, margin, size, parameter, own)
        if coef is None:
            return None
        hits = torch.nonzero((coef.abs() > EPS).flatten(0, 2).any(0)).numpy()  # read cells of the extended input
        if not len(hits):
            return reach
        lo, hi = hits.min(0), hits.max(0)
        reach = tuple((int(max(0, m - a)), int(max(0, b - m - n + 1))) for a, b, m, n in zip(lo, hi, margin, size))
        if (lo >= 1).all() and (hi <= size + 2 * margin - 2).all():  # clear of the extension's edge: all of it
            break
    return reach


def _tries(g: Geometry) -> Iterator[tuple[list[int], list[int], np.ndarray]]:
    """(shift, stride, margin) of each extension tried, each twice as wide as the last: whole output steps, so that
    windows move by whole cells, past the grid's reach and more."""
    stride = [max(1, abs(a)) for a in g.a]
    reach = max([lo for lo, _ in g.padding()] + [hi for _, hi in g.padding()]) + 2
    for attempt in range(EXTEND_TRIES):
        shift = [-(-reach * 2 ** attempt // a) for a in stride]
        yield shift, stride, np.array([k * a for k, a in zip(shift, stride)])


def _extended(module: nn.Module, x: torch.Tensor, rows: list[tuple[int, ...]] | None, shift: list[int],
              stride: list[int], margin: np.ndarray, size: np.ndarray, parameter: str | None, own: torch.Tensor
              ) -> torch.Tensor | None:
    """``taps.extended_rows``, or None where it does not apply or changes what the input's own cells are read with
    (``own``: the coefficients on x itself)."""
    try:
        coef = extended_rows(module, x, rows, shift, stride, parameter)
    except ValueError:  # no kernel parameter of its own (a footprint tap map)
        return None
    if coef is None:
        return None
    inside = coef[(..., *(slice(m, m + n) for m, n in zip(margin, size)))]
    if not torch.allclose(inside, own, atol=1e-5, rtol=1e-4):
        return None  # the extension changed the reads of the input's own cells: not a pure move
    return coef


def _means(coef: np.ndarray, margin: np.ndarray) -> tuple[np.ndarray, bool]:
    """Per (tap, row, channel) of ``coef`` (T, R, C, *S'), the reads' weighted mean position less ``margin`` and
    their total (NaN rows where a tap reads nothing or reaches the extended input's edge), and whether a tap was left
    unresolved (at the edge, or reading nothing where another tap of its row and channel reads)."""
    d = len(margin)
    spatial = coef.shape[3:]
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in spatial), indexing="ij"), -1).reshape(-1, d)
    flat = coef.reshape(*coef.shape[:3], -1)
    total = flat.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = flat @ grid / total[..., None]
    # a read lost past the extended edge pulls the mean onto the edge cell: at least a cell inside, all are kept
    clear = ((mean >= 1) & (mean <= np.array(spatial) - 2)).all(-1)
    reads = np.abs(total) > 1e-9
    resolved = reads & clear
    missing = (~resolved) & (reads | reads.any(0, keepdims=True))
    out = np.concatenate([mean - margin, total[..., None]], -1)
    out[~resolved] = np.nan
    return out, bool(missing.any())


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


@dataclass
class PointsLayout:
    """Where the enlarged view draws each tap (panel cells, (row, col)): its exact sampling point ``dots``, its
    regular grid point ``grid`` (NaN without one) and its numbered ``discs``."""

    dots: np.ndarray
    grid: np.ndarray
    discs: np.ndarray
    rings: np.ndarray | None = None  # per dot, its ring in its stack (``ring_levels``); None: no stacks
    # per stack drawn without discs: (text "×n: taps", anchor (row, col), direction (±1, ±1) the text extends in)
    tags: list[tuple[str, tuple[float, float], tuple[int, int]]] = field(default_factory=list)

    def dot_radii(self) -> np.ndarray:
        """Each dot's drawn radius (cells): a ring's outer edge for the further taps of a stack."""
        rings = np.zeros(len(self.dots)) if self.rings is None else self.rings
        return DOT_R + rings * RING / 2 * PT

    def obstacles(self) -> tuple[np.ndarray, np.ndarray]:
        """(centres (m, 2), radii (m,)) of everything a disc must not cover: dots (their rings included), grid
        points, arrows (sampled along their length, heads included)."""
        centres, radii = [self.dots, self.grid], [self.dot_radii(), np.full(len(self.grid), GRID_R)]
        for a, b in zip(self.grid, self.dots):
            if np.isnan(a).any():
                continue
            steps = max(2, int(np.ceil(np.hypot(*(b - a)) / LINE_R)))
            centres.append(a + (b - a) * np.linspace(0, 1, steps)[:, None])
            radii.append(np.full(steps, LINE_R))
        c, r = np.concatenate(centres), np.concatenate(radii)
        keep = ~np.isnan(c).any(1)
        return c[keep], r[keep]


def _overlap(at: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """How far a disc at ``at`` reaches into the obstacles (0: clear of all)."""
    if not len(centres):
        return 0.0
    return float(np.clip(DISC / 2 + radii + CLEAR - np.hypot(*(centres - at).T), 0, None).max())


def layout_points(dots: np.ndarray, grid: np.ndarray, bounds: tuple[float, float] | None = None) -> PointsLayout:
    """Discs for taps at ``dots`` (n, 2) with grid points ``grid`` (n, 2; NaN rows without one), inside ``bounds``
    (rows, cols) when given: tap by tap, the nearest place to its dot (rings of growing radius, starting past the
    arrow's head) clear of every obstacle (``PointsLayout.obstacles``) and of the discs placed before; where none
    is clear within two cells, the place that overlaps least."""
    dots, grid = np.asarray(dots, float).reshape(-1, 2), np.asarray(grid, float).reshape(-1, 2)
    layout = PointsLayout(dots, grid, dots.copy(), ring_levels(dots, DOT_PT))
    centres, radii = layout.obstacles()
    outward = np.where(np.isnan(grid), dots - dots.mean(0, keepdims=True), dots - grid)
    turns = np.angle(np.exp(1j * np.linspace(0, 2 * np.pi, 24, endpoint=False)))
    turns = turns[np.argsort(np.abs(turns), kind="stable")]  # straight ahead first, then its neighbours
    rings = DISC / 2 + DOT_R + CLEAR + np.arange(0, 2.0, 0.08)
    lo = np.full(2, DISC / 2)
    hi = np.array(bounds, float) - DISC / 2 if bounds is not None else np.full(2, np.inf)
    for i, dot in enumerate(dots):
        # "ahead" is the arrow's direction: a disc there continues the arrow, past its head
        ahead = np.arctan2(*outward[i]) if np.hypot(*outward[i]) > 1e-6 else 2.399963 * i
        steps = np.stack([np.sin(ahead + turns), np.cos(ahead + turns)], -1)
        best, best_cost = dot, np.inf
        for r in rings:
            for step in steps:
                at = np.clip(dot + r * step, lo, hi)
                cost = max(_overlap(at, centres, radii), _overlap(at, layout.discs[:i], np.full(i, DISC / 2)))
                if cost < best_cost:
                    best, best_cost = at, cost
                if cost == 0.0:
                    break
            if best_cost == 0.0:
                break
        layout.discs[i] = best
        leader = dot + (best - dot) * np.linspace(0, 1, 8)[:, None]  # later discs keep off this leader too
        centres, radii = np.concatenate([centres, leader]), np.concatenate([radii, np.full(8, LINE_R / 2)])
    return layout


def stack_tags(layout: PointsLayout, taps: Sequence[int], groups: Sequence[Sequence[int]], dot_pt: float,
               bounds: tuple[float, float] | None = None) -> list[tuple[str, tuple[float, float], tuple[int, int]]]:
    """A tag "×n: a, b, …" naming the taps of each stack (``groups``: indices into ``layout.dots``), at the diagonal
    of its ring (up-right first) where its box covers the fewest dots, grid points and tags placed before, inside
    ``bounds`` (rows, cols) when given: a tag must not hide the points it names, nor another tag."""
    centres, radii = layout.obstacles()
    boxes: list[np.ndarray] = []
    tags = []
    for group in groups:
        text = f"×{len(group)}: {', '.join(str(taps[i]) for i in group)}"
        drawn = label(text, SMALL, "bold")
        w, h = drawn.w, drawn.h
        outer = (dot_pt + RING * (len(group) - 1)) / 2 * PT
        centre = layout.dots[list(group)].mean(0)
        best, best_cost = None, np.inf
        for sy, sx in ((-1, 1), (1, 1), (-1, -1), (1, -1)):
            at = centre + np.array([sy, sx]) * outer * 0.8
            box = np.array([min(at[0], at[0] + sy * h), min(at[1], at[1] + sx * w), h, w])  # row0, col0, h, w
            near = (centres[:, 0] + radii > box[0]) & (centres[:, 0] - radii < box[0] + h) & \
                   (centres[:, 1] + radii > box[1]) & (centres[:, 1] - radii < box[1] + w)
            cost = float(near.sum()) + 10.0 * sum(_boxes_meet(box, b) for b in boxes)
            if bounds is not None and (box[0] < 0 or box[1] < 0 or box[0] + h > bounds[0] or box[1] + w > bounds[1]):
                cost += 0.5  # past the plane's edge: over the labels around it
            if cost < best_cost:
                best, best_cost = (at, box, (sy, sx)), cost
        at, box, direction = best
        boxes.append(box)
        tags.append((text, (float(at[0]), float(at[1])), direction))
    return tags


def _boxes_meet(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether boxes (row0, col0, h, w) overlap."""
    return bool(a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3])


FAINTEST = 0.2  # the opacity of a point whose strength is ~0: its disc still shows its tap's hue and its ring
OPACITY_NOTE = "opacity: a point's weight (bilinear × mask) ÷ the largest on its plane"
PLAIN_OPACITY_NOTE = "opacity: a point's weight (bilinear) ÷ the largest on its plane"


def opacity_note(module: nn.Module) -> str:
    """What a point's opacity is (``relative_strengths``): with the mask for a layer that modulates its points
    (``modulated``: DCN v2, DCNv3's softmax), without it for one that does not (DCN v1, interpolation)."""
    return OPACITY_NOTE if getattr(module, "modulated", False) else PLAIN_OPACITY_NOTE


def relative_strengths(points: Sequence[tuple[int, np.ndarray, float]]) -> np.ndarray:
    """Per point, its opacity: strength / the largest strength among ``points`` (one output's taps on one input
    channel: one group), floored at ``FAINTEST``. Relative, so a DCNv2 mask of .05 reads faint beside one of .95,
    and DCNv3's softmax weights (each ~1/9) read against each other instead of all fading to white."""
    strength = np.array([abs(float(w)) for _, _, w in points])
    top = float(strength.max()) if len(strength) else 0.0
    if top <= 1e-12:
        return np.ones(len(strength))
    return np.maximum(FAINTEST, strength / top)


def varied(points: Sequence[tuple[int, np.ndarray, float]]) -> bool:
    """Some point is drawn fainter than the strongest (``relative_strengths`` below 0.99)."""
    return bool(len(points)) and float(relative_strengths(points).min()) < 0.99


def _blend(colour, alpha: float) -> tuple[float, float, float]:
    """``colour`` at opacity ``alpha`` over white, as an opaque colour: a disc shows its strength yet hides nothing
    behind it (there is nothing behind it)."""
    return tuple(alpha * c + (1 - alpha) for c in colour[:3])


def _points_layer(points, regular, colours, scale: float, origin: tuple[float, float], numbered: bool,
                  bounds: tuple[float, float] | None = None, name: str = "points"):
    """Paint the regular grid points, arrows and sampling points; ``scale`` cells per input cell, ``origin`` the
    input cell drawn at (0, 0). ``numbered``: exact dots with arrows, numbered discs placed clear of everything
    (``layout_points``) with a leader to their dot. The artists carry gids "<name> point <t>", "<name> grid <t>",
    "<name> disc <t>", "<name> tag <k>" (what the drawing says, for tests and SVG readers)."""
    oy, ox = origin
    dots = np.array([((p[0] - oy + 0.5) * scale, (p[1] - ox + 0.5) * scale) for _, p, _ in points]).reshape(-1, 2)
    grid = np.array([((regular[t][0] - oy + 0.5) * scale, (regular[t][1] - ox + 0.5) * scale) if t in regular
                     else (np.nan, np.nan) for t, _, _ in points]).reshape(-1, 2)
    dot_pt = DOT_PT if numbered else PLANE_DOT_PT
    layout = layout_points(dots, grid, bounds) if numbered else PointsLayout(dots, grid, dots,
                                                                            ring_levels(dots, dot_pt))
    groups = stacks(dots, SAME * dot_pt * PT)
    stacked = {t: any(i in g for g in groups) for i, (t, _, _) in enumerate(points)}
    if not numbered:  # the discs name every tap; elsewhere a tag beside each stack does
        layout.tags = stack_tags(layout, [t for t, _, _ in points], groups, dot_pt, bounds)

    opacity = relative_strengths(points)

    def draw(ax: Axes, x: float, y: float) -> None:
        for k, (text, (ty, tx), (sy, sx)) in enumerate(layout.tags):
            ax.text(x + tx, y + ty, text, fontsize=SMALL, weight="bold", ha="left" if sx > 0 else "right",
                    va="top" if sy > 0 else "bottom", zorder=9.5, gid=f"{name} tag {k}",
                    bbox={"boxstyle": "round,pad=0.12", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
        for (t, p, strength), (py, px), (gy, gx), (dy, dx), level, alpha in zip(points, layout.dots, layout.grid,
                                                                                layout.discs, layout.rings, opacity):
            if not np.isnan(gy):
                # a hollow ring drawn over the dots: a sampling point a hair from its grid point shows through
                ax.plot(x + gx, y + gy, "o", markersize=5 if numbered else 3.5, markerfacecolor="none",
                        markeredgecolor="black", markeredgewidth=1.0, zorder=7.5, gid=f"{name} grid {t}")
                # an arrow too short for its head (~11 pt with the markers' margins) would be a dark blob: a line
                short = numbered and np.hypot(px - gx, py - gy) < 11 * PT
                ax.add_patch(FancyArrowPatch((x + gx, y + gy), (x + px, y + py), arrowstyle="-" if short else "-|>",
                                             mutation_scale=9 if numbered else 6, color="#333333",
                                             linewidth=1.0 if numbered else 0.7, zorder=5, shrinkA=2.5,
                                             shrinkB=2.6 if numbered else 2))
            # a stack's further taps as wider rings behind its first: every tap that samples this place shows.
            # Opaque (strength blended over white), or a ring behind would show through a faint dot.
            ax.plot(x + px, y + py, "o", markersize=dot_pt + RING * level,
                    markerfacecolor=_blend(colours[t], alpha) if stacked[t] else colours[t][:3] + (alpha,),
                    markeredgecolor="black", markeredgewidth=0.5 if not numbered else 0.8, zorder=7 - 0.01 * level,
                    gid=f"{name} point {t}")
            if not numbered:
                continue
            ax.plot([x + px, x + dx], [y + py, y + dy], color="#333333", linewidth=0.6, zorder=6)  # the leader
            # the disc names the tap in its kernel colour at the point's relative strength, blended over white so
            # that it stays opaque (a DCNv2 mask of .05 reads faint beside .95; at full colour both looked alike)
            face = _blend(colours[t], alpha)
            ax.plot(x + dx, y + dy, "o", markersize=13, markerfacecolor=face,
                    markeredgecolor="black", markeredgewidth=0.8, zorder=8, gid=f"{name} disc {t}")
            ax.text(x + dx, y + dy + 0.03, str(t), fontsize=SMALL, ha="center", va="center", zorder=9,
                    color=text_colour(face))

    return draw, layout


def stack_note(points: Sequence[tuple[int, np.ndarray, float]]) -> str | None:
    """One line naming the taps that sample the same place at the plane's scale (``stacks``), or None."""
    dots = np.array([p[:2] for _, p, _ in points], float).reshape(-1, 2)
    parts = []
    for group in stacks(dots, SAME * PLANE_DOT_PT * PT):
        taps = [str(points[i][0]) for i in group]
        spread = max(np.hypot(*(dots[i] - dots[j])) for i in group for j in group)
        where = "the same place" if spread < 5e-3 else f"places {spread:.2f} cell apart"
        parts.append(f"×{len(group)}: taps {', '.join(taps[:-1])} and {taps[-1]} sample {where}")
    return "; ".join(parts) or None


ZOOM_CELLS = 9.0  # the zoomed panel's larger side, in cells
MIN_ZOOM = 1.5  # at least this enlargement: a disc then covers under half a cell
MAX_REGION = 8  # a wider region is numbered on the plane itself (its zoom would pass the picture's size budget)


def irregular_input(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                    channels: Sequence[int], zoom: bool = True, room_for: Sequence[Sequence[int]] = ()) -> Block:
    """Input planes with the sampling points of the highlighted output (2-D; other dims: shaded reads only). A
    plane it does not read (``r.channel_links()``: a grouped layer's other groups) is drawn grey, captioned
    '(not read)', with no points: another filter's points there would read as this output's. With ``zoom`` the
    cells around the points are drawn again, enlarged, with the numbered points (the plane keeps small dots).
    ``room_for``: other output positions (an animation's frames) whose zoom and notes this drawing is as large as,
    so that nothing moves from one frame to the next."""
    size = tuple(r.input_shape[1:])
    links = r.channel_links()[out_channel] > 0
    pads = margins(r, [position, *room_for], out_channels=[out_channel])
    shift = np.array([lo for lo, _ in pads], float)
    plane = Plane(tuple(n + lo + hi for n, (lo, hi) in zip(size, pads)))

    def placed(j: int, at: Sequence[int], c: int) -> tuple[list, dict]:
        """The sampling points and regular grid points of output ``at``, in the drawn plane's cells."""
        regular = dict(r.regular.window(tuple(at))) if r.regular is not None and r.regular.kind == "gather" else {}
        points = [(t, p + shift, w) for t, p, w in sampling_points(r, j, at, c)] if len(size) == 2 else []
        return points, {t: tuple(float(v) + o for v, o in zip(q, shift)) for t, q in regular.items()}

    colours = tap_colours(r.n_taps)
    tiles = []
    faded = False  # some frame draws a point fainter than its plane's strongest: the opacity is said
    for c in channels:
        j = out_channel
        grid = plane.empty()
        if not bool(links[c]):
            for at in np.ndindex(*plane.size):
                q = tuple(int(v - lo) for v, (lo, _) in zip(at, pads))
                rr, cc = plane.cell(at)
                inside = all(0 <= v < n for v, n in zip(q, size))
                grid[rr][cc] = Cell(UNREAD, fmt(float(r.x[(c, *q)])) if numbers else "") if inside else \
                    Cell(PADDING, "0" if numbers else "", dashed=True)
            tiles.append(column([label(f"c{c} (not read)", SMALL), cells(grid)], gap=0.15))
            continue
        read = (r.index[(j, *position, c)] != -1)
        strength = (r.tap_map.coefficients[(slice(None), j, *position, c)].abs().sum(0)
                    if r.tap_map is not None else read.double())
        fills: dict[tuple[int, ...], Cell] = {}
        for at in np.ndindex(*plane.size):
            q = tuple(int(v - lo) for v, (lo, _) in zip(at, pads))
            rr, cc = plane.cell(at)
            if not all(0 <= v < n for v, n in zip(q, size)):  # the zeros a sampling point past the edge reads
                grid[rr][cc] = Cell(PADDING, "0" if numbers else "", dashed=True)
            else:
                text = fmt(float(r.x[(c, *q)])) if numbers else ""
                grid[rr][cc] = Cell(NEIGHBOUR, text, alpha=0.35 + 0.65 * min(1.0, float(strength[q]))) if read[q] \
                    else Cell(INPUT, text)
            fills[at] = grid[rr][cc]
        points, regular = placed(j, position, c)
        region = zoom_region(points, regular, plane.size) if points and zoom else None
        note = stack_note(points)
        others = [placed(j, p, c) for p in room_for]
        faded = faded or varied(points) or any(varied(q) for q, _ in others)
        notes = [label(n, SMALL) for n in [note, *(stack_note(q) for q, _ in others)] if n]
        if region is not None:  # as large as every frame's zoom: the region grown about its own points
            regions = [region, *(zoom_region(q, g, plane.size) for q, g in others if q)]
            nr, nc = max(g[2] for g in regions), max(g[3] for g in regions)
            region = (min(max(0, region[0] - (nr - region[2]) // 2), plane.size[0] - nr),
                      min(max(0, region[1] - (nc - region[3]) // 2), plane.size[1] - nc), nr, nc)
        side = max(region[2], region[3]) if region else 0
        scale = max(MIN_ZOOM, ZOOM_CELLS / side) if region else 1.0
        # the note's room kept in every frame (blank where this one has none)
        noted = [Block(max(n.w for n in notes), max(n.h for n in notes), label(note, SMALL).paint if note
                       else (lambda ax, x, y: None))] if notes else []
        if region is None or side > MAX_REGION:  # number the points on the plane itself
            draw, _ = _points_layer(points, regular, colours, 1.0, (0.0, 0.0), True, plane.size[:2],
                                    f"c{c} plane")
            tiles.append(column([label(f"c{c}", SMALL), _overlay(cells(grid), draw), *noted], gap=0.15))
            continue
        r0, c0, nr, nc = region
        small, _ = _points_layer(points, regular, colours, 1.0, (0.0, 0.0), False, plane.size[:2], f"c{c} plane")

        def frame(ax: Axes, x: float, y: float, small=small, r0=r0, c0=c0, nr=nr, nc=nc, c=c) -> None:
            small(ax, x, y)
            ax.add_patch(Rectangle((x + c0, y + r0), nc, nr, fill=False, edgecolor="black", linewidth=1.2,
                                   linestyle=(0, (3, 2)), zorder=9, gid=f"c{c} zoom frame"))

        big, _ = _points_layer(points, regular, colours, scale, (float(r0), float(c0)), True,
                               (nr * scale, nc * scale), f"c{c} zoom")

        def enlarged(ax: Axes, x: float, y: float, r0=r0, c0=c0, nr=nr, nc=nc, scale=scale, fills=fills,
                     big=big, c=c) -> None:
            for a in range(nr):
                for b in range(nc):
                    cell = fills[(r0 + a, c0 + b)]
                    rgba = to_rgba(cell.fill)
                    ax.add_patch(Rectangle((x + b * scale, y + a * scale), scale, scale, facecolor=rgba[:3] + (
                        rgba[3] * cell.alpha,), edgecolor=EDGE, linewidth=0.6,
                        linestyle=(0, (3, 2)) if cell.dashed else "-", gid=f"c{c} zoom cell {a},{b}"))
            big(ax, x, y)

        zoomed = Block(nc * scale, nr * scale, enlarged)
        both = row([column([label(f"c{c}", SMALL), _overlay(cells(grid), frame)], gap=0.15),
                    column([label(f"zoom ×{scale:.1f} (dashed frame)", SMALL), zoomed], gap=0.15)], gap=0.8)
        tiles.append(column([both, *noted], gap=0.15))
    lines = [row(tiles[i:i + 2], gap=0.8) for i in range(0, len(tiles), 2)]
    which = f" (plane c{channels[0]})" if len(channels) == 1 and r.input_shape[0] > 1 else ""
    reach = tuple(n + lo + hi for n, (lo, hi) in zip(size, margins(r, [position, *room_for], points=False)))
    padded = f", padded to {'×'.join(map(str, reach))}" if reach != size else ""
    if plane.size != reach:  # the zeros past the padding, drawn for the points that sample there
        padded += f"{',' if padded else ''} zeros drawn to {'×'.join(map(str, plane.size))}"
    said = [label(opacity_note(r.module), SMALL)] if faded else []  # under the planes: they stay level with a v1 picture's
    return column([label(f"INPUT {'×'.join(map(str, r.input_shape))}{which}{padded}: sampling points",
                         weight="bold"), column(lines, gap=0.4), *said], gap=0.3)


def margins(r: Reads, positions: Sequence[Sequence[int]], points: bool = True,
            out_channels: Sequence[int] | None = None) -> tuple[tuple[int, int], ...]:
    """(before, after) padding cells to draw per spatial dim (2-D): every cell the regular grid of the outputs at
    ``positions`` reaches past the input's edge (a border output's taps sit in the zero padding), and with
    ``points`` the cells around every sampling point of theirs (``extended_points``, of ``out_channels`` — default
    all — on any input channel: the zeros a point past the edge reads). An animation passes all its frames'
    positions, so that its planes keep one size."""
    size = r.input_shape[1:]
    pads = [[0, 0] for _ in size]
    if len(size) != 2 or r.regular is None or r.regular.kind != "gather":
        return tuple((0, 0) for _ in size)
    reached = [q for p in positions for _, q in r.regular.window(tuple(p))]
    channels = range(r.output_shape[0]) if out_channels is None else out_channels
    exact = extended_points(r, [(j, *p) for j in channels for p in positions]) if points else None
    if exact is not None and len(positions):
        found = exact[..., :-1].reshape(-1, 2)
        found = found[~np.isnan(found).any(1)]
        if len(found):  # the cells a point's bilinear neighbours sit on
            reached += [np.floor(found.min(0)).astype(int), np.ceil(found.max(0)).astype(int)]
    for q in reached:
        for d, v in enumerate(q):
            pads[d] = [max(pads[d][0], -int(v)), max(pads[d][1], int(v) - size[d] + 1)]
    return tuple((lo, hi) for lo, hi in pads)
