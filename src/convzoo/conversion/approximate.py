"""Load a layer with the best approximation of a dense convolution's weights.

``approximate_(layer, weight, bias)`` sets ``layer``'s parameters from a dense conv kernel W (C_out, C_in, *k)
(grouped kernels are expanded to block-diagonal first, see ``convzoo.dense_kernels.dense_kernel``) and returns the
relative error ‖W_eff − W‖_F / ‖W‖_F of the kernel the layer now computes. Each family says how in its own file
(``approximate_dense_``, the layer contract): exact where the family can represent W (standard, true convolution,
dynamic — every kernel starts as W —, deformable — zero offsets —, MixConv/HetConv/grouped when W already has
their structure); otherwise the Frobenius-optimal projection or low-rank factorisation (SVD for the separable
families, rank-1 CP for flattened).
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers.base import ConvzooLayer


def approximate_(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    """Set ``layer`` to approximate the dense conv (weight (C_out, C_in, *k), bias); return the relative error."""
    if not isinstance(layer, ConvzooLayer):
        raise TypeError(f"{type(layer).__name__} cannot be initialised from a dense convolution's weights")
    return layer.approximate_dense_(weight, bias)
