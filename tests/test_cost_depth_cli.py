"""CostReport.by_depth (module subtotals, as fvcore's flop_count_table(max_depth) and torchinfo's depth show them)
and the CLI's ``cost --depth / --dtype`` and ``rf``: subtotals against hand counts and against sums of the report's
own rows grouped by name here, the CLI through typer's CliRunner."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.models import MODELS

FIELDS = ("params", "macs", "activation_macs", "other_ops", "bytes")


class Block(nn.Module):
    """x + conv2(relu(bn(conv1(x)))): the ReLU and the add run as functions in the block's own forward."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.bn(self.conv1(x))))


class Small(nn.Module):
    """stem → two Blocks → spatial mean (in the model's own forward) → Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.blocks = nn.Sequential(Block(4, 8), Block(4, 8))
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean((2, 3)))


class Shared(nn.Module):
    """One Block run twice (a module called twice), and a conv reachable under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Block(4, 8)
        self.conv = nn.Conv2d(4, 4, 1, bias=False)
        self.alias = self.conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alias(self.block(self.block(self.conv(x))))


# Hand counts for Small on (1, 3, 8, 8), fvcore's convention (MACs of conv / linear weights): 64 positions.
STEM = {"params": 3 * 4 * 9 + 4, "macs": 64 * 4 * 27, "other_ops": 0}
BLOCK = {"params": 4 * 8 * 9 + 2 * 8 + 8 * 4 + 4,  # conv1, bn (weight, bias), conv2 (+ bias)
         "macs": 64 * 8 * 36 + 64 * 4 * 8,
         "other_ops": 2 * 64 * 8 + 64 * 8 + 64 * 4}  # bn 2/element, F.relu 1/element, the add 1/element
BLOCK_OWN = {"params": 0, "macs": 0, "other_ops": 64 * 8 + 64 * 4, "bytes": 4 * ((512 + 512) + (256 + 256 + 256))}
HEAD = {"params": 4 * 10 + 10, "macs": 40, "other_ops": 0}
MODEL_OWN = {"params": 0, "macs": 0, "other_ops": 64 * 4}  # .mean((2, 3)): one op per element read


def module_of(row_name: str) -> str:
    """The module a row belongs to: a second call's row is named 'name (call k)'."""
    return re.sub(r" \(call \d+\)$", "", row_name)


def expected(report: cz.CostReport, name: str, own: bool) -> dict[str, int]:
    """Sums of the report's rows under module ``name`` (own: the rows named exactly ``name``), params of the first
    call only: computed here from the rows, not by by_depth."""
    def under(row_name: str) -> bool:
        module = module_of(row_name)
        if own:
            return module == name
        return name == "" or module == name or module.startswith(name + ".")

    rows = [r for r in report.layers if under(r.name)]
    sums = {f: sum(getattr(r, f) for r in rows) for f in FIELDS}
    sums["params"] = sum(r.params for r in rows if "(call " not in r.name)
    return {"rows": len(rows), **sums}


def check_lines(report: cz.CostReport, depth: int) -> list:
    lines = report.by_depth(depth)
    assert lines[0].name == "" and lines[0].level == 0
    for f in FIELDS:  # the model's line is the report's totals
        assert getattr(lines[0], f) == getattr(report, f), f
    assert lines[0].rows == len(report.layers)
    for line in lines:
        assert line.level <= depth + line.own
        got = {"rows": line.rows, **{f: getattr(line, f) for f in FIELDS}}
        assert got == expected(report, line.name, line.own), (line.name, line.own)
    # children (and an own line) add up to their parent
    for i, line in enumerate(lines):
        if line.own:
            continue
        kids = []
        for later in lines[i + 1:]:
            if later.level <= line.level:
                break
            if later.level == line.level + 1:
                kids.append(later)
        if kids:
            for f in (*FIELDS, "rows"):
                assert sum(getattr(k, f) for k in kids) == getattr(line, f), (line.name, f)
    return lines


def test_small_model_subtotals_equal_hand_counts():
    report = cz.cost(Small(), (1, 3, 8, 8))
    lines = {(g.name, g.own): g for g in check_lines(report, 1)}
    assert [n for n, _ in lines] == ["", "stem", "blocks", "head", ""]
    for name, hand in (("stem", STEM), ("blocks", {k: 2 * v for k, v in BLOCK.items()}), ("head", HEAD)):
        for key, value in hand.items():
            assert getattr(lines[name, False], key) == value, (name, key)
    for key, value in MODEL_OWN.items():
        assert getattr(lines["", True], key) == value, key
    assert report.params == STEM["params"] + 2 * BLOCK["params"] + HEAD["params"]

    deep = check_lines(report, 3)
    block = {(g.name, g.own): g for g in deep if g.name.startswith("blocks.0")}
    assert [n for n, _ in block] == ["blocks.0", "blocks.0.conv1", "blocks.0.bn", "blocks.0.conv2", "blocks.0"]
    assert block["blocks.0", False].type == "Block" and block["blocks.0", False].level == 2
    for key, value in BLOCK.items():
        assert getattr(block["blocks.0", False], key) == value, key
    for key, value in BLOCK_OWN.items():
        assert getattr(block["blocks.0", True], key) == value, key
    assert block["blocks.0.conv1", False].macs == 64 * 8 * 36 and block["blocks.0.bn", False].params == 16


def test_depth_zero_is_the_model_alone_and_negative_depth_is_refused():
    report = cz.cost(Small(), (1, 3, 8, 8))
    (only,) = report.by_depth(0)
    assert (only.params, only.macs, only.bytes) == (report.params, report.macs, report.bytes)
    with pytest.raises(ValueError, match=r"depth=-1 must be an int >= 0"):
        report.by_depth(-1)
    with pytest.raises(ValueError, match=r"depth=1.5"):
        report.by_depth(1.5)  # type: ignore[arg-type]


def test_a_module_called_twice_counts_its_params_once():
    report = cz.cost(Shared(), (1, 4, 6, 6))
    assert any(r.name.endswith("(call 2)") for r in report.layers)
    lines = {(g.name, g.own): g for g in check_lines(report, 1)}
    block = lines["block", False]
    assert block.params == BLOCK["params"]  # once, though it ran twice
    assert block.macs == 2 * (36 * 8 * 36 + 36 * 4 * 8)  # both calls' MACs, 36 positions
    conv = lines["conv", False]  # 'alias' is the same module: its call is conv's second
    assert ("alias", False) not in lines
    assert conv.params == 16 and conv.macs == 2 * 36 * 4 * 4
    assert sum(g.params for g in lines.values() if g.level == 1) == report.params
    check_lines(report, 2)


@pytest.mark.parametrize("name", ["mobilenet_v1_small", "shufflenet_v1_small", "ghostnet_1_0", "fasternet_t0"])
def test_convzoo_models_subtotals_add_up_at_every_depth(name):
    model = MODELS[name]()
    report = cz.cost(model, getattr(model, "default_input_shape", (1, 3, 224, 224)))
    for depth in range(5):
        check_lines(report, depth)


def test_torchvision_resnet_residual_adds_are_the_blocks_own_lines():
    import torchvision

    report = cz.cost(torchvision.models.resnet18(), (1, 3, 64, 64))
    lines = check_lines(report, 3)
    own = {g.name: g for g in lines if g.own}
    # BasicBlock's forward adds the shortcut and applies its ReLU module; the add is its own (1 op / element)
    block = own["layer1.0"]
    assert block.other_ops == 64 * 16 * 16 and block.macs == 0
    for depth in (0, 1, 2, 4):
        check_lines(report, depth)


# --- the CLI ----------------------------------------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("error: ")
    for part in parts:
        assert part in result.output, (part, result.output)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table as cells (the lines that start with '│')."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in text.splitlines()
            if line.lstrip().startswith("│")]


def test_cli_depth_json_has_the_groups_and_they_match_the_report():
    result = invoke("cost", "ghostnet_1_0", "--depth", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    model = MODELS["ghostnet_1_0"]()
    report = cz.cost(model, getattr(model, "default_input_shape", (1, 3, 224, 224)))
    assert data["depth"] == 2 and data["groups"] == [g.to_dict() for g in report.by_depth(2)]
    top = [g for g in data["groups"] if g["level"] == 1]
    assert [g["name"] for g in top] == ["stem", "blocks", "head"]
    for key in ("params", "macs", "other_ops", "bytes"):
        assert sum(g[key] for g in top) == data[key], key  # GhostNet's own forward runs nothing of its own
    assert len(data["layers"]) == len(report.layers)  # the rows stay in the JSON


def test_cli_depth_table_shows_the_modules_to_that_depth():
    result = invoke("cost", "shufflenet_v1_small", "--depth", "1")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    model = MODELS["shufflenet_v1_small"]()
    report = cz.cost(model, getattr(model, "default_input_shape", (1, 3, 224, 224)))
    assert [r[0] for r in rows] == ["stem", "stages", "pool", "classifier", "total"]
    stages = next(g for g in report.by_depth(1) if g.name == "stages")
    assert rows[1][1:6] == ["Sequential", f"{stages.rows:,}", f"{stages.params:,}", f"{stages.macs:,}",
                            f"{stages.other_ops:,}"]
    assert rows[-1][3:5] == [f"{report.params:,}", f"{report.macs:,}"]


def test_cli_depth_own_line_for_functional_ops():
    result = invoke("cost", "torchvision:resnet18", "--input", "1,3,64,64", "--depth", "2")
    assert result.exit_code == 0, result.output
    names = [r[0] for r in table_rows(result.stdout)]
    assert "layer1.0" in names and "layer1.0.conv1" not in names
    result = invoke("cost", "torchvision:resnet18", "--input", "1,3,64,64", "--depth", "3")
    rows = {r[0]: r for r in table_rows(result.stdout)}
    assert rows["layer1.0 (own)"][4] == "0" and rows["layer1.0 (own)"][5] == f"{64 * 16 * 16:,}"  # the add


@pytest.mark.parametrize("value", ["-1", "x", "1.5", ""])
def test_cli_depth_must_be_a_whole_number(value):
    one_line_error(invoke("cost", "mobilenet_v1_small", "--depth", value), "--depth", "whole number >= 0")


@pytest.mark.parametrize("dtype, size", [("float16", 2), ("bfloat16", 2), ("float32", 4), ("float64", 8)])
def test_cli_dtype_sets_the_element_size_of_the_bytes(dtype, size):
    # one bias-free 3x3 conv 3 -> 8 on 1x3x6x6 ('same'): reads 108 inputs and 216 weights, writes 288 outputs
    result = invoke("cost", "standard", "--in", "3", "--out", "8", "--input", "1,3,6,6", "--dtype", dtype, "--json",
                    "--arg", "bias=False")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dtype"] == f"torch.{dtype}"
    assert data["bytes"] == (108 + 216 + 288) * size
    assert data["macs"] == 36 * 8 * 27


def test_cli_dtype_with_depth_on_a_model():
    half = json.loads(invoke("cost", "mobilenet_v1_small", "--dtype", "float16", "--depth", "1", "--json").stdout)
    full = json.loads(invoke("cost", "mobilenet_v1_small", "--depth", "1", "--json").stdout)
    assert 2 * half["bytes"] == full["bytes"] and half["macs"] == full["macs"]
    assert [2 * g["bytes"] for g in half["groups"]] == [g["bytes"] for g in full["groups"]]


@pytest.mark.parametrize("value", ["int8", "fp16", "half", "torch.float16", "float"])
def test_cli_dtype_names_the_choices(value):
    one_line_error(invoke("cost", "mobilenet_v1_small", "--dtype", value), f"--dtype {value!r}",
                   "float16, bfloat16, float32, float64")


# --- convzoo rf -------------------------------------------------------------------------------------------------------


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


@pytest.mark.parametrize("target, args, shape", [
    ("mobilenet_v1_small", (), (1, 3, 32, 32)),
    ("torchvision:resnet18", ("--input", "1,3,64,64"), (1, 3, 64, 64)),
    ("dilated", ("--in", "4", "--out", "4", "--dim", "1", "--input", "1,4,20"), (1, 4, 20)),
])
def test_rf_table_and_json_are_the_python_apis(target, args, shape):
    from convzoo.cli.common import resolve_target

    module, _ = resolve_target(target, 4 if "dilated" in target else 64, 4 if "dilated" in target else None, 3,
                               1 if "dilated" in target else 2)
    field = cz.receptive_field(module, shape)
    table = invoke("rf", target, *args)
    assert table.exit_code == 0, table.output
    rows = table_rows(table.stdout)
    assert [r[0] for r in rows] == [r.name for r in field.layers] + ["output"]
    for cells, row in zip(rows, [*field.layers, field.output]):
        assert cells[2:6] == [_join(row.size), _join(row.stride), _join(row.start), "yes" if row.global_path else ""]
    data = json.loads(invoke("rf", target, *args, "--json").stdout)
    assert data["layers"] == [r.to_dict() for r in field.layers] and data["output"] == field.output.to_dict()


def test_rf_resnet18_last_conv_is_the_published_435():
    result = invoke("rf", "torchvision:resnet18")
    rows = {r[0]: r for r in table_rows(result.stdout)}
    assert rows["layer4.1.conv2"][2:4] == ["435, 435", "32, 32"]  # 7, 11 after the pool, 43, 99, 211, 435
    assert invoke("receptive-field", "torchvision:resnet18").stdout == result.stdout  # the long name: same command


class Stack(nn.Module):
    """3x3 s1 → 3x3 s2 (padding 1) → 3x3 dilation 2: r = 1 + 2·1 = 3, + 2·1 = 5, + (5 − 1)·2 = 13; j 1, 2, 2."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 1, 3)
        self.b = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.c = nn.Conv2d(1, 1, 3, dilation=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x)))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) if x.sum() > 0 else x  # data-dependent: torch.fx cannot trace it


def test_rf_hand_counted_stack(monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    rows = {r[0]: r for r in table_rows(invoke("rf", "test_cost_depth_cli:Stack", "--input", "1,1,32,32").stdout)}
    # start: a 0 + 1 = 1; b 1 + (1 − 1)·1 = 1 (padding 1 cancels the half window); c 1 + (2 − 0)·2 = 5
    assert [rows[n][2:5] for n in ("a", "b", "c")] == [["3, 3", "1, 1", "1, 1"], ["5, 5", "2, 2", "1, 1"],
                                                       ["13, 13", "2, 2", "5, 5"]]


@pytest.mark.parametrize("args, parts", [
    (("nosuch",), ("unknown target 'nosuch'",)),
    (("torchvision:no_such_net",), ("no_such_net",)),
    (("no.such.module:f",), ("cannot import 'no.such.module:f'",)),
    (("standard", "--input", "1,3,8,8"), ("standard on input (1, 3, 8, 8)", "expects 64 input channels")),
    (("standard", "--input", "1,64"), ("must be (N, C, *spatial)",)),
    (("standard", "--input", "1,a,3"), ("--input '1,a,3'",)),
    (("mobilenet_v1_small", "--arg", "nope=1"), ("nope=1 is neither one of its arguments",)),
    (("test_cost_depth_cli:Untraceable", "--input", "1,1,8,8"), ("cannot trace Untraceable with torch.fx",)),
    (("test_cost_depth_cli:Untraceable",), ("has no default input shape", "--input")),
    (("builtins:dict",), ("not a torch.nn.Module",)),
])
def test_rf_errors_are_one_line(monkeypatch, args, parts):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    one_line_error(invoke("rf", *args), *parts)


# --- --by-type: subtotals per operator type ---------------------------------------------------------------------------


def test_by_type_lines_add_up_and_conv_macs_match_a_hand_count():
    """ResNet-18: the Conv2d line's MACs are what forward hooks on torch's own convs count (output elements ×
    C_in/groups × k²); every line's rows, params, MACs, other ops and bytes add up to the report's totals; most MACs
    first."""
    import torchvision

    model = torchvision.models.resnet18()
    hand = 0

    def count(conv, inputs, output) -> None:
        nonlocal hand
        hand += output.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    report = cz.cost(model, (1, 3, 64, 64))
    lines = report.by_type()
    by = {g.type: g for g in lines}
    assert by["Conv2d"].macs == hand and by["Conv2d"].rows == 20
    assert by["Linear"].macs == 512 * 1000 and by["BatchNorm2d"].macs == 0
    for field in ("rows", "params", "macs", "other_ops", "bytes"):
        total = len(report.layers) if field == "rows" else getattr(report, field)
        assert sum(getattr(g, field) for g in lines) == total, field
    assert [g.macs for g in lines] == sorted((g.macs for g in lines), reverse=True)


def test_by_type_counts_a_module_called_twice_once_for_its_params():
    report = cz.cost(Shared(), (1, 4, 6, 6))
    lines = report.by_type()
    assert sum(g.params for g in lines) == report.params and sum(g.macs for g in lines) == report.macs


def test_cli_by_type_table_json_and_refusal():
    result = CliRunner().invoke(app, ["cost", "mobilenet_v1_small", "--by-type"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "by operator type" in result.output and "% of MACs" in result.output and "Conv2d" in result.output
    result = CliRunner().invoke(app, ["cost", "mobilenet_v1_small", "--by-type", "--json"])
    document = json.loads(result.stdout)
    assert sum(g["macs"] for g in document["by_type"]) == document["macs"]
    refused = CliRunner().invoke(app, ["cost", "mobilenet_v1_small", "--by-type", "--depth", "2"])
    assert refused.exit_code == 2 and "--by-type and --depth 2 are two groupings" in refused.output
