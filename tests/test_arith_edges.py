"""Edge cases of the arithmetic tools, each against an independent definition: a transposed conv's reachable output
sizes where output_padding 0 gives an empty output (torch's own op run at every output_padding), receptive fields
of global depthwise layers not run yet or sized for another map, cost rows of a module called twice (a hand count),
and the legacy ONNX export of involution (onnxruntime against the eager layer)."""

from __future__ import annotations

import itertools
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo as cz
from convzoo.analysis import receptive_field

_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_LAYER = {1: cz.TransposedConv1d, 2: cz.TransposedConv2d, 3: cz.TransposedConv3d}


# --- TransposedConv*d.output_sizes and forward(output_size=) ------------------------------------------------------


def _torch_sizes(i: int, k: int, s: int, p: int, d: int) -> list[int]:
    """The output sizes F.conv_transpose1d gives for every output_padding a < max(s, d) it runs with."""
    x, w = torch.zeros(1, 1, i), torch.zeros(1, 1, k)
    sizes = []
    for a in range(max(s, d)):
        try:
            sizes.append(F.conv_transpose1d(x, w, None, s, p, a, 1, d).shape[-1])
        except RuntimeError:  # torch refuses an empty output
            pass
    return sizes


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_transposed_output_sizes_when_output_padding_0_is_empty(dim: int) -> None:
    # i=1, k=1, s=3, p=1, d=1: (1 − 1)·3 − 2 + 0 + 1 = −1 at a = 0, but a = 2 gives 1: torch runs it.
    layer = _LAYER[dim](2, 3, 1, stride=3, padding=1, output_padding=2)
    x = torch.randn(1, 2, *(1,) * dim)
    assert _torch_sizes(1, 1, 3, 1, 1) == [1]
    assert layer.output_sizes((1,) * dim) == ((1,) * dim, (1,) * dim)
    expected = _CONV_TRANSPOSE[dim](x, layer.weight, layer.bias, 3, 1, 2)
    torch.testing.assert_close(layer(x, output_size=(1,) * dim), expected, rtol=0, atol=0)


def test_transposed_output_sizes_and_output_size_match_torch_over_a_grid() -> None:
    for i, k, s, p, d in itertools.product((1, 2, 3), (1, 2, 3), (1, 2, 3), (0, 1, 2), (1, 2, 3)):
        sizes = _torch_sizes(i, k, s, p, d)
        layer = cz.TransposedConv1d(1, 1, k, stride=s, padding=p, dilation=d)
        if not sizes:
            with pytest.raises(ValueError, match="leaves an empty output"):
                layer.output_sizes((i,))
            continue
        assert layer.output_sizes((i,)) == ((min(sizes),), (max(sizes),)), (i, k, s, p, d)
        x = torch.randn(1, 1, i)
        o0 = (i - 1) * s - 2 * p + d * (k - 1) + 1
        for o in sizes:  # each reachable size runs as torch's op with output_padding o − o₀
            expected = F.conv_transpose1d(x, layer.weight, layer.bias, s, p, o - o0, 1, d)
            torch.testing.assert_close(layer(x, output_size=(o,)), expected, rtol=0, atol=0)
