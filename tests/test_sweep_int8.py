"""``convzoo sweep --int8``: int8 test accuracy of each trained model next to float32, with the sweep's intervals."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from convzoo.cli import app
from convzoo.train import int8_eval

MOBILE = "the 'mobile' extra is not installed (pip install 'convzoo[mobile]')"


def _need() -> None:
    for module in ("executorch", "torchao"):
        pytest.importorskip(module, reason=MOBILE)


def test_int8_accuracy_scores_every_test_sample_once() -> None:
    """A linear classifier whose classes are far apart: float32 and int8 both classify all 300 test samples right
    (300 = one full batch of 256 and a padded one of 44: padding must not be scored)."""
    _need()
    torch.manual_seed(0)
    centres = torch.eye(4, 16) * 6
    def samples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % 4
        return (centres[y] + 0.3 * torch.randn(n, 16)).unsqueeze(1), y
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    with torch.no_grad():
        model[1].weight.copy_(centres / 6)
        model[1].bias.zero_()
    train, test = TensorDataset(*samples(1024)), TensorDataset(*samples(300))
    result = int8_eval.int8_accuracy(model, train, test)
    assert result["fp32_accuracy"] == 1.0 and result["int8_accuracy"] == 1.0
    assert result["int8_mac_fraction"] == 1.0 and result["float_layers"] == []


def test_columns_average_seeds_and_pair_the_differences(tmp_path) -> None:
    rows = [{"family": "standard"}]
    results = [{"family": "standard", "seed": s, "fp32_accuracy": f, "int8_accuracy": i, "int8_mac_fraction": 1.0,
                "float_layers": []} for s, f, i in ((0, 0.90, 0.89), (1, 0.80, 0.80), (2, 0.70, 0.68))]
    int8_eval.add_columns(rows, results, str(tmp_path))
    row = rows[0]
    assert row["int8_accuracy"] == pytest.approx(0.79, abs=1e-4) and row["fp32_accuracy"] == pytest.approx(0.8)
    assert row["int8_delta"] == pytest.approx(-0.01, abs=1e-4) and row["int8_deltas"] == [-0.01, 0.0, -0.02]
    low, high = row["int8_delta_ci95"]  # t(0.975, 2) = 4.303, sd 0.01, n 3: ± 0.0248
    assert low == pytest.approx(-0.0348, abs=1e-4) and high == pytest.approx(0.0148, abs=1e-4)
    with open(tmp_path / "sweep_int8.csv") as handle:
        [line] = list(csv.DictReader(handle))
    assert line["seeds"] == "3" and float(line["int8_delta_ci95_low"]) == pytest.approx(low)


def test_sweep_int8_needs_the_extra_before_training(monkeypatch, tmp_path) -> None:
    from convzoo.train import extras

    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None)
    result = CliRunner().invoke(app, ["sweep", "--data", "digits", "--conv", "standard", "--epochs", "1", "--int8",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--int8 needs the package 'torchao'" in result.output and "convzoo[mobile]" in result.output
    assert not (tmp_path / "standard").exists()  # nothing trained


@pytest.mark.slow
def test_sweep_with_int8_reports_int8_accuracy_with_intervals(tmp_path) -> None:
    _need()
    pytest.importorskip("mnist1d", reason="the data extra is not installed")
    result = CliRunner().invoke(app, ["sweep", "--data", "mnist1d", "--conv", "standard,grouped", "--seeds", "2",
                                      "--epochs", "3", "--max-train-samples", "1024", "--max-test-samples", "300",
                                      "--int8", "--no-progress", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "sweep.json").read_text())
    with open(tmp_path / "sweep_trials.csv") as handle:
        trials = list(csv.DictReader(handle))
    for row in rows:
        assert len(row["int8_accuracies"]) == 2 and row["int8_accuracy_ci95"] is not None
        assert abs(row["int8_delta"]) <= 0.05 and row["int8_mac_fraction"] == 1.0
        final = [float(t["final_accuracy"]) for t in trials if t["family"] == row["family"]]
        assert row["fp32_accuracy"] == pytest.approx(sum(final) / len(final), abs=1e-4)  # the same weights
    assert "int8 on xnnpack" in result.output and (tmp_path / "sweep_int8.csv").exists()
