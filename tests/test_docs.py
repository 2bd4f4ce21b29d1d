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
@pytest.mark.parametrize("page_path", ["", _gallery_tutorial(), "generated/tutorials/plot_00_eight_types/", "gallery/"])
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
