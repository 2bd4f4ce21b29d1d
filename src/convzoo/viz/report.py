"""``convzoo report``: one self-contained HTML page to learn from (images inlined as data URIs, no script, nothing
fetched). Per family: its idea with the article section, its picture stage by stage (``viz.picture``, drawn from
the real layer) and its sliding-window animation where it has one, the cost formula (the layer's ``cost``
docstring) with the numbers ``convzoo.cost`` gives, and the measured speed (``convzoo.compare`` rows). Then a
comparison grid of all families, a log-log plot of MACs against measured time with the slope-1 line and labels
that do not overlap, the article figures (``viz.figures``) with their bilingual captions drawn in, and a training
sweep's table and Pareto plot when a sweep file is given. Pictures are embedded at their native pixel size (a
wide one scrolls) so nothing is downscaled. The settings line states what was used: the timing shape, or where
the rows came from. ``standard`` is the baseline of every ratio and is never compared with itself.
"""

from __future__ import annotations

import base64
import html
import inspect
import io
import json
import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.ticker import LogFormatter

from ..arithmetic.cost import cost
from ..registry import families
from .draw import DPI
from .figures import figure_bytes, plt
from .spec import LayerSpec, describe

BASELINE = "standard"  # what compare's ratios are measured against
ANIMATION_FRAMES = 9  # the report's GIFs visit at most this many output positions
DEFAULT_SETTINGS = {"batch": 8, "in_channels": 64, "out_channels": 128, "size": 56}
# The pictures' layer: small enough to read every cell; printed on the page.
PICTURE = {"in_channels": 4, "out_channels": 4, "size": 6, "kernel": 3}
REQUIRED = ("family", "params", "macs", "forward_ms")  # what a row needs for the grid and the plot
COMPARE_COLUMNS = ("family", "params", "macs", "mac_ratio", "forward_ms", "forward_backward_ms", "speed_ratio",
                   "gmacs_per_s", "max_error")
SWEEP_COLUMNS = ("family", "params", "macs", "latency_ms", "mean_accuracy", "accuracy_ci95", "delta_vs_baseline", "p_value",
                 "significant")


# --- inputs ---------------------------------------------------------------------------------------------------------


def check_output(path: str | Path) -> Path:
    """The report's path must be a new or existing file (not a directory) in an existing directory."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a directory: give a file name such as report.html")
    if not path.parent.is_dir():
        raise ValueError(f"output {str(path)!r}: the directory {str(path.parent)!r} does not exist")
    if path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"output {str(path)!r} must end in .html")
    return path


class RecordedRows(list):  # type: ignore[type-arg]
    """Compare rows (dicts) with what their file recorded of the run: ``settings`` (batch, in_channels,
    out_channels, size, kernel, dtype, device, threads, ... — ``compare --json``'s header) and ``machine``; both
    empty for a file from before the header (a bare list of rows)."""

    def __init__(self, rows: Iterable[dict[str, Any]], settings: dict[str, Any] | None = None,
                 machine: dict[str, Any] | None = None) -> None:
        super().__init__(rows)
        self.settings = dict(settings or {})
        self.machine = dict(machine or {})


# The report's shape options and the keys compare --json records them under.
SETTING_OPTIONS = {"batch": "--batch", "in_channels": "--in", "out_channels": "--out", "size": "--size"}


def read_rows(path: str | Path) -> RecordedRows:
    """Compare rows from a JSON file (``convzoo compare --json``): ``{"settings", "machine", "rows"}``, or a bare
    list of rows (files from before the header); each row an object with at least ``family, params, macs,
    forward_ms``. ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--rows {str(path)!r}: no such file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--rows {str(path)!r} is not valid JSON ({error.msg} at line {error.lineno})") from None
    where = f"--rows {str(path)!r}"
    if isinstance(data, dict):
        for key in ("settings", "machine"):
            if not isinstance(data.get(key, {}), dict):
                raise ValueError(f"{where}: its {key!r} must be an object (the header of `convzoo compare --json`)")
        return RecordedRows(check_rows(data.get("rows"), where), data.get("settings"), data.get("machine"))
    return RecordedRows(check_rows(data, where), legacy_settings(data))


def legacy_settings(rows: Any) -> dict[str, Any]:
    """What a bare list of rows still says of its run: the channels of the 'standard' row (always built as asked;
    rows record the channels they were built with), when the rows carry them."""
    standard = next((r for r in rows if isinstance(r, dict) and r.get("family") == BASELINE), None)
    if not standard or not standard.get("in_channels") or not standard.get("out_channels"):
        return {}
    return {"in_channels": standard["in_channels"], "out_channels": standard["out_channels"]}


def check_rows(data: Any, where: str = "rows") -> list[dict[str, Any]]:
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{where} must be a list of row objects (the output of `convzoo compare --json`)")
    known = {f.name for f in families()}
    for i, row in enumerate(data):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise ValueError(f"{where}: row {i} has no {', '.join(missing)} (needs {', '.join(REQUIRED)})")
        if row["family"] not in known:
            raise ValueError(f"{where}: row {i} names unknown family {row['family']!r}")
    return data


def rows_settings(recorded: dict[str, Any], stated: dict[str, Any], source: str) -> dict[str, Any]:
    """The settings of rows read from ``source``: what the file recorded, completed by what the command line
    stated; a stated value that contradicts a recorded one is a ValueError naming the option and both values."""
    for key, value in stated.items():
        if key in recorded and recorded[key] != value:
            option = SETTING_OPTIONS.get(key, key)
            raise ValueError(f"{option} {value} contradicts {source}, whose rows were measured with {key} "
                             f"{recorded[key]}: drop {option} (the file's value is used) or give {recorded[key]}")
    kept = {k: v for k, v in recorded.items() if k in (*SETTING_OPTIONS, "kernel", "dtype", "device", "threads")}
    return {**kept, **{k: v for k, v in stated.items() if k not in kept}}


def compare_rows(**kwargs: Any) -> list[dict[str, Any]]:
    """Rows of ``convzoo.perf.compare.compare(**kwargs)`` as dicts."""
    from ..perf.compare import compare

    return [row.to_dict() for row in compare(**kwargs)]


# --- pieces ---------------------------------------------------------------------------------------------------------


def _img(data: bytes, alt: str, cls: str = "") -> str:
    """The image inlined at its native pixel size (width and height set; CSS never shrinks it: a wide one scrolls
    inside its ``div.pic``)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        width, height, kind = im.width, im.height, (im.format or "PNG").lower()
    return (f'<div class="pic"><img alt="{html.escape(alt)}"{f" class={cls!r}" if cls else ""} width="{width}" '
            f'height="{height}" src="data:image/{kind};base64,{base64.b64encode(data).decode()}"></div>')


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return html.escape(str(value))


def _cell(row: dict[str, Any], column: str) -> str:
    """A table cell; the baseline's own ratios read 'baseline' (it is not compared with itself)."""
    if row.get("family") == BASELINE and column in ("mac_ratio", "speed_ratio"):
        return "baseline"
    return _num(row.get(column, ""))


def _table(rows: Sequence[dict[str, Any]], columns: Iterable[str]) -> str:
    columns = [c for c in columns if any(c in r for r in rows)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r, c)}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], labels: Sequence[str], fontsize: float = 8,
                 ) -> list[Any]:
    """Annotate each point with its label at the first of a ring of offsets (growing outwards) where the label's box
    overlaps no placed label and no point and stays inside the axes; a label moved further than its neighbourhood
    gets a leader line. Offsets are in points, so the layout survives saving at another dpi. (Written here:
    matplotlib has no label placement of its own.)"""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    dot = 4.0 * fig.dpi / 72  # half a marker, in pixels
    taken = [(px - dot, py - dot, px + dot, py + dot) for px, py in (ax.transData.transform((x, y))
                                                                     for x, y in zip(xs, ys))]
    frame = ax.get_window_extent(renderer)
    placed = []
    for i in sorted(range(len(labels)), key=lambda i: (xs[i], ys[i])):
        choice = None
        for radius in (4, 10, 18, 28, 40, 54, 70, 90, 115, 140):
            for angle in range(0, 360, 30):
                dx, dy = radius * math.cos(math.radians(angle)), radius * math.sin(math.radians(angle))
                align = {"ha": "left" if dx > 0.5 else "right" if dx < -0.5 else "center",
                         "va": "bottom" if dy > 0.5 else "top" if dy < -0.5 else "center"}
                note = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                                   fontsize=fontsize, **align)
                box = note.get_window_extent(renderer)
                note.remove()
                rect = (box.x0 - 1, box.y0 - 1, box.x1 + 1, box.y1 + 1)
                inside = frame.x0 <= rect[0] and rect[2] <= frame.x1 and frame.y0 <= rect[1] and rect[3] <= frame.y1
                if inside and not any(rect[0] < t[2] and t[0] < rect[2] and rect[1] < t[3] and t[1] < rect[3]
                                      for t in taken):
                    choice = (dx, dy, align, rect, radius)
                    break
            if choice:
                break
        if choice is None:  # nowhere free: beside the point
            choice = (4.0, 4.0, {"ha": "left", "va": "bottom"}, None, 4)
        dx, dy, align, rect, radius = choice
        leader = {"arrowprops": {"arrowstyle": "-", "color": "#999", "lw": 0.6, "shrinkA": 2, "shrinkB": 3}} \
            if radius > 4 else {}
        note = ax.annotate(labels[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                           fontsize=fontsize, **align, **leader)
        if rect is None:
            box = note.get_window_extent(renderer)
            rect = (box.x0, box.y0, box.x1, box.y1)
        taken.append(rect)
        placed.append(note)
    return placed


class PlainLog(LogFormatter):
    """matplotlib's choice of which log ticks to label, written as plain numbers (0.3, 30; not 3×10⁻¹)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def slope_one_anchor(rows: Sequence[dict[str, Any]]) -> tuple[float, float, str]:
    """(MACs in millions, ms, what) the slope-1 line goes through: the baseline's point, else the geometric mean."""
    for r in rows:
        if r["family"] == BASELINE:
            return r["macs"] / 1e6, r["forward_ms"], BASELINE
    mx = math.exp(sum(math.log(r["macs"] / 1e6) for r in rows) / len(rows))
    my = math.exp(sum(math.log(r["forward_ms"]) for r in rows) / len(rows))
    return mx, my, "the points' geometric mean"


def macs_time_figure(rows: Sequence[dict[str, Any]], setting: str) -> Any:
    """Log-log scatter of MACs against measured forward time, one labelled point per family, and the slope-1 line
    (time ∝ MACs) through the baseline: a family above it does fewer MACs per second than the baseline."""
    fig, ax = plt.subplots(figsize=(10, max(6.0, 0.26 * len(rows))))  # room for every family's label
    xs = [r["macs"] / 1e6 for r in rows]
    ys = [r["forward_ms"] for r in rows]
    ax.scatter(xs, ys, s=22, color="#2b7bba", zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Room for labels: widen the limits by a factor on each side of the data (log axes).
    ax.set_xlim(min(xs) / 2.2, max(xs) * 2.2)
    ax.set_ylim(min(ys) / 1.8, max(ys) * 1.8)
    x0, y0, through = slope_one_anchor(rows)
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [y0 * lo / x0, y0 * hi / x0], linestyle="--", color="#888888", linewidth=1.2, zorder=2,
            label=f"slope 1 through {through}: time ∝ MACs")
    ax.set_xlim(lo, hi)
    ax.legend(loc="upper left", fontsize=9, frameon=False)
    for axis in (ax.xaxis, ax.yaxis):  # plain numbers (30, not 3×10¹), minor ticks labelled on a short range
        axis.set_major_formatter(PlainLog(labelOnlyBase=False))
        axis.set_minor_formatter(PlainLog(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.set_xlabel("MACs (millions, log scale; FLOPs = 2 × MACs)", fontsize=10)
    ax.set_ylabel("measured forward time (ms, log scale)", fontsize=10)
    ax.set_title(f"MACs vs measured time — {setting}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    place_labels(ax, xs, ys, [r["family"] for r in rows], fontsize=9)
    return fig


def _formula(module: torch.nn.Module) -> str:
    doc = inspect.getdoc(getattr(module, "cost", None)) or ""
    return doc or "params and MACs by convzoo.cost (conv/linear weights; MACs = multiply-accumulates)"


def _picture(module: torch.nn.Module, input_shape: Sequence[int], dpi: int | None) -> bytes:
    from .picture import layer_figure

    fig = layer_figure(module, input_shape)
    try:
        return figure_bytes(fig, dpi=dpi or DPI)
    finally:
        plt.close(fig)


def animation_bytes(module: torch.nn.Module, input_shape: Sequence[int]) -> bytes | None:
    """The family's sliding-window GIF (``convzoo viz FAMILY -o x.gif``, at most ``ANIMATION_FRAMES`` frames; a
    composite's main stages one after another), or None where it cannot be animated (the reason is in the
    ``ValueError`` that ``animate`` raises)."""
    from .animation import animate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.gif"
        try:
            animate(module, input_shape, path, max_frames=ANIMATION_FRAMES)
        except ValueError:
            return None
        return path.read_bytes()


def _speed_sentence(row: dict[str, Any] | None, setting: str) -> str:
    if not row:
        return ""
    if row["family"] == BASELINE:
        return " It is the baseline that every other family's ratios are measured against."
    parts = []
    if isinstance(row.get("mac_ratio"), (int, float)) and not math.isnan(row["mac_ratio"]):
        parts.append(f"has {row['mac_ratio']:.3g}× the MACs of a standard conv")
    if isinstance(row.get("speed_ratio"), (int, float)) and not math.isnan(row["speed_ratio"]) \
            and row["speed_ratio"] > 0:
        speed = row["speed_ratio"]
        if abs(speed - 1) < 0.005:
            parts.append("ran as fast (forward)")
        else:
            parts.append(f"ran {speed:.3g}× faster (forward)" if speed > 1 else f"ran {1 / speed:.3g}× slower (forward)")
    return f" Measured ({setting}): it {' and '.join(parts)}." if parts else ""


def _stages_sentence(module: torch.nn.Module) -> str:
    """The layer's own stages (the layer contract's ``stages()``) as a sentence, when there is more than one."""
    try:
        stages = list(module.stages()) if callable(getattr(module, "stages", None)) else []
    except NotImplementedError:
        stages = []
    main = [s.name for s in stages if not s.side]
    side = [s.name for s in stages if s.side]
    if len(main) < 2 and not side:
        return ""
    return (" Stage by stage: " + " → ".join(main)
            + (f" (side branch{'es' if len(side) > 1 else ''}: {'; '.join(side)})" if side else "") + ".")


def family_section(fam: Any, row: dict[str, Any] | None, setting: str, dpi: int | None = None,
                   animation: bool = True) -> str:
    """One family: idea + article section, picture (and its animation), cost formula with the numbers, measured
    speed."""
    spec = LayerSpec(fam.name, PICTURE["in_channels"], PICTURE["out_channels"], PICTURE["kernel"],
                     2 if 2 in fam.dims else fam.dims[0], PICTURE["size"]).validate()
    module = spec.build()
    shape = (1, *spec.input_shape)
    numbers = cost(module, shape)
    idea = getattr(fam, "idea", "") or fam.summary
    gif = ""
    if animation:
        data = animation_bytes(spec.build(), spec.input_shape)
        if data is not None:
            gif = (f"<details class='anim'><summary>Animation: the window walking the output "
                   f"(GIF, up to {ANIMATION_FRAMES} frames)</summary>{_img(data, fam.name + ' animation')}"
                   f"</details>")
    speed = ""
    if row:
        speed = (f"<p class='speed'>Measured ({html.escape(setting)}): forward <b>{_num(row['forward_ms'])} ms</b>"
                 + (f", forward+backward <b>{_num(row['forward_backward_ms'])} ms</b>"
                    if "forward_backward_ms" in row else "")
                 + (f", {_num(row['gmacs_per_s'])} GMAC/s" if "gmacs_per_s" in row else "")
                 + f"; params {_num(row['params'])}, MACs {_num(row['macs'])}.</p>")
    return (
        f"<section class='family' id='{html.escape(fam.name)}'>"
        f"<h3>{html.escape(fam.title)} <code>{html.escape(fam.name)}</code>"
        f"<span class='article'>article {html.escape(fam.article)}</span></h3>"
        f"<p class='idea'>{html.escape(idea)}{html.escape(_stages_sentence(module))}"
        f"{html.escape(_speed_sentence(row, setting))}</p>"
        f"{_img(_picture(module, spec.input_shape, dpi), fam.name + ' picture')}{gif}"
        f"<div class='cost'><p>Cost of <code>{html.escape(type(module).__name__)}"
        f"({html.escape(module.extra_repr() or describe(module))})</code> on input {shape} → "
        f"{tuple(numbers.output_shape)}: <b>{numbers.params:,}</b> params, <b>{numbers.macs:,}</b> MACs "
        f"(FLOPs = 2 × MACs).</p><pre>{html.escape(_formula(module))}</pre></div>{speed}</section>")


def grid(chosen: Sequence[Any], rows: dict[str, dict[str, Any]]) -> str:
    """The comparison grid: one card per family with its MAC and speed ratios as bars (log scale, 1 = standard)."""
    cards = []
    for fam in chosen:
        row = rows.get(fam.name, {})

        def bar(key: str, label: str, cls: str) -> str:
            value = row.get(key)
            if fam.name == BASELINE:  # the ratios' reference: never a ratio to itself
                return f"<div class='bar'><i class='{cls}' style='width:50%'></i><span>{label}: the baseline</span></div>"
            if not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
                return ""
            width = max(2.0, min(100.0, 50 + 25 * math.log10(value)))  # 0.01× → 0, 1× → 50 %, 100× → 100 %
            return (f"<div class='bar'><i class='{cls}' style='width:{width:.0f}%'></i>"
                    f"<span>{label} {value:.3g}×</span></div>")

        cards.append(
            f"<a class='card' href='#{html.escape(fam.name)}'><b>{html.escape(fam.name)}</b>"
            f"<small>{html.escape(fam.title)}</small>"
            f"<span>params {_num(row.get('params', ''))} · MACs {_num(row.get('macs', ''))}</span>"
            f"<span>forward {_num(row.get('forward_ms', ''))} ms</span>"
            f"{bar('mac_ratio', 'MACs', 'macs')}{bar('speed_ratio', 'speed', 'speed') if row else ''}</a>")
    return "<div class='grid'>" + "".join(cards) + "</div>"


def article_figures(names: Sequence[str] | None = None, progress: Callable[[str], None] | None = None,
                    check_only: bool = False) -> list[tuple[Any, bytes]]:
    """(figure, PNG or GIF) of the article figures (``viz.figures.article_figures()``, what ``convzoo figures``
    writes), each with its bilingual title and caption drawn in (the page adds none: one caption per picture);
    ``names`` picks some (default: all); ``check_only`` validates the names and draws nothing."""
    from .figures import article_figures as provided

    items = provided()
    if names is not None:
        unknown = sorted(set(names) - {item.name for item in items})
        if unknown:
            raise ValueError(f"unknown article figure(s) {', '.join(unknown)}; known: "
                             f"{', '.join(item.name for item in items)}")
        items = [item for item in items if item.name in names]
    if check_only:
        return []
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for item in items:
            if progress:
                progress(f"drawing {item.name}")
            out.append((item, item.write(tmp, "png").read_bytes()))
    return out


CSS = """body{font-family:system-ui,sans-serif;max-width:1680px;margin:auto;padding:1em 1.4em;color:#222;
line-height:1.45}p,pre,.settings,table{max-width:1180px}h1{margin-bottom:.2em}.settings{background:#f4f6f8;border:1px solid #dde3ea;padding:.5em .8em}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}td:first-child,th:first-child{text-align:left}.pic{overflow-x:auto;margin:.6em 0}
.pic img{max-width:none;display:block}details.anim summary{cursor:pointer;color:#2b5d8a;font-size:14px}
pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;font-size:12px}section.family{border-top:1px solid #ddd;
margin-top:1.4em}.article{font-size:13px;font-weight:normal;color:#666;margin-left:.8em}nav a{margin-right:.7em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:10px}.card{display:flex;
flex-direction:column;gap:2px;border:1px solid #dde3ea;border-radius:6px;padding:8px;color:inherit;
text-decoration:none;font-size:13px;min-width:0}.card:hover{border-color:#2b7bba}.card small{color:#555}
.bar{position:relative;background:#f0f0f0;height:18px;margin-top:3px;overflow:hidden}
.bar i{position:absolute;left:0;top:0;bottom:0;opacity:.55}.bar span{position:absolute;left:4px;right:4px;top:0;
line-height:18px;font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}.bar i.macs{background:#e08a2b}
.bar i.speed{background:#2b7bba}.speed{font-size:14px}figure{margin:1em 0}figcaption{font-size:13px;color:#444}"""


def build_report(path: str | Path, rows: Sequence[dict[str, Any]] | None = None, sweep: str | Path | None = None,
                 settings: dict[str, Any] | None = None, rows_source: str | None = None,
                 names: Sequence[str] | None = None, progress: Callable[[str], None] | None = None,
                 dpi: int | None = None, figures: Sequence[str] | None = None, animations: bool = True) -> Path:
    """Write the report to ``path``. ``rows``: compare rows (dicts); None times every family here with
    ``settings`` (``DEFAULT_SETTINGS`` and ``repeats``). With rows from a file, ``rows_source`` names it and
    ``settings`` holds only what the user stated about them. ``names``: a subset of families; ``figures``: a
    subset of the article figures (by name); ``animations``: each family's GIF where it has one; ``dpi``: the
    family pictures' resolution (default: the drawings' own, so type is at its designed size)."""
    path = check_output(path)
    if names is not None:
        from ..registry import family

        for name in names:
            family(name)  # ValueError naming the known families
    chosen = [f for f in families() if names is None or f.name in names]
    sweep_html = sweep_section(Path(sweep)) if sweep is not None else ""  # a bad file fails before any timing
    article_figures(figures, check_only=True)
    if rows is None:
        used = {**DEFAULT_SETTINGS, **(settings or {})}
        from ..perf.compare import timing_rule
        from ..perf.timing import configure

        info = configure("cpu")
        rows = compare_rows(batch=used["batch"], in_channels=used["in_channels"],
                            out_channels=used["out_channels"], size=used["size"], repeats=used.get("repeats"),
                            families=[f.name for f in chosen],
                            progress=(lambda name: progress(f"timing {name}")) if progress else None)
        setting = (f"batch {used['batch']}, C_in {used['in_channels']} → C_out {used['out_channels']}, "
                   f"{used['size']}×{used['size']} input, k=3, float32")
        measured = (f"Timed here: {setting} on {info['device']} ({info['threads']} threads, torch {info['torch']}); "
                    f"{timing_rule(used.get('repeats'))}.")
    else:
        source = rows_source or "the caller's rows"
        recorded = dict(getattr(rows, "settings", {}) or {})
        machine = dict(getattr(rows, "machine", {}) or {})
        stated = rows_settings(recorded, settings or {}, source)
        rows = check_rows(list(rows))
        setting = (", ".join(f"{k} {v}" for k, v in stated.items()) if stated else "settings not recorded")
        from_file = {k: v for k, v in stated.items() if k in recorded}
        from_line = {k: v for k, v in stated.items() if k not in recorded}
        said = ([f"as the file records them: {', '.join(f'{k} {v}' for k, v in from_file.items())}"]
                if from_file else []) + \
               ([f"as stated on the command line: {', '.join(f'{k} {v}' for k, v in from_line.items())}"]
                if from_line else [])
        ran_on = ", ".join(str(machine[k]) for k in ("cpu", "cpu_capability", "gpu") if machine.get(k))
        ran_on += f", {machine['threads']} thread(s)" if machine.get("threads") else ""
        ran_on += f", torch {machine['torch']}" if machine.get("torch") else ""
        measured = (f"Rows read from {source} (measured elsewhere); "
                    + (f"their layer shape {'; '.join(said)}" if said else
                       "the file does not record their layer shape, batch or machine")
                    + (f"; measured on {ran_on}" if ran_on else "")
                    + (f"; {recorded['timing']}" if recorded.get("timing") else "") + ".")
    rows = [r for r in rows if any(r["family"] == f.name for f in chosen)]
    by_name = {r["family"]: r for r in rows}
    picture_setting = (f"C_in {PICTURE['in_channels']} → C_out {PICTURE['out_channels']}, "
                       f"{PICTURE['size']}×{PICTURE['size']} input, k={PICTURE['kernel']}, otherwise the registry's "
                       f"defaults")
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>convzoo report</title>"
             f"<link rel='icon' href='data:,'><style>{CSS}</style></head><body><h1>convzoo report</h1>",
             f"<p class='settings'><b>Speed.</b> {html.escape(measured)}<br><b>Pictures and per-family cost.</b> "
             f"{html.escape(picture_setting)}, computed from the real layers. MACs = multiply-accumulates of conv "
             f"and linear weights (FLOPs = 2 × MACs); ratios are against <code>standard</code>.</p>",
             "<nav><a href='#grid'>comparison</a><a href='#plot'>MACs vs time</a><a href='#families'>families</a>"
             "<a href='#figures'>article figures</a>" + ("<a href='#sweep'>sweep</a>" if sweep else "") + "</nav>"]
    parts.append("<h2 id='grid'>All families at a glance</h2><p>Bars: MACs and forward speed relative to a "
                 "standard conv (log scale; the middle is 1×). Click a card for the family.</p>")
    parts.append(grid(chosen, by_name))
    parts.append(_table(rows, COMPARE_COLUMNS))
    parts.append("<h2 id='plot'>MACs vs measured time</h2>")
    timed = [r for r in rows if r.get("macs", 0) > 0 and r.get("forward_ms", 0) > 0]
    if timed:
        fig = macs_time_figure(timed, setting)
        _, _, through = slope_one_anchor(timed)
        parts.append(f"<p>If MACs predicted speed, the points would lie on the dashed line of slope 1 (drawn "
                     f"through {html.escape(through)}): time proportional to MACs. Points above it do fewer MACs "
                     f"per second, points below more: memory traffic, kernel launches and how well each op maps to "
                     f"the hardware matter as much as the MAC count.</p>"
                     + _img(figure_bytes(fig, dpi=90), "MACs vs measured time"))
        plt.close(fig)
    parts.append("<h2 id='families'>Each family</h2>")
    for fam in chosen:
        if progress:
            progress(f"drawing {fam.name}")
        parts.append(family_section(fam, by_name.get(fam.name), setting, dpi, animations))
    parts.append("<h2 id='figures'>Article figures</h2>")
    parts.append("<p>The figures the articles describe, redrawn from real convzoo layers, each with the article's "
                 "Chinese term next to the English and the section it comes from in its title (also written one "
                 "file each by <code>convzoo figures</code>; figures beyond the articles say so).</p>")
    parts += [f"<figure id='fig-{html.escape(item.name)}'>"
              f"{_img(data, item.title('en') + '. ' + item.caption)}"
              f"<figcaption><code>{html.escape(item.name + (item.suffix or '.png'))}</code></figcaption></figure>"
              for item, data in article_figures(figures, progress)]
    parts.append(sweep_html)
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path


def sweep_section(sweep: Path) -> str:
    """The sweep's table, and ``sweep_pareto.png`` from the same directory when it exists."""
    try:
        rows = json.loads(sweep.read_text())
    except FileNotFoundError:
        raise ValueError(f"--sweep {str(sweep)!r}: no such file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--sweep {str(sweep)!r} is not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError(f"--sweep {str(sweep)!r} must be a list of row objects (the sweep.json of `convzoo sweep`)")
    out = f"<h2 id='sweep'>Accuracy vs cost (sweep: {html.escape(sweep.name)})</h2>" + _table(rows, SWEEP_COLUMNS)
    pareto = sweep.parent / "sweep_pareto.png"
    if pareto.is_file():
        out += _img(pareto.read_bytes(), "sweep Pareto plot")
    return out
