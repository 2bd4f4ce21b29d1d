"""Transposed convolution ("deconvolution"), article 001 §6.

It is the adjoint of a convolution: with C the (sparse) matrix of conv(·, w), y = Cᵀx, so
⟨conv(x, w), y⟩ = ⟨x, conv_transpose(y, w)⟩. Equivalently: insert s−1 zeros between input elements, pad
d·(k−1)−p on each side, and correlate with the flipped kernel. Output size per dim:
o = (i − 1)·s − 2p + d·(k − 1) + output_padding + 1; ``output_size=`` in ``forward`` picks output_padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import IntOrTuple, check_groups, check_input, expand
from ..analysis.shapes import transposed_output_size
from .conv import conv_repr, init_conv_
from ..analysis.cost import LayerCost, transposed_conv_macs, weight_cost

_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


class TransposedConvNd(nn.Module):
    """y = Cᵀ x per group. Shapes: input (N, C_in, *S) → (N, C_out, *O); weight (C_in, C_out/groups, *K)."""

    dim: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_groups(in_channels, out_channels, groups)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = expand(kernel_size, self.dim, "kernel_size")
        self.stride = expand(stride, self.dim, "stride")
        self.padding = expand(padding, self.dim, "padding", minimum=0)
        self.dilation = expand(dilation, self.dim, "dilation")
        self.output_padding = expand(output_padding, self.dim, "output_padding", minimum=0)
        for a, s, d in zip(self.output_padding, self.stride, self.dilation):
            if a >= max(s, d):
                raise ValueError(
                    f"output_padding={output_padding!r} must be smaller than max(stride, dilation)="
                    f"{max(s, d)} in every dimension"
                )
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_conv_(self.weight, self.bias)

    def output_sizes(self, spatial: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The smallest and largest spatial output sizes an input of size ``spatial`` allows."""
        smallest = transposed_output_size(tuple(spatial), self.kernel_size, self.stride, self.padding, 0, self.dilation)
        span = tuple(max(s, d) - 1 for s, d in zip(self.stride, self.dilation))
        return smallest, tuple(a + b for a, b in zip(smallest, span))  # type: ignore[arg-type]

    def _output_padding(self, spatial: Sequence[int], output_size: Sequence[int] | None) -> tuple[int, ...]:
        if output_size is None:
            return self.output_padding
        wanted = tuple(output_size)[-self.dim:]
        if len(wanted) != self.dim:
            raise ValueError(f"output_size={tuple(output_size)} must give {self.dim} spatial sizes")
        smallest, largest = self.output_sizes(spatial)
        for w, lo, hi in zip(wanted, smallest, largest):
            if not lo <= w <= hi:
                raise ValueError(
                    f"output_size={tuple(wanted)} is not reachable from input size {tuple(spatial)}: "
                    f"each size must lie between {smallest} and {largest}"
                )
        return tuple(w - lo for w, lo in zip(wanted, smallest))

    def forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        check_input(x, self.dim, self.in_channels, type(self).__name__)
        output_padding = self._output_padding(x.shape[2:], output_size)
        out = transposed_output_size(tuple(x.shape[2:]), self.kernel_size, self.stride, self.padding,
                                     output_padding, self.dilation)
        if min(out) < 1:  # type: ignore[type-var]
            raise ValueError(f"{type(self).__name__}: padding={self.padding} leaves an empty output {out} "
                             f"for input size {tuple(x.shape[2:])}")
        return _CONV_TRANSPOSE[self.dim](
            x, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs = N·prod(in spatial)·C_in·(C_out/groups)·prod(k): each input element meets each tap once (the
        zeros a stride inserts are not multiplied). Output size with this layer's ``output_padding``."""
        spatial = transposed_output_size(tuple(input_shape[2:]), self.kernel_size, self.stride, self.padding,
                                         self.output_padding, self.dilation)
        out = (input_shape[0], self.out_channels, *spatial)  # type: ignore[misc]
        return weight_cost(input_shape, out, self.weight.shape, 0 if self.bias is None else self.out_channels,
                           transposed_conv_macs(input_shape, self.weight.shape))

    def extra_repr(self) -> str:
        return conv_repr(self)


class TransposedConv1d(TransposedConvNd):
    dim = 1


class TransposedConv2d(TransposedConvNd):
    dim = 2


class TransposedConv3d(TransposedConvNd):
    dim = 3
