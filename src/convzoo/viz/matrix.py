"""The Jacobian of any module, and the convolution matrix C of a linear layer (article 001 §6: C·x = y, Cᵀ·y).

``jacobian`` computes ∂y/∂x block by block with one backward pass per block of output elements: the input is
replicated along the batch dimension, sample b picks output element b of the block, and the gradient of
Σ_b y[b, idx_b] with respect to the replicated input holds row idx_b of the Jacobian in sample b. This needs only
that samples of a batch do not interact (true of every convolution in eval mode), so it works on any module,
including torchvision's deform_conv2d, which ``torch.func`` cannot batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..layers.form_choice import untimed

# Upper bound on Jacobian entries (output elements × input elements) so that one call stays fast.
MAX_ENTRIES = 2**25


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"input_shape={tuple(input_shape)} must be (C_in, *spatial) with positive sizes")
    return shape


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def jacobian(fn: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, block: int = 256) -> torch.Tensor:
    """J[(c_out, *o), (c_in, *i)] = ∂fn(x)[0, c_out, *o] / ∂x[0, c_in, *i] at x = x0 (shape (1, C_in, *S)).

    Returns a (prod(out shape), prod(in shape)) tensor in x0's dtype."""
    with torch.no_grad():
        n_out = fn(x0).numel()
    n_in = x0.numel()
    if n_out * n_in > MAX_ENTRIES:
        raise ValueError(f"a Jacobian of {n_out} outputs × {n_in} inputs is too large (max {MAX_ENTRIES} "
                         f"entries); use a smaller input_shape")
    rows = []
    for start in range(0, n_out, block):
        idx = torch.arange(start, min(start + block, n_out))
        x = x0.expand(len(idx), *x0.shape[1:]).clone().requires_grad_(True)
        y = fn(x).reshape(len(idx), n_out)
        (grad,) = torch.autograd.grad(y.gather(1, idx[:, None]).sum(), x, allow_unused=True)
        rows.append(torch.zeros(len(idx), n_in, dtype=x0.dtype) if grad is None else grad.reshape(len(idx), n_in))
    return torch.cat(rows)


def eval_copy(module: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float64) -> nn.Module:
    """An eval-mode copy of ``module`` in ``dtype`` (lazy parameters materialised by one call)."""
    model = copy.deepcopy(module).eval()
    with torch.no_grad():
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
            model(torch.zeros(1, *input_shape, dtype=next(
                (b.dtype for b in model.buffers()), torch.get_default_dtype())))
    return model.to(dtype)


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def conv_matrix(module: nn.Module | Callable[[torch.Tensor], torch.Tensor], input_shape: Sequence[int],
                check_linear: bool = True, seed: int = 0) -> torch.Tensor:
    """The dense matrix C (prod(out shape), prod(in shape)) of a linear layer: vec(y) = C·vec(x) (+ bias).

    C is the layer's Jacobian, computed by autograd in float64 from its own parameters. For a single-channel
    3×3 conv on a 4×4 input, C is the article's 4×16 matrix; the matching transposed conv gives Cᵀ.
    With ``check_linear`` it raises ValueError when the layer is not affine in its input (dynamic conv, a
    deformable conv with input-dependent offsets): its Jacobian then depends on x and is no single matrix.
    """
    input_shape = check_input_shape(input_shape)
    fn = eval_copy(module, input_shape) if isinstance(module, nn.Module) else module
    gen = torch.Generator().manual_seed(seed)
    x0, x1 = (torch.rand(1, *input_shape, generator=gen, dtype=torch.float64) for _ in range(2))
    c = jacobian(fn, x0)
    if check_linear:
        with torch.no_grad():
            change = (fn(x1) - fn(x0)).reshape(-1)
        predicted = c @ (x1 - x0).reshape(-1)
        if not torch.allclose(change, predicted, rtol=1e-7, atol=1e-9 * max(1.0, float(change.abs().max()))):
            name = type(module).__name__
            raise ValueError(f"module {name} is not linear in its input (y(x1) − y(x0) ≠ C·(x1 − x0), max error "
                             f"{float((change - predicted).abs().max()):.2e}): it has no single conv matrix; "
                             f"pass check_linear=False for its Jacobian at one input")
    return c

