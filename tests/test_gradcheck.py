"""torch.autograd.gradcheck in fp64 for every family and dim: analytic gradients match finite differences."""

from __future__ import annotations

import pytest
import torch

import convzoo as cz

# gradcheck runs one forward per parameter element: these cases (per-sample kernels over patches, several branches,
# grid sampling; 1.5-6.5 min each on a shared 2-core CPU) run with the slow tests; each family keeps a fast case
# (its 1-D form) except dcnv3, whose only form is 2-D.
SLOW = {("condconv", 3), ("odconv", 2), ("odconv", 3), ("selective_kernel", 2), ("selective_kernel", 3), ("dcnv3", 2)}
CASES = [pytest.param(f.name, dim, marks=pytest.mark.slow) if (f.name, dim) in SLOW else (f.name, dim)
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
