"""The exact fast paths of the memory-bound families (``layers/fastpaths.py``): in NCHW and in channels_last each
layer equals the NumPy oracle, hands its output back in the caller's memory format, says which path ran, and has
finite-difference-exact gradients (fp64 gradcheck, input and every parameter)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import convzoo as cz
from convzoo.oracle.verify import TOLERANCE, check_module, randomize_parameters_

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}

# name: (factory, input channels, spatial size, {format: expected forward_path})
CASES: dict[str, tuple[Callable[[], nn.Module], int, int, dict[str, str]]] = {
    "depthwise m=1": (lambda: cz.DepthwiseConv2d(4, 4, 3, padding=1), 4, 6,
                      {"contiguous": "native", "channels_last": "native"}),
    "depthwise m=2 strided": (lambda: cz.DepthwiseConv2d(4, 8, 3, stride=2, padding=1), 4, 7,
                              {"contiguous": "split ×2", "channels_last": "channels_last ×2 repeat"}),
    "depthwise m=3 dilated": (lambda: cz.DepthwiseConv2d(2, 6, 3, padding=2, dilation=2, bias=False), 2, 6,
                              {"contiguous": "split ×3", "channels_last": "channels_last ×3 repeat"}),
    "depthwise m=2 odd kernel, no padding": (lambda: cz.DepthwiseConv2d(3, 6, (2, 3), stride=(1, 2)), 3, 5,
                                             {"contiguous": "split ×2", "channels_last": "channels_last ×2 repeat"}),
    "depthwise m=2 asymmetric padding": (lambda: cz.DepthwiseConv2d(2, 4, 2, padding="same"), 2, 5,
                                         {"contiguous": "native", "channels_last": "native"}),
    "depthwise m=2 true convolution": (lambda: cz.Conv2d(4, 8, 3, padding=1, groups=4, mode="convolution"), 4, 5,
                                       {"contiguous": "native", "channels_last": "channels_last ×2 repeat"}),
    "depthwise asymmetric padding": (lambda: cz.DepthwiseConv2d(4, 4, 2, padding="same"), 4, 5,
                                     {"contiguous": "native", "channels_last": "native"}),
    "pointwise grouped": (lambda: cz.PointwiseConv2d(4, 6, groups=2), 4, 5,
                          {"contiguous": "matmul", "channels_last": "native"}),
    "pointwise grouped, no bias": (lambda: cz.PointwiseConv2d(4, 8, groups=2, bias=False), 4, 3,
                                   {"contiguous": "matmul", "channels_last": "native"}),
    "flattened": (lambda: cz.FlattenedConv2d(4, 6, 3, padding=1), 4, 6,
                  {"contiguous": "channels_last round trip: native | native | native", "channels_last": "native | native | native"}),
    "shuffled grouped": (lambda: cz.ShuffledGroupedConv2d(4, 8, 3, padding=1, groups=2), 4, 5,
                         {"contiguous": "native | native", "channels_last": "native | native"}),
    "channel shuffle": (lambda: cz.ChannelShuffle(3), 6, 4, {"contiguous": "native", "channels_last": "native"}),
    "global depthwise m=2": (lambda: cz.GlobalDepthwiseConv2d(3, 6, (4, 5)), 3, 0,
                             {"contiguous": "matmul", "channels_last": "channels_last products + sum"}),
    "global depthwise m=1, no bias": (lambda: cz.GlobalDepthwiseConv2d(4, 4, (3, 3), bias=False), 4, 0,
                                      {"contiguous": "matmul", "channels_last": "channels_last products + sum"}),
}


def _case(name: str, dtype: torch.dtype, fmt: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    factory, channels, size, _ = CASES[name]
    generator = torch.Generator().manual_seed(seed)
    module = randomize_parameters_(factory().to(dtype), generator)
    kernel = getattr(module, "kernel_size", None)
    spatial = tuple(kernel) if size == 0 else (size, size + 1)  # GDC: the map is the kernel
    x = (torch.rand((2, channels, *spatial), generator=generator, dtype=torch.float64) * 2 - 1).to(dtype)
    return module, x.contiguous(memory_format=FORMATS[fmt])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", CASES)
def test_fast_path_matches_reference_and_keeps_format(name, fmt):
    module, x = _case(name, torch.float32, fmt)
    assert module.forward_path(x) == CASES[name][3][fmt]
    assert check_module(module, x) < TOLERANCE
    with torch.no_grad():
        y = module(x)
    if y.shape[2:].numel() > 1 and y.shape[1] > 1:  # a 1×1 map or one channel is both formats at once
        assert y.is_contiguous(memory_format=FORMATS[fmt])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", CASES)
def test_fast_path_gradcheck_fp64(name, fmt):
    module, x = _case(name, torch.float64, fmt, seed=1)
    names = [n for n, _ in module.named_parameters()]
    weights = [p.detach().clone().requires_grad_(True) for p in module.parameters()]
    assert module.forward_path(x) == CASES[name][3][fmt]  # the path under test runs in fp64 too

    def call(inp: torch.Tensor, *ws: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, dict(zip(names, ws)), (inp,))

    assert torch.autograd.gradcheck(call, (x.requires_grad_(True), *weights), eps=1e-6, atol=1e-6)


def test_channels_last_slices_take_the_native_conv():
    """A channel slice of channels_last data (what MixConv's split hands its depthwise convs) is NHWC-like: a
    multiplier-1 depthwise conv runs natively on it, and channels_last comes back."""
    conv = randomize_parameters_(cz.DepthwiseConv2d(3, 3, 3, padding=1), torch.Generator().manual_seed(2))
    x = torch.rand(2, 6, 5, 5).contiguous(memory_format=torch.channels_last)[:, 2:5]
    assert conv.forward_path(x) == "native"
    assert check_module(conv, x) < TOLERANCE
    with torch.no_grad():
        assert conv(x).is_contiguous(memory_format=torch.channels_last)


def test_batch_chunks_cover_the_batch_evenly():
    from convzoo.layers.fastpaths import _batch_chunks

    assert _batch_chunks(0, 100) == []
    assert _batch_chunks(5, 1 << 30) == [slice(i, i + 1) for i in range(5)]  # one sample over budget: one each
    assert _batch_chunks(8, 800_000) == [slice(0, 4), slice(4, 8)]
    assert _batch_chunks(7, 10) == [slice(0, 7)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_global_depthwise_several_chunks_matches_conv(fmt):
    """Batches larger than one 4 MiB chunk (the channels_last path's unit) give F.conv2d's values and gradients."""
    gdc = cz.GlobalDepthwiseConv2d(16, 32, (40, 41)).double()
    x = torch.rand(11, 16, 40, 41, dtype=torch.float64).contiguous(memory_format=FORMATS[fmt]).requires_grad_(True)
    y = gdc(x)
    g = torch.rand_like(y)
    grads = torch.autograd.grad(y, (x, gdc.weight, gdc.bias), g)
    x_ref = x.detach().contiguous().requires_grad_(True)
    y_ref = torch.nn.functional.conv2d(x_ref, gdc.weight, gdc.bias, groups=16)
    refs = torch.autograd.grad(y_ref, (x_ref, gdc.weight, gdc.bias), g)
    torch.testing.assert_close(y, y_ref)
    for got, ref in zip(grads, refs):
        torch.testing.assert_close(got, ref)
    assert grads[0].is_contiguous(memory_format=FORMATS[fmt])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("make", [lambda: cz.DepthwiseConv2d(3, 6, 3, padding=1),
                                  lambda: cz.GlobalDepthwiseConv2d(3, 6, (4, 4))], ids=["depthwise m=2", "gdc m=2"])
def test_empty_batch_forward_and_backward(make, fmt):
    module = make()
    x = torch.rand(0, 3, 4, 4).contiguous(memory_format=FORMATS[fmt]).requires_grad_(True)
    y = module(x)
    assert y.shape[0] == 0 and y.shape[1] == 6
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
