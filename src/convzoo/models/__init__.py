"""Architectures built from the families: MobileNet v1 and ShuffleNet v1 (full-size and 32×32 variants)."""

from .mobilenet import MobileNetV1, mobilenet_v1, mobilenet_v1_small
from .shufflenet import ShuffleNetV1, ShuffleUnit, shufflenet_v1, shufflenet_v1_small

MODELS = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v1_small": mobilenet_v1_small,
    "shufflenet_v1": shufflenet_v1,
    "shufflenet_v1_small": shufflenet_v1_small,
}

__all__ = ["MODELS", "MobileNetV1", "ShuffleNetV1", "ShuffleUnit", "mobilenet_v1", "mobilenet_v1_small",
           "shufflenet_v1", "shufflenet_v1_small"]
