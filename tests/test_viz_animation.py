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
    # a border output's 'Σ 24 non-zero products (54 counting the zeros)' is wider than the centre's 'Σ 54 products',
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
