"""Stage pictures that are not a sliding window: nearest upsampling as cell copies, an interleave (depth to
space: several input channels filling the phases of a larger output) as the output coloured by source channel,
and the test of which a stage is (``one_read_kind``; a channel permutation, the shuffle, is drawn as crossing
wiring by ``wiring``). ``dynamic_block``: the K kernels a layer mixes, the sample's weights, their sum."""

from __future__ import annotations

import colorsys
import math
import string
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..layers.base import ConvzooLayer
from .draw import SMALL, Block, Cell, arrow, cells, column, fmt, label, row
from .planes import Plane, planes_block
from .reads import Reads

PASTEL = ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#d9d9d9",
          "#bc80bd", "#ccebc5", "#ffed6f"]


def _sources(r: Reads) -> dict[tuple[int, ...], tuple[int, ...]] | None:
    """Output element → its one input element, when every output element reads exactly one (no kernel parameter:
    the taps, if any, are only the footprint of the reads)."""
    if r.tap_map is not None and r.tap_map.parameter:
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


def interleave_block(r: Reads, numbers: bool, position: Sequence[int] | None = None) -> tuple[Block, str]:
    """The input channels read by output channel 0, each in its own colour, the input position that output
    ``position`` (default: the centre) comes from outlined in all of them — the position the stage before drew, as
    the centre of an r×-larger map comes from the centre of the smaller one —; the output with every cell in its
    source channel's colour (number = that channel), the cells that position fills outlined. Returns the block and a
    one-line description."""
    src = _sources(r)
    assert src is not None
    labels = source_channels(r)
    channels = sorted(int(c) for c in np.unique(labels))
    colour = {c: PASTEL[i % len(PASTEL)] for i, c in enumerate(channels)}
    plane_in, plane_out = Plane(tuple(r.input_shape[1:])), Plane(tuple(r.output_shape[1:]))
    picked = src[(0, *(r.centre() if position is None else tuple(position)))][1:]
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


def cell_colours(n: int) -> list[str | tuple[float, float, float, float]]:
    """n distinct light colours: the pastel palette while it lasts, else hues a golden-ratio step apart (so
    neighbouring cells differ most)."""
    if n <= len(PASTEL):
        return list(PASTEL[:n])
    return [(*colorsys.hsv_to_rgb((0.618034 * i) % 1.0, 0.38 + 0.2 * (i % 3) / 2, 0.97 - 0.08 * (i % 2)), 1.0)
            for i in range(n)]


def cell_name(n: int) -> str:
    """'a', 'b', …, 'z', then 'a1', 'b1', …: a short name that marks a cell and its copies."""
    return string.ascii_lowercase[n % 26] + (str(n // 26) if n >= 26 else "")


def copies_block(r: Reads, numbers: bool) -> Block:
    """Input cells each in their own colour and with their own letter; every output cell in the colour and with the
    letter of the input cell it copies (the values instead in numbers mode)."""
    src = _sources(r)
    assert src is not None
    plane_in, plane_out = Plane(tuple(r.input_shape[1:])), Plane(tuple(r.output_shape[1:]))
    grid_in, grid_out = plane_in.empty(), plane_out.empty()
    colours = cell_colours(math.prod(plane_in.size))
    for n, q in enumerate(np.ndindex(*plane_in.size)):
        rr, cc = plane_in.cell(q)
        grid_in[rr][cc] = Cell(colours[n], fmt(float(r.x[(0, *q)])) if numbers else cell_name(n))
    flat = {q: n for n, q in enumerate(np.ndindex(*plane_in.size))}
    for o in np.ndindex(*plane_out.size):
        q = src[(0, *o)][1:]
        rr, cc = plane_out.cell(o)
        grid_out[rr][cc] = Cell(colours[flat[q]], fmt(float(r.y[(0, *o)])) if numbers else cell_name(flat[q]))
    shape = "×".join(map(str, r.input_shape[1:]))
    shape_out = "×".join(map(str, r.output_shape[1:]))
    return row([column([label(f"INPUT c0 {shape}", weight="bold"), cells(grid_in)], gap=0.3),
                arrow(2.5, "copy each cell"),
                column([label(f"OUTPUT c0 {shape_out} (same cell size)", weight="bold"), cells(grid_out)], gap=0.3),
                label("every output cell is a copy of\nthe input cell of the same colour" +
                      ("" if numbers else "\nand letter"), SMALL)],
               gap=0.8, align="top")


def multi_kernel(module: nn.Module, k: int) -> torch.Tensor | None:
    """The K kernels ``module`` mixes per sample, (K, C_out, C_in/g, *kernel) (its ``kernel_bank()``), or None."""
    bank = module.kernel_bank() if isinstance(module, ConvzooLayer) else None
    return None if bank is None or bank.shape[0] != k else bank.detach()


def dynamic_block(sub: nn.Module, attention: torch.Tensor, out_channel: int, side: str) -> Block | None:
    """K kernels (filter ``out_channel``, input channel 0), the sample's weights π from the side branch named
    ``side`` as bars, Σ πₖ Wₖ; None unless ``sub`` mixes as many kernels (``kernel_bank()``) as π has weights."""
    from .attention import kernels_block

    if attention.dim() != 2 or attention.shape[0] != 1:
        return None
    kernels = multi_kernel(sub, attention.shape[1])
    if kernels is None:
        return None
    return column([label(f"(side branch: {side})", SMALL), kernels_block(kernels, attention[0], out_channel, 0)[0]],
                  gap=0.2)
