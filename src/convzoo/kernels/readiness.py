"""Whether one of convzoo's CPU kernel modules can run here: numba imports, and the module's kernels compile (or load
from the on-disk cache) for the dtype. Asked by a layer before it offers a kernel form; the answer is kept per
(module, dtype) for the process. When the answer is no, the layer keeps its PyTorch forms and one warning names the
cause (``numba_runtime.warn_unavailable``).
"""

from __future__ import annotations

import importlib

import torch

from . import numba_runtime

_ready: dict[tuple[str, torch.dtype], bool] = {}


def kernel_ready(module: str, dtype: torch.dtype, what: str) -> bool:
    """True when ``convzoo.kernels.<module>`` runs on ``dtype``: imported, then its ``warm_up(dtype)`` (a tiny
    forward and backward in every memory format, which compiles every kernel of the module) succeeds. ``what``
    names the layer for the warning."""
    key = (module, dtype)
    if key not in _ready:
        if not numba_runtime.available():
            numba_runtime.warn_unavailable(what)
            _ready[key] = False
        else:
            try:
                with torch.inference_mode(False), torch.enable_grad():  # the warm-up runs a backward too
                    importlib.import_module(f"{__package__}.{module}").warm_up(dtype)
            except Exception as exc:  # a numba typing / lowering / LLVM error: keep PyTorch's forms
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                numba_runtime.warn_unavailable(what, f"its kernels did not compile ({type(exc).__name__}: {first})")
                _ready[key] = False
            else:
                _ready[key] = True
    return _ready[key]


def forget() -> None:
    """Ask again next time (tests)."""
    _ready.clear()
