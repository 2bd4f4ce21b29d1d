"""HetConv with an odd non-square kernel (kh ≠ kw): the layer takes it, and the oracle's dense kernel
(``reference.hetconv_kernel``) must too, with the 1×1 kernels on the centre tap (kh//2, kw//2). Checked against a
masked dense kernel written out here and run through F.conv2d (neither the layer's code nor the oracle's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo.oracle import reference as ref
from convzoo.verify import verify_family


def masked_dense(w_kxk: torch.Tensor, w_1x1: torch.Tensor, p: int) -> torch.Tensor:
    """The paper's filter j: its kh×kw kernels on the channels c with c ≡ j (mod p) (the m-th such channel takes
    w_kxk[j, m]), a 1×1 kernel at the centre on every other channel (in ascending order); zeros elsewhere."""
    c_out, c_in = w_kxk.shape[0], w_kxk.shape[1] * p
    kh, kw = w_kxk.shape[2:]
    dense = torch.zeros(c_out, c_in, kh, kw, dtype=w_kxk.dtype)
    for j in range(c_out):
        full = [c for c in range(c_in) if c % p == j % p]
        point = [c for c in range(c_in) if c % p != j % p]
        dense[j, full] = w_kxk[j]
        dense[j, point, kh // 2, kw // 2] = w_1x1[j]
    return dense


@pytest.mark.parametrize(("kernel", "p", "padding", "stride", "dilation"),
                         [((3, 5), 4, "same", 1, 1), ((5, 3), 2, 0, 1, 1), ((1, 3), 4, (0, 1), 2, 1),
                          ((3, 5), 2, "same", 1, (2, 1)), ((7, 3), 8, 1, (1, 2), 1)])
def test_rectangular_hetconv_equals_masked_dense_conv(kernel, p, padding, stride, dilation):
    torch.manual_seed(sum(kernel) + p)
    layer = cz.HetConv2d(8, 6, kernel, stride, padding, dilation, p=p, dtype=torch.float64)
    x = torch.randn(2, 8, 11, 10, dtype=torch.float64)
    dense = masked_dense(layer.weight_kxk.detach(), layer.weight_1x1.detach(), p)
    pairs = layer.padding_pairs
    expected = F.conv2d(F.pad(x, (*pairs[1], *pairs[0])), dense, layer.bias.detach(), stride, 0, dilation)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-12)
    oracle = ref.hetconv_kernel(layer.weight_kxk.detach().numpy(), layer.weight_1x1.detach().numpy(), p)
    np.testing.assert_array_equal(oracle, dense.numpy())
    np.testing.assert_allclose(layer.reference_output(x.numpy()), expected.numpy(), rtol=1e-10, atol=1e-12)


def test_verify_family_takes_a_rectangular_hetconv():
    """It raised 'w_kxk must have shape (C_out, C_in/p, k, k) with k odd' for kernel_size=(3, 5)."""
    result = verify_family("hetconv", kernel_size=(3, 5))
    assert result.output_shape == (2, 8, 9, 9)  # the registry's 'same'
    assert result.passed and result.rel_error < 1e-5


def test_hetconv_kernel_still_refuses_even_sides():
    with pytest.raises(ValueError, match=r"w_kxk must have shape \(C_out, C_in/p, kh, kw\) with kh and kw odd"):
        ref.hetconv_kernel(np.zeros((2, 1, 3, 4)), np.zeros((2, 1)), 2)
    with pytest.raises(ValueError, match="must be odd"):
        cz.HetConv2d(4, 4, (3, 4), p=2)
