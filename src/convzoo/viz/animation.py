"""The sliding window, step by step, as a GIF: one frame per output position of one output channel, in raster
order, each the full picture of that step (kernel, padded input with the window coloured tap by tap, output
with the position marked); the last frame is held. Larger outputs visit every s-th row and column (said on the
frame), still in raster order, so the window never jumps back across rows. An output of one position (a global
depthwise conv: the kernel is the map) steps across the output channels instead, each frame held, with the sum it
computes beside global average pooling's (``global_contrast``). Every frame is drawn with room for every frame's
texts and zoom, on one canvas: only the window and the marked output move. A composite layer's GIF shows its
stages in turn (``stage_animation``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..layers.form_choice import untimed
from .draw import (DPI, INPUT, OUTPUT, SMALL, TITLE, Block, Cell, Number, arrow, cells, column, fmt, label, plt,
                   render, row, signed_cells, spacer)
from .matrix import conv_matrix
from .reads import Reads, analyse
from .step import covers_map, draw_step, legend_block, reciprocal_text, step_block

MAX_FRAMES = 64
HOLD_MS = 2000


def positions(output_shape: Sequence[int], max_frames: int = MAX_FRAMES) -> tuple[list[tuple[int, ...]], int]:
    """Output positions in raster order, and the step s: every s-th position along each spatial dim, the
    smallest s that keeps at most ``max_frames`` frames."""
    spatial = list(output_shape[1:])
    step = 1
    while math.prod(len(range(0, n, step)) for n in spatial) > max_frames:
        step += 1
    return list(itertools.product(*(range(0, n, step) for n in spatial))), step


NUMBERED_CELLS = 64  # a map up to this many cells has its numbers printed in the contrast's grids
POOLING = "#f3d0d0"  # average pooling's one weight


def pooling_weight_text(value: float) -> Number:
    """Average pooling's weight 1/n as its caption says it ('0.0625', '0.016'): fmt's two decimals print 1/64 as
    0.02, and 64 of them would not add up to 1."""
    return Number(reciprocal_text(round(1 / value)).split(" ", 1)[1], value, keep_digits=True)


def _numbered(fills: np.ndarray, values: np.ndarray, printed: bool, text=fmt) -> list[list[Cell]]:
    """(rows, cols) cells: ``fills`` (a colour per cell, or one colour) with ``values`` printed (by ``text``) when
    ``printed``."""
    values = np.asarray(values, float)
    return [[Cell(fills[i][k] if isinstance(fills, list) else fills, text(float(values[i, k])) if printed else "")
             for k in range(values.shape[1])] for i in range(values.shape[0])]


def weighted_sum_row(weights: np.ndarray, plane: np.ndarray, result: float, weights_said: str, plane_said: str,
                     result_said: str, signed: bool = True, bias: float = 0.0, lead: float = 0.0) -> Block:
    """weights (H, W) × plane (H, W) → Σ (+ bias) = ``result``, the grids side by side with their numbers (maps
    up to ``NUMBERED_CELLS``); ``signed``: the weights in red + / blue −, else in average pooling's one colour;
    ``lead``: the weights' column at least this wide (rows drawn one above the other line up)."""
    weights, plane = np.asarray(weights, float), np.asarray(plane, float)
    printed = weights.size <= NUMBERED_CELLS
    fills = [[c.fill for c in line] for line in signed_cells(weights, float(np.abs(weights).max()) or 1.0)] \
        if signed else POOLING
    summed = f"Σ of the {weights.size}\nproducts" + (f"\n+ bias {fmt(bias)}" if abs(bias) > 1e-9 else "")
    text = fmt if signed else pooling_weight_text
    return row([column([label(weights_said, SMALL), cells(_numbered(fills, weights, printed, text), SMALL),
                        spacer(lead)], gap=0.15),
                label("×", weight="bold"),
                column([label(plane_said, SMALL), cells(_numbered(INPUT, plane, printed), SMALL)], gap=0.15),
                arrow(1.6, summed),
                column([label(result_said, SMALL), cells([[Cell(OUTPUT, fmt(result))]], SMALL)], gap=0.15)],
               gap=0.5, align="center")


def global_contrast(r: Reads, out_channel: int, matrix: torch.Tensor | None = None) -> Block | None:
    """For a layer whose one output cell per channel reads the whole map (``step.covers_map``: a global depthwise
    conv): output ``out_channel`` as its input channel's map times the layer's own H×W weights (its conv matrix,
    ``matrix`` when given: (C_out, C_in·H·W)) summed, above global average pooling's sum of the same map times
    1/(H·W) (``nn.AdaptiveAvgPool2d``'s own matrix). The outputs printed are the layers' own. None for other layers
    or a layer not linear in its input."""
    if not covers_map(r) or not 1 <= len(r.input_shape) - 1 <= 2:
        return None
    links = r.channel_links()[out_channel] > 0
    if not bool(links.any()):
        return None
    c, size = int(links.float().argmax()), math.prod(r.input_shape[1:])
    try:
        matrix = conv_matrix(r.module, r.input_shape) if matrix is None else matrix
    except ValueError:  # not affine in its input: no single set of weights to show
        return None
    pool = (nn.AdaptiveAvgPool1d if len(r.input_shape) == 2 else nn.AdaptiveAvgPool2d)(1)
    shape = (r.input_shape[1:] if len(r.input_shape) == 3 else (1, r.input_shape[1]))
    uniform = conv_matrix(pool, r.input_shape)[c, c * size:(c + 1) * size].reshape(shape).numpy()
    weights = matrix[out_channel, c * size:(c + 1) * size].double()
    x = r.x[c].double().reshape(-1)
    with torch.no_grad():
        dtype = next((q.dtype for q in r.module.parameters()), r.x.dtype)
        y = float(r.module(r.x[None].to(dtype)).reshape(-1)[out_channel])
        mean = float(pool(r.x[None].double()).reshape(-1)[c])
    plane = x.reshape(shape).numpy()
    said = (f"weights of output c{out_channel}", f"every weight 1/{size} {reciprocal_text(size)}")
    lead = max(label(t, SMALL).w for t in said)
    ours = weighted_sum_row(weights.reshape(shape).numpy(), plane, y, said[0], f"input c{c}", f"output c{out_channel}",
                            bias=y - float(weights @ x), lead=lead)
    theirs = weighted_sum_row(uniform, plane, mean, said[1], f"input c{c}", "its output", signed=False, lead=lead)
    return column([label(f"THIS LAYER: its own {'×'.join(map(str, shape))} weights on input c{c}", weight="bold"),
                   ours, label(f"GLOBAL AVERAGE POOLING of input c{c}: the same weight everywhere", weight="bold"),
                   theirs], gap=0.25)


def picture_image(block: Block) -> Image.Image:
    """``block`` drawn as an RGB picture at the pictures' dpi: the pixels ``savefig(..., dpi=DPI)`` writes, read
    from the canvas (no PNG encoded and decoded per frame)."""
    fig = render(block)
    fig.set_dpi(DPI)
    fig.canvas.draw()
    image = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    plt.close(fig)
    return image


def one_canvas(frames: Sequence[Image.Image]) -> list[Image.Image]:
    """Every frame pasted at the top left of one white canvas as large as the largest: a GIF frame smaller than
    the first would leave the one before showing around it."""
    size = (max(f.width for f in frames), max(f.height for f in frames))
    canvases = []
    for frame in frames:
        canvas = Image.new("RGB", size, "white")
        canvas.paste(frame, (0, 0))
        canvases.append(canvas)
    return canvases


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def frame_images(module: nn.Module, input_shape: Sequence[int], title: str | None = None, out_channel: int = 0,
                 max_frames: int = MAX_FRAMES, numbers: bool = False, x: torch.Tensor | None = None,
                 subtitle: str | None = None) -> list[Image.Image]:
    """The animation's frames as RGB pictures, all one size: each the full picture of one step of
    ``positions(...)``, drawn with room for every frame's texts and zoom so that nothing but the window moves.
    A composite layer (``stage_animation.by_stages``) is animated stage by stage instead."""
    # imported here: stage_animation builds on this module's helpers
    from .stage_animation import by_stages, stage_frame_images

    if max_frames < 1:
        raise ValueError(f"max_frames={max_frames} must be at least 1")
    if by_stages(module):
        return stage_frame_images(module, input_shape, title, out_channel, max_frames, numbers, x, subtitle)[0]
    return _single_frames(module, input_shape, title, out_channel, max_frames, numbers, x, subtitle)[0]


def _single_frames(module: nn.Module, input_shape: Sequence[int], title: str | None, out_channel: int,
                   max_frames: int, numbers: bool, x: torch.Tensor | None, subtitle: str | None
                   ) -> tuple[list[Image.Image], list[bool]]:
    """A single kernel's frames and which are held: one per output position of ``out_channel`` (the last held);
    or, for an output of one position and several channels, one per output channel (each held: its sum is read)."""
    r = analyse(module, input_shape, x=x)
    if not 0 <= out_channel < r.output_shape[0]:
        raise ValueError(f"out_channel={out_channel} must be below the layer's {r.output_shape[0]} output channels")
    steps, stride = positions(r.output_shape, max_frames)
    heads = [label(t, TITLE if i == 0 else SMALL, "bold" if i == 0 else "normal")
             for i, t in enumerate(s for s in (title, subtitle) if s)]
    if len(steps) == 1 and r.output_shape[0] > 1:  # nothing slides: step across the channels, each to be read
        channels = [(out_channel + k) % r.output_shape[0] for k in range(min(r.output_shape[0], max_frames))]
        try:
            matrix = conv_matrix(r.module, r.input_shape) if covers_map(r) else None
        except ValueError:
            matrix = None
        frames = []
        for n, j in enumerate(channels):
            caption = label(f"step {n + 1} of {len(channels)}: output channel {j}, position {steps[0]}", SMALL)
            contrast = global_contrast(r, j, matrix)  # None unless the window is the whole map
            step = draw_step(r, j, steps[0], numbers, room_for=steps)  # its legend goes under the contrast
            legend = legend_block(r, numbers, max(step.block.w, 40), step.legend)
            body = column([step.block, *([contrast] if contrast is not None else []), legend], gap=0.8)
            frames.append(picture_image(column([*heads, caption, body], gap=0.4)))
        return one_canvas(frames), [True] * len(frames)
    from .stage_animation import thinned_text  # imported here: stage_animation builds on this module

    every = thinned_text([stride] * len(steps[0]))  # ' (every 3rd row and column)'
    frames = []
    for n, pos in enumerate(steps):
        caption = label(f"step {n + 1} of {len(steps)}{every}: output channel {out_channel}, position {pos}", SMALL)
        frames.append(picture_image(column([*heads, caption, step_block(r, out_channel, pos, numbers,
                                                                        room_for=steps)], gap=0.4)))
    return one_canvas(frames), [False] * (len(frames) - 1) + [True]


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def animate(module: nn.Module, input_shape: Sequence[int], path: str | Path, title: str | None = None,
            out_channel: int = 0, max_frames: int = MAX_FRAMES, duration_ms: int = 500, numbers: bool = False,
            x: torch.Tensor | None = None, subtitle: str | None = None) -> Path:
    """Write a GIF of ``module``'s window on inputs of shape ``input_shape`` = (C_in, *S) (``frame_images``; a
    composite layer stage by stage, each held stage and each stage's last step shown for ``HOLD_MS``)."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animation path {str(path)!r} must end in .gif")
    from .stage_animation import by_stages, stage_frame_images

    if by_stages(module):
        frames, holds = stage_frame_images(module, input_shape, title, out_channel, max_frames, numbers, x, subtitle)
    else:
        if max_frames < 1:
            raise ValueError(f"max_frames={max_frames} must be at least 1")
        frames, holds = _single_frames(module, input_shape, title, out_channel, max_frames, numbers, x, subtitle)
    # 256 colours, GIF's most: with 128 the median cut merged tap colours (tap 6 drawn 13 levels off, near tap 5)
    indexed = [f.convert("P", palette=Image.ADAPTIVE, colors=256) for f in frames]
    durations = [HOLD_MS if hold else duration_ms for hold in holds]
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=durations, loop=0, disposal=1)
    return path
