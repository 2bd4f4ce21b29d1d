"""Memory formats: which channels-last format a tensor is in, so a layer can hand its output back in it.

torch's convs return a channels-last output (N, C, *S) with strides (prod(S)·C, 1, …, C) for a channels-last
input; a layer built from reshapes, reductions or matmuls must do the same on purpose.
"""

from __future__ import annotations

import torch

CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}  # tensor dims (N, C, *S) → its format


def channels_last_format(x: torch.Tensor) -> torch.memory_format | None:
    """``torch.channels_last`` (4-D) or ``torch.channels_last_3d`` (5-D) when ``x`` is laid out that way and not
    also contiguous (C = 1 or S = 1 is both: None), else None."""
    fmt = CHANNELS_LAST.get(x.dim())
    if fmt is None or x.is_contiguous() or not x.is_contiguous(memory_format=fmt):
        return None
    return fmt
