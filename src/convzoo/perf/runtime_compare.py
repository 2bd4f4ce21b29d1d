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
That needs an undisturbed round in each series. Eager torch on several threads can go a whole run without one while
other processes hold a core: its OpenMP team waits at each barrier for the thread that lost its core, a scheduler
time slice (docs/guide/speed.md has the measurements). So a row is ``trusted`` False (marked !, ``distrust`` says
why) where a series is ``bimodal`` (median ≥ ``BIMODAL``× and ≥ ``PREEMPTED_MS`` above its fastest round), where the
standard's fastest round in its rounds is that far above the run's, or where an eager series' fastest round is that
far above the same layer's fastest on one thread (``one_thread_ms``): more threads cannot cost a time slice unless
the team lost a core in every round. ``repeats=None`` runs more rounds while a row is untrusted.
``speed_ratio`` = standard / family on the runtime (> 1: faster), ``eager_speed_ratio`` the same in eager
float32, ``vs_eager`` = the family's eager float32 time / its runtime time (what moving to the runtime and dtype
gains). ``error``: relative L2 error of the runtime's output against eager float32 on a calibration batch.
"""

from __future__ import annotations

import math
import os
import statistics
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
# A series is bimodal when its median round is both BIMODAL× and PREEMPTED_MS above its fastest: a call that loses its
# core to another process waits a scheduler time slice (ms), where a thread pool's late worker or FormChoice's trial
# forms make µs calls at most ~3× slower, never a millisecond (0.02 vs 0.07 ms measured on 2 threads)
BIMODAL = 2.0
PREEMPTED_MS = 1.0
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
    trusted: bool = True  # False where a series of its rounds is bimodal (see the module docstring)
    distrust: str = ""  # why not: the bimodal series, with their fastest and median rounds
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


def machine_header(threads: int | None = None, runtimes: bool = True, device: str = "cpu") -> str:
    """The CPU model and the flags that decide int8 and float kernels (``perf.results.cpu_info``), torch's CPU
    capability, torch's version (and with ``runtimes`` the runtimes' versions), the thread count, and on a CUDA
    ``device`` the GPU with its CUDA and cuDNN versions: the first lines of every benchmark's output."""
    from .results import cpu_info

    model, present = cpu_info()
    flags = " ".join(f for f in CPU_FLAGS if f in present)
    versions = ", ".join([f"torch {torch.__version__}"]
                         + ([f"{k} {v}" for k, v in runtime_versions().items()] if runtimes else []))
    gpu = ""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        gpu = (f"; GPU: {torch.cuda.get_device_name(torch.device(device))}, CUDA {torch.version.cuda}, cuDNN "
               f"{torch.backends.cudnn.version()}")
    return (f"CPU: {model} ({os.cpu_count()} logical CPUs); flags: {flags or 'none of ' + ' '.join(CPU_FLAGS)}; "
            f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()}\n"
            f"{versions}; {threads or torch.get_num_threads()} thread(s)"
            + (" for every runtime" if runtimes else "") + gpu)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def _time_once(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> float:
    start = time.perf_counter()
    fn(x)
    return (time.perf_counter() - start) * 1e3


def interleaved_rounds(fns: Sequence[Callable[[torch.Tensor], Any]], inputs: Sequence[torch.Tensor],
                       repeats: int | None = None, min_time: float = 1.0, max_time: float = 6.0,
                       min_rounds: int = 5, max_rounds: int = 60,
                       settled: Callable[[list[list[float]]], bool] | None = None) -> list[list[float]]:
    """Per function, one time (ms) per round; a round runs every function once, in ``round_order`` (rotated and
    reversed: no function always follows the same one). ``repeats=None``: at least ``min_rounds`` rounds and
    ``min_time`` s, then on while ``settled(times)`` is False, at most ``max_rounds`` / ``max_time``."""
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
        elif r >= max_rounds or elapsed >= max_time or \
                (r >= min_rounds and elapsed >= min_time and (settled is None or settled(times))):
            break
    return times


def preempted(ms: float, undisturbed: float) -> bool:
    """Whether a time ``ms`` is a preempted one against an ``undisturbed`` time of the same call: ≥ ``BIMODAL`` ×
    and ≥ ``PREEMPTED_MS`` above it (a lost time slice, not jitter)."""
    return ms >= BIMODAL * undisturbed and ms - undisturbed >= PREEMPTED_MS


def bimodal(times: Sequence[float]) -> bool:
    """Whether most rounds ``times`` (ms) lost a time slice: their median is ``preempted`` against their fastest."""
    return preempted(statistics.median(times), min(times))


def one_thread_ms(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, calls: int = 5) -> float:
    """The fastest of ``calls`` calls of ``fn(x)`` on one torch thread, after two untimed ones (the layer's own form
    choice for that thread count), torch's thread count restored; NaN when it is one already."""
    threads = torch.get_num_threads()
    if threads == 1:
        return math.nan
    torch.set_num_threads(1)
    try:
        for _ in range(2):
            fn(x)
        return min(_time_once(fn, x) for _ in range(calls))
    finally:
        torch.set_num_threads(threads)


def distrust(runtime: str, family_name: str, times: Sequence[Sequence[float]], fastest: Sequence[float],
             one_thread: Sequence[float] = (math.nan, math.nan)) -> str:
    """Why a row's ratios are not to be trusted ("" where they are). ``times``: its rounds (ms) of standard and
    family on ``runtime``, then in eager; ``fastest``: the standard's fastest rounds (runtime, eager) of the run;
    ``one_thread``: the eager standard's and family's fastest on one thread (``one_thread_ms``; NaN: the run is on
    one thread). A bimodal series;
    a standard whose fastest round here is a preempted one against the run's; an eager series whose fastest round is
    a preempted one against one thread (every round of it lost its core: a ratio would divide by a time slice)."""
    labels = [f"{runtime} standard", f"{runtime} {family_name}", "eager standard", f"eager {family_name}"]
    why = {label: f"{label} bimodal (fastest {min(t):.3f} ms, median {statistics.median(t):.3f} ms)"
           for label, t in zip(labels, times) if bimodal(t)}  # a dict: the standard row's series come twice
    for label, t, best in ((labels[0], times[0], fastest[0]), (labels[2], times[2], fastest[1])):
        if preempted(min(t), best):
            why[f"{label} run"] = (f"{label} preempted in every round here (fastest {min(t):.3f} ms, {best:.3f} ms "
                                   "in the run)")
    for label, t, single in ((labels[2], times[2], one_thread[0]), (labels[3], times[3], one_thread[1])):
        if not math.isnan(single) and preempted(min(t), single) and f"{label} run" not in why:
            why[f"{label} one"] = (f"{label} preempted in every round (fastest {min(t):.3f} ms, {single:.3f} ms on "
                                   "one thread)")
    return "; ".join(why.values())


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
    base_single = one_thread_ms(base_eager, calibration[-1])
    fastest = [math.inf, math.inf]  # the standard's fastest rounds so far (runtime, eager): more rounds until reached
    singles: dict[str, tuple[float, float]] = {}  # family → eager standard's and family's fastest on one thread

    def settled(name: str) -> Callable[[list[list[float]]], bool]:
        def check(times: list[list[float]]) -> bool:
            times = [times[0], times[0], times[1], times[1]] if len(times) == 2 else times
            return not distrust(runtime, name, times, [min(fastest[0], *times[0]), min(fastest[1], *times[2])],
                                singles[name])

        return check

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
            singles[name] = (base_single, base_single if name == "standard" else one_thread_ms(eager, x))
            if name == "standard":  # the baseline against itself: its own rounds, ratio 1 by definition
                b, be = interleaved_rounds([base_runner.run, base_eager], calibration, repeats,
                                           settled=settled(name))
                times = [b, b, be, be]
            else:
                # .run: the process is on ``threads`` already (set_threads above), so no per-call thread check
                times = interleaved_rounds([base_runner.run, prepared.run, base_eager, eager], calibration, repeats,
                                           settled=settled(name))
            fastest[:] = min(fastest[0], *times[0]), min(fastest[1], *times[2])
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
        row.distrust = distrust(runtime, row.family, (b, f, be, fe), (base_ms, base_eager_ms), singles[row.family])
        row.trusted = not row.distrust
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


UNTRUSTED = (f"a series of the row's rounds is bimodal (median ≥ {BIMODAL:g}× and ≥ {PREEMPTED_MS:g} ms above its "
             "fastest: most rounds lost their core to another process), or its fastest round is that far above "
             "standard's fastest in the run or, in eager, the layer's fastest on one thread: don't trust the row "
             "(--json: distrust)")


def runtime_table(rows: Sequence[RuntimeRow], header: str, load_before: float | None = None) -> Any:
    """A rich Table of the rows, the machine ``header`` in its title with the load average (``load_before``: sampled
    before the timing) and a warning when other work keeps the machine busy (``compare.other_load``); rows built at
    another shape than asked are marked † and footnoted, untrusted rows ! (as in ``compare``)."""
    from rich.markup import escape
    from rich.table import Table

    from .compare import RESHAPED, other_load, shape_footnotes

    load_text, busy = other_load(load_before)

    other = {f.name for f in all_families() if not f.replaces_kxk}
    first = rows[0] if rows else None
    where = f"{first.runtime} {first.dtype}" if first else ""
    table = Table(title=f"convzoo compare on {where} — ratios vs standard on the same runtime; MACs = weight "
                        "multiply-accumulates (FLOPs = 2 × MACs); forward times = fastest rounds, standard and "
                        f"family on {where} and in eager float32 timed in the same rounds\n{header}; {load_text}"
                        + (" — WARNING: the machine is busy, times are inflated and noisy" if busy else ""),
                  caption="* not a same-shape k×k layer (built by the registry defaults, its own output shape). "
                          "speed ratio = standard / family (>1 faster); vs eager = the family's eager float32 time / "
                          f"its {where} time; error = relative L2 vs eager float32 on a calibration batch; runs: "
                          "share of the MACs quantized to int8, operators left outside the XNNPACK delegate (portable "
                          "kernels), the int8 kernels onnxruntime fused (--json gives them in full). ! = "
                          + UNTRUSTED
                          + escape(shape_footnotes(rows)))
    columns = ("family", "params", "MACs (M)", "MAC ratio", f"{where} ms", "speed ratio", "eager fp32 ms",
               "eager ratio", "vs eager", "error", "runs")
    for column in columns:
        table.add_column(column, justify="left" if column in ("family", "runs") else "right",
                         no_wrap=column == "family")
    for r in rows:
        name = r.family + (" *" if r.family in other else "") + (f" {RESHAPED}" if r.shape_rule else "") \
            + ("" if r.failed or r.trusted else " !")
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
    from .compare import RESHAPED

    first = rows[0]
    where = f"{first.runtime} {first.dtype}"
    lines = [f"| family | MACs (M) | MAC ratio | {where} ms | speed ratio | eager fp32 ms | eager ratio | vs eager | "
             "error | runs |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        name = r.family + (f" {RESHAPED}" if r.shape_rule else "") + ("" if r.failed or r.trusted else " !")
        if r.failed:
            lines.append(f"| {name} | {r.macs / 1e6:.1f} | {r.mac_ratio:.3f} | — | — | — | — | — | — | "
                         f"failed: {r.failed} |")
            continue
        lines.append(f"| {name} | {r.macs / 1e6:.1f} | {r.mac_ratio:.3f} | {r.ms:.2f} | {r.speed_ratio:.2f} | "
                     f"{r.eager_ms:.2f} | {r.eager_speed_ratio:.2f} | {r.vs_eager:.2f} | {r.error:.1e} | "
                     f"{r.summary} |")
    if any(not (r.failed or r.trusted) for r in rows):
        lines.append(f"\n! = {UNTRUSTED}")
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

    from .compare import checked_options, machine_load
    from .results import machine_info

    dtype = checked_runtime_options(runtime, dtype, threads)
    checked_options("float32", "cpu", names)
    count = len(names) + ("standard" not in names) if names else len(all_families())
    load_before = machine_load()[0]
    with Progress(console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("preparing", total=count)

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"{runtime} {dtype}: {name}")

        rows = compare_on_runtime(runtime, dtype, batch, in_channels, out_channels, size, kernel, names or None,
                                  repeats, threads, step)
    used = threads or torch.get_num_threads()
    settings = {"batch": batch, "in_channels": in_channels, "out_channels": out_channels, "size": size,
                "kernel": kernel, "runtime": runtime, "dtype": dtype, "device": "cpu", "threads": used,
                "repeats": repeats}
    machine = machine_info("cpu", load_average_before=round(load_before, 2) if math.isfinite(load_before) else None,
                           **runtime_versions())
    if csv_path:  # flat: every row carries the run's settings and CPU (a CSV has no header object)
        extra = {"batch": batch, "size": size, "kernel": kernel, "threads": used, "repeats": repeats,
                 "asked_in_channels": in_channels, "asked_out_channels": out_channels, "cpu": machine.get("cpu"),
                 "torch": machine.get("torch")}
        with open(csv_path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[*rows[0].to_dict(), *extra])
            writer.writeheader()
            writer.writerows({**r.to_dict(), "notes": "; ".join(r.notes)} | extra for r in rows)
    if as_json:  # one document: the run's settings and machine, then the rows (each as before)
        typer.echo(json.dumps({"settings": settings, "machine": machine, "rows": [r.to_dict() for r in rows]}))
        return
    console.print(runtime_table(rows, machine_header(threads), load_before))
    console.print(f"input ({batch}, {in_channels}, {size}, {size}) float32 on the CPU")
