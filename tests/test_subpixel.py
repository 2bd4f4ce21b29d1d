"""Sub-pixel convolution with ICNR initialisation (Aitken et al. 2017): free of checkerboard artifacts at init."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import convzoo as cz


def test_icnr_output_of_a_constant_input_is_constant_away_from_the_borders():
    for dim, cls in ((1, cz.SubPixelConv1d), (2, cz.SubPixelConv2d), (3, cz.SubPixelConv3d)):
        torch.manual_seed(dim)
        layer = cls(3, 4, 3, padding=1, upscale_factor=2)
        x = torch.full((1, 3, *(8 if dim < 3 else 6,) * dim), 0.7)
        with torch.no_grad():
            y = layer(x)
        inner = y[(slice(None), slice(None), *(slice(2, -2),) * dim)]  # one low-res pixel (r outputs) from each border
        spread = inner.amax(dim=tuple(range(2, 2 + dim))) - inner.amin(dim=tuple(range(2, 2 + dim)))
        assert spread.abs().max() < 1e-6 * max(1.0, float(inner.abs().max()))
        assert inner.abs().max() > 0  # not trivially zero


def test_default_init_does_have_a_checkerboard_that_icnr_removes():
    torch.manual_seed(0)
    layer = cz.SubPixelConv2d(3, 4, 3, padding=1, upscale_factor=2, init="default")
    with torch.no_grad():
        inner = layer(torch.ones(1, 3, 8, 8))[:, :, 2:-2, 2:-2]
    assert (inner.amax(dim=(2, 3)) - inner.amin(dim=(2, 3))).min() > 1e-3


def test_icnr_equals_a_conv_then_nearest_upsampling_at_init():
    torch.manual_seed(1)
    layer = cz.SubPixelConv2d(2, 3, 3, padding=1, upscale_factor=3)
    x = torch.randn(1, 2, 5, 5)
    w = layer.conv.weight[::9]  # one of the 9 identical sub-kernels per output channel
    expected = F.interpolate(F.conv2d(x, w, layer.conv.bias[::9], padding=1), scale_factor=3, mode="nearest")
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected)


def test_pixel_shuffle_matches_torch_in_2d():
    x = torch.randn(2, 12, 3, 4)
    torch.testing.assert_close(cz.layers.subpixel.pixel_shuffle(x, 2), F.pixel_shuffle(x, 2), rtol=0, atol=0)
