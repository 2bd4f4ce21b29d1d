"""CondConv (Yang et al. 2019): the layer against reference.condconv, against timm's CondConv2d with the same
experts and routing, its cost against a count of timm's multiply-accumulates, and ONNX export at any batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_

CLASSES = {1: cz.CondConv1d, 2: cz.CondConv2d, 3: cz.CondConv3d}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_condconv_matches_reference(data):
    dim = data.draw(st.sampled_from([1, 2, 3]))
    groups = data.draw(st.sampled_from([1, 2]))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    k, s, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    module = CLASSES[dim](cin, cout, k, s, data.draw(st.integers(0, 2)), d, groups, data.draw(st.booleans()),
                          data.draw(st.sampled_from(["zeros", "replicate"])), num_experts=data.draw(st.integers(1, 4)))
    top = {1: 11, 2: 8, 3: 5}[dim]
    size = tuple(data.draw(st.integers(d * (k - 1) + 1, max(top, d * (k - 1) + 1))) for _ in range(dim))
    x = torch.rand((data.draw(st.integers(1, 3)), cin, *size), generator=torch.Generator().manual_seed(1)) * 2 - 1
    randomize_parameters_(module, torch.Generator().manual_seed(2))
    assert check_module(module, x) < TOLERANCE


def test_routing_is_independent_sigmoids_not_a_softmax():
    layer = cz.CondConv2d(4, 4, 3, num_experts=3)
    with torch.no_grad():
        layer.routing.fc.weight.zero_()
        layer.routing.fc.bias.fill_(2.0)
    r = layer.routing(torch.randn(2, 4, 5, 5))
    torch.testing.assert_close(r, torch.full((2, 3), torch.sigmoid(torch.tensor(2.0)).item()))


@pytest.mark.parametrize("bias", [False, True])
def test_equals_timm_condconv2d_with_the_same_experts(bias):
    timm_layers = pytest.importorskip("timm.layers")
    ours = cz.CondConv2d(6, 8, 3, 2, 1, 1, 2, bias, num_experts=4)
    randomize_parameters_(ours, torch.Generator().manual_seed(0))
    theirs = timm_layers.CondConv2d(6, 8, 3, 2, 1, 1, 2, bias, num_experts=4)
    with torch.no_grad():  # timm keeps each expert flattened: weight (K, C_out·C_in/g·k·k)
        theirs.weight.copy_(ours.experts.flatten(1))
        if bias:
            theirs.bias.copy_(ours.bias)
    x = torch.randn(3, 6, 9, 9)
    with torch.no_grad():
        routing = ours.routing(x)  # timm takes the routing weights as an argument; EfficientNet-CondConv computes
        #                            them as sigmoid(Linear(GAP(x))), the same definition as ours
        torch.testing.assert_close(ours(x), theirs(x, routing), rtol=1e-5, atol=1e-6)


def test_cost_equals_a_count_of_timms_multiply_accumulates():
    timm_layers = pytest.importorskip("timm.layers")
    from torch.utils.flop_counter import FlopCounterMode

    ours = cz.CondConv2d(6, 8, 3, 1, 1, num_experts=4, bias=False)
    theirs = timm_layers.CondConv2d(6, 8, 3, 1, 1, bias=False, num_experts=4)
    shape = (3, 6, 9, 9)
    x = torch.randn(shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # routing FC, timm's expert combination (a matmul) and its grouped conv
        routing = torch.sigmoid(torch.nn.functional.linear(x.mean((2, 3)), ours.routing.fc.weight,
                                                           ours.routing.fc.bias))
        theirs(x, routing)
    assert counter.get_total_flops() // 2 == cz.cost(ours, shape).macs == ours.cost(shape).macs
    assert ours.cost(shape).params == sum(p.numel() for p in ours.parameters())


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_onnx_export_runs_at_any_batch(dim):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx_batches import onnx_errors_at_batches

    module = CLASSES[dim](4, 6, 3, padding=1, num_experts=3)
    errors = onnx_errors_at_batches(module, (4, *(6,) * dim))
    assert max(errors.values()) < 1e-4, errors


def test_experts_are_one_4d_weight_and_old_5d_state_dicts_load():
    """The K experts are stacked (K·C_out, C_in/g, k, k), so model.to(memory_format=torch.channels_last) works; a
    state dict saved with the (K, C_out, C_in/g, k, k) layout still loads, to the same function."""
    layer = cz.CondConv2d(4, 6, 3, padding=1, num_experts=3)
    assert layer.weight.shape == (18, 4, 3, 3) and layer.experts.shape == (3, 6, 4, 3, 3)
    old = {k: layer.experts.detach() if k == "weight" else v for k, v in layer.state_dict().items()}
    other = cz.CondConv2d(4, 6, 3, padding=1, num_experts=3)
    other.load_state_dict(old)
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(other(x), layer(x))
    torch.nn.Sequential(other).to(memory_format=torch.channels_last)
