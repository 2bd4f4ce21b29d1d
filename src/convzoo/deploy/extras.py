"""The optional ``mobile`` extra: ExecuTorch (with its XNNPACK delegate and Python runtime) and onnxruntime with
the ONNX exporter's packages. A missing package is one ImportError naming it and the pip command."""

from __future__ import annotations

import importlib.util

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
    """Raise MissingPackage (an ImportError) in one line when any of ``packages`` is missing."""
    absent = missing(packages)
    if absent:
        names = ", ".join(repr(name) for name in absent)
        raise MissingPackage(f"{purpose} needs {names}, not installed: pip install 'convzoo[{MOBILE_EXTRA}]'")


def require_runtime(runtime: str) -> None:
    """Raise MissingPackage unless the packages that ``runtime`` ('xnnpack' or 'onnxruntime') runs on are there."""
    require(RUNTIME_PACKAGES.get(runtime, ()), f"the {runtime} runtime")
