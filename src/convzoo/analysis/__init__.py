"""What convzoo reads off a model through the layer contract: receptive fields (``receptive_field``) and the hooks
that let thop / ptflops count convzoo layers (``counters``). Above the layers; the arithmetic the layers
themselves use (shapes, overlap, cost) is ``convzoo.arithmetic``."""

from .receptive_field import FieldRow, Misalignment, ReceptiveField, receptive_field

__all__ = ["FieldRow", "Misalignment", "ReceptiveField", "receptive_field"]
