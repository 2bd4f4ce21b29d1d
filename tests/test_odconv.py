"""ODConv (Li et al. 2022): the layer against reference.odconv (the paper's Eq. 2 kernel built per sample), the
attentions' ranges, its cost against a count of the multiply-accumulates its forward runs, ONNX at any batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_

CLASSES = {1: cz.ODConv1d, 2: cz.ODConv2d, 3: cz.ODConv3d}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_odconv_matches_reference(data):
    dim = data.draw(st.sampled_from([1, 2, 3]))
    groups = data.draw(st.sampled_from([1, 2]))
    cin, cout = groups * data.draw(st.integers(1, 3)), groups * data.draw(st.integers(1, 3))
    k, s, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    module = CLASSES[dim](cin, cout, k, s, data.draw(st.integers(0, 2)), d, groups, data.draw(st.booleans()),
                          data.draw(st.sampled_from(["zeros", "replicate"])), num_kernels=data.draw(st.integers(1, 4)),
                          min_hidden=data.draw(st.integers(1, 5)), temperature=data.draw(st.sampled_from([0.5, 1.0, 4.0])))
    top = {1: 11, 2: 8, 3: 5}[dim]
    size = tuple(data.draw(st.integers(d * (k - 1) + 1, max(top, d * (k - 1) + 1))) for _ in range(dim))
    x = torch.rand((data.draw(st.integers(1, 3)), cin, *size), generator=torch.Generator().manual_seed(1)) * 2 - 1
    randomize_parameters_(module, torch.Generator().manual_seed(2))
    assert check_module(module, x) < TOLERANCE


def test_four_attentions_have_their_shapes_and_ranges():
    layer = cz.ODConv2d(6, 8, (3, 5), num_kernels=3, min_hidden=4)
    a_c, a_f, a_s, a_w = layer.attention.split(layer.attention(torch.randn(2, 6, 7, 7)))
    assert (a_c.shape, a_f.shape, a_s.shape, a_w.shape) == ((2, 6), (2, 8), (2, 15), (2, 3))
    assert all(((a > 0) & (a < 1)).all() for a in (a_c, a_f, a_s))
    torch.testing.assert_close(a_w.sum(1), torch.ones(2))


def test_cost_equals_the_counted_multiply_accumulates():
    from torch.utils.flop_counter import FlopCounterMode

    layer = cz.ODConv2d(6, 8, 3, 1, 1, groups=2, num_kernels=3, min_hidden=5)
    shape = (3, 6, 9, 9)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # the five FCs, the kernel mix (a matmul) and the conv (a matmul over patches)
        layer(torch.randn(shape))
    expected = (3 * 6 * 5 + 3 * 5 * (6 + 8 + 9 + 3)  # squeeze and heads
                + 3 * 3 * 8 * 3 * 9  # Σ_k α_wk W_k
                + 3 * 81 * 8 * 3 * 9)  # the conv
    assert counter.get_total_flops() // 2 == expected == cz.cost(layer, shape).macs
    assert layer.cost(shape).params == sum(p.numel() for p in layer.parameters())


def test_approximate_dense_is_exact():
    layer = cz.ODConv2d(4, 6, 3, 1, 1, num_kernels=3)
    randomize_parameters_(layer, torch.Generator().manual_seed(0))
    weight, bias = torch.randn(6, 4, 3, 3), torch.randn(6)
    assert layer.approximate_dense_(weight, bias) == 0.0
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(layer(x), torch.nn.functional.conv2d(x, weight, bias, padding=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_onnx_export_runs_at_any_batch(dim):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from onnx_batches import onnx_errors_at_batches

    module = CLASSES[dim](4, 6, 3, padding=1, num_kernels=3, min_hidden=4)
    errors = onnx_errors_at_batches(module, (4, *(6,) * dim))
    assert max(errors.values()) < 1e-4, errors


def test_kernels_are_one_4d_weight_and_old_5d_state_dicts_load():
    """The K kernels are stacked (K·C_out, C_in/g, k, k) (channels_last models work); the (K, C_out, C_in/g, k, k)
    layout of older state dicts still loads, to the same function."""
    layer = cz.ODConv2d(4, 6, 3, padding=1, num_kernels=3)
    assert layer.weight.shape == (18, 4, 3, 3) and layer.kernels.shape == (3, 6, 4, 3, 3)
    old = {k: layer.kernels.detach() if k == "weight" else v for k, v in layer.state_dict().items()}
    other = cz.ODConv2d(4, 6, 3, padding=1, num_kernels=3)
    other.load_state_dict(old)
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(other(x), layer(x))
