"""A review of the models and of ``convzoo cost``: meta construction, errors that name the layer or the argument,
the small MobileNet's last feature map, the CLI's target list and its weight count."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.models import mobilenet_v1, mobilenet_v1_small

# --- meta construction --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "shape", "macs"), [
    # Howard et al. Table 1 counted by hand: 568,740,352 MACs at 1.0-224 (also tests/test_models.py's table check)
    (mobilenet_v1, (1, 3, 224, 224), 568_740_352),
    (mobilenet_v1_small, (1, 3, 32, 32), None),
])
def test_mobilenet_builds_on_the_meta_device(build, shape, macs):
    """He scaling read ``float(weight.std())``, which a meta tensor cannot give: the build raised."""
    with torch.device("meta"):
        model = build()
    real = build()
    assert all(p.is_meta for p in model.parameters())
    assert [(n, p.shape) for n, p in model.named_parameters()] == [(n, p.shape) for n, p in real.named_parameters()]
    expected = cz.cost(real, shape).macs
    assert cz.cost(model, shape).macs == expected
    if macs is not None:
        assert expected == macs


def test_he_scale_still_gives_std_sqrt_2_over_fan_in_off_meta():
    torch.manual_seed(0)
    model = mobilenet_v1(width_mult=0.25)
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            fan_in = m.weight[0].numel()
            assert float(m.weight.std()) == pytest.approx(math.sqrt(2 / fan_in), rel=1e-5)


# --- the small MobileNet's last feature map -----------------------------------------------------------------------


def test_small_mobilenet_docstring_gives_its_last_feature_map():
    """Three stride-2 blocks (SMALL_INPUT_STRIDES) and a stride-1 stem: total stride 8, 32 → 4. The docstring and the
    comment said 2×2."""
    from convzoo.models import mobilenet

    strides = math.prod(mobilenet.SMALL_INPUT_STRIDES)
    assert strides == 8
    features = mobilenet_v1_small().eval().features(torch.zeros(1, 3, 32, 32))
    assert features.shape == (1, 1024, 32 // strides, 32 // strides)
    said = re.search(r"feature map is (\d+)×(\d+)", " ".join(mobilenet_v1_small.__doc__.split()))
    assert said and (int(said[1]), int(said[2])) == tuple(features.shape[-2:])
    source = open(mobilenet.__file__).read()
    assert "ends at 2×2" not in source and "ends at 4×4" in source
