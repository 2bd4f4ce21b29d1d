"""Architectures built from the families: MobileNet v1 and ShuffleNet v1 (full-size and 32×32 variants), and a
small 1-D CNN for sequences."""

from .cnn1d import ConvNet1d, cnn1d_small
from .mobilenet import MobileNetV1, mobilenet_v1, mobilenet_v1_small
from .shufflenet import ShuffleNetV1, ShuffleUnit, shufflenet_v1, shufflenet_v1_small

MODELS = {
    "cnn1d_small": cnn1d_small,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v1_small": mobilenet_v1_small,
    "shufflenet_v1": shufflenet_v1,
    "shufflenet_v1_small": shufflenet_v1_small,
}

__all__ = ["MODELS", "ConvNet1d", "cnn1d_small", "MobileNetV1", "ShuffleNetV1", "ShuffleUnit", "mobilenet_v1", "mobilenet_v1_small",
           "shufflenet_v1", "shufflenet_v1_small"]
