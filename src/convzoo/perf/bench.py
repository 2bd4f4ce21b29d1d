"""``convzoo bench``: each family against its native compositions, peers and naive forms, round-robin, in both
memory formats, forward and forward+backward, next to the measured GEMM peak and copy bandwidth."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .results import Table, machine_info, write_results
from .timing import FORMATS, configure, copy_bandwidth, gemm_peak, make_inputs, measure_interleaved, to_format

if TYPE_CHECKING:
    from .compare import Built, ShapeRefused

# --- the careful per-family bench ------------------------------------------------------------------------------------


BENCH_DESCRIPTION = (
    "Each family's layer against the fastest composition of native torch ops that computes the same function "
    "(masked dense conv for HetConv, batch-folded grouped conv and per-sample loop for dynamic conv, split/cat for "
    "MixConv, torchvision's `deform_conv2d` called directly, …), peers from other libraries when installed, naive "
    "published forms, and the physical limits (GEMM peak and copy bandwidth, measured in the same run): every "
    "candidate timed round-robin in the same rounds (`measure_interleaved`), in both memory formats, forward and "
    "forward+backward, after a warm-up, three inputs rotated, threads pinned; CUDA events on a GPU.")
BACKWARD_FACTOR = 3  # forward+backward bound = 3 × the forward bound (grad input and grad weight each redo the
                     # forward's MACs and traffic)


@dataclass
class StageBound:
    """One stage of a layer on the roofline: ``bound_ms`` = max(MACs ÷ GEMM peak, bytes ÷ copy bandwidth)."""

    name: str
    macs: int
    bytes: int
    bound_ms: float


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
    path: str = ""  # convzoo's layer: the internal formulation its forward ran (``forward_path``)
    forward_min_ms: float = math.nan  # fastest round: on a loaded machine the least disturbed by other processes
    forward_backward_min_ms: float | None = None


@dataclass
class FamilyBench:
    family: str
    input_shape: tuple[int, ...]
    macs: int
    mac_ratio: float
    bytes: int
    variants: list[Variant] = field(default_factory=list)
    stages: list[StageBound] = field(default_factory=list)
    out_channels: int | None = None  # the layer's C_out as built (None: a run from before it was recorded)
    shape_rule: str = ""  # the family's rule that refused the requested C_out: built C_in → C_in (see compare)

    @property
    def bound_ms(self) -> float | None:
        """Forward roofline bound: Σ over stages of max(MACs ÷ GEMM peak, bytes ÷ copy bandwidth)."""
        return sum(st.bound_ms for st in self.stages) if self.stages else None

    def roofline(self) -> dict[str, dict[str, Any]]:
        """Per memory format: convzoo's forward and forward+backward times, their ratios to the bound (forward
        and BACKWARD_FACTOR × forward) and the path that ran."""
        out: dict[str, dict[str, Any]] = {}
        bound = self.bound_ms
        for v in self.variants:
            if v.kind != "convzoo" or not math.isfinite(v.forward_ms):
                continue
            row: dict[str, Any] = {"fwd_ms": v.forward_ms, "fwd_bwd_ms": v.forward_backward_ms, "path": v.path}
            if bound:
                row.update(bound_ms=bound, fwd_vs_bound=v.forward_ms / bound,
                           fwd_min_vs_bound=v.forward_min_ms / bound, fwd_bwd_bound_ms=BACKWARD_FACTOR * bound)
                if v.forward_backward_ms is not None:
                    row["fwd_bwd_vs_bound"] = v.forward_backward_ms / (BACKWARD_FACTOR * bound)
                if v.forward_backward_min_ms is not None:
                    row["fwd_bwd_min_vs_bound"] = v.forward_backward_min_ms / (BACKWARD_FACTOR * bound)
            out[v.memory_format] = row
        return out

    def peers(self) -> list[dict[str, Any]]:
        """Each peer next to convzoo's layer in the same format and rounds: peer time / convzoo time, both passes."""
        mine = {v.memory_format: v for v in self.variants if v.kind == "convzoo"}
        rows = []
        for v in self.variants:
            ref = mine.get(v.memory_format)
            if v.kind != "peer" or ref is None:
                continue
            row: dict[str, Any] = {"peer": v.name, "format": v.memory_format, "fwd_ratio": v.forward_ms / ref.forward_ms,
                                   "fwd_min_ratio": v.forward_min_ms / ref.forward_min_ms}
            if v.forward_backward_ms is not None and ref.forward_backward_ms:
                row["fwd_bwd_ratio"] = v.forward_backward_ms / ref.forward_backward_ms
            if v.forward_backward_min_ms is not None and ref.forward_backward_min_ms:
                row["fwd_bwd_min_ratio"] = v.forward_backward_min_ms / ref.forward_backward_min_ms
            rows.append(row)
        return rows

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
        if self.stages:
            out["roofline"] = self.roofline()
        if any(v.kind == "peer" for v in self.variants):
            out["peers"] = self.peers()
        mine = self.best("convzoo")
        if mine is not None:
            out["gmacs_per_s"] = self.macs / (mine.forward_ms * 1e-3) / 1e9
            # against the GEMM peak (a fastest call): the layer's fastest round, in any format
            fastest = min((v.forward_min_ms for v in self.variants if v.kind == "convzoo"
                           and math.isfinite(v.forward_min_ms)), default=mine.forward_ms)
            if gemm_gmacs:
                out["peak_fraction"] = self.macs / (fastest * 1e-3) / 1e9 / gemm_gmacs
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"bound_ms": self.bound_ms}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FamilyBench:
        """The inverse of ``to_dict``: a run read back from its JSON (to render it again)."""
        fields = {k: v for k, v in d.items() if k != "bound_ms"}
        return cls(**fields | {"input_shape": tuple(d["input_shape"]),
                               "variants": [Variant(**v) for v in d.get("variants", [])],
                               "stages": [StageBound(**st) for st in d.get("stages", [])]})


def stage_costs(module: torch.nn.Module, shape: Sequence[int], dtype: torch.dtype) -> list[tuple[str, int, int]]:
    """(name, MACs, bytes) per stage of the layer's ``stages()`` (main stages chained on their input shapes, side
    stages on the tensor they read), each from ``convzoo.cost`` of the stage's sub-layer; the whole layer as one
    stage when a stage names no sub-layer, a sub-layer cannot be costed alone, or the stages do not add up to the
    layer's MACs and bytes."""
    from ..arithmetic.cost import cost
    from ..layers.base import ConvzooLayer

    whole = cost(module, tuple(shape), dtype=dtype)
    single = [(type(module).__name__, whole.macs, whole.bytes)]
    try:
        stages = module.stages() if isinstance(module, ConvzooLayer) else []
    except NotImplementedError:
        return single
    if len(stages) < 2 or any(st.module is None or st.module is module for st in stages):
        return single
    parts, current = [], tuple(shape)
    try:
        for st in stages:
            report = cost(st.module, current, dtype=dtype)
            parts.append((st.name, report.macs, report.bytes))
            if not st.side:
                current = tuple(report.output_shape)
    except (TypeError, RuntimeError, ValueError):
        return single
    if sum(p[1] for p in parts) != whole.macs or sum(p[2] for p in parts) != whole.bytes:
        return single
    return parts


def roofline_stages(module: torch.nn.Module, shape: Sequence[int], dtype: torch.dtype, peak_gmacs: float,
                    bandwidth_gbs: float) -> list[StageBound]:
    """``stage_costs`` with each stage's bound in ms: max(MACs / (peak·10⁹), bytes / (bandwidth·10⁹)) · 10³."""
    return [StageBound(name, macs, nbytes, 1e3 * max(macs / (peak_gmacs * 1e9), nbytes / (bandwidth_gbs * 1e9)))
            for name, macs, nbytes in stage_costs(module, shape, dtype)]


def bench_family(name: str, batch: int = 8, in_channels: int = 64, out_channels: int = 128, size: int = 56,
                 kernel_size: int = 3, dtype: torch.dtype = torch.float32, device: str = "cpu",
                 formats: Sequence[str] = ("contiguous", "channels_last"), backward: bool = True,
                 standard_macs: int | None = None, peak_gmacs: float | None = None,
                 bandwidth_gbs: float | None = None, **measure_kw: Any) -> FamilyBench:
    """Time convzoo's layer, every native composition, peers and naive published forms of family ``name``; with
    the measured GEMM peak and copy bandwidth, also the layer's roofline bound per stage. Built as in ``compare``
    (C_in → C_in where the family's rule refuses C_out, recorded in ``shape_rule``); ``ShapeRefused`` where the
    family cannot be built or run at this shape."""
    from .compare import build_layer

    built = build_layer(name, batch, in_channels, out_channels, size, kernel_size, dtype, device)
    if standard_macs is None:
        standard_macs = _standard_macs(batch, in_channels, out_channels, size, kernel_size, dtype)
    return _bench_built(name, built, dtype, device, formats, backward, standard_macs, peak_gmacs, bandwidth_gbs,
                        **measure_kw)


def _standard_macs(batch: int, in_channels: int, out_channels: int, size: int, kernel_size: int,
                   dtype: torch.dtype) -> int:
    """MACs of the standard C_in → C_out conv on the requested shape: every family's MAC ratio is against it."""
    from .compare import build_for_compare
    from ..arithmetic.cost import cost

    std, std_shape = build_for_compare("standard", batch, in_channels, out_channels, size, kernel_size, dtype, "meta")
    return cost(std, std_shape, dtype=dtype).macs


def _bench_built(name: str, built: Built, dtype: torch.dtype, device: str,
                 formats: Sequence[str] = ("contiguous", "channels_last"), backward: bool = True,
                 standard_macs: int | None = None, peak_gmacs: float | None = None,
                 bandwidth_gbs: float | None = None, **measure_kw: Any) -> FamilyBench:
    """``bench_module`` of a ``compare.Built`` layer, with the channels it was built at and its shape rule."""
    result = bench_module(name, built.module, built.input_shape, dtype, device, formats, backward, standard_macs,
                          peak_gmacs, bandwidth_gbs, **measure_kw)
    result.out_channels, result.shape_rule = built.out_channels, built.shape_rule
    return result


def bench_module(name: str, module: torch.nn.Module, shape: Sequence[int], dtype: torch.dtype = torch.float32,
                 device: str = "cpu", formats: Sequence[str] = ("contiguous", "channels_last"), backward: bool = True,
                 standard_macs: int | None = None, peak_gmacs: float | None = None,
                 bandwidth_gbs: float | None = None, **measure_kw: Any) -> FamilyBench:
    """``bench_family`` for a given layer and input shape: all forms of it timed round-robin in each format;
    ``ShapeRefused`` where the layer's forward refuses the input (BatchNorm in training mode on one value per
    channel), before anything is timed."""
    from .baselines import alternatives
    from .compare import ShapeRefused, first_line
    from ..arithmetic.cost import cost
    from ..layers.base import ConvzooLayer

    try:
        with torch.no_grad():
            module(make_inputs(shape, 1, device, dtype)[0])
    except ValueError as error:
        raise ShapeRefused(name, f"its forward refuses input {tuple(shape)}: {first_line(error)}") from None
    report = cost(module, tuple(shape), dtype=dtype)
    result = FamilyBench(name, tuple(shape), report.macs, report.macs / standard_macs if standard_macs else math.nan,
                         report.bytes)
    if peak_gmacs and bandwidth_gbs:
        result.stages = roofline_stages(module, shape, dtype, peak_gmacs, bandwidth_gbs)
    for fmt_name in formats:
        fmt = FORMATS[fmt_name]
        to_format(module, fmt)
        inputs = make_inputs(shape, 3, device, dtype, fmt, requires_grad=backward)
        with torch.no_grad():
            expected = module(inputs[0])
        path = module.forward_path(inputs[0]) if isinstance(module, ConvzooLayer) else ""
        impls: list[tuple[str, str, Callable]] = [("convzoo", f"convzoo {type(module).__name__}", module)]
        impls += list(alternatives(module))
        ok: dict[str, tuple[str, Callable]] = {}
        diffs: dict[str, float] = {}
        for kind, label, fn in impls:
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
                                           fb[label].median_ms if label in fb else None, diffs[label],
                                           path if kind == "convzoo" else "", fwd[label].min_ms,
                                           fb[label].min_ms if label in fb else None))
    to_format(module, torch.contiguous_format)
    return result


def bench(names: Sequence[str] | None = None, progress: Callable[[str], None] | None = None,
          refused: Callable[[ShapeRefused], None] | None = None, batch: int = 8, in_channels: int = 64,
          out_channels: int = 128, size: int = 56, kernel_size: int = 3, dtype: torch.dtype = torch.float32,
          device: str = "cpu", **kw: Any) -> list[FamilyBench]:
    """``bench_family`` for each family (default: all), sharing one MAC baseline; every layer is built before any
    timing. A family that cannot be built or run at the shape raises ``compare.ShapeRefused``, or with ``refused``
    given is passed to it and left out."""
    from .compare import build_all
    from ..registry import families

    names = list(names) if names else [f.name for f in families()]
    built = build_all(names, batch, in_channels, out_channels, size, kernel_size, dtype, device, refused)
    return bench_built(built, _standard_macs(batch, in_channels, out_channels, size, kernel_size, dtype), dtype,
                       device, progress, refused, **kw)


def bench_built(built: dict[str, Built], standard_macs: int, dtype: torch.dtype = torch.float32, device: str = "cpu",
                progress: Callable[[str], None] | None = None, refused: Callable[[ShapeRefused], None] | None = None,
                **kw: Any) -> list[FamilyBench]:
    """``bench`` of layers already built (family name → ``compare.Built``, from ``compare.build_all``); ``kw`` goes
    to ``bench_module``."""
    from .compare import ShapeRefused

    out = []
    for name, b in built.items():
        if progress:
            progress(name)
        try:
            out.append(_bench_built(name, b, dtype, device, standard_macs=standard_macs, **kw))
        except ShapeRefused as error:
            if refused is None:
                raise
            refused(error)
    return out


def plot(results: Sequence[FamilyBench], path: str, standard_fwd_ms: float | None = None) -> str:
    """PNG: MAC ratio vs measured speed ratio (standard's time / family's time, best format) per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .compare import RESHAPED

    std = standard_fwd_ms
    if std is None:
        std = next(r.best("convzoo").forward_ms for r in results if r.family == "standard")
    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    points = []
    for r in results:
        mine = r.best("convzoo")
        if mine is None or not math.isfinite(mine.forward_ms):
            continue
        x, y = 1 / r.mac_ratio if r.mac_ratio else math.nan, std / mine.forward_ms
        ax.scatter([x], [y])
        points.append((r.family + (f" {RESHAPED}" if r.shape_rule else ""), x, y))
    lim = [0.05, 200]
    ax.plot(lim, lim, "k--", lw=0.8, label="speed-up = MAC reduction")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("MAC reduction vs standard (standard MACs / family MACs)")
    ax.set_ylabel("measured forward speed-up vs standard (best memory format)")
    ax.legend()
    ax.grid(True, which="both", lw=0.3)
    fig.tight_layout()
    place_labels(ax, points)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def place_labels(ax: Any, points: Sequence[tuple[str, float, float]], fontsize: float = 7) -> None:
    """Each point's name beside it (right of the point, left where the axes end), from the highest point down; a
    name that would overlap one already placed moves to the nearest free line below or above, joined to its point by
    a thin line (the families near 1× 1× sit on top of each other). Works in the figure's pixels, so call it after
    the layout is final."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)  # names stay inside the axes
    points = [p for p in points if all(map(math.isfinite, p[1:]))]
    radius = 5.0  # a default scatter marker's radius in pixels at 120 dpi: names do not cover other points either
    placed = [(px - radius, py - radius, px + radius, py + radius)  # x0, y0, x1, y1 in pixels
              for px, py in (ax.transData.transform((x, y)) for _, x, y in points)]

    def free(x0: float, y0: float, w: float, h: float) -> bool:
        return frame.y0 <= y0 and y0 + h <= frame.y1 and \
            not any(x0 < b[2] and b[0] < x0 + w and y0 < b[3] and b[1] < y0 + h for b in placed)

    for name, x, y in sorted(points, key=lambda p: -p[2]):
        px, py = ax.transData.transform((x, y))
        probe = ax.text(0, 0, name, fontsize=fontsize)
        box = probe.get_window_extent(renderer)
        probe.remove()
        w, h = box.width, box.height
        x0 = px + radius if px + radius + w <= frame.x1 else px - radius - w
        y0 = next((py + 2 + k * h for step in range(400) for k in ((-1) ** step * ((step + 1) // 2),)
                   if free(x0, py + 2 + k * h, w, h)), py + 2)  # no free line in the axes: beside its point
        placed.append((x0, y0, x0 + w, y0 + h))
        ax.annotate(name, (x, y), xytext=tuple(ax.transData.inverted().transform((x0, y0))), textcoords="data",
                    fontsize=fontsize, va="bottom", ha="left",
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.5", "shrinkA": 0, "shrinkB": 2}
                    if y0 != py + 2 else None)


def run_bench_command(console: Any, names: Sequence[str] | None, batch: int, in_channels: int, out_channels: int,
                      size: int, kernel: int, dtype: str, device: str, threads: int | None, backward: bool,
                      output: str, plot_path: str | None) -> None:
    """The body of ``convzoo bench``: limits, per-family variants, a summary table, the results file
    (:mod:`convzoo.perf.results`, with the raw measurements under ``data``) and the PNG."""
    import os

    from rich.progress import Progress

    from ..registry import families
    from .compare import all_refused, build_all, checked_options, refusal_line

    torch_dtype, dev = checked_options(dtype, device, names)
    warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
    info = configure(dev, threads)
    chosen = list(names) if names else [f.name for f in families()]
    refusals: list[ShapeRefused] = []
    built = build_all(chosen, batch, in_channels, out_channels, size, kernel, torch_dtype, dev, refusals.append)
    if not built:  # before the limits are measured: nothing to time
        all_refused(refusals)
    if "standard" not in chosen:  # the baseline of the speed-up column and the plot: timed too, and said so
        built |= build_all(["standard"], batch, in_channels, out_channels, size, kernel, torch_dtype, dev)
        console.print("note: 'standard' added as the baseline of the speed-up column and the plot (it was not "
                      "among the families asked)", markup=False, highlight=False)
    peak, bandwidth = gemm_peak(dev, torch_dtype), copy_bandwidth(dev)
    info.update(gemm_peak_gmacs=peak, copy_bandwidth_gbs=bandwidth)
    limits: dict[str, Any] = {"gemm_peak_gmacs": peak, "copy_bandwidth_gbs": bandwidth}
    if torch.device(dev).type == "cuda":  # gemm_peak's fp32 GEMM used TF32 exactly when cuDNN's convs do
        limits["gemm_peak_tf32"] = bool(torch.backends.cudnn.allow_tf32)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("bench", total=len(built))
        results = bench_built(built, _standard_macs(batch, in_channels, out_channels, size, kernel, torch_dtype),
                              torch_dtype, dev, lambda n: bar.update(task, advance=1, description=f"bench {n}"),
                              refusals.append, backward=backward, peak_gmacs=peak, bandwidth_gbs=bandwidth)
    if not results:
        all_refused(refusals)
    table = bench_table(results, peak, bandwidth, info)
    console.print(table)
    console.print(roofline_table(results, peak, bandwidth))
    if any(r.peers() for r in results):
        console.print(peers_table(results))
    summary, dicts = [r.summary(peak) for r in results], [r.to_dict() for r in results]
    figures = []
    if plot_path and any(r.family == "standard" for r in results):
        console.print(f"plot: {plot(results, plot_path)}")
        if os.path.dirname(os.path.abspath(plot_path)) == os.path.dirname(os.path.abspath(output)):
            figures.append((os.path.basename(plot_path), "MAC ratio against measured speed-up, per family"))
    elif plot_path:  # standard itself could not be timed: no baseline to plot against
        console.print(f"plot: not written to {plot_path} — 'standard', the baseline of its speed-ups, was not timed",
                      markup=False, highlight=False)
    write_results(output, f"convzoo bench: every family against its native compositions ({info['device']})",
                  bench_results_tables(summary, dicts, peak, bandwidth),
                  description=BENCH_DESCRIPTION + f" Layer {in_channels}→{out_channels}, {kernel}×{kernel}, batch "
                  f"{batch}, {size}², {dtype}.", machine=machine_info(dev, **limits),
                  figures=figures, data={"shape": [batch, in_channels, size, size, out_channels, kernel],
                                         "summary": summary, "families": dicts,
                                         "refused": [{"family": e.family, "rule": e.rule} for e in refusals]})
    for error in refusals:
        console.print(refusal_line(error), markup=False, highlight=False)
    console.print(f"results: {output}")


def families_results_table(summary: Sequence[dict[str, Any]], families: Sequence[dict[str, Any]], peak: float,
                           bandwidth: float) -> Table:
    """Every family against its fastest native composition, from the JSON dicts of a run (``FamilyBench.summary``
    and ``to_dict``), so a committed run renders the same as a fresh one. A family built at another shape than
    asked (``shape_rule``) is marked † and footnoted with the shape it was built at and its rule."""
    from .compare import RESHAPED, shape_footnote

    variants = {f["family"]: f.get("variants", []) for f in families}
    reshaped = {f["family"]: f for f in families if f.get("shape_rule")}
    standard = next((s.get("fwd_ms") for s in summary if s["family"] == "standard"), None)
    rows = []
    for s in summary:
        fwd = s.get("fwd_ms")
        others = "; ".join(f"{v['name']} {v['forward_ms'] / fwd:.2f}×" for v in variants.get(s["family"], [])
                           if v["kind"] in ("peer", "naive") and fwd and v["memory_format"] == s.get("fwd_format")
                           and v.get("forward_ms") is not None and math.isfinite(v["forward_ms"]))
        bounds = [r["fwd_vs_bound"] for r in s.get("roofline", {}).values() if r.get("fwd_vs_bound")]
        name = s["family"] + (f" {RESHAPED}" if s["family"] in reshaped else "")
        rows.append([name, s["mac_ratio"], fwd, s.get("fwd_format"), standard / fwd if standard and fwd else None,
                     s.get("fwd_vs_native"), s.get("fwd_bwd_ms"), s.get("fwd_bwd_format"), s.get("fwd_bwd_vs_native"),
                     s.get("gmacs_per_s"), s.get("peak_fraction"), min(bounds) if bounds else None, others])
    columns = ["family", ("MAC ratio", ".3f"), "fwd ms", "fwd format", ("speed-up vs standard", ".2f"),
               ("vs fastest native, fwd", ".2f"), "fwd+bwd ms", "fwd+bwd format", ("vs fastest native, fwd+bwd", ".2f"),
               ("GMAC/s", ".1f"), ("of GEMM peak", "{:.0%}"), ("fwd / roofline bound", ".1f"),
               "peers / naive (time / convzoo)"]
    if all(row[11] is None for row in rows):  # a run without stage bounds (an older JSON): no bound column
        columns.pop(11)
        rows = [row[:11] + row[12:] for row in rows]
    return Table(
        "Every family against its fastest native composition", columns, rows,
        f"Times: medians (ms) in each family's best memory format. Measured limits: GEMM peak {peak:.1f} GMAC/s "
        "(n³ ÷ the fastest n×n×n `torch.mm` call in the run's dtype, the best n of 256 to 1536 on the CPU, 4096 on "
        f"CUDA with TF32 exactly when cuDNN's convs use it), copy bandwidth {bandwidth:.1f} GB/s. *of GEMM peak* = "
        "the layer's MACs per second in its fastest round ÷ that peak; above 100 % the layer's kernel did fewer "
        "multiplies than the MACs counted "
        "(a Winograd or FFT convolution, which oneDNN and cuDNN pick for some 3×3 shapes) or the GEMM fell short of "
        "the machine's peak: it is then not a bound. *vs fastest native* = convzoo's time / the fastest "
        "composition of native torch ops computing the same function, timed round-robin in the same rounds "
        "(≤ 1.10 is the target); peers and naive published forms: their time / convzoo's (> 1: convzoo faster)."
        + "".join("\n" + shape_footnote(name, f["input_shape"][1], f["out_channels"], f["shape_rule"])
                  for name, f in reshaped.items()))


def roofline_results_table(summary: Sequence[dict[str, Any]]) -> Table | None:
    """Per family and memory format: convzoo's times next to the roofline bound (None when nothing has a bound)."""
    rows = [[s["family"], fmt, r["fwd_ms"], r["bound_ms"], r.get("fwd_vs_bound"), r.get("fwd_min_vs_bound"),
             r.get("fwd_bwd_ms"), r.get("fwd_bwd_bound_ms"), r.get("fwd_bwd_vs_bound"), r.get("fwd_bwd_min_vs_bound"),
             r.get("path", "")]
            for s in summary for fmt, r in s.get("roofline", {}).items() if r.get("bound_ms")]
    return Table(
        "Roofline: each family against its bound",
        ["family", "format", "fwd ms", "bound ms", ("fwd / bound", ".2f"), ("fastest / bound", ".2f"),
         "fwd+bwd ms", "fwd+bwd bound ms", ("fwd+bwd / bound", ".2f"),
         ("fwd+bwd fastest / bound", ".2f"), "path"], rows,
        "bound = Σ over the layer's stages of max(MACs ÷ measured GEMM peak, bytes that must move ÷ measured copy "
        "bandwidth); bytes = inputs read + parameters read + outputs written; forward+backward bound = "
        f"{BACKWARD_FACTOR} × the forward bound; times = medians (ms); fastest / bound = the fastest round's time / "
        "bound (ratios < 1 are possible: a tensor that fits in cache beats the copy bandwidth, and a Winograd or FFT "
        "convolution does fewer multiplies than its MACs); path = the exact formulation the layer's forward ran.") \
        if rows else None


def peers_results_table(summary: Sequence[dict[str, Any]]) -> Table | None:
    """Peers from other libraries timed in the same rounds as convzoo's layer (None when none was installed)."""
    rows = [[s["family"], p["peer"], p["format"], p.get("fwd_ratio"), p.get("fwd_min_ratio"), p.get("fwd_bwd_ratio"),
             p.get("fwd_bwd_min_ratio")] for s in summary for p in s.get("peers", [])]
    return Table(
        "Peers, timed round-robin with convzoo's layer (same input and format)",
        ["family", "peer", "format", ("fwd ratio", ".2f"), ("fwd ratio, fastest rounds", ".2f"),
         ("fwd+bwd ratio", ".2f"), ("fwd+bwd ratio, fastest rounds", ".2f")], rows,
        "ratio = peer time / convzoo time (> 1: convzoo is faster), of the medians and of the fastest rounds.") \
        if rows else None


def bench_results_tables(summary: Sequence[dict[str, Any]], families: Sequence[dict[str, Any]], peak: float,
                         bandwidth: float) -> list[Table]:
    """The tables of a ``convzoo bench`` run for its results file: the families, and where measured the roofline
    and the peers."""
    tables = [families_results_table(summary, families, peak, bandwidth), roofline_results_table(summary),
              peers_results_table(summary)]
    return [t for t in tables if t is not None]


def bench_table(results: Sequence[FamilyBench], peak: float, bandwidth: float, info: dict[str, Any]) -> Any:
    """Per family: best convzoo time and format, ratio to the fastest native composition, peers/naive, limits."""
    from .results_page import rich_table

    table = families_results_table([r.summary(peak) for r in results], [r.to_dict() for r in results], peak,
                                   bandwidth)
    from .runtime_compare import machine_header

    return rich_table(table, f"convzoo bench — {info['device']}, {info['threads']} thread(s), torch {info['torch']}\n"
                             + machine_header(info["threads"], runtimes=False, device=info["device"]))


def roofline_table(results: Sequence[FamilyBench], peak: float, bandwidth: float) -> Any:
    """Per family and memory format: convzoo's time next to its roofline bound, the ratio, and the path that ran."""
    from .compare import machine_load
    from .results_page import rich_table

    load, cpus, _ = machine_load()
    table = roofline_results_table([r.summary(peak) for r in results]) or Table("roofline", ["family"], [])
    return rich_table(table, f"roofline — GEMM peak {peak:.1f} GMAC/s, copy bandwidth {bandwidth:.1f} GB/s; load "
                             f"average {load:.2f} on {cpus} CPU(s)")


def peers_table(results: Sequence[FamilyBench]) -> Any:
    """Peers from other libraries timed in the same rounds as convzoo's layer: peer time / convzoo time."""
    from .results_page import rich_table

    table = peers_results_table([r.summary() for r in results]) or Table("peers", ["family"], [])
    return rich_table(table, "peers — timed round-robin with convzoo's layer, same input and format")
