"""Flattened convolution (Jin, Dundar & Culurciello 2014; article 001 §9, article 003 §2.2).

A C_in×k×k filter bank is replaced by three 1-D stages: L, a 1×1 conv across channels (C_in → C_out);
V, a per-channel (k×1) conv; H, a per-channel (1×k) conv. Each has a bias; there is no nonlinearity inside.
Parameters: C_in·C_out + 2k·C_out (+ 3·C_out biases) instead of C_in·C_out·k².
"""

from __future__ import annotations

import torch
from torch import nn

from .base import IntOrTuple, Padding
from .pointwise import PointwiseConv2d
from .separable import column_then_row
from ..analysis.cost import LayerCost, sequential_cost


class FlattenedConv2d(nn.Module):
    """y = H ⋆ (V ⋆ (L x + b_L) + b_V) + b_H, with V and H depthwise.

    Shapes: (N, C_in, H, W) → (N, C_out, H_out, W_out) as a k×k conv with the same stride/padding/dilation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lateral = PointwiseConv2d(in_channels, out_channels, bias=bias, **factory)
        self.vertical, self.horizontal = column_then_row(
            out_channels, out_channels, out_channels, kernel_size, stride, padding, dilation,
            (out_channels, out_channels), (bias, bias), padding_mode, factory,
        )
        self.kernel_size = (self.vertical.kernel_size[0], self.horizontal.kernel_size[1])

    def reset_parameters(self) -> None:
        for conv in (self.lateral, self.vertical, self.horizontal):
            conv.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.horizontal(self.vertical(self.lateral(x)))

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Three convs: N·H·W·C_out·C_in (1×1) + N·H_mid·W·C_out·kh (k×1 depthwise) + N·H_out·W_out·C_out·kw
        (1×k depthwise) MACs; elements summed over the three (intermediates written and read)."""
        return sequential_cost((self.lateral, self.vertical, self.horizontal), input_shape)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
