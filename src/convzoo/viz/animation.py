"""The sliding window, step by step, as a GIF: one frame per output position of one output channel, in raster
order, each the full picture of that step (kernel, padded input with the window coloured tap by tap, output
with the position marked); the last frame is held. Larger outputs visit every s-th row and column (said on the
frame), still in raster order, so the window never jumps back across rows. Every frame is drawn with room for
every frame's texts and zoom, on one canvas: only the window and the marked output move. A composite layer's
GIF shows its stages in turn (``stage_animation``)."""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .draw import DPI, SMALL, TITLE, Block, column, label, plt, render
from .reads import analyse
from .step import step_block

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


def picture_image(block: Block) -> Image.Image:
    """``block`` drawn as an RGB picture at the pictures' dpi."""
    fig = render(block)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    return Image.open(buffer).convert("RGB")


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
    r = analyse(module, input_shape, x=x)
    if not 0 <= out_channel < r.output_shape[0]:
        raise ValueError(f"out_channel={out_channel} must be below the layer's {r.output_shape[0]} output channels")
    steps, stride = positions(r.output_shape, max_frames)
    frames = []
    for n, pos in enumerate(steps):
        every = f" (every {stride}th row and column)" if stride > 1 else ""
        caption = label(f"step {n + 1} of {len(steps)}{every}: output channel {out_channel}, position {pos}", SMALL)
        heads = [label(t, TITLE if i == 0 else SMALL, "bold" if i == 0 else "normal")
                 for i, t in enumerate(s for s in (title, subtitle) if s)]
        frames.append(picture_image(column([*heads, caption, step_block(r, out_channel, pos, numbers,
                                                                        room_for=steps)], gap=0.4)))
    return one_canvas(frames)


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
        frames = frame_images(module, input_shape, title, out_channel, max_frames, numbers, x, subtitle)
        holds = [False] * (len(frames) - 1) + [True]
    # 256 colours, GIF's most: with 128 the median cut merged tap colours (tap 6 drawn 13 levels off, near tap 5)
    indexed = [f.convert("P", palette=Image.ADAPTIVE, colors=256) for f in frames]
    durations = [HOLD_MS if hold else duration_ms for hold in holds]
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=durations, loop=0, disposal=1)
    return path
