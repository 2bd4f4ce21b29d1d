"""convert: exact where the family can represent a conv, optimal low rank where it cannot, honest report."""

from __future__ import annotations

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
        new, report = cz.convert(source, family, **{rank_arg: rank})
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
    new, report = cz.convert(source, family, **kwargs)
    measured = relative(effective_kernel(new[0], 6, 3), source[0].weight.detach())
    assert report.layers[0].rel_error == pytest.approx(measured, abs=1e-9)
    if family == "hetconv" and kwargs["p"] == 1:
        assert measured < 1e-12  # p = 1 is the dense conv


def test_structured_kernels_convert_exactly():
    """Where the kernel already has the family's structure, the conversion is exact."""
    source = source_conv(6, 6, groups=2)  # a grouped conv → grouped family with the same groups
    new, report = cz.convert(source, "grouped")
    assert report.layers[0].rel_error == 0.0
    depthwise = source_conv(6, 6, groups=6, padding=1)  # depthwise 3×3 → MixConv: kernels embedded in 5×5, 7×7
    new, report = cz.convert(depthwise, "mixconv")
    assert report.layers[0].rel_error < 1e-12
    x = torch.randn(1, 6, 9, 9, dtype=torch.float64)
    assert relative(new(x), depthwise(x)) < 1e-12
    _, report = cz.convert(source_conv(6, 6, groups=6), "mixconv")  # padding 0: MixConv would change the size
    assert "gives output (1, 6, 10, 9) where the conv gives (1, 6, 8, 7)" in report.layers[0].note


def test_unconvertible_layers_are_kept_with_a_message_naming_them():
    model = torchvision.models.resnet18(num_classes=10)
    new, report = cz.convert(model, "hetconv", p=4)
    skipped = {row.name: row.note for row in report.skipped}
    assert list(skipped) == ["conv1"]
    assert "p=4 must divide in_channels=3" in skipped["conv1"]
    assert type(new.conv1) is nn.Conv2d and len(report.converted) == 19
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
    assert saved["state_dict"]["conv1.weight"].dim() == 5  # DynamicConv2d's (K, C_out, C_in, kh, kw) bank
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--to", "nope"])
    assert result.exit_code == 2 and "unknown family" in result.output
