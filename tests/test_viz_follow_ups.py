"""Follow-ups across the picture modules, each checked against the layers' own numbers: the article registry draws
the figures that show the mechanism, the DCN v2 figure and the step legend say the opacity the points are drawn
with, a small GDC picture sets its sum beside average pooling, cells round a number once from its value, the
shuffled_grouped summary says what the shuffle really gives, wiring tiles and deformable planes of channels the
drawn output does not read show no window of it, and a stage ending in a ReLU sums before the ReLU."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle

import convzoo as cz
from convzoo.viz.draw import fmt, plt, render
from convzoo.viz.reads import analyse


def _texts(block) -> list[str]:
    fig = render(block)
    found = [t.get_text() for ax in fig.axes for t in ax.texts]
    plt.close(fig)
    return found


def _gids(block) -> set[str]:
    fig = render(block)
    found = {a.get_gid() for ax in fig.axes for a in [*ax.lines, *ax.patches, *ax.texts] if a.get_gid()}
    plt.close(fig)
    return found


def _read_channels(layer: torch.nn.Module, shape: tuple[int, ...], position: tuple[int, ...]) -> set[int]:
    """The input channels output channel 0 at ``position`` depends on: torch's autograd on the layer itself."""
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(5))
    jac = torch.autograd.functional.jacobian(lambda v: layer(v)[(0, 0, *position)], x)[0]
    return {c for c in range(shape[0]) if bool(jac[c].abs().sum() > 0)}


def test_the_article_registry_draws_the_figures_that_show_the_mechanism():
    # three figure functions (per-channel GDC sums, three photographs through a dynamic conv, the involution's
    # per-pixel part) existed, but the registry still drew the one-grid / one-sample / alike-kernels versions
    from convzoo.viz import article_more as more
    from convzoo.viz.article_figures import FIGURES

    by_name = {f.name: f for f in FIGURES}
    assert by_name["003-2.1_gdc-vs-gap"].make is more.gdc_vs_gap
    assert by_name["003-2.3_dynamic-attention"].make is more.dynamic_samples
    assert by_name["beyond_involution-kernels"].make is more.involution_kernels
    d = more.dynamic_samples_data()
    caption = by_name["003-2.3_dynamic-attention"].caption
    # the caption says the attention was trained, how long, and how little it moved untrained (the data's own)
    assert f"for {more.ROUTING_STEPS} steps" in caption and f"at most {d.untrained_spread:.2f}" in caption
    assert f"{more.ROUTING_STEPS} 步" in by_name["003-2.3_dynamic-attention"].caption_zh
    assert f"{d.untrained_spread:.2f}" in by_name["003-2.3_dynamic-attention"].caption_zh
    assert "K = 4" in caption and len(d.bank) == 4


def test_the_dcnv2_figure_says_the_opacity_the_points_have():
    # the figure's footer said "opacity of a point = its bilinear weights × its mask", while the points are drawn
    # at strength ÷ the plane's strongest (floor 0.2)
    from convzoo.viz.article_figures import dcnv2

    texts = _texts(dcnv2())
    assert not any("bilinear weights × its mask" in t for t in texts)
    masks = torch.sigmoid(torch.linspace(-3, 3, 9, dtype=torch.float64)).numpy()
    # inside the map a point's bilinear weights sum to 1: its strength is its mask
    want = [fmt(v) for v in np.maximum(0.2, masks / masks.max())]
    start = next(i for i, t in enumerate(texts) if t.startswith("opacity of each point in v2"))
    assert [t.replace(".", "0.", 1) if t.startswith(".") else t for t in texts[start + 1:start + 10]] == want


def test_the_step_legend_says_the_opacity_the_points_have():
    # the legend said "opacity: interpolation weight × mask"; the points are drawn at strength ÷ the strongest
    from convzoo.viz.irregular import OPACITY_NOTE
    from convzoo.viz.step import legend_items

    r = analyse(cz.build("deformable_v2", 1, 1, 3), (1, 6, 6))
    said = [text for _, text, _ in legend_items(r, False) if "sampling point" in text]
    assert said == [f"○ regular grid → ● sampling point ({OPACITY_NOTE})"]
    plain = [text for _, text, _ in legend_items(analyse(cz.build("deformable", 1, 1, 3), (1, 6, 6)), False)
             if "sampling point" in text]
    assert plain == ["○ regular grid → ● sampling point (opacity: a point's weight (bilinear) ÷ the largest on its "
                     "plane)"]


def test_a_small_gdc_picture_sets_its_sum_beside_average_pooling():
    # `viz global_depthwise --in 2 --out 2 --size 4 -o g.png`: a 4×4 kernel is drawn in tap colours, and the
    # picture had no average-pooling contrast (only kernels above 7×7 got one, and the GIF)
    from convzoo.viz.picture import layer_block

    torch.manual_seed(0)
    layer = cz.build("global_depthwise", 2, 2, 4)
    x = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(3))
    texts = _texts(layer_block(layer, (2, 4, 4), x=x))
    with torch.no_grad():
        y = F.conv2d(x[None], layer.weight, layer.bias, groups=2)[0, 0, 0, 0]
    assert "GLOBAL AVERAGE POOLING of input c0: the same weight everywhere" in texts
    outputs = [texts[i + 1] for i, t in enumerate(texts) if t in ("output c0", "its output")]
    assert len(outputs) == 2
    assert abs(float(outputs[0]) - float(y)) <= 0.0051 and abs(float(outputs[1]) - float(x[0].mean())) <= 0.0051


def test_a_cell_rounds_a_number_once_from_its_value():
    # fmt(-0.0046) = '-0.005' was rounded again to '-.01' in a narrow cell (double rounding; the value rounds to
    # -0.00), 0.0008 became '.001' and 13.47 → '13.5' → '14'. Rounded from the value: never 0 or -0, and never
    # fewer decimals than a small number's first significant digit (those are drawn smaller instead)
    from convzoo.viz.draw import fit_numbers

    values = [-0.0046, 0.0008, 13.47, -13.47, -1.2549, 100.47]
    fitted, size = fit_numbers([fmt(v) for v in values], 10)
    assert fitted == ["-.005", ".0008", "13", "-13", "-1.3", "100"] and size == 9
    for v, t in zip(values, fitted):  # the printed number is the value rounded at its own decimals
        decimals = len(t.split(".")[1]) if "." in t else 0
        assert float(t) == round(v, decimals) and float(t) != 0, (v, t)


@pytest.mark.parametrize("channels, groups", [(6, 3), (12, 3), (8, 2), (9, 3), (8, 4)])
def test_the_shuffled_grouped_summary_says_what_the_shuffle_gives(channels, groups):
    # it said "so the next groups see every group": 6 channels, g = 3 shuffle to [0, 2, 4, 1, 3, 5], each next
    # group of 2 holds channels of only 2 of the 3 groups. Counted from torch's own ChannelShuffle
    from convzoo.registry import family

    order = torch.nn.ChannelShuffle(groups)(torch.arange(channels, dtype=torch.float32).reshape(1, channels, 1, 1))
    source = order.flatten().long().tolist()
    size = channels // groups
    held = {len({source[j] // size for j in range(k * size, (k + 1) * size)}) for k in range(groups)}
    assert held == {min(groups, size)}  # what the summary states
    summary = family("shuffled_grouped").summary
    assert "min(g, C/g) groups" in summary and "all g when C/g ≥ g" in summary
    assert "see every group" not in summary


@pytest.mark.parametrize("family, kwargs, shape, position", [
    ("grouped", {"groups": 2}, (4, 4, 4), (2, 2)), ("depthwise", {}, (3, 5, 5), (2, 2)),
    ("global_depthwise", {}, (2, 4, 4), (0, 0)), ("standard", {}, (3, 4, 4), (2, 2))])
def test_wiring_tiles_show_a_window_only_on_the_channels_the_drawn_output_reads(family, kwargs, shape, position):
    # `viz grouped --in 4 --out 4 --groups 2 --size 4`: the tiles of c2, c3 (not read by output c0) showed another
    # output's window, while the legend says "dark = the window the drawn output reads"
    from convzoo.viz.step import step_block

    c = shape[0]
    layer = cz.build(family, c, 4 if family == "grouped" else c, 4 if family == "global_depthwise" else 3, **kwargs)
    reads = _read_channels(layer, shape, position)
    fig = render(step_block(analyse(layer, shape), 0, position))
    windows = {int(re.fullmatch(r"wiring in c(\d+) window", p.get_gid()).group(1)) for ax in fig.axes
               for p in ax.patches if isinstance(p, Rectangle) and (p.get_gid() or "").startswith("wiring in c")}
    plt.close(fig)
    assert windows == reads and (family == "standard" or len(reads) < c)


def test_a_grouped_deformable_picture_greys_the_planes_its_output_does_not_read():
    # `viz deformable --in 4 --out 4 --groups 2 --planes 4`: the planes c2, c3 showed filter 2's sampling points,
    # which read as output c0's; now grey, '(not read)', with no points, as a grouped conv's step picture
    from convzoo.viz.step import step_block

    layer = cz.build("deformable", 4, 4, 3, groups=2)
    shape, position = (4, 6, 6), (3, 3)
    reads = _read_channels(layer, shape, position)
    assert reads == {0, 1}
    block = step_block(analyse(layer, shape), 0, position, planes=4)
    gids, texts = _gids(block), _texts(block)
    for c in range(4):
        points = {g for g in gids if g.startswith(f"c{c} plane point ")}
        assert (len(points) == 9) == (c in reads), (c, sorted(points))
        assert (f"c{c} (not read)" in texts) == (c not in reads)
    assert "input channel output c0 does not read" in texts


def test_a_stage_ending_in_relu_sums_before_the_relu():
    # selective kernel's split stage is ReLU(conv_m(x)); its sum line said "0 ≈ sum of 36 … + 0.22 (bias)": output
    # less the sum, not the conv's bias. Now '0 = ReLU(z): z ≈ sum of … + b (bias)' with z and b from F.conv2d
    from convzoo.viz.picture import Lambda
    from convzoo.viz.step import sum_line

    torch.manual_seed(0)
    layer = cz.build("selective_kernel", 4, 4, (3, 5)).eval()
    shape, o = (4, 6, 6), (3, 3)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(4))
    r = analyse(Lambda(layer.split), shape, x=x, illustrate=False)
    with torch.no_grad():
        z = torch.cat([F.conv2d(x[None], b.weight, b.bias, b.stride, b.padding, b.dilation) for b in layer.branches],
                      1)[0]
        bias = torch.cat([b.bias for b in layer.branches])
    clipped = 0
    for j in range(8):
        line = sum_line(r, j, o)
        m = re.fullmatch(r"(\S+) = ReLU\((\S+)\): (\S+) ≈ sum of 36 kernel·input products ([+−]) (\S+) \(bias\)", line)
        assert m, line
        assert m.group(1) == fmt(float(F.relu(z[(j, *o)]))) and m.group(2) == m.group(3) == fmt(float(z[(j, *o)]))
        assert (-1 if m.group(4) == "−" else 1) * float(m.group(5)) == float(fmt(float(bias[j]))), (line, bias[j])
        clipped += float(z[(j, *o)]) < 0
    assert 0 < clipped < 8  # some outputs clipped by the ReLU, some passed
    # the select stage multiplies by the attention held (detached): no ReLU on its data path, its line unchanged
    from convzoo.viz.step import activation

    u = layer.split(x[None]).detach()
    select = analyse(Lambda(lambda v: layer.fuse_select(v, hold_attention=True)), tuple(u.shape[1:]), x=u[0],
                     illustrate=False)
    assert activation(select) is None and "ReLU" not in sum_line(select, 0, o)
