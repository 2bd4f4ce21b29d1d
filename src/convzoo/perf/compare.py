"""Every family on one layer shape: params, MACs and their ratio to a standard conv, next to measured time.

MACs = conv/linear weight multiply-accumulates (FLOPs = 2 × MACs), from ``convzoo.cost`` on the meta device.
Times are forward and forward+backward in the contiguous (NCHW) format (``convzoo bench`` times both formats and
the native compositions), timed round-robin with the 'standard' baseline: every round runs standard forward, family
forward, standard forward+backward, family forward+backward, so load from other processes hits the family and its
baseline alike, and a forward and its forward+backward come from the same rounds. A family's reported time is
its fastest round ÷ the baseline's fastest of the same rounds × the baseline's fastest round of the whole run
(``forward_ms = min(t_family) / min(t_standard) · min(all t_standard)``, likewise forward+backward). Fastest rounds,
not medians: other processes only ever add time, and on a busy machine a layer's times split into an undisturbed
mode and a preempted one (measured under two busy loops: 17 ms or 35–50 ms for the same conv, about half each), where
a median jumps between the modes from row to row and the minimum does not. Load that comes and goes between
families (a browser, a build) moves each row's raw times but not the ratios, so rows timed minutes apart stay
comparable; the family's raw medians are kept in ``forward_ms_raw`` / ``forward_backward_ms_raw``.
``speed_ratio`` is standard / family from those fastest rounds (> 1: faster), ``mac_ratio`` family MACs /
standard MACs. The 'standard' row is the baseline itself (both ratios 1, its times the ones every row is scaled
by); a second copy of standard timed against it in the same rounds gives the run's ``noise_floor`` (its speed
ratio to the baseline: how far from 1 two identical layers measure) and the baseline row's spread; ``*_spread`` is the interquartile range over the median of the per-round ratios, and a row whose
spread exceeds ``UNTRUSTED_SPREAD`` (or whose forward+backward is below its forward) has ``trusted`` False.
Families that are not a same-shape k×k layer (``Family.replaces_kxk`` False) are built by the registry defaults
and keep their own output shape — transposed and resize produce 2H×2W, global_depthwise is C_in → C_in over the
whole map — so their ratios compare the layer as built, not a drop-in replacement. A family whose own rule refuses
C_in → C_out (depthwise needs a multiple of C_in; involution and partial keep the width) is built C_in → C_in: its
row carries the channels it was built with and the rule (``shape_rule``), is marked † and footnoted, and its ratios
are still against the standard conv as asked. A family that cannot be built or run at all at the requested shape
(HetConv's even kernel, BatchNorm in training mode on one value per channel) raises ``ShapeRefused``, or with
``refused`` given is reported through it and left out while the others run. ``max_error`` is checked in eval mode.
With ``compile_options`` every layer, the baseline too, is timed as ``torch.compile(layer, **compile_options)``
(each compiled before its rounds, so compilation is not timed); ``max_error`` stays the eager layer's, and
``compiled_difference`` is how far the compiled layer's output is from the eager layer's on the timed input. A
family that fails to compile is reported as refused (``CompileRefused``) and left out.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..arithmetic.cost import millions
from ..registry import families, family


@dataclass
class CompareRow:
    """One family's row of ``compare``: params, MACs and ``mac_ratio`` (family / standard MACs), forward and
    forward+backward times in ms, ``speed_ratio`` = standard time / family time (> 1: faster), achieved GMAC/s,
    bytes moved, ``intensity`` (FLOPs per byte) and ``max_error`` vs the NumPy reference."""

    family: str
    params: int
    macs: int
    mac_ratio: float
    forward_ms: float
    forward_backward_ms: float
    speed_ratio: float
    gmacs_per_s: float
    bytes: int
    intensity: float  # FLOPs per byte moved
    max_error: float  # relative error vs reference.py on a small slice
    forward_spread: float = math.nan  # interquartile range / median of the per-round forward ratios to the baseline
    forward_backward_spread: float = math.nan
    rounds: int = 0
    trusted: bool = True
    forward_ms_raw: float = math.nan  # the family's own median, not normalised by the baseline
    forward_backward_ms_raw: float = math.nan
    in_channels: int = 0  # the layer's channels as built: C_in → C_in where its rule refused C_in → C_out
    out_channels: int = 0
    shape_rule: str = ""  # the family's rule that refused the requested C_out (first line); "" when built as asked
    # The baseline row only: standard / a second copy of standard timed in the same rounds (their fastest rounds),
    # the speed ratio two identical layers get on this run; NaN on every other row.
    noise_floor: float = math.nan
    # Under compile_options: max |compiled(x) - eager(x)| / max |eager(x)| on the timed input; NaN when not compiled.
    compiled_difference: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ShapeRefused(ValueError):
    """Family ``family`` cannot be built, or its forward cannot run, at the requested shape; ``rule`` is the first
    line of the ValueError that said why."""

    def __init__(self, family: str, rule: str) -> None:
        super().__init__(f"{family}: {rule}")
        self.family, self.rule = family, rule


class CompileRefused(ShapeRefused):
    """Family ``family``'s layer failed under ``torch.compile`` (compiling, or running compiled forward or
    backward); ``rule`` is the first line of torch's error."""


def first_line(error: BaseException) -> str:
    """An error's first line: the rule, without the detail some messages add below it."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@dataclass
class Built:
    """A family's layer as ``compare`` and ``bench`` time it: ``module`` (C_in → ``out_channels``) and its
    ``input_shape`` (N, C_in, H, W); ``shape_rule`` is the family's rule (first line of its constructor's
    ValueError) where it refused the requested C_out and was built C_in → C_in, else ""."""

    module: torch.nn.Module
    input_shape: tuple[int, ...]
    in_channels: int
    out_channels: int
    shape_rule: str = ""


def build_layer(name: str, batch: int, in_channels: int, out_channels: int, size: int, kernel_size: int,
                dtype: torch.dtype, device: str | torch.device) -> Built:
    """The registry's default layer of ``name`` on the shared shape: C_in → C_out, or C_in → C_in where the family's
    own channel rule refuses C_out (recorded in ``shape_rule``). ``ShapeRefused`` when neither builds."""
    fam = family(name)
    kernel = kernel_size if fam.window else None  # pointwise (1) and GDC (the map) have no window to choose
    built_out, rule = out_channels, ""
    try:
        module = fam.build(in_channels, out_channels, kernel, 2)
    except ValueError as error:  # the family's own rule (e.g. depthwise needs a multiple): try C_in → C_in
        rule, built_out = first_line(error), in_channels
        if in_channels == out_channels:
            raise ShapeRefused(name, rule) from None
        try:
            module = fam.build(in_channels, in_channels, kernel, 2)
        except ValueError as again:  # not a channel rule (HetConv's odd kernel): no layer at this shape
            other = first_line(again)
            raise ShapeRefused(name, rule if other == rule else f"{rule}; as {in_channels} → {in_channels}: "
                                                                   f"{other}") from None
    shape = (batch, in_channels, size, size)
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in module.parameters()):
        try:
            with torch.no_grad():  # lazy parameters (global_depthwise's kernel is the map's size) get their shape
                module(torch.zeros((1, in_channels, size, size)))
        except ValueError as error:
            raise ShapeRefused(name, first_line(error)) from None
    module = module.to(device=device, dtype=dtype)
    return Built(module, shape, in_channels, built_out, rule)


def build_all(names: Sequence[str], batch: int, in_channels: int, out_channels: int, size: int, kernel_size: int,
              dtype: torch.dtype, device: str | torch.device,
              refused: Callable[[ShapeRefused], None] | None = None) -> dict[str, Built]:
    """``build_layer`` for each name, before any timing; a family that cannot be built goes to ``refused`` (and is
    left out) or, without it, raises ``ShapeRefused``."""
    built = {}
    for name in names:
        try:
            built[name] = build_layer(name, batch, in_channels, out_channels, size, kernel_size, dtype, device)
        except ShapeRefused as error:
            if refused is None:
                raise
            refused(error)
    return built


def build_for_compare(name: str, batch: int, in_channels: int, out_channels: int, size: int, kernel_size: int,
                      dtype: torch.dtype, device: str | torch.device) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """``build_layer``'s module and input shape (C_in → C_out, or C_in → C_in where the family requires it)."""
    built = build_layer(name, batch, in_channels, out_channels, size, kernel_size, dtype, device)
    return built.module, built.input_shape


def _max_error(module: torch.nn.Module, x: torch.Tensor, slice_size: int = 10) -> float:
    """Relative error vs ``reference.py`` on one sample's top-left ``slice_size``² (the full map where the layer
    is tied to it), in eval mode: BatchNorm then uses its running statistics, which the reference reads too, so the
    check is defined on one sample of one pixel (training mode needs more than one value per channel) and does not
    move those statistics. Each submodule's mode is restored after."""
    from ..verify import check_module

    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        small = x[:1, :, :slice_size, :slice_size]
        try:
            return check_module(module, small)
        except ValueError:  # a layer tied to the full input size (global_depthwise): the full map, one sample
            return check_module(module, x[:1])
    finally:
        for m, training in modes:
            m.training = training


def compare(batch: int = 8, in_channels: int = 64, out_channels: int = 128, size: int = 56, kernel_size: int = 3,
            dtype: torch.dtype = torch.float32, device: str = "cpu", families: Sequence[str] | None = None,
            repeats: int | None = None, progress: Callable[[str], None] | None = None,
            refused: Callable[[ShapeRefused], None] | None = None, threads: int | None = None,
            memory_format: torch.memory_format = torch.contiguous_format,
            compile_options: Mapping[str, Any] | None = None) -> list[CompareRow]:
    """One row per family (default: all, 'standard' always timed as the baseline).

    ``repeats=None`` runs each family's rounds as ``timing_rule`` says (see ``_round_robin``); ``progress(name)`` is
    called before each family; ``threads``: torch's CPU thread count for the run (restored after; None: as set);
    ``memory_format``: every layer (the baseline too) and its inputs in this format, as ``module.to(memory_format=)``
    and ``x.contiguous(memory_format=)`` put them (``torch.channels_last``: NHWC, where torch's CPU convs are fastest).
    ``compile_options``: time every layer, the baseline too, as ``torch.compile(layer, **compile_options)`` ({}:
    torch's defaults; e.g. ``{"mode": "max-autotune"}``); None: eager. Each is compiled (forward, and forward with
    backward) before its rounds; one that fails to compile raises ``CompileRefused`` — or, with ``refused`` given,
    is passed to it and left out (the baseline failing always raises: nothing could be compared).
    On CUDA, timing uses CUDA events and cuDNN autotuning. Every layer is built before any timing; a family
    that cannot be built, or whose forward refuses the input, at this shape raises ``ShapeRefused`` — or, with
    ``refused`` given, is passed to it and left out of the rows (all of them refused: no rows, nothing timed).
    The 'standard' row is the baseline itself: speed ratio 1, its times the ones every row is scaled by; the copy
    of standard timed against it gives the run's ``noise_floor``."""
    from .timing import torch_threads

    if memory_format not in (torch.contiguous_format, torch.channels_last):
        raise ValueError(f"memory_format={memory_format} must be torch.contiguous_format or torch.channels_last")
    if compile_options is not None and not isinstance(compile_options, Mapping):
        raise ValueError(f"compile_options={compile_options!r} must be a mapping of torch.compile's keyword arguments "
                         "(or None: eager)")
    with torch_threads(threads), compile_limits(compile_options):
        return _compare(batch, in_channels, out_channels, size, kernel_size, dtype, device, families, repeats,
                        progress, refused, memory_format, compile_options)


def compile_limits(compile_options: Mapping[str, Any] | None) -> Any:
    """While a run that compiles many layers one by one lasts: room for every layer's graphs, and a hard error where
    dynamo would otherwise fall back to eager with one warning (every convzoo layer's forward is one function, the
    contract's input step, and every torch conv's another: dynamo allows 8 graphs per function by default)."""
    import contextlib

    if compile_options is None:
        return contextlib.nullcontext()
    import torch._dynamo

    return torch._dynamo.config.patch(recompile_limit=256, accumulated_recompile_limit=4096,
                                      fail_on_recompile_limit_hit=True)


def _compare(batch: int, in_channels: int, out_channels: int, size: int, kernel_size: int, dtype: torch.dtype,
             device: str, families: Sequence[str] | None, repeats: int | None,
             progress: Callable[[str], None] | None, refused: Callable[[ShapeRefused], None] | None,
             memory_format: torch.memory_format = torch.contiguous_format,
             compile_options: Mapping[str, Any] | None = None) -> list[CompareRow]:
    from .timing import configure, make_inputs
    from ..arithmetic.cost import cost

    configure(device)
    names = list(families) if families else [f.name for f in _all_families()]
    for n in names:
        family(n)  # unknown names fail before any timing
    order = ["standard"] + [n for n in names if n != "standard"]
    shape_args = (batch, in_channels, out_channels, size, kernel_size, dtype, device)
    base = build_layer("standard", *shape_args)  # the baseline never refuses: a plain conv takes any shape
    built = build_all(order, *shape_args, refused=refused)
    if not any(n in built for n in names):
        return []
    for b in (base, *built.values()):
        b.module.to(memory_format=memory_format)
    base_inputs = make_inputs(base.input_shape, 3, device, dtype, memory_format, requires_grad=True)
    base_report = cost(base.module, base.input_shape, dtype=dtype)
    base_timed: torch.nn.Module = base.module
    if compile_options is not None:  # the baseline must compile: every ratio is against it
        base_timed, _ = _compile_checked("standard", base.module, base_inputs[0], compile_options)
    timed: dict[str, tuple[Built, torch.Tensor, Rounds]] = {}
    differences: dict[str, float] = {}
    for name, b in built.items():
        if progress:
            progress(name)
        inputs = make_inputs(b.input_shape, 3, device, dtype, memory_format, requires_grad=True)
        try:  # a shape the layer's forward refuses (BatchNorm in training mode on one value per channel)
            with torch.no_grad():
                b.module(inputs[0])
        except ValueError as error:
            problem = ShapeRefused(name, f"its forward refuses input {b.input_shape}: {first_line(error)}")
            if refused is None or name == "standard":
                raise problem from None
            refused(problem)
            continue
        layer: torch.nn.Module = b.module
        if compile_options is not None:
            try:
                layer, differences[name] = _compile_checked(name, b.module, inputs[0], compile_options)
            except CompileRefused as problem:
                if refused is None:
                    raise
                refused(problem)
                continue
        rounds = _round_robin(base_timed, base_inputs, layer, inputs, repeats, warm=not timed)
        timed[name] = b, inputs[0].detach(), rounds
    # the baseline's fastest rounds over the whole run: what every row's ratio is scaled by
    base_f = min(t for *_, r in timed.values() for t in r.base_forward)
    base_fb = min(t for *_, r in timed.values() for t in r.base_forward_backward)
    rows = {}
    for name, (b, x, rounds) in timed.items():
        if name == "standard":
            row = _baseline_row(base.module, base_inputs[0].detach(), rounds, base_f, base_fb, base_report)
        else:
            row = _row(name, b.module, x, rounds, base_f, base_fb, cost(b.module, b.input_shape, dtype=dtype),
                       base_report.macs)
        row.in_channels, row.out_channels, row.shape_rule = b.in_channels, b.out_channels, b.shape_rule
        row.compiled_difference = differences.get(name, math.nan)
        rows[name] = row
    return [rows[n] for n in names if n in rows]


def _compile_checked(name: str, module: torch.nn.Module, x: torch.Tensor, options: Mapping[str, Any]
                     ) -> tuple[torch.nn.Module, float]:
    """``torch.compile(module, **options)``, compiled here (a forward under no_grad, then a forward with backward:
    the two graphs the rounds run) and its output compared with the eager module's on ``x``: (compiled, max |y_c -
    y_e| / max |y_e|). Any failure is a ``CompileRefused`` naming the family and torch's first line."""
    compiled = torch.compile(module, **options)
    try:
        with torch.no_grad():
            eager_y, compiled_y = module(x), compiled(x)
        y = compiled(x.detach().requires_grad_(True))
        y.backward(torch.ones_like(y))
    except Exception as error:  # dynamo, inductor or the C++ compiler: any of them can refuse a layer
        cause = error
        while getattr(cause, "inner_exception", None) or cause.__cause__:  # what the backend itself raised
            cause = getattr(cause, "inner_exception", None) or cause.__cause__
        raise CompileRefused(name, f"torch.compile failed: {type(cause).__name__}: {first_line(cause)}") from None
    finally:
        for p in module.parameters():
            p.grad = None
    scale = eager_y.abs().max().item()
    difference = (compiled_y - eager_y).abs().max().item() / scale if scale > 0 else 0.0
    return compiled, difference


def _baseline_row(module: torch.nn.Module, x: torch.Tensor, rounds: Rounds, base_f: float, base_fb: float,
                  report: Any) -> CompareRow:
    """The 'standard' row: the baseline itself (speed ratio 1 and MAC ratio 1 by definition, its times the run's
    fastest baseline rounds that scale every row). ``rounds`` timed a second copy of standard against it: that
    copy's ratio is the run's ``noise_floor`` and its per-round spread the row's spread (how far two identical
    layers' ratios scatter), which also decides ``trusted``."""
    f_spread, fb_spread = _spread(rounds.forward_ratios()), _spread(rounds.forward_backward_ratios())
    trusted = max(f_spread, fb_spread) <= UNTRUSTED_SPREAD and base_fb >= base_f
    return CompareRow("standard", sum(p.numel() for p in module.parameters()), report.macs, 1.0, base_f, base_fb,
                      1.0, report.macs / (base_f * 1e-3) / 1e9, report.bytes, report.intensity,
                      _max_error(module, x), f_spread, fb_spread, len(rounds.forward), trusted,
                      statistics.median(rounds.base_forward), statistics.median(rounds.base_forward_backward),
                      noise_floor=1 / rounds.forward_ratio())


def _row(name: str, module: torch.nn.Module, x: torch.Tensor, rounds: Rounds, base_f: float,
         base_fb: float, report: Any, base_macs: int) -> CompareRow:
    """One row: the family's time relative to the baseline in the same rounds (ratio of the fastest rounds),
    scaled by the baseline's fastest round of the whole run; ``x`` is an input the family was timed on (its error
    vs the reference is measured on a slice of it). The spreads are those of the per-round ratios."""
    f_ratio, fb_ratio = rounds.forward_ratio(), rounds.forward_backward_ratio()
    f_ms, fb_ms = f_ratio * base_f, fb_ratio * base_fb
    f_spread, fb_spread = _spread(rounds.forward_ratios()), _spread(rounds.forward_backward_ratios())
    trusted = max(f_spread, fb_spread) <= UNTRUSTED_SPREAD and fb_ms >= f_ms
    return CompareRow(name, sum(p.numel() for p in module.parameters()), report.macs, report.macs / base_macs,
                      f_ms, fb_ms, 1 / f_ratio, report.macs / (f_ms * 1e-3) / 1e9,
                      report.bytes, report.intensity, _max_error(module, x), f_spread, fb_spread,
                      len(rounds.forward), trusted, statistics.median(rounds.forward),
                      statistics.median(rounds.forward_backward))


@dataclass
class Rounds:
    """One family's rounds against the baseline: each list holds one time (ms) per round, index = round."""

    base_forward: list[float]
    forward: list[float]
    base_forward_backward: list[float]
    forward_backward: list[float]

    def forward_ratio(self) -> float:
        """min(family forward) / min(baseline forward) over these rounds: load only adds time, so each fastest round
        is the undisturbed one, where a single round's ratio or a median of a two-mode distribution is not."""
        return min(self.forward) / min(self.base_forward)

    def forward_backward_ratio(self) -> float:
        return min(self.forward_backward) / min(self.base_forward_backward)

    def forward_ratios(self) -> list[float]:
        """Per round: family forward / baseline forward."""
        return [m / b for m, b in zip(self.forward, self.base_forward)]

    def forward_backward_ratios(self) -> list[float]:
        return [m / b for m, b in zip(self.forward_backward, self.base_forward_backward)]


UNTRUSTED_SPREAD = 0.25  # interquartile range / median above which a row's times are marked as not to be trusted


def _spread(times: Sequence[float]) -> float:
    if len(times) < 2:
        return math.nan
    q = statistics.quantiles(times, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(times)


# repeats=None: each family's rounds run at least MIN_TIME s and MIN_ROUNDS rounds, then on while its ratios have not
# settled, up to MAX_TIME s or MAX_ROUNDS rounds (``_round_robin``)
MIN_TIME, MAX_TIME, MIN_ROUNDS, MAX_ROUNDS = 1.0, 6.0, 5, 60


def timing_rule(repeats: int | None = None) -> str:
    """How ``compare`` times, in words, for help texts, captions and reports (the constants ``_round_robin`` uses)."""
    rounds = (f"{repeats} round{'s' * (repeats != 1)} per family" if repeats else
              f"rounds per family for at least {MIN_TIME:g} s and {MIN_ROUNDS} rounds, more while its ratios have "
              f"not settled (up to {MAX_TIME:g} s or {MAX_ROUNDS} rounds)")
    return (f"{rounds}, each round timing 'standard' and the family back to back; times = the family's fastest "
            "round ÷ standard's fastest of the same rounds × standard's fastest of the whole run")


def _round_robin(base: torch.nn.Module, base_inputs: Sequence[torch.Tensor], module: torch.nn.Module,
                 inputs: Sequence[torch.Tensor], repeats: int | None, warm: bool,
                 min_time: float = MIN_TIME, max_time: float = MAX_TIME, min_rounds: int = MIN_ROUNDS,
                 max_rounds: int = MAX_ROUNDS) -> Rounds:
    """Per round: baseline fwd, family fwd, baseline fwd+bwd, family fwd+bwd (ms; every other round the family
    goes first). Returns all four series.

    ``repeats=None``: at least ``min_rounds`` rounds and ``min_time`` seconds, then more rounds while the ratios
    have not settled (a spread above ``UNTRUSTED_SPREAD``, or forward+backward below forward), up to
    ``max_rounds`` rounds or ``max_time`` seconds. A module may be ``torch.compile``'s wrapper (its parameters are
    the original's)."""
    from .timing import measure

    def once(m: torch.nn.Module, xs: Sequence[torch.Tensor], backward: bool, i: int) -> float:
        return measure(m, [xs[i % len(xs)]], backward=backward, params=list(m.parameters()), warmup=0,
                       repeats=1).median_ms

    # warm-up (the process's first timed conv pays one-off costs: thread pool, page faults, oneDNN primitives)
    for _ in range(3 if warm else 1):
        for m, xs in ((base, base_inputs), (module, inputs)):
            once(m, xs, False, 0)
            once(m, xs, True, 0)
    rounds = Rounds([], [], [], [])
    start = time.perf_counter()
    i = 0
    while True:
        if i % 2 == 0:  # the order alternates, so neither slot of a round is favoured
            b_f, m_f = once(base, base_inputs, False, i), once(module, inputs, False, i)
            b_fb, m_fb = once(base, base_inputs, True, i), once(module, inputs, True, i)
        else:
            m_f, b_f = once(module, inputs, False, i), once(base, base_inputs, False, i)
            m_fb, b_fb = once(module, inputs, True, i), once(base, base_inputs, True, i)
        for series, value in zip((rounds.base_forward, rounds.forward, rounds.base_forward_backward,
                                  rounds.forward_backward), (b_f, m_f, b_fb, m_fb)):
            series.append(value)
        i += 1
        if repeats is not None:
            if i >= repeats:
                break
            continue
        elapsed = time.perf_counter() - start
        if i >= max_rounds or elapsed >= max_time:
            break
        if i >= min_rounds and elapsed >= min_time and _settled(rounds):
            break
    return rounds


def _settled(rounds: Rounds) -> bool:
    """Ratios worth stopping on: both spreads within ``UNTRUSTED_SPREAD``, and the family's fastest
    forward+backward round ≥ its fastest forward round."""
    f, fb = rounds.forward_ratios(), rounds.forward_backward_ratios()
    return (max(_spread(f), _spread(fb)) <= UNTRUSTED_SPREAD
            and min(rounds.forward_backward) >= min(rounds.forward))


def machine_load() -> tuple[float, int, bool]:
    """(1-minute load average, CPU count, busy): busy when the load reaches the CPU count minus a half."""
    import os

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    cpus = os.cpu_count() or 1
    return load, cpus, bool(load >= cpus - 0.5)


def _all_families():
    return families()


def other_load(load_before: float | None) -> tuple[str, bool]:
    """What the table's title says of the machine, and whether it was busy with *other* work: the load average
    before timing, and after it less this run's own threads (a 2-thread run on 2 cores adds ~2 to the average)."""
    load, cpus, _ = machine_load()
    threads = torch.get_num_threads()
    others = max(load_before if load_before is not None else -math.inf, load - threads)
    text = (f"load average {load_before:.2f} before timing, {load:.2f} after (this run's {threads} thread(s) "
            f"included) on {cpus} CPU(s)" if load_before is not None else f"load average {load:.2f} on {cpus} CPU(s)")
    return text, bool(others >= cpus - 0.5)


def compare_table(rows: Sequence[CompareRow], load_before: float | None = None, machine: str = "",
                  layout: str = "NCHW", compiled: str = "") -> Any:
    """A rich Table of the rows; families marked * are not same-shape k×k layers, rows marked † were built at
    another shape than asked (one footnote each: the shape and the family's rule; see the caption).
    ``load_before``: the 1-minute load average sampled before the timing started (see ``other_load``); ``machine``:
    the run's machine lines (``runtime_compare.machine_header``) for the title; ``layout``: the memory format the
    layers ran in (NCHW or NHWC); ``compiled``: how they were compiled (``torch.compile(...)``), "" for eager (a
    "vs eager" column then gives each row's ``compiled_difference``)."""
    from rich.markup import escape
    from rich.table import Table

    other = {f.name for f in _all_families() if not f.replaces_kxk}
    load_text, busy = other_load(load_before)
    baseline = next((r for r in rows if r.family == "standard" and math.isfinite(r.noise_floor)), None)
    noise = (f" Noise floor: a second copy of standard timed in the same rounds ran at {baseline.noise_floor:.2f}× "
             "the baseline (its spread is standard's spread): speed ratios that close to 1.00 are not a "
             "difference." if baseline else "")
    table = Table(title="convzoo compare — ratios vs standard; MACs = weight multiply-accumulates (FLOPs = 2 × MACs); "
                        f"times ({layout}{', ' + escape(compiled) if compiled else ''}) = fastest rounds, each family "
                        "timed round-robin with 'standard', scaled by it\n"
                        + (escape(machine) + "\n" if machine else "") + load_text
                        + (" — WARNING: the machine is busy, times are inflated and noisy" if busy else ""),
                  caption="* not a same-shape k×k layer: built by the registry defaults with its own output shape "
                          "(upsamplers: 2H×2W; global_depthwise: a 1×1 output read from the whole map); "
                          "its ratios compare the layer as built, not a drop-in replacement. "
                          "times = family's fastest round / standard's fastest of the same rounds × standard's fastest "
                          "of the whole run (load only adds time; rows timed at different loads stay comparable); "
                          "speed ratio = standard / family, of those fastest rounds (>1 faster; standard is the "
                          "baseline: 1.00); spread = interquartile range / median of those per-round ratios; ! = "
                          f"spread > {UNTRUSTED_SPREAD:.0%} (or fwd+bwd < fwd, or one round: spread —): don't trust "
                          "the row; error = relative, vs reference.py (eval mode)"
                          + ("; vs eager = max |compiled − eager| / max |eager| on the timed input (the error is the "
                             "eager layer's)." if compiled else ".") + noise
                          + escape(shape_footnotes(rows)))
    columns = ("family", "params", "MACs (M)", "MAC ratio", "fwd ms", "fwd+bwd ms", "spread", "speed ratio",
               "GMAC/s", "MB moved", "FLOP/B", "max error") + (("vs eager",) if compiled else ())
    for column in columns:
        table.add_column(column, justify="left" if column == "family" else "right")
    for r in rows:
        table.add_row(r.family + (" *" if r.family in other else "") + (f" {RESHAPED}" if r.shape_rule else "")
                      + ("" if r.trusted else " !"), f"{r.params:,}",
                      millions(r.macs), f"{r.mac_ratio:.3f}", f"{r.forward_ms:.2f}", f"{r.forward_backward_ms:.2f}",
                      f"{_percent(r.forward_spread)} / {_percent(r.forward_backward_spread)}", f"{r.speed_ratio:.2f}", f"{r.gmacs_per_s:.1f}", millions(r.bytes), f"{r.intensity:.1f}",
                      f"{r.max_error:.1e}", *((f"{r.compiled_difference:.1e}",) if compiled else ()))
    return table


RESHAPED = "†"  # the mark of a row built at another shape than asked (its family's rule refused C_out)


def shape_footnote(family_name: str, in_channels: int, out_channels: int, rule: str) -> str:
    """The footnote of a row built C_in → C_in because its family's rule refused the requested C_out."""
    return (f"{RESHAPED} {family_name} built {in_channels} → {out_channels}, not as asked — its rule: {rule}; its "
            "ratios are against the standard conv as asked")


def shape_footnotes(rows: Sequence[Any]) -> str:
    """One line per row built at another shape (see ``shape_footnote``), each after a newline; "" when none. Rows of
    ``compare`` or ``runtime_compare``: anything with family, in_channels, out_channels and shape_rule."""
    return "".join("\n" + shape_footnote(r.family, r.in_channels, r.out_channels, r.shape_rule)
                   for r in rows if r.shape_rule)


def refusal_line(error: ShapeRefused) -> str:
    """The one line that reports a family left out of a run: its name and its rule (or torch.compile's error)."""
    if isinstance(error, CompileRefused):
        return f"not run compiled: {error.family} — {error.rule}"
    return f"not run at this shape: {error.family} — {error.rule}"


def all_refused(errors: Sequence[ShapeRefused]) -> None:
    """Every named family refused the shape: one ``error:`` line on stderr naming each and its rule, exit code 2."""
    import typer

    typer.echo("error: " + "; ".join(str(e) for e in errors), err=True)
    raise typer.Exit(2)


def _percent(spread: float) -> str:
    """A spread as a percentage; ``—`` when there is none to show (one round gives no interquartile range)."""
    return "—" if math.isnan(spread) else f"{spread:.0%}"


DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"--dtype {name!r} must be one of {', '.join(DTYPES)}")
    return DTYPES[name]


def check_device(device: str) -> str:
    """``device`` must be cpu or cuda[:i], and CUDA must be there for cuda: ValueError naming the option."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):  # torch's own message lists every backend it was built to know
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r} must be cpu or cuda[:i]")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: no CUDA device is available on this machine")
    return device


def checked_options(dtype: str, device: str, names: Sequence[str] | None) -> tuple[torch.dtype, str]:
    """The dtype, device and family names of `compare` / `bench`, validated; a bad one is a one-line error, exit 2."""
    import typer

    try:
        torch_dtype, dev = parse_dtype(dtype), check_device(device)
        for n in names or []:
            family(n)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    return torch_dtype, dev


def run_settings(batch: int, in_channels: int, out_channels: int, size: int, kernel: int, dtype: str, device: str,
                 threads: int, repeats: int | None, channels_last: bool = False,
                 compile_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a compare run was asked (the shape of the standard conv every row is measured against) and how it was
    timed: the ``settings`` of ``compare --json``'s header, and the columns ``--csv`` adds to every row."""
    return {"batch": batch, "in_channels": in_channels, "out_channels": out_channels, "size": size, "kernel": kernel,
            "dtype": dtype, "device": device, "memory_format": "channels_last" if channels_last else "contiguous",
            "threads": threads, "repeats": repeats, "timing": timing_rule(repeats),
            "compile": None if compile_options is None else dict(compile_options)}


def compile_description(compile_options: Mapping[str, Any] | None) -> str:
    """``torch.compile(mode='max-autotune')`` for the table's title and footer; "" for eager."""
    if compile_options is None:
        return ""
    return "torch.compile(" + ", ".join(f"{k}={v!r}" for k, v in compile_options.items()) + ")"


def run_compare_command(console: Any, batch: int, in_channels: int, out_channels: int, size: int, kernel: int,
                        dtype: str, device: str, repeats: int | None, as_json: bool, csv_path: str | None,
                        names: Sequence[str] | None, threads: int | None = None, channels_last: bool = False,
                        compile_options: Mapping[str, Any] | None = None) -> None:
    """The body of ``convzoo compare``: progress bar, table (or JSON), optional CSV; ``threads`` (``--threads``):
    torch's CPU threads for the whole command, restored after; ``channels_last`` (``--channels-last``): every layer
    and input in NHWC; ``compile_options`` (``--compile``): every layer timed under ``torch.compile``."""
    from .timing import torch_threads

    torch_dtype, dev = checked_options(dtype, device, names)
    with torch_threads(threads, "--threads"):
        _run_compare(console, batch, in_channels, out_channels, size, kernel, dtype, torch_dtype, dev, repeats,
                     as_json, csv_path, names, channels_last, compile_options)


def _run_compare(console: Any, batch: int, in_channels: int, out_channels: int, size: int, kernel: int, dtype: str,
                 torch_dtype: torch.dtype, dev: str, repeats: int | None, as_json: bool, csv_path: str | None,
                 names: Sequence[str] | None, channels_last: bool = False,
                 compile_options: Mapping[str, Any] | None = None) -> None:
    import csv
    import json

    import typer
    from rich.progress import Progress

    from .results import machine_info
    from .runtime_compare import machine_header
    from .timing import configure

    load_before = machine_load()[0]  # other work on the machine, before this run's own threads add to it
    count = len(names) + ("standard" not in names) if names else len(_all_families())
    with Progress(console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("timing", total=count)

        def step(name: str) -> None:
            bar.update(task, advance=1, description=f"timing {name}")

        refusals: list[ShapeRefused] = []
        try:
            rows = compare(batch, in_channels, out_channels, size, kernel, torch_dtype, dev, names or None, repeats,
                           step, refusals.append,
                           memory_format=torch.channels_last if channels_last else torch.contiguous_format,
                           compile_options=compile_options)
        except CompileRefused as error:  # the baseline did not compile: nothing to compare against
            typer.echo(f"error: --compile: {error}", err=True)
            raise typer.Exit(2) from None
    if not rows:
        all_refused(refusals)
    info = configure(dev)
    settings = run_settings(batch, in_channels, out_channels, size, kernel, dtype, info["device"], info["threads"],
                            repeats, channels_last, compile_options)
    machine = machine_info(dev, load_average_before=round(load_before, 2) if math.isfinite(load_before) else None)
    if csv_path:  # flat: every row carries the run's settings and CPU (a CSV has no header object)
        extra = {k: v for k, v in settings.items() if k not in ("in_channels", "out_channels", "timing")}
        extra["compile"] = compile_description(compile_options)  # a cell, not a mapping
        extra |= {"asked_in_channels": in_channels, "asked_out_channels": out_channels,
                  "cpu": machine.get("cpu"), "gpu": machine.get("gpu", ""), "torch": machine.get("torch")}
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*rows[0].to_dict(), *extra])
            writer.writeheader()
            writer.writerows(r.to_dict() | extra for r in rows)
    if as_json:  # one document: the run's settings and machine, then the rows (each as before)
        typer.echo(json.dumps({"settings": settings, "machine": machine, "rows": [r.to_dict() for r in rows]}))
        for error in refusals:  # stdout stays one JSON document
            typer.echo(refusal_line(error), err=True)
        return
    compiled = compile_description(compile_options)
    console.print(compare_table(rows, load_before, machine_header(info["threads"], runtimes=False, device=dev),
                                "NHWC" if channels_last else "NCHW", compiled))
    console.print(f"input ({batch}, {in_channels}, {size}, {size}) {dtype}"
                  f"{' channels_last (NHWC)' if channels_last else ''} on {info['device']}, "
                  f"{info['threads']} thread(s), torch {info['torch']}" + (f", {info['gpu']}" if "gpu" in info else "")
                  + (f", every layer (the baseline too) under {compiled}, compiled before its rounds" if compiled
                     else "") + f"; {timing_rule(repeats)}")
    for error in refusals:
        console.print(refusal_line(error), markup=False, highlight=False)
