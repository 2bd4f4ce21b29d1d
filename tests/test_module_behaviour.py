"""Module plumbing every family must get right (state_dict, meta device, repr, reset_parameters), and the
behaviour particular layers promise in their docstrings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import convzoo
from convzoo import (
    ChannelShuffle,
    DeformConv2d,
    DynamicConv2d,
    GlobalDepthwiseConv2d,
    TransposedConv2d,
    separate_kernel,
)
from convzoo.functional import correlate

SHAPES = {1: (2, 4, 8), 2: (2, 4, 8, 8), 3: (2, 4, 6, 6, 6)}
CASES = [(f.name, dim) for f in convzoo.families() for dim in f.dims]
IDS = [f"{n}-{d}d" for n, d in CASES]


def _input(dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*SHAPES[dim], generator=torch.Generator().manual_seed(100 + seed))


def _build(name: str, dim: int, seed: int, **kwargs) -> torch.nn.Module:
    """Build with the global RNG at ``seed`` and run once, so lazy parameters exist."""
    torch.manual_seed(seed)
    module = convzoo.build(name, 4, 4, None, dim, **kwargs)
    with torch.no_grad():
        module(_input(dim))
    return module


def _meta_kernel(name: str) -> int | None:
    """Global depthwise's kernel is the map (8×8 here): given up front, so the layer is not lazy on meta."""
    return 8 if name == "global_depthwise" else None


# ---------------------------------------------------------------------------------------------------------
# Every family
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def deterministic():
    """Bitwise repeatable calls: a form measured faster alone is not tried in the layer's calls, where two layers of
    one key would alternate exact forms that round differently (``layers/context_trial.py``)."""
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("name, dim", CASES, ids=IDS)
def test_state_dict_round_trip(name, dim, deterministic):
    source, target = _build(name, dim, seed=0), _build(name, dim, seed=1)
    x = _input(dim, seed=1)
    with torch.no_grad():
        expected, before = source(x), target(x)
    assert not torch.allclose(expected, before), "different seeds should give different layers"
    state = source.state_dict()
    assert state, "the layer has no state"
    target.load_state_dict(state)  # strict: same keys, same shapes
    for key, value in target.state_dict().items():  # before the forward: in train mode BN updates its statistics
        assert torch.equal(value, state[key]), key
    with torch.no_grad():
        torch.testing.assert_close(target(x), expected, rtol=0, atol=0)


def test_state_dict_loads_into_a_lazy_global_depthwise(deterministic):
    source = _build("global_depthwise", 2, seed=0)
    target = GlobalDepthwiseConv2d(4)
    assert target.kernel_size is None
    target.load_state_dict(source.state_dict())
    assert target.kernel_size == (8, 8)
    x = _input(2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


@pytest.mark.parametrize("name, dim", CASES, ids=IDS)
def test_construct_on_meta(name, dim):
    kernel = _meta_kernel(name)
    module = convzoo.build(name, 4, 4, kernel, dim, device="meta")
    params = dict(module.named_parameters())
    assert params
    off_meta = [k for k, t in [*params.items(), *module.named_buffers()] if t.device.type != "meta"]
    assert not off_meta, f"not on meta: {off_meta}"
    reference = convzoo.build(name, 4, 4, kernel, dim)
    assert {k: tuple(v.shape) for k, v in params.items()} == {
        k: tuple(v.shape) for k, v in reference.named_parameters()
    }
    # Shape inference runs on meta too and agrees with the real layer.
    x = _input(dim)
    with torch.no_grad():
        out = module(x.to("meta"))
        assert out.device.type == "meta"
        assert out.shape == reference(x).shape


@pytest.mark.parametrize("name, dim", CASES, ids=IDS)
def test_meta_to_empty_then_load_state_dict(name, dim):
    """Deferred initialisation: build on meta, allocate, load real weights -> the same layer as the original."""
    kernel = _meta_kernel(name)
    torch.manual_seed(0)
    reference = convzoo.build(name, 4, 4, kernel, dim)
    module = convzoo.build(name, 4, 4, kernel, dim, device="meta").to_empty(device="cpu")
    module.load_state_dict(reference.state_dict())
    x = _input(dim)
    with torch.no_grad():
        torch.testing.assert_close(module(x), reference(x))


@pytest.mark.parametrize("name, dim", CASES, ids=IDS)
def test_repr(name, dim):
    module = convzoo.build(name, 4, 4, None, dim)  # before the first forward: lazy layers have no kernel yet
    for text in (repr(module), repr(_build(name, dim, seed=0))):
        assert text.startswith(type(module).__name__ + "(")
    extra = module.extra_repr()
    assert extra.startswith("4, ")  # the channel counts come first
    assert extra in repr(module)


@pytest.mark.parametrize("name, dim", CASES, ids=IDS)
def test_reset_parameters_redraws_the_weights(name, dim):
    module = _build(name, dim, seed=0)
    before = {k: v.detach().clone() for k, v in module.named_parameters()}
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(7.0)  # whatever reset_parameters leaves untouched stays at 7
    torch.manual_seed(1)
    module.reset_parameters()
    after = {k: v.detach() for k, v in module.named_parameters()}
    assert after.keys() == before.keys()
    for key in before:
        assert not (after[key] == 7.0).any(), f"{key} was not reset"
        constant = before[key].numel() > 1 and before[key].unique().numel() == 1
        if before[key].any() and not constant:  # random: redrawn differently with another seed
            assert not torch.equal(before[key], after[key]), f"{key} is the same after reset with another seed"
        elif constant and before[key].any():  # a constant by design (a norm's weight of ones): the same constant again
            assert torch.equal(before[key], after[key]), f"{key} was a constant at construction but not after reset"
        else:  # offsets of the deformable convs are zero by design, before and after
            assert not after[key].any(), f"{key} was zero-initialised at construction but not by reset"
    assert any(before[k].any() for k in before)


@pytest.mark.parametrize("name, dim", CASES, ids=IDS)
def test_kernels_built_from_the_weights_follow_functional_call_s_tensors(name, dim):
    """Passes without autograd reuse kernels built from the parameters (flipped, masked, …) while the weights are
    unchanged. ``torch.func.functional_call`` hands in other tensors each call, and one may land where a freed one
    was, with the same version counter: here two tensor objects over the same memory, new values in between. The
    second call must see the new values (HetConv's reuse, keyed on address and version only, did not)."""
    module = _build(name, dim, seed=0).eval()
    x = _input(dim)
    names = [n for n, _ in module.named_parameters()]
    arrays = [p.detach().numpy().copy() for p in module.parameters()]

    def call(copy: bool) -> torch.Tensor:
        with torch.no_grad():
            tensors = [torch.from_numpy(a.copy() if copy else a) for a in arrays]
            return torch.func.functional_call(module, dict(zip(names, tensors)), (x,))

    first = call(False)
    for a in arrays:
        a *= 0.5  # the same memory, new values
    second, expected = call(False), call(True)
    torch.testing.assert_close(second, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(first, second)


# ---------------------------------------------------------------------------------------------------------
# Deformable convolution at initialisation
# ---------------------------------------------------------------------------------------------------------

DEFORM_GEOMETRIES = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, dilation=2, padding=2),
    dict(kernel_size=(3, 5), padding=(0, 2)),
    dict(kernel_size=3, groups=2, padding=1),
    dict(kernel_size=3, offset_groups=2, padding=1),
]


def _conv_args(kwargs: dict) -> dict:
    return {k: kwargs[k] for k in ("stride", "padding", "dilation", "groups") if k in kwargs}


@pytest.mark.parametrize("kwargs", DEFORM_GEOMETRIES, ids=str)
def test_deform_v1_at_init_equals_conv(kwargs):
    torch.manual_seed(0)
    layer = DeformConv2d(4, 6, **kwargs)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        y = layer(x)
        expected = correlate(x, layer.weight, layer.bias, **_conv_args(kwargs))
        conv = convzoo.Conv2d(4, 6, kwargs["kernel_size"], **_conv_args(kwargs))
        conv.weight.copy_(layer.weight)
        conv.bias.copy_(layer.bias)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(y, conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", DEFORM_GEOMETRIES, ids=str)
def test_deform_v2_at_init_is_half_the_conv_plus_bias(kwargs):
    torch.manual_seed(0)
    layer = DeformConv2d(4, 6, modulated=True, **kwargs)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        y = layer(x)
        no_bias = correlate(x, layer.weight, None, **_conv_args(kwargs))
    expected = 0.5 * no_bias + layer.bias.detach().view(1, -1, 1, 1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_deform_integer_offset_shifts_the_input():
    """Every tap moved by dx=+1 reads x one column to the right: the W padding moves from (1, 1) to (0, 2)."""
    torch.manual_seed(0)
    layer = DeformConv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 6, 7)
    offset = torch.zeros(2, 18, 6, 7)
    offset[:, 1::2] = 1.0  # layout: (dy, dx) per tap
    with torch.no_grad():
        expected = correlate(x, layer.weight, layer.bias, padding=((1, 1), (0, 2)))
        torch.testing.assert_close(layer(x, offset), expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(layer(x), expected, rtol=1e-3, atol=1e-3)  # the offset did something


# ---------------------------------------------------------------------------------------------------------
# Dynamic convolution temperature
# ---------------------------------------------------------------------------------------------------------


def _dynamic_layer() -> DynamicConv2d:
    torch.manual_seed(0)
    layer = DynamicConv2d(4, 6, 3, padding=1, num_kernels=3)
    with torch.no_grad():
        layer.attention.fc2.weight.mul_(20)  # spread the logits so the temperature matters
        layer.attention.fc2.bias.mul_(20)
    return layer


def test_dynamic_temperature_changes_the_output():
    layer = _dynamic_layer()
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        hot = layer(x)
        layer.temperature = 1
        assert layer.temperature == 1.0 and isinstance(layer.temperature, float)
        cold = layer(x)
    assert not torch.allclose(hot, cold, rtol=1e-3, atol=1e-3)


def test_dynamic_high_temperature_averages_the_kernels():
    layer = _dynamic_layer()
    layer.temperature = 1e9
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        expected = correlate(x, layer.kernels.mean(0), layer.bias.mean(0), padding=1)
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_dynamic_low_temperature_picks_one_kernel_per_sample():
    layer = _dynamic_layer()
    layer.temperature = 1e-6
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        att = layer.attention
        logits = att.fc2(torch.relu(att.fc1(x.mean((2, 3)))))
        top = logits.topk(2, dim=1).values
        assert ((top[:, 0] - top[:, 1]) > 1e-3).all(), "ambiguous argmax: change the seed"
        picks = logits.argmax(1)
        expected = torch.cat([
            correlate(x[i:i + 1], layer.kernels[k], layer.bias[k], padding=1) for i, k in enumerate(picks.tolist())
        ])
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Global depthwise, channel shuffle, separable kernels, transposed output size
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_global_depthwise_infers_kernel_size(bias):
    torch.manual_seed(0)
    layer = GlobalDepthwiseConv2d(4, 4, None, bias=bias)
    assert layer.kernel_size is None and layer.has_uninitialized_params()
    x = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        y = layer(x)
    assert layer.kernel_size == (5, 7)
    assert layer.weight.shape == (4, 1, 5, 7)
    assert y.shape == (2, 4, 1, 1)
    expected = (x * layer.weight.detach()[:, 0]).sum((2, 3))
    if bias:
        expected = expected + layer.bias.detach()
    torch.testing.assert_close(y[:, :, 0, 0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 12, 5), (2, 12, 3, 4), (2, 12, 2, 3, 2)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("groups", [1, 2, 3, 4, 12])
def test_channel_shuffle_matches_torch(shape, groups):
    x = torch.randn(*shape)
    ours = ChannelShuffle(groups)(x)
    assert torch.equal(ours, torch.nn.ChannelShuffle(groups)(x))
    if 1 < groups < shape[1]:
        assert not torch.equal(ours, x)


def test_channel_shuffle_permutation_rule():
    x = torch.arange(6.0).view(1, 6, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_separate_sobel(dtype):
    sobel = torch.tensor([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=dtype)
    column, row, rel_error = separate_kernel(sobel)
    assert rel_error < 1e-12
    torch.testing.assert_close(torch.outer(column, row), sobel.double(), rtol=0, atol=1e-12)
    c = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    r = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(column / column.norm(), c / c.norm(), rtol=0, atol=1e-12)  # peak made positive
    torch.testing.assert_close(row / row.norm(), r / r.norm(), rtol=0, atol=1e-12)


def test_separate_random_kernel_is_not_rank_one():
    kernel = torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    column, row, rel_error = separate_kernel(kernel)
    assert rel_error > 0.01
    # It is still the best rank-1 fit (Eckart–Young): the error is the norm of the discarded singular values.
    s = torch.linalg.svdvals(kernel)
    assert rel_error == pytest.approx(float(s[1:].norm() / s.norm()), rel=1e-9)
    assert rel_error == pytest.approx(float((kernel - torch.outer(column, row)).norm() / kernel.norm()), rel=1e-9)


def test_transposed_output_size():
    torch.manual_seed(0)
    layer = TransposedConv2d(1, 1, 3, stride=2, padding=1)
    x = torch.randn(1, 1, 5, 5)
    with torch.no_grad():
        y9 = layer(x, output_size=(9, 9))
        y10 = layer(x, output_size=(10, 10))
        y_mixed = layer(x, output_size=(1, 1, 9, 10))
        plain = layer(x)
    assert y9.shape == (1, 1, 9, 9)
    assert y10.shape == (1, 1, 10, 10)
    assert y_mixed.shape == (1, 1, 9, 10)
    torch.testing.assert_close(plain, y9, rtol=0, atol=0)
    torch.testing.assert_close(
        y10, F.conv_transpose2d(x, layer.weight, layer.bias, stride=2, padding=1, output_padding=1)
    )
    torch.testing.assert_close(y10[..., :9, :9], y9)
