"""``convzoo report``: one self-contained HTML file (images inlined as data URIs, no network) with the compare
table, a MACs-vs-measured-time plot, the sweep table when a sweep file exists, a gallery section per family
(connectivity picture, params/MACs and their formula from the layer's ``cost`` docstring, seed reference) and
the special pictures."""

from __future__ import annotations

import base64
import html
import inspect
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..analysis.cost import cost
from ..registry import families
from .figures import connectivity_figure, figure_bytes, plt
from .spec import LayerSpec, describe
from .special import SPECIAL, special_figure

COMPARE_COLUMNS = ("family", "params", "macs", "mac_ratio", "forward_ms", "forward_backward_ms", "speed_ratio",
                   "gmacs_per_s", "bytes", "intensity", "max_error")
SWEEP_COLUMNS = ("family", "params", "macs", "latency_ms", "best_accuracy")


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _table(rows: Sequence[dict[str, Any]], columns: Iterable[str]) -> str:
    columns = list(columns)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def compare_rows(**kwargs: Any) -> list[dict[str, Any]]:
    """Rows of ``convzoo.compare.compare(**kwargs)`` as dicts."""
    from ..perf.compare import compare  # written alongside (issue 5); imported late so viz works without it

    return [row.to_dict() for row in compare(**kwargs)]


def macs_time_plot(rows: Sequence[dict[str, Any]]) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = [r["macs"] / 1e6 for r in rows]
    ys = [r["forward_ms"] for r in rows]
    ax.scatter(xs, ys, color="#2b7bba")
    for r, x, y in zip(rows, xs, ys):
        ax.annotate(r["family"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("MACs (millions; FLOPs = 2 × MACs)")
    ax.set_ylabel("measured forward time (ms)")
    ax.set_title("MACs vs measured time: the MAC count does not predict speed")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return figure_bytes(fig)


def _formula(module: Any) -> str:
    doc = inspect.getdoc(getattr(module, "cost", None)) or ""
    return doc.strip() or "params and MACs from convzoo.cost (conv/linear weights; MACs = multiply-accumulates)"


def gallery_section(name: str, title: str, seed: str, summary: str, spec: LayerSpec) -> str:
    module = spec.build()
    picture = figure_bytes(connectivity_figure(module, spec.input_shape, spec.label()), dpi=70)
    report = cost(module, (1, *spec.input_shape))
    return (f'<section class="family" id="{html.escape(name)}"><h3>{html.escape(title)} '
            f'<code>{html.escape(name)}</code></h3><p>{html.escape(summary)} <em>Seed: {html.escape(seed)}.</em></p>'
            f"<p>{html.escape(type(module).__name__)}({html.escape(describe(module))}) on input "
            f"{(1, *spec.input_shape)}: <b>{report.params:,}</b> params, <b>{report.macs:,}</b> MACs.</p>"
            f"<pre>{html.escape(_formula(module))}</pre>{_img(picture, name + ' connectivity')}</section>")


CSS = """body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap;font-size:12px}section.family{border-top:1px solid #ddd}"""


def build_report(path: str | Path, rows: Sequence[dict[str, Any]] | None = None, sweep: str | Path | None = None,
                 compare_kwargs: dict[str, Any] | None = None, names: Sequence[str] | None = None,
                 specials: bool = True) -> Path:
    """Write the HTML report. ``rows``: compare rows as dicts (default: run ``convzoo.compare`` with
    ``compare_kwargs``); ``sweep``: a sweep JSON file, included when it exists."""
    path = Path(path)
    notes = []
    if rows is None:
        try:
            rows = compare_rows(**(compare_kwargs or {}))
        except ImportError:
            rows = []
            notes.append("convzoo.compare is not available in this installation: no compare table.")
    kwargs = compare_kwargs or {}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>convzoo report</title>"
             f"<link rel='icon' href='data:,'><style>{CSS}</style></head><body><h1>convzoo report</h1>"]
    parts.append("<h2>Compare: cost vs measured speed</h2>")
    if rows:
        setting = ", ".join(f"{k}={v}" for k, v in kwargs.items())
        parts.append(f"<p>MACs = multiply-accumulates (FLOPs = 2 × MACs). {html.escape(setting)}</p>")
        parts.append(_table(rows, [c for c in COMPARE_COLUMNS if c in rows[0]]))
        if all("macs" in r and "forward_ms" in r for r in rows):
            parts.append(_img(macs_time_plot(rows), "MACs vs measured time"))
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    if sweep is not None and Path(sweep).exists():
        sweep_rows = json.loads(Path(sweep).read_text())
        parts.append(f"<h2>Accuracy vs cost (sweep: {html.escape(str(sweep))})</h2>")
        parts.append(_table(sweep_rows, SWEEP_COLUMNS))
    parts.append("<h2>Gallery: connectivity of every family (computed by autograd from the real layer)</h2>")
    chosen = [f for f in families() if names is None or f.name in names]
    parts.append("<p>" + " · ".join(f"<a href='#{f.name}'>{f.name}</a>" for f in chosen) + "</p>")
    for f in chosen:
        spec = LayerSpec(f.name, 4, 4, size=6).validate()
        parts.append(gallery_section(f.name, f.title, f.article, f.summary, spec))
    if specials:
        parts.append("<h2>Special pictures</h2>")
        for name in SPECIAL:
            parts.append(f"<h3>{html.escape(name)}</h3>{_img(figure_bytes(special_figure(name), dpi=70), name)}")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
    return path
