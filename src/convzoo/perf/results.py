"""The one results format every benchmark writes (``benchmarks/results/<name>.json``) and the docs site renders.

A results file is one run of one benchmark on one machine::

    {"format": "convzoo-results/1",
     "title": "convzoo's CPU kernels against the copy bound",        # the page's title
     "description": "what it measures and how (Markdown)",
     "command": "python benchmarks/bench_kernels.py --threads 2",    # how to reproduce it
     "date": "2026-12-05",                                           # ISO date, or null: not recorded
     "machine": {"cpu": ..., "cpu_flags": ..., "cpu_capability": ..., "cores": ..., "threads": ..., "torch": ...,
                 "gpu": ..., "load_average": ...},                   # or null: not recorded
     "tables": [{"caption": ..., "columns": [{"name": "fwd ms", "format": ".2f"}, ...], "rows": [[...], ...],
                 "notes": "...", "machine": {...}}],                 # a table's machine overrides the file's keys
     "figures": [{"path": "mac_vs_speed.png", "caption": ...}],      # relative to the results file
     "data": {...}}                                                  # raw measurements for tools (free-form)

Optional keys: ``provenance`` (how a file was made when no benchmark wrote it), ``superseded_by`` (the name of a
newer run of the same measurement). Cells are numbers, strings (Markdown), booleans or null; a column's ``format``
is a format spec (``".2f"``) or a template (``"{:.2f}×"``). Write with :func:`write_results`, read with
:func:`read_results` (every rule checked, errors name the file and the key).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

FORMAT = "convzoo-results/1"
Cell = Union[str, int, float, bool, None]
SIMD_PREFIXES = ("avx", "fma", "sse4", "amx", "f16c", "asimd", "sve", "neon")


class ResultsError(ValueError):
    """A results file that breaks the format; the message names the file and the offending key."""


@dataclass
class Table:
    """One table of a run: ``columns`` are names or (name, format) pairs; ``machine`` overrides the run's machine
    keys for this table (say, ``{"threads": 1}`` for a second pass at another thread count)."""

    caption: str
    columns: Sequence[Union[str, tuple[str, str]]]
    rows: Sequence[Sequence[Cell]]
    notes: str = ""
    machine: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [c if isinstance(c, str) else c[0] for c in self.columns]

    @property
    def formats(self) -> list[str]:
        return ["" if isinstance(c, str) else c[1] for c in self.columns]


@dataclass
class Results:
    """A results file as read: the keys of the format, ``name`` its file stem, ``path`` where it was read from."""

    name: str
    title: str
    tables: list[Table]
    description: str = ""
    command: str = ""
    date: str | None = None
    machine: dict[str, Any] | None = None
    figures: list[dict[str, str]] = field(default_factory=list)
    data: Any = None
    provenance: str = ""
    superseded_by: str = ""
    path: Path | None = None


# --- the machine ---------------------------------------------------------------------------------------------------


def cpu_info() -> tuple[str, list[str]]:
    """(model name, flags) from /proc/cpuinfo (x86 'flags', ARM 'Features'), else what ``platform`` says."""
    model, flags = "", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def machine_info(device: str = "cpu", **extra: Any) -> dict[str, Any]:
    """What a run's numbers depend on: CPU model, its SIMD flags, torch's CPU capability (the kernels oneDNN
    picks), cores, torch threads, torch / Python / numba versions, the 1-minute load average, and on CUDA the GPU,
    CUDA and cuDNN versions. ``extra`` keys (measured limits, a load taken earlier) are added as given."""
    import torch

    model, flags = cpu_info()
    info: dict[str, Any] = {"cpu": model, "cpu_flags": " ".join(f for f in flags if f.startswith(SIMD_PREFIXES)),
                            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
                            "threads": torch.get_num_threads(), "torch": torch.__version__,
                            "python": platform.python_version()}
    try:
        from importlib.metadata import version

        info["numba"] = version("numba")
    except Exception:  # noqa: BLE001 (not installed: nothing to record)
        pass
    if hasattr(os, "getloadavg"):
        info["load_average"] = round(os.getloadavg()[0], 2)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(torch.device(device)), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info | dict(extra)


def machine_tag(machine: Mapping[str, Any]) -> str:
    """A file-name tag for a machine: the GPU's name, else the CPU model and torch's capability
    (``amd-epyc-avx512``), so runs on different machines land in different files."""
    text = machine.get("gpu") or f"{machine.get('cpu', 'cpu')} {machine.get('cpu_capability', '')}"
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def default_command() -> str:
    """``python SCRIPT ARGS`` of this process, the script and every absolute path among the arguments relative to
    the working directory when below it, else their last component (no machine paths in committed files)."""
    argv = list(sys.argv) or ["python"]
    script = _short_path(argv[0])
    args = [_short_path(a) if Path(a).is_absolute() else a for a in argv[1:]]
    if Path(script).name in ("__main__.py", "convzoo"):
        return " ".join(["convzoo", *args])
    return " ".join(["python", script, *args])


def _short_path(value: str) -> str:
    """``value`` relative to the working directory when it lies below it, else its last component."""
    try:
        return str(Path(value).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(value).name


# --- writing --------------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null (JSON has no NaN), tuples lists, other objects ``str``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def table_dict(table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {"caption": table.caption,
                           "columns": [{"name": n, "format": f} if f else {"name": n}
                                       for n, f in zip(table.names, table.formats)],
                           "rows": _plain([list(row) for row in table.rows])}
    if table.notes:
        out["notes"] = table.notes
    if table.machine:
        out["machine"] = _plain(dict(table.machine))
    return out


def write_results(path: str | os.PathLike[str], title: str, tables: Sequence[Table], *, description: str = "",
                  machine: Mapping[str, Any] | None | str = "detect", date: str | None = "today",
                  command: str | None = None, figures: Sequence[tuple[str, str]] = (), data: Any = None,
                  provenance: str = "", superseded_by: str = "") -> Path:
    """Write one run to ``path`` (atomically) in the results format and return the path.

    Defaults: ``machine`` = :func:`machine_info` of the CPU (pass ``machine_info("cuda")`` on a GPU; None writes
    "not recorded"), ``date`` = today (UTC; None: not recorded), ``command`` = this process's command line.
    ``figures``: (file next to ``path``, caption) pairs. The content is checked by :func:`parse_results` before
    it replaces an older file."""
    path = Path(path)
    if date == "today":
        date = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    if isinstance(machine, str):
        machine = machine_info()
    content: dict[str, Any] = {
        "format": FORMAT, "title": title, "description": description,
        "command": command if command is not None else default_command(), "date": date,
        "machine": None if machine is None else _plain(dict(machine)),
        "tables": [table_dict(t) for t in tables],
        "figures": [{"path": p, "caption": c} for p, c in figures]}
    content.update({k: v for k, v in (("provenance", provenance), ("superseded_by", superseded_by)) if v})
    if data is not None:
        content["data"] = _plain(data)
    parse_results(content, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# --- reading --------------------------------------------------------------------------------------------------------


def write_machine_results(directory: str | os.PathLike[str], name: str, title: str, tables: Sequence[Table], *,
                          description: str = "") -> Path:
    """``write_results`` of a CPU run to ``directory/<name>-<machine tag>.json`` (one file per CPU type, the
    machine detected): what the CPU benchmarks write; prints nothing."""
    machine = machine_info()
    return write_results(Path(directory) / f"{name}-{machine_tag(machine)}.json", title, tables,
                         description=description, machine=machine)


def _is_cell(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def parse_results(content: Any, path: str | os.PathLike[str]) -> Results:
    """Check ``content`` (a parsed JSON value) against the format; ``path`` names it in every error."""
    path = Path(path)

    def fail(rule: str) -> ResultsError:
        return ResultsError(f"{path}: {rule}")

    if not isinstance(content, dict):
        raise fail(f"a results file is a JSON object, got {type(content).__name__}")
    if content.get("format") != FORMAT:
        raise fail(f"'format' must be {FORMAT!r} (written by convzoo.perf.results.write_results), got "
                   f"{content.get('format')!r}")
    for key in ("title", "description", "command", "provenance", "superseded_by"):
        if not isinstance(content.get(key, ""), str):
            raise fail(f"'{key}' must be a string, got {type(content[key]).__name__}")
    if not content.get("title", "").strip():
        raise fail("'title' is missing or empty")
    date = content.get("date")
    if date is not None and not (isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date)):
        raise fail(f"'date' must be an ISO date (YYYY-MM-DD) or null, got {date!r}")
    machine = content.get("machine")
    if machine is not None and not isinstance(machine, dict):
        raise fail(f"'machine' must be an object or null (not recorded), got {type(machine).__name__}")
    tables_in = content.get("tables")
    if not isinstance(tables_in, list) or not (tables_in or content.get("figures")):
        raise fail("'tables' must be a list with at least one table (or 'figures' must name one)")
    tables = []
    for i, t in enumerate(tables_in):
        where = f"tables[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("caption"), str):
            raise fail(f"{where} must be an object with a string 'caption'")
        columns = t.get("columns")
        if not isinstance(columns, list) or not columns:
            raise fail(f"{where}.columns must be a non-empty list")
        cols: list[Union[str, tuple[str, str]]] = []
        for j, c in enumerate(columns):
            c = {"name": c} if isinstance(c, str) else c
            if not (isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("format", ""), str)):
                raise fail(f"{where}.columns[{j}] must be a name or {{'name': str, 'format': str}}, got {c!r}")
            cols.append((c["name"], c["format"]) if c.get("format") else c["name"])
        rows = t.get("rows")
        if not isinstance(rows, list):
            raise fail(f"{where}.rows must be a list of rows")
        for k, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(cols):
                got = len(row) if isinstance(row, list) else type(row).__name__
                raise fail(f"{where}.rows[{k}] must be a list of {len(cols)} cells (one per column), got {got}")
            bad = next((v for v in row if not _is_cell(v)), None)
            if bad is not None:
                raise fail(f"{where}.rows[{k}]: a cell is a number, string, boolean or null, got {bad!r}")
        if not isinstance(t.get("notes", ""), str) or not isinstance(t.get("machine", {}), dict):
            raise fail(f"{where}: 'notes' must be a string and 'machine' an object")
        tables.append(Table(t["caption"], cols, rows, t.get("notes", ""), t.get("machine", {})))
    figures = content.get("figures", [])
    if not isinstance(figures, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                                for f in figures):
        raise fail("'figures' must be a list of {'path': str, 'caption': str}")
    return Results(name=path.stem, title=content["title"], tables=tables, description=content.get("description", ""),
                   command=content.get("command", ""), date=date, machine=machine, figures=figures,
                   data=content.get("data"), provenance=content.get("provenance", ""),
                   superseded_by=content.get("superseded_by", ""), path=path)


def read_results(path: str | os.PathLike[str]) -> Results:
    """Read and check one results file; a file that is not JSON or breaks the format raises
    :class:`ResultsError` naming the file."""
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise ResultsError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return parse_results(content, path)


def results_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The results files of a folder: every ``*.json`` directly in it (sub-folders hold logs and raw outputs)."""
    return sorted(Path(directory).glob("*.json"))
