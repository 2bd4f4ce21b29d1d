"""Numbers mode: values typed on the command line for the input and the kernel.

Format: numbers separated by ',' within a row, rows separated by ';', depth slices (3-D) by '|':
"3,3,2;0,0,1" is a 2×3 grid, "1,2,3" a 1-D row of 3. A kernel given this way is loaded into every channel pair
of the layer's kernel parameter and the bias is set to zero, so the output is exactly Σ kernel · input.
"""

from __future__ import annotations

import torch
from torch import nn

from .taps import kernel_parameter


def parse_values(text: str, name: str) -> torch.Tensor:
    """'a,b;c,d' → a float64 tensor (rows, cols); '|' adds a leading depth dim; a single row stays 1-D."""
    try:
        slices = [[[float(v) for v in line.split(",")] for line in part.split(";")] for part in text.split("|")]
    except ValueError:
        raise ValueError(f"{name}={text!r} must be numbers separated by ',' (rows by ';', depth slices by '|')") \
            from None
    widths = {len(line) for part in slices for line in part}
    heights = {len(part) for part in slices}
    if len(widths) != 1 or len(heights) != 1:
        raise ValueError(f"{name}={text!r} must be rectangular: every row the same length, every slice the same "
                         f"number of rows")
    values = torch.tensor(slices, dtype=torch.float64)
    if values.shape[0] == 1:
        values = values[0]
        if values.shape[0] == 1:
            values = values[0]
    return values


def load_kernel(module: nn.Module, kernel: torch.Tensor) -> nn.Module:
    """Write ``kernel`` (the spatial kernel) into every channel pair of ``module``'s kernel parameter and zero the
    bias; a composite layer gets it in every stage whose kernel has that shape. ValueError names the shapes."""
    try:
        kernel_parameter(module, kernel.dim())
    except ValueError:
        return _load_into_stages(module, kernel)
    return _load(module, kernel)


def _load_into_stages(module: nn.Module, kernel: torch.Tensor) -> nn.Module:
    from .picture import declared_stages

    shapes = []
    for st in declared_stages(module) or []:
        if st.side or st.module is None or st.module is module:
            continue
        try:
            name = kernel_parameter(st.module, kernel.dim())
        except ValueError:
            continue
        spatial = tuple(getattr(st.module, name).shape[-kernel.dim():])
        shapes.append(spatial)
        if spatial == tuple(kernel.shape):
            _load(st.module, kernel)
    if tuple(kernel.shape) not in shapes:
        raise ValueError(f"kernel_values has shape {tuple(kernel.shape)} but {type(module).__name__} has no kernel of "
                         f"that shape (its stages' kernels: {shapes or 'none'})")
    return module


def _load(module: nn.Module, kernel: torch.Tensor) -> nn.Module:
    name = kernel_parameter(module, kernel.dim())
    param = getattr(module, name)
    spatial = tuple(param.shape[-kernel.dim():])
    if tuple(kernel.shape) != spatial:
        raise ValueError(f"kernel_values has shape {tuple(kernel.shape)} but the layer's kernel is {spatial}; "
                         f"give {'×'.join(map(str, spatial))} values")
    with torch.no_grad():
        param.copy_(kernel.to(param.dtype).expand_as(param))
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            bias.zero_()
    return module
