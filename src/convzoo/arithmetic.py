"""Convolution arithmetic (Dumoulin & Visin 2016): output sizes of convolutions and transposed convolutions.

conv:        o = ⌊(i + p_before + p_after − d·(k−1) − 1) / s⌋ + 1
transposed:  o = (i − 1)·s − 2p + d·(k−1) + a + 1, with 0 ≤ a < max(s, d) (the "a-term", ``output_padding``)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from ._checks import PaddingPairs

Size = Union[int, Sequence[int]]


def _per_dim(*args: Size) -> tuple[tuple[int, ...], ...] | None:
    """Broadcast ints against tuples; None when every argument is a plain int."""
    lengths = {len(a) for a in args if not isinstance(a, int)}
    if not lengths:
        return None
    if len(lengths) > 1:
        raise ValueError(f"tuple arguments must have the same length, got lengths {sorted(lengths)}")
    n = lengths.pop()
    return tuple(tuple(a) if not isinstance(a, int) else (a,) * n for a in args)  # type: ignore[arg-type]


def conv_output_size(i: Size, k: Size, s: Size = 1, p: Size = 0, d: Size = 1) -> int | tuple[int, ...]:
    """Output size of a convolution with symmetric padding ``p`` (ints, or tuples with one entry per dim)."""
    dims = _per_dim(i, k, s, p, d)
    if dims is not None:
        return tuple(conv_output_size(*args) for args in zip(*dims))  # type: ignore[misc]
    out = (i + 2 * p - d * (k - 1) - 1) // s + 1  # type: ignore[operator]
    if out < 1:
        raise ValueError(f"input size {i} with padding {p} is smaller than the dilated kernel {d * (k - 1) + 1}")  # type: ignore[operator]
    return out


def conv_output_shape(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], pairs: PaddingPairs, dilation: Sequence[int]
) -> tuple[int, ...]:
    """Spatial output shape for explicit (before, after) padding pairs."""
    return tuple(
        (i + lo + hi - d * (k - 1) - 1) // s + 1 for i, k, s, (lo, hi), d in zip(spatial, kernel, stride, pairs, dilation)
    )


def transposed_output_size(
    i: Size, k: Size, s: Size = 1, p: Size = 0, output_padding: Size = 0, d: Size = 1
) -> int | tuple[int, ...]:
    """Output size of a transposed convolution (PyTorch's ConvTranspose semantics)."""
    dims = _per_dim(i, k, s, p, output_padding, d)
    if dims is not None:
        return tuple(transposed_output_size(*args) for args in zip(*dims))  # type: ignore[misc]
    return (i - 1) * s - 2 * p + d * (k - 1) + output_padding + 1  # type: ignore[operator]
