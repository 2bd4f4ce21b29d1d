"""Markdown pages from results files (:mod:`convzoo.perf.results`): the one renderer of every measured table.

A page shows the run's machine (CPU model, SIMD flags and torch's CPU capability, or the GPU; threads; torch; the
date), then each table with that machine in its header, its notes, the run's figures, and last the run's
*reading*: an optional hand-written ``<name>.md`` next to the results file that says what bounds each row. The
reading may only quote numbers that the generated page shows (:func:`unquoted_numbers`), so text and tables
cannot drift apart: a rerun that changes a quoted number fails the strict docs build until the text follows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .results import Cell, Results, Table

NOT_RECORDED = "machine not recorded"
# A measured value: a number with a decimal point. Integers are left alone (shapes, counts, thread numbers), and
# so are version strings (2.14.1), which the lookarounds exclude.
DECIMAL = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def format_cell(value: Cell, fmt: str = "") -> str:
    """A cell as Markdown: null / NaN → '—', booleans yes/no, ints with thousands separators, floats by the
    column's format (a spec such as '.2f' or a template such as '{:.2f}×') or to 4 significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)) and fmt:
        return fmt.format(value) if "{" in fmt else format(value, fmt)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        text = format(value, ".4g")
        return format(value, ",.0f") if "e" in text and abs(value) >= 1 else text
    return str(value).replace("|", "\\|").replace("\n", " ")


def _numeric(table: Table, column: int) -> bool:
    cells = [row[column] for row in table.rows if row[column] is not None]
    return bool(cells) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in cells)


def table_markdown(table: Table) -> str:
    """The table's cells as a Markdown table, numeric columns right-aligned."""
    header = "| " + " | ".join(format_cell(n) for n in table.names) + " |"
    rule = "|" + "|".join("---:" if _numeric(table, j) else "---" for j in range(len(table.names))) + "|"
    body = ["| " + " | ".join(format_cell(v, f) for v, f in zip(row, table.formats)) + " |" for row in table.rows]
    return "\n".join([header, rule, *body])


def machine_line(machine: Mapping[str, Any] | None, date: str | None) -> str:
    """One line: the device (GPU, else CPU model with torch's CPU capability), threads, torch version and date;
    each missing piece said to be not recorded, and a missing machine said so as a whole."""
    if machine is None:
        return f"{NOT_RECORDED} · date {date or 'not recorded'}"
    m = machine
    if m.get("gpu"):
        device = str(m["gpu"]) + "".join(f", {label} {m[k]}" for k, label in (("cuda", "CUDA"), ("cudnn", "cuDNN"))
                                         if m.get(k))
    else:
        device = str(m.get("cpu") or "CPU model not recorded")
        device += f" ({m['cpu_capability']})" if m.get("cpu_capability") else ""
        device += f", {m['cores']} cores" if m.get("cores") else ""
    parts = [device, f"{m['threads']} thread{'s' * (str(m['threads']) != '1')}" if m.get("threads") else
             "threads not recorded", f"torch {m['torch']}" if m.get("torch") else "torch version not recorded",
             f"date {date}" if date else "date not recorded"]
    if m.get("load_average") is not None:
        parts.append(f"load average {m['load_average']}")
    return " · ".join(parts)


def machine_label(machine: Mapping[str, Any] | None) -> str:
    """A few words naming the device, for telling runs of one measurement apart in a list: the GPU's name, else the
    CPU model without trademark signs and filler words, with torch's CPU capability ('Intel Xeon AVX512')."""
    if machine is None:
        return "machine not recorded"
    if machine.get("gpu"):
        return str(machine["gpu"])
    words = re.sub(r"\((R|TM|tm|r)\)", "", str(machine.get("cpu") or "CPU")).split()
    model = " ".join(w for w in words if w.lower() not in ("processor", "cpu")) or "CPU"
    return f"{model} {machine['cpu_capability']}" if machine.get("cpu_capability") else model


def machine_details(machine: Mapping[str, Any] | None) -> list[str]:
    """Every recorded machine key as a Markdown list ('machine not recorded' when there is none)."""
    if machine is None:
        return [f"- {NOT_RECORDED}: the file that these numbers come from does not say which machine ran them"]
    labels = {"cpu": "CPU", "cpu_flags": "SIMD flags", "cpu_capability": "torch CPU capability", "cores": "cores",
              "threads": "torch threads", "torch": "torch", "gpu": "GPU", "cuda": "CUDA", "cudnn": "cuDNN",
              "gemm_peak_gmacs": "GEMM peak, measured (GMAC/s)",
              "copy_bandwidth_gbs": "copy bandwidth, measured (GB/s)",
              "load_average": "load average (1 min)", "load_average_before": "load average before timing"}
    return [f"- {labels.get(k, k.replace('_', ' '))}: {format_cell(v) if not isinstance(v, (list, dict)) else v}"
            for k, v in machine.items() if v not in (None, "")]


def render_page(results: Results, reading: str = "", figure_dir: str = "") -> str:
    """The page of one results file: title, what it measures, the machine, each table with its machine line,
    figures (``figure_dir/<file>``), then the hand-written ``reading``."""
    r = results
    out = [f"# {r.title}", ""]
    if r.superseded_by:
        out += ['!!! note "An earlier run"',
                f"    A newer run of this measurement: [{r.superseded_by}]({r.superseded_by}.md).", ""]
    if r.description:
        out += [r.description.strip(), ""]
    out += [f"**Ran on:** {machine_line(r.machine, r.date)}", ""]
    out += [f"**Command:** `{r.command}` · **file:** `benchmarks/results/{r.name}.json`" if r.command else
            f"**File:** `benchmarks/results/{r.name}.json`", ""]
    if r.provenance:
        out += [f"**Source:** {r.provenance}", ""]
    out += ['??? info "Machine"', ""] + ["    " + line for line in machine_details(r.machine)] + [""]
    for table in r.tables:
        machine = None if r.machine is None and not table.machine else {**(r.machine or {}), **table.machine}
        out += [f"## {table.caption}", "", f"*{machine_line(machine, r.date)}*", "",
                '<div class="cz-results" markdown>', "", table_markdown(table), "", "</div>", ""]
        if table.notes:
            out += [table.notes.strip(), ""]
    for figure in r.figures:
        src = f"{figure_dir}/{figure['path'].rsplit('/', 1)[-1]}" if figure_dir else figure["path"]
        out += [f"![{figure.get('caption', '')}]({src})", "", f"*{figure.get('caption', '')}*", ""]
    if reading.strip():
        out += ["## Reading the results", "", reading.strip(), ""]
    return "\n".join(out)


def unquoted_numbers(reading: str, page: str) -> list[str]:
    """Decimal numbers that the reading quotes (outside code) and that the generated part of the page does not
    show: a measurement typed by hand, or one that a rerun changed."""
    shown = set(DECIMAL.findall(page))
    return sorted({n for n in DECIMAL.findall(CODE.sub("", reading)) if n not in shown}, key=float)


def _script(command: str) -> str:
    words = command.split()
    if words[:1] == ["convzoo"]:
        return " ".join(words[:2])
    return next((w for w in words if w.endswith(".py") or w.endswith(".sh")), words[0] if words else "(no command)")


def by_benchmark(runs: Sequence[Results]) -> dict[str, list[Results]]:
    """{benchmark (its script, or the convzoo command): its runs, current ones first}, benchmarks by name."""
    groups: dict[str, list[Results]] = {}
    for r in sorted(runs, key=lambda r: (bool(r.superseded_by), r.name)):
        groups.setdefault(_script(r.command), []).append(r)
    return dict(sorted(groups.items()))


def index_markdown(runs: Sequence[Results]) -> str:
    """The list of every run, grouped by the benchmark (script or command) that wrote it: what it measures (the
    first paragraph of its description), then one line per run with its machine line."""
    out: list[str] = []
    for script, members in by_benchmark(runs).items():
        lead = next((r for r in members if r.description), None)
        out += [f"### `{script}`", ""]
        if lead:
            out += [lead.description.strip().split("\n\n")[0], ""]
        for r in members:
            earlier = " (an earlier run)" if r.superseded_by else ""
            out.append(f"- [{r.title}]({r.name}.md){earlier}: {machine_line(r.machine, r.date)}")
        out.append("")
    return "\n".join(out)


def rich_table(table: Table, title: str = "") -> Any:
    """The same table for the terminal (a rich Table; numeric columns right-aligned, the notes as its caption)."""
    from rich.table import Table as RichTable

    out = RichTable(title=title or table.caption, caption=table.notes or None)
    for j, name in enumerate(table.names):
        out.add_column(name, justify="right" if _numeric(table, j) else "left")
    for row in table.rows:
        out.add_row(*(format_cell(v, f).replace("\\|", "|") for v, f in zip(row, table.formats)))
    return out

