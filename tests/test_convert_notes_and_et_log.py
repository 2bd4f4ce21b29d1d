"""convert's kept-layer notes quote MACs at the conv's input in the model (not convert's own probe size, unless no
input shape is known, then said as such) and name force in both spellings; ExecuTorch's C++ Info lines are dropped
from stderr while everything else written there is kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.models import MODELS


def _note(report, name: str) -> str:  # type: ignore[no-untyped-def]
    return next(row.note for row in report.layers if row.name == name)


def test_kept_note_gives_the_macs_at_the_model_s_input():
    # "MACs 25,920 → 118,080 on 10×9" (a probe size); mobilenet_v1_small's input is 32×32, where features.1's
    # depthwise 3×3 over 32 channels has 32·9·32·32 MACs and depthwise separable 32 → 32 adds 32·32·32·32
    model = MODELS["mobilenet_v1_small"]()
    assert tuple(model.default_input_shape) == (1, 3, 32, 32)
    _, report = cz.convert(model, "depthwise_separable")
    note = _note(report, "features.1.depthwise")
    dw, pw = 32 * 9 * 32 * 32, 32 * 32 * 32 * 32
    assert f"MACs {dw:,} → {dw + pw:,} at this layer's input (1, 32, 32, 32) in the model" in note
    assert "probe" not in note and "force=True (CLI: --force) converts it anyway" in note
    assert "force=True (CLI: --force)" in _note(report, "features.1.pointwise")  # the 1×1 rule's note too


def test_kept_note_says_probe_without_an_input_shape_and_follows_a_given_one():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8))  # no default_input_shape
    _, report = cz.convert(model, "depthwise_separable")
    probe = _note(report, "0")  # convert's probe: (extent + 7) × (extent + 6) = 10 × 9
    assert f"MACs {8 * 9 * 90:,} → {8 * 9 * 90 + 8 * 8 * 90:,} on convert's 10×9 probe input" in probe
    _, report = cz.convert(model, "depthwise_separable", input_shape=(2, 8, 12, 12))
    assert (f"MACs {2 * 8 * 9 * 144:,} → {2 * (8 * 9 + 8 * 8) * 144:,} at this layer's input (2, 8, 12, 12)"
            in _note(report, "0"))


def test_convert_cli_quotes_the_model_input_macs():
    result = CliRunner().invoke(app, ["convert", "mobilenet_v1_small"])
    assert result.exit_code == 0, result.output
    assert "25,920" not in result.output and "on 10×9" not in result.output


def test_quiet_executorch_drops_only_its_info_lines(capsys):
    import sys

    from convzoo.deploy.runtimes import quiet_executorch

    with quiet_executorch():  # written as ExecuTorch's bindings write: to sys.stderr, a line in pieces at times
        sys.stderr.write("[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/image_version\n")
        sys.stderr.write("[method.cpp:810] Missing operator: ")
        sys.stderr.write("aten::foo\n[threadpool.cpp:66] Resetting threadpool")
        sys.stderr.write(" to 3 threads.\n")
        sys.stderr.write("a real error, unfinished")
    assert capsys.readouterr().err == "[method.cpp:810] Missing operator: aten::foo\na real error, unfinished"
    assert not type(sys.stderr).__name__.startswith("_Drop")  # the stream is given back


def test_set_threads_prints_no_executorch_info(capfd):
    # `compare --runtime onnxruntime` and `sweep --int8` printed "[cpuinfo_utils.cpp:71] Reading file …" lines
    pytest.importorskip("executorch.extension.pybindings.portable_lib")
    from executorch.extension.pybindings import portable_lib

    from convzoo.deploy.runtimes import set_threads

    before = torch.get_num_threads()
    pool = portable_lib._threadpool_get_thread_count()
    capfd.readouterr()
    try:
        set_threads(pool + 1)  # a reset: ExecuTorch logs "Resetting threadpool to N threads."
        assert portable_lib._threadpool_get_thread_count() == pool + 1  # it did reset
    finally:
        set_threads(pool)
        torch.set_num_threads(before)
    err = capfd.readouterr().err
    assert "threadpool.cpp" not in err and "cpuinfo_utils.cpp" not in err
