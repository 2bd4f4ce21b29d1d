"""Spatially separable convolution (article 001 §8.1, article 003 §2.2).

A k×k kernel of rank 1 is an outer product column ⊗ row, so the conv splits into a (k×1) conv followed by a
(1×k) conv: 2k instead of k² multiplications per output. With ``mid_channels`` intermediate channels the
layer represents every C_out×C_in×k×k kernel W[o, c] = Σ_m row[o, m] ⊗ col[m, c] (Jaderberg et al. 2014,
scheme 2), exactly when ``mid_channels`` reaches the rank of W reshaped to (C_in·k, C_out·k).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from ..arithmetic.cost import LayerCost, sequential_cost
from ..geometry import IntOrTuple, Padding, check_positive_int, check_window_fits, resolve_geometry
from .base import (Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward,
                   refuse_arguments)
from .conv import Conv2d, native_conv_call, to_numpy


def column_then_row(
    in_channels: int,
    mid_channels: int,
    out_channels: int,
    kernel_size: IntOrTuple,
    stride: IntOrTuple,
    padding: Padding,
    dilation: IntOrTuple,
    groups: tuple[int, int],
    biases: tuple[bool, bool],
    padding_mode: str,
    factory: dict,
) -> tuple[Conv2d, Conv2d]:
    """The (kh×1) conv on H, then the (1×kw) conv on W, each carrying its axis' stride, padding and dilation."""
    g = resolve_geometry(2, kernel_size, stride, padding, dilation)
    k, s, d, pairs = g.kernel_size, g.stride, g.dilation, g.padding_pairs
    column = Conv2d(in_channels, mid_channels, (k[0], 1), (s[0], 1), (pairs[0], (0, 0)), (d[0], 1),
                    groups[0], biases[0], padding_mode, **factory)
    row = Conv2d(mid_channels, out_channels, (1, k[1]), (1, s[1]), ((0, 0), pairs[1]), (1, d[1]),
                 groups[1], biases[1], padding_mode, **factory)
    return column, row


class SpatiallySeparableConv2d(ConvzooLayer, nn.Module):
    """y = row ⋆ (column ⋆ x): a (kh×1) conv C_in→mid (no bias), then a (1×kw) conv mid→C_out (+ bias).

    Only the second conv has a bias, so the layer equals a k×k conv with bias even at zero-padded borders.
    Shapes: (N, C_in, H, W) → (N, C_out, H_out, W_out), as a k×k conv with the same stride/padding/dilation.
    Arguments as ``torch.nn.Conv2d`` less ``groups`` (both convs are dense; ``groups=`` raises a TypeError saying
    so): in_channels … dilation keep torch's positions, everything after is keyword-only, so a torch-ordered
    positional call cannot put its groups into ``bias``. ``mid_channels`` defaults to C_out.
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
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        mid_channels: int | None = None,
        **unsupported: Any,
    ) -> None:
        refuse_arguments(type(self).__name__, unsupported, {
            "groups": "its k×1 and 1×k convs are dense (their width is mid_channels)"})
        super().__init__()
        mid = out_channels if mid_channels is None else check_positive_int(mid_channels, "mid_channels")
        self.in_channels, self.out_channels, self.mid_channels = in_channels, out_channels, mid
        self.column, self.row = column_then_row(
            in_channels, mid, out_channels, kernel_size, stride, padding, dilation, (1, 1), (False, bias),
            padding_mode, {"device": device, "dtype": dtype},
        )
        self.kernel_size = (self.column.kernel_size[0], self.row.kernel_size[1])
        self.stride = (self.column.stride[0], self.row.stride[1])
        self.dilation = (self.column.dilation[0], self.row.dilation[1])
        self.padding_pairs = (self.column.padding_pairs[0], self.row.padding_pairs[1])
        # torch's meaning, as the convs keep it: an int becomes a tuple, an asymmetric padding its pairs
        self.padding = resolve_geometry(2, kernel_size, stride, padding, dilation).padding
        self.padding_mode = padding_mode

    def reset_parameters(self) -> None:
        self.column.reset_parameters()
        self.row.reset_parameters()

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check once per key, under this layer's name (the column conv's would name a Conv2d); the
        runner is the two convs."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        return _column_then_row_run

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Both convs: N·H_mid·W_in·mid·C_in·kh + N·H_out·W_out·C_out·mid·kw MACs (H_mid = H after the column
        conv); elements summed over the two (the middle tensor written and read)."""
        return sequential_cost((self.column, self.row), input_shape)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        """One k×k conv whose kernel is Σ_m row[o, m] ⊗ column[m, c] (the factorisation's claim), with the
        layer's own constructor padding resolved by the oracle."""
        from ..oracle import reference as ref

        column, row = to_numpy(self.column.weight), to_numpy(self.row.weight)
        kernel = np.einsum("omj,mci->ocij", row[:, :, 0, :], column[:, :, :, 0])
        return ref.correlate(x, kernel, to_numpy(self.row.bias), self.stride, self.padding, self.dilation, 1,
                             self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        col, row = native_conv_call(self.column), native_conv_call(self.row)
        return [("native", "F.conv2d k×1 + F.conv2d 1×k", lambda x: row(col(x)))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Truncated SVD of W reshaped to (C_in·kh, C_out·kw) (Jaderberg et al. 2014, scheme 2): W[o, c, i, j] =
        Σ_m row[o, m, j]·col[m, c, i]; exact when ``mid_channels`` reaches the rank."""
        from ..dense_kernels import load_, relative_frobenius_error

        out, cin, kh, kw = weight.shape
        if (kh, kw) != self.kernel_size:
            raise TypeError(f"kernel {kh}×{kw} cannot be factored into this layer's {self.kernel_size} k×1 and 1×k")
        matrix = weight.permute(1, 2, 0, 3).reshape(cin * kh, out * kw)
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        rank = min(self.mid_channels, s.numel())
        scale = s[:rank].sqrt()
        column = weight.new_zeros(self.mid_channels, cin, kh)
        row = weight.new_zeros(out, self.mid_channels, kw)
        column[:rank] = (u[:, :rank] * scale).T.reshape(rank, cin, kh)
        row[:, :rank] = (vh[:rank].T * scale).reshape(out, kw, rank).permute(0, 2, 1)
        load_(self.column.weight, column)
        load_(self.row.weight, row)
        load_(self.row.bias, bias)
        return relative_frobenius_error(torch.einsum("omj,mci->ocij", row, column), weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        mid = self.column.cost(tuple(in_shape)).output_shape
        return step(self.row, step(self.column, field, in_shape), mid)

    def stages(self) -> list[Stage]:
        return [Stage(f"column {self.kernel_size[0]}×1", self.column, module=self.column),
                Stage(f"row 1×{self.kernel_size[1]}", self.row, module=self.row)]

    def extra_repr(self) -> str:
        return geometry_repr(self, {"mid_channels": self.mid_channels},
                             bias=getattr(self.row, "bias", None) is not None)


def _column_then_row_run(m: SpatiallySeparableConv2d, x: torch.Tensor) -> torch.Tensor:
    modules = m._modules  # dict look-ups, not nn.Module.__getattr__: this runs every call
    return modules["row"](modules["column"](x))  # type: ignore[misc]


def separate_kernel(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Best rank-1 split of a 2-D kernel by SVD: kernel ≈ column ⊗ row.

    Returns (column (kh,), row (kw,), rel_error = ‖K − column⊗row‖_F / ‖K‖_F). The Sobel kernel
    [[1, 0, −1], [2, 0, −2], [1, 0, −1]] separates exactly: [1, 2, 1] ⊗ [1, 0, −1] up to scale.
    """
    k = torch.as_tensor(kernel)
    if k.dim() != 2:
        raise ValueError(f"kernel must be 2-D (kh, kw), got shape {tuple(k.shape)}")
    k = k.to(torch.float64) if not k.is_floating_point() else k
    dtype = k.dtype
    if k.element_size() < 4:  # float16 / bfloat16: no SVD kernel (CPU), too coarse to fit in: fit in float32
        k = k.float()
    u, s, vh = torch.linalg.svd(k, full_matrices=False)
    scale = s[0].sqrt()
    column, row = u[:, 0] * scale, vh[0] * scale
    if column[column.abs().argmax()] < 0:  # SVD's sign is arbitrary: make the column's peak positive
        column, row = -column, -row
    norm = torch.linalg.norm(k)
    error = torch.linalg.norm(k - torch.outer(column, row)) / norm if norm > 0 else torch.zeros(())
    return column.to(dtype), row.to(dtype), float(error)
