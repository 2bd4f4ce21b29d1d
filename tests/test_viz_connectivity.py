"""Connectivity by autograd equals the dependency sets derived by hand from each layer's definition."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import convzoo as cz
from convzoo.arithmetic import overlap_map
from convzoo.viz import connectivity


def window_mask(c_out, c_in, size, out_size, k, s, p, d, reads):
    """mask[j, o..., c, i...] = reads(j, c) allows a tap q with i = o·s − p + q·d (per dim), for 2-D.
    ``reads(j, c)`` returns None (not connected), "all" (every tap) or "centre" (only the centre tap)."""
    mask = np.zeros((c_out, out_size, out_size, c_in, size, size), dtype=bool)
    for j, c in itertools.product(range(c_out), range(c_in)):
        kind = reads(j, c)
        if kind is None:
            continue
        taps = [(k // 2, k // 2)] if kind == "centre" else list(itertools.product(range(k), repeat=2))
        for oy, ox in itertools.product(range(out_size), repeat=2):
            for qy, qx in taps:
                iy, ix = oy * s - p + qy * d, ox * s - p + qx * d
                if 0 <= iy < size and 0 <= ix < size:
                    mask[j, oy, ox, c, iy, ix] = True
    return torch.from_numpy(mask)


def check(layer, c_in, size, expected):
    conn = connectivity(layer, (c_in, size, size))
    assert conn.mask.shape == expected.shape
    assert torch.equal(conn.mask, expected)


@pytest.mark.parametrize("k,s,p,d", [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 2), (2, 2, 0, 1), (3, 2, 0, 3)])
def test_standard_strided_dilated(k, s, p, d):
    size = 9
    layer = cz.Conv2d(3, 2, k, stride=s, padding=p, dilation=d)
    out = (size + 2 * p - d * (k - 1) - 1) // s + 1
    check(layer, 3, size, window_mask(2, 3, size, out, k, s, p, d, lambda j, c: "all"))


def test_grouped():
    layer = cz.Conv2d(6, 4, 3, padding=1, groups=2)  # input group g = channels 3g..3g+2 → outputs 2g, 2g+1
    check(layer, 6, 6, window_mask(4, 6, 6, 6, 3, 1, 1, 1, lambda j, c: "all" if c // 3 == j // 2 else None))


def test_depthwise_with_multiplier():
    layer = cz.build("depthwise", 3, 6, 3)  # depth multiplier 2: output j reads input j // 2
    check(layer, 3, 6, window_mask(6, 3, 6, 6, 3, 1, 1, 1, lambda j, c: "all" if c == j // 2 else None))


@pytest.mark.parametrize("p", [2, 4])
def test_hetconv_kxk_only_on_channels_congruent_mod_p(p):
    layer = cz.HetConv2d(8, 6, 3, p=p, padding=1)
    reads = lambda j, c: "all" if (c - j) % p == 0 else "centre"  # noqa: E731
    check(layer, 8, 6, window_mask(6, 8, 6, 6, 3, 1, 1, 1, reads))


def test_hetconv_strided():
    layer = cz.HetConv2d(4, 4, 3, p=2, stride=2, padding=1)
    reads = lambda j, c: "all" if (c - j) % 2 == 0 else "centre"  # noqa: E731
    check(layer, 4, 7, window_mask(4, 4, 7, 4, 3, 2, 1, 1, reads))


def test_mixconv_groups_get_their_own_kernel():
    layer = cz.MixConv2d(6, 6, (3, 5, 7))  # depthwise, channels {0,1}: 3×3, {2,3}: 5×5, {4,5}: 7×7
    size = 9
    expected = torch.zeros(6, size, size, 6, size, size, dtype=torch.bool)
    for j, k in zip(range(6), (3, 3, 5, 5, 7, 7)):
        single = window_mask(1, 1, size, size, k, 1, (k - 1) // 2, 1, lambda a, b: "all")
        expected[j, :, :, j] = single[0, :, :, 0]
    check(layer, 6, size, expected)


@pytest.mark.parametrize("k,s,p", [(3, 2, 0), (4, 2, 1), (3, 2, 1), (5, 3, 2)])
def test_transposed(k, s, p):
    size = 5
    layer = cz.TransposedConv2d(2, 3, k, stride=s, padding=p)
    out = (size - 1) * s - 2 * p + k
    # Output o receives input i through tap q when o + p = i·s + q.
    mask = np.zeros((3, out, out, 2, size, size), dtype=bool)
    for oy, ox, iy, ix in itertools.product(range(out), range(out), range(size), range(size)):
        if 0 <= oy + p - iy * s < k and 0 <= ox + p - ix * s < k:
            mask[:, oy, ox, :, iy, ix] = True
    check(layer, 2, size, torch.from_numpy(mask))


def test_transposed_fan_in_is_the_overlap_map():
    for k in (3, 4):
        conn = connectivity(cz.TransposedConv2d(1, 1, k, stride=2), (1, 6, 6))
        interior = conn.fan_in()[0, 2 * k:2 * k + 2, 2 * k:2 * k + 2]  # one period, starting at o ≡ 0 (mod 2)
        assert torch.equal(interior, overlap_map(k, 2))


def test_shuffle_channel_map_is_the_permuted_group_map():
    layer = cz.ShuffledGroupedConv2d(4, 4, 1, groups=2)
    cmap = connectivity(layer, (4, 3, 3)).channel_map()
    # groups: outputs 0,1 read inputs 0,1; outputs 2,3 read 2,3; shuffle output i = conv output (i%2)·2 + i//2.
    source = [(i % 2) * 2 + i // 2 for i in range(4)]
    expected = torch.tensor([[c // 2 == s // 2 for c in range(4)] for s in source])
    assert torch.equal(cmap, expected)


def test_one_d_and_three_d_and_a_users_own_module():
    conn = connectivity(cz.Conv1d(1, 1, 3, padding=1), (1, 7))
    assert conn.deps(0, 3)[0].tolist() == [False, False, True, True, True, False, False]
    conn3 = connectivity(cz.Conv3d(1, 1, 3, padding=1), (1, 4, 4, 4))
    assert conn3.deps(0, 1, 1, 1)[0].sum() == 27 and conn3.deps(0, 0, 0, 0)[0].sum() == 8

    class Shift(torch.nn.Module):  # not a convolution at all
        def forward(self, x):
            return torch.roll(x, 1, dims=-1) * 2

    assert connectivity(Shift(), (1, 4)).deps(0, 0)[0].tolist() == [False, False, False, True]


def test_too_large_is_refused():
    with pytest.raises(ValueError, match="too large"):
        connectivity(cz.Conv2d(16, 16, 3, padding=1), (16, 64, 64))


@pytest.mark.parametrize("dim,shape", [(1, (4, 12)), (2, (4, 6, 6))])
def test_dynamic_conv_sees_everything_through_its_attention(dim, shape):
    # The kernel attention pools the whole input, so every output depends on every input element; a dead ReLU
    # or a saturated softmax in the random parameters would hide this (regression test for that degeneracy).
    conn = connectivity(cz.build("dynamic", 4, 4, 3, dim=dim), shape)
    assert bool(conn.mask.all())


def test_deformable_reads_off_the_regular_grid():
    # Offsets come from the input (offset conv), so the window is no longer the 3×3 one of a plain conv.
    conn = connectivity(cz.build("deformable", 1, 1, 3), (1, 8, 8))
    plain = connectivity(cz.build("standard", 1, 1, 3), (1, 8, 8))
    assert not torch.equal(conn.footprint(), plain.footprint())
