"""float16 / bfloat16 models of the sampling families (deformable v1/v2, DCNv3): the sampling positions p + Δp
(past 32 on a 56-pixel map) and the bilinear weights are computed in float32, so a ``.half()`` / ``.bfloat16()``
layer loses to rounding what a plain conv loses, not 5–30× more (bfloat16 holds 56 to 0.25 pixel).

Independent references: the NumPy oracle's bilinear sample, torchvision's ``deform_conv2d`` in float32 on the same
rounded values, and the float32 layer. The yardstick is a plain conv's error in the same dtype on the same data."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo.kernels.bilinear_sample import bilinear_sample
from convzoo.oracle.reference import bilinear_sample as oracle_sample

S, C = 56, 8  # a ResNet stage-2 map: positions up to 57
HALF = [torch.float16, torch.bfloat16]
EPS = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}  # one ulp at 1


def rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.detach().double(), expected.detach().double()
    return float((a - e).norm() / e.norm())


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _plain_conv_errors(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> tuple[float, float]:
    """A 3×3 conv in x's (half) dtype against float32 on the same rounded values: (output, input gradient) errors."""
    x32 = x.float().requires_grad_()
    y32 = F.conv2d(x32, w.float(), b.float(), padding=1)
    g32, = torch.autograd.grad((y32 * r.float()).sum(), x32)
    xl = x.clone().requires_grad_()
    y = F.conv2d(xl, w, b, padding=1)
    g, = torch.autograd.grad((y * r).sum(), xl)
    return rel(y, y32), rel(g, g32)


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_bilinear_sample_of_half_images_at_positions_past_32_is_the_oracle_rounded_once(dtype: torch.dtype) -> None:
    """Half images read at fractional float32 positions up to 57: the oracle's value on the same rounded image, to
    one rounding of the result (grid_sample in the images' dtype was off by up to 0.11 pixel in bfloat16)."""
    g = _gen()
    images = torch.randn(1, 3, S + 2, S + 2, generator=g).to(dtype).requires_grad_()
    py = (torch.rand(1, 4, 30, generator=g) * (S + 1)).requires_grad_()
    px = (torch.rand(1, 4, 30, generator=g) * (S + 1)).requires_grad_()
    out = bilinear_sample(images, py, px)
    assert out.dtype == dtype
    image = images.detach()[0].double().numpy()
    expected = np.stack([oracle_sample(image, y, x) for y, x in zip(py.detach().double().numpy().ravel(),
                                                                   px.detach().double().numpy().ravel())], axis=1)
    got = out.detach()[0].double().numpy().reshape(3, -1)
    np.testing.assert_allclose(got, expected, rtol=EPS[dtype], atol=EPS[dtype] * 1e-2)
    # gradients: those of the float32 sample of the same rounded image (itself checked against the oracle's finite
    # differences in test_bilinear_sample.py), to the rounding of the incoming gradient and the image's
    r = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * r.to(dtype)).sum(), (images, py, px))
    ref_images = images.detach().float().requires_grad_()
    ref_py, ref_px = py.detach().clone().requires_grad_(), px.detach().clone().requires_grad_()
    expected_grads = torch.autograd.grad((bilinear_sample(ref_images, ref_py, ref_px) * r.to(dtype).float()).sum(),
                                         (ref_images, ref_py, ref_px))
    assert grads[0].dtype == dtype and grads[1].dtype == torch.float32
    for name, got_grad, want in zip(("images", "py", "px"), grads, expected_grads):
        assert rel(got_grad, want) < 2 * EPS[dtype], f"{dtype} d/d{name}: relative error {rel(got_grad, want):.3g}"


@pytest.mark.parametrize("modulated", [False, True], ids=["v1", "v2"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_deformable_conv_is_torchvisions_float32_on_the_same_rounded_values(dtype: torch.dtype,
                                                                                modulated: bool) -> None:
    """Given half input, offsets (|Δp| ~ 3 px), masks and weights, every form that runs the dtype (the pure op;
    for float16 torchvision's too) gives torchvision's float32 ``deform_conv2d`` on the same values, forward and
    the gradients of the input, offsets and masks, within 2× of a plain conv's error in that dtype."""
    from torchvision.ops import deform_conv2d

    g = _gen(1)
    x, w = torch.randn(1, C, S, S, generator=g).to(dtype), (torch.randn(C, C, 3, 3, generator=g) / 8).to(dtype)
    b = torch.randn(C, generator=g).to(dtype)
    offset, mask = (3 * torch.randn(1, 18, S, S, generator=g)).to(dtype), torch.rand(1, 9, S, S, generator=g).to(dtype)
    r = torch.randn(1, C, S, S, generator=g).to(dtype)
    plain_y, plain_dx = _plain_conv_errors(x, w, b, r)
    ref = [t.float().requires_grad_() for t in (x, offset, mask)]
    wrt = 3 if modulated else 2
    y32 = deform_conv2d(ref[0], ref[1], w.float(), b.float(), padding=1, mask=ref[2] if modulated else None)
    expected = torch.autograd.grad((y32 * r.float()).sum(), ref[:wrt])
    layer = cz.DeformConv2d(C, C, 3, padding=1, modulated=modulated).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(b)
    for form in ["torch", *(["torchvision"] if dtype == torch.float16 else [])]:
        layer.implementation = form
        ins = [t.clone().requires_grad_() for t in (x, offset, mask)]
        y = layer(ins[0], ins[1], ins[2] if modulated else None)
        assert y.dtype == dtype
        err = rel(y, y32)
        assert err < 2 * plain_y, f"{form} {dtype}: output error {err:.3g} vs a plain conv's {plain_y:.3g}"
        grads = torch.autograd.grad((y * r).sum(), ins[:wrt])
        for name, got, want in zip(("input", "offset", "mask"), grads, expected):
            assert got.dtype == dtype
            err = rel(got, want)
            assert err < 2 * plain_dx, f"{form} {dtype}: d/d{name} error {err:.3g} vs a plain conv's {plain_dx:.3g}"


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_half_dcnv3_sampling_is_the_float32_sampling_of_the_same_rounded_values(dtype: torch.dtype) -> None:
    """DCNv3's sampling stage on half projected values and fields (offsets ~2 px, softmax masks) gives the float32
    stage's result on the same values (the float32 stage is checked against the NumPy oracle in test_dcnv3.py),
    forward and gradients, within 2× of a plain conv's error in that dtype."""
    g = _gen(2)
    layer = cz.build("dcnv3", C, C, 3)
    projected = torch.randn(1, C, S, S, generator=g).to(dtype)
    masks = torch.softmax(torch.randn(1, 2, 9, S, S, generator=g), dim=2).reshape(1, 18, S, S)
    fields = torch.cat([2 * torch.randn(1, 36, S, S, generator=g), masks], dim=1).to(dtype)
    r = torch.randn(1, C, S, S, generator=g).to(dtype)
    plain_y, plain_dx = _plain_conv_errors(projected, (torch.randn(C, C, 3, 3, generator=g) / 8).to(dtype),
                                           torch.zeros(C, dtype=dtype), r)
    ref = [projected.float().requires_grad_(), fields.float().requires_grad_()]
    y32 = layer.sample_points(*ref, "grid_sample")
    expected = torch.autograd.grad((y32 * r.float()).sum(), ref)
    low = copy.deepcopy(layer).to(dtype)
    ins = [projected.clone().requires_grad_(), fields.clone().requires_grad_()]
    y = low.sample_points(*ins, "grid_sample")
    assert y.dtype == dtype
    assert rel(y, y32) < 2 * plain_y, f"{dtype}: output error {rel(y, y32):.3g} vs a plain conv's {plain_y:.3g}"
    for name, got, want in zip(("projected", "fields"), torch.autograd.grad((y * r).sum(), ins), expected):
        assert got.dtype == dtype
        assert rel(got, want) < 2 * plain_dx, f"{dtype}: d/d{name} error {rel(got, want):.3g} vs {plain_dx:.3g}"


def _layer(name: str) -> torch.nn.Module:
    """A float32 C→C 3×3 layer of ``name`` with every parameter moved by seeded noise (offsets up to ~7 px)."""
    torch.manual_seed(0)
    layer = cz.build(name, C, C, 3)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return layer.eval()


def _rounding_errors(layer: torch.nn.Module, dtype: torch.dtype, x: torch.Tensor, r: torch.Tensor,
                     expected: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """The float32 layer with its parameters and input rounded to ``dtype``: (output, input gradient) errors
    against the float32 layer — what rounding alone costs (a plain conv in ``dtype`` loses 1.2× this)."""
    rounded = copy.deepcopy(layer).to(dtype).float()
    xr = x.to(dtype).float().requires_grad_()
    y = rounded(xr)
    gx, = torch.autograd.grad((y * r).sum(), xr)
    return rel(y, expected[0]), rel(gx, expected[1])


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["deformable", "deformable_v2", "dcnv3"])
def test_half_layer_loses_what_rounding_costs(name: str, dtype: torch.dtype) -> None:
    """``layer.to(dtype)`` on a 56×56 input: output and input gradient within 2× of the float32 layer's error on
    the rounded input and parameters (positions in the layer's dtype made it 20–30× in the output)."""
    layer = _layer(name)
    g = _gen(3)
    x, r = torch.randn(1, C, S, S, generator=g), torch.randn(1, C, S, S, generator=g)
    x32 = x.clone().requires_grad_()
    y32 = layer(x32)
    expected = (y32, torch.autograd.grad((y32 * r).sum(), x32)[0])
    base_y, base_dx = _rounding_errors(layer, dtype, x, r, expected)
    low = copy.deepcopy(layer).to(dtype)
    xl = x.to(dtype).requires_grad_()
    y = low(xl)
    gx, = torch.autograd.grad((y * r.to(dtype)).sum(), xl)
    assert y.dtype == dtype and gx.dtype == dtype
    assert rel(y, y32) < 2 * base_y, f"{name} {dtype}: output error {rel(y, y32):.3g} vs rounding's {base_y:.3g}"
    assert rel(gx, expected[1]) < 2 * base_dx, \
        f"{name} {dtype}: input gradient error {rel(gx, expected[1]):.3g} vs rounding's {base_dx:.3g}"


@pytest.mark.parametrize("name", ["deformable_v2", "dcnv3"])
def test_half_layer_graphs_keep_float32_positions(name: str) -> None:
    """The graphs of a bfloat16 layer (torch.export, torch.compile with inductor) and the ONNX files of a float16
    one (both exporters, run by onnxruntime) give the eager layer's precision: within 2× of rounding's error.
    (bfloat16 ONNX files are refused by onnxruntime for any conv: ONNX's Conv has no bfloat16.)"""
    import onnxruntime as ort

    layer = _layer(name)
    x = torch.randn(1, C, S, S, generator=_gen(4))
    with torch.no_grad():
        y32 = layer(x)
        for dtype in HALF:
            rounded = copy.deepcopy(layer).to(dtype).float()(x.to(dtype).float())
            bound = 2 * rel(rounded, y32)
            low, xl = copy.deepcopy(layer).to(dtype), x.to(dtype)
            if dtype == torch.bfloat16:
                exported = torch.export.export(low, (xl,)).module()(xl)
                assert rel(exported, y32) < bound, f"{name} exported: {rel(exported, y32):.3g} vs {bound / 2:.3g}"
                torch._dynamo.reset()
                compiled = torch.compile(low, fullgraph=True)(xl)
                assert compiled.dtype == dtype
                assert rel(compiled, y32) < bound, f"{name} compiled: {rel(compiled, y32):.3g} vs {bound / 2:.3g}"
                continue
            for dynamo in (True, False):
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "m.onnx"
                    torch.onnx.export(low, (xl,), str(path), dynamo=dynamo, opset_version=19, external_data=False,
                                      verbose=False)
                    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                    got = session.run(None, {session.get_inputs()[0].name: xl.numpy()})[0]
                assert got.dtype == np.float16
                err = rel(torch.from_numpy(got), y32)
                assert err < bound, f"{name} ONNX (dynamo={dynamo}) float16: {err:.3g} vs rounding's {bound / 2:.3g}"
