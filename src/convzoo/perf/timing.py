"""Timing harness: warm-up, median of many runs, inputs rotated, threads pinned, both memory formats, forward and
forward+backward; plus the physical limits (measured GEMM peak from its fastest call, measured copy bandwidth).

Times are medians in milliseconds. On CUDA, runs are timed with CUDA events (the GPU's own clock) after a
synchronise, and cuDNN autotuning (``benchmark=True``) is on; on CPU with ``time.perf_counter``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..layers.form_choice import round_order

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
    """Side-by-side medians: runs go round-robin over ``fns`` (one run of each per round, the first place rotating
    so no candidate always follows the same one), so load from other processes and clock changes hit every
    candidate alike and the ratios stay fair on a busy machine."""
    first = {k: measure(f, inputs, backward=backward, params=params, warmup=1, repeats=1) for k, f in fns.items()}
    per_round = sum(t.median_ms for t in first.values()) * 1e-3
    rounds = max(min_repeats if per_round < 1.0 else 1, min(max_repeats, math.ceil(min_time * len(fns) / per_round)))
    return round_robin({k: (f, inputs) for k, f in fns.items()}, backward=backward, params=params, rounds=rounds,
                       warm_up=False)


def round_robin(candidates: dict[str, tuple[Callable[[torch.Tensor], Any], Sequence[torch.Tensor]]], *,
                backward: bool = False, params: Sequence[torch.Tensor] = (), rounds: int = 9,
                warm_up: bool = True) -> dict[str, Timing]:
    """``measure_interleaved`` for candidates with their own inputs (say, each in its memory format), in the order
    of ``round_order``: every candidate runs first, last and right after each other one equally often (warm or
    cold caches, a freed buffer of the right size). One warm-up run each first."""
    for fn, xs in candidates.values() if warm_up else ():
        measure(fn, xs, backward=backward, params=params, warmup=0, repeats=1)
    labels = list(candidates)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for r in range(rounds):
        for label in round_order(labels, r):
            fn, xs = candidates[label]
            x = [xs[r % len(xs)]]  # the inputs rotate from round to round, so caches hold no single input
            times[label].append(measure(fn, x, backward=backward, params=params, warmup=0, repeats=1).median_ms)
    return {label: Timing(statistics.median(v), min(v), len(v)) for label, v in times.items()}


def time_module(module: nn.Module, inputs: Sequence[torch.Tensor], backward: bool = False, **kw: Any) -> Timing:
    return measure(module, inputs, backward=backward, params=list(module.parameters()), **kw)


@contextmanager
def torch_threads(threads: int | None, option: str = "threads") -> Iterator[int]:
    """torch's CPU thread count set to ``threads`` inside the block (None: left as it is), the previous count
    restored after; yields the count in force. ValueError naming ``option`` for a count below 1."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"{option}={threads!r} must be a whole number of CPU threads, 1 or more")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


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


@contextmanager
def matmul_like_conv(device: str | torch.device) -> Iterator[bool]:
    """On CUDA, fp32 ``torch.mm`` inside the block uses TF32 exactly when cuDNN's convs do (``cudnn.allow_tf32``,
    on by default, where matmul's own flag is off by default: the fp32 GEMM would then be a "peak" that TF32 convs
    beat several times over); restored after. Yields whether TF32 was on for the GEMM (always False on the CPU)."""
    if torch.device(device).type != "cuda":
        yield False
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        yield bool(torch.backends.cudnn.allow_tf32)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


# The CPU GEMM sizes gemm_peak tries: short calls find rounds that no other process interrupts on a busy machine (one
# busy core: 256³ calls reached 79 GMAC/s at their fastest, 1536³ calls, each spanning scheduler slices, 25), large
# ones keep many threads busy on an idle machine.
CPU_GEMM_SIZES = (256, 512, 1024, 1536)


def gemm_peak(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, n: int | None = None) -> float:
    """Measured GEMM throughput in GMAC/s: n³ MACs ÷ the fastest of the timed n×n×n ``torch.mm`` calls (after a
    warm-up), as the layers it is compared with report their fastest rounds (other processes only add time); the
    best over ``CPU_GEMM_SIZES`` on the CPU, n = 4096 on CUDA, or the size ``n`` given. On CUDA with TF32 as
    cuDNN's convs use it (``matmul_like_conv``)."""
    device = torch.device(device)
    sizes = (n,) if n else (4096,) if device.type == "cuda" else CPU_GEMM_SIZES
    best = 0.0
    with matmul_like_conv(device):
        for size in sizes:
            a, b = (torch.rand(size, size, device=device).to(dtype) for _ in range(2))
            t = measure(lambda x, b=b: torch.mm(x, b), [a], warmup=2, min_time=0.25, max_repeats=200)
            best = max(best, size**3 / (t.min_ms * 1e-3) / 1e9)
    return best


def copy_bandwidth(device: str | torch.device = "cpu", megabytes: int = 256) -> float:
    """Measured copy bandwidth in GB/s (bytes read + bytes written per second) of a large ``copy_``."""
    device = torch.device(device)
    src = torch.rand(megabytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    t = measure(lambda x: dst.copy_(x), [src], warmup=2, min_time=0.5, max_repeats=20)
    return 2 * src.numel() * 4 / (t.median_ms * 1e-3) / 1e9


def to_format(module: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """4-D parameters to ``fmt`` (``Module.to(memory_format=)`` refuses modules holding 5-D kernels)."""
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 4:
                p.data = p.data.contiguous(memory_format=fmt)
    return module
