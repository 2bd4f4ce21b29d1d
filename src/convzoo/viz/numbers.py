"""Numbers mode: values typed on the command line for the input and the kernel, and small whole numbers for the
values not typed, so every printed sum can be checked by hand (as the articles' 0–3 example can).

Format: numbers separated by ',' within a row, rows separated by ';', depth slices (3-D) by '|':
"3,3,2;0,0,1" is a 2×3 grid, "1,2,3" a 1-D row of 3. A kernel given this way is loaded into every channel pair
of the layer's kernel parameter and the bias is set to zero, so the output is exactly Σ kernel · input.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from .taps import kernel_parameter, side_modules

GIVEN = "_convzoo_given_kernel"  # on a module whose kernel the user typed (``load_kernel``): kept as given
INPUTS, WEIGHTS, BIASES = (0, 3), (-1, 2), (-1, 1)  # whole-number ranges, both ends included


def whole_numbers(module: nn.Module, input_shape: Sequence[int], x: torch.Tensor | None = None, seed: int = 0
                  ) -> tuple[nn.Module, torch.Tensor | None]:
    """(copy of ``module``, input (C, *S)) for numbers mode: the weights (each parameter of ≥ 2 dims of a
    sub-module outside the side branches) whole numbers in −1…2 and that sub-module's bias in −1…1, and, where
    ``x`` is None, an input of whole numbers in 0…3. A kernel the user typed (``load_kernel``) and all-zero
    parameters (zero-initialised branches, which the pictures fill themselves) are kept, and so is ``x`` when given.
    A layer whose side stages hold attentions, or that does not map whole numbers to whole numbers with such
    weights (BatchNorm, a mask's sigmoid: not integers by construction), is returned as it is, with ``x`` as
    given."""
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(module)
    dtype = next((p.dtype for p in model.parameters()), torch.get_default_dtype())
    sample = torch.randint(INPUTS[0], INPUTS[1] + 1, tuple(input_shape), generator=gen).to(dtype)
    if _holds_attention(model, sample):
        return module, x
    steering = {id(m) for side in side_modules(model) for m in side.modules()}
    with torch.no_grad():
        for sub in model.modules():
            own = dict(sub.named_parameters(recurse=False))
            weights = [p for p in own.values() if p.dim() >= 2 and bool(p.detach().abs().max() > 0)]
            if id(sub) in steering or getattr(sub, GIVEN, False) or not weights:
                continue
            for p in weights:
                p.copy_(torch.randint(WEIGHTS[0], WEIGHTS[1] + 1, p.shape, generator=gen))
            bias = own.get("bias")
            if bias is not None and bias.dim() == 1:
                bias.copy_(torch.randint(BIASES[0], BIASES[1] + 1, bias.shape, generator=gen))
        try:
            y = copy.deepcopy(model).eval()(sample[None])
        except (RuntimeError, ValueError, TypeError):
            return module, x
    if not bool(torch.equal(y, y.round())):
        return module, x
    return model, (sample if x is None else x)


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


def _holds_attention(model: nn.Module, sample: torch.Tensor) -> bool:
    """A declared side stage of ``model`` holds attentions (the layer contract's ``attentions()``) on ``sample``
    (C, *S): weights from a softmax or sigmoid, which whole-number weights upstream would saturate to exactly 0 and
    1 — whole-looking outputs of a mechanism that is not whole-number by construction."""
    from ..layers.base import ConvzooLayer
    from .picture import declared_stages

    if not isinstance(model, ConvzooLayer):
        return False
    with torch.no_grad():
        for st in declared_stages(model) or []:
            if st.side:
                try:
                    if model.attentions(st.fn(sample[None])):
                        return True
                except (RuntimeError, ValueError, TypeError):
                    continue
    return False


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
    setattr(module, GIVEN, True)
    return module
