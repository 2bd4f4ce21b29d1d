"""Under ``torch.compile`` on the CPU: a depthwise conv with multiplier m > 1 (in training any depthwise conv) as one
opaque op that runs the layer's measured form, with a backward op that runs the layer's eager training step.

``torch.compile`` traces torch's own ops, so a layer that chooses among exact forms would otherwise run its native
form there: torch's conv, which has no depthwise kernel for m > 1 outputs per channel (oneDNN runs it as a grouped
conv, in either format) and is several times slower than the form the layer measures and runs in eager mode; in
training, inductor's graph around torch's depthwise backward was also about twice the eager step for m = 1
(``benchmarks/bench_compiled.py`` prints every case on the machine it runs on). There the layer puts one custom op
in the graph, ``convzoo::measured_form(x, weight, bias, key)``: when the compiled code runs, the op (eager code)
runs the eager choice (``measured_path``: the form ``FormChoice`` measures once per input key, as for any eager
call) of a layer of configuration ``key`` on ``weight`` and ``bias`` through the runner an eager call would use.
``key`` spells out the whole configuration (class, geometry, pinned form, ``_choice_config``), never an identity
that lives only in one process: inductor's on-disk caches hash the graph's code, so a graph compiled in another
process is replayed exactly for an equal key, i.e. for the same computation, and misses for any other; two
layers of one configuration share a key and differ only in the tensors the op is given. Its output is in ``x``'s memory
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

import ast
import functools
import threading
import weakref
from typing import Any

import torch
from torch import nn

from ..arithmetic.cost import conv_output_tensor_shape
from .base import _EPOCH, MAX_PLANS, MEASURED_FORM_KEY, MEASURED_FORM_RUNNERS
from .form_choice import private_copy
from .formats import channels_last_format

FORM = "measured when run"  # the name forward_path gives this form
# In a layer's __dict__, never pickled: its class's dotted name, the fixed start of its key (set = registered);
# the op's runners per input key (on the op's private copies).
_HANDLE, _RUNNERS = MEASURED_FORM_KEY, MEASURED_FORM_RUNNERS
_LAYERS: weakref.WeakSet[nn.Module] = weakref.WeakSet()  # registered layers, searched once per key and process
_SOURCES: dict[str, nn.Module] = {}  # key -> a private copy of a layer of that configuration
_LOCK = threading.Lock()  # for _LAYERS and _SOURCES (layers are built and ops run in any thread)
_LOCAL = threading.local()  # .layers: key -> this thread's copy, into which a call puts the op's tensors


def register(layer: nn.Module) -> None:
    """Make ``layer`` one the op can find by its key (at construction and unpickling or deep copy, never while
    tracing: the compiler cannot trace a weak set). Kept weakly."""
    layer.__dict__[_HANDLE] = f"{type(layer).__module__}.{type(layer).__qualname__}"
    layer.__dict__.pop(_RUNNERS, None)
    with _LOCK:
        _LAYERS.add(layer)


def handle(layer: Any) -> str | None:
    """The layer's key: ``class|(C_out, k, s, padding pairs, d)|implementation|_choice_config()`` as literals, the
    geometry the op's fake function reads first; None for a layer built without ``register`` (it then traces its
    native form). Computed while tracing, from the attributes as they are then (the compiler guards on them), so a
    layer reconfigured after construction gets the key of what it now computes. A string, which the compiler
    bakes into the graph (and into the hash of inductor's caches), where an int would become a symbolic size."""
    name = layer.__dict__.get(_HANDLE)
    if name is None:
        return None
    geometry = (layer.out_channels, layer.kernel_size, layer.stride, layer.padding_pairs, layer.dilation)
    return f"{name}|{geometry!r}|{layer.implementation!r}|{layer._choice_config()!r}"


@functools.lru_cache(maxsize=256)
def _geometry(key: str) -> tuple[Any, ...]:
    """(C_out, kernel_size, stride, padding pairs, dilation), read back from ``key`` (``handle``)."""
    geometry: tuple[Any, ...] = ast.literal_eval(key.split("|", 2)[1])
    return geometry


def applies(layer: nn.Module, x: torch.Tensor) -> bool:
    """True while ``torch.compile`` (not export, jit or ONNX) traces a CPU input with autocast off, for a
    registered layer with plain parameters that is not pinned to its native form: the graph may hold the opaque
    op (with its backward when autograd records)."""
    return (torch.compiler.is_compiling() and not torch.compiler.is_exporting() and x.device.type == "cpu"
            and not torch.is_autocast_enabled("cpu") and (_TRAINS or not torch.is_grad_enabled())
            and getattr(layer, "implementation", "auto") != "native" and _HANDLE in layer.__dict__
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


def _own_copy(layer: nn.Module) -> nn.Module:
    """``private_copy`` (no hooks, plans or registration) with parameters of its own, so that it keeps no caller's
    storage alive: a call puts the op's tensors in their place."""
    copy = private_copy(layer)
    copy._parameters = {k: None if p is None else p.detach().clone() for k, p in copy._parameters.items()}
    return copy


def _source(key: str) -> nn.Module:
    """The process's private copy of a layer of configuration ``key``, made from a registered one on first use
    (the compiled code runs for a live layer of its key: the one whose forward it is)."""
    with _LOCK:
        source = _SOURCES.get(key)
        if source is None:
            layer = next((m for m in list(_LAYERS) if handle(m) == key), None)
            if layer is None:
                raise RuntimeError(f"convzoo::measured_form: no layer of the configuration {key} exists in this "
                                   "process; the op runs the eager form of a layer of its key, so build one before "
                                   "running the compiled code")
            source = _SOURCES[key] = _own_copy(layer)
    return source


def _layer(key: str) -> Any:
    """This thread's private copy of a layer of configuration ``key`` (its own: a call swaps tensors into it)."""
    layers = getattr(_LOCAL, "layers", None)
    if layers is None:
        layers = _LOCAL.layers = {}
    layer = layers.get(key)
    if layer is None:
        layer = layers[key] = private_copy(_source(key))  # shares the source's parameters until a call swaps them
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
    """``_run`` on the private copy ``layer`` with ``weight`` and ``bias`` as its parameters: always the op's
    tensors, never looked up (layers of one key differ only in them); put back afterwards."""
    params = layer._parameters
    own = params["weight"], params["bias"]
    params["weight"], params["bias"] = weight, bias
    try:
        return _run(layer, x)
    finally:
        params["weight"], params["bias"] = own


@torch.library.custom_op("convzoo::measured_form", mutates_args=(), tags=(torch.Tag.flexible_layout,))
def measured_form(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, handle: str) -> torch.Tensor:
    """The eager choice of a layer of configuration ``handle`` (``handle()``) on ``x`` with ``weight`` and ``bias``
    (the layer's parameters, or the tensors the compiler passes in their place), in ``x``'s memory format."""
    with torch.no_grad():
        y = _with(_layer(handle), weight, bias, x)
    return y.contiguous(memory_format=channels_last_format(x) or torch.contiguous_format)


@measured_form.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, handle: str) -> torch.Tensor:
    out_channels, kernel_size, stride, pairs, dilation = _geometry(handle)  # from the key alone: no layer needed
    shape = conv_output_tensor_shape(tuple(x.shape), out_channels, kernel_size, stride, pairs, dilation)
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
