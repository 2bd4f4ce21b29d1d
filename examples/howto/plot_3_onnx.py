"""
Export to ONNX and run it in onnxruntime
========================================

How-to. convzoo layers are torch modules: ``torch.onnx.export`` exports them, and onnxruntime runs the file.
(Needs the ``onnx``, ``onnxscript`` and ``onnxruntime`` packages: ``pip install -e '.[docs]'``.)
"""

# %%
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import convzoo as cz

model = torch.nn.Sequential(cz.DepthwiseSeparableConv2d(3, 16, 3, padding=1), cz.ShuffledGroupedConv2d(16, 16, 3,
                            padding=1, groups=4)).eval()
x = torch.randn(1, 3, 16, 16)
path = Path(tempfile.mkdtemp()) / "model.onnx"
torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"])
print("ONNX file:", path.name, path.stat().st_size, "bytes")

# %%
session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
(y_ort,) = session.run(None, {"x": x.numpy()})
with torch.no_grad():
    y = model(x).numpy()
print("max |torch − onnxruntime|:", float(np.abs(y - y_ort).max()))
