"""The arithmetic of convolutions, below the layers: output shapes, transposed-conv overlap, and cost (params,
multiply-adds, other ops, bytes) as ``LayerCost`` records and formulas, with ``cost(model, input)`` on the meta
device. A family file declares its cost with these; nothing here imports a layer (``cost`` reads a module's own
``cost(input_shape)`` method, whatever its type)."""

from .cost import CostReport, LayerCost, LayerRow, cost
from .overlap import is_even_overlap, overlap_map
from .shapes import conv_output_shape, conv_output_size, transposed_output_size, transposed_output_sizes

__all__ = [
    "CostReport", "LayerCost", "LayerRow", "conv_output_shape", "conv_output_size", "cost", "is_even_overlap",
    "overlap_map", "transposed_output_size", "transposed_output_sizes",
]
