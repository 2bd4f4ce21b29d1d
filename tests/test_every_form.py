"""Every exact form of every family, not only the one this machine's timing picks (``FormChoice`` times them on
the user's machine, which may pick any): each form pinned in turn (``pinned_form``) gives the NumPy oracle's output
in float64 on both memory formats (and with every parameter behind a parametrization), gradients that agree with its
own finite differences, and takes the paths that run the form's own code — a training step under CPU bfloat16
autocast, channels_last in and out, float16, an unbatched input and an empty batch.

The forms are those the layer's choices are offered on the test inputs (``offered_forms``), found by running the
layer, not listed by name; a layer that makes no choice runs the checks once, as it is."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
from torch.nn.utils import parametrize

import convzoo as cz
from convzoo.deploy import checks
from convzoo.layers.form_choice import offered_forms, pinned_form
from convzoo.verify import randomize_parameters_

CASES = [(f.name, dim) for f in cz.families() for dim in f.dims]
# The paths of tests/test_deploy.py that run a form's own code; under compile, export and tracing a layer runs its
# one fixed form (``form_choice.is_tracing``), so pinning changes nothing there.
FORM_PATHS = ("autocast_bf16", "channels_last", "half", "unbatched", "empty_batch")
IDS = [f"{name}-{dim}d" for name, dim in CASES]


def _formats(dim: int) -> list[torch.memory_format]:
    return [torch.contiguous_format, *([checks.MEMORY_FORMAT[dim]] if dim in checks.MEMORY_FORMAT else [])]


def _float64_layer(name: str, dim: int) -> torch.nn.Module:
    module = cz.build(name, checks.CHANNELS, checks.CHANNELS, None, dim, dtype=torch.float64)
    with torch.no_grad():
        module(checks.sample(dim, dtype=torch.float64))  # materialise lazy parameters
    return randomize_parameters_(module, torch.Generator().manual_seed(3)).eval()


def _offered(name: str, dim: int) -> list[tuple[str, str]]:
    """(family, form) for every form the layer's choices are offered here: forward and backward, float32 and
    float64, each memory format."""
    layers = [checks.build(name, dim), _float64_layer(name, dim)]
    with offered_forms() as offered:
        for module in layers:
            dtype = next(module.parameters()).dtype
            for fmt in _formats(dim):
                x = checks.sample(dim, dtype=dtype).contiguous(memory_format=fmt).requires_grad_()
                module(x).square().sum().backward()
                with torch.no_grad():
                    module(x)
    return [(family, form) for family, forms in offered.items() for form in forms]


def _oracle_error(module: torch.nn.Module, x: torch.Tensor) -> float:
    """max |y − oracle| / max(1, max |oracle|) for the layer's float64 output."""
    with torch.no_grad():
        y = module(x)
    expected = torch.from_numpy(module.reference_output(x.contiguous().numpy()))
    assert y.shape == expected.shape
    return float((y - expected).abs().max() / expected.abs().max().clamp_min(1.0))


def _directional_derivative_error(module: torch.nn.Module, x: torch.Tensor) -> float:
    """Relative difference between ⟨∇L, v⟩ from the backward and (L(θ + εv) − L(θ − εv)) / 2ε, for L = Σ y·r
    with fixed random r, v a random direction in (input, every parameter) and ε = 1e-6 (float64: both within about
    1e-10 of the derivative)."""
    g = torch.Generator().manual_seed(4)
    names = [n for n, _ in module.named_parameters()]
    leaves = [x.detach(), *(p.detach() for p in module.parameters())]
    with torch.no_grad():
        r = torch.randn(module(x).shape, generator=g, dtype=x.dtype)

    def loss(inputs: list[torch.Tensor]) -> torch.Tensor:
        y = torch.func.functional_call(module, dict(zip(names, inputs[1:])), (inputs[0],))
        return (y * r).sum()

    wrt = [t.clone().requires_grad_() for t in leaves]
    grads = torch.autograd.grad(loss(wrt), wrt, allow_unused=True)
    direction = [torch.empty_like(t).normal_(generator=g) for t in leaves]  # in each leaf's memory format
    analytic = sum(float((gr * v).sum()) for gr, v in zip(grads, direction) if gr is not None)
    eps = 1e-6
    with torch.no_grad():
        plus = float(loss([t + eps * v for t, v in zip(leaves, direction)]))
        minus = float(loss([t - eps * v for t, v in zip(leaves, direction)]))
    numeric = (plus - minus) / (2 * eps)
    return abs(analytic - numeric) / max(abs(numeric), 1e-3)


def _gradients_out_of_layout(module: torch.nn.Module, x: torch.Tensor) -> list[str]:
    """The parameters whose ``torch.autograd.grad`` gradient is not laid out as torch's convs give it: contiguous
    for a contiguous module on a contiguous input, else contiguous or channels_last (dense: ``g.view(-1)`` or
    ``g.permute(...).view(-1)`` works). A kernel that wrote ∂w channel-innermost, or ∂w and ∂b in one buffer,
    handed those strides on. ``module`` is moved to x's memory format first (a copy)."""
    fmt = next(f for f in (torch.contiguous_format, *checks.MEMORY_FORMAT.values()) if x.is_contiguous(memory_format=f))
    if fmt != torch.contiguous_format:
        module = copy.deepcopy(module).to(memory_format=fmt)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(module(x).square().sum(), [p for _, p in named], allow_unused=True)

    def laid_out(g: torch.Tensor) -> bool:
        return g.is_contiguous() or (fmt != torch.contiguous_format and g.dim() == x.dim()
                                     and g.is_contiguous(memory_format=fmt))

    return [f"{n} {tuple(g.shape)} strides {tuple(g.stride())}" for (n, _), g in zip(named, grads)
            if g is not None and not laid_out(g)]


class _Doubled(torch.nn.Module):
    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return 2 * value


def _parametrized_error(module: torch.nn.Module, x: torch.Tensor) -> float:
    """``_oracle_error`` with every parameter of every sub-module behind a parametrization (2·p): a form that read
    a parameter's stored tensor instead of its computed value would be off."""
    module = copy.deepcopy(module)
    for sub in list(module.modules()):
        for name in list(sub._parameters):
            if sub._parameters[name] is not None:
                parametrize.register_parametrization(sub, name, _Doubled())
    return _oracle_error(module, x)


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_every_form_is_exact_and_takes_every_path(name, dim):
    for family, form in _offered(name, dim) or [("", "")]:  # a layer that chooses nothing: once, as it runs
        what = f"{name} {dim}-D, {family} pinned to '{form}'" if family else f"{name} {dim}-D"
        with pinned_form(family, form) if family else contextlib.nullcontext():
            module = _float64_layer(name, dim)
            for fmt in _formats(dim):
                x = checks.sample(dim, dtype=torch.float64).contiguous(memory_format=fmt)
                error = _oracle_error(module, x)
                assert error < 1e-10, f"{what}, {fmt}: float64 output off the oracle by {error:.3g}"
                error = _directional_derivative_error(module, x)
                assert error < 1e-6, f"{what}, {fmt}: backward off its finite differences by {error:.3g}"
                wrong = _gradients_out_of_layout(module, x)
                assert not wrong, f"{what}, {fmt}: gradients not laid out as their parameters: {wrong}"
            error = _parametrized_error(module, checks.sample(dim, dtype=torch.float64))
            assert error < 1e-10, f"{what}: with parametrized parameters off the oracle by {error:.3g}"
            for path in FORM_PATHS:
                if checks.not_applicable(name, dim, path) is None:
                    try:
                        checks.PATHS[path](name, dim)
                    except AssertionError as failure:
                        raise AssertionError(f"{what}, {path}: {failure}") from None
