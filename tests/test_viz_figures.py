"""Every family's figure (PNG, SVG) and animation (GIF), every special picture and the ``convzoo viz`` command
produce valid, non-empty files: read back with Pillow (PNG/GIF) or parsed as XML (SVG)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.viz import SPECIAL, LayerSpec, animate, connectivity, connectivity_figure, render, special_figure
from convzoo.viz.animation import positions
from convzoo.viz.figures import save_figure

FAMILIES = [f.name for f in cz.families()]


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
        im.load()


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_png_svg_gif(name, tmp_path):
    spec = LayerSpec(name, 4, 4, size=6).validate()
    module = spec.build()
    conn = connectivity(module, spec.input_shape)
    for suffix in ("png", "svg"):
        save_figure(connectivity_figure(module, spec.input_shape, spec.label(), conn=conn), tmp_path / f"f.{suffix}")
    assert_png(tmp_path / "f.png")
    assert_svg(tmp_path / "f.svg")
    animate(module, spec.input_shape, tmp_path / "a.gif", spec.label(), max_frames=5, conn=conn)
    assert_gif(tmp_path / "a.gif", len(positions(conn.output_shape, 5)))  # global depthwise: 1 output position


@pytest.mark.parametrize("name,dim", [("standard", 1), ("transposed", 1), ("grouped", 3), ("dynamic", 3)])
def test_one_d_and_three_d(name, dim, tmp_path):
    spec = LayerSpec(name, 2, 4, dim=dim, size=4 if dim == 3 else 8).validate()
    assert_png(render(name, tmp_path / "f.png", spec))
    module = spec.build()
    animate(module, spec.input_shape, tmp_path / "a.gif", max_frames=3)
    assert_gif(tmp_path / "a.gif", 3)


@pytest.mark.parametrize("name", list(SPECIAL))
def test_special_pictures(name, tmp_path):
    save_figure(special_figure(name), tmp_path / "s.png")
    assert_png(tmp_path / "s.png")


def test_cli_viz_writes_each_format(tmp_path):
    runner = CliRunner()
    cases = [(["hetconv", "--in", "8", "--out", "8", "--p", "4"], "h.png", assert_png),
             (["transposed", "--stride", "2", "--kernel", "4", "--padding", "1", "--size", "4"], "t.gif", None),
             (["dilated", "--dilation", "3", "--size", "7"], "d.svg", assert_svg),
             (["sobel"], "s.svg", assert_svg)]
    for args, name, check in cases:
        result = runner.invoke(app, ["viz", *args, "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        if check:
            check(tmp_path / name)
        else:
            assert_gif(tmp_path / name, 40)  # 8×8 output positions, thinned to 40 frames


@pytest.mark.parametrize("args,message", [
    (["grouped", "--groups", "3"], "groups=3 must divide"),
    (["pointwise", "--stride", "2"], "takes no 'stride'"),
    (["standard", "--size", "999"], "out of range"),
    (["nonsense"], "unknown family"),
])
def test_cli_viz_rejects_bad_arguments(args, message, tmp_path):
    result = CliRunner().invoke(app, ["viz", *args, "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "x.png").exists()
