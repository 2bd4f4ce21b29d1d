"""A parameter's gradient in the parameter's own layout.

A kernel's backward builds ∂w in whatever layout its loops write (channels innermost, or ∂w and ∂b side by side in
one buffer). ``.grad`` is unaffected — autograd copies a gradient into its parameter's strides — but
``torch.autograd.grad`` hands it over as built, where ``g.view(-1)`` fails on a strided one. Returning it in the
parameter's strides costs that same copy once, here, and autograd then keeps the tensor as it is.
"""

from __future__ import annotations

import torch


def dense_strides(t: torch.Tensor) -> tuple[int, ...]:
    """``t``'s strides when it is contiguous or channels_last (2-D / 3-D), else the contiguous strides of its
    shape: the layout a gradient for ``t`` should come back in."""
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    if t.is_contiguous() or (t.dim() in formats and t.is_contiguous(memory_format=formats[t.dim()])):
        return tuple(t.stride())
    return tuple(torch.empty(t.shape, device="meta").stride())


def in_layout(grad: torch.Tensor | None, strides: tuple[int, ...]) -> torch.Tensor | None:
    """``grad`` itself when it already has ``strides`` (size-1 dims aside), else one copy with them."""
    if grad is None or all(a == b or n == 1 for a, b, n in zip(grad.stride(), strides, grad.shape)):
        return grad
    return torch.empty_strided(grad.shape, strides, dtype=grad.dtype, device=grad.device).copy_(grad)


class _GradInLayout(torch.autograd.Function):
    """Identity forward; the backward lays the gradient out in the input's strides (``in_layout``)."""

    @staticmethod
    def forward(ctx: object, t: torch.Tensor) -> torch.Tensor:
        ctx.strides = dense_strides(t)  # type: ignore[attr-defined]
        return t.view_as(t)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor | None:
        return in_layout(grad, ctx.strides)  # type: ignore[attr-defined]  (torch ops: differentiable again)

    @staticmethod
    def jvp(ctx: object, tangent: torch.Tensor) -> torch.Tensor:
        """The identity's tangent: the input's (forward-mode AD through a form that uses ``grad_in_layout``)."""
        return tangent.view_as(tangent)


_TRANSFORMS = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)  # inside vmap / grad / jacrev


def grad_in_layout(t: torch.Tensor) -> torch.Tensor:
    """``t`` for a form that reshapes and permutes a parameter with torch's ops: its gradient comes back through
    those views strided as they were (a channel-innermost ∂w for (C·m, 1, H, W)); this hands it on in ``t``'s own
    strides. ``t`` itself where no gradient is recorded, and where a graph is being captured (compile, jit.trace,
    ONNX export, torch.func transforms): those take the plain ops."""
    if not (t.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling() or torch.jit.is_tracing() \
            or torch.onnx.is_in_onnx_export() or _TRANSFORMS() is not None:
        return t
    return _GradInLayout.apply(t)
