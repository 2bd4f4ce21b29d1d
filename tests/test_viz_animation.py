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
