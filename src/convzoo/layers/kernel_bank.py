"""K kernels of one shape stored as one parameter (K·C_out, C_in/g, *k), the K banks stacked along the first axis.

So a 2-D family's bank is 4-D and a 3-D one's 5-D, like a conv's weight: ``model.to(memory_format=
torch.channels_last)`` converts it (torch refuses a 5-D parameter in the 4-D format) and tools that expect a conv
weight's rank see one. ``bank_view`` gives the (K, C_out, C_in/g, *k) view; ``accept_unstacked_banks`` lets a
state dict saved with the (K, C_out, C_in/g, *k) layout load.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def bank_view(weight: torch.Tensor, num_kernels: int) -> torch.Tensor:
    """(K·C_out, C_in/g, *k) → (K, C_out, C_in/g, *k) (a view of a contiguous or channels-last weight)."""
    return weight.unflatten(0, (num_kernels, -1))


def accept_unstacked_banks(module: nn.Module) -> None:
    """Let ``module.load_state_dict`` reshape a (K, C_out, C_in/g, *k) ``weight`` entry to the stacked parameter
    (a module-level hook bound with the module: the module still pickles and deep-copies)."""
    module._register_load_state_dict_pre_hook(_stack_loaded_weight, with_module=True)


def _stack_loaded_weight(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    key, target = prefix + "weight", module.weight
    value = state_dict.get(key)
    if isinstance(value, torch.Tensor) and value.dim() == target.dim() + 1 and value.numel() == target.numel():
        state_dict[key] = value.flatten(0, 1)


def timm_condconv_peer(layer: nn.Module, num_kernels: int) -> nn.Module | None:
    """timm's ``CondConv2d`` holding ``layer``'s K stacked kernels (weight (K·C_out, C_in/g, *k)) as its experts,
    for the bench's peer rows: it computes W(r) = Σ_k r_k W_k, b(r) = Σ_k r_k b_k for the routing r it is given.
    None where timm is missing or cannot express the layer (not 2-D, asymmetric or non-zero padding)."""
    if layer.dim != 2 or layer.padding_mode != "zeros" or any(lo != hi for lo, hi in layer.padding_pairs):
        return None
    try:
        from timm.layers import CondConv2d
    except ImportError:
        return None
    peer = CondConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                      tuple(lo for lo, _ in layer.padding_pairs), layer.dilation, layer.groups,
                      layer.bias is not None, num_kernels)
    peer = peer.to(device=layer.weight.device, dtype=layer.weight.dtype)
    with torch.no_grad():
        peer.weight.copy_(layer.weight.reshape(num_kernels, -1))
        if layer.bias is not None:
            peer.bias.copy_(layer.bias)
    return peer
