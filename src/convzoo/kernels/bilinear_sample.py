"""Bilinear sampling at pixel positions by ``grid_sample``, with the positions' derivative taken from the right.

v(py, px) = Σ over the four neighbours of (⌊py⌋, ⌊px⌋) of their bilinear weights × the image (zeros outside), the
convention of ``kernels/bilinear.py``. At an integer coordinate v has a kink: torchvision's ``deform_conv2d`` and
convzoo's kernels give its derivative from the right (⌊p⌋ = p: ∂v/∂px = (1−ly)(I[y0, x0+1] − I[y0, x0]) +
ly(I[y0+1, x0+1] − I[y0+1, x0])). ``grid_sample`` reads pixel coordinates through a normalised round trip,
((2p + 1)/W − 1 + 1)·W/2 − 1/2, that lands an integer p a rounding error on either side, so its grid gradient there
is the left or the right one point by point — and every point is on an integer at a deformable layer's start
(zero offsets). Here the forward is ``grid_sample`` itself (one op that compilers, exporters and the int8 float
policy see) and the backward gives the input's gradient by ``grid_sampler_2d_backward`` at the points and the
positions' by the same op at points half a pixel past the floor, where no rounding moves the cell.

float16 / bfloat16 images are read in float32 (``grid_sample`` would hold the grid, the pixel positions it
unnormalises and the bilinear weights in the images' dtype: bfloat16 steps by 0.25 pixel at 56, which made a
56×56 deformable layer 18 % off), and the values come back in the images' dtype; the backward likewise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import forward_ad

_OUTSIDE = 3.0  # a normalised coordinate beyond the image: |g| = 3 is ≥ 1.5 pixels outside at any size


_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the sampling runs in for images of ``dtype``: float32 for float16 / bfloat16, else ``dtype``."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _grid(py: torch.Tensor, px: torch.Tensor, h: int, w: int, sanitize: bool) -> torch.Tensor:
    """``grid_sample``'s grid (align_corners=False: pixel i at (2i + 1)/size − 1) for pixel positions, in at least
    float32; with ``sanitize`` non-finite or far-away points become ±3 (≥ 1.5 pixels outside: zero). The bounds
    are constants, not functions of (h, w), so torch.export keeps the sizes symbolic."""
    if py.dtype in _LOW_PRECISION or px.dtype in _LOW_PRECISION:  # positions beyond 32 are not exact in float16
        py, px = py.float(), px.float()
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
    if sanitize:
        grid = grid.nan_to_num(-_OUTSIDE, _OUTSIDE, -_OUTSIDE).clamp(-_OUTSIDE, _OUTSIDE)
    return grid


class _BilinearSample(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(images: torch.Tensor, py: torch.Tensor, px: torch.Tensor, sanitize: bool) -> torch.Tensor:
        h, w = images.shape[2:]
        grid = _grid(py, px, h, w, sanitize)
        if images.dtype not in _LOW_PRECISION:  # float32 / float64: no cast beyond the grid's
            return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="zeros",
                                 align_corners=False)
        # half images are read in float32: positions, unnormalised positions and bilinear weights in float32
        out = F.grid_sample(images.float(), grid.float(), mode="bilinear", padding_mode="zeros", align_corners=False)
        if torch._C._is_any_autocast_enabled() and images.device.type in ("cpu", "cuda") \
                and torch.is_autocast_enabled(images.device.type):
            return out  # autocast's grid_sample gives float32: so does this one
        return out.to(images.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        images, py, px, ctx.sanitize = inputs
        ctx.save_for_backward(images, py, px)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        stored, py, px = ctx.saved_tensors
        # the forward's precision: float32 for half images (and under autocast), else the images' own
        compute = torch.promote_types(_compute_dtype(stored.dtype), _compute_dtype(grad.dtype))
        images, grad = stored.to(compute), grad.to(compute)
        h, w = images.shape[2:]
        grad_images = grad_py = grad_px = None
        if ctx.needs_input_grad[0]:
            grid = _grid(py, px, h, w, ctx.sanitize).to(images.dtype)
            grad_images = torch.ops.aten.grid_sampler_2d_backward(grad, images, grid, 0, 0, False, [True, False])[0]
            grad_images = grad_images.to(stored.dtype)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # ∂v/∂px is linear in ly, so continuous in py: grid_sample's own x-slope taken at (py, ⌊px⌋ + ½), a point
            # whose floor no rounding can move, is the slope from the right; likewise ∂v/∂py at (⌊py⌋ + ½, px).
            # Non-finite points go far outside (sanitised): no slope. d/dp = d/dgrid · 2/size.
            half_x = _grid(py, torch.floor(px) + 0.5, h, w, True).to(images.dtype)
            half_y = _grid(torch.floor(py) + 0.5, px, h, w, True).to(images.dtype)
            slope_x = torch.ops.aten.grid_sampler_2d_backward(grad, images, half_x, 0, 0, False, [False, True])[1]
            slope_y = torch.ops.aten.grid_sampler_2d_backward(grad, images, half_y, 0, 0, False, [False, True])[1]
            grad_px = (slope_x[..., 0] * (2 / w)).to(px.dtype)
            grad_py = (slope_y[..., 1] * (2 / h)).to(py.dtype)
        return grad_images, grad_py, grad_px, None


class _DualBilinearSample(_BilinearSample):
    """``_BilinearSample`` with a forward-mode rule, for calls inside a dual level (a Function with ``jvp`` is one
    that torch.compile cannot trace: the compiled and plain calls take the class above)."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        _BilinearSample.setup_context(ctx, inputs, output)
        ctx.save_for_forward(*inputs[:3])
        ctx.out_dtype = output.dtype

    @staticmethod
    def jvp(ctx: Any, t_images: torch.Tensor | None, t_py: torch.Tensor | None, t_px: torch.Tensor | None,
            _: None) -> torch.Tensor:
        """v̇ = v(İ; p) + ∂v/∂py·ṗy + ∂v/∂px·ṗx, the slopes from the right as the backward's: v is linear in px
        over [⌊px⌋, ⌊px⌋ + 1], so ∂v/∂px = v(py, ⌊px⌋ + 1) − v(py, ⌊px⌋) (likewise in py), read by the forward."""
        images, py, px = ctx.saved_tensors
        read = _BilinearSample.forward
        parts = []
        if t_images is not None:
            parts.append(read(t_images, py, px, ctx.sanitize))
        if t_px is not None:
            x0 = torch.floor(px)
            parts.append((read(images, py, x0 + 1, True) - read(images, py, x0, True)) * t_px.unsqueeze(1))
        if t_py is not None:
            y0 = torch.floor(py)
            parts.append((read(images, y0 + 1, px, True) - read(images, y0, px, True)) * t_py.unsqueeze(1))
        if not parts:
            return images.new_zeros((images.shape[0], images.shape[1], *py.shape[1:]), dtype=ctx.out_dtype)
        return sum(parts[1:], parts[0]).to(ctx.out_dtype)


def bilinear_sample(images: torch.Tensor, py: torch.Tensor, px: torch.Tensor, sanitize: bool = True) -> torch.Tensor:
    """images (B, C, H, W) read at pixel positions (py, px), each (B, Ho, Wo): (B, C, Ho, Wo), zeros outside.
    ``sanitize``: non-finite or far-away positions read zero (else they reach ``grid_sample`` as they are). Without
    a positions' gradient to take, and under jit.trace (which would record the autograd Function as a Python op),
    ``grid_sample`` alone: the same forward. Inside a forward-mode dual level the Function with a tangent rule
    (``grid_sample`` has none)."""
    if forward_ad._current_level >= 0 and not torch.jit.is_tracing():
        return _DualBilinearSample.apply(images, py, px, sanitize)
    if torch.is_grad_enabled() and (py.requires_grad or px.requires_grad) and not torch.jit.is_tracing():
        return _BilinearSample.apply(images, py, px, sanitize)
    return _BilinearSample.forward(images, py, px, sanitize)
