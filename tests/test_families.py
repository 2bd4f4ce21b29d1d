"""Every family against the NumPy oracle (reference.py) on randomly drawn shapes and parameters.

Each test draws the layer's arguments with hypothesis, re-draws every parameter at random (so zero-initialised
parts are exercised), and requires fp32 relative error < 1e-5 against the fp64 reference.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
dims = st.sampled_from([1, 2, 3])
CONV = {1: cz.Conv1d, 2: cz.Conv2d, 3: cz.Conv3d}


def spatial_size(dim: int, extent: int, draw) -> tuple[int, ...]:
    """A random input size per dim that fits a window of ``extent`` (small in 3-D to keep the oracle fast)."""
    top = {1: 13, 2: 9, 3: 6}[dim]
    return tuple(draw(st.integers(max(extent, 1), max(top, extent))) for _ in range(dim))


def assert_matches_reference(module: torch.nn.Module, x: torch.Tensor, seed: int) -> None:
    with torch.no_grad():
        module(x)  # materialise lazy parameters
    randomize_parameters_(module, torch.Generator().manual_seed(seed))
    error = check_module(module, x)
    assert error < TOLERANCE, f"{module}: relative error {error:.3g}"


def random_input(batch: int, channels: int, size: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, channels, *size), generator=g) * 2 - 1


@st.composite
def conv_case(draw):
    dim = draw(dims)
    groups = draw(st.sampled_from([1, 2, 3]))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = draw(st.integers(1, 4))
    s, d = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    padding_mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
    padding = draw(st.sampled_from([0, 1, 2, "same", "valid", "pairs"])) if s == 1 else draw(st.integers(0, 2))
    if padding == "pairs":
        padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(dim))
    kwargs = dict(stride=s, padding=padding, dilation=d, groups=groups, padding_mode=padding_mode,
                  bias=draw(st.booleans()), mode=draw(st.sampled_from(["correlation", "convolution"])))
    extent = d * (k - 1) + 1
    size = spatial_size(dim, extent + 2, draw)  # +2 keeps reflect padding (≤ 2) legal
    return CONV[dim](cin, cout, k, **kwargs), random_input(draw(st.integers(1, 2)), cin, size, draw(st.integers(0, 99)))


@SETTINGS
@given(conv_case(), st.integers(0, 2**16))
def test_standard_grouped_dilated_convolution(case, seed):
    module, x = case
    assert_matches_reference(module, x, seed)


@SETTINGS
@given(st.data())
def test_pointwise_and_depthwise(data):
    dim = data.draw(dims)
    cin = data.draw(st.integers(1, 6))
    groups = data.draw(st.sampled_from([g for g in (1, 2, 3) if cin % g == 0]))
    size = spatial_size(dim, 5, data.draw)
    pointwise = [cz.PointwiseConv1d, cz.PointwiseConv2d, cz.PointwiseConv3d][dim - 1]
    depthwise = [cz.DepthwiseConv1d, cz.DepthwiseConv2d, cz.DepthwiseConv3d][dim - 1]
    x = random_input(2, cin, size, data.draw(st.integers(0, 99)))
    assert_matches_reference(pointwise(cin, groups * data.draw(st.integers(1, 3)), groups=groups), x, 1)
    k, s, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    module = depthwise(cin, cin * data.draw(st.integers(1, 3)), k, stride=s, dilation=d,
                       padding=data.draw(st.integers(0, 2)))
    assert_matches_reference(module, x, 2)


@SETTINGS
@given(st.data())
def test_depthwise_separable(data):
    dim = data.draw(dims)
    cin, cout = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    k, s = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    cls = [cz.DepthwiseSeparableConv1d, cz.DepthwiseSeparableConv2d, cz.DepthwiseSeparableConv3d][dim - 1]
    module = cls(cin, cout, k, stride=s, padding=k // 2, depth_multiplier=data.draw(st.integers(1, 2)),
                 bias=data.draw(st.booleans()))
    assert_matches_reference(module, random_input(2, cin, spatial_size(dim, k, data.draw), 3), 4)


@SETTINGS
@given(st.data())
def test_transposed(data):
    dim = data.draw(dims)
    groups = data.draw(st.sampled_from([1, 2]))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    k, s, d = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2))
    p = data.draw(st.integers(0, (d * (k - 1)) // 2))
    a = data.draw(st.integers(0, max(s, d) - 1))
    cls = [cz.TransposedConv1d, cz.TransposedConv2d, cz.TransposedConv3d][dim - 1]
    module = cls(cin, cout, k, stride=s, padding=p, output_padding=a, groups=groups, dilation=d,
                 bias=data.draw(st.booleans()))
    size = tuple(data.draw(st.integers(1, {1: 8, 2: 5, 3: 3}[dim])) for _ in range(dim))
    assert_matches_reference(module, random_input(2, cin, size, 5), 6)


@SETTINGS
@given(st.data())
def test_resize_conv(data):
    dim = data.draw(dims)
    cls = [cz.ResizeConv1d, cz.ResizeConv2d, cz.ResizeConv3d][dim - 1]
    linear = {1: "linear", 2: "bilinear", 3: "trilinear"}[dim]
    module = cls(2, 3, data.draw(st.integers(1, 4)), scale_factor=data.draw(st.integers(1, 3)),
                 upsample_mode=data.draw(st.sampled_from(["nearest", linear])),
                 padding_mode=data.draw(st.sampled_from(["zeros", "replicate"])))
    size = tuple(data.draw(st.integers(2, {1: 8, 2: 4, 3: 2}[dim])) for _ in range(dim))
    assert_matches_reference(module, random_input(2, 2, size, 7), 8)


@st.composite
def geometry_2d(draw, odd: bool = False, strided: bool = True):
    k = draw(st.sampled_from([1, 3, 5] if odd else [1, 2, 3, 4, 5]))
    s = draw(st.integers(1, 2)) if strided else 1
    d = draw(st.integers(1, 2))
    padding = draw(st.sampled_from(["same", 0, 1, 2])) if s == 1 else draw(st.integers(0, 2))
    return k, s, d, padding


@SETTINGS
@given(st.data(), geometry_2d())
def test_spatially_separable_and_flattened(data, geometry):
    k, s, d, padding = geometry
    cin, cout = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    x = random_input(2, cin, spatial_size(2, d * (k - 1) + 1, data.draw), 9)
    mid = data.draw(st.none() | st.integers(1, 4))
    assert_matches_reference(cz.SpatiallySeparableConv2d(cin, cout, k, s, padding, d, mid_channels=mid), x, 10)
    assert_matches_reference(cz.FlattenedConv2d(cin, cout, k, s, padding, d, bias=data.draw(st.booleans())), x, 11)


@SETTINGS
@given(st.data())
def test_shuffle_and_shuffled_grouped(data):
    groups = data.draw(st.integers(1, 4))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    dim = data.draw(dims)
    size = spatial_size(dim, 3, data.draw)
    assert_matches_reference(cz.ChannelShuffle(groups), random_input(2, cin, size, 12), 13)
    k = data.draw(st.integers(1, 3))
    shuffled = [cz.ShuffledGroupedConv1d, cz.ShuffledGroupedConv2d, cz.ShuffledGroupedConv3d][dim - 1]
    x2 = random_input(2, cin, spatial_size(dim, k, data.draw), 14)
    assert_matches_reference(shuffled(cin, cout, k, stride=data.draw(st.integers(1, 2)), groups=groups), x2, 15)


@SETTINGS
@given(st.data())
def test_global_depthwise(data):
    c = data.draw(st.integers(1, 6))
    size = (data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8)))
    lazy = data.draw(st.booleans())
    cout = c * data.draw(st.integers(1, 2))
    module = cz.GlobalDepthwiseConv2d(c, cout, None if lazy else size, bias=data.draw(st.booleans()))
    assert_matches_reference(module, random_input(2, c, size, 16), 17)


@SETTINGS
@given(st.data())
def test_mixconv(data):
    kernels = tuple(data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=3)))
    split = data.draw(st.sampled_from(["equal", "exponential"]))
    n = len(kernels)
    minimum = n if split == "equal" else 2 ** (n - 1)
    cin = data.draw(st.integers(minimum, minimum + 6))
    cout = cin if data.draw(st.booleans()) else data.draw(st.integers(minimum, minimum + 6))
    s, d = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    module = cz.MixConv2d(cin, cout, kernels, s, "same", d, bias=data.draw(st.booleans()), split=split,
                          padding_mode=data.draw(st.sampled_from(["zeros", "replicate"])))
    assert_matches_reference(module, random_input(2, cin, spatial_size(2, 3, data.draw), 18), 19)


@SETTINGS
@given(st.data(), geometry_2d(odd=True))
def test_hetconv(data, geometry):
    k, s, d, padding = geometry
    p = data.draw(st.integers(1, 4))
    cin, cout = p * data.draw(st.integers(1, 3)), data.draw(st.integers(1, 7))
    module = cz.HetConv2d(cin, cout, k, s, padding, d, bias=data.draw(st.booleans()), p=p,
                          padding_mode=data.draw(st.sampled_from(["zeros", "replicate"])))
    x = random_input(2, cin, spatial_size(2, d * (k - 1) + 1, data.draw), 20)
    assert_matches_reference(module, x, 21)  # NCHW: the masked dense form
    assert_matches_reference(module, x.contiguous(memory_format=torch.channels_last), 21)  # the grouped + 1×1 form


@SETTINGS
@given(st.data())
def test_dynamic(data):
    dim = data.draw(dims)
    groups = data.draw(st.sampled_from([1, 2]))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    k, s, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    cls = [cz.DynamicConv1d, cz.DynamicConv2d, cz.DynamicConv3d][dim - 1]
    module = cls(cin, cout, k, num_kernels=data.draw(st.integers(1, 4)), reduction=data.draw(st.integers(1, 4)),
                 temperature=data.draw(st.sampled_from([0.5, 1.0, 30.0])), stride=s, padding=data.draw(st.integers(0, 2)),
                 dilation=d, groups=groups, bias=data.draw(st.booleans()),
                 padding_mode=data.draw(st.sampled_from(["zeros", "replicate"])))
    x = random_input(data.draw(st.integers(1, 3)), cin, spatial_size(dim, d * (k - 1) + 1, data.draw), 22)
    assert_matches_reference(module, x, 23)


@SETTINGS
@given(st.data(), geometry_2d(odd=False))
def test_deformable(data, geometry):
    k, s, d, padding = geometry
    groups, offset_groups = data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 2]))
    cin, cout = 2 * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    module = cz.DeformConv2d(cin, cout, k, s, padding, d, groups, data.draw(st.booleans()),
                             data.draw(st.sampled_from(["zeros", "replicate"])), offset_groups=offset_groups,
                             modulated=data.draw(st.booleans()))
    x = random_input(2, cin, spatial_size(2, d * (k - 1) + 1, data.draw), 24)
    assert_matches_reference(module, x, 25)


@pytest.mark.parametrize("name", [f.name for f in cz.families()])
def test_registry_defaults_match_reference(name):
    """The instances ``convzoo verify`` checks, in every dim each family has."""
    from convzoo.verify import verify_family

    for dim in cz.family(name).dims:
        result = verify_family(name, dim=dim, in_channels=4, out_channels=8 if name not in ("global_depthwise", "partial", "involution") else 4,
                               size=7 if dim < 3 else 4, seed=dim)
        assert result.passed, result
