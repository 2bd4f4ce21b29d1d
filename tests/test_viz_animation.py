"""The sliding-window GIF: frames of one size and one layout (only the window and the marked output move), no
earlier frame showing through a later one, and the tap colours kept exactly by the GIF's palette."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import convzoo as cz
from convzoo.viz import animate
from convzoo.viz.animation import frame_images, positions
from convzoo.viz.draw import plt, render, tap_colours
from convzoo.viz.reads import analyse
from convzoo.viz.step import step_block


def _text_places(block) -> dict[str, tuple[float, float]]:
    fig = render(block)
    places = {t.get_text(): t.get_position() for ax in fig.axes for t in ax.texts}
    plt.close(fig)
    return places


@pytest.mark.parametrize("name", ["standard", "deformable"])
def test_every_frame_has_one_layout(name):
    # a border output's 'Σ 24 products on input cells (54 counting the zeros)' is wider than the centre's 'Σ 54 products',
    # and a deformable output's zoom and notes differ from frame to frame: the output and wiring must not move
    r = analyse(cz.build(name, 6, 6, 3), (6, 8, 8))
    steps, _ = positions(r.output_shape)
    corner, centre = (0, 0), (3, 3)
    a = _text_places(step_block(r, 0, corner, False, room_for=steps))
    b = _text_places(step_block(r, 0, centre, False, room_for=steps))
    fixed = [t for t in a if t.startswith(("OUTPUT", "CHANNELS", "zoom", "kernel tap"))]
    assert len(fixed) >= 3 and all(a[t] == b[t] for t in fixed), {t: (a[t], b.get(t)) for t in fixed}
    sizes = {(round(step_block(r, 0, p, False, room_for=steps).w, 6), round(step_block(r, 0, p, False,
             room_for=steps).h, 6)) for p in (corner, centre, (7, 7), (4, 0))}
    assert len(sizes) == 1, sizes


def test_the_gif_shows_each_frame_as_drawn(tmp_path):
    # frames of different sizes left the larger earlier frame's edges showing ('output planes  anes'); a 128-colour
    # palette drew tap 6 13 levels off its colour
    layer = cz.build("deformable", 2, 2, 3)
    drawn = frame_images(layer, (2, 6, 6), "title", max_frames=4)
    assert len({f.size for f in drawn}) == 1
    path = animate(layer, (2, 6, 6), tmp_path / "d.gif", "title", max_frames=4)
    taps = np.array([[round(255 * v) for v in c[:3]] for c in tap_colours(9)])
    with Image.open(path) as gif:
        assert gif.n_frames == len(drawn)
        for k, want in enumerate(drawn):
            gif.seek(k)
            got = np.asarray(gif.convert("RGB"), dtype=int)
            want = np.asarray(want, dtype=int)
            assert got.shape == want.shape
            assert (np.abs(got - want).max(-1) > 24).mean() < 1e-3, f"frame {k} differs from its drawing"
            for colour in taps:  # every tap-coloured pixel keeps its exact colour
                where = (want == colour).all(-1)
                assert np.array_equal(got[where], want[where]), (k, colour)


def _drawn_by_gid(block) -> dict[str, tuple]:
    """What the picture draws, by artist gid: a marker's centre (col, row), a rectangle's (x, y, w, h), a text."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from matplotlib.text import Text

    fig = render(block)
    found = {}
    for ax in fig.axes:
        for a in [*ax.lines, *ax.patches, *ax.texts]:
            gid = a.get_gid()
            if not gid:
                continue
            if isinstance(a, Line2D):
                found[gid] = (float(a.get_xdata()[0]), float(a.get_ydata()[0]))
            elif isinstance(a, Rectangle):
                found[gid] = (a.get_x(), a.get_y(), a.get_width(), a.get_height())
            elif isinstance(a, Text):
                found[gid] = (a.get_text(),)
    plt.close(fig)
    return found


def _inside(point, box) -> bool:
    x, y = point
    return box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]


def test_the_deformable_gifs_last_frame_zooms_on_every_tap_where_its_offsets_put_it():
    # `convzoo viz deformable -o d.gif`: 6 channels, 8×8, padding 1; its last frame (output (7, 7)) had taps 2 and
    # 5 clamped onto the corner cell (drawn "×4" with 4 and 6) and taps 7 and 8, which sample past the corner, drawn
    # nowhere: a tap's point was the mean of the cells it reads inside the map
    import torch

    from convzoo.viz.spec import LayerSpec

    spec = LayerSpec("deformable", 6, 6).validate()
    r = analyse(spec.build(), spec.input_shape)
    steps, _ = positions(r.output_shape)
    last = steps[-1]
    assert last == (7, 7)
    drawn = _drawn_by_gid(step_block(r, 0, last, False, room_for=steps))
    with torch.no_grad():
        offset, _ = r.module.offsets_and_mask(r.x[None])  # (1, 2·9, 8, 8): (dy, dx) per tap, the layer's own
    frame = drawn["c0 zoom frame"]
    cells = [v for k, v in drawn.items() if k.startswith("c0 zoom cell ")]
    panel = (min(b[0] for b in cells), min(b[1] for b in cells),
             max(b[0] + b[2] for b in cells) - min(b[0] for b in cells),
             max(b[1] + b[3] for b in cells) - min(b[1] for b in cells))
    past = 0
    for t in range(9):
        (px, py), (gx, gy) = drawn[f"c0 plane point {t}"], drawn[f"c0 plane grid {t}"]
        # the arrow from the regular grid point is the tap's offset (plane cells: x = column, y = row)
        dy, dx = float(offset[0, 2 * t, 7, 7]), float(offset[0, 2 * t + 1, 7, 7])
        assert abs(py - gy - dy) < 1e-4 and abs(px - gx - dx) < 1e-4, (t, py - gy, px - gx, dy, dx)
        assert _inside((px, py), frame) and _inside((gx, gy), frame), t
        assert _inside(drawn[f"c0 zoom point {t}"], panel) and _inside(drawn[f"c0 zoom grid {t}"], panel), t
        assert f"c0 zoom disc {t}" in drawn  # numbered in the zoom
        past += 6 + t // 3 + dy > 7 or 6 + t % 3 + dx > 7
    assert past >= 2  # this frame does sample past the corner (what the test is about)


def _disc_and_dot_faces(block, plane: str = "c0 zoom") -> tuple[dict, dict, dict]:
    """Per tap: its disc's face colour, its number's colour, its dot's face (RGBA) in ``plane``."""
    from matplotlib.colors import to_rgb, to_rgba
    from matplotlib.lines import Line2D

    fig = render(block)
    discs, numbers, dots = {}, {}, {}
    for ax in fig.axes:
        for a in ax.lines:
            gid = a.get_gid() or ""
            if isinstance(a, Line2D) and gid.startswith(f"{plane} disc "):
                discs[int(gid.split()[-1])] = to_rgb(a.get_markerfacecolor())
            if isinstance(a, Line2D) and gid.startswith(f"{plane} point "):
                dots[int(gid.split()[-1])] = to_rgba(a.get_markerfacecolor())
        numbers.update({int(t.get_text()): to_rgb(t.get_color()) for t in ax.texts if t.get_text().isdigit()})
    plt.close(fig)
    return discs, numbers, dots


def test_a_dcnv2_points_disc_and_dot_show_its_mask_relative_to_the_strongest():
    # `figures --only 003-2.2_dcnv2-modulation`: the discs were full colour in both panels, so a tap with mask .05
    # looked as strong as one with .95 (article 003 §2.2: useless points can learn weight 0). The opacity is now
    # the point's strength ÷ the plane's strongest, floored at 0.2 (irregular.FAINTEST)
    import torch

    from matplotlib.colors import to_rgb

    from convzoo.viz.article_figures import _deformable
    from convzoo.viz.draw import text_colour
    from convzoo.viz.irregular import irregular_input

    gen = torch.Generator().manual_seed(3)
    r0 = torch.arange(3, dtype=torch.float64) - 1
    dy, dx = torch.meshgrid(r0, r0, indexing="ij")  # the regular grid spread ×1.7 and jittered: points apart
    offsets = torch.stack([0.7 * dy + 0.45 * torch.randn(3, 3, generator=gen, dtype=torch.float64),
                           0.7 * dx + 0.45 * torch.randn(3, 3, generator=gen, dtype=torch.float64)], -1).reshape(-1)
    logits = torch.linspace(-3, 3, 9, dtype=torch.float64)
    masks = torch.sigmoid(logits).numpy()  # .05 … .95: the modulation, independent of the drawing
    colours = tap_colours(9)
    for layer, want in ((_deformable(offsets, logits), np.maximum(0.2, masks / masks.max())),
                        (_deformable(offsets), np.ones(9))):
        r = analyse(layer, (1, 9, 9), illustrate=False)
        block = irregular_input(r, 0, (4, 4), False, [0])
        discs, numbers, dots = _disc_and_dot_faces(block)
        assert sorted(discs) == list(range(9))
        for t in range(9):
            face = want[t] * np.array(colours[t][:3]) + (1 - want[t])  # the tap's colour at that opacity, on white
            assert np.allclose(discs[t], face, atol=1e-6), (t, discs[t], face)
            assert numbers[t] == to_rgb(text_colour(tuple(face))), t  # black on a faint disc
            assert np.isclose(dots[t][3], want[t], atol=1e-6), (t, dots[t])  # the dot: the same opacity
        said = [t for t in _texts(block) if t.startswith("opacity: a point's weight (bilinear × mask) ÷ the largest")]
        assert len(said) == (want.min() < 0.99), said  # said where the points differ
    assert want.min() == 1.0 and masks[0] < 0.05 < 0.95 < masks[8]


def test_dcnv3s_softmax_points_read_against_each_other_not_faded_to_white():
    # under DCNv3's softmax over 9 points every weight is ~1/9: as absolute opacity every disc faded to white; at
    # full colour none differed. Relative to the strongest, the strongest is full colour and the others are not
    from convzoo.viz.irregular import sampling_points
    from convzoo.viz.stage_animation import stage_frames

    plan, _ = stage_frames(cz.build("dcnv3", 2, 2, 3), (2, 4, 4), max_frames=6)
    r = plan[1].reads  # stage 2, the sampling
    discs, _, _ = _disc_and_dot_faces(step_block(r, 0, (1, 1), False))
    colours = tap_colours(9)
    alpha = {t: float(np.mean([(1 - f) / (1 - c) for f, c in zip(face, colours[t][:3]) if c < 0.95]))
             for t, face in discs.items()}
    strength = {t: w for t, _, w in sampling_points(r, 0, (1, 1), 0)}
    top = max(strength.values())
    assert 0.05 < top < 0.6  # a softmax weight (× its bilinear weights): far below 1
    for t, a in alpha.items():
        assert abs(a - max(0.2, strength[t] / top)) < 0.02, (t, a, strength[t] / top)
    assert max(alpha.values()) > 0.98 and min(alpha.values()) < 0.9


def test_taps_stacked_past_the_corner_are_each_named():
    # taps 5, 7 and 8 of output (7, 7) all sample (8.5, 8.5), past the corner of the 8×8 input, in the padding:
    # one stack, its tag and its note naming all three (they read only zeros, so none was drawn)
    import torch

    from convzoo.viz.article_figures import _deformable

    off = torch.zeros(9, 2)
    off[5], off[7], off[8] = torch.tensor([1.5, 0.5]), torch.tensor([0.5, 1.5]), torch.tensor([0.5, 0.5])
    r = analyse(_deformable(off.reshape(-1)), (1, 8, 8), illustrate=False)
    steps, _ = positions(r.output_shape)
    drawn = _drawn_by_gid(step_block(r, 0, steps[-1], False, room_for=steps))
    tags = [v[0] for k, v in drawn.items() if " tag " in k]
    assert tags == ["×3: 5, 7, 8"], tags
    frame = drawn["c0 zoom frame"]
    for t in range(9):  # hand count: tap t's grid point (6 + t // 3, 6 + t % 3) plus its offset
        px, py = drawn[f"c0 plane point {t}"]
        gx, gy = drawn[f"c0 plane grid {t}"]
        assert (round(py - gy, 4), round(px - gx, 4)) == tuple(float(v) for v in off[t]) and _inside((px, py), frame)
    assert drawn["c0 plane point 5"] == drawn["c0 plane point 7"] == drawn["c0 plane point 8"]
    assert "×3: taps 5, 7 and 8 sample the same place" in _text_places(step_block(r, 0, steps[-1], False,
                                                                                 room_for=steps))


# --- composite layers: stage by stage (`convzoo viz depthwise_separable -o d.gif` drew one 3×3 window over all six
# channels, a standard conv; `convzoo viz dcnv3 -o d.gif` failed: "DCNv3Conv2d has no single kernel parameter")


def _durations(path) -> list[int]:
    with Image.open(path) as gif:
        out = []
        for k in range(gif.n_frames):
            gif.seek(k)
            out.append(gif.info["duration"])
    return out


def _window(pos, k, size):
    """Hand count: the cells a 'same' k×k window centred on ``pos`` reads inside a size×size map."""
    h = k // 2
    return {(pos[0] + a - h, pos[1] + b - h) for a in range(k) for b in range(k)
            if 0 <= pos[0] + a - h < size and 0 <= pos[1] + b - h < size}


def test_depthwise_separable_slides_the_depthwise_window_on_one_channel_then_the_pointwise_column(tmp_path):
    import torch
    import torch.nn.functional as F

    from convzoo.viz.animation import HOLD_MS

    layer = cz.build("depthwise_separable", 3, 3, 3)
    # 3 frames, both stages in them: each stage's last step is held, the other passes at 500 ms
    durations = _durations(animate(layer, (3, 5, 5), tmp_path / "dws.gif", "title", max_frames=3))
    assert sorted(durations) == [500, HOLD_MS, HOLD_MS] and durations[-1] == HOLD_MS, durations

    from convzoo.viz.stage_animation import stage_frames

    small, _ = stage_frames(layer, (3, 5, 5), max_frames=3)
    assert durations == [HOLD_MS if f is small[-1] or f.stage != g.stage else 500
                         for f, g in zip(small, [*small[1:], small[-1]])]
    plan, _ = stage_frames(layer, (3, 5, 5), max_frames=8)
    assert [f.stage for f in plan] == sorted(f.stage for f in plan) and {f.stage for f in plan} == {1, 2}
    assert len(plan) <= 8 and all(f.position is not None for f in plan)  # both stages slide
    assert plan[0].caption.startswith("stage 1 of 2: depthwise (3×5×5 → 3×5×5; ") and ", step 1 of " in \
        plan[0].caption
    assert plan[-1].caption.startswith("stage 2 of 2: pointwise (3×5×5 → 3×5×5; ")
    for stage, k in ((1, 3), (2, 1)):
        frames = [f for f in plan if f.stage == stage]
        assert len(frames) >= 2 and [f.position for f in frames] == sorted({f.position for f in frames})  # raster
        for f in frames:
            r, j = f.reads, f.out_channel
            assert r.kernel_shape == (k, k) and f.position in f.steps
            read = (r.index[(j, *f.position)] >= 0).nonzero().tolist()  # (channel, row, col) of each product
            channels = {c for c, *_ in read}
            cells = {(y, x) for _, y, x in read}
            if stage == 1:  # one input channel, the 3×3 neighbourhood (clipped by the padding)
                assert channels == {j} and cells == _window(f.position, 3, 5), (f.caption, read)
            else:  # every input channel, the one cell under the output: a column across channels
                assert channels == {0, 1, 2} and cells == {f.position}, (f.caption, read)
    # stage 2 reads what stage 1 made, by torch's own grouped conv with the layer's depthwise weights
    first, second = plan[0].reads, plan[-1].reads
    dw = layer.depthwise
    want = F.conv2d(first.x[None].double(), dw.weight.double(), dw.bias.double(), padding=1, groups=3)[0]
    assert torch.allclose(second.x.double(), want, atol=1e-5)


def test_a_stage_without_a_window_is_one_held_frame_and_the_frames_are_shared(tmp_path):
    # DCNv3: input projection (per pixel: held), sampling (slides), output projection (held)
    with Image.open(animate(cz.build("dcnv3", 2, 2, 3), (2, 4, 4), tmp_path / "d.gif", max_frames=3)) as gif:
        assert gif.n_frames == 3

    from convzoo.viz.stage_animation import share, stage_frames, visited

    plan, _ = stage_frames(cz.build("dcnv3", 2, 2, 3), (2, 4, 4), max_frames=6)
    assert [(f.stage, f.position is None) for f in plan] == [(1, True), *[(2, False)] * 4, (3, True)]
    assert plan[1].reads.geometry is None and plan[1].reads.tap_map is not None  # fractional sampling points
    plan, _ = stage_frames(cz.build("resize", 2, 2, 3), (2, 3, 3), max_frames=6)
    assert plan[0].position is None and [f.stage for f in plan].count(1) == 1
    assert "copies: every output cell is a copy of one input cell" in plan[0].caption
    slides = [f for f in plan[1:] if f.stage == 2]  # 5 frames left: every 2nd row and 3rd column of the 6×6
    assert len(slides) == len(plan) - 1 == 4 and plan[1].reads.input_shape == (2, 6, 6)  # grown 3×3 → 6×6
    plan, _ = stage_frames(cz.build("shuffled_grouped", 4, 4, 3, groups=2), (4, 4, 4), max_frames=5)
    assert [f.stage for f in plan if f.position is None] == [2] and "channel permutation" in plan[-1].caption
    with pytest.raises(ValueError, match=r"max_frames=1 is too few for ShuffledGroupedConv2d's 2 stages"):
        stage_frames(cz.build("shuffled_grouped", 4, 4, 3, groups=2), (4, 4, 4), max_frames=1)
    # 8×8 outputs: every position is 64 frames; 62 left for two stages → every 2nd row of each (32 + ... ≤ 62)
    steps = share([(6, 8, 8), (6, 8, 8)], 62)
    counts = [len(visited((6, 8, 8), s)) for s in steps]
    assert sum(counts) <= 62 and min(counts) >= 16, (steps, counts)
    assert [len(visited((6, 8, 8), s)) for s in share([(6, 8, 8)] * 3, 12)] == [4, 4, 4]  # the floor, all stages
    assert visited((1, 5, 5), (2, 1))[:6] == [(0, 0), (0, 1), (0, 2), (0, 3), (0, 4), (2, 0)]  # raster, rows thinned


def test_a_single_kernel_gif_is_drawn_as_before(tmp_path):
    # a layer that is its own only main stage (standard; deformable with its offset branch) keeps its frames
    import io

    from convzoo.viz.animation import HOLD_MS
    from convzoo.viz.draw import DPI, SMALL, TITLE, column, label

    def picture_image(block):
        fig = render(block)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI)
        plt.close(fig)
        return Image.open(buffer).convert("RGB")

    layer = cz.build("standard", 2, 2, 3)
    got = frame_images(layer, (2, 5, 5), "title", max_frames=4, subtitle="sub")
    r = analyse(layer, (2, 5, 5))
    steps, stride = positions(r.output_shape, 4)
    assert stride == 3  # said as an ordinal: '3rd', not '3th'
    for k, pos in enumerate(steps):  # the recipe the single-kernel GIF has always drawn
        caption = label(f"step {k + 1} of {len(steps)} (every 3rd row and column): output channel 0, "
                        f"position {pos}", SMALL)
        want = picture_image(column([label("title", TITLE, "bold"), label("sub", SMALL), caption,
                                     step_block(r, 0, pos, False, room_for=steps)], gap=0.4))
        assert got[k].size[1] >= want.size[1]
        assert np.array_equal(np.asarray(got[k])[:want.size[1], :want.size[0]], np.asarray(want)), k
    path = animate(layer, (2, 5, 5), tmp_path / "s.gif", max_frames=4)
    assert _durations(path) == [500] * (len(steps) - 1) + [HOLD_MS]

    from convzoo.viz.stage_animation import by_stages

    assert not any(by_stages(cz.build(n, 2, 2, 3)) for n in ("standard", "dilated", "depthwise"))
    # a layer whose side branch steers its one main stage is animated stage by stage: the branch is shown
    assert all(by_stages(cz.build(n, 2, 2, 3)) for n in ("depthwise_separable", "resize", "acnet", "dcnv3",
                                                          "dynamic", "condconv", "odconv", "deformable"))


def _texts(block) -> list[str]:
    fig = render(block)
    found = [t.get_text() for ax in fig.axes for t in ax.texts]
    plt.close(fig)
    return found


def test_a_dynamic_convs_gif_shows_its_attention_before_the_conv_slides():
    # `viz dynamic --in 2 --out 2 --size 4 -o d.gif` was a plain conv (a layer that is its own only main stage was
    # animated whole): no candidate kernels, no attention bars, no aggregated kernel, which the .png has
    import torch

    from convzoo.oracle import reference as ref
    from convzoo.viz.draw import fmt
    from convzoo.viz.stage_animation import stage_frames

    torch.manual_seed(0)
    layer = cz.build("dynamic", 2, 2, 3, temperature=1.0)
    x = torch.rand(2, 4, 4, generator=torch.Generator().manual_seed(5))
    plan, _ = stage_frames(layer, (2, 4, 4), x=x)
    assert [f.position is None for f in plan] == [True] + [False] * 16  # the attention held, then 16 steps
    assert plan[0].head.startswith("side branch: attention π = softmax(") and plan[0].head.endswith("(2×4×4 → 4)")
    a = layer.attention
    pi = ref.dynamic_attention(x[None].double().numpy(), *(t.detach().double().numpy() for t in (
        a.fc1.weight, a.fc1.bias, a.fc2.weight, a.fc2.bias)), 1.0)[0]
    texts = _texts(plan[0].held)
    assert "THE 4 KERNELS IT MIXES (filter 0, input c0)" in texts and "AGGREGATED KERNEL" in texts
    drawn = [float(texts[texts.index(f"π{k}") + 1]) for k in range(4)]  # each bar's name, then its value
    assert drawn == [float(fmt(v)) for v in pi], (drawn, pi)
    assert all(f.stage == 1 and f.reads.geometry is not None for f in plan[1:])


@pytest.mark.parametrize("name, side", [("condconv", "routing r = sigmoid"), ("odconv", "four attentions")])
def test_the_other_attention_convs_gifs_show_their_attention_first(name, side):
    from convzoo.viz.stage_animation import stage_frames

    plan, _ = stage_frames(cz.build(name, 2, 2, 3), (2, 4, 4), max_frames=5)
    assert plan[0].position is None and plan[0].head.startswith(f"side branch: {side}"), plan[0].head
    assert "AGGREGATED KERNEL" in _texts(plan[0].held)
    assert [f.position is None for f in plan[1:]] == [False] * 4


def test_an_involutions_gif_shows_its_kernel_at_three_positions_and_a_deformables_says_its_offsets():
    import torch

    from convzoo.viz.stage_animation import stage_frames

    torch.manual_seed(0)
    plan, _ = stage_frames(cz.build("involution", 6, 6, 3), (6, 8, 8), max_frames=6)
    held = [f for f in plan if f.position is None]
    assert len(held) == 1 and held[0] is plan[0] and "generated at each position" in held[0].step_text
    texts = _texts(held[0].held)
    assert any(t.startswith("KERNEL OF OUTPUT c0 ON INPUT c0, GENERATED AT EACH POSITION") for t in texts)
    assert any(t.startswith("minus the average kernel over the 36 positions") for t in texts)
    assert plan[0].steered and "kernel generation" in plan[0].steered[0]
    # the kernels do differ on the drawn sample: the layer's generator, group 0's 9 taps at each position
    torch.manual_seed(0)
    layer = cz.build("involution", 6, 6, 3)
    with torch.no_grad():
        kernels = layer.generator(plan[-1].reads.x[None].float())[0, :9].flatten(1)  # (taps, positions)
    assert float((kernels.max(1).values - kernels.min(1).values).max()) > 0.01 * float(kernels.abs().max())

    plan, _ = stage_frames(cz.build("deformable", 2, 2, 3), (2, 4, 4), max_frames=4)
    assert all(f.position is not None for f in plan)  # offsets have no attention picture: said on every frame
    assert all(f.steered == ("side branch: offset conv (predicts Δp) (2×4×4 → 18×4×4): its values steer this "
                             "stage, held fixed here",) for f in plan), plan[0].steered


def test_a_stage_that_cannot_be_drawn_is_named_without_a_traceback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from convzoo.cli import app
    from convzoo.viz import render, stage_animation

    def boom(*args, **kwargs):
        raise RuntimeError("the Jacobian is not defined here")

    monkeypatch.setattr(stage_animation, "analyse", boom)
    with pytest.raises(ValueError, match=r"cannot animate 'resize': cannot animate stage 1 of 2 \('upsample ×2 "
                                         r"\(nearest\)'\) of ResizeConv2d: the Jacobian is not defined here"):
        render("resize", tmp_path / "r.gif")
    result = CliRunner().invoke(app, ["viz", "resize", "-o", str(tmp_path / "r.gif")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: cannot animate 'resize': cannot animate stage 1 of 2" in result.output


@pytest.mark.slow
def test_every_familys_gif_writes_and_a_composite_shows_every_stage_in_order(tmp_path):
    from convzoo.cli.viz import default_spec
    from convzoo.registry import families
    from convzoo.viz import picture_size
    from convzoo.viz.picture import declared_stages
    from convzoo.viz.stage_animation import by_stages, stage_frames

    for fam in families():
        spec = default_spec(fam.name)
        spec.validate()
        spec.size = picture_size(spec)
        layer = spec.build()
        path = animate(layer, spec.input_shape, tmp_path / f"{fam.name}.gif", fam.name, max_frames=6)
        with Image.open(path) as gif:
            assert 1 <= gif.n_frames <= 6, fam.name
        if by_stages(layer):
            plan, _ = stage_frames(layer, spec.input_shape, max_frames=6)
            n = len([s for s in declared_stages(layer) if not s.side])
            assert sorted({f.stage for f in plan}) == list(range(1, n + 1)), fam.name
            assert [f.stage for f in plan] == sorted(f.stage for f in plan), fam.name
