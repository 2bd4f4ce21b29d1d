"""He scaling of a model's conv weights, so that an untrained network in eval mode keeps its signal.

torch's default conv init draws W with std 1/√(3·fan_in); each conv → ReLU then multiplies the activations'
second moment by ≈ 1/6. In eval mode a freshly built BatchNorm (running mean 0, variance 1) is the identity and
does not undo it, so after MobileNet's 27 convs the features are ~1e-11 of the input and the logits are the
classifier's bias, whatever the input. He's std √(2/fan_in) keeps E[y²] = E[x²] through conv → ReLU.
"""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def he_scale_(model: nn.Module) -> nn.Module:
    """Rescale every conv weight of ``model`` to std √(2/fan_in), fan_in = C_in/groups · prod(k). The family's
    init keeps its shape (ICNR's repeated kernels, zero-initialised offset convs stay zero); returns ``model``.
    Weights on the meta device are left alone: they hold no values to measure (a model built under
    ``torch.device('meta')`` gets its values later, from ``to_empty`` and a state dict)."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd) and m.weight is not None and not m.weight.is_meta:
            std = float(m.weight.std()) if m.weight.numel() > 1 else 0.0
            if std > 0:
                m.weight.mul_(math.sqrt(2 / m.weight[0].numel()) / std)
    return model
