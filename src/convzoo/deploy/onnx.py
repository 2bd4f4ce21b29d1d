"""ONNX export with a check: ``export_onnx`` writes the file with torch's dynamo exporter (opset 19, so deformable
conv stays one ``DeformConv`` node) and runs it in onnxruntime against the PyTorch module."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class ExportCheck:
    """What onnxruntime computed against PyTorch: the relative error (‖y_ort − y_torch‖/‖y_torch‖) per batch."""

    path: str
    input_shape: tuple[int, ...]
    errors: dict[int, float]
    ops: tuple[str, ...]


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: str, dynamic_batch: bool = False,
                check_batches: tuple[int, ...] | None = None, seed: int = 0) -> ExportCheck:
    """Export ``module`` (eval mode) for inputs of ``input_shape`` to ``path``; run the file in onnxruntime at the
    exported batch (and, with ``dynamic_batch``, at batch 1 and 3 too) and return the errors against PyTorch.
    With ``dynamic_batch`` a batch-1 shape is exported from a batch of 2 (the file takes any batch)."""
    try:
        import onnx
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise ImportError(f"ONNX export needs the 'export' extra (pip install 'convzoo[export]'): {error}") from None
    from .checks import onnx_export, onnx_run, relative_error

    module = module.eval()
    g = torch.Generator().manual_seed(seed)
    # torch.export specialises a dimension of size 1 (its 0/1 rule): a batch-1 example fixes the batch at 1 wherever
    # a reshape or split reads it, so a dynamic batch is exported from a batch of 2
    example = (2, *input_shape[1:]) if dynamic_batch and input_shape[0] == 1 else tuple(input_shape)
    x = torch.randn(*example, generator=g)
    with torch.no_grad():
        module(x)  # materialises lazy parameters; a wrong shape fails here with the layer's own message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx_export(module, x, Path(path), dynamic_batch=dynamic_batch)
    batches = check_batches or ((input_shape[0], 1, 3) if dynamic_batch else (input_shape[0],))
    errors = {}
    for batch in dict.fromkeys(batches):
        xb = torch.randn(batch, *input_shape[1:], generator=g)
        with torch.no_grad():
            expected = module(xb)
        errors[batch] = relative_error(onnx_run(Path(path), xb), expected)
    ops = tuple(node.op_type for node in onnx.load(path).graph.node)
    return ExportCheck(path, tuple(input_shape), errors, ops)
