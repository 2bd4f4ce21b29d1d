"""Depthwise and depthwise separable convolution (article 001 §8.2, MobileNet — article 002).

Depthwise: every input channel is convolved with its own ``out_channels / in_channels`` kernels (groups = C_in).
Depthwise separable: depthwise, then a 1×1 pointwise conv mixing channels. For a k×k layer C_in→C_out the
MACs fall from k²·C_in·C_out·HW to (k²·C_in + C_in·C_out)·HW, i.e. by 1/C_out + 1/k².
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..arithmetic.cost import LayerCost, sequential_cost
from ..geometry import IntOrTuple, Padding, check_positive_int, check_window_fits
from .base import (Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward,
                   refuse_arguments)
from .conv import ConvNd, native_conv_call
from .pointwise import PointwiseConv1d, PointwiseConv2d, PointwiseConv3d, PointwiseConvNd

if TYPE_CHECKING:
    import numpy as np

LayerFactory = Callable[[int], nn.Module]


class DepthwiseConvNd(ConvNd):
    """y[n, c·m + j, p] = b + Σ_t w[c·m + j, 0, t] · x[n, c, p·s + t·d], depth multiplier m = C_out / C_in.

    Shapes: input (N, C_in, *S) → output (N, C_out, *O); weight (C_out, 1, *K). Arguments as ``torch.nn.Conv*d``
    with ``groups`` fixed to ``in_channels`` (leave it out, or give that value).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int | None = None,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        in_channels = check_positive_int(in_channels, "in_channels")
        out_channels = check_positive_int(out_channels, "out_channels")
        if out_channels % in_channels:
            raise ValueError(f"out_channels={out_channels} must be a multiple of in_channels={in_channels} "
                             "(the depth multiplier is out_channels / in_channels)")
        if groups is not None and groups != in_channels:
            raise ValueError(f"groups={groups} must equal in_channels={in_channels} for a depthwise conv (or be left out)")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, in_channels, bias,
                         padding_mode, device, dtype)

    @property
    def depth_multiplier(self) -> int:
        return self.out_channels // self.in_channels


class DepthwiseConv1d(DepthwiseConvNd, nn.Conv1d):
    """1-D depthwise convolution: input (N, C_in, L); see ``DepthwiseConvNd``."""

    dim = 1


class DepthwiseConv2d(DepthwiseConvNd, nn.Conv2d):
    """2-D depthwise convolution: input (N, C_in, H, W); see ``DepthwiseConvNd``."""

    dim = 2


class DepthwiseConv3d(DepthwiseConvNd, nn.Conv3d):
    """3-D depthwise convolution: input (N, C_in, D, H, W); see ``DepthwiseConvNd``."""

    dim = 3


class DepthwiseSeparableConvNd(ConvzooLayer, nn.Module):
    """Depthwise k×k conv (C_in → C_in·m), then pointwise 1×1 conv (C_in·m → C_out).

    When given, ``norm_layer(channels)`` and ``activation()`` follow each of the two convs, as in MobileNet's
    block (conv → BN → ReLU). Shapes: (N, C_in, *S) → (N, C_out, *O). Arguments as ``torch.nn.Conv*d`` less
    ``groups`` (the depthwise stage has groups = C_in, the pointwise stage 1; ``groups=`` raises a TypeError saying
    so): in_channels … dilation keep torch's positions, everything after is keyword-only, so a torch-ordered
    positional call cannot put its groups into ``bias``. ``depth_multiplier`` m, ``norm_layer``, ``activation``.
    """

    _depthwise: ClassVar[type[DepthwiseConvNd]]
    _pointwise: ClassVar[type[PointwiseConvNd]]

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
        depth_multiplier: int = 1,
        norm_layer: LayerFactory | None = None,
        activation: Callable[[], nn.Module] | None = None,
        **unsupported: Any,
    ) -> None:
        refuse_arguments(type(self).__name__, unsupported, {
            "groups": "its depthwise stage is groups=in_channels and its pointwise stage dense (groups=1)"})
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        mid = check_positive_int(in_channels, "in_channels") * check_positive_int(depth_multiplier, "depth_multiplier")
        self.depthwise = self._depthwise(in_channels, mid, kernel_size, stride, padding, dilation, None, bias,
                                         padding_mode, **factory)
        self.depthwise_norm = norm_layer(mid) if norm_layer else nn.Identity()
        self.depthwise_act = activation() if activation else nn.Identity()
        self.pointwise = self._pointwise(mid, out_channels, bias=bias, **factory)
        self.pointwise_norm = norm_layer(out_channels) if norm_layer else nn.Identity()
        self.pointwise_act = activation() if activation else nn.Identity()
        self.in_channels, self.out_channels = self.depthwise.in_channels, self.pointwise.out_channels
        self.kernel_size, self.stride, self.dilation = (self.depthwise.kernel_size, self.depthwise.stride,
                                                        self.depthwise.dilation)
        self.padding, self.padding_pairs = self.depthwise.padding, self.depthwise.padding_pairs
        self.padding_mode = self.depthwise.padding_mode

    def reset_parameters(self) -> None:
        for module in (self.depthwise, self.depthwise_norm, self.pointwise, self.pointwise_norm):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check once per key, under this layer's name (the depthwise stage's would name itself); the
        runner is the two stages."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        return _separable_run

    def _linear(self) -> bool:
        extras = (self.depthwise_norm, self.depthwise_act, self.pointwise_norm, self.pointwise_act)
        return all(isinstance(m, nn.Identity) for m in extras)

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Depthwise MACs N·prod(O)·C_in·m·prod(k) + pointwise MACs N·prod(O)·C_in·m·C_out; norms and activations
        (when present) as other ops; elements summed over the parts (the middle tensor written and read)."""
        return sequential_cost((self.depthwise, self.depthwise_norm, self.depthwise_act, self.pointwise,
                                self.pointwise_norm, self.pointwise_act), input_shape)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        if not self._linear():
            raise TypeError("the reference covers DepthwiseSeparableConv without norm_layer/activation")
        return self.pointwise.reference_output(self.depthwise.reference_output(x))

    def native_alternatives(self) -> list[Alternative]:
        if not self._linear():
            return []
        dw, pw = native_conv_call(self.depthwise), native_conv_call(self.pointwise)
        return [("native", "F.conv(groups=C) + F.conv 1×1", lambda x: pw(dw(x)))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Rank-m SVD of each input channel's (C_out, prod(k)) slice: W[:, c] ≈ P_c D_c, P_c (C_out × m),
        D_c (m × prod(k)); exact when every slice has rank ≤ m."""
        from ..dense_kernels import fit_kernel, load_, relative_frobenius_error

        if not self._linear():
            raise TypeError("a DepthwiseSeparableConv with norm_layer/activation inside is not linear")
        fitted = fit_kernel(weight, self.depthwise.kernel_size)
        out, cin = weight.shape[:2]
        m = self.depthwise.depth_multiplier
        taps = fitted[0, 0].numel()
        depthwise = weight.new_zeros(cin * m, taps)
        pointwise = weight.new_zeros(out, cin * m)
        for c in range(cin):
            u, s, vh = torch.linalg.svd(fitted[:, c].reshape(out, taps), full_matrices=False)
            r = min(m, s.numel())
            scale = s[:r].sqrt()
            depthwise[c * m:c * m + r] = vh[:r] * scale[:, None]
            pointwise[:, c * m:c * m + r] = u[:, :r] * scale
        load_(self.depthwise.weight, depthwise)
        load_(self.depthwise.bias, None)
        load_(self.pointwise.weight, pointwise)
        load_(self.pointwise.bias, bias)
        effective = torch.einsum("om,mt->omt", pointwise, depthwise).reshape(out, cin, m, taps).sum(2)
        return relative_frobenius_error(fit_kernel(effective.reshape(fitted.shape), tuple(weight.shape[2:])), weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The depthwise window; the pointwise stage keeps the field."""
        return step(self.depthwise, field, in_shape)

    def stages(self) -> list[Stage]:
        return [Stage("depthwise", lambda x: self.depthwise_act(self.depthwise_norm(self.depthwise(x))),
                      module=self.depthwise),
                Stage("pointwise", lambda x: self.pointwise_act(self.pointwise_norm(self.pointwise(x))),
                      module=self.pointwise)]

    def extra_repr(self) -> str:
        multiplier = self.depthwise.depth_multiplier
        return geometry_repr(self, {"depth_multiplier": multiplier} if multiplier > 1 else {},
                             bias=getattr(self.pointwise, "bias", None) is not None)


def _separable_run(m: DepthwiseSeparableConvNd, x: torch.Tensor) -> torch.Tensor:
    """The depthwise stage, then the pointwise one, each with its norm and activation (read from ``_modules``: one
    dict, not six nn.Module.__getattr__ calls of ≈0.8 µs each)."""
    modules = m._modules
    x = modules["depthwise_act"](modules["depthwise_norm"](modules["depthwise"](x)))  # type: ignore[misc]
    return modules["pointwise_act"](modules["pointwise_norm"](modules["pointwise"](x)))  # type: ignore[misc]


class DepthwiseSeparableConv1d(DepthwiseSeparableConvNd):
    """1-D depthwise separable convolution: input (N, C_in, L); see ``DepthwiseSeparableConvNd``."""

    dim, _depthwise, _pointwise = 1, DepthwiseConv1d, PointwiseConv1d


class DepthwiseSeparableConv2d(DepthwiseSeparableConvNd):
    """2-D depthwise separable convolution: input (N, C_in, H, W); see ``DepthwiseSeparableConvNd``."""

    dim, _depthwise, _pointwise = 2, DepthwiseConv2d, PointwiseConv2d


class DepthwiseSeparableConv3d(DepthwiseSeparableConvNd):
    """3-D depthwise separable convolution: input (N, C_in, D, H, W); see ``DepthwiseSeparableConvNd``."""

    dim, _depthwise, _pointwise = 3, DepthwiseConv3d, PointwiseConv3d
