"""Outputs follow every way a parameter can change, as ``torch.nn.Conv2d``'s do: in-place writes through ``p.data``
(EMA, init and pruning code: ``m.weight.data.normal_()``), ``p.data = new``, ``copy_`` under no_grad,
``load_state_dict``, optimizer steps and parametrizations (``torch.nn.utils.prune``, ``weight_norm``).

A write through ``p.data`` bumps neither ``p._version`` (``.data`` is a new tensor with its own counter) nor moves
``p``'s storage, so a kernel derived from the weights (a flipped or scattered copy) and kept while those stay the
same served the old weights: the layer must re-derive it. The expected output is independent of the layer's
history: a freshly built layer of the same family loaded with the changed state dict."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, prune

import convzoo

FAMILIES = [f.name for f in convzoo.families() if 2 in f.dims]
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
MODES = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


def build(name: str) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return convzoo.build(name, 8, 8, None if not convzoo.family(name).window else 3).eval()


def fresh_twin(name: str, layer: nn.Module, x: torch.Tensor, mode: Callable[[], contextlib.AbstractContextManager],
               **attributes: str) -> torch.Tensor:
    """The output of a newly built layer of family ``name`` carrying ``layer``'s current state dict, on ``x``."""
    twin = build(name)
    for key, value in attributes.items():
        setattr(twin, key, value)
    with torch.no_grad():
        twin(x)  # a lazy layer takes its shape here
    twin.load_state_dict(layer.state_dict())
    with mode():
        return twin(x).clone()


def close(y: torch.Tensor, expected: torch.Tensor) -> None:
    scale = float(expected.abs().max()) or 1.0
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5 * scale)


def data_writes() -> list[tuple[str, Callable[[nn.Parameter], None]]]:
    def mul_in_place(p: nn.Parameter) -> None:
        p.data.mul_(2)  # the .data tensor's version counter moves, p's does not

    def assign(p: nn.Parameter) -> None:
        p.data = p.data * 3  # a new storage; p keeps its version counter

    return [("data.mul_(2)", mul_in_place), ("data = data * 3", assign)]


def check_follows_data_writes(name: str, layer: nn.Module, x: torch.Tensor, mode_name: str,
                              **attributes: str) -> None:
    mode = MODES[mode_name]
    for label, write in data_writes():
        with mode():
            before = layer(x).clone()
            layer(x)  # a second call of the key: the planned runner (and any kernel kept for it)
        with torch.no_grad():
            for p in layer.parameters():
                write(p)
        expected = fresh_twin(name, layer, x, mode, **attributes)
        with mode():
            y = layer(x).clone()
        assert not torch.allclose(expected, before), f"{name}: {label} did not change the output: a vacuous check"
        close(y, expected)


@pytest.mark.parametrize("mode_name", list(MODES))
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_follows_writes_through_data(name, fmt, mode_name):
    torch.manual_seed(0)
    layer = build(name)
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=FORMATS[fmt])
    check_follows_data_writes(name, layer, x, mode_name)


def _pinned_forms() -> list[tuple[str, str, str]]:
    """Every (family, implementation, format) whose form derives a kernel from the weights: each is run pinned,
    since the measured choice on this machine may never pick it."""
    from convzoo.layers.hetconv import IMPLEMENTATIONS

    cases = [("hetconv", form, fmt) for form in IMPLEMENTATIONS[1:] for fmt in FORMATS]
    cases += [("global_depthwise", "kernel", "channels_last")]
    conv_forms = {"contiguous": ("native", "kernel", "channels_last round trip", "split ×2"),
                  "channels_last": ("native", "kernel", "channels_last ×2 repeat")}
    cases += [("convolution-depthwise", form, fmt) for fmt, forms in conv_forms.items() for form in forms]
    return cases


def _build_pinned(name: str) -> nn.Module:
    if name == "convolution-depthwise":  # a true convolution, depthwise with m = 2: every fast path flips
        return convzoo.Conv2d(8, 16, 3, padding=1, groups=8, mode="convolution").eval()
    return build(name)


@pytest.mark.parametrize("mode_name", list(MODES))
@pytest.mark.parametrize("name, form, fmt", _pinned_forms())
def test_each_form_that_derives_a_kernel_follows_writes_through_data(name, form, fmt, mode_name):
    torch.manual_seed(0)
    layer = _build_pinned(name)
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=FORMATS[fmt])
    if name == "convolution-depthwise":
        with torch.no_grad():
            layer(x)
        if form not in layer.forms(x):
            pytest.skip(f"{form!r} is not a form of this conv on {fmt} input on this machine")
    layer.implementation = form
    if name != "convolution-depthwise":
        check_follows_data_writes(name, layer, x, mode_name, implementation=form)
        return
    mode = MODES[mode_name]
    for _, write in data_writes():
        with mode():
            layer(x)
            layer(x)
        with torch.no_grad():
            for p in layer.parameters():
                write(p)
        expected = torch.nn.functional.conv2d(x, layer.weight.flip(-1, -2), layer.bias, padding=1, groups=8)
        with mode():
            close(layer(x), expected.detach())


# --- the other ways a parameter changes: each is seen too ---------------------------------------------------------

def _changes() -> list[tuple[str, Callable[[nn.Module], None]]]:
    def copy_under_no_grad(layer: nn.Module) -> None:
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p))

    def load(layer: nn.Module) -> None:
        layer.load_state_dict({k: torch.randn_like(v) if v.is_floating_point() else v
                               for k, v in layer.state_dict().items()})

    def optimizer_step(layer: nn.Module) -> None:
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)
        x = torch.randn(2, 8, 12, 12)
        layer.train()
        layer(x).square().sum().backward()
        optimizer.step()
        layer.eval()

    def ema(layer: nn.Module) -> None:  # the legacy EMA: shadow.data.mul_(d).add_(p.data, alpha=1 - d)
        for p in layer.parameters():
            p.data.mul_(0.5).add_(torch.randn_like(p.data), alpha=0.5)

    return [("copy_", copy_under_no_grad), ("load_state_dict", load), ("optimizer", optimizer_step), ("ema", ema)]


@pytest.mark.parametrize("change", [c for _, c in _changes()], ids=[n for n, _ in _changes()])
@pytest.mark.parametrize("name", ["convolution", "hetconv", "global_depthwise"])
def test_outputs_follow_every_kind_of_parameter_update(name, change):
    torch.manual_seed(0)
    layer = build(name)
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    for _ in range(2):
        with torch.no_grad():
            layer(x)
            layer(x)
        change(layer)
        expected = fresh_twin(name, layer, x, torch.no_grad)
        with torch.no_grad():
            close(layer(x), expected)


@pytest.mark.parametrize("name", ["convolution", "hetconv"])
def test_parametrizations_are_followed(name):
    """prune's mask and weight_norm's g, v: the weight is computed at each access; changing the mask or g in place
    (or through .data) changes the output."""
    torch.manual_seed(0)
    layer = build(name)
    x = torch.randn(2, 8, 12, 12)
    weights = ["weight"] if name == "convolution" else ["weight_kxk", "weight_1x1"]
    for w in weights:
        prune.random_unstructured(layer, w, amount=0.5)
    with torch.no_grad():
        layer(x)
        for w in weights:
            getattr(layer, f"{w}_mask").data.fill_(1.0)  # the mask is a buffer: written through .data
            getattr(layer, f"{w}_orig").data.mul_(2)
        y = layer(x)  # prune's pre-hook sets weight = weight_orig * weight_mask first
        close(y, torch.nn.functional.conv2d(x, _dense_kernel(layer), layer.bias, padding=1))
    for w in weights:
        prune.remove(layer, w)
        parametrizations.weight_norm(layer, w)
    with torch.no_grad():
        layer(x)
        for w in weights:
            layer.parametrizations[w].original0.data.mul_(3)  # g
        close(layer(x), torch.nn.functional.conv2d(x, _dense_kernel(layer), layer.bias, padding=1))


def _dense_kernel(layer: nn.Module) -> torch.Tensor:
    """The (C_out, C_in, 3, 3) cross-correlation kernel of ``layer``, from its oracle definition."""
    if hasattr(layer, "weight_kxk"):
        from convzoo.oracle import reference as ref

        return torch.from_numpy(ref.hetconv_kernel(layer.weight_kxk.detach().numpy(),
                                                   layer.weight_1x1.detach().numpy(), layer.p)).float()
    return layer.weight.flip(-1, -2)
