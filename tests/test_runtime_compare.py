"""``convzoo compare --runtime xnnpack|onnxruntime --dtype fp32|int8``: the table's numbers and its one-line errors."""

from __future__ import annotations

import json

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
    [row] = json.loads(result.output.strip().splitlines()[-1])
    layer, standard = convzoo.build("depthwise_separable", 8, 8), convzoo.build("standard", 8, 8)
    shape = (1, 8, 8, 8)
    assert row["family"] == "depthwise_separable" and row["macs"] == convzoo.cost(layer, shape).macs
    assert row["mac_ratio"] == pytest.approx(convzoo.cost(layer, shape).macs / convzoo.cost(standard, shape).macs)
    assert row["ms"] > 0 and row["eager_ms"] > 0 and row["rounds"] == 2 and not row["failed"]
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
