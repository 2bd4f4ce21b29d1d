"""Memory formats: which channels-last format a tensor is in, so a layer can hand its output back in it.

torch's convs return a channels-last output (N, C, *S) with strides (prod(S)·C, 1, …, C) for a channels-last
input; a layer built from reshapes, reductions or matmuls must do the same on purpose.
"""

from __future__ import annotations

import torch

_FUNCTORCH = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)  # inside vmap / grad / ...
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}  # tensor dims (N, C, *S) → its format


def channels_last_format(x: torch.Tensor) -> torch.memory_format | None:
    """``torch.channels_last`` (4-D) or ``torch.channels_last_3d`` (5-D) when ``x`` is laid out that way and not
    also contiguous (C = 1 or S = 1 is both: None), else None; None inside ``torch.func.vmap`` too, whose batched
    tensors have no memory format to ask about (torch raises NYI; the physical layout is vmap's, as for torch's
    own convs there)."""
    fmt = CHANNELS_LAST.get(x.dim())
    if fmt is None or x.is_contiguous():
        return None
    try:
        return fmt if x.is_contiguous(memory_format=fmt) else None
    except RuntimeError:  # "NYI: querying is_contiguous inside of vmap for memory_format other than ..."
        if _FUNCTORCH() is None:
            raise
        return None
