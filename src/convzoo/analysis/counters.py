"""Hooks that let module-type MAC counters (thop, ptflops) count convzoo layers with convzoo's own analytic cost.

Both counters look layers up by EXACT type (``type(m) in table``), so a subclass of ``nn.Conv2d`` — convzoo's
convs, or anyone's — reads as an unknown module and counts 0 MACs, whatever its class hierarchy. Pass these
mappings to them (thop's ``custom_ops``, ptflops' ``custom_modules_hooks``) and every convzoo layer in the model
is counted with its ``cost()``: the torch convs exactly as torch's, the composite families too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..arithmetic.cost import module_cost
from ..layers.base import ConvzooLayer


def _macs(module: nn.Module, inputs: tuple[Any, ...]) -> int:
    """Weight MACs of the module's ``cost`` on this input (an unbatched (C, *S) one counted as a batch of 1)."""
    return module_cost(module, tuple(inputs[0].shape)).macs


def _leaf_convzoo_types(model: nn.Module) -> set[type]:
    """Types of the convzoo layers that are not inside another convzoo layer (each counted once, by its own cost)."""
    found: set[type] = set()

    def visit(module: nn.Module) -> None:
        if isinstance(module, ConvzooLayer):
            found.add(type(module))
            return
        for child in module.children():
            visit(child)

    visit(model)
    return found


def thop_custom_ops(model: nn.Module) -> dict[type, Callable[..., None]]:
    """``thop.profile(model, inputs, custom_ops=thop_custom_ops(model))``: MACs from each layer's ``cost``."""

    def count(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        module.total_ops += torch.tensor([float(_macs(module, inputs))], dtype=torch.float64)

    return {cls: count for cls in _leaf_convzoo_types(model)}


def ptflops_hooks(model: nn.Module) -> dict[type, Callable[..., None]]:
    """``ptflops.get_model_complexity_info(..., backend='pytorch', custom_modules_hooks=ptflops_hooks(model))``."""

    def count(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        module.__flops__ += _macs(module, inputs)

    return {cls: count for cls in _leaf_convzoo_types(model)}
