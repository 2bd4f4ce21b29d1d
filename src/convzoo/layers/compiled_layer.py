"""Under ``torch.compile`` on the CPU: a whole layer of a family that declares ``compiles_as_op`` (deformable,
DCNv3, involution, dynamic, CondConv, ODConv) as one opaque op that runs the layer's eager forward, with a backward
op that runs its eager training step.

``torch.compile`` traces torch's own ops, and a layer cannot time its forms while traced, so these layers would run
their fixed native form there: a chain of PyTorch ops that inductor fuses, but that is several times slower than
the form the eager layer measures and runs (convzoo's own kernels; ``convzoo compare --compile`` beside
``convzoo compare`` shows both on a machine). Instead the traced forward is one op,
``convzoo::eager_layer(x, params, key)``: when the compiled code runs, the op runs the layer's eager forward (its
measured form, as any eager call) on ``x`` with ``params`` (the layer's parameters in ``named_parameters`` order, or
the tensors the compiler passes in their place). ``key`` is the layer's own id, a random string given when it is
built, copied or unpickled, plus its parameter names: a compiled graph names exactly one live layer, so a graph
replayed from inductor's on-disk cache in another process names none there and is compiled again rather than run
with another layer's configuration. Attributes set after compiling (``implementation``, ``temperature``) are read
by the eager forward at each call, as in eager mode. The op's fake function traces the layer's native form on
the compiler's fake tensors (a private copy) for the output's shape, in ``x``'s memory format. Its registered
backward, ``convzoo::eager_layer_backward``, runs the layer's forward again with autograd recording, in the form
measured fastest with its backward, and that form's backward (an eager training step plus one forward: the op's
output cannot carry an autograd graph to the backward op). Works with ``fullgraph=True``.

Not under export, jit, ONNX or autocast, on other devices, for calls with extra arguments (deformable's external
offsets) or with the attribute ``compiles_as_op`` set False on the layer: those trace the native form as before.
"""

from __future__ import annotations

import sys
import uuid
import weakref
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import unset_fake_temporarily

from .base import COMPILED_LAYER, OP_KEY
from .compiled_choice import _TRAINS, _autograd_inside
from .form_choice import private_copy
from .formats import channels_last_format

_LAYERS: weakref.WeakValueDictionary[str, nn.Module] = weakref.WeakValueDictionary()  # id -> the live layer
_INSIDE = [0]  # fake functions tracing a layer's native form: that trace must not emit the op again


def register(layer: nn.Module) -> None:
    """Give ``layer`` an id of its own (at construction, and for each copy or unpickled layer) and make it findable
    by it; kept weakly. Never while tracing."""
    if not getattr(layer, "compiles_as_op", False):
        return
    name = uuid.uuid4().hex
    layer.__dict__[OP_KEY] = name
    _LAYERS[name] = layer


def applies(layer: nn.Module, x: torch.Tensor, extra_arguments: bool) -> bool:
    """True while ``torch.compile`` (not export) traces a CPU call of a registered layer with ``compiles_as_op``,
    one input, autocast off and no parametrization (with gradients only where the private guard the backward
    needs exists): the graph then holds the op."""
    return (not extra_arguments and not _INSIDE[0] and torch.compiler.is_compiling()
            and not torch.compiler.is_exporting() and getattr(layer, "compiles_as_op", False)
            and OP_KEY in layer.__dict__ and x.device.type == "cpu" and not torch.is_autocast_enabled("cpu")
            and (_TRAINS or not torch.is_grad_enabled())
            and not any("parametrizations" in m._modules for m in layer.modules()))


def call(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The op in place of the layer's traced forward."""
    named = list(layer.named_parameters())
    key = layer.__dict__[OP_KEY] + "|" + ",".join(name for name, _ in named)
    return eager_layer(x, [p for _, p in named], key)


def _live(key: str) -> nn.Module:
    layer_id, _, names = key.partition("|")
    layer = _LAYERS.get(layer_id)
    if layer is None:
        raise RuntimeError(f"convzoo::eager_layer: the layer this compiled code was made for ({layer_id}) no longer "
                           "exists in this process; compile the model again")
    if names != ",".join(name for name, _ in layer.named_parameters()):
        raise RuntimeError(f"convzoo::eager_layer: {type(layer).__name__}'s parameters changed since it was "
                           f"compiled (then: {names}); compile it again")
    return layer


def _put(module: nn.Module, names: list[str], tensors: list[torch.Tensor]) -> None:
    for name, tensor in zip(names, tensors):
        owner, _, leaf = name.rpartition(".")
        module.get_submodule(owner)._parameters[leaf] = tensor


def _with(layer: nn.Module, tensors: list[torch.Tensor]) -> nn.Module:
    """``layer`` itself when ``tensors`` are its parameters (a compiled model's own call), else a private copy of
    it holding ``tensors`` in their place (``torch.func.functional_call``, the compiler's fake tensors)."""
    named = list(layer.named_parameters())
    if all(p is t for (_, p), t in zip(named, tensors)):
        return layer
    with unset_fake_temporarily():  # the copy's own leaves are made from the real parameters
        copy = private_copy(layer)
    _put(copy, [name for name, _ in named], tensors)
    return copy


def _format(x: torch.Tensor) -> torch.memory_format:
    return channels_last_format(x) or torch.contiguous_format


@torch.library.custom_op("convzoo::eager_layer", mutates_args=(), tags=(torch.Tag.flexible_layout,))
def eager_layer(x: torch.Tensor, params: list[torch.Tensor], key: str) -> torch.Tensor:
    """The eager forward of the layer ``key`` names on ``x``, with ``params`` as its parameters, in ``x``'s memory
    format (``forward``, not ``__call__``: the traced graph ran the layer's hooks around the op)."""
    with torch.no_grad():
        y = _with(_live(key), params).forward(x)
    return y.contiguous(memory_format=_format(x))


@eager_layer.register_fake
def _(x: torch.Tensor, params: list[torch.Tensor], key: str) -> torch.Tensor:
    _INSIDE[0] += 1
    try:  # the native form on the fake tensors: the output's shape and dtype, whatever they depend on
        with torch.no_grad():
            y = _with(_live(key), params).forward(x)
    finally:
        _INSIDE[0] -= 1
    return torch.empty_like(y, memory_format=_format(x))


@torch.library.custom_op("convzoo::eager_layer_backward", mutates_args=())
def eager_layer_backward(grad: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor], key: str,
                         needs: list[bool]) -> list[torch.Tensor]:
    """The gradients of ``eager_layer`` for the inputs ``needs`` marks (x, then each parameter; an empty tensor for
    the others): the layer's forward again with autograd recording, in the form measured fastest with its backward,
    and that form's backward."""
    layer = _live(key)
    x_ = x.detach().requires_grad_(needs[0])
    live = [p for _, p in layer.named_parameters()]
    if all(p is q and p.requires_grad == need for p, q, need in zip(params, live, needs[1:])):
        leaves = params  # the layer's own leaves: autograd.grad gives their gradients and accumulates nothing
    else:  # other tensors (functional_call): fresh leaves in a private copy, nothing of the caller's graph touched
        leaves = [p.detach().requires_grad_(need) for p, need in zip(params, needs[1:])]
    module = _with(layer, leaves)
    with torch.enable_grad(), _autograd_inside():  # a custom op runs below autograd: record again for this step
        y = module.forward(x_)
        wanted = [t for t, need in zip((x_, *leaves), needs) if need]
        found = iter(torch.autograd.grad(y, wanted, grad, allow_unused=True))
    seen = {t.untyped_storage()._cdata for t in (grad, x, *params)}
    out = []
    for t, need in zip((x, *params), needs):
        g = next(found) if need else None
        if not need:
            out.append(x.new_empty(0))
            continue
        like = torch.empty_like(t)
        g = torch.zeros_like(like) if g is None else g  # a parameter the output does not depend on here
        if g.stride() != like.stride():
            g = like.copy_(g)  # the strides the fake function promises (empty_like of the input)
        if g.untyped_storage()._cdata in seen:  # an op's outputs alias no input and no other output
            g = g.clone()
        seen.add(g.untyped_storage()._cdata)
        out.append(g)
    return out


@eager_layer_backward.register_fake
def _(grad: torch.Tensor, x: torch.Tensor, params: list[torch.Tensor], key: str,
      needs: list[bool]) -> list[torch.Tensor]:
    return [torch.empty_like(t) if need else t.new_empty(0) for t, need in zip((x, *params), needs)]


def _save(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, params, ctx.key = inputs
    ctx.needs = [x.requires_grad, *(p.requires_grad for p in params)]
    ctx.save_for_backward(x, *params)


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    x, *params = ctx.saved_tensors
    grads = eager_layer_backward(grad, x, params, ctx.key, ctx.needs)
    kept = [g if need else None for g, need in zip(grads, ctx.needs)]
    return kept[0], kept[1:], None


eager_layer.register_autograd(_backward, setup_context=_save)
COMPILED_LAYER[0] = sys.modules[__name__]  # base's forward wrapper and constructors reach it through this slot
