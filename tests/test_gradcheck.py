"""torch.autograd.gradcheck in fp64 for every family and dim: analytic gradients match finite differences."""

from __future__ import annotations

import pytest
import torch

import convzoo as cz

# Per-sample kernels over 27-tap patches in 3-D make gradcheck take minutes on a shared CPU (one forward per
# parameter element): those cases run with the slow tests; their 1-D and 2-D cases stay in the fast suite.
SLOW_3D = {"condconv", "odconv"}
CASES = [pytest.param(f.name, dim, marks=pytest.mark.slow) if dim == 3 and f.name in SLOW_3D else (f.name, dim)
         for f in cz.families() for dim in f.dims]


@pytest.mark.parametrize(("name", "dim"), CASES)
def test_gradcheck(name, dim):
    torch.manual_seed(0)
    channels = 4
    module = cz.build(name, channels, channels, None, dim, dtype=torch.float64)
    size = {1: 6, 2: 5, 3: 4}[dim]
    x = torch.randn(2, channels, *(size,) * dim, dtype=torch.float64, requires_grad=True)
    module(x)  # materialise lazy parameters
    with torch.no_grad():
        for p in module.parameters():  # non-zero offsets so deformable sampling is fractional
            p.uniform_(-0.5, 0.5)
    # Gradients through the functional call: w.r.t. the input and every parameter.
    names = [n for n, _ in module.named_parameters()]
    weights = [p.detach().clone().requires_grad_(True) for p in module.parameters()]

    def call(inp, *ws):
        return torch.func.functional_call(module, dict(zip(names, ws)), (inp,))

    assert torch.autograd.gradcheck(call, (x, *weights), eps=1e-6, atol=1e-5)
