"""MkDocs hook: the pages generated from files outside ``docs/`` at build time, so they cannot drift from them.

- ``performance/<name>.md``: one page per results file ``benchmarks/results/<name>.json``, rendered by
  ``convzoo.perf.results_page`` (the run's machine in each table's header), with the run's figures and its reading
  (``benchmarks/results/<name>.md``, optional); ``docs/performance/index.md`` gets the list of every run in place of
  its ``<!-- convzoo:results -->`` line.
- ``design.md``: ``DESIGN.md`` itself.
- ``architecture.md``: which package imports which, read from ``src/convzoo`` by ``tools/import_graph.py``.

A results file that breaks the format, a figure it names that is missing, a ``superseded_by`` naming no run, or a
reading that quotes a number no generated table shows is logged as a warning, which ``strict: true`` turns into a
failed build naming the file.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DESIGN = ROOT / "DESIGN.md"
MARKER = "<!-- convzoo:results -->"
log = logging.getLogger("mkdocs.hooks.project_pages")  # under "mkdocs": strict mode counts its warnings


def _src_on_path() -> None:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)


def _shown(path: Path) -> str:
    """A path as the build log shows it: relative to the repository when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("convzoo_import_graph", ROOT / "tools" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------- Performance
def performance_pages(directory: Path | None = None) -> tuple[dict[str, str], dict[str, bytes], list]:
    """({page path: Markdown}, {file path: bytes of a figure}, the runs read) for every results file in
    ``directory``; each problem is logged as a warning naming the file, and the file's page is left out."""
    _src_on_path()
    from convzoo.perf.results import ResultsError, read_results, results_files
    from convzoo.perf.results_page import render_page, unquoted_numbers

    pages: dict[str, str] = {}
    files: dict[str, bytes] = {}
    runs = []
    for path in results_files(directory or RESULTS):
        try:
            run = read_results(path)
        except ResultsError as exc:
            log.warning("convzoo docs: %s", exc)
            continue
        runs.append(run)
        text_path = path.with_suffix(".md")
        reading = text_path.read_text(encoding="utf-8") if text_path.exists() else ""
        for number in unquoted_numbers(reading, render_page(run, figure_dir=run.name)):
            log.warning("convzoo docs: %s quotes %s, which no generated table of %s shows (quote the tables, or "
                        "have the benchmark write the number into its results)", _shown(text_path),
                        number, path.name)
        if reading:
            reading += f"\n\n*This reading is `benchmarks/results/{text_path.name}`; the tables above are generated.*"
        for figure in run.figures:
            source = path.parent / figure["path"]
            if not source.is_file():
                log.warning("convzoo docs: %s: figure %s does not exist", _shown(path), figure["path"])
                continue
            files[f"performance/{run.name}/{source.name}"] = source.read_bytes()
        pages[f"performance/{run.name}.md"] = render_page(run, reading, figure_dir=run.name)
    names = {run.name for run in runs}
    for run in runs:
        if run.superseded_by and run.superseded_by not in names:
            log.warning("convzoo docs: %s: superseded_by %r names no results file", run.path.name, run.superseded_by)
    return pages, files, runs


# ------------------------------------------------------------------------------------------------ Architecture
def architecture_page(src: Path = ROOT / "src") -> str:
    """The import matrix of convzoo's packages, bottom to top, and the imports that point up the order."""
    graph_module = _import_graph()
    graph = graph_module.package_graph(src)
    order = graph_module.layer_order(graph)
    up = graph_module.against(order, graph)
    groups = graph_module.cycles(set(graph))
    out = ["# Architecture: which package imports which", "",
           "Generated at build time from the `import` statements of `src/convzoo` (read with `ast` by "
           "`tools/import_graph.py`; nothing is imported), so it shows the code as it is. A *package* is a "
           "sub-package or top-level module of `convzoo`; `convzoo` itself is the public API (`__init__.py`), "
           "which imports everything. An import inside a function runs only when the function does (*lazy*, "
           "in italics below); one under `if TYPE_CHECKING:` never runs (*typing*).", "",
           "The packages are ordered from the bottom (imported by the others) to the top (importing them), so "
           "that as few import statements as possible point up the order (the order is computed, not declared: "
           "it is the layering the imports come closest to).", "",
           "**Bottom to top:** " + " → ".join(f"`{p}`" for p in order), "", "## Import matrix", "",
           "Row *imports* column; the number is the count of import statements (one per module and line; hover "
           "a cell for them); shaded: the row's package sits below the column's in the order, so its imports "
           "point up. In a layered design no cell is shaded.", "", _matrix_html(order, graph), ""]
    out += ["## Imports that point up the order", ""]
    if up:
        for a, b in up:
            where = ", ".join(f"`{i.module}` line {i.line}" + (f" ({i.kind})" if i.kind != "top" else "")
                              for i in graph[(a, b)])
            out.append(f"- `{a}` → `{b}`: {where}")
    else:
        out.append("None: every import points down the order.")
    out += ["", "## Packages that import each other", ""]
    out += [f"- {', '.join(f'`{p}`' for p in group)}" for group in groups] or ["None: the package graph has no cycle."]
    return "\n".join(out) + "\n"


def _matrix_html(order: list[str], graph: dict) -> str:
    rank = {p: i for i, p in enumerate(order)}
    head = "".join(f'<th class="cz-col"><span>{html.escape(p)}</span></th>' for p in order)
    rows = [f"<tr><th></th>{head}</tr>"]
    for a in reversed(order):
        cells = []
        for b in order:
            imports = graph.get((a, b), [])
            if a == b:
                cells.append('<td class="cz-self">·</td>')
                continue
            if not imports:
                cells.append("<td></td>")
                continue
            text = str(len(imports))
            if all(i.kind != "top" for i in imports):
                text = f"<em>{text}</em>"
            where = "; ".join(f"{i.module}:{i.line} ({i.kind})" for i in imports)
            cls = ' class="cz-up"' if rank[a] < rank[b] else ""
            cells.append(f'<td{cls} title="{html.escape(where)}">{text}</td>')
        rows.append(f"<tr><th>{html.escape(a)}</th>{''.join(cells)}</tr>")
    return '<table class="cz-matrix">\n' + "\n".join(rows) + "\n</table>"


CSS = """.cz-matrix{border-collapse:collapse;font-size:.62rem}
.cz-matrix td,.cz-matrix th{border:1px solid var(--md-default-fg-color--lightest);padding:.15rem .3rem}
.cz-matrix td{text-align:center}
.cz-matrix th{text-align:right}.cz-matrix th.cz-col{vertical-align:bottom;height:7rem}
.cz-matrix th.cz-col span{writing-mode:vertical-rl;transform:rotate(180deg)}
.cz-matrix td.cz-up{background:#f3c2bd}.cz-matrix td.cz-self{color:var(--md-default-fg-color--lighter)}
.cz-results table:not([class]){font-size:.6rem}
.cz-results table:not([class]) td,.cz-results table:not([class]) th{padding:.3em .55em}
"""


# ------------------------------------------------------------------------------------------------ MkDocs events
_PAGES: dict[str, str] = {}
_FILES: dict[str, bytes] = {}
_INDEX: list[str] = []


LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+\.) ")


def design_page() -> str:
    """DESIGN.md as a page: a blank line put before each list that follows a paragraph line (GitHub renders such a
    list, Python-Markdown does not), nothing else changed."""
    lines, fenced = [], False
    for line in DESIGN.read_text(encoding="utf-8").splitlines():
        fenced ^= line.lstrip().startswith("```")
        if not fenced and LIST_ITEM.match(line) and lines and lines[-1].strip() and not LIST_ITEM.match(lines[-1]) \
                and not lines[-1].startswith(" "):
            lines.append("")
        lines.append(line)
    title, *body = lines
    return "\n".join([title, "", "*This page is the repository's `DESIGN.md`, included at build time.*", *body]) + "\n"


def on_config(config, **kwargs):
    _PAGES.clear()
    _FILES.clear()
    pages, files, runs = performance_pages()
    _PAGES.update(pages)
    _FILES.update(files)
    _PAGES["design.md"] = design_page()
    _PAGES["architecture.md"] = architecture_page()
    from convzoo.perf.results_page import by_benchmark, index_markdown, machine_label

    _INDEX[:] = [index_markdown(runs)]
    ordered = [r for members in by_benchmark(runs).values() for r in members]
    current = [r for r in ordered if not r.superseded_by]
    earlier = [r for r in ordered if r.superseded_by]
    shared = {r.title for r in current if sum(o.title == r.title for o in current) > 1}

    def entry_of(r: Any) -> dict[str, str]:  # runs of one measurement on several machines: the machine named
        title = r.title.replace("`", "")
        return {f"{title} ({machine_label(r.machine)})" if r.title in shared else title: f"performance/{r.name}.md"}

    nav = config["nav"]
    for i, entry in enumerate(nav):
        (title, target), = entry.items()
        if target == "performance/index.md":
            section = [target] + [entry_of(r) for r in current]
            if earlier:
                section.append({"Earlier runs": [entry_of(r) for r in earlier]})
            nav[i] = {title: section}
    config["extra_css"] = list(config.get("extra_css", [])) + ["_project_pages.css"]
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for path, text in _PAGES.items():
        files.append(File.generated(config, path, content=text))
    for path, content in _FILES.items():
        files.append(File.generated(config, path, content=content))
    files.append(File.generated(config, "_project_pages.css", content=CSS))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    if page.file.src_uri == "performance/index.md":
        if MARKER not in markdown:
            log.warning("convzoo docs: docs/performance/index.md lost its %s line (the list of runs goes there)",
                        MARKER)
        return markdown.replace(MARKER, _INDEX[0] if _INDEX else "")
    return markdown
