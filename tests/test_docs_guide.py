"""The user guide's code and tables as a reader meets them: every ```python block of docs/guide/*.md and
docs/index.md runs as written (in a fresh namespace, nothing defined beforehand), and the values its comments and
prose state are what it prints, each checked against an independent count (torch's own ops, forward hooks, a hand
walk); the Deploying page's tables are what ``tools/deploy_table.py`` lays out, one per group, narrow enough to fit;
the latency-budget how-to reaches a decision whatever the measured times; ``make docs-serve`` regenerates the
gallery as ``make docs`` does.

A block whose first line is ``# needs a GPU`` or ``# needs the network`` is skipped (there are none now); a block
that quantizes needs the ``mobile`` extra (executorch) and is skipped without it.
"""

from __future__ import annotations

import importlib.util
import math
import re
import runpy
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo as cz
from convzoo.deploy import checks

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs" / "guide").glob("*.md")), ROOT / "docs" / "index.md"]
SKIP_MARKS = {"# needs a GPU": "needs a GPU", "# needs the network": "needs the network"}


def python_blocks(page: Path) -> list[str]:
    """The ```python fenced blocks of a markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.M | re.S)


BLOCKS = [(page, i, code) for page in PAGES for i, code in enumerate(python_blocks(page))]


# ------------------------------------------------------------------------------- independent definitions
def hook_count(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(params, weight MACs) by forward hooks on torch's conv and linear modules: a conv's MACs are its output
    elements × C_in/groups × prod(kernel); a linear's in × out per output row."""
    macs = 0

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.modules.conv._ConvNd):
            macs += output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd,
                                                                                        nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(input_shape))
    for h in handles:
        h.remove()
    return sum(p.numel() for p in model.parameters()), macs


def resnet_field(model: nn.Module) -> tuple[int, int]:
    """(size, jump) of the receptive field of a torchvision ResNet's last conv, walked by hand along the main path
    (stem conv, max pool, each block's convs): r += (k − 1)·j, then j *= s."""
    r, j = 1, 1
    path = [model.conv1, model.maxpool] + [conv for layer in (model.layer1, model.layer2, model.layer3,
                                                              model.layer4)
                                           for block in layer for conv in (block.conv1, block.conv2)]
    for m in path:
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        s = m.stride if isinstance(m.stride, int) else m.stride[0]
        r, j = r + (k - 1) * j, j * s
    return r, j


def _transposed_sizes(i: int, k: int, s: int, p: int, d: int) -> list[int]:
    """The output sizes torch's ConvTranspose1d gives for every output_padding it accepts."""
    sizes = []
    for a in range(max(s, d)):
        layer = nn.ConvTranspose1d(1, 1, k, stride=s, padding=p, dilation=d, output_padding=a)
        sizes.append(layer(torch.zeros(1, 1, i)).shape[-1])
    return sizes


def expect_library_arithmetic() -> list[str]:
    import torchvision

    conv_size = F.conv1d(torch.zeros(1, 1, 7), torch.zeros(1, 1, 3)).shape[-1]
    reachable = _transposed_sizes(4, 3, 1, 0, 2)  # [8, 9]: output_padding 0 and 1 (allowed since d = 2 > s)
    back_to_4 = [n for n in reachable if F.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, 3), dilation=2).shape[-1]
                 == 4]
    taps = F.conv_transpose2d(torch.ones(1, 1, 6, 6), torch.ones(1, 1, 3, 3), stride=2)[0, 0, 2:4, 2:4]
    model = torchvision.models.resnet18()
    size, jump = resnet_field(model)
    params, macs = hook_count(model, (1, 3, 224, 224))
    assert reachable == [8, 9] and (size, jump, params) == (435, 32, 11_689_512)  # the prose's own numbers
    return [str(conv_size), str(_transposed_sizes(5, 3, 2, 1, 1)), str(back_to_4), str(taps.int().tolist()),
            f"({size}, {size}) ({jump}, {jump})", f"{params:,} params, {macs:,} MACs", "0 True"]


def expect_architectures() -> list[str]:
    import torchvision

    from convzoo.models import mobilenet_v1, shufflenet_v1

    params, macs = hook_count(mobilenet_v1(), (1, 3, 224, 224))
    assert round(macs / 1e6) == 569 and round(params / 1e6, 1) == 4.2  # MobileNet's Table 4
    _, shuffle_macs = hook_count(shufflenet_v1(groups=3, scale=0.5), (1, 3, 224, 224))
    assert round(shuffle_macs / 1e6) == 38  # ShuffleNet's Table 2, 0.5× g = 3
    resnet = torchvision.models.resnet18()
    before_params, before_macs = hook_count(resnet, (1, 3, 224, 224))
    # each of layer1's four 3×3 convs (64 → 64 at 56²) becomes a 3×1 (64 → 32) and a 1×3 (32 → 64), no bias
    old, new = 64 * 64 * 9, 64 * 32 * 3 + 32 * 64 * 3
    after_params, after_macs = before_params - 4 * (old - new), before_macs - 4 * (old - new) * 56 * 56
    return [f"{macs:,} MACs, {params:,} params", f"{shuffle_macs:,} MACs",
            f"model params {before_params:,} → {after_params:,}, MACs {before_macs:,} → {after_macs:,}",
            "4 convs converted"]


def expect_deploying() -> list[tuple[str, str]]:
    macs = (8 * 9 + 8 * 16) * 16 * 16  # depthwise 3×3 on 8 channels + pointwise 8 → 16, at 16 × 16 positions
    return [(f"100.0% of {macs:,} MACs int8", f"100.0 % of the layer's {macs:,} MACs")]


def expect_index() -> list[str]:
    # the registry's depthwise separable layer: a 3×3 depthwise conv, then a 1×1 conv 64 → 128
    layer = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64), nn.Conv2d(64, 128, 1))
    return [str(hook_count(layer, (1, 64, 56, 56))[1])]


# (page, block index) -> the printed values, from the independent definitions above: each is printed by the block
# and said by the page (a comment in the block, or the prose); a pair is (as printed, as the prose says it).
EXPECTED: dict[tuple[str, int], Callable[[], list[str | tuple[str, str]]]] = {
    ("library.md", 1): expect_library_arithmetic,
    ("architectures.md", 0): expect_architectures,
    ("deploying.md", 0): expect_deploying,
    ("index.md", 0): expect_index,
}


def test_every_expectation_names_a_block_that_exists():
    assert set(EXPECTED) <= {(page.name, i) for page, i, _ in BLOCKS}


@pytest.mark.parametrize("page, index, code", BLOCKS, ids=[f"{p.name}#{i}" for p, i, _ in BLOCKS])
def test_guide_block_runs_as_written_and_prints_what_the_page_says(page, index, code, tmp_path, monkeypatch,
                                                                    capsys):
    first = code.splitlines()[0].strip()
    if first in SKIP_MARKS:
        pytest.skip(f"{page.name} block {index} {SKIP_MARKS[first]}")
    if "quantize(" in code:
        pytest.importorskip("executorch", reason="the 'mobile' extra (pip install 'convzoo[mobile]')")
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    exec(compile(code, f"{page.name} block {index}", "exec"), {"__name__": "__docs__"})  # noqa: S102
    printed = capsys.readouterr().out
    if page.name == "deploying.md" and index == 0:  # int8 against float32: the tolerance the page states
        assert float(printed.strip().splitlines()[-1]) <= 0.05, printed
    expected = EXPECTED.get((page.name, index))
    if expected is None:
        return
    text = page.read_text(encoding="utf-8")
    for value in expected():
        value, stated = value if isinstance(value, tuple) else (value, value)
        assert value in printed, f"{page.name} block {index} did not print {value!r}:\n{printed}"
        assert stated in text, f"{page.name} block {index} prints {value!r}, but the page does not say {stated!r}"


# --------------------------------------------------------------------------------------- the deploy tables
def _deploy_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_table", ROOT / "tools" / "deploy_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_deploying_tables_are_what_the_tool_lays_out_for_every_family_and_path():
    tool = _deploy_table()
    text = (ROOT / "docs" / "guide" / "deploying.md").read_text(encoding="utf-8")
    cells, notes, families = tool.parse(text)
    registry = [f.name for f in cz.families()]
    assert families == registry
    assert all(set(cells[name]) == set(checks.PATHS) for name in registry)  # every check has a column
    block = text.split(tool.START, 1)[1].split(tool.END, 1)[0].strip("\n")
    assert block == tool.render(cells, notes, families)


def test_each_deploying_table_fits_the_page():
    """mkdocs-material gives each header cell at least 5rem (100 px); the guide's content column is about 780 px at
    a 1300 px window: the family column and at most five checks fit, six or more scroll out of sight."""
    text = (ROOT / "docs" / "guide" / "deploying.md").read_text(encoding="utf-8")
    headers = [line for line in text.splitlines() if line.startswith("| family |")]
    assert headers and all(line.count("|") - 1 <= 6 for line in headers), headers  # family + 5 checks: 660 px
    tool = _deploy_table()
    tool.check_groups(list(checks.PATHS))
    assert len(headers) == len(tool.GROUPS) and tool.MAX_COLUMNS <= 5


def test_the_tool_reads_back_the_one_wide_table_it_wrote_before():
    """--paths keeps the columns it does not rerun from the page, in the old one-table layout too."""
    tool = _deploy_table()
    old = (f"{tool.START}\n| family | channels-last | jit.trace |\n|---|---|---|\n| standard | ✓ | ✗ 3-D |\n"
           f"| grouped | — | ✓ |\n\ngrouped/jit.trace: size fixed\n{tool.END}")
    cells, notes, families = tool.parse(old)
    assert families == ["standard", "grouped"]
    assert cells == {"standard": {"channels_last": "✓", "jit_trace": "✗ 3-D"},
                     "grouped": {"channels_last": "—", "jit_trace": "✓"}}
    assert notes == {("grouped", "jit_trace"): "size fixed"}


def test_a_cell_is_a_pass_a_failure_by_dim_or_no_such_path():
    tool = _deploy_table()
    assert tool.cell([(1, "n/a"), (2, "ok")]) == "✓"
    assert tool.cell([(1, "fail"), (2, "ok"), (3, "fail")]) == "✗ 1-D, 3-D"
    assert tool.cell([(1, "n/a"), (2, "n/a")]) == "—"


# ------------------------------------------------------------------------------------ the latency how-to
def _row(family: str, forward_ms: float, params: int) -> cz.CompareRow:
    nan = math.nan
    return cz.CompareRow(family, params, 0, nan, forward_ms, nan, nan, nan, 0, nan, nan)


@pytest.mark.parametrize("rows, chosen", [
    # the site build's own times (2×32×16×16): no family is twice as fast as the standard conv
    ([_row("standard", 0.114, 9248), _row("depthwise_separable", 0.149, 1376), _row("grouped", 0.099, 2336),
      _row("shuffled_grouped", 0.110, 2336), _row("mixconv", 0.177, 880), _row("hetconv", 0.127, 3104)],
     "grouped"),  # budget 0.099 + (0.114 − 0.099)/2 = 0.1065: grouped alone
    ([_row("standard", 0.05, 9248), _row("grouped", 0.09, 2336)], "standard"),  # the standard conv is fastest
    ([_row("standard", 0.2, 9248), _row("grouped", 0.1, 2336), _row("shuffled_grouped", 0.09, 2336),
      _row("depthwise_separable", 0.06, 1376)], "shuffled_grouped"),  # budget 0.13: tie in params → the faster
])
def test_the_latency_how_to_chooses_a_family_on_any_measured_table(rows, chosen, monkeypatch, capsys):
    monkeypatch.setattr(cz, "compare", lambda **kwargs: rows)
    runpy.run_path(str(ROOT / "examples" / "howto" / "plot_1_latency_budget.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    choice = next(line for line in lines if line.startswith("most parameters within the budget:"))
    assert choice.split(": ", 1)[1].split(" (")[0] == chosen
    assert lines[-1].startswith("nothing fits:")  # the tight budget, half the fastest row, leaves none


# ------------------------------------------------------------------------------------------ make docs-serve
@pytest.mark.parametrize("target", ["docs", "docs-serve"])
def test_make_target_regenerates_the_gallery_before_mkdocs_runs(target):
    """mkdocs-gallery skips an example whose script's MD5 it has seen, whatever changed in src/: both targets
    remove docs/generated first, so every example runs against the code being served or built."""
    commands = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.splitlines()
    mkdocs = next(i for i, c in enumerate(commands) if "-m mkdocs" in c)
    assert any(re.match(r"rm -rf docs/generated\b", c) for c in commands[:mkdocs]), commands
