"""Convolution arithmetic (Dumoulin & Visin 2016): output sizes of convolutions and transposed convolutions.

conv:        o = ⌊(i + p_before + p_after − d·(k−1) − 1) / s⌋ + 1
transposed:  o = (i − 1)·s − 2p + d·(k−1) + a + 1, with 0 ≤ a < max(s, d) (the "a-term", ``output_padding``)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

PaddingPairs = tuple[tuple[int, int], ...]

Size = Union[int, Sequence[int]]

def _per_dim(*args: Any) -> tuple[tuple[Any, ...], ...] | None:
    """Broadcast ints (and strings) against tuples; None when no argument is a tuple."""
    lengths = {len(a) for a in args if not isinstance(a, (int, str))}
    if not lengths:
        return None
    if len(lengths) > 1:
        raise ValueError(f"tuple arguments must have the same length, got lengths {sorted(lengths)}")
    n = lengths.pop()
    return tuple(tuple(a) if not isinstance(a, (int, str)) else (a,) * n for a in args)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} must be an int")
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")
    return value


def _conv_size_1d(i: int, k: int, s: int, p: int | str, d: int) -> tuple[int, int]:
    """(output size, padding before) for one dim; validates every argument."""
    _check_int(i, "i (input size)", 1)
    _check_int(k, "k (kernel_size)", 1)
    _check_int(s, "s (stride)", 1)
    _check_int(d, "d (dilation)", 1)
    extent = d * (k - 1) + 1
    if isinstance(p, str):
        if p == "valid":
            lo = hi = 0
        elif p == "same":
            if s != 1:
                raise ValueError(f"p='same' needs s (stride) == 1, got s={s}; give the padding as ints")
            lo, hi = (extent - 1) // 2, extent - 1 - (extent - 1) // 2  # odd element after, as PyTorch
        else:
            raise ValueError(f"p={p!r} must be an int >= 0, 'same' or 'valid'")
    else:
        lo = hi = _check_int(p, "p (padding)", 0)
    if i + lo + hi < extent:
        raise ValueError(
            f"input size i={i} with padding p={p} ({i + lo + hi} padded) is smaller than the dilated kernel "
            f"d·(k−1)+1={extent} (k={k}, d={d}): the output would be empty"
        )
    return (i + lo + hi - extent) // s + 1, lo


def conv_output_size(i: Size, k: Size, s: Size = 1, p: Union[Size, str] = 0, d: Size = 1) -> int | tuple[int, ...]:
    """o = ⌊(i + 2p − d·(k−1) − 1)/s⌋ + 1 per dim; ints, or tuples with one entry per dim.

    ``p='valid'`` is p = 0; ``p='same'`` pads d·(k−1) in total and needs s = 1 (the odd element after for a
    correlation, PyTorch's rule; before for a true convolution, scipy's: the size is the same).
    Raises ValueError for k, s, d < 1, p < 0 or an empty output.
    """
    dims = _per_dim(i, k, s, p, d)
    if dims is not None:
        return tuple(_conv_size_1d(*args)[0] for args in zip(*dims))
    return _conv_size_1d(i, k, s, p, d)[0]  # type: ignore[arg-type]


def conv_output_shape(
    spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int], pairs: PaddingPairs, dilation: Sequence[int]
) -> tuple[int, ...]:
    """Spatial output shape for explicit (before, after) padding pairs (no validation: layers check first)."""
    return tuple(
        (i + lo + hi - d * (k - 1) - 1) // s + 1 for i, k, s, (lo, hi), d in zip(spatial, kernel, stride, pairs, dilation)
    )


def _transposed_raw(i: int, k: int, s: int, p: int, a: int, d: int) -> int:
    _check_int(i, "i (input size)", 1)
    _check_int(k, "k (kernel_size)", 1)
    _check_int(s, "s (stride)", 1)
    _check_int(d, "d (dilation)", 1)
    _check_int(p, "p (padding)", 0)
    _check_int(a, "output_padding", 0)
    if a >= max(s, d):
        raise ValueError(f"output_padding={a} must be smaller than max(s (stride), d (dilation))={max(s, d)}")
    return (i - 1) * s - 2 * p + d * (k - 1) + a + 1


def transposed_output_size(
    i: Size, k: Size, s: Size = 1, p: Size = 0, output_padding: Size = 0, d: Size = 1
) -> int | tuple[int, ...]:
    """o = (i − 1)·s − 2p + d·(k−1) + a + 1 per dim, a = ``output_padding`` < max(s, d) (PyTorch's ConvTranspose).

    Raises ValueError for k, s, d, i < 1, p < 0, a ≥ max(s, d) or an empty output (o < 1).
    """
    dims = _per_dim(i, k, s, p, output_padding, d)
    raw = tuple(_transposed_raw(*args) for args in zip(*dims)) if dims is not None else \
        _transposed_raw(i, k, s, p, output_padding, d)  # type: ignore[arg-type]
    if min(raw if isinstance(raw, tuple) else (raw,)) < 1:
        raise ValueError(f"padding={p!r} leaves an empty output {raw} for input size {i!r} "
                         f"(kernel_size={k!r}, stride={s!r}, dilation={d!r}); every output size must be >= 1")
    return raw


def transposed_output_sizes(i: Size, k: Size, s: Size = 1, p: Size = 0, d: Size = 1,
                            inverse: bool = False) -> list[int] | tuple[list[int], ...]:
    """Every output size a transposed conv (PyTorch's ConvTranspose) can give for input size i: o₀ + a for each
    output_padding a = 0 … max(s, d) − 1 whose output is not empty (o₀ + a ≥ 1), o₀ the size at a = 0.

    ``inverse=True``: only a < s, which are exactly the sizes o whose convolution (same k, s, p, d) has input size
    i again, o ↦ ⌊((i − 1)·s + a)/s⌋ + 1 = i: the ambiguity ``output_padding`` resolves when the transposed conv
    undoes a conv's shape (the range ``ConvTranspose.forward(output_size=...)`` accepts). With d ≤ s that is every
    reachable size; with d > s PyTorch also allows s ≤ a < d, sizes a conv maps to i + ⌊a/s⌋. Ints give a list;
    tuples a tuple of lists, one per dim (each dim chooses independently). ValueError when no size is ≥ 1.
    """
    dims = _per_dim(i, k, s, p, d)
    if dims is not None:
        return tuple(transposed_output_sizes(*args, inverse=inverse) for args in zip(*dims))  # type: ignore[misc]
    o0 = _transposed_raw(i, k, s, p, 0, d)  # type: ignore[arg-type]
    choices = s if inverse else max(s, d)  # type: ignore[type-var]
    sizes = [o0 + a for a in range(choices) if o0 + a >= 1]  # type: ignore[arg-type]
    if not sizes:
        bound = "a < s" if inverse else "a < max(s, d)"
        raise ValueError(f"padding={p!r} leaves an empty output for input size {i!r} (kernel_size={k!r}, stride={s!r}, "
                         f"dilation={d!r}) with every output_padding {bound}: the largest size is "
                         f"{o0 + choices - 1}; every output size must be >= 1")  # type: ignore[operator]
    return sizes
