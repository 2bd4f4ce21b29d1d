"""A small 1-D CNN for sequences (MNIST-1D), the 1-D analogue of the small MobileNet, built from any family.

Layout: a plain 3-tap stem conv (stride 1) to 32·α channels, six blocks with the widths and strides of
MobileNet v1's first six blocks (Table 1: 64, 128/s2, 128, 256/s2, 256, 512/s2; × α), each block one layer of
the chosen family followed by BatchNorm + ReLU, global average pooling and a linear classifier. A length-40
sequence ends at length 5.

Which families fit is read from the registry record and the layer, never from a family's name:

* the family must have a 1-D form (``1 in family.dims``);
* a family that stands in for a k-tap conv (``replaces_kxk``) is built with the block's stride;
* any other family (pointwise, grouped pointwise) is built at its own geometry and must keep the sequence
  length (checked by running it once); a stride-s block then keeps every s-th position before it, which for
  a 1×1 layer is exactly the strided layer. Families whose layer changes the length (the upsampling ones,
  transposed and resize) cannot be a block of a classifier that only shrinks the sequence and are refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Optional

import torch
from torch import nn

from ..registry import Family, families, family
from .arguments import block_keywords, positive_ints, positive_number

# (output channels, stride) of the six blocks after the 32-channel stem: MobileNet v1's first six.
BLOCKS_1D: tuple[tuple[int, int], ...] = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
STEM_CHANNELS = 32
KERNEL_SIZE = 3
# What ``block_1d`` sets on every block itself (an extra keyword giving one was "got multiple values").
BLOCK_FIXES = ("in_channels", "out_channels", "kernel_size", "dim", "stride", "bias")


def _scaled(channels: int, width_mult: float) -> int:
    return max(1, int(round(channels * width_mult)))


class Subsample1d(nn.Module):
    """Keep every ``stride``-th position (what a stride-s 1×1 layer reads)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :: self.stride]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


@lru_cache(maxsize=None)
def unfit_reason(name: str) -> Optional[str]:
    """Why family ``name`` cannot fill the 1-D model's blocks, or None when it can."""
    record: Family = family(name)
    if 1 not in record.dims:
        return f"family {name!r} has no 1-D form (dims {record.dims})"
    if record.replaces_kxk:
        return None
    try:  # the blocks change the width (C → 2C), as the stride-2 stages do
        layer = record.build(4, 8, KERNEL_SIZE if record.window else None, 1, bias=False)
    except ValueError as error:
        return f"family {name!r} cannot widen the channels: {str(error).splitlines()[0]}"
    with torch.no_grad():
        length = layer.eval()(torch.zeros(1, 4, 8)).shape[-1]
    if length != 8:
        return (f"family {name!r} maps a length-8 sequence to length {length}; the 1-D model's blocks must keep "
                f"the length or stride it")
    return None


def fitting_families() -> list[str]:
    """Every family that can fill the 1-D model, in registry order."""
    return [f.name for f in families() if unfit_reason(f.name) is None]


def check_family(name: str) -> None:
    """ValueError (one line, listing the families that fit) unless ``name`` can fill the 1-D model."""
    reason = unfit_reason(name)
    if reason is not None:
        raise ValueError(f"conv={name!r} cannot fill the 1-D model: {reason}; families that can: "
                         f"{', '.join(fitting_families())}")


def block_1d(conv: str, in_channels: int, out_channels: int, stride: int, **conv_kwargs: Any) -> nn.Sequential:
    """One block: the family's layer (carrying the stride, or after a subsampling), BatchNorm, ReLU."""
    check_family(conv)
    record = family(conv)
    parts: list[nn.Module] = []
    if record.replaces_kxk:
        parts.append(record.build(in_channels, out_channels, KERNEL_SIZE, 1, stride=stride, bias=False, **conv_kwargs))
    else:
        if stride > 1:
            parts.append(Subsample1d(stride))
        kernel = KERNEL_SIZE if record.window else None  # pointwise has no window to choose
        parts.append(record.build(in_channels, out_channels, kernel, 1, bias=False, **conv_kwargs))
    return nn.Sequential(*parts, nn.BatchNorm1d(out_channels), nn.ReLU(inplace=True))


class ConvNet1d(nn.Module):
    """(N, C, L) → (N, num_classes) logits. ``default_input_shape`` is (1, C, length) for cost reports."""

    def __init__(self, width_mult: float = 0.25, in_channels: int = 1, num_classes: int = 10,
                 conv: str = "standard", length: int = 40, **conv_kwargs: Any) -> None:
        super().__init__()
        width_mult = positive_number(width_mult, "width_mult")
        positive_ints("ConvNet1d", in_channels=in_channels, num_classes=num_classes, length=length)
        check_family(conv)
        self.conv = conv
        self.default_input_shape = (1, in_channels, length)
        stem = _scaled(STEM_CHANNELS, width_mult)
        layers: list[nn.Module] = [nn.Sequential(nn.Conv1d(in_channels, stem, KERNEL_SIZE, padding=1, bias=False),
                                                 nn.BatchNorm1d(stem), nn.ReLU(inplace=True))]
        channels = stem
        for i, (out, stride) in enumerate(BLOCKS_1D):
            out = _scaled(out, width_mult)
            with block_keywords("ConvNet1d", conv, conv_kwargs,
                                ("width_mult", "in_channels", "num_classes", "conv", "length"), BLOCK_FIXES,
                                block=f"features.{i + 1} ({channels} → {out} channels, stride {stride})",
                                width=("width_mult", width_mult)):
                layers.append(block_1d(conv, channels, out, stride, **conv_kwargs))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def cnn1d_small(width_mult: float = 0.25, in_channels: int = 1, num_classes: int = 10, conv: str = "standard",
                length: int = 40, **conv_kwargs: Any) -> ConvNet1d:
    """The 1-D model for length-``length`` sequences with ``in_channels`` channels."""
    return ConvNet1d(width_mult, in_channels, num_classes, conv, length, **conv_kwargs)
