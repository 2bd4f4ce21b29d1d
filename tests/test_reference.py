"""Tests for the NumPy test oracle ``convzoo.reference``.

The oracle is checked against scipy / numpy, against small hand-computed
examples, and against itself through independent definitions (matrix form,
adjoint identity).  A final section cross-checks it against PyTorch /
torchvision when those are installed (skipped otherwise).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal

from convzoo.oracle import reference as ref

RNG = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def _tup(v: int | tuple[int, ...], nd: int) -> tuple[int, ...]:
    return (v,) * nd if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------------------
# correlate / convolve vs scipy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial, kernel",
    [((9,), (3,)), ((7, 6), (3, 2)), ((5, 4, 6), (2, 3, 3))],
)
@pytest.mark.parametrize("c_in, c_out", [(1, 1), (3, 2)])
@pytest.mark.parametrize("flip", [False, True])
def test_correlate_convolve_vs_scipy(spatial, kernel, c_in, c_out, flip):
    n = 2
    x = rand(n, c_in, *spatial)
    w = rand(c_out, c_in, *kernel)
    b = rand(c_out)
    scipy_fn = scipy.signal.convolve if flip else scipy.signal.correlate
    ours = (ref.convolve if flip else ref.correlate)(x, w, b)
    expected = np.stack(
        [
            np.stack(
                [
                    sum(scipy_fn(x[i, c], w[o, c], mode="valid") for c in range(c_in)) + b[o]
                    for o in range(c_out)
                ]
            )
            for i in range(n)
        ]
    )
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_convolve_is_not_correlate():
    x = rand(1, 1, 6)
    w = np.array([[[1.0, 2.0, 5.0]]])
    assert not np.allclose(ref.convolve(x, w), ref.correlate(x, w))
    np.testing.assert_allclose(ref.convolve(x, w), ref.correlate(x, w[..., ::-1]))


# ---------------------------------------------------------------------------
# correlate: hand-computed examples
# ---------------------------------------------------------------------------


def test_correlate_hand_stride_padding_dilation_bias():
    x = np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    w = np.array([[[1.0, -1.0]]])
    # xpad = [0 1 2 3 4 5 0]; y[p] = xpad[2p] - xpad[2p + 2]
    y = ref.correlate(x, w, bias=np.array([0.5]), stride=2, padding=1, dilation=2)
    np.testing.assert_array_equal(y, [[[-1.5, -1.5, 4.5]]])


def test_correlate_hand_groups():
    x = np.stack([np.arange(1.0, 10.0).reshape(3, 3), np.ones((3, 3))])[None]  # (1, 2, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])  # (2, 1, 2, 2)
    y = ref.correlate(x, w, groups=2)
    np.testing.assert_array_equal(y[0, 0], [[6.0, 8.0], [12.0, 14.0]])
    np.testing.assert_array_equal(y[0, 1], [[4.0, 4.0], [4.0, 4.0]])
    # groups=1 with the same first filter would mix both channels
    y1 = ref.correlate(x, np.repeat(w[:1], 2, axis=1), groups=1)
    np.testing.assert_array_equal(y1[0, 0], [[8.0, 10.0], [14.0, 16.0]])


def test_correlate_hand_asymmetric_padding_and_tuple_stride():
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 2.0]]]])  # (1, 1, 1, 2)
    # pad one row on top, one column on the right; stride 2 over rows
    y = ref.correlate(x, w, stride=(2, 1), padding=((1, 0), (0, 1)))
    np.testing.assert_array_equal(y, [[[[0.0, 0.0, 0.0], [14.0, 17.0, 6.0]]]])


def test_correlate_padding_mode_matches_explicit_pad():
    x = rand(2, 2, 5, 4)
    w = rand(3, 2, 3, 3)
    for mode in ("reflect", "replicate", "circular"):
        direct = ref.correlate(x, w, padding=(1, 2), padding_mode=mode)
        explicit = ref.correlate(ref.pad(x, (1, 2), mode), w)
        np.testing.assert_allclose(direct, explicit)


def test_correlate_validation():
    x = rand(1, 4, 6, 6)
    with pytest.raises(ValueError, match="w.shape"):
        ref.correlate(x, rand(2, 3, 3, 3))
    with pytest.raises(ValueError, match="groups"):
        ref.correlate(x, rand(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match="bias"):
        ref.correlate(x, rand(2, 4, 3, 3), bias=rand(3))
    with pytest.raises(ValueError, match="padding"):
        ref.correlate(x, rand(2, 4, 3, 3), padding=(1, 1, 1))
    with pytest.raises(ValueError, match="stride"):
        ref.correlate(x, rand(2, 4, 3, 3), stride=(1, 2, 3))
    with pytest.raises(ValueError, match="kernel size"):
        ref.correlate(x, rand(2, 4, 7, 3))
    with pytest.raises(ValueError, match="x must"):
        ref.correlate(rand(4, 6), rand(2, 4, 3))


# ---------------------------------------------------------------------------
# padding modes vs numpy.pad
# ---------------------------------------------------------------------------

NP_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.mark.parametrize("mode", list(NP_MODES))
@pytest.mark.parametrize(
    "shape, padding, np_width",
    [
        ((2, 3, 6), 2, [(2, 2)]),
        ((1, 2, 5, 4), (1, 3), [(1, 1), (3, 3)]),
        ((1, 2, 5, 4), ((0, 2), (3, 1)), [(0, 2), (3, 1)]),
        ((1, 1, 4, 3, 5), ((1, 2), 0, (2, 1)), [(1, 2), (0, 0), (2, 1)]),
    ],
)
def test_pad_vs_numpy(mode, shape, padding, np_width):
    x = rand(*shape)
    expected = np.pad(x, [(0, 0), (0, 0)] + np_width, mode=NP_MODES[mode])
    np.testing.assert_array_equal(ref.pad(x, padding, mode), expected)


def test_pad_hand_examples():
    x = np.array([[[1.0, 2.0, 3.0]]])
    np.testing.assert_array_equal(ref.pad(x, 2, "reflect"), [[[3, 2, 1, 2, 3, 2, 1]]])
    np.testing.assert_array_equal(ref.pad(x, 2, "replicate"), [[[1, 1, 1, 2, 3, 3, 3]]])
    np.testing.assert_array_equal(ref.pad(x, 2, "circular"), [[[2, 3, 1, 2, 3, 1, 2]]])
    np.testing.assert_array_equal(ref.pad(x, ((1, 0),), "zeros"), [[[0, 1, 2, 3]]])


def test_pad_validation():
    with pytest.raises(ValueError, match="mode"):
        ref.pad(rand(1, 1, 4), 1, "mirror")
    with pytest.raises(ValueError, match="padding"):
        ref.pad(rand(1, 1, 4), 4, "reflect")
    with pytest.raises(ValueError, match="padding"):
        ref.pad(rand(1, 1, 4), -1)


# ---------------------------------------------------------------------------
# conv_matrix, transposed convolution
# ---------------------------------------------------------------------------


def test_conv_matrix_hand():
    c = ref.conv_matrix((3,), np.array([1.0, 2.0]), padding=1)
    np.testing.assert_array_equal(c, [[2, 0, 0], [1, 2, 0], [0, 1, 2], [0, 0, 1]])


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dilation",
    [
        ((9,), (3,), 2, 1, 1),
        ((10,), (2,), 3, ((2, 0),), 2),
        ((6, 5), (3, 2), (2, 1), (1, (0, 2)), (1, 2)),
        ((4, 3, 5), (2, 2, 3), 1, 1, (2, 1, 1)),
    ],
)
def test_conv_matrix_equals_correlate(size, kernel, stride, padding, dilation):
    x = rand(*size)
    k = rand(*kernel)
    c = ref.conv_matrix(size, k, stride, padding, dilation)
    y = ref.correlate(x[None, None], k[None, None], stride=stride, padding=padding, dilation=dilation)[0, 0]
    assert c.shape == (y.size, x.size)
    np.testing.assert_allclose((c @ x.ravel()).reshape(y.shape), y, rtol=1e-12, atol=1e-12)


def test_transposed_conv_hand():
    x = np.array([[[1.0, 2.0]]])
    w = np.array([[[1.0, 10.0, 100.0]]])
    np.testing.assert_array_equal(ref.transposed_conv(x, w, stride=2), [[[1, 10, 102, 20, 200]]])
    np.testing.assert_array_equal(ref.transposed_conv(x, w, stride=2, padding=1), [[[10, 102, 20]]])
    np.testing.assert_array_equal(
        ref.transposed_conv(x, w, stride=2, padding=1, output_padding=1), [[[10, 102, 20, 200]]]
    )
    np.testing.assert_array_equal(
        ref.transposed_conv(x, w, bias=np.array([1.0]), dilation=2), [[[2, 3, 11, 21, 101, 201]]]
    )


TRANSPOSED_CASES_1D = [
    # kernel, stride, padding, output_padding, dilation
    (3, 1, 0, 0, 1),
    (3, 2, 1, 1, 1),
    (4, 3, 2, 2, 1),
    (3, 2, 0, 0, 2),
    (2, 1, 1, 1, 2),  # output_padding < dilation but not < stride
    (5, 2, 5, 0, 1),  # padding larger than dilation*(K-1): crop
    (1, 2, 0, 1, 1),
]


@pytest.mark.parametrize("k, s, p, op, d", TRANSPOSED_CASES_1D)
def test_transposed_conv_by_matrix_1d(k, s, p, op, d):
    x = rand(2, 3, 5)
    w = rand(3, 2, k)
    b = rand(2)
    a = ref.transposed_conv(x, w, b, stride=s, padding=p, output_padding=op, dilation=d)
    m = ref.transposed_conv_by_matrix(x, w, b, stride=s, padding=p, output_padding=op, dilation=d)
    assert a.shape == (2, 2, (5 - 1) * s - 2 * p + d * (k - 1) + op + 1)
    np.testing.assert_allclose(a, m, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "k, s, p, op, d",
    [
        ((3, 3), 1, 0, 0, 1),
        ((3, 2), (2, 3), (1, 0), (1, 2), 1),
        ((2, 3), 2, (0, 2), 0, (2, 1)),
        ((4, 4), 2, 1, 0, 1),
    ],
)
def test_transposed_conv_by_matrix_2d(k, s, p, op, d):
    x = rand(1, 2, 3, 4)
    w = rand(2, 3, *k)
    a = ref.transposed_conv(x, w, stride=s, padding=p, output_padding=op, dilation=d)
    m = ref.transposed_conv_by_matrix(x, w, stride=s, padding=p, output_padding=op, dilation=d)
    np.testing.assert_allclose(a, m, rtol=1e-12, atol=1e-12)


def test_transposed_conv_groups_is_per_group():
    x = rand(2, 4, 4, 3)
    w = rand(4, 3, 2, 3)  # groups=2: C_out = 6
    y = ref.transposed_conv(x, w, stride=2, padding=1, groups=2)
    for g in range(2):
        part = ref.transposed_conv_by_matrix(
            x[:, 2 * g : 2 * g + 2], w[2 * g : 2 * g + 2], stride=2, padding=1
        )
        np.testing.assert_allclose(y[:, 3 * g : 3 * g + 3], part, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "spatial, kernel, s, p, d, groups",
    [
        ((9,), (3,), 2, 1, 1, 1),
        ((10,), (4,), 3, 2, 1, 2),
        ((8,), (3,), 1, 0, 3, 1),
        ((7, 6), (3, 2), (2, 3), (1, 0), (1, 2), 2),
        ((4, 5, 3), (2, 3, 1), 2, (1, 1, 0), 1, 1),
    ],
)
def test_adjoint_identity(spatial, kernel, s, p, d, groups):
    """<correlate(x, w), r> == <x, transposed_conv(r, w)> with the same weight array."""
    nd = len(spatial)
    c_in, c_out = 2 * groups, 3 * groups
    x = rand(2, c_in, *spatial)
    w = rand(c_out, c_in // groups, *kernel)  # conv layout == ConvTranspose layout of the adjoint
    y = ref.correlate(x, w, stride=s, padding=p, dilation=d, groups=groups)
    r = rand(*y.shape)
    st, pt, dt = (_tup(v, nd) for v in (s, p, d))
    op = tuple((spatial[i] + 2 * pt[i] - dt[i] * (kernel[i] - 1) - 1) % st[i] for i in range(nd))
    xt = ref.transposed_conv(r, w, stride=s, padding=p, output_padding=op, dilation=d, groups=groups)
    assert xt.shape == x.shape
    assert math.isclose(np.sum(y * r), np.sum(x * xt), rel_tol=1e-10, abs_tol=1e-10)


def test_transposed_conv_validation():
    with pytest.raises(ValueError, match="output_padding"):
        ref.transposed_conv(rand(1, 1, 4), rand(1, 1, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding"):
        ref.transposed_conv(rand(1, 1, 4), rand(1, 1, 3), padding=((1, 0),))
    with pytest.raises(ValueError, match="w.shape"):
        ref.transposed_conv(rand(1, 2, 4), rand(3, 1, 3))


# ---------------------------------------------------------------------------
# upsample, channel shuffle
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, scale", [((2, 3, 4), 3), ((1, 2, 3, 4), (2, 3)), ((1, 1, 2, 3, 2), (2, 1, 3))]
)
def test_upsample_nearest_vs_repeat(shape, scale):
    x = rand(*shape)
    scales = _tup(scale, len(shape) - 2)
    expected = x
    for d, s in enumerate(scales):
        expected = np.repeat(expected, s, axis=2 + d)
    np.testing.assert_array_equal(ref.upsample(x, scale, "nearest"), expected)


def test_upsample_linear_hand():
    x = np.array([[[0.0, 1.0]]])
    np.testing.assert_allclose(ref.upsample(x, 2, "linear"), [[[0.0, 0.25, 0.75, 1.0]]])
    # scale 3: src = (i + 0.5)/3 - 0.5 = -1/3, 0, 1/3, 2/3, 1, 4/3
    x = np.array([[[0.0, 3.0]]])
    np.testing.assert_allclose(ref.upsample(x, 3, "linear"), [[[0.0, 0.0, 1.0, 2.0, 3.0, 3.0]]])


def test_upsample_bilinear_is_separable():
    a, b = rand(3), rand(4)
    x = np.outer(a, b)[None, None]
    ua = ref.upsample(a[None, None], 2, "linear")[0, 0]
    ub = ref.upsample(b[None, None], 3, "linear")[0, 0]
    np.testing.assert_allclose(ref.upsample(x, (2, 3), "bilinear")[0, 0], np.outer(ua, ub))
    c = rand(2)
    x3 = np.einsum("i,j,k->ijk", a, b, c)[None, None]
    uc = ref.upsample(c[None, None], 2, "linear")[0, 0]
    np.testing.assert_allclose(
        ref.upsample(x3, (2, 3, 2), "trilinear")[0, 0], np.einsum("i,j,k->ijk", ua, ub, uc)
    )


def test_upsample_validation():
    with pytest.raises(ValueError, match="mode"):
        ref.upsample(rand(1, 1, 3, 3), 2, "linear")
    with pytest.raises(ValueError, match="scale_factor"):
        ref.upsample(rand(1, 1, 3, 3), (2, 2, 2))


@pytest.mark.parametrize("c, groups", [(6, 2), (6, 3), (12, 4), (5, 1), (4, 4)])
def test_channel_shuffle_vs_reshape(c, groups):
    x = rand(2, c, 3, 2)
    expected = x.reshape(2, groups, c // groups, 3, 2).transpose(0, 2, 1, 3, 4).reshape(x.shape)
    np.testing.assert_array_equal(ref.channel_shuffle(x, groups), expected)


def test_channel_shuffle_hand():
    x = np.arange(6.0).reshape(1, 6, 1)
    np.testing.assert_array_equal(ref.channel_shuffle(x, 2)[0, :, 0], [0, 3, 1, 4, 2, 5])
    with pytest.raises(ValueError, match="groups"):
        ref.channel_shuffle(x, 4)


# ---------------------------------------------------------------------------
# HetConv
# ---------------------------------------------------------------------------


def test_hetconv_kernel_structure():
    c_out, c_in, p, k = 7, 8, 4, 3
    w_kxk = RNG.uniform(1.0, 2.0, (c_out, c_in // p, k, k))
    w_1x1 = RNG.uniform(1.0, 2.0, (c_out, c_in - c_in // p))
    kern = ref.hetconv_kernel(w_kxk, w_1x1, p)
    assert kern.shape == (c_out, c_in, k, k)
    off_centre = kern.copy()
    off_centre[:, :, k // 2, k // 2] = 0.0
    full = np.any(off_centre != 0, axis=(2, 3))
    centre_only = ~full & (kern[:, :, k // 2, k // 2] != 0)
    assert full.sum() == c_out * c_in // p
    assert centre_only.sum() == c_out * (c_in - c_in // p)
    assert np.all(full.sum(axis=1) == c_in // p)
    # filter j = 1: full kernels on channels 1 and 5, 1x1 taps on channels 0, 2, 3, 4, 6, 7 in order
    np.testing.assert_array_equal(kern[1, 1], w_kxk[1, 0])
    np.testing.assert_array_equal(kern[1, 5], w_kxk[1, 1])
    np.testing.assert_array_equal(kern[1, [0, 2, 3, 4, 6, 7], 1, 1], w_1x1[1])
    # filter j = 6 (j >= p): (c - 6) mod 4 == 0 -> channels 2 and 6
    np.testing.assert_array_equal(np.flatnonzero(full[6]), [2, 6])


def test_hetconv_kernel_p1_is_dense():
    w_kxk = rand(3, 5, 3, 3)
    kern = ref.hetconv_kernel(w_kxk, np.zeros((3, 0)), 1)
    np.testing.assert_array_equal(kern, w_kxk)


def test_hetconv_kernel_validation():
    with pytest.raises(ValueError, match="w_1x1"):
        ref.hetconv_kernel(rand(2, 2, 3, 3), rand(2, 5), 2)
    with pytest.raises(ValueError, match="w_kxk"):
        ref.hetconv_kernel(rand(2, 2, 2, 2), rand(2, 2), 2)


# ---------------------------------------------------------------------------
# dynamic convolution
# ---------------------------------------------------------------------------


def test_dynamic_conv_single_kernel_is_correlate():
    x = rand(3, 4, 6, 5)
    weights = rand(1, 6, 2, 3, 3)
    biases = rand(1, 6)
    fc = dict(fc1_weight=rand(3, 4), fc1_bias=rand(3), fc2_weight=rand(1, 3), fc2_bias=rand(1))
    y = ref.dynamic_conv(x, weights, biases, temperature=2.0, stride=2, padding=1, groups=2, **fc)
    expected = ref.correlate(x, weights[0], biases[0], stride=2, padding=1, groups=2)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dynamic_conv_known_attention(temperature):
    x = rand(2, 3, 5)
    weights = rand(2, 4, 3, 3)
    biases = rand(2, 4)
    fc = dict(
        fc1_weight=rand(2, 3),
        fc1_bias=rand(2),
        fc2_weight=np.zeros((2, 2)),
        fc2_bias=np.array([temperature * math.log(3.0), 0.0]),  # softmax -> [0.75, 0.25]
    )
    a = ref.dynamic_attention(x, temperature=temperature, **fc)
    np.testing.assert_allclose(a, [[0.75, 0.25]] * 2)
    y = ref.dynamic_conv(x, weights, biases, temperature=temperature, padding=1, **fc)
    expected = ref.correlate(
        x, 0.75 * weights[0] + 0.25 * weights[1], 0.75 * biases[0] + 0.25 * biases[1], padding=1
    )
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_dynamic_attention_per_sample():
    x = np.zeros((2, 1, 3))
    x[1] = 1.0  # means: g = 0 for sample 0, g = 1 for sample 1
    fc = dict(
        fc1_weight=np.array([[1.0]]),
        fc1_bias=np.array([0.0]),
        fc2_weight=np.array([[1.0], [-1.0]]),
        fc2_bias=np.zeros(2),
    )
    a = ref.dynamic_attention(x, temperature=0.5, **fc)
    # sample 0: logits [0, 0]; sample 1: logits [2, -2]
    np.testing.assert_allclose(a[0], [0.5, 0.5])
    np.testing.assert_allclose(a[1], [1 / (1 + math.exp(-4)), 1 / (1 + math.exp(4))])
    # relu: negative pre-activation is cut
    fc["fc1_weight"] = np.array([[-1.0]])
    np.testing.assert_allclose(ref.dynamic_attention(x, temperature=0.5, **fc), [[0.5, 0.5]] * 2)


# ---------------------------------------------------------------------------
# bilinear sampling, deformable convolution
# ---------------------------------------------------------------------------


def test_bilinear_sample():
    img = rand(2, 3, 4)
    for y in range(3):
        for x in range(4):
            np.testing.assert_array_equal(ref.bilinear_sample(img, y, x), img[:, y, x])
    np.testing.assert_allclose(ref.bilinear_sample(img, 0.5, 1.5), img[:, 0:2, 1:3].mean(axis=(1, 2)))
    np.testing.assert_allclose(ref.bilinear_sample(img, 2.0, 2.5), img[:, 2, 2:4].mean(axis=1))
    np.testing.assert_allclose(ref.bilinear_sample(img, 1.25, 0.0), 0.75 * img[:, 1, 0] + 0.25 * img[:, 2, 0])
    for y, x in [(-1.0, 1.0), (3.0, 1.0), (1.0, -1.0), (1.0, 4.0), (-3.0, 7.0)]:
        np.testing.assert_array_equal(ref.bilinear_sample(img, y, x), np.zeros(2))
    # inside the (-1, H) band but beyond the edge: outside neighbours count as 0
    np.testing.assert_allclose(ref.bilinear_sample(img, -0.5, 1.0), 0.5 * img[:, 0, 1])
    np.testing.assert_allclose(ref.bilinear_sample(img, 2.0, 3.25), 0.75 * img[:, 2, 3])


def _deform_setup(
    n=2, c_in=4, c_out=6, h=6, w=7, k=(3, 2), groups=2, offset_groups=2, stride=1, padding=0, dilation=1
):
    x = rand(n, c_in, h, w)
    weight = rand(c_out, c_in // groups, *k)
    st, pt, dt = (_tup(v, 2) for v in (stride, padding, dilation))
    ho = (h + 2 * pt[0] - dt[0] * (k[0] - 1) - 1) // st[0] + 1
    wo = (w + 2 * pt[1] - dt[1] * (k[1] - 1) - 1) // st[1] + 1
    offset = np.zeros((n, 2 * offset_groups * k[0] * k[1], ho, wo))
    return x, weight, offset


@pytest.mark.parametrize(
    "stride, padding, dilation, groups, offset_groups",
    [(1, 0, 1, 1, 1), (2, 1, (1, 2), 2, 2), ((1, 2), (2, 0), 1, 1, 4)],
)
def test_deform_zero_offset_is_correlate(stride, padding, dilation, groups, offset_groups):
    x, weight, offset = _deform_setup(
        groups=groups, offset_groups=offset_groups, stride=stride, padding=padding, dilation=dilation
    )
    b = rand(weight.shape[0])
    y = ref.deform_conv2d(x, weight, offset, bias=b, stride=stride, padding=padding, dilation=dilation)
    expected = ref.correlate(x, weight, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    mask = np.full((offset.shape[0], offset.shape[1] // 2) + offset.shape[2:], 0.5)
    y_half = ref.deform_conv2d(x, weight, offset, mask, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(y_half, 0.5 * (expected - b[None, :, None, None]), rtol=1e-12, atol=1e-12)


def shift(x: np.ndarray, axis: int) -> np.ndarray:
    """x shifted by one towards lower indices along ``axis`` (out[i] = x[i + 1]), zero-filled."""
    out = np.zeros_like(x)
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    src[axis], dst[axis] = slice(1, None), slice(None, -1)
    out[tuple(dst)] = x[tuple(src)]
    return out


@pytest.mark.parametrize("axis", [2, 3])  # 2: dy, 3: dx
@pytest.mark.parametrize("stride", [1, 2])
def test_deform_integer_offset_is_shift(axis, stride):
    x, weight, offset = _deform_setup(stride=stride)
    offset[:, (axis - 2) :: 2] = 1.0  # dy channels are even, dx channels odd
    y = ref.deform_conv2d(x, weight, offset, stride=stride)
    expected = ref.correlate(shift(x, axis), weight, stride=stride, groups=2)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    # half a pixel: the average of unshifted and shifted
    offset[:, (axis - 2) :: 2] = 0.5
    y = ref.deform_conv2d(x, weight, offset, stride=stride)
    expected = 0.5 * (expected + ref.correlate(x, weight, stride=stride, groups=2))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_deform_offset_groups_select_channels():
    # weight groups 1, offset groups 2: only channels 2, 3 (offset group 1) are shifted in x
    x, weight, offset = _deform_setup(groups=1, offset_groups=2, k=(2, 3))
    taps = 6
    offset[:, 2 * taps + 1 :: 2] = 1.0
    y = ref.deform_conv2d(x, weight, offset)
    xs = x.copy()
    xs[:, 2:] = shift(x[:, 2:], 3)
    np.testing.assert_allclose(y, ref.correlate(xs, weight), rtol=1e-12, atol=1e-12)


def test_deform_mask_tap_order():
    # a mask that keeps only tap (i, j) = (0, 1) of a 2x3 kernel (t = i*kw + j = 1)
    x, weight, offset = _deform_setup(groups=1, offset_groups=1, k=(2, 3))
    mask = np.zeros((x.shape[0], 6) + offset.shape[2:])
    mask[:, 1] = 1.0
    only = np.zeros_like(weight)
    only[:, :, 0, 1] = weight[:, :, 0, 1]
    np.testing.assert_allclose(
        ref.deform_conv2d(x, weight, offset, mask), ref.correlate(x, only), rtol=1e-12, atol=1e-12
    )


def test_deform_validation():
    x, weight, offset = _deform_setup(groups=1, offset_groups=1)
    with pytest.raises(ValueError, match="offset"):
        ref.deform_conv2d(x, weight, offset[:, :, :-1])
    with pytest.raises(ValueError, match="offset"):
        ref.deform_conv2d(x, weight, offset[:, :-1])
    with pytest.raises(ValueError, match="mask"):
        ref.deform_conv2d(x, weight, offset, np.ones((2, 5) + offset.shape[2:]))
    with pytest.raises(ValueError, match="offset_groups"):
        ref.deform_conv2d(x, weight, np.zeros((2, 3 * 12) + offset.shape[2:]))


# ---------------------------------------------------------------------------
# MixConv
# ---------------------------------------------------------------------------


def _same(k: int, d: int) -> tuple[int, int]:
    total = d * (k - 1)
    return (total // 2, total - total // 2)


@pytest.mark.parametrize("k, dilation, stride", [(3, 1, 1), (4, 1, 1), (3, 2, 1), (4, 3, 2), (1, 1, 1)])
def test_mixconv_single_group_is_same_correlate(k, dilation, stride):
    x = rand(2, 3, 7, 6)
    w = rand(4, 3, k, k)
    b = rand(4)
    y = ref.mixconv(x, [w], [3], [b], stride=stride, dilation=dilation)
    expected = ref.correlate(x, w, b, stride=stride, padding=(_same(k, dilation),) * 2, dilation=dilation)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    if stride == 1:
        assert y.shape[2:] == x.shape[2:]


def test_mixconv_hand_even_kernel_padding():
    # k=2 'same': lo=0, hi=1 -> y[i] = x[i] + 10*x[i+1] (zero past the end)
    x = np.array([[[1.0, 2.0, 3.0]]])
    np.testing.assert_array_equal(ref.mixconv(x, [np.array([[[1.0, 10.0]]])], [1]), [[[21.0, 32.0, 3.0]]])


def test_mixconv_mixed_groups():
    w_dw = rand(2, 1, 3, 3)  # depthwise on channels 0, 1
    w_dense = rand(4, 3, 5, 5)  # dense on channels 2, 3, 4
    w_even = rand(2, 1, 2, 2)  # grouped (g=2) on channels 5, 6
    x = rand(2, 7, 6, 6)
    b_dense = rand(4)
    y = ref.mixconv(x, [w_dw, w_dense, w_even], [2, 3, 2], [None, b_dense, None])
    expected = np.concatenate(
        [
            ref.correlate(x[:, :2], w_dw, padding=1, groups=2),
            ref.correlate(x[:, 2:5], w_dense, b_dense, padding=2),
            ref.correlate(x[:, 5:], w_even, padding=((0, 1), (0, 1)), groups=2),
        ],
        axis=1,
    )
    assert y.shape == (2, 8, 6, 6)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_mixconv_validation():
    x = rand(1, 4, 5, 5)
    with pytest.raises(ValueError, match="in_splits"):
        ref.mixconv(x, [rand(2, 1, 3, 3), rand(2, 1, 3, 3)], [2, 1])
    with pytest.raises(ValueError, match="in_splits"):
        ref.mixconv(x, [rand(2, 1, 3, 3)], [2, 2])
    with pytest.raises(ValueError, match="weights"):
        ref.mixconv(x, [rand(2, 3, 3, 3), rand(2, 1, 3, 3)], [2, 2])


def test_reference_does_not_import_torch_or_scipy():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(ref))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"torch", "scipy", "torchvision"}


# ---------------------------------------------------------------------------
# cross-checks against PyTorch / torchvision (skipped when not installed)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _t(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize(
    "spatial, kernel, stride, padding, dilation, groups, mode",
    [
        ((9,), (3,), 2, 1, 1, 1, "zeros"),
        ((8, 7), (3, 2), (2, 1), (1, 2), (1, 2), 2, "reflect"),
        ((8, 7), (3, 3), 1, 2, 1, 1, "circular"),
        ((5, 4, 6), (2, 3, 3), (1, 2, 1), (0, 1, 2), 1, 2, "replicate"),
    ],
)
def test_correlate_vs_torch(torch, spatial, kernel, stride, padding, dilation, groups, mode):
    import torch.nn.functional as F

    nd = len(spatial)
    x = rand(2, 2 * groups, *spatial)
    w = rand(3 * groups, 2, *kernel)
    b = rand(3 * groups)
    conv = [F.conv1d, F.conv2d, F.conv3d][nd - 1]
    pt = _tup(padding, nd)
    if mode == "zeros":
        expected = conv(_t(torch, x), _t(torch, w), _t(torch, b), stride, padding, dilation, groups)
    else:
        torch_pad = [p for d in reversed(range(nd)) for p in (pt[d], pt[d])]
        xp = F.pad(_t(torch, x), torch_pad, mode=mode)
        expected = conv(xp, _t(torch, w), _t(torch, b), stride, 0, dilation, groups)
    y = ref.correlate(x, w, b, stride, padding, dilation, groups, padding_mode=mode)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "spatial, kernel, stride, padding, output_padding, dilation, groups",
    [
        ((5,), (3,), 2, 1, 1, 1, 1),
        ((5,), (4,), 3, 4, 2, 2, 2),
        ((4, 3), (3, 2), (2, 3), (1, 0), (1, 2), (1, 2), 2),
        ((3, 2, 3), (2, 2, 3), 2, 1, 0, 1, 1),
    ],
)
def test_transposed_conv_vs_torch(torch, spatial, kernel, stride, padding, output_padding, dilation, groups):
    import torch.nn.functional as F

    nd = len(spatial)
    x = rand(2, 2 * groups, *spatial)
    w = rand(2 * groups, 3, *kernel)
    b = rand(3 * groups)
    fn = [F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d][nd - 1]
    expected = fn(_t(torch, x), _t(torch, w), _t(torch, b), stride, padding, output_padding, groups, dilation)
    y = ref.transposed_conv(x, w, b, stride, padding, output_padding, dilation, groups)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "shape, scale, mode",
    [
        ((2, 2, 5), 3, "nearest"),
        ((2, 2, 5), 3, "linear"),
        ((1, 2, 4, 3), (2, 3), "bilinear"),
        ((1, 2, 4, 3), (3, 2), "nearest"),
        ((1, 1, 3, 2, 4), (2, 3, 2), "trilinear"),
    ],
)
def test_upsample_vs_torch(torch, shape, scale, mode):
    import torch.nn.functional as F

    x = rand(*shape)
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    expected = F.interpolate(_t(torch, x), scale_factor=scale, mode=mode, **kwargs)
    np.testing.assert_allclose(ref.upsample(x, scale, mode), expected.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("use_mask", [False, True])
def test_deform_conv2d_vs_torchvision(torch, use_mask):
    ops = pytest.importorskip("torchvision.ops")
    stride, padding, dilation = (2, 1), (1, 2), (1, 2)
    x, weight, offset = _deform_setup(
        groups=2, offset_groups=2, stride=stride, padding=padding, dilation=dilation
    )
    offset = RNG.uniform(-2.5, 2.5, offset.shape)  # includes samples far outside the image
    mask = RNG.uniform(0, 1, (offset.shape[0], offset.shape[1] // 2) + offset.shape[2:]) if use_mask else None
    b = rand(weight.shape[0])
    expected = ops.deform_conv2d(
        _t(torch, x),
        _t(torch, offset),
        _t(torch, weight),
        _t(torch, b),
        stride=stride,
        padding=padding,
        dilation=dilation,
        mask=None if mask is None else _t(torch, mask),
    )
    y = ref.deform_conv2d(x, weight, offset, mask, b, stride, padding, dilation)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-9, atol=1e-9)


def test_channel_shuffle_vs_torch(torch):
    x = rand(2, 6, 3)
    expected = torch.nn.functional.channel_shuffle(_t(torch, x), 3)
    np.testing.assert_array_equal(ref.channel_shuffle(x, 3), expected.numpy())
