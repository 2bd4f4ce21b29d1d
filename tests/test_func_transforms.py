"""``torch.func`` transforms (vmap, grad, jacrev) over every family, first call inside the transform or after eager
calls: the layer runs its deterministic PyTorch form there (convzoo's kernels have no batching rule and are never
timed on wrapped tensors), so it works wherever torch's own conv does. vmap outputs against the NumPy oracle;
``func.grad`` against the eager backward, which tests/test_every_form.py checks against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.func as tf

import convzoo as cz
from convzoo.deploy import checks
from convzoo.verify import randomize_parameters_

CASES = [(f.name, dim) for f in cz.families() for dim in f.dims]


def _layer(name: str, dim: int) -> torch.nn.Module:
    module = cz.build(name, checks.CHANNELS, checks.CHANNELS, None, dim, dtype=torch.float64)
    with torch.no_grad():
        module(checks.sample(dim, dtype=torch.float64))  # materialise lazy parameters
    return randomize_parameters_(module, torch.Generator().manual_seed(5)).eval()


@pytest.mark.parametrize("warm", [False, True], ids=["first-call-inside", "after-eager-calls"])
@pytest.mark.parametrize(("name", "dim"), CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_vmap_grad_and_jacrev_run_every_family(name: str, dim: int, warm: bool) -> None:
    module = _layer(name, dim)
    x = checks.sample(dim, dtype=torch.float64)
    if warm:  # plans and choices made in eager mode, forward and backward
        module(x.clone().requires_grad_()).square().sum().backward()
        with torch.no_grad():
            module(x)
    y = tf.vmap(module)(x)  # per sample: unbatched (C, *S) inputs
    np.testing.assert_allclose(y.detach().numpy(), module.reference_output(x.numpy()), rtol=1e-10, atol=1e-10)
    params = {k: v.detach() for k, v in module.named_parameters()}
    grads = tf.grad(lambda p: tf.functional_call(module, p, (x,)).square().sum())(params)
    module.zero_grad()
    module(x).square().sum().backward()
    for key, p in module.named_parameters():
        expected = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(grads[key], expected, rtol=1e-8, atol=1e-10, msg=f"{name}: d/d{key}")
    jacobian = tf.jacrev(lambda t: tf.functional_call(module, params, (t,)))(x[:1])
    assert jacobian.shape == (*y[:1].shape, *x[:1].shape)
