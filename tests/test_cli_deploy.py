"""``convzoo export``, ``convert -o`` (a file ``torch.load`` reads with its defaults) and the CLI's one-line
errors for bad paths and impossible requests (exit code 2, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import convzoo
from convzoo.cli import app


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for part in parts:
        assert part in result.output, (part, result.output)


def test_export_family_checks_the_file_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    path = tmp_path / "s.onnx"
    result = invoke("export", "grouped", "-o", str(path), "--dynamic-batch", "--in", "4", "--out", "8",
                    "--input", "2,4,8,8")
    assert result.exit_code == 0, result.output
    assert path.exists()
    for batch in (2, 1, 3):
        assert f"at batch {batch}: relative error" in result.output
    from convzoo.deploy.onnx import export_onnx

    check = export_onnx(convzoo.build("grouped", 4, 8), (2, 4, 8, 8), str(tmp_path / "t.onnx"), dynamic_batch=True)
    assert set(check.errors) == {1, 2, 3} and max(check.errors.values()) < 1e-4


def test_export_bad_path_and_target(tmp_path):
    one_line_error(invoke("export", "standard", "-o", str(tmp_path / "missing" / "x.onnx")), "-o", "does not exist")
    one_line_error(invoke("export", "nosuch", "-o", str(tmp_path / "x.onnx")), "unknown target 'nosuch'")


def test_convert_output_is_a_state_dict_and_recipe(tmp_path):
    from convzoo.models import load_converted

    path = tmp_path / "c.pt"
    result = invoke("convert", "mobilenet_v1_small", "--to", "grouped", "-o", str(path))
    assert result.exit_code == 0, result.output
    saved = torch.load(path)  # torch's defaults: weights_only=True
    assert saved["recipe"]["source"] == "mobilenet_v1_small" and saved["recipe"]["to"] == "grouped"
    model = load_converted(str(path))
    for name, tensor in saved["state_dict"].items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_convert_output_folder_checked_before_the_work(tmp_path):
    one_line_error(invoke("convert", "mobilenet_v1_small", "-o", str(tmp_path / "no" / "o.pt")), "-o",
                   "does not exist")


def test_load_converted_rejects_other_files(tmp_path):
    from convzoo.models import load_converted

    path = tmp_path / "x.pt"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="not a file written by `convzoo convert -o`"):
        load_converted(str(path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_on_cuda_without_a_gpu(tmp_path):
    one_line_error(invoke("train", "--device", "cuda", "--out", str(tmp_path)), "--device 'cuda'",
                   "no CUDA device")


def test_train_resume_without_a_checkpoint(tmp_path):
    one_line_error(invoke("train", "--resume", "--out", str(tmp_path / "run")), "--resume", "no checkpoint")


def test_unwritable_output_is_one_line(tmp_path):
    """The app's last guard: a path that cannot be written ends in one line naming it (viz -o here)."""
    result = invoke("viz", "standard", "-o", str(tmp_path / "missing" / "a.png"))
    one_line_error(result, "missing")


def test_tables_are_not_cut_when_piped(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-m", "convzoo", "cost", "mobilenet_v1"], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout
    assert "569,000,000" in out.stdout.replace(" ", "") or "M MACs" in out.stdout


@pytest.mark.parametrize("args, parts", [
    (("compare", "--batch", "0", "standard"), ("--batch=0", "positive")),
    (("compare", "--size", "0", "standard"), ("--size=0", "positive")),
    (("compare", "--repeats", "0", "standard"), ("--repeats=0", "positive")),
    (("compare", "--csv", "/nonexistent/x.csv", "standard"), ("--csv", "/nonexistent", "does not exist")),
    (("bench", "--batch", "0", "standard"), ("--batch=0", "positive")),
    (("bench", "--kernel", "0", "standard"), ("--kernel=0", "positive")),
    (("bench", "-o", "/nonexistent/b.json", "standard"), ("-o", "/nonexistent", "does not exist")),
    (("bench", "--plot", "/nonexistent/b.png", "standard"), ("--plot", "/nonexistent", "does not exist")),
], ids=lambda v: " ".join(v) if isinstance(v, tuple) and v[0] in ("compare", "bench") else None)
def test_compare_and_bench_check_options_before_timing(monkeypatch, args, parts):
    """A bad count or output path is one line naming the option, exit code 2, and no timing starts."""
    import convzoo.perf.bench
    import convzoo.perf.compare

    def started(*_, **__):
        raise AssertionError("timing started before the options were checked")

    monkeypatch.setattr(convzoo.perf.compare, "run_compare_command", started)
    monkeypatch.setattr(convzoo.perf.bench, "run_bench_command", started)
    result = invoke(*args)
    one_line_error(result, *parts)
    assert len(result.output.strip().splitlines()) == 1, result.output


# --- issue 25: four inputs that ended in a traceback --------------------------------------------------------------


def test_cost_of_the_lazy_global_depthwise_is_sized_from_the_input():
    """GDC's kernel is the feature map: --input 1,64,7,7 sizes it (weight 128×1×7×7), as a first forward would."""
    import json

    result = invoke("cost", "global_depthwise", "--input", "1,64,7,7", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["output_shape"] == [1, 128, 1, 1]
    assert report["weight_params"] == 128 * 7 * 7 and report["params"] == 128 * 7 * 7 + 128
    assert report["macs"] == 128 * 7 * 7  # one multiply-add per weight at the one output position


@pytest.mark.parametrize("name", ["involution", "partial"])
def test_cost_and_export_of_a_width_keeping_family_build_it_c_in_to_c_in_when_out_is_not_given(name, tmp_path):
    """involution and partial conv need C_out = C_in: the default --out 128 failed both commands with their rule;
    now, --out not given, they are built 64 → 64 with a note on stderr; --out 128 given is still refused."""
    import json

    result = invoke("cost", name, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["input_shape"] == report["output_shape"] == [1, 64, 56, 56]
    assert report["params"] == sum(p.numel() for p in convzoo.build(name, 64, 64).parameters())
    assert f"note: built {name} 64 → 64" in result.stderr and "give --out to choose" in result.stderr
    one_line_error(invoke("cost", name, "--out", "128"), "out_channels=128 must equal in_channels=64")
    result = invoke("export", name, "-o", str(tmp_path / "w.onnx"), "--in", "8", "--input", "1,8,10,10")
    assert result.exit_code == 0 and "relative error" in result.stdout, result.output
    one_line_error(invoke("cost", "standard", "--out", "0"), "out_channels")


def test_convert_to_an_unwritable_path_fails_before_the_conversion(monkeypatch):
    """/proc exists and root may 'write' there by os.access, yet no file can be created: found before any work."""
    import importlib

    def started(*_, **__):
        raise AssertionError("the conversion started before -o was checked")

    monkeypatch.setattr(importlib.import_module("convzoo.conversion.convert"), "convert", started)
    result = invoke("convert", "torchvision:resnet18", "-o", "/proc/x.pt")
    one_line_error(result, "-o '/proc/x.pt'", "cannot be written")
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not os.path.exists("/proc/x.pt")


@pytest.mark.parametrize("args, parts", [
    (("compare", "standard", "--device", "tpu"), ("--device 'tpu'", "cpu or cuda")),
    (("train", "--device", "tpu"), ("--device 'tpu'", "auto, cpu or cuda")),
    (("verify", "standard", "--seed", "99999999999999999999"), ("--seed 99999999999999999999", "between 0 and")),
])
def test_unknown_device_and_huge_seed_are_one_line(args, parts):
    result = invoke(*args)
    one_line_error(result, *parts)
    assert len(result.output.strip().splitlines()) == 1, result.output


class FixedWidthNet(torch.nn.Module):
    """A user's model that checks its input the way torchvision's ViT does: torch._assert, an AssertionError."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch._assert(x.shape[-1] == 16, f"Wrong image width! Expected 16 but got {x.shape[-1]}!")
        return self.conv(x)


@pytest.mark.parametrize("command", ["cost", "convert", "export"])
def test_a_models_assertion_on_the_input_is_one_line_naming_model_and_input(tmp_path, command):
    target = "tests.test_cli_deploy:FixedWidthNet"
    extra = ("-o", str(tmp_path / "m.onnx")) if command == "export" else ()
    result = invoke(command, target, "--input", "1,3,16,9", *extra)
    one_line_error(result, f"{target} rejects the input (1, 3, 16, 9)", "Wrong image width! Expected 16 but got 9!")
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_a_torch_shape_error_names_model_and_input():
    result = invoke("cost", "torchvision:resnet18", "--input", "1,3,224,224,2")
    one_line_error(result, "torchvision:resnet18 on input (1, 3, 224, 224, 2)", "Expected 3D (unbatched) or 4D")


@pytest.mark.parametrize("command", ["cost", "convert", "export"])
@pytest.mark.parametrize("value, rule", [
    ("1,64,a,5", "--input '1,64,a,5': 'a' is not an integer; give comma-separated sizes such as 1,3,224,224"),
    (",", "--input ',': '' is not an integer"),
    ("1,64,-5,5", "--input '1,64,-5,5': size -5 is negative; every size must be 0 or more"),
])
def test_bad_input_shape_names_the_option_the_value_and_the_rule(tmp_path, command, value, rule):
    target = "mobilenet_v1_small" if command == "convert" else "standard"
    extra = ("-o", str(tmp_path / "m.onnx")) if command == "export" else ()
    result = invoke(command, target, "--input", value, *extra)
    one_line_error(result, rule)
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize("args, message", [
    (("train", "--lr", "-1"), "error: lr=-1.0 must be positive"),
    (("train", "--width-mult", "0"), "error: width_mult=0.0 must be positive"),
    (("sweep", "--seeds", "0"), "error: seeds=0 must be a positive integer"),
    (("sweep", "--workers", "0"), "error: workers=0 must be a positive integer"),
    (("sweep", "--trial-threads", "0"), "error: threads=0 (--trial-threads: torch CPU threads per trial) must be"),
])
def test_train_and_sweep_name_only_the_bad_value(tmp_path, args, message):
    result = invoke(*args, "--out", str(tmp_path / "run"))
    one_line_error(result, message)
    assert "0.25" not in result.output and "workers=1" not in result.output and "seeds=1" not in result.output


@pytest.mark.parametrize("command, what", [("train", "metrics.jsonl"), ("sweep", "sweep.json")])
def test_train_and_sweep_out_that_is_a_file_says_a_folder_is_expected(tmp_path, command, what):
    path = tmp_path / "a_file.txt"
    path.write_text("x")
    one_line_error(invoke(command, "--out", str(path)), f"out='{path}' is a file: give a folder", what)
