"""How a layer offers its Triton kernel (``convzoo/kernels/triton_*``) on the GPU: as one more exact form for its
``FormChoice``, named 'triton', on inputs that can run it (CUDA tensors; CPU tensors under Triton's interpreter).

``offered(x, what)`` is the cheap per-call test; ``fastest(...)`` measures the forms once per key and returns the
winner's name. A Triton form that raises the first time it runs (a compiler or driver the kernel does not support)
is dropped for the process with one warning naming the cause, and the layer keeps its PyTorch forms; so is one whose
backward raises while a training key is measured (its ``FormChoice`` drops it as a fallible form).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..kernels import triton_runtime
from .form_choice import FormChoice, input_key, measuring, private_copy

TRITON = "triton"
_broken: dict[str, str] = {}  # what → why its Triton form was dropped


def offered(x: torch.Tensor, what: str) -> bool:
    """Whether ``what`` (a family's name) offers its Triton form for ``x`` (see ``triton_runtime.offered``)."""
    return triton_runtime.offered(x, what) and what not in _broken


def _works(form: Callable[[], torch.Tensor], what: str, device: torch.device) -> bool:
    """Run the Triton form once (compiling it), out of the caller's sight (``measuring``); on an exception drop it
    for the process and warn once."""
    try:
        with torch.no_grad(), measuring(device):
            form()
    except Exception as exc:  # a Triton compile error, an unsupported GPU, a driver error
        _broken[what] = f"its first run raised {type(exc).__name__}: {exc}"
        triton_runtime.warn_unavailable(what, _broken[what])
        return False
    return True


def fastest(choice: FormChoice, config: Hashable, x: torch.Tensor,
            forms: Mapping[str, Callable[..., torch.Tensor]] | Callable[[nn.Module], Mapping[str, Callable[..., Any]]],
            inputs: Sequence[torch.Tensor | None], what: str, params: Sequence[torch.Tensor] = (),
            layer: nn.Module | None = None) -> str:
    """The name of the fastest of ``forms`` (each ``form(*inputs)`` computes the same output) for inputs like
    ``x``, measured once per key = (``config``, x's shape / memory format / device / dtype, whether a backward pass
    follows: grad mode on and an input or one of ``params`` requires grad) and cached by ``choice``. Measured on
    detached copies of ``inputs`` (forward + backward to them and to ``params`` when a backward follows), so the
    caller's autograd graph is never run or freed. The first form is what a CUDA graph capture runs on a key it has
    not measured. Forms that call the caller's module (its submodules, hooks, parametrizations) are given as
    ``forms(layer)`` with ``layer`` the caller's module: they are built on ``form_choice.private_copy(layer)``,
    whose parameters then stand for ``params`` (see ``FormChoice.for_input``)."""
    backward = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (*inputs, *params))
    key = (config, *input_key(x, backward))
    name = choice.get(key)
    if name is not None:
        return name
    with measuring(x.device):  # out of the caller's sight, the Triton form's first run included
        probes = [None if t is None else t.detach().requires_grad_(t.requires_grad and backward) for t in inputs]
        if layer is None:
            table: Mapping[str, Callable[..., torch.Tensor]] = forms  # type: ignore[assignment]
        else:
            private = private_copy(layer)
            table = forms(private)  # type: ignore[operator]
            params = [p for p in private.parameters() if p.requires_grad]
        calls = {k: (lambda f=f: f(*probes)) for k, f in table.items()}
        wrt = [t for t in (*probes, *params) if t is not None and t.requires_grad] if backward else []
        return choice.choose(key, candidates(calls, x, what), x.device, wrt, fallible=(TRITON,))


def candidates(forms: Mapping[str, Callable[[], torch.Tensor]], x: torch.Tensor, what: str
               ) -> Mapping[str, Callable[[], torch.Tensor]]:
    """``forms`` without the Triton form when its first run raises (see the module docstring); called only when
    a choice is about to be measured (not during a CUDA graph capture, where nothing is run twice)."""
    capturing = x.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if TRITON in forms and not capturing and not _works(forms[TRITON], what, x.device):
        return {k: f for k, f in forms.items() if k != TRITON}
    return forms
