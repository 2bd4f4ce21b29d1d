"""int8 post-training quantization (``convzoo.quantize``) run on ExecuTorch/XNNPACK and onnxruntime.

Each family's layer, quantized with calibration on random input, must give its float32 output within
``INT8_TOLERANCE`` (relative L2, see ``deploy/int8_checks.py``) on each runtime, and the report must name the
layers left in floating point and why. The default run checks every family in one program per runtime (lowering
costs seconds per program; about a minute for both runtimes); every family on each runtime in a program of its
own, which names the one that fails, is marked slow (``make test-all``). Tests skip only when the ``mobile`` extra is
not installed.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import convzoo
from convzoo.deploy import int8_checks
from convzoo.deploy.int8_checks import INT8_TOLERANCE, check_int8

MOBILE = "the 'mobile' extra is not installed (pip install 'convzoo[mobile]')"
RUNTIME_MODULES = {"xnnpack": ("executorch", "torchao"), "onnxruntime": ("torchao", "executorch", "onnx",
                                                                      "onnxruntime", "onnxscript")}
FLOAT_LAYERS = {"deformable": "float", "deformable_v2": "float", "dynamic": "partly", "condconv": "partly",
                "odconv": "partly", "dcnv3": "partly"}  # sampling and per-sample kernels stay float; all else is int8


def _need(runtime: str) -> None:
    for module in RUNTIME_MODULES[runtime]:
        pytest.importorskip(module, reason=MOBILE)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# The XNNPACK lowering of all 30 families is a minute of the CI's 15: it runs with the slow tests, and the default
# run checks the same quantized program in eager PyTorch ('simulated': the XNNPACK quantizer's converted graph) plus
# the XNNPACK lowering of a MobileNet in the docs' int8 how-to, which the docs build executes.
@pytest.mark.parametrize("runtime", ["simulated", pytest.param("xnnpack", marks=pytest.mark.slow), "onnxruntime"])
def test_every_family_runs_in_int8_in_one_program(runtime: str) -> None:
    _need("xnnpack" if runtime == "simulated" else runtime)
    names = [family.name for family in convzoo.families()]
    check = check_int8(names, runtime)
    assert not check.failures(), (check.failures(), str(check.report))
    assert sorted(check.errors) == sorted(names)
    assert all(e > 1e-4 for e in check.errors.values()), check.errors  # int8 rounding is there: not a float run
    status = {row.name.split(".")[-1]: row.status for row in check.report.layers}
    assert status == {name: FLOAT_LAYERS.get(name, "int8") for name in names}, str(check.report)
    assert set(check.report.float_layers()) == {f"layers.{name}" for name in FLOAT_LAYERS}
    if runtime == "onnxruntime":  # the QDQ graph reaches onnxruntime's int8 convolutions
        assert any("QLinearConv" in note for note in check.notes), check.notes


def test_report_says_why_operators_stay_float() -> None:
    _need("xnnpack")
    check = check_int8(["deformable", "dynamic", "depthwise_separable", "dcnv3"], "simulated")
    rows = {row.name.split(".")[-1]: row for row in check.report.layers}
    deformable, dynamic, dcnv3 = rows["deformable"], rows["dynamic"], rows["dcnv3"]
    assert "no int8 kernel" in deformable.float_ops["grid_sampler"]
    assert "sampling positions" in deformable.float_ops["conv2d"]  # the offset predictor stays float
    assert "per-sample kernel" in dynamic.float_ops["matmul"]
    # DCNv3 (8 channels, G = 2, 3×3, batch 2 of 12×12): the input and output projections (8·8 each) and the mask
    # Linear (8 → G·9 = 18) are int8; the branch's depthwise conv (8·9) and offset Linear (8 → 36) compute positions
    positions = 2 * 12 * 12
    assert "sampling positions" in dcnv3.float_ops["linear"]
    assert dcnv3.int8_macs == positions * (8 * 8 + 8 * 8 + 8 * 18), str(check.report)
    assert dcnv3.float_macs == positions * (8 * 9 + 8 * 36), str(check.report)
    assert rows["depthwise_separable"].float_ops == {}
    assert rows["depthwise_separable"].int8_macs == convzoo.cost(
        int8_checks.build_layer("depthwise_separable"), (2, 8, 12, 12)).macs
    assert not check.failures(), check.errors


def test_int8_positions_would_fail_the_tolerance() -> None:
    """The tolerance can fail: with the float policy switched off the quantizer makes deformable sampling positions
    int8, and the error exceeds it."""
    _need("xnnpack")
    from convzoo.deploy import float_policy

    original = float_policy.keep_float
    try:
        float_policy.keep_float = lambda graph_module: {}
        check = check_int8(["deformable"], "simulated")
    finally:
        float_policy.keep_float = original
    assert check.errors["deformable"] > INT8_TOLERANCE, check.errors


def test_quantize_a_mobilenet_end_to_end() -> None:
    """MobileNet v1 0.25 for 32×32 inputs (BatchNorms folded into the convs by PT2E): every convzoo layer int8, the
    logits within twice the single-layer tolerance of float32 (28 layers in sequence, each adds its rounding)."""
    _need("xnnpack")
    torch.manual_seed(0)
    model = convzoo.models.mobilenet_v1_small(0.25, num_classes=10).eval()
    g = torch.Generator().manual_seed(0)
    calibration = [torch.randn(2, 3, 32, 32, generator=g) for _ in range(2)]
    quantized = convzoo.quantize(model, calibration[0], calibration=calibration)
    assert quantized.report.float_layers() == []
    assert {row.status for row in quantized.report.layers if row.name != "(outside convzoo layers)"} == {"int8"}
    x = calibration[-1]
    with torch.no_grad():
        error = int8_checks.relative_error(quantized(x), model(x))
    assert 1e-4 < error < 2 * INT8_TOLERANCE


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_a_batch_norm_that_follows_no_conv_becomes_the_depthwise_conv_it_equals(dim: int) -> None:
    """RepVGG's identity branch BN₀(x) as a 1×1 depthwise conv (exact in float, checked against BN's formula with
    its statistics); the BN after the conv stays for prepare_pt2e to fold; an affine-free BN is rewritten too."""
    _need("xnnpack")
    from convzoo.deploy.quantize import batch_norms_as_convs, fold_constants

    conv, norm = (getattr(torch.nn, f"Conv{dim}d"), getattr(torch.nn, f"BatchNorm{dim}d"))

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.after_conv = conv(4, 4, 3, padding=1), norm(4)
            self.identity, self.plain = norm(4), norm(4, affine=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.after_conv(self.conv(x)) + self.identity(x) + self.plain(x)

    torch.manual_seed(0)
    block = Block().eval()
    for bn in (block.after_conv, block.identity, block.plain):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        if bn.affine:
            bn.weight.data.normal_()
            bn.bias.data.normal_()
    x = torch.randn(2, 4, *(5,) * dim)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = batch_norms_as_convs(fold_constants(torch.export.export(block, (x,)).module()))
    targets = [node.target for node in graph.graph.nodes if node.op == "call_function"]
    assert targets.count(torch.ops.aten.batch_norm.default) == 1  # the one after the conv
    assert targets.count(getattr(torch.ops.aten, f"conv{dim}d").default) == 3
    shape = (1, 4) + (1,) * dim
    expected = block.after_conv(block.conv(x)) + sum(
        (x - bn.running_mean.view(shape)) / torch.sqrt(bn.running_var.view(shape) + bn.eps)
        * (bn.weight.view(shape) if bn.affine else 1) + (bn.bias.view(shape) if bn.affine else 0)
        for bn in (block.identity, block.plain))
    with torch.no_grad():
        torch.testing.assert_close(graph(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dim, m, stride, padding, dilation, bias", [
    (1, 2, 1, 1, 1, True), (2, 2, 1, 1, 1, True), (2, 3, 2, 2, 2, False), (3, 2, 1, 0, 1, True)])
def test_a_depthwise_conv_with_multiplier_reads_its_input_repeated(dim, m, stride, padding, dilation, bias) -> None:
    """m > 1 outputs per input channel become one output per group of the input repeated m times: the same values
    as the NumPy oracle's grouped correlation; convs with other groupings, and transposed ones, are left alone."""
    import numpy as np

    from convzoo.deploy.depthwise_repeat import depthwise_repeat_input
    from convzoo.oracle.reference import correlate

    layer = getattr(convzoo, f"DepthwiseConv{dim}d")(3, 3 * m, 3, stride, padding, dilation, bias=bias).eval()
    others = [torch.nn.Conv2d(4, 8, 3, groups=2), torch.nn.Conv2d(4, 4, 3, groups=4), torch.nn.Conv2d(1, 4, 3),
              torch.nn.ConvTranspose2d(4, 8, 3, groups=4)]
    x = torch.randn(2, 3, *(7,) * dim, dtype=torch.float64)
    graph = torch.export.export(layer.double(), (x,)).module()
    assert depthwise_repeat_input(graph) == 1
    convs = [n for n in graph.graph.nodes if n.op == "call_function" and "conv" in str(n.target)]
    assert len(convs) == 1 and convs[0].args[6] == 3 * m  # groups: one input and one output channel each
    expected = correlate(x.numpy(), layer.weight.detach().numpy(), None if not bias else layer.bias.detach().numpy(),
                         stride, padding, dilation, groups=3)
    np.testing.assert_allclose(graph(x).detach().numpy(), expected, rtol=0, atol=1e-12)
    for other in others:
        y = torch.randn(1, other.in_channels, 6, 6)
        assert depthwise_repeat_input(torch.export.export(other.eval(), (y,)).module()) == 0, other
    global_depthwise = torch.nn.Conv2d(4, 8, 6, groups=4).eval()  # one output position: left alone on request
    y = torch.randn(1, 4, 6, 6)
    assert depthwise_repeat_input(torch.export.export(global_depthwise, (y,)).module(), keep_global=True) == 0
    graph = torch.export.export(global_depthwise, (y,)).module()
    assert depthwise_repeat_input(graph, keep_global=False) == 1
    torch.testing.assert_close(graph(y), global_depthwise(y))


def test_quantized_depthwise_with_multiplier_runs_int8_on_one_output_per_group() -> None:
    """DepthwiseConv2d 4 → 8 quantized: its conv reads the repeated input (groups 8), is int8 as before, runs
    wholly inside XNNPACK's delegate, and its output there matches the simulated int8 model."""
    _need("xnnpack")
    from convzoo.deploy.runtimes import runner

    layer = convzoo.DepthwiseConv2d(4, 8, 3, padding=1).eval()
    x = torch.randn(2, 4, 10, 10)
    q = convzoo.quantize(layer, x)
    groups = [n.args[6] for n in q.module.graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert groups == [8]
    assert [row.status for row in q.report.layers] == ["int8"], str(q.report)
    run = runner(layer, x, "xnnpack", "int8", quantized=q)
    assert not run.outside_delegate, run.outside_delegate  # the copies are distinct: XNNPACK takes their cat
    with torch.no_grad():
        assert int8_checks.relative_error(run(x), q(x)) < 1e-2
        assert int8_checks.relative_error(run(x), layer(x)) < INT8_TOLERANCE


def test_runner_refuses_a_quantized_model_for_another_runtime_or_dtype() -> None:
    # an onnxruntime-quantized graph given to the xnnpack runner failed deep in ExecuTorch ("Missing out variants:
    # quantized_decomposed::quantize_per_tensor"); given with dtype='fp32' it ran the float model while the summary
    # said "int8 MACs 100%"
    _need("onnxruntime")
    from convzoo.deploy.runtimes import runner

    layer = int8_checks.build_layer("standard")
    x = torch.randn(1, *int8_checks.build_layer("standard").weight.shape[1:2], 8, 8)
    q = convzoo.quantize(layer, x, backend="onnxruntime")
    with pytest.raises(ValueError, match="quantized= was made for backend 'onnxruntime', not runtime='xnnpack'"):
        runner(layer, x, "xnnpack", "int8", quantized=q)
    with pytest.raises(ValueError, match="quantized= is an int8 model but dtype='fp32'"):
        runner(layer, x, "onnxruntime", "fp32", quantized=q)
    run = runner(layer, x, "onnxruntime", "int8", quantized=q)
    with torch.no_grad():
        assert int8_checks.relative_error(run(x), layer(x)) < INT8_TOLERANCE


class ThreadsSeen(torch.nn.Module):
    """A 1×1 conv that records torch's thread count at each call."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.seen = torch.nn.Conv2d(2, 2, 1), []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.get_num_threads())
        return self.conv(x)


def test_runner_runs_its_calls_on_its_threads_and_leaves_the_process_as_it_was() -> None:
    # runner(threads=1) used to set the process's torch thread count and leave it: training after an int8 check ran
    # on one thread
    from convzoo.deploy.runtimes import runner

    before = torch.get_num_threads()
    other = 1 if before > 1 else 2
    try:
        model, x = ThreadsSeen(), torch.randn(1, 2, 4, 4)
        run = runner(model, x, "eager", "fp32", threads=other)
        assert torch.get_num_threads() == before
        model.seen.clear()
        with torch.no_grad():
            assert torch.equal(run(x), model.conv(x))
        assert model.seen == [other] and torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_quantize_checks_its_arguments() -> None:
    _need("xnnpack")
    layer = int8_checks.build_layer("standard")
    x = torch.randn(2, 8, 12, 12)
    with pytest.raises(ValueError, match="backend='tflite' must be one of xnnpack, onnxruntime"):
        convzoo.quantize(layer, x, backend="tflite")
    with pytest.raises(ValueError, match=r"calibration batch 1 has shape \(3, 8, 12, 12\).*\(2, 8, 12, 12\)"):
        convzoo.quantize(layer, x, calibration=[x, torch.randn(3, 8, 12, 12)])
    with pytest.raises(ValueError, match="calibration is empty"):
        convzoo.quantize(layer, x, calibration=[])
    with pytest.raises(TypeError, match=r"example_input must be float32 \(and the model float32: \.float\(\)\), "
                                        "got torch.int64"):
        convzoo.quantize(layer, x.long())
    with pytest.raises(TypeError, match="example_input must be float32 .*got torch.float64"):
        convzoo.quantize(layer.double(), x.double())
    with pytest.raises(TypeError, match=r"model has torch.float64 parameters; quantize takes a float32 model"):
        convzoo.quantize(layer.double(), x)


def test_missing_package_is_one_import_error(monkeypatch) -> None:
    from convzoo.deploy import extras, runtimes

    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError) as error:
        convzoo.quantize(int8_checks.build_layer("standard"), torch.randn(1, 8, 12, 12))
    text = str(error.value)
    assert "'torchao'" in text and "pip install 'convzoo[mobile]'" in text and "\n" not in text
    with pytest.raises(ImportError, match=r"the xnnpack runtime needs 'executorch', 'torchao', not installed"):
        runtimes.check_runtime("xnnpack", "fp32")
    with pytest.raises(ValueError, match="dtype='int8' needs runtime 'xnnpack' or 'onnxruntime'"):
        runtimes.check_runtime("eager", "int8")


def test_xnnpack_keeps_padded_average_pooling_in_the_delegate() -> None:
    """ShuffleNet's shortcut pooling (3×3, stride 2, padding 1, padded zeros counted) runs inside XNNPACK as an
    explicit pad and an unpadded pool, with the same output."""
    _need("xnnpack")
    from convzoo.deploy.runtimes import runner

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AvgPool2d(3, 2, 1)).eval()
    x = torch.randn(1, 3, 9, 9)
    run = runner(model, x, "xnnpack", "fp32")
    assert "avg_pool2d" not in run.outside_delegate, run.outside_delegate
    with torch.no_grad():
        assert int8_checks.relative_error(run(x), model(x)) < 1e-6


def _all_families():
    for family in convzoo.families():
        for runtime in ("xnnpack", "onnxruntime"):
            yield pytest.param(family.name, runtime, id=f"{family.name}-{runtime}", marks=pytest.mark.slow)


@pytest.mark.parametrize("name, runtime", list(_all_families()))
def test_every_family_runs_in_int8(name: str, runtime: str) -> None:
    _need(runtime)
    check = check_int8([name], runtime)
    assert not check.failures(), (check.errors, str(check.report))
    assert check.errors[name] > 1e-4, check.errors
