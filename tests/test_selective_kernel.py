"""Selective kernel convolution (SKNet): the layer against reference.selective_kernel, against timm's
SelectiveKernel loaded with the same weights, and its cost against a count of timm's multiply-accumulates."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.layers.selective_kernel import load_into_timm_selective_kernel
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_

CLASSES = {1: cz.SelectiveKernelConv1d, 2: cz.SelectiveKernelConv2d, 3: cz.SelectiveKernelConv3d}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_selective_kernel_matches_reference(data):
    dim = data.draw(st.sampled_from([1, 2, 3]))
    groups = data.draw(st.sampled_from([1, 2]))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    sizes = data.draw(st.sampled_from([(3,), (3, 5), (1, 3, 5), (3, 7)]))
    module = CLASSES[dim](cin, cout, sizes, data.draw(st.integers(1, 2)), groups=groups,
                          dilation=data.draw(st.integers(1, 2)), bias=data.draw(st.booleans()),
                          padding_mode=data.draw(st.sampled_from(["zeros", "replicate"])),
                          keep_3x3=data.draw(st.booleans()), min_hidden=data.draw(st.integers(1, 4)))
    top = {1: 12, 2: 8, 3: 5}[dim]
    size = tuple(data.draw(st.integers(3, top)) for _ in range(dim))
    x = torch.rand((data.draw(st.integers(1, 3)), cin, *size), generator=torch.Generator().manual_seed(1)) * 2 - 1
    randomize_parameters_(module, torch.Generator().manual_seed(2))
    assert check_module(module, x) < TOLERANCE


def test_attention_is_a_softmax_across_branches_per_channel():
    layer = cz.SelectiveKernelConv2d(4, 6, (3, 5, 7), min_hidden=4)
    a = layer.attention(layer.split(torch.randn(2, 4, 8, 8))).reshape(2, 3, 6)
    torch.testing.assert_close(a.sum(1), torch.ones(2, 6))


@pytest.mark.parametrize(("stride", "groups", "sizes"), [(1, 1, [3, 5]), (2, 2, [3, 5]), (1, 2, [3, 5, 7])])
def test_equals_timm_selective_kernel_with_the_same_weights(stride, groups, sizes):
    timm_layers = pytest.importorskip("timm.layers")
    ours = cz.SelectiveKernelConv2d(8, 8, sizes, stride, groups=groups, min_hidden=4)
    randomize_parameters_(ours, torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours.attention.select.bias.zero_()  # timm's select FC has no bias
    # the paper's layout: every branch reads all inputs (timm: split_input=False); 5×5 → 3×3 dilated 2 (keep_3x3)
    theirs = timm_layers.SelectiveKernel(8, 8, sizes, stride, 1, groups, rd_channels=4, keep_3x3=True,
                                         split_input=False)
    theirs = load_into_timm_selective_kernel(ours, theirs).eval()
    x = torch.randn(3, 8, 10, 10)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)


def test_cost_equals_a_count_of_timms_multiply_accumulates():
    timm_layers = pytest.importorskip("timm.layers")
    from torch.utils.flop_counter import FlopCounterMode

    ours = cz.SelectiveKernelConv2d(8, 8, (3, 5), 1, groups=2, min_hidden=4)
    theirs = load_into_timm_selective_kernel(
        ours, timm_layers.SelectiveKernel(8, 8, [3, 5], 1, 1, 2, rd_channels=4, split_input=False)).eval()
    shape = (2, 8, 9, 9)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # the branch convs and the two 1×1 attention convs
        theirs(torch.randn(shape))
    assert counter.get_total_flops() // 2 == cz.cost(ours, shape).macs
    assert ours.cost(shape).params == sum(p.numel() for p in ours.parameters())


def test_refuses_to_stand_in_for_a_dense_conv_in_words():
    with pytest.raises(TypeError, match="ReLU"):
        cz.SelectiveKernelConv2d(4, 4).approximate_dense_(torch.randn(4, 4, 3, 3), None)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_empty_batch_forward_and_backward(dim):
    """N = 0 as torch's convs: an empty output of the right shape, and backward gives zero (not missing) grads."""
    layer = cz.build("selective_kernel", 4, 6, None, dim)
    x = torch.randn(0, 4, *(7,) * dim, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 6, *(7,) * dim)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters())
