"""The exact forms of the memory-bound families (``layers/fastpaths.py`` and convzoo's kernels): each layer lists the
forms it has on an input (``forms``), every form equals the NumPy oracle in NCHW and in channels_last, hands its
output back in the caller's memory format and has finite-difference-exact gradients (fp64 gradcheck, input and
every parameter); the layer runs one of its forms (the one measured fastest here)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import convzoo as cz
from convzoo.kernels import available
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
K = ["kernel"] if available() else []  # convzoo's CPU kernel, where numba imports
TILES = ["kernel, position tiles"] if available() else []  # and without its register windows (3×3 'same', NHWC)
ROUND_TRIP = "channels_last round trip"

# name: (factory, input channels, spatial size, {format: the layer's forms on that input})
CASES: dict[str, tuple[Callable[[], nn.Module], int, int, dict[str, list[str]]]] = {
    "depthwise m=1": (lambda: cz.DepthwiseConv2d(4, 4, 3, padding=1), 4, 6,
                      {"contiguous": ["native", *K, ROUND_TRIP], "channels_last": ["native", *K, *TILES]}),
    "depthwise m=2 strided": (lambda: cz.DepthwiseConv2d(4, 8, 3, stride=2, padding=1), 4, 7,
                              {"contiguous": ["native", *K, ROUND_TRIP, "split ×2"],
                               "channels_last": ["native", *K, "channels_last ×2 repeat"]}),
    "depthwise m=3 dilated": (lambda: cz.DepthwiseConv2d(2, 6, 3, padding=2, dilation=2, bias=False), 2, 6,
                              {"contiguous": ["native", *K, ROUND_TRIP, "split ×3"],
                               "channels_last": ["native", *K, "channels_last ×3 repeat"]}),
    "depthwise m=2 odd kernel, no padding": (lambda: cz.DepthwiseConv2d(3, 6, (2, 3), stride=(1, 2)), 3, 5,
                                             {"contiguous": ["native", *K, ROUND_TRIP, "split ×2"],
                                              "channels_last": ["native", *K, "channels_last ×2 repeat"]}),
    "depthwise m=2 asymmetric padding": (lambda: cz.DepthwiseConv2d(2, 4, 2, padding="same"), 2, 5,
                                         {"contiguous": ["native", *K], "channels_last": ["native", *K]}),
    "depthwise m=2 true convolution": (lambda: cz.Conv2d(4, 8, 3, padding=1, groups=4, mode="convolution"), 4, 5,
                                       {"contiguous": ["native", *K, ROUND_TRIP, "split ×2"],
                                        "channels_last": ["native", *K, "channels_last ×2 repeat"]}),
    "depthwise reflect padding": (lambda: cz.DepthwiseConv2d(3, 3, 3, padding=1, padding_mode="reflect"), 3, 5,
                                  {"contiguous": ["native", *K], "channels_last": ["native", *K]}),
    "depthwise asymmetric padding": (lambda: cz.DepthwiseConv2d(4, 4, 2, padding="same"), 4, 5,
                                     {"contiguous": ["native", *K], "channels_last": ["native", *K]}),
    "pointwise grouped": (lambda: cz.PointwiseConv2d(4, 6, groups=2), 4, 5,
                          {"contiguous": ["native", "matmul"], "channels_last": ["native"]}),
    "pointwise grouped, no bias": (lambda: cz.PointwiseConv2d(4, 8, groups=2, bias=False), 4, 3,
                                   {"contiguous": ["native", "matmul"], "channels_last": ["native"]}),
    "flattened": (lambda: cz.FlattenedConv2d(4, 6, 3, padding=1), 4, 6,
                  {"contiguous": ["stages", ROUND_TRIP, *K], "channels_last": ["stages", *K, *TILES]}),
    "flattened strided, asymmetric kernel": (lambda: cz.FlattenedConv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0)),
                                             3, 7, {"contiguous": ["stages", ROUND_TRIP, *K],
                                                    "channels_last": ["stages", *K]}),
    "global depthwise m=2": (lambda: cz.GlobalDepthwiseConv2d(3, 6, (4, 5)), 3, 0,
                             {"contiguous": ["native", "matmul", *K],
                              "channels_last": ["native", "channels_last products + sum", *K]}),
    "global depthwise m=1, no bias": (lambda: cz.GlobalDepthwiseConv2d(4, 4, (3, 3), bias=False), 4, 0,
                                      {"contiguous": ["native", "matmul", *K],
                                       "channels_last": ["native", "channels_last products + sum", *K]}),
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
def test_every_form_matches_reference_and_keeps_format(name, fmt):
    module, x = _case(name, torch.float32, fmt)
    forms = module.forms(x)
    assert forms == CASES[name][3][fmt]
    assert module.forward_path(x) in forms  # the measured choice is one of them
    for form in forms:
        module.implementation = form
        assert module.forward_path(x) == form
        assert check_module(module, x) < TOLERANCE, form
        with torch.no_grad():
            y = module(x)
        if y.shape[2:].numel() > 1 and y.shape[1] > 1:  # a 1×1 map or one channel is both formats at once
            assert y.is_contiguous(memory_format=FORMATS[fmt]), form


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", CASES)
def test_every_form_gradcheck_fp64(name, fmt):
    module, x = _case(name, torch.float64, fmt, seed=1)
    names = [n for n, _ in module.named_parameters()]
    weights = [p.detach().clone().requires_grad_(True) for p in module.parameters()]

    def call(inp: torch.Tensor, *ws: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, dict(zip(names, ws)), (inp,))

    for form in module.forms(x):
        module.implementation = form  # the form under test runs in fp64 too
        assert torch.autograd.gradcheck(call, (x.detach().requires_grad_(True), *weights), eps=1e-6, atol=1e-6), form


def test_pinning_an_absent_form_names_the_forms():
    conv = cz.DepthwiseConv2d(2, 2, 3, padding=1)
    conv.implementation = "split ×2"
    with pytest.raises(ValueError, match="implementation='split ×2'.*forms are"):
        conv(torch.rand(1, 2, 5, 5))


def test_channels_last_slices_stay_channels_last():
    """A channel slice of channels_last data (what MixConv's split hands its depthwise convs) is NHWC-like: every
    form of a multiplier-1 depthwise conv hands channels_last back."""
    conv = randomize_parameters_(cz.DepthwiseConv2d(3, 3, 3, padding=1), torch.Generator().manual_seed(2))
    x = torch.rand(2, 6, 5, 5).contiguous(memory_format=torch.channels_last)[:, 2:5]
    for form in conv.forms(x):
        conv.implementation = form
        assert check_module(conv, x) < TOLERANCE
        with torch.no_grad():
            assert conv(x).is_contiguous(memory_format=torch.channels_last), form


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


@pytest.mark.skipif(not available(), reason="numba is not installed")
def test_gdc_kernel_form_follows_weight_updates_on_channels_last_data():
    """The kernel form keeps the weight's channels_last copy between passes without autograd: an in-place update
    (an optimizer step), a ``.data`` swap and training steps in between must each give the output of the weight as
    it is then."""
    layer = cz.GlobalDepthwiseConv2d(16, 32, (5, 6)).double()
    layer.implementation = "kernel"
    x = torch.randn(3, 16, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last)

    def expected(data: torch.Tensor = x) -> torch.Tensor:
        return torch.nn.functional.conv2d(data, layer.weight, layer.bias, groups=16)

    with torch.no_grad():
        assert torch.allclose(layer(x), expected(), rtol=0, atol=1e-12)
        layer.weight.mul_(-2.0)
        assert torch.allclose(layer(x), expected(), rtol=0, atol=1e-12)
        layer.weight.data = torch.randn_like(layer.weight)
        assert torch.allclose(layer(x), expected(), rtol=0, atol=1e-12)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(2):
        x_grad = x.clone().requires_grad_()
        y = layer(x_grad)
        assert torch.allclose(y, expected(), rtol=0, atol=1e-12)
        grads = torch.autograd.grad(y.square().sum(), (x_grad, layer.weight))
        reference = torch.autograd.grad(expected(x_grad).square().sum(), (x_grad, layer.weight))
        for got, want in zip(grads, reference):
            assert torch.allclose(got, want, rtol=0, atol=1e-10)
        y2 = layer(x_grad)
        y2.square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():  # after the optimizer's steps (outputs of 1e4: a relative tolerance)
        assert torch.allclose(layer(x), expected(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", CASES)
def test_every_form_trains_under_bfloat16_autocast(name, fmt):
    """Each form, not only the one this machine's timing picks, runs a training step under CPU bfloat16 autocast:
    float32 gradients within bfloat16's precision of the float32 step's (GDC's matmul form once failed here)."""
    module, x = _case(name, torch.float32, fmt)
    x = x.requires_grad_()
    params = list(module.parameters())
    for form in module.forms(x):
        module.implementation = form
        expected = torch.autograd.grad(module(x).square().sum(), [x, *params])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(x)
        grads = torch.autograd.grad(y.float().square().sum(), [x, *params])
        for g, e in zip(grads, expected):
            assert g.dtype == torch.float32, form
            assert float((g - e).norm() / e.norm()) < 3e-2, form
