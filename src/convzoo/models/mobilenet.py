"""MobileNet v1 (Howard et al. 2017, arXiv:1704.04861; seed article 002), built from any convzoo family.

Table 1 of the paper: a 3×3/s2 conv to 32 channels, 13 depthwise separable blocks (3×3 depthwise → BN →
ReLU → 1×1 pointwise → BN → ReLU), global average pooling, a fully connected classifier. ``conv=`` swaps
the 13 blocks for any registry family (``'standard'`` is the paper's "Conv MobileNet" baseline of Table 4),
``width_mult`` is the width multiplier α (every layer's channels × α), ``resolution`` the input size ρ·224.
Conv weights get He's scale (``init.he_scale_``): with torch's default scale an untrained model in eval mode
returned the same logits for every input.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..registry import build, families, family
from .arguments import block_keywords, positive_ints, positive_number
from .init import he_scale_

OWN_ARGUMENTS = ("width_mult", "resolution", "num_classes", "conv")

# (output channels, stride) of the 13 blocks after the 32-channel stem (Table 1).
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
# CIFAR-style: a stride-1 stem and the first stride-2 block at stride 1; the three stride-2 blocks left give a total
# stride of 8, so a 32×32 input ends at 4×4.
SMALL_INPUT_STRIDES = (1, 1, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, int(round(channels * width_mult)))


def conv_bn_relu(module: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(module, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


def block_fixes(conv: str) -> tuple[str, ...]:
    """The arguments of ``registry.build`` that ``block`` sets itself, so that no extra keyword may give them."""
    fixed = ("in_channels", "out_channels", "kernel_size", "dim", "stride", "bias")
    return (*fixed, "norm_layer", "activation") if conv == "depthwise_separable" else fixed


def block(conv: str, in_channels: int, out_channels: int, stride: int, **conv_kwargs: Any) -> nn.Module:
    """One 3×3 block of the body: the chosen family, each conv followed by BN + ReLU."""
    if conv == "depthwise_separable":  # BN + ReLU after both the depthwise and the pointwise conv
        return build(conv, in_channels, out_channels, 3, stride=stride, bias=False, norm_layer=nn.BatchNorm2d,
                     activation=lambda: nn.ReLU(inplace=True), **conv_kwargs)
    layer = build(conv, in_channels, out_channels, 3, stride=stride, bias=False, **conv_kwargs)
    return conv_bn_relu(layer, out_channels)


class MobileNetV1(nn.Module):
    """(N, 3, H, W) → (N, num_classes) logits. ``default_input_shape`` is (1, 3, ρ, ρ) for cost reports."""

    def __init__(self, width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 conv: str = "depthwise_separable", small_input: bool = False, **conv_kwargs: Any) -> None:
        super().__init__()
        width_mult = positive_number(width_mult, "width_mult")
        positive_ints("MobileNetV1", resolution=resolution, num_classes=num_classes)
        if not family(conv).replaces_kxk:
            raise ValueError(f"conv={conv!r} cannot be a 3×3 block with stride 1 or 2: it does not stand in for a "
                             f"k×k convolution (families that do: "
                             f"{', '.join(f.name for f in families() if f.replaces_kxk)})")
        self.width_mult, self.resolution, self.conv = width_mult, resolution, conv
        self.default_input_shape = (1, 3, resolution, resolution)
        stem = _scaled(32, width_mult)
        layers: list[nn.Module] = [conv_bn_relu(nn.Conv2d(3, stem, 3, 1 if small_input else 2, 1, bias=False), stem)]
        channels = stem
        for i, (out, stride) in enumerate(BLOCKS):
            stride = SMALL_INPUT_STRIDES[i] if small_input else stride
            out = _scaled(out, width_mult)
            with block_keywords("MobileNetV1", conv, conv_kwargs, OWN_ARGUMENTS, block_fixes(conv),
                                block=f"features.{i + 1} ({channels} → {out} channels, stride {stride})",
                                width=("width_mult", width_mult)):
                layers.append(block(conv, channels, out, stride, **conv_kwargs))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        he_scale_(self)  # untrained and in eval mode, the logits still depend on the input

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenet_v1(width_mult: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 conv: str = "depthwise_separable", **conv_kwargs: Any) -> MobileNetV1:
    """MobileNet v1 at width α = ``width_mult`` for ρ = ``resolution`` inputs, its 3×3 blocks of family ``conv``."""
    return MobileNetV1(width_mult, resolution, num_classes, conv, **conv_kwargs)


def mobilenet_v1_small(width_mult: float = 1.0, num_classes: int = 10, conv: str = "depthwise_separable",
                       **conv_kwargs: Any) -> MobileNetV1:
    """The 32×32-input variant (CIFAR-style stem at stride 1, three stride-2 blocks: total stride 8, so the last
    feature map is 4×4)."""
    return MobileNetV1(width_mult, 32, num_classes, conv, small_input=True, **conv_kwargs)
