"""Architectures built from the families: MobileNet v1, ShuffleNet v1, RepVGG and FasterNet (full-size and 32×32 variants)."""

from .mobilenet import MobileNetV1, mobilenet_v1, mobilenet_v1_small
from .fasternet import FasterNet, FasterNetBlock, fasternet_t0
from .repvgg import RepVGG, repvgg_a0
from .shufflenet import ShuffleNetV1, ShuffleUnit, shufflenet_v1, shufflenet_v1_small

MODELS = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v1_small": mobilenet_v1_small,
    "shufflenet_v1": shufflenet_v1,
    "shufflenet_v1_small": shufflenet_v1_small,
    "repvgg_a0": repvgg_a0,
    "fasternet_t0": fasternet_t0,
}

__all__ = ["MODELS", "fasternet_t0", "FasterNet", "FasterNetBlock", "MobileNetV1", "RepVGG", "ShuffleNetV1", "ShuffleUnit", "mobilenet_v1", "mobilenet_v1_small", "repvgg_a0",
           "shufflenet_v1", "shufflenet_v1_small"]
