"""A composite layer's GIF: its main stages in the order the layer runs them, on one sample — each stage reads the
value the stages before it produced (as the static picture, ``picture.stage_picture``). A stage with a sliding
window gets the single-kernel GIF's frames (``step.step_block``, one per output position in raster order); a stage
without one — copies (nearest upsampling), an interleave (pixel shuffle), a channel permutation (the shuffle), a
per-pixel map with no kernel of its own (a projection or an attention applied as a function) — gets one held frame
drawn as the static picture draws it; a stage whose parallel branches sum into its kernel (ACNet, RepVGG) first
shows that sum, held. The frames are shared among the stages: at most ``max_frames`` in all, every sliding stage
thinned in raster order (every s-th row and / or column, ``thinning``), to no fewer than ``MIN_STAGE_FRAMES`` where
the budget allows.

A side branch that steers a stage is shown before it, as the static picture shows it: one held frame of its
attention (the K candidate kernels, the sample's weights, the aggregated kernel: dynamic, CondConv, ODConv; the
branch shares: selective kernel), or, for values without a declared attention (offsets, masks, generated kernels),
a line on the steered stage's frames; a stage whose kernel is generated per position (involution) first shows that
kernel at three positions, held. A layer that declares no stages is animated whole by ``animation.frame_images``."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image
from torch import nn

from .animation import MAX_FRAMES, one_canvas, picture_image
from .attention import attention_block, decisive_sample
from .draw import SMALL, TITLE, Block, column, label, swatch_legend
from .layout import BUDGET
from .parts import parts_block
from .picture import Lambda, _stage_module, declared_stages, macs, step_picture
from .position_kernels import position_kernels_block
from .reads import CHANGED, ILLUSTRATED, Reads, analyse, illustrative_copy
from .stages_draw import one_read_kind
from .step import shape_text, step_block
from .taps import DTYPE
from .windows import copies, window_groups
from .wiring import colour_channels

MIN_STAGE_FRAMES = 4  # a sliding stage shown at fewer positions than this no longer reads as sliding


def by_stages(module: nn.Module) -> bool:
    """``module`` is animated stage by stage: it declares stages — several main ones, or side branches that steer
    its one (a dynamic conv's attention: animated whole, its candidate kernels, weights and aggregated kernel were
    lost) — or composes its children."""
    return declared_stages(module) is not None


@dataclass
class StageFrame:
    """One frame of a stage animation: main stage ``stage`` (1-based) of ``stages``, its reads on the running
    sample, and either a window ``position`` of ``out_channel`` (one of ``steps``, the stage's drawn positions)
    or, ``position`` None, the stage held (``held``: its block, drawn as the static picture draws it)."""

    stage: int
    stages: int
    name: str
    reads: Reads
    out_channel: int
    head: str  # 'stage i of n: name (C×H×W → C×H×W; what)'
    position: tuple[int, ...] | None = None
    steps: tuple[tuple[int, ...], ...] = ()
    step_text: str = ""  # 'step j of m (every s-th row and column): output channel c, position p'
    held: Block | None = None
    steered: tuple[str, ...] = ()  # the side branches steering this stage with no picture of their own, in words

    @property
    def caption(self) -> str:
        return f"{self.head}, {self.step_text}" if self.step_text else self.head


@dataclass
class _Stage:
    """A main stage as the animation draws it: its reads, the output channel drawn, what it does in words."""

    name: str
    reads: Reads
    out_channel: int
    what: str
    sliding: bool
    held: Block | None  # a held stage's block
    parts: Block | None  # its branches summed into its kernel, shown before it slides
    sides: list[tuple[str, Block]] = field(default_factory=list)  # (head, attention block): held before it
    steered: tuple[str, ...] = ()  # side branches without a picture (offsets, generated kernels), in words
    varying: Block | None = None  # its kernel at three positions (generated per position), held before it slides


def _per_pixel(r: Reads) -> bool:
    """A map that reads only its own output pixel and has no kernel parameter of its own (a projection or an
    attention given as a function): a window that slides shows nothing there."""
    return r.tap_map is not None and not r.tap_map.parameter and r.n_taps == 1


def _drawn_channel(r: Reads, out_channel: int) -> int:
    """The output channel ``draw_step`` draws: ``out_channel``, or the first computed one where it is a copy (a
    ghost module's intrinsic maps)."""
    copied = copies(r).any(1)
    return int((~copied).nonzero()[0]) if bool(copied[out_channel]) and not bool(copied.all()) else out_channel


def thinning(output_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Steps per spatial dim, from every position to one: each next one visits every s-th position along the dim
    that has the most positions left (the first of equals), so a stage can be thinned a little at a time."""
    sizes = list(output_shape[1:])
    steps = [1] * len(sizes)
    chain = [tuple(steps)]
    while any(len(range(0, n, s)) > 1 for n, s in zip(sizes, steps)):
        d = max(range(len(sizes)), key=lambda d: (len(range(0, sizes[d], steps[d])), -d))
        before = len(range(0, sizes[d], steps[d]))
        while len(range(0, sizes[d], steps[d])) == before:
            steps[d] += 1
        chain.append(tuple(steps))
    return chain


def visited(output_shape: Sequence[int], steps: Sequence[int]) -> list[tuple[int, ...]]:
    """Output positions in raster order, every ``steps[d]``-th along dim d (rows never revisited)."""
    return list(itertools.product(*(range(0, n, s) for n, s in zip(output_shape[1:], steps))))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def thinned_text(steps: Sequence[int]) -> str:
    """' (every 2nd row and column)', ' (every 2nd row)', ' (every 3rd row, every 2nd column)', or ''."""
    names = ["row", "column"] if len(steps) == 2 else ["position"] if len(steps) == 1 else \
        ["slice", "row", "column"]
    said = [(s, n) for s, n in zip(steps, names) if s > 1]
    if not said:
        return ""
    if len(said) == len(steps) > 1 and len(set(steps)) == 1:
        return f" (every {_ordinal(steps[0])} {' and '.join(names)})"
    return " (" + ", ".join(f"every {_ordinal(s)} {n}" for s, n in said) + ")"


def share(shapes: Sequence[Sequence[int]], budget: int, floor: int = MIN_STAGE_FRAMES) -> list[tuple[int, ...]]:
    """Steps per spatial dim for each sliding stage (output shapes (C, *O)), at most ``budget`` frames in all: the
    stage with the most frames is thinned first (``thinning``), none below ``floor`` frames until no other way
    keeps to the budget."""
    chains = [thinning(shape) for shape in shapes]
    counts = [[len(visited(shape, st)) for st in chain] for shape, chain in zip(shapes, chains)]
    at = [0] * len(shapes)
    for low in (floor, 1):
        while sum(c[i] for c, i in zip(counts, at)) > budget:
            can = [k for k, (c, i) in enumerate(zip(counts, at)) if i + 1 < len(c) and c[i + 1] >= low]
            if not can:
                break
            k = max(can, key=lambda k: counts[k][at[k]])
            at[k] += 1
    return [chain[i] for chain, i in zip(chains, at)]


def _side_pictures(model: nn.Module, sides: Sequence, value: torch.Tensor, sub: nn.Module, r: Reads, oc: int,
                   only: bool) -> tuple[list[tuple[str, Block]], tuple[str, ...]]:
    """The side stages ``sides`` before a main stage (they read its input ``value``, (1, C, *S)): (head, attention
    block) for each that holds a declared attention (drawn as the static picture draws it), and one line for each
    that does not (offsets, masks, generated kernels: held fixed in the frames). ``only``: the layer has one main
    stage (the one they steer)."""
    held, said = [], []
    c = int((r.channel_links()[oc] > 0).float().argmax()) if r.input_shape[0] > 1 else 0
    for sd in sides:
        with torch.no_grad():
            v = sd.fn(value)
        head = f"side branch: {sd.name} ({shape_text(value.shape[1:])} → {shape_text(v.shape[1:])})"
        drawn = attention_block(model, sub, v, oc, c, r.kernel_shape)
        if drawn is None:
            said.append(f"{head}: its values steer {'this' if only else 'a later'} stage, held fixed here")
        else:
            held.append((head, drawn))
    return held, tuple(said)


def _stage(model: nn.Module, st, sides: Sequence, value: torch.Tensor, carried: list[str | None] | None,
           last_channel: int | None, numbers: bool, seed: int, only: bool = False
           ) -> tuple[_Stage, torch.Tensor, list[str | None] | None]:
    """Main stage ``st`` of ``model`` analysed on ``value`` (1, C, *S), the side stages before it (``sides``), its
    output and its output channels' colours (for a later held wiring). ``last_channel``: the output channel asked
    for, on the last stage (else None: channel 0); ``only``: ``st`` is the layer's one main stage."""
    with torch.no_grad():
        result = st.fn(value)
    sub = _stage_module(st, value, result)
    r = analyse(sub, tuple(value.shape[1:]), x=value[0], seed=seed, illustrate=False)
    if last_channel is not None and not 0 <= last_channel < r.output_shape[0]:
        raise ValueError(f"out_channel={last_channel} must be below the layer's {r.output_shape[0]} output channels")
    oc = last_channel or 0
    # side stages with this stage's output shape are parallel branches, summed into its kernel; the others steer it
    with torch.no_grad():
        parts = [sd for sd in sides if tuple(sd.fn(value).shape) == tuple(result.shape)]
    held_sides, steered = _side_pictures(model, [sd for sd in sides if all(sd is not p for p in parts)], value, sub,
                                         r, oc, only)
    sliding = one_read_kind(r) is None and (r.geometry is not None or r.tap_map is not None) and not _per_pixel(r)
    if not sliding:  # drawn once, as the static picture draws it
        block, what, carried, legend = step_picture(r, oc, None, numbers, None, carried)
        held = column([block, swatch_legend(legend, max_width=BUDGET[0])], gap=0.8) if legend else block
        return _Stage(st.name, r, oc, what, False, held, None, held_sides, steered), result, carried
    summed = parts_block([(sd.name, analyse(Lambda(sd.fn), tuple(value.shape[1:]), x=value[0], seed=seed,
                                            illustrate=False)) for sd in parts], r, oc) if parts else None
    oc = _drawn_channel(r, oc)
    varying = position_kernels_block(st.fn, value, r, oc) if sides and st.kernel_per_position else None
    if sides and st.kernel_per_position and varying is None:  # said, or a student looks for the changing kernel
        steered += ("the kernel it generates is the same at every position on this sample",)
    n_macs = macs(r)
    # the colours step_block's wiring gives this stage's output channels
    carried = colour_channels(r, window_groups(r), None).carried \
        if r.input_shape[0] > 1 or r.output_shape[0] > 1 else None
    return _Stage(st.name, r, oc, f"{n_macs:,} multiply-adds" if n_macs else "", True, None, summed, held_sides,
                  steered, varying), result, carried


def _stages(module: nn.Module, input_shape: Sequence[int], out_channel: int, numbers: bool,
            x: torch.Tensor | None, seed: int) -> tuple[list[_Stage], list[str]]:
    """Each main stage analysed on the value the stages before it produced, and the notes the static picture
    prints (seeded values filled in, the layer's own illustrative state, the sample chosen)."""
    model = illustrative_copy(module, input_shape, seed, own=True)
    stages = declared_stages(model) or []
    notes = []
    filled = getattr(model, ILLUSTRATED, [])
    if filled:
        notes.append(f"drawn with seeded random values (seed {seed}) in {', '.join(filled)}, which the layer as "
                     "built has at zero, so the mechanism shows")
    if getattr(model, CHANGED, None):
        notes.append(getattr(model, CHANGED))
    if x is None:
        x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(seed + 1), dtype=DTYPE)
        x, which = decisive_sample(model, [s for s in stages if s.side], x.reshape(*input_shape), seed)
        if which:
            notes.append(which)
    value = x.to(DTYPE).reshape(1, *input_shape)
    main = [s for s in stages if not s.side]
    done: list[_Stage] = []
    sides: list = []  # the side stages since the last main stage: they feed the next one
    carried = None  # the previous stage's channel colours, for a held wiring (the shuffle keeps the groups')
    for st in stages:
        if st.side:
            sides.append(st)
            continue
        try:
            stage, value, carried = _stage(model, st, sides, value, carried,
                                           out_channel if st is main[-1] else None, numbers, seed, len(main) == 1)
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            raise ValueError(f"cannot animate stage {len(done) + 1} of {len(main)} ({st.name!r}) of "
                             f"{type(module).__name__}: {str(error).splitlines()[0]}") from error
        done.append(stage)
        sides = []
    return done, notes


def stage_frames(module: nn.Module, input_shape: Sequence[int], out_channel: int = 0,
                 max_frames: int = MAX_FRAMES, numbers: bool = False, x: torch.Tensor | None = None,
                 seed: int = 0) -> tuple[list[StageFrame], list[str]]:
    """The frames of ``module``'s stage animation, in order (what each draws, not yet drawn), and the notes every
    frame carries. Raises ValueError when ``max_frames`` is below one frame per stage."""
    stages, notes = _stages(module, input_shape, out_channel, numbers, x, seed)
    held = sum(not s.sliding for s in stages) + sum(s.parts is not None for s in stages) + \
        sum(len(s.sides) + (s.varying is not None) for s in stages)
    sliding = [s for s in stages if s.sliding]
    if held + len(sliding) > max_frames:
        raise ValueError(f"max_frames={max_frames} is too few for {type(module).__name__}'s {len(stages)} stages: "
                         f"it needs {held + len(sliding)} at least (one per stage, one per side branch's attention, "
                         "one per branch sum)")
    thins = iter(share([s.reads.output_shape for s in sliding], max_frames - held))
    frames: list[StageFrame] = []
    for i, s in enumerate(stages, 1):
        r = s.reads
        head = f"stage {i} of {len(stages)}: {s.name} ({shape_text(r.input_shape)} → {shape_text(r.output_shape)}" \
            + (f"; {s.what})" if s.what else ")")
        for side_head, block in s.sides:  # the attention that makes this stage's kernel, read before it slides
            frames.append(StageFrame(i, len(stages), s.name, r, s.out_channel, side_head, held=block,
                                     step_text=f"it steers stage {i} of {len(stages)} ({s.name})"))
        if s.parts is not None:
            frames.append(StageFrame(i, len(stages), s.name, r, s.out_channel, head, held=s.parts,
                                     step_text="its branches' kernels, summed into the one that slides next",
                                     steered=s.steered))
        if s.varying is not None:
            frames.append(StageFrame(i, len(stages), s.name, r, s.out_channel, head, held=s.varying,
                                     step_text="its kernel is generated at each position: three of them",
                                     steered=s.steered))
        if not s.sliding:
            frames.append(StageFrame(i, len(stages), s.name, r, s.out_channel, head, held=s.held, steered=s.steered))
            continue
        thin = next(thins)
        steps, every = visited(r.output_shape, thin), thinned_text(thin)
        for j, pos in enumerate(steps, 1):
            frames.append(StageFrame(i, len(stages), s.name, r, s.out_channel, head, tuple(pos), tuple(steps),
                                     f"step {j} of {len(steps)}{every}: output channel {s.out_channel}, "
                                     f"position {tuple(pos)}", steered=s.steered))
    return frames, notes


def stage_frame_images(module: nn.Module, input_shape: Sequence[int], title: str | None = None,
                       out_channel: int = 0, max_frames: int = MAX_FRAMES, numbers: bool = False,
                       x: torch.Tensor | None = None, subtitle: str | None = None
                       ) -> tuple[list[Image.Image], list[bool]]:
    """``stage_frames`` drawn, all on one canvas — the titles, the notes, the stage's head in bold, then the
    step's caption and ``step_block`` (a sliding stage) or the stage's picture (a held one) — and which frames
    the GIF holds: a held stage (it is read, not watched) and each stage's last step."""
    plan, notes = stage_frames(module, input_shape, out_channel, max_frames, numbers, x)
    heads = [label(t, TITLE if i == 0 else SMALL, "bold" if i == 0 else "normal")
             for i, t in enumerate(s for s in (title, subtitle) if s)] + [label(n, SMALL) for n in notes]
    images = []
    for f in plan:
        try:
            if f.position is None:
                body = [*([label(f.step_text, SMALL)] if f.step_text else []), f.held]
            else:
                body = [label(f.step_text, SMALL),
                        step_block(f.reads, f.out_channel, f.position, numbers, room_for=f.steps)]
            said = [label(t, SMALL) for t in f.steered]
            images.append(picture_image(column([*heads, label(f.head, weight="bold"), *said, *body], gap=0.4)))
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            raise ValueError(f"cannot draw stage {f.stage} of {f.stages} ({f.name!r}) of {type(module).__name__}"
                             f"{', ' + f.step_text if f.step_text else ''}: {str(error).splitlines()[0]}") from error
    holds = [f.position is None or k + 1 == len(plan) or plan[k + 1].stage != f.stage for k, f in enumerate(plan)]
    return one_canvas(images), holds
