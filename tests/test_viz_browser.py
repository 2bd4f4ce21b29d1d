"""The HTML report and the web explorer in real headless Chromium (Debian's ``chromium``, driven by playwright).

Skipped, with the reason shown, when Chromium or playwright is missing (``.ci/run`` installs Chromium and says
so when it cannot). Screenshots are kept under tests/artifacts/."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium); browser tests not run")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def open_page(browser):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    return page, errors


def broken_images(page) -> list[str]:
    return page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.alt)")


def test_report_renders_with_every_image(browser, tmp_path):
    from convzoo.viz.report import build_report, compare_rows

    rows = compare_rows(batch=1, in_channels=8, out_channels=8, size=8, repeats=2,
                        families=["standard", "depthwise_separable", "hetconv"])
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps([{"family": "standard", "params": 10, "macs": 100, "latency_ms": 1.5,
                                  "best_accuracy": 0.91}]))
    path = build_report(tmp_path / "report.html", rows=rows, sweep=sweep,
                        compare_kwargs={"batch": 1, "in_channels": 8, "out_channels": 8, "size": 8})
    text = path.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched
    page, errors = open_page(browser)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    import convzoo as cz

    n_images = page.eval_on_selector_all("img", "els => els.length")
    assert n_images == len(cz.families()) + 5 + 1  # gallery + special pictures + MACs-vs-time plot
    assert broken_images(page) == []
    assert page.locator("section.family").count() == len(cz.families())
    assert page.locator("table").count() == 2  # compare and sweep
    assert "hetconv" in page.locator("table").first.inner_text()
    assert "0.91" in page.locator("table").nth(1).inner_text()
    page.screenshot(path=str(ARTIFACTS / "report.png"))
    page.locator("#hetconv").screenshot(path=str(ARTIFACTS / "report_hetconv.png"))
    assert errors == []


def test_explorer_updates_picture_and_numbers(browser):
    from convzoo.viz.serve import make_server

    server = make_server(port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page, errors = open_page(browser)
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_function("document.getElementById('params').textContent !== ''")
        assert page.locator("#family option").count() > 10
        first = {k: page.locator(f"#{k}").inner_text() for k in ("params", "macs", "output_shape")}
        assert first["output_shape"] == "(1, 4, 8, 8)"
        src = page.get_attribute("#picture", "src")
        page.screenshot(path=str(ARTIFACTS / "explorer_standard.png"))

        page.select_option("#family", "transposed")  # upsamples ×2
        page.wait_for_function("document.getElementById('output_shape').textContent === '(1, 4, 16, 16)'")
        assert page.get_attribute("#picture", "src") != src
        assert page.locator("#groups").is_enabled() and not page.locator("#p").is_enabled()

        params_before = page.locator("#params").inner_text()
        page.fill("#kernel", "5")
        page.press("#kernel", "Tab")  # change fires on blur, as for a user
        page.wait_for_function(f"document.getElementById('params').textContent !== '{params_before}'")
        assert page.locator("#params").inner_text() == "404"  # 4·4·5·5 weights + 4 biases
        assert broken_images(page) == []
        page.screenshot(path=str(ARTIFACTS / "explorer_transposed_k5.png"))
        assert errors == []
    finally:
        server.shutdown()
        server.server_close()
