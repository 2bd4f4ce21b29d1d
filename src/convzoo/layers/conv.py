"""Standard convolution in 1, 2 and 3 spatial dims, as cross-correlation or as true convolution.

One base (``ConvNd``) holds every argument, check and ``reset_parameters``; the per-dimension classes only
say how many spatial dims they have. Depthwise, pointwise, dilated and grouped convolutions are this layer
with particular arguments.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from .base import (
    PADDING_MODES,
    IntOrTuple,
    Padding,
    check_choice,
    check_groups,
    check_input,
    check_window_fits,
    expand,
    padding_pairs,
)
from ..functional import conv_with_pairs, flip_kernel
from ..analysis.cost import LayerCost, conv_cost, conv_out_shape

MODES = ("correlation", "convolution")


def init_conv_(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """PyTorch's default conv initialisation: Kaiming-uniform(a=√5) weight, bias ~ U(±1/√fan_in)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = math.prod(weight.shape[1:])
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


class ConvNd(nn.Module):
    """y = b + Σ w ⋆ x over each group (``mode='correlation'``), or with the kernel flipped (``'convolution'``).

    Shapes: input (N, C_in, *S) → output (N, C_out, *O); weight (C_out, C_in/groups, *K); bias (C_out,).
    Arguments as ``torch.nn.Conv{1,2,3}d``; ``padding`` may also be one (before, after) pair per dimension.
    """

    dim: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        mode: str = "correlation",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_groups(in_channels, out_channels, groups)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = expand(kernel_size, self.dim, "kernel_size")
        self.stride = expand(stride, self.dim, "stride")
        self.dilation = expand(dilation, self.dim, "dilation")
        self.padding = padding
        self._pairs = padding_pairs(padding, self.kernel_size, self.stride, self.dilation)
        self.groups = groups
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.mode = check_choice(mode, "mode", MODES)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_conv_(self.weight, self.bias)

    def check_input(self, x: torch.Tensor) -> None:
        check_input(x, self.dim, self.in_channels, type(self).__name__)
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self._pairs, type(self).__name__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        weight = flip_kernel(self.weight) if self.mode == "convolution" else self.weight
        return conv_with_pairs(x, weight, self.bias, self.stride, self._pairs, self.dilation, self.groups, self.padding_mode)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs = N·prod(O)·C_out·(C_in/groups)·prod(k); elements = input + weight + bias + output."""
        out = conv_out_shape(input_shape, self.out_channels, self.kernel_size, self.stride, self._pairs, self.dilation)
        return conv_cost(input_shape, out, self.weight.shape, 0 if self.bias is None else self.out_channels)

    def extra_repr(self) -> str:
        return conv_repr(self)


def conv_repr(module: nn.Module, extra: dict[str, object] | None = None) -> str:
    """PyTorch-style summary: channels and kernel, then only the arguments that differ from their default."""
    parts = [f"{module.in_channels}, {module.out_channels}"]
    if hasattr(module, "kernel_size"):
        parts.append(f"kernel_size={module.kernel_size}")
    defaults = {"stride": 1, "padding": 0, "dilation": 1, "output_padding": 0, "groups": 1,
                "padding_mode": "zeros", "mode": "correlation"}
    for name, default in defaults.items():
        value = getattr(module, name, default)
        if value != default and value != (default,) * len(getattr(module, "kernel_size", ())):
            parts.append(f"{name}={value!r}")
    if getattr(module, "bias", True) is None:
        parts.append("bias=False")
    for name, value in (extra or {}).items():
        parts.append(f"{name}={value!r}")
    return ", ".join(parts)


class Conv1d(ConvNd):
    """1-D convolution: input (N, C_in, L)."""

    dim = 1


class Conv2d(ConvNd):
    """2-D convolution: input (N, C_in, H, W)."""

    dim = 2


class Conv3d(ConvNd):
    """3-D convolution: input (N, C_in, D, H, W)."""

    dim = 3
