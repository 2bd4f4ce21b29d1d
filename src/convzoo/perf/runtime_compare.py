"""``convzoo compare --runtime R --dtype D``: every family's MAC ratio next to its measured speed ratio on a
deployment runtime (ExecuTorch/XNNPACK, onnxruntime) in float32 or int8, beside the same family in float32 eager
PyTorch timed in the same rounds.

Each family and the 'standard' baseline are built as in ``compare`` (``build_layer``: C_in → C_in, marked † and
footnoted, where the family's rule refuses C_out), prepared for the runtime (``deploy.runtimes.runner``: int8
quantized with calibration on ``CALIBRATION_BATCHES`` random batches of the input's shape) and timed forward only,
round-robin: every round runs standard and family on the runtime and standard and family in eager float32 (the
order rotates every round), so load from other processes hits all four alike. Times are fastest rounds (load only
adds time), scaled as in ``compare``: a family's runtime time = min(family) / min(standard) of its rounds × the
standard's fastest round of the whole run; likewise for eager.
``speed_ratio`` = standard / family on the runtime (> 1: faster), ``eager_speed_ratio`` the same in eager
float32, ``vs_eager`` = the family's eager float32 time / its runtime time (what moving to the runtime and dtype
gains). ``error``: relative L2 error of the runtime's output against eager float32 on a calibration batch.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..arithmetic.cost import millions
from ..layers.form_choice import round_order
from ..registry import families as all_families
from ..registry import family

CALIBRATION_BATCHES = 4
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm",
             "sve")


@dataclass
class RuntimeRow:
    """One family on one runtime and dtype (see the module docstring); ``failed`` holds the error's first line
    where the family could not be prepared or run there (its times are then NaN)."""

    family: str
    runtime: str
    dtype: str
    params: int
    macs: int
    mac_ratio: float
    ms: float = math.nan
    speed_ratio: float = math.nan
    eager_ms: float = math.nan
    eager_speed_ratio: float = math.nan
    vs_eager: float = math.nan
    error: float = math.nan
    rounds: int = 0
    summary: str = ""  # short: int8 share of the MACs, operators outside the delegate, onnxruntime's int8 kernels
    notes: list[str] = field(default_factory=list)  # the same in full
    failed: str = ""
    in_channels: int = 0  # the layer's channels as built (see compare.build_layer); 0 where it was not built
    out_channels: int = 0
    shape_rule: str = ""  # the family's rule that refused the requested C_out: built C_in → C_in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_versions() -> dict[str, str]:
    """The runtimes' package versions ("not installed" where absent), for a run's machine record."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("executorch", "onnxruntime"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def machine_header(threads: int | None = None) -> str:
    """The CPU model and the flags that decide int8 and float kernels (``perf.results.cpu_info``), torch's CPU
    capability, the runtimes' versions and the thread count: the first lines of every runtime benchmark."""
    from .results import cpu_info

    model, present = cpu_info()
    flags = " ".join(f for f in CPU_FLAGS if f in present)
    versions = ", ".join([f"torch {torch.__version__}"] + [f"{k} {v}" for k, v in runtime_versions().items()])
    return (f"CPU: {model} ({os.cpu_count()} logical CPUs); flags: {flags or 'none of ' + ' '.join(CPU_FLAGS)}; "
            f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}\n"
            f"{versions}; {threads or torch.get_num_threads()} thread(s) for every runtime")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def _time_once(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
    start = time.perf_counter()
    fn(x)
    return (time.perf_counter() - start) * 1e3


def interleaved_rounds(fns: Sequence[Callable[[torch.Tensor], Any]], inputs: Sequence[torch.Tensor],
                       repeats: int | None = None, min_time: float = 1.0, max_time: float = 6.0,
                       min_rounds: int = 5, max_rounds: int = 60) -> list[list[float]]:
    """Per function, one time (ms) per round; a round runs every function once, in ``round_order`` (rotated and
    reversed: no function always follows the same one). ``repeats=None``: at least ``min_rounds`` rounds and
    ``min_time`` s, at most ``max_rounds`` / ``max_time``."""
    for fn in fns:  # warm-up: first-call allocations, thread pools, packed weights
        for _ in range(2):
            fn(inputs[0])
    times: list[list[float]] = [[] for _ in fns]
    start, r = time.perf_counter(), 0
    while True:
        for i in round_order(range(len(fns)), r):
            times[i].append(_time_once(fns[i], inputs[r % len(inputs)]))
        r += 1
        elapsed = time.perf_counter() - start
        if repeats is not None:
            if r >= repeats:
                break
        elif r >= max_rounds or elapsed >= max_time or (r >= min_rounds and elapsed >= min_time):
            break
    return times


def compare_on_runtime(runtime: str, dtype: str = "int8", batch: int = 8, in_channels: int = 64,
                       out_channels: int = 128, size: int = 56, kernel_size: int = 3,
                       families: Sequence[str] | None = None, repeats: int | None = None, threads: int | None = None,
                       progress: Callable[[str], None] | None = None) -> list[RuntimeRow]:
    """One row per family (default: all; 'standard' is always timed as the baseline) on ``runtime`` in ``dtype``,
    next to eager float32 timed in the same rounds (see the module docstring)."""
    from ..arithmetic.cost import cost
    from ..deploy.runtimes import check_runtime, runner, set_threads
    from .compare import Built, build_layer

    check_runtime(runtime, dtype)
    names = list(families) if families else [f.name for f in all_families()]
    for name in names:
        family(name)  # unknown names fail before any work
    threads = threads or torch.get_num_threads()
    set_threads(threads)
    g = torch.Generator().manual_seed(0)
    shape = (batch, in_channels, size, size)
    calibration = [torch.randn(shape, generator=g) for _ in range(CALIBRATION_BATCHES)]

    def prepare(name: str) -> tuple[Any, Any, Any, Built]:
        built = build_layer(name, batch, in_channels, out_channels, size, kernel_size, torch.float32, "cpu")
        module = built.module.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared = runner(module, calibration[-1], runtime, dtype, calibration, threads=threads)
        return module, prepared, cost(module, built.input_shape), built

    base_module, base_runner, base_cost, base_built = prepare("standard")
    base_eager = _eager(base_module)
    rows: list[RuntimeRow] = []
    collected: list[tuple[RuntimeRow, list[list[float]]]] = []
    for name in ["standard"] + [n for n in names if n != "standard"]:
        if progress:
            progress(name)
        try:
            module, prepared, report, built = (base_module, base_runner, base_cost, base_built) \
                if name == "standard" else prepare(name)
        except Exception as error:  # a family a runtime cannot take: a row that says why, not a lost table
            rows.append(RuntimeRow(name, runtime, dtype, 0, 0, math.nan, failed=_first_line(error)))
            continue
        row = RuntimeRow(name, runtime, dtype, sum(p.numel() for p in module.parameters()), report.macs,
                         report.macs / base_cost.macs, summary=prepared.summary(), notes=list(prepared.notes),
                         in_channels=built.in_channels, out_channels=built.out_channels, shape_rule=built.shape_rule)
        eager = _eager(module)
        try:
            x = calibration[-1]
            with torch.no_grad():
                row.error = _relative_error(prepared(x), eager(x))
            if name == "standard":  # the baseline against itself: its own rounds, ratio 1 by definition
                b, be = interleaved_rounds([base_runner, base_eager], calibration, repeats)
                times = [b, b, be, be]
            else:
                times = interleaved_rounds([base_runner, prepared, base_eager, eager], calibration, repeats)
        except Exception as error:
            row.failed = _first_line(error)
            rows.append(row)
            continue
        rows.append(row)
        collected.append((row, times))
    base_ms = min(t for _, times in collected for t in times[0])
    base_eager_ms = min(t for _, times in collected for t in times[2])
    for row, (b, f, be, fe) in collected:
        row.rounds = len(f)
        row.ms = min(f) / min(b) * base_ms
        row.eager_ms = min(fe) / min(be) * base_eager_ms
        row.speed_ratio = base_ms / row.ms
        row.eager_speed_ratio = base_eager_ms / row.eager_ms
        row.vs_eager = row.eager_ms / row.ms
    by_name = {row.family: row for row in rows}
    return [by_name[n] for n in names]


def _eager(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


def _relative_error(actual: Any, expected: torch.Tensor) -> float:
    a, e = torch.as_tensor(actual).double(), expected.double()
    return float((a - e).norm() / e.norm().clamp_min(1e-12))


def runtime_table(rows: Sequence[RuntimeRow], header: str) -> Any:
    """A rich Table of the rows, the machine ``header`` in its title; rows built at another shape than asked are
    marked † and footnoted (as in ``compare``)."""
    from rich.markup import escape
    from rich.table import Table

    from .compare import RESHAPED, shape_footnote

    other = {f.name for f in all_families() if not f.replaces_kxk}
    first = rows[0] if rows else None
    where = f"{first.runtime} {first.dtype}" if first else ""
    table = Table(title=f"convzoo compare on {where} — ratios vs standard on the same runtime; MACs = weight "
                        "multiply-accumulates (FLOPs = 2 × MACs); forward times = fastest rounds, standard and "
                        f"family on {where} and in eager float32 timed in the same rounds\n{header}",
                  caption="* not a same-shape k×k layer (built by the registry defaults, its own output shape). "
                          "speed ratio = standard / family (>1 faster); vs eager = the family's eager float32 time / "
                          f"its {where} time; error = relative L2 vs eager float32 on a calibration batch; runs: "
                          "share of the MACs quantized to int8, operators left outside the XNNPACK delegate (portable "
                          "kernels), the int8 kernels onnxruntime fused (--json gives them in full)."
                          + escape("".join("\n" + shape_footnote(r.family, r.in_channels, r.out_channels,
                                                                 r.shape_rule) for r in rows if r.shape_rule)))
    columns = ("family", "params", "MACs (M)", "MAC ratio", f"{where} ms", "speed ratio", "eager fp32 ms",
               "eager ratio", "vs eager", "error", "runs")
    for column in columns:
        table.add_column(column, justify="left" if column in ("family", "runs") else "right",
                         no_wrap=column == "family")
    for r in rows:
        name = r.family + (" *" if r.family in other else "") + (f" {RESHAPED}" if r.shape_rule else "")
        if r.failed:
            table.add_row(name, f"{r.params:,}", millions(r.macs), f"{r.mac_ratio:.3f}", "—", "—", "—", "—",
                          "—", "—", f"failed: {r.failed}")
            continue
        table.add_row(name, f"{r.params:,}", millions(r.macs), f"{r.mac_ratio:.3f}", f"{r.ms:.2f}",
                      f"{r.speed_ratio:.2f}", f"{r.eager_ms:.2f}", f"{r.eager_speed_ratio:.2f}", f"{r.vs_eager:.2f}",
                      f"{r.error:.1e}", r.summary)
    return table


def markdown_table(rows: Sequence[RuntimeRow]) -> str:
    """The rows as a markdown table (for benchmarks/results)."""
    first = rows[0]
    where = f"{first.runtime} {first.dtype}"
    lines = [f"| family | MACs (M) | MAC ratio | {where} ms | speed ratio | eager fp32 ms | eager ratio | vs eager | "
             "error | runs |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        name = r.family + (" †" if r.shape_rule else "")
        if r.failed:
            lines.append(f"| {name} | {r.macs / 1e6:.1f} | {r.mac_ratio:.3f} | — | — | — | — | — | — | "
                         f"failed: {r.failed} |")
            continue
        lines.append(f"| {name} | {r.macs / 1e6:.1f} | {r.mac_ratio:.3f} | {r.ms:.2f} | {r.speed_ratio:.2f} | "
                     f"{r.eager_ms:.2f} | {r.eager_speed_ratio:.2f} | {r.vs_eager:.2f} | {r.error:.1e} | "
                     f"{r.summary} |")
    return "\n".join(lines)


RUNTIME_DTYPES = {"fp32": "fp32", "float32": "fp32", "int8": "int8"}


def checked_runtime_options(runtime: str, dtype: str, threads: int | None) -> str:
    """The dtype ('fp32' or 'int8') for ``runtime``; a bad combination or a missing package ends in one line on
    stderr, exit code 2."""
    import typer

    from ..deploy.extras import MissingPackage
    from ..deploy.runtimes import check_runtime

    try:
        if dtype not in RUNTIME_DTYPES:
            raise ValueError(f"--dtype {dtype!r} on --runtime {runtime} must be one of fp32, int8")
        if threads is not None and threads < 1:
            raise ValueError(f"--threads={threads} must be a positive int")
        check_runtime(runtime, RUNTIME_DTYPES[dtype])
    except (ValueError, MissingPackage) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    return RUNTIME_DTYPES[dtype]


def run_runtime_compare_command(console: Any, runtime: str, dtype: str, batch: int, in_channels: int,
                                out_channels: int, size: int, kernel: int, repeats: int | None, threads: int | None,
                                as_json: bool, csv_path: str | None, names: Sequence[str] | None) -> None:
    """The body of ``convzoo compare --runtime xnnpack|onnxruntime [--dtype int8]``: table (or JSON), optional CSV."""
    import csv
    import json

    import typer
    from rich.progress import Progress

    from .compare import checked_options

    dtype = checked_runtime_options(runtime, dtype, threads)
    checked_options("float32", "cpu", names)
    count = len(names) + ("standard" not in names) if names else len(all_families())
    with Progress(console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("preparing", total=count)

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"{runtime} {dtype}: {name}")

        rows = compare_on_runtime(runtime, dtype, batch, in_channels, out_channels, size, kernel, names or None,
                                  repeats, threads, step)
    if csv_path:
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0].to_dict()))
            writer.writeheader()
            writer.writerows({**r.to_dict(), "notes": "; ".join(r.notes)} for r in rows)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows]))
        return
    if not console.is_terminal and console.width < 200:
        from rich.console import Console

        console = Console(width=200)
    console.print(runtime_table(rows, machine_header(threads)))
    console.print(f"input ({batch}, {in_channels}, {size}, {size}) float32 on the CPU")
