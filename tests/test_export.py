"""Every family, in every dimension it has, goes through ``torch.export`` and the exported program computes
what the eager module computes."""

from __future__ import annotations

import pytest
import torch

import convzoo

SHAPES = {1: (2, 4, 8), 2: (2, 4, 8, 8), 3: (2, 4, 6, 6, 6)}
CASES = [(f.name, dim) for f in convzoo.families() for dim in f.dims]


def _input(dim: int) -> torch.Tensor:
    return torch.randn(*SHAPES[dim], generator=torch.Generator().manual_seed(dim))


@pytest.mark.parametrize("name, dim", CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_export_matches_eager(name, dim):
    torch.manual_seed(0)
    module = convzoo.build(name, 4, 4, None, dim).eval()
    x = _input(dim)
    with torch.no_grad():
        expected = module(x)  # also materialises lazy parameters (global_depthwise)
    exported = torch.export.export(module, (x,))
    with torch.no_grad():
        actual = exported.module()(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected)
    # The exported program holds the module's parameters, not a constant folded from this one input.
    other = _input(dim) * 2 + 1
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(other), module(other))

