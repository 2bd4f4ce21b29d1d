"""The named still pictures of ``convzoo viz NAME`` (kept names from the first version), each now one of the
article figures drawn from real layers (``article_figures``):

- ``overlap``: transposed-conv overlap in 2-D, k=3 vs k=4 at stride 2;
- ``checkerboard``: a photograph through transposed k=3 / k=4 (stride 2) and resize-conv, same uniform kernel;
- ``receptive_field``: stacked dilated convs, l = 1, 2, 4 → 3, 7, 15;
- ``deformable_sampling``: the sampling matrix (a)–(d): regular, learned offsets, scale, rotation;
- ``sobel``: Sobel = (3×1)·(1×3) from a spatially separable layer.
"""

from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from .article_figures import FIGURES

_ALIASES = {
    "overlap": "001-6_overlap-2d",
    "checkerboard": "001-6_checkerboard-image",
    "receptive_field": "001-7_dilated-receptive-field",
    "deformable_sampling": "003-2.2_sampling-matrix-deformable",
    "sobel": "001-8.1_sobel-separable",
}
_BY_NAME = {f.name: f for f in FIGURES}

SPECIAL: dict[str, Callable[[], Figure]] = {alias: _BY_NAME[name].figure for alias, name in _ALIASES.items()}


def special_figure(name: str) -> Figure:
    """The special picture ``name`` (one of ``SPECIAL``: overlap, checkerboard, receptive_field, …) as a matplotlib
    Figure; ``ValueError`` naming the known ones for any other name."""
    try:
        return SPECIAL[name]()
    except KeyError:
        raise ValueError(f"unknown special picture {name!r}; known: {', '.join(SPECIAL)}") from None
