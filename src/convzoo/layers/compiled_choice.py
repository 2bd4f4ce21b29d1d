"""Under ``torch.compile`` on the CPU without autograd: the layer's measured form as one opaque op in the graph.

``torch.compile`` traces torch's own ops, so a layer that chooses among exact forms would otherwise run its native
form there (torch's conv), which on NCHW depthwise data can be several times slower than the form the layer
measures and runs in eager mode (``benchmarks/bench_compiled.py`` prints both on the machine it runs on). In a
compiled inference graph the layer instead puts one custom op, ``convzoo::measured_form(x, weight, bias, handle)``:
when the compiled code runs, the op (eager code) finds the layer by ``handle`` and calls its eager forward, which
times its forms once per input key like any eager call (``FormChoice``) and runs the fastest. Its output is in
``x``'s memory format, as its fake function promises the compiler. With autograd recording (training) the layer
traces its native form as before: the op has no backward.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import torch
from torch import nn
from torch.nn.utils import stateless

from ..arithmetic.cost import conv_output_tensor_shape
from .formats import channels_last_format

FORM = "measured when run"  # the name forward_path gives this form
_LAYERS: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()
_NEXT_HANDLE = itertools.count(1)
_HANDLE = "_measured_form_handle"
_RUNNERS = "_measured_form_runners"


def register(layer: nn.Module) -> None:
    """Give ``layer`` its key in the op's table (at construction and unpickling or deep copy, never while
    tracing: the compiler reads the key as a constant). Kept weakly: the op fails with a message if the layer is
    gone. A string, which the compiler bakes into the graph, where an int would become a symbolic size."""
    key = f"{type(layer).__name__}#{next(_NEXT_HANDLE)}"
    layer.__dict__[_HANDLE] = key  # __dict__ directly: no nn.Module attribute machinery, not in state_dict
    layer.__dict__.pop(_RUNNERS, None)
    _LAYERS[key] = layer


def handle(layer: nn.Module) -> str | None:
    """The layer's key, None for a layer built without ``register`` (it then traces its native form). Read while
    tracing: a plain attribute, no weak reference (the compiler cannot trace one and would break the graph)."""
    return layer.__dict__.get(_HANDLE)


def applies(layer: nn.Module, x: torch.Tensor) -> bool:
    """True while ``torch.compile`` (not export, jit or ONNX) traces a CPU input with autograd and autocast off,
    for a registered layer that is not pinned to its native form: the graph may hold the opaque op."""
    return (torch.compiler.is_compiling() and not torch.compiler.is_exporting() and x.device.type == "cpu"
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and getattr(layer, "implementation", "auto") != "native" and handle(layer) is not None)


def _layer(key: str) -> nn.Module:
    layer = _LAYERS.get(key)
    if layer is None:
        raise RuntimeError(f"convzoo::measured_form: the layer {key} no longer exists; a compiled graph holds its "
                           "layer's key, so keep the layer alive while the compiled model runs")
    return layer


def _run(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """The layer's eager choice for ``x`` (``measured_path``: measured once per key), its runner kept per key."""
    from .base import _EPOCH

    runners = layer.__dict__.setdefault(_RUNNERS, {})
    key = (x.shape, x.stride(), x.dtype, torch.get_num_threads(), layer.implementation, _EPOCH[0])
    run = runners.get(key)
    if run is None:
        if len(runners) >= 64:
            runners.clear()
        run = runners[key] = layer._runner(layer.measured_path(x), constant=True, x=x)
    return run(layer, x)


@torch.library.custom_op("convzoo::measured_form", mutates_args=())
def measured_form(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, handle: str) -> torch.Tensor:
    """The layer's eager choice on ``x`` with ``weight`` and ``bias`` (its own parameters, or the tensors the
    compiler passes in their place), in ``x``'s memory format."""
    layer: Any = _layer(handle)
    with torch.no_grad():
        if weight is layer._parameters.get("weight") and bias is layer._parameters.get("bias"):
            y = _run(layer, x)
        else:
            with stateless._reparametrize_module(layer, {"weight": weight, "bias": bias}):
                y = _run(layer, x)
    return y.contiguous(memory_format=channels_last_format(x) or torch.contiguous_format)


@measured_form.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, handle: str) -> torch.Tensor:
    layer: Any = _layer(handle)  # a ConvNd: its geometry gives the output's shape
    shape = conv_output_tensor_shape(tuple(x.shape), layer.out_channels, layer.kernel_size, layer.stride,
                                     layer.padding_pairs, layer.dilation)
    return x.new_empty(shape).contiguous(memory_format=channels_last_format(x) or torch.contiguous_format)
