"""The 3×3 'same' register-window kernels against the kernels they sit beside, compiled for this CPU and for an
AVX2-only one: the measurement behind which windows run without a choice and which the layers time.

    python benchmarks/bench_register_windows.py                # this CPU's code, then AVX2 code, 1 thread
    python benchmarks/bench_register_windows.py --isa native   # only this CPU's code
    python benchmarks/bench_register_windows.py --quick        # tiny shapes, one round: checks the script runs

Each pair is two numba kernels computing the same thing (``depthwise_same``'s windows; the position tiles or row
tiles of ``depthwise`` and ``separable_pair``), called directly (serial, one thread, no allocation: the output is
reused) in interleaved rounds, fastest round kept, on 64 channels of 16 × 56 (in cache) and of 8 × 56 × 56 (out of
it). "AVX2" compiles the same source for a Haswell (``NUMBA_CPU_NAME=haswell`` and Haswell's features, in a child
process with its own empty cache): 16 vector registers instead of AVX-512's 32, so a window that fits AVX-512's
registers spills. It runs on this machine's cores, so it shows the code an AVX2 CPU gets, not that CPU's timing.
A pair whose window wins under both compilations runs its window without a choice; a pair that loses under either
is left to the layer's ``FormChoice`` ('kernel' and 'kernel, position tiles').
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from convzoo.perf.results import Table, machine_info, write_results

AVX2_ENV = {"NUMBA_CPU_NAME": "haswell",
            "NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+popcnt,+sse,+sse2,+sse3,+ssse3,"
                                  "+sse4.1,+sse4.2,+cx16,+movbe,+cmov"}
SHAPES = {"in cache": (1, 16, 56, 64), "out of cache": (8, 56, 56, 64)}  # (N, H, W, C)
QUICK_SHAPES = {"tiny": (1, 6, 9, 16)}
PAIRS = ["channels_last forward", "channels_last ∂w", "channels_last V∘H", "NCHW forward", "NCHW V∘H"]


def _calls(pair: str, shape: tuple[int, int, int, int]) -> tuple[Callable[[], object], Callable[[], object]]:
    """(window, the kernel beside it) for ``pair`` on random fp32 data of ``shape`` (N, H, W, C), 3×3 'same'."""
    import torch

    from convzoo.kernels import depthwise as dw
    from convzoo.kernels import depthwise_same as ds
    from convzoo.kernels import separable_pair as sp

    n, h, w, c = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    y = np.empty_like(x)
    taps, three, b = (rng.standard_normal(s, dtype=np.float32) for s in ((9, c), (3, c), (c,)))
    rows, cols = dw.tap_offsets((3, 3), (1, 1), torch.float32)
    tiles = n * -(-h // ds.WINDOW_ROWS)
    if pair == "channels_last forward":
        tiled, r, t = dw._forward_nhwc_kernel(rows, cols, 1, 1)
        return (lambda: ds.correlate_nhwc_same(0, tiles, x, taps, b, y, 1, False),
                lambda: tiled(0, n * h, x, taps, b, y, r, t, 1, 1, 1, 1, False))
    if pair == "channels_last ∂w":
        partial = np.zeros((4, 4, 3, 1, c), dtype=np.float32)
        return (lambda: ds.weight_grad_nhwc_same(0, 4, x, x, partial, -(-tiles // 4), 1),
                lambda: dw._weight_grad_nhwc_dense(0, 4, x, x, partial, -(-n * h // 4), rows, cols, 1, 1))
    if pair == "channels_last V∘H":
        return (lambda: sp._pair_nhwc_same(0, tiles, x, three, b, three, b, y, 1, False),
                lambda: sp._pair_nhwc_dense(0, n * h, x, three, b, three, b, y, 1, 1, 1, 1, False))
    planes, out = np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.empty((n, c, h, w), dtype=np.float32)
    offsets = np.arange(3, dtype=np.int64)
    if pair == "NCHW forward":
        weights = np.ascontiguousarray(taps.T.reshape(c, 3, 3))
        return (lambda: ds.correlate_nchw_same(0, n * c, planes, weights, b, out, 1),
                lambda: dw._correlate_nchw_rows(0, n * c, planes, weights, b, out, offsets, offsets, 1, 1, 1))
    vertical = np.ascontiguousarray(three.T)
    return (lambda: sp._pair_nchw_same(0, n * c, planes, vertical, b, vertical, b, out, 1),
            lambda: sp._pair_nchw_rows(0, n * c, planes, vertical, b, vertical, b, out, offsets, 1, 1, 1, 1))


def measure(shapes: dict[str, tuple[int, int, int, int]], rounds: int) -> list[dict[str, object]]:
    """Per pair and shape: the fastest round of each kernel (µs), interleaved, after one call each (compilation)."""
    import torch

    torch.set_num_threads(1)
    rows = []
    for pair in PAIRS:
        for where, shape in shapes.items():
            window, beside = _calls(pair, shape)
            window(), beside()
            best = [float("inf"), float("inf")]
            for r in range(rounds):
                for k, f in ((0, window), (1, beside)) if r % 2 == 0 else ((1, beside), (0, window)):
                    start = time.perf_counter()
                    f()
                    best[k] = min(best[k], time.perf_counter() - start)
            rows.append({"pair": pair, "where": where, "shape": list(shape), "window_us": 1e6 * best[0],
                         "beside_us": 1e6 * best[1]})
    return rows


def _child(isa: str, quick: bool, rounds: int) -> list[dict[str, object]]:
    """The rows measured in a fresh process compiled for ``isa``: this CPU's with numba's usual cache, AVX2 with an
    empty one of its own (nothing compiled for this CPU is loaded in its place)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, **({"NUMBA_CACHE_DIR": cache, **AVX2_ENV} if isa == "avx2" else {}))
        args = [sys.executable, __file__, "--child", "--rounds", str(rounds), *(["--quick"] if quick else [])]
        done = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isa", choices=["both", "native", "avx2"], default="both")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one round, native only")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    rounds = 1 if args.quick else args.rounds
    if args.child:
        print(json.dumps(measure(shapes, rounds)))
        return
    isas = ["native"] if args.quick else (["native", "avx2"] if args.isa == "both" else [args.isa])
    table_rows = []
    for isa in isas:
        for row in _child(isa, args.quick, rounds):
            vectors = int(np.prod(row["shape"])) / 16  # blocks of 16 fp32 outputs
            table_rows.append([row["pair"], "this CPU" if isa == "native" else "AVX2 (Haswell)", row["where"],
                               row["window_us"], row["beside_us"], row["beside_us"] / row["window_us"],
                               1e3 * row["window_us"] / vectors])
            print(f"{table_rows[-1][0]:22} {table_rows[-1][1]:15} {row['where']:12} window {row['window_us']:9.1f} µs"
                  f"  beside {row['beside_us']:9.1f} µs  beside/window {table_rows[-1][5]:.2f}", flush=True)
    table = Table("Register windows against the kernels beside them (1 thread, fp32, output reused)",
                  ["pair", "compiled for", "data", ("window µs", ".1f"), ("beside µs", ".1f"),
                   ("beside / window", ".2f"), ("window ns per 16 outputs", ".2f")], table_rows,
                  "beside: channels_last forward and V∘H, the position tiles; channels_last ∂w, the dense weight-"
                  "gradient kernel; NCHW, the row tiles. Above 1: the window is faster.")
    if args.quick:
        return
    path = write_results(os.path.join(args.out, "register_windows.json"),
                         "Register windows, compiled for this CPU and for AVX2", [table],
                         description=__doc__.split("\n\n", 2)[2], machine=machine_info(threads=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
