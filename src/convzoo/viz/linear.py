"""The wiring of a step with its clipping activations taken out: what its convolutions read.

A ReLU (or ReLU6, hard-tanh, hard-swish, ...) after a conv has a zero derivative wherever it clips, so the Jacobian
at one sample says "no dependence" for a channel whose ReLU is idle there, and a picture drawn from it would show
that conv channel unconnected. ``linear_wiring`` runs a function with those activations as the identity (outside
the layer's side branches, whose values steer the step and must stay exact), so the Jacobian shows the linear
operator's own reads. Any layer's stage is treated alike: the activations are found by the functions they call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

# Activations whose derivative is zero on a whole region (they can hide a read); smooth ones never vanish exactly.
CLIPPING: frozenset[Callable] = frozenset({
    torch.relu, torch.relu_, F.relu, F.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu6, F.hardtanh,
    F.hardtanh_, F.hardswish, F.hardsigmoid, F.threshold, F.threshold_, torch.threshold,
})  # not clamp: sampling code clamps coordinates with it


class _Identity(TorchFunctionMode):
    """Clipping activations on the differentiated path (their input requires grad) return it unchanged while
    ``paused`` is zero; ``seen`` counts them. One on a held value (an attention computed from a detached input)
    steers the step and keeps its clipping: its output is a value the picture prints."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = 0
        self.seen = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in CLIPPING and self.paused == 0:
            value = args[0] if args else next(iter(kwargs.values()))
            if isinstance(value, torch.Tensor) and value.requires_grad:
                self.seen += 1
                return value
        return func(*args, **kwargs)


@contextmanager
def linear_wiring(sides: list[nn.Module]) -> Iterator[_Identity]:
    """Within the block clipping activations on the differentiated path (inputs that require grad: run the function
    on an input that does) are the identity, except inside the modules ``sides``."""
    mode = _Identity()

    def pause(_m: nn.Module, _i: object) -> None:
        mode.paused += 1

    def resume(_m: nn.Module, _i: object, _o: object) -> None:
        mode.paused -= 1

    handles = [h for side in sides for h in (side.register_forward_pre_hook(pause), side.register_forward_hook(resume))]
    try:
        with mode:
            yield mode
    finally:
        for h in handles:
            h.remove()


def wiring_jacobian(model: nn.Module, x: torch.Tensor, sides: list[nn.Module]) -> torch.Tensor | None:
    """∂y/∂x of ``model`` at ``x`` with its clipping activations on the differentiated path as the identity
    (outside ``sides``), or None when its forward calls none (the plain Jacobian is then already the wiring)."""
    from .matrix import jacobian

    with torch.enable_grad(), linear_wiring(sides) as mode:  # on a differentiated input, as the Jacobian's
        model(x.detach().requires_grad_())
    if mode.seen == 0:
        return None
    with linear_wiring(sides):
        return jacobian(model, x)
