"""Dynamic conv vs a static conv of the same shape (batch 32, 64→64, 28², k=3), forward and forward+backward.

One round-robin per pass (``perf.timing.round_robin``: one run per candidate per round, order rotated) over: the
static conv in both memory formats, convzoo's DynamicConv2d (implementation 'auto', its one-time choice made
before the rounds) fed each format, and (--forms) every exact eager form of the layer.
Prints interleaved medians and dynamic / static-in-its-best-format ratios (target ≤ 1.3), with the load average
before and after, and writes them to ``benchmarks/results/bench_dynamic.json`` (``--out PATH``; the results format
of ``convzoo.perf.results``). Usage: python benchmarks/bench_dynamic.py [--quick] [--threads N] [--forms]
[--profile] [--out PATH] (--forms also times each form by itself; without it only the layer and the static convs;
--profile adds where the channels-last layer's time goes: torch.profiler's self time per op, per call).
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import torch

import convzoo as cz
from convzoo.perf.results import Table, machine_info, write_results
from convzoo.perf.timing import FORMATS, make_inputs, round_robin

DESCRIPTION = (
    "Dynamic conv (`DynamicConv2d`, K = 4, implementation 'auto' with its one-time choice made before the rounds) "
    "against a static conv of the same shape, batch 32, 64→64, 28², 3×3, forward and forward+backward, each fed "
    "NCHW and channels_last inputs: all candidates in one round-robin per pass (15 rounds), medians and fastest "
    "rounds, ratios against the static conv in its best format (target ≤ 1.3). With `--profile`, torch.profiler's "
    "self time per op of the channels-last layer and of the static conv.")


def main() -> None:
    quick = "--quick" in sys.argv
    if "--threads" in sys.argv:
        torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else (
        None if quick else Path(__file__).parent / "results" / "bench_dynamic.json")
    n, c, h = (4, 16, 14) if quick else (32, 64, 28)
    machine = machine_info()
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, load average {os.getloadavg()}")
    torch.manual_seed(0)
    dynamic = cz.DynamicConv2d(c, c, 3, padding=1, temperature=1.0)
    static = torch.nn.Conv2d(c, c, 3, padding=1)
    tables, ratios = [], []
    for backward in (False, True):
        modules: dict[str, tuple[torch.nn.Module | object, str]] = {}
        for fmt in FORMATS:
            modules[f"static conv ({fmt})"] = (copy.deepcopy(static).to(memory_format=FORMATS[fmt]), fmt)
            layer = copy.deepcopy(dynamic).to(memory_format=FORMATS[fmt])
            modules[f"dynamic auto ({fmt})"] = (layer, fmt)
            if "--forms" in sys.argv:
                for name, form in layer._forms(make_inputs((n, c, h, h), 1, memory_format=FORMATS[fmt])[0]).items():
                    modules[f"dynamic {name} ({fmt})"] = (form, fmt)
        inputs = {fmt: make_inputs((n, c, h, h), 3, memory_format=FORMATS[fmt], requires_grad=backward)
                  for fmt in FORMATS}
        chosen = {}
        for label, (fn, fmt) in modules.items():
            if label.startswith("dynamic auto"):
                with torch.set_grad_enabled(backward):
                    chosen[fmt] = fn.chosen_form(inputs[fmt][0])  # the one-time measurement, outside the rounds
        params = [p for fn, _ in modules.values() if isinstance(fn, torch.nn.Module) for p in fn.parameters()]
        times = round_robin({label: (fn, inputs[fmt]) for label, (fn, fmt) in modules.items()}, backward=backward,
                            params=params, rounds=2 if quick else 15)
        best = min(FORMATS, key=lambda f: times[f"static conv ({f})"].median_ms)
        static_ms = times[f"static conv ({best})"].median_ms
        best_min = min(FORMATS, key=lambda f: times[f"static conv ({f})"].min_ms)
        static_min = times[f"static conv ({best_min})"].min_ms
        title = "fwd+bwd" if backward else "fwd"
        print(f"\ndynamic b{n} {c}->{c} {h}x{h} 3x3, {title}; static conv's best format: {best}; "
              f"auto chose {chosen}")
        rows = []
        for label, t in times.items():
            rows.append([label, t.median_ms, t.min_ms, t.runs, t.median_ms / static_ms])
            print(f"  {label:44s} median {t.median_ms:8.2f} ms  min {t.min_ms:8.2f}  (n={t.runs})  "
                  f"/ static ({best}) = {t.median_ms / static_ms:.2f}")
        tables.append(Table(f"Dynamic conv b{n} {c}→{c} {h}² 3×3, {title}: every candidate",
                            ["candidate", ("median ms", ".2f"), ("fastest ms", ".2f"), "runs",
                             (f"median / static conv ({best})", ".2f")], rows,
                            f"The static conv's best format (by medians): {best}."))
        for fmt in FORMATS:
            auto = times[f"dynamic auto ({fmt})"]
            ratios.append([title, fmt, chosen[fmt], auto.median_ms / static_ms, auto.min_ms / static_min])
            print(f"  dynamic auto ({fmt}) / static ({best}): {auto.median_ms / static_ms:.2f} (medians), "
                  f"{auto.min_ms / static_min:.2f} (minima, static's best by minima: {best_min})  (target <= 1.3)")
    tables.insert(0, Table("Dynamic conv / static conv in its best format (target ≤ 1.3)",
                           ["pass", "input format", "form 'auto' chose", ("medians", ".2f"),
                            ("fastest rounds", ".2f")], ratios,
                           "The static conv's best format is chosen by medians for the first ratio and by fastest "
                           "rounds for the second."))
    if "--profile" in sys.argv:
        tables.append(profile(dynamic, static, (n, c, h, h), runs=2 if quick else 10))
    print(f"\nload average at the end {os.getloadavg()}")
    if out:
        write_results(out, "Dynamic conv against a static conv", tables, description=DESCRIPTION, machine=machine)
        print(f"results: {out}")


def profile(dynamic: torch.nn.Module, static: torch.nn.Module, shape: tuple[int, ...], runs: int) -> Table:
    """Self CPU time per op (ms per call of the module) of the layer (its 'auto' form) and the static conv, both
    channels-last, forward and forward+backward, over ``runs`` calls after two warm-up calls."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x = make_inputs(shape, 1, memory_format=torch.channels_last, requires_grad=True)[0]
    rows = []
    for backward in (False, True):
        for label, module in (("dynamic auto", dynamic), ("static conv", static)):
            module = copy.deepcopy(module).to(memory_format=torch.channels_last)

            def call() -> None:
                with torch.set_grad_enabled(backward):
                    y = module(x)
                    if backward:
                        torch.autograd.grad(y, [x, *module.parameters()], torch.ones_like(y))

            for _ in range(2):
                call()
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(runs):
                    call()
            events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            total = sum(e.self_cpu_time_total for e in events) / runs / 1e3
            top = ", ".join(f"{e.key} {e.self_cpu_time_total / runs / 1e3:.2f} ({e.count // runs})"
                            for e in events[:9])
            with torch.set_grad_enabled(backward):
                form = module.chosen_form(x) if hasattr(module, "chosen_form") else ""
            pass_name = "fwd+bwd" if backward else "fwd"
            rows.append([pass_name, label, form, total, top])
            print(f"\nprofile {pass_name} {label} [{form}]: {total:.2f} ms a call; self ms (calls) per op: {top}")
    return Table("Where the time goes: torch.profiler's self time per op, channels_last, per call",
                 ["pass", "module", "form", ("ms a call", ".2f"), "self ms (calls) per op, the nine largest"], rows)


if __name__ == "__main__":
    main()
