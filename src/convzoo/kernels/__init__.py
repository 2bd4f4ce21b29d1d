"""convzoo's own compiled kernels, for arithmetic that PyTorch has no direct kernel for.

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

from .numba_runtime import available, unavailable_cause, warn_unavailable

__all__ = ["available", "cpu_kernels", "unavailable_cause", "warn_unavailable"]


def cpu_kernels(name: str, what: str) -> ModuleType | None:
    """The numba kernel module ``convzoo.kernels.<name>`` (importing it compiles nothing), or None after warning
    once that ``what`` runs on PyTorch's forms because numba is unavailable (the warning names the cause)."""
    if not available():
        warn_unavailable(what)
        return None
    return importlib.import_module(f"{__name__}.{name}")
