"""HetConv through torch.export, FakeTensorMode, jit.trace and ONNX: nothing made under a tracer is kept in the
module (a fake scatter index made the eager grouped form 0.6 off after exporting a fresh layer, and a second
export refused the fake constant), and an export with dynamic H / W holds at other sizes (the 1×1 part's output
was cut to the export size). Every value is checked against the NumPy oracle (``reference_output``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.export import Dim

import convzoo as cz

FORMS = ("grouped", "masked_dense")
DYNAMIC = ({0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC},)
SIZES = [(12, 12), (13, 13), (11, 7), (20, 17)]
# stride, padding, dilation, padding_mode: the 1×1 part's crop / pad before and after differ in sign across these
GEOMETRIES = {
    "k3_s2_p0": {"kernel_size": 3, "stride": 2, "padding": 0},
    "k5_s2_p1": {"kernel_size": 5, "stride": 2, "padding": 1},
    "k3_s3_p2": {"kernel_size": 3, "stride": 3, "padding": 2},
    "k3_s2_d2": {"kernel_size": 3, "stride": 2, "dilation": 2},
    "k35_asym": {"kernel_size": (3, 5), "stride": 2, "padding": ((1, 0), (0, 3))},
    "k3_reflect": {"kernel_size": 3, "stride": 2, "padding": 1, "padding_mode": "reflect"},
}


def _layer(cin: int = 8, cout: int = 8, p: int = 4, **geometry) -> cz.HetConv2d:
    torch.manual_seed(0)
    geometry = geometry or {"kernel_size": 3, "padding": 1}
    return cz.HetConv2d(cin, cout, p=p, **geometry).eval()


def _oracle(layer: cz.HetConv2d, x: torch.Tensor) -> np.ndarray:
    return layer.reference_output(x.double().numpy())


def _close(y: torch.Tensor | np.ndarray, expected: np.ndarray) -> None:
    y = y.detach().double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, dtype=np.float64)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def _eager_forms_match_the_oracle(layer: cz.HetConv2d, x: torch.Tensor) -> None:
    expected = _oracle(layer, x)
    for form in FORMS:
        layer.implementation = form
        with torch.no_grad():
            _close(layer(x), expected)
        _close(layer(x), expected)  # with autograd: the kernels built from scratch
    layer.implementation = "auto"


def _nothing_fake_kept(layer: cz.HetConv2d) -> None:
    for index in layer.__dict__.get("_dense_index_cache", {}).values():
        assert all(type(t) is torch.Tensor and t.device.type == "cpu" for t in index)


@pytest.mark.parametrize("cin, cout, p", [(16, 16, 4), (8, 6, 2), (6, 10, 3), (4, 4, 1), (4, 5, 4)])
def test_exporting_a_fresh_layer_keeps_nothing_and_export_and_eager_stay_exact(cin, cout, p):
    """p = 1, p = C_in and C_out not a multiple of p: the kernel built from shape ops under export is the masked
    kernel in every case."""
    layer = _layer(cin, cout, p)
    x = torch.randn(2, cin, 7, 9)
    expected = _oracle(layer, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for form in FORMS:
            layer.implementation = form
            _close(torch.export.export(layer, (x,)).module()(x), expected)
        _nothing_fake_kept(layer)
        _eager_forms_match_the_oracle(layer, x)  # the grouped form read a fake index: 0.6 off, silently
        for form in FORMS:  # a second export of the same module refused the fake constant kept by the first
            layer.implementation = form
            _close(torch.export.export(layer, (x,)).module()(x), expected)


def test_a_call_under_fake_tensor_mode_leaves_eager_exact():
    layer = _layer(16, 16, 4)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        y = layer(mode.from_tensor(torch.randn(1, 16, 6, 6)))
        layer.dense_weight(), layer.dense_weight(torch.channels_last), layer.dense_1x1_weight()
    assert y.shape == (1, 16, 6, 6)
    _nothing_fake_kept(layer)
    _eager_forms_match_the_oracle(layer, torch.randn(2, 16, 6, 6))


def test_meta_layer_builds_its_kernels_without_keeping_them():
    layer = cz.HetConv2d(8, 6, 3, padding=1, p=4, device="meta")
    assert layer.dense_weight(torch.channels_last).shape == (6, 8, 3, 3)
    assert layer(torch.empty(1, 8, 5, 5, device="meta")).shape == (1, 6, 5, 5)
    assert "_dense_index_cache" not in layer.__dict__ or not layer.__dict__["_dense_index_cache"]


@pytest.mark.parametrize("name", GEOMETRIES)
def test_export_with_dynamic_height_and_width_holds_at_other_sizes(name):
    layer = _layer(**GEOMETRIES[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(layer, (torch.randn(2, 8, 12, 12),), dynamic_shapes=DYNAMIC)
    for size in SIZES:
        x = torch.randn(3, 8, *size)
        _close(program.module()(x), _oracle(layer, x))


def test_jit_trace_holds_at_other_sizes():
    layer = _layer(**GEOMETRIES["k35_asym"])
    traced = torch.jit.trace(layer, (torch.randn(2, 8, 12, 12),), check_trace=False)
    for size in SIZES:
        x = torch.randn(1, 8, *size)
        _close(traced(x), _oracle(layer, x))


@pytest.mark.parametrize("name", ["k3_s2_p0", "k35_asym"])
def test_legacy_onnx_with_dynamic_axes_holds_at_other_sizes(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    layer = _layer(**GEOMETRIES[name])
    path = str(tmp_path / "het.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.randn(2, 8, 12, 12),), path, dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    session = ort.InferenceSession(path)
    for size in SIZES:
        x = torch.randn(3, 8, *size)
        _close(session.run(None, {"x": x.numpy()})[0], _oracle(layer, x))


def test_dynamo_onnx_of_a_fresh_layer_holds_at_other_sizes_and_leaves_eager_exact(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    layer = _layer(**GEOMETRIES["k3_s2_p0"])
    path = str(tmp_path / "het.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(layer, (torch.randn(2, 8, 12, 12),), path, dynamo=True, dynamic_shapes=DYNAMIC,
                          verbose=False)
    session = ort.InferenceSession(path)
    name = session.get_inputs()[0].name
    for size in SIZES:
        x = torch.randn(3, 8, *size)
        _close(session.run(None, {name: x.numpy()})[0], _oracle(layer, x))
    _nothing_fake_kept(layer)
    _eager_forms_match_the_oracle(layer, torch.randn(2, 8, 11, 9))


@pytest.mark.parametrize("mode, pad, rule", [("reflect", 3, "<"), ("circular", 4, "<=")])
def test_a_copying_pad_larger_than_the_input_is_refused_by_name(mode, pad, rule):
    layer = cz.HetConv2d(4, 4, 3, padding=pad, padding_mode=mode)
    with pytest.raises(ValueError, match=rf"padding_mode='{mode}' needs each pad {rule} the input's size"):
        layer(torch.randn(1, 4, 3, 3))
    fits = torch.randn(1, 4, pad + 1 if mode == "reflect" else pad, 5, dtype=torch.float64)
    layer = layer.double()
    for form in FORMS:
        layer.implementation = form
        _close(layer(fits), _oracle(layer, fits))
