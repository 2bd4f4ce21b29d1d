"""Deformable convolution v1 (Dai et al. 2017, arXiv:1703.06211) and v2 (Zhu et al. 2018, arXiv:1811.11168);
article 003 §2.2.

y(p) = Σ_t w_t · m_t(p) · x(p·s + t·d + Δp_t(p)), x read by bilinear interpolation (zero outside). The
offsets Δp (and, for v2, the masks m = sigmoid(·)) come from an ordinary conv on the same input with the same
kernel/stride/padding/dilation. It is zero-initialised, so at init v1 equals a plain conv with
``weight``/``bias`` and v2 (m = 0.5) equals half of it plus the bias. Computed by ``torchvision.ops.deform_conv2d``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import deform_conv2d

from .base import IntOrTuple, Padding, check_groups, check_input, check_positive_int, check_window_fits, expand
from ..analysis.shapes import conv_output_shape
from .conv import Conv2d, conv_repr, init_conv_
from ..analysis.cost import LayerCost, compose, conv_macs, elementwise_cost, numel


class DeformConv2d(nn.Module):
    """Shapes: input (N, C_in, H, W) → (N, C_out, H_out, W_out); weight (C_out, C_in/groups, kh, kw);
    offset (N, 2·offset_groups·kh·kw, H_out, W_out) in torchvision's layout (dy, dx per tap, taps row-major);
    mask (N, offset_groups·kh·kw, H_out, W_out). ``offset_conv`` predicts both (offsets first, then masks).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        offset_groups: int = 1,
        modulated: bool = False,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_groups(in_channels, out_channels, groups)
        check_positive_int(offset_groups, "offset_groups")
        if in_channels % offset_groups:
            raise ValueError(f"offset_groups={offset_groups} must divide in_channels={in_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.offset_groups, self.modulated = offset_groups, modulated
        factory = {"device": device, "dtype": dtype}
        kernel = expand(kernel_size, 2, "kernel_size")
        fields_per_tap = 3 if modulated else 2  # (dy, dx) and, for v2, the mask
        # The offset conv carries (and validates) the geometry; the deformable conv uses the same.
        self.offset_conv = Conv2d(in_channels, fields_per_tap * offset_groups * kernel[0] * kernel[1], kernel,
                                  stride, padding, dilation, **factory)
        self.kernel_size, self.stride, self.dilation = (
            self.offset_conv.kernel_size, self.offset_conv.stride, self.offset_conv.dilation)
        pairs = self.offset_conv._pairs
        if any(lo != hi for lo, hi in pairs):
            raise ValueError(f"padding={padding!r} must be symmetric for DeformConv2d (got {pairs})")
        self.padding = tuple(lo for lo, _ in pairs)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_conv_(self.weight, self.bias)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    @property
    def num_taps(self) -> int:
        return self.kernel_size[0] * self.kernel_size[1]

    def _check_field(self, field: torch.Tensor, name: str, per_tap: int, x: torch.Tensor) -> None:
        out = conv_output_shape(x.shape[2:], self.kernel_size, self.stride, self.offset_conv._pairs, self.dilation)
        expected = (x.shape[0], per_tap * self.offset_groups * self.num_taps, *out)
        if tuple(field.shape) != expected:
            raise ValueError(f"{name} must have shape {expected} (N, {per_tap}·offset_groups·kh·kw, H_out, W_out), "
                             f"got {tuple(field.shape)}")

    def forward(self, x: torch.Tensor, offset: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, 2, self.in_channels, "DeformConv2d")
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.offset_conv._pairs, "DeformConv2d")
        if mask is not None and not self.modulated:
            raise ValueError("mask is only used by deformable conv v2: construct DeformConv2d with modulated=True")
        if offset is None or (self.modulated and mask is None):
            predicted = self.offset_conv(x)
            n_offsets = 2 * self.offset_groups * self.num_taps
            offset = predicted[:, :n_offsets] if offset is None else offset
            if self.modulated and mask is None:
                mask = torch.sigmoid(predicted[:, n_offsets:])
        self._check_field(offset, "offset", 2, x)
        if mask is not None:
            self._check_field(mask, "mask", 1, x)
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Offset conv + (v2: sigmoid of the mask logits) + the deformable conv:

        - offset conv: N·HW_out·(3 or 2)·G·k²·C_in·k² MACs (G = offset_groups);
        - sampling: every sampled value x(p + Δp) is a bilinear mix of 4 neighbours, 4 multiply-adds, counted as
          4·N·C_in·k²·HW_out other ops (the 4 reads hit the input; traffic counts the input once);
        - v2 modulation: N·C_in·k²·HW_out mask multiplies, other ops;
        - the conv: N·HW_out·C_out·(C_in/g)·k² MACs; elements = input + offsets (+ mask) + weight + bias + output.
        """
        offset = self.offset_conv.cost(input_shape)
        n, c = input_shape[0], input_shape[1]
        out = (n, self.out_channels, *offset.output_shape[2:])
        positions = n * numel(out[2:])
        samples = positions * c * self.num_taps
        fields = positions * self.offset_groups * self.num_taps
        parts = [offset]
        if self.modulated:
            parts.append(elementwise_cost((n, self.offset_groups * self.num_taps, *out[2:]), 1))  # sigmoid
        params = self.weight.numel() + (0 if self.bias is None else self.out_channels)
        other = 4 * samples + (samples if self.modulated else 0)
        moved = numel(input_shape) + 2 * fields + (fields if self.modulated else 0) + params + numel(out)
        parts.append(LayerCost(params, conv_macs(out, self.weight.shape), other, moved, out))
        return compose(parts)

    def extra_repr(self) -> str:
        extra = {}
        if self.offset_groups != 1:
            extra["offset_groups"] = self.offset_groups
        if self.modulated:
            extra["modulated"] = True
        return conv_repr(self, extra)

