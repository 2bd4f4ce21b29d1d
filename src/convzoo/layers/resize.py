"""Resize-convolution: upsample, then a 'same' convolution (Odena et al. 2016, "Deconvolution and
Checkerboard Artifacts"; article 001 §6). Every output pixel sees the same number of kernel taps, so
unlike a stride-s transposed conv with k not divisible by s there is no checkerboard overlap pattern.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import IntOrTuple, check_choice, expand
from .conv import ConvNd, conv_repr
from ..analysis.cost import LayerCost, interpolation_cost

_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}


class ResizeConvNd(ConvNd):
    """y = conv_same(upsample(x, scale_factor, mode)). Shapes: (N, C_in, *S) → (N, C_out, *(S·scale_factor)).

    ``mode`` is 'nearest', or the dimension's linear interpolation ('linear' / 'bilinear' / 'trilinear',
    align_corners=False). Weight (C_out, C_in, *K) as in ``Conv*d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        scale_factor: IntOrTuple = 2,
        mode: str = "nearest",
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding="same", bias=bias,
                         padding_mode=padding_mode, device=device, dtype=dtype)
        self.scale_factor = expand(scale_factor, self.dim, "scale_factor")
        self.upsample_mode = check_choice(mode, "mode", ("nearest", _INTERPOLATION[self.dim]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        size = tuple(s * f for s, f in zip(x.shape[2:], self.scale_factor))
        linear = self.upsample_mode != "nearest"
        up = F.interpolate(x, size=size, mode=self.upsample_mode, align_corners=False if linear else None)
        return super().forward(up)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Upsampling (other ops: 1 per output element for nearest, 2^dim for linear) + the 'same' conv on the
        upsampled tensor (MACs N·prod(S·scale)·C_out·C_in·prod(k))."""
        up = (*input_shape[:2], *(s * f for s, f in zip(input_shape[2:], self.scale_factor)))
        return interpolation_cost(input_shape, up, self.upsample_mode) + super().cost(up)

    def extra_repr(self) -> str:
        return conv_repr(self, {"scale_factor": self.scale_factor, "mode": self.upsample_mode})


class ResizeConv1d(ResizeConvNd):
    dim = 1


class ResizeConv2d(ResizeConvNd):
    dim = 2


class ResizeConv3d(ResizeConvNd):
    dim = 3
