"""Global depthwise convolution (GDC; MobileFaceNet, Chen et al. 2018; article 003 §2.1).

A depthwise conv whose kernel covers the whole feature map, no padding: y[n, o] = b[o] + Σ_{h,w} w[o, h, w]·x[n, o // m, h, w]
with depth multiplier m = C_out / C_in. Unlike global average pooling every position has its own learned weight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from ..arithmetic.cost import LayerCost, conv_cost
from ..geometry import check_positive_int, expand
from ..kernels.grad_layout import grad_in_layout
from .base import (Alternative, ConvzooLayer, Runner, Stage, autocast_enabled, check_input, init_conv_,
                   parameter_reader, planned_forward, refuse_arguments, stored, stored_shape)
from .fastpaths import GlobalDepthwiseSum, GlobalDepthwiseSumNHWC, global_depthwise_sum, is_channels_last
from .form_choice import FormChoice, is_tracing

_CHOICE = FormChoice("GlobalDepthwiseConv2d", prefer="native", margin=0.03)

if TYPE_CHECKING:
    import numpy as np


def _outside_transforms() -> Any:
    """A context in which torch.func's transforms (vmap, grad) do not apply: plain tensors, plain random draws."""
    guard = getattr(torch._C, "_DisableFuncTorch", None)
    return contextlib.nullcontext() if guard is None else guard()


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
    padding, dilation, padding_mode or groups: the kernel is the map, and the conv depthwise (each given raises a
    TypeError saying so). in_channels, out_channels and kernel_size keep torch's positions; ``bias``, ``device``
    and ``dtype`` are keyword-only, so a torch-ordered positional call cannot put its stride into ``bias``.
    """

    dim = 2
    weight: nn.Parameter

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int | Sequence[int] | None = None,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **unsupported: Any,
    ) -> None:
        whole_map = "its kernel is the whole feature map"
        refuse_arguments(type(self).__name__, unsupported, {
            "stride": f"{whole_map}, so there is one output position per channel and nothing to step over",
            "padding": f"{whole_map}, exactly (unpadded)", "dilation": f"{whole_map}, tap for tap (undilated)",
            "padding_mode": f"it has no padding ({whole_map}, exactly)",
            "groups": "it is depthwise, groups=in_channels always (give out_channels for a depth multiplier)"})
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
        weight = stored(self, "weight")  # a parametrization is not evaluated for its shape
        return None if weight is None or isinstance(weight, nn.UninitializedParameter) \
            else tuple(stored_shape(self, "weight")[2:])

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
            # Inside torch.func transforms (vmap sees x's per-sample shape) the draw is still the module's own
            # one-time initialisation from the global generator, not per-sample randomness: made outside the
            # transform, it takes the values a first call outside vmap (a Python loop's first sample) takes.
            with torch.no_grad(), _outside_transforms():
                self._materialize(tuple(x.shape[-2:]))  # (N, C, H, W) or an unbatched (C, H, W)

    def _check_size(self, spatial: Sequence[int]) -> None:
        if self.kernel_size is not None and tuple(spatial) != self.kernel_size:
            raise ValueError(
                f"GlobalDepthwiseConv2d has kernel_size={self.kernel_size} (the whole feature map) but got an "
                f"input of spatial size {tuple(spatial)}; the input size must equal the kernel size (give an input "
                f"whose map here is {self.kernel_size}, or build the layer with kernel_size=None to take the size "
                "from its first input)"
            )

    forward = planned_forward

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """Check ``x`` and choose the form (``forward_path``) once per key; later calls of the key run the form."""
        check_input(x, 2, self.in_channels, type(self).__name__)
        self._check_size(x.shape[2:])
        path = self.forward_path(x)
        if self.implementation != "auto" or path == "bmm" or _exporting():
            return self._runner(path, x)
        return _CHOICE.in_context(self._choice_config(), x, path, self.forms(x), tuple(self.parameters()),
                                  lambda name: self._runner(name, x))

    def run_form(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The output computed by form ``name`` (one of ``forms(x)``): y[n, c·m + j] = b + Σ_p x[n, c, p]·w[c·m + j, p]
        as torch's grouped conv ('native'), as a batched matmul over channels reading NCHW x in place ('matmul',
        ``GlobalDepthwiseSum``), as per-j products summed over the map reading channels_last x in place
        ('channels_last products + sum', ``GlobalDepthwiseSumNHWC``), or by convzoo's kernel ('kernel')."""
        return self._runner(name, x)(self, x)

    def _runner(self, name: str, x: torch.Tensor) -> Runner:
        """f(layer, x) running form ``name`` on inputs of x's key (batch size, format, grad mode): parameters read
        at call time, nothing else derived per call."""
        n, c, c_out, m = x.shape[0], self.in_channels, self.out_channels, self.depth_multiplier
        weight, bias = parameter_reader(self, "weight"), parameter_reader(self, "bias")
        if name == "native":
            return lambda layer, x: F.conv2d(x, weight(layer), bias(layer), 1, 0, 1, c)
        if name == "kernel":
            from ..kernels.global_depthwise import global_depthwise

            # the kernel makes the weight's (m, H·W, C) copy for channels_last x at every call: a copy kept
            # between calls would miss writes through ``p.data`` (no version counter moves); FormChoice times
            # this form with that copy included
            return lambda layer, x: global_depthwise(x, weight(layer), bias(layer))
        if name == "matmul":  # plain ops where no backward is recorded (this key's grad mode)
            gdc = GlobalDepthwiseSum.apply if torch.is_grad_enabled() else global_depthwise_sum
            return lambda layer, x: gdc(x.flatten(2), weight(layer).reshape(c, m, -1), bias(layer)).view(n, c_out, 1, 1)
        if name == "channels_last products + sum":
            return lambda layer, x: GlobalDepthwiseSumNHWC.apply(
                x.permute(0, 2, 3, 1).reshape(n, -1, c),
                grad_in_layout(weight(layer)).reshape(c, m, -1).permute(1, 2, 0).contiguous(), bias(layer)
            ).view(n, c_out, 1, 1)
        if name == "bmm":  # the compilers' form: plain ops
            return lambda layer, x: global_depthwise_sum(x.contiguous().flatten(2), weight(layer).reshape(c, m, -1),
                                                         bias(layer)).view(n, c_out, 1, 1)
        raise ValueError(f"form={name!r} is not one of {self.forms(x)} for {type(self).__name__}")

    def forms(self, x: torch.Tensor) -> list[str]:
        """The exact forms on inputs like ``x``: torch's grouped conv, the form that reads x in its own layout
        ('matmul' for NCHW, 'channels_last products + sum' for channels_last) and, on the CPU, convzoo's kernel."""
        names = ["native", "channels_last products + sum" if is_channels_last(x) else "matmul"]
        if x.device.type == "cpu" and "kernel" not in _CHOICE.failed:
            from ..kernels import cpu_kernels, runs_on

            if (runs_on(x, stored(self, "weight"), stored(self, "bias"))
                    and cpu_kernels("global_depthwise", type(self).__name__) is not None):
                names.append("kernel")
        return names

    @property
    def implementation(self) -> str:
        """'auto' (the form measured fastest on this machine, per input key) or the name of a form to run."""
        return self.__dict__.get("_implementation", "auto")

    @implementation.setter
    def implementation(self, value: str) -> None:
        self.__dict__["_implementation"] = value

    def forward_path(self, x: torch.Tensor) -> str:
        """``implementation`` when pinned; 'native' in a graph exported for deployment (the depthwise conv that
        runtimes and int8 quantizers have kernels for); 'bmm' (plain ops) under compile and other tracing; else the
        form measured fastest on this machine for the input's key (``FormChoice``, once per key and process)."""
        if _exporting():
            return "native"
        if _tracing() or is_tracing(x) or autocast_enabled(x):  # before listing forms:
            return "bmm"  # compilers and exporters see plain ops; autocast casts inside torch's own ops
        pinned = self.implementation
        if pinned != "auto":
            if pinned not in (names := self.forms(x)) + ["bmm"]:
                raise ValueError(f"implementation={pinned!r} is not a form of {type(self).__name__} on this input; "
                                 f"its forms are {names}")
            return pinned
        names = self.forms(x)
        return _CHOICE.for_input(self._choice_config(), x,
                                 lambda layer: {n: lambda t, n=n: layer.run_form(n, t) for n in names},
                                 fallible=("kernel",), layer=self)

    def _choice_config(self) -> tuple[Any, ...]:
        """What besides the input decides which form is fastest."""
        return (self.in_channels, self.out_channels, self.kernel_size, stored(self, "bias") is not None)

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
