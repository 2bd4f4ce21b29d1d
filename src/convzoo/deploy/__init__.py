"""Deployment: the checks every family passes down each path a PyTorch model takes (``checks``), and ONNX export
with an onnxruntime check (``onnx``, the ``convzoo export`` command)."""
