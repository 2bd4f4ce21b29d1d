"""Resize-convolution: upsample, then a convolution (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts";
article 001 §6). Every output pixel sees the same number of kernel taps, so unlike a stride-s transposed conv with
k not divisible by s there is no checkerboard overlap pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, interpolation_cost
from ..geometry import IntOrTuple, Padding, check_choice, check_window_fits, expand
from .base import Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward
from .conv import Conv1d, Conv2d, Conv3d, ConvNd, native_conv_call

if TYPE_CHECKING:
    import numpy as np

_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


class ResizeConvNd(ConvzooLayer, nn.Module):
    """y = conv(upsample(x, scale_factor, upsample_mode)): (N, C_in, *S) → (N, C_out, *O), O from S·scale_factor.

    ``upsample_mode`` is 'nearest', or the dimension's linear interpolation ('linear' / 'bilinear' / 'trilinear',
    align_corners=False). The conv takes ``torch.nn.Conv*d``'s arguments; its padding defaults to 'same' — the
    paper's choice, so that the layer scales the size by exactly ``scale_factor`` (torch's default would be 0).
    Parameters: ``conv.weight`` (C_out, C_in/groups, *K), ``conv.bias``.
    """

    _conv: ClassVar[type[ConvNd]]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = "same",
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        scale_factor: IntOrTuple = 2,
        upsample_mode: str = "nearest",
    ) -> None:
        super().__init__()
        self.scale_factor = expand(scale_factor, self.dim, "scale_factor")
        self.upsample_mode = check_choice(upsample_mode, "upsample_mode", ("nearest", _LINEAR[self.dim]))
        self.conv = self._conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                               padding_mode, device, dtype)
        self.in_channels, self.out_channels = self.conv.in_channels, self.conv.out_channels

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1: (N, C_in, *S) → (N, C_in, *(S·scale_factor)), nearest copies or linear interpolation."""
        size = tuple(s * f for s, f in zip(x.shape[2:], self.scale_factor))
        linear = self.upsample_mode != "nearest"
        return F.interpolate(x, size=size, mode=self.upsample_mode, align_corners=False if linear else None)

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The upsampled size and the window check on it once per key, under this layer's name and with the input's
        own size (the conv's message would quote the upsampled size as the input's); the runner is the
        interpolation and the conv."""
        size = tuple(s * f for s, f in zip(x.shape[2:], self.scale_factor))
        conv = self.conv
        where = (f"{type(self).__name__} (its conv reads the input upsampled from {tuple(x.shape[2:])} "
                 f"×{self.scale_factor} to {size})")
        check_window_fits(size, conv.kernel_size, conv.dilation, conv.padding_pairs, where, conv.padding_mode)
        mode = self.upsample_mode
        corners = False if mode != "nearest" else None
        return lambda m, x: m._modules["conv"](F.interpolate(x, size=size, mode=mode, align_corners=corners))

    def _upsampled(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape[:2], *(s * f for s, f in zip(shape[2:], self.scale_factor)))

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Upsampling (other ops: 1 per output element for nearest, 2^dim multiply-adds for linear) + the conv on
        the upsampled tensor (MACs N·prod(O)·C_out·(C_in/groups)·prod(k))."""
        up = self._upsampled(tuple(input_shape))
        return interpolation_cost(input_shape, up, self.upsample_mode) + self.conv.cost(up)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        return self.conv.reference_output(ref.upsample(x, self.scale_factor, self.upsample_mode))

    def native_alternatives(self) -> list[Alternative]:
        conv = native_conv_call(self.conv)
        linear = self.upsample_mode != "nearest"
        return [("native", "F.interpolate + F.conv", lambda x: conv(F.interpolate(
            x, scale_factor=self.scale_factor, mode=self.upsample_mode, align_corners=False if linear else None)))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError(f"{type(self).__name__} upsamples first: it cannot take the place of a same-size convolution")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """Upsampling (jump j/f; nearest reads 1 input, linear 2), then the conv's window on the upsampled map."""
        up = field.upsampled(self.scale_factor, self.upsample_mode)
        return step(self.conv, up, self._upsampled(tuple(in_shape)))

    def stages(self) -> list[Stage]:
        return [Stage(f"upsample ×{self.scale_factor[0]} ({self.upsample_mode})", self.upsample),
                Stage("conv", self.conv, module=self.conv)]

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    def extra_repr(self) -> str:
        return geometry_repr(self, {"scale_factor": self.scale_factor, "upsample_mode": self.upsample_mode},
                             source=self.conv)


class ResizeConv1d(ResizeConvNd):
    """1-D resize-convolution: input (N, C_in, L); see ``ResizeConvNd``."""

    dim, _conv = 1, Conv1d


class ResizeConv2d(ResizeConvNd):
    """2-D resize-convolution: input (N, C_in, H, W); see ``ResizeConvNd``."""

    dim, _conv = 2, Conv2d


class ResizeConv3d(ResizeConvNd):
    """3-D resize-convolution: input (N, C_in, D, H, W); see ``ResizeConvNd``."""

    dim, _conv = 3, Conv3d
