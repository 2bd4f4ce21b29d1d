"""Deployment: the checks every family passes down each path a PyTorch model takes (``checks``), ONNX export
with an onnxruntime check (``onnx``, the ``convzoo export`` command), and int8 on mobile runtimes (issue 26):
``quantize`` (``convzoo.quantize``, PT2E), ``float_policy`` (what stays float and why), ``int8_report`` (per
convzoo layer), ``runtimes`` (eager, ExecuTorch/XNNPACK and onnxruntime runners), ``depthwise_repeat`` (depthwise
m > 1 as one output per group, for the runtimes' depthwise kernels), ``int8_checks`` (every family's
int8 check and its tolerance) and ``extras`` (the ``mobile`` extra)."""
