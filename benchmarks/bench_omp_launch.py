"""convzoo's CPU kernels on torch's own OpenMP threads against a pool of Python threads.

``numba_runtime.run_tasks`` runs a kernel's pieces on torch's OpenMP team (``omp_team``: ``GOMP_parallel`` of the
libgomp torch loaded starts a numba ``@cfunc`` on every thread of the team; each takes pieces from an atomic
counter), and on a pool of Python threads where it cannot (``CONVZOO_KERNEL_THREADS=pool`` forces that). Why the
team: after every parallel torch op, torch's OpenMP workers keep spinning for a few milliseconds on the cores a
pool's threads need, so a pool shares those cores with them, while on the team the spinning workers do the work.

The kernel is involution's fused forward (``involution_cpu._generate_apply``: b8 × 64 × 56², 3×3, G = 2, hidden
16, fp32, channels-last). Each variant runs in its own process, because one variant's threads disturb the other's
timings. Each is timed alone (after a 30 ms pause) and right after a torch conv (as in a network); the script prints
the fastest and median of ``--rounds``. Both variants write the same output (checked).

    python benchmarks/bench_omp_launch.py [--threads 2] [--rounds 40]
    python benchmarks/bench_omp_launch.py --quick     # tiny shapes, a few rounds: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from convzoo.kernels.omp_team import libgomp_path
from convzoo.perf.results import machine_info


def run_variant(rounds: int, quick: bool) -> dict[str, Any]:
    """This process's variant's times (ms: fastest and median of ``rounds``, alone and right after a conv) and a
    checksum; the variant is CONVZOO_KERNEL_THREADS, set for this process by ``main``."""
    from convzoo.kernels import involution_cpu
    from convzoo.kernels.numba_runtime import run_tasks
    from convzoo.kernels.simd import LANES

    # quick: just over two threads' worth of outputs, so the kernel still runs on the team (or the pool)
    n, size, c, hidden, groups = (1, 48, 32, 8, 2) if quick else (8, 56, 64, 16, 2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, size, size, c, generator=gen).numpy()
    w1t, b1 = torch.randn(c, hidden, generator=gen).numpy(), torch.randn(hidden, generator=gen).numpy()
    w2t, b2 = torch.randn(hidden, groups * 9, generator=gen).numpy(), torch.randn(groups * 9, generator=gen).numpy()
    y, zeros = np.empty_like(x), np.zeros(2 * LANES, np.float32)
    tdy, tdx = involution_cpu._tap_offsets((3, 3), (1, 1))
    geometry = (1, 1, 1, 1, 1, 1)  # centre offsets, strides, paddings
    arrays = (x, w1t, b1, w2t, b2, y, zeros, tdy, tdx)
    def call() -> None:  # the pool or torch's team: CONVZOO_KERNEL_THREADS, set for this process by main
        run_tasks(involution_cpu._generate_apply, n * size, *arrays, *geometry, work=y.size)
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
    if args.variant:  # the timing runs in the child; the parent only starts them (and keeps its thread count)
        torch.set_num_threads(args.threads)
        print(json.dumps(run_variant(rounds, args.quick)))
        return {}
    info = machine_info()
    print(" | ".join(f"{k} {v}" for k, v in info.items()))
    if libgomp_path() is None:
        print("torch runs no GNU OpenMP in this process: both variants run on the pool")
    results = {}
    for variant in ("pool", "omp"):
        command = [sys.executable, __file__, "--variant", variant, "--threads", str(args.threads),
                   "--rounds", str(rounds)] + (["--quick"] if args.quick else [])
        env = {**os.environ, "CONVZOO_KERNEL_THREADS": "pool" if variant == "pool" else "team"}
        done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
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
