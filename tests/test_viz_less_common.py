"""Pictures of the less common families, as a learner reads them: what the words say must be what the layer does
(the shuffle's next groups), the global depthwise conv stepping across channels beside average pooling, and the
article figures of dynamic conv and involution showing the per-sample / per-pixel kernels they are about."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo as cz
from convzoo.viz.draw import plt, render


def _texts(block) -> list[str]:
    fig = render(block)
    found = [t.get_text() for ax in fig.axes for t in ax.texts]
    plt.close(fig)
    return found


@pytest.mark.parametrize("channels, groups", [(6, 3), (9, 3), (6, 2), (8, 4)])
def test_the_shuffles_sentence_counts_the_groups_each_next_group_really_holds(channels, groups):
    # 6 channels, g = 3: the shuffle's order is [0, 2, 4, 1, 3, 5], so each next group of 2 holds channels of 2 of
    # the 3 groups, but the last frame of `viz shuffled_grouped --in 6 --out 6 --groups 3` said "of every group"
    from convzoo.viz.stage_animation import stage_frames

    order = nn.ChannelShuffle(groups)(torch.arange(channels, dtype=torch.float32).reshape(1, channels, 1, 1))
    source = order.flatten().long().tolist()  # output j is input source[j]: torch's own shuffle
    size = channels // groups
    held = [len({source[j] // size for j in range(k * size, (k + 1) * size)}) for k in range(groups)]
    if min(held) == groups:
        want = "each next group (bracket) holds channels of every group"
    else:
        assert min(held) == max(held)
        want = f"each next group (bracket) holds channels of only {held[0]} of the {groups} groups"
    plan, _ = stage_frames(cz.build("shuffled_grouped", channels, channels, 3, groups=groups), (channels, 3, 3),
                           max_frames=6)
    said = [t for t in _texts(plan[-1].held) if "after it" in t]
    assert said == [f"every output channel is one input channel, moved;\nafter it, {want}"], said
    if (channels, groups) == (6, 3):
        assert held == [2, 2, 2]
