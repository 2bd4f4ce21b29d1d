"""The pure-PyTorch deformable conv (convzoo.kernels.deform_torch) and DeformConv2d's implementation choice: exact
against the NumPy oracle and torchvision on both paths, NaN / ±Inf offsets and masks never crash (run in a
subprocess), autocast, channels_last, ONNX export as one DeformConv node."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import convzoo as cz
from convzoo.kernels.deform_torch import deform_conv2d

GEOMETRIES = [  # (c_in, c_out, kernel, stride, padding, dilation, groups, offset_groups, modulated, (H, W))
    (4, 6, 3, 1, 1, 1, 1, 1, False, (9, 8)),
    (8, 6, 3, 2, 2, 2, 2, 4, True, (11, 9)),
    (6, 6, (3, 2), (1, 2), (1, 0), (2, 1), 3, 2, True, (7, 7)),
    (4, 4, 1, 1, 0, 1, 4, 2, False, (5, 6)),
]


def _layer(geometry, implementation: str) -> tuple[cz.DeformConv2d, torch.Tensor]:
    cin, cout, k, s, p, d, g, og, modulated, size = geometry
    torch.manual_seed(0)
    layer = cz.DeformConv2d(cin, cout, k, s, p, d, g, offset_groups=og, modulated=modulated).double()
    with torch.no_grad():
        for param in layer.offset_conv.parameters():
            param.normal_(0, 0.5)  # fractional, partly out-of-image offsets
    layer.implementation = implementation
    return layer, torch.randn(2, cin, *size, dtype=torch.float64)


@pytest.mark.parametrize("implementation", ["torch", "torchvision", "kernel"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_exact_against_the_oracle(geometry, implementation):
    layer, x = _layer(geometry, implementation)
    expected = layer.reference_output(x.numpy())
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=0, atol=1e-10)
    y32 = layer.float()(x.float()).detach().numpy()
    assert np.abs(y32 - expected).max() / np.abs(expected).max() < 1e-5


@pytest.mark.parametrize("geometry", GEOMETRIES[:2], ids=str)
def test_gradients_match_torchvision(geometry):
    layer, x = _layer(geometry, "torch")
    grads = {}
    for implementation in ("torch", "torchvision"):
        layer.implementation = implementation
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        layer(xi).square().sum().backward()
        grads[implementation] = [xi.grad] + [p.grad.clone() for p in layer.parameters()]
    for a, b in zip(grads["torch"], grads["torchvision"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_gradcheck_pure_op():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    offset = (torch.randn(1, 2 * 2 * 9, 5, 5, dtype=torch.float64) * 1.3).requires_grad_()
    mask = torch.rand(1, 2 * 9, 5, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: deform_conv2d(*a[:4], 1, 1, 1, a[4]), (x, offset, weight, bias, mask))


def test_channels_last_is_kept_and_auto_is_exact():
    layer, x = _layer(GEOMETRIES[0], "auto")
    layer = layer.float()
    x = x.float()
    expected = layer.reference_output(x.numpy())
    y = layer(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(y.detach().numpy() - expected).max() / np.abs(expected).max() < 1e-5
    assert layer(x).is_contiguous()


@pytest.mark.parametrize("modulated", [False, True])
def test_autocast_bfloat16_runs(modulated):
    layer = cz.DeformConv2d(4, 6, 3, padding=1, modulated=modulated)
    x = torch.randn(2, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
    torch.testing.assert_close(y.float(), layer(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("modulated", [False, True])
def test_bfloat16_layer_chooses_only_forms_that_run_in_it(modulated):
    """A bfloat16 layer (no autocast): 'auto' does not offer torchvision's op, which has no bfloat16 kernel."""
    layer = cz.DeformConv2d(4, 6, 3, padding=1, modulated=modulated)
    with torch.no_grad():
        layer.offset_conv.weight.normal_(0, 0.1)  # off the grid: bilinear weights in play
    x = torch.randn(2, 4, 8, 8)
    expected = layer.reference_output(x.double().numpy())
    y = layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    np.testing.assert_allclose(y.float().detach().numpy(), expected, rtol=0.05, atol=0.1)


def test_torch_compile_pure_op():
    layer, x = _layer(GEOMETRIES[0], "auto")
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), layer(x))


NAN_SCRIPT = textwrap.dedent("""
    import math, sys, torch
    import convzoo as cz
    from convzoo.kernels.deform_torch import deform_conv2d
    path, device = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    torch.set_default_device(device)
    for modulated in (False, True):
        layer = cz.DeformConv2d(4, 4, 3, padding=1, modulated=modulated)
        layer.implementation = path
        x = torch.randn(2, 4, 10, 10)
        # a NaN input through the offset conv: every offset NaN
        y = layer(torch.full((2, 4, 10, 10), float('nan')))
        assert y.isnan().all(), path
        for value in (float('nan'), float('inf'), -float('inf')):
            for where in ('all', 'some'):
                offset = torch.randn(2, 18, 10, 10)
                mask = torch.rand(2, 9, 10, 10) if modulated else None
                bad = torch.zeros(2, 1, 10, 10, dtype=torch.bool)
                if where == 'all':
                    offset.fill_(value); bad[:] = True
                else:
                    offset[0, 3, 2, 5] = value; bad[0, 0, 2, 5] = True
                y = layer(x, offset, mask)
                assert y[bad.expand_as(y)].isnan().all(), (path, value, where)
                assert not y[~bad.expand_as(y)].isnan().any(), (path, value, where)
                if modulated:
                    mask2 = torch.rand(2, 9, 10, 10)
                    mask2[1, 4, 7, 1] = value
                    y = layer(x, torch.randn(2, 18, 10, 10), mask2)
                    assert y[1, :, 7, 1].isnan().all() and not y[0].isnan().any(), (path, value)
    # the op itself, large finite offsets too
    y = deform_conv2d(torch.randn(1, 2, 6, 6), torch.full((1, 18, 6, 6), 1e30), torch.randn(3, 2, 3, 3), None, 1, 1)
    assert torch.isfinite(y).all()
    print('ok', path, device)
""")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("path", ["torch", "torchvision", "auto", "kernel"])
def test_non_finite_offsets_and_masks_never_crash(path, device):
    if path == "kernel" and device != "cpu":
        pytest.skip("convzoo's deformable kernel is a CPU kernel")
    done = subprocess.run([sys.executable, "-c", NAN_SCRIPT, path, device], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"ok {path} {device}" in done.stdout


@pytest.mark.parametrize("modulated", [False, True])
def test_onnx_export_one_deformconv_node_dynamic_batch(tmp_path, modulated):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    layer = cz.DeformConv2d(4, 6, 3, padding=1, modulated=modulated).eval()
    layer.implementation = "torch"  # the fast path still exports through torchvision's op
    with torch.no_grad():
        for param in layer.offset_conv.parameters():
            param.normal_(0, 0.5)
    path = tmp_path / "deform.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(layer, (torch.randn(2, 4, 9, 9),), str(path), dynamo=True, opset_version=19,
                      dynamic_shapes=({0: batch},))
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("DeformConv") == 1, ops
    session = ort.InferenceSession(str(path))
    name = session.get_inputs()[0].name
    for n in (1, 3, 7):
        x = torch.randn(n, 4, 9, 9)
        (y,) = session.run(None, {name: x.numpy()})
        np.testing.assert_allclose(y, layer(x).detach().numpy(), rtol=0, atol=1e-5)


FRESH_EXPORT = textwrap.dedent("""
    import sys, onnx, torch, convzoo
    layer = convzoo.DeformConv2d(4, 6, 3, padding=1).eval()
    layer.implementation = "torch"
    torch.onnx.export(layer, (torch.randn(2, 4, 9, 9),), sys.argv[1], dynamo=True, opset_version=19)
    print([node.op_type for node in onnx.load(sys.argv[1]).graph.node].count("DeformConv"))
""")


def test_onnx_export_in_a_fresh_process_finds_torchvision_s_deformconv(tmp_path):
    """torch's exporter builds its table of ONNX functions before it runs the model and leaves out torchvision's
    ops when they are not loaded yet: a process whose first deformable call was the export failed to convert
    ("No ONNX function found for torchvision.deform_conv2d"). The test above passed only after earlier tests had
    loaded them; here the export is the process's first use."""
    pytest.importorskip("onnx")
    done = subprocess.run([sys.executable, "-c", FRESH_EXPORT, str(tmp_path / "d.onnx")], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "1", done.stdout[-2000:]


def test_the_kernels_workspace_made_under_inference_mode_serves_later_calls_outside_it():
    # the per-thread scratch space is kept from call to call: made under inference_mode it was an inference
    # tensor, and every later deformable call outside inference_mode (any layer, any size up to it) failed
    from convzoo.kernels import deform_cpu

    deform_cpu._LOCAL.__dict__.clear()  # this thread's workspaces: made afresh by the next call
    # the kernel form pinned: 'auto' may measure another form faster on a busy machine
    layer = cz.build("deformable_v2", 8, 8, 3).eval()
    layer.implementation = "kernel"
    x = torch.randn(1, 8, 12, 12)
    with torch.inference_mode():
        served = layer(x)
    assert deform_cpu._LOCAL.spaces, "the call ran another form: the workspace was not made here"
    with torch.no_grad():
        torch.testing.assert_close(layer(x), served.clone())
    other = cz.build("deformable", 8, 8, 3)
    other.implementation = "kernel"
    other(torch.randn(2, 8, 10, 10, requires_grad=True)).sum().backward()
