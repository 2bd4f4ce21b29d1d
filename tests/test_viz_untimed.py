"""Pictures time no forms: every exact form computes the same values, so drawing a layer runs its preferred form
on each new input shape instead of timing them all (which took 10 of the 16 s of `convzoo viz mixconv -o m.png`
and 19 of the 25 s of flattened's)."""

import pytest
import torch

import convzoo as cz
from convzoo.layers import form_choice
from convzoo.viz import animate, conv_matrix, layer_figure, render
from convzoo.viz.spec import LayerSpec


@pytest.fixture
def no_timing(monkeypatch):
    """A form choice that times anything fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{self.family}: a picture timed the forms")

    monkeypatch.setattr(form_choice.FormChoice, "_measure", refuse)


@pytest.mark.parametrize("family", ["flattened", "mixconv", "depthwise"])
def test_drawing_a_layer_times_no_forms(family, tmp_path, no_timing):
    render(family, tmp_path / f"{family}.png", LayerSpec(family, 4, 4, size=6))
    layer = cz.build(family, 4, 4)
    layer_figure(layer, (4, 6, 6))
    animate(layer, (4, 5, 5), tmp_path / f"{family}.gif", max_frames=4)
    conv_matrix(layer, (4, 5, 5))
    assert not form_choice._UNTIMED[0]  # the caller's layers are timed again afterwards


def test_a_layer_outside_a_picture_still_times_its_forms(no_timing):
    layer = cz.build("flattened", 4, 4)
    with pytest.raises(AssertionError, match="timed the forms"):
        layer(torch.randn(1, 4, 7, 7))
