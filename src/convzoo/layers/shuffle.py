"""Channel shuffle and the shuffled grouped convolution of ShuffleNet (article 001 §11, article 003 §2.1).

A grouped conv's output group g only sees input group g; shuffling the channels afterwards hands every next
group a slice of every previous group, so information crosses groups at no multiply-add cost.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import IntOrTuple, Padding, check_positive_int
from ..functional import channel_shuffle
from .conv import Conv2d, conv_repr
from ..analysis.cost import LayerCost, elementwise_cost


class ChannelShuffle(nn.Module):
    """Permute channels as (groups, C/groups) → (C/groups, groups): output i = input (i mod g)·C/g + ⌊i/g⌋.

    Same permutation as ``torch.nn.ChannelShuffle``; input (N, C, *S) with 1–3 spatial dims, same shape out.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = check_positive_int(groups, "groups")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not 3 <= x.dim() <= 5:
            raise ValueError(f"ChannelShuffle expects (N, C, L), (N, C, H, W) or (N, C, D, H, W), got shape {tuple(x.shape)}")
        return channel_shuffle(x, self.groups)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """A permutation: 0 MACs, 0 ops; the tensor is read and written once."""
        return elementwise_cost(tuple(input_shape), 0)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffledGroupedConv2d(Conv2d):
    """Grouped conv (``groups`` groups) followed by a channel shuffle with the same number of groups.

    Shapes: (N, C_in, H, W) → (N, C_out, H_out, W_out); weight (C_out, C_in/groups, kh, kw).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        groups: int,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(super().forward(x), self.groups)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Grouped conv (MACs N·HW_out·C_out·(C_in/g)·k²) + the shuffle: 0 ops, its output read and written."""
        conv = super().cost(input_shape)
        return conv + elementwise_cost(conv.output_shape, 0)

    def extra_repr(self) -> str:
        return conv_repr(self) + ", shuffle=True"
