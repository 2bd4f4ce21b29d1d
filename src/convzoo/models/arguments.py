"""The architectures' own arguments checked by name (the layers check theirs), and the keywords a model hands on
to every block of its conv family named for what they are when a block refuses one (or the width, when a block
cannot be built at the channels it gives)."""

from __future__ import annotations

import math
import numbers
import re
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
def block_keywords(model: str, conv: str, keywords: dict[str, Any], own: tuple[str, ...], fixed: tuple[str, ...] = (),
                   block: str = "", width: tuple[str, float] | None = None) -> Iterator[None]:
    """Building one of ``model``'s blocks of family ``conv`` with the extra ``keywords``, errors in the model's words:

    * a keyword in ``fixed`` (what the model sets on every block itself: channels, kernel, stride, bias...) is
      refused before the build (it was "build() got multiple values for keyword argument 'bias'");
    * a keyword the family's layer does not take is refused naming the model and its own arguments ``own`` (it was
      torch's message about the layer's ``__init__``, which never names the model the user called);
    * a ValueError naming one of ``keywords`` is the layer refusing that keyword's value; any other is the layer
      refusing the channels that ``width`` = (argument, value) gives ``block`` (a name and its channels).
    """
    clash = [k for k in keywords if k in fixed]
    if clash:
        raise TypeError(f"{model}: {clash[0]}={keywords[clash[0]]!r} cannot be given: the model sets "
                        f"{', '.join(fixed)} of its {conv!r} blocks itself (extra keywords go to every block)")
    try:
        yield
    except TypeError as error:
        text = str(error)
        unknown = [k for k in keywords if f"'{k}'" in text]
        if unknown and "multiple values" in text:
            raise TypeError(f"{model}: {unknown[0]}={keywords[unknown[0]]!r} cannot be given: the model sets it on "
                            f"its {conv!r} blocks itself") from None
        if not unknown or "unexpected keyword" not in text:
            raise
        raise TypeError(f"{model}: {unknown[0]}={keywords[unknown[0]]!r} is neither one of its arguments "
                        f"({', '.join(own)}) nor an argument of the {conv!r} layer its blocks are built from (extra "
                        f"keywords go to every block)") from None
    except ValueError as error:
        text = (str(error).strip().splitlines() or [""])[0]
        named = [k for k in keywords if re.search(rf"\b{re.escape(k)}=", text)]
        if named:
            raise ValueError(f"{model}: its {conv!r} blocks refuse {named[0]}={keywords[named[0]]!r} (extra keywords "
                             f"go to every block): {text}") from None
        if width is None:
            raise
        raise ValueError(f"{model}: {width[0]}={width[1]:g} gives block {block}, which the {conv!r} family refuses: "
                         f"{text}; choose a {width[0]} at which every block's channels meet that rule") from None
