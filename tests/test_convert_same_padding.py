"""convert keeps an even kernel's 'same' padding where it lies: torch's convs pad the odd element after the input,
the true convolution (scipy.signal.convolve's 'same') before it, so converting between them by the name 'same'
shifted the output by one sample (max difference 1.8 on a 4×4 conv). The conversions here are exact (the same
weights, flipped), so the converted model must give the original's output."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo as cz


def _source(kind: str) -> nn.Module:
    if kind == "nn.Conv2d":
        return nn.Conv2d(3, 3, 4, padding="same")
    return cz.Conv2d(3, 3, 4, padding="same", mode=kind)


@pytest.mark.parametrize("to", ["convolution", "standard"])
@pytest.mark.parametrize("kind", ["nn.Conv2d", "correlation", "convolution"])
def test_an_even_same_conv_converts_without_a_shift(kind: str, to: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(_source(kind))
    x = torch.randn(2, 3, 9, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new, _ = cz.convert(model, to)
    with torch.no_grad():
        got, want = new(x), model(x)
        if kind == "nn.Conv2d":  # torch's own 'same' for k = 4: (1, 2) per dim, written out
            conv = model[0]
            torch.testing.assert_close(want, F.conv2d(F.pad(x, (1, 2, 1, 2)), conv.weight, conv.bias))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
