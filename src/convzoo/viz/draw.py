"""Drawing primitives in cell units: every grid of a picture shares ONE cell size (``CELL_IN`` inches), so an
upsampling layer's output is drawn larger than its input, and type sizes are fixed in points (>= 9 pt at the
size the figure is saved at: the figure is sized to its content, never squeezed).

A picture is a tree of ``Block``s (width, height in cells, and a ``paint`` that draws at a top-left corner),
laid out by ``row`` and ``column`` and rendered by ``render``. Text blocks measure their own width, so labels
never overlap what is next to them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable, and the numbers can be checked
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

CELL_IN = 0.3  # inches per cell: a 10 pt number fits in a cell
DPI = 100
SMALL, FONT, TITLE = 9, 10, 11  # points
# Text is measured at the dpi pictures are saved at: Agg hints glyph advances to whole pixels, so a width measured at
# 72 dpi comes out up to 5 % short of the rendered one and labels would run into their neighbours.
_MEASURE = RendererAgg(10, 10, DPI)

INPUT = "#cfe0f0"
OUTPUT = "#d6ebd3"
PICKED = "#1b7a3a"
PADDING = "#ffffff"
ZERO = "#f4f4f4"
EDGE = "#5b6b7a"
MUTED = "#555555"
OTHER = "#b0b0b0"  # read, but not through a kernel tap that can be coloured
UNREAD = "#e2e2e2"  # an input plane the drawn output does not read (another group's)

Paint = Callable[[Axes, float, float], None]


@dataclass
class Block:
    """A rectangle of ``w`` × ``h`` cells whose ``paint(ax, x, y)`` draws it with its top-left corner at (x, y)."""

    w: float
    h: float
    paint: Paint


def pt_to_cells(points: float) -> float:
    return points / 72 / CELL_IN


@functools.lru_cache(maxsize=4096)
def _line_width_pt(line: str, size: float, weight: str) -> float:
    width, _, _ = _MEASURE.get_text_width_height_descent(line, FontProperties(size=size, weight=weight), ismath=False)
    return float(width) * 72 / DPI


def text_size(text: str, size: float = FONT, weight: str = "normal") -> tuple[float, float]:
    """Width and height in cells of (possibly multi-line) ``text`` at ``size`` points, measured by the renderer."""
    lines = text.split("\n")
    return (max(_line_width_pt(line, size, weight) for line in lines) / 72 / CELL_IN,
            len(lines) * 1.3 * pt_to_cells(size))


def label(text: str, size: float = FONT, weight: str = "normal", color: str = "black", ha: str = "left") -> Block:
    w, h = text_size(text, size, weight)

    def paint(ax: Axes, x: float, y: float) -> None:
        ax.text(x + (w / 2 if ha == "center" else 0), y, text, fontsize=size, fontweight=weight, color=color,
                ha=ha, va="top", linespacing=1.15)

    return Block(w, h, paint)


def spacer(w: float = 0.0, h: float = 0.0) -> Block:
    return Block(w, h, lambda ax, x, y: None)


def row(blocks: Sequence[Block], gap: float = 1.0, align: str = "top") -> Block:
    """Blocks side by side; ``align`` 'top' or 'center' (vertical)."""
    blocks = [b for b in blocks if b is not None]
    w = sum(b.w for b in blocks) + gap * max(len(blocks) - 1, 0)
    h = max((b.h for b in blocks), default=0.0)

    def paint(ax: Axes, x: float, y: float) -> None:
        for b in blocks:
            b.paint(ax, x, y + ((h - b.h) / 2 if align == "center" else 0))
            x += b.w + gap

    return Block(w, h, paint)


def column(blocks: Sequence[Block], gap: float = 0.4, align: str = "left") -> Block:
    """Blocks one under the other; ``align`` 'left' or 'center' (horizontal)."""
    blocks = [b for b in blocks if b is not None]
    w = max((b.w for b in blocks), default=0.0)
    h = sum(b.h for b in blocks) + gap * max(len(blocks) - 1, 0)

    def paint(ax: Axes, x: float, y: float) -> None:
        for b in blocks:
            b.paint(ax, x + ((w - b.w) / 2 if align == "center" else 0), y)
            y += b.h + gap

    return Block(w, h, paint)


def captioned(title: str, body: Block, size: float = FONT, weight: str = "bold") -> Block:
    """``body`` with a caption line above it (the caption's width counts, so neighbours never overlap it)."""
    return column([label(title, size, weight), body], gap=0.25)


def text_colour(fill: str | tuple, alpha: float | None = None) -> str:
    """Black or white, whichever reads better on ``fill`` laid over white."""
    r, g, b, a = to_rgba(fill)
    a = a if alpha is None else alpha * a
    lum = a * (0.299 * r + 0.587 * g + 0.114 * b) + (1 - a)
    return "black" if lum > 0.55 else "white"


@dataclass
class Cell:
    fill: str | tuple | None  # None: no cell here (a gap)
    text: str = ""
    dashed: bool = False
    outline: str | None = None  # a thick outline (the picked output, a window)
    alpha: float = 1.0


CELL_TEXT_PT = 0.9 * CELL_IN * 72  # the widest text a cell holds without touching its edges


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _short(value: float, decimals: int) -> str:
    """``value`` at ``decimals`` decimals, trailing zeros and a leading zero dropped: -0.29 → '-.29', 1.0 → '1'."""
    text = f"{value:.{decimals}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text.replace("0.", ".", 1) if text.lstrip("-").startswith("0.") else text


def _first_digit(value: float) -> int:
    """Decimals down to the first significant digit of |value| < 1 (0.004 → 3, 0.25 → 1); 0 for whole-sized ones."""
    return max(0, -math.floor(math.log10(abs(value)))) if 0 < abs(value) < 1 else 0


def _fit_one(text: str, pt: float) -> str:
    """``text`` as it fits a cell at ``pt``: a number loses its leading zero, then decimals — rounded once, from the
    value ``fmt`` printed it from (``Number``) — never its sign and never its first significant digit (-0.004
    stays '-.004', 0.0008 '.0008': ``cells`` draws them a little smaller; fewer decimals showed '-.01' and '.001',
    or '-0')."""
    value = _number(text)
    if value is None or _line_width_pt(text, pt, "normal") <= CELL_TEXT_PT:
        return text
    exact = text.value if isinstance(text, Number) else value
    if getattr(text, "keep_digits", False):
        return text.replace("0.", ".", 1) if text.lstrip("-").startswith("0.") else text
    candidate = text
    for decimals in range(_decimals(text), _first_digit(value) - 1, -1):
        shorter = _short(exact, decimals)
        if value != 0 and float(shorter) == 0:  # a non-zero value shown as 0 (or '-0') would be false
            break
        candidate = shorter
        if _line_width_pt(candidate, pt, "normal") <= CELL_TEXT_PT:
            break
    return candidate


def fit_numbers(texts: list[str], size: float) -> tuple[list[str], float]:
    """The texts of one grid's cells and a font size at which each fits its cell: the size first comes down to
    SMALL (9 pt), then each number that is still too wide loses its leading zero, then decimals (``_fit_one``);
    only a number too wide without decimals makes the font smaller. Texts that are not numbers are kept."""
    def widest(candidate: list[str], pt: float) -> float:
        return max((_line_width_pt(t, pt, "normal") for t in candidate if t), default=0.0)

    if widest(texts, size) <= CELL_TEXT_PT:
        return texts, size
    pt = min(size, SMALL)
    fitted = [_fit_one(t, pt) for t in texts]
    if any(t.lstrip("-").startswith(".") for t in fitted):  # one style in a grid: no '0.4' beside '.76'
        fitted = [t.replace("0.", ".", 1) if t.lstrip("-").startswith("0.") else t for t in fitted]
    # a whole number too wide makes the grid's type smaller; a small decimal kept to its one significant digit is
    # drawn smaller on its own (``cells``)
    wide = widest([t for t in fitted if _number(t) is not None and "." not in t], pt)
    return fitted, pt if wide <= CELL_TEXT_PT else pt * CELL_TEXT_PT / wide


def cells(grid: Sequence[Sequence[Cell]], size: float = FONT) -> Block:
    """A grid of cells, row 0 at the top; each cell 1 × 1. Numbers are fitted to the cells (``fit_numbers``)."""
    h = len(grid)
    w = max((len(r) for r in grid), default=0)
    flat = [cell.text for line in grid for cell in line]
    fitted, size = fit_numbers(flat, size) if any(flat) else (flat, size)
    it = iter(fitted)
    grid = [[Cell(cell.fill, next(it), cell.dashed, cell.outline, cell.alpha) for cell in line] for line in grid]
    # a number still wider than its cell (a small decimal's last digit) alone at a smaller size
    sizes = [[size if _number(c.text) is None or _line_width_pt(c.text, size, "normal") <= CELL_TEXT_PT
              else size * CELL_TEXT_PT / _line_width_pt(c.text, size, "normal") for c in line] for line in grid]

    def paint(ax: Axes, x: float, y: float) -> None:
        solid, dashed, outlines = [], [], []
        for r, line in enumerate(grid):
            for c, cell in enumerate(line):
                if cell.fill is None:
                    continue
                rect = Rectangle((x + c, y + r), 1, 1)
                rgba = to_rgba(cell.fill)
                (dashed if cell.dashed else solid).append((rect, rgba[:3] + (rgba[3] * cell.alpha,)))
                if cell.outline:
                    outlines.append(Rectangle((x + c + 0.06, y + r + 0.06), 0.88, 0.88, fill=False,
                                              edgecolor=cell.outline, linewidth=2.2))
                if cell.text:
                    ax.text(x + c + 0.5, y + r + 0.52, cell.text, ha="center", va="center", fontsize=sizes[r][c],
                            color=text_colour(cell.fill, cell.alpha))
        for group, style in ((solid, "solid"), (dashed, (0, (2, 2)))):
            if group:
                ax.add_collection(PatchCollection([g[0] for g in group], facecolors=[g[1] for g in group],
                                                  edgecolors=EDGE, linewidths=0.8, linestyles=style))
        for o in outlines:
            ax.add_patch(o)

    return Block(float(w), float(h), paint)


def arrow(length: float = 2.0, text: str = "", vertical: bool = False, size: float = SMALL,
          room: tuple[float, float] = (0.0, 0.0)) -> Block:
    """A right (or down) arrow with an optional label above (or beside) it; ``room``: the (width, height) its label
    keeps at least (an animation's widest label), the label sitting just above the arrow."""
    tw, th = text_size(text, size) if text else (0.0, 0.0)
    lift = max(0.0, room[1] - th) if not vertical else 0.0  # blank above a shorter label: the arrow stays put
    tw, th = max(tw, room[0]), max(th, room[1])
    if vertical:
        w, h = max(tw + 1.0, 1.0), length

        def paint(ax: Axes, x: float, y: float) -> None:
            ax.add_patch(FancyArrowPatch((x + 0.5, y), (x + 0.5, y + length), arrowstyle="-|>", mutation_scale=14,
                                         color=MUTED, linewidth=1.4))
            if text:
                ax.text(x + 1.0, y + length / 2, text, fontsize=size, va="center", color=MUTED)

        return Block(w, h, paint)
    w, h = max(length, tw), th + 0.8

    def paint_h(ax: Axes, x: float, y: float) -> None:
        ax.add_patch(FancyArrowPatch((x, y + th + 0.4), (x + w, y + th + 0.4), arrowstyle="-|>", mutation_scale=14,
                                     color=MUTED, linewidth=1.4))
        if text:
            ax.text(x + w / 2, y + lift, text, fontsize=size, ha="center", va="top", color=MUTED)

    return Block(w, h, paint_h)


def swatch_legend(items: Sequence[tuple[str | tuple | list, str, bool]], size: float = SMALL,
                  max_width: float = 1e9) -> Block:
    """[colour square] text, … on one line (wrapped at ``max_width`` cells); each item (fill, text, dashed)."""
    parts: list[Block] = []
    for fill, text, dashed in items:
        fills = fill if isinstance(fill, list) else [fill]
        swatch = cells([[Cell(f, dashed=dashed) for f in fills]]) if fill != "white" else spacer()
        parts.append(row([swatch, label(text, size)], gap=0.25, align="center"))
    lines: list[list[Block]] = [[]]
    for part in parts:
        if lines[-1] and sum(p.w + 0.9 for p in lines[-1]) + part.w > max_width:
            lines.append([])
        lines[-1].append(part)
    return column([row(line, gap=0.9, align="center") for line in lines], gap=0.3)


def render(block: Block, margin: float = 0.5) -> Figure:
    """A matplotlib Figure exactly the size of ``block`` (plus ``margin`` cells), drawn in cell units."""
    w, h = block.w + 2 * margin, block.h + 2 * margin
    fig = plt.figure(figsize=(w * CELL_IN, h * CELL_IN), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-margin, block.w + margin)
    ax.set_ylim(block.h + margin, -margin)
    ax.set_axis_off()
    block.paint(ax, 0.0, 0.0)
    return fig


def tap_colours(n_taps: int) -> list[tuple[float, float, float, float]]:
    """One colour per kernel tap, in reading order (row-major): a blue → green → orange → red ramp, lightened so
    numbers stay readable; a mirrored kernel shows the ramp reversed."""
    ramp = plt.get_cmap("turbo")
    colours = []
    for t in range(n_taps):
        r, g, b, _ = ramp(0.08 + 0.84 * (t + 0.5) / n_taps)
        colours.append((0.75 * r + 0.25, 0.75 * g + 0.25, 0.75 * b + 0.25, 1.0))
    return colours


_N = TypeVar("_N", bound="Number")


class Number(str):
    """A number as ``fmt`` printed it, holding the ``value`` it was printed from: a cell too narrow for the text
    rounds that value once (``_fit_one``) — rounding the printed text again took 13.47 → '13.5' → '14'."""

    value: float
    keep_digits: bool  # never rounded to fit (average pooling's 1/64 = .016 as its caption says): drawn smaller

    def __new__(cls: type[_N], text: str, value: float, keep_digits: bool = False) -> _N:
        number = super().__new__(cls, text)
        number.value, number.keep_digits = float(value), keep_digits
        return number

    def __getnewargs__(self) -> tuple[str, float, bool]:  # type: ignore[override]  # copy / pickle keep the value
        return str(self), self.value, self.keep_digits


def fmt(value: float) -> str:
    """A cell's number, signed: integers without a decimal point, |v| ≥ 10 with one decimal, others with two —
    below 0.005 down to the first significant digit, so a small weight keeps its sign and its size ('-0.004',
    '-0.0004'; never '-0'); trailing zeros dropped. The text is a ``Number``: it keeps ``value`` for a cell that
    must shorten it."""
    v = float(value)
    if abs(v - round(v)) < 1e-6:
        return Number(str(int(round(v))) if abs(v) > 1e-9 else "0", v)
    decimals = 1 if abs(v) >= 10 else 2 if abs(v) >= 0.005 else max(3, -math.floor(math.log10(abs(v))))
    return Number(f"{v:.{decimals}f}".rstrip("0").rstrip("."), v)


def signed_colour(value: float, scale: float) -> tuple[float, float, float, float]:
    """Red positive, blue negative, white 0, saturated at ``scale``."""
    a = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    base = (0.84, 0.19, 0.15) if value > 0 else (0.13, 0.40, 0.67)
    return (*(1 - a * (1 - b) for b in base), 1.0)


def signed_cells(kernel: np.ndarray, scale: float) -> list[list[Cell]]:
    """A kernel as ``signed_colour`` cells: rows along its first axis (the rest flattened), a 1-D kernel as one row."""
    grid = kernel.reshape(kernel.shape[0], -1) if kernel.ndim >= 2 else kernel[None]
    return [[Cell(signed_colour(float(v), scale)) for v in line] for line in grid]


def as_image(grid: np.ndarray) -> list[list[Cell]]:
    """A float array (rows, cols) as plain input-coloured cells with the values printed."""
    return [[Cell(INPUT, fmt(v)) for v in line] for line in np.asarray(grid)]
