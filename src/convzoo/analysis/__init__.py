"""What the articles compute about a layer or a model: output shapes, transposed-conv overlap, receptive fields and
cost (params, multiply-adds, other ops, bytes). Tools here read layers through the layer contract."""

from .cost import CostReport, LayerCost, LayerRow, cost
from .overlap import is_even_overlap, overlap_map
from .receptive_field import FieldRow, Misalignment, ReceptiveField, receptive_field
from .shapes import conv_output_shape, conv_output_size, transposed_output_size, transposed_output_sizes

__all__ = [
    "CostReport", "FieldRow", "LayerCost", "LayerRow", "Misalignment", "ReceptiveField", "conv_output_shape",
    "conv_output_size", "cost", "is_even_overlap", "overlap_map", "receptive_field", "transposed_output_size",
    "transposed_output_sizes",
]
