"""DCNv3's core (kernels/triton_dcnv3.py) under Triton's interpreter: the layer with its Triton form against the
NumPy oracle (reference.dcnv3), its gradients (input and every parameter, through the offsets and softmax masks)
against the oracle's finite differences (fp64) and the layer's grid_sample form, both memory formats; fp32 / fp16 /
bf16 against the fp64 kernel; the NaN rule."""

from __future__ import annotations

import math

import pytest
import torch
from interp_checks import (HALF_GRAD_TOLERANCE, TOLERANCE, channels_last, check_against_oracle_fd, is_channels_last,
                           pinned, rel)

import convzoo
from convzoo.kernels.triton_dcnv3 import dcnv3_sample
from convzoo.layers import dcnv3 as dcnv3_module
from convzoo.verify import randomize_parameters_

F64 = torch.float64


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_layer_with_the_triton_form_against_the_oracle(fmt: str) -> None:
    layer = randomize_parameters_(convzoo.DCNv3Conv2d(4, 3, 3, groups=2, dilation=(1, 2), offset_scale=0.7,
                                                      dtype=F64), torch.Generator().manual_seed(1), scale=1.0)
    x = torch.randn(1, 4, 4, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    x = (channels_last(x) if fmt == "channels_last" else x).requires_grad_()
    leaves = [x, *layer.parameters()]
    with pinned(dcnv3_module._CHOICE, "triton") as asked:
        y = layer(x)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
        grads = torch.autograd.grad(y, leaves, weights)
    assert asked == ["grid_sample,kernel,triton"]  # on the CPU the numba kernel is offered too
    assert rel(y, layer.reference_output(x.detach().numpy())) < TOLERANCE[F64]
    check_against_oracle_fd(lambda: layer.reference_output(x.detach().numpy()), leaves, grads, weights)
    with pinned(dcnv3_module._CHOICE, "grid_sample"):
        expected = torch.autograd.grad(layer(x), leaves, weights)
    for got, want in zip(grads, expected):
        assert rel(got, want) < TOLERANCE[F64]


def _fields(g: torch.Generator, batch: int, groups: int = 2, points: int = 9) -> torch.Tensor:
    """(N, 3·G·K, H, W) in the branch's layout (a permuted NHWC tensor): offsets of a few pixels, random masks."""
    f = torch.randn(batch, 4, 5, 3 * groups * points, generator=g)
    f[..., :2 * groups * points] *= 1.5
    return f.permute(0, 3, 1, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_against_fp64(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    low = [channels_last(torch.randn(1, 8, 4, 5, generator=g)).to(dtype).requires_grad_(),
           _fields(g, 1).to(dtype).requires_grad_()]
    exact = [t.detach().double().requires_grad_() for t in low]
    args = (2, (3, 3), (1, 2), 0.7)
    y, y64 = dcnv3_sample(*low, *args), dcnv3_sample(*exact, *args)
    assert y.dtype == dtype and is_channels_last(y) and rel(y, y64) < TOLERANCE[dtype]
    weights = torch.randn(y.shape, generator=g, dtype=F64)
    for name, got, want in zip(("input", "fields"), torch.autograd.grad(y, low, weights.to(dtype)),
                               torch.autograd.grad(y64, exact, weights)):
        assert rel(got, want) < HALF_GRAD_TOLERANCE[dtype] * (4 if name == "fields" else 1), name


def test_non_finite_fields_give_non_finite_outputs_where_read() -> None:
    """A NaN offset makes its group's outputs at that position NaN (its point is never used as an index); an
    infinite mask multiplies its value (±Inf, or NaN for a zero read), as the grid_sample form does."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 4, 5, generator=g, dtype=F64)
    fields = _fields(g, 2).double().contiguous()
    fields[1, 3, 2, 1] = math.nan  # group 0, point 1, Δy
    fields[0, 2 * 18 + 9 + 4, 0, 3] = math.inf  # group 1, point 4, mask
    y = dcnv3_sample(x, fields, 2, (3, 3), (1, 1), 1.0)
    bad = ~torch.isfinite(y)
    assert torch.isnan(y[1, :4, 2, 1]).all() and not bad[1, 4:, 2, 1].any()
    assert bad[0, 4:, 0, 3].all() and not bad[0, :4, 0, 3].any()
    assert int(bad.sum()) == 8
