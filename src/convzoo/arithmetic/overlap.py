"""Transposed-conv overlap (article 001 §6; Odena et al. 2016, "Deconvolution and Checkerboard Artifacts").

A stride-s transposed conv hands output o the taps q ∈ [0, k) with q ≡ o (mod s); uneven counts are the
checkerboard.
"""

from __future__ import annotations

import torch

from .shapes import Size, _check_int, _per_dim

# ---------------------------------------------------------------------------------------------------------
# Transposed-conv overlap (article 001 §6; Odena et al. 2016, "Deconvolution and Checkerboard Artifacts")


def _expand(value: Size, dim: int, name: str) -> tuple[int, ...]:
    values = (value,) * dim if isinstance(value, int) else tuple(value)
    if len(values) != dim:
        raise ValueError(f"{name}={value!r} must be an int or a tuple of dim={dim} ints")
    for v in values:
        _check_int(v, name, 1)
    return values


def overlap_map(kernel_size: Size, stride: Size, dim: int = 2) -> torch.Tensor:
    """Taps per output position over one period of a stride-s transposed conv (padding 0, dilation 1).

    Output o receives input i through tap q = o − i·s, so it gets #{q ∈ [0, k) : q ≡ o (mod s)} taps in the
    interior. Returns an int64 tensor of shape (s₁, …, s_dim): entry [t₁, …] is the count at outputs o ≡ t
    (mod s), the product of the per-dim counts. Uneven entries are the checkerboard; e.g. k=3, s=2 (1-D) → [2, 1].
    """
    _check_int(dim, "dim", 1)
    k, s = _expand(kernel_size, dim, "kernel_size"), _expand(stride, dim, "stride")
    result = torch.ones((), dtype=torch.int64)
    for kk, ss in zip(k, s):
        counts = torch.tensor([sum(1 for q in range(kk) if q % ss == t) for t in range(ss)], dtype=torch.int64)
        result = result.unsqueeze(-1) * counts
    return result


def is_even_overlap(kernel_size: Size, stride: Size) -> bool:
    """True iff every output of the transposed conv gets the same number of taps: k mod s == 0 in every dim."""
    dims = _per_dim(kernel_size, stride)
    pairs = zip(*dims) if dims is not None else [(kernel_size, stride)]
    return all(_check_int(k, "kernel_size", 1) % _check_int(s, "stride", 1) == 0 for k, s in pairs)
