"""numba for the CPU kernels: one lazy import, one warning per cause, threads that follow torch's.

``njit(parallel=...)`` compiles with ``cache=True`` (on disk: next to the sources when that directory is writable,
else numba's user cache directory; ``NUMBA_CACHE_DIR`` moves it) and ``nogil=True``. Importing numba costs a
fraction of a second, so kernel modules are imported only when a layer first considers a kernel form.

Threading. convzoo's own kernels use none of numba's threading layers: each is a serial ``nogil`` function over a
range of independent tasks (planes, rows), and ``run_tasks`` runs it on ``torch.get_num_threads()`` threads that
take contiguous pieces of the tasks in turn: torch's own OpenMP team where it can (``omp_team``: after a torch op
those workers spin on the cores for a while, so they had better do the work), else the calling thread and a small
pool of Python threads (numba releases the GIL). Why not numba's layers: torch runs its intra-op pool on its own
copy of GNU OpenMP; numba's ``omp`` layer would load a second OpenMP runtime (its pool links the system
``libgomp.so.1.0.0`` by file name, so it cannot share torch's) whose workers spin after every kernel and take the
cores from the next torch op; ``tbb`` is one more dependency and pool; ``workqueue`` aborts the process when two
Python threads launch kernels at once; and ``parallel=True`` doubles the compile time (numba's parfor passes).
The pool's threads sleep when idle; calls from several Python threads share the pool, so at most
torch.get_num_threads() − 1 workers plus the callers run.
``njit(parallel=True)`` (``prange``) stays available for kernels that want numba's own parallel loops: those run
on the ``workqueue`` layer (unless ``NUMBA_THREADING_LAYER`` says otherwise), one launch at a time under a lock.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock; each process compiles what it misses, as numba does by itself
    fcntl = None  # type: ignore[assignment]

import torch

from .omp_team import launcher

_numba: Any = None
_cause: str | None = None
_warned: set[str] = set()
_threads = threading.local()  # numba's thread count is a per-thread setting
_launch = threading.Lock()  # one parallel kernel at a time (workqueue is not thread-safe)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


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
            if "NUMBA_THREADING_LAYER" not in os.environ:
                numba.config.THREADING_LAYER = "workqueue"
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


class ParallelKernel:
    """A ``parallel=True`` numba function called from Python: each call runs under the launch lock on
    ``torch.get_num_threads()`` threads. ``dispatcher`` is the numba function (signatures, stats, inspection)."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.__doc__ = dispatcher.__doc__
        self.__name__ = getattr(dispatcher, "__name__", "kernel")

    def __call__(self, *args: Any) -> Any:
        with _launch:
            sync_threads()
            return self.dispatcher(*args)


def njit(*, parallel: bool = False, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit`` with convzoo's defaults (cache on disk, GIL released, IEEE arithmetic unless ``fastmath``
    says otherwise, so NaN and Inf propagate as in PyTorch). A ``parallel=True`` function becomes a
    ``ParallelKernel`` (launch lock, torch's thread count): call it from Python, not from other numba code. Only
    call ``njit`` inside kernel modules, which are imported lazily."""
    numba = numba_module()
    if numba is None:
        raise ImportError(unavailable_cause())
    compile_ = numba.njit(cache=True, nogil=True, parallel=parallel, **options)
    if not parallel:
        return lambda fn: compile_once_across_processes(compile_(fn))
    return lambda fn: ParallelKernel(compile_once_across_processes(compile_(fn)))


LOCK_WAIT_S = 900.0  # longest wait for another process's compile before compiling anyway


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), held by at most one process; waits up to
    LOCK_WAIT_S, then goes on without it (a stuck holder must not stop this process). No lock where the file
    cannot be created (a read-only cache directory). POSIX only: ``compile_once_across_processes`` checks."""
    try:
        handle = open(path, "a")  # noqa: SIM115 - closed below
    except OSError:
        yield
        return
    locked = False
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        yield
    finally:
        if locked:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()


def compile_once_across_processes(dispatcher: Any) -> Any:
    """Make ``dispatcher`` compile a signature missing from numba's disk cache in one process at a time: the
    others wait for it, then load its entry from the cache instead of compiling the same code again (pytest
    workers, the ranks of a torchrun job, a docs build beside the tests: each kernel costs seconds of a core to
    compile). The lock also serialises the read-modify-write of the function's cache index, where two processes
    saving different signatures at once can lose one of them. Taken inside numba's in-process compiler lock, so
    the threads of one process never hold file locks out of the call graph's order. Returns ``dispatcher``."""
    if fcntl is None:
        return dispatcher
    index = getattr(getattr(getattr(dispatcher, "_cache", None), "_cache_file", None), "_index_path", None)
    if not index:
        return dispatcher
    from numba.core import sigutils
    from numba.core.compiler_lock import global_compiler_lock

    original = dispatcher.compile
    lock_path = index + ".lock"

    def compile(sig: Any) -> Any:
        args, _ = sigutils.normalize_signature(sig)
        if tuple(args) in dispatcher.overloads:  # compiled in this process: numba returns it at once
            return original(sig)
        with global_compiler_lock:
            with contextlib.suppress(OSError):
                os.makedirs(os.path.dirname(lock_path), exist_ok=True)
            with _file_lock(lock_path):
                return original(sig)

    dispatcher.compile = compile
    return dispatcher


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


def _workers(count: int) -> ThreadPoolExecutor:
    """The pool of worker threads, grown to at least ``count`` workers (never shrunk: idle workers sleep)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < count:  # the executor's own size
            old, _pool = _pool, ThreadPoolExecutor(max_workers=count, thread_name_prefix="convzoo-kernel")
            if old is not None:
                old.shutdown(wait=False)
        return _pool


GRAIN = 1 << 15  # elements written per chunk below which a call is not split further
PIECES = 8  # pieces per thread that run_tasks's threads take in turn


def chunks(tasks: int, work: int | None = None, grain: int = GRAIN) -> int:
    """How many chunks ``run_tasks`` splits ``tasks`` into: ``torch.get_num_threads()``, at most one per task
    and, when ``work`` (the elements the call writes) is given, at most one per ``grain`` elements."""
    threads = max(1, min(torch.get_num_threads(), tasks))
    if work is not None:
        threads = max(1, min(threads, work // grain))
    return threads


def tasks_runner(kernel: Callable[..., Any], tasks: int, work: int | None = None,
                 grain: int = GRAIN) -> Callable[..., None]:
    """f(*args) = ``run_tasks(kernel, tasks, *args, work=work, grain=grain)`` with the split decided now, for a
    caller that plans per input shape and thread count: a call of one chunk is the kernel itself, called with
    (0, tasks, *args) in the calling thread (no pool, and no Python frame in between: a ``functools.partial``)."""
    if chunks(tasks, work, grain) == 1:
        return functools.partial(kernel, 0, tasks)
    return functools.partial(run_tasks, kernel, tasks, work=work, grain=grain)


def run_tasks(kernel: Callable[..., Any], tasks: int, *args: Any, work: int | None = None,
              grain: int = GRAIN) -> None:
    """``kernel(begin, end, *args)`` over the independent tasks [0, tasks) on ``chunks(...)`` threads, which take
    contiguous pieces in turn from a shared counter: up to PIECES per thread, none under ``grain`` elements of
    ``work`` (the elements the call writes). The threads are torch's OpenMP team (``omp_team.launcher``) where the
    kernel and its arguments allow, else the calling one and the pool's. Taken in turn, not dealt out, because a
    thread may run slower than the others (on the pool: right after a torch op, torch's OpenMP workers spin for a
    while on the cores its threads need). One chunk (tiny work, one thread) runs inline: no team, no pool."""
    threads = chunks(tasks, work, grain)
    if threads == 1:
        kernel(0, tasks, *args)
        return
    pieces = min(tasks, threads * PIECES)
    if work is not None:
        pieces = max(threads, min(pieces, work // grain))
    on_team = launcher(kernel, args)  # torch's own OpenMP threads, where the kernel can run on them
    if on_team is not None:
        on_team(tasks, pieces, threads)
        return
    bounds = [tasks * k // pieces for k in range(pieces + 1)]
    taken = itertools.count()  # next() on it is atomic under the GIL

    def drain() -> None:
        k = next(taken)
        while k < pieces:
            kernel(bounds[k], bounds[k + 1], *args)
            k = next(taken)

    pool = _workers(threads - 1)
    futures = [pool.submit(drain) for _ in range(1, threads)]
    try:
        drain()
    finally:
        for future in futures:
            future.result()
