"""convzoo sweep, from a practitioner's review: a family named twice, statistics without spread (no interval, no
test), latency timed once per family as the fastest of interleaved rounds."""

from __future__ import annotations

import math
import time

import pytest
from torch import nn

from convzoo.train import loop, sweep
from convzoo.train.loop import TrainConfig

from test_train_review import TINY, _cli, _one_line_error, _quiet  # the review's shared helpers


# --- a family named twice -----------------------------------------------------------------------------------------


def test_sweep_refuses_a_family_named_twice(tmp_path):
    with pytest.raises(ValueError, match="names depthwise more than once"):
        sweep.sweep(TrainConfig(**TINY), ["depthwise", "standard", "depthwise"], str(tmp_path / "s"), log=_quiet,
                    seeds=2)
    code, output = _cli(["sweep", "--conv", "depthwise,depthwise", "--seeds", "2", "--epochs", "1",
                         "--max-train-samples", "16", "--no-progress", "--out", str(tmp_path / "c")])
    assert _one_line_error(code, output) and "depthwise" in output, output
    assert not (tmp_path / "s").exists() and not (tmp_path / "c").exists()


# --- no spread: no interval, no test ------------------------------------------------------------------------------


def test_no_spread_gives_no_test_and_no_interval():
    assert sweep.welch_p([0.9972] * 3, [1.0] * 3) is None
    assert sweep.welch_p([0.9, 0.9], [0.8, 0.8]) is None
    assert sweep.interval95([-0.007, -0.007], "none") is None and sweep.interval95([1.0, 1.0]) is None
    # one sample with spread: Welch is defined (t = Δ / (s_b/√n_b), n_b − 1 degrees of freedom)
    from scipy import stats

    b = [0.8, 0.82, 0.84]
    t = (0.9 - 0.82) / (0.02 / math.sqrt(3))
    assert sweep.welch_p([0.9] * 3, b) == pytest.approx(2 * stats.t.sf(t, 2), rel=1e-9)

    def trials(name, accuracies):
        return [{"family": name, "seed": s, "params": 1, "macs": 1, "latency_ms": 1.0, "best_accuracy": a,
                 "final_accuracy": a} for s, a in enumerate(accuracies)]

    rows = sweep.summarize(trials("standard", [1.0, 1.0, 1.0]) + trials("dws", [0.9972] * 3), ["standard", "dws"])
    assert rows[1]["p_value"] is None and rows[1]["significant"] is None and rows[1]["accuracy_ci95"] is None
    from convzoo.cli.train import _mean_interval

    assert _mean_interval(0.9972, None, 100, 1, seeds=3) == "99.7 (every seed)"
    assert _mean_interval(0.9972, None, 100, 1, seeds=1) == "99.7"


def test_int8_table_marks_a_difference_without_spread():
    from rich.console import Console

    from convzoo.train.int8_eval import int8_table

    row = {"family": "standard", "fp32_accuracy": 0.99, "int8_accuracy": 0.983, "int8_accuracies": [0.983, 0.983],
           "int8_accuracy_ci95": None, "int8_delta": -0.007, "int8_delta_ci95": sweep.interval95([-0.007] * 2, "none"),
           "int8_mac_fraction": 1.0, "float_layers": []}
    console = Console(width=200, record=True)
    console.print(int8_table([row]))
    text = console.export_text()
    assert "-0.7 (every seed)" in text and "[-0.7, -0.7]" not in text, text


# --- latency: once per family, fastest of interleaved rounds ------------------------------------------------------


class _Sleeper(nn.Module):
    """Forward sleeps ``fast`` ms on every third call, ``slow`` ms otherwise: median ≈ slow, fastest ≈ fast."""

    def __init__(self, fast: float, slow: float) -> None:
        super().__init__()
        self.fast, self.slow, self.calls = fast, slow, 0

    def forward(self, x):
        self.calls += 1
        time.sleep((self.fast if self.calls % 3 == 0 else self.slow) / 1e3)
        return x


def test_latency_is_the_fastest_of_interleaved_rounds():
    models = [_Sleeper(2.0, 8.0), _Sleeper(4.0, 8.0)]
    fastest = sweep.latencies_ms(models, [(1, 3, 4, 4)] * 2, "cpu", runs=6)
    assert 2.0 <= fastest[0] < 4.0 and 4.0 <= fastest[1] < 6.0, fastest  # the medians are ≈ 8 ms


def test_latency_is_timed_once_per_family(monkeypatch):
    config = TrainConfig(conv="standard", width_mult=0.25, device="cpu", progress=False)
    trained = loop.build_model(config, 10, (3, 32, 32)).state_dict()
    seen = []

    def fake(models, shapes, device):
        seen.append(len(models))
        return [1.5 + i for i in range(len(models))]

    monkeypatch.setattr(sweep, "latencies_ms", fake)
    trials, results = [], []
    for name in ("standard", "depthwise_separable"):
        for seed in (0, 1, 2):
            c = TrainConfig(conv=name, seed=seed, width_mult=0.25, device="cpu", progress=False)
            trials.append(sweep.Trial(c, 1))
            state = trained if name == "standard" else loop.build_model(c, 10, (3, 32, 32)).state_dict()
            results.append({"family": name, "seed": seed, "num_classes": 10, "input_shape": [3, 32, 32],
                            "state_dict": state, "params": 1, "macs": 1, "best_accuracy": 0.5 + seed / 10,
                            "final_accuracy": 0.5})
    sweep._measure_latencies(results, trials, "cpu")
    assert seen == [2] and all("state_dict" not in r for r in results)
    assert [r["latency_ms"] for r in results] == [1.5] * 3 + [2.5] * 3
    rows = sweep.summarize(results, ["standard", "depthwise_separable"])
    assert [row["latency_ms"] for row in rows] == [1.5, 2.5]
    assert all("latency_ci95" not in row and "fastest of" in row["latency_method"] for row in rows)
