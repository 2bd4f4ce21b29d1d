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
    "ghostnet_1_0": ghostnet_1_0,
}

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


def save_converted(path: str, model, source: str, to: str, kwargs: dict | None = None,
                   input_shape: tuple[int, ...] | None = None) -> None:
    """Write what ``torch.load(path)`` reads with its defaults (``weights_only=True``): the converted model's
    state dict and the recipe that rebuilds its structure (``load_converted``)."""
    import torch

    recipe = {"source": source, "to": to, "kwargs": dict(kwargs or {}),
              "input_shape": None if input_shape is None else list(input_shape)}
    torch.save({"format": CONVERTED_FORMAT, "recipe": recipe, "state_dict": model.state_dict()}, path)


def load_converted(path: str):
    """Rebuild a model saved by ``convzoo convert -o PATH``: the source model converted again by the recipe,
    then the saved weights loaded into it (strictly: every tensor must match)."""
    import torch

    from ..conversion.convert import convert

    saved = torch.load(path)
    if not isinstance(saved, dict) or saved.get("format") != CONVERTED_FORMAT:
        raise ValueError(f"{path!r} is not a file written by `convzoo convert -o` (format {CONVERTED_FORMAT})")
    recipe = saved["recipe"]
    shape = None if recipe["input_shape"] is None else tuple(recipe["input_shape"])
    model, _ = convert(source_model(recipe["source"]), recipe["to"], input_shape=shape, **recipe["kwargs"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


__all__ += ["load_converted", "save_converted", "source_model", "torchvision_model"]
