"""Independent definitions outside convzoo: scipy.signal for correlation/convolution, the adjoint identity
for transposed convolution, and PyTorch's own 'same' padding rule."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo import functional as CF
from convzoo.oracle.reference import hetconv_kernel


def scipy_multichannel(fn, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """y[n, o] = Σ_c scipy_fn(x[n, c], w[o, c], 'valid')."""
    return np.stack([
        np.stack([sum(fn(x[n, c], w[o, c], mode="valid") for c in range(x.shape[1])) for o in range(w.shape[0])])
        for n in range(x.shape[0])
    ])


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("channels", [(1, 1), (3, 2)])
@pytest.mark.parametrize(("mode", "fn"), [("convolution", scipy.signal.convolve), ("correlation", scipy.signal.correlate)])
def test_modes_equal_scipy_signal(dim, channels, mode, fn):
    cin, cout = channels
    torch.manual_seed(dim)
    layer = [cz.Conv1d, cz.Conv2d, cz.Conv3d][dim - 1](cin, cout, (3, 2, 4)[:dim], bias=False, mode=mode,
                                                        dtype=torch.float64)
    x = torch.randn(2, cin, *(7, 6, 5)[:dim], dtype=torch.float64)
    expected = scipy_multichannel(fn, x.numpy(), layer.weight.detach().numpy())
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-10, atol=1e-12)


def test_functional_forms_equal_scipy():
    x, w = torch.randn(1, 1, 6, 7, dtype=torch.float64), torch.randn(1, 1, 3, 3, dtype=torch.float64)
    np.testing.assert_allclose(CF.convolve(x, w)[0, 0].numpy(), scipy.signal.convolve(x[0, 0], w[0, 0], mode="valid"))
    np.testing.assert_allclose(CF.correlate(x, w)[0, 0].numpy(), scipy.signal.correlate(x[0, 0], w[0, 0], mode="valid"))


def test_convolution_differs_from_correlation_for_asymmetric_kernel():
    x = torch.arange(5.0).view(1, 1, 5)
    w = torch.tensor([[[1.0, 0.0, -1.0]]])
    assert torch.equal(CF.correlate(x, w), torch.tensor([[[-2.0, -2.0, -2.0]]]))
    assert torch.equal(CF.convolve(x, w), torch.tensor([[[2.0, 2.0, 2.0]]]))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize(("k", "s", "p", "d", "groups"), [(3, 2, 1, 1, 1), (4, 2, 1, 1, 2), (3, 3, 0, 2, 1), (5, 1, 2, 1, 2)])
def test_transposed_is_adjoint_of_conv(dim, k, s, p, d, groups):
    """<conv(x, w), y> = <x, conv_transpose(y, w)> with the same weight tensor."""
    torch.manual_seed(k + s)
    cin, cout = 4, 6  # of the forward conv
    conv = [cz.Conv1d, cz.Conv2d, cz.Conv3d][dim - 1](cin, cout, k, s, p, d, groups, bias=False, dtype=torch.float64)
    transposed = [cz.TransposedConv1d, cz.TransposedConv2d, cz.TransposedConv3d][dim - 1](
        cout, cin, k, s, p, groups=groups, bias=False, dilation=d, dtype=torch.float64)
    with torch.no_grad():
        transposed.weight.copy_(conv.weight)
    x = torch.randn(2, cin, *(9, 8, 7)[:dim], dtype=torch.float64)
    y_shape = conv(x).shape
    y = torch.randn(y_shape, dtype=torch.float64)
    back = transposed(y, output_size=x.shape[2:])
    assert back.shape == x.shape
    assert torch.allclose((conv(x) * y).sum(), (x * back).sum(), rtol=1e-12)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_same_padding_follows_pytorch(k, d):
    """'same' pads d·(k−1) with the odd element after, exactly like F.conv2d(padding='same')."""
    torch.manual_seed(k)
    x = torch.randn(2, 3, 9, 8)
    conv = cz.Conv2d(3, 4, k, padding="same", dilation=d)
    expected = F.conv2d(x, conv.weight, conv.bias, padding="same", dilation=d)
    torch.testing.assert_close(conv(x), expected)
    sep = cz.SpatiallySeparableConv2d(3, 4, k, padding="same", dilation=d, mid_channels=2)
    dense = torch.einsum("omj,mci->ocij", sep.row.weight[:, :, 0, :], sep.column.weight[:, :, :, 0])
    torch.testing.assert_close(sep(x), F.conv2d(x, dense, sep.row.bias, padding="same", dilation=d))
    if k % 2:
        het = cz.HetConv2d(4, 6, k, padding="same", dilation=d, p=2)
        dense = torch.from_numpy(hetconv_kernel(het.weight_kxk.detach().numpy(), het.weight_1x1.detach().numpy(), 2))
        x4 = torch.randn(1, 4, 9, 8)
        torch.testing.assert_close(het(x4), F.conv2d(x4, dense.float(), het.bias, padding="same", dilation=d))


def test_transposed_output_size_choices():
    layer = cz.TransposedConv2d(1, 1, 3, stride=2, padding=1)
    x = torch.randn(1, 1, 5, 5)
    assert layer.output_sizes((5, 5)) == ((9, 9), (10, 10))
    assert layer(x).shape[-2:] == (9, 9)
    assert layer(x, output_size=(10, 10)).shape[-2:] == (10, 10)
    assert layer(x, output_size=(1, 1, 10, 9)).shape[-2:] == (10, 9)
