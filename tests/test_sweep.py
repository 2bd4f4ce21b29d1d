"""convzoo sweep: repeated seeds and their statistics, the Pareto plot, parallel trials, Ray, and the MNIST-1D
acceptance runs (slow)."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time

import pytest
import torch
from matplotlib.text import Text
from typer.testing import CliRunner

from convzoo.cli import app
from convzoo.train.loop import TrainConfig
from convzoo.train.sweep import interval95, pareto_figure, pareto_front, summarize, sweep, welch_p


def _cli(args):
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def _quiet(_):
    return None


def test_interval_and_welch_by_hand():
    # mean 0.92, sample sd 0.02, t(0.975, 2 dof) = 4.302653: half-width 4.302653 · 0.02 / √3 = 0.0496827 on the
    # accuracy scale; on the logit scale h = 0.0496827 / (0.92 · 0.08) around logit(0.92) = ln(11.5)
    low, high = interval95([0.90, 0.92, 0.94])
    h = 0.0496827 / (0.92 * 0.08)
    assert low == pytest.approx(1 / (1 + math.exp(h) / 11.5), rel=1e-5)
    assert high == pytest.approx(1 / (1 + math.exp(-h) / 11.5), rel=1e-5)
    assert low < 0.92 < high and 0 < low and high < 1
    # the two seeds (0.7825, 0.838): the t-interval ran from −0.37 to 1.90; this one stays inside (0, 1)
    low, high = interval95([0.7825, 0.838])
    assert 0 < low < 0.7825 and 0.838 < high < 1
    assert interval95([0.99, 1.0, 1.0])[1] < 1 and interval95([0.0, 0.01])[0] > 0
    assert interval95([1.0, 1.0]) is None  # no spread: no interval (test_train_review has the why)
    # positive values (the log scale), m·e^(±h) with h = t·s/(√n·m)
    low, high = interval95([1.0, 3.0], "positive")
    h = 12.7062047 * math.sqrt(2) / math.sqrt(2) / 2.0
    assert (low, high) == (pytest.approx(2 * math.exp(-h), rel=1e-6), pytest.approx(2 * math.exp(h), rel=1e-6))
    assert interval95([0.5]) is None
    with pytest.raises(ValueError, match="bounds="):
        interval95([0.1, 0.2], "percent")
    # Welch by its formulas: t = (ma − mb) / √(va/na + vb/nb), Welch–Satterthwaite degrees of freedom
    a, b = [0.90, 0.92, 0.94], [0.80, 0.85, 0.83, 0.86]
    va, vb = 0.02 ** 2, sum((x - 0.835) ** 2 for x in b) / 3
    se2 = va / 3 + vb / 4
    t = (0.92 - 0.835) / math.sqrt(se2)
    dof = se2 ** 2 / ((va / 3) ** 2 / 2 + (vb / 4) ** 2 / 3)
    from scipy import stats

    assert welch_p(a, b) == pytest.approx(2 * stats.t.sf(t, dof), rel=1e-9)
    assert welch_p(a, [0.5]) is None and welch_p([0.9, 0.9], [0.9, 0.9]) is None
    assert welch_p([0.9, 0.9], [0.8, 0.8]) is None  # no spread in either sample: undefined, not 0


def test_summarize_marks_only_real_differences():
    def trials(name, accuracies):
        return [{"family": name, "seed": s, "params": 10, "macs": 100, "latency_ms": 2.0, "best_accuracy": a,
                 "final_accuracy": a - 0.01, "threads": 1, "torch": torch.__version__}
                for s, a in enumerate(accuracies)]

    rows = summarize(trials("standard", [0.98, 0.985, 0.982]) + trials("pointwise", [0.41, 0.45, 0.43]) +
                     trials("grouped", [0.975, 0.99, 0.978]), ["standard", "pointwise", "grouped"])
    assert [r["family"] for r in rows] == ["standard", "pointwise", "grouped"]
    assert rows[0]["p_value"] is None and rows[0]["significant"] is None
    assert rows[1]["significant"] is True and rows[1]["p_value"] < 1e-3
    assert rows[2]["significant"] is False
    assert rows[1]["mean_accuracy"] == pytest.approx(0.43) and rows[1]["accuracies"] == [0.41, 0.45, 0.43]
    assert rows[1]["final_accuracies"] == pytest.approx([0.40, 0.44, 0.42])
    assert [t["threads"] for t in rows[1]["trials"]] == [1, 1, 1] and "logit" in rows[1]["interval_method"]
    for row in rows:
        low, high = row["accuracy_ci95"]
        assert 0 < low < row["mean_accuracy"] < high < 1
    assert rows[1]["delta_vs_baseline"] == pytest.approx(0.43 - (0.98 + 0.985 + 0.982) / 3, abs=1e-4)
    assert rows[0]["latency_ms"] == 2.0 and "latency_ci95" not in rows[0]  # timed once per family


def test_pareto_front():
    # (cost, accuracy): b is beaten by a (cheaper and more accurate); d ties c's cost but is less accurate
    costs, accuracies = [1, 2, 3, 3, 5], [0.9, 0.8, 0.95, 0.93, 0.99]
    assert pareto_front(costs, accuracies) == [0, 2, 4]


def test_pareto_plot_labels_every_family_without_collisions():
    """A crowded sweep (points sharing a cost, overlapping intervals): every label is drawn once per panel, inside
    its axes, and no two labels' boxes overlap; none covers a marker."""
    names = ["standard", "convolution", "dilated", "depthwise_separable", "grouped", "dynamic", "pointwise",
             "pointwise_grouped", "depthwise"]
    macs = [416960, 416960, 416960, 148160, 105920, 611816, 140480, 36800, 13760]
    accuracy = [0.985, 0.984, 0.97, 0.975, 0.972, 0.99, 0.42, 0.39, 0.91]
    latency = [0.19, 0.2, 0.21, 0.46, 0.41, 0.48, 0.2, 0.21, 0.42]
    rows = [{"family": n, "macs": m, "latency_ms": ms, "mean_accuracy": a, "seeds": [0, 1, 2],
             "accuracy_ci95": [a - 0.01, a + 0.01], "latency_ci95": [ms * 0.9, ms * 1.1], "significant": i in (3, 6)}
            for i, (n, m, a, ms) in enumerate(zip(names, macs, accuracy, latency))]
    fig = pareto_figure(rows)
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_text()]
        assert sorted(t.get_text() for t in texts) == sorted(n + ("*" if i in (3, 6) else "")
                                                             for i, n in enumerate(names))
        for t in texts:
            t.update_positions(renderer)
        boxes = [Text.get_window_extent(t, renderer) for t in texts]  # the text, not its leader line
        frame = ax.get_window_extent(renderer)
        for i, box in enumerate(boxes):
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            for other in boxes[i + 1:]:
                assert not box.overlaps(other), (texts[i].get_text(), boxes.index(other))
        markers = ax.transData.transform([(r["macs" if ax is fig.axes[0] else "latency_ms"], 100 * r["mean_accuracy"])
                                          for r in rows])
        for box in boxes:
            assert not any(box.x0 < x < box.x1 and box.y0 < y < box.y1 for x, y in markers)


@pytest.mark.parametrize("options, expected", [
    (["--seeds", "0"], "seeds=0"),
    (["--workers", "2", "--ray", "local"], "exclude each other"),
    (["--ray", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    (["--ray", "nonsense"], "HOST:PORT"),
])
def test_sweep_option_errors_are_one_line(tmp_path, options, expected):
    if "--ray" in options:
        pytest.importorskip("ray", reason="the distributed extra is not installed")
    code, output = _cli(["sweep", "--data", "digits", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "s"),
                         *options])
    assert code == 2 and output.startswith("error:") and output.strip().count("\n") == 0, output
    assert expected in output and not (tmp_path / "s").exists(), output


# Small enough for the default suite, large enough to learn (test accuracies 0.54–0.62 after 3 epochs, not chance).
TINY_1D = dict(data="mnist1d", epochs=3, batch_size=32, max_train_samples=512, max_test_samples=200,
               progress=False, device="cpu")


def test_serial_workers_and_ray_give_identical_accuracies(tmp_path):
    """Issue 25's acceptance: the same 2-family × 2-seed sweep serially, with --workers 2 and on a local Ray
    instance gives identical accuracies, seed by seed — every trial on the default thread count, which each
    trial records with the torch version and the CPU — and intervals inside [0, 1]."""
    pytest.importorskip("mnist1d", reason="the data extra is not installed")
    pytest.importorskip("ray", reason="the distributed extra is not installed")
    from convzoo.train.sweep import TRIAL_THREADS

    families = ["standard", "grouped"]
    runs = {}
    for executor, options in (("serial", {}), ("workers", {"workers": 2}), ("ray", {"ray": "local"})):
        rows = sweep(TrainConfig(**TINY_1D), families, str(tmp_path / executor), log=_quiet, seeds=2, **options)
        runs[executor] = rows
        assert json.load(open(tmp_path / executor / "sweep.json")) == json.loads(json.dumps(rows))
    serial = runs["serial"]
    for executor in ("workers", "ray"):
        for one, two in zip(serial, runs[executor]):
            assert (one["family"], one["seeds"], one["params"], one["macs"]) == \
                   (two["family"], two["seeds"], two["params"], two["macs"])
            assert one["accuracies"] == two["accuracies"] and one["final_accuracies"] == two["final_accuracies"], \
                (executor, one["family"], one["accuracies"], two["accuracies"])
            assert one["mean_accuracy"] == two["mean_accuracy"]
    for row in serial:
        assert row["seeds"] == [0, 1] and len(row["accuracies"]) == 2
        low, high = row["accuracy_ci95"]
        assert 0 <= low <= row["mean_accuracy"] <= high <= 1
        for trial in row["trials"]:
            assert trial["threads"] == TRIAL_THREADS and trial["torch"] == torch.__version__ and trial["cpu"]
    assert serial[0]["accuracies"] != serial[1]["accuracies"]  # the families really differ
    assert serial[0]["accuracies"][0] != serial[0]["accuracies"][1]  # and so do the seeds
    assert min(a for row in serial for a in row["accuracies"]) > 0.3  # they learned: 10 classes, chance is 0.1
    header = open(tmp_path / "serial" / "sweep_trials.csv").readline().strip().split(",")
    assert {"threads", "torch", "cpu", "cpu_capability"} <= set(header)


# --- slow: the acceptance runs -----------------------------------------------------------------------------


@pytest.mark.slow
def test_acceptance_standard_1d_cnn_reaches_the_papers_cnn_figure(tmp_path):
    """MNIST-1D paper (Greydanus & Kobak): CNN ≈ 94 %. The standard 1-D CNN, 10 epochs, must reach it."""
    pytest.importorskip("mnist1d", reason="the data extra is not installed")
    from convzoo.train.loop import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny layers: one thread is faster, and far faster on a busy machine
    try:
        result = train(TrainConfig(data="mnist1d", conv="standard", epochs=10, progress=False, device="cpu",
                                   out=str(tmp_path)), log=_quiet)
    finally:
        torch.set_num_threads(threads)
    assert result["best_accuracy"] >= 0.94, result["best_accuracy"]


@pytest.mark.slow
def test_acceptance_sweep_with_three_seeds(tmp_path):
    """--seeds 3 over two families that the articles say differ (standard vs pointwise-only): intervals, a
    significance mark, the Pareto PNG and TensorBoard event files for every trial."""
    pytest.importorskip("mnist1d", reason="the data extra is not installed")
    tensorboard = pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    del tensorboard
    code, output = _cli(["sweep", "--data", "mnist1d", "--conv", "standard,pointwise", "--seeds", "3", "--epochs", "6",
                         "--trial-threads", "1", "--no-progress", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 0, output
    rows = json.load(open(tmp_path / "sweep.json"))
    assert [r["seeds"] for r in rows] == [[0, 1, 2]] * 2
    for row in rows:
        low, high = row["accuracy_ci95"]
        assert 0 < low < row["mean_accuracy"] < high < 1 and len(row["accuracies"]) == 3
    assert rows[0]["mean_accuracy"] > 0.9 and rows[1]["significant"] is True and rows[1]["p_value"] < 0.05
    assert "*" in output and "[" in output
    assert (tmp_path / "sweep_pareto.png").read_bytes()[:4] == b"\x89PNG"
    for family in ("standard", "pointwise"):
        for seed in range(3):
            folder = tmp_path / family / f"seed-{seed}"
            events = EventAccumulator(str(folder / "tb"))
            events.Reload()
            accuracy = [e.value for e in events.Scalars("accuracy/test")]
            assert len(accuracy) == 6
            best = max(json.loads(line)["test_accuracy"] for line in open(folder / "metrics.jsonl"))
            assert max(accuracy) == pytest.approx(best)
            assert best == rows[0 if family == "standard" else 1]["accuracies"][seed]


@pytest.mark.slow
def test_ray_sweep_matches_serial_and_survives_a_killed_worker(tmp_path):
    """A local Ray instance with 2 CPUs runs a 2-family × 2-seed sweep through ``--ray``: the accuracies equal the
    serial sweep's (the default one CPU thread per trial on both sides). One trial's worker process is SIGKILLed
    after its first epoch; Ray retries the task, which resumes from the trial's checkpoint, and the sweep completes
    with the same numbers."""
    pytest.importorskip("mnist1d", reason="the data extra is not installed")
    ray = pytest.importorskip("ray", reason="the distributed extra is not installed")
    args = ["--data", "mnist1d", "--conv", "standard,depthwise_separable", "--seeds", "2", "--epochs", "4",
            "--max-train-samples", "1024", "--max-test-samples", "500", "--no-progress", "--device", "cpu"]
    code, output = _cli(["sweep", *args, "--trial-threads", "1", "--out", str(tmp_path / "serial")])
    assert code == 0, output
    serial = json.load(open(tmp_path / "serial" / "sweep.json"))

    victim = tmp_path / "ray" / "standard" / "seed-1"
    killed = {}

    def kill_after_first_epoch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if (victim / "checkpoint.pt").exists() and (victim / "attempts.jsonl").exists():
                pid = json.loads(open(victim / "attempts.jsonl").readline())["pid"]
                killed["epochs_logged"] = len(open(victim / "metrics.jsonl").readlines())
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.01)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        killer = threading.Thread(target=kill_after_first_epoch, daemon=True)
        killer.start()
        code, output = _cli(["sweep", *args, "--ray", "local", "--out", str(tmp_path / "ray")])
        killer.join(timeout=5)
    finally:
        ray.shutdown()
    assert code == 0, output
    assert killed.get("pid") and killed["epochs_logged"] < 4, killed  # killed mid-trial, not after it
    attempts = [json.loads(line) for line in open(victim / "attempts.jsonl")]
    assert [a["attempt"] for a in attempts] == [1, 2] and attempts[1]["pid"] != killed["pid"]
    assert "attempt 2" in output
    on_ray = json.load(open(tmp_path / "ray" / "sweep.json"))
    for one, two in zip(serial, on_ray):
        assert (one["family"], one["accuracies"], one["macs"]) == (two["family"], two["accuracies"], two["macs"])
    resumed = [json.loads(line)["epoch"] for line in open(victim / "metrics.jsonl")]
    assert resumed == [0, 1, 2, 3]
    assert torch.load(victim / "checkpoint.pt", weights_only=True)["epoch"] == 4


def test_write_csv_splits_intervals_and_leaves_missing_cells_empty(tmp_path):
    from convzoo.train.sweep import write_csv

    rows = [{"family": "a", "acc_ci95": [0.5, 0.75], "seeds": [0, 1], "note": None},
            {"family": "b", "acc_ci95": None, "seeds": [0], "note": "x"}]
    path = tmp_path / "t.csv"
    write_csv(str(path), ("family", "acc_ci95_low", "acc_ci95_high", "seeds", "note"), rows, {"acc_ci95": "acc"},
              lambda row: {"seeds": len(row["seeds"])})
    assert path.read_text().splitlines() == ["family,acc_ci95_low,acc_ci95_high,seeds,note", "a,0.5,0.75,2,",
                                             "b,,,1,x"]
