"""Export a module to ONNX with a dynamic batch axis and run it in onnxruntime at several batch sizes (shared by the
dynamic families' export tests)."""

from __future__ import annotations

import io

import numpy as np
import torch


def onnx_errors_at_batches(module: torch.nn.Module, sample_shape: tuple[int, ...], batches=(1, 3)) -> dict[int, float]:
    """Max |onnxruntime − PyTorch| per batch size, for a graph exported once at batch 2 with a dynamic batch."""
    import onnxruntime

    module = module.eval()
    buffer = io.BytesIO()
    example = torch.randn(2, *sample_shape, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(module, (example,), buffer, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    errors = {}
    for batch in batches:
        x = torch.randn(batch, *sample_shape, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = module(x).numpy()
        (actual,) = session.run(None, {"x": x.numpy()})
        assert actual.shape == expected.shape
        errors[batch] = float(np.abs(actual - expected).max())
    return errors
