"""The documentation site (``make docs``): the docstring gate, the generated pages, and the built site in headless
Chromium.

The cheap tests (docstring gate, generated API/gallery page lists) run in ``make test``. The browser test opens the
site that ``make docs`` built under ``site/``; without a built site it is skipped with the reason, unless
``CONVZOO_DOCS_REQUIRED=1`` (set by ``.ci/run`` after it builds the docs), where a missing site fails.
"""

from __future__ import annotations

import functools
import http.server
import logging
import os
import re
import shutil
import time
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import load_docs_hook

import convzoo as cz

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "site"
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def hook():
    return load_docs_hook("convzoo_docs")


def test_every_public_name_has_a_docstring(hook):
    assert hook.undocumented(cz) == []


@pytest.mark.parametrize("name", ["Conv2d", "DepthwiseSeparableConv2d", "cost", "families", "functional"])
def test_deleting_a_public_docstring_fails_the_strict_build(hook, monkeypatch, caplog, name):
    """A public name whose docstring is deleted is reported as a warning on the ``mkdocs`` logger, which
    ``mkdocs build --strict`` (``make docs``) counts and turns into a failed build."""
    monkeypatch.setattr(getattr(cz, name), "__doc__", None)
    assert f"convzoo.{name}" in hook.undocumented(cz)
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        hook.check_docstrings(cz)
    record = next(r for r in caplog.records if f"convzoo.{name} " in r.getMessage())
    assert record.levelno == logging.WARNING and record.name.startswith("mkdocs.")


def test_strict_mode_counts_the_hook_warnings(hook):
    """The mechanism strict mode relies on: mkdocs counts WARNING records of the ``mkdocs`` logger tree."""
    utils = pytest.importorskip("mkdocs.utils", reason="mkdocs is not installed (pip install -e '.[docs]')")
    CountHandler = utils.CountHandler  # the handler strict mode counts with (mkdocs.commands.build)

    counter = CountHandler()
    logging.getLogger("mkdocs").addHandler(counter)
    try:
        hook.log.warning("convzoo docs: test warning")
    finally:
        logging.getLogger("mkdocs").removeHandler(counter)
    assert counter.get_counts() == [("WARNING", 1)]


def test_api_pages_cover_every_public_name(hook):
    pages = hook.api_pages(cz)
    text = "\n".join(pages.values())
    for name in cz.__all__:
        assert f"::: convzoo.{name}\n" in text or f"::: convzoo.{name}\n    options" in text, name
    import convzoo.viz as viz

    for name in viz.__all__:
        assert f"::: convzoo.viz.{name}" in text, name


def test_every_family_is_named_by_a_tutorial_or_gets_its_generated_page(hook):
    """Tutorials declare their families ("Families: `a`, `b`"); every name they declare is registered."""
    declared = hook.tutorials_by_family()
    registered = {f.name for f in cz.families()}
    assert set(declared) <= registered, set(declared) - registered
    assert "depthwise_separable" in declared


def test_depthwise_separable_tutorial_prints_the_numbers_from_cost():
    """The tutorial's 86,400 and 10,275 come from convzoo.cost, not from the text."""
    script = (ROOT / "examples" / "tutorials" / "plot_09_depthwise_separable.py").read_text(encoding="utf-8")
    assert "cz.cost(standard, x_shape)" in script and "86,400" not in script.split('"""', 2)[2].split("print")[0]
    assert cz.cost(cz.Conv2d(3, 128, 3, bias=False), (1, 3, 7, 7)).macs == 86_400
    assert cz.cost(cz.DepthwiseSeparableConv2d(3, 128, 3, bias=False), (1, 3, 7, 7)).macs == 10_275


# ------------------------------------------------------------------------------------------- the built site
def _wait_for_the_site_build() -> None:
    """`make test` builds the site beside the tests and names its status file in CONVZOO_SITE_BUILD: wait until
    the build has finished (its exit status in STATUS.rc) and fail with the end of its log if it failed."""
    status = os.environ.get("CONVZOO_SITE_BUILD")
    if not status:
        return
    rc, log = Path(f"{status}.rc"), Path(f"{status}.log")
    deadline = time.monotonic() + 1800
    while not rc.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"the docs build has not finished after 30 minutes ({rc} missing)")
        time.sleep(1.0)
    if rc.read_text().strip() != "0":
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        pytest.fail(f"the docs build failed (exit status {rc.read_text().strip()}):\n{tail}")


def _site_or_skip() -> Path:
    _wait_for_the_site_build()
    if not (SITE / "index.html").exists():
        if os.environ.get("CONVZOO_DOCS_REQUIRED") == "1":
            pytest.fail("CONVZOO_DOCS_REQUIRED=1 but site/index.html is missing: `make docs` did not build")
        pytest.skip("SKIPPED: the docs site is not built (run `make docs` first); docs browser test not run")
    return SITE


@pytest.fixture(scope="module")
def site_server():
    site = _site_or_skip()
    handler = functools.partial(_QuietHandler, directory=str(site))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D401  (keep pytest output clean)
        pass


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium); docs browser test not run")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def _gallery_tutorial() -> str:
    return "generated/tutorials/plot_09_depthwise_separable/"


@pytest.mark.browser
@pytest.mark.parametrize("page_path", ["", _gallery_tutorial(), "generated/tutorials/plot_00_eight_types/", "gallery/",
                                       "pictures/", "families/standard/", "guide/pictures-and-explorer/"])
def test_site_pages_load_every_image_without_errors_or_outside_requests(site_server, browser, page_path):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))

    def check(request) -> None:
        url = urlparse(request.url)
        if url.scheme not in ("data", "blob") and f"{url.scheme}://{url.netloc}" != site_server:
            outside.append(request.url)

    page.on("request", check)
    response = page.goto(f"{site_server}/{page_path}", wait_until="networkidle")
    assert response is not None and response.ok, page_path
    # every content picture is a lazy-loaded link to its own full-size file (none of these pages shows a tutorial
    # thumbnail, which stays unlinked inside its card); read before the pictures are made eager below
    unlinked = page.evaluate("""() => [...document.querySelectorAll('article img')].filter(i => {
                                  const a = i.closest('a');
                                  return !(a && a.href === i.src && i.getAttribute('loading') === 'lazy'); })
                                .map(i => i.getAttribute('src'))""")
    # lazy images: scroll through the page so that every one is requested, then wait for them
    page.evaluate("""async () => { for (let y = 0; y < document.body.scrollHeight; y += 600) {
                       window.scrollTo(0, y); await new Promise(r => setTimeout(r, 30)); } }""")
    page.evaluate("""() => Promise.all([...document.images].map(i => { i.loading = 'eager';
                       return i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; }); }))""")
    images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"docs-{Path(page_path).name or 'home'}.png"), full_page=False)
    page.close()
    assert images, f"{page_path}: no images"
    assert [src for src, width in images if not width] == [], f"{page_path}: images that did not load"
    assert errors == [], errors
    assert outside == [], f"requests leaving the local server: {outside}"
    if page_path == "gallery/":
        assert len([s for s, _ in images if "families/" in s]) == len(cz.families())
    assert unlinked == [], f"{page_path}: pictures that are not lazy links to their full size: {unlinked}"
    gifs = [src for src, _ in images if src.endswith(".gif")]
    if page_path == "pictures/":  # the animation gallery: every family's GIF, drawn at build time
        hook = load_docs_hook("convzoo_docs")
        assert sorted(Path(src).stem for src in gifs) == sorted(a.slug for a in hook.ANIMATIONS)
    if page_path == "families/standard/":
        assert any(src.endswith("standard-stride-2.gif") for src in gifs), gifs


SHIM = '''
import importlib.util, sys
import convzoo  # the copy on PYTHONPATH
spec = importlib.util.spec_from_file_location("convzoo_docs_hook", {hook!r})
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)

def on_config(config, **kwargs):
    hook.check_docstrings(convzoo)
    return config
'''


@pytest.mark.parametrize("delete", [False, True])
def test_strict_build_fails_when_a_source_docstring_is_deleted(tmp_path, delete):
    """End to end through ``mkdocs build --strict``: a copy of the sources with one public docstring deleted
    (Conv2d's) fails the build and names it; the untouched copy builds. (A one-page site with the docstring gate
    only, so that the test stays cheap; ``make docs`` runs the same gate before the full site.)"""
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    import subprocess
    import sys

    shutil.copytree(ROOT / "src" / "convzoo", tmp_path / "src" / "convzoo",
                    ignore=shutil.ignore_patterns("__pycache__"))
    conv = tmp_path / "src" / "convzoo" / "layers" / "conv.py"
    doc = '    """2-D convolution: input (N, C_in, H, W)."""\n'
    assert doc in conv.read_text(encoding="utf-8")
    if delete:
        conv.write_text(conv.read_text(encoding="utf-8").replace(doc, ""), encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# gate\n", encoding="utf-8")
    (tmp_path / "shim.py").write_text(SHIM.format(hook=str(ROOT / "docs" / "_hooks" / "convzoo_docs.py")))
    (tmp_path / "mkdocs.yml").write_text("site_name: gate\nstrict: true\nhooks: [shim.py]\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "src"), NO_MKDOCS_2_WARNING="1")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    if delete:
        assert run.returncode != 0 and "public name convzoo.Conv2d has no docstring" in run.stderr, run.stderr
    else:
        assert run.returncode == 0, run.stderr


def test_a_registered_family_gets_a_card_a_page_and_a_picture(hook, monkeypatch, tmp_path):
    """The gallery is generated from the registry: whatever ``families()`` returns gets a card, a page and a
    picture drawn at build time (one cheap family here; the browser test counts the cards of all)."""
    fam = cz.family("pointwise")
    monkeypatch.setattr(cz, "families", lambda: [fam])
    pages = hook.family_pages(cz, tmp_path)
    assert set(pages) == {"gallery.md", "families/pointwise.md"}
    assert (tmp_path / "pointwise.png").stat().st_size > 1000
    assert "families/pointwise.md" in pages["gallery.md"] and "(pointwise.png)" in pages["families/pointwise.md"]
    assert "MACs = " in pages["families/pointwise.md"] and "benchmark" in pages["families/pointwise.md"]


def test_a_family_without_an_animation_is_a_warning(hook, monkeypatch, tmp_path, caplog):
    """A family added to the registry without its ANIMATIONS entry fails a strict build (a warning names it)."""
    monkeypatch.setattr(cz, "families", lambda: [cz.family("pointwise")])
    monkeypatch.setattr(hook, "ANIMATIONS", ())
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        hook.family_pages(cz, tmp_path)
    assert any("family 'pointwise' has no animation" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------- the measured speed names what was timed
@pytest.fixture(scope="module")
def run_and_pages(hook, tmp_path_factory):
    """The family pages of large_kernel, partial, mixconv and depthwise, built against the committed bench_all run
    (no animations; the registry is cut to these four for the call)."""
    chosen = [cz.family(n) for n in ("large_kernel", "partial", "mixconv", "depthwise")]
    mp = pytest.MonkeyPatch()
    mp.setattr(cz, "families", lambda: chosen)
    mp.setattr(hook, "ANIMATIONS", (), raising=False)
    try:
        return hook.family_pages(cz, tmp_path_factory.mktemp("pages"))
    finally:
        mp.undo()  # now: the hook module is shared with the other tests


def _taps_macs(n: int, h: int, w: int, c_out: int, taps_per_output: int) -> int:
    """Weight MACs of a conv by hand: N·H·W output positions × C_out channels × the taps each output reads."""
    return n * h * w * c_out * taps_per_output


def test_speed_line_names_the_layer_the_benchmark_timed_and_its_mac_ratio(run_and_pages):
    """large_kernel's page drew a 31×31 + 5×5 layer and quoted a run of the 3×3 layer bench_all built (kernel 3 for
    every family with a window) as its speed, at that layer's 0.02× MACs. The line now names the build call, the
    input and the MAC ratio of the layer timed, and says the default layer is another (1.71× standard's MACs)."""
    page = run_and_pages["families/large_kernel.md"]
    speed = page.split("## Measured speed", 1)[1].split("## Code", 1)[0]
    standard = _taps_macs(8, 56, 56, 128, 64 * 9)  # 64 → 128, 3×3, on (8, 64, 56, 56): 1,849,688,064
    timed = _taps_macs(8, 56, 56, 128, 9) + _taps_macs(8, 56, 56, 128, 1)  # depthwise ×2: 3×3 + the 1×1 branch
    default = _taps_macs(8, 56, 56, 128, 31 * 31 + 5 * 5)  # the registry's default: 31×31 + 5×5
    assert "Timed: `cz.build('large_kernel', 64, 128, 3)` on input (8, 64, 56, 56)" in speed
    assert f"{timed:,} MACs" in speed and f"at {timed / standard:.3g}× its MACs" in speed  # 0.0174×
    assert f"`cz.build('standard', 64, 128, 3)`, {standard:,} MACs" in speed
    assert "kernel_size=(31, 31)" in speed and f"{default / standard:.2f}× standard's MACs" in speed  # 1.71×
    card = run_and_pages["gallery.md"].split("### [Large-kernel", 1)[1].split("</div>", 1)[0]
    assert "timed as `cz.build('large_kernel', 64, 128, 3)`" in card and "not the default (31, 31)" in card


def test_speed_line_says_when_the_family_kept_the_width_or_took_another_form(run_and_pages):
    partial = run_and_pages["families/partial.md"].split("## Measured speed", 1)[1]
    assert "`cz.build('partial', 64, 64, 3)`" in partial and "refuses 64 → 128" in partial
    # MixConv is depthwise per group only when C_in = C_out: the 64 → 128 layer timed is dense, the 6 → 6 drawn not
    mixconv = run_and_pages["families/mixconv.md"].split("## Measured speed", 1)[1]
    layer = cz.build("mixconv", 64, 128, 3)
    assert all(conv.groups == 1 for conv in layer.convs) and all(c.groups == c.in_channels for c in
                                                                 cz.build("mixconv", 6, 6, 3).convs)
    assert "Its convs are dense, where the 6 → 6 layer drawn above has depthwise ones" in mixconv
    depthwise = run_and_pages["families/depthwise.md"].split("## Measured speed", 1)[1].split("## Code", 1)[0]
    assert "`cz.build('depthwise', 64, 128, 3)`" in depthwise and "It is" not in depthwise and "Its" not in depthwise


def test_a_benchmark_row_whose_layer_is_not_rebuilt_is_a_warning(hook, caplog):
    """A rebuilt layer whose MACs differ from the run's record cannot be the one timed: no speed line, a warning."""
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        got = hook._measured(cz, cz.family("standard"), {"fwd_ms": 1.0}, {"macs": 1}, (8, 64, 128, 56, 3), 1)
    assert got is None and any("cannot say which layer was timed" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------- animations and full-size links
def test_a_family_page_embeds_its_animation_drawn_from_the_layer(hook, monkeypatch, tmp_path):
    """dilated's GIF: 3×3, dilation 2, padding 0 on a 7×7 input reaches 7 − 2·(3 − 1) = 3 outputs a side, so one
    frame per output position is 9 frames; the family page and the Pictures gallery embed it."""
    from PIL import Image

    anim = next(a for a in hook.ANIMATIONS if a.family == "dilated")
    monkeypatch.setattr(cz, "families", lambda: [cz.family("dilated")])
    monkeypatch.setattr(hook, "ANIMATIONS", (anim,))
    pages = hook.family_pages(cz, tmp_path)
    gif = tmp_path / f"{anim.slug}.gif"
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == (7 - 2 * (3 - 1)) ** 2
    assert f"]({anim.slug}.gif)" in pages["families/dilated.md"].split("## Animation", 1)[1].split("## Cost")[0]
    assert anim.command() in pages["families/dilated.md"]
    gallery = hook.animation_gallery(hook._ANIMATED, {"dilated": "Dilated"})
    assert f"](families/{anim.slug}.gif)" in gallery and "[Dilated](families/dilated.md)" in gallery


def test_every_family_has_an_animation_with_options_its_layer_takes(hook):
    """The list animates every registered family (the article syllabus first), with arguments its layer accepts
    (checked as the CLI checks), each under its own file name."""
    from convzoo.cli.viz import default_spec

    names = [a.family for a in hook.ANIMATIONS]
    assert set(names) == {f.name for f in cz.families()}
    assert names[:6] == ["standard", "standard", "transposed", "dilated", "depthwise_separable", "grouped"]
    assert len({a.slug for a in hook.ANIMATIONS}) == len(hook.ANIMATIONS)
    assert any(dict(a.options).get("stride", 1) > 1 for a in hook.ANIMATIONS if a.family == "standard")
    for a in hook.ANIMATIONS:
        default_spec(a.family, a.in_channels, a.out_channels, size=a.size, options=dict(a.options)).validate()


def test_link_images_makes_every_picture_a_lazy_link_to_its_full_size(hook):
    html = ('<p><img alt="a" src="../x.png" /></p>\n<div>\n  <a href="y.md"><img src="y.png"></a>\n'
            '<img src="images/thumb/t.png" alt="thumb"></div>\n<img loading="eager" src="z.gif">')
    out = hook.link_images(html)
    pairs = re.findall(r'<a class="cz-full" href="([^"]+)" title="full size"><img ([^>]*)></a>', out)
    assert [(href, f'src="{href}"' in attrs, "loading=" in attrs) for href, attrs in pairs] == \
        [("../x.png", True, True), ("z.gif", True, True)]
    assert 'loading="lazy"' in pairs[0][1] and 'loading="eager"' in pairs[1][1]  # an explicit choice is kept
    assert '<a href="y.md"><img src="y.png"></a>' in out and '<img src="images/thumb/t.png" alt="thumb">' in out
    assert re.sub(r'<a class="cz-full"[^>]*>|</a>|loading="lazy" ', "", out) == re.sub(r"</a>", "", html)


# ------------------------------------------------------------------------------------- the Pictures page's text
def test_the_pictures_page_quotes_a_refusal_the_cli_prints_now(tmp_path, monkeypatch):
    """The page's example of a refused animation is what `convzoo viz` prints today (the one it showed, 'cannot
    animate resize … stage 1 of 2', was stale: resize animates)."""
    import shlex

    from typer.testing import CliRunner

    from convzoo.cli import app

    text = " ".join((ROOT / "docs" / "pictures.md").read_text(encoding="utf-8").split())
    quoted = re.findall(r"`(convzoo viz [^`]+)` prints `(error: [^`]+)`", text)
    assert quoted, "docs/pictures.md quotes no refusal"
    for command, said in quoted:
        monkeypatch.chdir(tmp_path)  # the command's output path, were it written
        result = CliRunner().invoke(app, shlex.split(command)[1:])
        assert result.exit_code == 2 and result.output.strip() == said, (command, result.output)
    assert "cannot animate 'resize'" not in text


def test_the_explorer_guide_shows_a_screenshot_with_a_caption():
    from PIL import Image

    text = (ROOT / "docs" / "guide" / "pictures-and-explorer.md").read_text(encoding="utf-8")
    found = re.search(r"!\[[^\]]+\]\(\.\./screenshots/(explorer[^)]*\.png)\)[^\n]*\n\n\*The explorer \(`convzoo serve`",
                      text)
    assert found, "no explorer screenshot with its caption in guide/pictures-and-explorer.md"
    # docs/screenshots, not docs/figures: those are the article figures, each redrawn and compared by a test
    png = ROOT / "docs" / "screenshots" / found.group(1)
    assert png.stat().st_size < 150_000
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size == (1280, 900)  # the window the caption names
