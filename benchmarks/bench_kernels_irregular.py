"""convzoo's CPU kernels for the irregular families against the forms the layers ran before them, timed round-robin.

Cases (``CASES``: family, memory format, the inputs, the forms; the first form is today's, a form named
'standard conv' is the bound):
- involution b8 × 64 × 56², 3×3, G = 2 (the registry's build): the kernels applied to the input, 'strided_views' (one
  strided view of the padded input per tap, accumulated in place) vs the numba kernel; and the whole layer as it was
  before (window centres from a padded copy, 'strided_views') vs now with either form.
- deformable v2 b8 × 64 → 128 × 56², 3×3 (offsets and masks given): convzoo's pure-PyTorch op (grid_sample into
  columns, one GEMM) vs the numba kernel vs a standard conv of the same shape (``F.conv2d``, same format).
- DCNv3 b8 × 64 × 56², 3×3, G = 2 (the registry's build): the sum over points, one ``grid_sample`` for all points
  of a group vs the numba kernel; and the whole layer (64 → 128).

Each case runs forward (no grad) and forward+backward (``.sum().backward()`` into every input that takes a
gradient); the forms of a case run round-robin in one process, ``--rounds`` rounds after a warm-up, and the fastest
round of each is kept. Prints the machine (CPU model and flags, torch's CPU capability, threads, numba's threading
layer, load average) and the ratios. ``--clock cpu`` times with the process's CPU time instead of the wall clock: on
a shared machine, with one thread, it leaves out the time spent waiting for a core (not the cache and memory
traffic of the other processes); the acceptance figures are wall-clock times on a quiet machine. Usage:

    python benchmarks/bench_kernels_irregular.py [--threads 2] [--rounds 10] [--runs 3]
        [--only involution,deformable,dcnv3]
        [--clock wall|cpu] [--json PATH]

``--json PATH`` writes the results file (the results format of ``convzoo.perf.results``, rendered by the docs site;
the committed runs live in ``benchmarks/results/kernels_irregular-*.json``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo.kernels.deform_torch import deform_conv2d as pure_deform_conv2d
from convzoo.functional import pad_pairs
from convzoo.kernels import numba_runtime
from convzoo.kernels.dcnv3_cpu import dcnv3_sample
from convzoo.kernels.deform_cpu import deform_conv2d as kernel_deform_conv2d
from convzoo.perf.results import Table, machine_info, write_results

DESCRIPTION = (
    "convzoo's numba kernels for the irregular families against the forms the layers ran before them: involution "
    "(b8 × 64 × 56², 3×3, G = 2: the kernels applied by strided views vs the kernel, and the whole layer), "
    "deformable v2 (b8 × 64 → 128 × 56², offsets and masks given: the pure-PyTorch op vs the kernel vs a standard "
    "conv of the same shape, the bound) and DCNv3 (the sum over points by one `grid_sample` vs the kernel, and the "
    "whole layer). Forward and forward+backward; the forms of a case round-robin in one process, the fastest round "
    "of each kept; `--clock cpu` times the process's CPU time instead of the wall clock (leaves out the time spent "
    "waiting for a core on a shared machine).")

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass
class Case:
    """One benchmark case: ``inputs()`` gives fresh tensors (leaves; those meant to get gradients require them),
    each form maps them to an output. The first form is today's; 'standard conv', when present, is the bound."""

    family: str
    fmt: str
    what: str
    inputs: Callable[[], tuple[torch.Tensor, ...]]
    forms: dict[str, Callable[..., torch.Tensor]] = field(default_factory=dict)


def machine() -> dict[str, object]:
    """The machine header (``machine_info``) with numba's threading layer."""
    numba = numba_runtime.numba_module()
    return machine_info(numba=f"{numba.__version__} ({numba.config.THREADING_LAYER})" if numba else "unavailable")


def results_table(rows: list[dict]) -> Table:
    """One line per (case, pass): today's form, the kernel, other forms, and the standard conv where it is the bound."""
    body = []
    for row in rows:
        times, (today, *_) = row["ms"], list(row["ms"])
        others = "; ".join(f"{k} {v:.2f}" for k, v in times.items() if k not in (today, "kernel", "standard conv"))
        body.append([row["family"], row["format"], row["what"], row["pass"], today, times[today], times["kernel"],
                     times[today] / times["kernel"], others, times.get("standard conv"),
                     times["kernel"] / times["standard conv"] if "standard conv" in times else None])
    return Table("The kernels against the forms they replace (fastest round, ms)",
                 ["family", "format", "what", "pass", "today's form", ("today ms", ".2f"), ("kernel ms", ".2f"),
                  ("today / kernel", ".2f"), "other forms (ms)", ("standard conv ms", ".2f"),
                  ("kernel / standard conv", ".2f")], body)


def involution_before(layer: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The involution layer's forward as it was before the kernel form: the window centres read from a padded copy
    of the input, the kernels applied by strided views ('strided_views')."""
    gen = layer.generator

    def forward(x: torch.Tensor) -> torch.Tensor:
        xp = pad_pairs(x, gen.pairs, gen.padding_mode)
        index = [slice(None), slice(None)]
        for size, k, s, d in zip(xp.shape[2:], gen.kernel_size, gen.stride, gen.dilation):
            out = (size - d * (k - 1) - 1) // s + 1
            index.append(slice(d * ((k - 1) // 2), d * ((k - 1) // 2) + s * (out - 1) + 1, s))
        kernels = gen.span(torch.relu(gen.reduce(xp[tuple(index)].movedim(1, -1)))).movedim(-1, 1)
        return layer.involve(x, kernels)

    return forward


def involution_cases(fmt: str) -> list[Case]:
    torch.manual_seed(0)
    layer = cz.build("involution", 64, 64)
    kernel_layer = cz.build("involution", 64, 64)
    kernel_layer.load_state_dict(layer.state_dict())
    layer.implementation, kernel_layer.implementation = "strided_views", "kernel"
    x0 = torch.randn(8, 64, 56, 56).contiguous(memory_format=FORMATS[fmt])
    with torch.no_grad():
        kernels0 = layer.generator(x0)

    def apply_inputs() -> tuple[torch.Tensor, ...]:
        return x0.clone(memory_format=torch.preserve_format), kernels0.clone(memory_format=torch.preserve_format)

    apply_forms = {"strided_views (today)": layer.involve, "kernel": kernel_layer._kernel_involve}
    layer_inputs = lambda: (x0.clone(memory_format=torch.preserve_format),)  # noqa: E731
    return [Case("involution", fmt, "apply the kernels (b8 64 56² 3×3 G=2)", apply_inputs, apply_forms),
            Case("involution", fmt, "layer (generator + apply)", layer_inputs,
                 {"before (padded centres, strided_views)": involution_before(layer), "strided_views": layer,
                  "kernel": kernel_layer})]


def deformable_cases(fmt: str) -> list[Case]:
    torch.manual_seed(0)
    weight = torch.randn(128, 64, 3, 3) * 0.05
    bias = torch.randn(128)
    conv_weight = weight.contiguous(memory_format=FORMATS[fmt])
    x0 = torch.randn(8, 64, 56, 56).contiguous(memory_format=FORMATS[fmt])
    offset0, mask0 = torch.randn(8, 18, 56, 56), torch.rand(8, 9, 56, 56)
    w0, b0 = weight, bias

    def inputs() -> tuple[torch.Tensor, ...]:
        return (x0.clone(memory_format=torch.preserve_format), offset0.clone(), mask0.clone(), w0.clone(), b0.clone())

    def standard(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, w: torch.Tensor,
                 b: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, conv_weight if not w.requires_grad else w.contiguous(memory_format=FORMATS[fmt]), b, 1, 1)

    return [Case("deformable_v2", fmt, "op, offsets and masks given (b8 64→128 56² 3×3)", inputs,
                 {"pure op (today)": lambda x, o, m, w, b: pure_deform_conv2d(x, o, w, b, 1, 1, 1, m),
                  "kernel": lambda x, o, m, w, b: kernel_deform_conv2d(x, o, w, b, 1, 1, 1, m),
                  "standard conv": standard})]


def dcnv3_cases(fmt: str) -> list[Case]:
    torch.manual_seed(0)
    layer = cz.build("dcnv3", 64, 128)
    with torch.no_grad():
        for p in (*layer.branch.offset.parameters(), *layer.branch.mask.parameters()):
            p.normal_(0, 0.1)  # offsets and masks away from the regular grid
    kernel_layer = cz.build("dcnv3", 64, 128)
    kernel_layer.load_state_dict(layer.state_dict())
    layer.implementation, kernel_layer.implementation = "grid_sample", "kernel"
    x0 = torch.randn(8, 64, 56, 56).contiguous(memory_format=FORMATS[fmt])
    with torch.no_grad():
        projected0, fields0 = layer.project_in(x0), layer.branch(x0)

    def sample_inputs() -> tuple[torch.Tensor, ...]:
        # the layer's own layouts: channels-last data behind NCHW shapes
        return (projected0.permute(0, 2, 3, 1).clone().permute(0, 3, 1, 2),
                fields0.permute(0, 2, 3, 1).clone().permute(0, 3, 1, 2))

    def kernel_form(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return dcnv3_sample(v.permute(0, 2, 3, 1), f.permute(0, 2, 3, 1), (3, 3), (1, 1), 1.0)

    cases = [Case("dcnv3", fmt, "layer (64→128, G=2)", lambda: (x0.clone(memory_format=torch.preserve_format),),
                  {"grid_sample (today)": layer, "kernel": kernel_layer})]
    if fmt == "contiguous":  # the sampling's input is channels-last whatever the layer's input: one format
        cases.insert(0, Case("dcnv3", "(channels-last data)", "sum over points (b8 64 56² 3×3 G=2)", sample_inputs,
                             {"grid_sample (today)": layer.sample, "kernel": kernel_form}))
    return cases


FAMILIES: dict[str, Callable[[str], list[Case]]] = {
    "involution": involution_cases, "deformable": deformable_cases, "dcnv3": dcnv3_cases}


def run_case(case: Case, backward: bool, rounds: int, clock: Callable[[], float] = time.perf_counter
             ) -> dict[str, float]:
    """The fastest of ``rounds`` round-robin rounds (after one warm-up) of each form, in ms."""
    best = {name: float("inf") for name in case.forms}
    params = [p for fn in case.forms.values() if isinstance(fn, torch.nn.Module) for p in fn.parameters()]
    for r in range(rounds + 1):
        names = list(case.forms) if r % 2 == 0 else list(case.forms)[::-1]
        for name in names:
            args = case.inputs()
            if backward:
                args = tuple(a.requires_grad_() if a.is_floating_point() else a for a in args)
                for p in params:
                    p.grad = None
            start = clock()
            if backward:
                case.forms[name](*args).sum().backward()
            else:
                with torch.no_grad():
                    case.forms[name](*args)
            elapsed = (clock() - start) * 1e3
            if r:
                best[name] = min(best[name], elapsed)
    return best


def ranges_table(runs: list[list[dict]]) -> Table:
    """Each row's ratios, lowest–highest over the runs (the first table holds the first run)."""
    body = []
    for i, row in enumerate(runs[0]):
        ratios = [rows[i]["ratios"] for rows in runs]
        today = next(iter(row["ratios"]))  # "<today's form> / kernel"
        cells = [f"{min(r[today] for r in ratios):.2f}–{max(r[today] for r in ratios):.2f}"]
        bound = [r["kernel / standard conv"] for r in ratios if "kernel / standard conv" in r]
        cells.append(f"{min(bound):.2f}–{max(bound):.2f}" if bound else "")
        body.append([row["family"], row["format"], row["what"], row["pass"], *cells])
    return Table(f"The ratios over {len(runs)} runs in one process (lowest–highest)",
                 ["family", "format", "what", "pass", "today / kernel", "kernel / standard conv"], body,
                 "Each run times every case again, in the same process, right after the one before.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1, help="time every case this many times; the results add a "
                                                             "table of each ratio's range over the runs")
    parser.add_argument("--only", default=",".join(FAMILIES))
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    header = {**machine(), "clock": args.clock}
    print(" | ".join(f"{k} {v}" for k, v in header.items() if k != "cpu_flags"))
    runs = []
    for _ in range(args.runs):
        rows = []
        for family in args.only.split(","):
            for fmt in FORMATS:
                for case in FAMILIES[family](fmt):
                    for backward in (False, True):
                        times = run_case(case, backward, args.rounds, clock)
                        names = list(times)
                        today, ours = times[names[0]], times["kernel"]
                        ratios = {f"{names[0]} / kernel": today / ours}
                        if "standard conv" in times:
                            ratios["kernel / standard conv"] = ours / times["standard conv"]
                            ratios[f"{names[0]} / standard conv"] = today / times["standard conv"]
                        row = {"family": case.family, "format": case.fmt, "what": case.what,
                               "pass": "fwd+bwd" if backward else "fwd", "ms": times, "ratios": ratios}
                        rows.append(row)
                        print(f"{case.family:14s} {case.fmt:21s} {row['pass']:7s} {case.what:50s} "
                              + "  ".join(f"{k} {v:8.2f} ms" for k, v in times.items()) + "   "
                              + "  ".join(f"{k}: {v:.2f}" for k, v in ratios.items()), flush=True)
        runs.append(rows)
    tables = [results_table(runs[0])] + ([ranges_table(runs)] if len(runs) > 1 else [])
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        write_results(args.json, f"Irregular families: the kernels against the forms they replace ({args.clock} "
                      "clock)", tables, description=DESCRIPTION, machine=header,
                      data={"rows": runs[0], "runs": runs})


if __name__ == "__main__":
    main()
