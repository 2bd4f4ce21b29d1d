"""Compiled inference and training on the CPU: a depthwise layer with multiplier m > 1 (in training any depthwise
layer) is one opaque op that runs its eager choice, with a backward op that runs the eager training step
(``layers/compiled_choice.py``); export, m = 1 inference and pinned-native layers trace the native conv.

Outputs are checked against the NumPy oracle (``oracle/reference.py``), never only against the layer's eager run.
"""

from __future__ import annotations

import copy
import gc
import pickle
import warnings

import numpy as np
import pytest
import torch
from compile_graphs import call_targets, recording_backend

import convzoo as cz
from convzoo.layers import compiled_choice
from convzoo.oracle.reference import conv_matrix, correlate

OP = "convzoo.measured_form.default"
BACKWARD_OP = "convzoo.measured_form_backward.default"




def _oracle(layer: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    return correlate(x.double().numpy(), layer.weight.detach().double().numpy(),
                     layer.bias.detach().double().numpy(), layer.stride, layer.padding, layer.dilation,
                     layer.groups)


def _oracle_gradients(layer: torch.nn.Module, x: torch.Tensor, grad: np.ndarray) -> tuple[np.ndarray, ...]:
    """d/dx, d/dweight, d/dbias of sum(grad · layer(x)) for a depthwise layer, from the oracle's conv matrices:
    y[n, o] = C(w[o]) x[n, o // m] + b[o], linear in x (C(w[o])ᵀ) and in each tap of w[o] (C(e_tap))."""
    xs, w = x.detach().double().numpy(), layer.weight.detach().double().numpy()
    m, size, taps = layer.out_channels // layer.in_channels, xs.shape[2:], w.shape[2:]
    geometry = (layer.stride, layer.padding, layer.dilation)
    unit = [conv_matrix(size, np.eye(int(np.prod(taps)))[t].reshape(taps), *geometry) for t in range(int(np.prod(taps)))]
    gx, gw = np.zeros_like(xs), np.zeros_like(w)
    for o in range(layer.out_channels):
        c = o // m
        matrix = conv_matrix(size, w[o, 0], *geometry)
        for n in range(xs.shape[0]):
            g = grad[n, o].ravel()
            gx[n, c] += (matrix.T @ g).reshape(size)
            gw[o, 0] += np.array([g @ (u @ xs[n, c].ravel()) for u in unit]).reshape(taps)
    return gx, gw, grad.sum(axis=tuple(d for d in range(grad.ndim) if d != 1))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    torch._dynamo.reset()


@pytest.mark.parametrize("dim, m, fmt", [(2, 2, torch.contiguous_format), (2, 2, torch.channels_last),
                                         (1, 3, torch.contiguous_format)])
def test_compiled_inference_is_one_op_running_the_eager_choice(dim: int, m: int, fmt) -> None:
    layer = getattr(cz, f"DepthwiseConv{dim}d")(4, 4 * m, 3, stride=1, padding=1).eval()
    x = torch.randn(2, 4, *(9,) * dim)
    if dim == 2:
        x = x.contiguous(memory_format=fmt)
    graphs: list[torch.fx.GraphModule] = []
    with torch.no_grad():
        y = torch.compile(layer, backend=recording_backend(graphs), fullgraph=True)(x)
    assert call_targets(graphs) == [OP], call_targets(graphs)  # one op, no native conv, no graph break
    np.testing.assert_allclose(y.numpy(), _oracle(layer, x), rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=fmt)
    # the op ran the measured choice on its copy of a layer of this configuration
    runners = compiled_choice._layer(compiled_choice.handle(layer)).__dict__[compiled_choice._RUNNERS]
    assert (x.shape, x.stride(), x.dtype) in [key[:3] for key in runners]
    assert layer.measured_path(x) in layer.forms(x)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_inductor_keeps_the_op_s_output_layout(fmt) -> None:
    """Through inductor (what torch.compile runs by default): the output the fake function promised, the oracle's
    values, and a layer on the compiled output (a strided consumer of the op)."""
    first, second = cz.DepthwiseConv2d(4, 8, 3, padding=1).eval(), cz.PointwiseConv2d(8, 5).eval()
    model = torch.nn.Sequential(first, torch.nn.ReLU(), second)
    x = torch.randn(2, 4, 10, 7).contiguous(memory_format=fmt)
    with torch.no_grad():
        y = torch.compile(model)(x)
        middle = torch.from_numpy(np.maximum(_oracle(first, x), 0)).float()
    np.testing.assert_allclose(y.numpy(), _oracle(second, middle), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dim, m, fmt, backend", [(2, 2, torch.contiguous_format, "aot_eager"),
                                                  (2, 1, torch.channels_last, "aot_eager"),
                                                  (2, 2, torch.channels_last, "inductor"),
                                                  (1, 3, torch.contiguous_format, "inductor")])
def test_compiled_training_runs_the_eager_choice_and_its_backward(dim: int, m: int, fmt, backend: str) -> None:
    """Through AOTAutograd: the forward graph holds the op, the backward graph the backward op; outputs and the
    gradients of x, weight and bias against the oracle's conv matrices."""
    layer = getattr(cz, f"DepthwiseConv{dim}d")(3, 3 * m, 3, stride=2, padding=1, dilation=(2,) * dim)
    x = torch.randn(2, 3, *(9,) * dim)
    x = (x.contiguous(memory_format=fmt) if dim == 2 else x).requires_grad_(True)
    graphs: list[torch.fx.GraphModule] = []
    if backend == "aot_eager":
        from torch._dynamo.backends.common import aot_autograd

        record = recording_backend(graphs)
        y = torch.compile(layer, backend=aot_autograd(fw_compiler=record, bw_compiler=record), fullgraph=True)(x)
    else:
        y = torch.compile(layer, fullgraph=True)(x)
    grad = torch.randn_like(y)
    (y * grad).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), _oracle(layer, x.detach()), rtol=1e-5, atol=1e-5)
    expected = _oracle_gradients(layer, x, grad.double().numpy())
    for got, want in zip((x.grad, layer.weight.grad, layer.bias.grad), expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)
    assert x.grad.is_contiguous(memory_format=fmt)
    if graphs:
        forward, backward = (call_targets([g]) for g in graphs)
        assert OP in forward and "aten.convolution.default" not in forward, forward
        assert BACKWARD_OP in backward and "aten.convolution_backward.default" not in backward, backward


def test_compiled_training_with_frozen_weights_no_bias_and_an_input_without_grad() -> None:
    """The backward op computes only the gradients asked for: the input's alone (frozen weights, no bias), the
    weight's alone (the first layer: an input without grad)."""
    layer = cz.DepthwiseConv2d(3, 6, 3, padding=1, bias=False)
    layer.weight.requires_grad_(False)
    x = torch.randn(2, 3, 7, 8, requires_grad=True)
    y = torch.compile(layer, fullgraph=True)(x)
    grad = torch.randn_like(y)
    (y * grad).sum().backward()
    gx, _, _ = _oracle_gradients(layer, x, grad.double().numpy())
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=1e-4, atol=1e-4)
    assert layer.weight.grad is None
    layer.weight.requires_grad_(True)
    torch._dynamo.reset()
    x = torch.randn(2, 3, 7, 8)
    y = torch.compile(layer, fullgraph=True)(x)
    (y * grad).sum().backward()
    _, gw, _ = _oracle_gradients(layer, x, grad.double().numpy())
    np.testing.assert_allclose(layer.weight.grad.numpy(), gw, rtol=1e-4, atol=1e-4)


def test_export_multiplier_one_and_a_pinned_native_layer_trace_the_native_conv() -> None:
    layer = cz.DepthwiseConv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 9, 9)
    graphs: list[torch.fx.GraphModule] = []
    with torch.no_grad():  # m = 1: inductor's channels_last oneDNN kernel, no opaque op
        torch.compile(cz.DepthwiseConv2d(4, 4, 3).eval(), backend=recording_backend(graphs), fullgraph=True)(x)
    assert OP not in call_targets(graphs) and call_targets(graphs)
    exported = torch.export.export(layer.eval(), (x,))
    assert OP not in [str(n.target) for n in exported.graph.nodes]
    layer.implementation = "native"
    graphs.clear()
    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(layer, backend=recording_backend(graphs), fullgraph=True)(x)
    assert OP not in call_targets(graphs)


def test_a_copy_shares_the_key_runs_its_own_weights_and_a_missing_configuration_is_named() -> None:
    """The key is the configuration: a copy and an unpickled layer have the layer's key, and each computes with its
    own weights (the op's inputs); the op still runs once its layer is gone (its private copy of the
    configuration), and a configuration no live layer has is named in the error."""
    layer = cz.DepthwiseConv2d(3, 6, 3, padding=1).eval()
    twin = copy.deepcopy(layer)
    assert compiled_choice.handle(twin) == compiled_choice.handle(layer)
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        twin.weight.mul_(2)
        y = torch.compile(twin, backend=recording_backend([]), fullgraph=True)(x)
        np.testing.assert_allclose(y.numpy(), _oracle(twin, x), rtol=1e-5, atol=1e-5)
        y = torch.compile(layer, backend=recording_backend([]), fullgraph=True)(x)
        np.testing.assert_allclose(y.numpy(), _oracle(layer, x), rtol=1e-5, atol=1e-5)
    restored = pickle.loads(pickle.dumps(twin))  # after a compiled run: no runners pickled, the same key
    assert compiled_choice.handle(restored) == compiled_choice.handle(twin)
    assert compiled_choice._RUNNERS not in restored.__dict__
    key, expected = compiled_choice.handle(layer), _oracle(layer, x)
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    del layer, twin, restored
    gc.collect()
    np.testing.assert_allclose(torch.ops.convzoo.measured_form(x, weight, bias, key).numpy(), expected,
                               rtol=1e-5, atol=1e-5)
    unseen = cz.DepthwiseConv2d(3, 9, 3, padding=2, dilation=2, padding_mode="reflect")
    key = compiled_choice.handle(unseen)
    del unseen
    gc.collect()
    with pytest.raises(RuntimeError, match=r"no layer of the configuration .*DepthwiseConv2d\|\(9, .*'reflect'.* "
                                           r"exists in this process"):
        torch.ops.convzoo.measured_form(x, torch.ones(9, 1, 3, 3), torch.zeros(9), key)


def test_the_op_uses_the_tensors_it_is_given() -> None:
    """A compiler may pass constants in place of the parameters: the op computes with what it is given."""
    layer = cz.DepthwiseConv2d(3, 6, 3, padding=1).eval()
    weight, bias = torch.randn_like(layer.weight), torch.randn_like(layer.bias)
    x = torch.randn(2, 3, 7, 7)
    with torch.no_grad():
        y = torch.ops.convzoo.measured_form(x, weight, bias, compiled_choice.handle(layer))
    expected = correlate(x.double().numpy(), weight.double().numpy(), bias.double().numpy(), 1, 1, 1, groups=3)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert layer.weight is not weight and layer._parameters["weight"] is not weight  # the layer's own are back


def test_a_plan_made_under_a_dispatch_mode_is_not_kept() -> None:
    """Under FlopCounterMode the layer runs its native form; the next plain call must still measure and plan."""
    from torch.utils.flop_counter import FlopCounterMode

    from convzoo.layers.base import _PLANS

    layer = cz.DepthwiseConv2d(4, 4, 3, padding=1).eval()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            layer(x)
        assert counter.get_total_flops() == 2 * 4 * 9 * 64
        assert not layer.__dict__.get(_PLANS)
        layer(x)
    assert len(layer.__dict__[_PLANS]) == 1


def test_bench_compiled_script_runs_quickly(tmp_path) -> None:
    """benchmarks/bench_compiled.py --quick: a row per case and format for inference and for training, ratios from
    its own columns, nothing written."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "bench_compiled.py"
    spec = importlib.util.spec_from_file_location("bench_compiled", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    rows, layers = rows[:8], rows[8:]
    assert [r[:2] for r in layers] == [[bench.op_families(True)[0], "inference"],
                                       [bench.op_families(True)[0], "training step"]]
    for row in layers:  # eager, traced, one op; then their ratios
        assert all(t > 0 for t in row[2:5])
        assert row[5] == pytest.approx(row[4] / row[2]) and row[6] == pytest.approx(row[3] / row[4])
    assert [(r[0][:17], r[1]) for r in rows] == 2 * [  # inference, then training
        ("depthwise 3×3 m=1", "NCHW"), ("depthwise 3×3 m=1", "channels_last"),
        ("depthwise 3×3 m=2", "NCHW"), ("depthwise 3×3 m=2", "channels_last")]
    for row in rows:
        assert row[2] in ("native", "kernel", "kernel, position tiles", "channels_last round trip", "split ×2",
                          "channels_last ×2 repeat"), row
        assert all(t > 0 for t in row[3:7])
        assert row[7] == pytest.approx(row[6] / row[4]) and row[8] == pytest.approx(row[6] / row[5])
    assert not any(tmp_path.iterdir())
    plain = bench.as_torch_convs(cz.models.mobilenet_v1(0.25, 32).eval())
    assert not any(isinstance(m, cz.ConvNd) for m in plain.modules())
    assert any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in plain.modules())
    assert type(bench.as_torch_convs(cz.DepthwiseConv2d(4, 8, 3))) is torch.nn.Conv2d


def test_dynamic_shapes_give_the_op_s_fake_symbolic_sizes() -> None:
    """torch.compile(dynamic=True): one graph for several sizes (the fake function's sizes are symbolic), each
    output against the oracle."""
    layer = cz.DepthwiseConv2d(4, 8, 3, stride=2, padding=1).eval()
    graphs: list[torch.fx.GraphModule] = []
    compiled = torch.compile(layer, backend=recording_backend(graphs), dynamic=True, fullgraph=True)
    with torch.no_grad():
        for size in (9, 13, 20):
            x = torch.randn(2, 4, size, size + 1)
            np.testing.assert_allclose(compiled(x).numpy(), _oracle(layer, x), rtol=1e-5, atol=1e-5)
    assert len(graphs) == 1 and call_targets(graphs) == [OP]
