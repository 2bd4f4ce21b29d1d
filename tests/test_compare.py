"""convzoo.compare: the harness runs at tiny sizes, MACs and ratios come from the cost model, numbers are sane.
No time is asserted (timings are checked only for being positive and finite)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.perf.compare import CompareRow, compare, compare_table

TINY = dict(batch=1, in_channels=4, out_channels=8, size=7, repeats=1)


@pytest.fixture(scope="module")
def rows() -> list[CompareRow]:
    return compare(**TINY)


def test_every_family_has_a_sane_row(rows):
    assert [r.family for r in rows] == [f.name for f in cz.families()]
    for r in rows:
        for value in (r.forward_ms, r.forward_backward_ms, r.speed_ratio, r.gmacs_per_s, r.intensity):
            assert math.isfinite(value) and value > 0, r
        assert r.params > 0 and r.macs > 0 and r.bytes > 0
        assert r.max_error < 1e-5, r


def test_macs_and_ratios_match_the_cost_model(rows):
    by = {r.family: r for r in rows}
    std = by["standard"]
    n, c, o, s, k = 1, 4, 8, 7, 3
    assert std.macs == n * s * s * o * c * k * k and std.mac_ratio == 1.0
    # depthwise separable: (k² + C_out) / (k²·C_out) of the standard conv (MobileNet's ratio)
    assert by["depthwise_separable"].mac_ratio == pytest.approx((k * k + o) / (k * k * o))
    assert by["grouped"].mac_ratio == pytest.approx(1 / 4)
    for r in rows:
        assert r.mac_ratio == pytest.approx(r.macs / std.macs)
        # speed_ratio is the median of per-round ratios (timed round-robin with 'standard'): no identity to check
        assert r.rounds == 1 and isinstance(r.trusted, bool)
        assert r.gmacs_per_s == pytest.approx(r.macs / (r.forward_ms * 1e-3) / 1e9)
        assert r.intensity == pytest.approx(2 * r.macs / r.bytes)
        assert set(r.to_dict()) == {"family", "params", "macs", "mac_ratio", "forward_ms", "forward_backward_ms",
                                    "speed_ratio", "gmacs_per_s", "bytes", "intensity", "max_error", "forward_spread",
                                    "forward_backward_spread", "rounds", "trusted", "forward_ms_raw", "noise_floor",
                                    "forward_backward_ms_raw", "in_channels", "out_channels", "shape_rule",
                                    "compiled_difference"}


def test_table_marks_families_that_are_not_kxk(rows):
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(compare_table(rows))
    text = console.export_text()
    assert "transposed *" in text and "global_depthwise *" in text and "standard *" not in text


def test_unknown_family_is_refused():
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        compare(families=["nope"], **TINY)


def test_cli_compare_json_and_csv(tmp_path):
    csv_path = tmp_path / "c.csv"
    result = CliRunner().invoke(app, ["compare", "--batch", "1", "--in", "4", "--out", "8", "--size", "6",
                                      "--repeats", "1", "--json", "--csv", str(csv_path), "depthwise_separable"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)["rows"]
    assert [d["family"] for d in data] == ["depthwise_separable"] and data[0]["forward_ms"] > 0
    assert csv_path.read_text().startswith("family,params,macs,mac_ratio")
    bad = CliRunner().invoke(app, ["compare", "--dtype", "float8", "standard"])
    assert bad.exit_code == 2 and "--dtype" in bad.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compare_on_cuda():
    rows = compare(device="cuda", families=["standard", "hetconv", "dynamic"], **TINY)
    assert all(r.forward_ms > 0 and r.max_error < 1e-4 for r in rows)


def test_one_round_shows_no_spread_rather_than_nan(rows):
    """repeats=1: one round has no interquartile range; the table says — (and the caption why), never nan%."""
    from rich.console import Console

    assert all(math.isnan(r.forward_spread) for r in rows)
    console = Console(width=400, record=True)
    console.print(compare_table(rows))
    text = console.export_text()
    assert "nan" not in text and "— / —" in text and "one round: spread —" in text


def test_tiny_layers_do_not_show_zero_macs_or_bytes(rows):
    from rich.console import Console

    console = Console(width=400, record=True)
    console.print(compare_table(rows))
    standard = next(line for line in console.export_text().splitlines() if "│ standard " in line)
    assert "0.014" in standard  # 7·7·8·4·9 = 14,112 MACs in millions
    assert " 0.0 " not in standard, standard


def test_spread_and_load_helpers():
    from convzoo.perf.compare import _spread, machine_load

    assert _spread([1.0, 1.0, 1.0, 1.0]) == 0.0
    assert _spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(2 / 3)
    assert math.isnan(_spread([1.0]))
    load, cpus, busy = machine_load()
    assert cpus >= 1 and isinstance(busy, bool)


def test_table_header_shows_the_load(rows):
    from rich.console import Console

    console = Console(width=250, record=True)
    console.print(compare_table(rows))
    assert "load average" in console.export_text()


def test_rounds_are_settled_only_when_spread_is_small_and_forward_backward_is_not_below_forward():
    from convzoo.perf.compare import Rounds, _settled

    base_f, base_fb = [10.0] * 5, [30.0] * 5
    assert _settled(Rounds(base_f, [10, 10.5, 11, 10.2, 10.1], base_fb, [30, 31, 29, 30, 30.5]))
    # fwd+bwd below fwd: load, not truth
    assert not _settled(Rounds(base_f, [10, 10.5, 11, 10.2, 10.1], base_fb, [9, 9.5, 9.2, 9.1, 9.3]))
    # forward ratios spread far over 25%
    assert not _settled(Rounds(base_f, [10, 30, 11, 25, 10.1], base_fb, [40, 41, 39, 40, 40.5]))
    # load that moves the family and its baseline together leaves the ratios, and so the rounds, settled
    loaded = [10, 30, 11, 25, 10.1]
    assert _settled(Rounds(loaded, [2 * t for t in loaded], [3 * t for t in loaded], [6 * t for t in loaded]))


def test_times_are_fastest_rounds_relative_to_the_baseline_scaled_by_its_fastest_of_the_whole_run():
    """Two families timed under different loads (the second in rounds twice as slow, baseline included, with
    preempted rounds) come out at their true ratio to each other, and a row's raw medians are kept."""
    from convzoo.perf.compare import Rounds, _row

    module = cz.Conv2d(2, 2, 1)
    report = cz.cost(module, (1, 2, 4, 4))
    quiet = Rounds([1.0, 1.1, 0.9], [1.0, 1.1, 0.9], [3.0, 3.3, 2.7], [3.0, 3.3, 2.7])
    # busy: undisturbed rounds 1.8 (baseline) / 2.16 (family, 1.2×), the others preempted
    busy = Rounds([1.8, 4.0, 4.4], [5.0, 2.16, 4.8], [5.4, 12.0, 13.0], [14.0, 6.48, 15.0])
    rows = [_row(n, module, torch.zeros(1, 2, 4, 4), r, 0.9, 2.7, report, report.macs)
            for n, r in (("a", quiet), ("b", busy))]
    assert rows[0].forward_ms == pytest.approx(0.9) and rows[1].forward_ms == pytest.approx(1.08)
    assert rows[1].forward_backward_ms == pytest.approx(3.24) and rows[1].forward_ms_raw == pytest.approx(4.8)
    assert rows[1].speed_ratio == pytest.approx(1 / 1.2)


def test_busy_warning_discounts_this_runs_own_threads(monkeypatch):
    """A quiet machine whose load average rose only by this run's own threads is not called busy; load from other
    work, before or during the run, is."""
    import convzoo.perf.compare as C

    threads = torch.get_num_threads()
    monkeypatch.setattr(C, "machine_load", lambda: (threads + 0.2, 2, True))
    text, busy = C.other_load(0.1)
    assert not busy and "0.10 before timing" in text and f"this run's {threads} thread(s)" in text
    assert C.other_load(1.9)[1]  # busy before the run started
    monkeypatch.setattr(C, "machine_load", lambda: (threads + 1.8, 2, True))
    assert C.other_load(0.1)[1]  # another process joined during the run
