"""A Triton kernel pair (forward, backward) as one differentiable op: a ``torch.library.custom_op`` for graphs and a
``torch.autograd.Function`` for eager calls, both running the same launch functions.

Under ``torch.compile`` / ``torch.export`` the call goes to the custom op ``convzoo::NAME`` (its fake function gives
the output's shape and strides, its registered backward is the op ``convzoo::NAME_backward``), so a graph holds one
node per kernel launch and never traces into Triton's launcher. In eager mode the call goes to the
``autograd.Function``: the custom-op dispatcher costs ≈15 µs of host time per call more (measured on the CPU here:
25 µs against 10 µs for a trivial op), which is a fifth of a GPU conv at the bench shape.

Convention for both functions: ``backward(grad, *forward_inputs, needs)`` returns one tensor per tensor input of
``forward`` (in order; ``needs[k]`` says whether the k-th one's gradient is wanted; an unwanted or absent one comes
back as an empty tensor). ``reference`` is the same function in differentiable torch ops (``forward``'s arguments):
the eager ``autograd.Function`` runs it under ``create_graph`` (double backward) and for inputs with a forward-mode
tangent (``derivatives.KernelFunction``); the custom op's gradients are not differentiable again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from .derivatives import KernelFunction, graph_backward

Tensor = torch.Tensor


def _tensor_positions(fn: Callable[..., Any]) -> list[int]:
    """Indices of the parameters annotated Tensor or Optional[Tensor] (annotations are strings or types)."""
    positions = []
    for i, parameter in enumerate(inspect.signature(fn).parameters.values()):
        if "Tensor" in str(parameter.annotation):
            positions.append(i)
    return positions


def define_op(name: str, forward: Callable[..., Tensor], forward_fake: Callable[..., Tensor],
              backward: Callable[..., tuple[Tensor, ...]], backward_fake: Callable[..., tuple[Tensor, ...]],
              reference: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Register ``convzoo::name`` and ``convzoo::name_backward`` and return the differentiable call (see the module
    docstring). ``forward`` and ``backward`` need full type annotations (the custom op's schema is read from them)."""
    forward_op = torch.library.custom_op(f"convzoo::{name}", forward, mutates_args=())
    forward_op.register_fake(forward_fake)
    backward_op = torch.library.custom_op(f"convzoo::{name}_backward", backward, mutates_args=())
    backward_op.register_fake(backward_fake)
    positions = _tensor_positions(forward)

    def setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(*(inputs[i] for i in positions))
        ctx.arguments = tuple(None if i in positions else value for i, value in enumerate(inputs))

    def saved_inputs(ctx: Any) -> list[Any]:
        arguments = list(ctx.arguments)
        for i, tensor in zip(positions, ctx.saved_tensors):
            arguments[i] = tensor
        return arguments

    def gradients(ctx: Any, grad: Tensor, run: Callable[..., tuple[Tensor, ...]]) -> tuple[Tensor | None, ...]:
        arguments = saved_inputs(ctx)
        needs = [bool(ctx.needs_input_grad[i]) and arguments[i] is not None for i in positions]
        computed = run(grad, *arguments, needs)
        result: list[Tensor | None] = [None] * len(arguments)
        for k, i in enumerate(positions):
            result[i] = computed[k] if needs[k] else None
        return tuple(result)

    forward_op.register_autograd(lambda ctx, grad: gradients(ctx, grad, backward_op), setup_context=setup)

    def function_forward(ctx: Any, *inputs: Any) -> Tensor:
        output = forward(*inputs)
        setup(ctx, inputs, output)
        return output

    def function_backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, reference, saved_inputs(ctx), grad)
        return gradients(ctx, grad.detach(), backward)

    # a class of its own name, so autograd graphs show "<name>_functionBackward"
    Function = type(f"{name}_function", (KernelFunction,),
                    {"forward": staticmethod(function_forward), "backward": staticmethod(function_backward),
                     "reference": staticmethod(reference)})

    def call(*inputs: Any) -> Tensor:
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return forward_op(*inputs)
        return Function.apply(*inputs)

    call.__name__ = name
    call.op = forward_op  # type: ignore[attr-defined]
    call.backward_op = backward_op  # type: ignore[attr-defined]
    return call


def no_grad_tensor(like: Tensor) -> Tensor:
    """The empty tensor that stands for a gradient that was not asked for."""
    return like.new_empty(0)
