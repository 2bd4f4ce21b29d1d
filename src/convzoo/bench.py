"""Timing harness: warm-up, median of many runs, inputs rotated, threads pinned, both memory formats, forward and
forward+backward; plus the physical limits (measured GEMM peak, measured copy bandwidth) and ``optimize``.

Times are medians in milliseconds. On CUDA, runs are timed with CUDA events (the GPU's own clock) after a
synchronise, and cuDNN autotuning (``benchmark=True``) is on; on CPU with ``time.perf_counter``.
"""

from __future__ import annotations

import warnings
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass(frozen=True)
class Timing:
    """Median and spread of ``runs`` timed calls, in milliseconds."""

    median_ms: float
    min_ms: float
    runs: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_inputs(shape: Sequence[int], count: int = 3, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, memory_format: torch.memory_format = torch.contiguous_format,
                requires_grad: bool = False, seed: int = 0) -> list[torch.Tensor]:
    """``count`` distinct random inputs, rotated through by ``measure`` so caches hold no single input."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        x = (torch.rand(tuple(shape), generator=generator) * 2 - 1).to(device=device, dtype=dtype)
        if x.dim() == 4:
            x = x.contiguous(memory_format=memory_format)
        out.append(x.requires_grad_(requires_grad))
    return out


def measure(fn: Callable[[torch.Tensor], Any], inputs: Sequence[torch.Tensor], *, backward: bool = False,
            params: Sequence[torch.Tensor] = (), warmup: int = 2, repeats: int | None = None,
            min_time: float = 0.25, max_repeats: int = 30, min_repeats: int = 3) -> Timing:
    """Median time of ``fn(x)`` (or of ``fn(x)`` then backward of its output) with x cycling through ``inputs``.

    ``repeats=None``: run until ``min_time`` seconds are spent (between ``min_repeats`` and ``max_repeats`` runs).
    ``params``: tensors whose ``.grad`` is cleared between runs, so gradient accumulation is not timed.
    """
    device = inputs[0].device
    grads: dict[tuple, torch.Tensor] = {}

    def step(i: int) -> None:
        x = inputs[i % len(inputs)]
        if not backward:
            with torch.no_grad():
                fn(x)
            return
        y = fn(x)
        key = (tuple(y.shape), y.stride())
        if key not in grads:
            grads[key] = torch.ones_like(y)
        y.backward(grads[key])

    def clear() -> None:
        for p in params:
            p.grad = None
        for x in inputs:
            x.grad = None

    slow = False
    for i in range(warmup):
        _sync(device)
        t0 = time.perf_counter()
        step(i)
        clear()
        _sync(device)
        if time.perf_counter() - t0 > 1.0:  # a call over 1 s: one warm-up and one timed run are enough
            slow = True
            break
    if slow and repeats is None:
        min_repeats = 1
    times: list[float] = []
    start_all = time.perf_counter()
    i = 0
    while True:
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step(i)
            end.record()
            torch.cuda.synchronize(device)
            times.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step(i)
            times.append((time.perf_counter() - t0) * 1e3)
        clear()
        i += 1
        if repeats is not None:
            if i >= repeats:
                break
        elif i >= max_repeats or (i >= min_repeats and time.perf_counter() - start_all >= min_time):
            break
    return Timing(statistics.median(times), min(times), len(times))


def measure_interleaved(fns: dict[str, Callable[[torch.Tensor], Any]], inputs: Sequence[torch.Tensor], *,
                        backward: bool = False, params: Sequence[torch.Tensor] = (), min_time: float = 0.25,
                        max_repeats: int = 30, min_repeats: int = 3) -> dict[str, Timing]:
    """Side-by-side medians: runs go round-robin over ``fns`` (one run of each per round), so load from other
    processes and clock changes hit every candidate alike and the ratios stay fair on a busy machine."""
    first = {k: measure(f, inputs, backward=backward, params=params, warmup=1, repeats=1) for k, f in fns.items()}
    per_round = sum(t.median_ms for t in first.values()) * 1e-3
    rounds = max(min_repeats if per_round < 1.0 else 1, min(max_repeats, math.ceil(min_time * len(fns) / per_round)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            times[k].append(measure(f, inputs, backward=backward, params=params, warmup=0, repeats=1).median_ms)
    return {k: Timing(statistics.median(v), min(v), len(v)) for k, v in times.items()}


def time_module(module: nn.Module, inputs: Sequence[torch.Tensor], backward: bool = False, **kw: Any) -> Timing:
    return measure(module, inputs, backward=backward, params=list(module.parameters()), **kw)


def configure(device: str | torch.device, threads: int | None = None) -> dict[str, Any]:
    """Pin the thread count (CPU) and turn cuDNN autotuning on (CUDA); return what was set, for the report."""
    device = torch.device(device)
    if threads is not None:
        torch.set_num_threads(threads)
    info: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
    return info


# --- physical limits ------------------------------------------------------------------------------------------------


def gemm_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None) -> float:
    """Measured GEMM throughput in GMAC/s: median time of an n×n×n ``torch.mm`` (n³ MACs)."""
    device = torch.device(device)
    n = n or (4096 if device.type == "cuda" else 1536)
    a, b = (torch.rand(n, n, device=device).to(dtype) for _ in range(2))
    t = measure(lambda x: torch.mm(x, b), [a], warmup=2, min_time=0.5, max_repeats=20)
    return n**3 / (t.median_ms * 1e-3) / 1e9


def copy_bandwidth(device: str | torch.device = "cpu", megabytes: int = 256) -> float:
    """Measured copy bandwidth in GB/s (bytes read + bytes written per second) of a large ``copy_``."""
    device = torch.device(device)
    src = torch.rand(megabytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    t = measure(lambda x: dst.copy_(x), [src], warmup=2, min_time=0.5, max_repeats=20)
    return 2 * src.numel() * 4 / (t.median_ms * 1e-3) / 1e9


# --- optimize ---------------------------------------------------------------------------------------------------------


@dataclass
class FormatChoice:
    """Which memory format ``optimize`` chose, and the forward medians (ms) it measured for each."""

    memory_format: str
    timings_ms: dict[str, float]
    speedup: float  # time of the slower format / time of the chosen one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def optimize(model: nn.Module, example_input: torch.Tensor, formats: Sequence[str] = ("contiguous", "channels_last"),
             backward: bool = False, **measure_kw: Any) -> tuple[nn.Module, FormatChoice]:
    """Time ``model`` on ``example_input`` in each memory format; return the model converted to the fastest one
    (``model.to(memory_format=...)``, in place) and the choice with its timings. Feed inputs in the same format
    (``x.contiguous(memory_format=torch.channels_last)``) for the speed to hold."""
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        raise ValueError("optimize needs a 4-D (N, C, H, W) example_input: memory formats are 2-D image layouts")
    timings = {}
    for name in formats:
        fmt = FORMATS[name]
        _to_format(model, fmt)
        x = example_input.detach().contiguous(memory_format=fmt).requires_grad_(backward)
        timings[name] = time_module(model, [x], backward=backward, **measure_kw).median_ms
    best = min(timings, key=timings.get)
    _to_format(model, FORMATS[best])
    return model, FormatChoice(best, timings, max(timings.values()) / timings[best])


# --- the careful per-family bench ------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One implementation of a family's function timed in one memory format."""

    family: str
    kind: str  # "convzoo" | "native" | "peer" | "naive"
    name: str
    memory_format: str
    forward_ms: float
    forward_backward_ms: float | None
    max_abs_diff: float  # vs convzoo's layer on the same input


@dataclass
class FamilyBench:
    family: str
    input_shape: tuple[int, ...]
    macs: int
    mac_ratio: float
    bytes: int
    variants: list[Variant] = field(default_factory=list)

    def best(self, kind: str, backward: bool = False) -> Variant | None:
        key = (lambda v: v.forward_backward_ms) if backward else (lambda v: v.forward_ms)
        pool = [v for v in self.variants if v.kind == kind and key(v) is not None]
        return min(pool, key=key) if pool else None

    def summary(self, gemm_gmacs: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"family": self.family, "mac_ratio": self.mac_ratio}
        for backward, tag in ((False, "fwd"), (True, "fwd_bwd")):
            mine, native = self.best("convzoo", backward), self.best("native", backward)
            attr = "forward_backward_ms" if backward else "forward_ms"
            if mine is not None:
                out[f"{tag}_ms"] = getattr(mine, attr)
                out[f"{tag}_format"] = mine.memory_format
            if mine is not None and native is not None:
                out[f"{tag}_vs_native"] = getattr(mine, attr) / getattr(native, attr)
                out[f"{tag}_native"] = f"{native.name} ({native.memory_format})"
        mine = self.best("convzoo")
        if mine is not None:
            out["gmacs_per_s"] = self.macs / (mine.forward_ms * 1e-3) / 1e9
            if gemm_gmacs:
                out["peak_fraction"] = out["gmacs_per_s"] / gemm_gmacs
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _to_format(module: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """4-D parameters to ``fmt`` (``Module.to(memory_format=)`` refuses modules holding 5-D kernels)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=fmt)
    return module


def bench_family(name: str, batch: int = 8, in_channels: int = 64, out_channels: int = 128, size: int = 56,
                 kernel_size: int = 3, dtype: torch.dtype = torch.float32, device: str = "cpu",
                 formats: Sequence[str] = ("contiguous", "channels_last"), backward: bool = True,
                 standard_macs: int | None = None, **measure_kw: Any) -> FamilyBench:
    """Time convzoo's layer, every native composition, peers and naive published forms of family ``name``."""
    from .baselines import alternatives
    from .compare import build_for_compare
    from .cost import cost

    module, shape = build_for_compare(name, batch, in_channels, out_channels, size, kernel_size, dtype, device)
    report = cost(module, shape, dtype=dtype)
    if standard_macs is None:
        std, std_shape = build_for_compare("standard", batch, in_channels, out_channels, size, kernel_size, dtype, "meta")
        standard_macs = cost(std, std_shape, dtype=dtype).macs
    result = FamilyBench(name, tuple(shape), report.macs, report.macs / standard_macs, report.bytes)
    for fmt_name in formats:
        fmt = FORMATS[fmt_name]
        _to_format(module, fmt)
        inputs = make_inputs(shape, 3, device, dtype, fmt, requires_grad=backward)
        with torch.no_grad():
            expected = module(inputs[0])
        impls: list[tuple[str, str, Callable, None]] = [("convzoo", f"convzoo {type(module).__name__}", module, None)]
        impls += [(kind, label, fn, None) for kind, label, fn in alternatives(module)]
        ok: dict[str, tuple[str, Callable]] = {}
        diffs: dict[str, float] = {}
        for kind, label, fn, _ in impls:
            try:
                with torch.no_grad():
                    diffs[label] = float((fn(inputs[0]).float() - expected.float()).abs().max())
                ok[label] = (kind, fn)
            except (RuntimeError, NotImplementedError) as error:  # e.g. an op with no kernel for this device/dtype
                result.variants.append(Variant(name, kind, f"{label} [failed: {str(error).splitlines()[0][:60]}]",
                                               fmt_name, math.nan, None, math.nan))
        params = list(module.parameters())
        fns = {label: fn for label, (_, fn) in ok.items()}
        fwd = measure_interleaved(fns, inputs, params=params, **measure_kw)
        fb = measure_interleaved(fns, inputs, backward=True, params=params, **measure_kw) if backward else {}
        for label, (kind, _) in ok.items():
            result.variants.append(Variant(name, kind, label, fmt_name, fwd[label].median_ms,
                                           fb[label].median_ms if label in fb else None, diffs[label]))
    _to_format(module, torch.contiguous_format)
    return result


def bench(names: Sequence[str] | None = None, progress: Callable[[str], None] | None = None,
          **kw: Any) -> list[FamilyBench]:
    """``bench_family`` for each family (default: all), sharing one MAC baseline."""
    from .registry import families

    names = list(names) if names else [f.name for f in families()]
    out = []
    for name in names:
        if progress:
            progress(name)
        out.append(bench_family(name, **kw))
    return out


def plot(results: Sequence[FamilyBench], path: str, standard_fwd_ms: float | None = None) -> str:
    """PNG: MAC ratio vs measured speed ratio (standard's time / family's time, best format) per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    std = standard_fwd_ms
    if std is None:
        std = next(r.best("convzoo").forward_ms for r in results if r.family == "standard")
    fig, ax = plt.subplots(figsize=(7, 6))
    for r in results:
        mine = r.best("convzoo")
        if mine is None or not math.isfinite(mine.forward_ms):
            continue
        x, y = 1 / r.mac_ratio if r.mac_ratio else math.nan, std / mine.forward_ms
        ax.scatter([x], [y])
        ax.annotate(r.family, (x, y), fontsize=7)
    lim = [0.05, 200]
    ax.plot(lim, lim, "k--", lw=0.8, label="speed-up = MAC reduction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MAC reduction vs standard (standard MACs / family MACs)")
    ax.set_ylabel("measured forward speed-up vs standard (best memory format)")
    ax.legend()
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_bench_command(console: Any, names: Sequence[str] | None, batch: int, in_channels: int, out_channels: int,
                      size: int, kernel: int, dtype: str, device: str, threads: int | None, backward: bool,
                      output: str, plot_path: str | None) -> None:
    """The body of ``convzoo bench``: limits, per-family variants, a summary table, JSON and PNG."""
    import json

    from rich.progress import Progress

    from .compare import checked_options

    torch_dtype, dev = checked_options(dtype, device, names)
    warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
    info = configure(dev, threads)
    peak, bandwidth = gemm_peak(dev, torch_dtype), copy_bandwidth(dev)
    info.update(gemm_peak_gmacs=peak, copy_bandwidth_gbs=bandwidth)
    chosen = list(names) if names else None
    total = len(chosen) if chosen else None
    with Progress(console=console, transient=True) as bar:
        from .registry import families

        task = bar.add_task("bench", total=total or len(families()))
        results = bench(chosen, progress=lambda n: bar.update(task, advance=1, description=f"bench {n}"),
                        batch=batch, in_channels=in_channels, out_channels=out_channels, size=size,
                        kernel_size=kernel, dtype=torch_dtype, device=dev, backward=backward)
    table = bench_table(results, peak, bandwidth, info)
    if not console.is_terminal and console.width < 200:
        from rich.console import Console

        console = Console(width=200)
    console.print(table)
    with open(output, "w") as f:
        json.dump({"machine": info, "shape": [batch, in_channels, size, size, out_channels, kernel],
                   "summary": [r.summary(peak) for r in results], "families": [r.to_dict() for r in results]},
                  f, indent=1, default=str)
    console.print(f"JSON: {output}")
    if plot_path and any(r.family == "standard" for r in results):
        console.print(f"plot: {plot(results, plot_path)}")


def bench_table(results: Sequence[FamilyBench], peak: float, bandwidth: float, info: dict[str, Any]) -> Any:
    """Per family: best convzoo time and format, ratio to the fastest native composition, peers/naive, limits."""
    from rich.table import Table

    table = Table(title=f"convzoo bench — {info['device']}, {info['threads']} thread(s), torch {info['torch']}; "
                        f"GEMM peak {peak:.1f} GMAC/s, copy {bandwidth:.1f} GB/s; times = medians (ms), best format",
                  caption="vs native = convzoo time / fastest native composition of the same math (≤ 1.10 is the "
                          "target); other = peers and naive published forms, time / convzoo time")
    for column in ("family", "MAC ratio", "fwd ms", "fmt", "fwd vs native", "fwd+bwd ms", "fmt ", "f+b vs native",
                   "GMAC/s", "% GEMM peak", "other (time ratio)"):
        table.add_column(column, justify="left" if column in ("family", "fmt", "fmt ", "other (time ratio)") else "right")
    for r in results:
        s = r.summary(peak)
        mine = r.best("convzoo")
        others = []
        for kind in ("peer", "naive"):
            for v in r.variants:
                if v.kind == kind and mine is not None and v.memory_format == mine.memory_format:
                    others.append(f"{v.name}: {v.forward_ms / mine.forward_ms:.2f}×")
        fmt = lambda key, spec: format(s[key], spec) if key in s else "—"  # noqa: E731
        table.add_row(r.family, f"{r.mac_ratio:.3f}", fmt("fwd_ms", ".2f"), s.get("fwd_format", "—"),
                      fmt("fwd_vs_native", ".2f"), fmt("fwd_bwd_ms", ".2f"), s.get("fwd_bwd_format", "—"),
                      fmt("fwd_bwd_vs_native", ".2f"), fmt("gmacs_per_s", ".1f"),
                      f"{100 * s['peak_fraction']:.0f}%" if "peak_fraction" in s else "—", "; ".join(others))
    return table
