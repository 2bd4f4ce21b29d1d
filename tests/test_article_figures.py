"""``convzoo figures`` (issue 22): each new article figure keeps its idea (checked on the numbers the figure draws
and, for the dilated GIF, on its pixels), every title and caption is bilingual with no CJK glyph drawn as a box
(checked on rendered pixels), every figure is credited to a section or marked beyond the articles, and the
report compares no family with itself."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage, signal
from typer.testing import CliRunner

from convzoo.cli import app
from convzoo.viz import article_more as more
from convzoo.viz.article_figures import BEYOND, FIGURES, SAMPLING_PANELS, SAMPLING_SIZE, sampling_layer, \
    write_figures
from convzoo.viz.draw import tap_colours
from convzoo.viz.fonts import cjk_font, cjk_text, is_cjk, missing_glyphs
from convzoo.viz.irregular import sampling_points
from convzoo.viz.reads import analyse
from convzoo.viz.taps import taps

BY_NAME = {f.name: f for f in FIGURES}
CREDIT = re.compile(r"(00\d)( §\d+(\.\d+)?)?")


# --- credits and captions -------------------------------------------------------------------------------------------

def test_every_figure_is_credited_to_its_section_or_marked_beyond():
    for f in FIGURES:
        if f.beyond:
            assert f.name.startswith("beyond_") and "超出文章范围" in f.title("both") and BEYOND in f.title("en")
            continue
        first = f.credit.split(",")[0].strip()
        assert CREDIT.fullmatch(first), f.credit
        article, section = first[:3], first[5:]
        assert f.name.startswith(f"{article}-{section}_" if section else f"{article}_"), (f.name, f.credit)
    # involution appears in no article: credited to none (it was credited to 003 §2.3, which never mentions it)
    assert BY_NAME["beyond_involution-kernels"].beyond
    assert [f.name for f in FIGURES if f.beyond] == ["beyond_involution-kernels"]


def test_titles_and_captions_are_bilingual():
    for f in FIGURES:
        assert any(map(is_cjk, f.zh)) and not any(map(is_cjk, f.en)), f.name
        assert any(map(is_cjk, f.caption_zh)) and not any(map(is_cjk, f.caption)), f.name
        both = f.title("both")
        assert f.zh in both and f.en in both
        assert not any(map(is_cjk, f.title("en"))) and f.zh in f.title("zh")
        assert f.caption_text("both") == f"{f.caption_zh}\n{f.caption}"
    with pytest.raises(ValueError, match="lang='fr' must be one of zh, en, both"):
        FIGURES[0].title("fr")
    assert "深度可分离卷积 / depthwise separable convolution" in BY_NAME["000_depthwise-separable-12x12x3"].title()


def _glyph_tiles(chars: list[str], fonts: str) -> list[np.ndarray]:
    """Each character drawn alone at whole pixels in a 40×40 px tile, as a grey array; ``fonts``: 'captions' (as the
    figures draw: default font, CJK fallback), 'latin' (no CJK font) or 'cjk' (the CJK font alone)."""
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.transforms import IdentityTransform

    family = {"captions": None, "latin": ["DejaVu Sans"], "cjk": [cjk_font()[0]]}[fonts]
    with cjk_text(), matplotlib.rc_context({"font.family": family} if family else {}):
        fig = plt.figure(figsize=(0.4 * len(chars), 0.4), dpi=100)
        for i, ch in enumerate(chars):
            fig.text(40 * i + 8, 10, ch, fontsize=16, transform=IdentityTransform())
        fig.canvas.draw()
        pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].mean(-1)
        plt.close(fig)
    return [pixels[:, 40 * i:40 * (i + 1)] for i in range(len(chars))]


def test_no_cjk_glyph_renders_as_a_box():
    """Every Chinese character of every title and caption, drawn as the figures draw it, is the CJK font's own glyph:
    no missing-glyph warning, each tile equal to the CJK font's rendering and all of them different. A missing
    glyph is drawn as a box shared by a whole Unicode block, which the control without the font shows."""
    import matplotlib.font_manager as fm
    import pylopdf_fonts_zh_cn
    from matplotlib.ft2font import FT2Font

    name, path = cjk_font()
    # the pip package's own file, not a font the machine happens to have
    assert path.parent == __import__("pathlib").Path(pylopdf_fonts_zh_cn.__file__).parent
    assert fm.findfont(fm.FontProperties(family=name)) == str(path)
    used = sorted({ch for f in FIGURES for text in (f.title("both"), f.caption_text("both")) for ch in text
                   if is_cjk(ch)})
    assert len(used) > 150
    font = FT2Font(str(path))
    assert all(font.get_char_index(ord(ch)) for ch in used)
    with missing_glyphs() as warned:
        drawn = _glyph_tiles(used, "captions")
    assert warned == []
    own = _glyph_tiles(used, "cjk")
    assert [ch for ch, a, b in zip(used, drawn, own) if not np.array_equal(a, b)] == []
    assert len({t.tobytes() for t in drawn}) == len(used)
    assert all((t < 128).sum() > 3 for t in drawn)
    # the control: without the CJK font the same characters are a handful of boxes, and matplotlib warns
    with missing_glyphs() as warned:
        boxes = _glyph_tiles(used, "latin")
    assert warned and len({t.tobytes() for t in boxes}) < len(used) // 10


def test_a_rendered_title_has_every_glyph(tmp_path):
    fig = BY_NAME["001-2_multi-channel-partial-sums"]
    from convzoo.viz.draw import render

    with missing_glyphs() as warned:
        with cjk_text():
            mpl = render(fig.header("both", 45.0))
        mpl.savefig(tmp_path / "header.png")
    assert warned == []
    with Image.open(tmp_path / "header.png") as im:
        ink = (np.asarray(im.convert("L")) < 128).sum()
    assert ink > 2000  # the title and both captions were drawn


def test_cli_figures_lang_and_list(tmp_path):
    runner = CliRunner()
    for lang in ("zh", "en", "both"):
        out = tmp_path / lang
        result = runner.invoke(app, ["figures", "-o", str(out), "--only", "001-2_single-channel", "--lang", lang])
        assert result.exit_code == 0, result.output
        text = (out / "001-2_single-channel.txt").read_text(encoding="utf-8")
        assert ("单通道卷积" in text) == (lang != "en") and ("single-channel convolution" in text) == (lang != "zh")
        assert (out / "001-2_single-channel.png").stat().st_size > 10_000
    assert "单通道卷积 / single-channel convolution" in result.output
    listed = runner.invoke(app, ["figures", "--list"])
    assert listed.exit_code == 0
    for name in ("001-1_flip-and-slide", "001-2_multi-channel-partial-sums", "001-3_filter-depth-equals-input-depth",
                 "003-2.2_offset-field", "003-2.2_dilated-animation.gif"):
        assert name in listed.output
    assert "偏移场（2N 个通道） / the offset field (2N channels) — 文章 / article 003 §2.2" in listed.output
    bad = runner.invoke(app, ["figures", "--list", "--lang", "fr"])
    assert bad.exit_code == 2 and "lang='fr'" in bad.output and "Traceback" not in bad.output


# --- each figure's idea --------------------------------------------------------------------------------------------

def test_dilated_gif_walks_every_output_with_taps_two_apart(tmp_path):
    layer_taps = taps(more.dilated_layer(), more.DILATED_INPUT)[0, 0, 0, 0]  # output (0, 0)
    rows, cols = np.nonzero(layer_taps.numpy() >= 0)
    assert sorted(set(rows)) == [0, 2, 4] and sorted(set(cols)) == [0, 2, 4]
    path = write_figures(tmp_path, only=["003-2.2_dilated-animation"])[0]
    assert path.suffix == ".gif"
    with Image.open(path) as im:
        assert im.n_frames == 9  # one frame per position of the 3×3 output
        im.seek(0)
        frame = np.asarray(im.convert("RGB")).astype(int)
    colours = [np.array(c[:3]) * 255 for c in tap_colours(9)]

    def centres(t: int) -> list[tuple[float, float]]:
        labels, n = ndimage.label(np.abs(frame - colours[t]).max(-1) <= 10)
        return [(ys.mean(), xs.mean()) for ys, xs in (np.nonzero(labels == i) for i in range(1, n + 1))
                if len(ys) > 300]

    def spacings(a: int, b: int, along: int) -> list[float]:
        """Distances from tap a to tap b along ``along`` (1: x, 0: y) for cells aligned on the other axis."""
        return sorted(q[along] - p[along] for p in centres(a) for q in centres(b)
                      if abs(q[1 - along] - p[1 - along]) < 3 and q[along] > p[along])

    for a, b, along in ((0, 1, 1), (0, 3, 0)):
        kernel_step, input_step = spacings(a, b, along)  # the kernel grid, then the window on the input
        assert input_step / kernel_step == pytest.approx(2.0, abs=0.05)


def test_three_d_filter_as_deep_as_the_input_gives_a_2d_output():
    d = more.deep_filter_data(depth=3, size=5)
    assert d.kernel_shape[0] == d.input_shape[1] == 3
    assert d.output_shape == (1, 1, 3, 3) and d.equals_2d


@pytest.mark.parametrize("family, oracle", [("convolution", np.convolve), ("standard", np.correlate)])
def test_flip_and_slide_products_sum_to_the_oracle(family, oracle):
    d = more.flip_slide_data(family)
    assert np.allclose(d.products.sum(1), d.output)
    assert np.allclose(d.output, oracle(d.f, d.g, "valid"))
    k = len(d.g)
    met = d.taps[0][d.taps[0] >= 0].tolist()
    assert met == (list(range(k))[::-1] if family == "convolution" else list(range(k)))  # flipped or as stored
    for n in range(d.taps.shape[0]):  # the kernel slides one cell per shift
        assert np.nonzero(d.taps[n] >= 0)[0].tolist() == list(range(n, n + k))


def test_multi_channel_partials_sum_to_the_output():
    d = more.partials_data()
    for c in range(3):
        assert np.allclose(d.partials[c], signal.correlate2d(d.x[c], d.weight[c], "valid"))
    assert np.allclose(d.partials.sum(0) + d.bias, d.output)
    assert d.bias != 0 and all(np.abs(p).sum() > 0 for p in d.partials)


def test_offset_field_has_2n_channels_that_move_the_sampling_points():
    d = more.offset_field_data()
    c, h, w = d.x.shape[1:]
    assert d.taps == 9 and d.field.shape == (2 * d.taps, h, w)
    assert np.abs(d.field).max() > 0.5  # visible arrows
    r = analyse(d.layer, (c, h, w), x=d.x[0], illustrate=False)
    p = (2, 4)
    points = {t: q for t, q, _ in sampling_points(r, 0, p, 0)}
    for t in range(d.taps):
        dy, dx = t // 3 - 1, t % 3 - 1
        expected = np.array([p[0] + dy + d.field[2 * t, p[0], p[1]], p[1] + dx + d.field[2 * t + 1, p[0], p[1]]])
        if (expected >= 0).all() and (expected <= np.array([h, w]) - 1).all():
            assert np.allclose(points[t], expected, atol=1e-6), t


def test_grouped_figure_has_two_filter_groups_in_two_colours():
    from convzoo import build
    from convzoo.viz.connectivity import connectivity

    layer = build("grouped", 4, 4, 3, groups=2, padding=0)
    out_group, in_group = more.filter_groups(connectivity(layer, (4, 7, 7)).channel_map().numpy())
    assert out_group.tolist() == [0, 0, 1, 1] and in_group.tolist() == [0, 0, 1, 1]
    assert len(set(more.GROUP_COLOURS)) == 2


def test_separable_figures_draw_the_articles_kernels():
    from convzoo import build
    from convzoo.viz.article_figures import _kernel_shapes, _stage_modules

    for c_out, k in ((128, 3), (256, 5)):
        depthwise, pointwise = _stage_modules(build("depthwise_separable", 3, c_out, k, padding=0))[:2]
        assert _kernel_shapes(depthwise) == (3, 1, (k, k))  # 3 kernels k×k×1
        assert _kernel_shapes(pointwise) == (c_out, 3, (1, 1))  # then c_out kernels 1×1×3


def test_sampling_points_never_hide_one_another():
    for kind, _ in SAMPLING_PANELS:
        r = analyse(sampling_layer(kind), (1, SAMPLING_SIZE, SAMPLING_SIZE), illustrate=False)
        centre = (SAMPLING_SIZE // 2, SAMPLING_SIZE // 2)
        points = {t: q for t, q, _ in sampling_points(r, 0, centre, 0)}
        grid = {t: np.array(centre) + (t // 3 - 1, t % 3 - 1) for t in range(9)}
        assert len(points) == 9
        for a, b in itertools.combinations(range(9), 2):  # circles are ~0.7 cell wide
            assert np.linalg.norm(points[a] - points[b]) >= 0.99, (kind, a, b)
        for a, b in itertools.permutations(range(9), 2):  # and leave the other taps' grid points visible
            assert np.linalg.norm(points[a] - grid[b]) >= 0.45, (kind, a, b)


# --- the report ----------------------------------------------------------------------------------------------------

def test_report_compares_no_family_with_itself(tmp_path):
    from convzoo.viz.report import _speed_sentence, build_report, grid, macs_time_figure
    from convzoo.registry import family

    standard = {"family": "standard", "params": 10, "macs": 2_000_000, "mac_ratio": 1.0, "forward_ms": 2.0,
                "speed_ratio": 1.08}
    slow = {"family": "dilated", "params": 10, "macs": 2_000_000, "mac_ratio": 1.0, "forward_ms": 4.0,
            "speed_ratio": 0.5}
    assert "baseline" in _speed_sentence(standard, "x") and "faster" not in _speed_sentence(standard, "x")
    assert "ran 2× slower" in _speed_sentence(slow, "x") and "as fast" not in _speed_sentence(slow, "x")
    card = grid([family("standard")], {"standard": standard})
    assert "1.08" not in card and "the baseline" in card
    fig = macs_time_figure([standard, slow], "x")
    ax = fig.axes[0]
    line = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"][0]
    (x0, x1), (y0, y1) = line.get_xdata(), line.get_ydata()
    assert math.log(y1 / y0) / math.log(x1 / x0) == pytest.approx(1.0)  # slope 1 on the log-log axes
    assert y0 * 2.0 / x0 == pytest.approx(2.0)  # through standard's point (2 M MACs, 2 ms)
    html = build_report(tmp_path / "r.html", rows=[standard], names=["standard"], rows_source="t",
                        figures=["001-4_1x1-conv"], animations=False).read_text(encoding="utf-8")
    assert "1.08" not in html.split("<h2 id='plot'>")[0].split("<table>")[0]  # not in the cards
    assert "faster" not in html and "<td>baseline</td>" in html
    figure_html = html.split("<h2 id='figures'>")[1]
    assert figure_html.count("<figure") == 1 and figure_html.count("<figcaption>") == 1
    assert BY_NAME["001-4_1x1-conv"].caption not in figure_html.split("<figcaption>")[1]  # drawn in, once
    sizes = re.findall(r'<img alt="[^"]*" width="(\d+)" height="(\d+)" src="data:image/png;base64,([^"]+)"', html)
    import base64
    import io

    for w, h, data in sizes:  # embedded at native size
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert (im.width, im.height) == (int(w), int(h))
    assert len(sizes) == 3  # the plot, the family picture, the figure


def test_report_embeds_a_family_animation(tmp_path):
    from convzoo.viz.report import family_section
    from convzoo.registry import family

    section = family_section(family("pointwise"), None, "x")
    assert "pointwise animation" in section and "data:image/gif;base64," in section


def _numbers_after(texts: list[str], start: str, n: int) -> list[float]:
    """The first n numeric texts after the first text that begins with ``start``."""
    i = next(k for k, t in enumerate(texts) if t.startswith(start))
    return [float(t) for t in texts[i + 1:] if re.fullmatch(r"-?\d+(\.\d+)?", t)][:n]


def test_both_multi_channel_figures_give_the_same_output_and_say_the_bias(tmp_path):
    import xml.etree.ElementTree as ET

    names = ["001-2_multi-channel", "001-2_multi-channel-partial-sums"]
    write_figures(tmp_path, "svg", only=names, lang="en")
    texts = {n: [t.text for t in ET.parse(tmp_path / f"{n}.svg").getroot().iter() if t.tag.endswith("text") and t.text]
             for n in names}
    expected = more.partials_data().output.reshape(-1).tolist()
    assert _numbers_after(texts[names[0]], "OUTPUT 1×3×3", 9) == expected
    assert _numbers_after(texts[names[1]], "output = Σ partials + bias (1)", 9) == expected
    assert any("+ 1 (bias)" in t for t in texts[names[0]])  # the step picture's sum names the bias


def test_the_receptive_field_is_centred_on_its_grid():
    from torch import nn

    from convzoo import build
    from convzoo.viz.article_figures import RF_SIZE
    from convzoo.viz.connectivity import connectivity

    stack = nn.Sequential(*(build("dilated", 1, 1, 3, dilation=l) for l in (1, 2, 4)))
    seen = connectivity(stack, (1, RF_SIZE, RF_SIZE)).footprint().numpy()
    rows, cols = np.nonzero(seen.any(1))[0], np.nonzero(seen.any(0))[0]
    assert rows.max() - rows.min() + 1 == 15
    assert rows.min() == RF_SIZE - 1 - rows.max() >= 1 and cols.min() == RF_SIZE - 1 - cols.max() >= 1
