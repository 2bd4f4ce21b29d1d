"""compare and bench on shapes a family refuses: a layer built at another shape is marked † with its shape and its
rule, a family that cannot be built or run there is reported in one line (or is one `error:` line, exit 2, when it
was all that was asked), and the error column is checked in eval mode (defined on one sample of one pixel).
No time is asserted; every shape is tiny."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.perf.compare import ShapeRefused, _max_error, build_layer

TINY = ["--batch", "1", "--size", "8", "--in", "8", "--out", "8", "--repeats", "1"]


def rule_of(name: str, in_channels: int, out_channels: int, kernel: int = 3) -> str:
    """The family's own rule: the first line of its constructor's ValueError, asked independently."""
    with pytest.raises(ValueError) as error:
        cz.build(name, in_channels, out_channels, kernel)
    return str(error.value).splitlines()[0]


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_build_layer_records_the_shape_it_built_and_the_rule():
    rule = rule_of("depthwise", 8, 12)
    built = build_layer("depthwise", 1, 8, 12, 8, 3, torch.float32, "cpu")
    assert (built.in_channels, built.out_channels, built.shape_rule) == (8, 8, rule)
    assert built.module.weight.shape == (8, 1, 3, 3)  # really an 8 → 8 depthwise layer
    as_asked = build_layer("grouped", 1, 8, 12, 8, 3, torch.float32, "cpu")
    assert (as_asked.out_channels, as_asked.shape_rule) == (12, "")
    with pytest.raises(ShapeRefused) as refused:
        build_layer("hetconv", 1, 8, 8, 8, 4, torch.float32, "cpu")
    assert (refused.value.family, refused.value.rule) == ("hetconv", rule_of("hetconv", 8, 8, 4))


def test_compare_marks_a_row_built_at_another_shape_in_table_json_and_csv(tmp_path):
    rule = rule_of("depthwise", 8, 12)
    shape = ["--batch", "1", "--size", "8", "--in", "8", "--out", "12", "--repeats", "1"]
    table = invoke("compare", "standard", "depthwise", *shape)
    assert table.exit_code == 0, table.output
    text = " ".join(table.output.split())  # the caption wraps: compare words, not lines
    assert "depthwise †" in text and "standard †" not in text
    assert f"† depthwise built 8 → 8, not as asked — its rule: {rule}" in text

    path = tmp_path / "rows.csv"
    result = invoke("compare", "standard", "depthwise", *shape, "--json", "--csv", str(path))
    assert result.exit_code == 0, result.output
    rows = {r["family"]: r for r in json.loads(result.stdout)["rows"]}
    assert (rows["depthwise"]["in_channels"], rows["depthwise"]["out_channels"]) == (8, 8)
    assert rows["depthwise"]["shape_rule"] == rule
    assert (rows["standard"]["in_channels"], rows["standard"]["out_channels"], rows["standard"]["shape_rule"]) \
        == (8, 12, "")
    # by hand: depthwise 8 → 8, 3×3 on 8×8: 8·8·8·9 MACs, 8·9 + 8 params; standard 8 → 12: 8·8·12·8·9 MACs
    assert rows["depthwise"]["macs"] == 8 * 8 * 8 * 9 and rows["depthwise"]["params"] == 8 * 9 + 8
    assert rows["depthwise"]["mac_ratio"] == pytest.approx((8 * 8 * 8 * 9) / (8 * 8 * 12 * 8 * 9))
    with open(path, newline="") as handle:
        written = {r["family"]: r for r in csv.DictReader(handle)}
    assert (written["depthwise"]["out_channels"], written["depthwise"]["shape_rule"]) == ("8", rule)


def test_bench_marks_a_family_built_at_another_shape(tmp_path):
    rule = rule_of("depthwise", 8, 12)
    out = tmp_path / "b.json"
    result = invoke("bench", "depthwise", "--batch", "1", "--size", "8", "--in", "8", "--out", "12",
                    "--no-backward", "-o", str(out), "--plot", str(tmp_path / "b.png"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "depthwise †" in text and f"† depthwise built 8 → 8, not as asked — its rule: {rule}" in text
    data = json.loads(out.read_text())
    family = {f["family"]: f for f in data["data"]["families"]}["depthwise"]  # standard: added as the baseline
    assert family["input_shape"] == [1, 8, 8, 8] and family["out_channels"] == 8 and family["shape_rule"] == rule
    assert [r[0] for r in data["tables"][0]["rows"]] == ["depthwise †", "standard"]
    assert rule in data["tables"][0]["notes"]


def test_compare_reports_a_family_it_cannot_build_and_runs_the_others():
    result = invoke("compare", "standard", "hetconv", "selective_kernel", "depthwise_separable", *TINY,
                    "--kernel", "2", "--json")
    assert result.exit_code == 0, result.output
    assert [r["family"] for r in json.loads(result.stdout)["rows"]] == ["standard", "depthwise_separable"]
    lines = result.stderr.splitlines()
    assert f"not run at this shape: hetconv — {rule_of('hetconv', 8, 8, 2)}" in lines
    assert f"not run at this shape: selective_kernel — {rule_of('selective_kernel', 8, 8, 2)}" in lines
    table = invoke("compare", "standard", "hetconv", *TINY, "--kernel", "2")
    assert table.exit_code == 0 and f"not run at this shape: hetconv — {rule_of('hetconv', 8, 8, 2)}" in table.stdout


@pytest.mark.parametrize("command", ["compare", "bench"])
def test_a_named_family_that_cannot_be_built_is_one_error_line(command, tmp_path):
    rule = rule_of("hetconv", 8, 8, 4)
    tiny = TINY if command == "compare" else TINY[:-2] + ["-o", str(tmp_path / "b.json"), "--plot", ""]
    result = invoke(command, "hetconv", *tiny, "--kernel", "4")
    assert result.exit_code == 2 and result.stdout.strip() == "", result.output
    assert result.stderr.splitlines() == [f"error: hetconv: {rule}"]
    both = invoke(command, "hetconv", "dcnv3", *tiny, "--kernel", "4")
    assert both.exit_code == 2
    assert both.stderr.splitlines() == [f"error: hetconv: {rule}; dcnv3: {rule_of('dcnv3', 8, 8, 4)}"]
    assert not (tmp_path / "b.json").exists()


def test_compare_at_size_1_checks_batchnorm_layers_in_eval_mode():
    """One pixel, two samples: acnet and repvgg train fine (two values per channel) and their error is checked on
    one sample in eval mode against reference.py."""
    result = invoke("compare", "standard", "acnet", "repvgg", "--batch", "2", "--size", "1", "--in", "8", "--out",
                    "8", "--repeats", "1", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [r["family"] for r in rows] == ["standard", "acnet", "repvgg"]
    assert all(r["max_error"] < 1e-5 for r in rows), rows


def test_compare_at_one_value_per_channel_reports_batchnorm_layers_it_cannot_train():
    """Batch 1, size 1: BatchNorm in training mode has one value per channel (torch refuses it), so acnet is reported
    in one line and the rest run; asked alone, it is one error line."""
    args = ["--batch", "1", "--size", "1", "--in", "8", "--out", "8", "--repeats", "1"]
    result = invoke("compare", "standard", "acnet", "grouped", *args, "--json")
    assert result.exit_code == 0, result.output
    assert [r["family"] for r in json.loads(result.stdout)["rows"]] == ["standard", "grouped"]
    assert any(line.startswith("not run at this shape: acnet — its forward refuses input (1, 8, 1, 1): Expected "
                               "more than 1 value per channel when training") for line in result.stderr.splitlines())
    alone = invoke("compare", "acnet", *args)
    assert alone.exit_code == 2 and alone.stderr.startswith("error: acnet: its forward refuses input (1, 8, 1, 1)")


def test_the_error_check_leaves_modes_and_running_statistics_as_they_were():
    module = cz.build("acnet", 4, 4, 3)
    module.branches[next(iter(module.branches))].eval()  # a submodule in its own mode stays in it
    modes = [m.training for m in module.modules()]
    x = torch.randn(1, 4, 1, 1)
    stats = [b.clone() for b in module.buffers()]
    assert _max_error(module, x) < 1e-5
    assert [m.training for m in module.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(stats, module.buffers()))
