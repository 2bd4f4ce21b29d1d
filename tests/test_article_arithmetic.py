"""Figures of viz/article_arithmetic: every number they draw comes from the real layers and agrees with an
independent check (the size formulas, F.conv2d / F.conv_transpose2d, a hand placement of each stamp, the MobileNet
cost formulas, hook counts and the paper's Tables 6 and 7); each figure renders with legible, unclipped text."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from convzoo.models import mobilenet_v1
from convzoo.viz import article_arithmetic as aa
from convzoo.viz import article_figures
from convzoo.viz.draw import SMALL, plt
from convzoo.viz.fonts import is_cjk

BY_NAME = {f.name: f for f in aa.FIGURES}


# --- (a) padding and stride ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", aa.PADDING_CASES, ids=lambda c: c.letter)
def test_padding_stride_sizes_are_the_layers_and_the_formula(case):
    d = aa.padding_stride_data(case)
    lo, hi = d.p
    want = {"a": (0, 3), "b": (1, 5), "c": (2, 7), "d": (1, 3), "e": (1, 3)}[case.letter]
    assert (lo, d.o) == want and lo == hi
    assert d.o == (d.i + lo + hi - d.k) // d.s + 1  # o = ⌊(i + 2p − k)/s⌋ + 1
    x = torch.rand(1, 1, d.i, d.i)
    assert F.conv2d(x, torch.ones(1, 1, d.k, d.k), stride=d.s, padding=lo).shape[-2:] == (d.o, d.o)
    # the special forms the panels name
    if case.letter == "a":
        assert d.o == d.i - d.k + 1 and d.formula.endswith(f"= {d.i} − {d.k} + 1 = {d.o}")
    if case.letter == "b":
        assert d.o == d.i and d.formula.endswith(f"= {d.o} = i")
    if case.letter == "c":
        assert lo == d.k - 1 and d.o == d.i + d.k - 1 and d.formula.endswith(f"= {d.i} + {d.k} − 1 = {d.o}")
    if case.letter in "de":
        assert f"⌊({d.i} + {2 * lo} − {d.k})/{d.s}⌋ + 1" in d.formula and d.formula.endswith(f"= {d.o}")
    assert d.pads == ((lo, hi), (lo, hi))


@pytest.mark.parametrize("case", aa.PADDING_CASES, ids=lambda c: c.letter)
def test_padding_stride_window_and_unread_padding(case):
    d = aa.padding_stride_data(case)
    lo = d.p[0]
    last = d.o - 1
    # the last output's window by hand: tap (u, v) reads input (s·o + u − p, s·o + v − p), row-major tap order
    hand = [(d.k * u + v, (d.s * last + u - lo, d.s * last + v - lo)) for u in range(d.k) for v in range(d.k)]
    assert sorted(d.window) == sorted(hand)
    # the cells some window reads: rows s·o + u of the padded plane, o < O, u < k
    rows = sorted({d.s * o + u for o in range(d.o) for u in range(d.k)})
    side = d.i + 2 * lo
    assert np.array_equal(d.read, np.outer(np.isin(np.arange(side), rows), np.isin(np.arange(side), rows)))
    # only the stride-2 even input leaves padding unread: its last row and column
    assert d.unread == ((1, 1) if case.letter == "e" else (0, 0))
    # the window's values are the layer's: a one-hot kernel at tap t moves input (q) to the last output
    x = torch.arange(1.0, d.i * d.i + 1).reshape(1, 1, d.i, d.i)
    for t, (qr, qc) in d.window:
        w = torch.zeros(1, 1, d.k, d.k)
        w.view(-1)[t] = 1
        with torch.no_grad():
            d.layer.weight.copy_(w)
            y = d.layer(x)[0, 0, last, last].item()
        inside = 0 <= qr < d.i and 0 <= qc < d.i
        assert y == (x[0, 0, qr, qc].item() if inside else 0.0)


# --- (b) transposed conv as stamps -----------------------------------------------------------------------------------

def test_scatter_stamps_running_sum_and_output():
    d = aa.scatter_data()
    x, k, s = np.array(aa.SCATTER_X, float), np.array(aa.SCATTER_K, float), aa.SCATTER_STRIDE
    n = (x.shape[0] - 1) * s + k.shape[0]
    assert d.output.shape == (n, n) == (5, 5)
    assert np.array_equal(d.kernel, k)
    total = np.zeros((n, n))
    for j, (r, c) in enumerate(d.cells):
        hand = np.zeros((n, n))
        hand[s * r:s * r + 3, s * c:s * c + 3] = x[r, c] * k  # the stamp, placed by hand
        assert np.array_equal(d.stamps[j], hand)
        taps = -np.ones((n, n), int)
        taps[s * r:s * r + 3, s * c:s * c + 3] = np.arange(9).reshape(3, 3)
        assert np.array_equal(d.tap[j], taps)
        total += hand
        assert np.array_equal(d.running[j], total)
    ref = F.conv_transpose2d(torch.tensor(x)[None, None], torch.tensor(k)[None, None], stride=s)[0, 0].numpy()
    assert np.array_equal(d.output, ref) and np.array_equal(total, ref)
    assert aa._checked(d) == "equals"
    assert d.output.tolist() == [[2, 4, 3, 2, 1], [6, 2, 7, 1, 2], [5, 4, 12, 7, 6], [3, 1, 11, 3, 6],
                                 [2, 1, 9, 3, 9]]


def test_scatter_overlap_counts_are_uneven_for_k3_s2():
    d = aa.scatter_data()
    one_d = np.array([1, 1, 2, 1, 1])  # inputs whose stamp covers each output row (k = 3, s = 2, two inputs)
    assert np.array_equal(d.counts, np.outer(one_d, one_d))
    assert np.array_equal(d.counts, (d.tap >= 0).sum(0))
    assert sorted(set(d.counts.ravel().tolist())) == [1, 2, 4]
    even = aa.scatter_data(kernel=[[1, 1], [1, 1]])  # k = 2, s = 2: every cell one stamp
    assert set(even.counts.ravel().tolist()) == {1}


def test_scatter_animation_frames(tmp_path):
    fig = BY_NAME["001-6_transposed-scatter-animation"]
    path = fig.write(tmp_path)
    assert path.suffix == ".gif" and (tmp_path / f"{fig.name}.txt").exists()
    with Image.open(path) as im:
        sizes, durations = [], []
        for i in range(im.n_frames):
            im.seek(i)
            sizes.append(im.size)
            durations.append(im.info["duration"])
    assert im.n_frames == len(aa.SCATTER_X) ** 2 + 1  # one frame per stamp, then the output
    assert len(set(sizes)) == 1 and durations[-1] > durations[0]
    with pytest.raises(ValueError, match="must end in .gif"):
        aa.scatter_animation(tmp_path / "x.png")


# --- (c) MobileNet ---------------------------------------------------------------------------------------------------

def test_mobilenet_block_cost_matches_the_formulas():
    d = aa.mobilenet_cost_data()
    k, m, n, f = d.d_k, d.m, d.n, d.d_f
    assert (k, m, n, f) == (3, 512, 512, 14)
    assert d.standard == k * k * m * n * f * f == 462_422_016
    assert d.depthwise == k * k * m * f * f == 903_168
    assert d.pointwise == m * n * f * f == 51_380_224
    assert d.ratio == pytest.approx(1 / n + 1 / k ** 2, rel=1e-12)
    assert d.filters == {"standard": (n, m, k, k), "depthwise": (m, 1, k, k), "pointwise": (n, m, 1, 1)}


def _hook_macs(model: nn.Module, res: int) -> int:
    """Conv and linear weight MACs by forward hooks: output elements × (C_in / groups) × kernel taps."""
    total = 0

    def hook(module, args, out):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += out.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, res, res))
    for h in handles:
        h.remove()
    return total


# The paper's Table 6 (width α at 224) and Table 7 (resolution at α = 1): million mult-adds, million parameters.
TABLE_6 = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}
TABLE_7 = {224: (569, 4.2), 192: (418, 4.2), 160: (290, 4.2), 128: (186, 4.2)}


def test_width_and_resolution_match_the_paper_and_a_hook_count():
    widths, resolutions = aa.width_resolution_data()
    assert [w.alpha for w in widths] == list(TABLE_6) and [r.resolution for r in resolutions] == list(TABLE_7)
    for row, (macs, params) in [*zip(widths, TABLE_6.values()), *zip(resolutions, TABLE_7.values())]:
        assert abs(row.macs / 1e6 - macs) < 1.0, (row, macs)  # the paper rounds to whole millions
        assert abs(row.params / 1e6 - params) <= 0.05 + 1e-9, (row, params)  # … and to 0.1 M
    assert widths[0].macs == 568_740_352
    # the parameters do not depend on the resolution
    assert len({r.params for r in resolutions}) == 1
    # one width and one resolution counted again, independently of convzoo.cost
    for alpha, res, row in ((0.5, 224, widths[2]), (1.0, 128, resolutions[3])):
        model = mobilenet_v1(alpha, res)
        assert _hook_macs(model, res) == row.macs
        assert sum(p.numel() for p in model.parameters()) == row.params


# --- every figure: renders, legible, unclipped, bilingual, placed in the registry --------------------------------------

@pytest.mark.parametrize("name", [f.name for f in aa.FIGURES if f.make is not None])
def test_figure_renders_legible_and_unclipped(name):
    fig = BY_NAME[name].figure()
    try:
        assert isinstance(fig, Figure)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        texts = [t for ax in fig.axes for t in ax.texts] + list(fig.texts)
        assert texts
        for t in texts:
            if not t.get_text().strip():
                continue
            assert t.get_fontsize() >= SMALL - 1e-9, (t.get_text(), t.get_fontsize())
            e = t.get_window_extent(renderer)
            assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, \
                t.get_text()
    finally:
        plt.close(fig)


def test_panel_titles_show_the_layers_numbers():
    """The panel formulas are drawn: every PADDING_CASES formula appears as text in the padding figure."""
    fig = BY_NAME["001-5_padding-and-stride"].figure()
    try:
        drawn = {t.get_text() for ax in fig.axes for t in ax.texts}
    finally:
        plt.close(fig)
    for case in aa.PADDING_CASES:
        assert aa.padding_stride_data(case).formula in drawn


CREDIT = re.compile(r"(00\d)( §\d+(\.\d+)?)?")


def test_credits_captions_and_registry_place():
    for f in aa.FIGURES:
        first = f.credit.split(",")[0].strip()
        assert CREDIT.fullmatch(first), f.credit
        article, section = first[:3], first[5:]
        assert f.name.startswith(f"{article}-{section}_" if section else f"{article}_"), (f.name, f.credit)
        assert any(map(is_cjk, f.zh)) and not any(map(is_cjk, f.en))
        assert any(map(is_cjk, f.caption_zh)) and not any(map(is_cjk, f.caption))
    names = [f.name for f in aa.joined(article_figures.FIGURES)]  # the registry has them joined already
    assert names == [f.name for f in article_figures.FIGURES] and len(names) == len(set(names))
    assert {f.name for f in aa.FIGURES} <= set(names)
    for mine, anchor in aa.AFTER.items():
        assert names.index(mine) == names.index(anchor) + 1
    # joining twice changes nothing; an unknown anchor is refused by name
    assert [f.name for f in aa.joined(aa.joined(article_figures.FIGURES))] == names
    with pytest.raises(ValueError, match="003-1.1_1d-conv"):
        aa.joined([f for f in article_figures.FIGURES if f.name != "003-1.1_1d-conv"])


def test_write_still_figure(tmp_path):
    f = BY_NAME["001-6_transposed-scatter"]
    path = f.write(tmp_path)
    assert path.suffix == ".png" and path.stat().st_size > 10_000
    assert (tmp_path / f"{f.name}.txt").read_text(encoding="utf-8") == f"{f.title()}\n{f.caption_text()}\n"
