"""convzoo: every convolution used in modern CNNs as a correct, fast PyTorch layer, with the arithmetic to
choose between them."""

from . import arithmetic, functional
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers
from .registry import Family, build, families, family
from .cost import CostReport, LayerCost, LayerRow, cost
from .arithmetic import is_even_overlap, overlap_map, receptive_field
from . import models
from .approximate import approximate_
from .models.convert import ConversionReport, convert

__version__ = "0.1.0"
__all__ = [*_layers, "Family", "arithmetic", "build", "families", "family", "functional"]
__all__ += ["is_even_overlap", "overlap_map", "receptive_field"]
__all__ += ["CostReport", "LayerCost", "LayerRow", "cost"]
__all__ += ["ConversionReport", "approximate_", "convert", "models"]
from .compare import CompareRow, compare
from .bench import optimize
__all__ += ["CompareRow", "compare", "optimize"]
