"""'same' padding of the true convolution (``mode='convolution'``, ``functional.convolve``, ``reference.convolve``)
against scipy.signal / NumPy directly: the output is the centre of the full convolution, as
``scipy.signal.convolve(x, w, mode='same')`` — for an even span the odd padding element goes BEFORE the input
(the mirror of PyTorch's correlation rule, which stays as torch has it for ``mode='correlation'``)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo import functional as CF
from convzoo.oracle import reference as ref

CONVS = {1: cz.Conv1d, 2: cz.Conv2d, 3: cz.Conv3d}
# (kernel, dilation) per dim: even and odd kernels, mixed per axis, odd dilation with an even kernel (odd span)
CASES = {
    1: [((4,), 1), ((2,), 1), ((3,), 1), ((5,), 1), ((4,), 3), ((2,), 2)],
    2: [((4, 2), 1), ((3, 5), 1), ((4, 3), 1), ((2, 4), 3), ((3, 2), 2)],
    3: [((2, 3, 4), 1), ((3, 3, 3), 1), ((4, 2, 3), 3)],
}
SIZES = {1: (11,), 2: (9, 8), 3: (7, 6, 5)}
PARAMS = [(dim, k, d) for dim, cases in CASES.items() for k, d in cases]


def dilated(w: np.ndarray, dilation: int) -> np.ndarray:
    """The kernel with dilation − 1 zeros between taps: scipy has no dilation, a dilated kernel is this kernel."""
    out = np.zeros(tuple(dilation * (k - 1) + 1 for k in w.shape))
    out[(slice(None, None, dilation),) * w.ndim] = w
    return out


def scipy_same(fn, x: np.ndarray, w: np.ndarray, dilation: int) -> np.ndarray:
    """y[n, o] = Σ_c fn(x[n, c], w[o, c] dilated, mode='same')."""
    return np.stack([np.stack([sum(fn(x[n, c], dilated(w[o, c], dilation), mode="same") for c in range(x.shape[1]))
                               for o in range(w.shape[0])]) for n in range(x.shape[0])])


def torch_correlation_same(x: np.ndarray, w: np.ndarray, dilation: int) -> np.ndarray:
    """PyTorch's 'same' for the correlation, read from scipy's FULL correlation: the window starts ⌈(E−1)/2⌉
    into it (E the dilated span) where scipy's 'same' starts ⌊(E−1)/2⌋; they differ where E is even."""
    out = []
    for n in range(x.shape[0]):
        rows = []
        for o in range(w.shape[0]):
            wd = [dilated(w[o, c], dilation) for c in range(x.shape[1])]
            full = sum(scipy.signal.correlate(x[n, c], wd[c], mode="full") for c in range(x.shape[1]))
            starts = [e - 1 - (e - 1) // 2 for e in wd[0].shape]
            rows.append(full[tuple(slice(s, s + size) for s, size in zip(starts, x.shape[2:]))])
        out.append(np.stack(rows))
    return np.stack(out)


@pytest.mark.parametrize(("dim", "kernel", "d"), PARAMS)
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_convolution_mode_same_equals_scipy_convolve(dim, kernel, d):
    torch.manual_seed(sum(kernel) + d)
    layer = CONVS[dim](2, 3, kernel, padding="same", dilation=d, bias=False, mode="convolution", dtype=torch.float64)
    x = torch.randn(2, 2, *SIZES[dim], dtype=torch.float64)
    expected = scipy_same(scipy.signal.convolve, x.numpy(), layer.weight.detach().numpy(), d)
    with torch.no_grad():
        got = layer(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    # the NumPy oracle resolves 'same' on its own, from the same (scipy) definition
    oracle = ref.convolve(x.numpy(), layer.weight.detach().numpy(), padding="same", dilation=d)
    np.testing.assert_allclose(oracle, expected, rtol=1e-10, atol=1e-12)
    # and so does the functional form
    np.testing.assert_allclose(CF.convolve(x, layer.weight.detach(), padding="same", dilation=d).numpy(), expected,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("dim", "kernel", "d"), PARAMS)
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_correlation_mode_same_stays_pytorchs(dim, kernel, d):
    """Correlation keeps torch's rule (nn.Conv*d compatibility): scipy.signal.correlate's 'same' where the span is
    odd, one sample earlier than scipy's where it is even (the window then starts ⌈(E−1)/2⌉ into the full output)."""
    torch.manual_seed(sum(kernel) + d)
    layer = CONVS[dim](2, 3, kernel, padding="same", dilation=d, bias=False, dtype=torch.float64)
    x = torch.randn(2, 2, *SIZES[dim], dtype=torch.float64)
    w = layer.weight.detach()
    with torch.no_grad():
        got = layer(x).numpy()
    np.testing.assert_allclose(got, torch_correlation_same(x.numpy(), w.numpy(), d), rtol=1e-10, atol=1e-12)
    torch_op = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dim]
    np.testing.assert_allclose(got, torch_op(x, w, padding="same", dilation=d).numpy(), rtol=1e-10, atol=1e-12)
    if all((d * (k - 1)) % 2 == 0 for k in kernel):
        np.testing.assert_allclose(got, scipy_same(scipy.signal.correlate, x.numpy(), w.numpy(), d),
                                   rtol=1e-10, atol=1e-12)


def test_the_reviewers_example_and_numpy():
    """Conv1d(1, 1, 4, padding='same', mode='convolution') against np.convolve(..., 'same'): it was one sample late."""
    torch.manual_seed(0)
    m = cz.Conv1d(1, 1, 4, padding="same", bias=False, mode="convolution", dtype=torch.float64)
    x = torch.randn(1, 1, 10, dtype=torch.float64)
    with torch.no_grad():
        got = m(x)[0, 0].numpy()
    np.testing.assert_allclose(got, np.convolve(x[0, 0].numpy(), m.weight[0, 0].detach().numpy(), "same"),
                               rtol=1e-12, atol=1e-12)
    assert m.padding == "same" and m.padding_pairs == ((2, 1),)  # torch's correlation would pad (1, 2)
    assert "padding=same" in repr(m) and "mode='convolution'" in repr(m)
    assert cz.Conv1d(1, 1, 4, padding="same").padding_pairs == ((1, 2),)


@pytest.mark.parametrize("padding_mode", ["reflect", "circular", "replicate"])
def test_convolution_same_with_a_padding_mode_against_the_oracle(padding_mode):
    """Any padding mode pads the mirrored pairs; checked against reference.convolve (its own 'same')."""
    torch.manual_seed(1)
    layer = cz.Conv2d(2, 2, (4, 3), padding="same", padding_mode=padding_mode, mode="convolution",
                      dtype=torch.float64)
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64)
    expected = ref.convolve(x.numpy(), layer.weight.detach().numpy(), layer.bias.detach().numpy(), padding="same",
                            padding_mode=padding_mode)
    with torch.no_grad():
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-10, atol=1e-12)


def test_every_form_of_a_depthwise_true_convolution_uses_scipys_same():
    """A depthwise true convolution (groups = C_in, m = 2): every form (native, convzoo's kernel, ...) pads as
    ``padding_pairs`` says."""
    torch.manual_seed(2)
    layer = cz.Conv2d(3, 6, (4, 2), padding="same", groups=3, bias=False, mode="convolution")
    x = torch.randn(2, 3, 9, 8)
    w = layer.weight.detach().double().numpy()
    expected = np.stack([np.stack([scipy.signal.convolve(x[n, o // 2].double().numpy(), w[o, 0], mode="same")
                                   for o in range(6)]) for n in range(2)])
    for form in layer.forms(x):
        with torch.no_grad():
            got = layer.run_form(form, x).double().numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=form)


def test_same_with_stride_is_refused_as_torch_does():
    with pytest.raises(RuntimeError, match="same"):  # torch's own rule
        F.conv1d(torch.randn(1, 1, 8), torch.randn(1, 1, 4), stride=2, padding="same")
    with pytest.raises(ValueError, match=r"padding='same' needs stride=1"):
        cz.Conv1d(1, 1, 4, stride=2, padding="same", mode="convolution")
    with pytest.raises(ValueError, match=r"padding='same' needs stride=1"):
        CF.convolve(torch.randn(1, 1, 8), torch.randn(1, 1, 4), stride=2, padding="same")
    with pytest.raises(ValueError, match="stride"):
        ref.convolve(np.zeros((1, 1, 8)), np.zeros((1, 1, 4)), stride=2, padding="same")


@pytest.mark.parametrize("kernel", [4, 5, (2, 3)])
def test_output_shape_and_cost_unchanged(kernel):
    """Only where the odd element goes changes: the size is the input's, as the arithmetic says."""
    layer = cz.Conv2d(2, 2, kernel, padding="same", mode="convolution")
    x = torch.randn(1, 2, 9, 7)
    assert tuple(layer(x).shape) == (1, 2, 9, 7)
    assert cz.conv_output_size((9, 7), layer.kernel_size, 1, "same") == (9, 7)
    assert layer.cost((1, 2, 9, 7)).output_shape == (1, 2, 9, 7)
