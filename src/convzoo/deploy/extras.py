"""The optional ``mobile`` extra: ExecuTorch (with its XNNPACK delegate and Python runtime) and onnxruntime with
the ONNX exporter's packages. A missing package is one ImportError naming it and the pip command."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

MOBILE_EXTRA = "mobile"
# what each runtime imports, in the order a message names them
RUNTIME_PACKAGES = {
    "xnnpack": ("executorch", "torchao"),
    "onnxruntime": ("onnx", "onnxruntime", "onnxscript"),
}
QUANTIZE_PACKAGES = ("torchao", "executorch")  # the PT2E flow and the XNNPACK quantizer


class MissingPackage(ImportError):
    """An optional package is not installed; the message names it and the command that installs it."""


def missing(packages: tuple[str, ...]) -> list[str]:
    """The packages of ``packages`` that cannot be imported."""
    return [name for name in packages if importlib.util.find_spec(name) is None]


def require(packages: tuple[str, ...], purpose: str) -> None:
    """Raise MissingPackage (an ImportError) in one line when any of ``packages`` is missing; import torchao
    (``quiet_torchao``) when it is one of them."""
    absent = missing(packages)
    if absent:
        names = ", ".join(repr(name) for name in absent)
        raise MissingPackage(f"{purpose} needs {names}, not installed: pip install 'convzoo[{MOBILE_EXTRA}]'")
    if "torchao" in packages:
        quiet_torchao()


def quiet_torchao() -> None:
    """Import torchao with torch's pytree logger at ERROR: its import registers an Enum the way torch now
    deprecates, and torch logs a warning about torchao's code ("<enum 'KernelPreference'> is an Enum subclass ...")
    on every first import — in every int8 command's output, about nothing the user can change. Only that import
    is quietened; the logger's level is restored."""
    if "torchao" in sys.modules:
        return
    pytree = logging.getLogger("torch.utils._pytree")
    level = pytree.level
    pytree.setLevel(logging.ERROR)
    try:
        importlib.import_module("torchao")
    finally:
        pytree.setLevel(level)


def require_runtime(runtime: str) -> None:
    """Raise MissingPackage unless the packages that ``runtime`` ('xnnpack' or 'onnxruntime') runs on are there."""
    require(RUNTIME_PACKAGES.get(runtime, ()), f"the {runtime} runtime")
