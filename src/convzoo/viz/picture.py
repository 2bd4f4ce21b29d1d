"""The picture of any layer: one step (``step.step_block``), or — for a layer that declares stages (the layer
contract's ``stages()``) — stage by stage from its own sub-layers: depthwise → pointwise, k×1 → 1×k, L → V → H,
grouped → shuffle, upsample → conv, an attention branch over K kernels → the aggregated kernel → the conv.
What each stage is drawn as follows from what it reads, never from a family name:

* a sliding window (gather / scatter / fractional): kernel, input, output, channels (``step``);
* one input element per output element, same position, other channel: a channel permutation (``wiring``);
* one input element per output element, larger output: copies (nearest upsampling) when each output channel
  reads one input channel, an interleave (pixel shuffle) when it reads several;
* a side stage whose output is one weight per kernel of the next stage's K-kernel parameter: the K kernels, the
  attention bars for this sample and the aggregated kernel (``dynamic``);
* a side stage after which the next stage's window kernel differs from position to position: that kernel at
  three positions (``position_kernels``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .draw import SMALL, TITLE, Block, arrow, column, label, render
from .position_kernels import position_kernels_block
from .reads import ILLUSTRATED, Reads, analyse, illustrative_copy
from .taps import DTYPE
from .step import legend_block, shape_text, step_block
from .stages_draw import copies_block, dynamic_block, interleave_block, one_read_kind, wiring_block


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
    """Multiply-accumulates of a window step: taps per channel pair × output positions (padding taps included)."""
    return int(r.pair_taps().sum()) * math.prod(r.output_shape[1:]) if r.geometry is not None else 0


def step_picture(r: Reads, out_channel: int, position: Sequence[int] | None, numbers: bool) -> tuple[Block, str]:
    """The block of one step and a one-line description of what it does."""
    kind = one_read_kind(r)
    if kind == "permutation":
        return wiring_block(r), "a channel permutation: every output channel is one input channel, moved"
    if kind == "copies":
        return copies_block(r, numbers), "copies: every output cell is a copy of one input cell"
    if kind == "interleave":
        return interleave_block(r, numbers)
    block = step_block(r, out_channel if out_channel < r.output_shape[0] else 0,
                       position if position is not None and len(position) == len(r.output_shape) - 1 else None,
                       numbers, legend=False)
    n = macs(r)
    return block, (f"{n:,} multiply-adds" if n else "")


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


def stage_picture(module: nn.Module, input_shape: Sequence[int], out_channel: int = 0,
                  position: Sequence[int] | None = None, numbers: bool = False,
                  x: torch.Tensor | None = None, seed: int = 0) -> Block:
    """Every stage of a composite layer, top to bottom, each drawn from its own sub-layer on the running sample."""
    model = illustrative_copy(module, input_shape, seed)
    stages = declared_stages(model) or []
    if x is None:
        x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(seed + 1), dtype=DTYPE)
    value = x.to(DTYPE).reshape(1, *input_shape)
    blocks: list[Block] = []
    main_stages = [s for s in stages if not s.side]
    legend_reads: Reads | None = None
    sides: list[tuple[object, torch.Tensor]] = []
    n = 0
    for st in stages:
        if st.side:
            with torch.no_grad():
                sides.append((st, st.fn(value)))
            continue
        n += 1
        last = st is main_stages[-1]
        with torch.no_grad():
            result = st.fn(value)
        notes: list[Block] = []
        # Side stages with the shape of this stage's output are parallel parts (HetConv's k×k and 1×1): each is
        # drawn as its own step; other side stages steer this stage (attention, offsets) and are described.
        parts = [(sd, v) for sd, v in sides if tuple(v.shape) == tuple(result.shape)]
        for k, (sd, _) in enumerate(parts, 1):
            pr = analyse(Lambda(sd.fn), tuple(value.shape[1:]), x=value[0], seed=seed, illustrate=False)
            pblock, pwhat = step_picture(pr, out_channel if last else 0, position if last else None, numbers)
            blocks.append(column([label(f"PART {n}.{k}: {sd.name}" + (f"  ({pwhat})" if pwhat else ""),
                                        weight="bold"), pblock], gap=0.4))
            blocks.append(arrow(1.2, "", vertical=True))
            legend_reads = _richer(legend_reads, pr)
        sub = st.module if st.module is not None else Lambda(st.fn)
        r = analyse(sub, tuple(value.shape[1:]), x=value[0], seed=seed, illustrate=False)
        block, what = step_picture(r, out_channel if last else 0, position if last else None, numbers)
        if parts:
            notes.append(label(" + ".join(f"part {n}.{k}" for k in range(1, len(parts) + 1)) + " = this stage", SMALL))
        for sd, v in sides:
            if any(sd is p for p, _ in parts):
                continue
            notes.append(label(f"side branch '{sd.name}' ({shape_text(value.shape[1:])} → {shape_text(v.shape[1:])}) "
                               f"computes the values this stage uses", SMALL))
            dyn = dynamic_block(sub, v, out_channel if last else 0, sd.name)
            if dyn is not None:
                notes.append(dyn)
        if sides and st.kernel_per_position:
            varying = position_kernels_block(st.fn, value, r, out_channel if last else 0)
            if varying is not None:
                notes.append(varying)
        sides = []
        if notes:
            block = column([*notes, block], gap=0.5)
        legend_reads = _richer(legend_reads, r)
        head = f"STAGE {n}: {st.name}  ({shape_text(r.input_shape)} → {shape_text(r.output_shape)}" + \
               (f"; {what})" if what else ")")
        blocks.append(column([label(head, weight="bold"), block], gap=0.4))
        value = result
        if not last:
            blocks.append(arrow(1.2, "", vertical=True))
    filled = getattr(model, ILLUSTRATED, [])
    if filled:
        blocks.insert(0, label(f"drawn with seeded random values (seed {seed}) in {', '.join(filled)}, which the layer "
                               "as built has at zero, so the mechanism shows", SMALL))
    body = column(blocks, gap=0.3)
    if legend_reads is not None:
        body = column([body, legend_block(legend_reads, numbers, max(body.w, 40))], gap=0.8)
    return body


def layer_block(module: nn.Module, input_shape: Sequence[int], title: str | None = None,
                subtitle: str | None = None, out_channel: int = 0, position: Sequence[int] | None = None,
                numbers: bool = False, x: torch.Tensor | None = None, seed: int = 0) -> Block:
    """The picture of ``module`` on inputs of shape (C_in, *S), with an optional two-line title."""
    if declared_stages(module) is not None:
        body = stage_picture(module, input_shape, out_channel, position, numbers, x, seed)
    else:
        r = analyse(module, input_shape, x=x, seed=seed)
        if out_channel >= r.output_shape[0]:
            raise ValueError(f"out_channel={out_channel} must be below the layer's {r.output_shape[0]} output channels")
        body, what = step_picture(r, out_channel, position, numbers)
        if one_read_kind(r) is None:
            body = step_block(r, out_channel, position, numbers)
    if title is None and subtitle is None:
        return body
    heads = [label(t, TITLE if i == 0 else SMALL, "bold" if i == 0 else "normal")
             for i, t in enumerate(s for s in (title, subtitle) if s)]
    return column([*heads, body], gap=0.5)


def layer_figure(module: nn.Module, input_shape: Sequence[int], title: str | None = None,
                 subtitle: str | None = None, **kwargs):
    """A matplotlib Figure of ``layer_block``."""
    return render(layer_block(module, input_shape, title, subtitle, **kwargs))

