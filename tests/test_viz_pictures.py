"""Every family's mechanism is visible in its picture (issue 22): channels drawn as wiring (every group, the
shuffle's crossing lines, pass-through channels), each MixConv group in its own kernel frame, both selective-kernel
branches, ODConv's own four attentions, a dynamic sample whose attention chooses, branch kernels summed, sampling
points that never hide one another — and every default picture within 1600 × 1400 px, no two alike. Each test reads
what the drawing code computes from the real layer (or the SVG it writes), so it fails when the idea is lost."""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt
from PIL import Image

import convzoo as cz
from convzoo.cli.viz import default_spec
from convzoo.viz import layer_block, render
from convzoo.viz.draw import render as render_block
from convzoo.viz.draw import tap_colours
from convzoo.viz.irregular import DISC, MIN_ZOOM, ZOOM_CELLS, _points_layer, sampling_points, zoom_region
from convzoo.viz.layout import MAX_PX, pixels
from convzoo.viz.picture import Lambda, _stage_module, declared_stages, macs, titled
from convzoo.viz.reads import analyse, illustrative_copy
from convzoo.viz.stages_draw import one_read_kind
from convzoo.viz.windows import copies, window_groups
from convzoo.viz.wiring import colour_channels, reading


def svg_texts(path) -> list[str]:
    return [t.text for t in ET.parse(path).getroot().iter() if t.tag.endswith("text") and t.text]


@functools.lru_cache(maxsize=None)
def default_blocks(name: str):
    """The blocks ``convzoo viz NAME`` and ``convzoo viz NAME --no-title`` draw at their defaults."""
    from convzoo.viz import family_titles, picture_size

    spec = default_spec(name)
    spec.validate()
    spec.size = picture_size(spec)
    module = spec.build()
    body = layer_block(module, spec.input_shape)
    return titled(body, *family_titles(spec, module, spec.input_shape)), body


@functools.lru_cache(maxsize=None)
def drawn(name: str) -> tuple[list[str], tuple[int, int]]:
    """The texts of ``convzoo viz NAME -o x.svg`` and the pixel size of its PNG, from one drawing."""
    block = default_blocks(name)[0]
    fig = render_block(block)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    buffer.seek(0)
    return svg_texts(buffer), pixels(block)


def stage_reads(name: str, index: int, shape=(6, 8, 8), **kw):
    """The reads of main stage ``index`` of the default picture's layer, on the running sample, as drawn."""
    spec = default_spec(name, options=kw)
    spec.validate()
    model = illustrative_copy(spec.build(), shape, own=True)
    stages = [s for s in declared_stages(model) if not s.side]
    value = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for st in stages[:index]:
            value = st.fn(value)
        result = stages[index].fn(value)
    sub = _stage_module(stages[index], value, result)  # as the picture: the stage's sub-layer holds its sides
    return analyse(sub, tuple(value.shape[1:]), x=value[0], illustrate=False)


def test_mixconv_has_a_kernel_frame_per_group_at_that_groups_size():
    r = analyse(default_spec("mixconv").build(), (6, 8, 8))
    groups = window_groups(r)
    assert [g.reads.kernel_shape for g in groups] == [(3, 3), (5, 5), (7, 7)]
    assert [sorted({c for _, c in g.pairs.nonzero().tolist()}) for g in groups] == [[0, 1], [2, 3], [4, 5]]
    for g in groups:  # each frame numbers its own taps from 0, and they are the layer's group weights
        j, c = g.first_pair(0)
        k = g.reads.kernel_shape[0]
        assert int(g.reads.pair_taps()[j, c].sum()) == k * k
    texts = drawn("mixconv")[0]
    for k, (j, c) in zip((3, 5, 7), ((0, 0), (2, 2), (4, 4))):
        assert f"{k}×{k}" in texts and f"filter {j} on c{c}" in texts
    assert "48" in texts and "49" not in texts  # the 7×7 frame's last tap; no tap beyond a frame


def test_grouped_draws_every_group_and_depthwise_grouped_standard_differ_on_the_input_side():
    spec = default_spec("grouped", options={"groups": 3})
    r = analyse(spec.build(), (6, 8, 8))
    colouring = colour_channels(r, window_groups(r), None)
    assert colouring.groups == 3 and len(set(colouring.pairs.values())) == 3
    assert len(colouring.pairs) == 3 * 2 * 2  # every line of every group is drawn
    assert all(colouring.inputs) and all(colouring.outputs)  # every plane in its group's colour
    depthwise = analyse(default_spec("depthwise").build(), (6, 8, 8))
    for shown, said in ((colouring, "3 groups"), (colour_channels(depthwise, window_groups(depthwise), None), "6 groups")):
        swatches = next(colours for colours, text in shown.legend if said in text)
        assert sorted(swatches) == sorted(set(shown.pairs.values()))  # the legend shows each colour the lines use
    said = {name: reading(analyse(default_spec(name).build(), (6, 8, 8)), 0)
            for name in ("depthwise", "grouped", "standard")}
    assert said == {"depthwise": "output c0 reads 1 of 6 input channels (c0)",
                    "grouped": "output c0 reads 3 of 6 input channels (c0–c2)",
                    "standard": "output c0 reads all 6 input channels"}


def test_the_shuffle_draws_crossing_lines_that_keep_the_groups_colours():
    grouped, shuffle = stage_reads("shuffled_grouped", 0), stage_reads("shuffled_grouped", 1)
    assert one_read_kind(shuffle) == "permutation"
    before = colour_channels(grouped, window_groups(grouped), None)
    after = colour_channels(shuffle, [], before.carried, permutation=True)
    lines = sorted(after.pairs)  # (output, input)
    assert len(lines) == 6 and any(j != c for j, c in lines)
    assert any(j1 < j2 and c1 > c2 for (j1, c1), (j2, c2) in itertools.combinations(lines, 2))  # they cross
    assert all(after.pairs[(j, c)] == before.outputs[c] for j, c in lines)  # a line keeps its group's colour
    for k in range(2):  # each next group of 3 holds channels of both earlier groups
        assert len({after.outputs[j] for j in range(3 * k, 3 * k + 3)}) == 2
    texts = drawn("shuffled_grouped")[0]
    assert "next group 0" in texts and "next group 1" in texts
    assert not any("multiply-adds" in t for t in texts if "shuffle" in t)


def test_selective_kernel_draws_both_branches_and_their_attention():
    groups = window_groups(stage_reads("selective_kernel", 0))
    assert [g.name for g in groups] == ["3×3", "3×3 dilation 2"]
    assert groups[1].reads.geometry.b == (2, 2)
    first, second = ({j for j, _ in g.pairs.nonzero().tolist()} for g in groups)  # branch-major outputs (a
    assert first and second and first <= set(range(6)) and second <= set(range(6, 12))  # ReLU may idle one)
    texts = drawn("selective_kernel")[0]
    assert "3×3 dilation 2" in texts
    assert any("share of the 2 branches" in t for t in texts)
    shares = [t for t in texts if " / " in t]
    assert len(shares) == 6 and all(abs(sum(map(float, t.split(" / "))) - 1) < 0.02 for t in shares)


def test_a_stage_with_a_relu_shows_every_conv_channels_inputs_and_its_real_macs():
    # SK's split stage is conv → ReLU; on the drawn sample one channel's ReLU is idle everywhere (c5). Its conv still
    # reads all 6 inputs through 9 taps: 12 branch channels × 6 × 9 × 64 positions = 41,472 MACs (the layer's cost).
    r = stage_reads("selective_kernel", 0)
    assert r.channel_links().tolist() == [[9] * 6] * 12
    assert macs(r) == 12 * 6 * 9 * 64
    layer = default_spec("selective_kernel").build()
    assert macs(r) == sum(b.cost((1, 6, 8, 8)).macs for b in layer.branches)


def test_the_tap_legend_counts_the_taps_of_the_kernels_drawn():
    # both SK branches are drawn as 3×3 (taps 0–8), though the dilated one spans a 5×5 frame
    texts = drawn("selective_kernel")[0]
    assert "kernel tap 0 … 8 in reading order" in texts
    assert not any("kernel tap 0 … 24" in t for t in texts)


def test_odconv_has_its_own_drawing_with_four_attentions_and_no_sampling_terms():
    texts = drawn("odconv")[0]
    joined = " ".join(texts).lower()
    for word in ("sampling", "interpolation", "regular grid", "offset"):
        assert word not in joined, word
    for part in ("α_w(x): WEIGHTS FOR THIS SAMPLE", "α_s: one weight per kernel tap", "α_c: per input channel",
                 "α_f: per filter (output)", "KERNEL THE CONV APPLIES"):
        assert part in texts, part


def _bar_values(texts: list[str], names: list[str]) -> list[float]:
    return [float(texts[texts.index(n) + 1]) for n in names]


@pytest.mark.parametrize("name,symbol", [("dynamic", "π"), ("condconv", "r"), ("odconv", "α_w")])
def test_the_shown_sample_has_attention_weights_that_differ(name, symbol):
    texts = drawn(name)[0]
    weights = _bar_values(texts, [f"{symbol}{k}" for k in range(4)])
    assert max(weights) - min(weights) >= 0.1, weights
    assert any(t.startswith("sample: ") for t in texts)  # which sample is said
    if name == "dynamic":  # and that it is drawn at the end of the annealing, where the choice shows
        assert any(t.startswith("drawn at temperature T = 1") for t in texts)


def test_branch_kernels_add_up_to_the_stage_kernel_with_the_shared_taps_outlined():
    from convzoo.viz.parts import in_frame, parts_block

    for name, shared in (("acnet", {1, 3, 4, 5, 7}), ("repvgg", {4})):
        spec = default_spec(name)
        spec.validate()
        model = illustrative_copy(spec.build(), (6, 8, 8), own=True)
        stages = declared_stages(model)
        x = torch.rand(1, 6, 8, 8, generator=torch.Generator().manual_seed(1))
        parts = [analyse(Lambda(s.fn), (6, 8, 8), x=x[0], illustrate=False) for s in stages if s.side]
        total = analyse(Lambda(stages[-1].fn), (6, 8, 8), x=x[0], illustrate=False)
        assert len(parts) == (4 if name == "acnet" else 3) - (name == "acnet")  # RepVGG's identity is drawn
        frames = [in_frame(p, total, 0, 0) for p in parts]
        added = sum(~np.isnan(f) for f in frames)
        assert set(np.nonzero(added > 1)[0].tolist()) == shared  # ACNet's skeleton, RepVGG's centre
        np.testing.assert_allclose(np.nansum(frames, axis=0), total.pair_kernel[0, 0].numpy(), atol=1e-5)
        assert parts_block([(s.name, p) for s, p in zip([s for s in stages if s.side], parts)], total, 0) is not None


def test_large_kernel_picture_is_large_with_the_small_kernel_inside():
    spec = default_spec("large_kernel")
    layer = spec.build()
    assert layer.kernel_size == (11, 11) and layer.small_kernel == (5, 5)


def test_pass_through_channels_are_found_partial_and_ghost():
    partial = analyse(default_spec("partial").build(), (6, 8, 8))
    assert copies(partial).nonzero().tolist() == [[3, 3], [4, 4], [5, 5]]
    ghost = stage_reads("ghost", 1, shape=(6, 8, 8))
    assert copies(ghost).nonzero().tolist() == [[0, 0], [1, 1], [2, 2]]  # the primary maps, concatenated
    assert copies(stage_reads("shuffled_grouped", 0)).sum() == 0


def test_passed_through_channels_are_no_multiply_adds():
    # ghost stage 2: 3 intrinsic maps copied (drawn dashed, 'passes through') + 3 cheap depthwise 3×3 maps
    ghost = stage_reads("ghost", 1, shape=(6, 8, 8))
    assert macs(ghost) == 3 * 9 * 64
    assert macs(stage_reads("ghost", 0, shape=(6, 8, 8))) == 3 * 6 * 9 * 64  # the primary conv: no copies there


def test_resize_copies_name_every_input_cell_distinctly():
    # 4×4 = 16 input cells: a 12-colour palette would repeat row 0's colours in row 3
    from convzoo.viz.stages_draw import cell_colours

    assert len(set(cell_colours(16))) == 16 and len(set(cell_colours(30))) == 30
    texts = drawn("resize")[0]
    letters = [t for t in texts if len(t) == 1 and t.isalpha()]
    assert sorted(set(letters)) == list("abcdefghijklmnop")
    assert all(letters.count(a) == 1 + 4 for a in "abcdefghijklmnop")  # each cell once in the input, 4 copies


@pytest.mark.parametrize("name, stage", [("deformable", 0), ("deformable_v2", 0), ("dcnv3", 1)])
def test_sampling_points_are_enlarged_and_nothing_hides_another(name, stage):
    r = stage_reads(name, stage)
    position = (4, 4)  # the drawn output: the centre of the 8 × 8 map
    points = sampling_points(r, 0, position, 0)
    regular = dict(r.regular.window(position))
    r0, c0, nr, nc = zoom_region(points, regular, (8, 8))
    scale = max(MIN_ZOOM, ZOOM_CELLS / max(nr, nc))
    _, layout = _points_layer(points, regular, tap_colours(9), scale, (float(r0), float(c0)), True,
                              (nr * scale, nc * scale))
    assert len(layout.discs) == 9 and np.abs(np.array([p for _, p, _ in points]) % 1).max() > 0.05
    centres, radii = layout.obstacles()  # every dot, grid point and arrow (heads included)
    clear = np.hypot(*(layout.discs[:, None] - centres[None]).transpose(2, 0, 1)) - radii[None] - DISC / 2
    assert clear.min() > 0, f"a disc covers a point or an arrow by {-clear.min():.2f} cells"
    apart = np.hypot(*(layout.discs[:, None] - layout.discs[None]).transpose(2, 0, 1)) + np.eye(9) * 9
    assert apart.min() > DISC
    assert ((layout.discs >= DISC / 2 - 1e-9) & (layout.discs <= np.array([nr, nc]) * scale - DISC / 2 + 1e-9)).all()
    assert any(t.startswith("zoom ×") for t in drawn(name)[0])  # the enlarged view is drawn for every family


@pytest.mark.slow
def test_every_default_picture_fits_the_budget_and_no_two_look_alike(tmp_path):
    digests = {}
    for fam in cz.families():
        w, h = drawn(fam.name)[1]
        assert w <= MAX_PX[0] and h <= MAX_PX[1], (fam.name, w, h)
        fig = render_block(default_blocks(fam.name)[1])  # `convzoo viz NAME --no-title`
        fig.savefig(tmp_path / f"{fam.name}.png", dpi=100)
        plt.close(fig)
        with Image.open(tmp_path / f"{fam.name}.png") as im:
            digests[fam.name] = hashlib.sha256(im.convert("RGB").tobytes() + repr(im.size).encode()).hexdigest()
    same = [(a, b) for a, b in itertools.combinations(digests, 2) if digests[a] == digests[b]]
    assert not same, f"pixel-identical pictures: {same}"


@pytest.mark.parametrize("name", ["mixconv", "selective_kernel", "odconv"])
def test_the_largest_default_pictures_fit_1600_by_1400(name):
    w, h = drawn(name)[1]
    assert w <= MAX_PX[0] and h <= MAX_PX[1], (w, h)


def test_pixels_is_the_size_of_the_png(tmp_path):
    from convzoo.viz import family_titles

    spec = default_spec("grouped")
    spec.validate()
    module = spec.build()
    block = layer_block(module, spec.input_shape, *family_titles(spec, module, spec.input_shape))
    with Image.open(render("grouped", tmp_path / "g.png", default_spec("grouped"))) as im:
        assert abs(im.width - pixels(block)[0]) <= 1 and abs(im.height - pixels(block)[1]) <= 1


def test_more_planes_on_request(tmp_path):
    from typer.testing import CliRunner

    from convzoo.cli import app

    out = tmp_path / "g.svg"
    result = CliRunner().invoke(app, ["viz", "grouped", "--planes", "2", "--no-title", "-o", str(out)])
    assert result.exit_code == 0, result.output
    texts = svg_texts(out)
    assert "INPUT 6×8×8, padded to 10×10" in texts and "OUTPUT 6×8×8" in texts  # no longer one plane
    assert "INPUT 6×8×8 (plane c0), padded to 10×10" in drawn("grouped")[0]
    bad = CliRunner().invoke(app, ["viz", "grouped", "--planes", "0", "-o", str(out)])
    assert bad.exit_code == 2 and "planes=0" in bad.output and "Traceback" not in bad.output
