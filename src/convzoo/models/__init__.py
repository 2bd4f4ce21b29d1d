"""Architectures built from the families: MobileNet v1 and ShuffleNet v1 (full-size and 32×32 variants), RepVGG-A0
and FasterNet-T0 (the papers' cost tables), and a small 1-D CNN for sequences."""

from .cnn1d import ConvNet1d, cnn1d_small
from .mobilenet import MobileNetV1, mobilenet_v1, mobilenet_v1_small
from .fasternet import FasterNet, FasterNetBlock, fasternet_t0
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
}

__all__ = ["MODELS", "ConvNet1d", "FasterNet", "FasterNetBlock", "MobileNetV1", "RepVGG", "ShuffleNetV1", "ShuffleUnit",
           "cnn1d_small", "fasternet_t0", "mobilenet_v1", "mobilenet_v1_small", "repvgg_a0", "shufflenet_v1",
           "shufflenet_v1_small"]
