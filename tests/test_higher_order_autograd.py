"""Second derivatives and forward-mode AD through every exact form of every family, as torch's own ops give them.

convzoo's compiled kernels sit behind ``autograd.Function``s whose backward runs kernels on detached data; a layer
runs one of them where ``FormChoice`` measured it fastest, so which one a user's network runs depends on the
machine. Each form is pinned in turn (``pinned_form``) and must give, in float64:

- a WGAN-GP gradient penalty's parameter gradients, ∇_θ ‖∇_x Σ tanh(f_θ(x))‖², and a Hessian-vector product
  ∇_x ⟨∇_x Σ tanh(f(x)), v⟩ (double backward) equal to the same layer's under a pass-through dispatch mode, where
  every layer runs its deterministic PyTorch form (``form_choice.is_tracing``): torch's own derivatives;
- a forward-mode tangent (``forward_ad.dual_level``, tangents on the input and on every parameter) equal to the
  same layer's there, likewise.

A form whose library has no second derivative must raise that library's error, never return numbers
(``TORCHVISION``). The kernel Functions themselves are checked against finite differences (``gradgradcheck``,
``gradcheck(check_forward_ad=True)``) on geometries the layers' default shapes do not reach.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.autograd import forward_ad
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

import convzoo as cz
from convzoo.deploy import checks
from convzoo.kernels.derivatives import KernelFunction
from convzoo.layers.form_choice import offered_forms, pinned_form
from convzoo.verify import randomize_parameters_

FAMILIES = [f.name for f in cz.families() if 2 in f.dims]
FORMATS = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
# torchvision's deform_conv2d (a form of the deformable layers) has no second derivative ("double backwards on
# deform_conv2d not supported": checked) and no forward-mode rule: with requires_grad it raises, without it torch's
# custom-op autograd skips the op and the tangent is lost. Which form runs with a tangent is the layer's choice
# (layers/deformable.py), not a kernel Function's: that form is left out of the forward-mode checks.
TORCHVISION = ("DeformConv2d", "torchvision")


def _layer(name: str) -> torch.nn.Module:
    module = cz.build(name, checks.CHANNELS, checks.CHANNELS, None, 2, dtype=torch.float64)
    with torch.no_grad():
        module(checks.sample(2, dtype=torch.float64))  # materialise lazy parameters
    return randomize_parameters_(module, torch.Generator().manual_seed(3)).eval()


def _offered(module: torch.nn.Module) -> list[tuple[str, str]]:
    """(family choice, form) for every form the layer's choices are offered on float64 inputs, with a backward and
    without (inference paths: fused kernels)."""
    with offered_forms() as offered:
        for fmt in FORMATS.values():
            x = checks.sample(2, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
            module(x).sum().backward()
            with torch.no_grad():
                module(x)
    module.zero_grad(set_to_none=True)
    return [(family, form) for family, forms in offered.items() for form in forms]


def _inner(module: torch.nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(functional_call(module, params, (x,))).sum()


def _second_order_eager(module: torch.nn.Module, x: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    """[∇_θ ‖∇_x L‖² for every parameter θ..., ∇_x ⟨∇_x L, v⟩] by eager double backward, L = Σ tanh(f(x))."""
    params = dict(module.named_parameters())
    xi = x.detach().clone().requires_grad_()
    g, = torch.autograd.grad(_inner(module, params, xi), xi, create_graph=True)
    penalty = torch.autograd.grad(g.square().sum(), list(params.values()), retain_graph=True, allow_unused=True)
    hvp, = torch.autograd.grad((g * v).sum(), xi)
    return [torch.zeros_like(p) if d is None else d for p, d in zip(params.values(), penalty)] + [hvp]


class _TorchForms(TorchDispatchMode):
    """Pass-through: inside it every layer runs its deterministic PyTorch form, no kernel Function."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _kernel_calls() -> list[str]:
    """Records the kernel Functions applied inside (their class names)."""
    calls: list[str] = []
    original = KernelFunction.__dict__["apply"]

    def apply(cls, *args, **kwargs):
        calls.append(cls.__name__)
        return original.__func__(cls, *args, **kwargs)

    KernelFunction.apply = classmethod(apply)
    try:
        yield calls
    finally:
        KernelFunction.apply = original


@contextlib.contextmanager
def _torch_forms() -> None:
    with _TorchForms(), _kernel_calls() as calls:
        yield
    assert not calls, f"the reference ran convzoo's kernel Functions {calls}"


def _second_order_torch(module: torch.nn.Module, x: torch.Tensor, v: torch.Tensor) -> list[torch.Tensor]:
    """The same with every layer in its PyTorch form."""
    with _torch_forms():
        return _second_order_eager(module, x, v)


def _tangents(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return (torch.randn(x.shape, generator=g, dtype=x.dtype).contiguous(memory_format=_format(x)),
            {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in module.named_parameters()})


def _format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if not x.is_contiguous() else torch.contiguous_format


def _jvp_eager(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    t, tp = _tangents(module, x)
    with forward_ad.dual_level():
        params = {k: forward_ad.make_dual(p.detach(), tp[k]) for k, p in module.named_parameters()}
        y = functional_call(module, params, (forward_ad.make_dual(x, t),))
        tangent = forward_ad.unpack_dual(y).tangent
    assert tangent is not None, "the forward-mode tangent was dropped"
    return tangent


def _jvp_torch(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with _torch_forms():
        return _jvp_eager(module, x)


def _close(got: list[torch.Tensor], want: list[torch.Tensor], names: list[str], what: str) -> None:
    for name, a, b in zip(names, got, want):
        err = float((a - b).norm() / b.norm().clamp_min(1e-12))
        assert err < 1e-9, f"{what}: {name} off torch's by {err:.3g} (|want| = {float(b.norm()):.3g})"


def _runs(module: torch.nn.Module) -> list[tuple[str, str]]:
    return _offered(module) or [("", "")]  # a layer that chooses nothing: once, as it runs


@pytest.mark.parametrize("name", FAMILIES)
def test_double_backward_of_every_form_is_torchs(name: str) -> None:
    module = _layer(name)
    names = [k for k, _ in module.named_parameters()] + ["hvp wrt x"]
    v = torch.randn(checks.sample(2).shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    runs = _runs(module)
    for fmt_name, fmt in FORMATS.items():
        x = checks.sample(2, dtype=torch.float64).contiguous(memory_format=fmt)
        want = _second_order_torch(module, x, v)
        for family, form in runs:
            with pinned_form(family, form) if family else contextlib.nullcontext():
                if (family, form) == TORCHVISION:
                    with pytest.raises(RuntimeError, match="double backwards on deform_conv2d not supported"):
                        _second_order_eager(module, x, v)
                    continue
                got = _second_order_eager(module, x, v)
            _close(got, want, names, f"{name} {fmt_name}, {family} pinned to '{form}'")


@pytest.mark.parametrize("grad_mode", [True, False], ids=["grad", "no_grad"])
@pytest.mark.parametrize("name", FAMILIES)
def test_forward_mode_of_every_form_is_torchs(name: str, grad_mode: bool) -> None:
    """Also under no_grad, where layers take their inference paths (fused kernels, no autograd Function)."""
    module = _layer(name)
    runs = [run for run in _runs(module) if run != TORCHVISION]
    for fmt_name, fmt in FORMATS.items():
        x = checks.sample(2, dtype=torch.float64).contiguous(memory_format=fmt)
        with torch.set_grad_enabled(grad_mode):
            want = _jvp_torch(module, x)
            for family, form in runs:
                with pinned_form(family, form) if family else contextlib.nullcontext():
                    got = _jvp_eager(module, x)
                _close([got], [want], ["tangent"], f"{name} {fmt_name}, {family} pinned to '{form}'")


def _kernel_cases() -> list[tuple[str, object, tuple[torch.Tensor, ...]]]:
    """(name, f(*tensors), tensors) for every CPU kernel Function, on geometries the layers' defaults miss:
    stride 2, uneven and cropped padding, dilation, depth multiplier 2, 1-D, channels_last, masks, groups."""
    from convzoo.kernels import (
        dcnv3_cpu,
        deform_cpu,
        depthwise,
        global_depthwise,
        involution_cpu,
        separable_pair,
    )
    from convzoo.layers import fastpaths

    g = torch.Generator().manual_seed(11)

    def r(*shape: int, last: bool = False) -> torch.Tensor:
        t = torch.randn(*shape, generator=g, dtype=torch.float64)
        return (t.contiguous(memory_format=torch.channels_last) if last else t).requires_grad_()

    dw_geometry = {"stride": (2, 1), "padding_pairs": ((1, 0), (2, 1)), "dilation": (1, 2)}
    pair_geometry = (2, 1, (1, 0), 1, 2, (2, 2))  # V: s, d, pads; H: s, d, pads
    offsets = 0.7 * torch.randn(1, 2 * 9, 2, 2, generator=g, dtype=torch.float64)  # off the integer grid
    fields = torch.cat([torch.randn(1, 2, 3, 2 * 9, generator=g, dtype=torch.float64),  # one group: (Δx, Δy), m
                        torch.rand(1, 2, 3, 9, generator=g, dtype=torch.float64)], -1)
    return [
        ("depthwise m=2", lambda x, w, b: depthwise.depthwise_conv(x, w, b, **dw_geometry),
         (r(1, 2, 5, 6), r(4, 1, 2, 3), r(4))),
        ("depthwise channels_last", lambda x, w, b: depthwise.depthwise_conv(x, w, b, **dw_geometry),
         (r(1, 3, 5, 6, last=True), r(3, 1, 3, 2), r(3))),
        ("depthwise 1-D", lambda x, w, b: depthwise.depthwise_conv(x, w, b, (2,), ((2, 1),), (1,)),
         (r(2, 2, 7), r(2, 1, 3), r(2))),
        ("separable pair", lambda z, wv, bv, wh, bh: separable_pair.separable_pair(z, wv, bv, wh, bh, pair_geometry),
         (r(1, 2, 6, 5), r(2, 1, 3, 1), r(2), r(2, 1, 1, 2), r(2))),
        ("involution stride 2", lambda x, k: involution_cpu.involve(x, k, (3, 3), (2, 2), (1, 0), (1, 1)),
         (r(1, 4, 6, 5), r(1, 18, 3, 2))),
        ("involution channels_last", lambda x, k: involution_cpu.involve(x, k, (3, 3), (1, 1), (1, 1), (1, 1)),
         (r(1, 4, 4, 5, last=True), r(1, 18, 4, 5, last=True))),
        ("dcnv3", lambda v, f: dcnv3_cpu.dcnv3_sample(v, f, (3, 3), (1, 1), 0.5),
         (r(1, 2, 3, 2), fields.requires_grad_())),
        ("deformable v2", lambda x, o, m, w, b: deform_cpu.deform_conv2d(x, o, w, b, (2, 1), (1, 0), (1, 1), m),
         (r(1, 2, 4, 4), offsets.requires_grad_(), torch.rand(1, 9, 2, 2, generator=g,
          dtype=torch.float64).requires_grad_(), r(2, 2, 3, 3), r(2))),
        ("global depthwise", lambda x, w: global_depthwise.global_depthwise(x, w, None),
         (r(2, 2, 3, 4, last=True), r(4, 1, 3, 4))),
        ("GlobalDepthwiseSum", lambda *t: fastpaths.GlobalDepthwiseSum.apply(*t), (r(2, 3, 5), r(3, 2, 5), r(6))),
        ("GlobalDepthwiseSumNHWC", lambda *t: fastpaths.GlobalDepthwiseSumNHWC.apply(*t),
         (r(2, 5, 3), r(2, 5, 3), r(6))),
    ]


# the sampling Functions' finite differences take seconds each: slow (their layers' forms are checked against torch's
# derivatives above in the default run)
_SLOW_CASES = ("dcnv3", "deformable v2")


@pytest.mark.parametrize("case", [pytest.param(i, id=c[0], marks=[pytest.mark.slow] if c[0] in _SLOW_CASES else [])
                                  for i, c in enumerate(_kernel_cases())])
def test_kernel_functions_second_and_forward_derivatives_by_finite_differences(case: int) -> None:
    """Each Function's ``reference`` computes its forward, and its second derivatives (gradgradcheck) and forward-mode
    tangents (gradcheck with check_forward_ad) agree with finite differences."""
    name, fn, tensors = _kernel_cases()[case]
    with _kernel_calls() as calls:
        y = fn(*tensors)
    assert calls, f"{name}: no kernel Function ran"
    with torch.no_grad(), forward_ad.dual_level():  # the reference, through a tangent on the first input
        dual = fn(forward_ad.make_dual(tensors[0].detach(), torch.zeros_like(tensors[0])), *tensors[1:])
        torch.testing.assert_close(forward_ad.unpack_dual(dual).primal, y.detach(), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(fn, tensors, check_forward_ad=True, check_batched_grad=False)
    assert torch.autograd.gradgradcheck(fn, tensors, check_batched_grad=False)


def test_bilinear_sample_tangent_is_the_backwards_slope() -> None:
    """``bilinear_sample``'s forward-mode tangent (grid_sample has none) and second derivatives against finite
    differences off the grid, and the tangent against its own backward (one-sided slopes from the right) at integer
    positions."""
    from convzoo.kernels.bilinear_sample import bilinear_sample

    g = torch.Generator().manual_seed(2)
    images = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    py = (torch.rand(2, 4, 3, generator=g, dtype=torch.float64) * 7 - 1.5).requires_grad_()
    px = (torch.rand(2, 4, 3, generator=g, dtype=torch.float64) * 8 - 1.5).requires_grad_()
    assert torch.autograd.gradcheck(bilinear_sample, (images, py, px), check_forward_ad=True,
                                    check_batched_grad=False)
    assert torch.autograd.gradgradcheck(bilinear_sample, (images, py, px), check_batched_grad=False)
    grid_y, grid_x = torch.meshgrid(torch.arange(-1.0, 5.0, dtype=torch.float64), torch.arange(-1.0, 6.0,
                                    dtype=torch.float64), indexing="ij")
    grid_y, grid_x = grid_y.expand(2, -1, -1).contiguous(), grid_x.expand(2, -1, -1).contiguous()
    t_y, t_x = torch.randn(grid_y.shape, generator=g, dtype=torch.float64), torch.randn(grid_x.shape, generator=g,
                                                                                           dtype=torch.float64)
    with forward_ad.dual_level():
        y = bilinear_sample(images.detach(), forward_ad.make_dual(grid_y, t_y), forward_ad.make_dual(grid_x, t_x))
        tangent = forward_ad.unpack_dual(y).tangent
    cotangent = torch.randn(tangent.shape, generator=g, dtype=torch.float64)
    gy, gx = torch.autograd.grad(bilinear_sample(images.detach(), grid_y.requires_grad_(), grid_x.requires_grad_()),
                                 (grid_y, grid_x), cotangent)
    torch.testing.assert_close((tangent * cotangent).sum(), (gy * t_y).sum() + (gx * t_x).sum(), rtol=1e-12,
                               atol=1e-12)


def test_auto_deformable_leaves_torchvision_for_an_input_with_a_tangent():
    # where 'auto' had chosen torchvision's deform_conv2d (channels_last on the CPU, often), forward-mode AD gave a
    # tangent of None, silently: torchvision's op has no forward-mode rule
    import torch.autograd.forward_ad as fw

    from convzoo.layers.deformable import _CHOICE
    from convzoo.layers.form_choice import input_key

    torch.manual_seed(0)
    layer = cz.build("deformable", 4, 4).double()
    with torch.no_grad():
        layer.offset_conv.weight.normal_(0, 0.1)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    tangent = torch.randn_like(x)
    key = (layer._choice_config(), *input_key(x, True))  # a backward follows: the weights require grad
    _CHOICE.cache[key] = "torchvision"
    try:
        with fw.dual_level():
            auto = fw.unpack_dual(layer(fw.make_dual(x, tangent))).tangent
    finally:
        _CHOICE.cache.pop(key, None)
    expected = torch.func.jvp(lambda t: _torch_form(layer, t), (x,), (tangent,))[1]
    assert auto is not None and torch.allclose(auto, expected, atol=1e-10)


def _torch_form(layer, x):
    layer.implementation = "torch"
    try:
        return layer(x)
    finally:
        layer.implementation = "auto"
