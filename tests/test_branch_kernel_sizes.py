"""MixConv and selective kernel read ``kernel_size=(3, 5)`` as the groups' / branches' sizes (timm's MixedConv2d
and SelectiveKernel do too), not as a 3×5 window. The attribute ``kernel_sizes`` holds that list; ``kernel_size``
is the envelope window; the repr prints ``kernel_sizes`` and never a ``kernel_size`` that differs from the
attribute."""

from __future__ import annotations

import re

import pytest
import torch

import convzoo as cz


def repr_field(module: torch.nn.Module, name: str) -> str | None:
    """``name``'s value in the layer's own line of the repr (its children print their own kernel_size)."""
    match = re.search(rf"\b{name}=(\([^)]*\)|\[[^\]]*\]|[^,)]+)", module.extra_repr())
    return None if match is None else match.group(1)


@pytest.mark.parametrize(("make", "sizes", "envelope"), [
    (lambda: cz.MixConv2d(4, 4, (3, 5)), (3, 5), (5, 5)),
    (lambda: cz.MixConv2d(6, 6, (3, 5, 7), split="exponential"), (3, 5, 7), (7, 7)),
    (lambda: cz.MixConv2d(4, 4, 3), (3,), (3, 3)),
    (lambda: cz.SelectiveKernelConv2d(4, 4, (3, 5), min_hidden=4), (3, 5), (5, 5)),
    (lambda: cz.SelectiveKernelConv2d(4, 4, (3, 7), min_hidden=4, keep_3x3=False), (3, 7), (7, 7)),
    (lambda: cz.SelectiveKernelConv1d(4, 4, (3, 5), min_hidden=4), (3, 5), (5,)),
    (lambda: cz.SelectiveKernelConv3d(4, 4, (3, 5), min_hidden=4), (3, 5), (5, 5, 5)),
])
def test_kernel_sizes_the_envelope_and_the_repr_agree(make, sizes, envelope):
    layer = make()
    assert layer.kernel_sizes == sizes
    assert layer.kernel_size == envelope  # what it was before: reads of kernel_size keep working
    assert repr_field(layer, "kernel_sizes") == str(sizes)
    shown = repr_field(layer, "kernel_size")
    assert shown is None or shown == str(envelope), repr(layer)


@pytest.mark.parametrize("name", ["mixconv", "selective_kernel"])
def test_a_tuple_lists_the_groups_not_a_window(name):
    """The branch / group convs are square, one per entry of the tuple: (3, 5) gives a 3×3 and a 5-wide one."""
    layer = cz.build(name, 4, 4, (3, 5), **({"min_hidden": 4} if name == "selective_kernel" else {}))
    convs = layer.convs if name == "mixconv" else layer.branches
    spans = [tuple(d * (k - 1) + 1 for k, d in zip(c.kernel_size, c.dilation)) for c in convs]
    assert spans == [(3, 3), (5, 5)]


def test_the_docs_say_what_a_tuple_means():
    """Family.build / build's docstrings and the library guide no longer promise one int per dim for every family."""
    from pathlib import Path

    guide = (Path(__file__).parents[1] / "docs" / "guide" / "library.md").read_text()
    assert "tuple kernels for every family with a window" not in guide
    assert "MixedConv2d" in guide
    for doc in (cz.family("standard").build.__doc__, cz.build.__doc__):
        assert "mixconv" in doc and "selective_kernel" in doc
    from convzoo.layers.selective_kernel import SelectiveKernelConvNd

    for cls in (cz.MixConv2d, SelectiveKernelConvNd):
        assert "kernel_sizes" in cls.__doc__ and "envelope" in cls.__doc__
