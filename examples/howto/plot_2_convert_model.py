"""
Convert a model and read the report
===================================

How-to. ``convzoo.convert`` replaces the k×k convolutions of any model by another family, initialising each new
layer with the best approximation of the dense kernel it replaces, and reports what it did per layer.
"""

# %%
import torch
from torch import nn

import convzoo as cz

model = nn.Sequential(
    nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
    nn.Conv2d(32, 64, 3, padding=1, stride=2), nn.ReLU(),
    nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
)
converted, report = cz.convert(model, to="depthwise_separable", input_shape=(1, 3, 32, 32))

from rich.console import Console

Console(width=120, color_system=None).print(report.table())

# %%
# Reading the report: one row per replaced layer — its name in the model, the module before and after, params
# and MACs before → after, and ``rel. error`` = ‖W_new − W‖_F / ‖W‖_F, how far the new layer's effective kernel
# is from the dense one it replaced (near 1 for random kernels: a depthwise separable layer cannot express a
# generic dense kernel, so a converted pretrained model needs fine-tuning). ``note`` says why a layer was
# skipped. The same data as a dict (for logs or JSON):

print(report.to_dict()["layers"][0])

# %%
# The whole models' costs:

before = cz.cost(model, (1, 3, 32, 32))
after = cz.cost(converted, (1, 3, 32, 32))
print(f"MACs {before.macs:,} → {after.macs:,}; params {before.params:,} → {after.params:,}")
x = torch.randn(1, 3, 32, 32)
print("output shape unchanged:", converted(x).shape == model(x).shape)
