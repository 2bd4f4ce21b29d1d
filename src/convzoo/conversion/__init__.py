"""Turn dense convolutions into a family: ``approximate_`` one layer from a dense kernel, ``convert`` a model."""

from .approximate import approximate_
from .convert import ConversionReport, convert
from .reparameterize import ReparameterizeReport, reparameterize

__all__ = ["ConversionReport", "ReparameterizeReport", "approximate_", "convert", "reparameterize"]
