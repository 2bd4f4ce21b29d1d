"""Optional packages: a missing one is reported in one line that names the extra to install."""

from __future__ import annotations

import importlib.util


class MissingExtra(RuntimeError):
    """An optional package is not installed; the message names it and the convzoo extra that brings it."""


def require(module: str, extra: str, purpose: str) -> None:
    """Raise MissingExtra unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{purpose} needs the package {module!r}, which is not installed: "
                           f"pip install 'convzoo[{extra}]'")
