"""A built conv reconfigured as torch's convs allow (torch reads the geometry at each call): the next call computes
the new geometry, checked against torch's own module reconfigured the same way, and scipy for true convolution."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import signal

import convzoo as cz

FORMATS = [torch.contiguous_format, torch.channels_last]


def _pair(ours: torch.nn.Module, theirs: type[torch.nn.Module]) -> torch.nn.Module:
    twin = theirs(ours.in_channels, ours.out_channels, ours.kernel_size, groups=ours.groups)
    twin.load_state_dict(ours.state_dict())
    return twin


def _set(module: torch.nn.Module, **attributes: object) -> None:
    for name, value in attributes.items():
        setattr(module, name, value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("ours, theirs", [
    (lambda: cz.Conv2d(4, 6, 3, padding=1), torch.nn.Conv2d),
    (lambda: cz.DepthwiseConv2d(4, 8, 3, padding=1), torch.nn.Conv2d),
    (lambda: cz.Conv2d(4, 6, 3, padding=1, groups=2), torch.nn.Conv2d),
], ids=["standard", "depthwise", "grouped"])
def test_output_stride_8_reconfiguration_matches_torch(ours, theirs, fmt):
    """DeepLab's way to a dilated backbone: stride 2 → 1, dilation 2, padding 2, after the layer has run (its
    plans and form choices made for the old geometry)."""
    torch.manual_seed(0)
    layer = ours()
    layer.stride = 2
    twin = _pair(layer, theirs)
    _set(twin, stride=(2, 2), padding=(1, 1))
    x = torch.randn(2, 4, 13, 11).contiguous(memory_format=fmt)
    torch.testing.assert_close(layer(x), twin(x), rtol=1e-5, atol=1e-5)
    _set(layer, stride=1, dilation=2, padding=2)
    _set(twin, stride=(1, 1), dilation=(2, 2), padding=(2, 2))
    y = layer(x)
    assert y.shape == (2, layer.out_channels, 13, 11)
    torch.testing.assert_close(y, twin(x), rtol=1e-5, atol=1e-5)
    assert (layer.stride, layer.dilation, layer.padding, layer.padding_pairs) == ((1, 1), (2, 2), (2, 2),
                                                                                   ((2, 2), (2, 2)))
    y.sum().backward()  # and its gradients, against torch's
    x2 = x.detach().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(layer(x2).sum(), x2)[0],
                               torch.autograd.grad(twin(x2).sum(), x2)[0], rtol=1e-5, atol=1e-5)


def test_padding_given_as_a_name_after_construction():
    torch.manual_seed(0)
    layer = cz.Conv1d(2, 3, 4)
    layer.padding = "same"  # an even kernel: torch puts the odd element after
    twin = _pair(layer, torch.nn.Conv1d)
    twin.padding = "same"
    x = torch.randn(1, 2, 9)
    torch.testing.assert_close(layer(x), twin(x), rtol=1e-5, atol=1e-5)
    assert layer.padding_pairs == ((1, 2),)


def test_mode_set_to_convolution_is_scipys_same():
    """Setting ``mode`` re-resolves 'same' with true convolution's rule (the odd element before)."""
    torch.manual_seed(0)
    layer = cz.Conv1d(1, 1, 4, padding="same", bias=False)
    x = torch.randn(1, 1, 11)
    layer(x)
    layer.mode = "convolution"
    expected = signal.convolve(x[0, 0].numpy().astype(np.float64), layer.weight[0, 0].detach().double().numpy(),
                               mode="same")
    np.testing.assert_allclose(layer(x)[0, 0].detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert layer.padding_pairs == ((2, 1),)


def test_transposed_reconfiguration_matches_torch():
    torch.manual_seed(0)
    layer = cz.TransposedConv2d(4, 3, 3, stride=2, padding=1)
    twin = torch.nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(1, 4, 6, 7)
    torch.testing.assert_close(layer(x), twin(x), rtol=1e-5, atol=1e-5)
    _set(layer, stride=1, padding=2, dilation=2)
    _set(twin, stride=(1, 1), padding=(2, 2), dilation=(2, 2))
    torch.testing.assert_close(layer(x), twin(x), rtol=1e-5, atol=1e-5)
    assert layer.padding_pairs == ((2, 2), (2, 2))
    copied = copy.deepcopy(layer)
    copied.padding = 0
    twin.padding = (0, 0)
    torch.testing.assert_close(copied(x), twin(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, name, value, message", [
    (lambda: cz.Conv2d(4, 4, 3, padding="same"), "stride", 2, "padding='same' needs stride=1"),
    (lambda: cz.Conv2d(4, 4, 3), "kernel_size", 5, "does not match the weight's spatial shape (3, 3)"),
    (lambda: cz.Conv2d(4, 4, 3), "mode", "flipped", "mode='flipped' is unknown"),
    (lambda: cz.Conv2d(4, 4, 3), "padding_mode", "mirror", "padding_mode='mirror'"),
    (lambda: cz.Conv2d(4, 4, 3), "dilation", 0, "dilation"),
    (lambda: cz.TransposedConv2d(4, 4, 3, stride=2), "output_padding", 2, "must be smaller than max(stride, dilation)"),
    (lambda: cz.TransposedConv2d(4, 4, 3), "padding", -1, "padding"),
])
def test_a_refused_geometry_names_the_argument_and_changes_nothing(make, name, value, message):
    layer = make()
    before = {key: getattr(layer, key) for key in ("kernel_size", "stride", "padding", "dilation", "padding_pairs")}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        setattr(layer, name, value)
    assert {key: getattr(layer, key) for key in before} == before


def _families_with_geometry():
    for family in cz.families():
        try:
            layer = cz.build(family.name, 8, 8, 3)
        except ValueError:  # pointwise families take kernel 1
            layer = cz.build(family.name, 8, 8, 1)
        if not isinstance(layer, torch.nn.modules.conv._ConvNd) and hasattr(layer, "stride"):
            yield family.name, layer


@pytest.mark.parametrize("name, layer", list(_families_with_geometry()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_other_families_refuse_a_new_geometry_instead_of_computing_the_old_one(name, layer):
    """A layer that is not a torch conv built its sub-layers, kernels and padding for its geometry: setting stride,
    padding, dilation or kernel_size afterwards is refused by name (it used to be kept and disagree silently with
    what the layer computes), and the layer still computes what it did."""
    x = torch.randn(1, 8, 9, 9)
    with torch.no_grad():
        before = layer(x)
    for attribute, value in (("stride", 1), ("padding", 2), ("dilation", 2), ("kernel_size", 5)):
        with pytest.raises(AttributeError, match=f"{type(layer).__name__}.{attribute} is fixed when the layer is built"):
            setattr(layer, attribute, value)
    copied = copy.deepcopy(layer)
    with pytest.raises(AttributeError, match="is fixed"):
        copied.stride = 2
    with torch.no_grad():
        torch.testing.assert_close(layer(x), before)


def test_a_subclass_sets_its_geometry_in_its_own_init():
    """The geometry is fixed when the outermost __init__ returns, so a user's subclass may still set it there."""

    class Strided(cz.HetConv2d):
        def __init__(self) -> None:
            super().__init__(8, 8, 3, padding=1, p=2)
            self.padding_pairs = self.padding_pairs  # after the base's __init__: still building

    layer = Strided()
    with pytest.raises(AttributeError, match="Strided.padding_pairs is fixed"):
        layer.padding_pairs = ((0, 0), (0, 0))
