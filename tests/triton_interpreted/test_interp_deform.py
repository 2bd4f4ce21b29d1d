"""Deformable conv v1/v2 as an implicit GEMM (kernels/triton_deform.py) under Triton's interpreter: forward against
the NumPy oracle (reference.deform_conv2d), the gradients of input, offsets, masks, weight and bias against the
oracle's finite differences (fp64), conv groups and offset groups that cut each other's channel ranges, both memory
formats, the NaN rule, fp32 / fp16 / bf16, and DeformConv2d running it as an implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from interp_checks import (HALF_GRAD_TOLERANCE, TOLERANCE, channels_last, check_against_oracle_fd, is_channels_last,
                           pinned, rel)

import convzoo
from convzoo.kernels.triton_deform import deform_conv2d
from convzoo.layers import deformable as deformable_module
from convzoo.oracle import reference as ref
from convzoo.verify import randomize_parameters_

F64 = torch.float64
# (channels, conv groups, offset groups, kernel, stride, padding, dilation, modulated, memory format)
CASES = {
    "v2 strided dilated": (4, 1, 1, (3, 2), (2, 1), (1, 0), (1, 2), True, "contiguous"),
    "v1 groups cut offset groups": (6, 2, 3, (2, 2), (1, 1), (1, 1), (1, 1), False, "channels_last"),
}


def _out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _inputs(case: tuple, dtype: torch.dtype = F64, seed: int = 0) -> list[torch.Tensor | None]:
    c, groups, og, (kh, kw), (sh, sw), (ph, pw), (dh, dw), modulated, _ = case
    g = torch.Generator().manual_seed(seed)
    h, w = 5, 6
    ho, wo = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
    tensors = [torch.randn(1, c, h, w, generator=g), 1.5 * torch.randn(1, 2 * og * kh * kw, ho, wo, generator=g),
               torch.rand(1, og * kh * kw, ho, wo, generator=g) if modulated else None,
               torch.randn(6, c // groups, kh, kw, generator=g), torch.randn(6, generator=g)]
    return [None if t is None else t.to(dtype) for t in tensors]


def _oracle(case: tuple, x, offset, mask, weight, bias) -> np.ndarray:
    _, _, _, _, stride, padding, dilation, _, _ = case
    arrays = [None if t is None else t.detach().double().numpy() for t in (x, weight, offset, mask, bias)]
    return ref.deform_conv2d(*arrays, stride, padding, dilation)


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_gradients_fp64_against_the_oracle(name: str) -> None:
    case = CASES[name]
    x, offset, mask, weight, bias = _inputs(case)
    if case[-1] == "channels_last":
        x = channels_last(x)
    leaves = [t.requires_grad_() for t in (x, offset, mask, weight, bias) if t is not None]
    y = deform_conv2d(x, offset, weight, bias, case[4], case[5], case[6], mask)
    assert is_channels_last(y) == (case[-1] == "channels_last")
    assert rel(y, _oracle(case, x, offset, mask, weight, bias)) < TOLERANCE[F64]
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    grads = torch.autograd.grad(y, leaves, weights)
    check_against_oracle_fd(lambda: _oracle(case, x, offset, mask, weight, bias), leaves, grads, weights)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_against_fp64(dtype: torch.dtype) -> None:
    case = CASES["v2 strided dilated"]
    low = [t.requires_grad_() for t in _inputs(case, dtype, seed=3)]
    exact = [t.detach().double().requires_grad_() for t in low]
    geometry = case[4:7]
    y = deform_conv2d(low[0], low[1], low[3], low[4], *geometry, low[2])
    assert y.dtype == dtype
    assert rel(y, _oracle(case, *exact)) < TOLERANCE[dtype]
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    y64 = deform_conv2d(exact[0], exact[1], exact[3], exact[4], *geometry, exact[2])
    names = ("input", "offset", "mask", "weight", "bias")
    for name, got, want in zip(names, torch.autograd.grad(y, low, weights.to(dtype)),
                               torch.autograd.grad(y64, exact, weights)):
        # offset gradients are differences of neighbouring inputs: half precision loses more of them
        assert rel(got, want) < HALF_GRAD_TOLERANCE[dtype] * (4 if name == "offset" else 1), name


def test_non_finite_offsets_give_nan_where_read_and_no_gradient() -> None:
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 2, 5, 5, generator=g, dtype=F64, requires_grad=True)
    weight = torch.randn(3, 2, 3, 3, generator=g, dtype=F64, requires_grad=True)
    offset = torch.zeros(1, 18, 3, 3, dtype=F64)
    offset[0, 4, 1, 2], offset[0, 5, 0, 0], offset[0, 6, 2, 2] = math.nan, math.inf, 1e30  # 1e30: far outside, reads 0
    y = deform_conv2d(x, offset, weight)
    bad = torch.zeros(3, 3, dtype=torch.bool)
    bad[1, 2] = bad[0, 0] = True
    assert torch.equal(torch.isnan(y[0]), bad.expand(3, 3, 3))
    finite = y.nan_to_num(0.0)
    expected = _oracle((2, 1, 1, (3, 3), 1, 0, 1, False, ""), x, offset.nan_to_num(0.0, 0.0, 0.0), None, weight, None)
    assert rel(finite[:, :, ~bad], expected[:, :, ~bad.numpy()]) < TOLERANCE[F64]
    grads = torch.autograd.grad(torch.where(torch.isnan(y), 0.0, y).sum(), (x, weight))
    assert all(torch.isfinite(grad).all() for grad in grads)


def test_the_layer_runs_the_triton_implementation() -> None:
    layer = randomize_parameters_(convzoo.DeformConv2d(4, 6, 3, stride=2, padding=1, groups=2, offset_groups=2,
                                                       modulated=True, padding_mode="replicate", dtype=F64),
                                  torch.Generator().manual_seed(1))
    x = torch.randn(1, 4, 6, 5, dtype=F64, requires_grad=True)
    leaves = [x, *layer.parameters()]
    with pinned(deformable_module._CHOICE, "triton") as asked:
        y = layer(x)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
        grads = torch.autograd.grad(y, leaves, weights)
    assert asked == ["kernel,torch,torchvision,triton"]  # on the CPU the numba kernel is offered too
    assert rel(y, layer.reference_output(x.detach().numpy())) < TOLERANCE[F64]
    layer.implementation = "torch"
    expected = torch.autograd.grad(layer(x), leaves, weights)
    for got, want in zip(grads, expected):
        assert rel(got, want) < TOLERANCE[F64]
    layer.implementation = "triton"  # pinned by name
    assert rel(layer(x), y) == 0
