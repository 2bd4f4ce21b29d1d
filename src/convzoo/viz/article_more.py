"""Article figures that take a mechanism apart step by step, where one layer's picture is not enough: the 1-D
flip-and-slide of f and g (001 §1), the multi-channel example as per-channel partial results and their sum
(001 §2), a filter as deep as the input giving a 2-D output (001 §3), the grouped conv's two filter groups
(001 §10), the deformable conv's offset field (003 §2.2) and the dilated animation (003 §2.2, 001 §7).

Every number is computed by a real convzoo layer (forward passes, ``taps``, the offset conv's output); the
``*_data`` functions return those numbers so tests can check the idea each figure shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch
from torch import nn

from ..registry import build
from .animation import animate
from .connectivity import connectivity
from .diagrams import channel_flow, volume
from .fonts import wrap
from .draw import (INPUT, OUTPUT, SMALL, Block, Cell, arrow, cells, column, fmt, label, row, swatch_legend,
                   tap_colours)
from .irregular import irregular_input
from .numbers import load_kernel
from .picture import declared_stages, layer_block
from .reads import analyse
from .taps import taps

FONT_HEAD = 10.5
RGB = ["#e06666", "#93c47d", "#6fa8dc"]  # the article's red / green / blue input channels
RGB_LIGHT = ["#f4cccc", "#d9ead3", "#cfe2f3"]
GROUP_COLOURS = ["#e06666", "#f6b26b"]  # 001 §10: first filter group red, second orange


def heading(text: str) -> Block:
    return label(text, FONT_HEAD, "bold")


def note(text: str, width: float) -> Block:
    """A small-type note wrapped to ``width`` cells (the width of what it explains)."""
    return label(wrap(text, max(width, 30.0)), SMALL)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _labelled(lines: Sequence[tuple[str, Block]], gap: float = 0.35) -> Block:
    """Rows of (label, block) with the labels in one column of equal width."""
    labels = [label(text, SMALL) for text, _ in lines]
    width = max(b.w for b in labels) + 0.5
    return column([row([Block(width, b.h, b.paint), body], gap=0.0, align="center")
                   for b, (_, body) in zip(labels, lines)], gap=gap)


# --- 001 §1: flip and slide ---------------------------------------------------------------------------------------

F_SIGNAL = [0, 1, 3, 3, 1, 0, 2, 1]
G_KERNEL = [3, 2, 1]  # asymmetric, so the flip shows


@dataclass
class FlipSlide:
    f: np.ndarray  # (L,) the signal
    g: np.ndarray  # (k,) the kernel as stored in the layer
    taps: np.ndarray  # (O, L) the kernel tap that input t meets at shift n, -1 none (from the layer's taps)
    products: np.ndarray  # (O, L) f(t)·g(tap), 0 where no tap
    output: np.ndarray  # (O,) the layer's forward output


def flip_slide_data(family: str) -> FlipSlide:
    """``family`` 'convolution' (g flipped, then slid) or 'standard' (cross-correlation: g slid as it is), 1-D,
    padding 0, on ``F_SIGNAL`` with kernel ``G_KERNEL``."""
    layer = load_kernel(build(family, 1, 1, len(G_KERNEL), dim=1, padding=0), _t(G_KERNEL)).double()
    f, g = np.array(F_SIGNAL, dtype=float), np.array(G_KERNEL, dtype=float)
    index = taps(layer, (1, len(f)))[0, :, 0, :].numpy()
    products = np.where(index >= 0, f[None, :] * g[np.maximum(index, 0)], 0.0)
    with torch.no_grad():
        out = layer(_t(F_SIGNAL)[None, None])[0, 0].numpy()
    return FlipSlide(f, g, index, products, out)


def _flip_slide_panel(family: str, title: str, met: str) -> Block:
    d = flip_slide_data(family)
    colours = tap_colours(len(d.g))
    n_out, length = d.taps.shape
    f_row = cells([[Cell(INPUT, fmt(v)) for v in d.f]])
    g_row = cells([[Cell(colours[t], fmt(v)) for t, v in enumerate(d.g)]])
    first = d.taps[0][d.taps[0] >= 0]
    met_row = cells([[Cell(colours[t], fmt(d.g[t])) for t in first]])
    lines: list[tuple[str, Block]] = [("f(t)", f_row), ("g as stored", g_row), (met, met_row)]
    for n in range(n_out):
        grid = [Cell(colours[t], fmt(p)) if t >= 0 else Cell("white", dashed=True)
                for t, p in zip(d.taps[n], d.products[n])]
        lines.append((f"shift n = {n}", cells([grid + [Cell(None), Cell(OUTPUT, fmt(d.output[n]))]])))
    body = _labelled(lines)
    note = label(f"each row: f(t)·g at the cells the kernel covers (colour = the g value met);\n"
                 f"right: their sum = the layer's output at n ({', '.join(fmt(v) for v in d.output)})", SMALL)
    return column([heading(title), body, note], gap=0.4)


def flip_and_slide() -> Block:
    panels = row([
        _flip_slide_panel("convolution", "(a) convolution: g flipped, then slid along f", "g flipped, g(−t)"),
        _flip_slide_panel("standard", "(b) cross-correlation: g slid as it is", "g as it meets f"),
    ], gap=2.5)
    return column([panels, note(f"f = {F_SIGNAL}, g = {G_KERNEL}; 1-D layers with padding 0 (convzoo 'convolution' "
                                f"and 'standard'): the same f and g give different outputs because only (a) flips g",
                                panels.w)], gap=0.6)


# --- 001 §2: multi-channel as per-channel partial results ---------------------------------------------------------


@dataclass
class Partials:
    x: np.ndarray  # (C, H, W)
    weight: np.ndarray  # (C, k, k) the one filter's kernel per channel
    bias: float
    partials: np.ndarray  # (C, H', W'): the layer on channel c alone, less the bias
    output: np.ndarray  # (H', W'): the layer's output


def multi_channel_example() -> tuple[nn.Module, torch.Tensor]:
    """Article 001 §2's multi-channel example, one for both of its figures: a 3 → 1 channel 3×3 conv (padding 0,
    kernels in {−1, 0, 1}, bias 1 — the figure adds a bias after summing the channels) and its 5×5×3 input."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 4, (3, 5, 5), generator=gen).double()
    layer = build("standard", 3, 1, 3, padding=0).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-1, 2, layer.weight.shape, generator=gen).double())
        layer.bias.fill_(1.0)
    return layer, x


def partials_data() -> Partials:
    """The multi-channel example (``multi_channel_example``) taken apart: each channel's partial result is the
    layer's output for an input holding only that channel, less the bias."""
    layer, x = multi_channel_example()
    with torch.no_grad():
        out = layer(x[None])[0, 0]
        parts = []
        for c in range(3):
            alone = torch.zeros_like(x)
            alone[c] = x[c]
            parts.append(layer(alone[None])[0, 0] - layer.bias[0])
    return Partials(x.numpy(), layer.weight[0].detach().numpy(), float(layer.bias.detach()[0]), torch.stack(parts).numpy(),
                    out.numpy())


def multi_channel_partials() -> Block:
    d = partials_data()
    colours = tap_colours(9)

    def grid(a: np.ndarray, fill) -> Block:
        return cells([[Cell(fill if isinstance(fill, str) else fill(r, c), fmt(v)) for c, v in enumerate(line)]
                      for r, line in enumerate(a)])

    lines = []
    for c in range(d.x.shape[0]):
        lines.append(row([
            column([label(f"input channel {c}", SMALL), grid(d.x[c], RGB_LIGHT[c])], gap=0.15),
            label("∗", 18),
            column([label(f"kernel {c}", SMALL), grid(d.weight[c], lambda r, q: colours[3 * r + q])], gap=0.15),
            label("=", 16),
            column([label(f"partial result {c}", SMALL), grid(d.partials[c], RGB[c])], gap=0.15),
        ], gap=0.6, align="center"))
    total = column([label(f"output = Σ partials + bias ({fmt(d.bias)})", SMALL), grid(d.output, OUTPUT)], gap=0.15)
    sums = label(" + ".join(f"{fmt(d.partials[c, 0, 0])}" for c in range(3)) + f" + {fmt(d.bias)} = "
                 f"{fmt(d.output[0, 0])}  (top-left cell)", SMALL)
    body = row([column(lines, gap=0.6), arrow(3, "add the three\npartial results\nand the bias"),
                column([total, sums], gap=0.4)], gap=0.8, align="center")
    return column([body, note("one filter = one 3×3 kernel per input channel (∗: slide and sum, padding 0); each "
                              "kernel slides over its own channel (partial result = the layer on that channel alone), "
                              "then the partials are summed", body.w)], gap=0.6)


# --- 001 §3: a filter as deep as the input → a 2-D output ----------------------------------------------------------


@dataclass
class DeepFilter:
    input_shape: tuple[int, ...]  # (1, D, H, W): one volume of depth D
    kernel_shape: tuple[int, ...]  # (D, k, k)
    output_shape: tuple[int, ...]  # (1, 1, H', W'): depth 1
    equals_2d: bool  # the Conv3d output equals a Conv2d with D input channels on the same numbers


def deep_filter_layer(depth: int = 3) -> nn.Module:
    return build("standard", 1, 1, (depth, 3, 3), dim=3, padding=0, bias=False)


def deep_filter_data(depth: int = 3, size: int = 5) -> DeepFilter:
    layer = deep_filter_layer(depth).double()
    x = torch.rand(1, 1, depth, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        y = layer(x)
        as_2d = torch.nn.functional.conv2d(x[:, 0], layer.weight[:, 0])  # D as channels
    return DeepFilter(tuple(x.shape[1:]), tuple(layer.weight.shape[2:]), tuple(y.shape[1:]),
                      bool(torch.allclose(y[:, :, 0], as_2d)))


def filter_as_deep_as_input() -> Block:
    depth, size = 3, 5
    d = deep_filter_data(depth, size)
    _, h, w = d.output_shape[1:]
    kh, kw = d.kernel_shape[1:]
    step = column([volume(kh, kw, d.kernel_shape[0], depth_colours=RGB),
                   arrow(5, f"one filter {kh}×{kw}×{d.kernel_shape[0]} (depth = input depth):\nmoves along H and W "
                            f"only")], gap=0.3, align="center")
    diagram = row([volume(size, size, depth, depth_colours=RGB), step, volume(h, w, d.output_shape[1], OUTPUT)],
                  gap=0.6, align="center")
    picture = layer_block(deep_filter_layer(depth), (1, depth, size, size))
    return column([
        heading(f"a {size}×{size}×{depth} volume and a filter of depth {depth}: output depth {depth} − {depth} + 1 = "
                f"{d.output_shape[1]}, a {h}×{w} map (2-D)"),
        diagram,
        heading("the same layer (Conv3d, kernel 3×3×3) drawn by depth slices: the output has one slice"),
        picture,
        note(f"computed: output {'×'.join(map(str, d.output_shape))}; equal to a 2-D conv with {depth} input "
             f"channels on the same numbers: {d.equals_2d} — why deep learning still calls this a 2-D convolution",
             picture.w)], gap=0.5)


# --- 001 §10: two filter groups in two colours ---------------------------------------------------------------------


def filter_groups(channel_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group index of each output and each input channel from a (C_out, C_in) channel map: outputs reading the
    same input set form one group, in order of first appearance."""
    sets: list[tuple[int, ...]] = []
    out_group = []
    for line in channel_map:
        key = tuple(np.nonzero(line)[0].tolist())
        if key not in sets:
            sets.append(key)
        out_group.append(sets.index(key))
    in_group = np.full(channel_map.shape[1], -1)
    for g, key in enumerate(sets):
        in_group[list(key)] = g
    return np.array(out_group), in_group


def grouped_two_colours() -> Block:
    c_in, c_out, size, k = 4, 4, 7, 3
    layer = build("grouped", c_in, c_out, k, groups=2, padding=0)
    cmap = connectivity(layer, (c_in, size, size)).channel_map().numpy()
    out_group, in_group = filter_groups(cmap)
    with torch.no_grad():
        o = layer(torch.zeros(1, c_in, size, size)).shape[-1]
    filters = []
    for g, colour in enumerate(GROUP_COLOURS[:int(out_group.max()) + 1]):
        outs = np.nonzero(out_group == g)[0]
        ins = np.nonzero(in_group == g)[0]
        kernels = row([volume(k, k, len(ins), colour, scale=0.5) for _ in outs], gap=0.5)
        filters.append(row([arrow(2.5), column([
            label(f"filter group {g + 1}: {len(outs)} filters {k}×{k}×{len(ins)}\nread input channels "
                  f"{ins.min()}–{ins.max()}, write output channels {outs.min()}–{outs.max()}", SMALL), kernels],
            gap=0.2), arrow(2.5)], gap=0.4, align="center"))
    diagram = row([volume(size, size, c_in, depth_colours=[GROUP_COLOURS[g] for g in in_group]),
                   column(filters, gap=0.8),
                   volume(o, o, c_out, depth_colours=[GROUP_COLOURS[g] for g in out_group])], gap=0.4, align="center")
    wiring = channel_flow([cmap.astype(bool)], ["input", "output"], GROUP_COLOURS)
    return column([row([
        column([heading(f"(a) {size}×{size}×{c_in} → {o}×{o}×{c_out} with 2 filter groups: each filter is only "
                        f"{c_in // 2} deep (D_in / 2)"), diagram], gap=0.5),
        column([heading("(b) channels each output reads"), label("(the layer's connectivity)", SMALL), wiring],
               gap=0.3)], gap=2.0),
        swatch_legend([(GROUP_COLOURS[0], "filter group 1 and the channels it reads and writes", False),
                       (GROUP_COLOURS[1], "filter group 2", False)])], gap=0.6)


# --- 003 §2.2: the offset field --------------------------------------------------------------------------------------

FIELD_SIZE = 7


@dataclass
class OffsetField:
    layer: nn.Module  # the deformable layer whose offset conv made the field
    x: torch.Tensor  # (1, C, H, W)
    field: np.ndarray  # (2N, H, W): Δy, Δx of tap n in channels 2n, 2n + 1 (torchvision's layout)
    taps: int  # N


SPREAD = 0.8  # offsets push tap n along its grid direction by SPREAD × the input value at p
NOISE = 0.12  # and a small seeded random part, so each tap's map is its own


def offset_field_data(size: int = FIELD_SIZE) -> OffsetField:
    """A deformable 3×3 layer on a smooth input (a bright blob at (2, 4)) whose offset conv (its declared side
    stage) is set so that the field spreads the sampling grid where the input is bright — Δp_n(p) = SPREAD·x(p)·
    (grid direction of tap n) — plus seeded noise: the kind of field DCN learns for a large object. The offset
    conv's output is the field: 2N = 18 channels of the input's height and width."""
    layer = build("deformable", 1, 1, 3).double()
    offset_conv = next(s.module for s in declared_stages(layer) or [] if s.side)
    k = layer.weight.shape[-1]
    n = k * k
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    x = torch.exp(-((yy - 2.0) ** 2 + (xx - 4.0) ** 2) / 5.0)[None, None]
    gen = torch.Generator().manual_seed(4)
    r = torch.arange(k, dtype=torch.float64) - k // 2
    dy, dx = (g.reshape(-1) for g in torch.meshgrid(r, r, indexing="ij"))
    with torch.no_grad():
        weight = NOISE * torch.randn(offset_conv.weight.shape, generator=gen, dtype=torch.float64) / k
        weight[0:2 * n:2, 0, k // 2, k // 2] += SPREAD * dy  # Δy of tap t reads x at the centre
        weight[1:2 * n:2, 0, k // 2, k // 2] += SPREAD * dx
        offset_conv.weight.copy_(weight)
        offset_conv.bias.zero_()
        field = offset_conv(x)[0]
    return OffsetField(layer, x, field.numpy()[:2 * n], n)


def _arrow_grid(field_y: np.ndarray, field_x: np.ndarray, picked: tuple[int, int]) -> Block:
    h, w = field_y.shape
    grid = cells([[Cell(INPUT, outline="black" if (r, c) == picked else None) for c in range(w)] for r in range(h)])

    def paint(ax: Axes, x: float, y: float) -> None:
        grid.paint(ax, x, y)
        for r in range(h):
            for c in range(w):
                cx, cy = x + c + 0.5, y + r + 0.5
                ax.plot(cx, cy, "o", markersize=2, color="#555555", zorder=5)
                if abs(field_x[r, c]) + abs(field_y[r, c]) > 0.02:
                    ax.add_patch(FancyArrowPatch((cx, cy), (cx + field_x[r, c], cy + field_y[r, c]),
                                                 arrowstyle="-|>", mutation_scale=8, color="#222222", linewidth=1.2,
                                                 shrinkA=0, shrinkB=0, zorder=6))

    return Block(grid.w, grid.h, paint)


def offset_field() -> Block:
    d = offset_field_data()
    size = d.x.shape[-1]
    colours = tap_colours(d.taps)
    picked = (2, 4)  # the blob's centre: the grid spreads most there
    k = int(round(d.taps ** 0.5))
    tiles = []
    for n in range(d.taps):
        name = row([cells([[Cell(colours[n], str(n))]], SMALL), label(f"ch {2 * n} (Δy), {2 * n + 1} (Δx)", SMALL)],
                   gap=0.3, align="center")
        tiles.append(column([name, _arrow_grid(d.field[2 * n], d.field[2 * n + 1], picked)], gap=0.2))
    maps = column([row(tiles[i:i + k], gap=0.8) for i in range(0, d.taps, k)], gap=0.5)
    c_in = d.x.shape[1]
    blob = [[Cell((1 - 0.55 * v, 1 - 0.35 * v, 1.0, 1.0)) for v in line] for line in d.x[0, 0].numpy()]
    pipeline = row([column([label(f"input feature map {size}×{size}×{c_in}", SMALL), cells(blob)], gap=0.2),
                    arrow(5, f"offset conv 3×3,\n{2 * d.taps} filters (2N, N = {d.taps})"),
                    column([label("offset field", SMALL), volume(size, size, 2 * d.taps, "#f3e3c3")], gap=0.2),
                    arrow(4, "read as N (Δy, Δx)\npairs per position")], gap=0.5, align="center")
    r = analyse(d.layer, (c_in, size, size), x=d.x[0], illustrate=False)
    sampling = irregular_input(r, 0, picked, False, [0])
    lower = row([column([heading("(b) the field as arrows, one map per tap n"),
                         label("channels 2n (Δy) and 2n + 1 (Δx), an arrow (Δx, Δy) at every position", SMALL), maps],
                        gap=0.3),
                 column([heading(f"(c) sampling at the boxed p = {picked}"),
                         label("the 9 points p + Δp: the arrows of (b) at p", SMALL), sampling], gap=0.3)], gap=1.5)
    return column([
        heading(f"(a) the offset conv makes a field as large as the feature map ({size}×{size}), 2N = "
                f"{2 * d.taps} channels"), pipeline, lower,
        note(f"the offset conv's weights set by hand (Δp_n = {SPREAD}·x(p)·direction of tap n, plus seeded noise) so "
             "the grid spreads where the input is bright (an untrained layer starts with zero offsets); the points in "
             "(c) are read back from the layer's own sampling", lower.w)], gap=0.5)


# --- 003 §2.2 / 001 §7: the dilated animation ------------------------------------------------------------------------

DILATED_INPUT = (1, 7, 7)


def dilated_layer() -> nn.Module:
    """3×3 kernel, padding 0, dilation 2 (the article's animation): a 7×7 input gives a 3×3 output."""
    return build("dilated", 1, 1, 3, dilation=2, padding=0)


def dilated_animation(path: str | Path, title: str | None = None, subtitle: str | None = None) -> Path:
    """The window of ``dilated_layer`` at every output position, one GIF frame each."""
    return animate(dilated_layer(), DILATED_INPUT, path, title, subtitle=subtitle, duration_ms=700)


__all__ = ["dilated_animation", "filter_as_deep_as_input", "flip_and_slide", "grouped_two_colours",
           "multi_channel_partials", "offset_field"]


# --- article 003 §2.1: global depthwise conv vs global average pooling -------------------------------------------------


@dataclass
class GlobalPooling:
    """A global depthwise conv and global average pooling on one input, every number the layers' own."""

    x: np.ndarray  # (C, H, W) the input
    weights: np.ndarray  # (C, H, W) output channel c's weights on input channel c (the layer's conv matrix)
    bias: np.ndarray  # (C,)
    gdc: np.ndarray  # (C,) the layer's output, C×1×1 flattened
    pooling: np.ndarray  # (C, H, W) average pooling's weights (nn.AdaptiveAvgPool2d's conv matrix)
    gap: np.ndarray  # (C,) nn.AdaptiveAvgPool2d's output


def gdc_data(channels: int = 3, size: int = 4, seed: int = 0) -> GlobalPooling:
    """A seeded C → C global depthwise conv (a depthwise kernel as large as the size×size map) and global average
    pooling on one seeded input: y_c = Σ_hw W_c[h, w]·x_c[h, w] + b_c against mean_hw x_c[h, w]."""
    from .matrix import conv_matrix

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layer = build("global_depthwise", channels, channels, size).double().eval()
    shape = (channels, size, size)
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    pool = nn.AdaptiveAvgPool2d(1)
    n = size * size

    def own(m: torch.Tensor) -> np.ndarray:  # (C, C·H·W) → each output channel's block on its input channel
        return np.stack([m[c, c * n:(c + 1) * n].reshape(size, size).numpy() for c in range(channels)])

    weights = own(conv_matrix(layer, shape))
    with torch.no_grad():
        y, mean = layer(x).flatten().numpy(), pool(x).flatten().numpy()
    bias = y - (weights * x[0].numpy()).sum((1, 2))
    return GlobalPooling(x[0].numpy(), weights, bias, y, own(conv_matrix(pool, shape)), mean)


def gdc_vs_gap(channels: int = 3, size: int = 4) -> Block:
    """Per channel: its H×W map times the GDC's own H×W weights, summed into one number (C×H×W → C×1×1); beside
    it the same map times average pooling's 1/(H·W) everywhere."""
    from .animation import weighted_sum_row
    from .step import reciprocal_text

    d = gdc_data(channels, size)
    n = size * size
    said = [f"learned weights, channel {c}" for c in range(channels)]
    lead = max(label(t, SMALL).w for t in said)
    ours = [weighted_sum_row(d.weights[c], d.x[c], float(d.gdc[c]), said[c], f"input c{c}", f"output c{c}",
                             bias=float(d.bias[c]), lead=lead) for c in range(channels)]
    theirs = [weighted_sum_row(d.pooling[c], d.x[c], float(d.gap[c]), f"1/{n} {reciprocal_text(n)} each",
                               f"input c{c}", f"output c{c}", signed=False) for c in range(channels)]
    shape = f"{channels}×{size}×{size} → {channels}×1×1"
    left = column([heading(f"GDC ({shape}): each channel's map × its own learned weights, summed"),
                   *ours], gap=0.45)
    right = column([heading(f"global average pooling ({shape}): the same 1/{n} for every cell"), *theirs],
                   gap=0.45)
    return column([row([left, right], gap=2.0),
                   note(f"Weights read from each layer's conv matrix (the GDC seeded, untrained; its bias added in "
                        f"the sum); every output is the layer's own forward pass. Both turn a {size}×{size} map into "
                        "one number per channel: GDC with a learned weight per position and channel, pooling with "
                        "one weight for all.", left.w + right.w)], gap=0.5)


# --- article 003 §2.3 fig. 1: a static kernel for every image, a dynamic one per image ---------------------------------

PHOTOS = (("sky", "china.jpg", 0, 0), ("roof", "china.jpg", 60, 180), ("flower", "flower.jpg", 150, 250))


def _crop(name: str, top: int, left: int, size: int, side: int = 128) -> torch.Tensor:
    """A side×side crop of a scikit-learn sample photograph at (top, left), resized to size×size: (3, size, size)
    in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    small = Image.fromarray(load_sample_image(name)[top:top + side, left:left + side]).resize((size, size),
                                                                                               Image.BILINEAR)
    return torch.tensor(np.asarray(small), dtype=torch.float64).permute(2, 0, 1) / 255


@dataclass
class DynamicSamples:
    """A seeded dynamic conv (3 → 2, K = 4, T = 1) and a static conv on three photographs, filter 0 on input c0."""

    names: list[str]
    images: np.ndarray  # (S, 3, H, W)
    pooled: np.ndarray  # (S, 3) GAP(x): what the attention sees
    pi: np.ndarray  # (S, K) the layer's attention, per sample
    bank: np.ndarray  # (K, k, k) the K candidate kernels (kernel_bank())
    aggregated: np.ndarray  # (S, k, k) Σ_k π_k W_k: the kernel the dynamic conv applies to each sample
    static: np.ndarray  # (k, k) the static conv's kernel: the one it applies to every sample
    untrained_spread: float  # max over k of (max − min over the samples) of π before the attention was trained
    layer: nn.Module  # the dynamic conv drawn (its attention trained as ``routed`` says)


ROUTING_STEPS = 40  # Adam steps that teach the attention to send each photograph to its own kernel


def dynamic_samples_data(size: int = 16, seed: int = 0, routed: bool = True) -> DynamicSamples:
    """π(x) = softmax(FC(ReLU(FC(GAP(x)))) / T) of a seeded dynamic conv for each photograph, and the kernel it
    aggregates, Σ_k π_k(x)·W_k; a seeded standard conv's kernel beside it (the same for every input). ``routed``:
    the attention's two FCs (only they) first trained for ``ROUTING_STEPS`` steps so that photograph s picks kernel
    s (cross-entropy on log π), as training on a task would make it choose; ``untrained_spread`` keeps the spread
    of π between the photographs before that."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layer = build("dynamic", 3, 2, 3, temperature=1.0, reduction=1).double().eval()
        static = build("standard", 3, 2, 3).double().eval()
    x = torch.stack([_crop(file, top, left, size) for _, file, top, left in PHOTOS])
    with torch.no_grad():
        before = layer.attention(x, layer.temperature)
    if routed:
        fcs = layer.attention
        optimiser = torch.optim.Adam(fcs.parameters(), lr=0.05)
        target = torch.arange(len(x)) % layer.num_kernels
        for _ in range(ROUTING_STEPS):
            optimiser.zero_grad()
            loss = nn.functional.nll_loss(torch.log(fcs(x, layer.temperature)), target)
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        pi = layer.attention(x, layer.temperature)
        bank = layer.kernel_bank()[:, 0, 0]  # filter 0 on input c0: (K, k, k)
        aggregated = torch.einsum("sk,kij->sij", pi, bank)
        return DynamicSamples([name for name, *_ in PHOTOS], x.numpy(), x.mean((2, 3)).numpy(), pi.numpy(),
                              bank.numpy(), aggregated.numpy(), static.weight[0, 0].numpy(),
                              float((before.max(0).values - before.min(0).values).max()), layer)


def _kernel_tile(values: np.ndarray, scale: float) -> Block:
    """A kernel in signed colours (one ``scale``) with its values printed."""
    from .draw import signed_cells

    grid = signed_cells(values, scale)
    return cells([[Cell(c.fill, fmt(float(v))) for c, v in zip(line, vals)] for line, vals in zip(grid, values)],
                 SMALL)


def dynamic_samples() -> Block:
    """Three photographs through a static conv (one kernel for all) and a dynamic conv (attention over K kernels →
    a kernel per photograph), every number the layers' own, the per-photograph change drawn on its own scale."""
    from .attention import bars, scale_row
    from .diagrams import image

    d = dynamic_samples_data()
    scale = float(np.abs(d.bank).max())
    candidates = column([heading(f"the dynamic conv's K = {len(d.bank)} candidate kernels (filter 0, input c0)"),
                         row([column([label(f"W{k}", SMALL), _kernel_tile(w, scale)], gap=0.15)
                              for k, w in enumerate(d.bank)], gap=0.6), scale_row(scale)], gap=0.3)
    heads = ["input (16×16 RGB)", "STATIC conv:\nthe kernel it applies", "DYNAMIC: π(x) over W0…W3",
             "DYNAMIC: the kernel it\napplies, Σ πₖ(x)·Wₖ"]
    table = [[label(t, SMALL, "bold") for t in heads]]
    for s, name in enumerate(d.names):
        table.append([
            column([label(f"{name}: GAP = {', '.join(fmt(float(v)) for v in d.pooled[s])}", SMALL),
                    image(np.clip(d.images[s].transpose(1, 2, 0), 0, 1), 3.2)], gap=0.15),
            _kernel_tile(d.static, float(np.abs(d.static).max())),
            bars(d.pi[s].tolist(), [f"π{k}" for k in range(d.pi.shape[1])], highlight=int(d.pi[s].argmax())),
            _kernel_tile(d.aggregated[s], scale)])
    widths = [max(line[k].w for line in table) for k in range(len(heads))]
    lines = [row([Block(w, part.h, part.paint) for w, part in zip(widths, line)], gap=1.2, align="center")
             for line in table]
    body = row([column(lines, gap=0.5), candidates], gap=2.0)
    return column([body, note(
        "Every number is the layers' own: π from the dynamic conv's attention branch (temperature T = 1, where "
        "training's annealing ends), the kernels from its kernel_bank() (seeded), the static kernel from a seeded "
        "standard conv's weight. The static conv applies one kernel to every photograph; the dynamic conv a "
        "different mix of its K kernels to each. Its attention's two small FCs were trained for "
        f"{ROUTING_STEPS} steps to send each photograph to its own kernel, as training on a task makes it choose: "
        f"untrained, π moved by at most {d.untrained_spread:.2f} between these three.", body.w)], gap=0.5)


# --- beyond the articles: involution's kernel, generated at every pixel -----------------------------------------------


@dataclass
class PixelKernels:
    """A seeded involution layer (3×3, one group, r = 1) on an RGB photograph: the kernel generated at each pixel."""

    image: np.ndarray  # (H, W, 3) in [0, 1]
    kernels: np.ndarray  # (H·W, 9) the generator's output at each pixel, taps row-major
    picked: list[int]  # three pixels whose kernels differ most (``position_kernels.most_different``)

    @property
    def mean(self) -> np.ndarray:
        """(9,) the kernel averaged over every pixel: the part all pixels share."""
        return self.kernels.mean(0)

    @property
    def change(self) -> np.ndarray:
        """(H·W, 9) each pixel's kernel minus the shared part: what its own features add."""
        return self.kernels - self.mean


def pixel_kernels_data(size: int = 32, seed: int = 0) -> PixelKernels:
    """H_p = W_1 ReLU(W_0 x_p) (+ biases) at every pixel p of a size×size crop of china.jpg, read from the layer's
    own generator."""
    from .position_kernels import most_different

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        layer = build("involution", 3, 3, 3, padding="same", groups=1, reduction=1).double().eval()
    x = _crop("china.jpg", 60, 180, size, 4 * size)[None]
    with torch.no_grad():
        kernels = layer.generator(x)[0].reshape(9, -1).T.numpy()
    return PixelKernels(x[0].permute(1, 2, 0).numpy(), kernels, most_different(kernels))


def involution_kernels() -> Block:
    """The photograph with three pixels marked; the kernel generated at each on one scale, then each minus the
    kernel averaged over all pixels on its own scale (the per-pixel part, small next to the shared one in this
    untrained layer); and a map of how far every pixel's kernel is from that average."""
    from .diagrams import image

    d = pixel_kernels_data()
    size = d.image.shape[0]
    places = [divmod(i, size) for i in d.picked]
    width = 10.0

    def marked(picture: Block) -> Block:
        def paint(ax: Axes, x0: float, y0: float) -> None:
            picture.paint(ax, x0, y0)
            for name, (r, c) in zip("ABC", places):
                px, py = x0 + (c + 0.5) * width / size, y0 + (r + 0.5) * width / size
                ax.plot(px, py, "s", markersize=9, markerfacecolor="none", markeredgecolor="#ffde00",
                        markeredgewidth=2, zorder=3)
                ax.text(px + 0.45, py - 0.45, name, fontsize=SMALL, color="#ffde00", weight="bold", zorder=3)

        return Block(picture.w, picture.h, paint)

    distance = np.abs(d.change).sum(1).reshape(size, size)  # L1 distance of each pixel's kernel from the mean
    scale = float(np.abs(d.kernels).max())
    reach = float(np.abs(d.change).max())

    def tiles(values: np.ndarray, top: float) -> Block:
        return row([column([label(f"{name} = {place}", SMALL), _kernel_tile(v.reshape(3, 3), top)], gap=0.15)
                    for name, place, v in zip("ABC", places, values)], gap=0.8)

    kernels = column([
        heading("3×3 kernels generated at A, B, C (one scale)"), tiles(d.kernels[d.picked], scale),
        heading("each minus the average kernel over all pixels"), label(f"its own scale ±{fmt(reach)}", SMALL),
        tiles(d.change[d.picked], reach),
        label("the average kernel (the part every pixel shares):", SMALL), _kernel_tile(d.mean.reshape(3, 3), scale)],
        gap=0.3)
    share = 100 * reach / scale
    return column([row([
        column([heading(f"input: china.jpg, {size}×{size} RGB"), marked(image(d.image, width))], gap=0.3),
        column([heading("how far each pixel's kernel is from the average"),
                marked(image(distance, width, cmap="magma"))], gap=0.3),
        kernels], gap=1.2), note(
        "One involution layer (seeded, untrained, one group, r = 1): a 3×3 kernel generated at every pixel from "
        "its own RGB (FC → ReLU → FC, read from the layer's generator). Most of each kernel is the part all pixels "
        f"share (mostly the second FC's bias; taps up to ±{fmt(scale)}); what the pixel's features add is up to "
        f"±{fmt(reach)} ({share:.0f} % of the largest tap), so on one scale A, B and C look alike. Drawn apart, and "
        "mapped over the photograph (bright: far from the average), the per-pixel part follows the picture: the "
        "sky, the roof and the dark band under the eaves get different filters.", 3 * width)], gap=0.5)
