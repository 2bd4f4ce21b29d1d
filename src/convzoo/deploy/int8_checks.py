"""The int8 check of every family: its layer quantized, run on a runtime, compared with its float32 output.

Tolerance: ‖y_int8 − y_fp32‖ / ‖y_fp32‖ ≤ ``INT8_TOLERANCE`` = 0.05 on random input. Why that size: an int8 tensor
with range R has a rounding error of RMS R/255/√12; for Gaussian-like data whose calibrated range spans 6–8
standard deviations that is 0.7–0.9 % of the tensor's RMS, and a layer quantizes its input, its weights (per
channel, smaller) and its output, composites a few tensors more, so 1–2.5 % is expected (measured: 1.0–2.4 %) and
0.05 leaves a factor of two. Sampling positions quantized to int8 measure 7 % on deformable convolution: the float
policy (``float_policy.py``) is what this tolerance checks.

The error is measured on a calibration batch, so it is the int8 arithmetic's and not the calibration's coverage
(which a user's data decides): a held-out batch whose outputs fall outside the calibrated range is clipped.
Parameters that a family initialises to zero (offset predictors) get small random values, so that the paths they
gate (sampling at learned offsets) are exercised. ``FamilyBank`` puts many families' layers in one model with one
output each, so that one export, one quantization and one lowering check them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

INT8_TOLERANCE = 0.05
CHANNELS = 8
SPATIAL = (12, 12)
BATCH = 2
CALIBRATION_BATCHES = 4


def build_layer(name: str, seed: int = 0) -> nn.Module:
    """The family's 2-D CHANNELS → CHANNELS layer (registry defaults), eval mode, zero-initialised parameters
    replaced by N(0, 0.1²) values."""
    import convzoo

    torch.manual_seed(seed)
    module = convzoo.build(name, CHANNELS, CHANNELS, None, 2).eval()
    with torch.no_grad():
        module(torch.zeros(1, CHANNELS, *SPATIAL))  # lazy parameters take their shape
        for parameter in module.parameters():
            if parameter.numel() and not parameter.any():
                parameter.normal_(0.0, 0.1)
    return module


class FamilyBank(nn.Module):
    """One layer per family, side by side on the same input: ``forward(x)`` returns one output per family."""

    def __init__(self, names: Sequence[str], seed: int = 0) -> None:
        super().__init__()
        self.layers = nn.ModuleDict({name: build_layer(name, seed) for name in names})

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(layer(x) for layer in self.layers.values())


def batches(count: int = CALIBRATION_BATCHES, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(BATCH, CHANNELS, *SPATIAL, generator=g) for _ in range(count)]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.detach().double(), expected.detach().double()
    return float((a - e).norm() / e.norm().clamp_min(1e-12))


@dataclass
class Int8Check:
    """Per family: the relative error of the int8 output against float32 on ``runtime`` ('simulated': the PT2E
    graph in eager PyTorch), the quantized model's report and the runner's notes."""

    runtime: str
    errors: dict[str, float]
    report: object
    notes: list[str]

    def failures(self, tolerance: float = INT8_TOLERANCE) -> dict[str, float]:
        return {name: e for name, e in self.errors.items() if not e <= tolerance}


def check_int8(names: Sequence[str], runtime: str) -> Int8Check:
    """Quantize a ``FamilyBank`` of ``names`` for ``runtime`` ('xnnpack', 'onnxruntime' or 'simulated': the
    converted graph in eager PyTorch, with the XNNPACK quantizer), calibrate on ``batches()``, run the last one."""
    from .quantize import quantize
    from .runtimes import runner

    bank = FamilyBank(names).eval()
    calibration = batches()
    x = calibration[-1]
    with torch.no_grad():
        expected = bank(x)
    quantized = quantize(bank, x, "xnnpack" if runtime == "simulated" else runtime, calibration)
    if runtime == "simulated":
        outputs, notes = quantized(x), []
    else:
        run = runner(bank, x, runtime, "int8", quantized=quantized)
        outputs, notes = run(x), run.notes
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    errors = {name: relative_error(y, e) for name, y, e in zip(names, outputs, expected)}
    return Int8Check(runtime, errors, quantized.report, notes)
