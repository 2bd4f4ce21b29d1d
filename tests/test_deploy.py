"""Every family, in every dimension it has, down every path a PyTorch model takes (``convzoo.deploy.checks``):
channels-last, autocast (inference and a training step), float64/float16, torch.compile (fullgraph, forward and
backward), torch.export with dynamic batch and sizes, ONNX (dynamo exporter, dynamic batch) run in onnxruntime,
jit.trace, unbatched and empty inputs, the one dtype-mismatch message, and torch's weight_norm / spectral_norm on
every weight the layer owns (against the NumPy oracle, after the norm's parameters change). Each check compares
numbers. Cells where a path does not exist (``checks.not_applicable``: channels-last in 1-D, parametrizations on a
layer without a weight of two or more dims) are left out of the matrix, not skipped.

The default run (``make test``) runs every cell in 2-D and every 1-D / 3-D cell but the slowest two paths, ONNX
and torch.compile, which it runs in 1-D / 3-D for the standard conv only: those cells cost about 80 s of the CI's
15 minutes (an export or a compilation each) and share the 2-D cell's code but for torch's conv1d / conv3d;
``make test-all`` (and ``tools/deploy_table.py``, which renders the docs' table) runs them all."""

from __future__ import annotations

import warnings

import pytest
import torch

from convzoo.deploy import checks

# Known gaps, each a strict xfail (a fix makes the suite say so): what still fails, and why.
KNOWN_GAPS: dict[tuple[str, int, str], str] = {}

NEEDS = {"onnx": ("onnx", "onnxruntime", "onnxscript")}
SLOW_OUTSIDE_2D = ("onnx", "compile")  # 1-D / 3-D cells of these paths are slow but for the standard conv's


def _slow(name: str, dim: int, path: str) -> bool:
    return path in SLOW_OUTSIDE_2D and dim != 2 and name != "standard"


def _params():
    for name, dim in checks.cases():
        for path in checks.PATHS:
            if checks.not_applicable(name, dim, path) is not None:
                continue
            marks = []
            if (name, dim, path) in KNOWN_GAPS:
                marks.append(pytest.mark.xfail(reason=KNOWN_GAPS[name, dim, path], strict=True))
            if _slow(name, dim, path):
                marks.append(pytest.mark.slow)
            yield pytest.param(name, dim, path, id=f"{name}-{dim}d-{path}", marks=marks)


@pytest.mark.parametrize("name, dim, path", list(_params()))
def test_path(name: str, dim: int, path: str) -> None:
    for module in NEEDS.get(path, ()):
        pytest.importorskip(module, reason="the 'export' extra (pip install convzoo[export])")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks.PATHS[path](name, dim)


def test_the_cells_left_out_are_those_whose_path_does_not_exist() -> None:
    """The matrix leaves out exactly the cells whose check raises NotApplicable (one of each kind run here)."""
    left_out = [(name, dim, path) for name, dim in checks.cases() for path in checks.PATHS
                if checks.not_applicable(name, dim, path) is not None]
    assert ("standard", 1, "channels_last") in left_out and ("standard", 2, "channels_last") not in left_out
    kinds = {path for _, _, path in left_out}
    for path in kinds:
        name, dim, _ = next(cell for cell in left_out if cell[2] == path)
        with pytest.raises(checks.NotApplicable):
            checks.PATHS[path](name, dim)
    # every family with a conv or a linear inside gets the parametrization cells
    for name, dim in checks.cases():
        layer = checks.build(name, dim)
        if any(isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)) for m in layer.modules()):
            assert (name, dim, "weight_norm") not in left_out and (name, dim, "spectral_norm") not in left_out


def test_zero_started_offsets_under_weight_norm_say_why_and_the_fix() -> None:
    """DeformConv2d's offset conv starts at zero (sampling on the regular grid); torch's weight_norm divides by its
    zero norm. The layer says so in one message; with a non-zero start, as the message advises, it works."""
    import convzoo
    from torch.nn.utils.parametrizations import weight_norm

    layer = convzoo.DeformConv2d(4, 4, 3, padding=1)
    weight_norm(layer.offset_conv)
    with pytest.raises(ValueError, match=r"DeformConv2d\.offset_conv\.weight is not finite .*WeightNorm.*non-zero"):
        layer(checks.sample(2))
    layer = convzoo.DeformConv2d(4, 4, 3, padding=1)
    torch.nn.init.normal_(layer.offset_conv.weight, std=1e-3)
    weight_norm(layer.offset_conv)
    assert torch.isfinite(layer(checks.sample(2))).all()


def test_dcnv3_follows_weight_norm_on_its_conv() -> None:
    """The cell of issue 25: weight_norm on DCNv3's depthwise conv, then its magnitude g scaled: the output moves
    with it and equals the NumPy oracle fed the new weight."""
    import convzoo
    from torch.nn.utils.parametrizations import weight_norm

    torch.manual_seed(0)
    layer = convzoo.DCNv3Conv2d(4, 4, 3)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # offsets and masks away from their zero start
    weight_norm(layer.branch.depthwise)
    x = checks.sample(2)
    with torch.no_grad():
        before = layer(x)
        layer.branch.depthwise.parametrizations.weight.original0.mul_(2.0)
        after = layer(x)
    expected = torch.from_numpy(layer.reference_output(x.double().numpy()))
    assert checks.relative_error(after, before) > 1e-2
    assert checks.relative_error(after, expected) < 1e-5


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
