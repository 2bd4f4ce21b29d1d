"""Turn dense convolutions into a family: ``approximate_`` one layer from a dense kernel, ``convert`` a model."""

from .approximate import approximate_
from .convert import ConversionReport, convert

__all__ = ["ConversionReport", "approximate_", "convert"]
