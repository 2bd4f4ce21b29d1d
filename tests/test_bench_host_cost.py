"""benchmarks/bench_host_cost.py on a few families with few calls: the results file it writes reads back in the
results format, its tables hold the measured rows (over = layer − native), and ``--compare`` reads it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from convzoo.perf.results import read_results
from convzoo.perf.results_page import render_page

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "bench_host_cost.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_host_cost", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_host_cost"] = module
    spec.loader.exec_module(module)
    return module


def test_bench_host_cost_writes_the_results_format(bench, tmp_path, capsys, monkeypatch):
    out = tmp_path / "host_cost.json"
    monkeypatch.setattr(bench.gc, "collect", lambda: 0)  # a full collection of the test process' heap per timing
    assert bench.main(["--families", "depthwise_separable", "--rounds", "1", "--calls", "3", "--out", str(out)]) == 0
    run = read_results(out)
    rows = run.data["rows"]
    assert {(r["family"], r["dim"], r["grad"]) for r in rows} == {
        ("depthwise_separable", d, g) for d in (1, 2, 3) for g in (False, True)}
    no_grad, grad = run.tables
    assert len(no_grad.rows) == len(grad.rows) == 3
    for table, wanted in ((no_grad, False), (grad, True)):
        for cells in table.rows:
            row = next(r for r in rows if (r["family"], r["dim"], r["grad"]) == (cells[0], cells[1], wanted))
            assert cells[2:5] == [row["layer_us"], row["native_us"], row["over_us"]]
            assert cells[4] == pytest.approx(cells[2] - cells[3])
    assert all(c[-1].startswith(("over ok", "over FAIL")) for c in no_grad.rows if c[1] != 2)
    assert "total" in next(c[-1] for c in no_grad.rows if c[:2] == ["depthwise_separable", 2])
    assert run.data["reference_us"]["F.conv2d"] > 0 and f"{run.data['reference_us']['F.conv2d']:.1f}" in no_grad.notes
    page = render_page(run)
    assert "| depthwise_separable | 2 |" in page and "torch " in page
    capsys.readouterr()
    bench.main(["--compare", str(out), str(out)])
    assert "| depthwise_separable | 2 | " in capsys.readouterr().out


def test_a_partial_run_is_not_saved_unless_asked(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(bench.gc, "collect", lambda: 0)
    assert bench.main(["--families", "pointwise", "--rounds", "1", "--calls", "2"]) == 0
    assert not any(tmp_path.iterdir()) and "not saved" in capsys.readouterr().out
