"""Stage pictures that are not a sliding window: a channel permutation (the shuffle) as crossing lines, nearest
upsampling as cell copies, an interleave (depth to space: several input channels filling the phases of a larger
output) as the output coloured by source channel, and a dynamic conv's attention over its K kernels (K kernels,
the attention weights of the drawn sample as bars, the aggregated kernel Σ πₖ·Wₖ)."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import nn

from ..layers.base import ConvzooLayer
from .draw import SMALL, Block, Cell, arrow, cells, column, fmt, label, row, signed_cells, tap_colours
from .planes import Plane, planes_block
from .reads import Reads

PASTEL = ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#d9d9d9",
          "#bc80bd", "#ccebc5", "#ffed6f"]


def _sources(r: Reads) -> dict[tuple[int, ...], tuple[int, ...]] | None:
    """Output element → its one input element, when every output element reads exactly one (no kernel)."""
    if r.tap_map is not None:
        return None
    linked = (r.index != -1).reshape(math.prod(r.output_shape), math.prod(r.input_shape))
    if not bool((linked.sum(1) == 1).all()):
        return None
    src = linked.float().argmax(1)
    return {tuple(int(v) for v in np.unravel_index(i, r.output_shape)):
            tuple(int(v) for v in np.unravel_index(int(s), r.input_shape)) for i, s in enumerate(src)}


def one_read_kind(r: Reads) -> str | None:
    """'permutation' (same position, channels moved), 'copies' (a larger output of copied cells of one channel),
    'interleave' (a larger output whose cells come from several input channels), or None."""
    src = _sources(r)
    if src is None:
        return None
    if r.output_shape[1:] == r.input_shape[1:] and all(o[1:] == q[1:] for o, q in src.items()):
        return "permutation"
    if math.prod(r.output_shape[1:]) > math.prod(r.input_shape[1:]):
        return "interleave" if len({q[0] for o, q in src.items() if o[0] == 0}) > 1 else "copies"
    return None


def source_channels(r: Reads, out_channel: int = 0) -> np.ndarray:
    """Int array of the output's spatial shape: the input channel each cell of ``out_channel`` comes from."""
    src = _sources(r)
    assert src is not None
    labels = np.zeros(r.output_shape[1:], dtype=np.int64)
    for o in np.ndindex(*r.output_shape[1:]):
        labels[o] = src[(out_channel, *o)][0]
    return labels


def phase_factor(r: Reads, labels: np.ndarray) -> tuple[int, ...] | None:
    """f per spatial dim (output size / input size) when the source channel depends only on the phase o mod f."""
    f = tuple(o // i for o, i in zip(r.output_shape[1:], r.input_shape[1:]))
    if any(o != i * k for o, i, k in zip(r.output_shape[1:], r.input_shape[1:], f)):
        return None
    cell = labels[tuple(slice(0, k) for k in f)]
    return f if np.array_equal(labels, np.tile(cell, r.input_shape[1:])) else None


def interleave_block(r: Reads, numbers: bool) -> tuple[Block, str]:
    """The input channels read by output channel 0, each in its own colour, one position outlined in all of them;
    the output with every cell in its source channel's colour (number = that channel), the cells that position
    fills outlined. Returns the block and a one-line description."""
    src = _sources(r)
    assert src is not None
    labels = source_channels(r)
    channels = sorted(int(c) for c in np.unique(labels))
    colour = {c: PASTEL[i % len(PASTEL)] for i, c in enumerate(channels)}
    plane_in, plane_out = Plane(tuple(r.input_shape[1:])), Plane(tuple(r.output_shape[1:]))
    picked = tuple(min(1, s - 1) for s in r.input_shape[1:])
    filled = {o for o in np.ndindex(*plane_out.size) if src[(0, *o)][1:] == picked}
    grids = []
    for c in channels:
        grid = plane_in.empty()
        for q in np.ndindex(*plane_in.size):
            rr, cc = plane_in.cell(q)
            grid[rr][cc] = Cell(colour[c], fmt(float(r.x[(c, *q)])) if numbers else "",
                                outline="black" if q == picked else None)
        grids.append(grid)
    out = plane_out.empty()
    for o in np.ndindex(*plane_out.size):
        rr, cc = plane_out.cell(o)
        c = int(labels[o])
        out[rr][cc] = Cell(colour[c], fmt(float(r.y[(0, *o)])) if numbers else str(c),
                           outline="black" if o in filled else None)
    f = phase_factor(r, labels)
    cell = "×".join(map(str, f)) if f else ""
    what = (f"{len(channels)} input channels interleaved: each fills one phase of every {cell} output cell" if f
            else f"{len(channels)} input channels interleaved into one output channel")
    shape_out = "×".join(map(str, r.output_shape[1:]))
    inputs = planes_block(grids, [f"c{c}" for c in channels], r.input_shape[0] - len(channels),
                          per_row=2 if len(r.input_shape) == 3 else 1)
    note = (f"the outlined position {tuple(picked)} of the {len(channels)} channels\nfills the outlined {cell} output "
            f"cell,\none channel per phase" if f else "outlined: where one input position goes")
    return row([column([label("INPUT channels read by output c0", weight="bold"), inputs], gap=0.3),
                arrow(2.5, "interleave"),
                column([label(f"OUTPUT c0 {shape_out} (same cell size; number = input channel)", weight="bold"),
                        cells(out)], gap=0.3),
                label(note, SMALL)], gap=0.8, align="top"), what


def wiring_block(r: Reads) -> Block:
    """Input channels (left) wired to the output channels they become (right); colours follow the channel."""
    src = _sources(r)
    assert src is not None
    centre = tuple(0 for _ in r.output_shape[1:])
    c_in, c_out = r.input_shape[0], r.output_shape[0]
    source = [src[(j, *centre)][0] for j in range(c_out)]
    colours = tap_colours(c_in)
    left = cells([[Cell(colours[c], str(c))] for c in range(c_in)], SMALL)
    right = cells([[Cell(colours[source[j]], str(source[j]))] for j in range(c_out)], SMALL)
    span = 6.0

    def paint(ax: Axes, x: float, y: float) -> None:
        left.paint(ax, x, y + 0.6)
        right.paint(ax, x + 1 + span, y + 0.6)
        for j, c in enumerate(source):
            ax.plot([x + 1, x + 1 + span], [y + 0.6 + c + 0.5, y + 0.6 + j + 0.5], color=colours[c][:3],
                    linewidth=2.0)
        ax.text(x, y, "in", fontsize=SMALL, va="top")
        ax.text(x + 1 + span, y, "out", fontsize=SMALL, va="top")

    body = Block(2 + span, max(c_in, c_out) + 0.6, paint)
    return column([label("channel c of the input → its place in the output (numbers = input channel)", SMALL),
                   body], gap=0.3)


def copies_block(r: Reads, numbers: bool) -> Block:
    """Input cells each in their own colour; every output cell in the colour of the input cell it copies."""
    src = _sources(r)
    assert src is not None
    plane_in, plane_out = Plane(tuple(r.input_shape[1:])), Plane(tuple(r.output_shape[1:]))
    grid_in, grid_out = plane_in.empty(), plane_out.empty()
    for n, q in enumerate(np.ndindex(*plane_in.size)):
        rr, cc = plane_in.cell(q)
        grid_in[rr][cc] = Cell(PASTEL[n % len(PASTEL)], fmt(float(r.x[(0, *q)])) if numbers else "")
    flat = {q: n for n, q in enumerate(np.ndindex(*plane_in.size))}
    for o in np.ndindex(*plane_out.size):
        q = src[(0, *o)][1:]
        rr, cc = plane_out.cell(o)
        grid_out[rr][cc] = Cell(PASTEL[flat[q] % len(PASTEL)], fmt(float(r.y[(0, *o)])) if numbers else "")
    shape = "×".join(map(str, r.input_shape[1:]))
    shape_out = "×".join(map(str, r.output_shape[1:]))
    return row([column([label(f"INPUT c0 {shape}", weight="bold"), cells(grid_in)], gap=0.3),
                arrow(2.5, "copy each cell"),
                column([label(f"OUTPUT c0 {shape_out} (same cell size)", weight="bold"), cells(grid_out)], gap=0.3),
                label("every output cell is a copy of\nthe input cell of the same colour", SMALL)],
               gap=0.8, align="top")


def multi_kernel(module: nn.Module, k: int) -> torch.Tensor | None:
    """The K kernels ``module`` mixes per sample, (K, C_out, C_in/g, *kernel) (its ``kernel_bank()``), or None."""
    bank = module.kernel_bank() if isinstance(module, ConvzooLayer) else None
    return None if bank is None or bank.shape[0] != k else bank.detach()


def dynamic_block(sub: nn.Module, attention: torch.Tensor, out_channel: int, side: str) -> Block | None:
    """K kernels (filter ``out_channel``, input channel 0), the sample's weights π from the side branch named
    ``side`` as bars, Σ πₖ Wₖ."""
    if attention.dim() != 2 or attention.shape[0] != 1:
        return None
    pi = attention[0].detach().double()
    kernels = multi_kernel(sub, pi.numel())
    if kernels is None:
        return None
    ws = kernels[:, out_channel, 0].double().numpy()
    agg = np.tensordot(pi.numpy(), ws, axes=1)
    scale = float(np.abs(ws).max())
    tiles = [column([label(f"W{k}", SMALL), cells(signed_cells(ws[k], scale))], gap=0.15) for k in range(len(ws))]
    bars = []
    for k, p in enumerate(pi.tolist()):
        length = max(0.15, 5 * p)
        bar = Block(5.0, 0.8, lambda ax, x, y, length=length: ax.add_patch(
            Rectangle((x, y + 0.1), length, 0.6, color="#6a51a3")))
        bars.append(row([label(f"π{k}", SMALL), bar, label(fmt(p), SMALL)], gap=0.3, align="center"))
    return row([
        column([label(f"{len(ws)} CANDIDATE KERNELS (filter {out_channel}, input channel 0)", weight="bold"),
                row(tiles, gap=0.6)], gap=0.3),
        arrow(2.0, "weigh by"),
        column([label("WEIGHTS π(x) FOR THIS SAMPLE", weight="bold"),
                label(f"(side branch: {side})", SMALL), column(bars, gap=0.15)], gap=0.3),
        arrow(2.0, "Σ πₖ·Wₖ"),
        column([label("AGGREGATED KERNEL", weight="bold"), cells(signed_cells(agg, scale))], gap=0.3),
        label("the conv below uses\nthe aggregated kernel", SMALL),
    ], gap=0.8, align="top")

