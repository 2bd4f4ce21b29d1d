"""Deformable conv (convzoo's pure-PyTorch op vs torchvision's kernel vs a standard conv) and dynamic conv (vs a
static conv of the same shape), timed round-robin in one run, both memory formats, forward and forward+backward.
Prints medians, min–max spread and the ratios the issue asks for, and writes them to
``benchmarks/results/bench_deform_dynamic.json`` (``--out PATH``; the results format of ``convzoo.perf.results``).
Usage: python benchmarks/bench_deform_dynamic.py [--quick] [--threads N] [--dynamic-only] [--out PATH]"""

from __future__ import annotations

import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo.kernels.deform_torch import deform_conv2d
from convzoo.perf.results import Table, machine_info, write_results
from convzoo.perf.timing import FORMATS

DESCRIPTION = (
    "Deformable conv — convzoo's pure-PyTorch op (`convzoo.kernels.deform_torch.deform_conv2d`: sample points computed once, "
    "`grid_sample` into columns, one GEMM) against torchvision's `deform_conv2d` kernel and a standard conv of the "
    "same shape (b8 64→128 56² 3×3) — and dynamic conv against a static conv (b32 64→64 28² 3×3), both memory "
    "formats, forward and forward+backward, every candidate timed round-robin in one run (7 rounds after a "
    "warm-up round), a fresh input per run; medians and min–max spread.")


def interleaved(fns: dict, make_input, backward: bool, rounds: int) -> dict[str, list[float]]:
    """Round-robin times (ms) of each candidate, a fresh input ``make_input(name)`` per run; round 0 warms up."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds + 1):
        for name, fn in fns.items():
            x = make_input(name)
            t0 = time.perf_counter()
            if backward:
                fn(x).sum().backward()
            else:
                with torch.no_grad():
                    fn(x)
            if r:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def interleaved_formats(fns: dict, shape: tuple[int, ...], backward: bool, rounds: int) -> dict[str, list[float]]:
    """Like ``interleaved``, each candidate fed the input in the format named in its label."""
    def make(name: str) -> torch.Tensor:
        fmt = FORMATS["channels_last" if "channels_last" in name else "contiguous"]
        return torch.randn(shape).contiguous(memory_format=fmt).requires_grad_(backward)

    return interleaved(fns, make, backward, rounds)


def show(title: str, times: dict[str, list[float]], pairs: list[tuple[str, str, str]]) -> Table:
    """Print the medians, spreads and ratios of one round-robin, and return them as a results table."""
    print(f"\n{title}")
    rows: list[list[object]] = []
    for name, v in times.items():
        print(f"  {name:34s} median {statistics.median(v):9.1f} ms   spread {min(v):8.1f}–{max(v):8.1f}  (n={len(v)})")
        rows.append([name, statistics.median(v), min(v), max(v), len(v)])
    notes = []
    for a, b, label in pairs:
        ratio = statistics.median(times[a]) / statistics.median(times[b])
        print(f"  {label}: {ratio:.2f}")
        notes.append(f"{label}: **{ratio:.2f}**")
    return Table(title, ["candidate", ("median ms", ".1f"), ("fastest ms", ".1f"), ("slowest ms", ".1f"), "runs"],
                 rows, "; ".join(notes) + ".")


def main() -> None:
    quick = "--quick" in sys.argv
    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else (
        None if quick else Path(__file__).parent / "results" / "bench_deform_dynamic.json")
    rounds = 3 if quick else 7
    machine = machine_info()
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()}, torch {torch.__version__}")
    from torchvision.ops import deform_conv2d as tv_deform

    torch.manual_seed(0)
    tables = []
    if "--dynamic-only" not in sys.argv:
        n, c, co, h = 8, 64, 128, 56
        weight = (torch.randn(co, c, 3, 3) * 0.05).requires_grad_()
        bias = torch.randn(co).requires_grad_()
        offset0 = torch.randn(n, 18, h, h)
        for fmt_name, fmt in FORMATS.items():
            w_fmt = weight.detach().contiguous(memory_format=fmt).requires_grad_()
            for backward in (False, True):
                def make(_name, fmt=fmt, backward=backward):
                    return (torch.randn(n, c, h, h).contiguous(memory_format=fmt).requires_grad_(backward),
                            offset0.clone().requires_grad_(backward))
                fns = {"convzoo deform (pure torch)": lambda a: deform_conv2d(a[0], a[1], weight, bias, 1, 1, 1),
                       "torchvision deform_conv2d": lambda a: tv_deform(a[0], a[1], weight, bias, 1, 1, 1),
                       "standard conv": lambda a, w_fmt=w_fmt: F.conv2d(a[0], w_fmt, bias, 1, 1)}
                t = interleaved(fns, make, backward, rounds)
                tables.append(show(
                    f"deformable b{n} {c}→{co} {h}² 3×3, {fmt_name}, {'fwd+bwd' if backward else 'fwd'}", t,
                    [("torchvision deform_conv2d", "convzoo deform (pure torch)",
                      "torchvision / convzoo (target ≥ 2 fwd, ≥ 4 fwd+bwd)"),
                     ("convzoo deform (pure torch)", "standard conv",
                      "convzoo / standard conv (target ≤ 3 fwd, ≤ 5 fwd+bwd)")]))
    tables += dynamic(rounds)
    if out:
        write_results(out, "Deformable and dynamic conv against their baselines", tables, description=DESCRIPTION,
                      machine=machine)
        print(f"results: {out}")


def dynamic(rounds: int) -> list[Table]:
    n, c, h = 32, 64, 28
    dyn = cz.DynamicConv2d(c, c, 3, padding=1, temperature=1.0)
    static = torch.nn.Conv2d(c, c, 3, padding=1)
    tables = []
    for backward in (False, True):
        fns = {}
        for fmt_name, fmt in FORMATS.items():  # both formats in ONE round-robin, so they share the load
            fns[f"static conv ({fmt_name})"] = copy.deepcopy(static).to(memory_format=fmt)
            fns[f"dynamic conv ({fmt_name})"] = copy.deepcopy(dyn).to(memory_format=fmt)
        merged = interleaved_formats(fns, (n, c, h, h), backward, rounds)
        best = min(FORMATS, key=lambda f: statistics.median(merged[f"static conv ({f})"]))
        tables.append(show(
            f"dynamic b{n} {c}→{c} {h}² 3×3, {'fwd+bwd' if backward else 'fwd'} (static conv's best format: {best})",
            merged, [(f"dynamic conv ({f})", f"static conv ({best})", f"dynamic ({f}) / static ({best}) (target ≤ 1.3)")
                     for f in FORMATS]))
    print(f"\nload average at the end {os.getloadavg()}")
    return tables


if __name__ == "__main__":
    main()
