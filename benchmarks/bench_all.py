"""The README's performance tables, measured side by side in one run on this machine.

    .venv/bin/python benchmarks/bench_all.py [--quick] [--out benchmarks/results]

Prints markdown: the machine; the physical limits; per family the best convzoo time vs the fastest native
composition (forward and forward+backward, best memory format); the HetConv, dynamic-conv and optimize
acceptance figures. Writes JSON and a PNG (MAC ratio vs measured speed ratio) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import warnings

import torch
from torch import nn

from convzoo import build
from convzoo.perf.bench import bench, plot
from convzoo.perf.optimize import optimize
from convzoo.perf.timing import (FORMATS, configure, copy_bandwidth, gemm_peak, make_inputs, measure_interleaved,
                                 to_format)


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    except (StopIteration, OSError):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def dynamic_case(batch=32, channels=64, size=28) -> list[str]:
    """Dynamic conv vs a static conv of the same shape and vs the per-sample loop, both formats."""
    dyn, static = build("dynamic", channels, channels), build("standard", channels, channels)
    lines = ["| format | pass | static conv ms | dynamic (convzoo) ms | per-sample loop ms | dynamic / static | loop / dynamic |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for fmt_name, fmt in FORMATS.items():
        to_format(dyn, fmt), to_format(static, fmt)
        xs = make_inputs((batch, channels, size, size), 3, memory_format=fmt, requires_grad=True)
        for backward in (False, True):
            t = measure_interleaved({"static": static, "dynamic": dyn, "loop": dyn._per_sample}, xs,
                                    backward=backward, params=list(dyn.parameters()) + list(static.parameters()))
            s, d, l = (t[k].median_ms for k in ("static", "dynamic", "loop"))
            lines.append(f"| {fmt_name} | {'fwd+bwd' if backward else 'fwd'} | {s:.1f} | {d:.1f} | {l:.1f} | "
                         f"{d / s:.2f} | {l / d:.2f} |")
    return lines


def optimize_case(batch=8, size=56) -> list[str]:
    """convzoo.optimize on a plain standard-conv network (VGG-like: 3→64→64→128→128, 3×3, ReLU)."""
    chans = [3, 64, 64, 128, 128]
    layers: list[nn.Module] = []
    for a, b in zip(chans, chans[1:]):
        layers += [build("standard", a, b), nn.ReLU()]
    net = nn.Sequential(*layers).eval()
    _, choice = optimize(net, torch.rand(batch, 3, size, size), min_time=1.0)
    t = choice.timings_ms
    return [f"optimize on a 4-conv standard network, input ({batch}, 3, {size}, {size}): picks **{choice.memory_format}**; "
            f"contiguous {t['contiguous']:.1f} ms, channels_last {t['channels_last']:.1f} ms, "
            f"speed-up {choice.speedup:.2f}×"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny shapes (checks the script, not the machine)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("families", nargs="*")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    info = configure("cpu")
    shape = dict(batch=2, in_channels=8, out_channels=16, size=12) if args.quick else {}
    print(f"Machine: {machine()}\n")
    peak, bw = gemm_peak(n=256 if args.quick else None), copy_bandwidth(megabytes=16 if args.quick else 256)
    print(f"Measured limits: GEMM peak {peak:.1f} GMAC/s (fp32 torch.mm), copy bandwidth {bw:.1f} GB/s\n")
    results = bench(args.families or None, progress=lambda n: print(f"  ... {n}", flush=True), **shape)
    std = next((r for r in results if r.family == "standard"), None)
    std_fwd = std.best("convzoo").forward_ms if std else None
    print("\n| family | MAC ratio | fwd ms (fmt) | speed-up vs standard | vs fastest native, fwd | fwd+bwd ms (fmt) | "
          "vs fastest native, fwd+bwd | GMAC/s | % GEMM peak | peers / naive (time / convzoo) |")
    print("|---|---:|---|---:|---:|---|---:|---:|---:|---|")
    for r in results:
        s = r.summary(peak)
        mine = r.best("convzoo")
        others = "; ".join(f"{v.name} {v.forward_ms / mine.forward_ms:.2f}×" for v in r.variants
                           if v.kind in ("peer", "naive") and v.memory_format == mine.memory_format)
        g = lambda k, f: format(s[k], f) if k in s else "—"  # noqa: E731
        print(f"| {r.family} | {r.mac_ratio:.3f} | {g('fwd_ms', '.1f')} ({s.get('fwd_format', '—')}) | "
              f"{(std_fwd / mine.forward_ms) if std_fwd else float('nan'):.2f} | {g('fwd_vs_native', '.2f')} | "
              f"{g('fwd_bwd_ms', '.1f')} ({s.get('fwd_bwd_format', '—')}) | {g('fwd_bwd_vs_native', '.2f')} | "
              f"{g('gmacs_per_s', '.1f')} | {100 * s.get('peak_fraction', float('nan')):.0f}% | {others} |")
    het = next((r for r in results if r.family == "hetconv"), None)
    if het:
        print("\nHetConv (p=4, k=3), forward ms per format:\n")
        print("| format | convzoo | masked dense | grouped k×k + 1×1 | per-filter loop | loop / convzoo | dense / convzoo |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for fmt in FORMATS:
            v = {x.name: x.forward_ms for x in het.variants if x.memory_format == fmt}
            c = v["convzoo HetConv2d"]
            print(f"| {fmt} | {c:.1f} | {v['masked dense F.conv2d']:.1f} | {v['grouped k×k + dense 1×1']:.1f} | "
                  f"{v['per-filter loop']:.1f} | {v['per-filter loop'] / c:.1f} | {v['masked dense F.conv2d'] / c:.2f} |")
    if not args.quick and not args.families:
        print("\nDynamic conv, batch 32, 64→64, 28², medians ms:\n")
        print("\n".join(dynamic_case()))
        print()
        print("\n".join(optimize_case()))
    with open(os.path.join(args.out, "bench.json"), "w") as f:
        json.dump({"machine": machine(), "gemm_peak_gmacs": peak, "copy_gbs": bw, "threads": info["threads"],
                   "summary": [r.summary(peak) for r in results], "families": [r.to_dict() for r in results]},
                  f, indent=1, default=str)
    if std:
        plot(results, os.path.join(args.out, "mac_vs_speed.png"))


if __name__ == "__main__":
    main()
