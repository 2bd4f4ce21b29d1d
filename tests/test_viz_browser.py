"""The HTML report and the web explorer in real headless Chromium (Debian's ``chromium``, driven by playwright): one
browser for every test, pages at 1280×900.

Skipped, with the reason shown, when Chromium or playwright is missing (``.ci/run`` installs Chromium and says
so when it cannot). Screenshots are kept under tests/artifacts/ (explorer_<family>.png for a few families)."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import torch

import convzoo as cz
from convzoo.viz.connectivity import connectivity

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}
SHOTS = ("standard", "transposed", "depthwise", "mixconv", "deformable", "dynamic", "shuffled_grouped")
SAMPLED = ("deformable", "deformable_v2", "dcnv3")  # fractional reads: sampling points

pytestmark = pytest.mark.browser


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"SKIPPED: no Chromium at {CHROMIUM} (apt-get install chromium); browser tests not run")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server():
    from convzoo.viz.serve import make_server

    srv = make_server(port=0, quiet=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def open_page(browser, origin: str | None = None):
    """A page that records console errors, failed requests and every request that leaves ``origin``."""
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    # a request cut short by leaving the page (the next family's goto) is not a failure
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}") if r.failure != "net::ERR_ABORTED"
            else None)

    def check(request) -> None:
        url = request.url
        if url.startswith("data:") or (origin and url.startswith(origin + "/")) or (not origin and
                                                                                     url.startswith("file://")):
            return
        errors.append(f"request outside the server: {url}")

    page.on("request", check)
    page.on("response", lambda r: errors.append(f"HTTP {r.status} for {r.url}") if r.status >= 400 else None)
    return page, errors


def broken_images(page) -> list[str]:
    return page.eval_on_selector_all(
        "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.alt)")


def ready(page) -> None:
    page.wait_for_selector("svg[data-ready=deps]", timeout=120_000)


def active(page, attribute: str) -> set[tuple[int, ...]]:
    values = page.eval_on_selector_all(f"[{attribute}].active", f"els => els.map(e => e.getAttribute('{attribute}'))")
    return {tuple(int(v) for v in value.split(",")) for value in values}


def rgb(colour) -> str:
    r, g, b = (round(255 * v) for v in colour[:3])
    return f"rgb({r}, {g}, {b})"


TAP_RGB = [rgb(c) for c in __import__("convzoo.viz.draw", fromlist=["tap_colours"]).tap_colours(9)]


def expected_inputs(name, in_channels, out_channels, kernel, size, output, **kw) -> set[tuple[int, ...]]:
    conn = connectivity(cz.build(name, in_channels, out_channels, kernel, 2, **kw), (in_channels, size, size))
    return {tuple(int(v) for v in i) for i in torch.nonzero(conn.deps(*output))}


def centre_output(page) -> int:
    """The flat index of the middle output channel's centre cell (away from the border: a whole window)."""
    shape = page.evaluate("layer.maps[layer.maps.length - 1]")
    flat = shape[0] // 2
    for size in shape[1:]:
        flat = flat * size + size // 2
    return flat


def test_explorer_from_a_url_hover_change_and_animate(browser, server):
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=dilated&in_channels=2&out_channels=3&size=9&dilation=2")
    ready(page)
    # The state came from the URL: every control shows it.
    assert page.locator("#family").input_value() == "dilated"
    shown = {n: page.locator(f"#{n} option:checked").inner_text() for n in ("in_channels", "out_channels", "size",
                                                                             "dilation", "padding")}
    assert shown == {"in_channels": "2", "out_channels": "3", "size": "9", "dilation": "2", "padding": "auto (2)"}
    assert page.locator("#output_shape").inner_text() == "(1, 3, 9, 9)"
    assert page.locator("#params").inner_text() == f"{3 * 2 * 9 + 3}"
    assert page.locator("[data-in]").count() == 2 * 81 and page.locator("[data-out]").count() == 3 * 81

    # Hover the centre output: exactly the inputs connectivity says are active, coloured by their kernel taps.
    page.locator("[data-out='1,4,4']").hover()
    expected = expected_inputs("dilated", 2, 3, 3, 9, (1, 4, 4), dilation=2)
    assert len(expected) == 2 * 9 and active(page, "data-in") == expected
    page.wait_for_function("document.querySelectorAll('rect.tap.used').length === 9")
    fills = page.eval_on_selector_all("[data-in].active", "els => els.map(e => e.style.fill)")
    assert set(fills) == set(TAP_RGB)  # nine taps in the static pictures' nine colours, on both channels
    assert active(page, "data-out") == set()
    page.screenshot(path=str(ARTIFACTS / "explorer_dilated_hover.png"))

    # Hover an input: exactly the outputs that read it.
    page.locator("[data-in='0,0,0']").hover()
    conn = connectivity(cz.build("dilated", 2, 3, 3, 2, dilation=2), (2, 9, 9))
    readers = {tuple(int(v) for v in o) for o in torch.nonzero(conn.mask[..., 0, 0, 0])}
    assert active(page, "data-out") == readers and len(readers) == 3 * 4

    # Change a control: the page redraws from the server, the URL follows, values within the family are kept.
    page.select_option("#kernel", label="5")
    page.wait_for_function("document.getElementById('params').textContent === '" + f"{3 * 2 * 25 + 3}" + "'")
    ready(page)
    query = parse_qs(urlparse(page.url).query)
    assert query["kernel"] == ["5"] and query["dilation"] == ["2"] and query["family"] == ["dilated"]
    page.locator("[data-out='0,4,4']").hover()
    five = expected_inputs("dilated", 2, 3, 5, 9, (0, 4, 4), dilation=2)
    assert len(five) == 2 * 25 and active(page, "data-in") == five  # 5×5 taps spaced 2: spans all of 9×9

    # The frame slider moves the highlighted output and is kept in the URL.
    page.mouse.move(5, 5)
    page.locator("#frame").fill("40")  # output (0, 4, 4)
    page.wait_for_function("new URLSearchParams(location.search).get('frame') === '40'")
    assert page.locator("[data-out].hover").get_attribute("data-out") == "0,4,4"
    assert active(page, "data-in") == five

    # Another family starts from its own defaults: nothing carried over.
    page.select_option("#family", "standard")
    ready(page)
    assert parse_qs(urlparse(page.url).query) == {"family": ["standard"]}
    assert page.locator("#output_shape").inner_text() == "(1, 6, 8, 8)"
    page.screenshot(path=str(ARTIFACTS / "explorer_standard.png"))
    assert errors == []


def test_explorer_offers_only_valid_values_and_repairs_a_bad_url(browser, server):
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=grouped&in_channels=4&out_channels=8&groups=3&size=99")
    ready(page)
    assert "groups=3 dropped" in page.locator("#notes").inner_text()
    assert page.locator("#groups option").all_inner_texts() == ["auto (4)", "1", "2", "4"]
    sizes = [int(s) for s in page.locator("#size option").all_inner_texts()]
    from convzoo.viz.serve import BUDGET

    assert sizes == [s for s in range(1, 25) if (4 * s * s) * (8 * s * s) <= BUDGET] and sizes[-1] == 19
    assert parse_qs(urlparse(page.url).query) == {"family": ["grouped"], "in_channels": ["4"], "out_channels": ["8"]}
    # Budget: at 16 channels the size menu stops where the explorer's limit does.
    page.select_option("#in_channels", label="16")
    ready(page)
    page.select_option("#out_channels", label="16")
    ready(page)
    assert max(int(s) for s in page.locator("#size option").all_inner_texts()) == 11
    # A transposed conv grows: its output drawn at the same cell size, twice as wide.
    page.select_option("#family", "transposed")
    ready(page)
    width = page.eval_on_selector("[data-in='0,0,0']", "e => e.getBBox().width")
    assert page.eval_on_selector("[data-out='0,0,0']", "e => e.getBBox().width") == width
    assert page.locator("[data-out]").count() == 4 * page.locator("[data-in]").count()
    page.locator("[data-in='0,3,3']").hover()  # its k×k stamp on the output, coloured by tap
    page.wait_for_function("document.querySelectorAll('rect.tap.used').length === 9")
    stamp = page.eval_on_selector_all("[data-out].active", "els => els.map(e => e.style.fill)")
    assert len(stamp) == 6 * 9 and len(set(stamp)) == 9  # 6 output channels (the explorer's default)
    page.screenshot(path=str(ARTIFACTS / "explorer_transposed.png"))
    assert errors == []


def test_every_family_loads_walks_and_hovers(browser, server):
    """Each family at its explorer defaults: the window walks the output on load, a hover takes over and shows
    that output's window in the panel, the play button pauses; no console error, no request to another host."""
    page, errors = open_page(browser, server)
    for fam in cz.families():
        page.goto(f"{server}/?family={fam.name}")
        ready(page)
        page.wait_for_function("document.getElementById('svg').dataset.playing === '1'")
        flat = centre_output(page)
        page.locator(f"[data-out][data-flat='{flat}']").hover()
        page.wait_for_function(f"document.getElementById('svg').dataset.shown?.endsWith(':{flat}')")
        assert page.locator("[data-in].active").count() > 0, fam.name
        painted = page.eval_on_selector_all("rect.active", "els => els.filter(e => e.style.fill).length")
        assert painted > 0 and page.locator("#shown_title").inner_text().startswith("output"), fam.name
        if fam.name in SAMPLED:  # its sampling points enlarged in the panel, each tap's label clear of the others
            page.wait_for_selector("svg.zoom circle[data-tap]")
            labels = page.eval_on_selector_all("svg.zoom circle[data-tap]", "els => els.map(e => [+e.getAttribute("
                                               "'data-tap'), +e.getAttribute('cx'), +e.getAttribute('cy')])")
            assert sorted(t for t, _, _ in labels) == list(range(9)), fam.name
            assert min(math.dist(a[1:], b[1:]) for a, b in itertools.combinations(labels, 2)) >= 14, fam.name
        if fam.name in SHOTS:
            page.screenshot(path=str(ARTIFACTS / f"explorer_{fam.name}.png"))
        page.mouse.move(2, 2)  # the hover gives back to the walk
        page.wait_for_function("+document.getElementById('svg').dataset.frame > 0")
        page.click("#play")
        assert page.locator("svg#svg").get_attribute("data-playing") == "0", fam.name
        assert errors == [], (fam.name, errors)


def test_transposed_is_drawn_with_its_inserted_zeros_and_its_output_in_view(browser, server):
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=transposed&frame=35")  # 6 × 8 × 8 → 6 × 16 × 16, stride 2
    ready(page)
    # its direct form, 18 × 18 per channel: the 8 × 8 input cells 2 apart, 15² − 8² zeros between, padding around
    assert page.locator("rect.dcell").count() == 6 * 64 and page.locator("rect.zero").count() == 6 * (15**2 - 64)
    assert page.locator("rect.dpad").count() == 6 * (18**2 - 15**2)
    page.wait_for_function("document.getElementById('svg').dataset.shown === '0:35'")
    read = page.eval_on_selector_all("[data-direct].read", "els => els.map(e => e.getAttribute('class'))")
    assert len(read) == 6 * 9 and any("zero" in c for c in read) and any("dcell" in c for c in read)
    bottom = page.evaluate("Math.max(...[...document.querySelectorAll('[data-out]')]"
                           ".map(e => e.getBoundingClientRect().bottom))")
    right = page.evaluate("Math.max(...[...document.querySelectorAll('[data-out]')]"
                          ".map(e => e.getBoundingClientRect().right))")
    assert bottom <= VIEWPORT["height"] and right <= VIEWPORT["width"] - 320  # left of the panel, no scrolling
    assert page.evaluate("window.scrollY") == 0 and errors == []


def test_report_renders_with_every_image(browser, tmp_path):
    from convzoo.viz.report import build_report, compare_rows

    names = ["standard", "depthwise_separable", "hetconv"]
    rows = compare_rows(batch=1, in_channels=8, out_channels=8, size=8, repeats=2, families=names)
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps([{"family": "standard", "params": 10, "macs": 100, "latency_ms": 1.5,
                                  "mean_accuracy": 0.91}]))
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2], [1, 2])
    fig.savefig(tmp_path / "sweep_pareto.png")
    plt.close(fig)
    from convzoo.viz.figures import article_figures

    shown = [f.name for f in article_figures()][:2]
    path = build_report(tmp_path / "report.html", rows=rows, sweep=sweep, names=names, figures=shown,
                        settings={"batch": 1, "in_channels": 8, "out_channels": 8, "size": 8}, rows_source="test",
                        animations=False)
    text = path.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # self-contained
    visible = re.sub(r'data:[^"\')]+', "", text)  # embedded images' base64 can spell anything
    assert " at 0x" not in visible and "<function" not in visible  # no repr of a Python object in the settings
    page, errors = open_page(browser)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all("img", "els => els.map(e => e.alt)")
    assert images[0] == "MACs vs measured time" and images[-1] == "sweep Pareto plot"
    by_name = {f.name: f for f in article_figures()}
    assert images[1:] == [*(f"{n} picture" for n in names),
                          *(f"{by_name[n].title('en')}. {by_name[n].caption}" for n in shown), "sweep Pareto plot"]
    captions = page.locator("figcaption").all_inner_texts()  # the caption is drawn in the picture, not repeated
    assert captions == [f"{n}.png" for n in shown]
    assert broken_images(page) == []
    # native size: no picture is drawn smaller than its pixels
    sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.getBoundingClientRect().width])")
    assert all(abs(natural - shown_w) < 1 for natural, shown_w in sizes), sizes
    # every bar's label inside its bar, and the baseline never compared with itself
    boxes = page.eval_on_selector_all(".bar", """els => els.map(e => {const b = e.getBoundingClientRect(),
        s = e.querySelector('span').getBoundingClientRect(); return [b.left, b.right, b.top, b.bottom, s.left,
        s.left + e.querySelector('span').scrollWidth, s.top, s.bottom];})""")
    assert boxes and all(b[0] <= b[4] and b[5] <= b[1] + 0.5 and b[2] <= b[6] and b[7] <= b[3] for b in boxes), boxes
    standard_card = page.locator(".card").first.inner_text()
    assert "baseline" in standard_card and "×" not in standard_card.split("forward")[1]
    assert page.locator("section.family").count() == len(names) and page.locator(".card").count() == len(names)
    assert "batch 1, in_channels 8, out_channels 8, size 8" in page.locator(".settings").inner_text()
    assert "0.91" in page.locator("#sweep + table").inner_text()
    hetconv = page.locator("#hetconv").inner_text()
    assert "article 003 §2.3" in hetconv and "MACs" in hetconv and "forward" in hetconv
    page.screenshot(path=str(ARTIFACTS / "report.png"))
    page.locator("#hetconv").screenshot(path=str(ARTIFACTS / "report_hetconv.png"))
    assert errors == []


def test_numbers_mode_shows_the_values_under_the_window_and_the_dot_product(browser, server):
    from convzoo.viz import serve as S

    state = {"family": "standard", "in_channels": 2, "out_channels": 3, "size": 5}
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=standard&in_channels=2&out_channels=3&size=5&frame=37&numbers=1")  # (1, 2, 2)
    ready(page)
    page.wait_for_function("document.getElementById('svg').dataset.shown === '0:37'")
    data = S.taps_json(state, 0, 37)
    dot = page.locator("#dot").inner_text()
    assert dot.startswith("output = Σ kernel·values = ") and "18 products" in dot and "bias" in dot
    assert abs(float(dot.split(" = ")[-1].split(" ")[0]) - data["y"]) < 0.01
    # per input channel: 9 weights, 9 values, and their partial sum; the partial sums add up to Σ kernel·values
    numbers = page.eval_on_selector_all("#window svg", "els => els.map(s => [...s.querySelectorAll('text.num')]"
                                        ".map(t => t.textContent))")
    assert [len(n) for n in numbers] == [18, 18]
    for row, shown in zip(data["window"], numbers):
        assert [float(v) for v in shown[9:]] == pytest.approx(row["x"], abs=0.006)  # the values under it
    partials = page.eval_on_selector_all("#window svg", "els => els.map(s => [...s.querySelectorAll('text')]"
                                         ".map(t => t.textContent).find(t => t.startsWith('= ')))")
    assert sum(float(p[2:]) for p in partials) == pytest.approx(data["kernel_sum"], rel=0.02)
    assert page.locator("svg#svg").get_attribute("data-playing") == "0" and errors == []


def test_numbers_mode_counts_a_transposed_convs_non_zero_products_as_the_static_picture(browser, server):
    page, errors = open_page(browser, server)
    for frame in (51, 34):  # outputs (0, 3, 3) and (0, 2, 2) of 6 × 8 × 8 → 6 × 16 × 16: 4 and 1 inputs per channel
        page.goto(f"{server}/?family=transposed&frame={frame}&numbers=1")
        ready(page)
        page.wait_for_function(f"document.getElementById('svg').dataset.shown === '0:{frame}'")
        reads = expected_inputs("transposed", 6, 6, 3, 8, (0, frame // 16, frame % 16), stride=2, padding=1,
                                output_padding=1)
        dot = page.locator("#dot").inner_text()
        assert dot.endswith(f"Σ {len(reads)} products on input cells (54 counting the zeros)"), dot
    assert errors == []


def test_a_click_pins_the_output_and_the_sample_updates_dynamics_attention(browser, server):
    from convzoo.viz import serve as S

    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=dynamic")
    ready(page)
    page.wait_for_function("document.getElementById('svg').dataset.playing === '1'")
    page.locator("[data-out='2,3,3']").click()  # pins it: the walk stops, the URL keeps it
    flat = 2 * 64 + 3 * 8 + 3
    page.wait_for_function(f"new URLSearchParams(location.search).get('frame') === '{flat}'")
    page.mouse.move(2, 2)
    page.wait_for_timeout(1200)  # two periods of the walk: nothing moves
    assert page.locator("svg#svg").get_attribute("data-playing") == "0"
    assert page.locator("svg#svg").get_attribute("data-frame") == str(flat)

    def attention() -> list[float]:
        page.wait_for_selector("#bank svg")
        texts = page.eval_on_selector_all("#bank svg", "els => els.map(s => [...s.querySelectorAll('text')]"
                                          ".map(t => t.textContent)).filter(t => /^W\\d/.test(t[0]))")
        return [float(t[-1]) for t in texts]

    first = attention()
    expected = S.links_json({"family": "dynamic"})["links"][0]["sides"][0]["values"]
    assert first == pytest.approx(expected, abs=0.006) and max(first) - min(first) >= 0.1
    page.select_option("#sample", label="3")  # another input: another attention, another applied kernel
    page.wait_for_function("new URLSearchParams(location.search).get('sample') === '3'")
    ready(page)
    page.wait_for_function(f"document.getElementById('svg').dataset.shown === '0:{flat}'")
    second = attention()
    expected = S.links_json({"family": "dynamic", "sample": 3})["links"][0]["sides"][0]["values"]
    assert second == pytest.approx(expected, abs=0.006) and second != first
    assert errors == []


def test_numbers_mode_type_is_9_pt_and_every_number_fits_its_cell(browser, server):
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=standard&in_channels=2&out_channels=3&size=5&frame=12&numbers=1")
    ready(page)
    page.wait_for_function("document.getElementById('svg').dataset.shown === '0:12'")
    found = page.eval_on_selector_all(
        "svg text.num", "els => els.map(t => [parseFloat(getComputedStyle(t).fontSize), t.getComputedTextLength(),"
        " t.textContent])")
    assert len(found) > 20
    assert all(size >= 12 for size, _, _ in found)  # 9 pt at the page's 96 px per inch
    assert all(width <= 30 for _, width, _ in found), [f for f in found if f[1] > 30]  # cells are 24–32 px
    assert errors == []


def test_taps_that_sample_one_place_show_as_a_ringed_dot_with_its_count(browser, server):
    from convzoo.viz import serve as S

    state = {"family": "deformable", "in_channels": 1, "out_channels": 1}
    frame = 1  # output (0, 0, 1): the seeded offsets send taps 6 and 7 to places 0.03 cell apart, by the left edge
    points = {p[1]: p[2:4] for p in S.taps_json(state, 0, frame)["points"]}
    assert math.dist(points[6], points[7]) < 0.05, f"the seeded offsets changed: pick another frame ({points})"
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=deformable&in_channels=1&out_channels=1&frame={frame}")
    ready(page)
    page.wait_for_function(f"document.getElementById('svg').dataset.shown === '0:{frame}'")
    dots = page.eval_on_selector_all("svg#svg circle.point[data-point]", "els => els.map(e => [+e.dataset.point, "
                                     "+e.getAttribute('cx'), +e.getAttribute('cy'), +e.getAttribute('r')])")
    cell = page.evaluate("+document.querySelector('svg#svg rect[data-in=\"0,0,0\"]').getAttribute('width')")
    six, seven = (next(d for d in dots if d[0] == t) for t in (6, 7))
    # one place at the plane's scale (within a stack's reach, 0.3 cell): tap 7 a ring wider than tap 6's dot
    assert math.dist(six[1:3], seven[1:3]) < 0.3 * cell and seven[3] >= six[3] + 3, (six, seven, cell)
    counts = page.eval_on_selector_all("svg#svg text.stackno", "els => els.map(e => e.textContent)")
    assert "×2" in counts
    note = page.locator("p.caption.stacks").inner_text()
    assert "taps 6 and 7 sample places 0.03 cell apart" in note
    assert errors == []


@pytest.mark.parametrize("query, position", [
    ("family=standard&in_channels=2&out_channels=1&size=2&padding=1", (1, 1)),  # the bottom-right padding
    ("family=standard&in_channels=2&out_channels=1&size=5", (0, 0)),  # a corner
    ("family=dilated&in_channels=1&out_channels=1&size=7", (1, 5)),  # taps 2 apart, two of them past the edge
    ("family=transposed", (3, 3)),  # inserted zeros
])
def test_numbers_mode_counts_the_products_as_the_static_picture_does(browser, server, query, position):
    from convzoo.viz import serve as S
    from convzoo.viz.reads import analyse
    from convzoo.viz.step import summed_text

    state = S.read_query(parse_qs(query))
    layer = S.layer_json(state)
    out = layer["output_shape"]
    frame = position[0] * out[-1] + position[1]  # output channel 0
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?{query}&frame={frame}&numbers=1")
    ready(page)
    page.wait_for_function(f"document.getElementById('svg').dataset.shown === '0:{frame}'")
    dot = page.locator("#dot").inner_text()
    # the static picture of the same layer (its own random values: the counts depend on the window only)
    module = S.live(state).model
    r = analyse(module, tuple(layer["input_shape"][1:]))
    static = summed_text(r, 0, position).split("\n")
    assert static[0].startswith("Σ ") and "on input cells" in static[0], static
    assert dot.endswith(f"; {static[0]} {static[1]}"), (dot, static)  # 'Σ 8 products on input cells (18 counting …)'
    assert errors == []


ZOOM_LABELS = """() => {
  const zoom = document.querySelector('svg.zoom');
  const box = (e) => { const b = e.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; };
  const union = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
  const numbers = [...zoom.querySelectorAll('text.tapno')];
  const labels = [...zoom.querySelectorAll('circle[data-tap]')].map((c) => {
    const [cx, cy] = [+c.getAttribute('cx'), +c.getAttribute('cy')];
    const mine = numbers.filter((t) => t.textContent === c.dataset.tap)
      .sort((a, b) => Math.hypot(+a.getAttribute('x') - cx, +a.getAttribute('y') - cy)
                    - Math.hypot(+b.getAttribute('x') - cx, +b.getAttribute('y') - cy))[0];
    const leader = [...zoom.querySelectorAll('line.leader')].find((l) => Math.hypot(+l.getAttribute('x2') - cx,
      +l.getAttribute('y2') - cy) <= +c.getAttribute('r') + 1);
    const dot = zoom.querySelector(`circle.point[data-point="${c.dataset.tap}"]`);
    return { tap: +c.dataset.tap, box: mine ? union(box(c), box(mine)) : box(c), text: mine ? mine.textContent : null,
             font: mine ? parseFloat(getComputedStyle(mine).fontSize) : 0, centre: [cx, cy], r: +c.getAttribute('r'),
             dot: [+dot.getAttribute('cx'), +dot.getAttribute('cy'), +dot.getAttribute('r')],
             leader: leader ? [['x1', 'y1', 'x2', 'y2'].map((a) => +leader.getAttribute(a)),
                               parseFloat(getComputedStyle(leader).strokeWidth)] : null,
             screen: (({ left, top, right, bottom }) => [left, top, right, bottom])(c.getBoundingClientRect()) };
  });
  const dots = [...zoom.querySelectorAll('circle.point[data-point], circle.grid')].map(box);
  const heads = [...zoom.querySelectorAll('line.arrow')].map((l) => [+l.getAttribute('x2'), +l.getAttribute('y2')]);
  const frame = (({ left, top, right, bottom }) => [left, top, right, bottom])(zoom.getBoundingClientRect());
  return { labels, dots, heads, frame };
}"""


def boxes_meet(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# 1: taps 6 and 7 0.03 cell apart (a ringed dot); 33: taps 6 and 7 0.15 cell apart, both past the left edge
@pytest.mark.parametrize("frame", [1, 33])
def test_zoom_labels_every_tap_readably_off_every_dot(browser, server, frame):
    """The panel's enlarged sampling points: each tap the server sends for channel 0 has a ≥ 11 px number whose box
    touches no dot (sampling point or grid point), no other label and no arrow head, on a thin leader line from
    its own dot, all inside the drawing (it grows rather than clip or overlap)."""
    from convzoo.viz import serve as S

    state = {"family": "deformable", "in_channels": 1, "out_channels": 1}
    sent = sorted(p[1] for p in S.taps_json(state, 0, frame)["points"] if p[0] == 0)
    assert sent == list(range(9)), f"the seeded offsets changed: pick a frame where every tap reads ({sent})"
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=deformable&in_channels=1&out_channels=1&frame={frame}")
    ready(page)
    page.wait_for_function(f"document.getElementById('svg').dataset.shown === '0:{frame}'")
    page.wait_for_selector("svg.zoom circle[data-tap]")
    found = page.evaluate(ZOOM_LABELS)
    labels = found["labels"]
    assert sorted(label["tap"] for label in labels) == sent
    for label in labels:
        assert label["text"] == str(label["tap"]), label
        assert label["font"] >= 11, label
        assert label["leader"] is not None, f"tap {label['tap']}: no leader line to its label"
        (x1, y1, x2, y2), width = label["leader"]
        dx, dy, dr = label["dot"]
        assert math.dist((x1, y1), (dx, dy)) <= dr + 2 and width <= 1, label  # from its own dot, thin
        assert math.dist(label["centre"], (dx, dy)) > label["r"] + dr, label  # the label is off its dot
        frame_box = found["frame"]
        assert all(frame_box[i] - 0.5 <= label["screen"][i] for i in (0, 1)), (label, frame_box)
        assert all(label["screen"][i] <= frame_box[i] + 0.5 for i in (2, 3)), (label, frame_box)
        hidden = [d for d in found["dots"] if boxes_meet(label["box"], d)]
        assert hidden == [], f"tap {label['tap']}'s label covers dots {hidden}"
        heads = [h for h in found["heads"] if boxes_meet(label["box"], (h[0] - 2, h[1] - 2, h[0] + 2, h[1] + 2))]
        assert heads == [], f"tap {label['tap']}'s label covers arrow heads {heads}"
    for a, b in itertools.combinations(labels, 2):
        assert not boxes_meet(a["box"], b["box"]), (a["tap"], b["tap"])
    page.locator("svg.zoom").screenshot(path=str(ARTIFACTS / f"explorer_zoom_{frame}.png"))
    assert errors == []


POINT_PAST_THE_CORNER = """() => {
  const svg = document.getElementById('svg');
  const at = (e, names) => names.map((a) => +e.getAttribute(a));
  const dot = svg.querySelector('circle.point[data-point="0"]');
  return { cell: at(svg.querySelector('rect[data-in="0,0,0"]'), ['x', 'y', 'width']),
           dot: dot ? at(dot, ['cx', 'cy', 'r']) : null,
           read: [...svg.querySelectorAll('rect.pad.read')].map((r) => at(r, ['x', 'y'])),
           zoom: [...document.querySelectorAll('svg.zoom rect.pad[data-zoom]')].map((r) => r.dataset.zoom),
           zoomed: !!document.querySelector('svg.zoom circle.point[data-point="0"]') };
}"""


def test_a_point_past_the_corner_is_drawn_where_the_offsets_put_it(browser, server):
    """Output (0, 0)'s tap 0 samples past the input's top-left corner, only zero padding: it had no point (and
    the taps partly past the edge were pulled onto the edge cells). Its dot sits where the layer's own offsets put
    it, outside the plane's cells, on the padding cells drawn around the plane (those it reads marked read), and
    the zoom draws it on those padding cells too."""
    from convzoo.layers.form_choice import untimed
    from convzoo.viz import serve as S

    lv = S.live({"family": "deformable", "in_channels": 1, "out_channels": 1})
    with torch.no_grad(), untimed():
        offset = lv.model.offset_conv(lv.inputs[0])[0]  # (2·9, 8, 8): dy, dx per tap
    py, px = -1 + float(offset[0, 0, 0]), -1 + float(offset[1, 0, 0])  # tap 0's grid point is (−1, −1)
    assert py <= -1 or px <= -1, f"the seeded offsets changed: tap 0 of output 0 reads the map at ({py}, {px})"
    page, errors = open_page(browser, server)
    page.goto(f"{server}/?family=deformable&in_channels=1&out_channels=1&frame=0")
    ready(page)
    page.wait_for_function("document.getElementById('svg').dataset.shown === '0:0'")
    page.wait_for_selector("svg.zoom")
    found = page.evaluate(POINT_PAST_THE_CORNER)
    (x0, y0, cell), dot = found["cell"], found["dot"]
    assert dot is not None, "tap 0 reads only padding and has no point"
    # the input cell (r, q) spans x0 + q·cell … x0 + (q + 1)·cell: the point's centre is at (q + 0.5)·cell
    assert math.isclose(dot[0], x0 + (px + 0.5) * cell, abs_tol=0.5), (dot, x0, px, cell)
    assert math.isclose(dot[1], y0 + (py + 0.5) * cell, abs_tol=0.5), (dot, y0, py, cell)
    assert dot[0] < x0 and dot[1] < y0 and min(dot[0], dot[1]) - dot[2] >= 0  # past the corner, not clipped
    reads = {(math.floor(py) + a, math.floor(px) + b) for a in (0, 1) for b in (0, 1)}  # its bilinear neighbours
    drawn = {(round((y - y0) / cell), round((x - x0) / cell)) for x, y in found["read"]}
    assert reads <= drawn, (reads, drawn)
    assert reads <= {tuple(int(v) for v in z.split(",")) for z in found["zoom"]} and found["zoomed"]
    # the ring is wider than the layer's padding of 1: its title says the zeros past the padding are the offsets'
    titles = page.eval_on_selector_all("#svg text.title", "els => els.map(e => e.textContent)")
    assert "zeros past the edge: the padding, and beyond it where offsets read" in titles[0], titles
    assert "dashed = padding" not in titles[0], titles
    page.screenshot(path=str(ARTIFACTS / "explorer_deformable_corner.png"))
    assert errors == []
