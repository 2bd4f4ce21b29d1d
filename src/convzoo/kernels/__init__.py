"""convzoo's own kernels, for arithmetic that PyTorch has no direct kernel for: the pure-PyTorch deformable op
(``deform_torch``) and compiled kernels.

CPU kernels are numba functions (a pip-installed JIT: no compiler on the user's machine, compiled once per machine
and cached on disk); GPU kernels are Triton functions (checked on the CPU under ``TRITON_INTERPRET=1``). Every
kernel comes with its backward as kernels too, behind a ``torch.autograd.Function``. A layer offers a kernel to its
``FormChoice`` as one more exact form; where numba (or Triton) cannot be imported or a kernel fails to compile, the
layer keeps its PyTorch forms and warns once, naming the cause (``numba_runtime.warn_unavailable``).

This package sits below the layers: it imports torch, numpy and numba, never ``convzoo.layers`` or anything above.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from .numba_runtime import available, unavailable_cause, warn_unavailable

__all__ = ["available", "cpu_kernels", "runs_on", "unavailable_cause", "warn_unavailable"]

_DTYPES = (torch.float32, torch.float64)


def runs_on(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    """Whether the CPU kernels can take ``x`` and the layer's ``params``: CPU, fp32 or fp64 throughout, and no
    autocast (which would have torch's ops compute in another dtype)."""
    return (x.device.type == "cpu" and x.dtype in _DTYPES and all(p is None or p.dtype == x.dtype for p in params)
            and not torch.is_autocast_enabled("cpu"))


def cpu_kernels(name: str, what: str) -> ModuleType | None:
    """The numba kernel module ``convzoo.kernels.<name>`` (importing it compiles nothing), or None after warning
    once that ``what`` runs on PyTorch's forms because numba is unavailable (the warning names the cause)."""
    if not available():
        warn_unavailable(what)
        return None
    return importlib.import_module(f"{__name__}.{name}")
