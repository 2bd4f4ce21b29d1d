"""convzoo's CPU kernels for the irregular families (numba): involution's per-position kernels, deformable conv
v1/v2's columns and DCNv3's sampling core. Each against the NumPy oracle (fp64 < 1e-10, fp32 < 1e-5) over
hypothesis-drawn geometries in both memory formats, gradcheck in fp64, non-finite inputs, the layers' measured choice
of the kernel form (never under tracing), and the fallback with one warning naming the cause when numba is missing or
a kernel does not compile."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.kernels import numba_runtime, readiness
from convzoo.kernels.dcnv3_cpu import dcnv3_sample
from convzoo.kernels.deform_cpu import deform_conv2d
from convzoo.kernels.involution_cpu import involve
from convzoo.layers import dcnv3 as dcnv3_layer
from convzoo.layers import deformable as deformable_layer
from convzoo.layers import involution as involution_layer
from convzoo.oracle import reference as ref
from convzoo.layers.fastpaths import is_channels_last
from convzoo.verify import randomize_parameters_

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def one_thread():
    """gradcheck calls the kernels thousands of times on tiny inputs: one thread, no parallel-region wake-ups."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check(got: torch.Tensor, expected: np.ndarray, tolerance: float) -> None:
    """Absolute error for fp64 (< 1e-10), error relative to the largest |value| for fp32 (< 1e-5)."""
    error = np.abs(got.detach().double().numpy() - expected).max(initial=0.0)
    if got.dtype == torch.float32:
        error /= max(np.abs(expected).max(initial=0.0), 1.0)
    assert error < tolerance, error


def _formats(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _keeps_format(y: torch.Tensor, x: torch.Tensor) -> bool:
    """y is channels_last when x is (and is not also NCHW-contiguous, as with one channel), else NCHW."""
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return y.is_contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format)


# --- involution ---------------------------------------------------------------------------------------------------

def _involution_case(data):
    dim = data.draw(st.sampled_from([1, 2]))
    groups = data.draw(st.sampled_from([1, 2, 3]))
    c = groups * data.draw(st.integers(1, 3))
    k = tuple(data.draw(st.integers(1, 4)) for _ in range(dim))
    s = tuple(data.draw(st.integers(1, 3)) for _ in range(dim))
    d = tuple(data.draw(st.integers(1, 2)) for _ in range(dim))
    pairs = tuple((p, p + data.draw(st.integers(0, 1))) for p in (data.draw(st.integers(0, 2)) for _ in range(dim)))
    size = tuple(data.draw(st.integers(max(1, di * (ki - 1) + 1 - lo - hi), 9))
                 for ki, di, (lo, hi) in zip(k, d, pairs))
    out = tuple((n + lo + hi - di * (ki - 1) - 1) // si + 1 for n, ki, si, di, (lo, hi) in zip(size, k, s, d, pairs))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 99)))
    x = torch.randn(data.draw(st.integers(1, 2)), c, *size, dtype=torch.float64, generator=gen)
    kernels = torch.randn(x.shape[0], groups * math.prod(k), *out, dtype=torch.float64, generator=gen)
    return x, kernels, k, s, pairs, d


@SETTINGS
@given(st.data())
def test_involution_kernel_matches_the_oracle(data):
    x, kernels, k, s, pairs, d = _involution_case(data)
    expected = ref.involve(x.numpy(), kernels.numpy(), k, s, pairs, d)
    before = tuple(lo for lo, _ in pairs)
    for channels_last in ((False, True) if x.dim() == 4 else (False,)):
        y = involve(_formats(x, channels_last), kernels, k, s, before, d)
        assert _keeps_format(y, _formats(x, channels_last))
        _check(y, expected, 1e-10)
        _check(involve(_formats(x.float(), channels_last), kernels.float(), k, s, before, d), expected, 1e-5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("geometry", [((3, 3), (1, 1), (1, 1), (1, 1)), ((5, 3), (2, 1), (2, 3), (1, 2)),
                                      ((1, 7), (1, 1), (0, 2), (1, 1))], ids=str)
def test_involution_kernel_on_long_rows_matches_the_oracle(geometry, threads):
    """Rows longer than one NCHW tile (4 × LANES positions) and channel counts that are not a multiple of its 4
    channels: every tile edge of the NCHW forward, fp64 and fp32."""
    k, s, p, d = geometry
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for groups, per_group, size in ((2, 5, (6, 70)), (3, 3, (9, 131)), (1, 4, (4, 64))):
            gen = torch.Generator().manual_seed(per_group)
            x = torch.randn(2, groups * per_group, *size, dtype=torch.float64, generator=gen)
            out = tuple((n + 2 * pi - di * (ki - 1) - 1) // si + 1 for n, ki, si, pi, di in zip(size, k, s, p, d))
            kernels = torch.randn(2, groups * math.prod(k), *out, dtype=torch.float64, generator=gen)
            expected = ref.involve(x.numpy(), kernels.numpy(), k, s, tuple((pi, pi) for pi in p), d)
            _check(involve(x, kernels, k, s, p, d), expected, 1e-10)
            _check(involve(x.float(), kernels.float(), k, s, p, d), expected, 1e-5)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize("groups, per_group", [(1, 64), (2, 32), (2, 48), (1, 40), (3, 20)], ids=str)
def test_involution_wide_groups_match_the_oracle(groups, per_group):
    """Groups of 17 channels and more, on channels-last data: the apply's register tiles with both blocks of a
    channel pair in use (full ones run with constant masks, partial ones masked, a group's last pair with its
    second block empty), rows long enough for several tiles, the kernel and the fused forward, fp64 and fp32."""
    from convzoo.kernels.involution_cpu import generate_and_involve

    c = groups * per_group
    layer = cz.Involution2d(c, c, 3, padding=1, groups=groups, reduction=4).double()
    randomize_parameters_(layer, torch.Generator().manual_seed(per_group))
    x = torch.randn(2, c, 5, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(groups))
    gen = layer.generator
    with torch.no_grad():
        kernels = gen(x)
    pairs = ((1, 1), (1, 1))
    expected = ref.involve(x.numpy(), kernels.numpy(), (3, 3), (1, 1), pairs, (1, 1))
    xs = _formats(x, True)
    _check(involve(xs, kernels, (3, 3), (1, 1), (1, 1), (1, 1)), expected, 1e-10)
    _check(involve(xs.float(), kernels.float(), (3, 3), (1, 1), (1, 1), (1, 1)), expected, 1e-5)
    weights = (gen.reduce.weight, gen.reduce.bias, gen.span.weight, gen.span.bias)
    fused = generate_and_involve(xs, *weights, (3, 3), (1, 1), (1, 1), (1, 1), (5, 23))
    _check(fused, layer.reference_output(x.numpy()), 1e-10)
    fused32 = generate_and_involve(xs.float(), *(w.float() for w in weights), (3, 3), (1, 1), (1, 1), (1, 1), (5, 23))
    _check(fused32, layer.reference_output(x.numpy()), 1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("geometry", [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 2), (2, 1), (2, 0), (1, 2))], ids=str)
def test_involution_kernel_gradcheck(geometry, channels_last, one_thread):
    k, s, p, d = geometry
    x = _formats(torch.randn(2, 4, 6, 5, dtype=torch.float64), channels_last).requires_grad_()
    out = tuple((n + 2 * pi - di * (ki - 1) - 1) // si + 1 for n, ki, si, pi, di in zip((6, 5), k, s, p, d))
    kernels = torch.randn(2, 2 * math.prod(k), *out, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: involve(a, b, k, s, p, d), (x, kernels))


def test_involution_kernel_gradcheck_1d(one_thread):
    x = torch.randn(2, 3, 9, dtype=torch.float64, requires_grad=True)
    kernels = torch.randn(2, 3 * 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: involve(a, b, (3,), (2,), (1,), (1,)), (x, kernels))


def _fused_spy(monkeypatch) -> list[int]:
    """Count the layer's calls of the fused kernel (generator and apply in one); the warm-ups, which call it too,
    run first."""
    from convzoo.kernels import involution_cpu

    assert all(readiness.kernel_ready("involution_cpu", dtype, "test") for dtype in (torch.float32, torch.float64))
    calls: list[int] = []
    original = involution_cpu.generate_and_involve

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(involution_cpu, "generate_and_involve", counted)
    return calls


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_involution_fused_forward_matches_the_oracle(data):
    """The whole layer (generator + apply) by one kernel, without autograd, against the NumPy oracle of the paper's
    equations: hidden widths and G·T past one LANES block, rows past one tile of positions, centres in the padding,
    both padding modes, 1-D and 2-D, both formats; with autograd the layer does not run it."""
    dim = data.draw(st.sampled_from([1, 2]))
    groups = data.draw(st.sampled_from([1, 2, 3]))
    c = groups * data.draw(st.integers(1, 14))
    k = data.draw(st.integers(1, 4))
    s, d, p = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)), data.draw(st.integers(0, 3))
    mode = data.draw(st.sampled_from(["zeros", "replicate"]))
    layer = {1: cz.Involution1d, 2: cz.Involution2d}[dim](c, c, k, s, p, d, groups, data.draw(st.booleans()), mode,
                                                         reduction=data.draw(st.integers(1, 3))).double()
    randomize_parameters_(layer, torch.Generator().manual_seed(data.draw(st.integers(0, 99))))
    layer.implementation = "kernel"
    size = tuple(data.draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p, p + 1 if mode != "zeros" else 1), 21))
                 for _ in range(dim))
    x = torch.randn(data.draw(st.integers(1, 2)), c, *size, dtype=torch.float64)
    expected = layer.reference_output(x.numpy())
    with pytest.MonkeyPatch.context() as patch:
        calls = _fused_spy(patch)
        with torch.no_grad():
            for channels_last in ((False, True) if dim == 2 else (False,)):
                y = layer(_formats(x, channels_last))
                assert _keeps_format(y, _formats(x, channels_last))
                _check(y, expected, 1e-10)
            if dim == 2:
                _check(copy.deepcopy(layer).float()(_formats(x, True).float()), expected, 1e-5)
        fused = dim == 2 and is_channels_last(_formats(x, True))
        assert len(calls) == (2 if fused else 0)  # 'kernel': on channels-last data only
        layer.implementation = "auto"  # 'auto' offers it on every format (measured once per key and process)
        with torch.no_grad():
            _check(layer(x), expected, 1e-10)
        before = len(calls)
        layer(x.requires_grad_()).sum().backward()  # a backward follows: generator + apply, not the fused
        assert len(calls) == before and x.grad is not None


@pytest.mark.parametrize("geometry", [(3, 1, 1, 1), (5, 2, 3, 2), (4, 1, 0, 1)], ids=str)
def test_involution_fused_kernel_1d_matches_the_oracle(geometry):
    """The fused forward on 1-D data (run as 2-D with H = 1), called directly: 'auto' reaches it only where it
    measures faster."""
    from convzoo.kernels.involution_cpu import generate_and_involve

    k, s, p, d = geometry
    layer = cz.Involution1d(12, 12, k, s, p, d, groups=3, reduction=2).double()
    randomize_parameters_(layer, torch.Generator().manual_seed(k))
    x = torch.randn(2, 12, 37, dtype=torch.float64)
    gen = layer.generator
    out = ((37 + 2 * p - d * (k - 1) - 1) // s + 1,)
    y = generate_and_involve(x, gen.reduce.weight, gen.reduce.bias, gen.span.weight, gen.span.bias, (k,), (s,), (p,),
                             (d,), out)
    _check(y, layer.reference_output(x.numpy()), 1e-10)


def test_involution_fused_forward_nan_where_read(monkeypatch):
    """A NaN or Inf input reaches every output whose window or window centre reads it, as in the oracle."""
    layer = cz.Involution2d(4, 4, 3, padding=1, groups=2, reduction=2).double()
    randomize_parameters_(layer, torch.Generator().manual_seed(0))
    layer.implementation = "kernel"  # fused on channels-last data, generator + NCHW kernel on NCHW data
    x = torch.randn(1, 4, 7, 9, dtype=torch.float64)
    x[0, 1, 3, 0] = math.nan
    x[0, 2, 6, 8] = math.inf
    calls = _fused_spy(monkeypatch)
    with torch.no_grad():
        for channels_last in (False, True):
            y = layer(_formats(x, channels_last))
            np.testing.assert_array_equal(y.isnan().numpy(), np.isnan(layer.reference_output(x.numpy())))
    assert len(calls) == 1  # the channels-last call


@pytest.mark.parametrize("channels_last", [False, True])
def test_involution_kernel_nan_where_read(channels_last):
    x = torch.randn(1, 4, 7, 7, dtype=torch.float64)
    x[0, 1, 3, 0] = math.nan
    x[0, 2, 6, 6] = math.inf
    kernels = torch.randn(1, 2 * 9, 7, 7, dtype=torch.float64)
    y = involve(_formats(x, channels_last), kernels, (3, 3), (1, 1), (1, 1), (1, 1))
    expected = ref.involve(x.numpy(), kernels.numpy(), (3, 3), 1, 1, 1)
    np.testing.assert_array_equal(y.isnan().numpy(), np.isnan(expected))
    np.testing.assert_allclose(y.numpy()[np.isfinite(expected)], expected[np.isfinite(expected)], rtol=0, atol=1e-10)


# --- deformable v1 / v2 ---------------------------------------------------------------------------------------------

def _deform_case(data):
    groups, og = data.draw(st.sampled_from([1, 2])), data.draw(st.sampled_from([1, 2, 3]))
    c = groups * og * data.draw(st.integers(1, 2))
    c_out = groups * data.draw(st.integers(1, 3))
    k = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    s = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    p = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    size = tuple(data.draw(st.integers(max(1, di * (ki - 1) + 1 - 2 * pi), 8)) for ki, di, pi in zip(k, d, p))
    out = tuple((n + 2 * pi - di * (ki - 1) - 1) // si + 1 for n, ki, si, pi, di in zip(size, k, s, p, d))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 99)))
    n, taps = data.draw(st.integers(1, 2)), k[0] * k[1]
    x = torch.randn(n, c, *size, dtype=torch.float64, generator=gen)
    offset = torch.randn(n, 2 * og * taps, *out, dtype=torch.float64, generator=gen) * 1.5  # partly outside
    mask = torch.rand(n, og * taps, *out, dtype=torch.float64, generator=gen) if data.draw(st.booleans()) else None
    weight = torch.randn(c_out, c // groups, *k, dtype=torch.float64, generator=gen)
    bias = torch.randn(c_out, dtype=torch.float64, generator=gen) if data.draw(st.booleans()) else None
    return x, offset, mask, weight, bias, s, p, d


def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.numpy()


@SETTINGS
@given(st.data())
def test_deform_kernel_matches_the_oracle(data):
    x, offset, mask, weight, bias, s, p, d = _deform_case(data)
    expected = ref.deform_conv2d(x.numpy(), weight.numpy(), offset.numpy(), _numpy(mask), _numpy(bias), s, p, d)
    for channels_last in (False, True):
        y = deform_conv2d(_formats(x, channels_last), offset, weight, bias, s, p, d, mask)
        assert _keeps_format(y, _formats(x, channels_last))
        _check(y, expected, 1e-10)
        y32 = deform_conv2d(_formats(x.float(), channels_last), offset.float(), weight.float(),
                            None if bias is None else bias.float(), s, p, d, None if mask is None else mask.float())
        _check(y32, expected, 1e-5)


@pytest.mark.parametrize("c, groups, offset_groups", [(32, 1, 1), (64, 1, 2), (48, 3, 1), (40, 1, 1), (96, 2, 3)],
                         ids=str)
def test_deform_kernel_wide_channels_match_the_oracle(c, groups, offset_groups):
    """Channel runs of 16 and more per (offset group, conv group): the columns' vector blocks, whole ones at points
    whose four neighbours are inside (the test-free path) and partial or edge ones, fp64 and fp32, both formats."""
    gen = torch.Generator().manual_seed(c + groups)
    taps, out = 9, (6, 11)
    x = torch.randn(2, c, 6, 11, dtype=torch.float64, generator=gen)
    offset = torch.randn(2, 2 * offset_groups * taps, *out, dtype=torch.float64, generator=gen) * 0.7
    mask = torch.rand(2, offset_groups * taps, *out, dtype=torch.float64, generator=gen)
    weight = torch.randn(2 * groups, c // groups, 3, 3, dtype=torch.float64, generator=gen)
    expected = ref.deform_conv2d(x.numpy(), weight.numpy(), offset.numpy(), mask.numpy(), None, 1, 1, 1)
    for channels_last in (False, True):
        _check(deform_conv2d(_formats(x, channels_last), offset, weight, None, 1, 1, 1, mask), expected, 1e-10)
        y32 = deform_conv2d(_formats(x.float(), channels_last), offset.float(), weight.float(), None, 1, 1, 1,
                            mask.float())
        _check(y32, expected, 1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_deform_kernel_gradcheck(channels_last, one_thread):
    gen = torch.Generator().manual_seed(3)
    x = _formats(torch.randn(2, 4, 5, 4, dtype=torch.float64, generator=gen), channels_last).requires_grad_()
    offset = (torch.randn(2, 2 * 2 * 6, 3, 2, dtype=torch.float64, generator=gen) * 1.3).requires_grad_()
    mask = torch.rand(2, 2 * 6, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(6, 2, 3, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d(a[0], a[1], a[2], a[3], (2, 1), (1, 0), (1, 2), a[4]),
                                    (x, offset, weight, bias, mask))


@pytest.mark.parametrize("c, offset_groups", [(48, 1), (40, 2)], ids=str)
def test_deform_kernel_gradcheck_wide_channels(c, offset_groups, one_thread):
    """The backward's vector blocks (∂offset, ∂mask from dot products per neighbour; ∂x scattered) past one block of
    LANES channels, whole and partial."""
    gen = torch.Generator().manual_seed(c)
    x = _formats(torch.randn(1, c, 4, 5, dtype=torch.float64, generator=gen), True).requires_grad_()
    offset = (torch.randn(1, 2 * offset_groups * 9, 4, 5, dtype=torch.float64, generator=gen) * 1.3).requires_grad_()
    mask = torch.rand(1, offset_groups * 9, 4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = torch.randn(2, c, 3, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d(a[0], a[1], a[2], None, 1, 1, 1, a[3]),
                                    (x, offset, weight, mask), fast_mode=True)


def test_deform_kernel_far_and_non_finite_offsets():
    x, weight = torch.randn(1, 2, 6, 6), torch.randn(3, 2, 3, 3)
    far = deform_conv2d(x, torch.full((1, 18, 6, 6), 1e30), weight, None, 1, 1)
    assert torch.equal(far, torch.zeros_like(far))  # every sample point is outside: reads zero
    offset = torch.randn(1, 18, 6, 6)
    offset[0, 5, 2, 3] = math.nan
    offset[0, 0, 4, 1] = -math.inf
    mask = torch.rand(1, 9, 6, 6)
    mask[0, 8, 0, 0] = math.inf
    y = deform_conv2d(x, offset, weight, None, 1, 1, 1, mask)
    bad = torch.zeros(6, 6, dtype=torch.bool)
    bad[2, 3] = bad[4, 1] = bad[0, 0] = True
    assert y[0][:, bad].isnan().all() and not y[0][:, ~bad].isnan().any()


# --- DCNv3's sampling ---------------------------------------------------------------------------------------------

def _dcnv3_oracle(v: torch.Tensor, fields: torch.Tensor, k: tuple[int, int], d: tuple[int, int],
                  scale: float) -> np.ndarray:
    """ref.dcnv3_sampling per sample, on the kernel's channels-last layout: (N, H, W, C) → (N, H, W, C)."""
    n, h, w, c = v.shape
    taps, groups = k[0] * k[1], fields.shape[-1] // (3 * k[0] * k[1])
    offsets = fields[..., :2 * groups * taps].reshape(n, h, w, groups, taps, 2).numpy()
    masks = fields[..., 2 * groups * taps:].reshape(n, h, w, groups, taps).numpy()
    return np.stack([ref.dcnv3_sampling(v[b].permute(2, 0, 1).numpy(), offsets[b], masks[b], k, d, scale)
                     .transpose(1, 2, 0) for b in range(n)])


@SETTINGS
@given(st.data())
def test_dcnv3_kernel_matches_the_oracle(data):
    groups = data.draw(st.sampled_from([1, 2, 3]))
    c = groups * data.draw(st.integers(1, 3))
    k = (data.draw(st.sampled_from([1, 3, 5])), data.draw(st.sampled_from([1, 3])))
    d = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
    scale = data.draw(st.sampled_from([0.5, 1.0, 1.7]))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 99)))
    n, h, w = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    taps = k[0] * k[1]
    v = torch.randn(n, h, w, c, dtype=torch.float64, generator=gen)
    fields = torch.cat([torch.randn(n, h, w, 2 * groups * taps, dtype=torch.float64, generator=gen) * 1.5,
                        torch.rand(n, h, w, groups * taps, dtype=torch.float64, generator=gen)], dim=-1)
    expected = _dcnv3_oracle(v, fields, k, d, scale)
    _check(dcnv3_sample(v, fields, k, d, scale), expected, 1e-10)
    _check(dcnv3_sample(v.float(), fields.float(), k, d, scale), expected, 1e-5)


@pytest.mark.parametrize("groups, per_group", [(1, 16), (2, 32), (3, 20), (1, 64)], ids=str)
def test_dcnv3_kernel_wide_groups_match_the_oracle(groups, per_group):
    """Groups of 16 channels and more: the sum over points in vector blocks past the first, fp64 and fp32."""
    gen = torch.Generator().manual_seed(per_group)
    k, taps = (3, 3), 9
    v = torch.randn(2, 5, 7, groups * per_group, dtype=torch.float64, generator=gen)
    fields = torch.cat([torch.randn(2, 5, 7, 2 * groups * taps, dtype=torch.float64, generator=gen) * 1.5,
                        torch.rand(2, 5, 7, groups * taps, dtype=torch.float64, generator=gen)], dim=-1)
    expected = _dcnv3_oracle(v, fields, k, (1, 1), 1.0)
    _check(dcnv3_sample(v, fields, k, (1, 1), 1.0), expected, 1e-10)
    _check(dcnv3_sample(v.float(), fields.float(), k, (1, 1), 1.0), expected, 1e-5)


def test_dcnv3_kernel_gradcheck(one_thread):
    gen = torch.Generator().manual_seed(4)
    v = torch.randn(2, 4, 3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    fields = torch.cat([torch.randn(2, 4, 3, 2 * 2 * 3, dtype=torch.float64, generator=gen) * 1.5,
                        torch.rand(2, 4, 3, 2 * 3, dtype=torch.float64, generator=gen)], dim=-1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: dcnv3_sample(a, b, (1, 3), (1, 2), 0.8), (v, fields))


@pytest.mark.parametrize("groups, per_group", [(1, 48), (2, 20)], ids=str)
def test_dcnv3_kernel_gradcheck_wide_groups(groups, per_group, one_thread):
    """The backward's vector blocks (dot products with ∂y per neighbour, the scatter into ∂v) past one block of
    LANES channels, whole and partial."""
    gen = torch.Generator().manual_seed(per_group)
    v = torch.randn(1, 3, 4, groups * per_group, dtype=torch.float64, generator=gen, requires_grad=True)
    fields = torch.cat([torch.randn(1, 3, 4, 2 * groups * 9, dtype=torch.float64, generator=gen) * 1.5,
                        torch.rand(1, 3, 4, groups * 9, dtype=torch.float64, generator=gen)], dim=-1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: dcnv3_sample(a, b, (3, 3), (1, 1), 1.0), (v, fields),
                                    fast_mode=True)


def test_dcnv3_kernel_non_finite_fields_give_nan_in_their_group():
    v = torch.randn(1, 5, 5, 4)
    fields = torch.cat([torch.randn(1, 5, 5, 2 * 2 * 9), torch.rand(1, 5, 5, 2 * 9)], dim=-1)
    fields[0, 1, 2, 2 * 9 + 3] = math.nan  # Δx of point 3, group 1
    fields[0, 3, 3, 2 * 2 * 9 + 4] = math.inf  # mask of point 4, group 0
    y = dcnv3_sample(v, fields, (3, 3), (1, 1), 1.0)
    bad = torch.zeros(5, 5, 4, dtype=torch.bool)
    bad[1, 2, 2:] = bad[3, 3, :2] = True
    assert y[0][bad].isnan().all() and not y[0][~bad].isnan().any()
    fields[..., :2 * 2 * 9] = 1e30  # every point far outside: zero
    assert torch.equal(dcnv3_sample(v, fields.nan_to_num(posinf=0.5), (3, 3), (1, 1), 1.0), torch.zeros_like(v))


def test_kernels_take_an_empty_batch():
    x = torch.randn(0, 4, 6, 5, requires_grad=True)
    y = involve(x, torch.randn(0, 2 * 9, 6, 5, requires_grad=True), (3, 3), (1, 1), (1, 1), (1, 1))
    y.sum().backward()
    assert y.shape == (0, 4, 6, 5) and x.grad.shape == x.shape
    y = deform_conv2d(x, torch.randn(0, 18, 6, 5, requires_grad=True), torch.randn(3, 4, 3, 3), None, 1, 1, 1,
                      torch.rand(0, 9, 6, 5))
    y.sum().backward()
    assert y.shape == (0, 3, 6, 5)
    v = torch.randn(0, 6, 5, 4, requires_grad=True)
    y = dcnv3_sample(v, torch.randn(0, 6, 5, 3 * 2 * 9, requires_grad=True), (3, 3), (1, 1), 1.0)
    y.sum().backward()
    assert y.shape == v.shape == v.grad.shape


def test_slopes_at_integer_points_are_torchvisions(one_thread):
    """At integer sampling points (zero offsets: every layer's start) bilinear reads have a kink; the kernel's
    derivative there is torchvision's (and grid_sample's): floor(p) and the neighbour above, and at exactly −1 the
    one from inside the image."""
    from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

    x, weight = torch.randn(2, 4, 7, 6, dtype=torch.float64), torch.randn(3, 4, 3, 3, dtype=torch.float64)
    integer = torch.randn(2, 18, 7, 6, dtype=torch.float64).round()
    grads = []
    for op in (deform_conv2d, torchvision_deform_conv2d):
        offset = integer.clone().requires_grad_()
        op(x, offset, weight, None, 1, 1, 1).square().sum().backward()
        grads.append(offset.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)


# --- the layers: the kernel as one more measured form ---------------------------------------------------------------

LAYERS = {
    "involution": (involution_layer, lambda: cz.Involution2d(8, 8, 3, padding=1, groups=2), "strided_views"),
    "deformable": (deformable_layer, lambda: cz.DeformConv2d(8, 6, 3, padding=1, offset_groups=2, modulated=True),
                   "torch"),
    "dcnv3": (dcnv3_layer, lambda: cz.DCNv3Conv2d(8, 6, 3, groups=2), "grid_sample"),
}


def _layer(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = LAYERS[name][1]()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.4)  # offsets and masks away from their zero start
    return layer


def _record_offers(module, monkeypatch) -> list[list[str]]:
    """Give the layer module a fresh FormChoice and record the forms it measures (once per new key)."""
    choice = type(module._CHOICE)(module._CHOICE.family)
    monkeypatch.setattr(module, "_CHOICE", choice)
    offered: list[list[str]] = []
    choose = choice.choose

    def recording(key, forms, *args, **kwargs):
        if key not in choice.cache:
            offered.append(sorted(forms))
        return choose(key, forms, *args, **kwargs)

    monkeypatch.setattr(choice, "choose", recording)
    return offered


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_offers_the_kernel_and_measures_once_per_key(name, monkeypatch):
    module, _, _ = LAYERS[name]
    layer = _layer(name)
    offered = _record_offers(module, monkeypatch)
    x = torch.randn(2, 8, 7, 6).contiguous(memory_format=torch.channels_last)
    expected = layer.reference_output(x.numpy())
    with torch.no_grad():
        for _ in range(2):
            _check(layer(x), expected, 1e-5)
    # involution without autograd chooses twice: its fused forward against generator + apply, and the apply's forms
    measured = 2 if name == "involution" else 1
    assert module._CHOICE.measurements == measured and len(offered) == measured
    assert any("kernel" in forms for forms in offered)
    assert layer.forward_path(x) in [f"auto: {form}" for forms in offered for form in forms]
    layer.implementation = "kernel"
    _check(layer(x), expected, 1e-5)
    with pytest.raises(ValueError, match="implementation='kernel'.*float32 / float64"):
        layer.bfloat16()(x.bfloat16())


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_never_runs_the_kernel_when_traced(name, monkeypatch):
    module, _, _ = LAYERS[name]
    layer = _layer(name)
    layer.implementation = "kernel"

    def refuse(*args, **kwargs):
        raise AssertionError("the kernel ran under tracing")

    target = {"involution": "_kernel_involve", "dcnv3": "_kernel_sample"}.get(name)
    if target:
        monkeypatch.setattr(type(layer), target, refuse)
    else:
        monkeypatch.setattr("convzoo.kernels.deform_cpu.deform_conv2d", refuse)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        traced = torch.jit.trace(layer, (x,), check_trace=False)
    _check(traced(x), layer.reference_output(x.numpy()), 1e-5)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layer_falls_back_with_one_warning_when_the_kernel_does_not_compile(name, monkeypatch):
    module, _, fallback = LAYERS[name]
    kernel_module = {"involution": "involution_cpu", "deformable": "deform_cpu", "dcnv3": "dcnv3_cpu"}[name]

    def broken(dtype):
        raise RuntimeError("LLVM ERROR: no target for this test")

    monkeypatch.setattr(f"convzoo.kernels.{kernel_module}.warm_up", broken)
    monkeypatch.setattr(readiness, "_ready", {})
    monkeypatch.setattr(numba_runtime, "_warned", set())
    offered = _record_offers(module, monkeypatch)
    layer = _layer(name).double()
    x = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            _check(layer(x), layer.reference_output(x.numpy()), 1e-10)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "did not compile" in messages[0] and "no target for this test" in messages[0]
    assert all("kernel" not in forms for forms in offered)
    assert layer.forward_path(x) in ("auto (not measured yet)", f"auto: {fallback}", "auto: torchvision")


NO_NUMBA = textwrap.dedent("""
    import warnings, numpy as np, torch
    import convzoo as cz
    warnings.simplefilter("always")
    torch.manual_seed(0)
    layers = [cz.Involution2d(4, 4, 3, padding=1, groups=2), cz.DeformConv2d(4, 4, 3, padding=1, modulated=True),
              cz.DCNv3Conv2d(4, 4, 3, groups=2)]
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        for layer in layers:
            layer.double()
            for _ in range(2):
                error = np.abs(layer(x).detach().numpy() - layer.reference_output(x.numpy())).max()
                assert error < 1e-10, (type(layer).__name__, error)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 3 and all("CONVZOO_DISABLE_NUMBA is set" in m for m in messages), messages
    print("ok")
""")


def test_layers_run_without_numba_and_say_why():
    env = {**os.environ, "CONVZOO_DISABLE_NUMBA": "1"}
    done = subprocess.run([sys.executable, "-c", NO_NUMBA], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


CACHED = textwrap.dedent("""
    import torch
    from convzoo.kernels import bilinear, dcnv3_cpu, deform_cpu, involution_cpu
    misses = {}
    for module in (involution_cpu, deform_cpu, dcnv3_cpu):
        module.warm_up(torch.float64)
    for module in (involution_cpu, deform_cpu, dcnv3_cpu, bilinear):
        for name, value in vars(module).items():
            dispatcher = getattr(value, "dispatcher", value)
            if hasattr(dispatcher, "stats") and getattr(dispatcher, "__module__", "") == module.__name__:
                misses[name] = sum(dispatcher.stats.cache_misses.values())
    print(sum(misses.values()), misses)
""")


def test_a_second_process_compiles_nothing():
    for module in ("involution_cpu", "deform_cpu", "dcnv3_cpu"):
        assert readiness.kernel_ready(module, torch.float64, "test")  # compiled (or loaded) here: on disk now
    done = subprocess.run([sys.executable, "-c", CACHED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "0", done.stdout


def test_bench_omp_launch_script_runs_quickly():
    """benchmarks/bench_omp_launch.py on tiny shapes: both variants (convzoo's pool, torch's OpenMP team through
    GOMP_parallel and a numba cfunc) run in their own processes and write the same output (the script checks)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "bench_omp_launch.py"
    spec = importlib.util.spec_from_file_location("bench_omp_launch", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from convzoo.kernels import omp_team

    assert omp_team.libgomp_path() is not None  # torch's Linux wheels load GNU OpenMP
    results = bench.main(["--quick", "--threads", "2"])
    assert set(results) == {"pool", "omp"} and results["pool"]["checksum"] == pytest.approx(results["omp"]["checksum"])
    assert all(0 < r[context][0] <= r[context][1] for r in results.values() for context in ("alone", "after a conv"))


def test_kernels_run_on_torchs_openmp_team(monkeypatch):
    """On two threads, run_tasks runs numba kernels on torch's own OpenMP team (``omp_team``: GOMP_parallel and a
    cfunc per kernel and argument kinds, pieces from an atomic counter): against the oracles, depthwise (both
    formats, m = 2: arrays, ints, tuples), involution's apply and fused forward, and DCNv3 (a float argument), fp64
    and fp32; a non-contiguous array or CONVZOO_KERNEL_THREADS=pool leaves the kernel to the pool."""
    from convzoo.kernels import omp_team
    from convzoo.kernels.depthwise import depthwise_conv
    from convzoo.kernels.involution_cpu import generate_and_involve

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen = torch.Generator().manual_seed(7)
        x = torch.randn(2, 32, 30, 37, dtype=torch.float64, generator=gen)  # 71,040 outputs: two threads' worth
        w, b = torch.randn(64, 1, 3, 3, dtype=torch.float64, generator=gen), torch.randn(64, dtype=torch.float64)
        expected = ref.correlate(x.numpy(), w.numpy(), b.numpy(), 1, 1, 1, groups=32)
        for channels_last in (False, True):
            for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
                y = depthwise_conv(_formats(x, channels_last).to(dtype), w.to(dtype), b.to(dtype), (1, 1),
                                   ((1, 1), (1, 1)), (1, 1))
                _check(y, expected, tolerance)
        layer = cz.Involution2d(32, 32, 3, padding=1, groups=2, reduction=4).double()
        randomize_parameters_(layer, torch.Generator().manual_seed(8))
        xs = _formats(x, True)
        with torch.no_grad():
            kernels = layer.generator(x)
        _check(involve(xs, kernels, (3, 3), (1, 1), (1, 1), (1, 1)),
               ref.involve(x.numpy(), kernels.numpy(), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)), 1e-10)
        g = layer.generator
        fused = generate_and_involve(xs, g.reduce.weight, g.reduce.bias, g.span.weight, g.span.bias, (3, 3), (1, 1),
                                     (1, 1), (1, 1), (30, 37))
        _check(fused, layer.reference_output(x.numpy()), 1e-10)
        v = torch.randn(2, 30, 37, 32, dtype=torch.float64, generator=gen)
        fields = torch.cat([torch.randn(2, 30, 37, 2 * 2 * 9, dtype=torch.float64, generator=gen) * 1.5,
                            torch.rand(2, 30, 37, 2 * 9, dtype=torch.float64, generator=gen)], dim=-1)
        _check(dcnv3_sample(v, fields, (3, 3), (1, 1), 0.7), _dcnv3_oracle(v, fields, (3, 3), (1, 1), 0.7), 1e-10)
        on_team = {key[0].py_func.__name__ for key, run in omp_team._launchers.items() if run is not None}
        assert {"_correlate_nchw", "_forward_tiles", "_generate_apply", "_sample"} <= on_team
        assert any(name.startswith("_forward_nhwc") for name in on_team)
        kernel = next(key[0] for key in omp_team._launchers if key[0].py_func.__name__ == "_sample")
        strided = np.zeros((4, 6))[:, ::2]
        assert omp_team.launcher(kernel, (strided, 1)) is None  # a non-contiguous array: the pool
        monkeypatch.setenv("CONVZOO_KERNEL_THREADS", "pool")
        assert omp_team.launcher(kernel, (np.zeros(3), 1)) is None
    finally:
        torch.set_num_threads(previous)
