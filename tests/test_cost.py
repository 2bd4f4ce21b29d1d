"""convzoo.cost: analytic params / MACs / bytes, checked against the seed articles' worked numbers, torch's
FlopCounterMode, hand-derived formulas and published ResNet-50 figures."""

from __future__ import annotations

import json
import time
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app


def macs(module: nn.Module, shape: tuple[int, ...]) -> int:
    return cz.cost(module, shape).macs


# --- the seed articles' worked numbers ----------------------------------------------------------------------------


def test_article_7x7x3_to_5x5x128_standard_vs_depthwise_separable():
    assert macs(nn.Conv2d(3, 128, 3, bias=False), (1, 3, 7, 7)) == 86_400  # 5·5·128 outputs × 3·3·3
    sep = cz.DepthwiseSeparableConv2d(3, 128, 3, bias=False)
    assert sep.depthwise.cost((1, 3, 7, 7)).macs == 675  # 5·5·3 outputs × 3·3
    assert sep.pointwise.cost((1, 3, 5, 5)).macs == 9_600  # 5·5·128 outputs × 3
    report = cz.cost(sep, (1, 3, 7, 7))
    assert report.macs == 10_275 and report.output_shape == (1, 128, 5, 5)


def test_article_12x12x3_to_8x8x256_with_5x5():
    assert macs(cz.Conv2d(3, 256, 5, bias=False), (1, 3, 12, 12)) == 1_228_800  # 8·8·256 × 5·5·3


def test_article_5x5_image_spatially_separable_72_vs_81():
    assert macs(nn.Conv2d(1, 1, 3, bias=False), (1, 1, 5, 5)) == 81  # 9 outputs × 9
    # 3×1 conv: 3×5 = 15 outputs × 3 = 45; then 1×3: 3×3 = 9 outputs × 3 = 27
    assert macs(cz.SpatiallySeparableConv2d(1, 1, 3, bias=False), (1, 1, 5, 5)) == 45 + 27


def test_article_108_parameters():
    assert cz.cost(nn.Conv2d(3, 4, 3, bias=False), (1, 3, 8, 8)).params == 3 * 3 * 3 * 4


@pytest.mark.parametrize("m", [3, 5, 7])
def test_spatially_separable_ratio_is_2_over_m(m):
    same = [Fraction(macs(cz.SpatiallySeparableConv2d(1, 1, m, padding="same"), (1, 1, s, s)),
                     macs(nn.Conv2d(1, 1, m, padding="same"), (1, 1, s, s))) for s in (8, 32)]
    assert same == [Fraction(2, m)] * 2  # exact with 'same' padding
    errors = [abs(Fraction(macs(cz.SpatiallySeparableConv2d(1, 1, m), (1, 1, s, s)),
                           macs(nn.Conv2d(1, 1, m), (1, 1, s, s))) - Fraction(2, m)) for s in (10, 40, 160)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < Fraction(1, 20)  # 'valid': approaches 2/m


@pytest.mark.parametrize("n", [4, 16, 64, 256])
@pytest.mark.parametrize("k", [3, 5])
def test_depthwise_separable_ratio_is_1_over_n_plus_1_over_k2(n, k):
    shape = (1, 8, 10, 10)
    ratio = Fraction(macs(cz.DepthwiseSeparableConv2d(8, n, k, padding="same"), shape),
                     macs(nn.Conv2d(8, n, k, padding="same"), shape))
    assert ratio == Fraction(1, n) + Fraction(1, k * k)


# --- agreement with torch.utils.flop_counter ------------------------------------------------------------------------


def flop_counter_macs(module: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


@st.composite
def conv_configs(draw):
    dim = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 3))
    stride, dilation, padding = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(0, 2))
    transposed = draw(st.booleans())
    size = draw(st.integers(dilation * (k - 1) + 1, 7 if dim < 3 else 5))
    n = draw(st.integers(1, 2))
    return dim, groups, c_in, c_out, k, stride, dilation, padding, transposed, (n, c_in, *(size,) * dim)


@settings(max_examples=50, deadline=None)
@given(conv_configs())
def test_native_conv_macs_equal_flop_counter(config):
    dim, groups, c_in, c_out, k, stride, dilation, padding, transposed, shape = config
    if transposed:
        padding = min(padding, dilation * (k - 1) // 2)
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[dim - 1]
    else:
        cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1]
    module = cls(c_in, c_out, k, stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = torch.randn(shape)
    report = cz.cost(module, shape)
    assert report.macs == flop_counter_macs(module, x) > 0
    assert report.output_shape == tuple(module(x).shape)
    assert report.params == sum(p.numel() for p in module.parameters())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 2), st.integers(4, 8))
def test_convzoo_conv_cost_methods_equal_flop_counter(c_in, c_out, k, stride, size):
    shape = (2, c_in, size, size)
    x = torch.randn(shape)
    for module in (cz.Conv2d(c_in, c_out, k, stride, padding=1), cz.TransposedConv2d(c_in, c_out, k, stride),
                   cz.DepthwiseConv2d(c_in, c_in * c_out, k, stride=stride),
                   cz.PointwiseConv2d(c_in, c_out)):
        own = module.cost(shape)
        assert own.macs == flop_counter_macs(module, x), module
        assert own.output_shape == tuple(module(x).shape)


# --- families with their own analytic costs --------------------------------------------------------------------------


def test_deformable_v1_and_v2_hand_derived():
    shape = (2, 4, 5, 5)  # padding 1 keeps 5×5: HW_out = 25, N·HW_out = 50 positions, 9 taps
    v1 = cz.cost(cz.DeformConv2d(4, 6, 3, padding=1), shape)
    # offset conv 4 → 2·9 = 18 channels: 50·18·4·9 = 32,400; deformable conv 50·6·4·9 = 10,800
    assert v1.macs == 32_400 + 10_800
    # bilinear sampling: 4 multiply-adds per sampled value, N·C_in·9·25 = 1,800 values → 7,200
    assert v1.other_ops == 7_200
    assert v1.params == (18 * 36 + 18) + (6 * 36 + 6) == 888
    v2 = cz.cost(cz.DeformConv2d(4, 6, 3, padding=1, modulated=True), shape)
    # offset+mask conv 4 → 27: 50·27·36 = 48,600; + 10,800
    assert v2.macs == 48_600 + 10_800
    # sigmoid on 2·9·25 = 450 mask logits; sampling 7,200; mask multiplies 1,800 sampled values
    assert v2.other_ops == 450 + 7_200 + 1_800
    assert v2.params == (27 * 36 + 27) + 222
    assert v1.output_shape == v2.output_shape == (2, 6, 5, 5)


def test_dynamic_hand_derived():
    layer = cz.DynamicConv2d(4, 6, 3, num_kernels=4, reduction=2, padding=1)  # hidden = 4 // 2 = 2
    report = cz.cost(layer, (2, 4, 5, 5))
    fc1, fc2 = 2 * 4 * 2, 2 * 2 * 4  # N·C_in·hidden, N·hidden·K
    aggregation = 2 * 4 * 6 * 4 * 9  # N·K·C_out·C_in·k² = 1,728 (weight multiply-accumulates: MACs)
    conv = 2 * 25 * 6 * 4 * 9  # N·HW_out·C_out·C_in·k² = 10,800
    assert report.macs == fc1 + fc2 + aggregation + conv == 12_560
    # GAP 2·4·25 = 200, ReLU 2·2 = 4, softmax(z/T) 4·2·4 = 32, bias aggregation N·K·C_out = 48
    assert report.other_ops == 200 + 4 + 32 + 48
    assert report.params == 4 * 6 * 4 * 9 + 4 * 6 + (4 * 2 + 2) + (2 * 4 + 4) == 910


def test_hetconv_hand_derived_and_cheaper_than_dense_by_the_paper_factor():
    p, k = 4, 3
    layer = cz.HetConv2d(8, 6, k, padding=1, bias=False, p=p)
    report = cz.cost(layer, (2, 8, 5, 5))
    # per output: (C_in/p)·k² = 2·9 = 18 k×k MACs + (C_in − C_in/p) = 6 1×1 MACs; 2·25·6 = 300 outputs
    assert report.macs == 300 * (18 + 6) == 7_200
    assert report.params == 6 * 2 * 9 + 6 * 6 == sum(q.numel() for q in layer.parameters())
    dense = cz.cost(nn.Conv2d(8, 6, k, padding=1, bias=False), (2, 8, 5, 5)).macs
    assert Fraction(report.macs, dense) == (Fraction(1, p) * k * k + 1 - Fraction(1, p)) / (k * k)


def test_shuffle_moves_bytes_without_ops():
    report = cz.cost(cz.ChannelShuffle(2), (1, 4, 3, 3))
    assert (report.macs, report.other_ops, report.bytes) == (0, 0, 2 * 36 * 4)


CASES = [(f.name, dim) for f in cz.families() for dim in f.dims]


@pytest.mark.parametrize(("name", "dim"), CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_every_family_reports_params_and_output_shape(name, dim):
    module = cz.build(name, 8, 8, None, dim)
    assert callable(getattr(type(module), "cost", None))
    shape = (2, 8, *(6,) * dim)
    report = cz.cost(module, shape)  # before any forward: lazy parameters still uninitialised
    y = module(torch.randn(shape))  # materialises lazy parameters
    true_params = sum(p.numel() for p in module.parameters())
    assert [row.params for row in report.layers] == [true_params] and report.params == true_params
    assert report.output_shape == tuple(y.shape) == report.layers[0].output_shape
    assert report.macs > 0 and report.flops == 2 * report.macs
    assert report.bytes == 4 * module.cost(shape).elements
    assert cz.cost(module, shape, dtype=torch.float16).bytes * 2 == report.bytes


# --- models ---------------------------------------------------------------------------------------------------------------


class FunctionalNet(nn.Module):
    """Convs and a matmul run directly in forward: no leaf module owns them."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 4, 3, 3))
        self.proj = nn.Parameter(torch.randn(8 * 6 * 6, 5))
        self.head = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, stride=1, padding=0).relu()
        return self.head(y.flatten(1) @ self.proj)


def test_functional_convolution_is_counted_and_attributed():
    report = cz.cost(FunctionalNet(), (2, 4, 8, 8))
    conv = 2 * 6 * 6 * 8 * 4 * 9  # N·HW_out·C_out·C_in·k²
    matmul = 2 * 288 * 5
    head = 2 * 5 * 3
    assert report.macs == conv + matmul + head
    rows = {row.name: row for row in report.layers}
    assert rows[""].macs == conv + matmul and rows[""].type == "FunctionalNet"
    assert rows["head"].macs == head
    assert report.params == 8 * 4 * 9 + 288 * 5 + 5 * 3 + 3


def test_resnet50_published_numbers_and_speed():
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50()
    cz.cost(model, (1, 3, 224, 224))  # warm-up
    start = time.perf_counter()
    report = cz.cost(model, (1, 3, 224, 224))
    elapsed = time.perf_counter() - start
    assert report.params == 25_557_032
    assert abs(report.macs - 4.09e9) / 4.09e9 < 0.01  # fvcore: 4.09 GMACs; torchvision docs: "4.09 GFLOPS"
    assert report.output_shape == (1, 1000)
    assert elapsed < 1.0
    assert all(p.device.type == "cpu" for p in model.parameters())  # the original is untouched


def test_report_table_and_json():
    report = cz.cost(cz.build("depthwise_separable", 8, 16), (1, 8, 10, 10))
    assert "MACs" in report.table().title and "FLOPs = 2 × MACs" in report.table().title
    data = json.loads(json.dumps(report.to_dict()))
    assert data["macs"] == report.macs and data["flops"] == 2 * report.macs
    assert data["layers"][0]["output_shape"] == [1, 16, 10, 10]


# --- CLI ------------------------------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_family_target_json():
    result = runner.invoke(app, ["cost", "standard", "--in", "3", "--out", "128", "--input", "1,3,7,7", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["macs"] == 7 * 7 * 128 * 27  # families default to 'same' padding


def test_cli_family_default_input_table():
    result = runner.invoke(app, ["cost", "depthwise", "--in", "8", "--out", "8", "--kernel", "3"])
    assert result.exit_code == 0, result.output
    assert f"{56 * 56 * 8 * 9:,}" in result.stdout  # default input (1, in, 56, 56)


def test_cli_torchvision_target():
    result = runner.invoke(app, ["cost", "torchvision:resnet18", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == 11_689_512 and abs(data["macs"] - 1.814e9) / 1.814e9 < 0.01  # fvcore: 1.81 G


def test_cli_callable_target():
    result = runner.invoke(app, ["cost", "tests.test_cost:FunctionalNet", "--input", "2,4,8,8", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["macs"] == 2 * 6 * 6 * 8 * 4 * 9 + 2 * 288 * 5 + 2 * 5 * 3


@pytest.mark.parametrize("target", ["no_such_family", "torchvision:no_such_net", "no.such.module:f"])
def test_cli_unknown_target_exits_2_with_one_line(target):
    result = runner.invoke(app, ["cost", target])
    assert result.exit_code == 2
    message = result.stderr if hasattr(result, "stderr") else result.output
    assert len(message.strip().splitlines()) == 1 and "error" in message


def test_cost_leaves_the_callers_model_as_it_was():
    """cost runs the model in place with meta parameters: modes, forwards, hooks and weights must be restored."""
    import torchvision

    model = torchvision.models.resnet18().train()
    model.layer1[0].bn1.eval()  # a mixed-mode model
    before = {name: p.clone() for name, p in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    cz.cost(model, (1, 3, 64, 64))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    for name, value in model.state_dict().items():
        assert value.device.type == "cpu" and torch.equal(value, before[name]), name
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    assert torch.isfinite(model(x)).all()  # the batch norms still normalise (their forward is back)


def test_cli_input_error_comes_without_the_hooks_warnings():
    """A forward that raises (here: 32 channels into a 64-channel conv) must not also make cost's always_call hook
    raise: torch prints that as a UserWarning with its own source path before the one error line."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["cost", "standard", "--input", "1,32,8,8"])
    assert result.exit_code == 2 and "expects 64 input channels" in result.output
    assert not [w for w in caught if "always_call" in str(w.message)], [str(w.message) for w in caught]


@pytest.mark.parametrize("count, text", [(0, "0.0"), (144, "0.00014"), (6_272, "0.0063"), (49_000, "0.049"),
                                         (410_000, "0.41"), (999_999, "1.00"), (1_000_000, "1.0"),
                                         (568_716_544, "568.7"), (26_484_500_000, "26,484.5")])
def test_millions_never_prints_a_non_zero_count_as_zero(count, text):
    from convzoo.arithmetic.cost import millions

    assert millions(count) == text


def test_cli_tiny_layer_shows_its_macs():
    result = runner.invoke(app, ["cost", "standard", "--in", "1", "--out", "1", "--input", "1,1,4,4"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "0.00014 M MACs (FLOPs = 2 × MACs = 0.00029 M)" in text  # 16 outputs × 9 taps = 144 MACs
    assert "0.0 M" not in text


def test_cli_segmentation_model_builds_without_downloading(monkeypatch):
    """Segmentation and detection builders fetch a pretrained backbone unless weights_backbone=None."""
    import importlib

    import torch.hub

    def download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(importlib.import_module("torchvision.models._api"), "load_state_dict_from_url", download)
    result = runner.invoke(app, ["cost", "torchvision:lraspp_mobilenet_v3_large", "--input", "1,3,32,32", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.stdout)["output_shape"] == [1, 21, 32, 32]  # 21 VOC classes at the input's size
    from convzoo.models import source_model

    assert source_model("torchvision:fcn_resnet50").backbone is not None  # convert's loader builds offline too


def test_cli_torchvision_weights_are_refused():
    result = runner.invoke(app, ["cost", "torchvision:resnet18", "--arg", "weights=DEFAULT"])
    assert result.exit_code == 2
    assert "weights='DEFAULT': convzoo builds torchvision models with random weights and never downloads" in \
        result.output


def test_a_module_used_twice_counts_its_macs_twice_and_its_parameters_once():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)  # weight-tied: one module called twice
    weight = conv.weight.detach().clone()
    report = cz.cost(model, (1, 8, 8, 8))
    assert report.macs == 2 * 64 * 8 * 8 * 9 and report.params == 8 * 8 * 9 + 8
    assert not conv.weight.is_meta and torch.equal(conv.weight.detach(), weight)  # the model is left as it was


class FunctionalBlock(nn.Module):
    """conv → F.relu → SE gate (mean, sigmoid, product) → residual add → softmax over channels, all as functions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.conv(x))
        s = torch.sigmoid(y.mean((2, 3), keepdim=True))
        y = y * s + x.clone()
        return torch.softmax(y * (self.scale * 2), dim=1)  # scale · 2: arithmetic on a weight alone, folded away


def test_functional_ops_outside_modules_are_other_ops():
    # they were missed: ShuffleNet's final add + ReLU, GhostNet's SE gates and residual adds (14 % of its other ops)
    n, c, h = 2, 4, 5
    report = cz.cost(FunctionalBlock(), (n, c, h, h))
    e = n * c * h * h
    conv = cz.cost(nn.Conv2d(4, 4, 3, padding=1), (n, c, h, h))
    relu, mean, sigmoid, gate, add, scaled, softmax = e, e, n * c, e, e, e, 3 * e  # clone computes nothing
    assert report.other_ops == conv.other_ops + relu + mean + sigmoid + gate + add + scaled + softmax
    assert report.macs == conv.macs
    row = next(r for r in report.layers if r.name == "")
    assert row.other_ops == report.other_ops - conv.other_ops


def test_shuffle_unit_counts_its_closing_add_and_relu():
    from convzoo.models.shufflenet import ShuffleUnit

    unit = ShuffleUnit(240, 240, 3, 1)
    report = cz.cost(unit, (1, 240, 28, 28))
    modules = sum(r.other_ops for r in report.layers if r.input_shape != ())
    assert report.other_ops - modules == 2 * 240 * 28 * 28  # x + branch, then ReLU: one op per element each
