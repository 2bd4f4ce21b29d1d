"""MkDocs hook that generates the pages that must follow the code: the API reference (from ``convzoo.__all__``
and ``convzoo.viz.__all__``), the family gallery and one page per family (from ``convzoo.families()``), with each
family's measured speed quoted for the layer the committed benchmark timed, and every family's animation
(``ANIMATIONS``: on their family pages and in the Pictures page's gallery); every content picture of the site links
to its full-size file.

Nothing here names a family or a public function except ``ANIMATIONS``, the list of animations with their sizes and
captions: a family added to the registry or a name added to ``__all__`` appears on the next build (a family without
an animation there is a warning, which fails a strict build). A public name without a docstring, a family whose
picture or animation cannot be drawn, a benchmark row whose layer cannot be rebuilt as it was timed, or a family
missing from the gallery is logged as a warning, which ``strict: true`` turns into a failed build.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import sys
import tempfile
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("mkdocs.hooks.convzoo_docs")  # under "mkdocs": strict mode counts its warnings

# API pages: (slug, title, predicate on the defining module). The first matching group wins; "other" catches a
# public name from a module no group names, so nothing in __all__ is ever left out.
GROUPS = [
    ("layers", "Layers", ("convzoo.layers",)),
    ("registry", "Families (registry)", ("convzoo.registry",)),
    ("analysis", "Arithmetic: shapes, receptive fields, cost", ("convzoo.arithmetic", "convzoo.analysis")),
    ("conversion", "Conversion", ("convzoo.conversion",)),
    ("perf", "Speed: compare, optimize", ("convzoo.perf",)),
    ("functional", "convzoo.functional", ("convzoo.functional",)),
    ("models", "Models", ("convzoo.models",)),
    ("deploy", "Deployment: int8, mobile runtimes", ("convzoo.deploy",)),
    ("other", "Other", ("",)),
]
BENCH = ROOT / "benchmarks" / "results" / "bench_all.json"  # benchmarks/bench_all.py's run: speed ratios per family


def _convzoo() -> ModuleType:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    import convzoo
    import convzoo.viz  # noqa: F401  (public subpackage with its own __all__)

    return convzoo


def own_doc(obj: object) -> str | None:
    """The object's own docstring (a class does not inherit its base's here, unlike ``inspect.getdoc``; the
    ``Name(field: type, …)`` line that ``@dataclass`` writes for an undocumented class does not count)."""
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and isinstance(doc, str):
        if doc.startswith(f"{obj.__name__}(") and doc.rstrip().endswith(")") and "\n" not in doc.strip():
            return None
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def public_names(convzoo: ModuleType) -> list[tuple[str, object]]:
    """Every public name: ``convzoo.X`` for X in ``convzoo.__all__``, ``convzoo.viz.X`` for ``convzoo.viz.__all__``."""
    import convzoo.viz  # noqa: F401  (public subpackage with its own __all__)

    names = [(f"convzoo.{n}", getattr(convzoo, n)) for n in convzoo.__all__]
    names += [(f"convzoo.viz.{n}", getattr(convzoo.viz, n)) for n in convzoo.viz.__all__]
    return names


def undocumented(convzoo: ModuleType | None = None) -> list[str]:
    """Public names (and the public methods a public class defines itself) that have no docstring.

    Data constants (dicts, tuples, strings) carry no docstring of their own and are skipped."""
    convzoo = convzoo or _convzoo()
    missing = []
    for path, obj in public_names(convzoo):
        if not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)):
            continue
        if own_doc(obj) is None:
            missing.append(path)
    return missing


def group_of(obj: object) -> str:
    module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "") or ""
    for slug, _, prefixes in GROUPS:
        if any(module == p or module.startswith(p + ".") or p == "" for p in prefixes):
            return slug
    return "other"


def api_pages(convzoo: ModuleType) -> dict[str, str]:
    """{'api/<slug>.md': markdown} with one ``::: convzoo.X`` block per public name, and the index."""
    import convzoo.viz  # noqa: F401
    groups: dict[str, list[str]] = {slug: [] for slug, _, _ in GROUPS}
    for n in convzoo.__all__:
        groups[group_of(getattr(convzoo, n))].append(f"convzoo.{n}")
    groups["viz"] = [f"convzoo.viz.{n}" for n in convzoo.viz.__all__]
    titles = {slug: title for slug, title, _ in GROUPS} | {"viz": "Pictures (convzoo.viz)"}
    pages, index = {}, ["# API reference", "",
                        "Generated from the docstrings of every name in `convzoo.__all__` and `convzoo.viz.__all__` "
                        "(a name without a docstring fails the build). Shapes use torch's (N, C, *spatial) order; "
                        "MACs count weight multiply-accumulates (FLOPs = 2 × MACs).", ""]
    for slug, paths in groups.items():
        if not paths:
            continue
        body = [f"# {titles[slug]}", ""]
        for path in paths:
            obj = eval(path, {"convzoo": convzoo})  # noqa: S307 (a dotted name from __all__)
            opts = "\n    options:\n      members: false" if inspect.ismodule(obj) and slug != "functional" else ""
            body += [f"::: {path}{opts}", ""]
        pages[f"api/{slug}.md"] = "\n".join(body)
        index.append(f"- [{titles[slug]}]({slug}.md): " + ", ".join(f"`{p.rsplit('.', 1)[1]}`" for p in paths))
    pages["api/index.md"] = "\n".join(index) + "\n"
    return pages


def api_link(convzoo: ModuleType, obj: object) -> str | None:
    name = type(obj).__name__
    if name in convzoo.__all__ and getattr(convzoo, name) is type(obj):
        return f"../api/{group_of(type(obj))}.md#convzoo.{name}"
    return None


def tutorials_by_family() -> dict[str, list[tuple[str, str]]]:
    """{family: [(title, link from a family page)]} from the ``Families: `a`, `b``` line of each tutorial."""
    found: dict[str, list[tuple[str, str]]] = {}
    for script in sorted((ROOT / "examples").glob("*/*.py")):
        text = script.read_text(encoding="utf-8")
        title = next((ln.strip() for ln in text.splitlines()[1:] if ln.strip() and not ln.startswith(('"', "#"))), "")
        line = re.search(r"\bFamilies: (.*)$", text, re.M)
        for name in re.findall(r"`([a-z0-9_]+)`", line.group(1) if line else ""):
            found.setdefault(name, []).append((title, f"../generated/{script.parent.name}/{script.stem}.md"))
    return found


# ------------------------------------------------------------------------------- what the benchmark measured
class Measured(NamedTuple):
    """One family's row of the committed ``bench_all`` run and the layer it timed, rebuilt as ``perf.compare.
    build_layer`` built it: ``call`` (``cz.build(name, C_in, C_out, k)``), ``input_shape``, ``macs`` (the rebuilt
    layer's, equal to the run's record) and ``notes``: (long, short) sentences where that layer is not the one the
    family page draws and costs (another kernel, C_in → C_in under the family's channel rule, another form)."""

    family: str
    call: str
    input_shape: tuple[int, ...]
    macs: int
    mac_ratio: float
    fwd_ms: float
    notes: tuple[tuple[str, str], ...]


class BenchRun(NamedTuple):
    """The committed ``bench_all`` run as the family pages quote it: ``measured`` per family, the standard conv's
    forward time ``base_ms``, MACs ``base_macs`` and build call, the run's ``shape`` (N, C_in, C_out asked, size,
    k) and its machine line."""

    measured: dict[str, Measured]
    base_ms: float | None
    base_macs: int | None
    base_call: str
    shape: tuple[int, int, int, int, int] | None
    machine: str


def _conv_forms(module) -> set[str]:
    """The forms of the torch convs inside ``module``: 'dense' (groups 1), 'grouped', 'depthwise' (groups = C_in)."""
    from torch import nn

    return {"depthwise" if m.groups == m.in_channels > 1 else "grouped" if m.groups > 1 else "dense"
            for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)}


def _run_shape(data: dict) -> tuple[int, int, int, int, int] | None:
    """(batch, C_in, C_out asked, size, kernel) of the run's layers: ``data['shape']`` = [N, C_in, H, W, C_out, k] where
    ``convzoo bench`` recorded it; else N, C_in and the size from the standard conv's recorded input shape and C_out
    and k from the defaults of ``perf.bench.bench``, which ``benchmarks/bench_all.py`` calls without a shape (the
    rebuilt layers' MACs are then checked against the run's, family by family)."""
    shape = data.get("shape")
    if isinstance(shape, list) and len(shape) == 6:
        return shape[0], shape[1], shape[4], shape[2], shape[5]
    std = next((f for f in data.get("families", []) if isinstance(f, dict) and f.get("family") == "standard"), None)
    if not std or len(std.get("input_shape") or ()) != 4:
        return None
    from convzoo.perf.bench import bench

    defaults = inspect.signature(bench).parameters
    n, c_in, h, w = std["input_shape"]
    return (n, c_in, defaults["out_channels"].default, h, defaults["kernel_size"].default) if h == w else None


def _call(name: str, c_in: int, c_out: int, kernel: int | None) -> str:
    return f"cz.build({name!r}, {c_in}, {c_out}" + (f", {kernel})" if kernel is not None else ")")


def _measured(convzoo: ModuleType, fam, row: dict, recorded: dict, run: tuple[int, int, int, int, int],
              base_macs: int) -> Measured | None:
    """The layer ``build_layer`` timed for ``fam`` at the run's shape, with the notes that say how it differs from the
    family's default layer and from the layer its picture draws; None (and a warning) where the rebuilt layer's
    MACs are not the run's record: the page could not say what was measured."""
    import torch

    from convzoo.cli.viz import default_spec
    from convzoo.layers.form_choice import untimed
    from convzoo.perf.compare import build_layer

    batch, c_in, c_out, size, kernel = run
    with untimed():  # a lazy layer's first forward (the kernel takes the map's size) need not time its forms
        built = build_layer(fam.name, batch, c_in, c_out, size, kernel, torch.float32, "cpu")
    macs = convzoo.cost(built.module, built.input_shape).macs
    if recorded.get("macs") is not None and macs != recorded["macs"]:
        log.warning("convzoo docs: %s: family %r rebuilt as build_layer at %s has %s MACs, the run recorded %s: its "
                    "speed line cannot say which layer was timed", BENCH.name, fam.name, run, f"{macs:,}",
                    f"{recorded['macs']:,}")
        return None
    k = kernel if fam.window else None
    notes = []
    default = fam.build(c_in, built.out_channels, None, 2)
    asked, given = getattr(default, "kernel_size", None), getattr(built.module, "kernel_size", None)
    if fam.window and asked != given:
        ratio = convzoo.cost(default, built.input_shape).macs / base_macs
        default_call = _call(fam.name, c_in, built.out_channels, None)
        long = ("It is not the family's default layer: the benchmark builds every family with a window at kernel "
                f"{kernel} (`kernel_size={given}`), where `{default_call}` has `kernel_size={asked}` — "
                f"{_times(ratio)} standard's MACs at this shape, not timed.")
        short = f"kernel {kernel}, not the default {asked}, which has {_times(ratio)} standard's MACs (not timed)"
        notes.append((long, short))
    if built.shape_rule:
        long = (f"It is built {c_in} → {built.out_channels}, not {c_in} → {c_out} like the standard conv it is "
                f"compared with: the family refuses {c_in} → {c_out} (“{built.shape_rule}”).")
        notes.append((long, f"built {c_in} → {built.out_channels}: the family refuses {c_in} → {c_out}"))
    drawn = default_spec(fam.name, dim=2).build()
    forms, drawn_forms = _conv_forms(built.module), _conv_forms(drawn)
    if forms != drawn_forms:
        said, drawn_said = " and ".join(sorted(forms)), " and ".join(sorted(drawn_forms))
        long = (f"Its convs are {said}, where the {drawn.in_channels} → {drawn.out_channels} layer drawn above has "
                f"{drawn_said} ones: this family's layer takes another form at {c_in} → {built.out_channels}.")
        short = f"its convs are {said} at {c_in} → {built.out_channels}; the layer drawn is {drawn_said}"
        notes.append((long, short))
    return Measured(fam.name, _call(fam.name, c_in, built.out_channels, k), tuple(built.input_shape), macs,
                    macs / base_macs, float(row["fwd_ms"]), tuple(notes))


def bench_run(convzoo: ModuleType) -> BenchRun:
    """The committed ``bench_all`` run: each family's summary row with the layer it timed (``Measured``)."""
    empty = BenchRun({}, None, None, "", None, "")
    if not BENCH.exists():
        return empty
    from convzoo.perf.results import read_results
    from convzoo.perf.results_page import machine_line

    run = read_results(BENCH)
    data = run.data or {}
    shape = _run_shape(data)
    recorded = {f["family"]: f for f in data.get("families", []) if isinstance(f, dict)}
    rows = {r["family"]: r for r in data.get("summary", []) if isinstance(r, dict)}
    if shape is None or "standard" not in rows or "standard" not in recorded:
        log.warning("convzoo docs: %s records no standard conv and input shape: the family pages quote no speed",
                    BENCH.name)
        return empty
    base_macs = int(recorded["standard"]["macs"])
    measured = {}
    for fam in convzoo.families():
        if fam.name in rows:
            try:
                m = _measured(convzoo, fam, rows[fam.name], recorded.get(fam.name, {}), shape, base_macs)
            except Exception as exc:  # noqa: BLE001  (a layer the run timed that cannot be rebuilt: say which)
                log.warning("convzoo docs: %s: family %r cannot be rebuilt as the run built it: %s: %s", BENCH.name,
                            fam.name, type(exc).__name__, exc)
                continue
            if m is not None:
                measured[fam.name] = m
    _, c_in, c_out, _, kernel = shape
    return BenchRun(measured, float(rows["standard"]["fwd_ms"]), base_macs, _call("standard", c_in, c_out, kernel),
                    tuple(shape), machine_line(run.machine, run.date))


def _times(ratio: float) -> str:
    """A ratio as the cards print it: two decimals, three significant digits below 0.1 (0.0174×, not 0.02×)."""
    return f"{ratio:.3g}×" if ratio < 0.1 else f"{ratio:.2f}×"


def speed_line(m: Measured | None, run: BenchRun, short: bool = False) -> str:
    """What was timed and how it compares with the standard conv: the build call, the input, the time ratio at the
    MAC ratio of that very layer, and the notes where it is not the layer the page describes."""
    if m is None or not run.base_ms:
        return "not in the committed benchmark (run `benchmarks/bench_all.py` and commit its JSON)."
    if m.call == run.base_call:
        if short:
            return f"the baseline: `{m.call}` on input {m.input_shape}, {m.fwd_ms:.2f} ms forward, {m.macs:,} MACs."
        return (f"Timed: `{m.call}` on input {m.input_shape}: {m.fwd_ms:.2f} ms forward for {m.macs:,} MACs, the "
                "baseline of every other family's ratios.")
    ratio = f"{_times(m.fwd_ms / run.base_ms)} standard's forward time at {_times(m.mac_ratio)} its MACs"
    if short:
        notes = "; ".join(s for _, s in m.notes)
        return f"{ratio}, timed as `{m.call}`" + (f" — {notes}." if notes else ".")
    return (f"Timed: `{m.call}` on input {m.input_shape}, {m.macs:,} MACs: {ratio} ({m.fwd_ms:.2f} ms vs "
            f"{run.base_ms:.2f} ms for `{run.base_call}`, {run.base_macs:,} MACs, on the same input)."
            + "".join(f" {long}" for long, _ in m.notes))


# ------------------------------------------------------------------------------------------------- animations
class Animation(NamedTuple):
    """A GIF drawn at build time from the real layer, as ``convzoo viz FAMILY -o SLUG.gif`` with these options draws
    it, with at most ``frames`` frames (the CLI allows 64; fewer keep the site build short): ``family``'s layer
    ``in_channels`` → ``out_channels`` on a ``size``-per-side input, ``options`` its constructor arguments (the CLI's
    --stride, --padding, …); ``caption`` says what to watch."""

    family: str
    slug: str
    in_channels: int
    out_channels: int
    size: int
    options: tuple[tuple[str, int], ...]
    frames: int
    caption: str

    def command(self) -> str:
        opts = "".join(f" --{k.replace('_', '-')} {v}" for k, v in self.options)
        return (f"convzoo viz {self.family} --in {self.in_channels} --out {self.out_channels} --size {self.size}"
                f"{opts} -o {self.slug}.gif")


# Every family, the article syllabus first (001's sections on padding and stride, transposed, dilated, depthwise
# separable, grouped convs; 003's deformable conv), then the others in the registry's order; small enough to read
# cell by cell: every output position where it fits in ``frames``. About 50 s of one core for all of them.
ANIMATIONS = (
    Animation("standard", "standard", 1, 1, 3, (("padding", 1),), 9,
              "Padding 1 keeps a 3×3 input 3×3: the 3×3 window visits every output position and, at the border, "
              "reads the padding (dashed cells, multiplied by zero)."),
    Animation("standard", "standard-stride-2", 1, 1, 5, (("stride", 2), ("padding", 1)), 9,
              "Stride 2 with padding 1: the window jumps two cells at a time, 5×5 → 3×3 (vdumoulin's "
              "'padding, strides' case)."),
    Animation("transposed", "transposed", 1, 1, 2, (), 16,
              "A 2×2 input grows to 4×4: the direct form inserts a zero between input cells (dashed) and pads, "
              "then the flipped kernel slides; each output reads 1, 2 or 4 input cells."),
    Animation("dilated", "dilated", 1, 1, 7, (("padding", 0),), 9,
              "Dilation 2: the 3×3 taps sit one cell apart, so each output reads a 5×5 field with 9 taps; 7×7 → "
              "3×3 without padding."),
    Animation("depthwise_separable", "depthwise_separable", 3, 3, 4, (), 16,
              "Stage by stage: the depthwise 3×3 reads one input channel per output, then the pointwise 1×1 mixes "
              "all channels at one pixel."),
    Animation("grouped", "grouped", 4, 4, 3, (("groups", 2),), 9,
              "Two groups: output channel 0 reads only input channels 0–1 (its group); the wiring shows each "
              "group's band."),
    Animation("deformable", "deformable", 1, 1, 4, (), 4,
              "Each output's nine taps are moved by the offsets its offset conv predicts (seeded values here: it "
              "starts at zero), arrows from the grid: the points fall between cells and read their neighbours by "
              "bilinear weights."),
    Animation("convolution", "convolution", 1, 1, 4, (), 9,
              "True convolution turns the kernel 180° before it slides: tap 8 lands on the window's top-left cell "
              "and tap 0 on its bottom-right (scipy.signal.convolve2d's rule; PyTorch's conv does not flip)."),
    Animation("pointwise", "pointwise", 3, 2, 3, (), 9,
              "A 1×1 kernel reads one pixel: each output cell is a weighted sum of the 3 input channels at the same "
              "pixel (the wiring), so H×W is kept and only the depth changes."),
    Animation("resize", "resize", 1, 1, 3, (), 12,
              "Stage 1 copies each input cell into a 2×2 block (nearest-neighbour; the letters say which), stage 2 "
              "slides a 'same' 3×3 conv over the 6×6 result: no zeros inserted, so no checkerboard of overlaps."),
    Animation("spatially_separable", "spatially_separable", 1, 1, 5, (), 10,
              "A 3×1 column kernel slides first, then a 1×3 row kernel over its output: 3 + 3 multiplies per "
              "output where a 3×3 takes 9, for the kernels of rank 1."),
    Animation("flattened", "flattened", 2, 2, 4, (), 12,
              "Three 1-D stages: a 1×1 conv across the channels (L), then a 3×1 (V) and a 1×3 (H) per channel — "
              "the 3-D filter flattened into three."),
    Animation("depthwise", "depthwise", 3, 3, 4, (), 9,
              "Each output channel reads only its own input channel (the straight wiring): one 3×3 kernel per "
              "channel, nothing mixed across channels."),
    Animation("shuffled_grouped", "shuffled_grouped", 4, 4, 3, (("groups", 2),), 12,
              "Stage 1, a grouped conv: output c0 reads only c0–c1; stage 2 shuffles the channels so that each "
              "next group holds a channel of every group, and information crosses groups (ShuffleNet)."),
    Animation("pointwise_grouped", "pointwise_grouped", 4, 4, 3, (("groups", 2),), 9,
              "A grouped 1×1 conv: each output pixel mixes only its group's 2 channels at that pixel, half the "
              "multiplies of a dense 1×1."),
    Animation("global_depthwise", "global_depthwise", 2, 2, 3, (), 4,
              "The kernel is as large as the map: one output per channel, its own 3×3 weights times the whole "
              "plane, beside global average pooling's equal weights 1/9 on the same plane."),
    Animation("mixconv", "mixconv", 3, 3, 7, (), 9,
              "One layer, three kernel sizes: 3×3 on c0, 5×5 on c1, 7×7 on c2, each padded to keep 7×7 — "
              "several receptive fields in one depthwise conv (MixNet)."),
    Animation("hetconv", "hetconv", 4, 4, 4, (), 9,
              "Filter 0 has a 3×3 kernel on c0 and 1×1 kernels on c1–c3 (p = 4: a quarter of its kernels are "
              "3×3); the grid of each pair's kernel shows the 3×3 moving from filter to filter."),
    Animation("dynamic", "dynamic", 2, 2, 4, (), 10,
              "Held first: this sample's attention π(x) weighs the 4 candidate kernels into one aggregated "
              "kernel; then that kernel slides as a standard conv — it depends on the sample, not the position."),
    Animation("deformable_v2", "deformable_v2", 1, 1, 4, (), 4,
              "As in deformable v1, each tap reads at its own offset point; v2 also scales each point by a learned "
              "sigmoid mask (the point's opacity), which can switch a tap off."),
    Animation("subpixel", "subpixel", 1, 1, 3, (), 12,
              "Stage 1, a conv to 2² = 4 low-resolution channels; stage 2, the pixel shuffle, interleaves them: "
              "each fills one phase of every 2×2 output cell (the numbers name the channel)."),
    Animation("acnet", "acnet", 1, 1, 4, (), 10,
              "Held first: the 3×3, 3×1 and 1×3 branches' kernels (their BatchNorms folded in) add into one 3×3 "
              "kernel; then that one kernel slides — three convs in training, one at inference."),
    Animation("repvgg", "repvgg", 1, 1, 4, (), 10,
              "Held first: the 3×3 branch, the 1×1 branch and the identity (BatchNorm only) add into one 3×3 "
              "kernel, the last two on its centre tap; then it slides as a plain 3×3 conv."),
    Animation("large_kernel", "large_kernel", 1, 1, 7, (), 9,
              "Held first: the parallel 5×5 kernel merged into the centre of the 11×11 (outlined); then the 11×11 "
              "depthwise kernel slides over a 7×7 input, most windows reaching far into the padding."),
    Animation("partial", "partial", 4, 4, 4, (), 9,
              "Only c0 (1/n_div = 1/4 of the channels) is convolved; c1–c3 pass through unchanged (dashed): 1/16 "
              "of a full conv's multiplies."),
    Animation("ghost", "ghost", 2, 4, 4, (), 10,
              "Stage 1, the primary conv makes 2 intrinsic maps; stage 2, a cheap 3×3 depthwise conv makes a ghost "
              "of each; the intrinsic and ghost maps are concatenated into 4 channels."),
    Animation("condconv", "condconv", 2, 2, 4, (), 10,
              "Held first: this sample's routing weights (independent sigmoids, not a softmax: they need not add "
              "to 1) mix the 4 expert kernels into one; then it slides as a standard conv."),
    Animation("odconv", "odconv", 2, 2, 4, (), 10,
              "Held first: four attentions — over the 4 kernels, the 3×3 taps, the input channels and the filters "
              "— multiply into the kernel this sample uses; then it slides as a standard conv."),
    Animation("selective_kernel", "selective_kernel", 2, 2, 4, (), 12,
              "Held first: the softmax attention gives each output channel its share of two branches; stage 1 runs "
              "a 3×3 and a dilated 3×3 (a 5×5 field), stage 2 sums them weighted by those shares."),
    Animation("involution", "involution", 8, 8, 5, (), 10,
              "Held first: the kernel of output c0 at three positions, generated from each position's own "
              "features — it changes from place to place, where a conv's is the same everywhere; then it slides."),
    Animation("dcnv3", "dcnv3", 4, 4, 4, (), 10,
              "Three stages: a 1×1 input projection; sampling at learned offsets, per group, with softmax-"
              "normalised point weights shared by the group's channels; a 1×1 output projection."),
)


def draw_animation(anim: Animation, path: Path) -> Path:
    """``anim``'s GIF at ``path``, drawn from the real layer (``viz.animate``), titled as ``convzoo viz`` titles it."""
    from convzoo.cli.viz import default_spec
    from convzoo.viz import animate, family_titles

    spec = default_spec(anim.family, anim.in_channels, anim.out_channels, size=anim.size,
                        options=dict(anim.options)).validate()
    module = spec.build()
    title, subtitle = family_titles(spec, module, spec.input_shape)
    return animate(module, spec.input_shape, path, title, max_frames=anim.frames, subtitle=subtitle)


def animations(convzoo: ModuleType, out: Path) -> dict[str, list[Animation]]:
    """{family: its animations drawn into ``out``}; one that fails (or names no registered family) is a warning."""
    names = {f.name for f in convzoo.families()}
    drawn: dict[str, list[Animation]] = {}
    for anim in ANIMATIONS:
        try:
            if anim.family not in names:
                raise ValueError(f"no registered family {anim.family!r}")
            draw_animation(anim, out / f"{anim.slug}.gif")
        except Exception as exc:  # noqa: BLE001  (a GIF the site promises that cannot be drawn fails strict builds)
            log.warning("convzoo docs: animation %r: %s: %s", anim.slug, type(exc).__name__, exc)
            continue
        drawn.setdefault(anim.family, []).append(anim)
    return drawn


def animation_gallery(drawn: dict[str, list[Animation]], titles: dict[str, str]) -> str:
    """The Pictures page's gallery: each GIF (linked to its full size by ``link_images``) under its family page's
    link, with what to watch and the command that draws it."""
    cards = [f'<div class="cz-card" markdown>\n\n**[{titles[a.family]}](families/{a.family}.md)**\n\n'
             f"![{a.slug}: {a.caption}](families/{a.slug}.gif){{ loading=lazy }}\n\n{a.caption}\n\n`{a.command()}`"
             "\n\n</div>\n" for anims in drawn.values() for a in anims]
    return "\n".join(['<div class="cz-grid cz-anim" markdown>', "", *cards, "</div>", ""])


# ------------------------------------------------------------------------------------------ the family pages
def family_pages(convzoo: ModuleType, out: Path) -> dict[str, str]:
    """The gallery page and one page per family; pictures and animations drawn from the real layer into ``out``
    (``_ANIMATED`` keeps the animations for the Pictures page)."""
    from convzoo.cli.viz import default_spec
    from convzoo.viz import render

    run = bench_run(convzoo)
    anims = animations(convzoo, out)
    _ANIMATED.clear()
    _ANIMATED.update(anims)
    tutorials = tutorials_by_family()
    pages, cards = {}, []
    for fam in convzoo.families():
        dim = 2 if 2 in fam.dims else fam.dims[0]
        shape = (1, 4) + (8,) * dim
        try:
            try:
                out_ch, layer = 8, fam.build(4, 8, dim=dim)
            except ValueError:  # the family's own channel rule (partial, involution keep the width): 4 → 4
                out_ch, layer = 4, fam.build(4, 4, dim=dim)
            cost = convzoo.cost(layer, shape)
        except Exception as exc:  # the card needs a layer and its cost: say which family lacks them
            log.warning("convzoo docs: family %r: build / cost failed: %s: %s", fam.name, type(exc).__name__, exc)
            continue
        formula = " ".join((own_doc(type(layer).cost) or "(the layer's cost() has no docstring)").split())
        picture, spec = out / f"{fam.name}.png", default_spec(fam.name, dim=dim)
        try:
            render(fam.name, picture, spec)  # the picture `convzoo viz NAME` draws at its defaults
        except Exception as exc:  # a family that cannot be drawn is a documentation bug: fail strict builds
            log.warning("convzoo docs: family %r: picture failed: %s: %s", fam.name, type(exc).__name__, exc)
            picture = None
        drawn = _call(fam.name, spec.in_channels, spec.out_channels, spec.kernel if fam.window else None)
        m = run.measured.get(fam.name)
        api = api_link(convzoo, layer)
        tut = tutorials.get(fam.name, [])
        links = [f"[{t}]({link})" for t, link in tut] + [f"[API: `{type(layer).__name__}`]({api})"] * bool(api)
        dim_arg = "" if 2 in fam.dims else f", dim={fam.dims[0]}"
        code = (f"import convzoo as cz\n\nlayer = cz.build({fam.name!r}, 4, {out_ch}{dim_arg})"
                f"\nprint(layer)\nprint(cz.cost(layer, {shape}).macs)  # {cost.macs:,}")
        dims = ", ".join(f"{d}-D" for d in fam.dims)
        body = [f"# {fam.title}", "", f"`{fam.name}` · {fam.summary} · article {fam.article} · {dims}", ""]
        if picture:
            said = (f"*Drawn at build time from `{drawn}`{dim_arg and f' ({dim}-D)'} on a "
                    f"{'×'.join(map(str, spec.input_shape))} input: the picture `convzoo viz {fam.name} -o "
                    f"{fam.name}.png` draws. Click it for its full size.*")
            body += [f"![{fam.title}: drawn from the layer at build time]({fam.name}.png){{ loading=lazy }}", "",
                     said, ""]
        body += ["## Animation", ""]
        for a in anims.get(fam.name, []):
            body += [f"![{a.slug}: {a.caption}]({a.slug}.gif){{ loading=lazy }}", "",
                     f"*{a.caption} Drawn at build time: `{a.command()}` (here at most {a.frames} frames).*", ""]
        if fam.name not in anims:  # a new family: ANIMATIONS needs its entry (size, options, what to watch)
            log.warning("convzoo docs: family %r has no animation: add one to ANIMATIONS", fam.name)
        body += ["## Cost", "", f"`{type(layer).__name__}.cost`: {formula}", "",
                 f"For `cz.build({fam.name!r}, 4, {out_ch})` on input {shape}: **{cost.macs:,} MACs**, "
                 f"{cost.params:,} parameters, output {tuple(cost.output_shape)}.", "",
                 "## Measured speed", "",
                 f"{speed_line(m, run)} Source: [the committed benchmark run `bench_all`](../performance/bench_all.md)"
                 + (f" ({run.machine})." if run.machine else "."), "",
                 "## Code", "", "```python", code, "```", ""]
        body += ["## Read more", ""] + [f"- {link}" for link in links] if links else []
        pages[f"families/{fam.name}.md"] = "\n".join(body) + "\n"
        img = f"![{fam.name}](families/{fam.name}.png){{ loading=lazy }}" if picture else "(no picture)"
        cards.append(f'<div class="cz-card" markdown>\n\n### [{fam.title}](families/{fam.name}.md)\n\n{img}\n\n'
                     f"`{fam.name}` · article {fam.article}\n\n{formula}\n\n"
                     f"**Speed:** {speed_line(m, run, short=True)}\n\n"
                     + " · ".join([f"[family page](families/{fam.name}.md)"]
                                  + [f"[animation](families/{fam.name}.md#animation)"] * (fam.name in anims)
                                  + [f"[tutorial]({link[3:]})" for _, link in tut[:1]]
                                  + ([f"[API]({api[3:]})"] if api else [])) + "\n\n</div>\n")
    speed = "the committed benchmark has no run to quote yet."
    if run.shape:
        n, c_in, c_out, size, k = run.shape
        speed = (f"its layers were built as `cz.build(NAME, {c_in}, {c_out}, {k})` — kernel {k} for every family "
                 f"with a window, none for the others; {c_in} → {c_in} where a family's channel rule refuses "
                 f"{c_in} → {c_out} — and timed on input {(n, c_in, size, size)} against the standard conv "
                 f"`{run.base_call}`. "
                 "The MAC ratio beside each time is that measured layer's; a card says where the layer timed is not "
                 "the family's default layer (another kernel, the width kept, another form).")
    pages["gallery.md"] = "\n".join(
        ["# Family gallery", "",
         f"One card per registered family ({len(cards)}), generated from `convzoo.families()` at build time: the "
         "picture is drawn from the layer itself (click it for its full size) and the formula is its `cost` "
         "docstring. The speed ratio comes from the committed `benchmarks/results/bench_all.json`: " + speed, "",
         '<div class="cz-grid" markdown>', ""] + cards + ["</div>", ""])
    return pages


# ---------------------------------------------------------------- pictures link to their full size
class _Images(HTMLParser):
    """The ``<img>`` tags of a page's HTML: (offset, raw tag, attributes, inside an ``<a>``)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=False)
        self.starts = [0] + [m.end() for m in re.finditer("\n", html)]  # offset of each line
        self.open_links = 0
        self.found: list[tuple[int, str, dict[str, str | None], bool]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.open_links += 1
        elif tag == "img":
            line, col = self.getpos()
            self.found.append((self.starts[line - 1] + col, self.get_starttag_text() or "", dict(attrs),
                               self.open_links > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self.open_links = max(0, self.open_links - 1)


def link_images(html: str) -> str:
    """Every content picture as a link to its full-size file, lazy-loaded: an ``<img>`` outside any link is wrapped in
    ``<a class="cz-full" href=SRC>`` and given ``loading="lazy"`` where it has no ``loading``. Pictures that are
    already links, and a tutorial index's thumbnails (their card links to the tutorial), are left as they are."""
    out, last = [], 0
    for offset, tag, attrs, linked in _Images(html).found:
        src = attrs.get("src") or ""
        if linked or not src or src.startswith("data:") or "/thumb/" in src:
            continue
        img = tag if "loading" in attrs else re.sub(r"^<img\b", '<img loading="lazy"', tag)
        out += [html[last:offset], f'<a class="cz-full" href="{escape(src, quote=True)}" title="full size">{img}</a>']
        last = offset + len(tag)
    return "".join(out) + html[last:]


# ---------------------------------------------------------------- MkDocs events
_PAGES: dict[str, str] = {}
_ANIMATED: dict[str, list[Animation]] = {}
_TMP: tempfile.TemporaryDirectory | None = None
MARKER = "<!-- convzoo:animations -->"  # docs/pictures.md: replaced by the animation gallery


def check_docstrings(convzoo: ModuleType | None = None) -> list[str]:
    """Log one warning per undocumented public name (``mkdocs build --strict`` then fails); return them."""
    missing = undocumented(convzoo)
    for path in missing:
        log.warning("convzoo docs: public name %s has no docstring", path)
    return missing


def on_config(config, **kwargs):
    global _TMP
    convzoo = _convzoo()
    check_docstrings(convzoo)
    _TMP = tempfile.TemporaryDirectory(prefix="convzoo-docs-")
    _PAGES.clear()
    _PAGES.update(api_pages(convzoo))
    _PAGES.update(family_pages(convzoo, Path(_TMP.name)))
    nav = config["nav"]
    for i, entry in enumerate(nav):
        (title, target), = entry.items()
        if target == "gallery.md":
            nav[i] = {title: [target] + sorted(p for p in _PAGES if p.startswith("families/"))}
        elif target == "api/index.md":
            nav[i] = {title: [target] + [p for p in _PAGES if p.startswith("api/") and p != target]}
    config["extra_css"] = list(config.get("extra_css", [])) + ["_convzoo.css"]
    return config


CSS = """.md-grid{max-width:75rem}
.cz-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:1rem}
.cz-grid.cz-anim{grid-template-columns:repeat(auto-fill,minmax(16rem,1fr))}
.cz-card{border:1px solid var(--md-default-fg-color--lightest);border-radius:.4rem;padding:0 .8rem;font-size:.7rem}
.cz-card img{max-height:14rem;object-fit:contain;width:100%}
a.cz-full img{cursor:zoom-in}
"""


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if page.file.src_uri != "pictures.md":
        return markdown
    if MARKER not in markdown:
        log.warning("convzoo docs: docs/pictures.md has lost its %s line: the animation gallery has no place", MARKER)
        return markdown
    titles = {f.name: f.title for f in _convzoo().families()}
    return markdown.replace(MARKER, animation_gallery(_ANIMATED, titles))


def on_page_content(html: str, page, config, files, **kwargs):
    return link_images(html)


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File  # here, so that the tests can import the checks without mkdocs

    for path, text in _PAGES.items():
        files.append(File.generated(config, path, content=text))
    for picture in sorted([*Path(_TMP.name).glob("*.png"), *Path(_TMP.name).glob("*.gif")]):
        files.append(File.generated(config, f"families/{picture.name}", content=picture.read_bytes()))
    files.append(File.generated(config, "_convzoo.css", content=CSS))
    return files


def on_post_build(config, **kwargs):
    if _TMP is not None:
        _TMP.cleanup()
