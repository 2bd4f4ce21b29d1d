"""convzoo's numba CPU kernels (``convzoo.kernels``): depthwise conv, GDC and the fused V∘H pair against the NumPy
oracle over drawn shapes, strides, dilations, paddings, multipliers and both memory formats (fp64 < 1e-10, fp32
< 1e-5); gradients by fp64 gradcheck; NaN / Inf reaching exactly the outputs that read them; threads; the on-disk
cache (a second process compiles nothing); the fallback to PyTorch's forms when numba is missing or a kernel fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.kernels import available
from convzoo.oracle import reference as ref

pytestmark = pytest.mark.skipif(not available(), reason="numba is not importable here")

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _relative(y: torch.Tensor, expected: np.ndarray) -> float:
    peak = np.abs(expected).max(initial=0.0)
    diff = np.abs(y.detach().double().numpy() - expected).max(initial=0.0)
    return float(diff / peak) if peak > 0 else float(diff)


def _input(shape: tuple[int, ...], dtype: torch.dtype, fmt: str, seed: int) -> torch.Tensor:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).mul(2).sub(1).to(dtype)
    return x.contiguous(memory_format=FORMATS[fmt]) if x.dim() == 4 else x


def same_3x3_cases(test: Callable[..., None]) -> Callable[..., None]:
    """Draws for the 3×3 'same' register-window kernels (stride 1, one column of padding before): channel counts
    with partial blocks, short and long rows and columns, both formats, with and without the windows; and three
    cases that always reach the whole tiles inside the map (the steps that test nothing)."""
    for case in ((20, 12, 37, (1, 1), 1, torch.float32, 1), (32, 14, 23, (2, 0), 0, torch.float32, 2),
                 (16, 12, 19, (0, 2), 3, torch.float64, 3)):
        c, h, w, ph, pw_after, dtype, seed = case
        test = example(c=c, h=h, w=w, ph=ph, pw_after=pw_after, dtype=dtype, fmt="channels_last", window=True,
                       seed=seed)(test)
    drawn = given(c=st.integers(1, 40), h=st.integers(1, 14), w=st.integers(1, 90),
                  ph=st.tuples(st.integers(0, 2), st.integers(0, 2)), pw_after=st.integers(0, 3),
                  dtype=st.sampled_from([torch.float64, torch.float32]), fmt=st.sampled_from(list(FORMATS)),
                  window=st.booleans(), seed=st.integers(0, 99))(test)
    return settings(max_examples=12, deadline=None)(drawn)


@st.composite
def depthwise_cases(draw: st.DrawFn) -> dict:
    dim = draw(st.sampled_from([1, 2]))
    k = tuple(draw(st.integers(1, 4)) for _ in range(dim))
    d = tuple(draw(st.integers(1, 2)) for _ in range(dim))
    s = tuple(draw(st.integers(1, 3)) for _ in range(dim))
    pairs = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(dim))
    size = tuple(draw(st.integers(max(1, d[i] * (k[i] - 1) + 1 - sum(pairs[i])), 12)) for i in range(dim))
    return {"c": draw(st.integers(1, 5)), "m": draw(st.integers(1, 3)), "n": draw(st.integers(1, 2)), "k": k, "d": d,
            "s": s, "pairs": pairs, "size": size, "fmt": draw(st.sampled_from(list(FORMATS))),
            "dtype": draw(st.sampled_from([torch.float64, torch.float32])), "bias": draw(st.booleans()),
            "seed": draw(st.integers(0, 1000))}


@settings(max_examples=40, deadline=None)
@given(depthwise_cases())
def test_depthwise_kernel_matches_oracle(case):
    from convzoo.kernels.depthwise import depthwise_conv

    c, m, k = case["c"], case["m"], case["k"]
    x = _input((case["n"], c, *case["size"]), case["dtype"], case["fmt"], case["seed"])
    w = _input((c * m, 1, *k), case["dtype"], "contiguous", case["seed"] + 1)
    b = _input((c * m,), case["dtype"], "contiguous", case["seed"] + 2) if case["bias"] else None
    with torch.no_grad():
        y = depthwise_conv(x, w, b, case["s"], case["pairs"], case["d"])
    expected = ref.correlate(x.double().numpy(), w.double().numpy(), None if b is None else b.double().numpy(),
                             case["s"], case["pairs"], case["d"], groups=c)
    assert y.shape == expected.shape
    assert _relative(y, expected) < TOLERANCE[case["dtype"]]
    if (x.dim() == 4 and case["fmt"] == "channels_last" and not x.is_contiguous()  # a 1×1 map is both formats
                and c > 1 and y.shape[1] > 1 and y.shape[2:].numel() > 1):
        assert y.is_contiguous(memory_format=torch.channels_last)


@settings(max_examples=20, deadline=None)
@given(depthwise_cases(), st.sampled_from(["dense", "last", "strided"]), st.booleans())
def test_planned_depthwise_matches_oracle(case, layout, grad):
    """The per-key launcher the layers plan (``planned_depthwise_conv``) against the oracle, in the layout
    ``depthwise_conv`` gives (NCL, NLC, NCHW, channels_last; strided inputs copied), with and without grad (an input
    requiring grad under no_grad too), run twice on one plan (nothing of the first call kept in the second)."""
    from convzoo.kernels.depthwise import depthwise_conv, planned_depthwise_conv

    c, m, k, dtype = case["c"], case["m"], case["k"], case["dtype"]
    x = _input((case["n"], c, *case["size"]), dtype, "contiguous", case["seed"])
    if layout == "last":  # channels_last / NLC storage
        x = x.movedim(1, -1).contiguous().movedim(-1, 1)
    elif layout == "strided":
        x = torch.cat([x, x], dim=-1)[..., ::2]
    x.requires_grad_(True)
    w = _input((c * m, 1, *k), dtype, "contiguous", case["seed"] + 1).requires_grad_(True)
    b = _input((c * m,), dtype, "contiguous", case["seed"] + 2).requires_grad_(True) if case["bias"] else None
    expected = ref.correlate(x.detach().double().numpy(), w.detach().double().numpy(),
                             None if b is None else b.detach().double().numpy(), case["s"], case["pairs"], case["d"],
                             groups=c)
    with torch.set_grad_enabled(grad):
        launch = planned_depthwise_conv(tuple(x.shape), x.stride(), dtype, tuple(w.shape), case["s"], case["pairs"],
                                        case["d"], grad, torch.get_num_threads())
        for _ in range(2):
            y = launch(x, w, b)
            assert y.shape == expected.shape and y.requires_grad == grad
            assert _relative(y, expected) < TOLERANCE[dtype]
        assert y.stride() == depthwise_conv(x, w, b, case["s"], case["pairs"], case["d"]).stride()
    if grad:  # the planned graph's gradients against the unplanned one's (both checked against torch elsewhere)
        g = torch.ones_like(y)
        want = torch.autograd.grad(depthwise_conv(x, w, b, case["s"], case["pairs"], case["d"]), (x, w), g)
        for got, ref_grad in zip(torch.autograd.grad(y, (x, w), g), want):
            assert torch.allclose(got, ref_grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (3, 1), (1, 3)])
def test_depthwise_unrolled_sizes_match_oracle(kernel, fmt, dtype):
    """The kernel sizes whose tap loops are unrolled (fp32), on rows wide enough for the 4-block path (64 + edges),
    stride 1 (aligned windows) and 2, forward against the oracle and backward against torch's fp64 conv backward
    (fp32 sums over 1,000 products: 10× the forward's tolerance)."""
    from convzoo.kernels.depthwise import depthwise_conv

    x = _input((2, 3, 9, 71), dtype, fmt, 0).requires_grad_(True)
    w = _input((6, 1, *kernel), dtype, "contiguous", 1).requires_grad_(True)
    b = _input((6,), dtype, "contiguous", 2).requires_grad_(True)
    for stride in ((1, 1), (2, 2)):
        pairs = tuple((k // 2, k // 2) for k in kernel)
        y = depthwise_conv(x, w, b, stride, pairs, (1, 1))
        expected = ref.correlate(x.detach().double().numpy(), w.detach().double().numpy(), b.detach().double().numpy(),
                                 stride, pairs, 1, groups=3)
        assert _relative(y, expected) < TOLERANCE[dtype]
        # the backward kernels against torch's own conv backward in fp64 (an independent implementation)
        g = torch.rand(y.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        grads = torch.autograd.grad(y, (x, w, b), g.to(dtype))
        x64, w64, b64 = (t.detach().double().requires_grad_(True) for t in (x, w, b))
        y64 = torch.nn.functional.conv2d(x64, w64, b64, stride, tuple(k // 2 for k in kernel), 1, 3)
        for got, want in zip(grads, torch.autograd.grad(y64, (x64, w64, b64), g)):
            assert _relative(got, want.numpy()) < 10 * TOLERANCE[dtype]


@same_3x3_cases
def test_depthwise_same_3x3_matches_oracle(c, h, w, ph, pw_after, dtype, fmt, window, seed):
    """3×3 at stride 1 with one column of padding before: the register-window kernels of ``depthwise_same`` (the
    forward, ∂x as the flipped kernel with the same padding, and on channels_last ∂w and ∂b), and on channels_last
    with ``window=False`` the position tiles. Rows shorter than a block, partial blocks (NCHW) and partial channel
    blocks (channels_last), tiles at the top and bottom, short last tiles, columns only the padding reads; the
    backward against torch's fp64 conv."""
    from convzoo.kernels.depthwise import depthwise_conv

    if h + sum(ph) < 3 or w + pw_after < 2:
        return
    pairs = (ph, (1, pw_after))
    x = _input((2, c, h, w), dtype, fmt, seed).requires_grad_(True)
    wt = _input((c, 1, 3, 3), dtype, "contiguous", seed + 1).requires_grad_(True)
    b = _input((c,), dtype, "contiguous", seed + 2).requires_grad_(True)
    y = depthwise_conv(x, wt, b, (1, 1), pairs, (1, 1), window)
    expected = ref.correlate(x.detach().double().numpy(), wt.detach().double().numpy(), b.detach().double().numpy(),
                             1, pairs, 1, groups=c)
    assert _relative(y, expected) < TOLERANCE[dtype]
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(seed + 3), dtype=torch.float64)
    x64, w64, b64 = (t.detach().double().requires_grad_(True) for t in (x, wt, b))
    y64 = torch.nn.functional.conv2d(torch.nn.functional.pad(x64, (1, pw_after, *ph)), w64, b64, groups=c)
    for got, want in zip(torch.autograd.grad(y, (x, wt, b), g.to(dtype)), torch.autograd.grad(y64, (x64, w64, b64), g)):
        assert _relative(got, want.numpy()) < 10 * TOLERANCE[dtype]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kernel", [(3, 3), (1, 3), (3, 1)])
@pytest.mark.parametrize("width", [16, 24])
def test_depthwise_rows_a_whole_number_of_tiles_long(kernel, width, fmt):
    """Rows of a whole number of channels_last tiles (8 positions): the last tile ends at the row's end and reads
    the padding column after it. fp32 (the unrolled kernels); forward against the oracle, backward against torch's
    fp64 conv backward."""
    from convzoo.kernels.depthwise import depthwise_conv

    x = _input((2, 16, 5, width), torch.float32, fmt, 7).requires_grad_(True)
    w = _input((16, 1, *kernel), torch.float32, "contiguous", 8).requires_grad_(True)
    b = _input((16,), torch.float32, "contiguous", 9).requires_grad_(True)
    pairs = tuple((k // 2, k // 2) for k in kernel)
    y = depthwise_conv(x, w, b, (1, 1), pairs, (1, 1))
    expected = ref.correlate(x.detach().double().numpy(), w.detach().double().numpy(), b.detach().double().numpy(),
                             1, pairs, 1, groups=16)
    assert _relative(y, expected) < TOLERANCE[torch.float32]
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    x64, w64, b64 = (t.detach().double().requires_grad_(True) for t in (x, w, b))
    y64 = torch.nn.functional.conv2d(x64, w64, b64, 1, tuple(k // 2 for k in kernel), 1, 16)
    for got, want in zip(torch.autograd.grad(y, (x, w, b), g.float()), torch.autograd.grad(y64, (x64, w64, b64), g)):
        assert _relative(got, want.numpy()) < 10 * TOLERANCE[torch.float32]


TILE_CASES = {  # name: (kernel, stride, dilation, multiplier, padding pairs)
    "3x3": ((3, 3), (1, 1), (1, 1), 1, ((1, 1), (1, 1))),
    "3x3 m=2": ((3, 3), (1, 1), (1, 1), 2, ((1, 1), (1, 1))),
    "3x3 m=3 asymmetric padding": ((3, 3), (1, 1), (1, 1), 3, ((0, 2), (2, 0))),
    "3x3 stride 2": ((3, 3), (2, 2), (1, 1), 1, ((1, 1), (1, 1))),
    "3x3 dilation 2": ((3, 3), (1, 1), (2, 2), 1, ((2, 2), (2, 2))),
    "5x5": ((5, 5), (1, 1), (1, 1), 1, ((2, 2), (2, 2))),
    "1x3 no padding": ((1, 3), (1, 1), (1, 1), 1, ((0, 0), (0, 0))),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", TILE_CASES)
def test_depthwise_register_tiles_match_oracle(name, fmt):
    """Shapes that reach the register-tiled paths: 20 channels (a full block of LANES and a tail of 4; channels_last
    tiles run on full blocks), rows of 37 (tiles of several positions, a partial last tile, tiles shifted to end
    inside the row, the padding at both ends), several output rows per task. Forward against the oracle (fp32),
    backward against torch's fp64 conv backward."""
    from convzoo.kernels.depthwise import depthwise_conv

    kernel, stride, dilation, m, pairs = TILE_CASES[name]
    x = _input((2, 20, 11, 37), torch.float32, fmt, 21).requires_grad_(True)
    w = _input((20 * m, 1, *kernel), torch.float32, "contiguous", 22).requires_grad_(True)
    b = _input((20 * m,), torch.float32, "contiguous", 23).requires_grad_(True)
    y = depthwise_conv(x, w, b, stride, pairs, dilation)
    expected = ref.correlate(x.detach().double().numpy(), w.detach().double().numpy(), b.detach().double().numpy(),
                             stride, pairs, dilation, groups=20)
    assert _relative(y, expected) < TOLERANCE[torch.float32]
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(24), dtype=torch.float64)
    grads = torch.autograd.grad(y, (x, w, b), g.float())
    x64, w64, b64 = (t.detach().double().requires_grad_(True) for t in (x, w, b))
    padded = torch.nn.functional.pad(x64, (*pairs[1], *pairs[0]))
    y64 = torch.nn.functional.conv2d(padded, w64, b64, stride, 0, dilation, 20)
    for got, want in zip(grads, torch.autograd.grad(y64, (x64, w64, b64), g)):
        assert _relative(got, want.numpy()) < 10 * TOLERANCE[torch.float32]


@pytest.mark.parametrize(("m", "window"), [(1, True), (1, False), (2, True)])
def test_depthwise_streamed_output_matches_oracle(m, window, monkeypatch):
    """channels_last outputs written with non-temporal stores (forced for a small output: STREAM_BYTES = 0; 32
    channels, so every block of channels starts on a 64-byte boundary): forward and ∂x (the forward's kernel), by
    the register windows (m = 1) and the position tiles."""
    from convzoo.kernels import depthwise

    monkeypatch.setattr(depthwise, "STREAM_BYTES", 0)
    x = _input((2, 32, 9, 21), torch.float32, "channels_last", 31).requires_grad_(True)
    w = _input((32 * m, 1, 3, 3), torch.float32, "contiguous", 32)
    y = depthwise.depthwise_conv(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), window)
    assert depthwise.streams(y)
    expected = ref.correlate(x.detach().double().numpy(), w.double().numpy(), None, 1, 1, 1, groups=32)
    assert _relative(y, expected) < TOLERANCE[torch.float32]
    g = torch.rand(y.shape, generator=torch.Generator().manual_seed(33), dtype=torch.float64)
    (got,) = torch.autograd.grad(y, (x,), g.float())
    x64 = x.detach().double().requires_grad_(True)
    (want,) = torch.autograd.grad(torch.nn.functional.conv2d(x64, w.double(), None, 1, 1, 1, 32), (x64,), g)
    assert _relative(got, want.numpy()) < 10 * TOLERANCE[torch.float32]


@settings(max_examples=15, deadline=None)
@given(c=st.integers(1, 20), m=st.integers(1, 3), n=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 7),
       fmt=st.sampled_from(list(FORMATS)), dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 99))
def test_global_depthwise_kernel_matches_oracle(c, m, n, h, w, fmt, dtype, seed):
    from convzoo.kernels.global_depthwise import global_depthwise

    x = _input((n, c, h, w), dtype, fmt, seed)
    weight = _input((c * m, 1, h, w), dtype, "contiguous", seed + 1)
    bias = _input((c * m,), dtype, "contiguous", seed + 2)
    with torch.no_grad():
        y = global_depthwise(x, weight, bias)
    expected = ref.correlate(x.double().numpy(), weight.double().numpy(), bias.double().numpy(), groups=c)
    assert _relative(y, expected) < TOLERANCE[dtype]


@settings(max_examples=15, deadline=None)
@given(c=st.integers(1, 5), kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 2), sw=st.integers(1, 3),
       dh=st.integers(1, 2), dw=st.integers(1, 2), ph=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       pw=st.tuples(st.integers(0, 2), st.integers(0, 2)), fmt=st.sampled_from(list(FORMATS)),
       dtype=st.sampled_from([torch.float64, torch.float32]), seed=st.integers(0, 99))
def test_separable_pair_kernel_matches_oracle(c, kh, kw, sh, sw, dh, dw, ph, pw, fmt, dtype, seed):
    """H(V(z)): V per channel (kh×1) on the rows, H per channel (1×kw) on the columns, V's output never stored."""
    z = _input((2, c, dh * (kh - 1) + 3, dw * (kw - 1) + 4), dtype, fmt, seed)
    _check_pair(z, kh, kw, (sh, dh, ph, sw, dw, pw), seed)


def _check_pair(z: torch.Tensor, kh: int, kw: int, geometry: tuple, seed: int, window: bool = True) -> torch.Tensor:
    """The pair kernel on z with drawn weights and biases against V then H by the NumPy oracle; its output."""
    from convzoo.kernels.separable_pair import separable_pair

    c, dtype = z.shape[1], z.dtype
    sh, dh, ph, sw, dw, pw = geometry
    wv, bv = _input((c, 1, kh, 1), dtype, "contiguous", seed + 1), _input((c,), dtype, "contiguous", seed + 2)
    wh, bh = _input((c, 1, 1, kw), dtype, "contiguous", seed + 3), _input((c,), dtype, "contiguous", seed + 4)
    with torch.no_grad():
        y = separable_pair(z, wv, bv, wh, bh, geometry, window)
    v = ref.correlate(z.double().numpy(), wv.double().numpy(), bv.double().numpy(), (sh, 1), (ph, (0, 0)), (dh, 1),
                      groups=c)
    expected = ref.correlate(v, wh.double().numpy(), bh.double().numpy(), (1, sw), ((0, 0), pw), (1, dw), groups=c)
    assert _relative(y, expected) < TOLERANCE[dtype]
    return y


@settings(max_examples=12, deadline=None)
@given(c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(50, 140), kh=st.integers(1, 4), kw=st.integers(1, 5),
       sh=st.integers(1, 2), sw=st.integers(1, 2), dh=st.integers(1, 2), dw=st.integers(1, 3),
       ph=st.tuples(st.integers(0, 2), st.integers(0, 2)), pw=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       fmt=st.sampled_from(list(FORMATS)), dtype=st.sampled_from([torch.float64, torch.float32]),
       seed=st.integers(0, 99))
def test_separable_pair_kernel_on_wide_rows(c, h, w, kh, kw, sh, sw, dh, dw, ph, pw, fmt, dtype, seed):
    """Rows of 50–140 columns: the NCHW kernel's tiles span several chunks of blocks, with partial blocks, rows of v
    past the last tile and H reading across chunk boundaries."""
    z = _input((1, c, h + dh * (kh - 1), w), dtype, fmt, seed)
    _check_pair(z, kh, kw, (sh, dh, ph, sw, dw, pw), seed)


@same_3x3_cases
def test_separable_pair_same_kernel_matches_oracle(c, h, w, ph, pw_after, dtype, fmt, window, seed):
    """3×1 then 1×3 at stride 1 with H padded by 1 before (flattened's pair): the kernels that keep v in registers
    (and on channels_last with ``window=False`` the position tiles), on rows shorter than a block, partial blocks
    (NCHW) and channel blocks (channels_last), tiles at both borders, short last tiles, columns only the padding
    reads."""
    if h + sum(ph) < 3 or w + pw_after < 2:
        return
    z = _input((2, c, h, w), dtype, fmt, seed)
    _check_pair(z, 3, 3, (1, 1, ph, 1, 1, (1, pw_after)), seed, window)


@pytest.mark.parametrize("w", [8, 11, 30])
@pytest.mark.parametrize("kw, pw", [(3, (1, 1)), (3, (0, 0)), (3, (2, 0)), (3, (0, 2)), (2, (1, 0)), (2, (0, 1))])
def test_separable_pair_nhwc_row_ends_match_oracle(kw, pw, w):
    """channels_last with v in registers: tiles at both ends of the row (positions of v in the padding), tiles
    inside it (nothing tested), and the last tile shifted back to end with the row."""
    z = _input((1, 32, 4, w), torch.float32, "channels_last", w + kw)
    _check_pair(z, 3, kw, (1, 1, (1, 1), 1, 1, pw), 5)


@pytest.mark.parametrize("kw, sw, dw", [(1, 1, 1), (3, 1, 1), (2, 1, 1), (4, 1, 1), (3, 2, 1), (3, 1, 2)])
def test_separable_pair_streamed_output_matches_oracle(kw, sw, dw, monkeypatch):
    """channels_last pairs written with non-temporal stores (forced: STREAM_BYTES = 0; 32 channels): v in registers
    (H's stride 1, dilation 1, kw <= 3) and through the row buffer (the others)."""
    from convzoo.kernels import depthwise

    monkeypatch.setattr(depthwise, "STREAM_BYTES", 0)
    z = _input((2, 32, 7, 21), torch.float32, "channels_last", 34)
    assert depthwise.streams(_check_pair(z, 3, kw, (1, 1, (1, 1), sw, dw, (1, 2)), 34))


GRAD_CASES = {  # name: (channels, multiplier, kernel, stride, dilation, padding pairs, spatial)
    "3x3 m=1": (3, 1, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), (5, 6)),
    "m=2 stride 2 asymmetric": (2, 2, (2, 3), (2, 2), (1, 1), ((0, 1), (1, 0)), (6, 7)),
    "m=3 dilated stride (1, 3)": (2, 3, (2, 2), (1, 3), (2, 1), ((1, 2), (0, 1)), (5, 8)),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", GRAD_CASES)
def test_depthwise_kernel_gradcheck(name, fmt):
    from convzoo.kernels.depthwise import depthwise_conv

    c, m, k, s, d, pairs, size = GRAD_CASES[name]
    x = _input((2, c, *size), torch.float64, fmt, 3).requires_grad_(True)
    w = _input((c * m, 1, *k), torch.float64, "contiguous", 4).requires_grad_(True)
    b = _input((c * m,), torch.float64, "contiguous", 5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *t: depthwise_conv(*t, s, pairs, d), (x, w, b), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("fmt", FORMATS)
def test_global_depthwise_and_pair_gradcheck(fmt):
    from convzoo.kernels.global_depthwise import global_depthwise
    from convzoo.kernels.separable_pair import separable_pair

    x = _input((2, 3, 4, 5), torch.float64, fmt, 6).requires_grad_(True)
    w = _input((6, 1, 4, 5), torch.float64, "contiguous", 7).requires_grad_(True)
    b = _input((6,), torch.float64, "contiguous", 8).requires_grad_(True)
    assert torch.autograd.gradcheck(global_depthwise, (x, w, b), eps=1e-6, atol=1e-7)
    wv, bv = (_input(s, torch.float64, "contiguous", i).requires_grad_(True) for i, s in ((9, (3, 1, 3, 1)), (10, (3,))))
    wh, bh = (_input(s, torch.float64, "contiguous", i).requires_grad_(True) for i, s in ((11, (3, 1, 1, 2)), (12, (3,))))
    geometry = (2, 1, (1, 1), 1, 2, (1, 0))
    assert torch.autograd.gradcheck(lambda *t: separable_pair(*t, geometry), (x, wv, bv, wh, bh), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("bias", "input_grad"), [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("geometry", [(1, 1, (1, 1), 1, 1, (1, 1)), (2, 2, (2, 0), 2, 2, (0, 3))])
def test_separable_pair_backward_matches_torch(fmt, bias, input_grad, geometry):
    """The pair's backward (the depthwise kernels' backward for H, then V, on v recomputed) against torch's fp64
    autograd through V then H as two convs: with and without biases, with and without ∂z wanted."""
    from convzoo.kernels.separable_pair import separable_pair

    sh, dh, ph, sw, dw, pw = geometry
    z = _input((2, 5, 9, 11), torch.float64, fmt, 51).requires_grad_(input_grad)
    wv = _input((5, 1, 3, 1), torch.float64, "contiguous", 52).requires_grad_(True)
    wh = _input((5, 1, 1, 2), torch.float64, "contiguous", 53).requires_grad_(True)
    bv, bh = ((_input((5,), torch.float64, "contiguous", s).requires_grad_(True) for s in (54, 55)) if bias
              else (None, None))
    y = separable_pair(z, wv, bv, wh, bh, geometry)
    v = torch.nn.functional.conv2d(torch.nn.functional.pad(z, (0, 0, *ph)), wv, bv, (sh, 1), 0, (dh, 1), 5)
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(v, (*pw, 0, 0)), wh, bh, (1, sw), 0, (1, dw), 5)
    assert _relative(y, expected.detach().numpy()) < TOLERANCE[torch.float64]
    g = _input(tuple(y.shape), torch.float64, "contiguous", 56)
    wanted = [t for t in (z, wv, bv, wh, bh) if t is not None and t.requires_grad]
    for got, want in zip(torch.autograd.grad(y, wanted, g), torch.autograd.grad(expected, wanted, g), strict=True):
        assert _relative(got, want.numpy()) < TOLERANCE[torch.float64]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_reach_exactly_the_outputs_that_read_them(bad, fmt):
    """One NaN (or Inf) input: the outputs whose window reads it are NaN (or ±Inf / NaN), every other output stays
    finite and equal to the clean input's; the backward runs without error."""
    from convzoo.kernels.depthwise import depthwise_conv
    from convzoo.kernels.global_depthwise import global_depthwise
    from convzoo.kernels.separable_pair import separable_pair

    x = _input((1, 2, 7, 8), torch.float64, fmt, 13)
    dirty = x.clone()
    dirty[0, 1, 3, 4] = bad
    w = _input((4, 1, 3, 3), torch.float64, "contiguous", 14)
    pairs = ((1, 1), (1, 1))
    reads = torch.zeros(1, 4, 7, 8, dtype=torch.bool)
    reads[0, 2:4, 2:5, 3:6] = True  # output channels 2, 3 (= input channel 1 · m + j) around (3, 4)
    y, clean = (depthwise_conv(t, w, None, (1, 1), pairs, (1, 1)) for t in (dirty, x))
    assert not torch.isfinite(y[reads]).any() and torch.equal(y[~reads], clean[~reads])
    gdc = global_depthwise(dirty, _input((4, 1, 7, 8), torch.float64, "contiguous", 15), None)
    assert not torch.isfinite(gdc[0, 2:4]).any() and torch.isfinite(gdc[0, :2]).all()
    pair = separable_pair(dirty, w[:2, :, :, :1], None, w[:2, :, :1, :], None, (1, 1, (1, 1), 1, 1, (1, 1)))
    assert not torch.isfinite(pair[0, 1, 2:5, 3:6]).any() and torch.isfinite(pair[0, 0]).all()
    assert torch.isfinite(pair[0, 1, :2]).all() and torch.isfinite(pair[0, 1, 5:]).all()
    wg = w.clone().requires_grad_(True)
    depthwise_conv(dirty, wg, None, (1, 1), pairs, (1, 1)).sum().backward()
    assert not torch.isfinite(wg.grad[2:4]).all() and torch.isfinite(wg.grad[:2]).all()


def test_run_tasks_covers_every_task_once_on_several_threads():
    """The threads take contiguous pieces in turn (up to PIECES each): together exactly [0, tasks), the caller and
    the pool's workers both taking some; too little work runs as one chunk in the caller's thread."""
    from convzoo.kernels.numba_runtime import GRAIN, PIECES, run_tasks

    seen: list[tuple[int, int, str]] = []
    lock = threading.Lock()
    worker_ran, caller_ran = threading.Event(), threading.Event()

    def record(begin: int, end: int, tag: str) -> None:
        # Each side waits until the other has taken a piece too: on a busy machine one side could take them all
        # before the other is scheduled (the pieces still free stay for the side that comes late).
        name = threading.current_thread().name
        ran, other = (worker_ran, caller_ran) if name.startswith("convzoo-kernel") else (caller_ran, worker_ran)
        ran.set()
        other.wait(timeout=30)
        with lock:
            seen.append((begin, end, name + tag))

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        for tasks, work, pieces in ((40, None, min(40, 3 * PIECES)), (10, None, 10), (40, 3 * GRAIN, 3)):
            seen.clear()
            worker_ran.clear()
            caller_ran.clear()
            run_tasks(record, tasks, "", work=work)
            ranges = sorted((b, e) for b, e, _ in seen)
            assert len(ranges) == pieces and ranges[0][0] == 0 and ranges[-1][1] == tasks
            assert all(e == b for (_, e), (b, _) in zip(ranges, ranges[1:])) and all(b < e for b, e in ranges)
            names = {name for _, _, name in seen}
            assert threading.current_thread().name in names and any(n.startswith("convzoo-kernel") for n in names)
        seen.clear()
        worker_ran.set()  # one chunk: no worker runs, so the caller must not wait for one
        run_tasks(record, 10, "", work=1000)  # too little work to share: one chunk, the caller's thread
        assert [(b, e, n) for b, e, n in seen] == [(0, 10, threading.current_thread().name)]
    finally:
        torch.set_num_threads(threads)


def test_run_tasks_a_slow_thread_takes_fewer_pieces():
    """A thread that runs slowly (here a worker whose pieces take 50 ms, the caller's 1 ms) takes fewer pieces:
    the caller does the rest instead of waiting for a fixed half."""
    from convzoo.kernels.numba_runtime import PIECES, run_tasks

    caller = threading.current_thread().name
    taken: list[str] = []

    def piece(begin: int, end: int) -> None:
        name = threading.current_thread().name
        time.sleep(0.001 if name == caller else 0.05)
        taken.append(name)

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_tasks(piece, 2 * PIECES)
    finally:
        torch.set_num_threads(threads)
    assert len(taken) == 2 * PIECES and taken.count(caller) >= 2 * PIECES - 2


def test_two_python_threads_run_kernels_at_once():
    """Layers called from two Python threads at the same time: exact results, no crash, no deadlock."""
    conv = cz.DepthwiseConv2d(8, 16, 3, padding=1)
    conv.implementation = "kernel"
    x = torch.rand(2, 8, 20, 21)
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1, groups=8)
    errors: list[float] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with torch.no_grad():
                for _ in range(20):
                    errors.append(float((conv(x) - expected).abs().max()))
        except Exception as exc:  # noqa: BLE001 - reported below: a thread's exception would otherwise vanish
            failures.append(exc)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not failures, failures
    assert len(errors) == 40 and max(errors) < 1e-5


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env}, check=False)


_COMPILE_ONE = """
    import json, sys, time
    import torch
    torch.set_num_threads(2)
    from convzoo.kernels import depthwise
    x, w = torch.rand(1, 2, 5, 6, dtype=torch.float64), torch.rand(2, 1, 3, 3, dtype=torch.float64)
    start = time.perf_counter()
    y = depthwise.depthwise_conv(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1))  # one chunk: the calling thread
    seconds = time.perf_counter() - start
    ok = bool(torch.allclose(y, torch.nn.functional.conv2d(x, w, padding=1, groups=2)))
    stats = depthwise.correlate_nchw_same.stats  # the kernel of a 3×3 with one column of padding
    x, w = torch.rand(2, 16, 48, 48, dtype=torch.float64), torch.rand(16, 1, 3, 3, dtype=torch.float64)
    y = depthwise.depthwise_conv(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1))  # 73,728 outputs: two threads
    ok = ok and bool(torch.allclose(y, torch.nn.functional.conv2d(x, w, padding=1, groups=16)))
    launchers = [m.launch for name, m in sys.modules.items() if name.startswith("convzoo_omp_team_")]
    print(json.dumps({"ok": ok, "seconds": seconds, "hits": sum(stats.cache_hits.values()),
                      "misses": sum(stats.cache_misses.values()), "launchers": len(launchers),
                      "launcher_hits": sum(f.cache_hits for f in launchers)}))
"""


def test_a_second_process_compiles_nothing(tmp_path):
    """The kernels are cached on disk (NUMBA_CACHE_DIR): the first process compiles, the next one only loads; so is
    the cfunc that runs a kernel on torch's OpenMP team (written and compiled by the first process, loaded by the
    next)."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    first, second = (_python(_COMPILE_ONE, env) for _ in range(2))
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    cold, warm = json.loads(first.stdout.splitlines()[-1]), json.loads(second.stdout.splitlines()[-1])
    assert cold["ok"] and warm["ok"]
    assert cold["misses"] == 1 and warm["misses"] == 0 and warm["hits"] == 1
    assert any(tmp_path.rglob("*.nbi"))
    assert cold["launchers"] == warm["launchers"] == 1
    assert cold["launcher_hits"] == 0 and warm["launcher_hits"] == 1
    assert len(list((tmp_path / "convzoo-omp-team").glob("launch_*.py"))) == 1


def test_launcher_arguments_are_packed_as_its_cfunc_rebuilds_them():
    """``omp_team``'s one pass over a call's arguments gives the kinds (the launcher's key) and the int64 values the
    cfunc rebuilds them from: a pointer and the shape per array (numba's ``address`` agreeing with numpy's), the
    value per int, numpy integer or bool, a float's bits; any other argument leaves the kernel to the pool."""
    import struct

    from convzoo.kernels import omp_team
    from convzoo.kernels.omp_team_intrinsics import address

    a, q = np.zeros((3, 4), np.float32), np.zeros(5, np.longlong)
    kinds, values = omp_team._kinds_and_values((a, 7, np.int32(2), True, 1.5, (1, np.int64(2)), q[1:]))
    assert kinds == (("array", "float32", 2), ("int",), ("int",), ("bool",), ("float",), ("ints", 2),
                     ("array", "int64", 1))
    bits = struct.unpack("<q", struct.pack("<d", 1.5))[0]
    assert values == [a.ctypes.data, 3, 4, 7, 2, 1, bits, 1, 2, q[1:].ctypes.data, 4]
    assert address(a) == a.ctypes.data and address(q[1:]) == q.ctypes.data + 8
    readonly = np.zeros(3)
    readonly.flags.writeable = False
    for other in (a.T, np.zeros(3, np.float16), readonly, (1, True), (1.0,), "s", None):
        assert omp_team._kinds_and_values((other,))[0] is None


def test_without_numba_the_layers_use_torch_forms_and_warn_once():
    code = """
        import warnings
        import torch
        import convzoo as cz
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            torch.manual_seed(0)
            conv = cz.DepthwiseConv2d(2, 4, 3, padding=1)
            x = torch.rand(1, 2, 5, 5)
            forms = conv.forms(x)
            y = conv(x)
            conv(x)
        # the form the layer chose sums in its own order: fp32 rounding apart, near-zero outputs included
        ok = torch.allclose(y, torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1, groups=2), atol=1e-6)
        texts = [str(w.message) for w in caught if "CPU kernel" in str(w.message)]
        print(ok, "kernel" in forms, len(texts), texts[0] if texts else "")
    """
    done = _python(code, {"CONVZOO_DISABLE_NUMBA": "1"})
    assert done.returncode == 0, done.stderr
    ok, has_kernel, count, message = done.stdout.strip().split(" ", 3)
    assert (ok, has_kernel, count) == ("True", "False", "1")
    assert "DepthwiseConv2d" in message and "CONVZOO_DISABLE_NUMBA" in message


def test_channels_last_3x3_same_offers_the_kernel_with_and_without_register_windows():
    """The layer times the register windows against the position tiles where both run (channels_last, 3×3, stride
    1, one column of padding before, m = 1), and only there; each form, pinned, gives the oracle's output and
    torch's fp64 gradients."""
    from convzoo.layers.conv import KERNEL_TILES

    conv = cz.DepthwiseConv2d(20, 20, 3, padding=1).double()
    x = _input((2, 20, 9, 11), torch.float64, "channels_last", 41)
    assert conv.forms(x)[:3] == ["native", "kernel", KERNEL_TILES]
    assert KERNEL_TILES not in conv.forms(x.contiguous())
    assert KERNEL_TILES not in cz.DepthwiseConv2d(20, 20, 3, stride=2, padding=1).double().forms(x)
    assert KERNEL_TILES not in cz.DepthwiseConv2d(20, 40, 3, padding=1).double().forms(x)
    expected = ref.correlate(x.numpy(), conv.weight.detach().numpy(), conv.bias.detach().numpy(), 1, 1, 1, groups=20)
    g = _input((2, 20, 9, 11), torch.float64, "contiguous", 42)
    want = torch.autograd.grad(torch.nn.functional.conv2d(x.requires_grad_(True), conv.weight, conv.bias, 1, 1, 1, 20),
                               (x, conv.weight, conv.bias), g)
    for form in ("kernel", KERNEL_TILES):
        conv.implementation = form
        with torch.no_grad():
            assert _relative(conv(x), expected) < TOLERANCE[torch.float64]
        got = torch.autograd.grad(conv(x), (x, conv.weight, conv.bias), g)
        for a, b in zip(got, want):
            assert _relative(a, b.numpy()) < TOLERANCE[torch.float64]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kernels_are_not_offered_where_they_cannot_run(dtype):
    """Half precision and autocast keep PyTorch's forms (the kernels are fp32 / fp64): no failure to recover from."""
    conv = cz.DepthwiseConv2d(2, 2, 3, padding=1)
    assert "kernel" in conv.forms(torch.rand(1, 2, 5, 5))
    assert "kernel" not in conv.to(dtype).forms(torch.rand(1, 2, 5, 5, dtype=dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "kernel" not in cz.DepthwiseConv2d(2, 2, 3, padding=1).forms(torch.rand(1, 2, 5, 5))
    layer = cz.FlattenedConv2d(2, 2, 3, padding=1)  # a choice measured without autocast is not reused under it
    layer.implementation = "kernel"
    x = torch.rand(1, 2, 6, 6)
    with torch.no_grad():
        expected = layer(x)
        layer.implementation = "auto"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert layer.forward_path(x) == "stages"
            torch.testing.assert_close(layer(x).float(), expected, atol=3e-2, rtol=3e-2)


def test_flop_counting_does_not_count_the_measurement():
    from torch.utils.flop_counter import FlopCounterMode

    conv = cz.DepthwiseConv2d(3, 3, 3, padding=1)
    with FlopCounterMode(display=False) as counter:
        conv(torch.rand(2, 3, 6, 6))
    assert counter.get_total_flops() == 2 * 2 * 3 * 36 * 9  # one conv, no timing runs


def test_a_kernel_that_fails_to_compile_drops_out_with_a_warning(monkeypatch):
    """A compile error in a kernel (forced here): the layer measures its other forms, warns once naming the kernel
    and the cause, and gives exact results."""
    import numba

    from convzoo.kernels import depthwise
    from convzoo.layers import conv as conv_module

    @numba.njit
    def broken(begin, end, *args):  # a typing error on purpose
        return begin + "not a number"

    monkeypatch.setattr(depthwise, "correlate_nchw_same", broken)  # the kernel of a 3×3 with padding 1
    monkeypatch.setattr(conv_module._CHOICE, "failed", {})
    monkeypatch.setattr(conv_module._CHOICE, "cache", {})
    depthwise.planned_depthwise_conv.cache_clear()  # a launch planned by an earlier test holds the real kernel
    layer = cz.DepthwiseConv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 6, 7)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad():
                y = layer(x)
                assert layer.forward_path(x) != "kernel" and "kernel" not in layer.forms(x)
    finally:
        depthwise.planned_depthwise_conv.cache_clear()  # nor may a later one get the broken kernel
    assert "kernel" in conv_module._CHOICE.failed and "TypingError" in conv_module._CHOICE.failed["kernel"]
    texts = [str(w.message) for w in caught if "'kernel'" in str(w.message)]
    assert len(texts) == 1 and "ConvNd" in texts[0] and "TypingError" in texts[0]
    with torch.no_grad():
        torch.testing.assert_close(y, torch.nn.functional.conv2d(x, layer.weight, layer.bias, padding=1, groups=3))


@pytest.mark.slow
def test_bench_register_windows_script_runs_quickly(tmp_path):
    """benchmarks/bench_register_windows.py on tiny shapes: one row per pair, both kernels timed, nothing written.
    Slow: its child process compiles ten kernels unless the run's cache has them (about 20 s cold)."""
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "bench_register_windows.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "beside/window" in line]
    assert [line.split("  ")[0].strip() for line in lines] == [
        "channels_last forward", "channels_last ∂w", "channels_last V∘H", "NCHW forward", "NCHW V∘H"]
    assert all(float(line.rsplit(" ", 1)[1]) > 0 for line in lines)
    assert not any(tmp_path.iterdir())


def test_bench_kernels_script_runs_every_case_quickly(tmp_path):
    """benchmarks/bench_kernels.py on tiny shapes: a row per case and format, ratios from its own columns."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "bench_kernels.py"
    spec = importlib.util.spec_from_file_location("bench_kernels", path)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_kernels"] = bench  # dataclasses look their module up
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    assert {(r.label, r.format) for r in rows} == {(c.label, f) for c in bench.CASES for f in bench.FORMATS}
    for row in rows:
        d, t = row.as_dict(), row.times  # unrounded times: a quick run's bound is ~2 µs, where 0.1 µs rounding is 4 %
        assert d["fwd_vs_bound"] == pytest.approx(t["kernel_fwd"] / t["bound"], abs=0.006)
        assert row.native_forms["fwd"] and d["native_fwd"] > 0
        if row.family in ("depthwise", "global_depthwise"):  # the layer's own time and the forms it chose
            assert d["layer_fwd_vs_native"] == pytest.approx(t["layer_fwd"] / t["native_fwd"], abs=0.006)
            # the fair baseline of a module: the plain conv as nn.Conv2d, the other forms from a minimal nn.Module,
            # compared by the median of the ratios within a round
            assert d["layer_fwd_vs_native_module"] == round(row.paired["layer_fwd_vs_native_module"], 2) > 0
            assert "F.conv2d" not in (d["native_module_fwd_form"], d["native_module_fwd_bwd_form"])  # nn.Conv2d
            assert d["native_module_fwd_bwd_form"] and d["native_module_fwd"] > 0
            assert row.native_forms["layer_fwd"] and row.native_forms["layer_fwd_bwd"]
    assert not any(tmp_path.iterdir())  # --quick writes nothing
    # the median of the per-round ratios, not the ratio of the fastest rounds (here 2.0 against 1.0)
    assert bench.paired_ratio([1.0, 3.0, 4.0], [2.0, 1.0, 2.0]) == 2.0
    runs = [bench.main(["--quick", "--threads", "1", "--cases", "GDC m=1", "--out", str(tmp_path)]) for _ in range(2)]
    ranges = bench.ranges_table(runs)  # what --runs 2 adds: each ratio's lowest–highest over the runs
    assert [row[:3] for row in ranges.rows] == [[r.family, r.label, r.format] for r in runs[0]]
    low, high = (float(v) for v in ranges.rows[0][3].split("–"))
    assert low == min(r[0].as_dict()["fwd_vs_bound"] for r in runs) and high >= low
    table = bench.results_table(rows)  # what a full run writes to kernels-<cpu>.json for the docs
    assert len(table.rows) == len(rows) and len(table.names) == len(table.rows[0])
    assert table.rows[0][3] == rows[0].as_dict()["bound"] and table.rows[0][5] == rows[0].as_dict()["fwd_vs_bound"]


def test_bench_page_faults_script_runs_quickly(tmp_path):
    """benchmarks/bench_page_faults.py on tiny shapes: every form of the layer, back to back and round-robin."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "bench_page_faults.py"
    spec = importlib.util.spec_from_file_location("bench_page_faults", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    table = bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    forms = {row[0] for row in table.rows}
    assert {"native", "kernel"} <= forms and len(table.rows) == 2 * len(forms)
    assert all(row[2] > 0 and row[4] >= 0 for row in table.rows)
    assert not any(tmp_path.iterdir())  # --quick writes nothing
