"""The picture of one layer step (a conv, a stage of a composite) for one highlighted output element:

kernel grids (one per input channel of the highlighted filter, taps in their own colours) → the input planes at
the same cell size as the output, padding cells dashed, each cell read by the highlighted output coloured by
the tap that reads it (so the flip, dilation gaps and the transposed pattern show) → the output planes with
that element marked → the channel matrix (taps per channel pair: groups, depthwise diagonals, HetConv).
A scatter layer (transposed conv) is drawn as its direct form: the input, then zeros inserted and padding, read
by the flipped kernel, then the larger output with the number of input cells summed into each output cell.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .draw import (INPUT, OTHER, OUTPUT, PADDING, SMALL, ZERO, Block, Cell, arrow, cells, column, fmt, label, row,
                   swatch_legend, tap_colours)
from .irregular import NEIGHBOUR, irregular_input
from .planes import Plane, mark, planes_block
from .reads import NO_TAP, Reads

MAX_PLANES = 4


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape))


def owners(r: Reads, out_channel: int, channels: Sequence[int]) -> dict[int, int]:
    """The filter drawn on each input channel: ``out_channel`` — or, when every filter reads one input channel
    (depthwise, MixConv), the first filter reading that channel, so each channel shows its own kernel."""
    links = r.channel_links()
    if r.output_shape[0] > 1 and bool(((links > 0).sum(1) == 1).all()):
        return {c: (out_channel if links[out_channel, c] > 0 else int((links[:, c] > 0).float().argmax()))
                for c in channels}
    return {c: out_channel for c in channels}


def kernel_block(r: Reads, out_channel: int, numbers: bool, channels: Sequence[int]) -> Block:
    """The highlighted filter's kernel on each drawn input channel: its taps in their colours (or values)."""
    colours = tap_colours(r.n_taps)
    own = owners(r, out_channel, channels)
    all_pairs = r.pair_taps()
    plane = Plane(r.kernel_shape)
    grids, names = [], []
    several = len(set(own.values())) > 1
    for c in channels:
        pair = all_pairs[own[c]]
        grid = plane.empty()
        for t, pos in enumerate(np.ndindex(*r.kernel_shape)):
            rr, cc = plane.cell(pos)
            if pair[c, t]:
                value = float(r.pair_kernel[own[c], c, t]) if r.pair_kernel is not None else float("nan")
                text = fmt(value) if numbers and not np.isnan(value) else str(t)
                grid[rr][cc] = Cell(colours[t], text)
            else:
                grid[rr][cc] = Cell("white", dashed=True)
        grids.append(grid)
        names.append((f"filter {own[c]} on c{c}" if several else f"c{c}") + ("" if bool(pair[c].any()) else ": unused"))
    k = shape_text(r.kernel_shape)
    flipped = r.geometry is not None and r.geometry.kind == "gather" and any(b < 0 for b in r.geometry.b)
    head = f"KERNEL {k}\n" + ("of each filter" if several else f"of filter {out_channel}") + \
        ("\n(applied rotated 180°)" if flipped else "")
    return column([label(head, weight="bold"),
                   planes_block(grids, names, per_row=1)], gap=0.3)


def _value(r: Reads, c: int, q: Sequence[int]) -> float:
    return float(r.x[(c, *q)])


def gather_input(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                 channels: Sequence[int]) -> Block:
    g = r.geometry
    assert g is not None
    pads = g.padding()
    plane = Plane(tuple(s + lo + hi for s, (lo, hi) in zip(g.input_size, pads)))
    shift = [lo for lo, _ in pads]
    colours = tap_colours(r.n_taps)
    own = owners(r, out_channel, channels)
    all_pairs = r.pair_taps()
    window = g.window(tuple(position))
    grids = []
    for c in channels:
        pair = all_pairs[own[c]]
        grid = plane.empty()
        for pos in np.ndindex(*plane.size):
            q = tuple(p - s for p, s in zip(pos, shift))
            rr, cc = plane.cell(pos)
            inside = all(0 <= v < n for v, n in zip(q, g.input_size))
            grid[rr][cc] = (Cell(INPUT, fmt(_value(r, c, q)) if numbers else "") if inside
                            else Cell(PADDING, "0" if numbers else "", dashed=True))
        for t, q in window:
            if not pair[c, t]:
                continue
            pos = tuple(v + s for v, s in zip(q, shift))
            rr, cc = plane.cell(pos)
            old = grid[rr][cc]  # a tap on padding is drawn pale: it multiplies a zero
            grid[rr][cc] = Cell(colours[t], old.text if numbers else str(t), dashed=old.dashed,
                                alpha=0.4 if old.dashed else 1.0)
        _other_reads(r, own[c], position, c, plane, shift, grid)
        grids.append(grid)
    padded = any(lo or hi for lo, hi in pads)
    title = f"INPUT {shape_text(r.input_shape)}" + (f", padded to {shape_text(plane.size)}" if padded else "") + \
        ("  (depth slices d = 0, 1, … left to right)" if r.spatial_dims == 3 else "")
    return column([label(title, weight="bold"), planes_block(grids, [f"c{c}" for c in channels],
                                                             more=r.input_shape[0] - len(channels),
                                                             per_row=2 if r.spatial_dims == 2 else 1)], gap=0.3)


def _other_reads(r: Reads, j: int, position: Sequence[int], c: int, plane: Plane, shift: Sequence[int],
                 grid: list[list[Cell]]) -> None:
    """Cells read without a nameable tap (irregular reads) in grey."""
    idx = r.index[(j, *position, c)]
    for q in (idx == NO_TAP).nonzero().tolist():
        rr, cc = plane.cell(tuple(v + s for v, s in zip(q, shift)))
        grid[rr][cc] = Cell(OTHER, grid[rr][cc].text)


def scatter_input(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                  channels: Sequence[int]) -> Block:
    """The input, and the direct form: zeros inserted between input cells, padding around, the flipped kernel."""
    g = r.geometry
    assert g is not None
    small = Plane(g.input_size)
    big = Plane(g.stretched_size())
    colours = tap_colours(r.n_taps)
    pair = r.pair_taps()[out_channel]
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
            grid[rr][cc] = Cell(colours[t] if t >= 0 else INPUT, text)
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
                sgrid[rr][cc] = Cell(INPUT, fmt(_value(r, c, q)) if numbers else "")
        for t, z in g.stretched_window(tuple(position)):
            if pair[c, t] and all(0 <= v < n for v, n in zip(z, big.size)):
                rr, cc = big.cell(z)
                old = sgrid[rr][cc]  # a tap on a zero is drawn pale: it multiplies nothing
                sgrid[rr][cc] = Cell(colours[t], old.text if numbers else str(t), dashed=old.dashed,
                                     alpha=0.4 if old.dashed else 1.0)
        stretched.append(sgrid)
    names = [f"c{c}" for c in channels]
    more = r.input_shape[0] - len(channels)
    zeros = sorted({a - 1 for a in g.a})
    steps = f"{zeros[0]} zero{'s' if zeros[0] != 1 else ''}" if len(zeros) == 1 else \
        "(" + ", ".join(str(a - 1) for a in g.a) + ") zeros"
    return row([
        column([label(f"INPUT {shape_text(r.input_shape)}", weight="bold"), planes_block(originals, names, more, 1)],
               gap=0.3),
        arrow(2.5, f"insert {steps}\nbetween cells,\npad the border"),
        column([label(f"ZEROS INSERTED + PADDING: {shape_text(big.size)}", weight="bold"),
                planes_block(stretched, names, more, 1)], gap=0.3),
    ], gap=0.6, align="top")


def output_block(r: Reads, out_channel: int, position: Sequence[int], numbers: bool,
                 channels: Sequence[int]) -> Block:
    plane = Plane(tuple(r.output_shape[1:]))
    drawn = set(owners(r, out_channel, channels_to_draw(r.input_shape[0], 0)).values()) | {out_channel}
    grids = []
    for j in channels:
        grid = plane.empty()
        for o in np.ndindex(*plane.size):
            rr, cc = plane.cell(o)
            grid[rr][cc] = Cell(OUTPUT, fmt(float(r.y[(j, *o)])) if numbers else "")
        if j in drawn:
            mark(grid, plane, position)
        grids.append(grid)
    return column([label(f"OUTPUT {shape_text(r.output_shape)}", weight="bold"),
                   planes_block(grids, [f"c{j}" for j in channels], r.output_shape[0] - len(channels),
                                per_row=1 if r.spatial_dims != 2 else 2)], gap=0.3)


def sum_line(r: Reads, out_channel: int, position: Sequence[int]) -> str:
    """'17 = 0·0 + 1·1 + …' for the highlighted output of a gather window (products in tap order)."""
    g = r.geometry
    if g is None or g.kind != "gather" or r.pair_kernel is None:
        return ""
    pair = r.pair_taps()[out_channel]
    terms, total = [], 0.0
    for c in range(r.input_shape[0]):
        for t, q in g.window(tuple(position)):
            if pair[c, t]:
                inside = all(0 <= v < n for v, n in zip(q, g.input_size))
                w, v = float(r.pair_kernel[out_channel, c, t]), (_value(r, c, q) if inside else 0.0)
                terms.append(f"{fmt(w)}·{fmt(v)}")
                total += w * v
    y = float(r.y[(out_channel, *position)])
    bias = y - total
    tail = f" + {fmt(bias)} (bias)" if abs(bias) > 1e-6 else ""
    if len(terms) > 9:
        return f"{fmt(y)} = sum of {len(terms)} products kernel·input{tail}"
    return f"{fmt(y)} = " + " + ".join(terms) + tail


def overlap_block(r: Reads, in_channel: int = 0) -> Block:
    """Output cells: how many input cells (of one channel) are summed into each — uneven = checkerboard."""
    linked = r.index[(0, *([slice(None)] * r.spatial_dims), in_channel)] != -1
    counts = linked.reshape(*r.output_shape[1:], -1).sum(-1).numpy()
    top = max(int(counts.max()), 1)
    plane = Plane(tuple(r.output_shape[1:]))
    grid = plane.empty()
    shades = ["#ffffff", "#fde0c5", "#f9b384", "#f08a4b", "#d9591c", "#a83c09"]
    for o in np.ndindex(*plane.size):
        n = int(counts[o])
        rr, cc = plane.cell(o)
        grid[rr][cc] = Cell(shades[min(len(shades) - 1, round(n * (len(shades) - 1) / top))], str(n))
    return column([label("OVERLAP: input cells summed\ninto each output cell", weight="bold"), cells(grid)], gap=0.3)


def channel_block(r: Reads, out_channel: int) -> Block | None:
    """Taps per (c_out, c_in) pair: blank = not connected; k² for a k×k kernel, 1 for a 1×1."""
    links = r.channel_links().numpy()
    c_out, c_in = links.shape
    if c_out == 1 and c_in == 1:
        return None
    shown_out, shown_in = min(c_out, 16), min(c_in, 16)
    top = max(int(links.max()), 1)
    grid = []
    for j in range(shown_out):
        line = []
        for c in range(shown_in):
            n = int(links[j, c])
            fill = (0.18, 0.33, 0.55, 0.25 + 0.75 * n / top) if n else "white"
            line.append(Cell(fill, str(n) if n else "", dashed=not n, outline="black" if j == out_channel and n
                             else None))
        grid.append(line)
    more = "" if (shown_out, shown_in) == (c_out, c_in) else f" (first {shown_out}×{shown_in})"
    return column([label("CHANNELS", weight="bold"),
                   label(f"taps per pair{more}:\nrow = output channel,\ncolumn = input channel", SMALL),
                   cells(grid, SMALL)], gap=0.2)


def legend_block(r: Reads, numbers: bool, max_width: float = 1e9) -> Block:
    items: list[tuple[str | tuple, str, bool]] = []
    colours = tap_colours(r.n_taps)
    ramp = [colours[0], colours[r.n_taps // 2], colours[-1]] if r.n_taps > 2 else colours
    items.append((ramp, f"kernel tap 0 … {r.n_taps - 1} in reading order" if r.n_taps > 1 else "the kernel's one tap",
                  False))
    items.append((INPUT, "input cell", False))
    if r.geometry is None and r.tap_map is not None:
        items.append((NEIGHBOUR, "read by interpolation (shade = weight)", False))
        opacity = "interpolation weight × mask" if getattr(r.module, "modulated", False) else "interpolation weight"
        items.append(("white", f"○ regular grid point → ● sampling point (opacity = {opacity})", False))
    if r.geometry is not None and (r.geometry.kind == "scatter" or any(lo or hi for lo, hi in r.geometry.padding())
                                   if r.geometry.kind == "gather" else True):
        items.append((PADDING, "padding (zero)", True))
    if r.geometry is not None and r.geometry.kind == "scatter":
        items.append((ZERO, "inserted zero", True))
    items.append((OUTPUT, "output cell", False))
    items.append(("#1b7a3a", "the output drawn", False))
    if r.geometry is not None and bool((r.index == NO_TAP).any()):
        items.append((OTHER, "read, no tap", False))
    return swatch_legend(items, max_width=max_width)


def channels_to_draw(n: int, picked: int, limit: int = MAX_PLANES) -> list[int]:
    shown = list(range(min(n, limit)))
    if picked >= limit:
        shown[-1] = picked
    return shown


def step_block(r: Reads, out_channel: int = 0, position: Sequence[int] | None = None, numbers: bool = False,
               legend: bool = True) -> Block:
    """Kernel → input (padded / zero-inserted) → output [→ overlap] [→ channel matrix], and a legend line."""
    position = tuple(position) if position is not None else r.centre()
    in_ch = channels_to_draw(r.input_shape[0], 0)
    wanted = sorted(set(owners(r, out_channel, in_ch).values()) | {out_channel})
    out_ch = (wanted + [j for j in range(r.output_shape[0]) if j not in wanted])[:max(MAX_PLANES, len(wanted))]
    out_ch = sorted(out_ch)
    g = r.geometry
    parts: list[Block] = [kernel_block(r, out_channel, numbers, in_ch)]
    if g is not None and g.kind == "scatter":
        parts.append(scatter_input(r, out_channel, position, numbers, in_ch))
    elif g is not None:
        parts.append(gather_input(r, out_channel, position, numbers, in_ch))
    else:
        parts.append(irregular_input(r, out_channel, position, numbers, in_ch, owners(r, out_channel, in_ch)))
    pair = r.pair_taps()[out_channel]
    n_ch = int(pair.any(-1).sum()) or int((r.channel_links()[out_channel] > 0).sum())
    n_taps = int(pair.sum())
    summed = (f"Σ {n_taps} products\nover {n_ch} channel{'s' if n_ch != 1 else ''}" if n_taps
              else "Σ over what\nit reads")
    parts.append(arrow(2.5, summed))
    out_block = output_block(r, out_channel, position, numbers, out_ch)
    line = sum_line(r, out_channel, position) if numbers else ""
    parts.append(column([out_block, label(line, SMALL)], gap=0.4) if line else out_block)
    if g is not None and g.kind == "scatter":
        parts.append(overlap_block(r))
    chan = channel_block(r, out_channel)
    if chan is not None:
        parts.append(chan)
    body = row(parts, gap=1.0, align="top")
    return column([body, legend_block(r, numbers, max(body.w, 40))], gap=0.8) if legend else body

