"""Pictures of every family computed from the real operator: connectivity, kernel taps and the conv matrix by
autograd; conv_arithmetic-style drawings (PNG/SVG) and animations (GIF) of any layer, stage by stage for
composites; every figure the seed articles describe (``article_figures``); an HTML report and a local web
explorer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..layers.form_choice import untimed
from .animation import animate
from .connectivity import Connectivity, connectivity
from .figures import connectivity_figure, save_figure
from .matrix import conv_matrix, jacobian
from .picture import layer_block, layer_figure
from .spec import LayerSpec
from .special import SPECIAL, special_figure
from .taps import TapMap, tap_map, taps

__all__ = ["Connectivity", "LayerSpec", "SPECIAL", "TapMap", "animate", "connectivity", "connectivity_figure",
           "conv_matrix", "family_titles", "jacobian", "layer_block", "layer_figure", "picture_size", "render",
           "special_figure", "tap_map", "taps"]


def family_titles(spec: LayerSpec, module, input_shape) -> tuple[str, str]:
    """Title (family, what it does) and subtitle (the layer as built, the input, the article section)."""
    from ..registry import family
    from .spec import describe

    fam = family(spec.family)
    article = getattr(fam, "article", getattr(fam, "seed", ""))
    shape = "×".join(map(str, input_shape))
    extra = module.extra_repr()
    layer = f"{type(module).__name__}({extra if extra and chr(10) not in extra else describe(module)})"
    return (f"{fam.title}: {fam.summary}", f"{layer} on input {shape}" + (f"   [article {article}]" if article
                                                                           else ""))


def picture_size(spec: LayerSpec) -> int:
    """The input size a picture is drawn at when none is asked: the dim's default, divided by the layer's
    upsampling factor for a layer whose output is larger than its input (so the output, not the input, is drawn at
    the default size and the picture keeps to the size budget)."""
    from .spec import DEFAULT_SIZE

    size = DEFAULT_SIZE[spec.dim]
    probe = LayerSpec(spec.family, spec.in_channels, spec.out_channels, spec.kernel, spec.dim, size,
                      dict(spec.options))
    import torch

    with torch.no_grad():
        out = probe.build()(torch.zeros(1, *probe.input_shape))
    factor = max(1, min(o // s for o, s in zip(out.shape[2:], probe.input_shape[1:])))
    return max(2, -(-size // factor)) if factor > 1 else size


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def render(target: str, path: str | Path, spec: LayerSpec | None = None, *, numbers: bool = False,
           input_values: str | None = None, kernel_values: str | None = None, title: bool = True,
           planes: int | None = None, special: dict[str, Any] | None = None) -> Path:
    """Draw a family (``spec``: its parameters) or a special picture (``target`` in ``SPECIAL``, drawn with the
    options ``special``: kernel, stride, …; one it does not read is refused) to ``path``:
    .png / .svg → figure, .gif → sliding-window animation (families only; a composite stage by stage).
    ``input_values`` / ``kernel_values`` ('3,3,2;0,0,1;…') put those numbers in the cells (numbers mode);
    ``title=False`` drops the title lines; ``planes``: channel planes drawn in full (default 1, within
    1600 × 1400 px; more on request). A spec without a size is drawn at ``picture_size``."""
    from .draw import DPI
    from .numbers import load_kernel, parse_values, whole_numbers

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg", ".gif"):
        raise ValueError(f"output {str(path)!r} must end in .png, .svg or .gif")
    if target in SPECIAL:
        if suffix == ".gif":
            raise ValueError(f"special picture {target!r} is a still figure: use .png or .svg")
        return save_figure(special_figure(target, **(special or {})), path)
    if planes is not None and not 1 <= planes <= 16:
        raise ValueError(f"planes={planes} must be between 1 and 16")
    spec = spec or LayerSpec(target)
    x = None
    if input_values is not None:
        values = parse_values(input_values, "input_values")
        if values.dim() != spec.dim:
            raise ValueError(f"input_values has {values.dim()} dims ({tuple(values.shape)}) but dim={spec.dim}")
        spec.size = max(values.shape)
    sized = spec.size is not None
    spec.validate()
    if not sized:
        spec.size = picture_size(spec)
    module = spec.build()
    input_shape = spec.input_shape
    if input_values is not None:
        input_shape = (spec.in_channels, *values.shape)
        x = values.expand(input_shape)
    if kernel_values is not None:
        load_kernel(module, parse_values(kernel_values, "kernel_values"))
    numbers = numbers or input_values is not None or kernel_values is not None
    if numbers:  # whole numbers where the user typed none, so every sum can be checked by hand
        module, x = whole_numbers(module, input_shape, x)
    heads = family_titles(spec, module, input_shape) if title else (None, None)
    if suffix == ".gif":
        try:
            return animate(module, input_shape, path, heads[0], numbers=numbers, x=x, subtitle=heads[1])
        except (ValueError, TypeError, RuntimeError) as error:  # said with the family, for the CLI's one line
            raise ValueError(f"cannot animate {spec.family!r}: {str(error).splitlines()[0]}") from error
    figure = layer_figure(module, input_shape, heads[0], heads[1], numbers=numbers, x=x, planes=planes)
    return save_figure(figure, path, dpi=DPI)
