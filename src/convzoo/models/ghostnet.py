"""GhostNet (Han et al. 2020, "GhostNet: More Features from Cheap Operations", CVPR 2020,
https://arxiv.org/abs/1911.11907), built from ``convzoo.GhostModule2d``.

§3.2 / Table 1: a 3×3 stride-2 stem conv to 16 channels (BN, ReLU); 16 Ghost bottlenecks (kernel, expansion,
output, SE, stride as in ``TABLE_1``); a 1×1 conv to 960 (BN, ReLU); global average pooling; a 1×1 conv to 1280
(ReLU); a linear classifier. Table 7: GhostNet 1.0× has 141 M FLOPs (multiply-adds) and 5.2 M params at 224²;
``convzoo.cost`` counts 141,150,512 MACs (conv and linear multiply-accumulates, SE's 1×1 convs included; BN,
activations, pooling and the SE product are other ops) and 5,182,508 params: the paper's 141 M and 5.2 M.

The Ghost modules use s = 2 and a 3×3 cheap conv (d = 3, as the paper chooses in §4.1). Where the paper is
silent this follows timm's ``ghostnet_100``, so the same weights give the same outputs: BN after every conv,
ReLU in the first Ghost module of a bottleneck and none in the second; SE squeezes to ``make_divisible(C/4, 4)``
channels with biased 1×1 convs and gates with the hard sigmoid ReLU6(z + 3)/6; the 1280 conv has a bias;
dropout 0.2 before the classifier; widths ×``width`` rounded by ``make_divisible(·, 4)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..layers.depthwise import DepthwiseConv2d
from ..layers.ghost import GhostModule2d
from ..layers.pointwise import PointwiseConv2d
from .arguments import positive_ints, positive_number

# (kernel, expansion size, output channels, SE, stride) of the 16 Ghost bottlenecks, Table 1 of the paper.
TABLE_1: tuple[tuple[int, int, int, bool, int], ...] = (
    (3, 16, 16, False, 1),
    (3, 48, 24, False, 2), (3, 72, 24, False, 1),
    (5, 72, 40, True, 2), (5, 120, 40, True, 1),
    (3, 240, 80, False, 2), (3, 200, 80, False, 1), (3, 184, 80, False, 1), (3, 184, 80, False, 1),
    (3, 480, 112, True, 1), (3, 672, 112, True, 1),
    (5, 672, 160, True, 2), (5, 960, 160, False, 1), (5, 960, 160, True, 1), (5, 960, 160, False, 1),
    (5, 960, 160, True, 1),
)


def make_divisible(value: float, divisor: int = 4) -> int:
    """value rounded to the nearest multiple of ``divisor`` (halves up), at least ``divisor``, and one step more
    when rounding lost over 10 % of value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class SqueezeExcite(nn.Module):
    """y = x · hσ(W₂ ReLU(W₁ GAP(x) + b₁) + b₂), hσ(z) = ReLU6(z + 3) / 6; W₁: C → make_divisible(C·ratio, 4),
    W₂ back to C, both 1×1 convs. Shapes: (N, C, H, W) → (N, C, H, W)."""

    def __init__(self, channels: int, ratio: float = 0.25, divisor: int = 4) -> None:
        super().__init__()
        hidden = make_divisible(channels * ratio, divisor)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=(2, 3), keepdim=True)
        return x * F.hardsigmoid(self.expand(torch.relu(self.reduce(squeezed))))


class GhostBottleneck(nn.Module):
    """y = G₂(SE(DW(G₁(x)))) + shortcut(x) (Fig. 3): G₁ a Ghost module C_in → hidden with ReLU, DW a depthwise k×k
    stride-s conv + BN only when s = 2, G₂ a Ghost module hidden → C_out without activation; the shortcut is x when
    the shape is kept, else depthwise k×k stride s + BN → 1×1 + BN. (N, C_in, H, W) → (N, C_out, H/s, W/s)."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 se: bool = False) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride={stride} must be 1 or 2 (Table 1)")
        pad = kernel_size // 2
        self.expand = GhostModule2d(in_channels, hidden, 1, bias=False, norm_layer=nn.BatchNorm2d,
                                    activation=nn.ReLU)
        self.depthwise: nn.Module = nn.Identity()
        if stride == 2:
            self.depthwise = nn.Sequential(DepthwiseConv2d(hidden, hidden, kernel_size, stride, pad, bias=False),
                                           nn.BatchNorm2d(hidden))
        self.se: nn.Module = SqueezeExcite(hidden) if se else nn.Identity()
        self.project = GhostModule2d(hidden, out_channels, 1, bias=False, norm_layer=nn.BatchNorm2d)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels or stride != 1:
            self.shortcut = nn.Sequential(
                DepthwiseConv2d(in_channels, in_channels, kernel_size, stride, pad, bias=False),
                nn.BatchNorm2d(in_channels),
                PointwiseConv2d(in_channels, out_channels, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.se(self.depthwise(self.expand(x)))) + self.shortcut(x)


class GhostNet(nn.Module):
    """(N, 3, H, W) → (N, num_classes) logits: stem → ``blocks`` (the bottlenecks, then 1×1 to 960) → ``head``."""

    def __init__(self, width: float = 1.0, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2,
                 table: Sequence[tuple[int, int, int, bool, int]] = TABLE_1, feature_dim: int = 1280) -> None:
        super().__init__()
        width = positive_number(width, "width")
        positive_ints("GhostNet", num_classes=num_classes, in_channels=in_channels)
        channels = make_divisible(16 * width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        blocks: list[nn.Module] = []
        for kernel, expansion, out, se, stride in table:
            out = make_divisible(out * width)
            blocks.append(GhostBottleneck(channels, make_divisible(expansion * width), out, kernel, stride, se))
            channels = out
        last = make_divisible(table[-1][1] * width)
        blocks.append(nn.Sequential(PointwiseConv2d(channels, last, bias=False), nn.BatchNorm2d(last), nn.ReLU()))
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(last, feature_dim, 1), nn.ReLU(), nn.Flatten(),
                                  nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def ghostnet(width: float = 1.0, num_classes: int = 1000) -> GhostNet:
    """GhostNet at width multiplier ``width`` (Table 7: 0.5× 42 M MACs / 2.6 M params, as counted here; 1.3× 226 M
    / 7.3 M, here 227.0 M / 7.36 M, as timm's ``ghostnet_130`` — the paper does not say how it rounds 1.3×)."""
    return GhostNet(width, num_classes)


def ghostnet_1_0(num_classes: int = 1000) -> GhostNet:
    """GhostNet 1.0× (Table 7: 141 M FLOPs — multiply-adds — 5.2 M params, top-1 73.9 %)."""
    return GhostNet(1.0, num_classes)
