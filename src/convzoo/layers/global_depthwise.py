"""Global depthwise convolution (GDC; MobileFaceNet, Chen et al. 2018; article 003 §2.1).

A depthwise conv whose kernel covers the whole feature map, no padding: y[n, o] = b[o] + Σ_{h,w} w[o, h, w]·x[n, o // m, h, w]
with depth multiplier m = C_out / C_in. Unlike global average pooling every position has its own learned weight.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from ..analysis.cost import LayerCost, conv_cost
from .base import Alternative, ConvzooLayer, Stage, check_input, check_positive_int, expand, init_conv_
from .fastpaths import GlobalDepthwiseSum, GlobalDepthwiseSumNHWC, is_channels_last

if TYPE_CHECKING:
    import numpy as np


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def _exporting() -> bool:
    """torch.export (also under the ONNX exporter), jit tracing or ONNX export: a graph made for deployment."""
    return bool(getattr(torch.compiler, "is_exporting", lambda: False)() or torch.jit.is_tracing()
                or torch.onnx.is_in_onnx_export())


class GlobalDepthwiseConv2d(ConvzooLayer, LazyModuleMixin, nn.Module):
    """(N, C_in, H, W) → (N, C_out, 1, 1); weight (C_out, 1, H, W), bias (C_out,); C_out a multiple of C_in.

    ``kernel_size`` is the feature map's size; with ``kernel_size=None`` it is taken from the first input (lazy,
    like ``torch.nn.LazyConv2d``), and inputs of any other size are rejected afterwards. There is no stride,
    padding or dilation: the kernel is the map.
    """

    dim = 2
    weight: nn.Parameter

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | Sequence[int] | None = None,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.out_channels = self.in_channels if out_channels is None else check_positive_int(out_channels, "out_channels")
        if self.out_channels % self.in_channels:
            raise ValueError(f"out_channels={self.out_channels} must be a multiple of in_channels={self.in_channels} "
                             "(a depthwise conv: the depth multiplier is out_channels / in_channels)")
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.UninitializedParameter(**factory)
        self.bias = nn.Parameter(torch.empty(self.out_channels, **factory)) if bias else None
        if kernel_size is not None:
            self._materialize(expand(kernel_size, 2, "kernel_size"))

    @property
    def kernel_size(self) -> tuple[int, ...] | None:
        # isinstance, not has_uninitialized_params(): torch.compile traces this (fullgraph) without a graph break.
        return None if isinstance(self.weight, nn.UninitializedParameter) else tuple(self.weight.shape[2:])

    @property
    def depth_multiplier(self) -> int:
        return self.out_channels // self.in_channels

    def _materialize(self, size: tuple[int, ...]) -> None:
        self.weight.materialize((self.out_channels, 1, *size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params():
            init_conv_(self.weight, self.bias)

    def initialize_parameters(self, x: torch.Tensor) -> None:  # called by LazyModuleMixin before the first forward
        if self.has_uninitialized_params():
            check_input(x, 2, self.in_channels, type(self).__name__)
            with torch.no_grad():
                self._materialize(tuple(x.shape[2:]))

    def _check_size(self, spatial: Sequence[int]) -> None:
        if self.kernel_size is not None and tuple(spatial) != self.kernel_size:
            raise ValueError(
                f"GlobalDepthwiseConv2d has kernel_size={self.kernel_size} (the whole feature map) but got an "
                f"input of spatial size {tuple(spatial)}; the input size must equal the kernel size"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, 2, self.in_channels, type(self).__name__)
        self._check_size(x.shape[2:])
        # The same sum as F.conv2d(x, w, b, groups=C_in), y[n, c·m + j] = Σ_p x[n, c, p] · w[c·m + j, p], with x
        # read in its own layout (see ``forward_path`` and ``layers/fastpaths.py``): NCHW x (N, C, P) as one batched
        # matmul over channels, (C, N, P) @ (C, P, m) (``GlobalDepthwiseSum``); channels_last x viewed (N, P, C) as
        # per-j products with w laid out (m, P, C), summed over P (``GlobalDepthwiseSumNHWC``). Both have a
        # backward writing ∂x in x's layout. F.conv2d takes 10 / 140 ms here (8×64×56², m = 2, 2 cores).
        n, c = x.shape[:2]
        if _exporting():  # a deployed graph: the depthwise conv that runtimes and int8 quantizers have kernels for
            return F.conv2d(x, self.weight, self.bias, groups=c)
        m = self.depth_multiplier
        w = self.weight.reshape(c, m, -1)
        if _tracing():  # compilers see plain ops
            y = torch.bmm(x.contiguous().flatten(2).transpose(0, 1), w.transpose(1, 2)).transpose(0, 1)  # (N, C, m)
        elif is_channels_last(x):
            y = GlobalDepthwiseSumNHWC.apply(x.permute(0, 2, 3, 1).reshape(n, -1, c), w.permute(1, 2, 0).contiguous())
        else:
            y = GlobalDepthwiseSum.apply(x.flatten(2), w)
        y = y.reshape(n, self.out_channels).contiguous()  # (N, C_out) in order: both formats at 1×1
        y = y if self.bias is None else y + self.bias
        return y.view(n, self.out_channels, 1, 1)

    def forward_path(self, x: torch.Tensor) -> str:
        """'matmul' (x read in place, one bmm) for NCHW input, 'channels_last products + sum' (x read in place)
        for channels_last input."""
        return "channels_last products + sum" if is_channels_last(x) and not _tracing() else "matmul"

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs = N·C_out·H·W (one weight per input element and output channel); weight (C_out, 1, H, W) with H×W
        the input size, also before the lazy weight is materialised."""
        spatial = tuple(input_shape[2:])
        self._check_size(spatial)
        out = (input_shape[0], self.out_channels, *(1,) * len(spatial))
        return conv_cost(input_shape, out, (self.out_channels, 1, *spatial), 0 if self.bias is None else self.out_channels)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        return ref.correlate(x, to_numpy(self.weight), to_numpy(self.bias), groups=self.in_channels)

    def native_alternatives(self) -> list[Alternative]:
        return [("native", "F.conv2d(groups=C)", lambda x: F.conv2d(x, self.weight, self.bias, groups=self.in_channels))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError("GlobalDepthwiseConv2d reduces the map to 1×1: it cannot take the place of a same-size conv")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The kernel is the map: every output reads the whole input."""
        return field.whole(tuple(in_shape[2:]))

    def stages(self) -> list[Stage]:
        return [Stage("weighted global sum per channel", self, module=self)]

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
                + ("" if self.bias is not None else ", bias=False"))
