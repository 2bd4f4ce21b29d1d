"""convert's arguments fail in words: an option the family refuses on every layer, an input shape the model
refuses, a ``where`` that is not a selector — each one error naming the argument, its value and the rule, in the
library and on the command line (one ``error:`` line, exit 2, no file written)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app


def small_model() -> nn.Module:
    """A 3×3 conv that every family below takes at its defaults, a 1×1 one and a stride-2 3×3."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(conv1=nn.Conv2d(8, 16, 3, padding=1), relu=nn.ReLU(),
                                     conv2=nn.Conv2d(16, 16, 1), conv3=nn.Conv2d(16, 16, 3, 2, 1)))


def nested_model() -> nn.Module:
    def block() -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))

    return nn.Sequential(OrderedDict(stem=nn.Conv2d(4, 4, 3, padding=1), layer1=block(), layer10=block()))


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    return lines[0]


# 1. an option the family refuses whatever the layer


REFUSED = [("dynamic", {"num_kernels": 0}), ("ghost", {"ratio": 1}), ("spatially_separable", {"mid_channels": -1})]


@pytest.mark.parametrize("family, option", REFUSED)
def test_an_option_the_family_refuses_on_every_layer_is_one_error_naming_it(family, option):
    # the rule, as the family's own constructor states it (independent of convert)
    with pytest.raises(ValueError) as built:
        cz.build(family, 8, 16, 3, 2, **option)
    rule = str(built.value)
    (name, value), = option.items()
    with pytest.raises(ValueError) as converted:
        cz.convert(small_model(), family, **option)
    message = str(converted.value)
    assert message.startswith(f"convert(to={family!r}, {name}={value!r}): {rule}"), message
    # the same error with force (every layer reaches the constructor) and on the meta device
    with pytest.raises(ValueError, match=f"{name}={value}"):
        cz.convert(small_model(), family, force=True, **option)
    with torch.device("meta"):
        meta = small_model()
    with pytest.raises(ValueError, match=f"{name}={value}"):
        cz.convert(meta, family, **option)


def test_an_option_refused_by_some_layers_only_keeps_them_with_a_note_and_converts_the_others():
    """HetConv's p must divide C_in: p=4 fits the 8- and 16-channel convs, not the 3-channel stem."""
    model = nn.Sequential(OrderedDict(stem=nn.Conv2d(3, 16, 3, padding=1), body=nn.Conv2d(16, 16, 3, padding=1)))
    new, report = cz.convert(model, "hetconv", p=4)
    stem, body = report.layers
    assert not stem.converted and stem.note == "kept: p=4 must divide in_channels=3" and type(new.stem) is nn.Conv2d
    assert body.converted and body.after == "HetConv2d"


def test_a_model_kept_whole_by_convert_s_rules_or_geometry_is_returned_not_refused():
    """No layer converts, but not because of an option: the rows say why, nothing is raised."""
    ones = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1))  # no window for a window factorisation
    new, report = cz.convert(ones, "spatially_separable", mid_channels=4)
    assert not report.converted and all("no window" in row.note for row in report.layers)
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(new(x), ones(x))
    # MixConv pads 'same': a padding-0 depthwise conv would change size (a geometry refusal, not an option's)
    depthwise = nn.Sequential(nn.Conv2d(6, 6, 3, groups=6))
    _, report = cz.convert(depthwise, "mixconv", force=True)
    assert not report.converted and "gives output" in report.layers[0].note


def test_cli_an_option_refused_everywhere_is_one_error_line_and_no_file(tmp_path):
    out = tmp_path / "x.pt"
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--to", "dynamic", "--arg", "num_kernels=0",
                                      "-o", str(out)])
    line = one_error_line(result)
    assert "num_kernels=0 must be positive" in line and "convert(to='dynamic', num_kernels=0)" in line
    assert not out.exists()


# 2. input_shape


def test_input_shape_of_the_wrong_rank_names_input_shape_and_the_rule():
    model = small_model()
    with pytest.raises(ValueError) as error:
        cz.convert(model, "dynamic", input_shape=(1, 3, 224))
    message = str(error.value)
    assert message.startswith("input_shape=(1, 3, 224): Sequential fails on an input of this shape") and \
        "(N, C, H, W)" in message, message
    assert isinstance(error.value.__cause__, RuntimeError)  # the model's own error, kept for the traceback
    with pytest.raises(TypeError, match=r"input_shape='1,8,9,9' must be a tuple of ints"):
        cz.convert(model, "dynamic", input_shape="1,8,9,9")
    with pytest.raises(TypeError, match=r"input_shape=\(1, 8, 9.0, 9\) must be a tuple of ints"):
        cz.convert(model, "dynamic", input_shape=(1, 8, 9.0, 9))
    with pytest.raises(ValueError, match=r"input_shape=\(1, 8, -9, 9\): size -9 is negative"):
        cz.convert(model, "dynamic", input_shape=(1, 8, -9, 9))


def test_a_good_input_shape_gives_the_hand_counted_macs():
    """conv1 8→16 3×3 pad 1 on 9×9: 81·16·72; conv2 1×1: 81·16·16; conv3 stride 2 on 9×9 → 5×5: 25·16·144."""
    _, report = cz.convert(small_model(), "dynamic", input_shape=[1, 8, 9, 9])
    assert report.input_shape == (1, 8, 9, 9)
    assert report.macs_before == 81 * 16 * 72 + 81 * 16 * 16 + 25 * 16 * 144
    assert [row.macs_before for row in report.layers] == [81 * 16 * 72, 81 * 16 * 16, 25 * 16 * 144]


def test_cli_an_input_the_model_refuses_is_one_error_line_and_no_file(tmp_path):
    out = tmp_path / "x.pt"
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--to", "dynamic", "--input", "1,3,224",
                                      "-o", str(out)])
    line = one_error_line(result)  # worded as cost and export word it: the target, the input, the model's error
    # cost names the layer and gives its real forward's words (the meta kernel said "Invalid channel dimensions");
    # torch reads (1, 3, 224) as one unbatched 1-channel 3×224 image
    assert line == ("error: torchvision:resnet18 on input (1, 3, 224): layer 'conv1' (Conv2d) raised RuntimeError: "
                    "Given groups=1, weight of size [64, 3, 7, 7], expected input[1, 1, 3, 224] to have 3 channels, "
                    "but got 1 channels instead")
    assert not out.exists()


# 3. where


def test_where_as_a_pattern_selects_a_module_s_convs_or_matching_names():
    model = nested_model()
    cases = {"layer1": ["layer1.0", "layer1.1"],  # a module: the convs inside it (not layer10's)
             "layer1*": ["layer1.0", "layer1.1", "layer10.0", "layer10.1"],
             "*.1": ["layer1.1", "layer10.1"],
             "stem": ["stem"]}
    for pattern, names in cases.items():
        new, report = cz.convert(model, "dynamic", where=pattern)
        assert [row.name for row in report.layers] == names, pattern
        assert all(row.converted for row in report.layers)
        converted = [name for name, m in new.named_modules() if type(m).__name__ == "DynamicConv2d"]
        assert converted == names


def test_where_that_is_no_selector_names_where_and_the_rule():
    model = nested_model()
    with pytest.raises(TypeError, match=r"where=5 must be a callable \(name, module\) -> bool or a str"):
        cz.convert(model, "dynamic", where=5)
    with pytest.raises(TypeError, match=r"where=<function .*<lambda>.*> must be a callable \(name, module\)"):
        cz.convert(model, "dynamic", where=lambda module: True)
    with pytest.raises(ValueError, match=r"where='layer2' selects none of the 5 convs of Sequential \(stem, "
                                         r"layer1\.0, layer1\.1, "):
        cz.convert(model, "dynamic", where="layer2")


def test_cli_where_converts_one_stage_and_the_file_rebuilds_it(tmp_path):
    out = tmp_path / "x.pt"
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--to", "dynamic", "--where", "layer4",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "5 layer(s) converted, 0 kept" in " ".join(result.output.split())  # 4 3×3s and a 1×1 downsample
    rebuilt = cz.models.load_converted(str(out))
    dynamic = sorted(name for name, m in rebuilt.named_modules() if type(m).__name__ == "DynamicConv2d")
    assert dynamic == ["layer4.0.conv1", "layer4.0.conv2", "layer4.0.downsample.0", "layer4.1.conv1",
                       "layer4.1.conv2"]
    result = CliRunner().invoke(app, ["convert", "torchvision:resnet18", "--where", "layer9", "-o", str(out) + "2"])
    assert "where='layer9' selects none" in one_error_line(result)
    assert not (tmp_path / "x.pt2").exists()
