"""``convzoo compare --runtime xnnpack|onnxruntime --dtype fp32|int8``: the table's numbers and its one-line errors."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

import convzoo
from convzoo.cli import app
from convzoo.deploy.int8_checks import INT8_TOLERANCE
from convzoo.perf.runtime_compare import interleaved_rounds, machine_header

MOBILE = "the 'mobile' extra is not installed (pip install 'convzoo[mobile]')"
TINY = ["--batch", "1", "--in", "8", "--out", "8", "--size", "8", "--repeats", "2"]


def _row(args: list[str]) -> dict:
    result = CliRunner().invoke(app, ["compare", *args, *TINY, "--json", "depthwise_separable"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output.strip().splitlines()[-1])
    [row] = document["rows"]
    asked = {"batch": 1, "in_channels": 8, "out_channels": 8, "size": 8, "kernel": 3, "repeats": 2, "device": "cpu"}
    assert {k: document["settings"][k] for k in asked} == asked
    assert document["machine"]["cpu"] and document["machine"]["torch"]
    layer, standard = convzoo.build("depthwise_separable", 8, 8), convzoo.build("standard", 8, 8)
    shape = (1, 8, 8, 8)
    assert row["family"] == "depthwise_separable" and row["macs"] == convzoo.cost(layer, shape).macs
    assert row["mac_ratio"] == pytest.approx(convzoo.cost(layer, shape).macs / convzoo.cost(standard, shape).macs)
    assert row["ms"] > 0 and row["eager_ms"] > 0 and row["rounds"] == 2 and not row["failed"]
    assert isinstance(row["trusted"], bool) and row["trusted"] is not bool(row["distrust"])
    return row


def test_cli_compare_on_onnxruntime_fp32() -> None:
    """The CLI's wiring, on the runtime that prepares fastest (int8 on every runtime: test_int8.py)."""
    for module in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(module, reason=MOBILE)
    row = _row(["--runtime", "onnxruntime", "--dtype", "fp32"])
    assert row["runtime"] == "onnxruntime" and row["dtype"] == "fp32"
    assert row["error"] < 1e-5 and row["summary"] == ""  # float32 on onnxruntime: the same numbers


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["xnnpack", "onnxruntime"])
def test_cli_compare_in_int8(runtime: str) -> None:
    for module in ("executorch", "torchao", "onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(module, reason=MOBILE)
    row = _row(["--runtime", runtime, "--dtype", "int8"])
    assert row["runtime"] == runtime and row["dtype"] == "int8"
    assert 1e-4 < row["error"] < INT8_TOLERANCE
    assert row["summary"] == {"xnnpack": "int8 MACs 100%",
                              "onnxruntime": "int8 MACs 100%; ORT int8 kernels: QLinearConv"}[runtime]


@pytest.mark.parametrize("args, message", [
    (["--runtime", "eager", "--dtype", "int8"], "dtype='int8' needs runtime 'xnnpack' or 'onnxruntime'"),
    (["--runtime", "tflite"], "runtime='tflite' must be one of eager, xnnpack, onnxruntime"),
    (["--runtime", "xnnpack", "--dtype", "float16"], "--dtype 'float16' on --runtime xnnpack must be one of fp32, int8"),
    (["--runtime", "xnnpack", "--device", "cuda"], "--runtime xnnpack runs on the CPU"),
])
def test_cli_compare_refuses_in_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["compare", *args, "standard"])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_names_the_missing_package(monkeypatch) -> None:
    from convzoo.deploy import extras

    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None)
    result = CliRunner().invoke(app, ["compare", "--runtime", "onnxruntime", "--dtype", "fp32", "standard"])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: the onnxruntime runtime needs 'onnx', 'onnxruntime', 'onnxscript', not "
                                     "installed: pip install 'convzoo[mobile]'")


def test_rounds_follow_round_order_and_count_every_function() -> None:
    calls: list[str] = []

    def make(label: str):
        return lambda x: calls.append(label)

    times = interleaved_rounds([make("a"), make("b"), make("c")], [None], repeats=3)
    assert [len(t) for t in times] == [3, 3, 3] and all(v >= 0 for t in times for v in t)
    timed = calls[6:]  # after two warm-up calls each
    assert timed == ["a", "b", "c", "c", "b", "a", "b", "c", "a"]  # round_order: rotated, reversed every other round


def test_machine_header_names_cpu_flags_and_capability() -> None:
    header = machine_header(1)
    assert header.startswith("CPU: ") and "torch CPU capability: " in header and "1 thread(s)" in header


# --- rounds that lost their core: bimodal series, flagged rows ------------------------------------------------------
# The reviewer's rounds (OMP_NUM_THREADS=2, a 16 → 32 conv at 16 × 16 on a 2-core machine with another process on a
# core): eager standard 11.9–12.4 ms in every round of its own row, 0.047 ms in another row's; eager
# depthwise_separable 0.14 ms or 15–21 ms. Old output: depthwise_separable eager 0.07 ms, "ratio" 168.7, unflagged.
PREEMPTED = [12.0, 11.9, 12.0, 12.4, 12.0]
TWO_MODES = [19.5, 0.139, 15.5, 21.2, 0.216]


@pytest.mark.parametrize("times, expected", [
    ([0.022, 0.066, 0.07, 0.06, 0.08], False),  # 3× but 0.05 ms apart: a late pool worker, not a time slice
    (PREEMPTED, False),  # one mode (preempted throughout: seen only against an undisturbed time, below)
    (TWO_MODES, True),
    ([5.0, 5.2, 12.0, 12.0, 12.0], True),  # median 12 ≥ 2 × 5 and 7 ms above
    ([5.0, 5.0, 5.0, 12.0, 12.0], False),  # most rounds undisturbed
])
def test_bimodal_means_most_rounds_lost_a_time_slice(times, expected) -> None:
    from convzoo.perf.runtime_compare import bimodal

    assert bimodal(times) is expected


@pytest.mark.parametrize("ms, undisturbed, expected", [
    (11.9, 0.047, True), (0.09, 0.047, False), (1.5, 0.9, False), (2.0, 0.9, True), (30.0, 20.0, False)])
def test_preempted_is_a_lost_time_slice(ms, undisturbed, expected) -> None:
    from convzoo.perf.runtime_compare import preempted

    assert preempted(ms, undisturbed) is expected


def test_interleaved_rounds_go_on_until_settled() -> None:
    seen: list[int] = []

    def settled(times: list[list[float]]) -> bool:
        seen.append(len(times[0]))
        return len(times[0]) >= 7

    fns = [lambda x: None, lambda x: None]
    assert [len(t) for t in interleaved_rounds(fns, [None], min_time=0.0, min_rounds=2)] == [2, 2]
    assert [len(t) for t in interleaved_rounds(fns, [None], min_time=0.0, min_rounds=2, settled=settled)] == [7, 7]
    assert seen == [2, 3, 4, 5, 6, 7]
    never = interleaved_rounds(fns, [None], min_time=0.0, min_rounds=2, max_rounds=9, settled=lambda t: False)
    assert [len(t) for t in never] == [9, 9]


def test_rows_with_preempted_rounds_are_untrusted_and_marked(monkeypatch) -> None:
    """compare_on_runtime on eager fp32 (no runtime package needed) with its rounds replaced by the reviewer's: the
    scaled times are the formula's, the rows whose ratio divides by a preempted round are ! with the reason."""
    import convzoo.perf.runtime_compare as rc

    rounds = iter([
        [[0.02] * 5, PREEMPTED],  # standard against itself: its eager rounds all lost their core
        [[0.02] * 5, [0.015] * 5, [0.05, 0.047, 0.05, 0.049, 0.05], TWO_MODES],  # depthwise_separable
        [[0.021] * 5, [0.03] * 5, [0.048] * 5, [0.07, 0.072, 0.071, 0.07, 0.075]],  # grouped: undisturbed
    ])
    verdicts: list[bool] = []

    def fake_rounds(fns, inputs, repeats=None, settled=None, **kw):
        times = next(rounds)
        verdicts.append(settled(times))  # what repeats=None would decide after these rounds
        return times

    monkeypatch.setattr(rc, "interleaved_rounds", fake_rounds)
    # the one-thread times too: a real one (measured when torch runs on more than one thread here) would judge the
    # faked rounds against this machine's speed
    monkeypatch.setattr(rc, "one_thread_ms", lambda fn, x, calls=5: math.nan)
    rows = rc.compare_on_runtime("eager", "fp32", batch=1, in_channels=4, out_channels=8, size=6,
                                 families=["standard", "depthwise_separable", "grouped"], repeats=5)
    standard, dws, grouped = rows
    assert [r.trusted for r in rows] == [False, False, True] and verdicts == [True, False, True]
    assert standard.distrust == "eager standard preempted in every round here (fastest 11.900 ms, 0.047 ms in the run)"
    assert dws.distrust.startswith("eager depthwise_separable bimodal (fastest 0.139 ms, median 15.500 ms)")
    assert grouped.distrust == ""
    # min(family) / min(standard) of its rounds × the standard's fastest round of the whole run (0.047 eager)
    assert grouped.eager_ms == pytest.approx(0.07 / 0.048 * 0.047)
    assert grouped.ms == pytest.approx(0.03 / 0.021 * 0.02)
    assert standard.eager_ms == pytest.approx(0.047)  # the run's fastest, not its own preempted 11.9
    table = rc.markdown_table(rows)
    assert "| standard ! |" in table and "| depthwise_separable ! |" in table and "| grouped |" in table
    assert table.endswith("\n! = " + rc.UNTRUSTED)


def test_runtime_table_marks_untrusted_rows_and_a_busy_machine(monkeypatch) -> None:
    import os

    import torch
    from rich.console import Console

    from convzoo.perf.runtime_compare import RuntimeRow, runtime_table

    rows = [RuntimeRow("standard", "xnnpack", "int8", 10, 100, 1.0, 0.02, 1.0, 0.05, 1.0, 2.5, 0.01, 5),
            RuntimeRow("grouped", "xnnpack", "int8", 5, 25, 0.25, 0.02, 1.0, 0.1, 0.5, 5.0, 0.01, 5, trusted=False,
                       distrust="eager grouped bimodal")]
    load = float((os.cpu_count() or 1) + torch.get_num_threads())  # this run's threads plus one per CPU: busy
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load), raising=False)
    console = Console(record=True, width=300)
    console.print(runtime_table(rows, "CPU: test", load_before=1.8))
    text = console.export_text()
    assert "grouped !" in text and "standard !" not in text and "! = a series of the row's rounds is bimodal" in text
    assert "load average 1.80 before timing" in text and "WARNING: the machine is busy" in text


def test_one_thread_ms_times_on_one_thread_and_restores_the_count() -> None:
    import torch

    from convzoo.perf.runtime_compare import one_thread_ms

    previous = torch.get_num_threads()
    seen: list[int] = []
    try:
        torch.set_num_threads(2)
        assert one_thread_ms(lambda x: seen.append(torch.get_num_threads()), None, calls=3) >= 0
        assert seen == [1] * 5 and torch.get_num_threads() == 2  # two untimed calls, three timed
        torch.set_num_threads(1)
        assert math.isnan(one_thread_ms(lambda x: seen.append(0), None)) and len(seen) == 5  # nothing to compare
    finally:
        torch.set_num_threads(previous)


def test_a_baseline_preempted_in_every_round_of_the_run_is_caught_against_one_thread(monkeypatch) -> None:
    """The failure no timing series shows (2 threads, another process on a core): eager standard 8.9–12 ms in every
    round of the whole run, depthwise separable 0.05 ms — a 'ratio' of 190, no series bimodal, no faster standard
    round anywhere. The same layers' fastest calls on one thread (0.03, 0.05 ms) expose it."""
    import torch

    import convzoo.perf.runtime_compare as rc

    rounds = iter([[[0.02] * 5, [8.9, 9.0, 12.0, 11.0, 10.0]],
                   [[0.02] * 5, [0.02] * 5, [9.5, 9.2, 12.0, 11.0, 10.0], [0.05, 0.046, 0.05, 0.05, 0.06]]])
    singles = iter([0.03, 0.05])
    monkeypatch.setattr(rc, "interleaved_rounds", lambda fns, inputs, repeats=None, **kw: next(rounds))
    monkeypatch.setattr(rc, "one_thread_ms", lambda fn, x, calls=5: next(singles))
    previous = torch.get_num_threads()
    try:
        standard, dws = rc.compare_on_runtime("eager", "fp32", batch=1, in_channels=4, out_channels=8, size=6,
                                              families=["standard", "depthwise_separable"], repeats=5, threads=2)
    finally:
        torch.set_num_threads(previous)
    assert dws.eager_speed_ratio == pytest.approx(9.2 / 0.046)  # the formula's number, as the reviewer saw
    assert not standard.trusted and not dws.trusted
    assert dws.distrust == "eager standard preempted in every round (fastest 9.200 ms, 0.030 ms on one thread)"
    assert rc.distrust("eager", "depthwise_separable", [[0.02] * 5, [0.02] * 5, [0.04] * 5, [0.05] * 5],
                       (0.02, 0.04), (0.03, 0.05)) == ""  # two threads a bit slower than one: no time slice
