"""The Ghost module (Han et al. 2020, "GhostNet: More Features from Cheap Operations",
https://arxiv.org/abs/1911.11907, §3.1).

A primary conv makes m = ⌈C_out / s⌉ "intrinsic" maps; a cheap depthwise d×d conv makes s − 1 "ghost" maps from
each (eq. 3); the output is both, concatenated (cut to C_out). MACs fall from C_out·C_in·k² to
m·C_in·k² + m·(s − 1)·d² per position: ≈ 1/s of the conv (eq. 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..arithmetic.cost import LayerCost, compose, elementwise_cost, module_cost
from ..geometry import IntOrTuple, Padding, check_positive_int, check_window_fits
from .base import (Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward,
                   refuse_arguments)
from .conv import Conv1d, Conv2d, Conv3d, ConvNd, native_conv_call, to_numpy
from .depthwise import DepthwiseConv1d, DepthwiseConv2d, DepthwiseConv3d, DepthwiseConvNd

if TYPE_CHECKING:
    import numpy as np

LayerFactory = Callable[[int], nn.Module]


class GhostModuleNd(ConvzooLayer, nn.Module):
    """y = concat(Y', Φ(Y'))[:, :C_out], Y' = act(norm(W' ⋆ x)) with m = ⌈C_out / ratio⌉ channels,
    Φ = act(norm(depthwise d×d conv, 'same', m → m·(ratio − 1))). Shapes: (N, C_in, *S) → (N, C_out, *O).

    Arguments as ``torch.nn.Conv*d`` for the primary conv (kernel_size default 1, as GhostNet's) less ``groups``
    (``groups=`` raises a TypeError saying why): in_channels … dilation keep torch's positions, everything after
    is keyword-only, so a torch-ordered positional call cannot put its groups into ``bias``. Then ``ratio`` s ≥ 2,
    ``dw_size`` d (the cheap conv's kernel, default 3), ``norm_layer`` and ``activation`` (GhostNet: BatchNorm and
    ReLU after both convs; the reference covers the module without them).
    """

    _conv: ClassVar[type[ConvNd]]
    _depthwise: ClassVar[type[DepthwiseConvNd]]
    dim: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 1,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        ratio: int = 2,
        dw_size: IntOrTuple = 3,
        norm_layer: LayerFactory | None = None,
        activation: Callable[[], nn.Module] | None = None,
        **unsupported: Any,
    ) -> None:
        refuse_arguments(type(self).__name__, unsupported, {
            "groups": "its primary conv is dense (groups=1) and its cheap conv depthwise (groups=intrinsic maps)"})
        super().__init__()
        out_channels = check_positive_int(out_channels, "out_channels")
        self.ratio = check_positive_int(ratio, "ratio")
        if self.ratio < 2:
            raise ValueError(f"ratio={ratio} must be >= 2 (ratio 1 makes no ghost maps: a plain conv)")
        self.intrinsic_channels = math.ceil(out_channels / self.ratio)
        ghosts = self.intrinsic_channels * (self.ratio - 1)
        factory = {"device": device, "dtype": dtype}
        self.primary = self._conv(in_channels, self.intrinsic_channels, kernel_size, stride, padding, dilation, 1,
                                  bias, padding_mode, **factory)
        self.primary_norm = norm_layer(self.intrinsic_channels) if norm_layer else nn.Identity()
        self.primary_act = activation() if activation else nn.Identity()
        self.cheap = self._depthwise(self.intrinsic_channels, ghosts, dw_size, 1, "same", 1, None, bias, padding_mode,
                                     **factory)
        self.cheap_norm = norm_layer(ghosts) if norm_layer else nn.Identity()
        self.cheap_act = activation() if activation else nn.Identity()
        self.in_channels, self.out_channels = self.primary.in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = self.primary.kernel_size, self.primary.stride, self.primary.dilation
        self.padding, self.padding_pairs = self.primary.padding, self.primary.padding_pairs
        self.padding_mode = self.primary.padding_mode

    def reset_parameters(self) -> None:
        for module in (self.primary, self.primary_norm, self.cheap, self.cheap_norm):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def _intrinsic(self, x: torch.Tensor) -> torch.Tensor:
        m = self._modules  # dict look-ups, not nn.Module.__getattr__: this runs every call
        return m["primary_act"](m["primary_norm"](m["primary"](x)))  # type: ignore[misc]

    def _with_ghosts(self, y: torch.Tensor) -> torch.Tensor:
        m = self._modules
        ghosts = m["cheap_act"](m["cheap_norm"](m["cheap"](y)))  # type: ignore[misc]
        return torch.cat([y, ghosts], dim=1)[:, :self.out_channels]

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check once per key, under this layer's name (the primary conv's would name a Conv*d); the
        runner is the primary conv and the cheap ops."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        return _ghost_run

    def _linear(self) -> bool:
        extras = (self.primary_norm, self.primary_act, self.cheap_norm, self.cheap_act)
        return all(isinstance(m, nn.Identity) for m in extras)

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Primary MACs N·prod(O)·m·C_in·prod(k) + cheap MACs N·prod(O)·m(s − 1)·prod(d); norms/activations as other
        ops; the concatenation 0 ops (output written and read once)."""
        parts, shape = [], tuple(input_shape)
        for module in (self.primary, self.primary_norm, self.primary_act, self.cheap, self.cheap_norm,
                       self.cheap_act):
            part = module_cost(module, shape)
            parts.append(part)
            shape = part.output_shape
        out = (shape[0], self.out_channels, *shape[2:])
        return compose([*parts, elementwise_cost(out, 0)], out)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        if not self._linear():
            raise TypeError("the reference covers the Ghost module without norm_layer/activation")
        return ref.ghost_module(x, to_numpy(self.primary.weight), to_numpy(self.primary.bias),
                                to_numpy(self.cheap.weight), to_numpy(self.cheap.bias), self.out_channels,
                                self.stride, self.padding, self.dilation, self.primary.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        if not self._linear():
            return []
        primary, cheap, c = native_conv_call(self.primary), native_conv_call(self.cheap), self.out_channels

        def run(x: torch.Tensor) -> torch.Tensor:
            y = primary(x)
            return torch.cat([y, cheap(y)], dim=1)[:, :c]

        return [("native", "F.conv + depthwise F.conv + cat", run)]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """The primary conv takes W's first m filters (fitted to its kernel); ghost map j of intrinsic map i keeps
        only the cheap kernel's centre tap α = ⟨W_o, W_i⟩ / ‖W_i‖² (the best multiple of filter i for filter o).
        Exact when every later filter is a multiple of its intrinsic one."""
        from ..dense_kernels import fit_kernel, load_, relative_frobenius_error

        if not self._linear():
            raise TypeError("a Ghost module with norm_layer/activation inside is not linear")
        m, s = self.intrinsic_channels, self.ratio
        fitted = fit_kernel(weight, self.primary.kernel_size)
        if fitted.shape[0] < m:
            raise TypeError(f"the dense kernel has {fitted.shape[0]} filters, fewer than the {m} intrinsic maps")
        intrinsic = fitted[:m]
        load_(self.primary.weight, intrinsic)
        load_(self.primary.bias, None if bias is None else bias[:m])
        centre = tuple(k // 2 for k in self.cheap.kernel_size)
        ghosts = self.out_channels - m
        source = torch.arange(ghosts, device=weight.device) // (s - 1)  # ghost g comes from intrinsic map g // (s − 1)
        dims = tuple(range(1, fitted.dim()))
        norms = (intrinsic ** 2).sum(dims)[source]
        dots = (fitted[m:] * intrinsic[source]).sum(dims)
        # tensor ops only (no float()): a layer on the meta device converts too
        alpha = torch.where(norms > 0, dots / torch.where(norms > 0, norms, 1), 0)
        cheap = weight.new_zeros(self.cheap.weight.shape)
        cheap[(slice(0, ghosts), 0, *centre)] = alpha
        effective = torch.cat([intrinsic, alpha.view(-1, *[1] * len(dims)) * intrinsic[source]])
        load_(self.cheap.weight, cheap)
        ghost_bias = weight.new_zeros(self.cheap.out_channels)
        if bias is not None and self.cheap.bias is not None:
            ghost_bias[:ghosts] = bias[m:] - alpha * bias[source]
        load_(self.cheap.bias, ghost_bias)
        return relative_frobenius_error(fit_kernel(effective, tuple(weight.shape[2:])), weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The primary window, then the cheap d×d window (the ghost maps' field, the larger one)."""
        after = self.primary.cost(tuple(in_shape)).output_shape
        return step(self.cheap, step(self.primary, field, in_shape), after)

    def stages(self) -> list[Stage]:
        return [Stage(f"primary conv → {self.intrinsic_channels} intrinsic maps", self._intrinsic,
                      module=self.primary),
                Stage(f"cheap depthwise {'×'.join(map(str, self.cheap.kernel_size))} → ghost maps, concatenated",
                      self._with_ghosts, module=self.cheap)]

    def extra_repr(self) -> str:
        return geometry_repr(self, {"ratio": self.ratio, "dw_size": self.cheap.kernel_size},
                             bias=getattr(self.primary, "bias", None) is not None)


class GhostModule1d(GhostModuleNd):
    """1-D ``GhostModuleNd``: input (N, C, L)."""

    dim, _conv, _depthwise = 1, Conv1d, DepthwiseConv1d


class GhostModule2d(GhostModuleNd):
    """2-D ``GhostModuleNd``: input (N, C, H, W)."""

    dim, _conv, _depthwise = 2, Conv2d, DepthwiseConv2d


class GhostModule3d(GhostModuleNd):
    """3-D ``GhostModuleNd``: input (N, C, D, H, W)."""

    dim, _conv, _depthwise = 3, Conv3d, DepthwiseConv3d


def _ghost_run(m: GhostModuleNd, x: torch.Tensor) -> torch.Tensor:
    """The Ghost module's runner: intrinsic maps, then the ghosts concatenated."""
    return m._with_ghosts(m._intrinsic(x))
