"""The architectures' own arguments checked by name (the layers check theirs), and the keywords a model hands on
to every block of its conv family named for what they are when a block refuses one."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..geometry import check_positive_int


def positive_number(value: Any, name: str) -> float:
    """``value`` as a float when it is a finite real number > 0; TypeError / ValueError naming ``name`` otherwise
    (a string from the command line's ``--arg`` included)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name}={value!r} must be a number")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive finite number")
    return float(value)


def positive_ints(name: str = "", **values: Any) -> None:
    """Each keyword an int >= 1 (``check_positive_int``'s message, prefixed by the model's ``name``)."""
    for key, value in values.items():
        try:
            check_positive_int(value, key)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{name}: {error}" if name else str(error)) from None


def stage_depths(model: str, depths: Any, stages: int) -> tuple[int, ...]:
    """``depths`` (blocks per stage) as a tuple of ``stages`` ints >= 1. A depth of 0 would drop a stage (and its
    stride 2), a negative one builds the same net silently; TypeError / ValueError naming the model, depths and the
    rule."""
    rule = f"must give {stages} ints >= 1 (the blocks of each of the {stages} stages)"
    if isinstance(depths, (str, bytes)) or not isinstance(depths, Sequence):
        raise TypeError(f"{model}: depths={depths!r} {rule}")
    if len(depths) != stages:
        raise ValueError(f"{model}: depths={tuple(depths)} {rule}; it gives {len(depths)}")
    for i, depth in enumerate(depths):
        if not isinstance(depth, numbers.Integral) or isinstance(depth, bool):
            raise TypeError(f"{model}: depths={tuple(depths)} {rule}; depths[{i}]={depth!r} is not an int")
        if depth < 1:
            raise ValueError(f"{model}: depths={tuple(depths)} {rule}; depths[{i}]={depth} is not")
    return tuple(int(depth) for depth in depths)


@contextmanager
def block_keywords(model: str, conv: str, keywords: dict[str, Any], own: tuple[str, ...]) -> Iterator[None]:
    """Building ``model``'s blocks of family ``conv`` with the extra ``keywords``: a keyword the family's layer does
    not take is refused naming the model, the keyword, and the model's own arguments (it was torch's message about
    the layer's ``__init__``, which never names the model the user called)."""
    try:
        yield
    except TypeError as error:
        unknown = [k for k in keywords if f"'{k}'" in str(error)]
        if not unknown or "unexpected keyword" not in str(error):
            raise
        raise TypeError(f"{model}: {unknown[0]}={keywords[unknown[0]]!r} is neither one of its arguments "
                        f"({', '.join(own)}) nor an argument of the {conv!r} layer its blocks are built from (extra "
                        f"keywords go to every block)") from None
