"""The picture of one layer step (a conv, a stage of a composite) for one highlighted output element:

kernel grid (the highlighted filter on the input plane drawn, taps in their own colours) → that input plane at
the same cell size as the output, padding cells dashed, each cell read by the highlighted output coloured by
the tap that reads it (so the flip, dilation gaps and the transposed pattern show) → the output plane with that
element marked → the channel wiring (``wiring``): which input planes feed which output planes, every channel.
One or two planes are drawn in full (``planes``); the wiring summarises the others, so the picture keeps to the
size budget (``layout``).

Where the step's channel pairs read windows of different shapes (MixConv's groups, HetConv's k×k and 1×1, a
selective kernel's dilated branch: ``windows.window_groups``) each window gets its own kernel frame and input
plane, side by side. A kernel with more taps than colours can tell apart (a global or large kernel) is drawn as
its weights (signed colours); one that reads the whole map is set beside average pooling's uniform weights.
A scatter layer (transposed conv) is drawn as its direct form: the input, then zeros inserted and padding, read
by the flipped kernel, then the larger output with the number of input cells summed into each output cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import torch
import torch.nn.functional as F

from .draw import (INPUT, MUTED, OTHER, OUTPUT, PADDING, SMALL, UNREAD, ZERO, Block, Cell, arrow, cells, column, fmt,
                   label, row, signed_cells, swatch_legend, tap_colours, text_size)
from .irregular import NEIGHBOUR, irregular_input, margins, opacity_note
from .layout import BUDGET, flow
from .linear import linear_wiring
from .planes import Plane, mark, planes_block
from .reads import NO_TAP, Reads
from .taps import side_modules
from .window import Geometry, drawn_padding, unread_after
from .windows import WindowGroup, copies, window_groups
from .wiring import Colouring, colour_channels, group_colour, pattern_block, wiring_block

MAX_PLANES = 4  # planes drawn in numbers mode (the numbers are the point)
MANY_TAPS = 49  # above this (larger than 7×7) a kernel is drawn as its weights, not as tap colours


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape))


def read_channels(r: Reads, j: int) -> list[int]:
    """The input channels output channel ``j`` reads."""
    return [int(c) for c in (r.channel_links()[j] > 0).nonzero().flatten()]


def unread_text(r: Reads, out_channel: int, channels: Sequence[int]) -> str:
    """'filter 0 has no weights\non c2, c3' for the drawn channels output ``out_channel`` does not read (a grouped
    conv's other groups), '' when it reads them all."""
    reads = set(read_channels(r, out_channel))
    unread = [f"c{c}" for c in channels if c not in reads]
    return f"filter {out_channel} has no weights\non {', '.join(unread)}" if unread else ""


def weights_block(values: np.ndarray, scale: float, caption: str) -> Block:
    """A kernel's weights as signed colours (red +, blue −) with the scale said."""
    return column([label(caption, SMALL), cells(signed_cells(values, scale))], gap=0.15)


def scale_bar(scale: float) -> Block:
    """−s … 0 … +s in the signed colours."""
    from .draw import signed_colour

    steps = [-1.0, -0.5, 0.0, 0.5, 1.0]
    bar = cells([[Cell(signed_colour(v * scale, scale)) for v in steps]], SMALL)
    return row([label(f"−{fmt(scale)}", SMALL), bar, label(f"+{fmt(scale)}", SMALL)], gap=0.2, align="center")


def mirrored_dims(g: Geometry | None) -> tuple[int, ...]:
    """The dims along which the window's taps run against reading order, i.e. the kernel is applied flipped: a
    gather reading q = a·o + b·t + c with b < 0 (true convolution, a stride-1 transposed conv), a scatter
    o = a·q + b·t + c with b > 0 (a strided transposed conv: its direct form reads tap k−1−u at offset u of the
    zero-inserted input, and input q reaches o through t = (o − a·q − c)/b, falling as q rises). Dims of one tap
    never flip."""
    if g is None:
        return ()
    against = -1 if g.kind == "gather" else 1
    return tuple(d for d, (b, k) in enumerate(zip(g.b, g.kernel_shape)) if k > 1 and b * against > 0)


def flip_note(g: Geometry | None) -> str:
    """'applied rotated 180°' (1-D 'applied reversed', 3-D 'applied flipped in every dim') when the window meets
    the taps mirrored in every dim the kernel spans (``mirrored_dims``); 'applied with its rows reversed' when in
    some; '' when in none — the note for any picture whose tap colours are drawn mirrored."""
    dims = mirrored_dims(g)
    if g is None or not dims:
        return ""
    spread = tuple(d for d, k in enumerate(g.kernel_shape) if k > 1)
    if dims == spread:
        return {1: "applied reversed", 2: "applied rotated 180°"}.get(len(g.kernel_shape),
                                                                      "applied flipped in every dim")
    names = DIM_NAMES.get(len(g.kernel_shape), tuple(f"dim {k}" for k in range(len(g.kernel_shape))))
    return f"applied with its {' and '.join(names[d] + 's' for d in dims)} reversed"


def kernel_block(r: Reads, out_channel: int, numbers: bool, channels: Sequence[int],
                 heading: str | None = None, names: bool = True) -> Block:
    """Filter ``out_channel`` on each input channel of ``channels`` it reads: its taps in their colours (or values);
    a kernel of more than ``MANY_TAPS`` taps as its weights. The channels it does not read (another group's) get no
    grid, only a line saying the filter has no weights there — another filter's kernel drawn there would read as
    this output's."""
    reads = read_channels(r, out_channel)
    shown = [c for c in channels if c in reads] or list(channels[:1])
    pair = r.pair_taps()[out_channel]
    plane = Plane(r.kernel_shape)
    k = shape_text(r.kernel_shape)
    flip = flip_note(r.geometry)
    head = heading if heading is not None else (f"KERNEL {k}\nof filter {out_channel}" + (f"\n({flip})" if flip
                                                                                            else ""))
    if r.n_taps > MANY_TAPS and not numbers and r.pair_kernel is not None:
        return big_kernel_block(r, {c: out_channel for c in shown}, shown, head)
    colours = tap_colours(r.n_taps)
    grids, captions = [], []
    for c in shown:
        grid = plane.empty()
        for t, pos in enumerate(np.ndindex(*r.kernel_shape)):
            rr, cc = plane.cell(pos)
            if pair[c, t]:
                value = float(r.pair_kernel[out_channel, c, t]) if r.pair_kernel is not None else float("nan")
                text = fmt(value) if numbers and not np.isnan(value) else str(t)
                grid[rr][cc] = Cell(colours[t], text)
            else:
                grid[rr][cc] = Cell("white", dashed=True)
        grids.append(grid)
        more = f" (1 of {len(reads)} channels)" if len(reads) > len(shown) else ""
        captions.append(f"on c{c}{more}" + ("" if bool(pair[c].any()) else ": unused"))
    grids_block = planes_block(grids, captions, per_row=1) if names else column([cells(g) for g in grids], gap=0.4)
    missing = unread_text(r, out_channel, [c for c in channels if c not in shown])
    if missing:
        grids_block = column([grids_block, label(missing, SMALL, color=MUTED)], gap=0.3)
    return column([label(head, weight="bold"), grids_block], gap=0.3) if head else grids_block


def _pair_weights(r: Reads, j: int, c: int) -> np.ndarray:
    values = r.pair_kernel[j, c].double().numpy().reshape(r.kernel_shape)
    return np.where(np.isnan(values), 0.0, values)


def covers_map(r: Reads) -> bool:
    """One output cell per channel whose window is the whole input map (a global kernel)."""
    g = r.geometry
    return (g is not None and g.kind == "gather" and all(s == 1 for s in r.output_shape[1:])
            and tuple(r.kernel_shape) == tuple(r.input_shape[1:]) and not any(lo or hi for lo, hi in g.padding()))


def reciprocal_text(n: int) -> str:
    """'= 0.25', '= 0.125' or '≈ 0.016': 1/n exactly where two or three significant digits hold it, else to two
    (fmt's two decimals printed 1/64 as 0.02, 28 % off)."""
    v = 1.0 / n
    texts = [f"{v:.{max(0, digits - 1 - math.floor(math.log10(v)))}f}" for digits in (2, 3)]
    exact = [t for t in texts if float(t) == v]
    return f"= {exact[0].rstrip('0').rstrip('.') if '.' in exact[0] else exact[0]}" if exact else f"≈ {texts[0]}"


def big_kernel_block(r: Reads, own: dict[int, int], channels: Sequence[int], head: str) -> Block:
    """Weights of a kernel too large for tap colours (a global kernel's sum beside average pooling's 1/(H·W) is
    ``animation.global_contrast``, drawn under the step by the picture and the GIF)."""
    c = channels[0]
    w = _pair_weights(r, own[c], c)
    scale = float(np.abs(w).max()) or 1.0
    maps = [weights_block(w, scale, f"learned weights,\nfilter {own[c]} on c{c}")]
    return column([label(head, weight="bold"), row(maps, gap=1.0), scale_bar(scale)], gap=0.3)


def _value(r: Reads, c: int, q: Sequence[int]) -> float:
    return float(r.x[(c, *q)])


DIM_NAMES = {1: ("cell",), 2: ("row", "column"), 3: ("slice", "row", "column")}


def padded_text(r: Reads) -> str:
    """', padded to 8×8; its last row and column are never read' — the padding the layer applies (all sides), and
    which of its trailing cells no window reaches (a stride that does not land on them)."""
    g = r.geometry
    assert g is not None
    pads = drawn_padding(g, r.module)
    size = tuple(s + lo + hi for s, (lo, hi) in zip(g.input_size, pads))
    if size == tuple(g.input_size):
        return ""
    unread = unread_after(g, r.module)
    names = DIM_NAMES.get(len(size), tuple(f"dim {k}" for k in range(len(size))))
    left = [f"{'last ' if n == 1 else f'last {n} '}{name}{'s' if n > 1 else ''}" for n, name in zip(unread, names) if n]
    return f", padded to {shape_text(size)}" + (f"; its {' and '.join(left)} never read" if left else "")


def field_span(r: Reads, position: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Gather whose taps are spaced apart (|b| > 1 in some dim: a dilated kernel's holes): the first and last input
    position (padding included) the window of output ``position`` spans, |b|·(k − 1) + 1 cells per dim — the field
    one output reaches, wider than its k taps; None for a window without holes."""
    g = r.geometry
    if g is None or g.kind != "gather" or all(abs(b) <= 1 or k == 1 for b, k in zip(g.b, g.kernel_shape)):
        return None
    qs = [q for _, q in g.window(tuple(position))]
    return tuple(map(min, zip(*qs))), tuple(map(max, zip(*qs)))


def field_text(r: Reads, position: Sequence[int]) -> str:
    """'one output reads a 5×5 field (outlined): 2·(3−1)+1 per side' for a window with holes (1-D: 'a field of 5
    cells'), else ''."""
    span = field_span(r, position)
    if span is None:
        return ""
    g = r.geometry
    assert g is not None
    sides = [hi - lo + 1 for lo, hi in zip(*span)]
    rules = [f"{abs(b)}·({k}−1)+1" for b, k in zip(g.b, g.kernel_shape)]
    if len(sides) == 1:
        return f"one output reads a field of {sides[0]} cells (outlined): {rules[0]}"
    how = f"{rules[0]} per side" if len(set(rules)) == 1 else " × ".join(f"({t})" for t in rules)
    return f"one output reads a {shape_text(sides)} field (outlined): {how}"


FIELD = "#222222"  # the outline of the field a window with holes spans


def _framed(grid: Block, boxes: Sequence[tuple[int, int, int, int]]) -> Block:
    """``grid`` with a dashed frame around each (row, column, rows, columns) rectangle of its cells."""
    from matplotlib.patches import Rectangle

    def paint(ax, x: float, y: float) -> None:
        grid.paint(ax, x, y)
        for r0, c0, h, w in boxes:
            ax.add_patch(Rectangle((x + c0 - 0.12, y + r0 - 0.12), w + 0.24, h + 0.24, fill=False, edgecolor=FIELD,
                                   linewidth=1.8, linestyle=(0, (4, 2)), zorder=3))

    return Block(grid.w, grid.h, paint)


def _field_boxes(plane: Plane, span: tuple[tuple[int, ...], tuple[int, ...]] | None,
                 shift: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """The drawn plane's cell rectangles that ``span`` covers (one per depth slice of a 3-D plane)."""
    if span is None:
        return []
    lo, hi = (tuple(v + s for v, s in zip(p, shift)) for p in span)
    slices = [((d, *lo[1:]), (d, *hi[1:])) for d in range(lo[0], hi[0] + 1)] if len(lo) == 3 else [(lo, hi)]
    boxes = []
    for a, b in slices:
        (r0, c0), (r1, c1) = plane.cell(a), plane.cell(b)
        boxes.append((r0, c0, r1 - r0 + 1, c1 - c0 + 1))
    return boxes


def gather_input(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                 channels: Sequence[int], title: str | None = None, names: bool = True) -> Block:
    g = r.geometry
    assert g is not None
    pads = drawn_padding(g, r.module)
    plane = Plane(tuple(s + lo + hi for s, (lo, hi) in zip(g.input_size, pads)))
    shift = [lo for lo, _ in pads]
    colours = tap_colours(r.n_taps)
    reads = read_channels(r, out_channel)
    pair = r.pair_taps()[out_channel]
    window = g.window(tuple(position))
    tap_text = r.n_taps <= 99
    grids = []
    for c in channels:
        grid = plane.empty()
        for pos in np.ndindex(*plane.size):
            q = tuple(p - s for p, s in zip(pos, shift))
            rr, cc = plane.cell(pos)
            inside = all(0 <= v < n for v, n in zip(q, g.input_size))
            grid[rr][cc] = (Cell(INPUT if c in reads else UNREAD, fmt(_value(r, c, q)) if numbers else "") if inside
                            else Cell(PADDING, "0" if numbers else "", dashed=True))
        grids.append(grid)
        if c not in reads:  # another group's channel: no window of this output on it
            continue
        for t, q in window:
            if not pair[c, t]:
                continue
            pos = tuple(v + s for v, s in zip(q, shift))
            rr, cc = plane.cell(pos)
            old = grid[rr][cc]  # a tap on padding is drawn pale: it multiplies a zero
            grid[rr][cc] = Cell(colours[t], old.text if numbers else (str(t) if tap_text else ""), dashed=old.dashed,
                                alpha=0.4 if old.dashed else 1.0)
        _other_reads(r, out_channel, position, c, plane, shift, grid)
    more = r.input_shape[0] - len(channels)
    which = "" if more == 0 else (f" (plane c{channels[0]})" if len(channels) == 1 else "")
    field = field_text(r, position)
    title = (title or (f"INPUT {shape_text(r.input_shape)}{which}" + padded_text(r)
                       + ("\n(depth slices d = 0, 1, … left to right)" if r.spatial_dims == 3 else "")))
    boxes = _field_boxes(plane, field_span(r, position), shift)
    # the field outlined on the planes the output reads; planes_block wraps each plane once, in order
    read_flags = iter([c in reads for c in channels])
    frame = lambda block: _framed(block, boxes) if next(read_flags) else block  # noqa: E731
    planes = (planes_block(grids, plane_names(r, out_channel, channels), more=0,
                           per_row=2 if r.spatial_dims == 2 else 1, wrap=frame) if names
              else column([frame(cells(g)) for g in grids], gap=0.4))
    parts = [label(title, weight="bold"), planes] + ([label(field, SMALL)] if field else [])
    return column(parts, gap=0.3)


def plane_names(r: Reads, out_channel: int, channels: Sequence[int]) -> list[str]:
    """'c0', 'c1', 'c2 (not read)': input planes' captions, saying which the drawn output does not read."""
    reads = read_channels(r, out_channel)
    return [f"c{c}" if c in reads else f"c{c} (not read)" for c in channels]


def _other_reads(r: Reads, j: int, position: Sequence[int], c: int, plane: Plane, shift: Sequence[int],
                 grid: list[list[Cell]]) -> None:
    """Cells read without a nameable tap (irregular reads) in grey."""
    idx = r.index[(j, *position, c)]
    for q in (idx == NO_TAP).nonzero().tolist():
        rr, cc = plane.cell(tuple(v + s for v, s in zip(q, shift)))
        grid[rr][cc] = Cell(OTHER, grid[rr][cc].text)


def scatter_input(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                  channels: Sequence[int]) -> list[Block]:
    """The input, and the direct form: zeros inserted between input cells, padding around, the flipped kernel."""
    g = r.geometry
    assert g is not None
    small = Plane(g.input_size)
    big = Plane(g.stretched_size())
    colours = tap_colours(r.n_taps)
    pair = r.pair_taps()[out_channel]
    reads = read_channels(r, out_channel)
    hull = [(g.stretched_position((0,) * len(g.a))[k], g.stretched_position(tuple(s - 1 for s in g.input_size))[k])
            for k in range(len(g.a))]
    originals, stretched = [], []
    for c in channels:
        grid = small.empty()
        read = r.index[(out_channel, *position, c)]
        for q in np.ndindex(*g.input_size):
            rr, cc = small.cell(q)
            t = int(read[q])
            text = fmt(_value(r, c, q)) if numbers else (str(t) if t >= 0 else "")
            grid[rr][cc] = Cell(colours[t] if t >= 0 else INPUT if c in reads else UNREAD, text)
        originals.append(grid)
        sgrid = big.empty()
        for z in np.ndindex(*big.size):
            rr, cc = big.cell(z)
            between = all(lo <= v <= hi for v, (lo, hi) in zip(z, hull))
            sgrid[rr][cc] = Cell(ZERO if between else PADDING, "0" if numbers else "", dashed=True)
        for q in np.ndindex(*g.input_size):
            z = g.stretched_position(q)
            if all(0 <= v < n for v, n in zip(z, big.size)):
                rr, cc = big.cell(z)
                sgrid[rr][cc] = Cell(INPUT if c in reads else UNREAD, fmt(_value(r, c, q)) if numbers else "")
        for t, z in g.stretched_window(tuple(position)):
            if pair[c, t] and all(0 <= v < n for v, n in zip(z, big.size)):
                rr, cc = big.cell(z)
                old = sgrid[rr][cc]  # a tap on a zero is drawn pale: it multiplies nothing
                sgrid[rr][cc] = Cell(colours[t], old.text if numbers else str(t), dashed=old.dashed,
                                     alpha=0.4 if old.dashed else 1.0)
        stretched.append(sgrid)
    names = plane_names(r, out_channel, channels)
    zeros = sorted({a - 1 for a in g.a})
    steps = f"{zeros[0]} zero{'s' if zeros[0] != 1 else ''}" if len(zeros) == 1 else \
        "(" + ", ".join(str(a - 1) for a in g.a) + ") zeros"
    which = "" if len(channels) == r.input_shape[0] else f" (plane c{channels[0]})" if len(channels) == 1 else ""
    return [
        column([label(f"INPUT {shape_text(r.input_shape)}{which}", weight="bold"), planes_block(originals, names, 0, 1)],
               gap=0.3),
        arrow(2.5, f"insert {steps}\nbetween cells,\npad the border"),
        column([label(f"ZEROS INSERTED + PADDING: {shape_text(big.size)}", weight="bold"),
                planes_block(stretched, names, 0, 1)], gap=0.3),
    ]


def output_block(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                 channels: Sequence[int]) -> Block:
    plane = Plane(tuple(r.output_shape[1:]))
    grids = []
    for j in channels:
        grid = plane.empty()
        for o in np.ndindex(*plane.size):
            rr, cc = plane.cell(o)
            grid[rr][cc] = Cell(OUTPUT, fmt(float(r.y[(j, *o)])) if numbers else "")
        if j == out_channel:
            mark(grid, plane, position)
        grids.append(grid)
    which = "" if len(channels) == r.output_shape[0] else f" (plane c{channels[0]})" if len(channels) == 1 else ""
    return column([label(f"OUTPUT {shape_text(r.output_shape)}{which}", weight="bold"),
                   planes_block(grids, [f"c{j}" for j in channels], 0,
                                per_row=1 if r.spatial_dims != 2 else 2)], gap=0.3)


def _products(r: Reads, out_channel: int, position: Sequence[int]) -> tuple[list[tuple[float, float]], int]:
    """(weight, input value) of every product of the highlighted output that meets an input cell, and the number of
    kernel taps its window has counting those on padding or inserted zeros (they multiply 0). Gather: the window's
    taps in tap order. Scatter (a transposed conv: y[o] = Σ_q w[o − a·q − c] x[q] + bias): the input cells whose
    k×k stamp lands on ``o``, in reading order; its direct form's window has every tap of the pair."""
    g = r.geometry
    assert g is not None and r.pair_kernel is not None
    pair = r.pair_taps()[out_channel]
    products: list[tuple[float, float]] = []
    n_all = 0
    for c in range(r.input_shape[0]):
        if g.kind == "scatter":
            n_all += int(pair[c].sum())
            read = r.index[(out_channel, *position, c)]
            for q in np.ndindex(*g.input_size):
                t = int(read[q])
                if t >= 0 and pair[c, t]:
                    products.append((float(r.pair_kernel[out_channel, c, t]), _value(r, c, q)))
            continue
        for t, q in g.window(tuple(position)):
            if pair[c, t]:
                n_all += 1
                if all(0 <= v < n for v, n in zip(q, g.input_size)):  # a tap on padding multiplies 0: counted apart
                    products.append((float(r.pair_kernel[out_channel, c, t]), _value(r, c, q)))
    return products, n_all


# clipping activations by the autograd node they leave on the data path: (name drawn, the function), tried in order
ACTIVATIONS: dict[str, list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]]] = {
    "ReluBackward0": [("ReLU", F.relu)], "ThresholdBackward0": [("ReLU", F.relu)],
    "HardtanhBackward0": [("ReLU6", F.relu6), ("Hardtanh", F.hardtanh)],
    "HardswishBackward0": [("Hardswish", F.hardswish)], "HardsigmoidBackward0": [("Hardsigmoid", F.hardsigmoid)]}


def _graph_nodes(out: torch.Tensor) -> set[str]:
    """The names of the autograd nodes ``out`` was computed through (a detached side value leaves none)."""
    seen, names, stack = set(), set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack += [n for n, _ in node.next_functions]
    return names


def activation(r: Reads) -> tuple[str | None, torch.Tensor] | None:
    """For a step whose data path runs through a clipping activation (SK's split: ReLU(conv_m(x))): (name, z), z
    its output with the clipping activations as the identity (``linear.linear_wiring``: the conv's own sum and
    bias), ``name`` the activation when the output is that activation of z everywhere, else None (activations
    inside the step: output less the sum is no bias there). None for a step whose output passes no clipping
    activation (an attention computed with ReLUs but held, detached, does not count). Computed once per ``Reads``."""
    cache = vars(r)
    if "_activation" not in cache:
        model = r.module
        with torch.enable_grad():
            nodes = _graph_nodes(model(r.x[None].clone().requires_grad_(True)))
        tried = [a for node, found in ACTIVATIONS.items() if node in nodes for a in found]
        if not tried:
            cache["_activation"] = None
        else:
            # on a differentiated input: linear_wiring takes out the activations on x's path only
            with torch.enable_grad(), linear_wiring(side_modules(model)):
                z = model(r.x[None].clone().requires_grad_(True))[0].detach().to(r.y.dtype)
            name = next((n for n, f in tried if torch.allclose(f(z), r.y, rtol=1e-5, atol=1e-6)), None)
            cache["_activation"] = (name, z)
    return cache["_activation"]


def sum_line(r: Reads, out_channel: int, position: Sequence[int]) -> str:
    """'17 = 0·0 + 1·1 + … + 1 (bias)' for the highlighted output of a window: a gather's products in tap order,
    a scatter's (transposed conv) those of the input cells stamped onto it; the bias is the output less the sum.
    '=' only where the printed numbers add up exactly (whole numbers: numbers mode's sample); where rounding to the
    cells' digits breaks that (decimal values: a softmax's, a user's) '≈'. A step ending in a clipping activation
    (``activation``) sums before it: '0 = ReLU(-0.5): -0.5 ≈ sum of … − 0.24 (bias)'; where its activations are not
    one at the end, no bias is printed (output less sum is no bias there)."""
    g = r.geometry
    if g is None or r.pair_kernel is None:
        return ""
    products, n_all = _products(r, out_channel, position)
    printed = [(fmt(w), fmt(v)) for w, v in products]
    terms = [f"{w}·{v}" for w, v in printed]
    total = sum(w * v for w, v in products)
    y = float(r.y[(out_channel, *position)])
    clipped = activation(r)
    head = ""
    if clipped is not None:
        name, z = clipped
        if name is None:  # the activations do not end the step: the sum, and no bias that is not one
            n = len(terms)
            return f"{fmt(y)}: from a sum of {n} kernel·input product{'s' if n != 1 else ''} through the step's " \
                "clipping activations"
        pre = float(z[(out_channel, *position)])
        head, y = f"{fmt(y)} = {name}({fmt(pre)}): ", pre
    bias = y - total
    has_bias = abs(bias) > 1e-6
    tail = (f" + {fmt(bias)} (bias)" if bias >= 0 else f" − {fmt(-bias)} (bias)") if has_bias else ""
    # the products whose tap meets an input cell, whatever its value: taps on padding or inserted zeros apart
    n = len(terms) if len(terms) < n_all else n_all
    where = " on input cells" if len(terms) < n_all else ""
    zeros = f" ({n_all} counting the zeros)" if len(terms) < n_all else ""
    if n_all > 9 or not terms:  # one window's taps listed; more would run past the picture
        exact = all(_printed_exactly(v) for v in (y, bias, *(u for p in products for u in p)))
        return f"{head}{fmt(y)} {'=' if exact else '≈'} sum of {n} kernel·input product{'s' if n != 1 else ''}" \
            f"{where}{zeros}{tail}"
    added = sum((Decimal(w) * Decimal(v) for w, v in printed), Decimal(fmt(bias)) if has_bias else Decimal(0))
    listed = f"{head}{fmt(y)} {'=' if added == Decimal(fmt(y)) else '≈'} " + " + ".join(terms) + tail
    return listed if len(terms) == n_all else f"{listed}\nΣ {n} product{'s' if n != 1 else ''}{where}{zeros}"


def _printed_exactly(value: float) -> bool:
    """``fmt`` prints ``value`` without rounding it (to float32's precision, the values' own)."""
    return abs(float(fmt(value)) - value) <= 1e-6 * max(1.0, abs(value))


def overlap_block(r: Reads, in_channel: int = 0, position: Sequence[int] | None = None) -> Block:
    """Output cells: how many input cells (of one channel) are summed into each — uneven = checkerboard; the cell
    at ``position`` outlined (the output drawn: its count is the sum's products on input cells per channel)."""
    linked = r.index[(0, *([slice(None)] * r.spatial_dims), in_channel)] != -1
    counts = linked.reshape(*r.output_shape[1:], -1).sum(-1).numpy()
    return counts_block(counts, position, "OVERLAP: input cells summed\ninto each output cell")


def counts_block(counts: np.ndarray, position: Sequence[int] | None, title: str) -> Block:
    """An output plane of counts (int array of its spatial shape), shaded by count, the cell at ``position``
    outlined."""
    top = max(int(counts.max()), 1)
    plane = Plane(tuple(counts.shape))
    grid = plane.empty()
    shades = ["#ffffff", "#fde0c5", "#f9b384", "#f08a4b", "#d9591c", "#a83c09"]
    for o in np.ndindex(*plane.size):
        n = int(counts[o])
        rr, cc = plane.cell(o)
        grid[rr][cc] = Cell(shades[min(len(shades) - 1, round(n * (len(shades) - 1) / top))], str(n),
                            outline="black" if position is not None and tuple(o) == tuple(position) else None)
    return column([label(title, weight="bold"), cells(grid)], gap=0.3)


def drawn_taps(r: Reads) -> int:
    """The taps of the largest kernel drawn: each window group has its own frame (SK's two 3×3 branches are drawn
    as 3×3 though together they span a 5×5 frame)."""
    return max(g.reads.n_taps for g in window_groups(r))


def legend_items(r: Reads, numbers: bool) -> list[tuple[str | tuple | list, str, bool]]:
    items: list[tuple[str | tuple | list, str, bool]] = []
    n_taps = drawn_taps(r)
    colours = tap_colours(n_taps)
    ramp = [colours[0], colours[n_taps // 2], colours[-1]] if n_taps > 2 else colours
    items.append((ramp, f"kernel tap 0 … {n_taps - 1} in reading order" if n_taps > 1 else "the kernel's one tap",
                  False))
    items.append((INPUT, "input cell", False))
    if r.geometry is None and r.tap_map is not None:
        items.append((NEIGHBOUR, "read by interpolation (shade = weight)", False))
        items.append(("white", f"○ regular grid → ● sampling point ({opacity_note(r.module)})", False))
    if r.geometry is not None and (r.geometry.kind == "scatter" or any(lo or hi for lo, hi in r.geometry.padding())
                                   if r.geometry.kind == "gather" else True):
        items.append((PADDING, "padding (zero)", True))
    if r.geometry is not None and r.geometry.kind == "scatter":
        items.append((ZERO, "inserted zero", True))
    items.append((OUTPUT, "output cell", False))
    items.append(("#1b7a3a", "the output drawn", False))
    if r.geometry is not None and bool((r.index == NO_TAP).any()):
        items.append((OTHER, "read, no tap", False))
    return items


def legend_block(r: Reads, numbers: bool, max_width: float = 1e9,
                 extra: Sequence[tuple[str | tuple | list, str, bool]] = ()) -> Block:
    return swatch_legend([*legend_items(r, numbers), *extra], max_width=max_width)


def channels_to_draw(n: int, picked: int, limit: int = MAX_PLANES) -> list[int]:
    shown = list(range(min(n, limit)))
    if picked >= limit:
        shown[-1] = picked
    return shown


@dataclass
class Step:
    """A drawn step: its block, the colours of its output channels (carried into the next stage's wiring) and the
    legend entries of its wiring."""

    block: Block
    colouring: Colouring | None
    legend: list[tuple[str, str, bool]]


def _window_columns(groups: Sequence[WindowGroup], out_channel: int, position: Sequence[int],
                    numbers: bool) -> Block:
    """One column per window group: its kernel frame (own size, own tap numbers) over the input plane it reads."""
    columns = []
    for k, g in enumerate(groups):
        j, c = g.first_pair(out_channel)
        pos = tuple(position)
        sub = g.reads
        head = label(f"{g.name}\nfilter {j} on c{c}", SMALL, "bold", color=group_colour(k))
        if sub.geometry is None:  # the group reads nothing a window describes here (e.g. its ReLU is off)
            columns.append(column([head, label(f"filter {j} reads no window\nof c{c} at this output", SMALL)],
                                  gap=0.4))
            continue
        kernel = kernel_block(sub, j, numbers, [c], heading="", names=False)
        plane = gather_input(sub, j, pos, numbers, [c], title=f"INPUT c{c}" + padded_text(sub), names=False)
        columns.append(column([head, kernel, plane], gap=0.4))
    return row(columns, gap=1.2)


def draw_step(r: Reads, out_channel: int = 0, position: Sequence[int] | None = None, numbers: bool = False,
              planes: int | None = None, carried: Sequence[str | None] | None = None, show_kernel: bool = True,
              permutation: bool = False, max_width: float = BUDGET[0],
              room_for: Sequence[Sequence[int]] = ()) -> Step:
    """Kernel → input (padded / zero-inserted) → output [→ overlap] → channel wiring, laid out within
    ``max_width`` cells. ``planes``: input / output planes drawn in full (default 1, ``MAX_PLANES`` in numbers
    mode); ``carried``: colours of the input channels from an earlier stage; ``room_for``: other output positions
    whose sum texts this drawing keeps room for (an animation's frames: nothing moves from one to the next)."""
    position = tuple(position) if position is not None else r.centre()
    copied = copies(r).any(1)
    if bool(copied[out_channel]) and not bool(copied.all()):  # a copy shows no window: draw a computed output
        out_channel = int((~copied).nonzero()[0])
    n_planes = planes or (MAX_PLANES if numbers else 1)
    reads = read_channels(r, out_channel)
    in_ch = (reads + [c for c in range(r.input_shape[0]) if c not in reads])[:n_planes] if reads else \
        channels_to_draw(r.input_shape[0], 0, n_planes)
    in_ch = sorted(in_ch)
    out_ch = sorted(([out_channel] + [j for j in range(r.output_shape[0]) if j != out_channel])[:n_planes])
    g = r.geometry
    groups = window_groups(r)
    others = [tuple(p) for p in room_for]
    padded = False  # irregular reads: the plane drawn with padding (its grid reaches past the edge)
    parts: list[Block] = []  # what the window reads; then ``tail``: the sum, the output and the channels
    if len(groups) > 1 and n_planes == 1:
        parts.append(_window_columns(groups, out_channel, position, numbers))
    else:
        if show_kernel:
            parts.append(kernel_block(r, out_channel, numbers, in_ch))
        if g is not None and g.kind == "scatter":
            parts += scatter_input(r, out_channel, position, numbers, in_ch)
        elif g is not None:
            parts.append(gather_input(r, out_channel, position, numbers, in_ch))
        else:
            # the planes it does not read grey, as a window's are: another filter's points there read as its own
            parts.append(irregular_input(r, out_channel, position, numbers, in_ch, room_for=others))
            padded = any(lo or hi for lo, hi in margins(r, [position, *others], out_channels=[out_channel]))
    widest = [text_size(summed_text(r, out_channel, p), SMALL) for p in others]
    room = (max((w for w, _ in widest), default=0.0), max((h for _, h in widest), default=0.0))
    tail: list[Block] = [arrow(2.5, summed_text(r, out_channel, position), room=room)]
    out_block = output_block(r, out_channel, position, numbers, out_ch)
    line = sum_line(r, out_channel, position) if numbers else ""
    if line:
        text = label(line, SMALL)
        lines = [text_size(sum_line(r, out_channel, p), SMALL) for p in others]
        w, h = max([text.w, *(w for w, _ in lines)]), max([text.h, *(h for _, h in lines)])
        tail.append(column([out_block, Block(w, h, text.paint)], gap=0.4))
    else:
        tail.append(out_block)
    if g is not None and g.kind == "scatter":
        tail.append(overlap_block(r, position=position))
    colouring = None
    legend: list[tuple[str, str, bool]] = []
    if r.input_shape[0] > 1 or r.output_shape[0] > 1:
        colouring = colour_channels(r, groups, carried)
        pattern = pattern_block(r, out_channel, colouring, groups)
        tail.append(wiring_block(r, out_channel, position, colouring, permutation=permutation, pattern=pattern))
        legend = [(colour, text, False) for colour, text in colouring.legend]
    if padded:
        legend.insert(0, (PADDING, "padding (zero): what a point past the edge reads", True))
    if not (len(groups) > 1 and n_planes == 1) and set(in_ch) - set(reads):
        legend.insert(0, (UNREAD, f"input channel output c{out_channel} does not read", False))
    one = row([*parts, *tail], gap=1.0)
    if one.w <= max_width:
        return Step(one, colouring, legend)
    head, rest = row(parts, gap=1.0), row(tail, gap=1.0)
    if head.w <= max_width and rest.w <= max_width:  # what is read above, what comes of it below
        return Step(column([head, rest], gap=0.8), colouring, legend)
    return Step(flow([*parts, *tail], max_width, gap=1.0), colouring, legend)


def summed_text(r: Reads, out_channel: int, position: Sequence[int]) -> str:
    """'Σ 9 products over 6 channels' for the drawn output. Where some taps of its window fall on padding (a
    gather at the border) or on inserted zeros (a scatter's direct form), the products that meet an input cell
    first, whatever their values: 'Σ 4 products on input cells (9 counting the zeros)', as the explorer's numbers
    mode says it."""
    pair = r.pair_taps()[out_channel]
    n_ch = int(pair.any(-1).sum()) or int((r.channel_links()[out_channel] > 0).sum())
    n_taps = int(pair.sum())
    over = f"over {n_ch} channel{'s' if n_ch != 1 else ''}"
    if not n_taps:
        return "Σ over what\nit reads"
    # a window reads each input cell through one tap: the cells read are the products that meet the input
    met = int((r.index[(out_channel, *position)] >= 0).sum()) if r.geometry is not None else n_taps
    if met < n_taps:
        return f"Σ {met} product{'s' if met != 1 else ''} on input cells\n({n_taps} counting the zeros)\n{over}"
    return f"Σ {n_taps} products\n{over}"


def step_block(r: Reads, out_channel: int = 0, position: Sequence[int] | None = None, numbers: bool = False,
               legend: bool = True, planes: int | None = None, room_for: Sequence[Sequence[int]] = ()) -> Block:
    """``draw_step``'s block, with a legend line under it."""
    step = draw_step(r, out_channel, position, numbers, planes, room_for=room_for)
    body = step.block
    return column([body, legend_block(r, numbers, max(body.w, 40), step.legend)], gap=0.8) if legend else body
