"""Sampling-point pictures of deformable convolution: taps that sample the same place stay visible as several
(rings, "×n", a line naming them), and the sampling matrix's footer says what the picture draws."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.colors import to_rgba

from convzoo.viz.article_figures import _deformable, _sampling_panel, sampling_matrix
from convzoo.viz.draw import plt, render

SIZE = 9
CENTRE = SIZE // 2


def _offsets() -> torch.Tensor:
    """(9, 2) offsets, tap t at grid (t // 3 - 1, t % 3 - 1): taps 0 and 1 meet at (−1, −0.5) exactly; 4 and 5 land
    0.02 cell apart at (0.3, ±0.01); the others stay on their grid points."""
    off = torch.zeros(9, 2, dtype=torch.float64)
    off[0], off[1] = torch.tensor([0.0, 0.5]), torch.tensor([0.0, -0.5])
    off[4], off[5] = torch.tensor([0.3, 0.01]), torch.tensor([0.3, -1.01])
    return off


def _drawn(block):
    fig = render(block)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    dots = [(ln.get_xdata()[0], ln.get_ydata()[0], ln.get_markersize(), to_rgba(ln.get_markerfacecolor()))
            for ax in fig.axes for ln in ax.lines if ln.get_marker() == "o" and ln.get_markerfacecolor() != "none"]
    plt.close(fig)
    return texts, dots


def test_taps_sampling_one_place_are_drawn_as_several():
    texts, dots = _drawn(_sampling_panel(_deformable(_offsets().reshape(-1)), SIZE, "coincident"))
    # hand count: tap t samples CENTRE + (t // 3 − 1, t % 3 − 1) + offset
    assert "×2: taps 0 and 1 sample the same place; ×2: taps 4 and 5 sample places 0.02 cell apart" in texts
    # beside each stack on the plane, naming its taps (the zoom's discs name them there)
    assert texts.count("×2: 0, 1") == 1 and texts.count("×2: 4, 5") == 1
    # every pair of dots within 0.05 cell (0/1 and 4/5, on the plane and in the zoom): two sizes, the larger a
    # ring behind the smaller, both opaque so that the ring does not show through the dot
    pairs = [(a, b) for i, a in enumerate(dots) for b in dots[i + 1:] if np.hypot(a[0] - b[0], a[1] - b[1]) < 0.05]
    assert len(pairs) == 4, pairs
    assert all(a[2] != b[2] and a[3][3] == b[3][3] == 1.0 for a, b in pairs)


def test_lone_points_are_not_stacked():
    texts, _ = _drawn(_sampling_panel(_deformable(torch.zeros(18, dtype=torch.float64)), SIZE, "regular"))
    assert not any("×" in t and "sample" in t for t in texts) and "×2" not in texts


def test_sampling_matrix_footer_says_what_is_drawn():
    texts, _ = _drawn(sampling_matrix())
    footer = next(t for t in texts if t.startswith("○"))
    assert "inside" not in footer  # the numbers sit in discs beside the dots, tied by a line
    assert "numbered disc" in footer and "regular grid" in footer and "bilinear" in footer
    discs = [t for t in texts if t.isdigit()]
    assert sorted(set(discs)) == [str(t) for t in range(9)] and len(discs) == 4 * 9  # every tap, every panel


def test_a_border_output_draws_the_padding_its_grid_reaches():
    # output (0, 0) of a 3×3 'same' deformable conv: its regular grid starts at row −1 and column −1, in the zero
    # padding; those cells are drawn (dashed) so that its grid points sit on cells, not in the picture's margin
    from convzoo.viz.irregular import irregular_input, margins
    from convzoo.viz.reads import analyse

    r = analyse(_deformable(torch.zeros(18, dtype=torch.float64)), (1, 8, 8), illustrate=False)
    assert margins(r, [(0, 0)]) == ((1, 0), (1, 0)) and margins(r, [(3, 3)]) == ((0, 0), (0, 0))
    assert margins(r, [(0, 0), (7, 7)]) == ((1, 1), (1, 1))  # an animation's frames: one padded size for all
    texts, _ = _drawn(irregular_input(r, 0, (0, 0), False, [0]))
    assert "INPUT 1×8×8, padded to 9×9: sampling points" in texts
    texts, _ = _drawn(irregular_input(r, 0, (3, 3), False, [0]))
    assert "INPUT 1×8×8: sampling points" in texts


def test_points_past_the_edge_are_where_the_layers_offsets_put_them():
    # a tap's point was the mean of the cells it reads inside the map: past the edge it was pulled onto the edge
    # cell (several taps then "coincided" there) or, reading only padding, left out. Hand count from the layer's
    # own offsets and masks: tap t of output o samples o − 1 + (t // 3, t % 3) + Δp, with strength its mask
    import math

    from convzoo import build
    from convzoo.viz.irregular import margins, sampling_points
    from convzoo.viz.reads import analyse

    r = analyse(build("deformable_v2", 2, 2, 3), (2, 8, 8))
    with torch.no_grad():
        offset, mask = r.module.offsets_and_mask(r.x[None])
    past = 0
    reach = [[0, 0], [0, 0]]
    for o in [(0, 0), (7, 7), (0, 7), (7, 0), (3, 4)]:
        for c in (0, 1):
            drawn = {t: (p, w) for t, p, w in sampling_points(r, 1, o, c)}
            assert sorted(drawn) == list(range(9)), (o, c)
            for t, (p, w) in drawn.items():
                want = [o[0] - 1 + t // 3 + float(offset[0, 2 * t, o[0], o[1]]),
                        o[1] - 1 + t % 3 + float(offset[0, 2 * t + 1, o[0], o[1]])]
                assert np.allclose(p, want, atol=1e-4) and math.isclose(w, float(mask[0, t, o[0], o[1]]),
                                                                        abs_tol=1e-4), (o, c, t, p, want)
                past += not all(0 <= v <= 7 for v in want)
                for d in (0, 1):  # the cells of its bilinear neighbours, and the grid point's
                    reach[d] = [max(reach[d][0], -math.floor(want[d]), 1 - o[d]),
                                max(reach[d][1], math.ceil(want[d]) - 7, o[d] - 6)]
    assert past >= 4
    assert margins(r, [(0, 0), (7, 7), (0, 7), (7, 0), (3, 4)]) == tuple(tuple(v) for v in reach)


def test_a_layer_the_zero_extension_would_change_keeps_its_in_map_points():
    # reflect padding reads the input's own cells past the edge (no zero-padded window is fitted): extending the
    # input with zeros would change what is read, so the points stay the means of the cells read (none invented)
    from convzoo import build
    from convzoo.viz.irregular import extended_points, sampling_points
    from convzoo.viz.reads import analyse

    r = analyse(build("deformable", 1, 1, 3, padding=1, padding_mode="reflect"), (1, 6, 6))
    assert extended_points(r, [(0, 0, 0), (0, 5, 5)]) is None
    coef = r.tap_map.coefficients[:, 0, 0, 0, 0].double()  # (T, 6, 6)
    rows, cols = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    for t, p, w in sampling_points(r, 0, (0, 0), 0):
        total = float(coef[t].sum())
        assert np.allclose(p, [float((coef[t] * torch.tensor(rows)).sum()) / total,
                               float((coef[t] * torch.tensor(cols)).sum()) / total], atol=1e-5)


def test_dcnv3_points_past_the_edge_are_where_the_layer_samples():
    # DCNv3's sampling stage reads its held offsets and masks at the input's size: on the input extended with zeros
    # they did not grow with it, the extension gave up and its points stayed the means of the in-map cells (pulled
    # onto the edge, or missing). Hand count from the layer's own fields: point t of output o on channel c (group
    # g) samples o + s·(p_t + Δp_gt) − padding + the kernel's centre, with strength its softmax mask m_gt
    import math

    from test_viz_pictures import stage_reads

    from convzoo.viz.irregular import sampling_points

    r = stage_reads("dcnv3", 1)  # the sampling stage of the default picture's layer, as drawn
    layer = r.module.layer
    where, masks = layer.locations(r.module.held["fields"][:1])  # (1, G, H, W, K, (x, y)) in padded cells
    (ph, _), (pw, _) = layer.padding_pairs
    channels, past = r.input_shape[0], 0
    for o in [(0, 0), (0, 7), (7, 0), (7, 7), (3, 4)]:
        for c in range(channels):
            g = c // (channels // layer.groups)
            drawn = {t: (p, w) for t, p, w in sampling_points(r, c, o, c)}
            assert sorted(drawn) == list(range(layer.points)), (o, c)
            for t, (p, w) in drawn.items():
                x, y = where[0, g, o[0], o[1], t].tolist()
                want = [y - ph, x - pw]
                assert np.allclose(p, want, atol=1e-4), (o, c, t, p, want)
                assert math.isclose(w, float(masks[0, g, o[0], o[1], t]), abs_tol=1e-4), (o, c, t)
                past += not all(0 <= v <= 7 for v in want)
    assert past >= 20
