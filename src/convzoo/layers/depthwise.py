"""Depthwise and depthwise separable convolution (article 001 §8.2, MobileNet — article 002).

Depthwise: every input channel is convolved with its own ``depth_multiplier`` kernels (groups = C_in).
Depthwise separable: depthwise, then a 1×1 pointwise conv mixing channels. For a k×k layer C_in→C_out the
MACs fall from k²·C_in·C_out·HW to (k²·C_in + C_in·C_out)·HW, i.e. by 1/C_out + 1/k².
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import nn

from .base import IntOrTuple, Padding, check_positive_int
from .conv import ConvNd
from ..analysis.cost import LayerCost, sequential_cost
from .pointwise import PointwiseConv1d, PointwiseConv2d, PointwiseConv3d, PointwiseConvNd

LayerFactory = Callable[[int], nn.Module]


class DepthwiseConvNd(ConvNd):
    """y[n, c·m + j, p] = b + Σ_t w[c·m + j, 0, t] · x[n, c, p·s + t·d] for multiplier m.

    Shapes: input (N, C, *S) → output (N, C·depth_multiplier, *O); weight (C·depth_multiplier, 1, *K).
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: IntOrTuple,
        depth_multiplier: int = 1,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_positive_int(in_channels, "in_channels")
        check_positive_int(depth_multiplier, "depth_multiplier")
        super().__init__(
            in_channels, in_channels * depth_multiplier, kernel_size, stride, padding, dilation,
            groups=in_channels, bias=bias, padding_mode=padding_mode, device=device, dtype=dtype,
        )
        self.depth_multiplier = depth_multiplier


class DepthwiseConv1d(DepthwiseConvNd):
    dim = 1


class DepthwiseConv2d(DepthwiseConvNd):
    dim = 2


class DepthwiseConv3d(DepthwiseConvNd):
    dim = 3


class DepthwiseSeparableConvNd(nn.Module):
    """Depthwise k×k conv (C_in → C_in·m), then pointwise 1×1 conv (C_in·m → C_out).

    When given, ``norm_layer(channels)`` and ``activation()`` follow each of the two convs, as in MobileNet's
    block (conv → BN → ReLU). Shapes: (N, C_in, *S) → (N, C_out, *O).
    """

    dim: ClassVar[int]
    _depthwise: ClassVar[type[DepthwiseConvNd]]
    _pointwise: ClassVar[type[PointwiseConvNd]]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        depth_multiplier: int = 1,
        bias: bool = True,
        norm_layer: LayerFactory | None = None,
        activation: Callable[[], nn.Module] | None = None,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.depthwise = self._depthwise(
            in_channels, kernel_size, depth_multiplier, stride, padding, dilation, bias, padding_mode, **factory
        )
        mid = self.depthwise.out_channels
        self.depthwise_norm = norm_layer(mid) if norm_layer else nn.Identity()
        self.depthwise_act = activation() if activation else nn.Identity()
        self.pointwise = self._pointwise(mid, out_channels, bias=bias, **factory)
        self.pointwise_norm = norm_layer(out_channels) if norm_layer else nn.Identity()
        self.pointwise_act = activation() if activation else nn.Identity()
        self.in_channels, self.out_channels = in_channels, out_channels

    def reset_parameters(self) -> None:
        for module in (self.depthwise, self.depthwise_norm, self.pointwise, self.pointwise_norm):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise_act(self.depthwise_norm(self.depthwise(x)))
        return self.pointwise_act(self.pointwise_norm(self.pointwise(x)))

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Depthwise MACs N·prod(O)·C_in·m·prod(k) + pointwise MACs N·prod(O)·C_in·m·C_out; norms and activations
        (when present) as other ops; elements summed over the parts (the middle tensor written and read)."""
        return sequential_cost((self.depthwise, self.depthwise_norm, self.depthwise_act, self.pointwise,
                                self.pointwise_norm, self.pointwise_act), input_shape)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class DepthwiseSeparableConv1d(DepthwiseSeparableConvNd):
    dim, _depthwise, _pointwise = 1, DepthwiseConv1d, PointwiseConv1d


class DepthwiseSeparableConv2d(DepthwiseSeparableConvNd):
    dim, _depthwise, _pointwise = 2, DepthwiseConv2d, PointwiseConv2d


class DepthwiseSeparableConv3d(DepthwiseSeparableConvNd):
    dim, _depthwise, _pointwise = 3, DepthwiseConv3d, PointwiseConv3d
