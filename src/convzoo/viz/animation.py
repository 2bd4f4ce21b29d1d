"""The sliding window, step by step, as a GIF: one frame per output position (of output channel 0), showing the
input elements that position reads — drawn from the module's autograd connectivity, so strides, dilation,
padding, transposed zero-insertion and deformable offsets all show as the operator really behaves."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from torch import nn

from .connectivity import Connectivity, connectivity
from .figures import PICKED, READ, ConnectivityPanels, plt, stack_channels
from .spec import describe

MAX_FRAMES = 40


def positions(output_shape: Sequence[int], max_frames: int = MAX_FRAMES) -> list[tuple[int, ...]]:
    """Output positions in raster order, evenly thinned to at most ``max_frames``."""
    every = list(itertools.product(*(range(s) for s in output_shape[1:])))
    if len(every) <= max_frames:
        return every
    picks = np.linspace(0, len(every) - 1, max_frames).round().astype(int)
    return [every[i] for i in picks]


def animate(module: nn.Module, input_shape: Sequence[int], path: str | Path, title: str | None = None,
            out_channel: int = 0, max_frames: int = MAX_FRAMES, duration_ms: int = 350,
            conn: Connectivity | None = None) -> Path:
    """Write a GIF of the sliding window of ``module`` on inputs of shape ``input_shape`` = (C_in, *S)."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animation path {str(path)!r} must end in .gif")
    conn = conn or connectivity(module, input_shape)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    panels = ConnectivityPanels(conn, axes[0], axes[1])
    fig.suptitle(f"{title or type(module).__name__}\n{describe(module)}\n ", fontsize=9)
    fig.tight_layout()
    fig.set_dpi(72)
    fig.canvas.draw()
    # Matplotlib draws the labelled grids once; each frame then paints the cells of that step into a copy of
    # the background (painting cells is ~100× faster than redrawing the figure 40 times).
    background = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    height = background.shape[0]
    boxes = [_cell_boxes(ax, height, shape) for ax, shape in ((axes[0], panels.in_shape), (axes[1], panels.out_shape))]
    plt.close(fig)
    read, picked = _rgb(READ_RGB), _rgb(PICKED_RGB)
    frames = []
    for pos in positions(conn.output_shape, max_frames):
        frame = background.copy()
        deps = stack_channels(conn.deps(out_channel, *pos).numpy().astype(float), panels.shown)[0]
        marker = np.zeros(conn.output_shape)
        marker[(out_channel, *pos)] = 1
        out = stack_channels(marker, panels.shown)[0]
        for image, (xs, ys), colour in ((deps, boxes[0], read), (out, boxes[1], picked)):
            for r, c in zip(*np.nonzero(np.nan_to_num(image) > 0)):
                frame[ys[r] + 1:ys[r + 1], xs[c] + 1:xs[c + 1]] = colour
        img = Image.fromarray(frame)
        ImageDraw.Draw(img).text((8, height - 16), f"step: output channel {out_channel}, position {pos}",
                                 fill=(0, 0, 0))
        frames.append(img.convert("P", palette=Image.ADAPTIVE, colors=64))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return path


READ_RGB, PICKED_RGB = READ, PICKED


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def _cell_boxes(ax, height: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel edges of the image cells of ``ax``: columns xs[c]..xs[c+1], rows ys[r]..ys[r+1] (top-down)."""
    rows, cols = shape
    to_px = ax.transData.transform
    xs = np.array([to_px((c - 0.5, 0))[0] for c in range(cols + 1)]).round().astype(int)
    ys = np.array([height - to_px((0, r - 0.5))[1] for r in range(rows + 1)]).round().astype(int)
    return xs, ys
