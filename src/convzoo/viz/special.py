"""The named still pictures of ``convzoo viz NAME`` (kept names from the first version), each one of the article
figures drawn from real layers (``article_figures``):

- ``overlap``: transposed-conv overlap in 2-D, kernel k (default 3) at stride s (default 2), and beside it the
  kernel divisible by s when k is not;
- ``checkerboard``: a photograph through the same transposed convs and resize-conv ×s, same uniform kernel;
- ``receptive_field``: stacked dilated convs, l = 1, 2, 4 → 3, 7, 15;
- ``deformable_sampling``: the sampling matrix (a)–(d): regular, learned offsets, scale, rotation;
- ``sobel``: Sobel = (3×1)·(1×3) from a spatially separable layer.

``overlap`` and ``checkerboard`` take ``kernel`` and ``stride``; every other option is refused, by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

from .article_figures import FIGURES, checkerboard_image, overlap_2d
from .draw import SMALL, TITLE, Block, column, label, render

_ALIASES = {
    "overlap": "001-6_overlap-2d",
    "checkerboard": "001-6_checkerboard-image",
    "receptive_field": "001-7_dilated-receptive-field",
    "deformable_sampling": "003-2.2_sampling-matrix-deformable",
    "sobel": "001-8.1_sobel-separable",
}
_BY_NAME = {f.name: f for f in FIGURES}
ARTICLE_K, ARTICLE_S = 3, 2  # the pair the article draws (001 §6)
MAX_KERNEL, MAX_STRIDE = 11, 6  # larger ones give pictures past the size budget


def _check(name: str, value: int, top: int) -> int:
    if not 1 <= value <= top:
        raise ValueError(f"--{name} {value} must be an integer from 1 to {top}")
    return value


def _geometric(alias: str, make: Callable[[int, int], Block], title: str) -> Callable[..., Figure]:
    """A picture of a transposed conv's geometry: the article's figure (with its caption) at k=3, s=2, else the
    same drawing for the asked kernel and stride under a title that names them."""
    def figure(kernel: int | None = None, stride: int | None = None) -> Figure:
        k = _check("kernel", ARTICLE_K if kernel is None else kernel, MAX_KERNEL)
        s = _check("stride", ARTICLE_S if stride is None else stride, MAX_STRIDE)
        if (k, s) == (ARTICLE_K, ARTICLE_S):
            return _BY_NAME[_ALIASES[alias]].figure()
        body = make(k, s)
        even = "even (k divisible by s)" if k % s == 0 else "uneven (k not divisible by s)"
        head = column([label(f"{title}, kernel {k}, stride {s}: {even}", TITLE, "bold"),
                       label("computed from convzoo's TransposedConv2d (article 001 §6)", SMALL)], gap=0.25)
        return render(column([head, body], gap=0.6))

    return figure


def _article(alias: str) -> Callable[[], Figure]:
    return lambda: _BY_NAME[_ALIASES[alias]].figure()


SPECIAL: dict[str, Callable[..., Figure]] = {
    "overlap": _geometric("overlap", overlap_2d, "transposed-conv overlap in 2-D"),
    "checkerboard": _geometric("checkerboard", checkerboard_image, "checkerboard artifacts"),
    **{alias: _article(alias) for alias in ("receptive_field", "deformable_sampling", "sobel")},
}


def special_options(name: str) -> tuple[str, ...]:
    """The options (CLI names without --) that special picture ``name`` reads."""
    return tuple(inspect.signature(SPECIAL[name]).parameters)


def special_figure(name: str, **options: Any) -> Figure:
    """The special picture ``name`` (one of ``SPECIAL``: overlap, checkerboard, receptive_field, …) as a matplotlib
    Figure, drawn with ``options`` (``kernel``, ``stride`` for overlap and checkerboard); ``ValueError`` naming the
    known ones for any other name, and naming an option the picture does not read."""
    if name not in SPECIAL:
        raise ValueError(f"unknown special picture {name!r}; known: {', '.join(SPECIAL)}")
    given = {k: v for k, v in options.items() if v is not None}
    reads = special_options(name)
    for option in given:
        if option not in reads:
            uses = f"it reads only {', '.join('--' + r for r in reads)}" if reads else "it takes no options"
            raise ValueError(f"--{option.replace('_', '-')} is not used by the special picture {name!r}: {uses}")
    return SPECIAL[name](**given)
