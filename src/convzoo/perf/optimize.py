"""``optimize``: time a model in each memory format and keep the fastest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .timing import FORMATS, time_module, to_format



@dataclass
class FormatChoice:
    """Which memory format ``optimize`` chose, and the forward medians (ms) it measured for each."""

    memory_format: str
    timings_ms: dict[str, float]
    speedup: float  # time of the slower format / time of the chosen one

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def optimize(model: nn.Module, example_input: torch.Tensor, formats: Sequence[str] = ("contiguous", "channels_last"),
             backward: bool = False, **measure_kw: Any) -> tuple[nn.Module, FormatChoice]:
    """Time ``model`` on ``example_input`` in each memory format; return the model converted to the fastest one
    (``model.to(memory_format=...)``, in place) and the choice with its timings. Feed inputs in the same format
    (``x.contiguous(memory_format=torch.channels_last)``) for the speed to hold."""
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        raise ValueError("optimize needs a 4-D (N, C, H, W) example_input: memory formats are 2-D image layouts")
    timings = {}
    for name in formats:
        fmt = FORMATS[name]
        to_format(model, fmt)
        x = example_input.detach().contiguous(memory_format=fmt).requires_grad_(backward)
        timings[name] = time_module(model, [x], backward=backward, **measure_kw).median_ms
    best = min(timings, key=timings.get)
    to_format(model, FORMATS[best])
    return model, FormatChoice(best, timings, max(timings.values()) / timings[best])
