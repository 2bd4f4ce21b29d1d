"""1×1 (pointwise) convolution: a per-pixel linear map across channels (article 001 §4).

With ``groups > 1`` it is ShuffleNet's pointwise group convolution (article 001 §12); with ``stride > 1`` ResNet's
1×1 downsample. It is a ``torch.nn.Conv{1,2,3}d`` whose kernel is 1 in every dim.
"""

from __future__ import annotations

import torch
from torch import nn

from ..geometry import IntOrTuple, Padding, expand
from .conv import ConvNd


class PointwiseConvNd(ConvNd):
    """y[n, o, p] = b[o] + Σ_{c ∈ group(o)} w[o, c] · x[n, c, p·s].

    Shapes: input (N, C_in, *S) → output (N, C_out, *O); weight (C_out, C_in/groups, 1, …, 1). Arguments as
    ``torch.nn.Conv*d``; ``kernel_size`` must be 1 (it is there so that torch-style positional calls work).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 1,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if expand(kernel_size, self.dim, "kernel_size") != (1,) * self.dim:
            raise ValueError(f"kernel_size={kernel_size!r} must be 1: a pointwise conv has no spatial extent")
        super().__init__(in_channels, out_channels, 1, stride, padding, dilation, groups, bias, padding_mode,
                         device, dtype)


class PointwiseConv1d(PointwiseConvNd, nn.Conv1d):
    """1-D 1×1 (pointwise) convolution: input (N, C_in, L); see ``PointwiseConvNd``."""

    dim = 1


class PointwiseConv2d(PointwiseConvNd, nn.Conv2d):
    """2-D 1×1 (pointwise) convolution: input (N, C_in, H, W); see ``PointwiseConvNd``."""

    dim = 2


class PointwiseConv3d(PointwiseConvNd, nn.Conv3d):
    """3-D 1×1 (pointwise) convolution: input (N, C_in, D, H, W); see ``PointwiseConvNd``."""

    dim = 3
