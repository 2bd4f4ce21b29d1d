"""Flattened convolution (Jin, Dundar & Culurciello 2014; article 001 §9, article 003 §2.2).

A C_in×k×k filter bank is replaced by three 1-D stages: L, a 1×1 conv across channels (C_in → C_out);
V, a per-channel (k×1) conv; H, a per-channel (1×k) conv. Each has a bias; there is no nonlinearity inside.
Parameters: C_in·C_out + 2k·C_out (+ 3·C_out biases) instead of C_in·C_out·k².
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.cost import LayerCost, sequential_cost
from .base import Alternative, ConvzooLayer, IntOrTuple, Padding, Stage
from .conv import native_conv_call
from .fastpaths import nchw_on_cpu
from .pointwise import PointwiseConv2d
from .separable import column_then_row

if TYPE_CHECKING:
    import numpy as np


def rank1_filters(weight: torch.Tensor, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best rank-1 fit W[o] ≈ a[o] ⊗ b[o] ⊗ c[o] of each filter (C_in × kh × kw) by the higher-order power
    method, started from the leading singular vectors of each unfolding (De Lathauwer et al. 2000)."""
    out, cin, kh, kw = weight.shape
    a = torch.linalg.svd(weight.reshape(out, cin, -1), full_matrices=False)[0][:, :, 0]
    b = torch.linalg.svd(weight.permute(0, 2, 1, 3).reshape(out, kh, -1), full_matrices=False)[0][:, :, 0]
    c = torch.linalg.svd(weight.permute(0, 3, 1, 2).reshape(out, kw, -1), full_matrices=False)[0][:, :, 0]
    for _ in range(iterations):
        a = F.normalize(torch.einsum("ocij,oi,oj->oc", weight, b, c), dim=1)
        b = F.normalize(torch.einsum("ocij,oc,oj->oi", weight, a, c), dim=1)
        c = torch.einsum("ocij,oc,oi->oj", weight, a, b)  # carries the scale
    return a, b, c


class FlattenedConv2d(ConvzooLayer, nn.Module):
    """y = H ⋆ (V ⋆ (L x + b_L) + b_V) + b_H, with V and H depthwise.

    Shapes: (N, C_in, H, W) → (N, C_out, H_out, W_out) as a k×k conv with the same stride/padding/dilation.
    Arguments as ``torch.nn.Conv2d`` (no groups: L is dense, V and H are per channel).
    """

    dim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lateral = PointwiseConv2d(in_channels, out_channels, bias=bias, **factory)
        self.vertical, self.horizontal = column_then_row(
            out_channels, out_channels, out_channels, kernel_size, stride, padding, dilation,
            (out_channels, out_channels), (bias, bias), padding_mode, factory,
        )
        self.kernel_size = (self.vertical.kernel_size[0], self.horizontal.kernel_size[1])
        self.stride = (self.vertical.stride[0], self.horizontal.stride[1])
        self.dilation = (self.vertical.dilation[0], self.horizontal.dilation[1])
        self.padding_pairs = (self.vertical.padding_pairs[0], self.horizontal.padding_pairs[1])
        self.padding, self.padding_mode = padding, padding_mode

    def reset_parameters(self) -> None:
        for conv in (self.lateral, self.vertical, self.horizontal):
            conv.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if nchw_on_cpu(x):  # one NCHW → NHWC copy in and one back, instead of a round trip per depthwise stage
            return self.horizontal(self.vertical(self.lateral(x.contiguous(memory_format=torch.channels_last)))
                                   ).contiguous()
        return self.horizontal(self.vertical(self.lateral(x)))

    def forward_path(self, x: torch.Tensor) -> str:
        """NCHW data on CPU runs the three stages in channels_last (converted once in and once out)."""
        if nchw_on_cpu(x):
            inner = super().forward_path(x.contiguous(memory_format=torch.channels_last))
            return f"channels_last round trip: {inner}"
        return super().forward_path(x)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Three convs: N·H·W·C_out·C_in (1×1) + N·H_mid·W·C_out·kh (k×1 depthwise) + N·H_out·W_out·C_out·kw
        (1×k depthwise) MACs; elements summed over the three (intermediates written and read)."""
        return sequential_cost((self.lateral, self.vertical, self.horizontal), input_shape)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        for conv in (self.lateral, self.vertical, self.horizontal):
            x = conv.reference_output(x)
        return x

    def native_alternatives(self) -> list[Alternative]:
        lat, ver, hor = (native_conv_call(c) for c in (self.lateral, self.vertical, self.horizontal))
        return [("native", "3 × F.conv2d", lambda x: hor(ver(lat(x))))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Rank-1 (CP) decomposition of each filter by the higher-order power method: W[o] ≈ L[o] ⊗ V[o] ⊗ H[o]."""
        from ..conversion.kernels import fit_kernel, load_, relative_frobenius_error

        fitted = fit_kernel(weight, self.kernel_size)
        lateral, vertical, horizontal = rank1_filters(fitted)
        load_(self.lateral.weight, lateral)
        load_(self.vertical.weight, vertical)
        load_(self.horizontal.weight, horizontal)
        for conv in (self.lateral, self.vertical):
            load_(conv.bias, None)
        load_(self.horizontal.bias, bias)
        effective = torch.einsum("oc,oi,oj->ocij", lateral, vertical, horizontal)
        return relative_frobenius_error(fit_kernel(effective, tuple(weight.shape[2:])), weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        mid = self.vertical.cost(self.lateral.cost(tuple(in_shape)).output_shape).output_shape
        return step(self.horizontal, step(self.vertical, field, in_shape), mid)

    def stages(self) -> list[Stage]:
        return [Stage("L: 1×1 across channels", self.lateral, module=self.lateral),
                Stage(f"V: {self.kernel_size[0]}×1 per channel", self.vertical, module=self.vertical),
                Stage(f"H: 1×{self.kernel_size[1]} per channel", self.horizontal, module=self.horizontal)]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
