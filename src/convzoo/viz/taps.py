"""Which kernel tap links each (output, input) pair, derived from the real layer by autograd.

For a layer y = f(x; W) that is linear in its kernel W (every convolution family is), the Jacobian ∂y/∂x is
affine in W: J(W) = J(0) + Σ_t Σ_{pairs} W[..., t] · A_t. Setting W to the one-hot kernel e_t (1 at spatial tap t
for every channel pair, 0 elsewhere) and subtracting J(0) gives A_t: A_t[c_out, *o, c_in, *i] is the coefficient
with which tap t of output (c_out, *o)'s kernel reads input (c_in, *i) — 1 for a plain read, a bilinear or
linear interpolation weight for fractional reads (deformable, resize with interpolation), scaled by a DCNv2 mask.
Nothing is looked up by family: the flip of a true convolution, dilation gaps, the transposed conv's scatter
pattern and deformable offsets all come out of the layer's own forward.

Side branches (an offset predictor, an attention branch: the layer's side ``stages()``) are evaluated at the
input but not differentiated, so the taps show what the main path reads with those values held fixed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..layers.form_choice import untimed
from .matrix import check_input_shape, eval_copy, jacobian

# float32: exact for whole-cell reads (one-hot kernels), 1e-7 for interpolation weights; float64 would send
# dilated convs down PyTorch's slow path (100× slower). Coefficients below EPS are round-off, not reads.
DTYPE = torch.float32
EPS = 1e-6


@dataclass(frozen=True)
class TapMap:
    """Tap-resolved connectivity of a layer on inputs of shape ``input_shape`` = (C_in, *S).

    ``coefficients``: float32 (T, C_out, *O, C_in, *S), T = prod(kernel_shape); entry t = the coefficient with
    which kernel tap t (flattened, row-major over ``kernel_shape``) links output to input.
    ``index``: int64 (C_out, *O, C_in, *S), the tap linking the pair (the strongest when several do), -1 where
    none. ``weight``: that tap's coefficient (1 for a whole-cell read, < 1 for a fractional one).
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    parameter: str
    coefficients: torch.Tensor

    @property
    def linked(self) -> torch.Tensor:
        return (self.coefficients.abs() > EPS).any(0)

    @property
    def index(self) -> torch.Tensor:
        strongest = self.coefficients.abs().argmax(0)
        return torch.where(self.linked, strongest, torch.full_like(strongest, -1))

    @property
    def weight(self) -> torch.Tensor:
        return self.coefficients.gather(0, self.index.clamp(min=0)[None])[0] * self.linked

    @property
    def count(self) -> torch.Tensor:
        """Int (C_out, *O, C_in, *S): how many taps link the pair (> 1 after nearest upsampling, for example)."""
        return (self.coefficients.abs() > EPS).sum(0)

    def tap_position(self, tap: int) -> tuple[int, ...]:
        """The kernel coordinates of flattened tap index ``tap``."""
        return tuple(int(v) for v in torch.unravel_index(torch.tensor(tap), self.kernel_shape))


def kernel_parameter(module: nn.Module, spatial_dims: int, name: str | None = None) -> str:
    """The name of ``module``'s own kernel parameter: ``name`` if given, else ``weight``, else its one direct
    parameter with at least spatial_dims + 2 dims ((C_out, C_in, *K), or (num_kernels, C_out, C_in, *K))."""
    own = dict(module.named_parameters(recurse=False))
    if name is not None:
        if name not in own:
            raise ValueError(f"parameter={name!r} is not a direct parameter of {type(module).__name__}; "
                             f"it has: {', '.join(own) or 'none'}")
        return name
    candidates = [n for n, p in own.items() if p.dim() >= spatial_dims + 2]
    if "weight" in candidates:
        return "weight"
    if len(candidates) == 1:
        return candidates[0]
    found = f"several ({', '.join(candidates)}): pass parameter=" if candidates else "none"
    raise ValueError(f"{type(module).__name__} has no single kernel parameter of its own with >= "
                     f"{spatial_dims + 2} dims (found {found}); a composite layer is drawn from its stages()")


SIDE_FLAG = "_convzoo_side"  # set on a sub-module known to be a side branch when the layer declares no stages()


def side_modules(module: nn.Module) -> list[nn.Module]:
    """The sub-layers of ``module``'s side stages (the layer contract's ``stages()``), or, for a layer that
    declares none, the sub-modules flagged as side branches (``reads.illustrative_copy`` flags the zero-initialised
    branches it fills in)."""
    declared = []
    stages = getattr(module, "stages", None)
    if callable(stages):
        try:
            declared = list(stages())
        except NotImplementedError:
            declared = []
    sides = [s.module for s in declared if getattr(s, "side", False) and getattr(s, "module", None) is not None]
    return sides or [m for m in module.modules() if m is not module and getattr(m, SIDE_FLAG, False)]


def hold_side_branches(original: nn.Module, copy: nn.Module, zero: bool = False) -> None:
    """Side branches of ``copy`` return their value detached (or zeros): they steer the main path, not read it."""
    names = {id(m): n for n, m in original.named_modules()}

    def hold(_m: nn.Module, _i: object, out: object) -> object:
        if not isinstance(out, torch.Tensor):
            return out
        return torch.zeros_like(out) if zero else out.detach()

    for side in side_modules(original):
        if id(side) in names and names[id(side)]:
            copy.get_submodule(names[id(side)]).register_forward_hook(hold)


def tap_map(module: nn.Module, input_shape: Sequence[int], parameter: str | None = None,
            x: torch.Tensor | None = None, seed: int = 0, zero_side: bool = False) -> TapMap:
    """Tap-resolved connectivity of ``module`` (see ``TapMap``), evaluated at input ``x`` (1, C_in, *S) —
    default a seeded random positive input (it matters only for layers whose reads depend on x).
    ``zero_side``: side branches output zeros (a deformable conv then reads its regular grid)."""
    input_shape = check_input_shape(input_shape)
    model = eval_copy(module, input_shape, DTYPE)
    hold_side_branches(module, model, zero_side)
    name = kernel_parameter(model, len(input_shape) - 1, parameter)
    kernel = getattr(model, name)
    kernel_shape = tuple(kernel.shape[-(len(input_shape) - 1):])
    n_taps = math.prod(kernel_shape)
    if x is None:
        x = torch.rand(1, *input_shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE) + 0.25
    x = x.to(DTYPE).reshape(1, *input_shape)

    def jac_with(w: torch.Tensor) -> torch.Tensor:
        return jacobian(lambda inp: functional_call(model, {name: w}, (inp,)), x)

    with torch.no_grad():
        output_shape = tuple(model(x).shape[1:])
    base = jac_with(torch.zeros_like(kernel))
    coefficients = []
    for t in range(n_taps):
        one_hot = torch.zeros_like(kernel).reshape(-1, n_taps)
        one_hot[:, t] = 1
        coefficients.append(jac_with(one_hot.reshape(kernel.shape)) - base)
    coef = torch.stack(coefficients).reshape(n_taps, *output_shape, *input_shape)
    coef = torch.where(coef.abs() > EPS, coef, torch.zeros_like(coef))
    return TapMap(input_shape, output_shape, kernel_shape, name, coef)


def taps(module: nn.Module, input_shape: Sequence[int], parameter: str | None = None,
         x: torch.Tensor | None = None) -> torch.Tensor:
    """Int64 (C_out, *O, C_in, *S): the flattened kernel-tap index linking output (c_out, *o) to input
    (c_in, *i), -1 where none. ``tap_map`` gives the interpolation weights of fractional reads as well.

    >>> from convzoo import build
    >>> t = taps(build("standard", 1, 1, 3, padding=0), (1, 3, 3))
    >>> t[0, 0, 0, 0].tolist()       # the one output reads tap 3·r + c at input (r, c)
    [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    """
    return tap_map(module, input_shape, parameter, x).index


def extended_rows(module: nn.Module, x: torch.Tensor, rows: Sequence[Sequence[int]] | None, shift: Sequence[int],
                  stride: Sequence[int], parameter: str | None = None) -> torch.Tensor | None:
    """Float32 (T, R, C_in, *(S + 2·m)), m = shift·stride per dim: tap t's coefficient linking output row
    (c_out, *o) of ``rows`` to the input ``x`` (C_in, *S) extended by m zero cells on every side, with the side
    branches held at their values on ``x`` itself. The zero padding hides the reads past ``x``'s edge from
    ``tap_map`` (no cell holds them); here they land on cells, so a deformable tap past the corner shows where it
    samples. The extended layer's output (*o + shift) has the same window as (*o) had, moved by m. ``rows`` None:
    R = 1, the sum over every output of ``x`` (one pass per tap: the cells some output reads, for a whole map's
    drawing). None when a side branch's output is not a map of the output's size (it cannot be held in place) or
    the layer does not run on the extended input with its side values held."""
    d = x.dim() - 1
    margin = [s * a for s, a in zip(shift, stride)]
    sides = side_modules(module)
    seen: dict[int, torch.Tensor | None] = {}

    def keep(m: nn.Module, _i: object, out: object) -> None:
        seen[id(m)] = out.detach() if isinstance(out, torch.Tensor) else None

    handles = [m.register_forward_hook(keep) for m in sides]
    try:
        with torch.no_grad(), untimed():  # one call per batch shape: timing the forms would cost more
            out_size = tuple(module(x[None].to(DTYPE)).shape[2:])
    finally:
        for h in handles:
            h.remove()
    if any(s is None or s.dim() < d + 2 or s.shape[0] != 1 or tuple(s.shape[-d:]) != out_size
           for s in seen.values()):
        return None
    extended = tuple(n + 2 * k for n, k in zip(out_size, shift))

    def place(m: nn.Module, _i: object, out: object) -> torch.Tensor:
        value = seen.get(id(m))
        if value is None or not isinstance(out, torch.Tensor) or out.dim() != value.dim() \
                or out.shape[1:-d] != value.shape[1:-d] or tuple(out.shape[-d:]) != extended:
            raise _NotHeld
        # x's value where the extended output's windows are those of x's outputs; the rest is not read here
        full = torch.zeros_like(out)
        full[(..., *(slice(k, k + n) for k, n in zip(shift, out_size)))] = value
        return full

    name = kernel_parameter(module, d, parameter)
    kernel = getattr(module, name)
    n_taps = math.prod(kernel.shape[-d:])
    pad = [v for m in reversed(margin) for v in (m, m)]
    big = torch.nn.functional.pad(x[None].to(kernel.dtype), pad)
    if rows is None:  # every output of x: the extended output's inner part, in one sample
        batch = 1
        picked: tuple = (0, slice(None), *(slice(k, k + n) for k, n in zip(shift, out_size)))
    else:
        batch = len(rows)
        index = torch.tensor([list(r) for r in rows]).reshape(len(rows), 1 + d)
        index[:, 1:] += torch.tensor(list(shift))
        picked = (torch.arange(len(rows)), *index.T)
    handles = [m.register_forward_hook(place) for m in sides]
    grads = []
    try:
        with untimed():
            for t in range(-1, n_taps):  # -1: the zero kernel, whose reads (none for a conv) are subtracted
                w = torch.zeros_like(kernel).reshape(-1, n_taps)
                if t >= 0:
                    w[:, t] = 1
                inp = big.expand(batch, *big.shape[1:]).clone().requires_grad_(True)
                y = functional_call(module, {name: w.reshape(kernel.shape)}, (inp,))
                (grad,) = torch.autograd.grad(y[picked].sum(), inp, allow_unused=True)
                grads.append(torch.zeros_like(inp) if grad is None else grad.detach())
    except (_NotHeld, RuntimeError, ValueError):
        # a side value the hooks do not reach (a stage fed from a dict of held values) meets the extended input
        # with the input's sizes: this layer cannot be extended, its points stay those of the cells it reads
        return None
    finally:
        for h in handles:
            h.remove()
    coef = torch.stack(grads[1:]) - grads[0]
    return torch.where(coef.abs() > EPS, coef, torch.zeros_like(coef))


class _NotHeld(Exception):
    """A side branch's output on the extended input does not match its output on the input."""
