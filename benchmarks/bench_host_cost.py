"""Host cost per call: each family's layer against its own native composition at a tiny input, where the arithmetic
costs almost nothing and what is left is Python and dispatch.

For every family of the registry (``families()``, ``build()``) and each of its spatial dims: input 1 × 8 × 8 × 8
(8-long in 1-D, 8³ in 3-D), C_in = C_out = 8, the family's default build, fp32, CPU. Two passes: no grad (the
module in eval mode) and grad (train mode, parameters requiring grad, forward only: the graph is built, no
backward). Per pass the layer and the fastest of its ``native_alternatives()`` ('native'; ODConv has only a
'naive' per-sample loop, used then) run in interleaved rounds, the order alternating, each call timed alone;
t = the fastest call over all rounds (several thousand calls). Printed: t_layer, t_native, the difference (the
layer's host cost over its native composition), the aten ops each runs per call (counted once, no grad), and
the reference rows torch's own ``nn.Conv2d`` vs ``F.conv2d`` and the tiny ``F.conv2d`` itself.

Acceptance (issue 23, no grad): single-op layers (standard, depthwise, pointwise, dilated, transposed) at most
5 µs over their native call; composites at most n × (t_F.conv2d + 5 µs) + 10 µs in total, n = the native ops
they launch (mixconv 3, depthwise_separable 2, dynamic 4) — checked at 2-D, the tiny conv's dimension — and, in
every dimension, at most 5n + 10 µs over their native composition (what the layer adds to the ops it runs). The
'check' column says whether a row meets its bounds.

A full run writes ``benchmarks/results/host_cost-<cpu>.json`` (the results format of ``convzoo.perf.results``, tagged
with the CPU model and torch's CPU capability, rendered by the docs' Performance pages: one table per pass, the
machine in each header, the raw rows and the reference calls under ``data``); a run of some families only
(``--families``) writes where ``--out`` says, else nothing.

Usage: python benchmarks/bench_host_cost.py [--rounds R] [--calls C] [--families a,b] [--out FILE] [--no-save]
       python benchmarks/bench_host_cost.py --compare BEFORE.json AFTER.json   (a markdown table of two runs)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from convzoo import families
from convzoo.layers.base import ConvzooLayer
from convzoo.perf.results import (
    Table,
    machine_info,
    machine_tag,
    read_results,
    write_results,
)

SINGLE_OP = ("standard", "depthwise", "pointwise", "dilated", "transposed")
COMPOSITE_OPS = {"mixconv": 3, "depthwise_separable": 2, "dynamic": 4}
RESULTS = Path(__file__).parent / "results"
TITLE = "Host cost per call at a tiny input"
DESCRIPTION = (
    "Each family's layer against its own native composition (the fastest of its `native_alternatives()`: the "
    "PyTorch calls it stands for) at a tiny input, where the arithmetic costs almost nothing and what is left is "
    "Python and dispatch: 1 × 8 × 8 × 8 (8-long in 1-D, 8³ in 3-D), C_in = C_out = 8, the family's default build, "
    "fp32, CPU, one thread. Two passes: no grad (eval mode) and grad (train mode, parameters requiring grad, forward "
    "only). The layer and its native composition run in interleaved rounds, each call timed alone; a time is the "
    "fastest call of all rounds. *over* = layer − native: what the layer adds per call (negative where its chosen "
    "form beats the native composition). The reference calls (the tiny `F.conv2d` and torch's own `nn.Conv2d` "
    "around it) are in the first table's notes.")


class _OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.count += 1
        return func(*args, **(kwargs or {}))


def aten_ops(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> int:
    """How many aten ops one call of ``fn(x)`` dispatches (no grad)."""
    counter = _OpCounter()
    with torch.no_grad(), counter:
        fn(x)
    return counter.count


def fastest_calls(fns: dict[str, Callable[[], Any]], rounds: int, calls: int) -> dict[str, float]:
    """Per candidate the fastest single call (seconds) over ``rounds`` interleaved rounds of ``calls`` calls each,
    the candidates' order reversed every other round."""
    best = {name: float("inf") for name in fns}
    names = list(fns)
    clock = time.perf_counter_ns
    for fn in fns.values():  # warm-up: form choices, caches, allocator
        for _ in range(20):
            fn()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                fn, low = fns[name], best[name]
                for _ in range(calls):
                    start = clock()
                    fn()
                    low = min(low, clock() - start)
                best[name] = low
    finally:
        gc.enable()
    return {name: t * 1e-9 for name, t in best.items()}


def native_of(layer: nn.Module) -> tuple[str, list[Callable[[torch.Tensor], Any]]]:
    """The layer's native compositions (else its naive forms): the label of the kind and the functions."""
    alternatives = layer.native_alternatives() if isinstance(layer, ConvzooLayer) else []
    for kind in ("native", "naive"):
        fns = [fn for k, _, fn in alternatives if k == kind]
        if fns:
            return kind, fns
    return "none", []


def measure_family(name: str, dim: int, rounds: int, calls: int) -> list[dict[str, Any]]:
    from convzoo import build

    rows = []
    for grad in (False, True):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer = build(name, 8, 8, None, dim)
        x = torch.randn(1, 8, *([8] * dim))
        with torch.no_grad():
            layer(x)  # lazy layers (global depthwise) take their size from the first input
        layer.train(grad)
        layer.requires_grad_(grad)
        kind, natives = native_of(layer)
        with torch.set_grad_enabled(grad):
            fns: dict[str, Callable[[], Any]] = {"layer": lambda: layer(x)}
            fns.update({f"native{i}": (lambda fn=fn: fn(x)) for i, fn in enumerate(natives)})
            t = fastest_calls(fns, rounds, calls)
        native = min((v for k, v in t.items() if k != "layer"), default=float("nan"))
        rows.append({"family": name, "dim": dim, "grad": grad, "layer_us": t["layer"] * 1e6,
                     "native_us": native * 1e6, "native_kind": kind, "over_us": (t["layer"] - native) * 1e6,
                     "layer_ops": aten_ops(layer, x) if not grad else None,
                     "native_ops": min((aten_ops(fn, x) for fn in natives), default=None) if not grad else None})
    return rows


def reference(rounds: int, calls: int) -> dict[str, float]:
    """The tiny F.conv2d (1 × 8 × 8 × 8, 3×3, 'same') and torch's own nn.Conv2d around it, no grad (µs)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1).eval()
    x = torch.randn(1, 8, 8, 8)
    w, b = conv.weight, conv.bias
    with torch.no_grad():
        t = fastest_calls({"F.conv2d": lambda: F.conv2d(x, w, b, 1, 1), "nn.Conv2d": lambda: conv(x)}, rounds, calls)
    return {k: v * 1e6 for k, v in t.items()}


def check(row: dict[str, Any], conv_us: float) -> str:
    """The issue's bounds (no grad): single-op layers ≤ 5 µs over their native call; composites ≤ n·(t_F.conv2d +
    5 µs) + 10 µs in all (2-D: the bound is the 2-D tiny conv's), and — what the layer itself adds, in every
    dimension — ≤ 5n + 10 µs over their native composition."""
    if row["grad"]:
        return ""
    if row["family"] in SINGLE_OP:
        return "ok" if row["over_us"] <= 5 else "FAIL (> 5 µs over)"
    n = COMPOSITE_OPS.get(row["family"])
    if n is None:
        return ""
    host = f"over {'ok' if row['over_us'] <= 5 * n + 10 else 'FAIL'} (≤ {5 * n + 10} µs)"
    if row["dim"] != 2:
        return host
    bound = n * (conv_us + 5) + 10
    return f"total {'ok' if row['layer_us'] <= bound else 'FAIL'} (≤ {bound:.0f} µs); {host}"


def results_tables(rows: list[dict[str, Any]], ref: dict[str, float]) -> list[Table]:
    """The rows as the results tables: no grad (with the acceptance check) and grad, µs, fastest call."""
    columns: list[Any] = ["family", ("D", "d"), ("layer µs", ".1f"), ("native µs", ".1f"), ("over µs", ".1f")]
    no_grad = [[r["family"], r["dim"], r["layer_us"], r["native_us"], r["over_us"],
                f"{r['layer_ops']}/{r['native_ops']}", r["check"] + ("" if r["native_kind"] == "native"
                                                                      else f" ({r['native_kind']})")]
               for r in rows if not r["grad"]]
    grad = [[r["family"], r["dim"], r["layer_us"], r["native_us"], r["over_us"]] for r in rows if r["grad"]]
    reference = (f"Reference, same rounds: the tiny `F.conv2d` (1 × 8 × 8 × 8, 3×3, 'same') "
                 f"{ref['F.conv2d']:.1f} µs, "
                 f"torch's `nn.Conv2d` around it {ref['nn.Conv2d']:.1f} µs "
                 f"(+{ref['nn.Conv2d'] - ref['F.conv2d']:.1f} µs).")
    return [Table("No grad (eval mode): the layer against its native composition", [*columns, "aten ops layer/native",
                                                                                    "check"], no_grad,
                  "Fastest single call, µs; over = layer − native. " + reference + " check: single-op layers "
                  "≤ 5 µs over; composites ≤ n·(t_F.conv2d + 5 µs) + 10 µs in total (2-D) and ≤ 5n + 10 µs over "
                  "(n = the native ops they launch: MixConv 3, depthwise-separable 2, dynamic 4)."),
            Table("Grad (train mode, parameters requiring grad, forward only)", columns, grad,
                  "Fastest single call, µs; the graph is built, no backward.")]


def _run(path: str) -> dict[str, Any]:
    """A run as {machine line parts, reference_us, rows}: a results file of this script, or the raw JSON its
    earlier versions wrote (``--json``)."""
    with open(path) as f:
        content = json.load(f)
    if "format" in content:
        run = read_results(path)
        m = run.machine or {}
        machine = {"model": m.get("cpu", "?"), "capability": m.get("cpu_capability", "?"), "torch": m.get("torch", "?"),
                   "threads": m.get("threads", "?"), "load": m.get("load_average", float("nan"))}
        return {"machine": machine, **run.data}
    return content


def compare(before_path: str, after_path: str) -> None:
    """Markdown: per family and dim, the layer's time over its native composition in two runs (no grad, grad)."""
    runs = [_run(path) for path in (before_path, after_path)]
    rows = {(r["family"], r["dim"], r["grad"]): r for r in runs[0]["rows"]}
    for run, name in zip(runs, ("before", "after")):
        m = run["machine"]
        print(f"- {name}: {m['model']}, {m['capability']}, torch {m['torch']}, {m['threads']} thread(s), load "
              f"{m['load']:.2f}; tiny F.conv2d {run['reference_us']['F.conv2d']:.1f} µs")
    print("\n| family | D | no grad: layer − native µs, before → after | grad: before → after | "
          "layer µs before → after (no grad) | check after |\n|---|---:|---:|---:|---:|---|")
    after = {(r["family"], r["dim"], r["grad"]): r for r in runs[1]["rows"]}
    for (family, dim, grad), row in after.items():
        if grad:
            continue
        old, old_g = rows.get((family, dim, False)), rows.get((family, dim, True))
        new_g = after.get((family, dim, True))
        over = (lambda r: "—" if r is None else f"{r['over_us']:.1f}")
        layer = "—" if old is None else f"{old['layer_us']:.1f}"
        print(f"| {family} | {dim} | {over(old)} → {row['over_us']:.1f} | {over(old_g)} → {over(new_g)} | "
              f"{layer} → {row['layer_us']:.1f} | {row.get('check', '')} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two runs' files")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=300, help="calls per candidate per round")
    parser.add_argument("--families", default="", help="comma-separated names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="the results file (default for a full run: benchmarks/results/host_cost-<cpu>.json)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.compare:
        compare(*args.compare)
        return 0
    torch.set_num_threads(args.threads)
    wanted = [n for n in args.families.split(",") if n]
    info = machine_info()
    print(f"# host cost per call, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# CPU: {info['cpu']}, {info['cores']} cores; flags: {info['cpu_flags']}")
    print(f"# torch {info['torch']} (CPU capability {info['cpu_capability']}), Python {info['python']}, "
          f"{info['threads']} thread(s), load average at start {info.get('load_average', float('nan')):.2f}")
    print(f"# fastest of {args.rounds} × {args.calls} calls per candidate, interleaved; input 1 × 8 × 8^D, fp32")
    ref = reference(args.rounds, args.calls)
    print(f"# tiny F.conv2d {ref['F.conv2d']:.1f} µs; torch nn.Conv2d {ref['nn.Conv2d']:.1f} µs "
          f"(+{ref['nn.Conv2d'] - ref['F.conv2d']:.1f} µs)")
    header = (f"{'family':<20} {'D':>1} {'pass':<7} {'layer µs':>9} {'native µs':>9} {'over µs':>8} "
              f"{'ops':>9}  check")
    print(header)
    print("-" * len(header))
    rows = []
    for fam in families():
        if wanted and fam.name not in wanted:
            continue
        for dim in fam.dims:
            for row in measure_family(fam.name, dim, args.rounds, args.calls):
                row["check"] = check(row, ref["F.conv2d"])
                rows.append(row)
                ops = "" if row["layer_ops"] is None else f"{row['layer_ops']}/{row['native_ops']}"
                kind = "" if row["native_kind"] == "native" else f" ({row['native_kind']})"
                print(f"{row['family']:<20} {dim:>1} {'grad' if row['grad'] else 'no grad':<7} "
                      f"{row['layer_us']:>9.1f} {row['native_us']:>9.1f} {row['over_us']:>8.1f} {ops:>9}  "
                      f"{row['check']}{kind}", flush=True)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# load average at end {load_end:.2f}; ops = aten ops per call, layer/native (no grad)")
    out = args.out if args.out is not None or wanted else RESULTS / f"host_cost-{machine_tag(info)}.json"
    if args.no_save or out is None:
        print("# not saved" + ("" if args.no_save else " (a run of some families: give --out FILE to save it)"))
        return 0
    failed = [r for r in rows if "FAIL" in r["check"]]
    description = (DESCRIPTION + f"\n\nFastest of {args.rounds} rounds × {args.calls} calls per candidate; load "
                   f"average at the end {load_end:.2f}. Rows failing their bound: {len(failed)}.")
    path = write_results(out, TITLE, results_tables(rows, ref), description=description,
                         machine=info | {"load_average_end": round(load_end, 2)},
                         data={"reference_us": ref, "rounds": args.rounds, "calls": args.calls, "rows": rows})
    print(f"# written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
