"""Every family, in every dimension it has, down every path a PyTorch model takes (``convzoo.deploy.checks``):
channels-last, autocast, float64/float16, torch.compile (fullgraph, forward and backward), torch.export with
dynamic batch and sizes, ONNX (dynamo exporter, dynamic batch) run in onnxruntime, jit.trace, unbatched and empty
inputs, and the one dtype-mismatch message. Each check compares numbers with the eager float32 layer."""

from __future__ import annotations

import warnings

import pytest
import torch

from convzoo.deploy import checks

# Known gaps, each a strict xfail (a fix makes the suite say so): what still fails, and why.
KNOWN_GAPS: dict[tuple[str, int, str], str] = {}

NEEDS = {"onnx": ("onnx", "onnxruntime", "onnxscript")}


def _params():
    for name, dim in checks.cases():
        for path in checks.PATHS:
            marks = []
            if (name, dim, path) in KNOWN_GAPS:
                marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[name, dim, path], strict=True))
            yield pytest.param(name, dim, path, id=f"{name}-{dim}d-{path}", marks=marks)


@pytest.mark.parametrize("name, dim, path", list(_params()))
def test_path(name: str, dim: int, path: str) -> None:
    for module in NEEDS.get(path, ()):
        pytest.importorskip(module, reason="the 'export' extra (pip install convzoo[export])")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            checks.PATHS[path](name, dim)
        except checks.NotApplicable as why:
            pytest.skip(str(why))


@pytest.mark.parametrize("name", ["deformable", "deformable_v2"])
def test_deformable_onnx_is_one_deformconv_node(name: str, tmp_path) -> None:
    """v1 and v2 export to ONNX's DeformConv op, one node, and onnxruntime matches PyTorch on random offsets at
    batches 1, 3 and 7 (the export at batch 2, batch dynamic)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    module = checks.build(name, 2)
    # Random offsets: a non-trivial offset predictor, so the bilinear sampling really is exercised.
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = tmp_path / "d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks.onnx_export(module, checks.sample(2), path)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("DeformConv") == 1, ops
    assert not {"GatherElements", "GatherND", "GridSample"} & set(ops), ops
    for batch in (1, 3, 7):
        x = checks.sample(2, batch, seed=batch)
        with torch.no_grad():
            expected = module(x)
        assert checks.relative_error(checks.onnx_run(path, x), expected) < 1e-5


def test_dynamic_onnx_batches_1_3_7(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    module = checks.build("dynamic", 2)
    path = tmp_path / "dyn.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks.onnx_export(module, checks.sample(2), path)
    for batch in (1, 3, 7):
        x = checks.sample(2, batch, seed=batch)
        with torch.no_grad():
            expected = module(x)
        assert checks.relative_error(checks.onnx_run(path, x), expected) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["standard", "depthwise_separable", "mixconv", "global_depthwise", "transposed"])
def test_compile_inductor(name: str) -> None:
    checks.check_compile(name, 2, backend="inductor")


def test_checks_can_fail() -> None:
    """The comparison the checks rely on rejects a wrong answer."""
    x = torch.ones(2, 3)
    with pytest.raises(AssertionError, match="relative error"):
        checks.assert_close(x * 1.01, x, 1e-4, "wrong")
