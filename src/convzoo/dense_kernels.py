"""A dense convolution's kernel — its weight, not a compute kernel (those are ``convzoo.kernels``) — for approximating
it by a family (each family's ``approximate_dense_``): a grouped weight as its block-diagonal dense kernel, a kernel
centred in another window, the relative error, loading into a parameter. Below the layers: imports torch only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dense_kernel(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, C_in/groups, *k) → block-diagonal (C_out, C_in, *k)."""
    out, per_group = weight.shape[:2]
    full = weight.new_zeros(out, per_group * groups, *weight.shape[2:])
    rows = out // groups
    for g in range(groups):
        full[g * rows:(g + 1) * rows, g * per_group:(g + 1) * per_group] = weight[g * rows:(g + 1) * rows]
    return full


def fit_kernel(kernel: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Centre ``kernel`` (…, *k) in a ``size`` window (one entry per trailing spatial dim): zero-pad when larger,
    crop when smaller."""
    out = kernel
    for axis, target in zip(range(-len(size), 0), size):
        have = out.shape[axis]
        if target > have:
            before = (target - have) // 2
            pad = [0, 0] * len(size)
            slot = -axis - 1  # F.pad lists the last dim first
            pad[2 * slot], pad[2 * slot + 1] = before, target - have - before
            out = F.pad(out, pad)
        elif target < have:
            out = out.narrow(axis, (have - target) // 2, target)
    return out


def relative_frobenius_error(approximation: torch.Tensor, target: torch.Tensor) -> float:
    """‖approximation − target‖_F / ‖target‖_F (the absolute error when target is zero); NaN on the meta device,
    where tensors have shapes but no values (a model built there converts; its error is not measured)."""
    if approximation.is_meta or target.is_meta:
        return float("nan")
    norm = torch.linalg.norm(target)
    diff = torch.linalg.norm(approximation - target)
    return float(diff / norm) if norm > 0 else float(diff)


def load_(param: nn.Parameter | torch.Tensor | None, value: torch.Tensor | None) -> None:
    """Copy ``value`` into ``param`` (zeros when value is None; nothing when the layer has no such parameter)."""
    if param is None:
        return
    with torch.no_grad():
        param.copy_(torch.zeros_like(param) if value is None else value.reshape(param.shape))
