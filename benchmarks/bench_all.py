"""Every family against its native compositions, and the HetConv, dynamic-conv and optimize figures, measured side
by side in one run on this machine.

    python benchmarks/bench_all.py [--quick] [--out benchmarks/results] [--machine-tag] [FAMILY ...]

Writes ``OUT/bench_all.json`` (the results format of ``convzoo.perf.results``, rendered by the docs site; the raw
measurements under ``data``) and ``OUT/mac_vs_speed.png`` (MAC ratio vs measured speed ratio), and prints the
tables as Markdown. ``--machine-tag``: name both after the CPU (``bench_all-<tag>.json``, ``mac_vs_speed-<tag>.png``),
for another CPU type's run beside the committed one that the family pages quote.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings

import torch
from torch import nn

from convzoo import build
from convzoo.perf.bench import bench, bench_results_tables, plot
from convzoo.perf.optimize import optimize
from convzoo.perf.results import Table, machine_info, machine_tag, write_results
from convzoo.perf.results_page import table_markdown
from convzoo.perf.timing import (FORMATS, configure, copy_bandwidth, gemm_peak, make_inputs, measure_interleaved,
                                 to_format)

DESCRIPTION = (
    "Every registered family on one layer shape (64→128, 3×3, batch 8, 56², fp32) against the fastest composition "
    "of native torch ops computing the same function, peers and naive published forms, timed round-robin in the "
    "same rounds (`convzoo bench`'s harness), next to the GEMM peak and copy bandwidth measured in the same run; "
    "then HetConv's forms per memory format, dynamic conv against a static conv and its per-sample loop, and "
    "`convzoo.optimize` on a small network. MACs count weight multiply-accumulates (FLOPs = 2 × MACs).")


def dynamic_case(batch: int = 32, channels: int = 64, size: int = 28) -> Table:
    """Dynamic conv vs a static conv of the same shape and vs the per-sample loop, both formats."""
    dyn, static = build("dynamic", channels, channels), build("standard", channels, channels)
    rows = []
    for fmt_name, fmt in FORMATS.items():
        to_format(dyn, fmt), to_format(static, fmt)
        xs = make_inputs((batch, channels, size, size), 3, memory_format=fmt, requires_grad=True)
        for backward in (False, True):
            t = measure_interleaved({"static": static, "dynamic": dyn, "loop": dyn._per_sample}, xs,
                                    backward=backward, params=list(dyn.parameters()) + list(static.parameters()))
            s, d, loop = (t[k].median_ms for k in ("static", "dynamic", "loop"))
            rows.append([fmt_name, "fwd+bwd" if backward else "fwd", s, d, loop, d / s, loop / d])
    return Table(f"Dynamic conv, batch {batch}, {channels}→{channels}, {size}²: against a static conv and the "
                 "per-sample loop",
                 ["format", "pass", ("static conv ms", ".1f"), ("dynamic (convzoo) ms", ".1f"),
                  ("per-sample loop ms", ".1f"), ("dynamic / static", ".2f"), ("loop / dynamic", ".2f")], rows,
                 "Medians (ms) of runs interleaved round-robin.")


def optimize_case(batch: int = 8, size: int = 56) -> Table:
    """convzoo.optimize on a plain standard-conv network (VGG-like: 3→64→64→128→128, 3×3, ReLU)."""
    chans = [3, 64, 64, 128, 128]
    layers: list[nn.Module] = []
    for a, b in zip(chans, chans[1:]):
        layers += [build("standard", a, b), nn.ReLU()]
    net = nn.Sequential(*layers).eval()
    _, choice = optimize(net, torch.rand(batch, 3, size, size), min_time=1.0)
    t = choice.timings_ms
    return Table("`convzoo.optimize` on a 4-conv standard network",
                 ["input", "picks", ("contiguous ms", ".1f"), ("channels_last ms", ".1f"), ("speed-up", "{:.2f}×")],
                 [[f"({batch}, 3, {size}, {size})", choice.memory_format, t["contiguous"], t["channels_last"],
                   choice.speedup]])


def hetconv_case(het) -> Table:
    """HetConv's forms per memory format, forward, from the bench run's variants."""
    rows = []
    for fmt in FORMATS:
        v = {x.name: x.forward_ms for x in het.variants if x.memory_format == fmt}
        c = v["convzoo HetConv2d"]
        rows.append([fmt, c, v["masked dense F.conv2d"], v["grouped k×k + dense 1×1"], v["per-filter loop"],
                     v["per-filter loop"] / c, v["masked dense F.conv2d"] / c])
    return Table("HetConv (p = 4, k = 3), forward ms per format",
                 ["format", ("convzoo", ".1f"), ("masked dense", ".1f"), ("grouped k×k + 1×1", ".1f"),
                  ("per-filter loop", ".1f"), ("loop / convzoo", ".1f"), ("dense / convzoo", ".2f")], rows,
                 "Medians (ms), timed round-robin in the same rounds.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny shapes (checks the script, not the machine)")
    parser.add_argument("--out", default=None, help="folder of the results (default benchmarks/results; with --quick "
                        "a temporary folder, so a smoke run never replaces the committed results)")
    parser.add_argument("--machine-tag", action="store_true", help="name the results and the plot after this CPU "
                        "(bench_all-<tag>.json): another CPU type's run, beside the one the family pages quote")
    parser.add_argument("families", nargs="*")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    args.out = args.out or (tempfile.mkdtemp(prefix="bench_all-") if args.quick else "benchmarks/results")
    os.makedirs(args.out, exist_ok=True)
    configure("cpu")
    shape = dict(batch=2, in_channels=8, out_channels=16, size=12) if args.quick else {}
    peak, bw = gemm_peak(n=256 if args.quick else None), copy_bandwidth(megabytes=16 if args.quick else 256)
    machine = machine_info(gemm_peak_gmacs=round(peak, 1), copy_bandwidth_gbs=round(bw, 1))
    results = bench(args.families or None, progress=lambda n: print(f"  ... {n}", flush=True), **shape)
    summary, dicts = [r.summary(peak) for r in results], [r.to_dict() for r in results]
    tables = bench_results_tables(summary, dicts, peak, bw)
    het = next((r for r in results if r.family == "hetconv"), None)
    if het:
        tables.append(hetconv_case(het))
    if not args.quick and not args.families:
        tables += [dynamic_case(), optimize_case()]
    suffix = f"-{machine_tag(machine)}" if args.machine_tag else ""
    figures = []
    if any(r.family == "standard" for r in results):
        plot(results, os.path.join(args.out, f"mac_vs_speed{suffix}.png"))
        figures.append((f"mac_vs_speed{suffix}.png", "MAC ratio against measured speed-up, per family"))
    for table in tables:
        print(f"\n{table.caption}\n\n{table_markdown(table)}\n\n{table.notes}")
    path = write_results(os.path.join(args.out, f"bench_all{suffix}.json"), "Every family on one layer shape (CPU)",
                         tables, description=DESCRIPTION, machine=machine, figures=figures,
                         data={"gemm_peak_gmacs": peak, "copy_gbs": bw, "summary": summary, "families": dicts})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
