"""Depthwise conv with multiplier m (kernels/triton_depthwise.py) under Triton's interpreter: forward against the
NumPy oracle (reference.correlate with groups = C), gradients against the oracle's finite differences (fp64),
both memory formats, 1-D and 2-D, fp32 / fp16 / bf16, and the layer running it as a FormChoice form."""

from __future__ import annotations

import pytest
import torch
from interp_checks import (HALF_GRAD_TOLERANCE, TOLERANCE, channels_last, check_against_oracle_fd, is_channels_last,
                           pinned, rel)

import convzoo
from convzoo.kernels.triton_depthwise import depthwise_conv
from convzoo.layers import conv as conv_module
from convzoo.oracle import reference as ref
from convzoo.verify import randomize_parameters_

F64 = torch.float64
# kernel, stride, (before, after) padding per dim, dilation
GEOMETRY = ((3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2))


def _inputs(dtype: torch.dtype = F64, m: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    kernel = GEOMETRY[0]
    tensors = [torch.randn(2, 3, 7, 6, generator=g, dtype=F64), torch.randn(3 * m, 1, *kernel, generator=g, dtype=F64),
               torch.randn(3 * m, generator=g, dtype=F64)]
    return [t.to(dtype) for t in tensors]


def _oracle(x, w, b, stride, pairs, dilation):
    return ref.correlate(x.detach().double().numpy(), w.detach().double().numpy(), b.detach().double().numpy(),
                         stride, pairs, dilation, groups=x.shape[1])


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_forward_and_gradients_fp64_against_the_oracle(fmt: str) -> None:
    _, stride, pairs, dilation = GEOMETRY
    x, w, b = _inputs()
    leaves = [(channels_last(x) if fmt == "channels_last" else x).requires_grad_(), w.requires_grad_(),
              b.requires_grad_()]
    y = depthwise_conv(*leaves, stride, pairs, dilation)
    assert is_channels_last(y) == (fmt == "channels_last")
    assert rel(y, _oracle(*leaves, stride, pairs, dilation)) < TOLERANCE[F64]
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    grads = torch.autograd.grad(y, leaves, weights)
    check_against_oracle_fd(lambda: _oracle(*leaves, stride, pairs, dilation), leaves, grads, weights)


def test_one_dimensional_data_against_the_oracle() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 9, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(6, 1, 3, generator=g, dtype=F64, requires_grad=True)
    y = depthwise_conv(x, w, None, (2,), ((2, 1),), (2,))
    expected = ref.correlate(x.detach().numpy(), w.detach().numpy(), None, 2, ((2, 1),), 2, groups=2)
    assert rel(y, expected) < TOLERANCE[F64]
    weights = torch.randn(y.shape, generator=g, dtype=F64)
    grads = torch.autograd.grad(y, (x, w), weights)
    check_against_oracle_fd(lambda: ref.correlate(x.detach().numpy(), w.detach().numpy(), None, 2, ((2, 1),), 2,
                                                  groups=2), (x, w), grads, weights)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_against_fp64(dtype: torch.dtype) -> None:
    """Inputs rounded to ``dtype``; the forward against the oracle on those values, gradients against the fp64
    kernel's (checked above) on the same values."""
    _, stride, pairs, dilation = GEOMETRY
    low = [t.requires_grad_() for t in _inputs(dtype, seed=3)]
    exact = [t.detach().double().requires_grad_() for t in low]
    y = depthwise_conv(*low, stride, pairs, dilation)
    assert y.dtype == dtype
    assert rel(y, _oracle(*exact, stride, pairs, dilation)) < TOLERANCE[dtype]
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    expected = torch.autograd.grad(depthwise_conv(*exact, stride, pairs, dilation), exact, weights)
    for name, got, want in zip(("input", "weight", "bias"), torch.autograd.grad(y, low, weights.to(dtype)), expected):
        assert got.dtype == dtype
        assert rel(got, want) < HALF_GRAD_TOLERANCE[dtype], name


def test_the_layer_runs_the_triton_form_for_m_above_one() -> None:
    layer = randomize_parameters_(convzoo.DepthwiseConv2d(3, 6, 3, stride=2, padding=(1, 2),
                                                          padding_mode="reflect", dtype=F64),
                                  torch.Generator().manual_seed(1))
    x = torch.randn(2, 3, 7, 6, dtype=F64, requires_grad=True)
    with pinned(conv_module._CHOICE, "triton") as asked:
        y = layer(x)
        weights = torch.randn(y.shape, dtype=F64)
        grads = torch.autograd.grad(y, (x, *layer.parameters()), weights)
    assert len(asked) == 1 and {"native", "triton"} <= set(asked[0].split(","))
    assert rel(y, layer.reference_output(x.detach().numpy())) < TOLERANCE[F64]
    with pinned(conv_module._CHOICE, "native"):
        expected = torch.autograd.grad(layer(x), (x, *layer.parameters()), weights)
    for got, want in zip(grads, expected):
        assert rel(got, want) < TOLERANCE[F64]


def test_multiplier_one_is_not_offered() -> None:
    """m = 1 keeps the native depthwise conv (cuDNN's): the Triton kernel is not among its forms."""
    layer = convzoo.DepthwiseConv2d(3, 3, 3, padding=1, dtype=F64)
    assert "triton" not in layer.forms(torch.randn(1, 3, 5, 5, dtype=F64))
    assert "triton" in convzoo.DepthwiseConv2d(3, 6, 3, padding=1, dtype=F64).forms(torch.randn(1, 3, 5, 5, dtype=F64))
