"""Kernels compile once across processes: a process that misses numba's disk cache while another compiles the same
function waits for it and loads its entry (``numba_runtime.compile_once_across_processes``)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from convzoo.kernels import numba_runtime

pytest.importorskip("numba")

PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    module = __import__(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # the test says go to both processes at once
    print(module.add(1.0, 2.0), flush=True)
    stats = module.add.stats
    print(json.dumps({"misses": sum(stats.cache_misses.values()), "hits": sum(stats.cache_hits.values())}))
""")


def _kernel_module(tmp_path):
    name = f"compile_lock_probe_{uuid.uuid4().hex[:12]}"  # a new function: cold in the run's cache
    (tmp_path / f"{name}.py").write_text("from convzoo.kernels.numba_runtime import njit\n\n\n@njit()\n"
                                         "def add(a, b):\n    return a + b\n")
    sys.path.insert(0, str(tmp_path))
    try:
        module = __import__(name)
    finally:
        sys.path.remove(str(tmp_path))
    return name, module


def test_processes_that_miss_together_compile_once(tmp_path):
    """Two processes miss the same signature while the lock is held: both wait; once it is free, one compiles and
    the other loads that entry from the disk cache (one miss and one hit in all, where numba alone has two
    misses)."""
    name, module = _kernel_module(tmp_path)
    lock_path = module.add._cache._cache_file._index_path + ".lock"
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with open(lock_path, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        processes = [subprocess.Popen([sys.executable, "-c", PROBE, str(tmp_path), name], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True) for _ in range(2)]
        assert [p.stdout.readline() for p in processes] == ["ready\n"] * 2
        for p in processes:  # both miss the cache at once: without the lock both would compile
            p.stdin.write("go\n")
            p.stdin.flush()
        time.sleep(0.5)  # a compile of this function takes ~0.1 s: both now wait for the lock
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    stats = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    assert [out.splitlines()[0] for out, _ in outputs] == ["3.0", "3.0"]
    assert sorted((s["misses"], s["hits"]) for s in stats) == [(0, 1), (1, 0)], stats


def test_a_stuck_holder_does_not_stop_the_compile(tmp_path, monkeypatch):
    """A lock another holder never releases delays the compile by LOCK_WAIT_S, then the process compiles."""
    _, module = _kernel_module(tmp_path)
    lock_path = module.add._cache._cache_file._index_path + ".lock"
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    monkeypatch.setattr(numba_runtime, "LOCK_WAIT_S", 0.3)
    with open(lock_path, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        start = time.monotonic()
        # flock is per open file: this process's own second open of the file waits like another process would
        assert module.add(1.0, 2.0) == 3.0
        waited = time.monotonic() - start
    assert waited >= 0.3
    assert sum(module.add.stats.cache_misses.values()) == 1


def test_compiled_signatures_skip_the_lock(tmp_path, monkeypatch):
    """A signature already compiled in the process is returned without touching the lock file."""
    _, module = _kernel_module(tmp_path)
    assert module.add(1, 2) == 3
    monkeypatch.setattr(numba_runtime, "_file_lock", lambda path: pytest.fail(f"locked {path}"))
    from numba.core import types

    module.add.compile((types.int64, types.int64))  # what numba's typing of a caller asks again
