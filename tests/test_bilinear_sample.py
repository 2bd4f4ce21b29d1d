"""``kernels/bilinear_sample.py``: grid_sample's values with the positions' derivative from the right at integer
positions (torchvision's and convzoo's kernels' convention), where every deformable layer starts (zero offsets).
Checked against the NumPy oracle's bilinear sample: values, and one-sided finite differences (exact: the sample is
linear in each coordinate between integers)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import convzoo as cz
from convzoo.kernels.bilinear_sample import bilinear_sample
from convzoo.oracle.reference import bilinear_sample as oracle_sample

H, W = 7, 11  # sizes whose float32 round trip through grid_sample's normalised coordinates is inexact
# integers inside, on the borders (-1, H-1, H), beyond them, and fractions
ROWS = [-2.0, -1.0, -0.5, 0.0, 1.0, 1.25, 2.0, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 6.0]
COLS = [-1.0, 0.0, 0.75, 2.0, 4.0, 5.0, 2.5, 3.0, 1.0, -1.5, 7.0, 9.0, 3.0, 10.0]


def _oracle_loss(image: np.ndarray, r: np.ndarray, py: np.ndarray, px: np.ndarray) -> float:
    return float(sum(r[:, i] @ oracle_sample(image, py[i], px[i]) for i in range(len(py))))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_and_right_sided_position_derivatives_match_the_oracle(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(1, 3, H, W, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    py = torch.tensor(ROWS, dtype=dtype).reshape(1, 1, -1).requires_grad_()
    px = torch.tensor(COLS, dtype=dtype).reshape(1, 1, -1).requires_grad_()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    out = bilinear_sample(images, py, px)  # (1, 3, 1, 10)
    image, rows, cols = images.detach()[0].double().numpy(), np.array(ROWS), np.array(COLS)
    expected = np.stack([oracle_sample(image, y, x) for y, x in zip(rows, cols)], axis=1)
    np.testing.assert_allclose(out.detach()[0, :, 0].numpy(), expected, atol=tol)
    r = torch.randn(out.shape, generator=g, dtype=torch.float64).to(dtype)
    grad_images, grad_py, grad_px = torch.autograd.grad((out * r).sum(), (images, py, px))
    rr, eps = r[0, :, 0].double().numpy(), 1e-7
    base = _oracle_loss(image, rr, rows, cols)
    for i in range(len(rows)):
        step = np.eye(len(rows))[i] * eps
        dy = (_oracle_loss(image, rr, rows + step, cols) - base) / eps
        dx = (_oracle_loss(image, rr, rows, cols + step) - base) / eps
        assert grad_py[0, 0, i].item() == pytest.approx(dy, abs=1e-5), (rows[i], cols[i])
        assert grad_px[0, 0, i].item() == pytest.approx(dx, abs=1e-5), (rows[i], cols[i])
    # the image's gradient: Σ over points of r times each neighbour's bilinear weight (the oracle is linear in it)
    expected_images = np.zeros_like(image)
    for y in range(H):
        for x in range(W):
            unit = np.zeros((1, H, W))
            unit[0, y, x] = 1.0
            expected_images[:, y, x] = [_oracle_loss(unit, rr[c:c + 1], rows, cols) for c in range(3)]
    np.testing.assert_allclose(grad_images[0].double().numpy(), expected_images, atol=tol)


@pytest.mark.parametrize("name", ["deformable", "deformable_v2", "dcnv3"])
def test_every_form_gives_the_same_gradients_at_the_start(name: str) -> None:
    """As built the offsets are zero: every point on an integer. Each exact form (the PyTorch op, torchvision's,
    convzoo's kernel) and torch.compile give the offset predictor the same gradients."""
    layer = cz.build(name, 4, 4, dtype=torch.float64)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = {}
    forms = {"deformable": ["torch", "torchvision", "kernel"], "deformable_v2": ["torch", "torchvision", "kernel"],
             "dcnv3": ["grid_sample", "kernel"]}[name]
    for form in forms:
        model = copy.deepcopy(layer)
        model.implementation = form
        model(x).square().sum().backward()
        grads[form] = {k: p.grad.clone() for k, p in model.named_parameters()}
    model = copy.deepcopy(layer)
    torch.compile(model, backend="aot_eager", fullgraph=True)(x).square().sum().backward()
    grads["compiled"] = {k: p.grad.clone() for k, p in model.named_parameters()}
    first = grads[forms[0]]
    for form, got in grads.items():
        for key, value in got.items():
            torch.testing.assert_close(value, first[key], rtol=1e-9, atol=1e-9, msg=f"{name} {form}: d/d{key}")
