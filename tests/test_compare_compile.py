"""compare(compile_options=...) / `convzoo compare --compile`: every layer, the baseline too, timed as
torch.compile's module; the rows say how far the compiled output is from the eager one; a family that fails to
compile is reported and left out while the others run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import convzoo.perf.compare as cmp
from convzoo.cli import app
from convzoo.perf.compare import CompileRefused, compare

TINY = ["--batch", "1", "--in", "4", "--out", "8", "--size", "6"]
SHAPE = dict(batch=2, in_channels=4, out_channels=8, size=6)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles afresh: dynamo keeps a layer's compiled code for the next compare of the same layer class."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class CountingBackend:
    """A torch.compile backend that runs each graph dynamo captured as it is, counting the graphs it was given and
    the calls of the compiled code: the proof that a timed call went through torch.compile. ``fail_while`` names
    the family whose graphs it refuses (set by compare's progress callback), as a compiler that cannot build them."""

    def __init__(self) -> None:
        self.graphs = 0
        self.calls = 0
        self.current = ""  # "" until compare's first progress call: the baseline's graphs
        self.fail_while: str | None = None

    def __call__(self, graph: torch.fx.GraphModule, example_inputs):
        if self.fail_while is not None and self.current == self.fail_while:
            raise RuntimeError(f"cannot compile {self.current}")
        self.graphs += 1

        def run(*args):
            self.calls += 1
            return graph(*args)
        return run


def test_compiled_compare_times_the_compiled_layers():
    backend = CountingBackend()
    rows = compare(**SHAPE, families=["standard", "depthwise", "hetconv"], repeats=3,
                   progress=lambda name: setattr(backend, "current", name), compile_options={"backend": backend})
    assert [r.family for r in rows] == ["standard", "depthwise", "hetconv"]
    # each family's rounds: 3 rounds × (forward + forward-backward) for the family and the baseline, plus warm-ups
    assert backend.graphs >= 3 and backend.calls >= 3 * 2 * 2 * 3
    for r in rows:
        assert math.isfinite(r.compiled_difference) and r.compiled_difference < 1e-6, r  # this backend runs the graph
        assert r.max_error < 1e-5 and r.forward_ms > 0 and r.forward_backward_ms > 0
    eager = compare(**SHAPE, families=["depthwise"], repeats=1)
    assert all(math.isnan(r.compiled_difference) for r in eager)


def test_a_family_that_fails_to_compile_is_left_out_and_named():
    backend = CountingBackend()
    backend.fail_while = "hetconv"
    refusals: list = []
    rows = compare(**SHAPE, families=["depthwise", "hetconv"], repeats=1, refused=refusals.append,
                   progress=lambda name: setattr(backend, "current", name), compile_options={"backend": backend})
    assert [r.family for r in rows] == ["depthwise"]
    assert [type(e) for e in refusals] == [CompileRefused] and refusals[0].family == "hetconv"
    assert "torch.compile failed" in refusals[0].rule and "cannot compile hetconv" in refusals[0].rule
    assert cmp.refusal_line(refusals[0]).startswith("not run compiled: hetconv — torch.compile failed")
    with pytest.raises(CompileRefused, match="hetconv: torch.compile failed"):  # no refused callback: raised
        compare(**SHAPE, families=["hetconv"], repeats=1, progress=lambda name: setattr(backend, "current", name),
                compile_options={"backend": backend})
    backend.current, backend.fail_while = "", ""  # the baseline compiles before any progress call
    torch._dynamo.reset()  # standard's compiled code from the calls above would be reused
    with pytest.raises(CompileRefused, match="standard: torch.compile failed"):
        compare(**SHAPE, families=["depthwise"], repeats=1, refused=refusals.append,
                compile_options={"backend": backend})
    with pytest.raises(ValueError, match="compile_options='max-autotune' must be a mapping"):
        compare(**SHAPE, families=["depthwise"], repeats=1, compile_options="max-autotune")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_compare_compile_cli_records_the_mode_and_compiles(monkeypatch):
    compiled_with: list[dict] = []
    real = torch.compile

    def recording(module, **options):  # the mode asked for is recorded; the graphs run as captured (fast)
        compiled_with.append(options)
        return real(module, backend="eager")

    monkeypatch.setattr(torch, "compile", recording)
    result = invoke("compare", "depthwise", *TINY, "--repeats", "1", "--json", "--compile")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["compile"] == {}
    assert compiled_with == [{}, {}, {}]  # the baseline, the copy of standard that gives the noise floor, depthwise
    row = json.loads(result.stdout)["rows"][0]
    assert row["family"] == "depthwise" and row["compiled_difference"] < 1e-6
    compiled_with.clear()
    table = invoke("compare", "depthwise", *TINY, "--repeats", "1", "--compile-mode", "max-autotune")
    assert table.exit_code == 0, table.output
    assert compiled_with == [{"mode": "max-autotune"}] * 3
    assert "torch.compile(mode='max-autotune')" in table.output and "vs eager" in table.output


def test_compare_compile_errors_are_one_line():
    bad = invoke("compare", "depthwise", *TINY, "--compile-mode", "fastest")
    assert bad.exit_code == 2 and "error: --compile-mode 'fastest' must be one of torch.compile's modes" in bad.output
    assert "max-autotune" in bad.output and "Traceback" not in bad.output
    runtime = invoke("compare", "depthwise", *TINY, "--runtime", "onnxruntime", "--compile")
    assert runtime.exit_code == 2 and "--compile times PyTorch layers under torch.compile" in runtime.output


@pytest.mark.slow
def test_compare_compile_with_inductor_matches_eager():
    """torch's default compiler (inductor, C++ on the CPU): the compiled layers give the eager outputs."""
    rows = compare(**SHAPE, families=["standard", "depthwise", "mixconv"], repeats=1, compile_options={})
    assert [r.family for r in rows] == ["standard", "depthwise", "mixconv"]
    assert all(r.compiled_difference < 1e-5 for r in rows), [(r.family, r.compiled_difference) for r in rows]
