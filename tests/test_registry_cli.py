"""The registry lists every family the seed articles name; the CLI lists and verifies them."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app

REQUIRED = {
    "standard", "convolution", "pointwise", "transposed", "resize", "dilated", "spatially_separable", "flattened",
    "depthwise", "depthwise_separable", "grouped", "shuffled_grouped", "pointwise_grouped", "global_depthwise",
    "mixconv", "hetconv", "dynamic", "deformable", "deformable_v2",
}


def test_registry_names_every_family():
    names = [f.name for f in cz.families()]
    assert REQUIRED <= set(names)
    assert len(names) == len(set(names))
    for f in cz.families():
        assert f.title and f.summary and f.article[:3].isdigit(), f


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_build_default_keeps_spatial_size(name):
    """Default geometry: odd k at stride 1 keeps H×W (upsamplers double it, global depthwise pools it)."""
    out = 8
    module = cz.build(name, 4, out)
    y = module(torch.randn(2, 4, 10, 10))
    expected = {"transposed": (20, 20), "resize": (20, 20), "global_depthwise": (1, 1)}.get(name, (10, 10))
    assert tuple(y.shape) == (2, out, *expected)


def test_build_passes_family_arguments():
    assert cz.build("grouped", 8, 8, groups=2).groups == 2
    assert cz.build("dilated", 4, 4, dilation=3).dilation == (3, 3)
    assert cz.build("mixconv", 6, 6, 5).kernel_sizes == (5, 7, 9)
    assert cz.build("standard", 4, 4, 3, dim=3).weight.shape == (4, 4, 3, 3, 3)


@pytest.mark.parametrize("name", ["selective_kernel", "dcnv3"])
def test_build_refuses_a_padding_the_family_cannot_take(name):
    # build() used to drop padding for these two: padding=0 gave a 9×9 output from a 9×9 input, silently
    assert tuple(cz.build(name, 8, 8, padding="same")(torch.randn(1, 8, 9, 9)).shape) == (1, 8, 9, 9)
    for padding in (0, "valid", 5):
        with pytest.raises(ValueError, match=f"padding={padding!r}"):
            cz.build(name, 8, 8, padding=padding)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_transposed_default_doubles_for_every_spelling_of_stride_2(dim):
    # stride=(2, 2) used to skip the "exactly twice the input" default: 9 → 19 where stride=2 gave 18
    x = torch.randn(1, 4, *(9,) * dim)
    for stride in (2, (2,) * dim):
        assert tuple(cz.build("transposed", 4, 4, dim=dim, stride=stride)(x).shape[2:]) == (18,) * dim, stride
    layer = cz.build("transposed", 4, 4, dim=dim, stride=(2,) * dim)  # torch's formula: (9−1)·2 − 2·1 + 3 + 1
    assert torch.nn.functional.conv_transpose2d if dim != 2 else True
    assert all((9 - 1) * 2 - 2 * p + k + op == 18 for p, k, op in zip(layer.padding, layer.kernel_size,
                                                                       layer.output_padding))


def test_cli_list_shows_every_family():
    result = CliRunner().invoke(app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in REQUIRED:
        assert name in result.output
    # the table is titled "convzoo families": typed as a command, that prints the same table (it was "No such command")
    same = CliRunner().invoke(app, ["families"], env={"COLUMNS": "200"})
    assert same.exit_code == 0 and same.output == result.output and "convzoo families" in result.output


def test_cli_list_json_is_every_family_as_the_registry_has_it():
    import json

    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [f["name"] for f in listed] == [f.name for f in cz.families()]
    dws = next(f for f in listed if f["name"] == "depthwise_separable")
    fam = cz.family("depthwise_separable")
    assert dws == {"name": fam.name, "title": fam.title, "summary": fam.summary, "dims": list(fam.dims),
                   "article": fam.article, "window": fam.window, "replaces_kxk": fam.replaces_kxk}
    assert next(f for f in listed if f["name"] == "pointwise")["window"] is False


def test_cli_verify_passes_and_reports_errors():
    result = CliRunner().invoke(app, ["verify", "hetconv", "dynamic"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert result.output.count("│ pass") == 4  # hetconv 2-D, dynamic 1/2/3-D
    assert "FAIL" not in result.output


def test_cli_verify_unknown_family_is_a_clear_error():
    result = CliRunner().invoke(app, ["verify", "nope"])
    assert result.exit_code == 2
    assert "unknown family 'nope'" in result.output
