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

import copy

import torch
from torch import nn

from ..layers.base import ConvzooLayer


def approximate_(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    """Set ``layer`` to approximate the dense conv (weight (C_out, C_in, *k), bias); return the relative error
    (NaN on the meta device: no values to compare).

    A float16 / bfloat16 conv is fitted in float32 and stored in its own dtype (the same values as fitting the
    float32 conv, then casting): the SVDs have no half-precision kernels, and half precision would fit worse."""
    if not isinstance(layer, ConvzooLayer):
        raise TypeError(f"{type(layer).__name__} cannot be initialised from a dense convolution's weights")
    if weight.is_floating_point() and weight.element_size() < 4 and not weight.is_meta:
        twin = copy.deepcopy(layer).float()  # its parameters in float32, its own code computes the fit
        error = twin.approximate_dense_(weight.float(), None if bias is None else bias.float())
        layer.load_state_dict(twin.state_dict())  # copy_ casts back to the layer's dtype
        return error
    return layer.approximate_dense_(weight, bias)
