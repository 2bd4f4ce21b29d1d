"""Involution (Li et al. 2021): the layer against reference.involution, the locality of its generated kernels,
and its cost against a count of the multiply-accumulates its generator runs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convzoo as cz
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_

CLASSES = {1: cz.Involution1d, 2: cz.Involution2d, 3: cz.Involution3d}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_involution_matches_reference(data):
    dim = data.draw(st.sampled_from([1, 2, 3]))
    groups = data.draw(st.sampled_from([1, 2]))
    c = groups * data.draw(st.integers(1, 3))
    k, s, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    module = CLASSES[dim](c, c, k, s, data.draw(st.integers(0, 2)), d, groups, data.draw(st.booleans()),
                          data.draw(st.sampled_from(["zeros", "replicate"])), reduction=data.draw(st.integers(1, 4)))
    top = {1: 11, 2: 7, 3: 4}[dim]
    size = tuple(data.draw(st.integers(d * (k - 1) + 1, max(top, d * (k - 1) + 1))) for _ in range(dim))
    x = torch.rand((data.draw(st.integers(1, 2)), c, *size), generator=torch.Generator().manual_seed(1)) * 2 - 1
    randomize_parameters_(module, torch.Generator().manual_seed(2))
    assert check_module(module, x) < TOLERANCE


def test_each_output_reads_only_its_window():
    """The kernel comes from the position's own features: an output ignores everything outside its window
    (unlike the dynamic families, whose attention pools the whole input)."""
    layer = cz.Involution2d(4, 4, 3, padding=1, groups=2)
    randomize_parameters_(layer, torch.Generator().manual_seed(0))
    x = torch.randn(1, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    layer.double()(x)[0, :, 4, 4].sum().backward()
    reached = x.grad[0].abs().sum(0) > 0
    assert reached[3:6, 3:6].all() and reached.sum() == 9


def test_channels_of_a_group_share_one_kernel_per_position():
    layer = cz.Involution2d(4, 4, 3, padding=1, groups=2)
    x = torch.randn(1, 4, 6, 6)
    same = x.clone()
    same[:, 1] = same[:, 0]  # channels 0 and 1 are in one group: equal inputs give equal outputs
    y = layer(same)
    torch.testing.assert_close(y[:, 0], y[:, 1])


def test_cost_equals_the_counted_multiply_accumulates():
    from torch.utils.flop_counter import FlopCounterMode

    layer = cz.Involution2d(8, 8, 3, 2, 1, groups=2, reduction=4)
    shape = (2, 8, 9, 9)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():  # the generator's two FCs; the involution's products are not weight MACs
        layer(torch.randn(shape))
    assert counter.get_total_flops() // 2 == 2 * 25 * (8 * 2 + 2 * 18) == cz.cost(layer, shape).macs


def test_channel_count_is_kept_in_words():
    with pytest.raises(ValueError, match="out_channels=8 must equal in_channels=4"):
        cz.Involution2d(4, 8, 3)
