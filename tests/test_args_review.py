"""Argument review (s20 fix-args): channel counts checked before the registry derives defaults from them, reflect /
circular padding that does not fit the input, DCNv3's offset_scale, NumPy geometry arguments as torch takes them,
and cost() of an empty batch through nearest upsampling."""

from __future__ import annotations

import itertools
import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo as cz
from convzoo import geometry

BAD_CHANNELS = [(24.0, TypeError, "must be an int"), ("8", TypeError, "must be an int"),
                (0, ValueError, "must be positive"), (-4, ValueError, "must be positive")]


def lit(*parts: str) -> str:
    """A regex matching the literal ``parts`` in order, anything in between."""
    return ".*".join(re.escape(p) for p in parts)


def _first_dim(family: cz.Family) -> int:
    return 2 if 2 in family.dims else family.dims[0]


# --- 1. channel counts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", cz.families(), ids=lambda f: f.name)
@pytest.mark.parametrize("which", ["in_channels", "out_channels"])
@pytest.mark.parametrize("value, kind, rule", BAD_CHANNELS, ids=repr)
def test_build_names_a_bad_channel_count(family: cz.Family, which: str, value: object, kind: type, rule: str) -> None:
    """Every family refuses a float, str, zero or negative channel count by name (the gcd / modulo of the default
    groups ran first: bare TypeError, ZeroDivisionError, a string-format error)."""
    channels = {"in_channels": 4, "out_channels": 8, which: value}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(kind, match=re.escape(f"{which}={value!r} {rule}")):
            cz.build(family.name, channels["in_channels"], channels["out_channels"], dim=_first_dim(family))


def test_build_grouped_float_channels_as_the_review_found() -> None:
    with pytest.raises(TypeError, match=re.escape("in_channels=24.0 must be an int")):
        cz.build("grouped", 32 * 0.75, 64)
    with pytest.raises(ValueError, match=re.escape("in_channels=0 must be positive")):
        cz.build("large_kernel", 0, 4)
    with pytest.raises(TypeError, match=re.escape("out_channels='8' must be an int")):
        cz.build("large_kernel", 4, "8")


def test_build_takes_numpy_channel_counts_as_ints() -> None:
    layer = cz.build("grouped", np.int64(8), np.int32(16))
    assert (layer.in_channels, layer.out_channels, layer.groups) == (8, 16, 4)
    assert type(layer.in_channels) is int and layer.weight.shape == (16, 2, 3, 3)


# --- 2. reflect / circular padding that does not fit the input ----------------------------------------------------


@pytest.mark.parametrize("mode", ["reflect", "circular", "replicate"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_padding_fit_rule_is_torch_pad(mode: str, dim: int) -> None:
    """check_window_fits refuses exactly the paddings F.pad refuses, for every size 1-3 and pad 0-4 (a 1-wide kernel,
    so the window always fits)."""
    for size, lo, hi in itertools.product(range(1, 4), range(5), range(5)):
        spatial = (size,) + (2,) * (dim - 1)
        pairs = ((lo, hi),) + ((1, 0),) * (dim - 1)
        try:
            F.pad(torch.zeros(1, 1, *spatial), [v for p in reversed(pairs) for v in p], mode=mode)
            torch_ok = True
        except RuntimeError:
            torch_ok = False
        try:
            geometry.check_window_fits(spatial, (1,) * dim, (1,) * dim, pairs, "Layer", padding_mode=mode)
            ours_ok = True
        except ValueError as error:
            ours_ok = False
            assert all(s in str(error) for s in ("Layer", f"padding={(lo, hi)}", f"padding_mode={mode!r}",
                                                  f"it is {size}"))
        assert ours_ok == torch_ok, (mode, spatial, pairs)


def test_circular_padding_equal_to_the_input_matches_torch() -> None:
    """The boundary that fits (circular pad == size) still runs, and gives torch's own conv."""
    torch.manual_seed(0)
    ours = cz.Conv2d(4, 4, 7, padding=3, padding_mode="circular")
    native = nn.Conv2d(4, 4, 7, padding=3, padding_mode="circular")
    native.load_state_dict(ours.state_dict())
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(ours(x), native(x), rtol=1e-5, atol=1e-5)


def _padding_mode_cases() -> list:
    """(family, dim, mode) for every family with a window whose constructor takes a reflect / circular padding_mode
    (pointwise ones take it but never pad)."""
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for family, mode in itertools.product([f for f in cz.families() if f.window], ("reflect", "circular")):
            for dim in family.dims:
                try:
                    cz.build(family.name, 4, 4, 7, dim=dim, padding_mode=mode)
                except (TypeError, ValueError):
                    continue
                cases.append(pytest.param(family.name, dim, mode, id=f"{family.name}-{dim}d-{mode}"))
    return cases


@pytest.mark.parametrize("name, dim, mode", _padding_mode_cases())
def test_every_family_names_a_padding_that_does_not_fit(name: str, dim: int, mode: str) -> None:
    """A 7-wide 'same' window pads 3 each side; on a 1-wide input (2 after resize's upsampling) reflect (3 < size)
    and circular (3 <= size) cannot copy it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = cz.build(name, 4, 4, 7, dim=dim, padding_mode=mode).eval()
    with pytest.raises(ValueError, match=lit("padding=(", f"padding_mode={mode!r}", "it is ")):
        layer(torch.randn(1, 4, *(1,) * dim))


# --- 3. DCNv3 offset_scale ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 0.0, -1.0, "1", True])
def test_dcnv3_offset_scale_must_be_positive_finite(value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(f"offset_scale={value!r} must be a positive finite number")):
        cz.DCNv3Conv2d(8, 8, 3, groups=2, offset_scale=value)


def test_dcnv3_finite_offset_scale_kept() -> None:
    assert cz.DCNv3Conv2d(8, 8, 3, groups=2, offset_scale=np.float64(0.25)).offset_scale == 0.25


# --- 4. NumPy kernel_size / stride / padding / dilation --------------------------------------------------------

NUMPY_ARGS = [
    dict(kernel_size=np.array([3, 2])),
    dict(kernel_size=np.int64(3), stride=np.array([2, 1], dtype=np.int32)),
    dict(kernel_size=3, padding=np.array([1, 2])),
    dict(kernel_size=np.array([3, 3], dtype=np.uint8), dilation=np.array([1, 2]), padding=np.int16(2)),
]


@pytest.mark.parametrize("args", NUMPY_ARGS, ids=lambda a: ",".join(a))
@pytest.mark.parametrize("ours, native", [(cz.Conv2d, nn.Conv2d), (cz.DepthwiseConv2d, None)])
def test_numpy_geometry_as_torch_conv(args: dict, ours: type, native: type | None) -> None:
    """NumPy ints and 1-D integer arrays give the layer torch's nn.Conv2d builds from them: the same weight shape,
    geometry (as Python ints) and output."""
    torch.manual_seed(0)
    layer = ours(4, 4, **args)
    reference = nn.Conv2d(4, 4, groups=4 if native is None else 1, **args)
    assert layer.weight.shape == reference.weight.shape
    for name in ("kernel_size", "stride", "padding", "dilation"):
        assert getattr(layer, name) == tuple(int(v) for v in getattr(reference, name))
        assert all(type(v) is int for v in getattr(layer, name))
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 9, 8)
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-5, atol=1e-5)


def test_numpy_padding_pairs_and_3d() -> None:
    layer = cz.Conv2d(4, 4, 3, padding=np.array([[0, 2], [1, 1]]))
    assert layer.padding_pairs == ((0, 2), (1, 1))
    x = torch.randn(1, 4, 6, 5)
    expected = F.conv2d(F.pad(x, [1, 1, 0, 2]), layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert cz.Conv3d(2, 2, np.array([1, 2, 3])).weight.shape == nn.Conv3d(2, 2, np.array([1, 2, 3])).weight.shape


@pytest.mark.parametrize("value", [np.array([3.0, 3.0]), np.array(3), np.array([[3, 3]]), np.array([True, True])],
                         ids=repr)
def test_numpy_non_integer_geometry_named(value: np.ndarray) -> None:
    with pytest.raises(TypeError, match=re.escape(f"kernel_size={value!r} must be an int or a tuple of 2 ints")):
        cz.Conv2d(4, 4, value)


# --- 5. cost() of an empty batch through nearest upsampling ----------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_cost_of_an_empty_batch_through_resize(dim: int) -> None:
    """N = 0: every count that scales with the batch is 0 (hand count), the parameters are the conv's
    C_out·C_in·3^D + C_out, and the shapes are the real forward's."""
    layer = cz.build("resize", 4, 5, dim=dim)
    spatial = (9, 8, 7)[:dim]
    report = cz.cost(layer, (0, 4, *spatial))
    expected_out = tuple(layer(torch.randn(0, 4, *spatial)).shape)
    assert expected_out == (0, 5, *(2 * s for s in spatial))
    assert report.output_shape == expected_out
    assert (report.macs, report.activation_macs, report.other_ops) == (0, 0, 0)
    assert report.params == 5 * 4 * 3**dim + 5
    assert report.bytes == report.params * 4  # the weights are read; no activation exists
    [row] = report.layers
    assert (row.input_shape, row.output_shape, row.macs) == ((0, 4, *spatial), expected_out, 0)


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_cost_of_an_empty_batch_through_native_upsample(mode: str) -> None:
    model = nn.Sequential(nn.Upsample(scale_factor=2, mode=mode), nn.Conv2d(4, 6, 3))
    report = cz.cost(model, (0, 4, 9, 8))
    assert report.output_shape == tuple(model(torch.randn(0, 4, 9, 8)).shape) == (0, 6, 16, 14)
    assert report.macs == 0 and report.params == 6 * 4 * 9 + 6
    assert [r.output_shape for r in report.layers] == [(0, 4, 18, 16), (0, 6, 16, 14)]
    # N = 1 is counted as before: 16·14 outputs · 6 · 4·3·3
    assert cz.cost(model, (1, 4, 9, 8)).macs == 16 * 14 * 6 * 4 * 9


@pytest.mark.parametrize("model", [cz.build("resize", 4, 4), nn.Sequential(nn.Upsample(scale_factor=2),
                                                                           nn.Conv2d(4, 4, 3))], ids=["resize", "native"])
def test_cost_of_an_empty_spatial_input_says_what_forward_says(model: nn.Module) -> None:
    """An empty spatial dim is refused by cost() with the forward's own words (not "cond must be a bool")."""
    with pytest.raises((ValueError, RuntimeError)) as real:
        model(torch.randn(1, 4, 0, 8))
    with pytest.raises(type(real.value), match=re.escape(str(real.value))):
        cz.cost(model, (1, 4, 0, 8))
