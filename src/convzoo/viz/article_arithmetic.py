"""Article figures of the arithmetic around one layer: padding and stride on an ordinary conv (001 §5, 003 §1.4,
drawn as vdumoulin's conv_arithmetic draws them), the transposed conv as a scatter of k×k stamps (001 §6), and
MobileNet's cost (002): the standard conv's filters against depthwise then pointwise filters, and the width α /
resolution ρ multipliers.

Every number comes from real layers: output sizes from forward passes, windows from the layer's fitted geometry
(``analyse``), each stamp from the transposed conv run on one input cell, costs from ``convzoo.cost``. The
``*_data`` functions return those numbers so that tests can check them against the formulas and torch's own ops.
``FIGURES`` joins the registry of ``article_figures`` through ``joined`` (each figure after the one of its section).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from PIL import Image
from torch import nn

from ..arithmetic import cost
from ..models import mobilenet_v1
from ..registry import build
from .animation import HOLD_MS, one_canvas, picture_image
from .article_figures import ArticleFigure
from .connectivity import connectivity
from .diagrams import volume
from .draw import (EDGE, INPUT, OUTPUT, PADDING, PICKED, SMALL, TITLE, ZERO, Block, Cell, arrow, cells, column,
                   fmt, label, row, swatch_legend, tap_colours)
from .numbers import load_kernel
from .picture import declared_stages
from .reads import analyse
from .taps import taps
from .window import drawn_padding, unread_after

FONT_HEAD = 10.5
UNREAD = "#e2e2e2"  # padding that no window reaches


def _heading(text: str) -> Block:
    return label(text, FONT_HEAD, "bold")


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# --- 001 §5, 003 §1.4: padding and stride ------------------------------------------------------------------------


@dataclass(frozen=True)
class PaddingCase:
    """One panel: a 1→1 ``k``×``k`` conv with ``padding`` and ``stride`` on an ``size``×``size`` input."""

    letter: str
    what: str
    size: int
    padding: int | str
    stride: int = 1
    kernel: int = 3


PADDING_CASES = (
    PaddingCase("a", "no padding", 5, 0),
    PaddingCase("b", "half ('same') padding", 5, "same"),
    PaddingCase("c", "full padding", 5, 2),
    PaddingCase("d", "stride 2", 5, 1, 2),
    PaddingCase("e", "stride 2, even input", 6, 1, 2),
)


@dataclass
class PaddingStride:
    layer: nn.Module
    i: int  # input size
    k: int  # kernel size
    s: int  # stride
    p: tuple[int, int]  # the layer's resolved padding (before, after), the same along both dims
    o: int  # output size, from the layer's forward
    pads: tuple[tuple[int, int], ...]  # padding drawn per dim (what the layer pads)
    window: list[tuple[int, tuple[int, ...]]]  # (tap, input position) of the last output; padding: < 0 or ≥ i
    read: np.ndarray  # bool (padded H, padded W): cells some output's window reads
    unread: tuple[int, ...]  # per dim, trailing padded cells no window reads
    formula: str  # the size rule with the layer's numbers


def _size_formula(i: int, k: int, s: int, p: tuple[int, int], o: int, padding: int | str) -> str:
    """The size rule o = ⌊(i + 2p − k)/s⌋ + 1 in the special form of the case, with its numbers and the layer's o."""
    lo, hi = p
    if s == 1 and lo == hi == 0:
        return f"o = i − k + 1 = {i} − {k} + 1 = {o}"
    if s == 1 and padding == "same":
        return f"p = ⌊k/2⌋ = {lo}:  o = i + 2p − k + 1 = {i} + {lo + hi} − {k} + 1 = {o} = i"
    if s == 1 and lo == hi == k - 1:
        return f"p = k − 1 = {lo}:  o = i + k − 1 = {i} + {k} − 1 = {o}"
    num = i + lo + hi - k
    exact = f" = ⌊{fmt(num / s)}⌋ + 1" if num % s else ""
    return f"p = {lo}:  o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊({i} + {lo + hi} − {k})/{s}⌋ + 1{exact} = {o}"


def padding_stride_data(case: PaddingCase) -> PaddingStride:
    """The case's real Conv2d (convzoo 'standard'), its output size and the windows its fitted geometry gives."""
    layer = build("standard", 1, 1, case.kernel, stride=case.stride, padding=case.padding, bias=False)
    r = analyse(layer, (1, case.size, case.size), illustrate=False)
    g = r.geometry
    if g is None or g.kind != "gather":
        raise ValueError(f"{case}: the layer's reads fit no sliding window")
    pads = drawn_padding(g, r.module)
    size = tuple(n + lo + hi for n, (lo, hi) in zip(g.input_size, pads))
    read = np.zeros(size, dtype=bool)
    for o in np.ndindex(*g.output_size):
        for _, q in g.window(o):
            read[tuple(v + lo for v, (lo, _) in zip(q, pads))] = True
    last = tuple(n - 1 for n in g.output_size)
    lo, hi = layer.padding_pairs[0]
    k, s, o = layer.kernel_size[0], layer.stride[0], r.output_shape[1]
    return PaddingStride(layer, case.size, k, s, (lo, hi), o, pads, g.window(last), read, unread_after(g, r.module),
                         _size_formula(case.size, k, s, (lo, hi), o, case.padding))


def _padding_panel(case: PaddingCase) -> Block:
    d = padding_stride_data(case)
    colours = tap_colours(d.k * d.k)
    (plo, phi), (qlo, qhi) = d.pads
    grid = []
    for r in range(d.i + plo + phi):
        line = []
        for c in range(d.i + qlo + qhi):
            inside = 0 <= r - plo < d.i and 0 <= c - qlo < d.i
            fill = INPUT if inside else PADDING if d.read[r, c] else UNREAD
            line.append(Cell(fill, dashed=not inside))
        grid.append(line)
    for t, (qr, qc) in d.window:  # the last output's window, tap by tap; pale on padding (it multiplies a zero)
        old = grid[qr + plo][qc + qlo]
        grid[qr + plo][qc + qlo] = Cell(colours[t], dashed=old.dashed, alpha=0.45 if old.dashed else 1.0)
    out = [[Cell(OUTPUT) for _ in range(d.o)] for _ in range(d.o)]
    out[-1][-1] = Cell(PICKED, outline="black")
    padded = f", padded to {len(grid)}×{len(grid[0])}" if len(grid) != d.i else ""
    never = ""
    if any(d.unread):
        never = "\nits last padding row and column are never read"
    return column([
        _heading(f"({case.letter}) {case.what}: i = {d.i}, k = {d.k}, s = {d.s}, p = {d.p[0]}"),
        label(d.formula),
        row([column([label(f"input {d.i}×{d.i}{padded}{never}", SMALL), cells(grid)], gap=0.25),
             arrow(2.2, f"k = {d.k}\ns = {d.s}"),
             column([label(f"output {d.o}×{d.o}", SMALL), cells(out)], gap=0.25)], gap=0.5, align="center"),
    ], gap=0.3)


def padding_and_stride() -> Block:
    """The five PADDING_CASES, input, padding and output at one cell size, the last output's window coloured by tap."""
    panels = [_padding_panel(case) for case in PADDING_CASES]
    k = PADDING_CASES[0].kernel
    colours = tap_colours(k * k)
    kernel = cells([[Cell(colours[k * r + c], str(k * r + c)) for c in range(k)] for r in range(k)])
    legend = swatch_legend([(INPUT, "input cell", False), (PADDING, "zero padding", True),
                            (UNREAD, "padding no window reads", True), (OUTPUT, "output cell", False),
                            (PICKED, "the last output, its window coloured by kernel tap", False)])
    key = row([column([label("kernel taps", SMALL), kernel], gap=0.25),
               column([legend, label("o = ⌊(i + 2p − k)/s⌋ + 1 for every panel; output sizes from the layers' "
                                     "forward passes, windows from their taps", SMALL)], gap=0.4)],
              gap=1.0, align="center")
    return column([row(panels[:3], gap=2.0), row(panels[3:], gap=2.0), key], gap=0.9)


# --- 001 §6: transposed convolution as a scatter of stamps ------------------------------------------------------------

SCATTER_X = [[2, 1], [1, 3]]
SCATTER_K = [[1, 2, 1], [3, 1, 2], [2, 1, 3]]  # asymmetric, no zero tap: every stamp cell shows its product
SCATTER_STRIDE = 2


@dataclass
class Scatter:
    layer: nn.Module
    x: np.ndarray  # (i, i) the input
    kernel: np.ndarray  # (k, k) the layer's kernel
    stride: int
    cells: list[tuple[int, int]]  # input cells in raster order, one stamp each
    stamps: np.ndarray  # (n, o, o) the layer's output with every input cell but one set to zero
    tap: np.ndarray  # (n, o, o) int: the kernel tap linking each output cell to that input cell, -1 none
    running: np.ndarray  # (n, o, o) the sum of the first 1, 2, … stamps
    output: np.ndarray  # (o, o) the layer's output on x
    counts: np.ndarray  # (o, o) input cells each output cell receives (the layer's connectivity)


def scatter_data(x: Sequence[Sequence[float]] = SCATTER_X, kernel: Sequence[Sequence[float]] = SCATTER_K,
                 stride: int = SCATTER_STRIDE) -> Scatter:
    """A 1→1 transposed conv (padding 0, no bias) with ``kernel`` and ``stride`` on ``x``, one stamp per input cell."""
    k = len(kernel)
    layer = build("transposed", 1, 1, k, stride=stride, padding=0, output_padding=0, bias=False).double()
    load_kernel(layer, _t(kernel))
    xs = _t(x)
    size = tuple(xs.shape)
    where = taps(layer, (1, *size))[0, :, :, 0].numpy()  # (o, o, i, i)
    order = [tuple(int(v) for v in q) for q in np.ndindex(*size)]
    stamps = []
    with torch.no_grad():
        for q in order:
            one = torch.zeros_like(xs)
            one[q] = xs[q]
            stamps.append(layer(one[None, None])[0, 0].numpy())
        output = layer(xs[None, None])[0, 0].numpy()
    stack = np.stack(stamps)
    counts = connectivity(layer, (1, *size)).fan_in()[0].numpy()
    return Scatter(layer, xs.numpy(), layer.weight.detach()[0, 0].numpy(), layer.stride[0], order, stack,
                   np.stack([where[:, :, r, c] for r, c in order]), np.cumsum(stack, 0), output, counts)


def _kernel_grid(kernel: np.ndarray) -> Block:
    k = kernel.shape[0]
    colours = tap_colours(k * k)
    return cells([[Cell(colours[k * r + c], fmt(kernel[r, c])) for c in range(k)] for r in range(k)])


def _input_grid(d: Scatter, picked: int | None = None) -> Block:
    return cells([[Cell(PICKED if picked is not None and d.cells[picked] == (r, c) else INPUT, fmt(v),
                        outline="black" if picked is not None and d.cells[picked] == (r, c) else None)
                   for c, v in enumerate(line)] for r, line in enumerate(d.x)])


def _spread_grid(d: Scatter, picked: int | None = None) -> Block:
    """The input with s − 1 zeros inserted between its cells: where each stamp's tap 0 lands on the output."""
    n = (d.x.shape[0] - 1) * d.stride + 1
    grid = [[Cell(ZERO, "0", dashed=True) for _ in range(n)] for _ in range(n)]
    for j, (r, c) in enumerate(d.cells):
        grid[r * d.stride][c * d.stride] = Cell(PICKED if j == picked else INPUT, fmt(d.x[r, c]),
                                                outline="black" if j == picked else None)
    return cells(grid)


def _stamp_grid(d: Scatter, n: int) -> Block:
    colours = tap_colours(d.kernel.size)
    tap, stamp = d.tap[n], d.stamps[n]
    return cells([[Cell(colours[t], fmt(stamp[r, c])) if t >= 0 else Cell("white")
                   for c, t in enumerate(line)] for r, line in enumerate(tap)])


def _sum_grid(values: np.ndarray, changed: np.ndarray | None = None) -> Block:
    return cells([[Cell(OUTPUT, fmt(v), outline="black" if changed is not None and changed[r, c] else None)
                   for c, v in enumerate(line)] for r, line in enumerate(values)])


def _counts_grid(counts: np.ndarray, top: int | None = None) -> Block:
    """Counts shaded on one scale up to ``top`` (default their maximum): frames of an animation share it."""
    top = max(int(counts.max()) if top is None else top, 1)
    return cells([[Cell((1 - 0.6 * v / top, 1 - 0.6 * v / top, 1.0, 1.0), str(int(v))) for v in line]
                  for line in counts])


def _checked(d: Scatter) -> str:
    """Says whether the layer's output equals torch's F.conv_transpose2d on the same numbers."""
    ref = torch.nn.functional.conv_transpose2d(_t(d.x)[None, None], _t(d.kernel)[None, None], stride=d.stride)
    same = np.array_equal(ref[0, 0].numpy(), d.output)
    return "equals" if same else "DIFFERS FROM"


def _cell_name(d: Scatter, n: int) -> str:
    r, c = d.cells[n]
    return f"x[{r},{c}] = {fmt(d.x[r, c])}"


def _top_row(d: Scatter, picked: int | None = None) -> Block:
    k, s = d.kernel.shape[0], d.stride
    i, o = d.x.shape[0], d.output.shape[0]
    return row([column([_heading(f"kernel {k}×{k}"), _kernel_grid(d.kernel)], gap=0.3),
                column([_heading(f"input {i}×{i}"), _input_grid(d, picked)], gap=0.3),
                column([_heading(f"zeros inserted (s − 1 = {s - 1})"), _spread_grid(d, picked),
                        label("each input cell sits where\nits stamp's tap 0 lands", SMALL)], gap=0.3),
                label(f"stride s = {s}, padding 0:\no = (i − 1)·s + k = ({i} − 1)·{s} + {k} = {o}\n"
                      f"each input cell adds its value × kernel\n(a {k}×{k} stamp, s cells after the previous one) "
                      f"onto the {o}×{o} output", SMALL)],
               gap=1.2)


def transposed_scatter() -> Block:
    """Every stamp of SCATTER_X through SCATTER_K at stride 2, the running sum under each, the output and the
    overlap counts."""
    d = scatter_data()
    o = d.output.shape[0]
    steps = []
    for n in range(len(d.cells)):
        changed = d.tap[n] >= 0
        steps.append(column([_heading(f"{n + 1}. {_cell_name(d, n)}"), label(f"stamp {fmt(d.x[d.cells[n]])} × kernel",
                                                                            SMALL), _stamp_grid(d, n),
                             label(f"running sum of {n + 1} stamp{'s' if n else ''}", SMALL),
                             _sum_grid(d.running[n], changed)], gap=0.3))
    joins = [label("+", TITLE) if n else None for n in range(len(steps))]
    stamps = row([b for pair in zip(joins, steps) for b in pair if b is not None], gap=0.8, align="center")
    k, s = d.kernel.shape[0], d.stride
    even = "even" if k % s == 0 else f"uneven: k = {k} is not divisible by s = {s}"
    final = row([
        column([_heading(f"output {o}×{o} = the sum of the {len(d.cells)} stamps"), _sum_grid(d.output),
                label(f"{_checked(d)} F.conv_transpose2d(x, kernel, stride={s})", SMALL)], gap=0.3),
        column([_heading("overlap: stamps added into each cell"), _counts_grid(d.counts), label(even, SMALL)],
               gap=0.3),
    ], gap=2.0)
    legend = swatch_legend([(tap_colours(k * k), (f"kernel tap 0 … {k * k - 1} in reading order: a stamp cell = "
                                                  "input value × that tap"), False),
                            (ZERO, "inserted zero", True), ("white", "outlined: the cells this stamp changed", False)])
    return column([_top_row(d), stamps, final, legend], gap=0.8)


def _scatter_frames(title: str | None, subtitle: str | None) -> list[Image.Image]:
    d = scatter_data()
    heads = [label(t, TITLE if i == 0 else SMALL, "bold" if i == 0 else "normal")
             for i, t in enumerate(x for x in (title, subtitle) if x)]
    o = d.output.shape[0]
    frames = []
    blank = np.zeros((o, o))
    for n in range(len(d.cells)):
        changed = d.tap[n] >= 0
        before = d.running[n - 1] if n else blank
        body = row([
            column([_heading(f"{n + 1}. {_cell_name(d, n)}: stamp {fmt(d.x[d.cells[n]])} × kernel"),
                    _stamp_grid(d, n)], gap=0.3),
            label("+", TITLE),
            column([_heading(f"sum of {n} stamp{'s' if n != 1 else ''}"), _sum_grid(before)], gap=0.3),
            label("=", TITLE),
            column([_heading(f"sum of {n + 1} stamps"), _sum_grid(d.running[n], changed)], gap=0.3),
            column([_heading("stamps so far per cell"), _counts_grid((d.tap[:n + 1] >= 0).sum(0), int(d.counts.max()))], gap=0.3),
        ], gap=0.8, align="center")
        frames.append(column([*heads, _top_row(d, n), body], gap=0.6))
    k, s = d.kernel.shape[0], d.stride
    final = row([
        column([_heading(f"output {o}×{o}"), _sum_grid(d.output),
                label(f"{_checked(d)} F.conv_transpose2d(x, kernel, stride={s})", SMALL)], gap=0.3),
        column([_heading("stamps per cell"), _counts_grid(d.counts),
                label("even" if k % s == 0 else f"uneven (k = {k}, s = {s})", SMALL)], gap=0.3),
    ], gap=2.0)
    frames.append(column([*heads, _top_row(d), final], gap=0.6))
    return one_canvas([picture_image(f) for f in frames])


STAMP_MS = 1600


def scatter_animation(path: str | Path, title: str | None = None, subtitle: str | None = None) -> Path:
    """A GIF of ``transposed_scatter``: one frame per stamp (the stamp, the sum before and after it, the counts so
    far), then the output, held."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"animation path {str(path)!r} must end in .gif")
    frames = _scatter_frames(title, subtitle)
    indexed = [f.convert("P", palette=Image.ADAPTIVE, colors=256) for f in frames]
    durations = [STAMP_MS] * (len(frames) - 1) + [2 * HOLD_MS]
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=durations, loop=0, disposal=1)
    return path


# --- 002: MobileNet's cost, width α and resolution ρ ------------------------------------------------------------------

MOBILENET_BLOCK = 7  # features[7]: a 14×14×512 → 14×14×512 block (Table 1's five repeated 512 blocks)


@dataclass
class MobileNetCost:
    name: str  # the block's name in the model
    d_k: int  # kernel size D_K
    m: int  # input channels M
    n: int  # output channels N
    d_f: int  # output map size D_F
    standard: int  # MACs of the same block in the standard-conv MobileNet (convzoo.cost)
    depthwise: int
    pointwise: int
    filters: dict[str, tuple[int, ...]]  # weight shapes: standard, depthwise, pointwise

    @property
    def ratio(self) -> float:
        return (self.depthwise + self.pointwise) / self.standard


def _main_stages(module: nn.Module) -> list[nn.Module]:
    return [s.module for s in declared_stages(module) or [] if not s.side and s.module is not None]


def mobilenet_cost_data(block: int = MOBILENET_BLOCK, resolution: int = 224) -> MobileNetCost:
    """The sizes and MACs of MobileNet v1's block ``block`` (convzoo.cost on the real layers) and of the same block
    in the standard-conv MobileNet (the paper's "Conv MobileNet")."""
    separable = mobilenet_v1(1.0, resolution)
    standard = mobilenet_v1(1.0, resolution, conv="standard")
    shape = cost(separable.features[:block], (1, 3, resolution, resolution)).output_shape[1:]
    stages = _main_stages(separable.features[block])
    if len(stages) != 2:
        raise ValueError(f"block={block} is not a depthwise separable block (stages: {stages})")
    depthwise, pointwise = stages
    full = next(m for m in standard.features[block].modules() if isinstance(m, nn.Conv2d))
    mid = cost(depthwise, (1, *shape))
    return MobileNetCost(
        f"features.{block}", depthwise.kernel_size[0], depthwise.in_channels, pointwise.out_channels,
        mid.output_shape[-1], cost(full, (1, *shape)).macs, mid.macs, cost(pointwise, mid.output_shape).macs,
        {"standard": tuple(full.weight.shape), "depthwise": tuple(depthwise.weight.shape),
         "pointwise": tuple(pointwise.weight.shape)})


FILTER_COLOURS = {"standard": "#f6b26b", "depthwise": "#93c47d", "pointwise": "#b4a7d6"}


def _filters(n: int, h: int, w: int, depth: int, colour: str, shown: int = 3) -> Block:
    drawn = [volume(h, w, depth, colour, scale=0.6) for _ in range(min(n, shown))]
    return row(drawn + ([label(f"… {n} filters", SMALL)] if n > shown else []), gap=0.5, align="center")


def mobilenet_cost() -> Block:
    """The paper's Figure 2 on a real MobileNet block: N filters D_K×D_K×M against M filters D_K×D_K×1 and N filters
    1×1×M, each with its cost formula, the numbers and convzoo.cost's count."""
    d = mobilenet_cost_data()
    k, m, n, f = d.d_k, d.m, d.n, d.d_f
    fs = d.filters
    fmap = volume(f, f, m, INPUT, scale=0.3)
    out = volume(f, f, n, OUTPUT, scale=0.3)

    def stage(title: str, formula: str, filters: Block, before: Block, after: Block) -> Block:
        return column([_heading(title), label(formula),
                       row([before, arrow(1.5), filters, arrow(1.5), after], gap=0.5, align="center")], gap=0.3)

    a = stage(f"(a) standard conv: N = {fs['standard'][0]} filters of D_K × D_K × M = "
              f"{fs['standard'][2]} × {fs['standard'][3]} × {fs['standard'][1]}",
              f"D_K·D_K·M·N·D_F·D_F = {k}·{k}·{m}·{n}·{f}·{f} = {d.standard:,} MACs",
              _filters(n, k, k, m, FILTER_COLOURS["standard"]), fmap, out)
    b = stage(f"(b) depthwise conv: M = {fs['depthwise'][0]} filters of D_K × D_K × 1 = "
              f"{fs['depthwise'][2]} × {fs['depthwise'][3]} × {fs['depthwise'][1]}",
              f"D_K·D_K·M·D_F·D_F = {k}·{k}·{m}·{f}·{f} = {d.depthwise:,} MACs",
              _filters(m, k, k, 1, FILTER_COLOURS["depthwise"]), fmap, volume(f, f, m, OUTPUT, scale=0.3))
    c = stage(f"(c) pointwise (1×1) conv: N = {fs['pointwise'][0]} filters of 1 × 1 × M = "
              f"{fs['pointwise'][2]} × {fs['pointwise'][3]} × {fs['pointwise'][1]}",
              f"M·N·D_F·D_F = {m}·{n}·{f}·{f} = {d.pointwise:,} MACs",
              _filters(n, 1, 1, m, FILTER_COLOURS["pointwise"]), volume(f, f, m, OUTPUT, scale=0.3), out)
    total = d.depthwise + d.pointwise
    # two labels, not one with a line break: the underscores of the first line would touch the second
    ratio = column([
        label("(b) + (c) over (a):  (D_K·D_K·M·D_F·D_F + M·N·D_F·D_F) / (D_K·D_K·M·N·D_F·D_F) = 1/N + 1/D_K²",
              FONT_HEAD, "bold"),
        label(f"= ({d.depthwise:,} + {d.pointwise:,}) / {d.standard:,} = {total / d.standard:.4f} "
              f"= 1/{n} + 1/{k * k} = {1 / n + 1 / k ** 2:.4f}  ({d.standard / total:.1f}× fewer MACs)",
              FONT_HEAD, "bold")], gap=0.2)
    note = label(f"MobileNet v1 (α = 1, 224×224) block {d.name}: D_F×D_F×M = {f}×{f}×{m} → {f}×{f}×{n}, D_K = {k}; "
                 "(a) is the same block of the standard-conv MobileNet; MACs counted by convzoo.cost on the layers",
                 SMALL)
    return column([a, b, c, ratio, note], gap=0.7)


WIDTHS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)


@dataclass
class ModelCost:
    alpha: float
    resolution: int
    macs: int
    params: int


def width_resolution_data(widths: Sequence[float] = WIDTHS,
                          resolutions: Sequence[int] = RESOLUTIONS) -> tuple[list[ModelCost], list[ModelCost]]:
    """convzoo.cost of mobilenet_v1(α, 224) for each width and of mobilenet_v1(1, ρ) for each resolution."""
    def one(alpha: float, res: int) -> ModelCost:
        report = cost(mobilenet_v1(alpha, res), (1, 3, res, res))
        return ModelCost(alpha, res, report.macs, report.params)

    return [one(a, 224) for a in widths], [one(1.0, r) for r in resolutions]


MAC_BAR, PARAM_BAR = "#6fa8dc", "#e69138"


def _bar(value: float, top: float, width: float, colour: str, text: str) -> Block:
    """A horizontal bar ``value / top`` of ``width`` cells long, ``text`` after it."""
    words = label(text, SMALL)
    length = width * value / top

    def paint(ax: Axes, x: float, y: float) -> None:
        ax.add_patch(Rectangle((x, y + 0.15), length, 0.7, facecolor=colour, edgecolor=EDGE, linewidth=0.6))
        words.paint(ax, x + length + 0.3, y + 0.5 - words.h / 2)

    return Block(width + 0.3 + words.w, 1.0, paint)


def _middle(block: Block, w: float) -> Block:
    """``block`` in a box ``w`` cells wide and at least one cell high, vertically centred."""
    h = max(1.0, block.h)
    return Block(w, h, lambda ax, x, y: block.paint(ax, x, y + (h - block.h) / 2))


def _alpha(a: float) -> str:
    """The paper's spelling of a width: 1.0, 0.75, 0.5, 0.25."""
    text = f"{a:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _table_cells(rows: Sequence[ModelCost], names: Sequence[str], predicted: Sequence[str]) -> list[list[Block]]:
    """Per line: the model's name, a MACs bar and a params bar (both relative to the first line)."""
    first = rows[0]
    return [[label(name, SMALL),
             _bar(r.macs, first.macs, 10.0, MAC_BAR, f"{r.macs / 1e6:.1f} M  ×{r.macs / first.macs:.3f}  ({p})"),
             _bar(r.params, first.params, 6.0, PARAM_BAR, f"{r.params / 1e6:.2f} M  ×{r.params / first.params:.3f}")]
            for r, name, p in zip(rows, names, predicted)]


def _tables(parts: Sequence[tuple[str, list[list[Block]]]]) -> Block:
    """Each (heading, lines) as a table under its heading, all tables with the same column widths."""
    titles = [label(t, SMALL, "bold") for t in ("model", "multiply-adds (MACs)", "parameters")]
    widths = [max(b.w for b in [titles[j], *(line[j] for _, lines in parts for line in lines)]) for j in range(3)]
    blocks: list[Block] = []
    for heading, lines in parts:
        body = [row([_middle(t, w) for t, w in zip(titles, widths)], gap=1.2)]
        body += [row([_middle(b, w) for b, w in zip(line, widths)], gap=1.2) for line in lines]
        blocks += [_heading(heading), column(body, gap=0.3)]
    return column(blocks, gap=0.6)


def width_and_resolution() -> Block:
    """Tables 6 and 7 as bars: MobileNet v1's MACs and parameters at width α (input 224) and resolution ρ (α = 1)."""
    widths, resolutions = width_resolution_data()
    base = resolutions[0].resolution
    a = _table_cells(widths, [f"{_alpha(w.alpha)} MobileNet-{w.resolution}   α = {_alpha(w.alpha)}" for w in widths],
                     [f"α² = {w.alpha ** 2:.3f}" for w in widths])
    b = _table_cells(resolutions, [f"{_alpha(r.alpha)} MobileNet-{r.resolution}   ρ = {r.resolution}/{base}"
                                   for r in resolutions], [f"ρ² = {(r.resolution / base) ** 2:.3f}" for r in resolutions])
    return column([
        _tables([("(a) width multiplier α: every layer's channels × α, input 224×224", a),
                 ("(b) resolution multiplier ρ: input ρ·224, α = 1", b)]),
        label("one layer costs D_K·D_K·αM·ρD_F·ρD_F + αM·αN·ρD_F·ρD_F: MACs fall about as α² and ρ², parameters as "
              "α² and not with ρ\n×: relative to the first line; MACs and parameters counted by convzoo.cost on "
              "convzoo.models.mobilenet_v1(α, ρ) (BatchNorm parameters included)", SMALL),
    ], gap=0.6)


# --- the figures, and where each goes in the registry ------------------------------------------------------------------

F = ArticleFigure
FIGURES: list[ArticleFigure] = [
    F("001-5_padding-and-stride", "卷积算术：填充与步长", "convolution arithmetic: padding and stride",
      "001 §5, 003 §1.4",
      "Five 3×3 convs drawn with input, padding and output at one cell size: (a) no padding, o = i − k + 1 (5 → 3); "
      "(b) half ('same') padding keeps the size (5 → 5); (c) full padding p = k − 1 grows it, o = i + k − 1 (5 → 7); "
      "(d) stride 2, o = ⌊(i + 2p − k)/s⌋ + 1 (5 → 3); (e) stride 2 on a 6×6 input (6 → 3), where the last padding "
      "row and column are never read. Padding cells dashed; the last output's window coloured by kernel tap.",
      "五个 3×3 卷积，输入、填充与输出按同一单元格大小画出：(a) 不填充，o = i − k + 1（5 → 3）；(b) 半填充（'same'）保持"
      "尺寸（5 → 5）；(c) 全填充 p = k − 1 使输出变大，o = i + k − 1（5 → 7）；(d) 步长 2，o = ⌊(i + 2p − k)/s⌋ + 1"
      "（5 → 3）；(e) 6×6 输入上步长 2（6 → 3），最后一行和一列填充从未被读取。填充单元为虚线；最后一个输出的窗口按卷积核"
      "抽头着色。", padding_and_stride),
    F("001-6_transposed-scatter", "转置卷积：每个输入单元盖一个印章", "transposed convolution as a scatter of stamps",
      "001 §6",
      "Transposed conv, 3×3 kernel, stride 2, on a 2×2 input: each input cell's value times the kernel is a 3×3 "
      "stamp added onto the 5×5 output, 2 cells after the previous one; under each stamp the running sum. The sum "
      "of the four stamps is the output, and the overlap counts (1, 2, 4) are uneven because 3 is not divisible "
      "by 2.",
      "转置卷积，3×3 卷积核，步长 2，作用于 2×2 输入：每个输入单元的值乘以卷积核得到一个 3×3 的“印章”，加到 5×5 输出上，"
      "相邻印章相隔 2 个单元；每个印章下方是累加和。四个印章之和即为输出；重叠次数（1、2、4）不均匀，因为 3 不能被 2 整除。",
      transposed_scatter),
    F("001-6_transposed-scatter-animation", "转置卷积：逐个印章累加（动图）", "transposed convolution: stamps added one "
      "by one, animated", "001 §6",
      "The same transposed conv, one frame per input cell: its stamp (value × kernel), the sum before and after "
      "adding it (changed cells outlined) and how many stamps each output cell has received; the last frame shows "
      "the output and the overlap counts.",
      "同一个转置卷积，每个输入单元一帧：它的印章（值 × 卷积核）、加上之前与之后的累加和（被改变的单元加框），以及每个输出单元"
      "已收到的印章数；最后一帧为输出与重叠次数。", animation=scatter_animation),
    F("002-2_mobilenet-cost", "MobileNet：标准卷积与深度可分离卷积的计算量", "MobileNet: cost of standard vs depthwise "
      "separable convolution", "002 §2, 002 §1",
      "On a real MobileNet v1 block (14×14×512 → 14×14×512): (a) the standard conv's N filters of D_K×D_K×M, "
      "(b) the depthwise conv's M filters of D_K×D_K×1, (c) the pointwise conv's N filters of 1×1×M, each with its "
      "cost formula, the numbers and the MACs convzoo.cost counts; the ratio (b + c)/(a) = 1/N + 1/D_K².",
      "在真实的 MobileNet v1 模块上（14×14×512 → 14×14×512）：(a) 标准卷积的 N 个 D_K×D_K×M 过滤器，(b) 深度卷积的 M 个 "
      "D_K×D_K×1 过滤器，(c) 逐点卷积的 N 个 1×1×M 过滤器，各附计算量公式、代入的数值与 convzoo.cost 统计的乘加次数；"
      "比值 (b + c)/(a) = 1/N + 1/D_K²。", mobilenet_cost),
    F("002-3_width-and-resolution", "MobileNet：宽度乘子 α 与分辨率乘子 ρ", "MobileNet: width multiplier α and "
      "resolution multiplier ρ", "002 §3, 002 §4",
      "MobileNet v1's multiply-adds and parameters as bars, counted by convzoo.cost: (a) width α = 1, 0.75, 0.5, "
      "0.25 at 224×224; (b) resolution 224, 192, 160, 128 at α = 1. Each line also gives its ratio to the first "
      "line and α² or ρ².",
      "以条形图表示 MobileNet v1 的乘加次数与参数量，由 convzoo.cost 统计：(a) 输入 224×224 时宽度 α = 1、0.75、0.5、"
      "0.25；(b) α = 1 时分辨率 224、192、160、128。每行还给出相对第一行的比值以及 α² 或 ρ²。", width_and_resolution),
]
del F

# Each figure goes right after this one of the registry (by article section).
AFTER: dict[str, str] = {
    "001-5_padding-and-stride": "003-1.1_1d-conv",
    "001-6_transposed-scatter": "001-6_transposed-2x2-to-5x5",
    "001-6_transposed-scatter-animation": "001-6_transposed-scatter",
    "002-2_mobilenet-cost": "000_depthwise-separable-12x12x3",
    "002-3_width-and-resolution": "002-2_mobilenet-cost",
}


def joined(figures: Sequence[ArticleFigure]) -> list[ArticleFigure]:
    """``figures`` with each of ``FIGURES`` placed after the figure ``AFTER`` names (ours already there are kept)."""
    out = [f for f in figures if f.name not in AFTER]
    for fig in FIGURES:
        names = [f.name for f in out]
        anchor = AFTER[fig.name]
        if anchor not in names:
            raise ValueError(f"figure {fig.name!r} goes after {anchor!r}, which the registry does not have")
        out.insert(names.index(anchor) + 1, fig)
    return out
