"""Every family's figure (PNG, SVG) and animation (GIF), the named special pictures and the ``convzoo viz`` command
produce valid, non-empty files: read back with Pillow (PNG/GIF) or parsed as XML (SVG)."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.viz import SPECIAL, LayerSpec, animate, render, special_figure
from convzoo.viz.animation import HOLD_MS, positions


def assert_png(path: Path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 100 and im.height > 100
        im.load()
        low, high = im.convert("L").getextrema()
        assert high - low > 100  # something is drawn, not a blank canvas


def assert_svg(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg") and len(list(root.iter())) > 20


def assert_gif(path: Path, frames: int) -> None:
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == frames
        im.seek(frames - 1)
        assert im.info["duration"] == HOLD_MS  # the last frame is held
        im.load()


@pytest.mark.parametrize("name,dim", [("standard", 1), ("transposed", 1), ("grouped", 3), ("dynamic", 3)])
def test_one_d_and_three_d(name, dim, tmp_path):
    spec = LayerSpec(name, 2, 2, dim=dim, size=3 if dim == 3 else 6).validate()
    assert_png(render(name, tmp_path / "f.png", spec))
    assert_svg(render(name, tmp_path / "f.svg", spec))


def test_positions_visit_every_output_in_raster_order_or_a_stated_step():
    every, step = positions((1, 4, 5), 64)
    assert step == 1 and every == [(r, c) for r in range(4) for c in range(5)]
    thinned, step = positions((1, 12, 12), 64)
    assert step == 2 and thinned == [(r, c) for r in range(0, 12, 2) for c in range(0, 12, 2)]


def test_gif_has_one_frame_per_output_position(tmp_path):
    layer = cz.build("standard", 1, 1, 3, padding=0)
    animate(layer, (1, 5, 5), tmp_path / "a.gif")  # 3×3 outputs
    assert_gif(tmp_path / "a.gif", 9)


@pytest.mark.parametrize("name", ["overlap", "sobel"])
def test_special_pictures(name, tmp_path):
    assert_png(render(name, tmp_path / "s.png"))


def test_special_names_are_kept():
    assert set(SPECIAL) == {"overlap", "checkerboard", "receptive_field", "deformable_sampling", "sobel"}


def _direct_overlap(k: int, s: int, n: int) -> torch.Tensor:
    """Inputs summed per output cell, counted directly: a transposed conv of ones with a kernel of ones."""
    return F.conv_transpose2d(torch.ones(1, 1, n, n), torch.ones(1, 1, k, k), stride=s).round().long()[0, 0]


@pytest.mark.parametrize("k, s", [(3, 2), (4, 2), (5, 3)])
def test_viz_overlap_draws_the_counts_of_the_asked_kernel_and_stride(k, s, tmp_path):
    result = CliRunner().invoke(app, ["viz", "overlap", "--kernel", str(k), "--stride", str(s),
                                      "-o", str(tmp_path / "o.png")])
    assert result.exit_code == 0, result.output
    figure = special_figure("overlap", kernel=k, stride=s)
    drawn = Counter(int(t.get_text()) for ax in figure.axes for t in ax.texts if t.get_text().isdigit())
    plt.close(figure)
    n = 5  # the input side the picture uses for these sizes
    expected = Counter(_direct_overlap(k, s, n).flatten().tolist())
    if k % s:  # the even counterpart is drawn beside an uneven kernel
        expected += Counter(_direct_overlap(s * -(-k // s), s, n).flatten().tolist())
    assert drawn == expected


def test_viz_overlap_and_checkerboard_differ_by_kernel_and_stride(tmp_path):
    runner = CliRunner()
    for name in ("overlap", "checkerboard"):
        digests = set()
        for args in (["--kernel", "2"], ["--kernel", "3"], ["--kernel", "5"], ["--kernel", "3", "--stride", "3"]):
            path = tmp_path / f"{name}{len(digests)}.png"
            result = runner.invoke(app, ["viz", name, *args, "-o", str(path)])
            assert result.exit_code == 0, result.output
            digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        assert len(digests) == 4, name


@pytest.mark.parametrize("args, words", [(["overlap", "--kernel", "0"], "--kernel 0 must be"),
                                         (["overlap", "--stride", "0"], "--stride 0 must be"),
                                         (["checkerboard", "--kernel", "-1"], "--kernel -1 must be"),
                                         (["overlap", "--padding", "1"], "--padding is not used"),
                                         (["sobel", "--kernel", "5"], "--kernel is not used")])
def test_viz_special_refuses_invalid_or_unused_options(args, words, tmp_path):
    result = CliRunner().invoke(app, ["viz", *args, "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and words in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


NO_WINDOW = [f.name for f in cz.families() if not f.window]


@pytest.mark.parametrize("name", NO_WINDOW)
def test_viz_refuses_a_kernel_for_a_family_with_no_window_and_draws_its_own(name, tmp_path):
    # a family whose layer sets its own kernel (Family.window False) drew its 1×1 or whole-map kernel whatever
    # --kernel said; the value asked is refused in one line, and left out the picture is drawn with the layer's kernel
    assert NO_WINDOW and "standard" not in NO_WINDOW
    for kernel in ("5", "3"):  # 3 too: the default kernel, but asked for
        result = CliRunner().invoke(app, ["viz", name, "--kernel", kernel, "-o", str(tmp_path / "x.png")])
        assert result.exit_code == 2 and not (tmp_path / "x.png").exists()
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
        assert f"family {name!r} takes no 'kernel' argument (--kernel {kernel} given)" in result.output
        assert "no window to choose" in result.output
    with pytest.raises(ValueError, match="takes no 'kernel'"):
        LayerSpec(name, 4, 4, 7).validate()
    ok = CliRunner().invoke(app, ["viz", name, "-o", str(tmp_path / "y.png")])
    assert ok.exit_code == 0, ok.output
    assert_png(tmp_path / "y.png")
    from convzoo.viz.reads import analyse

    spec = LayerSpec(name, 4, 4).validate()
    kernel = analyse(spec.build(), spec.input_shape).kernel_shape  # the window the picture draws, read from the taps
    assert tuple(kernel) in ((1, 1), (spec.size, spec.size))  # the layer's own: one pixel or the whole map


def test_cli_viz_writes_each_format(tmp_path):
    runner = CliRunner()
    cases = [(["hetconv", "--in", "4", "--out", "4", "--p", "2", "--size", "5"], "h.png", assert_png),
             (["transposed", "--in", "1", "--out", "1", "--stride", "2", "--kernel", "4", "--padding", "1",
               "--size", "2"], "t.gif", lambda p: assert_gif(p, 16)),
             (["dilated", "--in", "1", "--out", "1", "--dilation", "3", "--size", "7"], "d.svg", assert_svg)]
    for args, name, check in cases:
        result = runner.invoke(app, ["viz", *args, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        check(tmp_path / name)


@pytest.mark.parametrize("args,message", [
    (["grouped", "--groups", "4"], "groups=4 must divide"),
    (["global_depthwise", "--stride", "2"], "takes no 'stride'"),
    (["standard", "--size", "999"], "out of range"),
    (["nonsense"], "unknown family"),
    (["standard", "--input-values", "1,2;3"], "must be rectangular"),
    (["standard", "--input-values", "1,x"], "must be numbers"),
    (["standard", "--in", "1", "--out", "1", "--kernel-values", "1,2;3,4"], "kernel is (3, 3)"),
])
def test_cli_viz_rejects_bad_arguments(args, message, tmp_path):
    result = CliRunner().invoke(app, ["viz", *args, "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.png").exists()


DOCS_FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


@pytest.mark.parametrize("name", sorted(p.stem for p in DOCS_FIGURES.glob("*.png")))
def test_the_docs_figures_are_the_current_drawings(tmp_path, name):
    # the README and the docs show these four PNGs; drawn again they must not differ beyond anti-aliasing (a stale
    # copy kept the old sampling discs and caption layout after the pictures were fixed)
    from convzoo.viz.article_figures import write_figures

    write_figures(tmp_path, "png", only=[name], lang="en")
    redo = f"convzoo figures -o /tmp/f --lang en --only {name} && cp /tmp/f/{name}.png docs/figures/"
    with Image.open(DOCS_FIGURES / f"{name}.png") as old, Image.open(tmp_path / f"{name}.png") as new:
        assert abs(old.width - new.width) <= 2 and abs(old.height - new.height) <= 2, \
            f"docs/figures/{name}.png is {old.size}, drawn now {new.size}: {redo}"
        size = (min(old.width, new.width), min(old.height, new.height))
        a = np.asarray(old.convert("RGB"), dtype=np.int16)[:size[1], :size[0]]
        b = np.asarray(new.convert("RGB"), dtype=np.int16)[:size[1], :size[0]]
    strong = float((np.abs(a - b).max(-1) > 64).mean())  # pixels that changed colour, not just their edges' shade
    assert strong < 0.003, f"docs/figures/{name}.png differs from the drawing in {strong:.2%} of its pixels: {redo}"
