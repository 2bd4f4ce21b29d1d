"""Two ways to an int8 ONNX model for onnxruntime, measured on every family: which one is sound.

    python benchmarks/int8_onnx_routes.py [--out benchmarks/results]

A. PT2E → QDQ ONNX (what ``convzoo.deploy.runtimes`` does): ``convzoo.quantize(..., backend='onnxruntime')``, the
   converted graph exported by ``torch.onnx.export``; its quantize/dequantize pairs become QuantizeLinear /
   DequantizeLinear.
B. onnxruntime's own tool: the float32 model exported to ONNX, then
   ``onnxruntime.quantization.quantize_static`` (QDQ format, uint8 activations, int8 weights per channel — the
   same scheme as A) calibrated on the same batches.

Per family (its 2-D layer from ``convzoo.deploy.int8_checks.build_layer``, calibrated on the same 4 random batches,
measured on the last): the relative L2 error against float32 eager, the int8 kernels onnxruntime runs after its
graph optimisation, and — for A — the distance from the same quantized graph simulated in PyTorch (the numbers the
report, the XNNPACK program and the sweep's accuracy are about). Written in the results format to
OUT/int8_onnx_routes.json (the docs' Performance pages render it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

import torch

import convzoo
from convzoo.deploy.int8_checks import batches, build_layer, relative_error
from convzoo.deploy.quantize import quantize
from convzoo.deploy.runtimes import onnx_file, onnxruntime_session, runner
from convzoo.perf.results import Table, machine_info, write_results
from convzoo.perf.runtime_compare import machine_header, runtime_versions


def route_b(module: torch.nn.Module, calibration: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, int]]:
    """onnxruntime.quantization.quantize_static on the float32 export; the output on the last batch."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx_file(module, calibration[-1], fp32)
        name = onnx.load(str(fp32)).graph.input[0].name

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.feeds = iter([{name: b.numpy()} for b in calibration])

            def get_next(self):
                return next(self.feeds, None)

        quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        session, kernels, _ = onnxruntime_session(int8, torch.get_num_threads())
        y = torch.from_numpy(session.run(None, {name: calibration[-1].numpy()})[0])
    return y, kernels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.WARNING)  # quantize_static's advice to pre-process the model
    print(machine_header(), flush=True)
    columns = ["family", ("A: PT2E → QDQ error", ".3f"), ("A vs PT2E simulated", ".1e"), "A: int8 kernels",
               "A: float layers", ("B: quantize_static error", ".3f"), "B: int8 kernels"]
    rows = []
    for family in convzoo.families():
        module = build_layer(family.name)
        calibration = batches()
        x = calibration[-1]
        with torch.no_grad():
            expected = module(x)
        quantized = quantize(module, x, "onnxruntime", calibration)
        a = runner(module, x, "onnxruntime", "int8", quantized=quantized)
        y_a = a(x)
        try:
            y_b, kernels_b = route_b(module, calibration)
            b_error, b_kernels = relative_error(y_b, expected), ", ".join(kernels_b) or "none"
        except Exception as error:  # a graph quantize_static cannot take: say so in the row
            b_error, b_kernels = None, "failed: " + str(error).strip().splitlines()[0][:80]
        layer = quantized.report.layers[0]
        rows.append([family.name, relative_error(y_a, expected), relative_error(y_a, quantized(x)),
                     ", ".join(a.int8_kernels or {}) or "none",
                     ", ".join(layer.float_ops) if layer.status != "int8" else "", b_error, b_kernels])
        print(" | ".join(str(v) for v in rows[-1]), flush=True)
    table = Table("Relative L2 error against float32 eager, per family (2-D layer, 4 calibration batches)", columns,
                  rows, "A: the PT2E graph exported as QDQ ONNX (what convzoo runs on onnxruntime); B: "
                        "onnxruntime.quantization.quantize_static on the float32 export. 'A vs PT2E simulated': "
                        "onnxruntime's output against the same quantized graph run in PyTorch.")
    path = write_results(os.path.join(args.out, "int8_onnx_routes.json"), "Two routes to int8 ONNX for onnxruntime",
                         [table], description=__doc__.split("\n\n", 2)[2],
                         machine=machine_info(**runtime_versions()), data={"rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
