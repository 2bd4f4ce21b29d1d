"""Involution's core (kernels/triton_involution.py) under Triton's interpreter: the layer with its Triton form
against the NumPy oracle (reference.involution) forward, its gradients against the oracle's finite differences
(fp64) and the layer's PyTorch form, both memory formats, 1-D and 2-D; fp32 / fp16 / bf16 against the fp64 kernel;
and the FormChoice measuring the Triton form for real once."""

from __future__ import annotations

import pytest
import torch
from interp_checks import (HALF_GRAD_TOLERANCE, TOLERANCE, channels_last, check_against_oracle_fd, is_channels_last,
                           pinned, rel)

import convzoo
from convzoo.kernels.triton_involution import involution
from convzoo.layers import involution as involution_module
from convzoo.verify import randomize_parameters_

F64 = torch.float64


def _layer(dim: int = 2) -> torch.nn.Module:
    cls = {1: convzoo.Involution1d, 2: convzoo.Involution2d}[dim]
    geometry = dict(stride=2, padding=((1, 2), (0, 1)), dilation=(1, 2)) if dim == 2 else dict(padding=2, dilation=2)
    layer = cls(4, 4, 3, groups=2, reduction=2, dtype=F64, **geometry)
    return randomize_parameters_(layer, torch.Generator().manual_seed(dim))


@pytest.mark.parametrize("dim, fmt", [(2, "contiguous"), (2, "channels_last"), (1, "contiguous")])
def test_layer_with_the_triton_form_against_the_oracle(dim: int, fmt: str) -> None:
    layer = _layer(dim)
    x = torch.randn((2, 4, 7, 8) if dim == 2 else (2, 4, 9), generator=torch.Generator().manual_seed(9), dtype=F64)
    x = (channels_last(x) if fmt == "channels_last" else x).requires_grad_()
    leaves = [x, *layer.parameters()]
    with pinned(involution_module._CHOICE, "triton") as asked:
        y = layer(x)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(6), dtype=F64)
        grads = torch.autograd.grad(y, leaves, weights)
    assert asked == ["kernel,strided_views,triton"]  # on the CPU the numba kernel is offered too
    assert is_channels_last(y) == (fmt == "channels_last")
    assert rel(y, layer.reference_output(x.detach().numpy())) < TOLERANCE[F64]
    check_against_oracle_fd(lambda: layer.reference_output(x.detach().numpy()), leaves, grads, weights)
    with pinned(involution_module._CHOICE, "strided_views"):
        expected = torch.autograd.grad(layer(x), leaves, weights)
    for got, want in zip(grads, expected):
        assert rel(got, want) < TOLERANCE[F64]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_against_fp64(dtype: torch.dtype) -> None:
    """Inputs rounded to ``dtype``; output and gradients against the fp64 kernel (checked above) on those values."""
    g = torch.Generator().manual_seed(3)
    low = [torch.randn(2, 4, 7, 8, generator=g).to(dtype).requires_grad_(),
           torch.randn(2, 18, 4, 7, generator=g).to(dtype).requires_grad_()]
    exact = [t.detach().double().requires_grad_() for t in low]
    args = (2, (3, 3), (2, 1), ((1, 2), (0, 1)), (1, 2))
    y, y64 = involution(*low, *args), involution(*exact, *args)
    assert y.dtype == dtype and rel(y, y64) < TOLERANCE[dtype]
    weights = torch.randn(y.shape, generator=g, dtype=F64)
    for got, want in zip(torch.autograd.grad(y, low, weights.to(dtype)), torch.autograd.grad(y64, exact, weights)):
        assert rel(got, want) < HALF_GRAD_TOLERANCE[dtype]


def test_form_choice_measures_the_triton_form() -> None:
    """No pinning: the layer's FormChoice times its forms (strided views, Triton, and numba's kernel where it runs:
    the interpreter's tensors are on the CPU) once for the key and the output is the oracle's."""
    layer = _layer()
    involution_module._CHOICE.clear()
    before = involution_module._CHOICE.measurements  # a count over the process: other tests may have timed forms
    x = torch.randn(1, 4, 5, 5, dtype=F64)
    with torch.no_grad():
        y = layer(x)
    chosen = list(involution_module._CHOICE.cache.values())  # the apply's choice is made (and cached) first
    assert chosen[0] in ("strided_views", "triton", "kernel")
    # without autograd, where numba runs, one more choice: the fused forward against generator + apply
    assert chosen[1:] in ([], [involution_module.FUSED], ["generator + apply"])
    assert involution_module._CHOICE.measurements - before == len(chosen)
    assert rel(y, layer.reference_output(x.numpy())) < TOLERANCE[F64]


def test_measuring_with_gradients_leaves_the_callers_graph_intact() -> None:
    """The choice is timed forward + backward on detached copies: the caller's graph (here through the kernel
    generator, from a non-leaf input) still backpropagates afterwards, to the oracle-checked gradients."""
    layer = _layer()
    involution_module._CHOICE.clear()
    leaf = torch.randn(1, 4, 5, 5, dtype=F64, requires_grad=True)
    y = layer(leaf * 1.0)
    assert involution_module._CHOICE.measurements >= 1
    weights = torch.randn(y.shape, dtype=F64)
    grads = torch.autograd.grad(y, [leaf, *layer.parameters()], weights)
    with pinned(involution_module._CHOICE, "strided_views"):
        expected = torch.autograd.grad(layer(leaf * 1.0), [leaf, *layer.parameters()], weights)
    for got, want in zip(grads, expected):
        assert rel(got, want) < TOLERANCE[F64]
