"""Sub-pixel convolution (Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", https://arxiv.org/abs/1609.05158) with ICNR initialisation (Aitken et al.
2017, "Checkerboard artifact free sub-pixel convolution", https://arxiv.org/abs/1707.02937).

Upsampling by r: a conv at low resolution to C_out·r^D channels, then the periodic shuffle PS (eq. 4) puts the
r^D channels of each output channel on the r^D sub-pixel positions. ICNR initialises the r^D sub-kernels of every
output channel to the SAME kernel, so at initialisation the layer is a conv followed by nearest-neighbour
upsampling: no checkerboard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, elementwise_cost
from ..functional import channels_to_first, channels_to_last
from ..geometry import IntOrTuple, Padding, check_choice, check_positive_int, check_window_fits
from .base import Alternative, ConvzooLayer, Runner, Stage, geometry_repr, init_conv_, input_checked, planned_forward
from .conv import Conv1d, Conv2d, Conv3d, ConvNd, native_conv_call, to_numpy
from .formats import channels_last_format

if TYPE_CHECKING:
    import numpy as np

INITS = ("icnr", "default")


def pixel_shuffle(x: torch.Tensor, r: int) -> torch.Tensor:
    """(N, C·r^D, *S) → (N, C, *(r·S)): channel c·r^D + (i_1…i_D in base r) goes to sub-pixel (i_1, …, i_D).

    One copy in the input's memory format: a channels-last input is shuffled as (N, *S, C, r, …, r) →
    (N, S_1, r, …, S_D, r, C), so the output is channels-last too."""
    n, channels, *spatial = x.shape
    dim = len(spatial)
    c = channels // r**dim
    upsampled = [s * r for s in spatial]
    if channels_last_format(x) is not None:
        y = channels_to_last(x).reshape(n, *spatial, c, *(r,) * dim)  # a view of the channels-last memory
        order = [0] + [axis for d in range(dim) for axis in (1 + d, 2 + dim + d)] + [1 + dim]
        return channels_to_first(y.permute(order).reshape(n, *upsampled, c))
    y = x.reshape(n, c, *(r,) * dim, *spatial)
    order = [0, 1] + [axis for d in range(dim) for axis in (2 + dim + d, 2 + d)]
    return y.permute(order).reshape(n, c, *upsampled)


class PixelShuffleNd(nn.Module):
    """The periodic shuffle PS in D spatial dims (``torch.nn.PixelShuffle``'s order in 2-D)."""

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = check_positive_int(upscale_factor, "upscale_factor")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle(x, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class SubPixelConvNd(ConvzooLayer, nn.Module):
    """y = PS(W ⋆ x + b), W: (C_out·r^D, C_in/groups, *K). Shapes: (N, C_in, *S) → (N, C_out, *(r·O)), O the
    conv's output size.

    Arguments as ``torch.nn.Conv*d`` (they describe the low-resolution conv ``.conv``); keyword-only
    ``upscale_factor`` r (default 2) and ``init``: 'icnr' (default: the r^D sub-kernels of each output channel start
    equal, Aitken et al.) or 'default' (torch's init of every filter independently).
    """

    _conv: ClassVar[type[ConvNd]]
    dim: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        upscale_factor: int = 2,
        init: str = "icnr",
    ) -> None:
        super().__init__()
        self.upscale_factor = check_positive_int(upscale_factor, "upscale_factor")
        self.init = check_choice(init, "init", INITS)
        out_channels = check_positive_int(out_channels, "out_channels")
        self.conv = self._conv(in_channels, out_channels * self.upscale_factor**self.dim, kernel_size, stride, padding,
                               dilation, groups, bias, padding_mode, device, dtype)
        self.shuffle = PixelShuffleNd(self.upscale_factor)
        self.in_channels, self.out_channels = self.conv.in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = self.conv.kernel_size, self.conv.stride, self.conv.dilation
        self.padding, self.padding_pairs, self.groups = self.conv.padding, self.conv.padding_pairs, self.conv.groups
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """ICNR: draw a kernel for C_out channels (torch's init, fan-in of the conv) and copy it to the r^D
        sub-kernels of each output channel; 'default': torch's init of the whole conv."""
        if self.init == "default":
            self.conv.reset_parameters()
            return
        copies = self.upscale_factor**self.dim
        w = self.conv.weight
        base = torch.empty(self.out_channels, *w.shape[1:], device=w.device, dtype=w.dtype)
        bias = None if self.conv.bias is None else torch.empty(self.out_channels, device=w.device, dtype=w.dtype)
        init_conv_(base, bias)
        with torch.no_grad():
            w.copy_(base.repeat_interleave(copies, dim=0))
            if bias is not None:
                self.conv.bias.copy_(bias.repeat_interleave(copies))

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check once per key, under this layer's name (the conv's would name a Conv*d with C_out·r^D
        channels); the runner is the conv and the shuffle."""
        conv = self.conv
        check_window_fits(x.shape[2:], conv.kernel_size, conv.dilation, conv.padding_pairs, type(self).__name__,
                          conv.padding_mode)
        return _subpixel_run

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Conv MACs N·prod(O)·C_out·r^D·(C_in/g)·prod(k) (all at low resolution) + the shuffle: 0 ops, its tensor
        read and written once."""
        conv = self.conv.cost(tuple(input_shape))
        n, _, *spatial = conv.output_shape
        out = (n, self.out_channels, *(s * self.upscale_factor for s in spatial))
        return conv + elementwise_cost(out, 0)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        low = ref.correlate(x, to_numpy(self.conv.weight), to_numpy(self.conv.bias), self.stride, self.padding,
                            self.dilation, self.groups, self.conv.padding_mode)
        return ref.pixel_shuffle(low, self.upscale_factor)

    def native_alternatives(self) -> list[Alternative]:
        conv, r = native_conv_call(self.conv), self.upscale_factor
        if self.dim == 2:
            return [("native", "F.conv2d + F.pixel_shuffle", lambda x: F.pixel_shuffle(conv(x), r))]
        return [("native", "F.conv + reshape/permute", lambda x: pixel_shuffle(conv(x), r))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError("a sub-pixel conv upsamples (its output is r× larger per dim): it cannot take the place of a "
                        "same-size convolution")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The conv's window at low resolution, then an upsampling by r that reads one input per output."""
        return step(self.conv, field, in_shape).upsampled((self.upscale_factor,) * self.dim, "nearest")

    def stages(self) -> list[Stage]:
        r = self.upscale_factor
        return [Stage(f"conv to C_out·{r}^{self.dim} channels", self.conv, module=self.conv),
                Stage(f"pixel shuffle ×{r}", self.shuffle)]

    def extra_repr(self) -> str:
        return geometry_repr(self, {"upscale_factor": self.upscale_factor, "init": self.init}, source=self.conv)


def _subpixel_run(m: SubPixelConvNd, x: torch.Tensor) -> torch.Tensor:
    modules = m._modules  # dict look-ups, not nn.Module.__getattr__: this runs every call
    return modules["shuffle"](modules["conv"](x))  # type: ignore[misc]


class SubPixelConv1d(SubPixelConvNd):
    """1-D ``SubPixelConvNd``: input (N, C, L)."""

    dim, _conv = 1, Conv1d


class SubPixelConv2d(SubPixelConvNd):
    """2-D ``SubPixelConvNd``: input (N, C, H, W)."""

    dim, _conv = 2, Conv2d


class SubPixelConv3d(SubPixelConvNd):
    """3-D ``SubPixelConvNd``: input (N, C, D, H, W)."""

    dim, _conv = 3, Conv3d
