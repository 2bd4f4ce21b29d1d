"""Family-specific training rules, found from the layers themselves (isinstance), never from family names.

- Dynamic convolution (Chen et al. 2020, §4): the attention softmax temperature T starts at 30 and is
  annealed linearly to 1 over the first epochs, so that early on every kernel is trained. T is a function of
  the global step, T(s) = T₁ + (T₀ − T₁)·max(0, 1 − s/S), set on every ``DynamicConvNd`` through its
  ``temperature`` attribute — so a resumed run sees exactly the temperature of an uninterrupted one.
- Deformable convolution (Dai et al. 2017; Zhu et al. 2018 "DCNv2" §3): the offset (and mask) predicting conv
  learns at the base learning rate × a multiplier (0.1 by default), in its own optimizer parameter group.
"""

from __future__ import annotations

from torch import nn

from ..layers import DeformConv2d, DynamicConvNd


def dynamic_layers(model: nn.Module) -> list[DynamicConvNd]:
    return [m for m in model.modules() if isinstance(m, DynamicConvNd)]


def temperature_at(step: int, anneal_steps: int, start: float = 30.0, end: float = 1.0) -> float:
    """Linear annealing start → end over ``anneal_steps`` steps, then constant ``end``."""
    if anneal_steps <= 0:
        return end
    return end + (start - end) * max(0.0, 1.0 - step / anneal_steps)


def set_temperature(layers: list[DynamicConvNd], value: float) -> None:
    for layer in layers:
        layer.temperature = value


def param_groups(model: nn.Module, lr: float, offset_lr_mult: float = 0.1) -> list[dict]:
    """[everything else at lr, deformable offset convs at lr × offset_lr_mult] (the second only if any)."""
    offset = {id(p) for m in model.modules() if isinstance(m, DeformConv2d) for p in m.offset_conv.parameters()}
    rest = [p for p in model.parameters() if id(p) not in offset]
    groups = [{"params": rest, "lr": lr}]
    if offset:
        groups.append({"params": [p for p in model.parameters() if id(p) in offset], "lr": lr * offset_lr_mult})
    return groups
