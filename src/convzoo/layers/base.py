"""Argument validation shared by every layer: fail early, in words that name the argument and the rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch

IntOrTuple = Union[int, Sequence[int]]
# An int, one int per spatial dim, a (before, after) pair per dim, or 'same' / 'valid'.
Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]
PaddingPairs = tuple[tuple[int, int], ...]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def expand(value: IntOrTuple, dim: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Expand an int to a ``dim``-tuple and check every entry is an int >= ``minimum``."""
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be an int or a tuple of {dim} ints, not a bool")
    if isinstance(value, int):
        values: tuple[int, ...] = (value,) * dim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != dim or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError(f"{name}={value!r} must be an int or a tuple of {dim} ints")
    else:
        raise TypeError(f"{name}={value!r} must be an int or a tuple of {dim} ints")
    for v in values:
        if v < minimum:
            rule = "positive" if minimum == 1 else f">= {minimum}"
            raise ValueError(f"{name}={value!r} must be {rule}")
    return values


def check_positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r} must be an int")
    if value < 1:
        raise ValueError(f"{name}={value} must be positive")
    return value


def check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    check_positive_int(in_channels, "in_channels")
    check_positive_int(out_channels, "out_channels")
    check_positive_int(groups, "groups")
    if in_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels}")
    if out_channels % groups:
        raise ValueError(f"groups={groups} must divide out_channels={out_channels}")


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown; choose one of {', '.join(map(repr, choices))}")
    return value


def padding_pairs(
    padding: Padding,
    kernel_size: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> PaddingPairs:
    """Resolve ``padding`` to one (before, after) pair per spatial dim.

    'same' pads ``d*(k-1)`` in total, the odd element after (PyTorch's rule); like PyTorch it needs stride 1.
    """
    dim = len(kernel_size)
    if isinstance(padding, str):
        check_choice(padding, "padding", ("same", "valid"))
        if padding == "valid":
            return ((0, 0),) * dim
        if any(s != 1 for s in stride):
            raise ValueError(f"padding='same' needs stride=1 (got stride={stride}); give the padding as ints")
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, Sequence) and len(padding) == dim and all(isinstance(p, Sequence) for p in padding):
        pairs = tuple(tuple(p) for p in padding)
        if not all(len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in p) for p in pairs):
            raise TypeError(f"padding={padding!r} must hold one (before, after) pair of ints per dimension")
        if any(v < 0 for p in pairs for v in p):
            raise ValueError(f"padding={padding!r} must be non-negative")
        return pairs  # type: ignore[return-value]
    sym = expand(padding, dim, "padding", minimum=0)  # type: ignore[arg-type]
    return tuple((p, p) for p in sym)


def check_input(x: torch.Tensor, dim: int, channels: int, layer: str) -> None:
    """Input must be (N, C, *spatial) with ``dim`` spatial dims and ``channels`` channels."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{layer} expects a torch.Tensor input, got {type(x).__name__}")
    if x.dim() != dim + 2:
        names = ("N", "C", "L") if dim == 1 else ("N", "C", "H", "W") if dim == 2 else ("N", "C", "D", "H", "W")
        raise ValueError(
            f"{layer} expects a {dim + 2}-D input ({', '.join(names)}), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(f"{layer} expects {channels} input channels, got {x.shape[1]} (input shape {tuple(x.shape)})")


def check_window_fits(
    spatial: Sequence[int],
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    pairs: PaddingPairs,
    layer: str,
) -> None:
    """The dilated kernel must fit inside the padded input along every spatial dim."""
    for axis, (size, k, d, (lo, hi)) in enumerate(zip(spatial, kernel_size, dilation, pairs)):
        extent = d * (k - 1) + 1
        if size + lo + hi < extent:
            raise ValueError(
                f"{layer}: kernel_size={k} with dilation={d} spans {extent} but spatial dim {axis} of the input "
                f"is {size} (+{lo + hi} padding = {size + lo + hi}); the kernel must not be larger than the padded input"
            )
