"""Compiled inference and training on the CPU for the families that declare ``compiles_as_op`` (found through the
layer contract): the traced forward is one opaque op that runs the layer's eager forward, with a backward op that
runs its eager training step (``layers/compiled_layer.py``); export, autocast and a layer with the attribute set
False trace the native form.

Outputs are checked against the NumPy oracle (``reference_output``), gradients against central differences of the
oracle's output in float64: never only against the layer's eager run."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from compile_graphs import call_targets, recording_backend

import convzoo as cz
from convzoo.layers import compiled_layer
from convzoo.layers.base import OP_KEY

OP = "convzoo.eager_layer.default"
SHAPE = (2, 8, 9, 9)


FAMILIES = [fam.name for fam in cz.families() if 2 in fam.dims and fam.compiles_as_op]  # through the contract


def test_some_families_compile_as_one_op():
    assert len(FAMILIES) >= 6, FAMILIES  # deformable v1/v2, DCNv3, involution, dynamic, CondConv, ODConv


def _layer(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    layer = cz.build(name, 8, 8)
    layer(torch.zeros(SHAPE))  # lazy parameters, if any
    with torch.no_grad():
        for p in layer.parameters():  # fractional offsets, attentions away from uniform
            p.uniform_(-0.5, 0.5)
    return layer




def _oracle(layer: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return layer.reference_output(x.detach().double().contiguous().numpy())


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("name", FAMILIES)
def test_compiled_inference_is_one_op_and_matches_the_oracle(name: str, fmt) -> None:
    layer = _layer(name)
    x = torch.randn(SHAPE).contiguous(memory_format=fmt)
    graphs: list[torch.fx.GraphModule] = []
    compiled = torch.compile(layer, backend=recording_backend(graphs), fullgraph=True)
    with torch.no_grad():
        y = compiled(x)
    assert call_targets(graphs) == [OP]  # the whole layer, nothing traced around it
    expected = _oracle(layer, x)
    error = float(np.abs(y.double().numpy() - expected).max() / max(1.0, np.abs(expected).max()))
    assert error < 1e-5, error
    assert y.is_contiguous(memory_format=fmt)
    with torch.no_grad():  # inductor too
        y = torch.compile(layer)(x)
    assert float(np.abs(y.double().numpy() - expected).max() / max(1.0, np.abs(expected).max())) < 1e-5


def _derivative_error(layer: torch.nn.Module, compiled, generator: torch.Generator) -> float:
    """⟨∇L, v⟩ from ``compiled``'s backward (L = Σ y·r; gradients of the input and every trainable parameter)
    against (L(θ + εv) − L(θ − εv)) / 2ε of the oracle in float64, v a random direction in those tensors."""
    x = torch.randn(SHAPE, generator=generator).requires_grad_()
    y = compiled(x)
    r = torch.randn(y.shape, generator=generator)
    params = [p for p in layer.parameters() if p.requires_grad]
    grads = torch.autograd.grad((y * r).sum(), [x, *params])
    direction = [torch.randn(t.shape, generator=generator, dtype=torch.float64) for t in (x, *params)]
    analytic = sum(float((gr.double() * v).sum()) for gr, v in zip(grads, direction))
    twin, r64, eps = copy.deepcopy(layer).double(), r.double().numpy(), 1e-6
    moved = [p for p in twin.parameters() if p.requires_grad]

    def oracle_loss(sign: float) -> float:
        with torch.no_grad():
            for p, p0, v in zip(moved, params, direction[1:]):
                p.copy_(p0.double() + sign * eps * v)
        return float((_oracle(twin, x.double() + sign * eps * direction[0]) * r64).sum())

    numeric = (oracle_loss(1.0) - oracle_loss(-1.0)) / (2 * eps)
    return abs(analytic - numeric) / max(abs(numeric), 1e-3)


@pytest.mark.parametrize("name", FAMILIES)
def test_compiled_training_gives_the_oracle_s_derivative(name: str, monkeypatch) -> None:
    """The compiled backward, which runs the op's eager step, against the oracle's central differences."""
    layer = _layer(name)
    live = compiled_layer._live
    calls: list[str] = []
    monkeypatch.setattr(compiled_layer, "_live", lambda key: calls.append(key) or live(key))
    graphs: list[torch.fx.GraphModule] = []
    compiled = torch.compile(layer, backend=recording_backend(graphs), fullgraph=True)
    error = _derivative_error(layer, compiled, torch.Generator().manual_seed(1))
    assert call_targets(graphs) == [OP]
    assert len(calls) >= 2  # the forward op and the backward op ran
    assert error < 1e-3, error


def test_compiled_training_with_inductor_and_frozen_parameters() -> None:
    layer = _layer(FAMILIES[0])
    frozen = next(layer.parameters())
    frozen.requires_grad_(False)
    assert _derivative_error(layer, torch.compile(layer), torch.Generator().manual_seed(2)) < 1e-3
    assert frozen.grad is None  # nothing accumulated, nothing asked of the frozen weight


def test_export_autocast_and_a_layer_turned_off_trace_the_native_form() -> None:
    layer = _layer(FAMILIES[0])
    x = torch.randn(SHAPE)
    exported = torch.export.export(layer, (x,))
    assert not any("eager_layer" in str(n.target) for n in exported.graph.nodes)
    graphs: list[torch.fx.GraphModule] = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.compile(layer, backend=recording_backend(graphs))(x)
    assert graphs and OP not in call_targets(graphs)
    off = _layer(FAMILIES[0])
    off.compiles_as_op = False
    graphs.clear()
    with torch.no_grad():
        torch.compile(off, backend=recording_backend(graphs))(x)
    assert graphs and OP not in call_targets(graphs)


def test_copies_have_ids_of_their_own_and_the_op_uses_the_tensors_it_is_given() -> None:
    layer = _layer(FAMILIES[0])
    twin, thawed = copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))
    keys = {m.__dict__[OP_KEY] for m in (layer, twin, thawed)}
    assert len(keys) == 3 and all(compiled_layer._LAYERS[k] is m for k, m in zip(
        [layer.__dict__[OP_KEY], twin.__dict__[OP_KEY], thawed.__dict__[OP_KEY]], (layer, twin, thawed)))
    x = torch.randn(SHAPE)
    names = [n for n, _ in layer.named_parameters()]
    other = {n: torch.randn_like(p) * 0.3 for n, p in layer.named_parameters()}

    def call(inp, params):
        return torch.func.functional_call(layer, params, (inp,))

    with torch.no_grad():
        y = torch.compile(call, fullgraph=True)(x, other)
        for n, p in twin.named_parameters():
            p.copy_(other[n])
    expected = _oracle(twin, x)
    assert float(np.abs(y.double().numpy() - expected).max() / max(1.0, np.abs(expected).max())) < 1e-5
    with pytest.raises(RuntimeError, match="no longer exists in this process; compile the model again"):
        compiled_layer.eager_layer(x, [], "0123|" + ",".join(names))


def test_dynamic_shapes_trace_the_op_once_for_every_size() -> None:
    layer = _layer(FAMILIES[0])
    graphs: list[torch.fx.GraphModule] = []
    compiled = torch.compile(layer, backend=recording_backend(graphs), dynamic=True, fullgraph=True)
    for size in (9, 12):
        x = torch.randn(2, 8, size, size)
        with torch.no_grad():
            y = compiled(x)
        expected = _oracle(layer, x)
        assert float(np.abs(y.double().numpy() - expected).max() / max(1.0, np.abs(expected).max())) < 1e-5
    assert call_targets(graphs) == [OP]  # one graph, symbolic sizes, for both
