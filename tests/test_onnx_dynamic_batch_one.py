"""A dynamic-batch ONNX export from a batch-1 shape takes every batch.

torch.export specialises a dimension of size 1, so a batch-1 example fixed the batch wherever a reshape or split
read it: `convzoo export fasternet_t0 --dynamic-batch` wrote a file whose Reshape was {1, 1280}, said "(batch
dynamic)", and onnxruntime failed at batch 3. The check: onnxruntime against the eager model at batches 1, 2, 3.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")


def test_a_batch_one_shape_exports_a_dynamic_batch(tmp_path) -> None:
    from convzoo.deploy.checks import onnx_run
    from convzoo.deploy.onnx import export_onnx

    from convzoo.models.fasternet import FasterNet

    torch.manual_seed(0)
    # a small FasterNet: partial convs split the channels, the head pools, projects and flattens by the batch
    model = FasterNet(8, (1, 1, 1, 1), feature_dim=16, num_classes=5).eval()
    path = tmp_path / "m.onnx"
    result = export_onnx(model, (1, 3, 32, 32), str(path), dynamic_batch=True)
    assert set(result.errors) == {1, 3} and max(result.errors.values()) < 1e-5, result.errors
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(onnx_run(path, x), model(x), rtol=1e-5, atol=1e-5)
