"""Pictures of every family computed from the real operator: connectivity, kernel taps and the conv matrix by
autograd, figures (PNG/SVG),
animations (GIF), the special pictures of the seed articles, an HTML report and a local web explorer."""

from __future__ import annotations

from pathlib import Path

from .animation import animate
from .connectivity import Connectivity, connectivity
from .figures import connectivity_figure, save_figure
from .matrix import conv_matrix, jacobian
from .spec import LayerSpec
from .special import SPECIAL, special_figure
from .taps import TapMap, tap_map, taps

__all__ = ["Connectivity", "LayerSpec", "SPECIAL", "TapMap", "animate", "connectivity", "connectivity_figure",
           "conv_matrix", "jacobian", "render", "special_figure", "tap_map", "taps"]


def render(target: str, path: str | Path, spec: LayerSpec | None = None) -> Path:
    """Draw a family (``spec``: its parameters) or a special picture (``target`` in ``SPECIAL``) to ``path``:
    .png / .svg → figure, .gif → sliding-window animation (families only)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg", ".gif"):
        raise ValueError(f"output {str(path)!r} must end in .png, .svg or .gif")
    if target in SPECIAL:
        if suffix == ".gif":
            raise ValueError(f"special picture {target!r} is a still figure: use .png or .svg")
        return save_figure(special_figure(target), path)
    spec = (spec or LayerSpec(target)).validate()
    module = spec.build()
    if suffix == ".gif":
        return animate(module, spec.input_shape, path, spec.label())
    return save_figure(connectivity_figure(module, spec.input_shape, spec.label()), path)
