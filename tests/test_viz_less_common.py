"""Pictures of the less common families, as a learner reads them: what the words say must be what the layer does
(the shuffle's next groups), the global depthwise conv stepping across channels beside average pooling, and the
article figures of dynamic conv and involution showing the per-sample / per-pixel kernels they are about."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import convzoo as cz
from convzoo.viz.draw import fmt, plt, render


def _near(text: str, value: float, within: float = 0.0051) -> bool:
    """A printed number (two decimals, the leading 0 maybe dropped: '-.66') is ``value``."""
    try:
        return abs(float(text) - value) <= within + 1e-9
    except ValueError:
        return False


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


def test_a_global_depthwise_gif_steps_across_the_channels_beside_average_pooling(tmp_path):
    # `viz global_depthwise --in 3 --out 3 --size 4 -o gdc.gif` was one frame ("step 1 of 1"): channel 0's window
    # only, no sum and no average pooling. Now one held frame per output channel, each with the channel's map ×
    # the layer's own weights summed, and the same map × 1/16 (average pooling), numbers from torch's own ops
    import torch.nn.functional as F
    from PIL import Image

    from convzoo.viz import animate
    from convzoo.viz.animation import HOLD_MS
    from convzoo.viz.reads import analyse

    torch.manual_seed(0)
    layer = cz.build("global_depthwise", 3, 3, 4)
    x = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(2))
    with Image.open(animate(layer, (3, 4, 4), tmp_path / "gdc.gif", x=x)) as gif:
        assert gif.n_frames == 3
        durations = []
        for k in range(gif.n_frames):
            gif.seek(k)
            durations.append(gif.info["duration"])
    assert durations == [HOLD_MS] * 3  # each channel's sum is read, not watched
    from convzoo.viz.animation import global_contrast

    with torch.no_grad():
        y = F.conv2d(x[None], layer.weight, layer.bias, groups=3).flatten()  # torch's own depthwise conv
    r = analyse(layer, (3, 4, 4), x=x)
    for c in range(3):
        texts = _texts(global_contrast(r, c))
        assert f"THIS LAYER: its own 4×4 weights on input c{c}" in texts
        assert f"GLOBAL AVERAGE POOLING of input c{c}: the same weight everywhere" in texts
        outputs = [texts[i + 1] for i, t in enumerate(texts) if t in (f"output c{c}", "its output")]
        assert len(outputs) == 2 and _near(outputs[0], float(y[c])) and _near(outputs[1], float(x[c].mean())), \
            (outputs, float(y[c]), float(x[c].mean()))
        for w in layer.weight[c, 0].flatten().tolist():  # the layer's own 16 weights printed in their cells
            assert any(_near(t, w) for t in texts), w
        assert "every weight 1/16 = 0.0625" in texts and texts.count(".0625") == 16  # the pooling grid, as said
    assert global_contrast(analyse(cz.build("standard", 3, 3, 3), (3, 5, 5)), 0) is None  # a window that slides


def test_the_gdc_figure_shows_each_channels_map_weights_and_sum_beside_pooling():
    # `figures --only 003-2.1_gdc-vs-gap` showed channel 0's weights beside a 1/16 grid: no input, no C×1×1 output
    import torch.nn.functional as F

    from convzoo.viz.article_more import gdc_data, gdc_vs_gap

    d = gdc_data(3, 4)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = cz.build("global_depthwise", 3, 3, 4).double()
    x = torch.tensor(d.x)[None]
    assert np.allclose(d.weights, layer.weight[:, 0].detach().numpy())
    assert np.allclose(d.gdc, F.conv2d(x, layer.weight, layer.bias, groups=3).flatten().detach().numpy())
    assert np.allclose(d.pooling, 1 / 16) and np.allclose(d.gap, x.mean((2, 3)).flatten().numpy())
    texts = _texts(gdc_vs_gap())
    for c in range(3):
        assert texts.count(f"input c{c}") == 2 and texts.count(f"output c{c}") == 2
        outputs = [texts[i + 1] for i, t in enumerate(texts) if t == f"output c{c}"]
        assert _near(outputs[0], float(d.gdc[c])) and _near(outputs[1], float(d.gap[c])), outputs


def test_the_dynamic_figure_shows_a_different_aggregated_kernel_per_photograph():
    # `figures --only 003-2.3_dynamic-attention` drew one sample (its caption said "of 3 such samples"); article 003
    # §2.3 fig. 1 is one static kernel for every image against a different aggregated kernel per image
    import torch.nn.functional as F

    from convzoo.oracle import reference as ref
    from convzoo.viz.article_more import dynamic_samples, dynamic_samples_data

    d = dynamic_samples_data()
    a, layer = d.layer.attention, d.layer
    x = torch.tensor(d.images)
    pi = ref.dynamic_attention(d.images, *(t.detach().numpy() for t in (a.fc1.weight, a.fc1.bias, a.fc2.weight,
                                                                         a.fc2.bias)), 1.0)  # the paper's π, NumPy
    assert np.allclose(d.pi, pi, atol=1e-9)
    with torch.no_grad():
        for s in range(3):  # the kernel drawn is the one the layer applies: its output is torch's conv with it
            w = torch.einsum("k,koihw->oihw", torch.tensor(pi[s]), layer.kernels)
            b = torch.tensor(pi[s]) @ layer.bias
            assert torch.allclose(layer(x[s:s + 1]), F.conv2d(x[s:s + 1], w, b, padding=1), atol=1e-9)
            assert np.allclose(d.aggregated[s], w[0, 0].numpy())
    assert np.abs(d.aggregated[0] - d.aggregated[1]).max() > 0.05  # different kernels, visibly
    assert np.abs(d.aggregated[1] - d.aggregated[2]).max() > 0.05
    assert sorted(d.pi.argmax(1).tolist()) == [0, 1, 2]  # each photograph leans on another kernel
    assert d.untrained_spread < 0.05  # said in the note: untrained, the attention barely moves
    texts = _texts(dynamic_samples())
    assert [t for t in texts if t.startswith(("sky: GAP", "roof: GAP", "flower: GAP"))] == [
        f"{n}: GAP = " + ", ".join(fmt(float(v)) for v in x[s].mean((1, 2))) for s, n in enumerate(d.names)]
    for s in range(3):
        for k in range(4):  # each bar's name then its value
            names = [i for i, t in enumerate(texts) if t == f"π{k}"]
            assert _near(texts[names[s] + 1], float(pi[s, k])) or texts[names[s] + 1] == fmt(float(pi[s, k]))
    assert f"untrained, π moved by at most {d.untrained_spread:.2f} between these three." in " ".join(texts).replace(
        "\n", " ")


def test_the_involution_figure_draws_the_per_pixel_part_of_the_kernels_on_its_own_scale():
    # `beyond_involution-kernels` drew three "most different" kernels that looked alike: on the one scale of the
    # kernels (±0.55, mostly the generator's shared bias) their per-pixel part (±0.1) hardly shows
    from convzoo.viz.article_more import involution_kernels, pixel_kernels_data

    d = pixel_kernels_data()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layer = cz.build("involution", 3, 3, 3, padding="same", groups=1, reduction=1).double()
    g = layer.generator
    x = d.image.reshape(-1, 3)  # pixels, RGB: the paper's H_p = W_1 ReLU(W_0 x_p), in NumPy
    hidden = np.maximum(x @ g.reduce.weight.detach().numpy().T + g.reduce.bias.detach().numpy(), 0)
    want = hidden @ g.span.weight.detach().numpy().T + g.span.bias.detach().numpy()
    assert np.allclose(d.kernels, want, atol=1e-12)
    scale, reach = np.abs(want).max(), np.abs(want - want.mean(0)).max()
    assert 0.05 < reach / scale < 0.3  # the per-pixel part is real but small: why one scale hid it
    texts = _texts(involution_kernels())
    assert f"its own scale ±{fmt(reach)}" in texts
    for i in d.picked:  # each picked kernel's change printed in its tiles, rounded once (-0.0046 is '-.005')
        for v in (want[i] - want.mean(0)):
            assert any(_near(t, float(v)) for t in texts), v
    assert "how far each pixel's kernel is from the average" in texts
    note = " ".join(texts).replace("\n", " ")
    assert f"up to ±{fmt(reach)} ({100 * reach / scale:.0f} % of the largest tap)" in note


def test_an_8x8_gdc_picture_shows_pooling_once_with_the_weight_its_caption_says():
    # the big-kernel block drew the learned weights beside a pooling grid, and the contrast below drew both again;
    # the contrast's 64 pooling cells printed '.02' under "every weight 1/64 ≈ 0.016" (64 × .02 = 1.28, not 1)
    from convzoo.viz.picture import layer_block

    torch.manual_seed(0)
    layer = cz.build("global_depthwise", 6, 6, 8)
    texts = _texts(layer_block(layer, (6, 8, 8)))
    assert not any("average pooling instead" in t for t in texts)
    assert texts.count("GLOBAL AVERAGE POOLING of input c0: the same weight everywhere") == 1
    assert "every weight 1/64 ≈ 0.016" in texts and texts.count(".016") == 64
