"""The drawings: every family's picture is distinct (``--no-title``), numbers mode reproduces the article's
output, stage pictures recompose to the layer, and ``convzoo figures`` writes every figure the articles describe."""

from __future__ import annotations

import hashlib
import itertools
import re
import xml.etree.ElementTree as ET
from decimal import Decimal

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.cli.viz import PICTURE_CHANNELS
from convzoo.layers.base import compose_stages
from convzoo.viz import LayerSpec, render
from convzoo.viz.article_figures import FIGURES, figure_names, write_figures
from convzoo.viz.picture import declared_stages
from convzoo.viz.reads import analyse

ARTICLE = ["--input-values", "3,3,2,1,0;0,0,1,3,1;3,1,2,2,3;2,0,0,2,2;2,0,0,0,1", "--kernel-values", "0,1,2;2,2,0;0,1,2"]


def svg_texts(path) -> list[str]:
    return [t.text for t in ET.parse(path).getroot().iter() if t.tag.endswith("text") and t.text]


def test_numbers_mode_reproduces_the_article(tmp_path):
    out = tmp_path / "a.svg"
    result = CliRunner().invoke(app, ["viz", "standard", "--in", "1", "--out", "1", "--padding", "0", *ARTICLE,
                                      "-o", str(out), "--no-title"])
    assert result.exit_code == 0, result.output
    texts = svg_texts(out)
    start = texts.index("OUTPUT 1×3×3")
    grid = [int(t) for t in texts[start + 2:start + 11]]  # after the title and the channel name c0
    assert grid == [12, 12, 17, 10, 17, 19, 9, 6, 14]
    assert "17 = 0·0 + 1·1 + 2·3 + 2·1 + 2·2 + 0·2 + 0·0 + 1·0 + 2·2" in texts  # the centre output, tap by tap
    assert not any(t.startswith("Standard convolution") for t in texts)  # --no-title


def test_true_convolution_numbers_use_the_flipped_kernel(tmp_path):
    out = tmp_path / "c.svg"
    CliRunner().invoke(app, ["viz", "convolution", "--in", "1", "--out", "1", "--padding", "0", *ARTICLE,
                             "-o", str(out)])
    texts = svg_texts(out)
    start = texts.index("OUTPUT 1×3×3")
    grid = np.array([float(t) for t in texts[start + 2:start + 11]]).reshape(3, 3)
    from scipy.signal import convolve2d

    x = np.array([[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]])
    assert np.array_equal(grid, convolve2d(x, np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]]), mode="valid"))


def _pixels(path) -> str:
    with Image.open(path) as im:
        return hashlib.sha256(im.convert("RGB").tobytes() + repr(im.size).encode()).hexdigest()


@pytest.mark.slow
def test_no_two_families_look_alike(tmp_path):
    digests = {}
    for fam in cz.families():
        spec = LayerSpec(fam.name, PICTURE_CHANNELS, PICTURE_CHANNELS, size=5)  # `convzoo viz NAME --no-title`
        digests[fam.name] = _pixels(render(fam.name, tmp_path / f"{fam.name}.png", spec, title=False))
    same = [(a, b) for a, b in itertools.combinations(digests, 2) if digests[a] == digests[b]]
    assert not same, f"pixel-identical pictures: {same}"


@pytest.mark.parametrize("names,channels", [(("standard", "convolution", "dilated"), 2),
                                            (("grouped", "depthwise"), PICTURE_CHANNELS),
                                            (("deformable", "deformable_v2"), 1)])
def test_look_alike_families_now_differ(names, channels, tmp_path):
    """The families the first pictures could not tell apart (issue 12)."""
    digests = {_pixels(render(n, tmp_path / f"{n}.png", LayerSpec(n, channels, channels, size=4), title=False))
               for n in names}
    assert len(digests) == len(names)


def _stage_families():
    out = []
    for fam in cz.families():
        layer = fam.build(4, 4, 3 if getattr(fam, "window", True) else None, 2 if 2 in fam.dims else fam.dims[0])
        if declared_stages(layer):
            out.append(fam.name)
    return out


@pytest.mark.parametrize("name", _stage_families())
def test_drawn_stages_recompose_to_the_layer(name):
    """What the picture draws stage by stage is the layer: its main stages composed give the layer's output."""
    layer = cz.build(name, 4, 4, 3 if getattr(cz.family(name), "window", True) else None).eval()
    x = torch.rand(2, 4, 6, 6)
    with torch.no_grad():
        assert torch.allclose(compose_stages(declared_stages(layer), x), layer(x), atol=1e-5)


def test_pair_kernels_are_the_layer_weights():
    """The kernel drawn for each channel pair is read back from the Jacobian; it equals the grouped weight."""
    layer = cz.build("grouped", 4, 4, 3, groups=2)
    r = analyse(layer, (4, 5, 5), illustrate=False)
    w = layer.weight.detach()
    for j, c in itertools.product(range(4), range(4)):
        if c // 2 == j // 2:
            assert torch.allclose(r.pair_kernel[j, c], w[j, c % 2].reshape(-1), atol=1e-6)
        else:
            assert torch.isnan(r.pair_kernel[j, c]).all()


REQUIRED = ["correlation-vs-convolution", "single-channel", "multi-channel", "3d-conv", "1x1-conv", "1d-conv",
            "transposed-2x2-to-4x4", "transposed-2x2-to-5x5", "conv-matrix", "overlap-1d-stride1",
            "overlap-1d-stride2", "overlap-2d", "checkerboard-image", "dilated-receptive-field", "sobel-separable",
            "scan-positions", "standard-vs-depthwise-separable", "depthwise-separable-12x12x3", "flattened",
            "grouped-2-groups", "shuffle-gconv1-gconv2", "pointwise-grouped", "gdc-vs-gap", "mixconv",
            "sampling-matrix-deformable", "dcnv2-modulation", "hetconv", "dynamic-attention", "involution-kernels",
            "flip-and-slide", "multi-channel-partial-sums", "filter-depth-equals-input-depth", "offset-field",
            "dilated-animation"]


def test_every_article_figure_is_registered_with_a_caption():
    names = figure_names()
    assert len(names) == len(set(names))
    for what in REQUIRED:
        assert any(re.fullmatch(rf"(\d{{3}}(-[\d.]+)?|beyond)_{re.escape(what)}", n) for n in names), what
    assert all(len(f.caption) > 40 for f in FIGURES)


def test_cli_figures_writes_figure_and_caption(tmp_path):
    result = CliRunner().invoke(app, ["figures", "-o", str(tmp_path), "--only", "001-6_conv-matrix",
                                      "--only", "001-6_overlap-1d-stride2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "001-6_conv-matrix.png").stat().st_size > 10_000
    assert "4×16" in (tmp_path / "001-6_conv-matrix.txt").read_text()
    assert "001-9_flattened" in (tmp_path / "captions.md").read_text()
    bad = CliRunner().invoke(app, ["figures", "-o", str(tmp_path), "--only", "nope"])
    assert bad.exit_code == 2 and "unknown figure" in bad.output and "Traceback" not in bad.output


@pytest.mark.slow
def test_cli_figures_writes_every_figure(tmp_path):
    paths = write_figures(tmp_path)
    assert sorted(p.stem for p in paths) == sorted(figure_names())
    for p in paths:
        with Image.open(p) as im:
            assert im.width > 200 and im.height > 100
        assert p.with_suffix(".txt").read_text().strip()


# --- issue 15: the pictures of sub-pixel, involution and DCNv3 show their mechanism ---------------------------------

def _stage_reads(layer, shape, index, illustrate=True):
    """The reads of main stage ``index`` as ``stage_picture`` draws them (illustrative copy, running sample)."""
    from convzoo.viz.picture import Lambda
    from convzoo.viz.reads import illustrative_copy

    model = illustrative_copy(layer, shape) if illustrate else layer.eval()
    stages = [s for s in model.stages() if not s.side]
    value = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for st in stages[:index]:
            value = st.fn(value)
    sub = stages[index].module if stages[index].module is not None else Lambda(stages[index].fn)
    return model, stages[index], value, analyse(sub, tuple(value.shape[1:]), x=value[0], illustrate=False)


@pytest.mark.parametrize("r", [2, 3])
def test_subpixel_picture_shows_the_pixel_shuffle_phases(r):
    from convzoo.viz.picture import Lambda
    from convzoo.viz.stages_draw import one_read_kind, phase_factor, source_channels

    layer = cz.build("subpixel", 2, 2, 3, upscale_factor=r)
    shuffle = declared_stages(layer)[-1]
    reads = analyse(Lambda(shuffle.fn), (2 * r * r, 3, 3), illustrate=False)
    assert one_read_kind(reads) == "interleave"  # not "copies": nearest upsampling would read one channel
    labels = source_channels(reads)
    assert len(np.unique(labels)) == r * r
    assert phase_factor(reads, labels) == (r, r)  # each channel fills one phase of every r×r cell
    upsample = declared_stages(cz.build("resize", 1, 1, 1))[0]
    nearest = analyse(Lambda(upsample.fn), (1, 3, 3), illustrate=False)
    assert one_read_kind(nearest) == "copies"


def test_involution_picture_draws_the_generated_kernel_differing_by_position():
    from convzoo.viz.position_kernels import interior_positions, position_kernels, position_kernels_block

    torch.manual_seed(0)
    layer = cz.build("involution", 4, 4, 3, groups=2, reduction=1)
    model, stage, x, reads = _stage_reads(layer, (4, 7, 7), 0)
    positions = interior_positions(reads)[:2] + interior_positions(reads)[-1:]
    c, kernels = position_kernels(stage.fn, x, reads, 3, positions)
    with torch.no_grad():
        generated = model.generator(x).reshape(2, 9, 7, 7)  # group-major, taps row-major
    for p, k in zip(positions, kernels):  # what is drawn is the generated kernel of output 3's group (1)
        np.testing.assert_allclose(k, generated[(1, slice(None), *p)].numpy(), rtol=1e-5, atol=1e-6)
    assert c == 3 and not np.allclose(kernels[0], kernels[-1], atol=1e-4)
    assert position_kernels_block(stage.fn, x, reads) is not None


def test_dcnv3_picture_draws_moved_sampling_points_per_group():
    from convzoo.viz.irregular import sampling_points
    from convzoo.viz.reads import ILLUSTRATED

    torch.manual_seed(0)
    layer = cz.build("dcnv3", 4, 4, 3, groups=2)
    model, _, _, reads = _stage_reads(layer, (4, 6, 6), 1)
    assert {"branch.offset", "branch.mask"} <= set(getattr(model, ILLUSTRATED))  # said in the caption
    g0 = np.array([p for _, p, _ in sampling_points(reads, 0, (3, 3), 0)])
    g1 = np.array([p for _, p, _ in sampling_points(reads, 2, (3, 3), 2)])
    assert len(g0) == len(g1) == 9
    assert np.abs(g0 - np.round(g0)).max() > 0.05  # fractional: off the integer grid
    assert np.abs(g0 - g1).max() > 0.05  # each group has its own offsets
    assert reads.regular is not None and reads.regular.kind == "gather"  # arrows start on the regular grid
    _, _, _, plain = _stage_reads(layer, (4, 6, 6), 1, illustrate=False)  # the layer as built: the regular grid
    grid = np.array([p for _, p, _ in sampling_points(plain, 0, (3, 3), 0)])
    np.testing.assert_allclose(grid, np.round(grid), atol=1e-5)


@pytest.mark.parametrize("name, k", [("dynamic", "num_kernels"), ("condconv", "num_experts"), ("odconv", "num_kernels")])
def test_kernel_bank_is_the_stacked_weight_and_feeds_the_k_kernels_picture(name, k):
    """``kernel_bank()`` is the (K, C_out, C_in/g, kh, kw) view of the stacked (K·C_out, …) weight, and the picture
    of the K kernels, the sample's weights and their sum is drawn from it (K × 6 × 6 × 3 × 3 by hand)."""
    from convzoo.viz.stages_draw import dynamic_block

    layer = cz.build(name, 6, 6, 3)
    count = getattr(layer, k)
    bank = layer.kernel_bank()
    assert bank.shape == (count, 6, 6, 3, 3)
    torch.testing.assert_close(bank[1, 2], layer.weight[6 + 2])  # kernel 1, filter 2 = stacked row 1·C_out + 2
    weights = torch.full((1, count), 1.0 / count)
    assert dynamic_block(layer, weights, 0, "side") is not None
    assert dynamic_block(cz.build("standard", 6, 6, 3), weights, 0, "side") is None  # one kernel: nothing to mix


def test_only_a_stage_declaring_a_per_position_kernel_gets_the_position_kernels_picture():
    """Involution declares it; families whose kernel is per sample (dynamic, CondConv) or whose stages hold a
    nonlinearity (selective kernel: conv → ReLU) do not — their Jacobians vary by position without a kernel that
    does (measured: CondConv 0.5–2 %, selective kernel 100 %)."""
    declared = {name: any(s.kernel_per_position for s in cz.build(name, 6, 6, 3).stages())
                for name in ("involution", "dynamic", "condconv", "odconv", "selective_kernel", "deformable")}
    assert declared == {"involution": True, "dynamic": False, "condconv": False, "odconv": False,
                        "selective_kernel": False, "deformable": False}


def test_pictures_are_drawn_from_a_fixed_seed():
    """The same spec builds the same parameters every time, and leaves the caller's random state as it was."""
    from convzoo.viz.spec import LayerSpec

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = LayerSpec("involution").build(), LayerSpec("involution").build()
    assert torch.equal(torch.rand(1), before)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    # a lazy layer (global depthwise) drew its kernel at its first forward, from whatever random state the
    # drawing found: its picture changed from run to run; now from the seed, whatever the state
    torch.manual_seed(1)
    c = LayerSpec("global_depthwise").build()
    torch.manual_seed(2)
    torch.rand(7)
    d = LayerSpec("global_depthwise").build()
    assert c.weight.shape[1:] == (1, 8, 8) and torch.equal(c.weight, d.weight) and torch.equal(c.bias, d.bias)


def test_numbers_keep_their_sign_and_fit_their_cells(tmp_path):
    from convzoo.viz.draw import CELL_TEXT_PT, _line_width_pt, fmt

    assert [fmt(v) for v in (1.0, 0.999, -0.29, -0.004, 0.76)] == ["1", "1", "-0.29", "-0.004", "0.76"]
    out = tmp_path / "n.svg"
    result = CliRunner().invoke(app, ["viz", "standard", "--kernel", "4", "--size", "6", "--padding", "0",
                                      "--numbers", "-o", str(out), "--no-title"])
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    numbers = []
    for t in root.iter():
        if t.tag.endswith("text") and t.text and re.fullmatch(r"-?[0-9.]+", t.text):
            size = float(re.search(r"font-size:\s*([0-9.]+)px", t.get("style", "")).group(1))  # SVG px = pt
            numbers.append((t.text, size))
    assert numbers and all(_line_width_pt(n, s, "normal") <= CELL_TEXT_PT + 1e-6 for n, s in numbers)
    assert all(s >= 9 for _, s in numbers) and not any(n.endswith(".") for n, _ in numbers)
    # the picked output's value is in its caption with the same sign
    caption = next(t.text for t in root.iter() if t.tag.endswith("text") and t.text and "= sum of" in t.text)
    value = float(caption.split(" = ")[0])
    shown = [n for n, _ in numbers if n.startswith("-") == (value < 0) and abs(float(n) - value) < 0.006]
    assert shown, (caption, numbers)


def test_padding_is_drawn_on_every_side_as_pytorch_pads(tmp_path):
    # size 6, stride 2, padding 1: PyTorch pads to 8×8; the windows reach only rows 0..6, so the last is never read
    from convzoo.viz.step import gather_input
    from convzoo.viz.window import drawn_padding

    layer = cz.build("standard", 1, 1, 3, stride=2, padding=1)
    r = analyse(layer, (1, 6, 6))
    assert r.geometry.padding() == ((1, 0), (1, 0))  # what the windows reach
    assert drawn_padding(r.geometry, r.module) == ((1, 1), (1, 1))
    block = gather_input(r, 0, (1, 1), False, [0])
    assert block.h >= 8 and block.w >= 8
    out = tmp_path / "p.svg"
    result = CliRunner().invoke(app, ["viz", "standard", "--in", "1", "--out", "1", "--size", "6", "--stride", "2",
                                      "--padding", "1", "-o", str(out), "--no-title"])
    assert result.exit_code == 0, result.output
    assert "INPUT 1×6×6, padded to 8×8; its last row and last column never read" in svg_texts(out)


def test_transposed_output_padding_is_zero_unless_asked(tmp_path):
    # conv_arithmetic's no-padding, stride-2 case: 3×3 → 7×7 (an output_padding of 1 would add a row and a column
    # that receive nothing); only the default build (no padding given) picks output_padding for an exact 2×
    assert cz.build("transposed", 1, 1, 3, stride=2, padding=0).output_padding == (0, 0)
    assert cz.build("transposed", 1, 1, 3, stride=2, padding=0, output_padding=1).output_padding == (1, 1)
    assert cz.build("transposed", 1, 1, 3).output_padding == (1, 1)
    out = tmp_path / "t.svg"
    result = CliRunner().invoke(app, ["viz", "transposed", "--in", "1", "--out", "1", "--size", "3", "--stride", "2",
                                      "--padding", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    texts = svg_texts(out)
    assert "OUTPUT 1×7×7" in texts and not any("output_padding" in t for t in texts)


def test_a_transposed_sum_counts_the_non_zero_products_as_the_overlap_does(tmp_path):
    from convzoo.viz.step import summed_text

    r = analyse(cz.build("transposed", 6, 6, 3, stride=2, padding=0), (6, 3, 3))
    overlap = int((r.index[(0, 3, 3, 0)] != -1).sum())  # input cells of one channel that reach output (3, 3)
    assert overlap == 1
    assert summed_text(r, 0, (3, 3)).split("\n") == ["Σ 6 products on input cells", "(54 counting the zeros)",
                                                     "over 6 channels"]
    write_figures(tmp_path, "svg", only=["001-6_transposed-2x2-to-5x5"], lang="en")
    texts = svg_texts(tmp_path / "001-6_transposed-2x2-to-5x5.svg")
    assert "Σ 4 products on input cells" in texts and "(9 counting the zeros)" in texts
    assert "Σ 9 products" not in texts


@pytest.mark.parametrize("size, padding, position, inside", [(2, 1, (1, 1), 4), (4, 1, (0, 0), 4), (4, 1, (0, 2), 6),
                                                             (5, 1, (2, 2), 9)])
def test_a_window_on_the_padding_counts_its_products_on_input_cells(size, padding, position, inside):
    from convzoo.viz.step import sum_line, summed_text

    # hand count: the 3×3 window at `position` of the padded input covers `inside` input cells per channel
    r = analyse(cz.build("standard", 2, 1, 3, padding=padding), (2, size, size))
    text = summed_text(r, 0, position).split("\n")
    if inside == 9:
        assert text == ["Σ 18 products", "over 2 channels"]
    else:
        assert text == [f"Σ {2 * inside} products on input cells", "(18 counting the zeros)", "over 2 channels"]
    line = sum_line(r, 0, position)
    assert ("on input cells" not in line) if inside == 9 else \
        f"sum of {2 * inside} kernel·input products on input cells (18 counting the zeros)" in line
    one = analyse(cz.build("standard", 1, 1, 3, padding=padding), (1, size, size))
    terms = re.split(" [=≈] ", sum_line(one, 0, position).split("\n")[0])[1].split(" + ")
    assert len([t for t in terms if "·" in t]) == inside  # the products with input cells, listed


@pytest.mark.parametrize("position", [(4, 4), (3, 3), (0, 0)])
def test_the_overlap_marks_the_output_drawn_with_its_count(position):
    # the default transposed conv (k 3, s 2, p 1, output_padding 1, 4×4 → 8×8): the outlined overlap cell is the
    # output the window is drawn for, and its count is how many input cells of one channel reach it (by hand)
    from matplotlib.patches import Rectangle

    from convzoo.viz.draw import plt, render
    from convzoo.viz.step import overlap_block

    r = analyse(cz.build("transposed", 1, 1, 3, stride=2, padding=1, output_padding=1), (1, 4, 4))
    fig = render(overlap_block(r, position=position))
    ax = fig.axes[0]
    frames = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_linewidth() > 2]
    assert len(frames) == 1
    x0, y0 = frames[0].get_xy()
    inside = [t.get_text() for t in ax.texts
              if x0 < t.get_position()[0] < x0 + 1 and y0 < t.get_position()[1] < y0 + 1]
    # output o = 2·i − 1 + t for input i and tap t in 0..2: the inputs that reach o per dim
    reach = [sum(1 for i in range(4) if 0 <= o + 1 - 2 * i <= 2) for o in position]
    assert inside == [str(reach[0] * reach[1])]
    plt.close(fig)


@pytest.mark.parametrize("position", [(3, 3), (2, 2), (2, 3), (0, 6)])
def test_a_transposed_sum_line_lists_the_stamped_products_and_the_bias(position):
    # y[o] = Σ_q w[o − 2q] x[q] + bias for k 3, s 2, p 0 (3×3 → 7×7): the input cells whose stamp lands on o, by
    # hand, their weights from the layer's own tensor, and the output and bias from F.conv_transpose2d
    from convzoo.viz.draw import fmt
    from convzoo.viz.step import sum_line

    layer = cz.build("transposed", 1, 1, 3, stride=2, padding=0)
    r = analyse(layer, (1, 3, 3))
    w, b = layer.weight.detach().double(), layer.bias.detach().double()
    y = torch.nn.functional.conv_transpose2d(r.x[None].double(), w, b, stride=2)[0, 0]
    stamped = [(q, tuple(o - 2 * v for o, v in zip(position, q))) for q in itertools.product(range(3), repeat=2)]
    products = [(float(w[0, 0, t[0], t[1]]), float(r.x[0, q[0], q[1]])) for q, t in stamped
                if all(0 <= v <= 2 for v in t)]
    assert len(products) == [1, 4, 2, 1][[(3, 3), (2, 2), (2, 3), (0, 6)].index(position)]
    bias = float(y[position]) - sum(p * v for p, v in products)
    assert abs(bias - float(b[0])) < 1e-5
    sign = f" + {fmt(bias)}" if bias >= 0 else f" − {fmt(-bias)}"
    # '=' only where the printed (rounded) numbers add up exactly, else '≈'
    added = sum(Decimal(fmt(p)) * Decimal(fmt(v)) for p, v in products) + \
        Decimal(sign.replace(" ", "").replace("−", "-"))
    equals = "=" if added == Decimal(fmt(float(y[position]))) else "≈"
    first = f"{fmt(float(y[position]))} {equals} " + " + ".join(f"{fmt(p)}·{fmt(v)}" for p, v in products) + \
        f"{sign} (bias)"
    assert sum_line(r, 0, position).split("\n") == [
        first, f"Σ {len(products)} product{'s' if len(products) > 1 else ''} on input cells (9 counting the zeros)"]
    many = analyse(cz.build("transposed", 2, 1, 3, stride=2, padding=0), (2, 3, 3))
    assert sum_line(many, 0, (2, 2)).startswith(f"{fmt(float(many.y[0, 2, 2]))} ≈ sum of 8 kernel·input products "
                                                "on input cells (18 counting the zeros) ")


@pytest.mark.parametrize("dim, dilation, kernel, size, field", [(2, 2, 3, 8, (5, 5)), (2, (3, 1), 3, 9, (7, 3)),
                                                                (1, 2, 3, 12, (5,)), (3, 2, 3, 5, (5, 5, 5)),
                                                                (2, 1, 3, 8, None)])
def test_a_dilated_window_outlines_and_names_the_field_one_output_reaches(dim, dilation, kernel, size, field):
    # the field is the bounding box of the input cells the drawn output depends on (torch autograd through the
    # layer), d·(k−1)+1 per dim by hand; a window without holes draws no field
    from matplotlib.patches import Rectangle

    from convzoo.viz.draw import plt, render
    from convzoo.viz.step import FIELD, field_text, gather_input

    layer = cz.build("dilated" if dilation != 1 else "standard", 1, 1, kernel, dim=dim, dilation=dilation,
                     padding="same")
    r = analyse(layer, (1, *(size,) * dim))
    position = r.centre()
    x = r.x[None].clone().requires_grad_(True)
    layer(x)[(0, 0, *position)].backward()
    hit = (x.grad[0, 0] != 0).nonzero()
    reached = tuple(int(hi - lo + 1) for lo, hi in zip(hit.min(0).values, hit.max(0).values))
    d = (dilation,) * dim if isinstance(dilation, int) else dilation
    assert reached == tuple(di * (kernel - 1) + 1 for di in d)
    fig = render(gather_input(r, 0, position, False, [0]))
    frames = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and p.get_edgecolor()[:3] ==
              pytest.approx(tuple(int(FIELD[i:i + 2], 16) / 255 for i in (1, 3, 5)))]
    plt.close(fig)
    text = field_text(r, position)
    if field is None:
        assert text == "" and frames == []
        return
    assert reached == field
    sides = [(round(p.get_height() - 0.24), round(p.get_width() - 0.24)) for p in frames]
    if dim == 3:  # one frame per depth slice of the field, each the field's rows × columns
        assert sides == [field[1:]] * field[0]
    else:
        assert sides == [field if dim == 2 else (1, field[0])]
    assert ("×".join(map(str, field)) + " field" if dim > 1 else f"a field of {field[0]} cells") in text
    assert f"{d[0]}·({kernel}−1)+1" in text


@pytest.mark.parametrize("size", [8, 11, 16])
def test_average_pooling_weight_is_printed_close_to_its_value(size, tmp_path):
    # the weight beside a global kernel is average pooling's, read from torch's own op (its gradient on one cell);
    # fmt's two decimals printed 1/64 as '= 0.02' (28 % off)
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    torch.nn.functional.adaptive_avg_pool2d(x, 1).sum().backward()
    weight = float(x.grad[0, 0, 0, 0])
    out = tmp_path / "g.svg"
    result = CliRunner().invoke(app, ["viz", "global_depthwise", "--in", "1", "--out", "1", "--size", str(size),
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    said = next(t for t in svg_texts(out) if "every weight" in t).split("every weight ")[1]
    n, rest = said.split(" ", 1)
    sign, value = rest.split(" ")
    assert n == f"1/{size * size}" and sign in ("=", "≈")
    if sign == "=":
        assert float(value) == weight
    else:
        assert float(value) != weight and abs(float(value) - weight) / weight < 0.05
        assert len(value.lstrip("0.")) == 2  # two significant digits


def _outlined_cells(fig) -> dict[tuple[float, float, int], list[tuple[int, int]]]:
    """Per drawn grid (its top-left corner and its number of cells): the (row, column) of each cell outlined thick
    (the output drawn, a position followed), read from the rendered figure's patches."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    ax = fig.axes[0]
    grids = []
    for coll in ax.collections:
        if isinstance(coll, PatchCollection) and coll.get_paths():
            corners = np.array([p.vertices.min(0) for p in coll.get_paths()])
            grids.append((corners, len(corners)))
    found: dict[tuple[float, float, int], list[tuple[int, int]]] = {}
    for p in ax.patches:
        if isinstance(p, Rectangle) and p.get_linewidth() > 2 and abs(p.get_width() - 0.88) < 1e-6:
            x, y = p.get_x() - 0.06, p.get_y() - 0.06
            for corners, n in grids:
                if np.any(np.all(np.abs(corners - (x, y)) < 1e-6, 1)):
                    ox, oy = corners.min(0)
                    found.setdefault((round(ox, 3), round(oy, 3), n), []).append((round(y - oy), round(x - ox)))
    return found


def test_the_pixel_shuffle_stage_follows_the_position_the_conv_stage_drew():
    # subpixel's default picture (6 → 6, r 2, 4×4 → 8×8): stage 1 draws one output of its 4×4 map; stage 2 must
    # outline that position in the 4 channels it interleaves and the 2×2 output cells F.pixel_shuffle fills from it
    from convzoo.viz.draw import plt, render
    from convzoo.viz.picture import stage_picture

    layer = cz.build("subpixel", 6, 6, 3)
    fig = render(stage_picture(layer, (6, 4, 4)))
    found = _outlined_cells(fig)
    plt.close(fig)
    conv_out = [cells for (_, y, n), cells in sorted(found.items(), key=lambda kv: kv[0][1]) if n == 16]
    first, inputs = conv_out[0], conv_out[1:]  # stage 1's output plane (drawn first, highest), then stage 2's inputs
    assert len(first) == 1 and len(inputs) == 4
    picked = first[0]
    assert all(cells == [picked] for cells in inputs)
    marked = torch.zeros(1, 24, 4, 4)
    marked[0, :4, picked[0], picked[1]] = 1  # the 4 channels output c0 reads (c·r² … c·r² + 3 for c = 0)
    expected = sorted(map(tuple, (torch.nn.functional.pixel_shuffle(marked, 2)[0, 0] != 0).nonzero().tolist()))
    # 8×8 grids: the interleaved output (the cells filled, outlined) and the whole layer's overlap (the output drawn)
    grids = sorted((cells for (_, _, n), cells in found.items() if n == 64), key=len)
    assert [len(g) for g in grids] == [1, 4]
    assert sorted(grids[1]) == expected and len(expected) == 4 and grids[0][0] in expected


def _count_grid(block, side: int) -> np.ndarray:
    """The numbers drawn in a counts panel (side × side cells), by position."""
    from convzoo.viz.draw import plt, render

    fig = render(block)
    found = sorted((round(t.get_position()[1], 2), round(t.get_position()[0], 2), int(t.get_text()))
                   for t in fig.axes[0].texts if t.get_text().isdigit())
    plt.close(fig)
    assert len(found) == side * side
    return np.array([v for _, _, v in found]).reshape(side, side)


@pytest.mark.parametrize("name, reach", [
    # output o reads, per dim, the input cells i of its 3×3 window: resize reads the upsampled cells o−1…o+1 (inside
    # the 8 cells), each a copy of input ⌊·/2⌋; subpixel reads the conv output ⌊o/2⌋, whose window is i = ⌊o/2⌋−1…+1
    ("resize", lambda o: {u // 2 for u in (o - 1, o, o + 1) if 0 <= u < 8}),
    ("subpixel", lambda o: {i for i in (o // 2 - 1, o // 2, o // 2 + 1) if 0 <= i < 4}),
])
def test_an_upsampling_composite_draws_the_whole_layers_overlap_beside_the_transposed_ones(name, reach):
    # the panel the transposed picture draws (input cells summed into each output cell), for the whole layer: every
    # output reads the same count inside the border, where the transposed conv's reads 1, 2 or 4 (by hand)
    from convzoo.viz.picture import layer_overlap
    from convzoo.viz.step import overlap_block

    layer = cz.build(name, 6, 6, 3)
    drawn = _count_grid(layer_overlap(layer, (6, 4, 4)), 8)
    expected = np.array([[len(reach(y)) * len(reach(x)) for x in range(8)] for y in range(8)])
    assert (drawn == expected).all()
    assert len(np.unique(drawn[2:6, 2:6])) == 1  # even inside
    transposed = analyse(cz.build("transposed", 1, 1, 3, stride=2, padding=1, output_padding=1), (1, 4, 4))
    uneven = _count_grid(overlap_block(transposed), 8)
    assert set(np.unique(uneven[2:6, 2:6]).tolist()) == {1, 2, 4}
    assert layer_overlap(cz.build("standard", 6, 6, 3), (6, 4, 4)) is None  # no growth, no panel
    from convzoo.viz.draw import plt, render
    from convzoo.viz.picture import stage_picture

    fig = render(stage_picture(layer, (6, 4, 4)))
    assert "WHOLE LAYER (6×4×4 → 6×8×8): OVERLAP" in [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
