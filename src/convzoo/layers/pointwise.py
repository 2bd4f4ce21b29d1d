"""1×1 (pointwise) convolution: a per-pixel linear map across channels (article 001 §4).

With ``groups > 1`` it is ShuffleNet's pointwise group convolution (article 001 §12).
"""

from __future__ import annotations

import torch

from .conv import ConvNd


class PointwiseConvNd(ConvNd):
    """y[n, o, p] = b[o] + Σ_{c ∈ group(o)} w[o, c] · x[n, c, p].

    Shapes: input (N, C_in, *S) → output (N, C_out, *S); weight (C_out, C_in/groups, 1, …, 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        groups: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, 1, groups=groups, bias=bias, device=device, dtype=dtype)


class PointwiseConv1d(PointwiseConvNd):
    dim = 1


class PointwiseConv2d(PointwiseConvNd):
    dim = 2


class PointwiseConv3d(PointwiseConvNd):
    dim = 3
