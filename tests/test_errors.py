"""Bad arguments and inputs fail early, with a ValueError / TypeError whose message names the argument, its
value and the rule it breaks (``convzoo._checks``)."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch

import convzoo
from convzoo import (
    ChannelShuffle,
    Conv1d,
    Conv2d,
    Conv3d,
    DeformConv2d,
    DepthwiseConv2d,
    DepthwiseSeparableConv2d,
    DynamicConv2d,
    GlobalDepthwiseConv2d,
    HetConv2d,
    MixConv2d,
    TransposedConv2d,
)


def lit(*parts: str) -> str:
    """A regex matching the literal ``parts`` in order, anything in between."""
    return ".*".join(re.escape(p) for p in parts)


def make(cls, *args, **defaults):
    """A constructor of ``cls(*args, **defaults)`` whose keyword arguments the test may override."""

    def build(**kwargs):
        return cls(*args, **{**defaults, **kwargs})

    build.__name__ = cls.__name__
    return build


# Constructors taking kernel_size / stride / dilation as keywords, with valid defaults.
GEOMETRY_LAYERS = {
    "Conv1d": make(Conv1d, 4, 4, kernel_size=3),
    "Conv2d": make(Conv2d, 4, 4, kernel_size=3),
    "Conv3d": make(Conv3d, 4, 4, kernel_size=3),
    "TransposedConv2d": make(TransposedConv2d, 4, 4, kernel_size=3),
    "DynamicConv2d": make(DynamicConv2d, 4, 4, kernel_size=3),
    "DeformConv2d": make(DeformConv2d, 4, 4, kernel_size=3),
    "HetConv2d": make(HetConv2d, 4, 4, kernel_size=3, p=2, padding=1),
    "DepthwiseConv2d": make(DepthwiseConv2d, 4, 4, kernel_size=3),
}


# ---------------------------------------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, in_channels, out_channels, message",
    [
        (Conv2d, 64, 64, "groups=3 must divide in_channels=64"),
        (Conv2d, 6, 64, "groups=3 must divide out_channels=64"),
        (DynamicConv2d, 64, 6, "groups=3 must divide in_channels=64"),
        (DynamicConv2d, 6, 8, "groups=3 must divide out_channels=8"),
        (DeformConv2d, 4, 6, "groups=3 must divide in_channels=4"),
        (DeformConv2d, 6, 4, "groups=3 must divide out_channels=4"),
        (TransposedConv2d, 8, 6, "groups=3 must divide in_channels=8"),
        (TransposedConv2d, 6, 8, "groups=3 must divide out_channels=8"),
    ],
)
def test_groups_must_divide_channels(cls, in_channels, out_channels, message):
    with pytest.raises(ValueError, match=lit(message)):
        cls(in_channels, out_channels, 3, groups=3)


@pytest.mark.parametrize("cls", [Conv2d, TransposedConv2d, DynamicConv2d, DeformConv2d])
@pytest.mark.parametrize("groups", [0, -2])
def test_groups_must_be_positive(cls, groups):
    with pytest.raises(ValueError, match=lit(f"groups={groups} must be positive")):
        cls(4, 4, 3, groups=groups)


@pytest.mark.parametrize("layer", GEOMETRY_LAYERS.values(), ids=GEOMETRY_LAYERS.keys())
@pytest.mark.parametrize("arg", ["kernel_size", "stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_geometry(layer, arg, value):
    with pytest.raises(ValueError, match=lit(f"{arg}={value} must be positive")):
        layer(**{arg: value})


def test_non_positive_geometry_in_a_tuple():
    with pytest.raises(ValueError, match=lit("stride=(1, 0) must be positive")):
        Conv2d(4, 4, 3, stride=(1, 0))


@pytest.mark.parametrize(
    "layer",
    [make(Conv1d, 4, 4, 3), make(Conv2d, 4, 4, 3), make(TransposedConv2d, 4, 4, 3), make(DynamicConv2d, 4, 4, 3),
     make(DeformConv2d, 4, 4, 3), make(HetConv2d, 4, 4, 3, p=2)],
    ids=["Conv1d", "Conv2d", "TransposedConv2d", "DynamicConv2d", "DeformConv2d", "HetConv2d"],
)
def test_negative_padding(layer):
    with pytest.raises(ValueError, match=lit("padding=-1 must be >= 0")):
        layer(padding=-1)


def test_negative_padding_pair():
    with pytest.raises(ValueError, match=lit("padding=((0, 0), (-1, 1)) must be non-negative")):
        Conv2d(4, 4, 3, padding=((0, 0), (-1, 1)))
    with pytest.raises(ValueError, match=lit("padding=(1, -2) must be >= 0")):
        Conv2d(4, 4, 3, padding=(1, -2))


@pytest.mark.parametrize(
    "layer",
    [make(Conv2d, 4, 4, 3), make(Conv3d, 4, 4, 3), make(DynamicConv2d, 4, 4, 3), make(DeformConv2d, 4, 4, 3),
     make(HetConv2d, 4, 4, 3, p=2)],
    ids=["Conv2d", "Conv3d", "DynamicConv2d", "DeformConv2d", "HetConv2d"],
)
def test_same_padding_needs_stride_1(layer):
    with pytest.raises(ValueError, match=r"padding='same' needs stride=1 \(got stride=\(2,"):
        layer(padding="same", stride=2)


@pytest.mark.parametrize(
    "layer",
    [make(Conv2d, 4, 4, 3), make(DynamicConv2d, 4, 4, 3), make(DeformConv2d, 4, 4, 3), make(HetConv2d, 4, 4, 3, p=2)],
    ids=["Conv2d", "DynamicConv2d", "DeformConv2d", "HetConv2d"],
)
def test_unknown_padding_string(layer):
    with pytest.raises(ValueError, match=lit("padding='full' is unknown; choose one of 'same', 'valid'")):
        layer(padding="full")


@pytest.mark.parametrize(
    "layer",
    [make(Conv2d, 4, 4, 3), make(Conv1d, 4, 4, 3), make(DynamicConv2d, 4, 4, 3),
     make(DepthwiseSeparableConv2d, 4, 4, 3)],
    ids=["Conv2d", "Conv1d", "DynamicConv2d", "DepthwiseSeparableConv2d"],
)
def test_unknown_padding_mode(layer):
    with pytest.raises(ValueError, match=lit("padding_mode='mirror' is unknown", "'zeros'", "'circular'")):
        layer(padding_mode="mirror")


def test_unknown_conv_mode():
    with pytest.raises(ValueError, match=lit("mode='foo' is unknown; choose one of 'correlation', 'convolution'")):
        Conv2d(4, 4, 3, mode="foo")


@pytest.mark.parametrize(
    "kernel_size, message",
    [
        (True, "kernel_size=True must be an int or a tuple of 2 ints, not a bool"),
        (3.0, "kernel_size=3.0 must be an int or a tuple of 2 ints"),
        ((3, 3.0), "kernel_size=(3, 3.0) must be an int or a tuple of 2 ints"),
        ((3, True), "kernel_size=(3, True) must be an int or a tuple of 2 ints"),
        ((3, 3, 3), "kernel_size=(3, 3, 3) must be an int or a tuple of 2 ints"),
        ("3", "kernel_size='3' must be an int or a tuple of 2 ints"),
    ],
)
@pytest.mark.parametrize("cls", [Conv2d, TransposedConv2d, DynamicConv2d, DeformConv2d])
def test_kernel_size_type(cls, kernel_size, message):
    with pytest.raises(TypeError, match=lit(message)):
        cls(4, 4, kernel_size)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stride": 2, "output_padding": 2}, "output_padding=2 must be smaller than max(stride, dilation)=2"),
        ({"output_padding": 1}, "output_padding=1 must be smaller than max(stride, dilation)=1"),
        ({"stride": 2, "dilation": 3, "output_padding": (0, 3)},
         "output_padding=(0, 3) must be smaller than max(stride, dilation)=3"),
    ],
)
def test_output_padding_too_large(kwargs, message):
    with pytest.raises(ValueError, match=lit(message)):
        TransposedConv2d(4, 4, 3, **kwargs)


def test_output_padding_below_dilation_is_allowed():
    # stride 1, dilation 2: output_padding 1 < max(1, 2) is legal and adds one row/column.
    layer = TransposedConv2d(1, 1, 3, dilation=2, output_padding=1)
    assert layer(torch.randn(1, 1, 4, 4)).shape == (1, 1, 9, 9)


def test_negative_output_padding():
    with pytest.raises(ValueError, match=lit("output_padding=-1 must be >= 0")):
        TransposedConv2d(4, 4, 3, stride=2, output_padding=-1)


def test_hetconv_p_must_divide_in_channels():
    with pytest.raises(ValueError, match=lit("p=3 must divide in_channels=4")):
        HetConv2d(4, 4, 3, p=3)
    with pytest.raises(ValueError, match=lit("p=0 must be positive")):
        HetConv2d(4, 4, 3, p=0)


@pytest.mark.parametrize("kernel_size", [2, 4, (3, 2)])
def test_hetconv_kernel_must_be_odd(kernel_size):
    with pytest.raises(ValueError, match=lit(f"kernel_size={kernel_size!r} must be odd")):
        HetConv2d(4, 4, kernel_size, p=2, padding=1)


def test_mixconv_unknown_split():
    with pytest.raises(ValueError, match=lit("split='foo' is unknown; choose one of 'equal', 'exponential'")):
        MixConv2d(6, 6, (3, 5, 7), split="foo")


@pytest.mark.parametrize(
    "in_channels, out_channels, split, message",
    [
        (2, 6, "equal", "2 channels are too few for 3 kernel groups with split='equal'"),
        (6, 2, "equal", "2 channels are too few for 3 kernel groups with split='equal'"),
        (2, 2, "exponential", "2 channels are too few for 3 kernel groups with split='exponential'"),
    ],
)
def test_mixconv_too_few_channels(in_channels, out_channels, split, message):
    with pytest.raises(ValueError, match=lit(message)):
        MixConv2d(in_channels, out_channels, (3, 5, 7), split=split)


def test_mixconv_kernel_size_must_not_be_empty():
    with pytest.raises(TypeError, match=lit("kernel_size=() must be an int or a non-empty sequence of ints")):
        MixConv2d(4, 4, ())


def test_mixconv_padding_must_be_same():
    with pytest.raises(ValueError, match=lit("padding=1: MixConv pads every group 'same'")):
        MixConv2d(4, 4, (3, 5), padding=1)


@pytest.mark.parametrize("temperature", [0, -1, 0.0, -2.5, math.inf, math.nan])
def test_dynamic_temperature_at_construction(temperature):
    with pytest.raises(ValueError, match=lit(f"temperature={temperature!r} must be a positive finite number")):
        DynamicConv2d(4, 4, 3, temperature=temperature)


@pytest.mark.parametrize("temperature", [0, -1, math.inf, True])
def test_dynamic_temperature_set_later(temperature):
    layer = DynamicConv2d(4, 4, 3, temperature=5.0)
    with pytest.raises(ValueError, match=lit(f"temperature={temperature!r} must be a positive finite number")):
        layer.temperature = temperature
    assert layer.temperature == 5.0  # the rejected value was not stored


def test_deform_offset_groups_must_divide_in_channels():
    with pytest.raises(ValueError, match=lit("offset_groups=3 must divide in_channels=4")):
        DeformConv2d(4, 4, 3, offset_groups=3)
    with pytest.raises(ValueError, match=lit("offset_groups=0 must be positive")):
        DeformConv2d(4, 4, 3, offset_groups=0)


def test_deform_same_padding_with_stride_is_refused():
    with pytest.raises(ValueError, match=lit("padding='same' needs stride=1")):
        DeformConv2d(4, 4, 2, stride=2, padding="same")


@pytest.mark.parametrize("depth_multiplier", [0, -1])
def test_depth_multiplier_must_be_positive(depth_multiplier):
    with pytest.raises(ValueError, match=lit("out_channels=6 must be a multiple of in_channels=4")):
        DepthwiseConv2d(4, 6, 3)
    with pytest.raises(ValueError, match=lit(f"depth_multiplier={depth_multiplier} must be positive")):
        DepthwiseSeparableConv2d(4, 8, 3, depth_multiplier=depth_multiplier)


@pytest.mark.parametrize("cls", [Conv2d, DynamicConv2d, TransposedConv2d, HetConv2d])
def test_channels_must_be_positive(cls):
    with pytest.raises(ValueError, match=lit("in_channels=0 must be positive")):
        cls(0, 4, 3)
    with pytest.raises(ValueError, match=lit("out_channels=0 must be positive")):
        cls(4, 0, 3)


def test_channel_shuffle_groups_must_be_positive():
    with pytest.raises(ValueError, match=lit("groups=0 must be positive")):
        ChannelShuffle(0)


def test_global_depthwise_bad_input_size():
    with pytest.raises(ValueError, match=lit("kernel_size=0 must be positive")):
        GlobalDepthwiseConv2d(4, 4, 0)
    with pytest.raises(ValueError, match=lit("out_channels=6 must be a multiple of in_channels=4")):
        GlobalDepthwiseConv2d(4, 6)


# ---------------------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "layer, shape, message",
    [
        (Conv1d(2, 2, 5), (1, 2, 3), "Conv1d: kernel_size=5 with dilation=1 spans 5 but spatial dim 0 of the input "
                                     "is 3 (+0 padding = 3)"),
        (Conv2d(2, 2, 7, padding=1), (1, 2, 8, 4), "Conv2d: kernel_size=7 with dilation=1 spans 7 but spatial dim 1 "
                                                   "of the input is 4 (+2 padding = 6)"),
        (Conv3d(2, 2, 3, dilation=2), (1, 2, 5, 5, 4), "Conv3d: kernel_size=3 with dilation=2 spans 5 but spatial "
                                                       "dim 2 of the input is 4 (+0 padding = 4)"),
        (HetConv2d(4, 4, 5, p=2, padding=0), (1, 4, 3, 3), "HetConv2d: kernel_size=5 with dilation=1 spans 5"),
        (DynamicConv2d(4, 4, 5), (1, 4, 3, 3), "DynamicConv2d: kernel_size=5 with dilation=1 spans 5"),
        (DeformConv2d(4, 4, 5), (1, 4, 3, 3), "DeformConv2d: kernel_size=5 with dilation=1 spans 5"),
    ],
    ids=["Conv1d", "Conv2d", "Conv3d", "HetConv2d", "DynamicConv2d", "DeformConv2d"],
)
def test_kernel_larger_than_padded_input(layer, shape, message):
    with pytest.raises(ValueError, match=lit(message, "the kernel must not be larger than the padded input")):
        layer(torch.randn(*shape))


def test_kernel_exactly_fits_padded_input():
    # The boundary case is legal: a 5-tap kernel over 3 samples + 2 padding gives one output.
    assert Conv1d(1, 1, 5, padding=1)(torch.randn(1, 1, 3)).shape == (1, 1, 1)


SHAPES = {1: (2, 4, 8), 2: (2, 4, 8, 8), 3: (2, 4, 6, 6, 6)}
FAMILY_DIMS = [(f.name, dim) for f in convzoo.families() for dim in f.dims]


@pytest.mark.parametrize("name, dim", FAMILY_DIMS, ids=[f"{n}-{d}d" for n, d in FAMILY_DIMS])
@pytest.mark.parametrize("change", ["drop", "add"])
def test_wrong_input_rank(name, dim, change):
    layer = convzoo.build(name, 4, 4, None, dim)
    x = torch.randn(*SHAPES[dim])
    # One dim fewer is an unbatched (C, *S) input, accepted as torch's convs accept it; two fewer is wrong.
    x = x[0, ..., 0] if change == "drop" else x.unsqueeze(-1)
    with pytest.raises(ValueError, match=lit("expects", f"got shape {tuple(x.shape)}")):
        layer(x)


@pytest.mark.parametrize("name, dim", FAMILY_DIMS, ids=[f"{n}-{d}d" for n, d in FAMILY_DIMS])
def test_wrong_channel_count(name, dim):
    layer = convzoo.build(name, 4, 4, None, dim)
    x = torch.randn(2, 3, *SHAPES[dim][2:])
    with pytest.raises(ValueError, match=r"expects\D*\b4\b.*\(2, 3, "):
        layer(x)


def test_wrong_channel_count_message():
    with pytest.raises(ValueError, match=lit("Conv2d expects 64 input channels, got 3 (input shape (1, 3, 5, 5))")):
        Conv2d(64, 8, 3)(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match=lit("Conv2d expects a 4-D input (N, C, H, W) or an unbatched 3-D one "
                                             "(C, H, W), got shape (5, 5)")):
        Conv2d(3, 8, 3)(torch.randn(5, 5))


def test_unbatched_input_as_torch():
    layer = Conv2d(3, 8, 3)
    x = torch.randn(3, 5, 5)
    expected = torch.nn.functional.conv2d(x.unsqueeze(0), layer.weight, layer.bias)[0]
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("name, dim", FAMILY_DIMS, ids=[f"{n}-{d}d" for n, d in FAMILY_DIMS])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64])
def test_dtype_mismatch_one_message(name, dim, dtype):
    layer = convzoo.build(name, 4, 4, None, dim)
    layer(torch.randn(*SHAPES[dim]))  # materialises lazy parameters
    short = str(dtype).removeprefix("torch.")
    with pytest.raises(TypeError, match=lit(f"has float32 parameters but got a {short} input",
                                            "x.to(torch.float32)")):
        layer(torch.zeros(*SHAPES[dim], dtype=dtype))


@pytest.mark.parametrize("name", ["standard", "mixconv", "deformable", "dynamic", "global_depthwise"])
def test_numpy_input_says_what_is_expected(name):
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match=lit("expects a torch.Tensor input, got ndarray", "torch.from_numpy")):
        convzoo.build(name, 4, 4)(np.zeros((1, 4, 8, 8), dtype=np.float32))


def test_non_tensor_input():
    with pytest.raises(TypeError, match=lit("Conv2d expects a torch.Tensor input, got list")):
        Conv2d(1, 1, 1)([[1.0]])


def test_global_depthwise_input_size_must_equal_kernel():
    layer = GlobalDepthwiseConv2d(4, 4, 8)
    with pytest.raises(ValueError, match=lit("kernel_size=(8, 8)", "spatial size (7, 8)",
                                             "the input size must equal the kernel size")):
        layer(torch.randn(1, 4, 7, 8))


def test_lazy_global_depthwise_rejects_a_second_size():
    layer = GlobalDepthwiseConv2d(4)
    layer(torch.randn(1, 4, 5, 6))
    with pytest.raises(ValueError, match=lit("kernel_size=(5, 6)", "spatial size (6, 5)")):
        layer(torch.randn(1, 4, 6, 5))


@pytest.mark.parametrize("output_size", [(8, 8), (11, 11), (9, 11), (1, 1, 11, 9)])
def test_transposed_unreachable_output_size(output_size):
    layer = TransposedConv2d(1, 1, 3, stride=2, padding=1)
    wanted = tuple(output_size)[-2:]
    with pytest.raises(ValueError, match=lit(f"output_size={wanted} is not reachable from input size (5, 5)",
                                             "between (9, 9) and (10, 10)")):
        layer(torch.randn(1, 1, 5, 5), output_size=output_size)


def test_transposed_output_size_needs_every_dim():
    with pytest.raises(ValueError, match=lit("output_size=(9,) must give 2 spatial sizes")):
        TransposedConv2d(1, 1, 3, stride=2, padding=1)(torch.randn(1, 1, 5, 5), output_size=(9,))


def test_transposed_empty_output():
    with pytest.raises(ValueError, match=lit("padding=(3, 3) leaves an empty output (-2, -2)")):
        TransposedConv2d(1, 1, 3, padding=3)(torch.randn(1, 1, 2, 2))


@pytest.mark.parametrize(
    "offset_shape, expected",
    [((1, 18, 5, 5), (1, 18, 6, 6)), ((1, 9, 6, 6), (1, 18, 6, 6)), ((2, 18, 6, 6), (1, 18, 6, 6))],
)
def test_deform_offset_wrong_shape(offset_shape, expected):
    layer = DeformConv2d(4, 4, 3, padding=1)
    with pytest.raises(ValueError, match=lit(f"offset must have shape {expected}", f"got {offset_shape}")):
        layer(torch.randn(1, 4, 6, 6), offset=torch.zeros(*offset_shape))


def test_deform_mask_wrong_shape():
    layer = DeformConv2d(4, 4, 3, padding=1, modulated=True)
    with pytest.raises(ValueError, match=lit("mask must have shape (1, 9, 6, 6)", "got (1, 18, 6, 6)")):
        layer(torch.randn(1, 4, 6, 6), mask=torch.ones(1, 18, 6, 6))


def test_deform_v1_rejects_a_mask():
    layer = DeformConv2d(4, 4, 3, padding=1, modulated=False)
    with pytest.raises(ValueError, match=lit("mask is only used by deformable conv v2", "modulated=True")):
        layer(torch.randn(1, 4, 6, 6), mask=torch.ones(1, 9, 6, 6))


@pytest.mark.parametrize("shape", [(1, 4, 5), (1, 4, 5, 5), (1, 4, 2, 3, 3)])
def test_channel_shuffle_groups_must_divide_channels(shape):
    with pytest.raises(ValueError, match=lit("groups=3 must divide the number of channels 4")):
        ChannelShuffle(3)(torch.randn(*shape))


@pytest.mark.parametrize("shape", [(4, 6), (1, 4, 2, 2, 2, 2)])
def test_channel_shuffle_rank(shape):
    with pytest.raises(ValueError, match=lit("ChannelShuffle expects (N, C, L)", f"got shape {shape}")):
        ChannelShuffle(2)(torch.randn(*shape))


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------


def test_build_unknown_family_lists_known_ones():
    with pytest.raises(ValueError, match=lit("unknown family 'nope'; known families:")) as info:
        convzoo.build("nope", 4, 4)
    message = str(info.value)
    for f in convzoo.families():
        assert f.name in message


@pytest.mark.parametrize("name, dim", [("hetconv", 3), ("mixconv", 1), ("deformable", 3), ("flattened", 1)])
def test_build_unavailable_dim(name, dim):
    with pytest.raises(ValueError, match=lit(f"family {name!r} has no {dim}-D form; dims available: (2,)")):
        convzoo.build(name, 4, 4, dim=dim)


def test_build_depthwise_needs_a_multiple():
    with pytest.raises(ValueError, match=lit("out_channels=6 must be a multiple of in_channels=4")):
        convzoo.build("depthwise", 4, 6)


def test_build_global_depthwise_needs_a_multiple():
    with pytest.raises(ValueError, match=lit("out_channels=6 must be a multiple of in_channels=4")):
        convzoo.build("global_depthwise", 4, 6)


@pytest.mark.parametrize("name", ["grouped", "shuffled_grouped", "pointwise_grouped"])
def test_grouped_default_that_cannot_group_warns_and_says_which_groups(name):
    """build(name, 7, 7): gcd(7, 7, 4) = 1, so the 'grouped' family would quietly be a dense conv: a warning names
    the channels and the groups chosen. Channels with a common factor 2 or 4 build grouped, silently."""
    with pytest.warns(UserWarning, match=r"in_channels=7, out_channels=7.*groups=1"):
        assert convzoo.build(name, 7, 7).groups == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert convzoo.build(name, 6, 10).groups == 2


@pytest.mark.parametrize("name", ["grouped", "shuffled_grouped", "pointwise_grouped"])
def test_grouped_explicit_groups_that_do_not_divide_raise_like_torch(name):
    with pytest.raises(ValueError, match=r"groups=2 must divide in_channels=7"):
        convzoo.build(name, 7, 8, groups=2)
    with pytest.raises(ValueError, match=r"groups=4 must divide out_channels=6"):
        convzoo.build(name, 8, 6, groups=4)


@pytest.mark.parametrize("name", [f.name for f in convzoo.families()])
def test_jit_script_says_what_to_use_instead(name):
    """TorchScript cannot compile a forward that chooses its form in Python: one TypeError naming the layer and
    the ways that work, for the layer alone and inside a model."""
    layer = convzoo.build(name, 4, 4)
    for module in (layer, torch.nn.Sequential(torch.nn.Identity(), layer)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script's own deprecation warning
            with pytest.raises(TypeError, match=rf"torch\.jit\.script cannot compile {type(layer).__name__}: .*"
                                                r"torch\.jit\.trace, torch\.export\.export or torch\.compile"):
                torch.jit.script(module)
