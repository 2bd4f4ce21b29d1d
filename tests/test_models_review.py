"""A review of the models and of ``convzoo cost``: meta construction, errors that name the layer or the argument,
the small MobileNet's last feature map, the CLI's target list and its weight count."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.models import mobilenet_v1, mobilenet_v1_small

# --- meta construction --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "shape", "macs"), [
    # Howard et al. Table 1 counted by hand: 568,740,352 MACs at 1.0-224 (also tests/test_models.py's table check)
    (mobilenet_v1, (1, 3, 224, 224), 568_740_352),
    (mobilenet_v1_small, (1, 3, 32, 32), None),
])
def test_mobilenet_builds_on_the_meta_device(build, shape, macs):
    """He scaling read ``float(weight.std())``, which a meta tensor cannot give: the build raised."""
    with torch.device("meta"):
        model = build()
    real = build()
    assert all(p.is_meta for p in model.parameters())
    assert [(n, p.shape) for n, p in model.named_parameters()] == [(n, p.shape) for n, p in real.named_parameters()]
    expected = cz.cost(real, shape).macs
    assert cz.cost(model, shape).macs == expected
    if macs is not None:
        assert expected == macs


def test_he_scale_still_gives_std_sqrt_2_over_fan_in_off_meta():
    torch.manual_seed(0)
    model = mobilenet_v1(width_mult=0.25)
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            fan_in = m.weight[0].numel()
            assert float(m.weight.std()) == pytest.approx(math.sqrt(2 / fan_in), rel=1e-5)


# --- the small MobileNet's last feature map -----------------------------------------------------------------------


def test_small_mobilenet_docstring_gives_its_last_feature_map():
    """Three stride-2 blocks (SMALL_INPUT_STRIDES) and a stride-1 stem: total stride 8, 32 → 4. The docstring and the
    comment said 2×2."""
    from convzoo.models import mobilenet

    strides = math.prod(mobilenet.SMALL_INPUT_STRIDES)
    assert strides == 8
    features = mobilenet_v1_small().eval().features(torch.zeros(1, 3, 32, 32))
    assert features.shape == (1, 1024, 32 // strides, 32 // strides)
    said = re.search(r"feature map is (\d+)×(\d+)", " ".join(mobilenet_v1_small.__doc__.split()))
    assert said and (int(said[1]), int(said[2])) == tuple(features.shape[-2:])
    source = Path(mobilenet.__file__).read_text()
    assert "ends at 2×2" not in source and "ends at 4×4" in source


# --- the architectures' own arguments -----------------------------------------------------------------------------


BAD_ARGUMENTS = [
    # each built a wrong model silently or failed with a message naming none of the user's arguments
    ("ShuffleNetV1", (3.0,), {}, ValueError, "groups=3.0 must be one of [1, 2, 3, 4, 8]"),  # torch's empty(): ...
    ("ShuffleNetV1", (3, 0.01), {}, ValueError,  # "out_channels=12 > in_channels=12"
     "ShuffleNetV1: scale=0.01 gives the stem and the three stages 12, 12, 12, 12 channels, which must grow"),
    ("ShuffleUnit", (24, 240, 3, 1), {}, ValueError,  # built; a broadcast error at the forward
     "ShuffleUnit: at stride=1 the branch is added to the input, so out_channels=240 must equal in_channels=24"),
    ("ShuffleUnit", (24, 250, 3, 2), {}, ValueError,  # said "out_channels=62"
     ("ShuffleUnit: out_channels=250 gives a bottleneck of out_channels // 4 = 62 channels, which must be a positive "
     "multiple of groups=3")),
    ("FasterNet", (), {"depths": (1, -2, 8, 2)}, ValueError,  # built, and cost reported 289.6 M MACs
     "FasterNet: depths=(1, -2, 8, 2) must give 4 ints >= 1 (the blocks of each of the 4 stages); depths[1]=-2"),
    ("FasterNet", (), {"depths": (1, 2)}, ValueError, "FasterNet: depths=(1, 2) must give 4 ints >= 1"),  # 2 stages
    ("FasterNet", (), {"mlp_ratio": 0}, ValueError, "mlp_ratio=0 must be a positive finite number"),
    ("FasterNet", (), {"mlp_ratio": 0.02}, ValueError,  # int(40·0.02) = 0: built, failed at the forward
     "FasterNet: mlp_ratio=0.02 gives a hidden width int(40·0.02) = 0; it must be >= 1"),
    ("RepVGG", (), {"depths": (2, 4, 14, 1.5)}, TypeError,  # "'float' object cannot be interpreted as an integer"
     ("RepVGG: depths=(2, 4, 14, 1.5) must give 4 ints >= 1 (the blocks of each of the 4 stages); depths[3]=1.5 is "
     "not an int")),
    ("RepVGG", (), {"depths": (0, 4, 14, 1)}, ValueError, "depths[0]=0 is not"),  # dropped a stride-2 stage
    ("RepVGG", (), {"width_a": 0.01}, ValueError,  # "out_channels=0 must be positive"
     "RepVGG: width_a=0.01 gives the stem and stage 1 int(64·0.01) = 0 channels; width_a must be >= 1/64"),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "error", "message"), BAD_ARGUMENTS)
def test_model_arguments_are_refused_in_the_constructor_by_name(name, args, kwargs, error, message):
    from convzoo import models

    with pytest.raises(error) as caught:
        getattr(models, name)(*args, **kwargs)
    assert message in str(caught.value), str(caught.value)


def test_the_smallest_shufflenet_scale_named_in_the_error_builds():
    """At groups=3 the stages are round(240·2^i·s / 12)·12 channels (at least 12) over a 12-channel stem: they grow
    from s = 0.075 (round(1.5) = 2 → 24), not at 0.074 (round(1.48) = 1 → 12 = the stem)."""
    from convzoo.models import ShuffleNetV1

    with pytest.raises(ValueError, match="the smallest scale for groups=3 is 0.075"):
        ShuffleNetV1(3, 0.074)
    model = ShuffleNetV1(3, 0.075)
    assert [model.stages[i].branch[-2].out_channels + model.stages[i].branch[0].in_channels for i in (0, 4, 12)] \
        == [24, 36, 72]


def test_valid_shuffle_units_and_depths_still_build_what_they_say():
    from convzoo.models import FasterNet, RepVGG, ShuffleUnit

    unit = ShuffleUnit(24, 252, 3, 2).eval()
    assert unit(torch.zeros(1, 24, 8, 8)).shape == (1, 252, 4, 4)  # 24 concatenated + 228 from the branch
    assert [len(stage) for stage in RepVGG(depths=(1, 1, 2, 1)).stages] == [1, 1, 2, 1]
    assert [sum(isinstance(m, nn.Module) and type(m).__name__ == "FasterNetBlock" for m in stage)
            for stage in FasterNet(depths=(1, 3, 1, 2)).stages] == [1, 3, 1, 2]


# --- keywords handed to every block ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "kwargs", "error", "message"), [
    # each said "convzoo.registry.build() got multiple values for keyword argument '...'"
    ("mobilenet_v1", {"bias": True}, TypeError, ("MobileNetV1: bias=True cannot be given: the model sets in_channels, "
     "out_channels, kernel_size, dim, stride, bias, norm_layer, activation of its 'depthwise_separable' blocks")),
    ("mobilenet_v1", {"norm_layer": None}, TypeError, "MobileNetV1: norm_layer=None cannot be given"),
    ("mobilenet_v1", {"kernel_size": 5}, TypeError, "MobileNetV1: kernel_size=5 cannot be given"),
    ("mobilenet_v1", {"stride": 2}, TypeError, "MobileNetV1: stride=2 cannot be given"),
    ("cnn1d_small", {"bias": True}, TypeError, ("ConvNet1d: bias=True cannot be given: the model sets in_channels, "
     "out_channels, kernel_size, dim, stride, bias of its 'standard' blocks")),
    # said "out_channels=19 must be a multiple of in_channels=10", naming neither width_mult nor the block:
    # round(32·0.3) = 10 → round(64·0.3) = 19 channels, and a depthwise layer's C_out is a multiple of its C_in
    ("mobilenet_v1", {"width_mult": 0.3, "conv": "depthwise"}, ValueError,
     ("MobileNetV1: width_mult=0.3 gives block features.1 (10 → 19 channels, stride 1), which the 'depthwise' family "
     "refuses: out_channels=19 must be a multiple of in_channels=10")),
    ("mobilenet_v1", {"conv": "dynamic", "num_kernels": 0}, ValueError,
     "MobileNetV1: its 'dynamic' blocks refuse num_kernels=0 (extra keywords go to every block)"),
])
def test_block_keywords_and_widths_are_refused_in_the_models_words(build, kwargs, error, message):
    from convzoo import models

    with pytest.raises(error) as caught:
        getattr(models, build)(**kwargs)
    assert message in str(caught.value), str(caught.value)
    assert "build()" not in str(caught.value)


def test_a_width_at_which_depthwise_fits_still_builds():
    """At 0.25 the channels 8, 16, 32, 64, ... double or stay: every depthwise block's C_out is a multiple of C_in."""
    model = mobilenet_v1(width_mult=0.25, conv="depthwise")
    assert [m.out_channels // m.in_channels for m in model.modules() if isinstance(m, cz.DepthwiseConv2d)] \
        == [2, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


# --- cost names the layer that refuses an input ---------------------------------------------------------------------


def _real_error(module: nn.Module, x: torch.Tensor) -> str:
    with pytest.raises(RuntimeError) as caught:
        module.eval()(x)
    return str(caught.value).strip().splitlines()[0]


def test_cost_names_the_layer_that_refuses_the_input_as_receptive_field_does():
    """The meta kernel says only "Invalid channel dimensions"; the layer's real forward says which channels."""
    model = mobilenet_v1()
    said = _real_error(model.features[0][0], torch.zeros(1, 1, 224, 224))
    assert "expected input[1, 1, 224, 224] to have 3 channels" in said
    with pytest.raises(RuntimeError) as caught:
        cz.cost(model, (1, 1, 224, 224))
    expected = ("input_shape=(1, 1, 224, 224) cannot run through the model: layer 'features.0.0' (Conv2d) raised "
                f"RuntimeError: {said}")
    assert str(caught.value) == expected
    with pytest.raises(ValueError) as field:
        cz.receptive_field(model, (1, 1, 224, 224))
    assert str(field.value).splitlines()[0] == expected


def test_cost_names_a_deeper_layer_with_the_shape_it_was_given():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3))
    said = _real_error(model[1], torch.zeros(1, 8, 18, 18))
    with pytest.raises(RuntimeError) as caught:
        cz.cost(model, (1, 3, 20, 20))
    assert str(caught.value) == ("input_shape=(1, 3, 20, 20) cannot run through the model: layer '1' (Conv2d) on its "
                                 f"input (1, 8, 18, 18) raised RuntimeError: {said}")


class _TriesFirst(nn.Module):
    """Tries a 5-channel conv, falls back to a 3-channel one (a model catching its own error), then a 4-channel
    conv that refuses the 8-channel output."""

    def __init__(self) -> None:
        super().__init__()
        self.wide, self.narrow, self.last = nn.Conv2d(5, 8, 1), nn.Conv2d(3, 8, 1), nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            y = self.wide(x)
        except RuntimeError:
            y = self.narrow(x)
        return self.last(y)


class _WrongCost(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def cost(self, input_shape):  # type: ignore[no-untyped-def]
        from convzoo.arithmetic.cost import LayerCost

        return LayerCost(output_shape=(1, 1), params=0, macs=0, other_ops=0, elements=0)


def test_cost_names_the_layer_that_failed_last_and_never_blames_a_layer_for_its_own_error():
    with pytest.raises(RuntimeError, match=r"layer 'last' \(Conv2d\) on its input \(1, 8, 4, 4\) raised RuntimeError"):
        cz.cost(_TriesFirst(), (1, 3, 4, 4))
    with pytest.raises(RuntimeError) as caught:
        cz.cost(nn.Sequential(_WrongCost()), (1, 3, 4, 4))
    assert str(caught.value).startswith("_WrongCost.cost gives output shape")  # convzoo's check, not the model's


# --- the CLI: one line, the input it used -----------------------------------------------------------------------------


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_cli_cost_of_a_refused_input_names_the_layer():
    said = _real_error(mobilenet_v1().features[0][0], torch.zeros(1, 1, 224, 224))
    result = CliRunner().invoke(app, ["cost", "mobilenet_v1", "--input", "1,1,224,224"])
    assert _one_error_line(result) == (f"error: mobilenet_v1 on input (1, 1, 224, 224): layer 'features.0.0' (Conv2d) "
                                       f"raised RuntimeError: {said}")


def test_cli_cost_of_a_video_model_says_the_default_input_and_how_to_give_one():
    """r3d_18 takes (N, 3, T, H, W); given no --input, cost used (1, 3, 224, 224) and said "Invalid channel
    dimensions" alone. torch reads a 4-D input to Conv3d as one unbatched (C=1, 3, 224, 224) clip."""
    import torchvision

    stem = torchvision.models.video.r3d_18().stem[0]
    said = _real_error(stem, torch.zeros(1, 3, 224, 224))
    result = CliRunner().invoke(app, ["cost", "torchvision:r3d_18"])
    assert _one_error_line(result) == (
        f"error: torchvision:r3d_18 on default input (1, 3, 224, 224): layer 'stem.0' (Conv3d) raised RuntimeError: "
        f"{said}; no --input was given: give the model's input shape with --input N,C,H,W (N,C,T,H,W for a video "
        f"model, N,C,L for a sequence)")
    ok = CliRunner().invoke(app, ["cost", "torchvision:r3d_18", "--input", "1,3,8,32,32", "--json"])
    assert ok.exit_code == 0, ok.output


# --- the CLI's targets: exactly the model builders -----------------------------------------------------------------

BUILDERS = ["cnn1d_small", "mobilenet_v1", "mobilenet_v1_small", "shufflenet_v1", "shufflenet_v1_small", "repvgg_a0",
            "fasternet_t0", "ghostnet", "ghostnet_1_0"]


def test_models_lists_every_builder_once_and_no_helper():
    """ghostnet was missing (though `convzoo cost ghostnet` worked); load_converted and the blocks are not models."""
    from convzoo import models

    assert list(models.MODELS) == BUILDERS
    assert all(models.MODELS[name] is getattr(models, name) for name in BUILDERS)


def test_cli_cost_help_and_unknown_target_list_the_models():
    text = " ".join(CliRunner().invoke(app, ["cost", "--help"]).output.replace("│", " ").split())
    assert f"a convzoo model ({', '.join(BUILDERS)}), torchvision:NAME, or module.path:callable" in text
    line = _one_error_line(CliRunner().invoke(app, ["cost", "load_converted"]))  # any callable was called
    assert line.startswith("error: unknown target 'load_converted': give a family (standard, ")
    assert line.endswith(f"a convzoo model ({', '.join(BUILDERS)}), torchvision:NAME or module.path:callable")


@pytest.mark.parametrize(("args", "line"), [
    # Python's "ghostnet_1_0() got an unexpected keyword argument 'width'"
    (["ghostnet_1_0", "--arg", "width=0.5"],
     "error: --arg width=0.5: ghostnet_1_0 has no argument 'width'; its arguments: num_classes"),
    (["convzoo.models:load_converted"],  # "load_converted() missing 1 required positional argument: 'path'"
     "error: convzoo.models:load_converted needs path: give --arg path=VALUE (its arguments: path)"),
    (["convzoo.models:FasterNet", "--arg", "depths=(1,-2,8,2)"],  # 289.6 M MACs of a net with a -2-block stage
     ("error: FasterNet: depths=(1, -2, 8, 2) must give 4 ints >= 1 (the blocks of each of the 4 stages); "
     "depths[1]=-2 is not")),
])
def test_cli_cost_bad_targets_and_arguments_are_one_line(args, line):
    assert _one_error_line(CliRunner().invoke(app, ["cost", *args])) == line


def test_cli_cost_ghostnet_takes_its_width():
    """Table 7 of the GhostNet paper: 0.5× is 42 M multiply-adds."""
    result = CliRunner().invoke(app, ["cost", "ghostnet", "--arg", "width=0.5", "--json"])
    assert result.exit_code == 0, result.output
    import json

    assert json.loads(result.output)["macs"] == cz.cost(cz.models.ghostnet(0.5), (1, 3, 224, 224)).macs
    assert round(json.loads(result.output)["macs"] / 1e6) == 42


# --- the weight count printed by cost ---------------------------------------------------------------------------------


def test_cli_cost_counts_the_weights_of_conv_linear_and_attention_projections_only():
    """vit_b_16 by hand: patch conv 768·3·16·16 = 589,824; per encoder layer the attention's in-projection 3·768² =
    1,769,472, its out-projection 768² = 589,824 and the MLP 2·768·3072 = 4,718,592 (×12); the head 768·1000. The
    pos_embedding (1·197·768) and class_token (768) are not weights of a conv or linear: p.dim() > 1 counted them
    (86,444,544 = 86,292,480 + 152,064)."""
    import json

    by_hand = 768 * 3 * 16 * 16 + 12 * (3 * 768 * 768 + 768 * 768 + 2 * 768 * 3072) + 768 * 1000
    assert by_hand == 86_292_480
    result = CliRunner().invoke(app, ["cost", "torchvision:vit_b_16", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["weight_params"] == by_hand
    text = " ".join(CliRunner().invoke(app, ["cost", "torchvision:vit_b_16"]).output.split())
    assert f"conv and linear weights alone {by_hand:,} (86.3 M)" in text


def test_cli_cost_weight_count_leaves_out_a_dynamic_convs_per_kernel_bias():
    """DynamicConv2d's bias is (K, C_out): a bias, though p.dim() > 1 counted it as a weight."""
    import json

    layer = cz.build("dynamic", 64, 128, 3)
    assert layer.bias.dim() == 2
    result = CliRunner().invoke(app, ["cost", "dynamic", "--json"])
    assert result.exit_code == 0, result.output
    every = sum(p.numel() for p in layer.parameters() if p.dim() > 1)
    assert json.loads(result.output)["weight_params"] == every - layer.bias.numel()
