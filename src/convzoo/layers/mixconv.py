"""MixConv (Tan & Le 2019, "MixConv: Mixed Depthwise Convolutional Kernels", arXiv:1907.09595;
article 003 §2.1): split the channels into groups, convolve group i with kernel_sizes[i] and 'same'
padding, concatenate. Depthwise per group when in_channels == out_channels (the paper's case).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import IntOrTuple, check_choice, check_positive_int, expand
from .conv import Conv2d
from ..analysis.cost import LayerCost, compose, elementwise_cost

SPLITS = ("equal", "exponential")


def split_channels(channels: int, groups: int, split: str = "equal") -> list[int]:
    """Channel counts per group. 'equal': C // n each, the remainder to the first group.
    'exponential': group i gets ⌊C / 2^(i+1)⌋, the last group the rest (e.g. 32 → 16, 8, 8)."""
    check_choice(split, "split", SPLITS)
    if split == "equal":
        sizes = [channels // groups] * groups
        sizes[0] += channels - sum(sizes)
    else:
        sizes = [channels >> (i + 1) for i in range(groups - 1)]
        sizes.append(channels - sum(sizes))
    if min(sizes) < 1:
        raise ValueError(f"{channels} channels are too few for {groups} kernel groups with split={split!r}: {sizes}")
    return sizes


class MixConv2d(nn.Module):
    """y = concat_i conv_{k_i}(x_i). Shapes: (N, C_in, H, W) → (N, C_out, ⌈H/s⌉, ⌈W/s⌉) for odd kernels.

    Group i has ``in_splits[i]`` inputs and ``out_splits[i]`` outputs; its kernel is k_i×k_i with 'same'
    padding d·(k_i−1) (the odd element after), so all groups give the same output size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int] = (3, 5, 7),
        split: str = "equal",
        stride: IntOrTuple = 1,
        dilation: IntOrTuple = 1,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_positive_int(in_channels, "in_channels")
        check_positive_int(out_channels, "out_channels")
        if isinstance(kernel_sizes, int) or not kernel_sizes:
            raise TypeError(f"kernel_sizes={kernel_sizes!r} must be a non-empty sequence of ints")
        self.kernel_sizes = tuple(expand(k, 1, "kernel_sizes")[0] for k in kernel_sizes)
        self.in_channels, self.out_channels, self.split = in_channels, out_channels, split
        self.stride = expand(stride, 2, "stride")
        self.dilation = expand(dilation, 2, "dilation")
        self.in_splits = split_channels(in_channels, len(self.kernel_sizes), split)
        self.out_splits = split_channels(out_channels, len(self.kernel_sizes), split)
        self.depthwise = in_channels == out_channels
        self.convs = nn.ModuleList()
        for k, cin, cout in zip(self.kernel_sizes, self.in_splits, self.out_splits):
            totals = [d * (k - 1) for d in self.dilation]
            pairs = tuple((t // 2, t - t // 2) for t in totals)
            self.convs.append(Conv2d(cin, cout, k, self.stride, pairs, self.dilation, cin if self.depthwise else 1,
                                     bias, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MixConv2d expects (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        parts = torch.split(x, self.in_splits, dim=1)
        return torch.cat([conv(part) for conv, part in zip(self.convs, parts)], dim=1)

    def receptive_field_step(self, field, in_shape, step):  # noqa: ANN001, ANN201 (types live in arithmetic)
        """For ``convzoo.receptive_field``: parallel groups, all centred and equally strided, so the layer's
        field is the largest group's (the largest kernel). ``step(module, field, in_shape)`` maps one conv."""
        return max((step(conv, field, in_shape) for conv in self.convs), key=lambda f: f.size)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Sum over the groups of conv MACs N·prod(O)·cout_i·(cin_i/groups_i)·k_i², + the concatenation (0 ops;
        output read and written once). The channel split is a view (free)."""
        parts = [conv.cost((input_shape[0], cin, *input_shape[2:])) for conv, cin in zip(self.convs, self.in_splits)]
        out = (input_shape[0], self.out_channels, *parts[0].output_shape[2:])
        return compose([*parts, elementwise_cost(out, 0)])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}, split={self.split!r}, "
                f"in_splits={self.in_splits}, out_splits={self.out_splits}")
