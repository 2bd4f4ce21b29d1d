"""What ``convzoo bench`` times each layer against: the layer's own ``native_alternatives()`` (the layer contract):
the fastest compositions of native torch ops computing the same function ("native"), peers from other libraries
when installed ("peer"), and faithful copies of naive published approaches ("naive"). Each entry is
``(kind, label, fn)`` with ``fn(x)`` equal to the layer's forward (the bench reports the max difference).
"""

from __future__ import annotations

from torch import nn

from ..layers.base import Alternative, ConvzooLayer


def alternatives(module: nn.Module) -> list[Alternative]:
    """Native / peer / naive forms of ``module``'s function; empty for a module that is not a convzoo layer."""
    return module.native_alternatives() if isinstance(module, ConvzooLayer) else []
