"""The results format (``convzoo.perf.results``) and its one renderer (``results_page``, the docs' Performance
pages): a file → a page whose every table names its machine; a file without a machine → 'machine not recorded';
a bad file → an error naming the file; a reading that quotes a number no table shows → a failed strict build.
Also the committed ``benchmarks/results/`` files themselves, and the Architecture page's import graph."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_docs_hook
import torch

from convzoo.perf.results import (FORMAT, ResultsError, Table, default_command, machine_info, machine_tag,
                                  parse_results, read_results, results_files, write_machine_results, write_results)
from convzoo.perf.results_page import format_cell, machine_label, machine_line, render_page, unquoted_numbers

ROOT = Path(__file__).resolve().parents[1]
MACHINE = {"cpu": "Test CPU 9000", "cpu_flags": "avx2 fma", "cpu_capability": "AVX2", "cores": 4, "threads": 2,
           "torch": "9.9.9"}
TABLE = Table("Two forms", ["form", ("fwd ms", ".2f"), ("ratio", "{:.2f}×"), "runs", "note"],
              [["kernel", 1.23456, 0.5, 10, "fast | narrow"], ["native", 2.5, math.nan, 1200, None]],
              "Fastest rounds.")


@pytest.fixture(scope="module")
def hook():
    return load_docs_hook("project_pages")


def test_a_results_file_renders_with_its_machine_in_every_table_header(tmp_path):
    second = Table("One thread", ["form", "ms"], [["kernel", 3.0]], machine={"threads": 1})
    path = write_results(tmp_path / "run.json", "A run", [TABLE, second], description="What it measures.",
                         machine=MACHINE, date="2026-01-02", command="python benchmarks/x.py")
    content = json.loads(path.read_text())
    assert content["format"] == FORMAT and content["tables"][0]["rows"][1][2] is None  # NaN → null (valid JSON)
    page = render_page(read_results(path))
    header = "Test CPU 9000 (AVX2), 4 cores · 2 threads · torch 9.9.9 · date 2026-01-02"
    assert page.startswith("# A run\n") and "What it measures." in page and "`python benchmarks/x.py`" in page
    assert page.count(f"*{header}*") == 1  # the first table's header line
    assert "*Test CPU 9000 (AVX2), 4 cores · 1 thread · torch 9.9.9 · date 2026-01-02*" in page  # its override
    assert "| kernel | 1.23 | 0.50× | 10 | fast \\| narrow |" in page  # column formats, pipes escaped
    assert "| native | 2.50 | — | 1,200 | — |" in page  # NaN and None as a dash, ints with separators
    assert "|---|---:|---:|---:|---|" in page  # numeric columns right-aligned
    assert "Fastest rounds." in page and "SIMD flags: avx2 fma" in page


def test_a_file_without_a_machine_says_not_recorded(tmp_path):
    path = write_results(tmp_path / "old.json", "An old run", [TABLE], machine=None, date=None, command="")
    run = read_results(path)
    assert run.machine is None and run.date is None
    page = render_page(run)
    assert page.count("*machine not recorded · date not recorded*") == 1
    assert "**Ran on:** machine not recorded" in page
    partial = machine_line({"threads": 1}, None)
    assert partial == "CPU model not recorded · 1 thread · torch version not recorded · date not recorded"
    assert machine_line({"gpu": "GPU X", "cuda": "12.0", "torch": "2.x"}, "2026-01-01").startswith("GPU X, CUDA 12.0")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"title": "t", "tables": []}', "'format' must be 'convzoo-results/1'"),
    ({"title": "", "tables": [{"caption": "c", "columns": ["a"], "rows": []}]}, "'title' is missing"),
    ({"title": "t", "tables": [{"caption": "c", "columns": ["a", "b"], "rows": [[1, 2], [3]]}]},
     "tables[0].rows[1] must be a list of 2 cells (one per column), got 1"),
    ({"title": "t", "tables": [{"caption": "c", "columns": ["a"], "rows": [[{"x": 1}]]}]},
     "tables[0].rows[0]: a cell is a number, string, boolean or null"),
    ({"title": "t", "date": "5 Dec", "tables": [{"caption": "c", "columns": ["a"], "rows": []}]},
     "'date' must be an ISO date"),
    ({"title": "t", "machine": "AMD", "tables": [{"caption": "c", "columns": ["a"], "rows": []}]},
     "'machine' must be an object or null"),
])
def test_a_bad_file_raises_an_error_naming_the_file_and_the_rule(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if isinstance(content, dict):
        content = json.dumps({"format": FORMAT, **content})
    path.write_text(content)
    with pytest.raises(ResultsError) as caught:
        read_results(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_write_results_refuses_a_bad_table_before_touching_the_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text("the previous run\n")
    with pytest.raises(ResultsError, match=r"tables\[0\]\.rows\[0\] must be a list of 2 cells"):
        write_results(path, "t", [Table("c", ["a", "b"], [[1]])], machine=MACHINE)
    assert path.read_text() == "the previous run\n" and sorted(os.listdir(tmp_path)) == ["run.json"]


def test_machine_label_names_the_device_in_a_few_words():
    assert machine_label({"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512"}) == "Intel Xeon AVX512"
    assert machine_label({"cpu": "AMD EPYC 7B13", "cpu_capability": "AVX2"}) == "AMD EPYC 7B13 AVX2"
    assert machine_label({"gpu": "NVIDIA H200", "cpu": "AMD EPYC"}) == "NVIDIA H200"
    assert machine_label({"cpu": "Processor"}) == "CPU" and machine_label(None) == "machine not recorded"


def test_the_recorded_command_has_no_path_of_this_machine(tmp_path, monkeypatch):
    """A results file records how to rerun it: the script from the repository root, an absolute --out or input
    path shortened (below the working directory: relative to it; elsewhere: its last component)."""
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path.parent / "notes" / "int8"
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "benchmarks" / "b.py"), "--out", str(elsewhere), "--runs", "3"])
    assert default_command() == "python benchmarks/b.py --out int8 --runs 3"
    monkeypatch.setattr(sys, "argv", ["benchmarks/b.py", "--out", str(tmp_path / "results" / "x.json")])
    assert default_command() == "python benchmarks/b.py --out results/x.json"
    monkeypatch.setattr(sys, "argv", [str(elsewhere / "convzoo"), "compare", "--in", "64"])
    assert default_command() == "convzoo compare --in 64"
    for path in results_files(ROOT / "benchmarks" / "results"):  # every committed run: no absolute path in it
        command = read_results(path).command
        assert not any(word.startswith(("/", "~")) for word in command.split()), (path.name, command)


def test_machine_info_names_this_machine():
    info = machine_info(gemm_peak_gmacs=1.5)
    assert info["torch"] == torch.__version__ and info["threads"] == torch.get_num_threads()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and info["cpu"]
    assert info["gemm_peak_gmacs"] == 1.5 and "gpu" not in info
    assert machine_tag({"cpu": "AMD EPYC 7B13", "cpu_capability": "AVX512"}) == "amd-epyc-7b13-avx512"
    assert machine_tag({"gpu": "NVIDIA H200", "cpu": "x"}) == "nvidia-h200"


def test_write_machine_results_names_the_file_by_this_cpu(tmp_path):
    table = Table("t", ["case", ("ms", ".3f")], [["a", 1.25]])
    path = write_machine_results(tmp_path, "models", "A run", [table], description="what it measures")
    assert path == tmp_path / f"models-{machine_tag(machine_info())}.json"
    run = read_results(path)
    assert (run.title, run.description, run.tables[0].rows) == ("A run", "what it measures", [["a", 1.25]])
    assert run.machine["cpu"] == machine_info()["cpu"]


def test_cells_and_readings():
    assert format_cell(0.5, "{:.0%}") == "50%" and format_cell(1849688064) == "1,849,688,064"
    assert format_cell(0.0001234) == "0.0001234" and format_cell(123456.7) == "123,457"
    assert format_cell(True) == "yes" and format_cell(float("inf")) == "—"
    page = "| a | 1.048 | torch 2.14.1 |"
    reading = "The worst row is 1.048, the old one 1.05 (`--rounds 2.5` is code); torch 2.14.1 is a version."
    assert unquoted_numbers(reading, page) == ["1.05"]


def test_the_committed_results_all_read_and_render():
    """Every file in benchmarks/results/ is a valid results file with a title, tables and a machine line in each
    table's header (a converted file without a machine says so), and its figures exist; no text outside code reads
    as a Markdown reference ('[--threads N]' from a usage line: mkdocs-autorefs fails the strict build on it)."""
    import re

    paths = results_files(ROOT / "benchmarks" / "results")
    assert len(paths) >= 10
    names = {p.stem for p in paths}
    for path in paths:
        run = read_results(path)
        page = render_page(run)
        assert page.count("\n*") >= len(run.tables), path.name
        assert ("torch " in page or "torch version not recorded" in page or "machine not recorded" in page), path
        for figure in run.figures:
            assert (path.parent / figure["path"]).is_file(), (path.name, figure)
        assert not run.superseded_by or run.superseded_by in names
        prose = re.sub(r"`[^`]*`", "", re.sub(r"(?m)^(    |\t).*$", "", run.description.strip()))
        assert not re.search(r"\[[^\]]*\](?!\()", prose), (path.name, re.findall(r"\[[^\]]*\](?!\()", prose))


def test_hook_renders_pages_and_warns_naming_bad_files_and_unquoted_numbers(hook, tmp_path, caplog):
    write_results(tmp_path / "good.json", "Good", [TABLE], machine=MACHINE, date="2026-01-02", command="x",
                  figures=[("good.png", "a figure"), ("missing.png", "gone")])
    (tmp_path / "good.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "good.md").write_text("The kernel takes 1.23 ms, the native form 2.50 ms, once 7.77 ms.")
    (tmp_path / "bad.json").write_text('{"format": "convzoo-results/1", "title": "x"}')
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        pages, files, runs = hook.performance_pages(tmp_path)
    assert set(pages) == {"performance/good.md"} and [r.name for r in runs] == ["good"]
    assert files == {"performance/good/good.png": b"\x89PNG fake"}
    assert "![a figure](good/good.png)" in pages["performance/good.md"]
    assert "## Reading the results" in pages["performance/good.md"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("bad.json: 'tables' must be a list" in m for m in messages)
    assert any("good.md quotes 7.77" in m for m in messages) and not any("quotes 1.23" in m for m in messages)
    assert any("figure missing.png does not exist" in m for m in messages)
    assert all(r.name.startswith("mkdocs.") and r.levelno == logging.WARNING for r in caplog.records)


def test_architecture_page_reads_the_imports(hook, tmp_path):
    """A two-package toy: `a` imports `b` at the top, `b` imports `a` inside a function — a cycle, one direction
    against the order; and the real package's page lists its packages."""
    pkg = tmp_path / "convzoo"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from ..b import thing\nfrom ..b import other\n")
    (pkg / "b.py").write_text("def thing():\n    from .a import x\n\nother = 1\n")
    graph_module = hook._import_graph()
    graph = graph_module.package_graph(tmp_path)
    assert {edge: [i.kind for i in imports] for edge, imports in graph.items()} == {
        ("a", "b"): ["top", "top"], ("b", "a"): ["lazy"]}
    assert graph_module.cycles(set(graph)) == [["a", "b"]]
    assert graph_module.layer_order(graph) == ["b", "a"]  # the one lazy import is the one that points up
    assert graph_module.against(["b", "a"], graph) == [("b", "a")]
    page = hook.architecture_page(tmp_path)
    assert "`b` → `a`: `convzoo.b` line 2 (lazy)" in page and 'class="cz-up"' in page
    real = hook.architecture_page()
    assert "<th>layers</th>" in real and "## Imports that point up the order" in real


SHIM = '''
import importlib.util
from pathlib import Path
spec = importlib.util.spec_from_file_location("project_pages_hook", {hook!r})
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)
hook.RESULTS = Path({results!r})
on_config, on_files, on_page_markdown = hook.on_config, hook.on_files, hook.on_page_markdown
'''


@pytest.mark.parametrize("bad", [False, True])
def test_strict_build_of_the_performance_pages(tmp_path, bad):
    """End to end through ``mkdocs build --strict``: the Performance section, Design and Architecture pages from a
    folder of results files; one bad file fails the build and the log names it."""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    results = tmp_path / "results"
    results.mkdir()
    write_results(results / "good.json", "Good", [TABLE], machine=MACHINE, date="2026-01-02", command="x")
    if bad:
        (results / "broken.json").write_text('{"format": "convzoo-results/1", "title": "x", "tables": [{}]}')
    (tmp_path / "docs" / "performance").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text("# site\n")
    shutil.copy(ROOT / "docs" / "performance" / "index.md", tmp_path / "docs" / "performance" / "index.md")
    (tmp_path / "shim.py").write_text(SHIM.format(hook=str(ROOT / "docs" / "_hooks" / "project_pages.py"),
                                                  results=str(results)))
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nstrict: true\nhooks: [shim.py]\nmarkdown_extensions: [admonition, pymdownx.details, "
        "md_in_html, tables]\nnav:\n  - Home: index.md\n  - Performance: performance/index.md\n"
        "  - Design: design.md\n  - Architecture: architecture.md\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), NO_MKDOCS_2_WARNING="1")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    if bad:
        assert run.returncode != 0 and "broken.json: tables[0] must be an object with a string 'caption'" in run.stderr
    else:
        assert run.returncode == 0, run.stderr
        page = (tmp_path / "site" / "performance" / "good" / "index.html").read_text()
        assert "Test CPU 9000 (AVX2)" in page and "torch 9.9.9" in page
        index = (tmp_path / "site" / "performance" / "index.html").read_text()
        assert 'href="good/"' in index and "convzoo:results" not in index
        assert "design (as built)" in (tmp_path / "site" / "design" / "index.html").read_text()


def test_parse_results_checks_what_write_results_writes(tmp_path):
    content = {"format": FORMAT, "title": "t", "machine": None, "date": None,
               "tables": [{"caption": "c", "columns": [{"name": "a", "format": ".1f"}], "rows": [[1.25]]}]}
    run = parse_results(content, tmp_path / "x.json")
    assert run.name == "x" and run.tables[0].formats == [".1f"] and run.tables[0].names == ["a"]


def test_no_committed_page_text_is_swallowed_as_an_html_tag():
    """Markdown passes ``<cpu>`` through as an HTML tag, which the browser hides ("compiled-.json"): placeholders
    in a results file's description, captions and notes must sit in code spans."""
    for path in results_files(ROOT / "benchmarks" / "results"):
        run = read_results(path)
        for text in [run.description, run.title] + [f"{t.caption} {t.notes}" for t in run.tables]:
            bare = re.sub(r"``[^`]*``|`[^`]*`", "", text)
            assert not re.search(r"<[A-Za-z][^>]*>", bare), (path.name, re.findall(r"\S*<[A-Za-z][^>]*>\S*", bare))
