"""A layer's first call of an input key times its exact forms (``FormChoice``), and nothing of that timing may be seen
by the caller: hooks (module, global, tensor), parametrizations (spectral_norm's power iteration), BatchNorm
statistics, the random generator, the autograd graph and the parameters' gradients are exactly as after one ordinary
call of the key. Each family's first call (choices forgotten, so it measures) is compared with a twin's ordinary
call (the same key, choices cached) and with hand counts of what one call fires."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import convzoo as cz
from convzoo.layers import form_choice
from convzoo.layers.form_choice import forget_choices, offered_forms

NAMES = [f.name for f in cz.families()]
FORMATS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
# With convzoo's kernels the sweep compiles every numba kernel (the suite's cold compile, ~2 min here): the default
# run offers PyTorch's forms only (still several per family, measured the same way), the slow run the kernels too.
KERNELS = [pytest.param(False, id="pytorch-forms"), pytest.param(True, id="kernels", marks=pytest.mark.slow)]


def pytorch_forms_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Layers offer no numba kernel form in this test (as where numba is missing; its one warning kept apart)."""
    from convzoo.kernels import numba_runtime, readiness

    monkeypatch.setattr(numba_runtime, "numba_module", lambda: None)
    monkeypatch.setattr(numba_runtime, "_warned", set())
    monkeypatch.setattr(readiness, "_ready", {})


def _build(name: str) -> nn.Module:
    """A fresh 8 → 8 layer of the family on 12×12 maps (GDC's kernel is the map: built, not lazy)."""
    return cz.build(name, 8, 8, 12) if name == "global_depthwise" else cz.build(name, 8, 8)


class _Count(nn.Module):
    """An identity parametrization that counts its evaluations (per instance: a copy counts apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self.n += 1
        return w


class _Watched:
    """Counting hooks on every submodule (forward pre and post), a full backward hook on the layer, a hook on every
    parameter's gradient, a global forward hook, and a counting parametrization on every parameter."""

    def __init__(self, layer: nn.Module) -> None:
        self.calls: Counter[str] = Counter()
        for module in list(layer.modules()):
            for name, p in list(module._parameters.items()):
                if p is not None and p.is_floating_point():
                    parametrize.register_parametrization(module, name, _Count())
        self.counters = [m for m in layer.modules() if isinstance(m, _Count)]
        for name, module in layer.named_modules():
            if "parametrizations" in name.split("."):
                continue
            module.register_forward_pre_hook(lambda *a, name=name: self.calls.update([f"pre {name}"]))
            module.register_forward_hook(lambda *a, name=name: self.calls.update([f"post {name}"]))
        layer.register_full_backward_hook(lambda *a: self.calls.update(["backward"]))
        for name, p in layer.named_parameters():
            p.register_hook(lambda g, name=name: self.calls.update([f"grad {name}"]))

    def evaluations(self) -> int:
        return sum(c.n for c in self.counters)

    def reset(self) -> None:
        self.calls.clear()
        for c in self.counters:
            c.n = 0


def _graph_nodes(y: torch.Tensor) -> Counter[str]:
    """The autograd graph behind ``y``: its nodes' types, counted."""
    seen, todo, kinds = set(), [y.grad_fn], Counter()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        kinds[type(node).__name__] += 1
        todo.extend(next_node for next_node, _ in node.next_functions)
    return kinds


def _one_call(layer: nn.Module, x: torch.Tensor, watched: _Watched) -> dict[str, object]:
    """Everything the caller can see of one training call (forward and backward) on ``layer``."""
    watched.reset()
    global_calls = Counter()
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: global_calls.update([type(m).__name__]))
    try:
        torch.manual_seed(11)
        xi = x.clone().requires_grad_()
        y = layer(xi)
        rng = torch.get_rng_state()
        forward = (dict(watched.calls), watched.evaluations(), dict(global_calls))
        y.square().sum().backward()
    finally:
        handle.remove()
    return {"forward calls, evaluations, global hooks": forward, "backward calls": dict(watched.calls),
            "graph": _graph_nodes(y), "rng": rng, "y": y.detach(), "dx": xi.grad,
            "grads": {k: p.grad for k, p in layer.named_parameters()},
            "buffers": {k: b.clone() for k, b in layer.named_buffers()}}


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("fmt", list(FORMATS), ids=list(FORMATS))
@pytest.mark.parametrize("name", NAMES)
def test_the_first_call_of_a_key_is_seen_as_one_ordinary_call(name: str, fmt: str, kernels: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if not kernels:
        pytorch_forms_only(monkeypatch)
    torch.manual_seed(0)
    layer = _build(name).train()
    twin = copy.deepcopy(layer)
    watched, twin_watched = _Watched(layer), _Watched(twin)
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=FORMATS[fmt])
    with offered_forms():  # forgets every choice: the layer's first call measures its forms
        first = _one_call(layer, x, watched)
    ordinary = _one_call(twin, x, twin_watched)  # the same key, its choices cached: nothing measured
    for part in ("forward calls, evaluations, global hooks", "backward calls", "graph"):
        assert first[part] == ordinary[part], f"{name}: {part}"
    assert torch.equal(first["rng"], ordinary["rng"]), f"{name}: the first call drew random numbers"
    # one call fires each submodule's hooks at most once, and the layer's own exactly once (a hand count)
    forward_calls = first["forward calls, evaluations, global hooks"][0]
    assert forward_calls["pre "] == forward_calls["post "] == 1 and max(forward_calls.values()) == 1, name
    assert first["backward calls"]["backward"] == 1, name
    for key in ("y", "dx"):
        torch.testing.assert_close(first[key], ordinary[key], rtol=1e-5, atol=1e-5, msg=f"{name}: {key}")
    for group in ("grads", "buffers"):
        assert first[group].keys() == ordinary[group].keys()
        for k, v in first[group].items():
            torch.testing.assert_close(v, ordinary[group][k], rtol=1e-5, atol=1e-5, msg=f"{name}: {k}")


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
@pytest.mark.parametrize("name", ["depthwise", "flattened", "dynamic", "hetconv", "global_depthwise", "deformable"])
def test_forward_only_first_calls_are_invisible_too(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference (eval, no_grad: forms timed forward only): the layer's hooks fire once and its parametrizations
    are evaluated as in a later call."""
    pytorch_forms_only(monkeypatch)
    torch.manual_seed(0)
    layer = _build(name).eval()
    watched = _Watched(layer)
    x = torch.randn(2, 8, 12, 12)
    counts = []
    with torch.no_grad():
        forget_choices()
        for _ in range(2):
            watched.reset()
            layer(x)
            counts.append((dict(watched.calls), watched.evaluations()))
    assert counts[0] == counts[1] and max(counts[0][0].values()) == 1, name


@pytest.mark.slow  # compiles the involution kernels
def test_involution_fused_choice_calls_the_generator_as_the_chosen_form_does():
    """The fused involution kernel is timed against 'generator + apply' on a private copy: a hook on the generator
    fires in the first call exactly as often as the chosen form calls it (0 for the fused kernel, 1 otherwise)."""
    layer = cz.build("involution", 8, 8).eval()
    calls = [0]
    layer.generator.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        forget_choices()
        layer(x)
        first = calls[0]
        calls[0] = 0
        layer(x)
    assert first == calls[0] <= 1


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
def test_spectral_norm_twin_of_torchs_conv_after_one_training_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """spectral_norm on a convzoo depthwise conv and on torch's nn.Conv2d with the same weights and seed: after one
    training forward (which, on a fresh key, measures the forms) the power-iteration vector u and the output agree
    to rounding (the timing ran ~180 extra iterations on the live layer: u 0.12 apart, the output 0.16 %)."""
    pytorch_forms_only(monkeypatch)
    torch.manual_seed(0)
    layer = cz.build("depthwise", 8, 8)
    twin = nn.Conv2d(8, 8, 3, padding="same", groups=8)
    twin.load_state_dict(layer.state_dict())
    torch.manual_seed(1)
    nn.utils.parametrizations.spectral_norm(layer)
    torch.manual_seed(1)
    nn.utils.parametrizations.spectral_norm(twin)
    x = torch.randn(2, 8, 16, 16)
    forget_choices()
    y, y_twin = layer(x), twin(x)
    u, u_twin = (m.parametrizations.weight[0]._u for m in (layer, twin))
    torch.testing.assert_close(u, u_twin, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(y, y_twin, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
def test_a_first_call_inside_saved_tensor_hooks_saves_what_an_ordinary_call_saves(monkeypatch: pytest.MonkeyPatch
                                                                                   ) -> None:
    """torch.utils.checkpoint counts the tensors a forward saves through saved-tensor hooks: the measurement's own
    saved tensors must not go through the caller's hooks (a hand count: what the next, ordinary call saves)."""
    pytorch_forms_only(monkeypatch)
    x = torch.randn(2, 8, 13, 13, requires_grad=True)
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[-1] += 1
        return t

    for name in ("depthwise", "flattened"):
        layer = cz.build(name, 8, 8)
        saved.clear()
        forget_choices()  # the first call inside the hooks measures the forms
        for _ in range(2):
            saved.append(0)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                layer(x).sum().backward()
        assert saved[0] == saved[1] > 0, name


@pytest.mark.filterwarnings("ignore:convzoo.*PyTorch's forms")
def test_global_hooks_are_back_after_a_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Global module hooks are set aside while forms are timed and restored afterwards."""
    pytorch_forms_only(monkeypatch)
    fired: list[str] = []
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: fired.append(type(m).__name__))
    try:
        layer = cz.build("flattened", 8, 8)
        forget_choices()
        layer(torch.randn(1, 8, 9, 9))
        assert fired.count("FlattenedConv2d") == 1 and fired.count("PointwiseConv2d") == 1
        assert not form_choice._SUSPENDED and form_choice._SUSPENSIONS[0] == 0
        fired.clear()
        nn.Identity()(torch.zeros(1))
        assert fired == ["Identity"]
    finally:
        handle.remove()


def test_a_fresh_hetconv_traces_without_an_eager_call_first():
    """HetConv's scatter indices (a constant of its configuration) were first built by the timing on the live layer;
    without it, jit.trace recorded their construction and its check run, which found them cached, failed with
    'Graphs differed across invocations'. They are built outside the trace: the traced module equals the layer."""
    torch.manual_seed(0)
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=4)
    x = torch.randn(2, 8, 9, 9)
    traced = torch.jit.trace(layer, x)
    torch.testing.assert_close(traced(x), layer(x), rtol=1e-5, atol=1e-6)


def test_global_forward_hooks_fire_in_other_threads_while_one_measures() -> None:
    """A measurement skips torch's global forward hooks in its own thread only: another thread's module calls
    meanwhile fire them (they were cleared for the whole process, so a server's other requests missed them), and
    the hooks' dict keeps its size (clearing it under a module call iterating it in another thread can raise
    'dictionary changed size during iteration'). After the measurement the hook is registered as it was."""
    import threading

    started, release = threading.Event(), threading.Event()
    fired: list[tuple[str, str]] = []

    def hook(module: nn.Module, args: object, output: object) -> None:
        fired.append((threading.current_thread().name, type(module).__name__))

    def held_open() -> torch.Tensor:  # a form that calls a module and keeps the measurement open once
        y = nn.Identity()(torch.zeros(1))
        started.set()
        release.wait(30)
        return y

    handle = nn.modules.module.register_module_forward_hook(hook)
    hooks = nn.modules.module._global_forward_hooks
    try:
        size = len(hooks)
        measurer = threading.Thread(name="measurer", target=lambda: form_choice.FormChoice("threads").choose(
            ("key",), {"held": held_open, "plain": lambda: nn.Identity()(torch.zeros(1))}, torch.device("cpu")))
        measurer.start()
        assert started.wait(30)
        assert len(hooks) == size
        nn.ReLU()(torch.zeros(1))  # the program's own call in this thread, during the measurement
        release.set()
        measurer.join(30)
        assert fired == [(threading.current_thread().name, "ReLU")]
        assert hooks[handle.id] is hook and not form_choice._SUSPENDED and form_choice._SUSPENSIONS[0] == 0
    finally:
        release.set()
        handle.remove()
