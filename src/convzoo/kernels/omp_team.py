"""Run a kernel's pieces on torch's own OpenMP threads.

After every parallel torch op, torch's OpenMP workers keep spinning for a few milliseconds on the cores a kernel's
other threads need. A pool of Python threads then shares those cores with them: measured by
``benchmarks/bench_omp_launch.py``. Here the kernel runs on torch's team instead. ``GOMP_parallel`` of the libgomp
torch loaded (found among the process's mapped libraries, called through ctypes, which releases the GIL) starts a
numba ``@cfunc`` on every thread of the team, the spinning workers included. Each thread takes contiguous pieces of
the tasks from an atomic counter and calls the kernel on them.

The cfunc is written per kernel and argument kinds (C-contiguous arrays of a numeric dtype, ints, floats, bools,
tuples of ints) into a small module under the user's cache directory and compiled with ``cache=True``, so a machine
compiles it once. Its file name carries a hash of the kernels package's sources and of numba's version, so a changed
kernel gets a new launcher. The arguments travel as one int64 array: a pointer and the shape per array, the value
per int (a float's bits). ``launcher(kernel, args)`` returns None where this cannot run: no GNU OpenMP in the
process (torch built with another runtime), an argument of another kind, or ``CONVZOO_KERNEL_THREADS=pool``.
``run_tasks`` then uses its pool.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import struct
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_DTYPES = ("float32", "float64", "int64", "int32", "uint8")
_lock = threading.Lock()
_launchers: dict[tuple[Any, ...], Callable[..., None] | None] = {}
_gomp: list[Any] = []  # [GOMP_parallel or None], looked up once


def libgomp_path() -> str | None:
    """The file of the GNU OpenMP runtime loaded in this process (torch's), or None (another runtime, or none)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return None
    return next((p for p in sorted(paths) if p.rsplit("/", 1)[-1].startswith("libgomp")), None)


def gomp_parallel() -> Any:
    """libgomp's ``GOMP_parallel(fn, data, num_threads, flags)`` from the runtime torch loaded, or None."""
    if not _gomp:
        found = None
        try:
            path = libgomp_path()
            if path is not None:
                found = ctypes.CDLL(path).GOMP_parallel
                found.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
                found.restype = None
        except (OSError, AttributeError):
            found = None
        _gomp.append(found)
    return _gomp[0]


_NAMES = {np.dtype(name): name for name in _DTYPES}
_address: list[Callable[[np.ndarray], int]] = [lambda array: array.ctypes.data]  # numba's, once a launcher exists
_BOOL, _INT, _FLOAT = ("bool",), ("int",), ("float",)


def _kinds_and_values(args: tuple[Any, ...]) -> tuple[tuple[tuple[Any, ...], ...] | None, list[int]]:
    """What the launcher must rebuild for each argument (None when it cannot: an argument of another kind) and the
    int64 values it rebuilds them from (a pointer and the shape per array, the value per int, a float's bits). One
    pass, exact types first, no ``dtype.name`` (it builds a string) and no ``ctypes.data`` once numba's ``address``
    is loaded (it builds an object): this runs on every call of a kernel on the team."""
    kinds: list[tuple[Any, ...]] = []
    values: list[int] = []
    for value in args:
        kind = type(value)
        if kind is int:
            kinds.append(_INT)
            values.append(value)
        elif isinstance(value, np.ndarray):
            name = _NAMES.get(value.dtype)
            if name is None or not value.flags.c_contiguous or not value.flags.writeable:
                return None, values
            kinds.append(("array", name, value.ndim))
            values.append(_address[0](value))
            values += value.shape
        elif kind is bool or kind is np.bool_:
            kinds.append(_BOOL)
            values.append(int(value))
        elif isinstance(value, (int, np.integer)):
            kinds.append(_INT)
            values.append(int(value))
        elif kind is float:
            kinds.append(_FLOAT)
            values.append(struct.unpack("<q", struct.pack("<d", value))[0])
        elif kind is tuple and all(type(v) is int or isinstance(v, np.integer) for v in value):
            kinds.append(("ints", len(value)))
            values += value if all(type(v) is int for v in value) else [int(v) for v in value]
        else:
            return None, values
    return tuple(kinds), values


def _source(kernel: Any, kinds: tuple[tuple[Any, ...], ...]) -> str:
    """The launcher module: a cfunc rebuilding the arguments from the packed int64 array and taking pieces."""
    module, name = kernel.py_func.__module__, kernel.py_func.__name__
    lines, at, names = [], 3, []
    for i, kind in enumerate(kinds):
        if kind[0] == "array":
            shape = ", ".join(f"p[{at + 1 + d}]" for d in range(kind[2]))
            lines.append(f"    a{i} = carray(pointer_{kind[1]}(p[{at}]), ({shape}{',' if kind[2] == 1 else ''}))")
            at += 1 + kind[2]
        elif kind[0] == "bool":
            lines.append(f"    a{i} = p[{at}] != 0")
            at += 1
        elif kind[0] == "int":
            lines.append(f"    a{i} = p[{at}]")
            at += 1
        elif kind[0] == "float":
            lines.append(f"    a{i} = float_bits(p[{at}])")
            at += 1
        else:
            items = ", ".join(f"p[{at + j}]" for j in range(kind[1]))
            lines.append(f"    a{i} = ({items}{',' if kind[1] == 1 else ''})")
            at += kind[1]
        names.append(f"a{i}")
    call = ", ".join(names)
    return "\n".join([
        f'"""Launcher of {module}.{name} on torch\'s OpenMP team (written by convzoo.kernels.omp_team)."""',
        "from numba import carray, cfunc, types",
        ("from convzoo.kernels.omp_team_intrinsics import (float_bits, pointer_float32, pointer_float64,"
         " pointer_int32, pointer_int64, pointer_uint8, take)"),
        f"from {module} import {name} as kernel",
        "",
        "",
        "@cfunc(types.void(types.CPointer(types.int64)), nopython=True, nogil=True, cache=True)",
        "def launch(p):",
        *lines,
        "    pieces, tasks = p[1], p[2]",
        "    k = take(pointer_int64(p[0]))",
        "    while k < pieces:",
        f"        kernel(tasks * k // pieces, tasks * (k + 1) // pieces, {call})",
        "        k = take(pointer_int64(p[0]))",
        "",
    ])


def _directory() -> Path:
    """Where the launcher modules live: NUMBA_CACHE_DIR when set (the tests set a temporary one), else the user's
    cache directory."""
    from .numba_runtime import numba_module

    numba = numba_module()
    configured = getattr(getattr(numba, "config", None), "CACHE_DIR", "") if numba is not None else ""
    base = Path(configured) if configured else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "convzoo-omp-team"


def _build(kernel: Any, kinds: tuple[tuple[Any, ...], ...]) -> int | None:
    """The address of the launcher's cfunc for ``kernel`` with arguments of these kinds, written and compiled
    (or loaded from the disk cache) now."""
    import numba

    source = _source(kernel, kinds)
    digest = hashlib.sha256(source.encode() + numba.__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):  # the kernels and the helpers numba inlines into them
        digest.update(path.read_bytes())
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    name = digest.hexdigest()[:16]
    path = directory / f"launch_{kernel.py_func.__name__.strip('_')}_{name}.py"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(source)
        partial.replace(path)  # atomic: another process may write the same file
    spec = importlib.util.spec_from_file_location(f"convzoo_omp_team_{name}", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's on-disk cache looks the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - an unreadable cache entry (an interrupted write): drop it, compile again
        for stale in (directory / "__pycache__").glob(f"{path.stem}.*"):
            stale.unlink(missing_ok=True)
        spec.loader.exec_module(module)
    return module.launch.address  # type: ignore[no-any-return]


def launcher(kernel: Any, args: tuple[Any, ...]) -> Callable[[int, int, int], None] | None:
    """f(tasks, pieces, threads): ``kernel(begin, end, *args)`` over ``pieces`` contiguous pieces of [0, tasks) on
    torch's OpenMP team of ``threads``; None where it cannot run (module docstring)."""
    if os.environ.get("CONVZOO_KERNEL_THREADS", "") == "pool" or not hasattr(kernel, "py_func"):
        return None
    parallel = gomp_parallel()
    if parallel is None:
        return None
    kinds, values = _kinds_and_values(args)
    if kinds is None:
        return None
    key = (kernel, kinds)
    with _lock:
        if key not in _launchers:
            try:
                address = _build(kernel, kinds)
            except Exception as exc:  # noqa: BLE001 - any failure: the pool runs the kernel, said once
                warnings.warn(f"convzoo: {kernel.py_func.__name__} runs on a pool of Python threads instead of "
                              f"torch's OpenMP threads: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)
                address = None
            _launchers[key] = None if address is None else _runner(parallel, address)
            if address is not None:
                from .omp_team_intrinsics import address as numba_address

                _address[0] = numba_address
        run = _launchers[key]
    if run is None:
        return None
    return lambda tasks, pieces, threads: run(tasks, pieces, threads, values)


def _runner(parallel: Any, address: int) -> Callable[[int, int, int, list[int]], None]:
    def run(tasks: int, pieces: int, threads: int, values: list[int]) -> None:
        packed = np.array([0, pieces, tasks, *values, 0], np.int64)  # the last slot: the pieces' counter
        at = packed.ctypes.data
        packed[0] = at + 8 * (len(packed) - 1)
        parallel(address, at, threads, 0)

    return run
