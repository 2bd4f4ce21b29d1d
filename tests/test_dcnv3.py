"""DCNv3 (InternImage): the layer against reference.dcnv3 (explicit bilinear sampling per point), the softmax masks,
the start as a regular grid, and its cost against a count of the multiply-accumulates its forward runs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_dcnv3_matches_reference(data):
    groups = data.draw(st.sampled_from([1, 2]))
    cin, cout = groups * data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5))
    kernel = data.draw(st.sampled_from([1, 3, (3, 1), (1, 5), (3, 5)]))
    module = cz.DCNv3Conv2d(cin, cout, kernel, dilation=data.draw(st.integers(1, 2)), groups=groups,
                            bias=data.draw(st.booleans()), offset_scale=data.draw(st.sampled_from([0.5, 1.0, 2.0])))
    size = (data.draw(st.integers(5, 8)), data.draw(st.integers(5, 8)))
    x = torch.rand((data.draw(st.integers(1, 2)), cin, *size), generator=torch.Generator().manual_seed(1)) * 2 - 1
    randomize_parameters_(module, torch.Generator().manual_seed(2), scale=data.draw(st.sampled_from([0.5, 1.5])))
    # the math, exactly: float64 layer against the float64 reference
    assert check_module(module.double(), x.double()) < 1e-10
    # float32: LayerNorm over 1–3 channels per group amplifies rounding (seen: 1.3e-5 for a case whose float64
    # error is 8.8e-16), so the fp32 bound is 10 × the families' usual one
    assert check_module(module.float(), x) < 10 * TOLERANCE


def test_masks_are_a_softmax_over_the_points_of_each_group():
    layer = cz.DCNv3Conv2d(4, 4, 3, groups=2)
    randomize_parameters_(layer, torch.Generator().manual_seed(0))
    _, masks = layer.locations(layer.branch(torch.randn(2, 4, 6, 6)))
    assert masks.shape == (2, 2, 6, 6, 9) and (masks > 0).all()
    torch.testing.assert_close(masks.sum(-1), torch.ones(2, 2, 6, 6))


def test_starts_as_the_mean_over_a_regular_grid():
    """Zero-initialised offsets and mask logits: each group averages its k×k window of the projected input."""
    layer = cz.DCNv3Conv2d(4, 4, 3, groups=2, bias=False)
    with torch.no_grad():
        layer.input_proj.weight.copy_(torch.eye(4))
        layer.output_proj.weight.copy_(torch.eye(4))
    x = torch.randn(1, 4, 6, 6)
    expected = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=True)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_cost_equals_the_counted_multiply_accumulates():
    from torch.utils.flop_counter import FlopCounterMode

    layer = cz.DCNv3Conv2d(8, 6, 3, groups=2)
    shape = (2, 8, 7, 7)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # projections, depthwise conv, offset and mask linears (sampling is not counted)
        layer(torch.randn(shape))
    positions = 2 * 49
    assert counter.get_total_flops() // 2 == positions * (8 * 8 + 8 * 9 + 8 * 3 * 2 * 9 + 8 * 6) == \
        cz.cost(layer, shape).macs
    assert layer.cost(shape).params == sum(p.numel() for p in layer.parameters())


def test_geometry_rules_in_words():
    with pytest.raises(ValueError, match="stride=2 must be 1"):
        cz.DCNv3Conv2d(4, 4, 3, 2)
    with pytest.raises(ValueError, match=r"kernel_size=4 must be odd"):
        cz.DCNv3Conv2d(4, 4, 4)
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4"):
        cz.DCNv3Conv2d(4, 4, 3, groups=3)


def test_gradcheck_small():
    """fp64 gradients through the projections, the offset/mask branch and the bilinear sampling (the registry-sized
    case is in test_gradcheck.py, marked slow)."""
    torch.manual_seed(0)
    layer = cz.DCNv3Conv2d(2, 2, 3, groups=1, dtype=torch.float64)
    randomize_parameters_(layer, torch.Generator().manual_seed(3))
    names = [n for n, _ in layer.named_parameters()]
    weights = [p.detach().clone().requires_grad_(True) for p in layer.parameters()]
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)

    def call(inp, *ws):
        return torch.func.functional_call(layer, dict(zip(names, ws)), (inp,))

    assert torch.autograd.gradcheck(call, (x, *weights), eps=1e-6, atol=1e-5)
