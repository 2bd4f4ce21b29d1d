"""
Quantize a MobileNet to int8 and run it on XNNPACK
==================================================

How-to. Phones run MobileNets in int8 through a mobile runtime, not in float32 eager PyTorch. ``convzoo.quantize``
takes any model built from convzoo layers through PyTorch's PT2E flow (``torch.export`` → ExecuTorch's XNNPACK
quantizer → calibration → convert); ``convzoo.deploy.runtimes.runner`` lowers it to ExecuTorch with the XNNPACK
delegate (the CPU backend of the mobile runtimes) or exports it as QDQ ONNX for onnxruntime.
Families: `depthwise_separable`, `standard`, `grouped`, `deformable`.
(Needs the ``mobile`` extra: ``pip install -e '.[mobile]'``. Small sizes here; the measured tables are
``benchmarks/int8_runtimes.py``'s.)
"""

# %%
# Quantize: calibrate on a few batches
# ------------------------------------
# Calibration runs the model on batches like the ones it will see and records each activation's range (a histogram
# observer picks the int8 range); weights get one int8 scale per output channel. The model is exported at a fixed
# shape, so calibration batches have the example input's shape. The report says, per convzoo layer (found through
# the layer contract, so a user's own subclass counts too), how many multiply-accumulates run in int8.
import time
import warnings

import torch

import convzoo as cz
from convzoo.deploy.runtimes import runner

warnings.filterwarnings("ignore")
torch.manual_seed(0)
model = cz.models.mobilenet_v1(0.25, 96, num_classes=10).eval()  # width α = 0.25, resolution ρ = 96
g = torch.Generator().manual_seed(0)
calibration = [torch.randn(1, 3, 96, 96, generator=g) for _ in range(4)]
x = torch.randn(1, 3, 96, 96, generator=g)

quantized = cz.quantize(model, x, backend="xnnpack", calibration=calibration)
print(quantized.report)

# %%
# Run it on XNNPACK
# -----------------
# ``runner`` lowers the quantized graph with ``to_edge_transform_and_lower`` and the ``XnnpackPartitioner`` and loads
# the program in ExecuTorch's Python runtime. The float32 model goes down the same way for comparison. Error:
# relative L2 distance of the logits from eager float32 (random weights: only the arithmetic is compared).
xnnpack_int8 = runner(model, x, "xnnpack", "int8", quantized=quantized)
xnnpack_fp32 = runner(model, x, "xnnpack", "fp32")
with torch.no_grad():
    expected = model(x)
for name, run in (("xnnpack fp32", xnnpack_fp32), ("xnnpack int8", xnnpack_int8)):
    y = run(x)
    print(f"{name}: program {run.size_bytes / 1e6:.2f} MB, error {float((y - expected).norm() / expected.norm()):.1e}")


def fastest_ms(fn, rounds: int = 20) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - start) * 1e3)
    return min(times)


@torch.no_grad()
def eager(t: torch.Tensor) -> torch.Tensor:
    return model(t)


print(f"fastest of 20 runs: eager fp32 {fastest_ms(eager):.2f} ms, xnnpack fp32 {fastest_ms(xnnpack_fp32):.2f} ms, "
      f"xnnpack int8 {fastest_ms(xnnpack_int8):.2f} ms (this build machine, not interleaved: see the benchmark)")

# %%
# Read the compare table
# ----------------------
# ``convzoo compare --runtime xnnpack --dtype int8`` times every family against the standard conv *on the runtime*,
# next to the same pair in eager float32 in the same rounds. Columns: the MAC ratio (family / standard) is what the
# articles promise; ``speed ratio`` (standard / family, > 1 faster) is what XNNPACK int8 delivers; ``eager ratio``
# the same in eager float32; ``vs eager`` what moving this family to XNNPACK int8 gains; ``error`` its int8 error;
# ``runs`` the share of MACs in int8 and the operators left outside the delegate. A family whose operators have no
# int8 form (deformable sampling) stays float there: its row says so. A row marked ``!`` had rounds the machine
# disturbed (another process took a core mid-call): don't read its ratios. Layers this small run on one thread here,
# where a shared build machine disturbs them least.
from convzoo.perf.runtime_compare import compare_on_runtime, markdown_table

rows = compare_on_runtime("xnnpack", "int8", batch=1, in_channels=16, out_channels=32, size=16,
                          families=["standard", "depthwise_separable", "grouped", "deformable"], repeats=5, threads=1)
print(markdown_table(rows))
