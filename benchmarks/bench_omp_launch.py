"""Where convzoo's CPU kernels could run: on its own pool of Python threads, or on torch's own OpenMP threads.

Today ``numba_runtime.run_tasks`` runs a kernel on the calling thread and a pool of Python threads. Right after a
torch op, torch's OpenMP workers keep spinning on the other cores for a few milliseconds, so the pool's threads share
those cores with them. The alternative measured here runs the same kernel on torch's OpenMP threads: ``GOMP_parallel``
of the libgomp torch loaded (found among the process's mapped libraries, called through ctypes, which releases the
GIL) starts a numba ``@cfunc`` on every thread of torch's team, and each takes pieces of the rows from an atomic
counter. The spinning workers then do the work instead of competing with it.

The kernel is involution's fused forward (``involution_cpu._generate_apply``: b8 × 64 × 56², 3×3, G = 2, hidden
16, fp32, channels-last). Each variant runs in its own process, because one variant's threads disturb the other's
timings. Each is timed alone (after a 30 ms pause) and right after a torch conv (as in a network); the script prints
the fastest and median of ``--rounds``. Both variants write the same output (checked).

    python benchmarks/bench_omp_launch.py [--threads 2] [--rounds 40]
    python benchmarks/bench_omp_launch.py --quick     # tiny shapes, a few rounds: checks the script runs
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from convzoo.perf.results import machine_info


def torch_libgomp() -> str | None:
    """The path of the GNU OpenMP runtime torch loaded, or None (another runtime, or none)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "libgomp" in path.rsplit("/", 1)[-1]:
                return path
    return None


def omp_launcher(shape: tuple[int, ...]) -> Callable[..., None]:
    """f(x, w1t, b1, w2t, b2, y, zeros, tdy, tdx, geometry): the fused involution forward on torch's OpenMP team."""
    from llvmlite import ir
    from numba import carray, cfunc, types
    from numba.extending import intrinsic

    from convzoo.kernels.involution_cpu import _generate_apply

    def pointer_to(nbtype: Any) -> Any:
        @intrinsic
        def as_pointer(typingctx: Any, address: Any) -> Any:
            sig = types.CPointer(nbtype)(types.int64)

            def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
                return builder.inttoptr(args[0], context.get_value_type(sig.return_type))
            return sig, codegen
        return as_pointer

    f32, i64 = pointer_to(types.float32), pointer_to(types.int64)

    @intrinsic
    def take(typingctx: Any, counter: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.atomic_rmw("add", args[0], ir.Constant(ir.IntType(64), 1), "monotonic")
        return types.int64(counter), codegen

    @cfunc(types.void(types.CPointer(types.int64)), nopython=True, nogil=True)
    def piece_taker(p: Any) -> None:  # pragma: no cover - compiled
        pieces, tasks = p[1], p[2]
        x = carray(f32(p[3]), (p[4], p[5], p[6], p[7]))
        w1, b1 = carray(f32(p[8]), (p[9], p[10])), carray(f32(p[11]), (p[12],))
        w2, b2 = carray(f32(p[13]), (p[14], p[15])), carray(f32(p[16]), (p[17],))
        y = carray(f32(p[18]), (p[19], p[20], p[21], p[22]))
        zeros, tdy, tdx = carray(f32(p[23]), (p[24],)), carray(i64(p[25]), (p[26],)), carray(i64(p[27]), (p[28],))
        k = take(i64(p[0]))
        while k < pieces:
            _generate_apply(tasks * k // pieces, tasks * (k + 1) // pieces, x, w1, b1, w2, b2, y, zeros, tdy, tdx,
                            p[29], p[30], p[31], p[32], p[33], p[34])
            k = take(i64(p[0]))

    path = torch_libgomp()
    if path is None:
        raise RuntimeError("torch did not load GNU OpenMP (libgomp) in this process")
    gomp_parallel = ctypes.CDLL(path).GOMP_parallel
    gomp_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp_parallel.restype = None
    pieces = 8 * torch.get_num_threads()

    def launch(*arrays: np.ndarray, geometry: tuple[int, ...]) -> None:
        counter = np.zeros(1, np.int64)
        packed = [counter.ctypes.data, pieces, shape[0] * shape[1]]
        for a in arrays:
            packed += [a.ctypes.data, *a.shape]
        packed_array = np.array(packed + list(geometry), np.int64)
        gomp_parallel(piece_taker.address, packed_array.ctypes.data, torch.get_num_threads(), 0)

    return launch


def run_variant(variant: str, rounds: int, quick: bool) -> dict[str, Any]:
    """One variant's times (ms: fastest and median of ``rounds``, alone and right after a conv) and a checksum."""
    from convzoo.kernels import involution_cpu
    from convzoo.kernels.numba_runtime import run_tasks
    from convzoo.kernels.simd import LANES

    n, size, c, hidden, groups = (1, 9, 16, 4, 2) if quick else (8, 56, 64, 16, 2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, size, size, c, generator=gen).numpy()
    w1t, b1 = torch.randn(c, hidden, generator=gen).numpy(), torch.randn(hidden, generator=gen).numpy()
    w2t, b2 = torch.randn(hidden, groups * 9, generator=gen).numpy(), torch.randn(groups * 9, generator=gen).numpy()
    y, zeros = np.empty_like(x), np.zeros(2 * LANES, np.float32)
    tdy, tdx = involution_cpu._tap_offsets((3, 3), (1, 1))
    geometry = (1, 1, 1, 1, 1, 1)  # centre offsets, strides, paddings
    arrays = (x, w1t, b1, w2t, b2, y, zeros, tdy, tdx)
    if variant == "pool":
        def call() -> None:
            run_tasks(involution_cpu._generate_apply, n * size, *arrays, *geometry, work=y.size)
    else:
        launch = omp_launcher(y.shape)

        def call() -> None:
            launch(*arrays, geometry=geometry)
    conv = torch.nn.Conv2d(c, c, 3, padding=1).to(memory_format=torch.channels_last)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    out: dict[str, Any] = {}
    with torch.no_grad():
        call()
        out["checksum"] = float(np.float64(y.astype(np.float64).sum()))
        for context in ("alone", "after a conv"):
            times = []
            for _ in range(rounds):
                if context == "alone":
                    time.sleep(0.03)
                else:
                    conv(xt)
                start = time.perf_counter()
                call()
                times.append(1e3 * (time.perf_counter() - start))
            out[context] = (min(times), statistics.median(times))
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="tiny shapes and a few rounds (a smoke test)")
    parser.add_argument("--variant", choices=["pool", "omp"], help=argparse.SUPPRESS)  # one variant, in a child
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, rounds, args.quick)))
        return {}
    info = machine_info()
    print(" | ".join(f"{k} {v}" for k, v in info.items()))
    results = {}
    for variant in ("pool", "omp"):
        command = [sys.executable, __file__, "--variant", variant, "--threads", str(args.threads),
                   "--rounds", str(rounds)] + (["--quick"] if args.quick else [])
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    if not np.isclose(results["pool"]["checksum"], results["omp"]["checksum"], rtol=1e-6):
        raise SystemExit("the two variants wrote different outputs")
    print("| kernel threads | alone: fastest ms | alone: median ms | after a conv: fastest ms "
          "| after a conv: median ms |")
    print("|---|---:|---:|---:|---:|")
    for variant, name in (("pool", "convzoo's pool (run_tasks)"), ("omp", "torch's OpenMP team")):
        r = results[variant]
        print(f"| {name} | {r['alone'][0]:.3f} | {r['alone'][1]:.3f} | {r['after a conv'][0]:.3f} | "
              f"{r['after a conv'][1]:.3f} |")
    after = results["pool"]["after a conv"][1] / results["omp"]["after a conv"][1]
    print(f"median after a conv, pool / OpenMP team: {after:.2f}")
    return results


if __name__ == "__main__":
    main()
