"""Tap-resolved connectivity and the conv matrix, checked against independent definitions: hand-derived tap sets,
the article's numbers, torch.autograd.functional.jacobian and the NumPy oracle's conv_matrix."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import convzoo as cz
from convzoo.oracle import reference
from convzoo.viz import conv_matrix, tap_map, taps

ARTICLE_X = [[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]]
ARTICLE_K = [[0, 1, 2], [2, 2, 0], [0, 1, 2]]
ARTICLE_Y = [[12, 12, 17], [10, 17, 19], [9, 6, 14]]


def hand_taps(size, k, s, p, d, transposed=False):
    """index[o, i] (2-D, one channel) from the definition: a conv's output o reads input i = o·s − p + t·d through
    tap t (per dim); a transposed conv's input i writes output o = i·s − p + t·d."""
    out = ((size - 1) * s - 2 * p + d * (k - 1) + 1) if transposed else (size + 2 * p - d * (k - 1) - 1) // s + 1
    index = -np.ones((out, out, size, size), dtype=np.int64)
    for a, b in itertools.product(range(out), repeat=2):
        for ty, tx in itertools.product(range(k), repeat=2):
            if transposed:
                for i, j in itertools.product(range(size), repeat=2):
                    if (a, b) == (i * s - p + ty * d, j * s - p + tx * d):
                        index[a, b, i, j] = ty * k + tx
            else:
                i, j = a * s - p + ty * d, b * s - p + tx * d
                if 0 <= i < size and 0 <= j < size:
                    index[a, b, i, j] = ty * k + tx
    return torch.from_numpy(index)


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 0, 1), (3, 2, 1, 1), (3, 1, 2, 2), (2, 2, 0, 1), (4, 1, 1, 1)])
def test_taps_of_a_conv_match_the_definition(k, s, p, d):
    layer = cz.Conv2d(2, 3, k, stride=s, padding=p, dilation=d)
    t = taps(layer, (2, 7, 7))
    expected = hand_taps(7, k, s, p, d)
    for j, c in itertools.product(range(3), range(2)):
        assert torch.equal(t[j, :, :, c], expected)


@pytest.mark.parametrize("k,s,p", [(3, 1, 0), (3, 2, 0), (3, 2, 1), (4, 2, 1)])
def test_taps_of_a_transposed_conv_match_the_definition(k, s, p):
    layer = cz.TransposedConv2d(1, 1, k, stride=s, padding=p)
    assert torch.equal(taps(layer, (1, 3, 3))[0, :, :, 0], hand_taps(3, k, s, p, 1, transposed=True))


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_convolution_taps_mirror_correlation_taps(dim):
    shape = (2, *(5,) * dim)
    corr = taps(cz.build("standard", 2, 2, 3, dim), shape)
    conv = taps(cz.build("convolution", 2, 2, 3, dim), shape)
    n_taps = 3**dim
    assert torch.equal(corr >= 0, conv >= 0)
    assert torch.equal(conv[conv >= 0], n_taps - 1 - corr[corr >= 0])  # row-major index of the 180° rotation


def test_grouped_taps_only_within_groups():
    t = taps(cz.Conv2d(4, 4, 3, padding=1, groups=2), (4, 5, 5))
    linked = (t >= 0).any(-1).any(-1).any(1).any(1)  # (C_out, C_in)
    assert torch.equal(linked, torch.tensor([[1, 1, 0, 0]] * 2 + [[0, 0, 1, 1]] * 2, dtype=torch.bool))


def test_deformable_fractional_reads_carry_bilinear_weights():
    """Offsets (dy, dx) = (0.25, 0.5) on every tap (the offset conv's bias, zero weights): tap t of output o
    reads the four neighbours of o + t − 1 + (0.25, 0.5) with the bilinear weights; v2 scales them by sigmoid(m)."""
    for modulated in (False, True):
        layer = cz.DeformConv2d(1, 1, 3, padding=1, modulated=modulated)
        with torch.no_grad():
            layer.offset_conv.weight.zero_()
            layer.offset_conv.bias.zero_()
            layer.offset_conv.bias[:18].copy_(torch.tensor([0.25, 0.5] * 9))
            if modulated:
                layer.offset_conv.bias[18:].fill_(1.0)
        m = tap_map(layer, (1, 6, 6))
        scale = torch.sigmoid(torch.tensor(1.0)).item() if modulated else 1.0
        a, b = 2, 2
        for ty, tx in itertools.product(range(3), repeat=2):
            y, x = a + ty - 1 + 0.25, b + tx - 1 + 0.5
            expected = torch.zeros(6, 6)
            for (i, wy), (j, wx) in itertools.product(((int(y), 0.75), (int(y) + 1, 0.25)),
                                                      ((int(x), 0.5), (int(x) + 1, 0.5))):
                expected[i, j] += wy * wx * scale
            assert torch.allclose(m.coefficients[ty * 3 + tx, 0, a, b, 0], expected, atol=1e-6)


class UpsampleThenConv(torch.nn.Module):
    """A user's own resize-conv (not a convzoo layer): nearest ×2, then a 3×3 'same' conv with its own weight."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(1, 1, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(torch.nn.functional.interpolate(x, scale_factor=2), self.weight, padding=1)


def test_a_users_resize_conv_reads_a_source_cell_through_several_taps():
    m = tap_map(UpsampleThenConv(), (1, 3, 3))
    # Output (2, 2) of the ×2 nearest upsampling reads upsampled rows/cols 1..3 = source rows/cols 0, 1, 1.
    assert m.count[0, 2, 2, 0].tolist() == [[1, 2, 0], [2, 4, 0], [0, 0, 0]]


def test_taps_name_the_missing_kernel():
    with pytest.raises(ValueError, match="no single kernel parameter"):
        taps(torch.nn.Sequential(cz.Conv2d(1, 1, 3), cz.Conv2d(1, 1, 3)), (1, 6, 6))


# --- the conv matrix ------------------------------------------------------------------------------------------


def test_article_matrix_is_4x16_and_equals_the_oracle():
    layer = cz.Conv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(ARTICLE_K, dtype=torch.float32)[None, None])
    c = conv_matrix(layer, (1, 4, 4))
    assert c.shape == (4, 16)
    assert np.array_equal(c.numpy(), reference.conv_matrix((4, 4), np.array(ARTICLE_K)))


def test_article_single_channel_example_through_the_matrix():
    layer = cz.Conv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(ARTICLE_K, dtype=torch.float32)[None, None])
    c = conv_matrix(layer, (1, 5, 5))
    y = c @ torch.tensor(ARTICLE_X, dtype=torch.float64).reshape(-1)
    assert y.reshape(3, 3).tolist() == ARTICLE_Y


# Families whose output is not linear in the input (input-dependent kernels, ReLU branches); deformable ones are
# linear at initialisation (zero offsets), where this test builds them.
NONLINEAR = ("dynamic", "condconv", "odconv", "selective_kernel", "involution")
LINEAR = [n for n in (f.name for f in cz.families()) if n not in NONLINEAR]


@pytest.mark.parametrize("name", LINEAR)
def test_matrix_is_the_jacobian_and_maps_x_to_y(name):
    fam = cz.family(name)
    dim = 2 if 2 in fam.dims else fam.dims[0]
    shape = (4, *(5,) * dim)
    layer = cz.build(name, 4, 4, 3 if getattr(fam, "window", True) else None, dim).double().eval()
    with torch.no_grad():
        layer(torch.zeros(1, *shape, dtype=torch.float64))  # materialise lazy parameters
    c = conv_matrix(layer, shape)
    x = torch.randn(1, *shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer(v), x).reshape(c.shape)
    assert torch.allclose(c, jac, atol=1e-12)
    with torch.no_grad():
        y, y0 = layer(x), layer(torch.zeros_like(x))
    assert torch.allclose(c @ x.reshape(-1) + y0.reshape(-1), y.reshape(-1), atol=1e-10)


def test_dynamic_conv_has_no_single_matrix():
    layer = cz.build("dynamic", 2, 2, 3, temperature=1.0)
    with torch.no_grad():  # an attention that depends on the input (a trained one)
        for stage in layer.stages():
            if stage.side and stage.module is not None:
                for p in stage.module.parameters():
                    p.normal_(0, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="not linear in its input"):
        conv_matrix(layer, (2, 5, 5))


@pytest.mark.parametrize("k,s,p,size,c_in,c_out", [(3, 1, 0, 4, 1, 1), (3, 2, 1, 5, 1, 1), (4, 2, 1, 6, 2, 3),
                                                  (3, 2, 0, 7, 3, 2)])
def test_transposed_matrix_is_the_transpose_of_the_conv_matrix(k, s, p, size, c_in, c_out):
    conv = cz.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=False)
    out = (size + 2 * p - k) // s + 1
    extra = size - ((out - 1) * s - 2 * p + k)  # output_padding that gives back the conv's input size
    transposed = cz.TransposedConv2d(c_out, c_in, k, stride=s, padding=p, output_padding=extra, bias=False)
    with torch.no_grad():
        transposed.weight.copy_(conv.weight)
    c = conv_matrix(conv, (c_in, size, size))
    ct = conv_matrix(transposed, (c_out, out, out))
    assert ct.shape == c.T.shape
    assert torch.allclose(ct, c.T, atol=1e-12)


@pytest.mark.parametrize("a,b,c,kernel,size,out", [
    ((1,), (1,), (0,), (3,), (5,), (3,)), ((2, 1), (1, 2), (-1, -2), (3, 3), (7, 6), (4, 4)),
    ((1, 1), (-1, 1), (2, 0), (3, 2), (4, 5), (4, 4)), ((3,), (2,), (-4,), (4,), (9,), (5,)),
    ((1, 2, 1), (1, 1, -2), (-1, 0, 3), (2, 3, 3), (3, 6, 6), (4, 2, 3)), ((1,), (1,), (0,), (3,), (5,), (0,))])
def test_window_padding_is_the_farthest_any_read_reaches_past_the_input(a, b, c, kernel, size, out):
    """Geometry.padding's closed form against every read of every output (``window``), counted one by one."""
    from convzoo.viz.window import Geometry

    g = Geometry("gather", a, b, c, kernel, size, out)
    reads = [q for o in itertools.product(*(range(n) for n in out)) for _, q in g.window(o)]
    want = tuple((max([0] + [-q[d] for q in reads]), max([0] + [q[d] - (size[d] - 1) for q in reads]))
                 for d in range(len(a)))
    assert g.padding() == want
