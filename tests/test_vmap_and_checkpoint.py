"""Every family under ``torch.func.vmap`` over any dimension and in torch's model-ensembling recipe
(``stack_module_state`` + ``functional_call`` under vmap), against a Python loop over the same slices / models; and
under activation checkpointing (``torch.utils.checkpoint``, non-reentrant and reentrant) on a fresh layer, whose
first call measures its forms there, against the same layer's gradients without checkpointing."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.checkpoint import checkpoint

import convzoo as cz
from convzoo.layers import conv as conv_module
from convzoo.layers.form_choice import forget_choices, untimed

NAMES = [f.name for f in cz.families()]
FORMATS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def _build(name: str, lazy: bool = False) -> nn.Module:
    """A fresh 8 → 8 layer (GDC's kernel is the 9×9 map: built, unless ``lazy``)."""
    return cz.build(name, 8, 8, None if lazy else 9) if name == "global_depthwise" else cz.build(name, 8, 8)


def pytorch_forms_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers offer no numba kernel form (as where numba is missing): the sweep then compiles nothing."""
    from convzoo.kernels import numba_runtime, readiness

    monkeypatch.setattr(numba_runtime, "numba_module", lambda: None)
    monkeypatch.setattr(numba_runtime, "_warned", set())
    monkeypatch.setattr(readiness, "_ready", {})


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Equal to float32 rounding, relative to the largest value (the forms are exact, their sums ordered apart)."""
    scale = max(float(want.abs().max()), 1.0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * scale, msg=what)


# --- vmap ------------------------------------------------------------------------------------------------------------

def _slices_loop(layer: nn.Module, x: torch.Tensor, dim: int) -> torch.Tensor:
    with untimed(), torch.no_grad():
        return torch.stack([layer(x.select(dim, i)) for i in range(x.shape[dim])])


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_any_dimension_and_format_equals_a_loop(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """vmap over dim 1 of (N, B, C, H, W), over dim 0 of channels_last slices, and over the last dim: torch
    raised NYI ('querying is_contiguous inside of vmap') from the channels-last check every forward made."""
    pytorch_forms_only(monkeypatch)  # under vmap every family runs a PyTorch form; the loop need not compile
    torch.manual_seed(0)
    layer = _build(name).eval()
    x = torch.randn(2, 3, 8, 9, 9)
    with torch.no_grad():
        _close(vmap(layer, in_dims=1)(x), _slices_loop(layer, x, 1), f"{name}: in_dims=1")
        nhwc = torch.randn(3, 2, 9, 9, 8).permute(0, 1, 4, 2, 3)  # each slice (2, 8, 9, 9) channels_last
        assert nhwc[0].is_contiguous(memory_format=torch.channels_last) and not nhwc[0].is_contiguous()
        _close(vmap(layer)(nhwc), _slices_loop(layer, nhwc, 0), f"{name}: channels_last slices")
        last = torch.randn(2, 8, 9, 9, 3)
        _close(vmap(layer, in_dims=-1)(last), _slices_loop(layer, last, 4), f"{name}: in_dims=-1")


def _ensemble(models: list[nn.Module], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's model-ensembling recipe (stacked states, a meta base module, functional_call under vmap) and the
    loop over the models."""
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    with torch.no_grad():
        ys = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
        with untimed():
            want = torch.stack([m(x) for m in models])
    return ys, want


def _models(make: callable, x: torch.Tensor, n: int = 3) -> list[nn.Module]:
    torch.manual_seed(0)
    model = make().eval()
    with untimed(), torch.no_grad():
        model(x)  # lazy parameters materialised
    models = [copy.deepcopy(model) for _ in range(n)]
    with torch.no_grad():
        for i, m in enumerate(models):
            for p in m.parameters():
                p.add_(0.05 * i * torch.randn_like(p))
    return models


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
@pytest.mark.parametrize("fmt", list(FORMATS), ids=list(FORMATS))
@pytest.mark.parametrize("name", NAMES)
def test_model_ensembling_equals_a_loop_over_the_models(name: str, fmt: str, monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    pytorch_forms_only(monkeypatch)
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=FORMATS[fmt])
    ys, want = _ensemble(_models(lambda: _build(name), x), x)
    _close(ys, want, f"{name} ensemble")


def test_an_ensemble_of_two_layer_models_equals_a_loop():
    """nn.Sequential of two convzoo convs: the second conv's input inside vmap is the first's batched output, in
    whatever layout vmap gave it (it failed for any such pair)."""
    x = torch.randn(2, 8, 9, 9)
    make = lambda: nn.Sequential(cz.build("standard", 8, 8), nn.ReLU(), cz.build("depthwise", 8, 16),
                                 cz.build("flattened", 16, 8))
    ys, want = _ensemble(_models(make, x), x)
    _close(ys, want, "Sequential ensemble")


def test_a_lazy_global_depthwise_initialises_inside_vmap_as_in_a_loop():
    """The lazy GDC's first call inside vmap materialises its weight from the global generator (a one-time module
    initialisation, not per-sample randomness: no ``randomness=`` needed), drawing what a first call outside vmap
    draws; the outputs are the loop's."""
    x = torch.randn(2, 3, 8, 9, 9)
    runs = {}
    for where in ("inside vmap", "in a loop"):
        torch.manual_seed(0)
        layer = _build("global_depthwise", lazy=True)
        torch.manual_seed(1)
        if where == "inside vmap":
            with torch.no_grad():
                y = vmap(layer, in_dims=1)(x)
        else:
            y = _slices_loop(layer, x, 1)
        runs[where] = (layer, y, torch.rand(1))  # the generator's next draw: the same draws were made
    (inside, ys, next_inside), (outside, want, next_outside) = runs.values()
    assert torch.equal(inside.weight, outside.weight) and torch.equal(inside.bias, outside.bias)
    assert torch.equal(next_inside, next_outside)
    _close(ys, want, "lazy GDC under vmap")


# --- activation checkpointing ----------------------------------------------------------------------------------------

def _grads(layer: nn.Module, x: torch.Tensor, weights: torch.Tensor, reentrant: bool | None) -> list[torch.Tensor]:
    """∂(Σ y·weights)/∂(x, parameters) through ``checkpoint(layer, x, use_reentrant=reentrant)`` (None: no
    checkpoint). A loss linear in y: its gradients do not depend on the forward's rounding."""
    xi = x.clone().requires_grad_()
    y = layer(xi) if reentrant is None else checkpoint(layer, xi, use_reentrant=reentrant)
    (y * weights).sum().backward()
    return [xi.grad, *(p.grad for p in layer.parameters())]


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
@pytest.mark.parametrize("fmt", list(FORMATS), ids=list(FORMATS))
@pytest.mark.parametrize("name", NAMES)
def test_checkpointing_a_fresh_layer_gives_the_gradients_without_it(name: str, fmt: str, reentrant: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two training steps of a fresh layer (its first call measures its forms inside checkpoint's saved-tensor
    hooks): checkpoint raised 'a different number of tensors saved' for 13 families."""
    pytorch_forms_only(monkeypatch)
    torch.manual_seed(0)
    layer = _build(name).train()
    twin = copy.deepcopy(layer)
    forget_choices()
    for step in range(2):
        x = torch.randn(2, 8, 9, 9).contiguous(memory_format=FORMATS[fmt])
        if step == 0:  # the output's shape from a copy's untimed call: the layer's own first call is inside
            with untimed(), torch.no_grad():
                weights = torch.randn_like(copy.deepcopy(layer)(x))
        got = _grads(layer, x, weights, reentrant)
        want = _grads(twin, x, weights, None)
        for i, (g, w) in enumerate(zip(got, want)):
            assert (g is None) == (w is None), f"{name}: gradient {i}"
            if w is not None:
                _close(g, w, f"{name} step {step}: gradient {i}")
        layer.zero_grad(), twin.zero_grad()


def test_checkpoint_does_not_turn_the_kernel_off():
    """The reviewer's repro, with convzoo's depthwise kernel offered: checkpoint's recomputation stop
    (_StopRecomputationError, then AssertionError 'target_frame.early_stop') reached the kernel's warm-up and
    recorded 'kernel' as failed for the process, with a warning blaming the kernel. Only a form's own failure may."""
    forget_choices()
    failed_before = dict(conv_module._CHOICE.failed)
    torch.manual_seed(0)
    layer = cz.build("depthwise", 8, 8)
    twin = copy.deepcopy(layer)
    x = torch.randn(2, 8, 13, 13)
    weights = torch.randn(2, 8, 13, 13)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = _grads(layer, x, weights, reentrant=False)
    assert conv_module._CHOICE.failed == failed_before
    assert "kernel" in layer.forms(x)
    for g, w in zip(got, _grads(twin, x, weights, None)):
        _close(g, w, "depthwise gradients through checkpoint")


def test_checkpointing_a_lazy_global_depthwise_initialises_it_once():
    """A lazy GDC's first call inside checkpoint materialises it (the recomputation does not again) and the
    gradients are those of the materialised layer without checkpoint."""
    torch.manual_seed(0)
    layer = _build("global_depthwise", lazy=True).train()
    x = torch.randn(2, 8, 9, 9)
    weights = torch.randn(2, 8, 1, 1)
    forget_choices()
    got = _grads(layer, x, weights, reentrant=False)
    twin = copy.deepcopy(layer)
    twin.zero_grad()
    for g, w in zip(got, _grads(twin, x, weights, None)):
        _close(g, w, "lazy GDC gradients through checkpoint")
