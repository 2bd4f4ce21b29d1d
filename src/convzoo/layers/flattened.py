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

from ..arithmetic.cost import LayerCost, sequential_cost
from ..geometry import IntOrTuple, Padding, check_window_fits, resolve_geometry
from .base import (Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward,
                   refuse_arguments, stored)
from .conv import KERNEL_TILES, native_conv_call
from .fastpaths import is_channels_last, nchw_on_cpu
from .form_choice import FormChoice, is_tracing
from .pointwise import PointwiseConv2d
from .separable import column_then_row

if TYPE_CHECKING:
    import numpy as np

_CHOICE = FormChoice("FlattenedConv2d", prefer="stages", margin=0.03)


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
    Arguments as ``torch.nn.Conv2d`` less ``groups`` (L is dense, V and H are per channel; ``groups=`` raises a
    TypeError saying so): in_channels … dilation keep torch's positions, everything after is keyword-only, so a
    torch-ordered positional call cannot put its groups into ``bias``.
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
        **unsupported: Any,
    ) -> None:
        refuse_arguments(type(self).__name__, unsupported, {
            "groups": "its 1×1 stage L is dense and its k×1 and 1×k stages V and H are per channel"})
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
        # torch's meaning, as the convs keep it: an int becomes a tuple, an asymmetric padding its pairs
        self.padding = resolve_geometry(2, kernel_size, stride, padding, dilation).padding
        self.padding_mode = padding_mode

    def reset_parameters(self) -> None:
        for conv in (self.lateral, self.vertical, self.horizontal):
            conv.reset_parameters()

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check once per key, under this layer's name (V's would name a Conv2d, and the fused kernel
        has none); the runner runs the form ``forward_path`` names at each call (``implementation`` may change)."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        return _flattened_run

    def run_form(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The output computed by form ``name`` (one of ``forms(x)``): the three stages on the input's layout, each
        running its own measured form ('stages'); the same on channels_last data, converted once in and once out
        ('channels_last round trip', NCHW input); or L, then V∘H fused in convzoo's kernel ('kernel': V's output
        never reaches memory; 'kernel, position tiles': the same without the register windows of a 3×3 'same' on
        channels_last data)."""
        if name == "stages":
            return self.horizontal(self.vertical(self.lateral(x)))
        if name == "channels_last round trip":  # one NCHW → NHWC copy in and one back, not one per stage
            return self.horizontal(self.vertical(self.lateral(x.contiguous(memory_format=torch.channels_last)))
                                   ).contiguous()
        if name in ("kernel", KERNEL_TILES):
            from ..kernels.separable_pair import separable_pair

            v, h = self.vertical, self.horizontal
            geometry = (v.stride[0], v.dilation[0], v.padding_pairs[0], h.stride[1], h.dilation[1], h.padding_pairs[1])
            return separable_pair(self.lateral(x), v.kernel(), v.bias, h.kernel(), h.bias, geometry,
                                  name == "kernel")
        raise ValueError(f"form={name!r} is not one of {self.forms(x)} for FlattenedConv2d")

    def forms(self, x: torch.Tensor) -> list[str]:
        """The exact forms on inputs like ``x`` (see ``run_form``): 'stages' everywhere, the channels_last round
        trip for NCHW data on the CPU, convzoo's fused V∘H kernel on the CPU (zero padding), and for a 3×3 'same'
        on channels_last data that kernel without its register windows (they spill on some CPUs: timed)."""
        names = ["stages"]
        if nchw_on_cpu(x):
            names.append("channels_last round trip")
        if x.device.type == "cpu" and x.dim() == 4 and self.padding_mode == "zeros" and "kernel" not in _CHOICE.failed:
            from ..kernels import cpu_kernels, runs_on

            params = (stored(self.vertical, "weight"), stored(self.vertical, "bias"),
                      stored(self.horizontal, "weight"), stored(self.horizontal, "bias"))
            kernels = cpu_kernels("separable_pair", "FlattenedConv2d") if runs_on(x, *params) else None
            if kernels is not None:
                names.append("kernel")
                v, h = self.vertical, self.horizontal
                if (is_channels_last(x) and KERNEL_TILES not in _CHOICE.failed
                        and kernels.same_pair((v.kernel_size[0], h.kernel_size[1]), (v.stride[0], h.stride[1]),
                                              (v.dilation[0], h.dilation[1]), h.padding_pairs[1][0])):
                    names.append(KERNEL_TILES)
        return names

    @property
    def implementation(self) -> str:
        """'auto' (the form measured fastest on this machine, per input key) or the name of a form to run."""
        return self.__dict__.get("_implementation", "auto")

    @implementation.setter
    def implementation(self, value: str) -> None:
        self.__dict__["_implementation"] = value

    def forward_path(self, x: torch.Tensor) -> str:
        """``implementation`` when pinned; 'stages' under tracing / compile / export; else the form measured
        fastest on this machine for the input's key (``FormChoice``, once per key and process)."""
        if is_tracing(x) or torch.is_autocast_enabled(x.device.type):  # before listing forms: compilers and
            return "stages"  # exporters see the one deterministic form; autocast casts inside torch's own ops
        names = self.forms(x)
        pinned = self.implementation
        if pinned != "auto":
            if pinned not in names:
                raise ValueError(f"implementation={pinned!r} is not a form of FlattenedConv2d on this input; "
                                 f"its forms are {names}")
            return pinned
        if len(names) == 1:
            return names[0]
        config = (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.dilation,
                  self.padding_pairs, self.padding_mode, stored(self.lateral, "bias") is not None)
        # read as stored: a parametrized weight is evaluated once per call, by the form that runs
        params = [stored(conv, name) for conv in (self.lateral, self.vertical, self.horizontal)
                  for name in ("weight", "bias")]
        return _CHOICE.for_input(config, x, lambda layer: {n: lambda t, n=n: layer.run_form(n, t) for n in names},
                                 params, fallible=("kernel", KERNEL_TILES), layer=self)

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
        from ..dense_kernels import fit_kernel, load_, relative_frobenius_error

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
        return geometry_repr(self, bias=getattr(self.lateral, "bias", None) is not None)


def _flattened_run(m: FlattenedConv2d, x: torch.Tensor) -> torch.Tensor:
    return m.run_form(m.forward_path(x), x)
