"""convert: exact where the family can represent a conv, optimal low rank where it cannot, honest report."""

from __future__ import annotations

import importlib
from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app


def effective_kernel(layer: nn.Module, in_channels: int, kernel: int) -> torch.Tensor:
    """Measure the dense kernel a linear layer computes: on a k×k input the centre output (the only one without
    padding, or the middle one with 'same' padding) is y[o] = Σ W[o, c, i, j]·x[c, i, j], so its Jacobian
    ∂y/∂x is W (biases do not enter a Jacobian)."""
    x = torch.zeros(1, in_channels, kernel, kernel, dtype=torch.float64)

    def centre(inp: torch.Tensor) -> torch.Tensor:
        y = layer(inp)
        return y[0, :, y.shape[2] // 2, y.shape[3] // 2]

    jacobian = torch.autograd.functional.jacobian(centre, x)
    return jacobian.reshape(-1, in_channels, kernel, kernel)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def source_conv(cin: int = 6, cout: int = 5, k: int = 3, groups: int = 1, seed: int = 0, padding: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=padding, groups=groups, bias=True, dtype=torch.float64))


@pytest.mark.parametrize("family", ["dynamic", "deformable", "deformable_v2", "convolution", "standard"])
def test_exact_families_leave_resnet18_unchanged(family):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    new, report = cz.convert(model, family)
    assert len(report.converted) == 20 and not report.skipped
    assert all(row.rel_error == 0.0 for row in report.layers)
    with torch.no_grad():
        assert relative(new.eval()(x), model(x)) < 1e-5
    assert type(new.conv1).__name__ != "Conv2d" or family in ("standard", "convolution")
    assert isinstance(model.conv1, nn.Conv2d) and type(model.conv1) is nn.Conv2d  # the original is untouched


@pytest.mark.parametrize(("family", "rank_arg", "full_rank"), [
    ("spatially_separable", "mid_channels", 15),  # rank of W reshaped to (C_in·k, C_out·k) = min(18, 15)
    ("depthwise_separable", "depth_multiplier", 5),  # rank of each channel's (C_out, k²) slice = min(5, 9)
])
def test_svd_conversions_exact_at_full_rank_and_monotone(family, rank_arg, full_rank):
    source = source_conv()
    weight = source[0].weight.detach()
    errors = []
    for rank in range(1, full_rank + 1):
        new, report = cz.convert(source, family, force=True, **{rank_arg: rank})  # ranks past any gain too
        measured = relative(effective_kernel(new[0], 6, 3), weight)
        assert report.layers[0].rel_error == pytest.approx(measured, abs=1e-9)  # the report tells the truth
        errors.append(measured)
    assert errors[-1] < 1e-10
    assert all(later <= earlier + 1e-12 for earlier, later in zip(errors, errors[1:])), errors
    assert errors[0] > 0.1  # a random kernel is far from rank 1


def test_flattened_is_exact_on_rank_one_filters_and_reports_truthfully():
    source = source_conv()
    a, b, c = (torch.randn(5, n, dtype=torch.float64) for n in (6, 3, 3))
    with torch.no_grad():
        source[0].weight.copy_(torch.einsum("oc,oi,oj->ocij", a, b, c))
    new, report = cz.convert(source, "flattened")
    assert report.layers[0].rel_error < 1e-10
    assert relative(effective_kernel(new[0], 6, 3), source[0].weight.detach()) < 1e-10
    random_source = source_conv(seed=1)
    new, report = cz.convert(random_source, "flattened")
    measured = relative(effective_kernel(new[0], 6, 3), random_source[0].weight.detach())
    assert report.layers[0].rel_error == pytest.approx(measured, abs=1e-9) and measured > 0.1


@pytest.mark.parametrize(("family", "kwargs"), [
    ("hetconv", {"p": 2}), ("hetconv", {"p": 1}), ("mixconv", {"kernel_size": (1, 3, 5)}),
    ("grouped", {"groups": 2}), ("shuffled_grouped", {"groups": 2}), ("depthwise", {}),
])
def test_projections_report_the_measured_error(family, kwargs):
    source = source_conv(6, 6, padding=1)  # MixConv always pads 'same'; the others follow the source
    new, report = cz.convert(source, family, force=True, **kwargs)  # HetConv p=1 is dense: no gain, forced
    measured = relative(effective_kernel(new[0], 6, 3), source[0].weight.detach())
    assert report.layers[0].rel_error == pytest.approx(measured, abs=1e-9)
    if family == "hetconv" and kwargs["p"] == 1:
        assert measured < 1e-12  # p = 1 is the dense conv


def test_structured_kernels_convert_exactly():
    """Where the kernel already has the family's structure, the conversion is exact."""
    source = source_conv(6, 6, groups=2)  # a grouped conv → grouped family with the same groups (no gain: forced)
    new, report = cz.convert(source, "grouped", force=True)
    assert report.layers[0].rel_error == 0.0
    depthwise = source_conv(6, 6, groups=6, padding=1)  # depthwise 3×3 → MixConv: kernels embedded in 5×5, 7×7
    new, report = cz.convert(depthwise, "mixconv", force=True)
    assert report.layers[0].rel_error < 1e-12
    x = torch.randn(1, 6, 9, 9, dtype=torch.float64)
    assert relative(new(x), depthwise(x)) < 1e-12
    _, report = cz.convert(source_conv(6, 6, groups=6), "mixconv", force=True)  # padding 0: the size would change
    assert "gives output (1, 6, 10, 9) where the conv gives (1, 6, 8, 7)" in report.layers[0].note


def test_unconvertible_layers_are_kept_with_a_message_naming_them():
    model = torchvision.models.resnet18(num_classes=10)
    new, report = cz.convert(model, "hetconv", p=4)
    notes = {row.name: row.note for row in report.layers}
    downsamples = ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    assert "p=4 must divide in_channels=3" in notes["conv1"] and type(new.conv1) is nn.Conv2d
    for name in downsamples:  # a 1×1 HetConv is the dense 1×1 conv: an exact swap at equal cost, taken
        row = next(r for r in report.layers if r.name == name)
        assert row.converted and row.rel_error < 1e-6 and "exact swap at equal cost" in row.note
    # each 3×3 filter keeps its k×k kernel on 1 channel in p and a 1×1 on the others: it still mixes channels
    kxk = [row for row in report.layers if row.before.endswith("(3, 3))") and row.name != "conv1"]
    assert len(kxk) == 16 and all(row.converted for row in kxk)
    assert len(report.converted) == 19
    _, forced = cz.convert(model, "hetconv", p=4, force=True)
    assert [row.name for row in forced.skipped] == ["conv1"] and len(forced.converted) == 19
    with pytest.raises(ValueError, match="has no torch.nn.Conv2d"):
        cz.convert(nn.Sequential(nn.Linear(3, 4)), "dynamic")
    with pytest.raises(ValueError, match="cannot replace a k×k convolution"):
        cz.convert(model, "transposed")
    with pytest.raises(ValueError, match="unknown family"):
        cz.convert(model, "nope")


def test_where_selects_layers_and_report_has_macs():
    model = cz.models.mobilenet_v1(0.25, conv="standard")
    new, report = cz.convert(model, "depthwise_separable", where=lambda name, m: m.stride == (1, 1) and m.kernel_size == (3, 3))
    assert len(report.layers) == 9  # the 3×3 stride-1 blocks of Table 1
    row = report.layers[0]
    assert row.macs_before is not None and row.macs_after < row.macs_before
    assert row.params_after < row.params_before


def test_cli_convert(tmp_path):
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--to", "dynamic", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "20 layer(s) converted, 0 kept" in " ".join(result.output.split())
    saved = torch.load(out)  # a state dict + the recipe (convzoo.models.load_converted rebuilds the model)
    assert saved["recipe"]["to"] == "dynamic"
    assert saved["state_dict"]["conv1.weight"].shape[:2] == (4 * 64, 3)  # DynamicConv2d's K kernels, (K·C_out, C_in, ...)
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--to", "nope"])
    assert result.exit_code == 2 and "unknown family" in result.output


def test_convert_leaves_what_cannot_gain_small_model():
    """The same rules on a small resnet-like model (fast): 7×7 stem on 3 channels, a 3×3, a 1×1 downsample."""
    model = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3, bias=False), nn.Conv2d(8, 32, 3, padding=1, bias=False),
                          nn.Conv2d(32, 64, 1, 2, bias=False))
    new, report = cz.convert(model, "spatially_separable", input_shape=(1, 3, 32, 32), mid_channels=16)
    notes = {row.name: row.note for row in report.layers}
    assert "would not reduce params and MACs here (params 1,176 → 1,232" in notes["0"]  # 3·7·16 + 16·7·8
    assert report.layers[1].converted and report.layers[1].params_after == 8 * 3 * 16 + 16 * 3 * 32 < 32 * 8 * 9
    assert "a 1×1 conv has no window for 'spatially_separable' to factorise" in notes["2"]
    assert type(new[0]) is nn.Conv2d and type(new[2]) is nn.Conv2d
    assert report.params_before == 1_176 + 2_304 + 2_048 and report.params_after == 1_176 + 1_920 + 2_048
    assert report.macs_before == cz.cost(model, (1, 3, 32, 32)).macs > report.macs_after == cz.cost(new, (1, 3, 32, 32)).macs
    _, forced = cz.convert(model, "spatially_separable", force=True, mid_channels=16)
    assert len(forced.converted) == 3


@pytest.mark.slow
def test_convert_leaves_what_cannot_gain_and_says_why():
    model = torchvision.models.resnet18()
    new, report = cz.convert(model, "spatially_separable", input_shape=(1, 3, 64, 64))
    notes = {row.name: row.note for row in report.skipped}
    downsamples = ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    for name in downsamples:
        assert "a 1×1 conv has no window for 'spatially_separable' to factorise" in notes[name]
        assert type(new.get_submodule(name)) is nn.Conv2d
    # the 7×7 stem on 3 channels: (3·7·m + m·64·7) > 3·64·49 for the default m
    assert "would not reduce params and MACs here (params 9,408 → " in notes["conv1"]
    # the stride-2 3×3 convs C → 2C: the default mid_channels = 2C gives 3·C·2C + 3·2C·2C ≥ 9·C·2C: no gain either
    strided = ["layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"]
    for name in strided:
        assert "would not reduce params and MACs here" in notes[name]
    assert sorted(notes) == sorted(["conv1", *downsamples, *strided])
    assert len(report.converted) == 13
    assert all(row.params_after < row.params_before and row.macs_after < row.macs_before for row in report.converted)
    # totals: the whole model before and after, checked against a fresh count
    assert report.params_before == sum(p.numel() for p in model.parameters())
    assert report.params_after == sum(p.numel() for p in new.parameters()) < report.params_before
    assert report.macs_before == cz.cost(model, (1, 3, 64, 64)).macs
    assert report.macs_after == cz.cost(new, (1, 3, 64, 64)).macs < report.macs_before
    assert "model params" in report.totals() and report.to_dict()["params_after"] == report.params_after
    forced, forced_report = cz.convert(model, "spatially_separable", force=True)
    assert len(forced_report.converted) == 20 and not forced_report.skipped
    assert forced_report.params_after > report.params_after  # what forcing costs
    assert forced_report.macs_before is None and "MACs" not in forced_report.totals()  # no input shape given


def test_capability_families_still_convert_every_layer():
    # dynamic / deformable add parameters by design: they are not compression families, nothing is left
    _, report = cz.convert(torchvision.models.resnet18(num_classes=10), "dynamic")
    assert len(report.converted) == 20 and report.params_after > report.params_before


def test_cli_convert_force_and_totals():
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--to", "grouped", "--force",
                                      "--input", "1,3,32,32"])  # the stem (3 channels: groups 1) converts too
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "20 layer(s) converted, 0 kept; model params 11,689,512 →" in text and "MACs" in text


def test_a_misspelt_family_option_is_an_error_not_a_model_with_nothing_converted():
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1))
    with pytest.raises(TypeError, match=r"convert\(to='ghost', \.\.\.\): .*unexpected keyword argument 'ratoi' — "
                                        r"the options go to the 'ghost' layer's constructor"):
        cz.convert(model, "ghost", ratoi=2)
    converted, report = cz.convert(model, "ghost", ratio=2)
    assert [row.after for row in report.layers] == ["GhostModule2d"]


def test_options_that_grow_the_family_s_probe_still_keep_a_layer_it_would_grow():
    """Whether a family compresses is the family's own (its default layer), not what the options make of a probe:
    with mid_channels=32 the 7×7 stem on 3 channels would grow (9,408 → 15,008 params) and is kept, as documented.
    ResNet-18's stem and first 3×3 conv (the whole ResNet-18 took 15 s of fits for these two rows)."""
    model = nn.Sequential(OrderedDict(conv1=nn.Conv2d(3, 64, 7, 2, 3, bias=False), relu=nn.ReLU(),
                                      conv2=nn.Conv2d(64, 64, 3, padding=1, bias=False)))
    _, report = cz.convert(model, to="spatially_separable", mid_channels=32)
    stem = report.layers[0]
    assert stem.name == "conv1" and stem.after == stem.before and "would not reduce params and MACs" in stem.note
    assert report.layers[1].after == "SpatiallySeparableConv2d"


def test_a_conv_used_twice_is_converted_once_and_stays_shared():
    conv = nn.Conv2d(8, 8, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    new, report = cz.convert(model, "acnet", input_shape=(1, 8, 8, 8))
    assert [(row.name, row.after) for row in report.layers] == [("0", "ACNetConv2d"), ("2", "ACNetConv2d")]
    assert new[0] is new[2] and "the module of 0, used again" in report.layers[1].note
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(x), model(x), rtol=1e-4, atol=1e-4)  # ACNet starts as the conv


def test_the_report_names_each_conv_s_own_type_and_groups():
    model = nn.Sequential(cz.DepthwiseConv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=2))
    _, report = cz.convert(model, "dynamic", force=True)
    assert [row.before for row in report.layers] == ["DepthwiseConv2d(8, 8, (3, 3), groups=8)",
                                                     "Conv2d(8, 8, (3, 3), groups=2)"]


# --- a model built on the meta device (build, convert, to_empty, load a converted checkpoint) --------------------


def _small_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.Conv2d(16, 16, 1))


@pytest.mark.parametrize("family", ["depthwise", "standard", "ghost", "hetconv", "depthwise_separable", "dynamic"])
def test_a_model_built_on_meta_converts_like_a_real_one_and_loads_its_checkpoint(family):
    torch.manual_seed(0)
    real = _small_model()
    converted, report = cz.convert(real, family)
    with torch.device("meta"):
        skeleton = _small_model()
    meta, meta_report = cz.convert(skeleton, family)
    assert [(r.name, r.after, r.converted) for r in meta_report.layers] == \
        [(r.name, r.after, r.converted) for r in report.layers]  # the rules read shapes, never weights
    assert meta_report.converted and all(r.rel_error is None for r in meta_report.layers)
    assert all("error not measured" in r.note for r in meta_report.converted)
    from rich.console import Console

    console = Console(width=250, record=True, color_system=None)
    console.print(meta_report.table())
    assert "not measured" in console.export_text()
    meta.to_empty(device="cpu")
    meta.load_state_dict(converted.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(meta.eval()(x), converted.eval()(x), rtol=0, atol=0)


# --- float16 / bfloat16 models: fitted in float32, stored in their dtype --------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", ["depthwise_separable", "spatially_separable", "flattened"])
def test_a_half_precision_model_converts_as_its_float32_copy_then_cast(family, dtype):
    import copy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1)).to(dtype)
    half, report = cz.convert(model, family, force=True)
    full, full_report = cz.convert(copy.deepcopy(model).float(), family, force=True)
    assert len(report.converted) == 2 and [r.after for r in report.layers] == [r.after for r in full_report.layers]
    expected = full.to(dtype).state_dict()
    for key, value in half.state_dict().items():
        assert value.dtype == dtype and torch.equal(value, expected[key]), key
    assert [r.rel_error for r in report.layers] == [r.rel_error for r in full_report.layers]
    # the error is the float32 fit's, measured against the model's kernel: a truncated SVD's is well above 0
    assert all(0.05 < r.rel_error < 1 for r in report.layers)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_separate_kernel_takes_half_precision_kernels(dtype):
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    column, row, error = cz.separate_kernel(sobel.to(dtype))
    assert column.dtype == row.dtype == dtype and error < 1e-6
    scale = float(column[0])  # [1, 2, 1] ⊗ [1, 0, −1] up to a scale split between the two
    torch.testing.assert_close(column.float(), scale * torch.tensor([1.0, 2.0, 1.0]), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(torch.outer(column.float(), row.float()), sobel, rtol=2e-2, atol=2e-2)


# --- which convs a family takes: exact swaps yes, convs whose channel mixing it cannot hold no -------------------


def _depthwise_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels > 1]


def test_depthwise_swaps_exactly_the_depthwise_convs_of_torchvision_mobilenet_v2():
    """The practitioner's path: convzoo's depthwise layers into a torchvision model, the same function."""
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()
    depthwise = _depthwise_names(model)
    assert len(depthwise) == 17
    new, report = cz.convert(model, "depthwise")
    assert [row.name for row in report.converted] == depthwise
    for row in report.converted:  # same params and MACs, the same kernel
        assert row.rel_error < 1e-6 and row.params_after == row.params_before and "exact swap" in row.note
        assert type(new.get_submodule(row.name)) is cz.DepthwiseConv2d
    expansion = next(row for row in report.layers if row.name == "features.2.conv.0.0")  # 1×1, 16 → 96
    assert not expansion.converted  # a depthwise layer would keep 1 channel in 16: error √(15/16)
    assert "mixes no channels, where this conv mixes 16 input channels" in expansion.note
    assert f"relative error {(15 / 16) ** 0.5:.3f}" in expansion.note and "force=True" in expansion.note
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert relative(new.features(x), model.features(x)) < 1e-5
        assert relative(new(x), model(x)) < 1e-5
    _, forced = cz.convert(model, "depthwise", force=True)  # force still takes the expansions (at a high error)
    forced_rows = {row.name: row for row in forced.converted}
    assert forced_rows["features.2.conv.0.0"].rel_error > 0.9 and set(depthwise) <= set(forced_rows)


@pytest.mark.parametrize(("conv", "family", "kwargs", "kept_fraction"), [
    (nn.Conv2d(8, 16, 3, padding=1), "depthwise", {}, 1 / 8),  # each output keeps 1 of its 8 input channels
    (nn.Conv2d(3, 24, 3, padding=1), "depthwise", {}, 1 / 3),  # an RGB stem: a third
    (nn.Conv2d(2, 4, 3, padding=1), "depthwise", {}, 1 / 2),
    (nn.Conv2d(8, 8, 3, padding=1), "grouped", {"groups": 4}, 1 / 4),
    (nn.Conv2d(8, 8, 3, padding=1), "grouped", {"groups": 2}, 1 / 2),
    (nn.Conv2d(8, 8, 3, padding=1), "hetconv", {"p": 2}, 1 / 2 + 1 / 2 / 9),  # k×k on half, the centre elsewhere
    (nn.Conv2d(8, 8, 3, padding=1), "depthwise_separable", {}, 1.0),  # rank 1: every factorisation holds it
    (nn.Conv2d(8, 8, 3, padding=1), "flattened", {}, 1.0),
    (nn.Conv2d(8, 8, 3, padding=1), "ghost", {}, 1.0),
])
def test_a_family_that_mixes_no_channels_where_the_conv_does_is_not_taken(conv, family, kwargs, kept_fraction):
    error = (1 - kept_fraction) ** 0.5  # of the all-ones kernel, by the hand count above
    _, report = cz.convert(nn.Sequential(conv), family, **kwargs)
    row = report.layers[0]
    if family == "depthwise":  # one input channel per output: the error of keeping 1 in C_in
        assert not row.converted and "mixes no channels" in row.note and f"relative error {error:.3f}" in row.note
        _, forced = cz.convert(nn.Sequential(conv), family, force=True, **kwargs)
        assert forced.layers[0].converted
    else:  # grouped, HetConv and the factorisations still mix channels, whatever part of the kernel they keep
        assert row.converted, row.note
    # the rule's number is the family's own error on the all-ones kernel: check it against the report's
    with torch.no_grad():
        ones = nn.Sequential(nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1))
        ones[0].weight.fill_(1.0)
    _, measured = cz.convert(ones, family, force=True, **kwargs)
    assert measured.layers[0].rel_error == pytest.approx(error, abs=1e-5)


# --- load_converted rebuilds the layers that were converted, whatever the rules are now ---------------------------


def test_load_converted_rebuilds_the_recorded_layers_when_the_rules_change(tmp_path, monkeypatch):
    convert_module = importlib.import_module("convzoo.conversion.convert")  # the module, not the function
    from convzoo.models import load_converted, save_converted, source_model

    torch.manual_seed(0)
    model, _ = cz.convert(source_model("mobilenet_v1_small"), "depthwise_separable")
    save_converted(str(tmp_path / "c.pt"), model, "mobilenet_v1_small", "depthwise_separable")
    def keep_everything(*args: object) -> str:  # tomorrow's rules keep every layer
        raise ValueError("kept by tomorrow's rules")

    monkeypatch.setattr(convert_module, "_keep_or_take", keep_everything)
    loaded = load_converted(str(tmp_path / "c.pt"))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=0, atol=0)


def test_load_converted_reads_a_file_written_under_the_earlier_rules(tmp_path):
    """Before, 'depthwise' took mobilenet_v2's 1×1 expansions (their params fell) and kept its depthwise convs; a
    file from then has no record of its layers: they are the ones whose saved tensors are the family's."""
    from convzoo.models import CONVERTED_FORMAT, load_converted, source_model

    torch.manual_seed(0)
    earlier, report = cz.convert(source_model("torchvision:mobilenet_v2"), "depthwise", force=True,
                                 where=lambda name, m: m.groups == 1)
    assert any(row.name == "features.2.conv.0.0" for row in report.converted)
    recipe = {"source": "torchvision:mobilenet_v2", "to": "depthwise", "kwargs": {}, "input_shape": None}
    torch.save({"format": CONVERTED_FORMAT, "recipe": recipe, "state_dict": earlier.state_dict()}, tmp_path / "old.pt")
    loaded = load_converted(str(tmp_path / "old.pt"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert relative(loaded.features(x), earlier.eval().features(x)) == 0.0
    # true convolutions keep the conv's shapes but not its function: an older file of them is rebuilt as today
    flipped, _ = cz.convert(source_model("mobilenet_v1_small"), "convolution")
    recipe = {"source": "mobilenet_v1_small", "to": "convolution", "kwargs": {}, "input_shape": None}
    torch.save({"format": CONVERTED_FORMAT, "recipe": recipe, "state_dict": flipped.state_dict()}, tmp_path / "c.pt")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_converted(str(tmp_path / "c.pt"))(x), flipped.eval()(x), rtol=0, atol=0)
