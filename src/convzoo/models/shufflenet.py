"""ShuffleNet v1 (Zhang et al. 2017, arXiv:1707.01083; seed article 001 §11–12).

Table 1 of the paper: a 3×3/s2 conv to 24 channels, 3×3/s2 max pool, three stages of bottleneck units
(4, 8, 4 units; the first of each at stride 2), global pooling, a fully connected classifier. A unit is
1×1 group conv → BN → ReLU → channel shuffle → 3×3 depthwise (stride) → BN → 1×1 group conv → BN, added to
the input (stride 1) or concatenated with a 3×3/s2 average pool of it (stride 2), then ReLU. The
bottleneck is ¼ of the unit's output channels; stage 2's first 1×1 conv is not grouped (its input is the narrow stem).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from ..layers import ChannelShuffle, DepthwiseConv2d, PointwiseConv2d
from .arguments import positive_ints, positive_number

# Output channels of stage 2 for each number of groups g (Table 1); stages 3 and 4 double it each time.
STAGE2_CHANNELS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
UNITS_PER_STAGE = (4, 8, 4)


def stem_channels(scale: float, groups: int) -> int:
    """The stem width the published complexities imply: 12 up to 0.5×, 24 up to 1.5×, 48 from 2×
    (0.25×: 13, 0.5×: 38, 1×: 140, 1.5×: 292, 2×: 524 MFLOPs at g = 3 — the paper's Tables 2 and 5), rounded
    up to a multiple of g so that a stride-2 unit's branch (out − in channels) splits into g groups."""
    base = 12 if scale <= 0.5 else 24 if scale < 2 else 48
    return -(-base // groups) * groups


def _check_unit(in_channels: int, out_channels: int, groups: int, stride: int, first_groups: int) -> int:
    """The branch's output width (out − in at stride 2, where the input is concatenated; out at stride 1, where it is
    added), after the rules that make every grouped 1×1 conv split evenly; ValueError naming the unit's argument."""
    if stride == 1 and out_channels != in_channels:
        raise ValueError(f"ShuffleUnit: at stride=1 the branch is added to the input, so out_channels={out_channels} "
                         f"must equal in_channels={in_channels}")
    branch_out = out_channels - in_channels if stride == 2 else out_channels
    if branch_out < 1:
        raise ValueError(f"ShuffleUnit: at stride=2 the input is concatenated with a branch of out_channels − "
                         f"in_channels channels, so out_channels={out_channels} must exceed in_channels={in_channels}")
    mid = out_channels // 4
    if mid < 1 or mid % groups or mid % first_groups:
        raise ValueError(f"ShuffleUnit: out_channels={out_channels} gives a bottleneck of out_channels // 4 = {mid} "
                         f"channels, which must be a positive multiple of groups={groups} (the grouped 1×1 convs)")
    if in_channels % first_groups:
        raise ValueError(f"ShuffleUnit: in_channels={in_channels} must be a multiple of groups={groups} (the first "
                         f"1×1 conv is grouped)")
    if branch_out % groups:
        what = "out_channels − in_channels" if stride == 2 else "out_channels"
        raise ValueError(f"ShuffleUnit: the branch's {what} = {branch_out} must be a multiple of groups={groups} "
                         f"(its last 1×1 conv is grouped)")
    return branch_out


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit (Fig. 2 b/c). (N, C_in, H, W) → (N, C_out, H/stride, W/stride)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int, group_first: bool = True) -> None:
        super().__init__()
        positive_ints("ShuffleUnit", in_channels=in_channels, out_channels=out_channels, groups=groups)
        if isinstance(stride, bool) or stride not in (1, 2):
            raise ValueError(f"ShuffleUnit: stride={stride!r} must be 1 or 2")
        self.stride = stride
        first_groups = groups if group_first else 1
        branch_out = _check_unit(in_channels, out_channels, groups, stride, first_groups)
        mid = out_channels // 4
        self.branch = nn.Sequential(
            PointwiseConv2d(in_channels, mid, groups=first_groups, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            ChannelShuffle(first_groups) if first_groups > 1 else nn.Identity(),
            DepthwiseConv2d(mid, mid, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            PointwiseConv2d(mid, branch_out, groups=groups, bias=False),
            nn.BatchNorm2d(branch_out),
        )
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.branch(x)
        if self.stride == 2:
            return torch.relu(torch.cat([self.shortcut(x), branch], dim=1))
        return torch.relu(x + branch)


def _stage_channels(groups: int, scale: float) -> list[int]:
    """Stage widths × scale, rounded to a multiple of 4·g so the bottleneck (¼) splits into g groups."""
    unit = 4 * groups
    base = STAGE2_CHANNELS[groups]
    return [max(unit, int(round(base * 2**i * scale / unit)) * unit) for i in range(3)]


def _widths_grow(groups: int, scale: float) -> bool:
    """Whether the stem's and the stages' widths strictly increase, as the stride-2 units need."""
    widths = [stem_channels(scale, groups), *_stage_channels(groups, scale)]
    return all(later > earlier for earlier, later in pairwise(widths))


class ShuffleNetV1(nn.Module):
    """(N, 3, H, W) → (N, num_classes). ``small_input`` uses a stride-1 stem and no max pool (32×32 images)."""

    def __init__(self, groups: int = 3, scale: float = 1.0, num_classes: int = 1000, small_input: bool = False) -> None:
        super().__init__()
        # an int: 3.0 == 3 found the table and failed deep inside torch ("empty(): argument 'size'")
        if not isinstance(groups, int) or isinstance(groups, bool) or groups not in STAGE2_CHANNELS:
            raise ValueError(f"groups={groups!r} must be one of {sorted(STAGE2_CHANNELS)} (the paper's Table 1)")
        scale = positive_number(scale, "scale")
        positive_ints("ShuffleNetV1", num_classes=num_classes)
        self.groups, self.scale = groups, scale
        self.default_input_shape = (1, 3, 32, 32) if small_input else (1, 3, 224, 224)
        stem = stem_channels(scale, groups)
        if not _widths_grow(groups, scale):
            widths = ", ".join(map(str, [stem, *_stage_channels(groups, scale)]))
            smallest = next(k / 1000 for k in range(1, 2001) if _widths_grow(groups, k / 1000))
            raise ValueError(f"ShuffleNetV1: scale={scale} gives the stem and the three stages {widths} channels, "
                             f"which must grow (each stage's first unit concatenates its input with a branch of at "
                             f"least 1 channel); the smallest scale for groups={groups} is {smallest:g}")
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem, 3, 1 if small_input else 2, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1),
        )
        units: list[nn.Module] = []
        channels = stem
        for stage, (out, repeats) in enumerate(zip(_stage_channels(groups, scale), UNITS_PER_STAGE)):
            for i in range(repeats):
                units.append(ShuffleUnit(channels, out, groups, 2 if i == 0 else 1, group_first=stage > 0 or i > 0))
                channels = out
        self.stages = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.stages(self.stem(x))).flatten(1))


def shufflenet_v1(groups: int = 3, scale: float = 1.0, num_classes: int = 1000) -> ShuffleNetV1:
    """ShuffleNet v1 with ``groups`` pointwise groups at width ``scale`` (0.25×–2×), for 224×224 inputs."""
    return ShuffleNetV1(groups, scale, num_classes)


def shufflenet_v1_small(groups: int = 3, scale: float = 1.0, num_classes: int = 10) -> ShuffleNetV1:
    """The 32×32-input variant: stride-1 stem, no max pool (the last feature map is 4×4)."""
    return ShuffleNetV1(groups, scale, num_classes, small_input=True)
