"""--conv defaults to the model's own family (None), so that a model with its own convolutions (shufflenet_v1) trains
and sweeps without one and run.json records what was built; --temperature-epochs / --offset-lr-mult are refused
when no chosen family builds a layer they act on (found by train/rules.py's own rules)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from convzoo.cli import app
from convzoo.layers import DeformConv2d, DynamicConvNd
from convzoo.registry import families
from convzoo.train.loop import TrainConfig, build_model

TINY = ["--epochs", "1", "--max-train-samples", "16", "--max-test-samples", "16", "--batch-size", "8",
        "--no-progress", "--device", "cpu"]


def _families_with(kind: type, dim: int = 2) -> list[str]:
    """Families whose 8 → 8 layer holds a ``kind`` module: the expected list, found here by isinstance."""
    found = []
    for fam in families():
        if dim in fam.dims:
            with torch.device("meta"):
                layer = fam.build(8, 8, None, dim)
            if any(isinstance(m, kind) for m in layer.modules()):
                found.append(fam.name)
    return found


def test_conv_defaults_to_the_model_s_own_family():
    from convzoo.train.sweep import default_convs

    assert TrainConfig().resolved_conv == "depthwise_separable"  # MobileNet's blocks (the paper's)
    assert TrainConfig(data="mnist1d").resolved_conv == "depthwise_separable"  # its 1-D analogue
    shuffle = TrainConfig(model="shufflenet_v1")
    shuffle.validate()  # was "--conv applies to mobilenet_v1 only" with no --conv given (sweep's default)
    assert shuffle.resolved_conv is None and shuffle.arm == "shufflenet_v1"
    assert default_convs(TrainConfig()) == ["standard", "depthwise_separable"]
    assert default_convs(shuffle) == [None]
    # a checkpoint written with conv given as the default resumes a run that leaves it out, and back
    assert TrainConfig(conv="depthwise_separable").identity() == TrainConfig().identity()
    with pytest.raises(ValueError, match=r"conv='standard': shufflenet_v1 has its own convolutions .* applies to "
                                         r"mobilenet_v1 and cnn1d only"):
        TrainConfig(model="shufflenet_v1", conv="standard").validate()


def test_train_shufflenet_records_no_family_in_run_json(tmp_path):
    # run.json said "conv": "depthwise_separable" for a ShuffleNet, which has no such layer
    result = CliRunner().invoke(app, ["train", "--model", "shufflenet_v1", *TINY, "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "s" / "run.json").read_text())
    assert run["model"] == "shufflenet_v1" and run["config"]["conv"] is None
    mobile = CliRunner().invoke(app, ["train", *TINY, "--out", str(tmp_path / "m")])
    assert mobile.exit_code == 0, mobile.output
    assert json.loads((tmp_path / "m" / "run.json").read_text())["config"]["conv"] == "depthwise_separable"
    # what run.json says is what the model holds: no family layer in ShuffleNet's build
    from convzoo.registry import build

    separable = type(build("depthwise_separable", 8, 8))
    assert not any(isinstance(m, separable) for m in build_model(TrainConfig(model="shufflenet_v1"), 10).modules())
    assert any(isinstance(m, separable) for m in build_model(TrainConfig(), 10).modules())


def test_sweep_of_shufflenet_runs_without_conv(tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--model", "shufflenet_v1", *TINY, "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "w" / "sweep.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [row["family"] for row in rows] == ["shufflenet_v1"]
    assert (tmp_path / "w" / "shufflenet_v1" / "seed-0" / "run.json").exists()


def _record_conv(checkpoint, conv) -> None:
    """Rewrite the conv a checkpoint recorded, as a checkpoint of an older convzoo (or another run) holds it."""
    from convzoo.train import checkpoint as ckpt

    state = ckpt.load(str(checkpoint))
    state["config"]["conv"] = conv
    ckpt.save(state, str(checkpoint))


def test_older_shufflenet_checkpoint_resumes(tmp_path):
    # before conv defaulted to the model's own, a ShuffleNet checkpoint recorded the ignored default
    # (depthwise_separable) and --resume refused it: "made with conv='depthwise_separable', this run has conv=None"
    out, two = tmp_path / "s", [a if a != "1" else "2" for a in TINY]  # --epochs 2
    killed = CliRunner().invoke(app, ["train", "--model", "shufflenet_v1", *two, "--out", str(out),
                                      "--stop-after-steps", "3"])  # stopped in its second epoch (2 steps each)
    assert killed.exit_code == 3, killed.output  # stopped on purpose
    _record_conv(out / "checkpoint.pt", "depthwise_separable")
    resumed = CliRunner().invoke(app, ["train", "--model", "shufflenet_v1", *two, "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert ckpt_epoch(out / "checkpoint.pt") == 2
    # a model that builds the family still refuses a checkpoint of another one
    mobile = tmp_path / "m"
    assert CliRunner().invoke(app, ["train", *two, "--out", str(mobile), "--stop-after-steps", "3"]).exit_code == 3
    _record_conv(mobile / "checkpoint.pt", "standard")
    refused = CliRunner().invoke(app, ["train", *two, "--out", str(mobile), "--resume"])
    assert refused.exit_code != 0 and "conv='standard'" in refused.output, refused.output


def ckpt_epoch(checkpoint) -> int:
    from convzoo.train import checkpoint as ckpt

    return ckpt.load(str(checkpoint))["epoch"]


@pytest.mark.parametrize("command, args, flag, kind", [
    ("train", ["--conv", "standard", "--temperature-epochs", "3"], "--temperature-epochs 3", DynamicConvNd),
    ("train", ["--conv", "standard", "--offset-lr-mult", "5"], "--offset-lr-mult 5", DeformConv2d),
    ("sweep", ["--conv", "standard,grouped", "--offset-lr-mult", "0"], "--offset-lr-mult 0", DeformConv2d),
    ("train", ["--model", "shufflenet_v1", "--temperature-epochs", "0"], "--temperature-epochs 0", DynamicConvNd),
])
def test_family_options_are_refused_when_no_chosen_family_uses_them(command, args, flag, kind, tmp_path):
    # `train --conv standard --temperature-epochs 3 --offset-lr-mult 5` trained without a word
    result = CliRunner().invoke(app, [command, *args, *TINY, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith(f"error: {flag} applies only to families") and len(line.splitlines()) == 1
    users = _families_with(kind)
    assert users and f"({', '.join(users)} in 2-D)" in line
    assert not (tmp_path / "r").exists()  # refused before anything was trained or written


def test_family_options_pass_when_a_chosen_family_uses_them():
    from convzoo.cli.train import check_family_options

    config = TrainConfig()
    check_family_options(config, ["standard", "dynamic"], {"temperature_epochs": 2.0, "offset_lr_mult": None})
    check_family_options(config, ["deformable_v2"], {"temperature_epochs": None, "offset_lr_mult": 0.5})
    check_family_options(config, ["standard"], {"temperature_epochs": None, "offset_lr_mult": None})
    with pytest.raises(ValueError, match="--offset-lr-mult 0.5 applies only"):
        check_family_options(config, ["dynamic"], {"temperature_epochs": None, "offset_lr_mult": 0.5})
