"""Under ``torch.compile`` on the CPU: a depthwise conv with multiplier m > 1 (in training any depthwise conv) as one
opaque op that runs the layer's measured form, with a backward op that runs the layer's eager training step.

``torch.compile`` traces torch's own ops, so a layer that chooses among exact forms would otherwise run its native
form there: torch's conv, which has no depthwise kernel for m > 1 outputs per channel (oneDNN runs it as a grouped
conv, in either format) and is several times slower than the form the layer measures and runs in eager mode; in
training, inductor's graph around torch's depthwise backward was also about twice the eager step for m = 1
(``benchmarks/bench_compiled.py`` prints every case on the machine it runs on). There the layer puts one custom op
in the graph, ``convzoo::measured_form(x, weight, bias, handle)``: when the compiled code runs, the op (eager code)
finds the layer by ``handle`` and runs its eager choice (``measured_path``: the form ``FormChoice`` measures once per
input key, as for any eager call) through the runner an eager call would use. Its output is in ``x``'s memory
format, as its fake function promises the compiler; any input layout is accepted (``flexible_layout``), so
inductor's channels_last layout is kept around it. Its registered backward is ``convzoo::measured_form_backward``,
which runs the layer's forward again in the form measured fastest *with* its backward and that form's backward (an
eager training step plus one forward; the op's outputs cannot carry an autograd graph from the forward op to the
backward one). In inference a multiplier-1 depthwise conv traces torch's conv: inductor runs it on oneDNN's
channels_last depthwise kernel, and an opaque op there cost more than it saved (the ``compiled-<cpu>`` results:
MobileNet v1 and a channels_last layer were slower through the op). Under autocast, for a parametrized weight or a
layer pinned to 'native', the layer traces its native form.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Any

import torch
from torch import nn
from torch.nn.utils import stateless

from ..arithmetic.cost import conv_output_tensor_shape
from .base import _EPOCH, MAX_PLANS, MEASURED_FORM_KEY, MEASURED_FORM_RUNNERS
from .formats import channels_last_format

FORM = "measured when run"  # the name forward_path gives this form
_LAYERS: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()
_NEXT_HANDLE = itertools.count(1)
_HANDLE, _RUNNERS = MEASURED_FORM_KEY, MEASURED_FORM_RUNNERS  # in the layer's __dict__, never pickled


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
    """True while ``torch.compile`` (not export, jit or ONNX) traces a CPU input with autocast off, for a
    registered layer with plain parameters that is not pinned to its native form: the graph may hold the opaque
    op (with its backward when autograd records)."""
    return (torch.compiler.is_compiling() and not torch.compiler.is_exporting() and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and (_TRAINS or not torch.is_grad_enabled())
            and getattr(layer, "implementation", "auto") != "native" and handle(layer) is not None
            and "weight" in layer._parameters and "bias" in layer._parameters)  # plain parameters, no parametrization


def trains(layer: nn.Module, x: torch.Tensor) -> bool:
    """True when autograd records this call (grad mode on and the input or a parameter requires grad)."""
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in layer.parameters(False)))


def _autograd_inside() -> Any:
    """Inside a custom op's implementation the dispatcher skips autograd (its keys are excluded); the backward op
    runs the layer's eager training step, so it lifts that exclusion for its duration (torch's private guard;
    without it compiled training traces the native conv, ``applies``)."""
    return torch._C._SetExcludeDispatchKeyGuard(torch._C.DispatchKey.AutogradFunctionality, False)


_TRAINS = hasattr(torch._C, "_SetExcludeDispatchKeyGuard") and hasattr(torch._C.DispatchKey, "AutogradFunctionality")


def _layer(key: str) -> nn.Module:
    layer = _LAYERS.get(key)
    if layer is None:
        raise RuntimeError(f"convzoo::measured_form: the layer {key} no longer exists; a compiled graph holds its "
                           "layer's key, so keep the layer alive while the compiled model runs")
    return layer


def _run(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """The layer's eager choice for ``x`` (``measured_path``: measured once per key, with or without the
    backward as autograd records or not), its runner kept per key."""
    runners = layer.__dict__.setdefault(_RUNNERS, {})
    training = torch.is_grad_enabled()
    key = (x.shape, x.stride(), x.dtype, training, torch.get_num_threads(), layer.implementation, _EPOCH[0])
    run = runners.get(key)
    if run is None:
        if len(runners) >= MAX_PLANS:  # as the eager plan tables
            runners.clear()
        run = runners[key] = layer._runner(layer.measured_path(x), x=x)
    return run(layer, x)


def _with(layer: Any, weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """``_run`` with ``weight`` and ``bias`` in place of the layer's parameters when they are other tensors."""
    if weight is layer._parameters.get("weight") and bias is layer._parameters.get("bias"):
        return _run(layer, x)
    with stateless._reparametrize_module(layer, {"weight": weight, "bias": bias}):
        return _run(layer, x)


@torch.library.custom_op("convzoo::measured_form", mutates_args=(), tags=(torch.Tag.flexible_layout,))
def measured_form(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, handle: str) -> torch.Tensor:
    """The layer's eager choice on ``x`` with ``weight`` and ``bias`` (its own parameters, or the tensors the
    compiler passes in their place), in ``x``'s memory format."""
    with torch.no_grad():
        y = _with(_layer(handle), weight, bias, x)
    return y.contiguous(memory_format=channels_last_format(x) or torch.contiguous_format)


@measured_form.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, handle: str) -> torch.Tensor:
    layer: Any = _layer(handle)  # a ConvNd: its geometry gives the output's shape
    shape = conv_output_tensor_shape(tuple(x.shape), layer.out_channels, layer.kernel_size, layer.stride,
                                     layer.padding_pairs, layer.dilation)
    return x.new_empty(shape).contiguous(memory_format=channels_last_format(x) or torch.contiguous_format)


@torch.library.custom_op("convzoo::measured_form_backward", mutates_args=())
def measured_form_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                           handle: str, needs: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients of ``measured_form`` for the inputs ``needs`` marks (x, weight, bias; an empty tensor for the
    others): the layer's forward again, in the form measured fastest with its backward on this input, and that
    form's backward — the eager training step plus one forward, never torch's grouped conv."""
    layer: Any = _layer(handle)
    x_, w_ = x.detach().requires_grad_(needs[0]), weight.detach().requires_grad_(needs[1])
    b_ = None if bias is None else bias.detach().requires_grad_(needs[2])
    with torch.enable_grad(), _autograd_inside():  # a custom op runs below autograd: record again for this step
        y = _with(layer, w_, b_, x_)
        wanted = [t for t, need in zip((x_, w_, b_), needs) if need and t is not None]
        grads = iter(torch.autograd.grad(y, wanted, grad))
    seen = {t.untyped_storage()._cdata for t in (grad, x, weight, bias) if t is not None}
    out = []
    for t, need in zip((x_, w_, b_), needs):
        g = next(grads) if need and t is not None else x.new_empty(0)
        if need and t is not None and g.stride() != (like := torch.empty_like(t)).stride():
            g = like.copy_(g)  # the strides the fake function promised (empty_like of the input)
        if g.untyped_storage()._cdata in seen:  # an op's outputs alias no input and no other output (a form's
            g = g.clone()                       # backward may give the weight's and bias's gradients in one buffer)
        seen.add(g.untyped_storage()._cdata)
        out.append(g)
    return tuple(out)  # type: ignore[return-value]


@measured_form_backward.register_fake
def _(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, handle: str,
      needs: list[bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    like = (x, weight, bias if bias is not None else x.new_empty(0))
    return tuple(torch.empty_like(t) if need and t.numel() else t.new_empty(0)  # type: ignore[return-value]
                 for t, need in zip(like, needs))


def _save(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, weight, bias, ctx.handle = inputs
    ctx.save_for_backward(x, weight, bias)


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    x, weight, bias = ctx.saved_tensors
    needs = [bool(n) for n in ctx.needs_input_grad[:3]]
    grads = measured_form_backward(grad, x, weight, bias, ctx.handle, needs)
    return (*(g if need else None for g, need in zip(grads, needs)), None)


measured_form.register_autograd(_backward, setup_context=_save)
