"""The memory-bound families on the roofline, and the peers side by side, in one run.

For depthwise (depth multiplier 1 and 2), flattened, shuffled grouped, pointwise grouped, global depthwise and the
channel shuffle (the bench shape: batch 8, 64 → 128 — 64 → 64 where the family keeps the width —, 56², k = 3,
fp32): convzoo's forward and forward+backward medians in NCHW and channels_last, next to the roofline bound
(Σ over the layer's stages of max(MACs ÷ measured GEMM peak, bytes ÷ measured copy bandwidth); forward+backward:
3 × that), their ratio and the internal path that ran. Then MixConv vs timm's MixedConv2d, DynamicConv vs timm's
CondConv2d, CondConv vs timm's CondConv2d and DeformConv vs torchvision's deform_conv2d, each timed in the same rounds as convzoo's layer, in
both formats: peer time / convzoo time. Every layer and its alternatives run round-robin (``measure_interleaved``).

``--threads`` defaults to 1: on a shared 2-core machine whose load average exceeds 2, each parallel region of a
2-thread run can wait a whole scheduler slice for its second thread, which inflates multi-op paths by
milliseconds that have nothing to do with the work; 1 thread keeps times proportional to the work. The GEMM peak
and copy bandwidth are measured with the same thread count.

Writes ``benchmarks/results/roofline.json`` (``--json PATH`` elsewhere; the results format of
``convzoo.perf.results``, raw measurements under ``data``).

Usage: python benchmarks/bench_roofline.py [--threads N] [--min-time S] [--json PATH] [--skip-peers]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from convzoo.layers.shuffle import ChannelShuffle
from convzoo.perf.bench import (bench_family, bench_module, peers_results_table, peers_table, roofline_results_table,
                                roofline_table)
from convzoo.perf.results import machine_info, write_results
from convzoo.perf.timing import configure, copy_bandwidth, gemm_peak

DESCRIPTION = (
    "The memory-bound families — depthwise (depth multiplier 1 and 2), flattened, shuffled grouped, pointwise "
    "grouped, global depthwise and the channel shuffle — at batch 8, 64 → 128 (64 → 64 where the family keeps the "
    "width), 56², k = 3, fp32: convzoo's forward and forward+backward medians in NCHW and channels_last next to "
    "the roofline bound (Σ over the layer's stages of max(MACs ÷ GEMM peak, bytes ÷ copy bandwidth), both limits "
    "measured in the same run at the same thread count; forward+backward: 3 × that), and the internal path that "
    "ran. Then the peers — timm's `MixedConv2d` and `CondConv2d`, torchvision's `deform_conv2d` — each timed in the "
    "same rounds as convzoo's layer, both formats. One thread by default: on a shared 2-core machine each parallel "
    "region of a 2-thread run can wait a scheduler slice for its second thread.")

# (label, family, C_out): the memory-bound families; depthwise twice, for depth multipliers 1 and 2
MEMORY_BOUND = [("depthwise m=1", "depthwise", 64), ("depthwise m=2", "depthwise", 128),
                ("flattened", "flattened", 128), ("shuffled_grouped", "shuffled_grouped", 128),
                ("pointwise_grouped", "pointwise_grouped", 128), ("global_depthwise", "global_depthwise", 128)]
PEERS = ["mixconv", "dynamic", "condconv", "deformable"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of rounds per measurement")
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "roofline.json"),
                        help="the results file")
    parser.add_argument("--skip-peers", action="store_true")
    args = parser.parse_args()
    info = configure("cpu", args.threads)
    peak, bandwidth = gemm_peak(), copy_bandwidth()
    console = Console(width=200)
    load_before = os.getloadavg()[0]
    console.print(f"torch {info['torch']}, {info['threads']} thread(s); GEMM peak {peak:.1f} GMAC/s, copy bandwidth "
                  f"{bandwidth:.1f} GB/s; load average at start {load_before:.2f}")
    kw = {"peak_gmacs": peak, "bandwidth_gbs": bandwidth, "min_time": args.min_time, "max_repeats": 60}
    results = []
    for label, name, out in MEMORY_BOUND:
        result = bench_family(name, 8, 64, out, 56, 3, **kw)
        result.family = label
        results.append(result)
    shuffle = ChannelShuffle(4)
    results.append(bench_module("channel shuffle (g=4)", shuffle, (8, 128, 56, 56), **kw))
    console.print(roofline_table(results, peak, bandwidth))
    peers = [] if args.skip_peers else [bench_family(name, 8, 64, 128, 56, 3, **kw) for name in PEERS]
    if peers:
        console.print(peers_table(peers))
    console.print(f"load average at end {os.getloadavg()[0]:.2f}")
    tables = [t for t in (roofline_results_table([r.summary(peak) for r in results]),
                          peers_results_table([r.summary(peak) for r in peers])) if t is not None]
    write_results(args.json, "Memory-bound families on the roofline, and the peers", tables, description=DESCRIPTION,
                  machine=machine_info(gemm_peak_gmacs=round(peak, 1), copy_bandwidth_gbs=round(bandwidth, 1),
                                       load_average_before=round(load_before, 2)),
                  data={"roofline": [r.to_dict() for r in results], "peers": [r.to_dict() for r in peers]})
    console.print(f"results: {args.json}")


if __name__ == "__main__":
    main()
