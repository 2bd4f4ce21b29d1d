"""Tables in a real terminal (80 and 120 columns): a number is never cut with "…". Each command runs with the console
the CLI makes at a terminal (forced by TTY_COMPATIBLE, its width by COLUMNS), every number its tables print is read
back and checked against the same run's JSON, CSV or results file. Tiny shapes, one round; no time is asserted."""

from __future__ import annotations

import csv
import json
import math
import re
import sys

import pytest
from typer.testing import CliRunner

from convzoo.cli import app

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NUMERIC = re.compile(r"[-+]?[\d,]*\.?\d+(e[-+]?\d+)?%?|—")
WIDTHS = (80, 120)


@pytest.fixture(autouse=True)
def _colorama_keeps_no_closed_stream():
    """numba's first error message inside a command calls colorama.init(), which keeps the sys.stdout of that moment
    to reset at exit: under a terminal console that is rich's proxy of CliRunner's stream, closed by then (a harmless
    but noisy 'I/O operation on closed file' at exit). Pointed back at the real stdout after each test."""
    yield
    try:
        import colorama.initialise as colorama_state
    except ImportError:
        return
    if colorama_state.orig_stdout is not None and colorama_state.orig_stdout is not sys.__stdout__:
        colorama_state.orig_stdout = sys.__stdout__


def terminal(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """The CLI's console as a terminal of ``width`` columns gets it, put where every command group prints."""
    import convzoo.cli.analysis
    import convzoo.cli.common
    import convzoo.cli.families
    import convzoo.cli.perf

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", str(width))
    with monkeypatch.context() as patch:  # made as at a terminal (only then: numba colours its messages at a tty)
        patch.setattr(sys.stdout, "isatty", lambda: True)
        console = convzoo.cli.common._console()
    assert console.width == width
    for module in (convzoo.cli.common, convzoo.cli.perf, convzoo.cli.analysis, convzoo.cli.families):
        monkeypatch.setattr(module, "console", console)


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return ANSI.sub("", result.stdout)


def tables(text: str) -> list[dict[str, list[list[str]]]]:
    """The box tables in printed text: per table, its column headers (joined over wrapped header lines) and its rows
    (a row's folded text cells joined; a new row starts on a line that has a cell in a numeric position)."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("┏"):
            i += 1
            continue
        i += 1
        headers: list[str] = []
        while lines[i].startswith("┃"):
            cells = [c.strip() for c in lines[i].split("┃")[1:-1]]
            headers = [f"{h} {c}".strip() for h, c in zip(headers, cells)] if headers else cells
            i += 1
        i += 1  # the rule under the header
        body: list[list[str]] = []
        numeric: list[bool] = []
        while lines[i].startswith("│"):
            cells = [c.strip() for c in lines[i].split("│")[1:-1]]
            assert len(cells) == len(headers), lines[i]
            if not body:
                numeric = [bool(NUMERIC.fullmatch(c)) for c in cells]
            if not body or any(c for c, n in zip(cells, numeric) if n):
                body.append(cells)
            else:  # a folded text cell goes on
                body[-1] = [prev + cell for prev, cell in zip(body[-1], cells)]
            i += 1
        out.append({"headers": headers, "rows": body})
        assert all(len(r) == len(headers) for r in body)
    return out


def number(cell: str) -> float:
    """A printed number: thousands commas, a % sign (a fraction), 'e' exponents."""
    text = cell.replace(",", "").strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100
    return float(text)


def same(cell: str, value: float) -> bool:
    """The printed ``cell`` is ``value`` to the digits shown (half a unit of its last digit)."""
    text = cell.replace(",", "").rstrip("%")
    mantissa = text.split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(text.split("e")[1]) if "e" in text else 0
    scale = 0.01 if cell.endswith("%") else 1
    return abs(number(cell) - value) <= 0.5 * 10 ** (exponent - decimals) * scale * (1 + 1e-9)


def columns(parts: list[dict[str, list[list[str]]]]) -> dict[str, dict[str, str]]:
    """{header: {first cell of the row (the name): cell}} over every stacked part of one table."""
    out: dict[str, dict[str, str]] = {}
    for part in parts:
        for j, header in enumerate(part["headers"][1:], 1):
            out.setdefault(header, {}).update({row[0]: row[j] for row in part["rows"]})
    return out


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_prints_every_number_whole(monkeypatch, tmp_path, width):
    terminal(monkeypatch, width)
    path = tmp_path / "c.csv"
    text = run("compare", "standard", "depthwise_separable", "grouped", "--size", "6", "--in", "4", "--out", "8",
               "--batch", "1", "--repeats", "1", "--csv", str(path))
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    with open(path, newline="") as handle:
        rows = {r["family"]: r for r in csv.DictReader(handle)}
    printed = columns(tables(text))
    fields = {"params": "params", "MACs (M)": "macs", "MAC ratio": "mac_ratio", "fwd ms": "forward_ms",
              "fwd+bwd ms": "forward_backward_ms", "speed ratio": "speed_ratio", "GMAC/s": "gmacs_per_s",
              "MB moved": "bytes", "FLOP/B": "intensity", "max error": "max_error"}
    assert set(fields) <= set(printed), printed.keys()
    for header, field in fields.items():
        scale = 1e6 if header in ("MACs (M)", "MB moved") else 1
        for name, cell in printed[header].items():
            family = name.rstrip(" !†*").strip()
            assert same(cell, float(rows[family][field]) / scale), (header, name, cell, rows[family][field])
        assert {n.rstrip(" !†*").strip() for n in printed[header]} == set(rows), header


@pytest.mark.parametrize("width", WIDTHS)
def test_cost_by_module_prints_every_number_whole(monkeypatch, width):
    terminal(monkeypatch, width)
    target = ["torchvision:resnet18", "--depth", "1"]
    text = run("cost", *target)
    data = json.loads(run("cost", *target, "--json"))
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    groups = {(g["name"] or "(model)"): g for g in data["groups"][1:]} | {"total": data["groups"][0]}
    printed = columns(tables(text))
    fields = {"rows": "rows", "params": "params", "MACs": "macs", "other ops": "other_ops", "bytes": "bytes",
              "FLOP/byte": "intensity"}
    for header, field in fields.items():
        assert set(printed[header]) == set(groups), header
        for name, cell in printed[header].items():
            assert same(cell, groups[name][field]), (header, name, cell, groups[name][field])
    assert printed["MACs"]["total"] == "1,814,073,344"  # torchvision's resnet18: 1.814 G MACs at 224²


@pytest.mark.parametrize("width", WIDTHS)
def test_bench_prints_every_number_whole(monkeypatch, tmp_path, width):
    terminal(monkeypatch, width)
    out = tmp_path / "b.json"
    text = run("bench", "standard", "depthwise_separable", "--size", "6", "--in", "4", "--out", "8", "--batch", "1",
               "--no-backward", "-o", str(out), "--plot", "")
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    results = json.loads(out.read_text())
    printed = tables(text)
    checked = 0
    for saved in results["tables"][:2]:  # families, then roofline: printed from these very values
        names = [c["name"] for c in saved["columns"]]
        parts = [p for p in printed if p["headers"][0] == "family" and set(p["headers"]) <= set(names)
                 and len(p["rows"]) == len(saved["rows"])]
        numeric = {n for j, n in enumerate(names) if any(isinstance(r[j], float) for r in saved["rows"])}
        assert numeric <= {h for p in parts for h in p["headers"]}, (saved["caption"], parts)
        for part in parts:
            for j, header in enumerate(part["headers"][1:], 1):
                for cells, row in zip(part["rows"], saved["rows"]):
                    value = row[names.index(header)]
                    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                        assert same(cells[j], value), (saved["caption"], header, row[0], cells[j], value)
                        checked += 1
    assert checked >= 10
