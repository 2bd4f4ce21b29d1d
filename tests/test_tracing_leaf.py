"""Tracing convzoo models: torch.jit.trace → save → load, and torch.fx (symbolic_trace, torchvision's
create_feature_extractor, torch.ao's prepare_fx), for every family and every model builder at tiny sizes.

Found by the s20 deploy review: ACNet's and RepVGG's branch names had a '×' ('k×k', '1×1'), which TorchScript's
serializer mangles, so a traced model saved but did not load ("ill formed octal specifier"); every convzoo layer
raised "expects a torch.Tensor input, got Proxy" under torch.fx. The names are now ASCII (old state dicts and
pickles still load), and a layer met by an FX tracer becomes one call_module node (a leaf: its form depends on the
input's shape, which a Proxy does not have).
"""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
from torch import nn

import convzoo
from convzoo import models as M
from convzoo.layers.base import ConvzooLayer
from convzoo.layers.form_choice import untimed

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning",
                                        "ignore::DeprecationWarning", "ignore::UserWarning")

FAMILIES = [f.name for f in convzoo.families()]


@pytest.fixture(autouse=True)
def _untimed() -> Iterator[None]:
    """Eager calls take each layer's first exact form untimed: these tests are about tracing, and timing (with its
    kernels' first compiles) cost half a minute a family."""
    with untimed():
        yield


X = (2, 8, 10, 10)

# (builder, input shape): the smallest each builder takes; repvgg_a0 has a fixed width (8 M parameters)
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mobilenet_v1": (lambda: M.mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10), (1, 3, 32, 32)),
    "mobilenet_v1_small": (lambda: M.mobilenet_v1_small(width_mult=0.25), (1, 3, 32, 32)),
    "shufflenet_v1": (lambda: M.shufflenet_v1(scale=0.25, num_classes=10), (1, 3, 32, 32)),
    "shufflenet_v1_small": (lambda: M.shufflenet_v1_small(scale=0.25), (1, 3, 32, 32)),
    "repvgg_a0": (lambda: M.repvgg_a0(num_classes=10), (1, 3, 32, 32)),
    "fasternet_t0": (lambda: M.fasternet_t0(num_classes=10), (1, 3, 32, 32)),
    "ghostnet": (lambda: M.ghostnet(width=0.25, num_classes=10), (1, 3, 32, 32)),
    "ghostnet_1_0": (lambda: M.ghostnet_1_0(num_classes=10), (1, 3, 32, 32)),
    "cnn1d_small": (lambda: M.cnn1d_small(), (2, 1, 64)),
}


def test_every_builder_is_covered() -> None:
    assert set(MODELS) == set(M.MODELS)


def _family(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    layer = convzoo.build(name, 8, 8).eval()
    _randomise_norms(layer)
    x = torch.randn(X)
    if isinstance(layer, nn.modules.lazy.LazyModuleMixin) and layer.has_uninitialized_params():
        with torch.no_grad():  # global depthwise takes its kernel from a first input (torch's lazy modules too)
            layer(x)
    return layer, x


def _randomise_norms(module: nn.Module) -> None:
    """BatchNorm statistics and affine parameters away from their identity start, so that a branch's BN loaded
    from the wrong key (or not at all) changes the output."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def _jit_round_trip(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        traced = torch.jit.trace(model, (x,), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        return loaded(x)


# --- ASCII names; torch.jit.trace → save → load ---------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILIES)
def test_module_and_tensor_names_are_ascii(name: str) -> None:
    for dim in (2, 3) if name in ("acnet", "repvgg", "large_kernel") else (2,):
        layer = convzoo.build(name, 8, 8, dim=dim)
        names = [n for n, _ in layer.named_modules()] + list(layer.state_dict())
        assert all(n.isascii() for n in names), [n for n in names if not n.isascii()]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_jit_trace_save_load_matches_the_oracle(name: str) -> None:
    layer, x = _family(name)
    expected = layer.reference_output(x.numpy())
    np.testing.assert_allclose(_jit_round_trip(layer, x).numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_model_jit_trace_save_load_matches_eager(model_name: str) -> None:
    make, shape = MODELS[model_name]
    torch.manual_seed(0)
    model = make().eval()
    _randomise_norms(model)
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(_jit_round_trip(model, x), expected, rtol=1e-4, atol=1e-5)


# --- checkpoints written with the old '×' names -----------------------------------------------------------------------

BLOCKS = [(convzoo.ACNetConv2d, ("kxk", "kx1", "1xk")),
          (convzoo.ACNetConv3d, ("kxkxk", "kx1x1", "1xkx1", "1x1xk")),
          (convzoo.RepVGGBlock2d, ("kxk", "1x1")),
          (convzoo.RepVGGBlock3d, ("kxkxk", "1x1x1"))]


def _old_spelling(key: str) -> str:
    """'branches.kxk.bn.weight' as the block wrote it before: 'branches.k×k.bn.weight' (only the branch name)."""
    parts = key.split(".")
    if parts[0] == "branches":  # not the identity branch's BN
        parts[1] = parts[1].replace("x", "×")
    return ".".join(parts)


def _block(cls: type, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    block = cls(4, 4, 3).eval()
    _randomise_norms(block)
    return block


@pytest.mark.parametrize(("cls", "names"), BLOCKS, ids=lambda v: getattr(v, "__name__", None))
def test_branch_names(cls: type, names: tuple[str, ...]) -> None:
    assert tuple(_block(cls, 0).branches) == names


@pytest.mark.parametrize(("cls", "names"), BLOCKS, ids=lambda v: getattr(v, "__name__", None))
def test_state_dict_with_old_names_loads(cls: type, names: tuple[str, ...]) -> None:
    source = _block(cls, 0)
    old = OrderedDict((_old_spelling(k), v) for k, v in source.state_dict().items())
    assert any("×" in k for k in old)
    # inside a model too: the prefix is the block's path
    model, target = nn.Sequential(nn.Identity(), _block(cls, 1)), _block(cls, 1)
    result = model.load_state_dict(OrderedDict((f"1.{k}", v) for k, v in old.items()))
    assert not result.missing_keys and not result.unexpected_keys
    target.load_state_dict(old)  # strict
    x = torch.randn(2, 4, *(7,) * source.dim)
    expected = source.reference_output(x.numpy())
    with torch.no_grad():
        for loaded in (target, model[1]):
            np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(loaded.fused_conv().weight, source.fused_conv().weight)


def test_old_and_new_name_both_given_keeps_the_new_and_reports_the_old() -> None:
    source, target = _block(convzoo.RepVGGBlock2d, 0), _block(convzoo.RepVGGBlock2d, 1)
    state = source.state_dict()
    state["branches.k×k.bn.bias"] = torch.full((4,), 7.0)
    result = target.load_state_dict(state, strict=False)
    assert result.unexpected_keys == ["branches.k×k.bn.bias"]
    torch.testing.assert_close(target.branches["kxk"].bn.bias, source.branches["kxk"].bn.bias)


@pytest.mark.parametrize(("cls", "names"), BLOCKS[:3], ids=lambda v: getattr(v, "__name__", None))
def test_block_pickled_with_old_names_unpickles_with_new(cls: type, names: tuple[str, ...]) -> None:
    block = _block(cls, 0)
    x = torch.randn(2, 4, *(7,) * block.dim)
    expected = block.reference_output(x.numpy())
    modules = block.branches._modules  # the branch names as an older convzoo pickled them
    block.branches._modules = type(modules)((n.replace("x", "×"), m) for n, m in modules.items())
    buffer = io.BytesIO()
    torch.save(nn.Sequential(block), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)[0]
    assert tuple(loaded.branches) == names
    np.testing.assert_allclose(_jit_round_trip(loaded, x).numpy(), expected, rtol=1e-4, atol=1e-5)


# --- torch.fx: every convzoo layer is a leaf --------------------------------------------------------------------------

def _convzoo_paths(model: nn.Module) -> set[str]:
    """The outermost convzoo layers (their insides are not traced)."""
    out: set[str] = set()
    for path, module in model.named_modules():
        if isinstance(module, ConvzooLayer) and not any(path.startswith(p + ".") for p in out):
            out.add(path)
    return out


@pytest.mark.parametrize("name", FAMILIES)
def test_family_symbolic_trace_is_one_node_and_matches_the_oracle(name: str) -> None:
    layer, x = _family(name)
    model = nn.Sequential(layer, nn.ReLU())
    graph_module = torch.fx.symbolic_trace(model)
    calls = [(n.op, n.target) for n in graph_module.graph.nodes if n.op not in ("placeholder", "output")]
    assert calls == [("call_module", "0"), ("call_module", "1")]
    with torch.no_grad():
        y = graph_module(x)
    np.testing.assert_allclose(y.numpy(), np.maximum(layer.reference_output(x.numpy()), 0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_model_symbolic_trace_matches_eager(model_name: str) -> None:
    make, shape = MODELS[model_name]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(shape)
    graph_module = torch.fx.symbolic_trace(model)
    targets = {n.target for n in graph_module.graph.nodes if n.op == "call_module"}
    assert _convzoo_paths(model) <= targets
    with torch.no_grad():
        torch.testing.assert_close(graph_module(x), model(x), rtol=1e-5, atol=1e-6)


def test_a_layer_used_twice_is_two_calls_of_one_module() -> None:
    layer, x = _family("depthwise_separable")
    graph_module = torch.fx.symbolic_trace(nn.Sequential(layer, nn.ReLU(), layer))
    targets = [n.target for n in graph_module.graph.nodes if n.op == "call_module"]
    assert targets == ["0", "1", "0"]
    once = np.maximum(layer.reference_output(x.numpy()), 0)
    with torch.no_grad():
        np.testing.assert_allclose(graph_module(x).numpy(), layer.reference_output(once.astype(np.float32)),
                                   rtol=1e-4, atol=1e-5)


def test_symbolic_trace_of_a_layer_itself_says_what_to_do() -> None:
    with pytest.raises(TypeError, match=r"cannot trace DepthwiseConv2d itself: .*torch.nn.Sequential\(layer\)"):
        torch.fx.symbolic_trace(convzoo.DepthwiseConv2d(8, 8, 3))


def test_create_feature_extractor_returns_a_block_output() -> None:
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(0)
    model = M.repvgg_a0(num_classes=10).eval()
    _randomise_norms(model)
    x = torch.randn(1, 3, 32, 32)
    block = "stages.1.0.0"
    assert isinstance(model.get_submodule(block), convzoo.RepVGGBlock2d)
    seen: dict[str, torch.Tensor] = {}
    handle = model.get_submodule(block).register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    extractor = create_feature_extractor(model, return_nodes={block: "feature", "fc": "logits"})
    with torch.no_grad():
        got = extractor(x)
    torch.testing.assert_close(got["feature"], seen["out"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["logits"], logits, rtol=1e-5, atol=1e-6)


def test_prepare_fx_keeps_convzoo_layers_float() -> None:
    """torch.ao's FX quantization: the convzoo layers stay float modules (no quantized pattern matches them), the
    model's torch parts (stem conv, classifier) are quantized, with (de)quantize around each convzoo layer."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.manual_seed(0)
    model = M.mobilenet_v1(width_mult=0.25, resolution=32, num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    paths = _convzoo_paths(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(model, get_default_qconfig_mapping("x86"), (x,))
        with torch.no_grad():
            prepared(x)  # calibration
        quantized = convert_fx(prepared)
    for path in paths:
        assert type(quantized.get_submodule(path)) is type(model.get_submodule(path))
    assert type(quantized.get_submodule("classifier")).__module__.startswith("torch.ao.nn.quantized")
    with torch.no_grad():
        y = quantized(x)
    assert float((y - expected).norm() / expected.norm()) < 0.1
