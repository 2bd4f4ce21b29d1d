"""Every figure the seed articles describe, reproduced from real convzoo layers (``convzoo figures -o DIR``).

Each ``ArticleFigure`` has a file name made of the article and section (``001-6_conv-matrix``), a caption that
says what to see and where the numbers come from, and a builder that returns a drawing ``Block``. Numbers in the
figures are computed by the layers (forward passes, ``taps``, ``conv_matrix``, the stage outputs), never typed
in, except the inputs and kernels the articles give.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.colors import to_rgba
from torch import nn

from ..registry import build
from .connectivity import connectivity
from .diagrams import channel_flow, dots_on_grid, image, matrix, overlap_1d, volume
from .draw import (EDGE, FONT, INPUT, OUTPUT, PICKED, SMALL, TITLE, Block, Cell, arrow, cells, column, fmt, label,
                   plt, render, row, spacer, swatch_legend, tap_colours, text_size)
from .fonts import cjk_text, wrap
from .irregular import FAINTEST, irregular_input, relative_strengths, sampling_points
from .wiring import group_colour
from torch.func import functional_call

from .matrix import eval_copy, conv_matrix, jacobian
from .numbers import load_kernel
from .picture import declared_stages, layer_block
from .reads import analyse
from .taps import SIDE_FLAG, kernel_parameter, side_modules, tap_map, taps
from . import article_more as more

ARTICLE_X = [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]]
ARTICLE_K = [[0, 1, 2], [2, 2, 0], [0, 1, 2]]


BEYOND = "beyond the articles"
LANGS = ("zh", "en", "both")


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"lang={lang!r} must be one of {', '.join(LANGS)}")
    return lang


@dataclass(frozen=True)
class ArticleFigure:
    """One figure: ``name`` is <article>-<section>_<what> (``beyond_<what>`` past the articles); ``zh`` / ``en`` the
    term the article uses and its English; ``credit`` the article section(s) that describe it, or ``BEYOND``;
    captions in English and Chinese; ``make`` draws a still picture, ``animation(path, title, subtitle)`` a GIF."""

    name: str
    zh: str
    en: str
    credit: str
    caption: str  # English
    caption_zh: str
    make: Callable[[], Block] | None = None
    animation: Callable[..., Path] | None = None

    @property
    def beyond(self) -> bool:
        return self.credit == BEYOND

    @property
    def suffix(self) -> str | None:
        """'.gif' for an animation; None for a still picture (written as png or svg)."""
        return ".gif" if self.animation is not None else None

    def title(self, lang: str = "both") -> str:
        """'深度可分离卷积 / depthwise separable convolution — 文章 / article 001 §8.2' (``lang`` both), one language
        with 'zh' or 'en'."""
        check_lang(lang)
        if self.beyond:
            where = {"zh": "超出文章范围", "en": BEYOND, "both": f"超出文章范围 / {BEYOND}"}[lang]
        else:
            where = {"zh": "文章", "en": "article", "both": "文章 / article"}[lang] + f" {self.credit}"
        term = {"zh": self.zh, "en": self.en, "both": f"{self.zh} / {self.en}"}[lang]
        return f"{term} — {where}"

    def caption_text(self, lang: str = "both") -> str:
        check_lang(lang)
        return {"zh": self.caption_zh, "en": self.caption, "both": f"{self.caption_zh}\n{self.caption}"}[lang]

    def header(self, lang: str = "both", width: float = 60.0) -> Block:
        """The title line (bold) and the caption wrapped to ``width`` cells."""
        lines = [label(wrap(self.title(lang), width, TITLE, "bold"), TITLE, "bold")]
        lines += [wrapped(part, width) for part in self.caption_text(lang).split("\n")]
        return column(lines, gap=0.25)

    def figure(self, lang: str = "both", header: bool = True):
        """The matplotlib Figure of a still picture: the title and caption (``header``), then the drawing."""
        if self.make is None:
            raise ValueError(f"figure {self.name!r} is an animation: write it with write() (a .gif)")
        with cjk_text():
            body = self.make()
            return render(column([self.header(lang, max(body.w, 45.0)), body], gap=0.6) if header else body)

    def write(self, directory: str | Path, fmt: str = "png", lang: str = "both", header: bool = True) -> Path:
        """DIR/<name>.<fmt> (.gif for an animation) and DIR/<name>.txt (title and caption)."""
        out = Path(directory)
        if self.animation is not None:
            path = out / f"{self.name}.gif"
            with cjk_text():
                title = wrap(self.title(lang), 40.0, TITLE, "bold") if header else None
                subtitle = "\n".join(wrap(part, 40.0) for part in self.caption_text(lang).split("\n")) \
                    if header else None
                self.animation(path, title, subtitle)
        else:
            path = out / f"{self.name}.{fmt}"
            mpl = self.figure(lang, header)
            # An SVG with Chinese text keeps its glyphs as paths: a viewer needs no CJK font of its own.
            with matplotlib.rc_context({"svg.fonttype": "path"} if lang != "en" else {}):
                mpl.savefig(path, format=fmt)
            plt.close(mpl)
        (out / f"{self.name}.txt").write_text(f"{self.title(lang)}\n{self.caption_text(lang)}\n", encoding="utf-8")
        return path


def wrapped(text: str, width: float = 60.0) -> Block:
    """A caption broken into lines at most ``width`` cells wide."""
    return label(wrap(text, width), SMALL)


def _t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _with_kernel(module: nn.Module, kernel) -> nn.Module:
    return load_kernel(module, _t(kernel))


def _heading(text: str) -> Block:
    return label(text, FONT_HEAD, "bold")


FONT_HEAD = 10.5


def stage_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of a one-step layer, counted from its taps: the taps each channel pair uses (seen at
    the centre output, by autograd with one-hot kernels) × output positions."""
    model = eval_copy(module, input_shape, torch.float32)
    name = kernel_parameter(model, len(input_shape) - 1)
    kernel = getattr(model, name)
    n_taps = math.prod(kernel.shape[-(len(input_shape) - 1):])
    x = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out_shape = tuple(model(x).shape[1:])
    centre = tuple(s // 2 for s in out_shape[1:])

    def rows(w: torch.Tensor) -> torch.Tensor:
        fn = lambda v: functional_call(model, {name: w}, (v,))[(slice(None), slice(None), *centre)]  # noqa: E731
        return jacobian(fn, x).reshape(out_shape[0], input_shape[0], -1)

    base = rows(torch.zeros_like(kernel))
    pairs = 0
    for t in range(n_taps):
        one_hot = torch.zeros_like(kernel).reshape(-1, n_taps)
        one_hot[:, t] = 1
        pairs += int(((rows(one_hot.reshape(kernel.shape)) - base).abs() > 1e-9).any(-1).sum())
    return pairs * math.prod(out_shape[1:])


def _stage_modules(module: nn.Module) -> list[nn.Module]:
    return [s.module for s in declared_stages(module) or [] if not s.side and s.module is not None]


# --- article 001 §1–4: correlation, single / multi-channel, 3-D, 1×1, 1-D ------------------------------------------


def correlation_vs_convolution() -> Block:
    x = _t(ARTICLE_X)[None]
    corr = _with_kernel(build("standard", 1, 1, 3, padding=0), ARTICLE_K)
    conv = _with_kernel(build("convolution", 1, 1, 3, padding=0), ARTICLE_K)
    return column([
        _heading("(a) cross-correlation — what deep learning calls convolution: the kernel slides as it is"),
        layer_block(corr, (1, 5, 5), numbers=True, x=x),
        _heading("(b) true convolution: the same kernel rotated 180° before it slides (tap colours mirrored)"),
        layer_block(conv, (1, 5, 5), numbers=True, x=x),
    ], gap=0.6)


def single_channel() -> Block:
    layer = _with_kernel(build("standard", 1, 1, 3, padding=0), ARTICLE_K)
    return layer_block(layer, (1, 5, 5), numbers=True, x=_t(ARTICLE_X)[None], position=(0, 0))


def multi_channel() -> Block:
    layer, x = more.multi_channel_example()  # the partial-sums figure's layer and input: one example, bias 1
    return layer_block(layer, (3, 5, 5), numbers=True, x=x)


THREE_D_INPUT = (1, 4, 5, 5)


def three_d() -> Block:
    """The step picture of a 3×3×3 conv on a 4×5×5 volume, the output's centre drawn, and a line naming the
    output's depth slices (the picture labels only the input's)."""
    layer = build("standard", 1, 1, 3, dim=3, padding=0)
    with torch.no_grad():
        shape = tuple(layer(torch.zeros(1, *THREE_D_INPUT)).shape[1:])
    depth, h, w = shape[1:]
    position = (depth - 1, h // 2, w // 2)
    k, stride = layer.kernel_size[0], layer.stride[0]
    first = position[0] * stride
    slices = ", ".join(str(d) for d in range(depth))
    note = label(f"OUTPUT {'×'.join(map(str, shape))}: depth slices d = {slices} left to right "
                 f"({THREE_D_INPUT[1]} − {k} + 1 = {depth}: the {k}-deep kernel fits {depth} times along the input's "
                 f"depth); the drawn output sits in slice d = {position[0]} and reads input slices d = {first}–{first + k - 1}", SMALL)
    return column([layer_block(layer, THREE_D_INPUT, position=position), note], gap=0.6)


ONE_BY_ONE_W = [[1, 2, -1, 3], [2, -1, 1, 1]]  # two 1×1×4 filters, small integers so each sum can be read
ONE_BY_ONE_PIXEL = (1, 2)
ONE_BY_ONE_SEED = 25  # its input: values 0…4 whose drawn pixel holds four different non-zero values (2, 1, 3, 4)


@dataclass(frozen=True)
class PointwiseExample:
    """A 1×1 conv (pointwise layer, no bias) on a 4×4×4 input: x (4, 4, 4), weight (2, 4) (filter j, channel c),
    out (2, 4, 4) = the layer's output, out[j, p] = Σ_c weight[j, c]·x[c, p]; ``pixel`` the position drawn."""

    x: np.ndarray
    weight: np.ndarray
    out: np.ndarray
    pixel: tuple[int, int]


def pointwise_example() -> PointwiseExample:
    layer = build("pointwise", 4, 2, 1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(_t(ONE_BY_ONE_W)[..., None, None])
        x = torch.randint(0, 5, (1, 4, 4, 4), generator=torch.Generator().manual_seed(ONE_BY_ONE_SEED)).double()
        out = layer(x)
    return PointwiseExample(x[0].numpy(), layer.weight.detach()[..., 0, 0].numpy(), out[0].numpy(), ONE_BY_ONE_PIXEL)


def _product(w: float, v: float) -> str:
    return f"{fmt(w)}·{fmt(v)}" if w >= 0 else f"({fmt(w)})·{fmt(v)}"


def one_by_one() -> Block:
    """Every input channel drawn as a plane; the drawn pixel's value on each plane runs along a line through the
    weight of that channel in each 1×1×4 filter; below each filter the sum and the output plane it fills."""
    d = pointwise_example()
    n_c, h, w = d.x.shape
    n_f = d.weight.shape[0]
    pr, pc = d.pixel
    colours = tap_colours(n_c)  # one colour per input channel: its pixel, its weights and its line
    plane_gap, head_h = 1.0, 1.2
    left = text_size("c0", FONT)[0] + 0.4
    sums = [f"{' + '.join(_product(d.weight[j, c], d.x[c, pr, pc]) for c in range(n_c))}\n= {fmt(d.out[j, pr, pc])}"
            for j in range(n_f)]
    col_w = max(max(text_size(t, SMALL)[0] for t in sums), w) + 1.5  # one column per filter and its output
    in_head = _heading(f"input x ({n_c}×{h}×{w}): all {n_c} channels")
    filter_head = text_size(f"filter 0 (1×1×{n_c})", FONT_HEAD, "bold")[0]
    start = max(left + w + 3.0, in_head.w + 1.0 - col_w / 2 + filter_head / 2)  # clear of the input's heading
    x_filter = [start + j * col_w + col_w / 2 - 0.5 for j in range(n_f)]
    plane_y = [head_h + c * (h + plane_gap) for c in range(n_c)]
    below = plane_y[-1] + pr + 1  # under the last filter cell
    out_y = below + 1.6 + text_size(sums[0], SMALL)[1] + 0.3 + head_h
    placed: list[tuple[Block, float, float]] = [(in_head, 0, 0)]
    for c in range(n_c):
        grid = [[Cell(colours[c] if (r, q) == d.pixel else INPUT, fmt(d.x[c, r, q]), outline=EDGE if (r, q) == d.pixel
                      else None) for q in range(w)] for r in range(h)]
        placed += [(label(f"c{c}", FONT, "bold"), 0, plane_y[c] + pr), (cells(grid), left, plane_y[c])]
    for j in range(n_f):
        cx = x_filter[j] + 0.5
        head = _heading(f"filter {j} (1×1×{n_c})")
        placed.append((head, cx - head.w / 2, 0))
        for c in range(n_c):
            placed.append((cells([[Cell(colours[c], fmt(d.weight[j, c]))]]), x_filter[j], plane_y[c] + pr))
        total = label(sums[j], SMALL, ha="center")
        placed += [(arrow(1.2, vertical=True), x_filter[j], below + 0.2), (total, cx - total.w / 2, below + 1.6)]
        grid = [[Cell(OUTPUT, fmt(d.out[j, r, q]), outline=PICKED if (r, q) == d.pixel else None) for q in range(w)]
                for r in range(h)]
        out_head = _heading(f"output c{j} ({h}×{w})")
        placed += [(out_head, cx - out_head.w / 2, out_y - head_h), (cells(grid), cx - w / 2, out_y)]
    width = max(b.w + bx for b, bx, _ in placed)
    height = max(b.h + by for b, _, by in placed)

    def paint(ax, x0: float, y0: float) -> None:
        for c in range(n_c):  # behind the cells: the pixel's value travels to every filter's weight for c
            yc = y0 + plane_y[c] + pr + 0.5
            ax.plot([x0 + left + pc + 0.5, x0 + x_filter[-1] + 0.5], [yc, yc], color=colours[c][:3], linewidth=2.0,
                    zorder=0.5)
        for block, bx, by in placed:
            block.paint(ax, x0 + bx, y0 + by)

    body = Block(width, height, paint)
    note = label(f"every output pixel is this sum at its own position: {n_c} multiplications per filter, one per "
                 "input channel, and no neighbouring pixel — a 1×1 conv mixes channels, not space", SMALL)
    legend = swatch_legend([(colours, f"c0 … c{n_c - 1}: a channel's pixel and its weight in each filter", False),
                            (PICKED, "the output pixel the sum gives", False)])
    return column([body, note, legend], gap=0.6)


def one_d() -> Block:
    layer = _with_kernel(build("standard", 1, 1, 3, dim=1, padding=0), [1, 0, -1])
    return layer_block(layer, (1, 10), numbers=True, x=_t([[1, 3, 2, 0, 4, 1, 2, 5, 3, 1]]))


# --- article 001 §6: transposed convolution, the conv matrix, checkerboard ------------------------------------------


def transposed_4x4() -> Block:
    return layer_block(build("transposed", 1, 1, 3, stride=1, padding=0, output_padding=0), (1, 2, 2))


def transposed_5x5() -> Block:
    return layer_block(build("transposed", 1, 1, 3, stride=2, padding=0, output_padding=0), (1, 2, 2))


OPERATOR = 20  # points: the "·" and "=" between matrices read as operators, not specks


def _operator(sign: str) -> Block:
    return label(sign, OPERATOR, "bold")


def _vector(values: np.ndarray, fill: str) -> Block:
    """A vector as one column of small cells, every value printed, filled ``fill``."""
    return matrix(values.reshape(-1, 1), fills=np.array([[to_rgba(fill)]] * values.size).reshape(-1, 1, 4))


def _grid(values: np.ndarray, fill: str) -> Block:
    """A 2-D map at the one cell size, values printed, filled ``fill``."""
    return cells([[Cell(fill, fmt(v)) for v in line] for line in values])


MATRIX_X, MATRIX_Y, MATRIX_UP = INPUT, OUTPUT, "#fde0c5"  # x, y = Cx, Cᵀy


@dataclass(frozen=True)
class MatrixExample:
    """Article 001 §6 computed by the layers: x (4, 4) the article's input corner, C (4, 16) the Conv2d's conv
    matrix, Cᵀ (16, 4) the TransposedConv2d's (same kernel), y = Cx (2, 2) the conv's output, up = Cᵀy (4, 4)
    the transposed conv's output on y, ctc = CᵀC (16, 16); ``tc`` / ``tt`` the kernel tap of each entry."""

    kernel: np.ndarray
    x: np.ndarray
    c: np.ndarray
    ct: np.ndarray
    tc: np.ndarray
    tt: np.ndarray
    y: np.ndarray
    up: np.ndarray
    ctc: np.ndarray


def conv_matrix_example() -> MatrixExample:
    conv = _with_kernel(build("standard", 1, 1, 3, padding=0, bias=False), ARTICLE_K)
    transposed = build("transposed", 1, 1, 3, stride=1, padding=0, output_padding=0, bias=False)
    with torch.no_grad():
        transposed.weight.copy_(conv.weight)
    x = _t(ARTICLE_X)[:4, :4]
    with torch.no_grad():
        y = conv.double()(x[None, None])  # (1, 1, 2, 2)
        up = transposed.double()(y)  # (1, 1, 4, 4)
    c = conv_matrix(conv, (1, 4, 4)).numpy()
    ct = conv_matrix(transposed, (1, 2, 2)).numpy()
    tc = taps(conv, (1, 4, 4)).reshape(4, 16).numpy()
    tt = taps(transposed, (1, 2, 2)).reshape(16, 4).numpy()
    return MatrixExample(np.array(ARTICLE_K, dtype=float), x.numpy(), c, ct, tc, tt, y[0, 0].numpy(),
                         up[0, 0].numpy(), ct @ c)


def conv_matrix_figure() -> Block:
    """Row 1: x (4×4) flattened, C·x = y reshaped to 2×2; row 2: y flattened, Cᵀ·y reshaped to 4×4 beside x —
    the shape comes back, the values do not (CᵀC ≠ I)."""
    d = conv_matrix_example()
    kernel = cells([[Cell(tap_colours(9)[3 * r + q], fmt(d.kernel[r, q])) for q in range(3)] for r in range(3)])

    def item(head: str, body: Block) -> Block:
        return column([_heading(head), body], gap=0.3, align="center")

    def step(text: str) -> Block:
        return arrow(2.5, text)

    top = row([item("kernel", kernel),
               item("x (4×4)", _grid(d.x, MATRIX_X)), step("flatten"),
               item("C (4×16)", matrix(d.c, d.tc)), _operator("·"),
               item("x (16)", _vector(d.x, MATRIX_X)), _operator("="),
               item("y (4)", _vector(d.y, MATRIX_Y)), step("reshape"),
               item("y = Cx (2×2)", _grid(d.y, MATRIX_Y))], gap=0.5, align="center")
    bottom = row([item("y (2×2)", _grid(d.y, MATRIX_Y)), step("flatten"),
                  item("Cᵀ (16×4)", matrix(d.ct, d.tt)), _operator("·"),
                  item("y (4)", _vector(d.y, MATRIX_Y)), _operator("="),
                  item("Cᵀy (16)", _vector(d.up, MATRIX_UP)), step("reshape"),
                  item("Cᵀy (4×4)", _grid(d.up, MATRIX_UP)), _operator("≠"),
                  item("x (4×4)", _grid(d.x, MATRIX_X))], gap=0.5, align="center")
    n = d.x.shape[0]
    diag = d.ctc.diagonal().reshape(n, n)
    worst = max(np.ndindex(n, n), key=lambda p: abs(d.up[p] - d.x[p]))  # the most different cell
    shape = column([_heading("shape restored, values not"),
                    label(f"Cᵀ maps 2×2 back to 4×4, but Cᵀy ≠ x: Cᵀy[{worst[0]},{worst[1]}] = {fmt(d.up[worst])}, "
                          f"x[{worst[0]},{worst[1]}] = {fmt(d.x[worst])}.\n"
                          f"CᵀC ≠ I: C is 4×16, so CᵀC (16×16) has rank ≤ 4; its diagonal (right, as 4×4) "
                          f"would be all 1 for I.\n"
                          "A transposed conv is this Cᵀ: it restores the size of the conv's input, not the input.",
                          SMALL)], gap=0.3)
    identity = item("diag(CᵀC) as 4×4", _grid(diag, "#eeeeee"))
    checks = label("computed: C = conv_matrix(Conv2d, 4×4 input), Cᵀ = conv_matrix(TransposedConv2d, 2×2 input), "
                   f"the same kernel; Cᵀ equals C transposed: {np.allclose(d.ct, d.c.T)};\n"
                   f"C·x equals the conv's output: {np.allclose(d.c @ d.x.reshape(-1), d.y.reshape(-1))}; "
                   f"Cᵀ·y equals the transposed conv's output: {np.allclose(d.ct @ d.y.reshape(-1), d.up.reshape(-1))}",
                   SMALL)
    legend = swatch_legend([(MATRIX_X, "x: the conv's input", False), (MATRIX_Y, "y = Cx: its output", False),
                            (MATRIX_UP, "Cᵀy: the transposed conv's output", False),
                            (tap_colours(9), "matrix entries: the kernel tap they hold, as in the kernel", False)])
    return column([top, bottom, row([shape, identity], gap=1.5, align="center"), checks, legend], gap=0.8)


def _transposed_1d_overlap(k: int, s: int, n_in: int = 5) -> tuple[Block, str]:
    layer = build("transposed", 1, 1, k, dim=1, stride=s, padding=0, output_padding=0)
    tm = tap_map(layer, (1, n_in))
    linked = (tm.coefficients != 0).any(0)[0, :, 0, :]  # (O, I)
    writes = [np.nonzero(linked[:, i].numpy())[0].tolist() for i in range(n_in)]
    counts = linked.sum(1).tolist()
    inner = counts[k - 1:len(counts) - k + 1] or counts
    even = "even" if len(set(inner)) == 1 else "uneven"
    return overlap_1d(n_in, writes, len(counts), counts), f"k={k}, s={s}: {even} overlap"


def overlap_stride(stride: int, ks: tuple[int, ...]) -> Callable[[], Block]:
    def make() -> Block:
        panels = []
        for letter, k in zip("abcd", ks):
            block, what = _transposed_1d_overlap(k, stride)
            panels.append(column([_heading(f"({letter}) {what}"), block], gap=0.3))
        legend = label("top: input cells (one colour each); lines: the output cells each input writes through the k "
                       "taps; bottom: how many inputs each output cell receives", SMALL)
        return column([row(panels, gap=2.0), legend], gap=0.6)

    return make


def even_kernel(k: int, s: int) -> int:
    """The nearest kernel size ≥ ``k`` divisible by ``s``: the even-overlap counterpart drawn beside an uneven one."""
    return s * -(-k // s)


def overlap_counts(k: int, s: int, n_in: int) -> np.ndarray:
    """Inputs summed per output cell of a 1→1 transposed conv (kernel k, stride s, padding 0) on an n_in×n_in
    input: the fan-in of the real layer's connectivity."""
    layer = build("transposed", 1, 1, k, stride=s, padding=0, output_padding=0)
    return connectivity(layer, (1, n_in, n_in)).fan_in()[0].numpy()


def overlap_2d(k: int = 3, s: int = 2) -> Block:
    """The 2-D overlap counts of kernel k, stride s and, when k mod s ≠ 0, of the even kernel beside it."""
    n_in = max(2, min(5, (24 - k) // s + 1))  # at most ~24 output cells a side: the picture stays readable
    panels = []
    for kk in dict.fromkeys((k, even_kernel(k, s))):
        counts = overlap_counts(kk, s, n_in)
        top = max(int(counts.max()), 1)
        grid = [[Cell((1 - 0.6 * v / top, 1 - 0.6 * v / top, 1.0, 1.0), str(v)) for v in line] for line in counts]
        even = "even" if kk % s == 0 else "uneven"
        panels.append(column([_heading(f"k={kk}, s={s} ({even}): inputs summed per output cell"), cells(grid)],
                             gap=0.3))
    one_d = [sum(1 for q in range(k) if q % s == t) for t in range(s)]
    note = label(f"{n_in}×{n_in} input; the 1-D pattern {'-'.join(map(str, one_d))} (taps per output, one stride "
                 f"period) multiplied by itself; a kernel divisible by the stride overlaps evenly", SMALL)
    return column([row(panels, gap=2.0), note], gap=0.6)


def _photo(size: int = 64, colour: bool = False) -> torch.Tensor:
    """A crop of scikit-learn's china.jpg, (1, 1, size, size) grey or (1, 3, size, size) RGB, values in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    rgb = load_sample_image("china.jpg")[60:60 + 4 * size, 180:180 + 4 * size]
    small = Image.fromarray(rgb).convert("RGB" if colour else "L").resize((size, size), Image.BILINEAR)
    pixels = torch.tensor(np.asarray(small), dtype=torch.float64) / 255
    return pixels.permute(2, 0, 1)[None] if colour else pixels[None, None]


def upsampled(layer: nn.Module, x: torch.Tensor, s: int) -> np.ndarray:
    """The transposed conv's output cropped to s× the input (as padding (k − s + 1) // 2 would), the full output
    when it is smaller (k < s leaves gaps)."""
    with torch.no_grad():
        y = layer(x)[0, 0].numpy()
    k = layer.kernel_size[0]
    start, side = max(0, (k - s + 1) // 2), x.shape[-1] * s
    return y[start:start + side, start:start + side]


def checkerboard_image(k: int = 3, s: int = 2) -> Block:
    """A photograph upsampled ×s by transposed convs (kernel k and its even counterpart) and by resize-conv (a k×k
    conv after nearest ×s). Each kernel is uniform (all its taps equal, scaled to unit average gain); the sizes
    differ (k×k, the even size, k×k)."""
    x = _photo()
    outs, sizes = [], []
    for kk in dict.fromkeys((k, even_kernel(k, s))):
        layer = build("transposed", 1, 1, kk, stride=s, padding=0, output_padding=0, bias=False).double()
        with torch.no_grad():
            layer.weight.fill_((s / kk) ** 2)  # the uniform kernel, scaled to unit average gain
        outs.append((f"transposed k={kk}, s={s}", upsampled(layer, x, s)))
        sizes.append(layer.kernel_size)
    resize = _with_kernel(build("resize", 1, 1, k, scale_factor=s), torch.full((k, k), 1 / k ** 2).tolist()).double()
    with torch.no_grad():
        outs.append((f"resize-conv: nearest ×{s}, {k}×{k}", resize(x)[0, 0].numpy()))
    sizes.append((k, k))
    zoom = 12 * s  # the top-left 12 input cells, grown
    panels = [column([_heading("input 64×64"), image(x[0, 0].numpy(), 7, vmin=0, vmax=1)], gap=0.3)]
    for title, y in outs:
        panels.append(column([_heading(f"{title}: {y.shape[0]}×{y.shape[1]}"), image(y, 14, vmin=0, vmax=1),
                              label(f"zoom on the top-left {zoom}×{zoom}", SMALL),
                              image(y[:zoom, :zoom], 14, vmin=0, vmax=1)], gap=0.3))
    uneven = f"k={k}, s={s} overlaps unevenly → checkerboard; " if k % s else ""
    note = label(f"each kernel is uniform — all its taps equal, scaled to unit average gain — but the sizes differ: "
                 f"{', '.join('×'.join(map(str, z)) for z in sizes)} (left to right); no weight favours a position, "
                 f"so any pattern comes from how the taps overlap.\n{uneven}a kernel divisible by s and resize-conv "
                 "are even.", SMALL)
    return column([row(panels, gap=1.0), note], gap=0.6)


# --- article 001 §7: dilated ---------------------------------------------------------------------------------------


RF_SIZE = 17  # odd: the 15×15 field of l = 1, 2, 4 sits centred, one cell of margin on every side


def dilated_receptive_field(size: int = RF_SIZE) -> Block:
    panels = []
    stack: list[nn.Module] = []
    colours = tap_colours(9)
    centre = size // 2
    for l in (1, 2, 4):
        layer = build("dilated", 1, 1, 3, dilation=l)
        stack.append(layer)
        seen = connectivity(nn.Sequential(*stack), (1, size, size)).footprint().numpy()
        index = taps(layer, (1, size, size))[0, centre, centre, 0].numpy()
        rows_ = np.nonzero(seen.any(1))[0]
        extent = rows_.max() - rows_.min() + 1
        grid = [[Cell(colours[index[r, c]], str(index[r, c])) if index[r, c] >= 0
                 else Cell("#9fc5e8" if seen[r, c] else "#eeeeee") for c in range(size)] for r in range(size)]
        panels.append(column([_heading(f"l = {l}: receptive field {extent}×{extent}"),
                              label(f"stack of {len(stack)} layer(s) (l = {', '.join(str(2 ** i) for i in range(len(stack)))});"
                                    f" coloured: the 9 taps of the l={l} layer", SMALL), cells(grid)], gap=0.3))
    legend = swatch_legend([("#9fc5e8", "input cells the centre output depends on (through the whole stack)", False),
                            (colours[0], "the 3×3 taps of the last layer: l cells apart, l − 1 holes between", False)])
    return column([row(panels, gap=1.5), legend], gap=0.6)


# --- article 001 §8: spatially separable and depthwise separable ------------------------------------------------------


def sobel() -> Block:
    """3×1 [1,2,1] · 1×3 [1,0,−1] = the 3×3 Sobel kernel; below, the same kernel read from the two-stage layer: its
    conv matrix on a 3×3 input is 1×9 (one output, nine inputs), reshaped to 3×3."""
    layer = build("spatially_separable", 1, 1, 3, padding=0, bias=False)
    column_, row_ = _stage_modules(layer)[:2]
    _with_kernel(column_, [[1], [2], [1]])
    _with_kernel(row_, [[1, 0, -1]])
    col_k = getattr(column_, kernel_parameter(column_, 2)).detach()[0, 0].double().numpy()  # (3, 1)
    row_k = getattr(row_, kernel_parameter(row_, 2)).detach()[0, 0].double().numpy()  # (1, 3)
    c = conv_matrix(layer, (1, 3, 3)).numpy()  # (1, 9): the one output's weight on each input cell

    def grid(a: np.ndarray) -> Block:
        return cells([[Cell("#fde0c5" if v > 0 else "#c6dbef" if v < 0 else "white", fmt(v)) for v in line]
                      for line in a])

    def item(head: str, body: Block) -> Block:
        return column([_heading(head), body], gap=0.3, align="center")

    product = row([item("3×1 (stage 1)", grid(col_k)), _operator("·"), item("1×3 (stage 2)", grid(row_k)),
                   _operator("="), item("3×3 Sobel kernel", grid(col_k @ row_k))], gap=0.8, align="center")
    read = row([item("the layer's conv matrix on a 3×3 input: 1×9 (1 output × 9 inputs)", grid(c)),
                arrow(2.5, "reshape"), item("3×3: the kernel above", grid(c.reshape(3, 3)))], gap=0.8, align="center")
    return column([product, read,
                   label(f"6 weights instead of 9; the two-stage layer's 3×3 kernel equals 3×1 · 1×3: "
                         f"{bool(np.allclose(c.reshape(3, 3), col_k @ row_k))} — it computes exactly the Sobel filter",
                         SMALL)], gap=0.8)


def scan_positions() -> Block:
    def centres(module: nn.Module, shape: tuple[int, ...]) -> tuple[list[tuple[float, float]], tuple[int, ...]]:
        r = analyse(module, shape, illustrate=False)
        g = r.geometry
        assert g is not None and g.kind == "gather"
        mid = [(k - 1) / 2 for k in g.kernel_shape]
        pts = [tuple(a * o + b * m + c for a, b, c, o, m in zip(g.a, g.b, g.c, pos, mid))
               for pos in np.ndindex(*r.output_shape[1:])]
        return pts, r.output_shape[1:]

    standard = build("standard", 1, 1, 3, padding=0)
    separable = build("spatially_separable", 1, 1, 3, padding=0)
    col_stage, row_stage = _stage_modules(separable)[:2]
    pts0, out0 = centres(standard, (1, 5, 5))
    pts1, out1 = centres(col_stage, (1, 5, 5))
    pts2, out2 = centres(row_stage, (1, *out1))
    m0, m1, m2 = (stage_macs(standard, (1, 5, 5)), stage_macs(col_stage, (1, 5, 5)), stage_macs(row_stage, (1, *out1)))
    return row([
        column([_heading(f"3×3 conv: {len(pts0)} positions × 9 = {m0}"), dots_on_grid(5, 5, pts0)], gap=0.3),
        column([_heading(f"stage 1, 3×1: {len(pts1)} positions × 3 = {m1}"), dots_on_grid(5, 5, pts1),
                label(f"gives a {out1[0]}×{out1[1]} map", SMALL)], gap=0.3),
        column([_heading(f"stage 2, 1×3 on it: {len(pts2)} × 3 = {m2}"), dots_on_grid(*out1, pts2),
                label(f"total {m1} + {m2} = {m1 + m2} < {m0}", SMALL)], gap=0.3),
    ], gap=2.0)


def _kernel_shapes(module: nn.Module) -> tuple[int, int, tuple[int, ...]]:
    """(number of kernels, depth, spatial size) of a conv's kernel parameter: C_out, C_in / groups, (kh, kw)."""
    weight = getattr(module, kernel_parameter(module, 2))
    return weight.shape[0], weight.shape[1], tuple(weight.shape[2:])


def _kernel_row(n: int, depth: int, size: tuple[int, ...], colours: list[str], channel_of: list[int] | None = None,
                shown: int = 3) -> Block:
    """The first ``shown`` of ``n`` kernels h×w×depth as small volumes, each plane in the colour of the input channel
    it reads (``channel_of[i]``: the one channel kernel i reads, for depthwise kernels), then '… ×n'."""
    h, w = size
    scale = 0.5 if max(h, w) > 1 else 0.8
    drawn = []
    for i in range(min(n, shown)):
        if channel_of is not None:
            drawn.append(volume(h, w, depth, colours[channel_of[i]], scale=scale))
        else:
            drawn.append(volume(h, w, depth, depth_colours=colours[:depth], scale=scale))
    more = [label(f"… ×{n}", SMALL)] if n > shown else []
    return row(drawn + more, gap=0.4, align="center")


def separable_volumes(size: int, k: int, c_in: int, c_out: int, article: str) -> Callable[[], Block]:
    def make() -> Block:
        shape = (c_in, size, size)
        standard = build("standard", c_in, c_out, k, padding=0)
        dws = build("depthwise_separable", c_in, c_out, k, padding=0)
        depthwise, pointwise = _stage_modules(dws)[:2]
        with torch.no_grad():
            mid = depthwise(torch.zeros(1, *shape)).shape[1:]
            out = standard(torch.zeros(1, *shape)).shape[1:]
        m_std = stage_macs(standard, shape)
        m_dw, m_pw = stage_macs(depthwise, shape), stage_macs(pointwise, tuple(mid))
        o = out[1]
        rgb = ["#e06666", "#93c47d", "#6fa8dc"]
        n_std, d_std, s_std = _kernel_shapes(standard)
        n_dw, d_dw, s_dw = _kernel_shapes(depthwise)
        n_pw, d_pw, s_pw = _kernel_shapes(pointwise)
        # the one input channel each depthwise kernel reads, from the layer's connectivity
        reads = connectivity(depthwise, shape).channel_map().numpy()
        dw_channel = [int(np.nonzero(line)[0][0]) for line in reads]

        def step(text: str, kernels: Block) -> Block:
            return column([kernels, arrow(max(kernels.w, 4.0), text)], gap=0.3, align="center")

        vin = volume(size, size, c_in, depth_colours=rgb)
        standard_row = row([vin, step(f"{n_std} filters {'×'.join(map(str, s_std))}×{d_std}",
                                      _kernel_row(n_std, d_std, s_std, rgb)),
                            volume(o, o, c_out, "#d6ebd3")], gap=0.6, align="center")
        dws_row = row([vin, step(f"depthwise: {n_dw} kernels {'×'.join(map(str, s_dw))}×{d_dw}\none per channel",
                                 _kernel_row(n_dw, d_dw, s_dw, rgb, dw_channel)),
                       volume(mid[1], mid[2], mid[0], depth_colours=rgb),
                       step(f"pointwise: {n_pw} kernels {'×'.join(map(str, s_pw))}×{d_pw}",
                            _kernel_row(n_pw, d_pw, s_pw, rgb)),
                       volume(o, o, c_out, "#d6ebd3")],
                      gap=0.6, align="center")
        return column([
            _heading(f"(a) standard conv: {m_std:,} multiplications = {c_out}·{k}·{k}·{c_in}·{o}·{o}"), standard_row,
            _heading(f"(b) depthwise {m_dw:,} + pointwise {m_pw:,} = {m_dw + m_pw:,} multiplications "
                     f"({(m_dw + m_pw) / m_std:.1%} of (a))"), dws_row,
            label(f"kernels drawn from the layers' weight shapes, each plane in the colour of the input channel it "
                  f"reads; multiplications counted from the real layers' taps (article {article})", SMALL)], gap=0.5)

    return make


# --- article 001 §9–12: flattened, grouped, shuffled, pointwise grouped ---------------------------------------------


def flattened() -> Block:
    return layer_block(build("flattened", 3, 3, 3), (3, 5, 5))


def grouped() -> Block:
    return layer_block(build("grouped", 4, 4, 3, groups=2), (4, 5, 5))


GROUPED_1X1 = {"channels": 6, "groups": 3, "size": 4, "seed": 8}  # seed 8: six different filters of weights 1…3


@dataclass(frozen=True)
class GroupedPointwiseExample:
    """A pointwise grouped layer (C → C, g groups, no bias) with small integer weights: ``weight`` (C, C/g) the
    layer's, ``matrix`` (C_out, C_in) its channel matrix (the conv matrix on a 1×1 input: block-diagonal), x
    (C, H, W) the input, y = layer(x), ``pixel`` the position drawn; y[:, p] = matrix · x[:, p] at every p."""

    layer: nn.Module
    weight: np.ndarray
    matrix: np.ndarray
    x: np.ndarray
    y: np.ndarray
    pixel: tuple[int, int]


def pointwise_grouped_example() -> GroupedPointwiseExample:
    c, g, size, seed = (GROUPED_1X1[k] for k in ("channels", "groups", "size", "seed"))
    layer = build("pointwise_grouped", c, c, 1, groups=g, bias=False).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(1, 4, layer.weight.shape, generator=gen).double())
        x = torch.randint(0, 5, (1, c, size, size), generator=gen).double()
        y = layer(x)
    matrix_ = conv_matrix(layer, (c, 1, 1)).numpy()  # (C_out, C_in): the 1×1 conv is this matrix at every pixel
    return GroupedPointwiseExample(layer, layer.weight.detach()[..., 0, 0].numpy(), matrix_, x[0].numpy(),
                                   y[0].numpy(), (size // 2, size // 2))


MATRIX_TOP = text_size("in\nc0", SMALL)[1] + 0.1  # the two label lines above a channel matrix, in cells


def _channel_matrix(values: np.ndarray, fills: list[list[str | tuple]], alpha: float = 0.35) -> Block:
    """A (C_out, C_in) matrix at the one cell size with 'c<i>' above the columns (inputs) and 'c<o>' left of the
    rows (outputs); cells filled ``fills[o][i]``, every value printed."""
    grid = cells([[Cell(fills[o][i], fmt(v), alpha=alpha if fills[o][i] != "white" else 1.0)
                   for i, v in enumerate(line)] for o, line in enumerate(values)])
    left = text_size(f"out c{values.shape[0] - 1}", SMALL)[0] + 0.3
    top = MATRIX_TOP

    def paint(ax, x0: float, y0: float) -> None:
        ax.text(x0 + left + grid.w / 2, y0, "in", fontsize=SMALL, ha="center", va="top")
        for i in range(values.shape[1]):
            ax.text(x0 + left + i + 0.5, y0 + top - 0.1, f"c{i}", fontsize=SMALL, ha="center", va="bottom")
        for o in range(values.shape[0]):
            ax.text(x0 + left - 0.3, y0 + top + o + 0.5, f"out c{o}", fontsize=SMALL, ha="right", va="center")
        grid.paint(ax, x0 + left, y0 + top)

    return Block(left + grid.w, top + grid.h, paint)


def pointwise_grouped() -> Block:
    """The layer's step picture (numbers: the weights, not tap indices), then its channel matrix, block-diagonal,
    times the drawn pixel's column of C input values = that pixel's C output values."""
    d = pointwise_grouped_example()
    c = d.matrix.shape[0]
    g = GROUPED_1X1["groups"]
    per = c // g
    group_of = [i // per for i in range(c)]
    fills = [[group_colour(group_of[o]) if group_of[o] == group_of[i] else "white" for i in range(c)]
             for o in range(c)]
    r, q = d.pixel
    picture = layer_block(d.layer, d.x.shape, numbers=True, x=torch.from_numpy(d.x), position=d.pixel)

    def column_of(values: np.ndarray, fill: str) -> Block:
        """A channel column whose cells sit level with the matrix's rows (below its two label lines)."""
        return column([spacer(h=MATRIX_TOP), cells([[Cell(fill, fmt(v))] for v in values])], gap=0.0)

    def item(head: str, body: Block) -> Block:
        return column([_heading(head), body], gap=0.3, align="center")

    equation = row([item(f"W ({c}×{c}): the 1×1 channel matrix", _channel_matrix(d.matrix, fills)), _operator("·"),
                    item(f"x[:, {r}, {q}]", column_of(d.x[:, r, q], INPUT)), _operator("="),
                    item(f"y[:, {r}, {q}]", column_of(d.y[:, r, q], OUTPUT))], gap=0.6, align="center")
    note = label(f"W is block-diagonal: {g} blocks of {per}×{per} (the layer's weight, {c}×{per}×1×1, one block per "
                 f"group) and 0 outside them — an output channel reads only its group's {per} input channels.\n"
                 f"The same W multiplies the channel column at every one of the {d.x.shape[1]}×{d.x.shape[2]} "
                 f"pixels: no spatial extent. W computed as the layer's conv matrix on a 1×1 input; "
                 f"y from the layer: W·x[:, {r}, {q}] = y[:, {r}, {q}]: "
                 f"{bool(np.allclose(d.matrix @ d.x[:, r, q], d.y[:, r, q]))}", SMALL)
    return column([picture, _heading("the same layer as a matrix"), equation, note], gap=0.6)


def _channel_map(module: nn.Module, shape: tuple[int, ...]) -> np.ndarray:
    return connectivity(module, shape).channel_map().numpy()


def shuffle_flow() -> Block:
    from ..layers import ChannelShuffle

    c, g = 9, 3
    gconv1 = build("grouped", c, c, 1, groups=g)
    gconv2 = build("grouped", c, c, 1, groups=g)
    shuffle = ChannelShuffle(g)
    shape = (c, 3, 3)
    m1, ms, m2 = (_channel_map(m, shape) for m in (gconv1, shuffle, gconv2))
    colours = ["#e06666", "#93c47d", "#6fa8dc"]
    plain = channel_flow([m1, m2], ["input", "GConv1", "GConv2"], colours)
    shuffled = channel_flow([m1, ms, m2], ["input", "GConv1", "shuffle", "GConv2"], colours)
    return column([
        _heading("(a) two grouped convs (3 groups): each output group sees one input group"), plain,
        _heading("(b) GConv1 → channel shuffle → GConv2: every output channel depends on all three groups (grey)"),
        shuffled,
        label("lines: channel pairs connected (computed from each layer's connectivity); colour: the input group a "
              "channel depends on, grey when several", SMALL)], gap=0.5)


# --- article 003 §2.1: GDC, MixConv ------------------------------------------------------------------------------------


def mixconv() -> Block:
    return layer_block(build("mixconv", 3, 3, 3), (3, 9, 9))


# --- article 003 §1.3 / §2.2: sampling matrix, deformable, DCNv2 -------------------------------------------------------


LEARNED_SEED = 3  # a draw whose points stay ≥ 1 cell apart and clear of the other taps' grid points


def _offsets(kind: str, k: int = 3, seed: int = LEARNED_SEED) -> torch.Tensor:
    """(dy, dx) per tap, torchvision layout: regular (zeros), learned (random), scale ×2, rotation 30° (of the grid
    spread ×2, so that the rotated points stay apart from each other and from the regular grid's points)."""
    r = torch.arange(k, dtype=torch.float64) - k // 2
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    if kind == "regular":
        ny, nx = dy, dx
    elif kind == "learned":  # a spread-out grid, jittered: points stay apart so each can be read
        gen = torch.Generator().manual_seed(seed)
        ny, nx = 1.7 * dy + 0.45 * torch.randn(k, k, generator=gen, dtype=torch.float64), \
            1.7 * dx + 0.45 * torch.randn(k, k, generator=gen, dtype=torch.float64)
    elif kind == "scale":
        ny, nx = 2 * dy, 2 * dx
    else:
        a = math.radians(30)
        ny, nx = 2 * (math.cos(a) * dy - math.sin(a) * dx), 2 * (math.sin(a) * dy + math.cos(a) * dx)
    return torch.stack([ny - dy, nx - dx], -1).reshape(-1)


def _deformable(offsets: torch.Tensor, mask_logits: torch.Tensor | None = None) -> nn.Module:
    layer = build("deformable_v2" if mask_logits is not None else "deformable", 1, 1, 3)
    side = side_modules(layer) or [m for m in layer.children()  # no stages(): its zero-initialised offset branch
                                   if list(m.parameters()) and all(float(p.detach().abs().max()) == 0 for p in m.parameters())]
    if not side:
        raise ValueError(f"{type(layer).__name__} declares no side stage (offset conv) in stages()")
    offset_conv = side[0]
    setattr(offset_conv, SIDE_FLAG, True)
    with torch.no_grad():
        for p in offset_conv.parameters():
            p.zero_()
        bias = offset_conv.bias
        bias[:offsets.numel()] = offsets.to(bias.dtype)
        if mask_logits is not None:
            bias[offsets.numel():offsets.numel() + mask_logits.numel()] = mask_logits.to(bias.dtype)
    return layer


def _sampling_panel(layer: nn.Module, size: int, title: str) -> Block:
    r = analyse(layer, (1, size, size), illustrate=False)
    return column([_heading(title), irregular_input(r, 0, (size // 2, size // 2), False, [0])], gap=0.3)


SAMPLING_SIZE = 9
SAMPLING_PANELS = (("regular", "(a) regular 3×3 sampling (standard conv)"), ("learned", "(b) learned offsets"),
                   ("scale", "(c) offsets that scale the grid ×2"), ("rotation", "(d) offsets that also rotate it 30°"))


def sampling_layer(kind: str) -> nn.Module:
    """The deformable layer of panel ``kind`` (one of SAMPLING_PANELS), its offset conv set to give those offsets."""
    return _deformable(_offsets(kind))


def sampling_matrix() -> Block:
    panels = [_sampling_panel(sampling_layer(kind), SAMPLING_SIZE, title) for kind, title in SAMPLING_PANELS]
    legend = label("○ a tap's place on the regular grid → ● where the offsets move it (the centre output's 3×3 taps, "
                   "at their fractional positions); the numbered disc tied to a dot names its tap;\n"
                   "shaded: the input cells its bilinear interpolation reads; dashed frame: the cells drawn again, "
                   "enlarged, beside the plane", SMALL)
    return column([row(panels[:2], gap=1.5), row(panels[2:], gap=1.5), legend], gap=0.6)


def dcnv2() -> Block:
    """DCN v1 and v2 with the same offsets; v2's mask per tap (sigmoid of its logits, linspace(−3, 3)) and the
    opacity each of its points is drawn with: its strength (bilinear weights × mask) ÷ the plane's strongest
    (``irregular.relative_strengths``), read from the v2 layer's tap map at the drawn output."""
    size = 9
    offsets = _offsets("learned")
    logits = torch.linspace(-3, 3, 9, dtype=torch.float64)
    modulated = _deformable(offsets, logits)
    v1 = _sampling_panel(_deformable(offsets), size, "DCN v1: every sampling point counts fully")
    v2 = _sampling_panel(modulated, size, "DCN v2: each point weighted by its mask")
    masks = torch.sigmoid(logits)
    points = sampling_points(analyse(modulated, (1, size, size), illustrate=False), 0, (size // 2, size // 2), 0)
    opacity = dict(zip((t for t, _, _ in points), relative_strengths(points).tolist()))

    def shaded(values: list[float]) -> Block:
        return cells([[Cell((0.42, 0.32, 0.64, v), fmt(v)) for v in values]], SMALL)

    said = [label("mask Δm per tap 0…8 (sigmoid of the offset conv's mask output):", SMALL),
            label("opacity of each point in v2 = its weight (bilinear × mask) ÷ the strongest's, at least "
                  f"{fmt(FAINTEST)}:", SMALL)]
    width = max(t.w for t in said)
    rows = [row([Block(width, t.h, t.paint), shaded(v)], gap=0.5, align="center")
            for t, v in zip(said, ([float(m) for m in masks], [opacity[t] for t in range(9)]))]
    return column([row([v1, v2], gap=1.5), column(rows, gap=0.3)], gap=0.6)


# --- article 003 §2.3: HetConv, dynamic -------------------------------------------------------------------------------


def hetconv() -> Block:
    return layer_block(build("hetconv", 4, 4, 3, p=2), (4, 5, 5))


# --- registry -------------------------------------------------------------------------------------------------------

F = ArticleFigure
FIGURES: list[ArticleFigure] = [
    F("001-1_correlation-vs-convolution", "互相关 vs 卷积", "cross-correlation vs convolution", "001 §1, 003 §1.2",
      "Cross-correlation vs true convolution on the article's 5×5 input and kernel: the same numbers, the kernel "
      "applied as is (a) or rotated 180° (b); tap colours mirror, outputs differ.",
      "文章的 5×5 输入与卷积核：(a) 互相关——卷积核原样滑动；(b) 真正的卷积——卷积核先旋转 180° 再滑动；抽头颜色镜像，"
      "输出不同。", correlation_vs_convolution),
    F("001-1_flip-and-slide", "卷积：反转再滑动", "convolution: flip, then slide (1-D)", "001 §1",
      "1-D convolution as the article describes it: g is flipped, then slid along f, and at each shift n the products "
      "f(t)·g(n−t) are summed (a); cross-correlation slides g without flipping it (b). Products and sums computed by "
      "convzoo's 1-D 'convolution' and 'standard' layers.",
      "文章所述的一维卷积：函数 g 先反转，再沿 f 滑动，在每个位移 n 处把乘积 f(t)·g(n−t) 相加 (a)；互相关不反转 g，"
      "直接滑动 (b)。乘积与和由 convzoo 的一维 convolution 与 standard 层算出。", more.flip_and_slide),
    F("001-2_single-channel", "单通道卷积", "single-channel convolution", "001 §2",
      "The article's single-channel example: 5×5 input, kernel [[0,1,2],[2,2,0],[0,1,2]], padding 0, stride 1 → 3×3 "
      "output [[12,12,17],[10,17,19],[9,6,14]], computed by the layer.",
      "文章的单通道例子：5×5 输入，卷积核 [[0,1,2],[2,2,0],[0,1,2]]，填充 0、步长 1 → 3×3 输出 "
      "[[12,12,17],[10,17,19],[9,6,14]]，由该层算出。", single_channel),
    F("001-2_multi-channel", "多通道卷积", "multi-channel convolution", "001 §2",
      "A 5×5×3 input and one 3×3×3 filter: the window on each channel, all 27 products summed, plus the bias 1, into "
      "one output channel (the same example as the partial-results figure).",
      "5×5×3 输入与一个 3×3×3 过滤器：窗口落在每个通道上，27 个乘积相加再加上偏置 1，得到一个输出通道（与部分结果图是同一个例子）。",
      multi_channel),
    F("001-2_multi-channel-partial-sums", "多通道卷积：逐通道的部分结果相加", "multi-channel convolution as partial "
      "results", "001 §2",
      "The multi-channel example taken apart: the filter's three 3×3 kernels each slide over their own input channel "
      "and give a partial result; the three partial results plus the bias are the output channel. Each partial "
      "result is the layer's output for an input holding only that channel (less the bias).",
      "拆开的多通道例子：过滤器的三个 3×3 卷积核各自在对应的输入通道上滑动，得到一个部分结果；三个部分结果之和加上偏置即为"
      "输出通道。每个部分结果都是该层在只保留这一通道的输入上的输出（减去偏置）。", more.multi_channel_partials),
    F("001-3_filter-depth-equals-input-depth", "过滤器深度等于输入深度（输出为 2D）", "filter as deep as the input: "
      "a 2-D output", "001 §3",
      "When the filter is as deep as the input volume it can only move along height and width, so the output is one "
      "2-D map — which is why deep learning still calls this a 2-D convolution. A Conv3d with a 3×3×3 kernel on a "
      "5×5×3 volume gives 1×3×3, equal to a Conv2d with 3 input channels.",
      "当过滤器深度与输入层深度相同时，它只能沿高和宽移动，输出是一张 2D 图——因此深度学习中仍称之为 2D 卷积。核为 3×3×3 "
      "的 Conv3d 作用于 5×5×3 的体积得到 1×3×3，与 3 个输入通道的 Conv2d 结果相同。", more.filter_as_deep_as_input),
    F("001-3_3d-conv", "3D 卷积（过滤器深度小于输入深度）", "3-D convolution", "001 §3",
      "3-D convolution with a filter shallower than the input: the 3×3×3 kernel slides along depth, height and "
      "width, so the output is 3-D; input and output drawn as depth slices side by side: the input's 4 slices "
      "d = 0…3 and the output's 2 slices d = 0, 1, left to right (4 − 3 + 1 = 2).",
      "过滤器深度小于输入深度的 3D 卷积：3×3×3 卷积核沿深度、高、宽三个方向滑动，输出也是 3D 的；输入与输出按深度切片并排"
      "画出：输入的 4 个切片 d = 0…3 与输出的 2 个切片 d = 0、1，从左到右（4 − 3 + 1 = 2）。", three_d),
    F("001-4_1x1-conv", "1×1 卷积", "1×1 convolution", "001 §4",
      "1×1 convolution: one input pixel across all 4 channels → one output pixel per filter; no spatial extent. "
      "Each 1×1×4 filter multiplies the pixel's value on every channel by that channel's weight and sums the 4 "
      "products; two filters give two output channels (numbers computed by the layer).",
      "1×1 卷积：一个输入像素的全部 4 个通道 → 每个过滤器一个输出像素；没有空间范围。每个 1×1×4 过滤器把该像素在每个通道上的"
      "值乘以该通道的权重，再把 4 个乘积相加；两个过滤器得到两个输出通道（数值由该层算出）。", one_by_one),
    F("003-1.1_1d-conv", "一维相关", "1-D correlation", "003 §1.1",
      "1-D correlation over a sequence with the kernel [1, 0, −1]: F has 2N + 1 = 3 elements, centred on an input "
      "element at every step.",
      "序列上的一维相关运算，核为 [1, 0, −1]：F 有 2N+1 = 3 个元素，每一步中心都落在输入的一个元素上。", one_d),
    F("001-6_transposed-2x2-to-4x4", "转置卷积（2×2 → 4×4）", "transposed convolution, 2×2 → 4×4", "001 §6",
      "Transposed conv, 3×3 kernel, stride 1: the 2×2 input padded with 2 zeros all round, read by the flipped "
      "kernel → 4×4 (drawn larger: upsampling grows).",
      "转置卷积，3×3 卷积核，步长 1：2×2 输入四周补 2 圈零，由翻转后的卷积核读取 → 4×4（画得更大：上采样会变大）。",
      transposed_4x4),
    F("001-6_transposed-2x2-to-5x5", "转置卷积（2×2 → 5×5）", "transposed convolution, 2×2 → 5×5", "001 §6",
      "Transposed conv, 3×3 kernel, stride 2: one zero inserted between the input cells and 2 of padding → 5×5.",
      "转置卷积，3×3 卷积核，步长 2：输入单元之间插入一个零，四周补 2 圈零 → 5×5。", transposed_5x5),
    F("001-6_conv-matrix", "卷积的矩阵实现（C 与 Cᵀ）", "the convolution matrix", "001 §6",
      "The article's 4×4 input x flattened to 16, the conv matrix C (4×16) of its 3×3 kernel, C·x = y reshaped to "
      "2×2; then Cᵀ (16×4), computed from the matching transposed conv, times y, reshaped to 4×4. Cᵀ restores the "
      "shape, not the values: CᵀC ≠ I (C is 4×16), so Cᵀy ≠ x (Cᵀy[2,2] = 70 where x[2,2] = 2) — exactly what a "
      "transposed conv does. Entries coloured by kernel tap.",
      "文章的 4×4 输入 x 平展为 16 维，3×3 卷积核的卷积矩阵 C（4×16），C·x = y 再变形为 2×2；然后由对应的转置卷积算出的 "
      "Cᵀ（16×4）乘以 y，变形为 4×4。Cᵀ 恢复的是形状而不是数值：CᵀC ≠ I（C 是 4×16 的），所以 Cᵀy ≠ x"
      "（Cᵀy[2,2] = 70，而 x[2,2] = 2）——转置卷积做的正是这件事。矩阵元素按卷积核抽头着色。", conv_matrix_figure),
    F("001-6_overlap-1d-stride1", "转置卷积的重叠（步长 1）", "transposed-conv overlap, stride 1", "001 §6",
      "Transposed conv overlap, stride 1: (a) k=2, (b) k=3 — the middle outputs receive the same number of inputs "
      "(even).",
      "步长 1 的转置卷积重叠：(a) k=2，(b) k=3——中间的输出单元接收相同数量的输入（均匀）。", overlap_stride(1, (2, 3))),
    F("001-6_overlap-1d-stride2", "转置卷积的不均匀重叠（步长 2）", "transposed-conv overlap, stride 2", "001 §6",
      "Transposed conv overlap, stride 2: (a) k=2 and (b) k=4 even; (c) k=3 and (d) k=5 uneven — a kernel size "
      "divisible by the stride avoids uneven overlap.",
      "步长 2 的转置卷积重叠：(a) k=2 与 (b) k=4 均匀；(c) k=3 与 (d) k=5 不均匀——卷积核大小能被步长整除即可避免不均匀"
      "重叠。", overlap_stride(2, (2, 4, 3, 5))),
    F("001-6_overlap-2d", "二维中的不均匀重叠（棋盘效应）", "uneven overlap in 2-D (checkerboard)", "001 §6",
      "The overlap in 2-D: the 1-D pattern squared (k=3, s=2: 1-2-4 checkerboard; k=4, s=2: even).",
      "二维中的重叠：一维模式的平方（k=3、s=2：1-2-4 的棋盘；k=4、s=2：均匀）。", overlap_2d),
    F("001-6_checkerboard-image", "棋盘效应", "checkerboard artifacts", "001 §6",
      "A photograph upsampled ×2 by transposed conv k=3, s=2 (checkerboard), transposed conv k=4, s=2 and "
      "resize-conv (nearest ×2, then a 3×3 conv) (both even). Each kernel is uniform — all its taps equal, scaled to "
      "keep the average brightness — but their sizes differ: 3×3, 4×4 and 3×3.",
      "一张照片分别经 k=3、s=2 的转置卷积（棋盘效应）、k=4、s=2 的转置卷积和先缩放再卷积（最近邻放大 2 倍后接 3×3 卷积）"
      "（均匀）放大 2 倍。每个卷积核都是均匀核——所有抽头相等，并按保持平均亮度缩放——但大小不同：3×3、4×4 和 3×3。",
      checkerboard_image),
    F("003-2.2_dilated-animation", "扩张卷积（空洞卷积）", "dilated convolution, animated", "003 §2.2, 001 §7",
      "Dilated convolution as in the article's animation: kernel 3×3, padding 0, dilation rate 2 on a 7×7 input → "
      "3×3 output, one frame per output position; the 9 taps read input cells 2 apart, with holes between them.",
      "文章动图中的扩张卷积：卷积核 3×3，填充 0，扩张率 2，7×7 输入 → 3×3 输出，每个输出位置一帧；9 个抽头读取相隔 2 的"
      "输入单元，中间留有空洞。", animation=more.dilated_animation),
    F("001-7_dilated-receptive-field", "扩张卷积的感受野", "receptive field of stacked dilated convolutions",
      "001 §7",
      "Stacked dilated 3×3 convs with l = 1, 2, 4: receptive fields 3×3, 7×7, 15×15 with 9 weights each; the taps of "
      "each layer marked.",
      "堆叠的 3×3 扩张卷积，l = 1、2、4：感受野分别为 3×3、7×7、15×15，每层都只有 9 个权重；标出了每层的抽头。",
      dilated_receptive_field),
    F("001-8.1_sobel-separable", "空间可分卷积（Sobel 核）", "spatially separable convolution (Sobel)",
      "001 §8.1, 000",
      "Sobel = (3×1)·(1×3): a spatially separable layer with column [1,2,1] and row [1,0,−1] computes the Sobel "
      "filter: its conv matrix on a 3×3 input, 1×9 (one output, nine inputs), reshaped to 3×3 is the Sobel kernel.",
      "Sobel = (3×1)·(1×3)：列为 [1,2,1]、行为 [1,0,−1] 的空间可分层计算的就是 Sobel 滤波：它在 3×3 输入上的卷积矩阵为 "
      "1×9（一个输出、九个输入），变形为 3×3 即为 Sobel 核。", sobel),
    F("001-8.1_scan-positions", "空间可分卷积的乘法次数", "spatially separable convolution: multiplications",
      "001 §8.1",
      "5×5 input: a 3×3 conv scans 9 positions × 9 multiplications = 81; the 3×1 stage 15 × 3 = 45 (a 3×5 map) and "
      "the 1×3 stage 9 × 3 = 27: 72.",
      "5×5 输入：3×3 卷积扫描 9 个位置 × 9 次乘法 = 81；3×1 阶段 15 × 3 = 45（得到 3×5 的矩阵），1×3 阶段 9 × 3 = 27："
      "共 72。", scan_positions),
    F("001-8.2_standard-vs-depthwise-separable", "深度可分卷积", "depthwise separable convolution", "001 §8.2",
      "7×7×3 → 5×5×128: standard conv (128 filters 3×3×3) vs depthwise (3 kernels 3×3×1 → 5×5×3) then pointwise (128 "
      "kernels 1×1×3): 86,400 vs 675 + 9,600 multiplications; the kernels drawn with the channels they read.",
      "7×7×3 → 5×5×128：标准卷积（128 个 3×3×3 过滤器）对比深度卷积（3 个 3×3×1 的核 → 5×5×3）再逐点卷积（128 个 "
      "1×1×3 的核）：乘法次数 86,400 对 675 + 9,600；卷积核按其读取的通道着色。", separable_volumes(7, 3, 3, 128, "001 §8.2")),
    F("000_depthwise-separable-12x12x3", "深度可分离卷积", "depthwise separable convolution", "000",
      "Article 000's example: 12×12×3 → 8×8×256 with 5×5 kernels: 1,228,800 multiplications standard vs 4,800 + "
      "49,152 depthwise separable (3 kernels 5×5×1, then 256 kernels 1×1×3).",
      "文章 000 的例子：12×12×3 → 8×8×256，5×5 卷积核：标准卷积 1,228,800 次乘法，深度可分离卷积 4,800 + 49,152 次"
      "（3 个 5×5×1 的核，再 256 个 1×1×3 的核）。", separable_volumes(12, 5, 3, 256, "000")),
    F("001-9_flattened", "平展卷积", "flattened convolution", "001 §9, 003 §2.2",
      "Flattened convolution, stage by stage: L (1×1 across channels) → V (k×1 per channel) → H (1×k per channel).",
      "平展卷积，逐阶段：L（跨通道 1×1）→ V（每通道 k×1）→ H（每通道 1×k）。", flattened),
    F("001-10_grouped-2-groups", "分组卷积（两个过滤器分组）", "grouped convolution, two filter groups",
      "001 §10, 003 §2.1",
      "Grouped convolution with two filter groups, coloured as in the article: the first group (red) convolves the "
      "first half of the input channels, the second (orange) the second half; each filter is D_in/2 deep and each "
      "group makes D_out/2 output channels.",
      "两个过滤器分组的分组卷积，按文章配色：第一组（红色）与输入的前一半通道卷积，第二组（橙色）与后一半卷积；每个过滤器"
      "深度为 D_in/2，每组生成 D_out/2 个输出通道。", more.grouped_two_colours),
    F("001-11_shuffle-gconv1-gconv2", "混洗分组卷积", "shuffled grouped convolution", "001 §11, 003 §2.1",
      "GConv1 → channel shuffle → GConv2 with 3 groups: without the shuffle each output group sees one input group; "
      "with it, all three.",
      "GConv1 → 通道混洗 → GConv2，3 个分组：不混洗时每个输出组只看到一个输入组；混洗后看到全部三个。", shuffle_flow),
    F("001-12_pointwise-grouped", "逐点分组卷积", "pointwise grouped convolution", "001 §12",
      "Pointwise grouped conv (3 groups): a block-diagonal 1×1 channel matrix, no spatial extent. Top: output c0 "
      "at one pixel reads only that pixel on c0–c1, its group's channels. Bottom: the layer's 6×6 channel matrix W, "
      "3 blocks of 2×2 (its weight) and 0 outside them, times one pixel's 6 input values = its 6 output values "
      "(numbers computed by the layer).",
      "逐点分组卷积（3 组）：块对角的 1×1 通道矩阵，没有空间范围。上：某一像素处的输出 c0 只读取该像素在 c0–c1（它所在组"
      "的通道）上的值。下：该层 6×6 的通道矩阵 W，由 3 个 2×2 的块（其权重）组成，块外为 0；W 乘以一个像素的 6 个输入值"
      "即为该像素的 6 个输出值（数值由该层算出）。", pointwise_grouped),
    F("003-2.1_gdc-vs-gap", "全局深度卷积 (GDC) 与全局平均池化 (GAP)", "global depthwise conv vs global average "
      "pooling", "003 §2.1",
      "Global depthwise conv vs global average pooling on one 3×4×4 input, channel by channel: each channel's 4×4 "
      "map times the GDC's own learned 4×4 weights, summed (plus its bias) into one output value, beside the same "
      "map times pooling's 1/16 everywhere — both turn C×H×W into C×1×1, GDC with a weight per position and "
      "channel (seeded, untrained layer; every output its forward pass).",
      "全局深度卷积与全局平均池化，同一个 3×4×4 输入，逐通道：每个通道的 4×4 特征图乘以 GDC 自己学到的 4×4 权重，求和（加上"
      "偏置）得到一个输出值；旁边是同一张图乘以池化处处相同的 1/16——两者都把 C×H×W 变为 C×1×1，GDC 对每个位置、每个通道"
      "各有一个权重（固定种子的未训练层；每个输出都是该层的前向计算结果）。", more.gdc_vs_gap),
    F("003-2.1_mixconv", "MixConv（多尺寸卷积核）", "MixConv", "003 §2.1",
      "MixConv: channel groups with 3×3, 5×5 and 7×7 kernels side by side.",
      "MixConv：把通道分组，各组使用 3×3、5×5、7×7 不同尺寸的卷积核。", mixconv),
    F("003-2.2_sampling-matrix-deformable", "可变形卷积的采样矩阵", "sampling matrix of deformable convolution",
      "003 §2.2, (a) §1.3",
      "The sampling matrix of a 3×3 conv (a) and deformable sampling: (b) learned offsets, (c) offsets that scale the "
      "grid, (d) offsets that also rotate it — the layer's real fractional reads, no point hiding another.",
      "3×3 卷积的采样矩阵 (a) 与可变形采样：(b) 学到的偏移量，(c) 放大网格的偏移，(d) 同时旋转网格的偏移——该层真实的分数"
      "位置采样，采样点互不遮挡。", sampling_matrix),
    F("003-2.2_offset-field", "偏移场（2N 个通道）", "the offset field (2N channels)", "003 §2.2",
      "Where the offsets come from: an extra 3×3 conv on the input feature map outputs an offset field as large as "
      "the map with 2N channels (N = 9 sampling points, a Δy and a Δx each); (b) draws each pair of channels as "
      "arrows, (c) the 9 sampling points they move at one position.",
      "偏移量从哪里来：在输入特征图上再加一个 3×3 卷积层，输出与特征图同样大小、通道数为 2N 的偏移场（N = 9 个采样点，各有 "
      "Δy 与 Δx）；(b) 把每对通道画成箭头，(c) 某一位置上它们移动后的 9 个采样点。", more.offset_field),
    F("003-2.2_dcnv2-modulation", "可变形卷积 v2（采样点权重 Δm）", "DCN v2: a weight per sampling point", "003 §2.2",
      "DCN v2: the same offsets as v1 plus a mask per sampling point, so unhelpful points can be switched off; each "
      "point is drawn with its weight (bilinear × mask) ÷ the strongest point's as opacity.",
      "DCN v2：与 v1 相同的偏移量，再给每个采样点一个权重 Δm，无用的采样点可以学成 0；每个采样点的不透明度为它的权重"
      "（双线性 × Δm）÷ 最强采样点的权重。", dcnv2),
    F("003-2.3_hetconv", "HetConv 异构卷积", "HetConv, heterogeneous convolution", "003 §2.3",
      "HetConv (p = 2): each filter has k×k kernels on 1/p of the channels and 1×1 on the rest, shifted by one "
      "channel per filter.",
      "HetConv（p = 2）：每个过滤器在 1/p 的通道上用 k×k 核，其余通道用 1×1 核，每个过滤器错开一个通道。", hetconv),
    F("003-2.3_dynamic-attention", "动态卷积", "dynamic convolution", "003 §2.3, 001 §13",
      "Static vs dynamic conv on three photographs (sky, roof, flower): the static conv applies one kernel to all "
      "three; the dynamic conv's attention π(x) weighs its K = 4 candidate kernels per photograph, so each gets its "
      "own aggregated kernel Σ πₖ(x)·Wₖ. Only the attention's two small FC layers were trained, for 40 steps, so "
      "that the photographs route to different kernels; untrained, π moved by at most 0.03 between the three.",
      "静态卷积与动态卷积作用于三张照片（天空、屋顶、花）：静态卷积对三张照片用同一个卷积核；动态卷积的注意力 π(x) 对每张"
      "照片给 K = 4 个候选卷积核加权，所以每张照片得到自己的聚合卷积核 Σ πₖ(x)·Wₖ。只有注意力分支的两个小全连接层训练了 "
      "40 步，让这三张照片选择不同的卷积核；未训练时，π 在三张照片之间最多只变化 0.03。", more.dynamic_samples),
    F("beyond_involution-kernels", "内卷（Involution）", "involution", BEYOND,
      "Not in the articles (involution, CVPR 2021): one layer, a different 3×3 kernel at every pixel, generated from "
      "the pixel's own RGB (seeded, untrained, one group). The kernels at the three pixels that differ most, on one "
      "scale; each minus the average kernel on its own scale (most of a kernel is the part all pixels share); and a "
      "map over the photograph of how far each pixel's kernel is from the average — it follows the picture.",
      "文章中没有（involution，CVPR 2021）：同一层在每个像素处由该像素自己的 RGB 生成一个不同的 3×3 卷积核（固定种子的未训练"
      "层，一组）。图中是差异最大的三个像素处的卷积核（同一色标）；每个减去平均卷积核后的部分（各自的色标：卷积核的大部分是"
      "所有像素共有的部分）；以及照片上每个像素的卷积核离平均卷积核有多远的分布图——它随图像内容变化。", more.involution_kernels),
]
del F

from .article_arithmetic import joined  # noqa: E402  (it imports ArticleFigure from above)

FIGURES = joined(FIGURES)  # the arithmetic around one layer (padding/stride, scatter, MobileNet), by section


def figure_names() -> list[str]:
    return [f.name for f in FIGURES]


def captions_markdown(lang: str = "both", fmt: str = "png") -> str:
    """Every figure's title and caption, those from the articles first, then those beyond them."""
    def entry(f: ArticleFigure) -> str:
        file = f"{f.name}{f.suffix or '.' + fmt}"
        return f"- **{f.title(lang)}** ({file})  \n  " + f.caption_text(lang).replace("\n", "  \n  ")

    inside = [entry(f) for f in FIGURES if not f.beyond]
    beyond = [entry(f) for f in FIGURES if f.beyond]
    head = {"zh": ("文章中的插图，由 convzoo 绘制", "超出文章范围"),
            "en": ("Figures of the articles, drawn by convzoo", "Beyond the articles"),
            "both": ("文章中的插图，由 convzoo 绘制 / Figures of the articles, drawn by convzoo",
                     "超出文章范围 / Beyond the articles")}[check_lang(lang)]
    return f"# {head[0]}\n\n" + "\n".join(inside) + f"\n\n## {head[1]}\n\n" + "\n".join(beyond) + "\n"


def write_figures(directory: str | Path, fmt: str = "png", only: list[str] | None = None,
                  progress: Callable[[str], None] | None = None, lang: str = "both") -> list[Path]:
    """Write every article figure (or those named in ``only``) as DIR/<name>.<fmt> (animations DIR/<name>.gif) with
    DIR/<name>.txt (title and caption in ``lang``: zh, en or both), and DIR/captions.md listing them all."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"format={fmt!r} must be 'png' or 'svg'")
    check_lang(lang)
    chosen = FIGURES if only is None else [f for f in FIGURES if f.name in only]
    unknown = sorted(set(only or []) - {f.name for f in FIGURES})
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(figure_names())}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fig in chosen:
        if progress:
            progress(fig.name)
        written.append(fig.write(out, fmt, lang))
    (out / "captions.md").write_text(captions_markdown(lang, fmt), encoding="utf-8")
    return written
