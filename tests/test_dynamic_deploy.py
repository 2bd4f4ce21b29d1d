"""Dynamic conv deployment: channels_last models, empty batches, jit.trace and ONNX export with a dynamic batch
(the batch is never folded into the graph: per-sample kernels by a batched matmul over unfolded patches)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convzoo as cz


def _layer(**kwargs) -> cz.DynamicConv2d:
    torch.manual_seed(0)
    return cz.DynamicConv2d(4, 6, 3, padding=1, temperature=1.0, **kwargs).eval()


def test_no_parameter_is_5d_and_channels_last_model_works():
    model = torch.nn.Sequential(_layer(), torch.nn.ReLU())
    assert all(p.dim() <= 4 for p in model.parameters())
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(3, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    y = model(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    expected = np.maximum(model[0].reference_output(x.numpy()), 0)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"groups": 2, "stride": 2, "dilation": 2}, {"padding_mode": "reflect"}],
                         ids=str)
def test_unfolded_form_is_exact(kwargs):
    layer = _layer(**kwargs).double()
    x = torch.randn(3, 4, 9, 8, dtype=torch.float64)
    np.testing.assert_allclose(layer._unfolded(x).detach().numpy(), layer.reference_output(x.numpy()), atol=1e-10)


@pytest.mark.parametrize("dim", [1, 3])
def test_unfolded_form_is_exact_in_1d_and_3d(dim):
    """The same N-d window-patch path (ONNX export, jit.trace) in 1-D and 3-D, against the NumPy oracle."""
    torch.manual_seed(0)
    layer = cz.build("dynamic", 4, 6, 3, dim, groups=2, stride=2, padding=1).double().eval()
    layer.temperature = 1.0
    x = torch.randn(3, 4, *(7, 6, 5)[:dim], dtype=torch.float64)
    np.testing.assert_allclose(layer._unfolded(x).detach().numpy(), layer.reference_output(x.numpy()), atol=1e-10)


def test_empty_batch():
    layer = _layer()
    y = layer(torch.randn(0, 4, 8, 8))
    assert y.shape == (0, 6, 8, 8)


def test_trace_at_one_batch_runs_at_another():
    layer = _layer()
    traced = torch.jit.trace(layer, torch.randn(2, 4, 8, 8))
    x = torch.randn(5, 4, 8, 8)
    torch.testing.assert_close(traced(x), layer(x), rtol=1e-4, atol=1e-5)


def test_onnx_export_dynamic_batch(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    layer = _layer()
    path = tmp_path / "dynamic.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(layer, (torch.randn(2, 4, 8, 8),), str(path), dynamo=True, dynamic_shapes=({0: batch},))
    session = ort.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    for n in (1, 3, 7):
        x = torch.randn(n, 4, 8, 8)
        (y,) = session.run(None, {name: x.numpy()})
        np.testing.assert_allclose(y, layer(x).detach().numpy(), rtol=0, atol=1e-4)
