"""The picture of any layer: one step (``step.draw_step``), or — for a layer that declares stages (the layer
contract's ``stages()``) — stage by stage from its own sub-layers: depthwise → pointwise, k×1 → 1×k, L → V → H,
grouped → shuffle, upsample → conv, an attention branch over K kernels → the aggregated kernel → the conv.
What each stage is drawn as follows from what it reads and what the layer declares, never from a family name:

* a sliding window (gather / scatter / fractional): kernel, input, output, channel wiring (``step``);
* one input element per output element, same position, other channel: a channel permutation, drawn as crossing
  wiring whose lines keep the colours of the groups an earlier stage made (``wiring``);
* one input element per output element, larger output: copies (nearest upsampling) when each output channel
  reads one input channel, an interleave (pixel shuffle) when it reads several;
* a side stage holding attentions (the contract's ``attentions()``): over K kernels of the next stage's
  ``kernel_bank()`` the K kernels, the sample's weights and their sum; over taps / channels / filters the
  multiplied attentions; over branches per-channel shares (``attention``);
* side stages with the stage's output shape are parallel parts: when they add to the same channel pairs their
  kernels are drawn summed into the stage's kernel (``parts``);
* a stage declaring ``kernel_per_position``: its kernel at three positions (``position_kernels``).

Every picture keeps to the size budget of ``layout`` at the defaults: one plane in full, the wiring for the
rest, panels wrapped into rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..layers.form_choice import untimed
from .animation import global_contrast
from .attention import attention_block, decisive_sample
from .draw import SMALL, TITLE, Block, column, label, render, row, swatch_legend
from .layout import BUDGET
from .parts import parts_block, parts_overlap
from .position_kernels import position_kernels_block
from .reads import CHANGED, ILLUSTRATED, Reads, analyse, illustrative_copy
from .stages_draw import copies_block, interleave_block, one_read_kind
from .step import counts_block, covers_map, draw_step, legend_items, shape_text
from .taps import DTYPE
from .windows import copies
from .wiring import colour_channels, wiring_block


class Lambda(nn.Module):
    """A stage given only as a function, as a module (connectivity and taps need a module)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def declared_stages(module: nn.Module) -> list | None:
    """The layer's ``stages()`` when it declares more than one step or a side branch, else its sub-modules in
    order when they compose to the layer's output (a Sequential-like composite); else None."""
    stages = getattr(module, "stages", None)
    declared: list = []
    if callable(stages):
        try:
            declared = list(stages())
        except NotImplementedError:
            declared = []
    main = [s for s in declared if not s.side]
    if len(main) > 1 or len(main) < len(declared):
        return declared
    return None if declared else (inferred_stages(module) or None)


def inferred_stages(module: nn.Module, input_shape: Sequence[int] | None = None) -> list:
    """The non-identity children of ``module`` as stages, when composing them reproduces ``module(x)`` on a sample
    input (checked numerically, so a layer with a side branch or parallel paths is never split wrongly)."""
    from ..layers.base import Stage

    children = [(n, m) for n, m in module.named_children() if not isinstance(m, nn.Identity)]
    if len(children) < 2 or input_shape is None and getattr(module, "in_channels", None) is None:
        return []
    dims = len(getattr(module, "kernel_size", ()) or ()) or 2
    shape = tuple(input_shape) if input_shape is not None else (int(module.in_channels), *(7,) * dims)
    dtype = next((p.dtype for p in module.parameters()), torch.get_default_dtype())
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
    try:
        with torch.no_grad():
            y, z = module(x), x
            for _, m in children:
                z = m(z)
    except (RuntimeError, ValueError, TypeError):
        return []
    if z.shape != y.shape or not torch.allclose(z, y, rtol=1e-4, atol=1e-5):
        return []
    return [Stage(name, m, module=m) for name, m in children]


def macs(r: Reads) -> int:
    """Multiply-accumulates of a window step: taps per channel pair × output positions (padding taps included);
    a channel passed through unchanged (``copies``: a ghost module's intrinsic maps) is no multiply-add."""
    if r.geometry is None:
        return 0
    taps = r.pair_taps().sum(-1) * ~copies(r)
    return int(taps.sum()) * math.prod(r.output_shape[1:])


def step_picture(r: Reads, out_channel: int, position: Sequence[int] | None, numbers: bool,
                 planes: int | None = None, carried: Sequence[str | None] | None = None, show_kernel: bool = True
                 ) -> tuple[Block, str, list[str | None] | None, list]:
    """The block of one step, a one-line description of what it does, the colours of its output channels (for
    the next stage's wiring) and its legend entries."""
    kind = one_read_kind(r)
    out_channel = out_channel if out_channel < r.output_shape[0] else 0
    position = tuple(position) if position is not None and len(position) == len(r.output_shape) - 1 else r.centre()
    if kind == "permutation":
        colouring = colour_channels(r, [], carried, permutation=True)
        block = wiring_block(r, out_channel, position, colouring, permutation=True)
        legend = [(c, t, False) for c, t in colouring.legend]
        return block, "a channel permutation: every output channel is one input channel, moved", \
            colouring.carried, legend
    if kind == "copies":
        kept = list(carried) if carried is not None and len(carried) == r.output_shape[0] else None
        return copies_block(r, numbers), "copies: every output cell is a copy of one input cell", kept, []
    if kind == "interleave":
        block, what = interleave_block(r, numbers, position)
        return block, what, None, []
    step = draw_step(r, out_channel, position, numbers, planes, carried, show_kernel)
    n = macs(r)
    return step.block, (f"{n:,} multiply-adds" if n else ""), \
        (step.colouring.carried if step.colouring is not None else None), step.legend


def _richer(a: Reads | None, b: Reads) -> Reads | None:
    """The reads whose legend says more (fractional reads, more taps, then padding): one legend line serves every
    stage."""
    if b.geometry is None and b.tap_map is None:
        return a

    def score(r: Reads) -> tuple[bool, int, bool]:
        g = r.geometry
        return (g is None, r.n_taps,
                bool(g is not None and g.kind == "gather" and any(lo or hi for lo, hi in g.padding())))

    return b if a is None or score(b) > score(a) else a


def _stage_module(st, value: torch.Tensor, result: torch.Tensor) -> nn.Module:
    """The stage's sub-layer when it computes the stage's output shape, else the stage's function (a ghost
    module's stage names its cheap conv but also concatenates the primary maps)."""
    if st.module is None:
        return Lambda(st.fn)
    with torch.no_grad():
        try:
            same = tuple(st.module(value).shape) == tuple(result.shape)
        except (RuntimeError, ValueError, TypeError):
            same = False
    return st.module if same else Lambda(st.fn)


def _head(text: str) -> Block:
    return label(text, weight="bold")


def stage_picture(module: nn.Module, input_shape: Sequence[int], out_channel: int = 0,
                  position: Sequence[int] | None = None, numbers: bool = False,
                  x: torch.Tensor | None = None, seed: int = 0, planes: int | None = None) -> Block:
    """Every stage of a composite layer, top to bottom, each drawn from its own sub-layer on the running sample."""
    model = illustrative_copy(module, input_shape, seed, own=True)
    stages = declared_stages(model) or []
    notes: list[Block] = []
    filled = getattr(model, ILLUSTRATED, [])
    if filled:
        notes.append(label(f"drawn with seeded random values (seed {seed}) in {', '.join(filled)}, which the layer "
                           "as built has at zero, so the mechanism shows", SMALL))
    changed = getattr(model, CHANGED, None)
    if changed:
        notes.append(label(changed, SMALL))
    if x is None:
        x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(seed + 1), dtype=DTYPE)
        x, which = decisive_sample(model, [s for s in stages if s.side], x.reshape(*input_shape), seed)
        if which:
            notes.append(label(which, SMALL))
    value = x.to(DTYPE).reshape(1, *input_shape)
    blocks: list[Block] = list(notes)
    main_stages = [s for s in stages if not s.side]
    legend_reads: Reads | None = None
    legend_extra: list = []
    sides: list[tuple[object, torch.Tensor]] = []
    carried: list[str | None] | None = None
    steered = False  # a stage or side block is drawn above: the next stage's head starts with an arrow
    n = 0
    for st in stages:
        if st.side:
            with torch.no_grad():
                sides.append((st, st.fn(value)))
            continue
        n += 1
        last = st is main_stages[-1]
        oc = out_channel if last else 0
        pos = position if last else None
        with torch.no_grad():
            result = st.fn(value)
        sub = _stage_module(st, value, result)
        r = analyse(sub, tuple(value.shape[1:]), x=value[0], seed=seed, illustrate=False)
        oc = oc if oc < r.output_shape[0] else 0
        # Side stages with the shape of this stage's output are parallel parts (branches); others steer it.
        parts = [(sd, v) for sd, v in sides if tuple(v.shape) == tuple(result.shape)]
        part_reads = [(sd.name, analyse(Lambda(sd.fn), tuple(value.shape[1:]), x=value[0], seed=seed,
                                        illustrate=False)) for sd, _ in parts]
        summed = parts_block(part_reads, r, oc) if part_reads else None
        for sd, v in sides:
            if any(sd is p for p, _ in parts):
                continue
            head = f"SIDE BRANCH: {sd.name}  ({shape_text(value.shape[1:])} → {shape_text(v.shape[1:])})"
            j, c = oc, (int((r.channel_links()[oc] > 0).float().argmax()) if r.input_shape[0] > 1 else 0)
            drawn = attention_block(model, sub, v, j, c, r.kernel_shape)
            steered = True
            if drawn is None:  # no attention declared: offsets, masks — said, and held in the pictures below
                blocks.append(column([_head(head), label("its values steer a later stage (held fixed below)", SMALL)],
                                     gap=0.15))
            else:
                blocks.append(column([_head(head), drawn], gap=0.3))
        if summed is not None:
            blocks.append(summed)
            steered = True
        elif part_reads:
            overlap = parts_overlap([pr for _, pr in part_reads])
            blocks.append(label(" + ".join(name for name, _ in part_reads) + " = the stage below" +
                                ("" if overlap else " (each channel pair belongs to one part)"), SMALL))
        block, what, carried, legend = step_picture(r, oc, pos, numbers, planes, carried,
                                                    show_kernel=summed is None)
        legend_extra += [item for item in legend if item[1] not in {e[1] for e in legend_extra}]
        extra: list[Block] = []
        if sides and st.kernel_per_position:
            varying = position_kernels_block(st.fn, value, r, oc)
            if varying is not None:
                extra.append(varying)
        sides = []
        title = f"{'↓ ' if steered else ''}STAGE {n}: {st.name}  ({shape_text(r.input_shape)} → " \
            f"{shape_text(r.output_shape)}" + (f"; {what})" if what else ")")
        blocks.append(column([_head(title), block, *extra], gap=0.4))
        steered = True
        legend_reads = _richer(legend_reads, r)
        value = result
    grown = layer_overlap(model, input_shape, out_channel, position)
    if grown is not None:  # beside the last stage (whose output it counts) where the width allows, else under it
        beside = row([blocks[-1], grown], gap=1.5)
        blocks[-1:] = [beside] if beside.w <= BUDGET[0] else [blocks[-1], grown]
    body = column(blocks, gap=0.6)
    if legend_reads is not None:
        items = legend_items(legend_reads, numbers) + legend_extra
        body = column([body, swatch_legend(items, max_width=BUDGET[0])], gap=0.6)
    return body


def layer_overlap(model: nn.Module, input_shape: Sequence[int], out_channel: int = 0,
                  position: Sequence[int] | None = None) -> Block | None:
    """For a layer drawn stage by stage whose output is larger than its input (upsampling): the whole layer's
    overlap — how many cells of one input channel each output cell of ``out_channel`` depends on (its connectivity,
    by autograd) — the panel a transposed conv's picture draws, so the two compare side by side (resize-then-conv
    reads the same count inside the border; a k = 3, s = 2 transposed conv 1, 2 or 4). None for other layers."""
    from .connectivity import connectivity

    conn = connectivity(model, input_shape)
    if math.prod(conn.output_shape[1:]) <= math.prod(conn.input_shape[1:]):
        return None
    out_channel = out_channel if out_channel < conn.output_shape[0] else 0
    deps = conn.mask[out_channel]  # (*O, C_in, *S)
    reads = deps.reshape(*conn.output_shape[1:], conn.input_shape[0], -1).any(-1)
    reads = reads.reshape(-1, conn.input_shape[0]).any(0)
    c = int(reads.nonzero()[0]) if bool(reads.any()) else 0  # the first input channel the output reads
    counts = deps[(..., c, *([slice(None)] * (len(conn.input_shape) - 1)))]
    counts = counts.reshape(*conn.output_shape[1:], -1).sum(-1).numpy()
    at = tuple(position) if position is not None and len(position) == counts.ndim else \
        tuple(s // 2 for s in counts.shape)
    return column([_head(f"WHOLE LAYER ({shape_text(conn.input_shape)} → {shape_text(conn.output_shape)}): OVERLAP"),
                   counts_block(counts, at, f"input cells of c{c} summed into\neach output cell of c{out_channel}")],
                  gap=0.4)


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def layer_block(module: nn.Module, input_shape: Sequence[int], title: str | None = None,
                subtitle: str | None = None, out_channel: int = 0, position: Sequence[int] | None = None,
                numbers: bool = False, x: torch.Tensor | None = None, seed: int = 0,
                planes: int | None = None) -> Block:
    """The picture of ``module`` on inputs of shape (C_in, *S), with an optional two-line title. ``planes``:
    channel planes drawn in full (default 1 — the wiring shows every channel —, 4 in numbers mode)."""
    if declared_stages(module) is not None:
        body = stage_picture(module, input_shape, out_channel, position, numbers, x, seed, planes)
    else:
        r = analyse(module, input_shape, x=x, seed=seed)
        if out_channel >= r.output_shape[0]:
            raise ValueError(f"out_channel={out_channel} must be below the layer's {r.output_shape[0]} output channels")
        block, _, _, legend = step_picture(r, out_channel, position, numbers, planes)
        # a kernel as large as the map (GDC): its sum beside average pooling's, as the GIF's frames show it; a big
        # kernel's weights already sit beside pooling's, but without the map, the products and the two outputs
        contrast = global_contrast(r, out_channel) if covers_map(r) else None
        body = column([block, *([contrast] if contrast is not None else []),
                       swatch_legend(legend_items(r, numbers) + legend, max_width=BUDGET[0])], gap=0.8)
    return titled(body, title, subtitle)


def titled(body: Block, title: str | None = None, subtitle: str | None = None) -> Block:
    """``body`` under a title line and a subtitle line (those given)."""
    if title is None and subtitle is None:
        return body
    heads = [label(t, TITLE if i == 0 else SMALL, "bold" if i == 0 else "normal")
             for i, t in enumerate(s for s in (title, subtitle) if s)]
    return column([*heads, body], gap=0.5)


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def layer_figure(module: nn.Module, input_shape: Sequence[int], title: str | None = None,
                 subtitle: str | None = None, **kwargs):
    """A matplotlib Figure of ``layer_block``."""
    return render(layer_block(module, input_shape, title, subtitle, **kwargs))
