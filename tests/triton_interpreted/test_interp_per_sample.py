"""The per-sample conv of dynamic conv / CondConv / ODConv (kernels/triton_per_sample.py) under Triton's
interpreter: forward against the NumPy oracle (reference.correlate per sample; the layers' reference_output),
gradients against the oracle's finite differences (fp64) and the layers' PyTorch forms, both memory formats, 1-D
and 2-D, fp32 / fp16 / bf16."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interp_checks import (HALF_GRAD_TOLERANCE, TOLERANCE, channels_last, check_against_oracle_fd, is_channels_last,
                           pinned, rel)

import convzoo
from convzoo.kernels.triton_per_sample import per_sample_conv
from convzoo.layers import dynamic as dynamic_module
from convzoo.layers import patches as patches_module
from convzoo.oracle import reference as ref
from convzoo.verify import randomize_parameters_

F64 = torch.float64
STRIDE, PAIRS, DILATION, GROUPS = (2, 1), ((1, 2), (0, 1)), (1, 2), 2


def _inputs(dtype: torch.dtype = F64, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(2, 4, 7, 6, generator=g, dtype=F64), torch.randn(2, 6, 2, 3, 2, generator=g, dtype=F64),
               torch.randn(2, 6, generator=g, dtype=F64)]
    return [t.to(dtype) for t in tensors]


def _oracle(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    x, w, b = (t.detach().double().numpy() for t in (x, w, b))
    return np.concatenate([ref.correlate(x[n:n + 1], w[n], b[n], STRIDE, PAIRS, DILATION, GROUPS)
                           for n in range(x.shape[0])])


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_forward_and_gradients_fp64_against_the_oracle(fmt: str) -> None:
    x, w, b = _inputs()
    leaves = [(channels_last(x) if fmt == "channels_last" else x).requires_grad_(), w.requires_grad_(),
              b.requires_grad_()]
    y = per_sample_conv(*leaves, STRIDE, PAIRS, DILATION, GROUPS)
    assert is_channels_last(y) == (fmt == "channels_last")
    assert rel(y, _oracle(*leaves)) < TOLERANCE[F64]
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=F64)
    grads = torch.autograd.grad(y, leaves, weights)
    check_against_oracle_fd(lambda: _oracle(*leaves), leaves, grads, weights)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_against_fp64(dtype: torch.dtype) -> None:
    low = [t.requires_grad_() for t in _inputs(dtype, seed=3)]
    exact = [t.detach().double().requires_grad_() for t in low]
    y = per_sample_conv(*low, STRIDE, PAIRS, DILATION, GROUPS)
    assert y.dtype == dtype
    assert rel(y, _oracle(*exact)) < TOLERANCE[dtype]
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(4), dtype=F64)
    expected = torch.autograd.grad(per_sample_conv(*exact, STRIDE, PAIRS, DILATION, GROUPS), exact, weights)
    for name, got, want in zip(("input", "weight", "bias"), torch.autograd.grad(y, low, weights.to(dtype)), expected):
        assert rel(got, want) < HALF_GRAD_TOLERANCE[dtype], name


def _check_layer(layer: torch.nn.Module, x: torch.Tensor, choice, native: str) -> None:
    """The layer with its Triton form pinned: output against its oracle, gradients against the oracle's finite
    differences and against the layer's PyTorch form."""
    params = list(layer.parameters())
    leaves = [x.requires_grad_(), *params]
    with pinned(choice, "triton") as asked:
        y = layer(x)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
        grads = torch.autograd.grad(y, leaves, weights)
    assert asked and all("triton" in forms for forms in asked), asked
    assert is_channels_last(y) == is_channels_last(x)
    assert rel(y, layer.reference_output(x.detach().numpy())) < TOLERANCE[F64]
    check_against_oracle_fd(lambda: layer.reference_output(x.detach().numpy()), leaves, grads, weights)
    with pinned(choice, native):
        expected = torch.autograd.grad(layer(x), leaves, weights)
    for got, want in zip(grads, expected):
        assert rel(got, want) < TOLERANCE[F64]


def test_dynamic_conv_runs_the_triton_form() -> None:
    layer = randomize_parameters_(convzoo.DynamicConv2d(4, 6, 3, stride=2, padding=1, groups=2, num_kernels=3,
                                                        temperature=2.0, dtype=F64), torch.Generator().manual_seed(1))
    x = channels_last(torch.randn(2, 4, 6, 5, dtype=F64))
    _check_layer(layer, x, dynamic_module._CHOICE, "per_sample")


def test_condconv_runs_the_triton_form() -> None:
    layer = randomize_parameters_(convzoo.CondConv2d(4, 4, 3, padding=(1, 0), dilation=(1, 2), num_experts=3,
                                                     padding_mode="circular", dtype=F64),
                                  torch.Generator().manual_seed(2))
    _check_layer(layer, torch.randn(2, 4, 5, 6, dtype=F64), patches_module._CHOICE, "batch_folded")


def test_odconv_1d_runs_the_triton_form() -> None:
    layer = randomize_parameters_(convzoo.ODConv1d(4, 6, 3, stride=2, padding=1, num_kernels=2, dtype=F64),
                                  torch.Generator().manual_seed(3))
    _check_layer(layer, torch.randn(2, 4, 9, dtype=F64), patches_module._CHOICE, "batch_folded")


def test_condconv_measuring_with_gradients_leaves_the_callers_graph_intact() -> None:
    layer = randomize_parameters_(convzoo.CondConv2d(2, 2, 3, padding=1, num_experts=2, dtype=F64),
                                  torch.Generator().manual_seed(4))
    patches_module._CHOICE.clear()
    leaf = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    y = layer(leaf * 1.0)
    assert list(patches_module._CHOICE.cache.values())[0] in ("batch_folded", "triton")
    (gx,) = torch.autograd.grad(y.sum(), leaf)
    with pinned(patches_module._CHOICE, "batch_folded"):
        (expected,) = torch.autograd.grad(layer(leaf * 1.0).sum(), leaf)
    assert rel(gx, expected) < TOLERANCE[F64]
