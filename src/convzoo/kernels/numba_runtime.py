"""numba for the CPU kernels: one lazy import, one warning per cause, threads that follow torch's.

``njit(parallel=...)`` compiles with ``cache=True`` (on disk: next to the sources when that directory is writable,
else numba's user cache directory; ``NUMBA_CACHE_DIR`` moves it) and ``nogil=True``. Importing numba costs a
fraction of a second, so kernel modules are imported only when a layer first considers a kernel form.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import torch

_numba: Any = None
_cause: str | None = None
_warned: set[str] = set()
_threads = threading.local()  # numba's thread count is a per-thread setting


def numba_module() -> Any:
    """The imported ``numba`` module, or None when it cannot be imported (the cause is kept for the warning)."""
    global _numba, _cause
    if _numba is None and _cause is None:
        if os.environ.get("CONVZOO_DISABLE_NUMBA", "") not in ("", "0"):
            _cause = "CONVZOO_DISABLE_NUMBA is set"
            return None
        try:
            import numba
        except Exception as exc:  # noqa: BLE001 - ImportError, or a numba built against another numpy
            _cause = f"numba could not be imported ({type(exc).__name__}: {exc})"
        else:
            _numba = numba
    return _numba


def available() -> bool:
    """True when numba imports; layers then offer their CPU kernels as forms."""
    return numba_module() is not None


def unavailable_cause() -> str | None:
    """Why numba is not used (None when it is)."""
    numba_module()
    return _cause


def warn_unavailable(what: str, cause: str | None = None) -> None:
    """Warn once per (what, cause) that ``what`` falls back to PyTorch's forms, naming the cause."""
    cause = cause or unavailable_cause() or "unknown cause"
    key = f"{what}: {cause}"
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"convzoo: {what} runs on PyTorch's forms instead of convzoo's CPU kernel: {cause}",
                      RuntimeWarning, stacklevel=3)


def njit(*, parallel: bool = False, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` with convzoo's defaults (cache on disk, GIL released, IEEE arithmetic: no fastmath, so NaN
    and Inf propagate as in PyTorch). Only call it inside kernel modules, which are imported lazily."""
    numba = numba_module()
    if numba is None:
        raise ImportError(unavailable_cause())
    return numba.njit(cache=True, nogil=True, parallel=parallel, **options)


def sync_threads() -> None:
    """Run numba's parallel loops on as many threads as torch's intra-op pool (``torch.get_num_threads()``,
    capped by numba's own maximum), so the two never oversubscribe the cores. Cheap when nothing changed."""
    wanted = torch.get_num_threads()
    if wanted != getattr(_threads, "count", None):
        numba = numba_module()
        if numba is None:
            return
        numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
        _threads.count = wanted
