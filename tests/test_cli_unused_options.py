"""Options a command does not use are refused in one line (exit 2), never dropped with exit 0: the special pictures
of ``viz`` (every option but the ones each reads), the layer options of ``cost`` / ``rf`` / ``export`` for a model
target and ``--kernel`` for a family without a window, and ``figures -o`` under a missing folder. A 3-number
``--input`` for a 2-D target is said to be one unbatched (C, H, W) input when it fails. Values that do flow are
checked against hand counts of MACs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from convzoo.cli import app
from convzoo.viz.special import SPECIAL, special_options


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


# Every viz option a user can give, with a value the option accepts for a family picture.
VIZ_OPTIONS = {"--in": ["--in", "3"], "--out": ["--out", "3"], "--dim": ["--dim", "2"], "--size": ["--size", "5"],
               "--numbers": ["--numbers"], "--planes": ["--planes", "2"],
               "--input-values": ["--input-values", "1,2;3,4"],
               "--kernel-values": ["--kernel-values", "1,0;0,1"], "--no-title": ["--no-title"],
               "--kernel": ["--kernel", "3"], "--stride": ["--stride", "2"], "--padding": ["--padding", "1"],
               "--groups": ["--groups", "2"]}


@pytest.mark.parametrize("name, flag", [(name, flag) for name in SPECIAL for flag in VIZ_OPTIONS
                                        if flag.removeprefix("--") not in special_options(name)])
def test_a_special_picture_refuses_every_option_it_does_not_read(name, flag, tmp_path):
    # `viz sobel -o s.png --input-values "1,2;3,4" --no-title` wrote the default picture byte for byte, exit 0
    out = tmp_path / "s.png"
    result = CliRunner().invoke(app, ["viz", name, *VIZ_OPTIONS[flag], "-o", str(out)])
    assert f"error: {flag} is not used by the special picture {name!r}" in _one_error_line(result)
    assert not out.exists()


def test_a_special_picture_still_takes_what_it_reads_and_a_family_its_layer_options(tmp_path):
    assert special_options("overlap") == ("kernel", "stride") and special_options("sobel") == ()
    ok = CliRunner().invoke(app, ["viz", "overlap", "--kernel", "4", "--stride", "2", "-o", str(tmp_path / "o.png")])
    assert ok.exit_code == 0 and (tmp_path / "o.png").stat().st_size > 0, ok.output
    family = CliRunner().invoke(app, ["viz", "standard", "--in", "2", "--out", "3", "--dim", "1", "--no-title",
                                      "-o", str(tmp_path / "f.png")])
    assert family.exit_code == 0 and (tmp_path / "f.png").stat().st_size > 0, family.output


@pytest.mark.parametrize("command", ["cost", "rf"])
@pytest.mark.parametrize("target", ["mobilenet_v1_small", "torchvision:resnet18"])
def test_layer_options_are_refused_for_a_model(command, target):
    # `cost mobilenet_v1_small --in 7 --kernel 7 --dim 3` gave the model's unchanged cost, exit 0
    result = CliRunner().invoke(app, [command, target, "--in", "7", "--kernel", "7", "--dim", "3"])
    line = _one_error_line(result)
    assert f"--in 7, --kernel 7, --dim 3 given for {target!r}" in line and "shape a family's layer" in line


def test_export_refuses_layer_options_for_a_model(tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "mobilenet_v1_small", "--out", "5", "-o", str(out)])
    assert "--out 5 given for 'mobilenet_v1_small'" in _one_error_line(result) and not out.exists()


@pytest.mark.parametrize("command", ["cost", "rf"])
def test_kernel_is_refused_for_a_family_without_a_window(command):
    # `cost pointwise --kernel 5` was accepted (a 1×1 layer) while `viz pointwise --kernel 3` refused it
    line = _one_error_line(CliRunner().invoke(app, [command, "pointwise", "--kernel", "5"]))
    assert "family 'pointwise' takes no 'kernel' argument (--kernel 5 given)" in line


def test_layer_options_given_and_left_out_still_build_the_family():
    # hand counts: MACs = C_out · C_in · k^d · output positions ('same' padding at stride 1: 56 per dim)
    given = CliRunner().invoke(app, ["cost", "standard", "--in", "8", "--out", "16", "--kernel", "5", "--dim", "1",
                                     "--json"])
    assert given.exit_code == 0, given.output
    assert json.loads(given.output)["macs"] == 16 * 8 * 5 * 56
    default = CliRunner().invoke(app, ["cost", "pointwise", "--json"])  # 64 → 128, 1×1, 56×56
    assert default.exit_code == 0, default.output
    assert json.loads(default.output)["macs"] == 128 * 64 * 56 * 56


@pytest.mark.parametrize("args, quoted", [(["cost", "standard", "--input", "1,64,56"], "(1, 1, 64, 56)"),
                                          (["rf", "mobilenet_v1", "--input", "1,3,224"], "[1, 1, 3, 224]")])
def test_a_three_number_input_is_said_to_be_read_unbatched(args, quoted):
    # the message quoted (1, 1, 64, 56) / input[1, 1, 3, 224], shapes the user never gave, without saying why
    line = _one_error_line(CliRunner().invoke(app, args))
    given = args[-1]
    assert line.startswith(f"error: --input {given} has 3 numbers for a target of 4-D inputs, so it is read as one "
                           f"unbatched (C, H, W) input {tuple(int(v) for v in given.split(','))}")
    assert quoted in line  # the shape torch quotes, now explained first


def test_a_three_number_input_that_runs_is_counted_as_one_input():
    result = CliRunner().invoke(app, ["cost", "standard", "--in", "4", "--out", "8", "--input", "4,6,6", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["macs"] == 8 * 4 * 9 * 6 * 6


def test_figures_refuses_an_output_folder_inside_a_missing_one(tmp_path):
    # `figures -o /nonexist/f` made /nonexist and /nonexist/f; every other command refuses a missing folder
    target = tmp_path / "missing" / "figs"
    line = _one_error_line(CliRunner().invoke(app, ["figures", "-o", str(target), "--only",
                                                    "001-8.1_sobel-separable"]))
    assert f"-o {str(target)!r}: the folder {str(tmp_path / 'missing')!r} does not exist" in line
    assert not (tmp_path / "missing").exists()
    (tmp_path / "afile").write_text("x")
    assert "is a file" in _one_error_line(CliRunner().invoke(app, ["figures", "-o", str(tmp_path / "afile")]))
