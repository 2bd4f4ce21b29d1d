"""A parametrized tensor is evaluated once per call, in every exact form, as torch's convs evaluate it.

``torch.nn.utils.parametrize`` recomputes a parametrized weight at every attribute read. torch's ``nn.Conv2d`` reads
its weight once per forward (a hand count: ``_conv_forward(input, self.weight, self.bias)``), so spectral_norm's power
iteration advances once per training step, the convention its ``u``/``v`` estimates are built on. A layer that reads
a parametrized tensor twice (a shape check, then the value) runs two power iterations per step and pays the
parametrization twice. Every parameter of every family is parametrized with a counting identity and each offered
form is pinned in turn (``pinned_form``), in both memory formats, with and without gradients.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import convzoo as cz
from convzoo.deploy import checks
from convzoo.layers.form_choice import offered_forms, pinned_form
from test_form_choice_invisible import _Count  # an identity parametrization that counts its evaluations

FORMATS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}


def _counted(name: str, dim: int) -> tuple[nn.Module, dict[str, _Count]]:
    """The family's layer with lazy parameters materialised and a counter on every floating parameter."""
    layer = cz.build(name, checks.CHANNELS, checks.CHANNELS, None, dim)
    with torch.no_grad():
        layer(checks.sample(dim))
    counters: dict[str, _Count] = {}
    for module_name, module in list(layer.named_modules()):
        for p_name, p in list(module._parameters.items()):
            if p is not None and p.is_floating_point():
                counters[f"{module_name}.{p_name}".lstrip(".")] = c = _Count()
                parametrize.register_parametrization(module, p_name, c)
    return layer, counters


def _offered(layer: nn.Module, dim: int) -> list[tuple[str, str]]:
    with offered_forms() as offered:
        for fmt in FORMATS.values() if dim == 2 else [torch.contiguous_format]:
            x = checks.sample(dim).contiguous(memory_format=fmt).requires_grad_()
            layer(x).sum().backward()
            with torch.no_grad():
                layer(x)
    layer.zero_grad(set_to_none=True)
    return [(family, form) for family, forms in offered.items() for form in forms] or [("", "")]


CASES = [(f.name, d) for f in cz.families() for d in f.dims]


@pytest.mark.parametrize(("name", "dim"), CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_each_parametrized_tensor_is_evaluated_once_per_call(name: str, dim: int) -> None:
    layer, counters = _counted(name, dim)
    wrong: dict[str, Counter[str]] = {}
    for family, form in _offered(layer, dim):
        for fmt_name, fmt in FORMATS.items() if dim == 2 else [("", torch.contiguous_format)]:
            for grad in (True, False):
                x = checks.sample(dim).contiguous(memory_format=fmt).requires_grad_(grad)
                with pinned_form(family, form) if family else contextlib.nullcontext(), torch.set_grad_enabled(grad):
                    layer(x)  # the key's first call may time forms (on a private copy, evaluated apart)
                    for c in counters.values():
                        c.n = 0
                    layer(x)
                counts = Counter({k: c.n for k, c in counters.items() if c.n != 1})
                if counts:
                    wrong[f"{family}:{form} {fmt_name} grad={grad}"] = counts
    assert not wrong, f"{name} {dim}-D: evaluations per call other than one: {wrong}"
