"""Global depthwise convolution (GDC; MobileFaceNet; article 003 §2.1).

A depthwise conv whose kernel covers the whole feature map, no padding: y[n, c] = b[c] + Σ_{h,w} w[c, h, w]·x[n, c, h, w].
Unlike global average pooling every position has its own learned weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from .base import check_input, check_positive_int, expand
from .conv import init_conv_
from ..analysis.cost import LayerCost, conv_cost


class GlobalDepthwiseConv2d(LazyModuleMixin, nn.Module):
    """(N, C, H, W) → (N, C, 1, 1); weight (C, 1, H, W), bias (C,).

    With ``input_size=None`` the kernel size is taken from the first input (lazy, like ``torch.nn.LazyConv2d``);
    afterwards inputs of any other size are rejected.
    """

    weight: nn.Parameter

    def __init__(
        self,
        channels: int,
        input_size: int | Sequence[int] | None = None,
        bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = check_positive_int(channels, "channels")
        self.in_channels = self.out_channels = channels
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.UninitializedParameter(**factory)
        self.bias = nn.Parameter(torch.empty(channels, **factory)) if bias else None
        if input_size is not None:
            self._materialize(expand(input_size, 2, "input_size"))

    @property
    def kernel_size(self) -> tuple[int, ...] | None:
        return None if self.has_uninitialized_params() else tuple(self.weight.shape[2:])

    def _materialize(self, size: tuple[int, ...]) -> None:
        self.weight.materialize((self.channels, 1, *size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            init_conv_(self.weight, self.bias)

    def initialize_parameters(self, x: torch.Tensor) -> None:  # called by LazyModuleMixin before the first forward
        if self.has_uninitialized_params():
            check_input(x, 2, self.channels, type(self).__name__)
            with torch.no_grad():
                self._materialize(tuple(x.shape[2:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 2, self.channels, type(self).__name__)
        if tuple(x.shape[2:]) != self.kernel_size:
            raise ValueError(
                f"GlobalDepthwiseConv2d has kernel_size={self.kernel_size} (the whole feature map) but got an "
                f"input of spatial size {tuple(x.shape[2:])}; the input size must equal the kernel size"
            )
        # The same sum as F.conv2d(x, w, b, groups=C), written as a weighted reduction: measured on 2 CPU cores
        # (8×64×56²) 4× faster forward+backward in NCHW (2.0 vs 8.5 ms) and 3× in channels_last (5.0 vs 17 ms).
        y = (x * self.weight.view(1, self.channels, *self.kernel_size)).sum((2, 3), keepdim=True)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs = N·C·H·W (one weight per input element); weight (C, 1, H, W) with H×W the input size, also
        before the lazy weight is materialised."""
        spatial = tuple(input_shape[2:])
        if self.kernel_size is not None and spatial != self.kernel_size:
            raise ValueError(f"GlobalDepthwiseConv2d has kernel_size={self.kernel_size} but the input size is {spatial}")
        out = (input_shape[0], self.channels, *(1,) * len(spatial))
        return conv_cost(input_shape, out, (self.channels, 1, *spatial), 0 if self.bias is None else self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}" + ("" if self.bias is not None else ", bias=False")
