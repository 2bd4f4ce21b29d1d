"""Argument checks and the geometry every sliding-window family shares, below the layers.

``resolve_geometry`` expands and validates kernel_size / stride / dilation (ints, tuples, numpy ints) and resolves
``padding`` ('same', 'valid', ints, per-dim (before, after) pairs) ONCE into ``padding_pairs``; layers keep it as
``.padding_pairs`` and never re-derive it. Like torch's ``_pair`` (which takes any iterable), an integer NumPy array
stands for a tuple. ``check_window_fits`` gives the one message each family uses when the kernel does not fit the
padded input, or a reflect / circular padding does not fit the input. Imports nothing of convzoo: ``functional.py``
and the layers both use it.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

IntOrTuple = Union[int, Sequence[int]]
# An int, one int per spatial dim, a (before, after) pair per dim, or 'same' / 'valid'.
Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]
PaddingPairs = tuple[tuple[int, int], ...]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_int(value: Any, name: str) -> int:
    """``value`` as a Python int (numpy integers accepted); TypeError naming ``name`` otherwise."""
    if not _is_int(value):
        raise TypeError(f"{name}={value!r} must be an int")
    return int(value)


def _as_sequence(value: Any) -> Any:
    """An integer NumPy array (1-D: one int per dim; 2-D: (before, after) pairs) as nested tuples of Python ints,
    since torch's convs take it as the tuple it iterates to; anything else as it is (checked by the caller)."""
    if isinstance(value, np.ndarray) and value.ndim >= 1 and value.dtype.kind in "iu":
        return tuple(tuple(v) if isinstance(v, list) else v for v in value.tolist())
    return value


def expand(value: IntOrTuple, dim: int, name: str, minimum: int = 1) -> tuple[int, ...]:
    """Expand an int to a ``dim``-tuple and check every entry is an int >= ``minimum``. numpy integers and 1-D
    integer arrays count as ints and tuples (as for ``torch.nn.Conv2d``)."""
    if isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be an int or a tuple of {dim} ints, not a bool")
    entries = _as_sequence(value)
    if _is_int(value):
        values: tuple[int, ...] = (int(value),) * dim
    elif isinstance(entries, Sequence) and not isinstance(entries, str):
        if len(entries) != dim or not all(_is_int(v) for v in entries):
            raise TypeError(f"{name}={value!r} must be an int or a tuple of {dim} ints")
        values = tuple(int(v) for v in entries)
    else:
        raise TypeError(f"{name}={value!r} must be an int or a tuple of {dim} ints")
    for v in values:
        if v < minimum:
            rule = "positive" if minimum == 1 else f">= {minimum}"
            raise ValueError(f"{name}={value!r} must be {rule}")
    return values


def check_positive_int(value: Any, name: str) -> int:
    value = as_int(value, name)
    if value < 1:
        raise ValueError(f"{name}={value} must be positive")
    return value


def check_groups(in_channels: Any, out_channels: Any, groups: Any) -> tuple[int, int, int]:
    """Validated (in_channels, out_channels, groups) as ints: groups must divide both channel counts."""
    in_channels = check_positive_int(in_channels, "in_channels")
    out_channels = check_positive_int(out_channels, "out_channels")
    groups = check_positive_int(groups, "groups")
    if in_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels}")
    if out_channels % groups:
        raise ValueError(f"groups={groups} must divide out_channels={out_channels}")
    return in_channels, out_channels, groups


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
    padding = _as_sequence(padding)
    if isinstance(padding, str):
        check_choice(padding, "padding", ("same", "valid"))
        if padding == "valid":
            return ((0, 0),) * dim
        if any(s != 1 for s in stride):
            raise ValueError(f"padding='same' needs stride=1 (got stride={stride}); give the padding as ints")
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    if isinstance(padding, Sequence) and len(padding) == dim and all(isinstance(p, Sequence) for p in padding):
        if not all(len(p) == 2 and all(_is_int(v) for v in p) for p in padding):
            raise TypeError(f"padding={padding!r} must hold one (before, after) pair of ints per dimension")
        pairs = tuple((int(p[0]), int(p[1])) for p in padding)
        if any(v < 0 for p in pairs for v in p):
            raise ValueError(f"padding={padding!r} must be non-negative")
        return pairs
    sym = expand(padding, dim, "padding", minimum=0)  # type: ignore[arg-type]
    return tuple((p, p) for p in sym)


@dataclass(frozen=True)
class Geometry:
    """A sliding window's validated geometry. ``padding`` is the constructor's value in the form torch stores
    ('same', 'valid', a tuple of ints, or — asymmetric, which torch cannot express — the pairs themselves)."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Any
    padding_pairs: PaddingPairs

    @property
    def symmetric(self) -> bool:
        return all(lo == hi for lo, hi in self.padding_pairs)

    @property
    def torch_padding(self) -> str | tuple[int, ...]:
        """What torch's conv constructor can take: 'same'/'valid', or the before-padding (exact when symmetric)."""
        if isinstance(self.padding, str):
            return self.padding
        return tuple(lo for lo, _ in self.padding_pairs)


def resolve_geometry(dim: int, kernel_size: IntOrTuple, stride: IntOrTuple, padding: Padding,
                     dilation: IntOrTuple) -> Geometry:
    """Validate a window's arguments and resolve its padding once."""
    k = expand(kernel_size, dim, "kernel_size")
    s = expand(stride, dim, "stride")
    d = expand(dilation, dim, "dilation")
    pairs = padding_pairs(padding, k, s, d)
    if isinstance(padding, str):
        stored: Any = padding
    elif all(lo == hi for lo, hi in pairs):
        stored = tuple(lo for lo, _ in pairs)
    else:
        stored = pairs
    return Geometry(k, s, d, stored, pairs)


def check_padding_fits(spatial: Sequence[int], pairs: PaddingPairs, padding_mode: str, layer: str) -> None:
    """A padding that copies the input must find what it copies, as ``F.pad`` requires: 'reflect' needs each pad
    < the input's size along its dim (it mirrors without the edge), 'circular' each pad <= the size (it wraps
    once). 'zeros' and 'replicate' fit any size, as does a pad of 0."""
    rules = {"reflect": ("<", lambda pad, size: pad < size), "circular": ("<=", lambda pad, size: pad <= size)}
    if padding_mode not in rules:
        return
    sign, fits = rules[padding_mode]
    for axis, (size, (lo, hi)) in enumerate(zip(spatial, pairs)):
        if not all(pad == 0 or fits(pad, size) for pad in (lo, hi)):
            raise ValueError(
                f"{layer}: padding={(lo, hi)} (before, after) of spatial dim {axis} with padding_mode={padding_mode!r} "
                f"needs each pad {sign} the input's size there, but it is {size}; give a larger input, less padding "
                "or padding_mode='zeros' / 'replicate'"
            )


def check_window_fits(
    spatial: Sequence[int],
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    pairs: PaddingPairs,
    layer: str,
    padding_mode: str = "zeros",
) -> None:
    """The dilated kernel must fit inside the padded input along every spatial dim, and a 'reflect' / 'circular'
    padding inside the input (``check_padding_fits``)."""
    check_padding_fits(spatial, pairs, padding_mode, layer)
    for axis, (size, k, d, (lo, hi)) in enumerate(zip(spatial, kernel_size, dilation, pairs)):
        extent = d * (k - 1) + 1
        if size + lo + hi < extent:
            raise ValueError(
                f"{layer}: kernel_size={k} with dilation={d} spans {extent} but spatial dim {axis} of the input "
                f"is {size} (+{lo + hi} padding = {size + lo + hi}); the kernel must not be larger than the padded input"
            )
