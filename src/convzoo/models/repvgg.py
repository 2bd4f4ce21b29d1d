"""RepVGG (Ding et al. 2021, "RepVGG: Making VGG-style ConvNets Great Again", https://arxiv.org/abs/2101.03697),
built from ``convzoo.RepVGGBlock2d`` + ReLU.

Five stages (§3.4): stage 0 is one block of min(64, 64a) channels at stride 2; stages 1–4 have depths
(2, 4, 14, 1) for the A models and widths 64a, 128a, 256a, 512b, each starting with a stride-2 block; then global
average pooling and a linear classifier. RepVGG-A0 is a = 0.75, b = 2.5. ``convzoo.reparameterize`` turns it into
the deployed plain stack of 3×3 convs (Table 4: 8.30 M params, 1.4 G FLOPs — multiply-adds — for A0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers.repvgg import RepVGGBlock2d
from .arguments import positive_ints, positive_number, stage_depths

A_DEPTHS = (2, 4, 14, 1)
B_DEPTHS = (4, 6, 16, 1)


class RepVGG(nn.Module):
    """stem → stages → global average pool → linear. Blocks are ``nn.Sequential(RepVGGBlock2d, ReLU)``."""

    def __init__(self, depths: Sequence[int] = A_DEPTHS, width_a: float = 0.75, width_b: float = 2.5,
                 num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        depths = stage_depths("RepVGG", depths, 4)  # after the stem; a 0 would drop a stage and its stride 2
        width_a, width_b = positive_number(width_a, "width_a"), positive_number(width_b, "width_b")
        positive_ints("RepVGG", num_classes=num_classes, in_channels=in_channels)
        for name, value, base, where in (("width_a", width_a, 64, "the stem and stage 1"),
                                         ("width_b", width_b, 512, "stage 4")):
            if int(base * value) < 1:
                raise ValueError(f"RepVGG: {name}={value} gives {where} int({base}·{value}) = 0 channels; {name} "
                                 f"must be >= 1/{base} = {1 / base:g}")
        widths = [int(64 * width_a), int(128 * width_a), int(256 * width_a), int(512 * width_b)]
        stem = min(64, int(64 * width_a))
        self.stem = nn.Sequential(RepVGGBlock2d(in_channels, stem, 3, 2), nn.ReLU())
        stages, channels = [], stem
        for depth, width in zip(depths, widths):
            blocks = []
            for i in range(depth):
                blocks.append(nn.Sequential(RepVGGBlock2d(channels, width, 3, 2 if i == 0 else 1), nn.ReLU()))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def repvgg_a0(num_classes: int = 1000) -> RepVGG:
    """RepVGG-A0 (Table 2: a = 0.75, b = 2.5, depths 1, 2, 4, 14, 1)."""
    return RepVGG(A_DEPTHS, 0.75, 2.5, num_classes)
