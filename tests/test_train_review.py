"""convzoo train, from a practitioner's review: reproducible runs (form choices pinned), validated options, empty
micro-batches, what --accum-steps reproduces, data paths, unreadable checkpoints, help texts, run.json. Tiny runs
throughout (a few dozen samples, 1–2 epochs); the sweep's share is in test_sweep_review.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from convzoo.cli import app
from convzoo.layers.form_choice import FormChoice, forget_choices
from convzoo.train import loop
from convzoo.train.checkpoint import CheckpointError
from convzoo.train.loop import StopTraining, TrainConfig, train

TINY = {"width_mult": 0.25, "conv": "standard", "max_train_samples": 32, "max_test_samples": 16, "batch_size": 16,
        "epochs": 1, "lr": 0.05, "progress": False, "device": "cpu"}
GUIDE = Path(__file__).parent.parent / "docs" / "guide" / "training.md"


def _quiet(_):
    return None


def _cli(args):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def _one_line_error(code, output):
    return code == 2 and output.startswith("error:") and output.strip().count("\n") == 0 and "Traceback" not in output


# --- reproducible: form choices pinned ----------------------------------------------------------------------------


def test_train_pins_form_choices_so_timing_cannot_change_the_weights(tmp_path, monkeypatch):
    """Timing noise is simulated: a timed choice picks a non-preferred form in the uninterrupted run and in the
    resumed half, the preferred one in the interrupted half (as three processes on a busy machine may). The old
    train timed its forms, so the three ran different exact forms, which round differently; now nothing is timed
    and the resumed run ends with bitwise the weights of the uninterrupted one."""
    timed, other = [], [True]

    def measure(self, key, forms, run, timed_fn, fallible):
        timed.append(self.family)
        names = list(forms)
        fallback = self.prefer if self.prefer in forms else names[0]
        self.cache[key] = next((n for n in names if n != fallback), fallback) if other[0] else fallback
        return self.cache[key]

    monkeypatch.setattr(FormChoice, "_measure", measure)
    config = {**TINY, "conv": "dynamic", "max_train_samples": 48, "epochs": 2, "seed": 3}
    full = train(TrainConfig(**config, out=str(tmp_path / "full")), log=_quiet)["model"].state_dict()
    other[0] = False
    forget_choices()  # each run is a new process: nothing chosen yet
    with pytest.raises(StopTraining):
        train(TrainConfig(**config, out=str(tmp_path / "res"), stop_after_steps=4), log=_quiet)
    other[0] = True
    forget_choices()
    resumed = train(TrainConfig(**config, out=str(tmp_path / "res"), resume=True), log=_quiet)["model"].state_dict()
    assert full.keys() == resumed.keys()
    assert [k for k in full if not torch.equal(full[k], resumed[k])] == []
    assert timed == [], f"forms were timed during training: {sorted(set(timed))}"
    # the same command twice: the same metrics, to the last bit
    again = train(TrainConfig(**config, out=str(tmp_path / "again")), log=_quiet)["model"].state_dict()
    assert all(torch.equal(full[k], again[k]) for k in full)
    first = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    second = [json.loads(line) for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    assert len(first) == 2
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in first] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in second]
    environment = json.loads((tmp_path / "full" / "run.json").read_text())["environment"]
    assert environment["threads"] == torch.get_num_threads() and environment["forms"].startswith("fixed")


def test_train_help_says_what_is_pinned():
    text = _help("train")
    assert "bitwise" in text and "preferredexactform" in text, text


# --- micro-batches: empty ones skipped, what --accum-steps reproduces ----------------------------------------------


def test_accum_steps_skips_empty_micro_batches(tmp_path, monkeypatch):
    """17 samples, batch 16, accum_steps 2: the last batch has 1 sample, so its second micro-batch is empty. Its
    loss (a mean over 0 samples) was NaN and made the epoch's train_loss NaN. Every training loss call is recorded:
    the logged loss must be their sample-weighted mean over exactly 17 samples."""
    calls: list[tuple[float, int]] = []

    class Recording(nn.CrossEntropyLoss):
        def forward(self, logits, target):
            loss = super().forward(logits, target)
            calls.append((loss.item(), len(target)))
            return loss

    monkeypatch.setattr(loop.nn, "CrossEntropyLoss", Recording)
    train(TrainConfig(**{**TINY, "max_train_samples": 17, "accum_steps": 2, "out": str(tmp_path)}), log=_quiet)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert [n for _, n in calls] == [8, 8, 1]  # the empty micro-batch never ran
    assert math.isfinite(record["train_loss"])
    assert record["train_loss"] == pytest.approx(sum(l * n for l, n in calls) / 17, rel=1e-12)
    assert record["train_accuracy"] * 17 == pytest.approx(round(record["train_accuracy"] * 17))  # k of 17


def test_accum_steps_updates_batchnorm_once_per_micro_batch(tmp_path):
    """What --accum-steps does not reproduce of torchrun (documented): one process updates BatchNorm's running
    statistics from every micro-batch, N times per step; DDP keeps rank 0's, updated once per step."""
    model = train(TrainConfig(**{**TINY, "accum_steps": 2, "out": str(tmp_path)}), log=_quiet)["model"]
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 2 * 2  # 32 samples / batch 16 = 2 steps, × 2 micro-batches
    guide = GUIDE.read_text()
    assert "num_batches_tracked" in guide and "pads" in guide


# --- option validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("option, value, expected", [
    ("--max-train-samples", "0", "max_train_samples=0 must be a positive integer"),
    ("--max-train-samples", "-5", "max_train_samples=-5 must be a positive integer"),
    ("--max-test-samples", "0", "max_test_samples=0 must be a positive integer"),
    ("--offset-lr-mult", "-1", "offset_lr_mult=-1.0 must be a number ≥ 0"),
    ("--temperature-epochs", "-3", "temperature_epochs=-3.0 must be a number ≥ 0"),
    ("--seed", "-1", "seed=-1 must be an integer in [0, 2**32 - 1]"),
    ("--seed", str(2 ** 32), f"seed={2 ** 32} must be an integer in [0, 2**32 - 1]"),
    ("--weight-decay", "-1", "weight_decay=-1.0 must be a number ≥ 0"),
    ("--stop-after-steps", "0", "stop_after_steps=0 must be a positive integer"),
])
def test_bad_options_are_one_line_naming_the_option(tmp_path, option, value, expected):
    for command in ("train", "sweep"):
        code, output = _cli([command, "--no-progress", "--epochs", "1", "--max-test-samples", "8",
                             "--out", str(tmp_path / command), option, value])  # the last --max-test-samples wins
        assert _one_line_error(code, output), (command, output)
        assert expected in output, (command, output)
        assert not (tmp_path / command).exists()


def test_zero_is_allowed_where_it_means_something():
    TrainConfig(offset_lr_mult=0.0, temperature_epochs=0.0, weight_decay=0.0, seed=0).validate()
    TrainConfig(seed=2 ** 32 - 1).validate()


# --- an unreadable checkpoint is kept -----------------------------------------------------------------------------


def test_a_fresh_run_refuses_to_overwrite_an_unreadable_checkpoint(tmp_path):
    train(TrainConfig(**{**TINY, "max_train_samples": 16, "out": str(tmp_path)}), log=_quiet)
    path = tmp_path / "checkpoint.pt"
    truncated = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(truncated)
    with pytest.raises(CheckpointError, match="delete or move it"):
        train(TrainConfig(**{**TINY, "max_train_samples": 16, "out": str(tmp_path)}), log=_quiet)
    code, output = _cli(["train", "--no-progress", "--epochs", "1", "--max-train-samples", "16",
                         "--max-test-samples", "8", "--out", str(tmp_path)])
    assert _one_line_error(code, output) and str(path) in output and "--out" in output, output
    assert path.read_bytes() == truncated


# --- help texts and run.json --------------------------------------------------------------------------------------


def _help(command):
    output = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "240"}).output  # rich cuts narrow cells
    return "".join(output.replace("│", " ").split())


def test_help_texts_match_the_code():
    text = _help("sweep")
    assert "OUT/FAMILY/seed-S/checkpoint.pt" in text and "min(10,max(1,epochs/2))" in text, text
    text = _help("train")
    assert "min(10,max(1,epochs/2))" in text and "continuefromOUT/checkpoint.pt" in text
    guide = GUIDE.read_text()
    assert "min(10, epochs/2)" not in guide and "min(10, max(1, epochs/2))" in guide


def test_run_json_sizes_are_the_samples_used(tmp_path):
    train(TrainConfig(**{**TINY, "max_train_samples": 20, "max_test_samples": 12, "out": str(tmp_path)}),
          log=_quiet)
    meta = json.loads((tmp_path / "run.json").read_text())["data"]
    assert meta["sizes"] == [20, 12] and meta["available_sizes"] == [1437, 360]
