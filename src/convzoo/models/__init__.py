"""Architectures built from the families: MobileNet v1 and ShuffleNet v1 (full-size and 32×32 variants), RepVGG-A0,
FasterNet-T0 and GhostNet 1.0× (the papers' cost tables), and a small 1-D CNN for sequences."""

from .cnn1d import ConvNet1d, cnn1d_small
from .mobilenet import MobileNetV1, mobilenet_v1, mobilenet_v1_small
from .fasternet import FasterNet, FasterNetBlock, fasternet_t0
from .ghostnet import GhostBottleneck, GhostNet, SqueezeExcite, ghostnet, ghostnet_1_0
from .repvgg import RepVGG, repvgg_a0
from .shufflenet import ShuffleNetV1, ShuffleUnit, shufflenet_v1, shufflenet_v1_small

MODELS = {
    "cnn1d_small": cnn1d_small,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v1_small": mobilenet_v1_small,
    "shufflenet_v1": shufflenet_v1,
    "shufflenet_v1_small": shufflenet_v1_small,
    "repvgg_a0": repvgg_a0,
    "fasternet_t0": fasternet_t0,
    "ghostnet": ghostnet,
    "ghostnet_1_0": ghostnet_1_0,
}  # the model builders: what `convzoo cost NAME` and convert's sources accept, listed in their help and errors

__all__ = ["MODELS", "ConvNet1d", "FasterNet", "FasterNetBlock", "GhostBottleneck", "GhostNet", "MobileNetV1", "RepVGG",
           "ShuffleNetV1", "ShuffleUnit", "SqueezeExcite", "cnn1d_small", "fasternet_t0", "ghostnet", "ghostnet_1_0",
           "mobilenet_v1", "mobilenet_v1_small", "repvgg_a0", "shufflenet_v1", "shufflenet_v1_small"]


CONVERTED_FORMAT = "convzoo.converted/1"


def torchvision_model(name: str, **kwargs):
    """torchvision's model ``name`` with random weights, never downloaded: ``weights=None``, and
    ``weights_backbone=None`` for the builders that take it (segmentation and detection models otherwise fetch a
    pretrained backbone). ``kwargs`` go to the builder (num_classes, width_per_group, ...)."""
    import inspect

    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        raise ValueError(f"unknown torchvision model {name!r}") from None
    for key in ("weights", "weights_backbone"):
        if key in kwargs:
            raise ValueError(f"{key}={kwargs[key]!r}: convzoo builds torchvision models with random weights and "
                             f"never downloads them; drop {key}")
    offline: dict = {"weights": None}
    if "weights_backbone" in inspect.signature(builder).parameters:
        offline["weights_backbone"] = None
    return builder(**offline, **kwargs)


def source_model(source: str):
    """The model a conversion starts from: a convzoo model name (``MODELS``), ``torchvision:NAME`` (untrained) or
    ``module.path:callable``."""
    import importlib

    if source in MODELS:
        return MODELS[source]()
    if source.startswith("torchvision:"):
        return torchvision_model(source.split(":", 1)[1])
    if ":" in source:
        path, _, attr = source.partition(":")
        try:
            return getattr(importlib.import_module(path), attr)()
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot import {source!r}: {error}") from None
    raise ValueError(f"source={source!r} must be a convzoo model ({', '.join(MODELS)}), torchvision:NAME or "
                     f"module.path:callable")


def _type_name(module) -> str:
    return f"{type(module).__module__}.{type(module).__qualname__}"


def _conv_types(model) -> dict[str, str]:
    """{name: qualified class name} of the model's 2-D convs and convzoo layers (what ``convert`` may replace)."""
    from torch import nn

    from ..layers.base import ConvzooLayer

    return {name: _type_name(m) for name, m in model.named_modules(remove_duplicate=False)
            if isinstance(m, (nn.Conv2d, ConvzooLayer))}


def save_converted(path: str, model, source: str, to: str, kwargs: dict | None = None,
                   input_shape: tuple[int, ...] | None = None) -> None:
    """Write what ``torch.load(path)`` reads with its defaults (``weights_only=True``): the converted model's
    state dict and the recipe that rebuilds its structure (``load_converted``): the source, the family, its
    options and the class of each conv-like module, so that the same layers are converted again whatever
    ``convert``'s rules have become."""
    import torch

    recipe = {"source": source, "to": to, "kwargs": dict(kwargs or {}),
              "input_shape": None if input_shape is None else list(input_shape), "modules": _conv_types(model)}
    torch.save({"format": CONVERTED_FORMAT, "recipe": recipe, "state_dict": model.state_dict()}, path)


def _matching_layers(source, to: str, kwargs: dict, state_dict: dict, today: set[str]) -> set[str]:
    """For a recipe without ``modules`` (written before convzoo recorded them) that today's rules do not rebuild:
    the convs whose saved tensors are the family layer's (names and shapes) and not the conv's own, or are both
    and today's rules convert them (``today``: a true convolution keeps the conv's shapes, not its function)."""
    from ..conversion.convert import convert

    def shapes(module, prefix: str) -> dict[str, tuple[int, ...]]:
        return {prefix + key: tuple(value.shape) for key, value in module.state_dict().items()}

    def saved(prefix: str) -> dict[str, tuple[int, ...]]:
        return {key: tuple(value.shape) for key, value in state_dict.items() if key.startswith(prefix)}

    forced, report = convert(source, to, force=True, **kwargs)
    chosen = set()
    for row in report.converted:
        prefix = row.name + "."
        mine, theirs = shapes(forced.get_submodule(row.name), prefix), saved(prefix)
        if mine == theirs and (theirs != shapes(source.get_submodule(row.name), prefix) or row.name in today):
            chosen.add(row.name)
    modules = {id(source.get_submodule(name)) for name in chosen}  # a conv used twice: every use, so the tie holds
    return {name for name, m in source.named_modules(remove_duplicate=False) if id(m) in modules}


def load_converted(path: str):
    """Rebuild a model saved by ``convzoo convert -o PATH``: the source model with the same layers converted
    (the recipe's record of them; for older files, what today's rules convert or, when the saved tensors do not
    fit that, the layers whose saved tensors are the family's), then the saved weights loaded into it (strictly:
    every tensor must match)."""
    import torch

    from ..conversion.convert import convert

    saved = torch.load(path)
    if not isinstance(saved, dict) or saved.get("format") != CONVERTED_FORMAT:
        raise ValueError(f"{path!r} is not a file written by `convzoo convert -o` (format {CONVERTED_FORMAT})")
    recipe = saved["recipe"]
    shape = None if recipe["input_shape"] is None else tuple(recipe["input_shape"])
    types = recipe.get("modules")
    if types is None:
        model, report = convert(source_model(recipe["source"]), recipe["to"], input_shape=shape, **recipe["kwargs"])
        try:
            model.load_state_dict(saved["state_dict"])
            return model.eval()
        except RuntimeError:  # written under other rules: find its layers from the saved tensors
            today = {row.name for row in report.converted}
    kwargs = {k: v for k, v in recipe["kwargs"].items() if k != "force"}
    source = source_model(recipe["source"])
    if types is None:
        chosen = _matching_layers(source, recipe["to"], kwargs, saved["state_dict"], today)
    else:
        chosen = {name for name, m in source.named_modules(remove_duplicate=False) if name in types
                  and types[name] != _type_name(m)}
    # force: exactly these layers, whether or not today's rules would convert them
    model, _ = convert(source, recipe["to"], where=lambda name, _: name in chosen, input_shape=shape, force=True,
                       **kwargs) if chosen else (source, None)
    model.load_state_dict(saved["state_dict"])
    return model.eval()


__all__ += ["load_converted", "save_converted", "source_model", "torchvision_model"]
