"""DCNv3's core (InternImage, Wang et al. 2023, Eq. 4 without the projections) as Triton kernels: every group's K
points read bilinearly and summed with their softmax masks, one pass over the output (no ``grid_sample`` per point,
no (N, C, H, W, K) sample tensor).

    y[n, c, p] = Σ_k m_gk(p) · v_c(p + s_o·(p_k + Δp_gk(p)))       (g = c's group, v_c read bilinearly, zero outside)

with p_k = ((v − (kw−1)/2)·d_w, (u − (kh−1)/2)·d_h) for point k = (u, v) row-major, fields (N, 3·G·K, H, W) as the
layer's branch gives them: (Δx, Δy) for each (group, point), then the G·K masks. Forward: one program per (position
tile, sample, group × channel tile). Backward: one program per (position tile, sample, group): the mask and offset
gradients reduced over the group's channels in registers; the input gradient scattered to the four neighbours with
atomics (fp32 / fp64 buffer; not bitwise deterministic). A non-finite offset or mask gives NaN outputs and no
gradient. Any strides (NCHW and NHWC data, fields in any layout), output in v's memory format.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import derivatives
from .triton_autograd import define_op, no_grad_tensor
from .triton_bilinear import corners, gather, scatter
from .triton_runtime import accumulator_dtype, block, cdiv, empty_like_format, kernel_types, launch

Tensor = torch.Tensor


@triton.jit
def _point(f_p, sfc, field, MASKS, oh, ow, p_ok, u: tl.constexpr, v: tl.constexpr, KH: tl.constexpr,
           KW: tl.constexpr, DH, DW, SCALE: tl.constexpr, ACC: tl.constexpr):
    """Sample point and mask of (group, point) ``field`` at positions (oh, ow): (py, px, m) in ``ACC``."""
    dx = tl.load(f_p + 2 * field * sfc, mask=p_ok, other=0.0).to(ACC)
    dy = tl.load(f_p + (2 * field + 1) * sfc, mask=p_ok, other=0.0).to(ACC)
    m = tl.load(f_p + (MASKS + field) * sfc, mask=p_ok, other=0.0).to(ACC)
    py = oh.to(ACC) + SCALE * ((2 * u - (KH - 1)) * 0.5 * DH + dy)
    px = ow.to(ACC) + SCALE * ((2 * v - (KW - 1)) * 0.5 * DW + dx)
    return tl.where(p_ok, py, -2.0), px, m


@triton.jit
def _forward_kernel(x_ptr, f_ptr, y_ptr, H, W, CPG, G, C_BLOCKS,
                    sxn, sxc, sxh, sxw, sfn, sfc, sfh, sfw, syn, syc, syh, syw, DH, DW,
                    KH: tl.constexpr, KW: tl.constexpr, SCALE: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.program_id(1).to(tl.int64)
    group = tl.program_id(2) // C_BLOCKS
    c = (tl.program_id(2) % C_BLOCKS) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = p < H * W
    c_ok = (c < CPG)[None, :]
    oh = p // W
    ow = p % W
    f_p = f_ptr + n * sfn + oh * sfh + ow * sfw
    channel = x_ptr + n * sxn + (group * CPG + c)[None, :] * sxc
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    for u in tl.static_range(KH):
        for v in tl.static_range(KW):
            field = group * (KH * KW) + u * KW + v
            py, px, m = _point(f_p, sfc, field, 2 * G * KH * KW, oh, ow, p_ok, u, v, KH, KW, DH, DW, SCALE, ACC)
            y0, x0, ly, lx, ok00, ok01, ok10, ok11, finite = corners(py, px, H, W)
            x00, x01, x10, x11 = gather(channel, y0, x0, sxh, sxw, ok00, ok01, ok10, ok11, c_ok, ACC)
            m = tl.where(finite, m, float("nan"))[:, None]
            hy = (1 - ly)[:, None]
            hx = (1 - lx)[:, None]
            acc += m * (hy * (hx * x00 + lx[:, None] * x01) + ly[:, None] * (hx * x10 + lx[:, None] * x11))
    y = y_ptr + n * syn + (group * CPG + c)[None, :] * syc + (oh * syh + ow * syw)[:, None]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok)


@triton.jit
def _backward_kernel(x_ptr, f_ptr, g_ptr, gx_ptr, gf_ptr, H, W, CPG, G,
                     sxn, sxc, sxh, sxw, sfn, sfc, sfh, sfw, sgn, sgc, sgh, sgw, sbn, sbc, sbh, sbw,
                     sqn, sqc, sqh, sqw, DH, DW,
                     KH: tl.constexpr, KW: tl.constexpr, SCALE: tl.constexpr, NEED_X: tl.constexpr,
                     NEED_FIELDS: tl.constexpr, ACC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.program_id(1).to(tl.int64)
    group = tl.program_id(2)
    p_ok = p < H * W
    oh = p // W
    ow = p % W
    f_p = f_ptr + n * sfn + oh * sfh + ow * sfw
    g_p = g_ptr + n * sgn + group * CPG * sgc + (oh * sgh + ow * sgw)[:, None]
    for u in tl.static_range(KH):
        for v in tl.static_range(KW):
            field = group * (KH * KW) + u * KW + v
            py, px, m = _point(f_p, sfc, field, 2 * G * KH * KW, oh, ow, p_ok, u, v, KH, KW, DH, DW, SCALE, ACC)
            y0, x0, ly, lx, ok00, ok01, ok10, ok11, finite = corners(py, px, H, W)
            m = tl.where(finite & (m - m == 0), m, 0.0)  # a non-finite point's outputs are NaN: no gradient flows
            hy = (1 - ly)[:, None]
            hx = (1 - lx)[:, None]
            grad_m = tl.zeros([BLOCK_P], dtype=ACC)
            grad_y = tl.zeros([BLOCK_P], dtype=ACC)
            grad_x = tl.zeros([BLOCK_P], dtype=ACC)
            for c0 in range(0, CPG, BLOCK_C):
                c = c0 + tl.arange(0, BLOCK_C)
                c_ok = (c < CPG)[None, :]
                gy = tl.load(g_p + c[None, :] * sgc, mask=p_ok[:, None] & c_ok, other=0.0).to(ACC)
                if NEED_FIELDS:
                    channel = x_ptr + n * sxn + (group * CPG + c)[None, :] * sxc
                    x00, x01, x10, x11 = gather(channel, y0, x0, sxh, sxw, ok00, ok01, ok10, ok11, c_ok, ACC)
                    value = hy * (hx * x00 + lx[:, None] * x01) + ly[:, None] * (hx * x10 + lx[:, None] * x11)
                    grad_m += tl.sum(gy * value, axis=1)
                    grad_y += tl.sum(gy * (hx * (x10 - x00) + lx[:, None] * (x11 - x01)), axis=1)
                    grad_x += tl.sum(gy * (hy * (x01 - x00) + ly[:, None] * (x11 - x10)), axis=1)
                if NEED_X:
                    target = gx_ptr + n * sbn + (group * CPG + c)[None, :] * sbc
                    scatter(target, y0, x0, sbh, sbw, ok00, ok01, ok10, ok11, c_ok, gy * m[:, None], ly, lx)
            if NEED_FIELDS:
                gf = gf_ptr + n * sqn + oh * sqh + ow * sqw
                dtype = gf_ptr.dtype.element_ty
                tl.store(gf + 2 * field * sqc, (SCALE * m * grad_x).to(dtype), mask=p_ok)
                tl.store(gf + (2 * field + 1) * sqc, (SCALE * m * grad_y).to(dtype), mask=p_ok)
                grad_m = tl.where(finite, grad_m, 0.0)
                tl.store(gf + (2 * G * KH * KW + field) * sqc, grad_m.to(dtype), mask=p_ok)


def _forward(x: Tensor, fields: Tensor, groups: int, kernel_size: list[int], dilation: list[int],
             offset_scale: float) -> Tensor:
    n, c, h, w = x.shape
    y = empty_like_format(x, (n, c, h, w))
    if y.numel():
        cpg = c // groups
        acc, _, _ = kernel_types(x.dtype)
        bp, bc = block(h * w, 64), block(cpg, 32, smallest=4)
        c_blocks = cdiv(cpg, bc)
        launch(_forward_kernel, (cdiv(h * w, bp), n, groups * c_blocks),
            x, fields, y, h, w, cpg, groups, c_blocks, *x.stride(), *fields.stride(), *y.stride(),
            dilation[0], dilation[1], KH=kernel_size[0], KW=kernel_size[1], SCALE=float(offset_scale), ACC=acc,
            BLOCK_P=bp, BLOCK_C=bc)
    return y


def _forward_fake(x: Tensor, fields: Tensor, groups: int, kernel_size: list[int], dilation: list[int],
                  offset_scale: float) -> Tensor:
    return empty_like_format(x, tuple(x.shape))


def _backward(grad: Tensor, x: Tensor, fields: Tensor, groups: int, kernel_size: list[int], dilation: list[int],
              offset_scale: float, needs: list[bool]) -> tuple[Tensor, Tensor]:
    n, c, h, w = x.shape
    empty = no_grad_tensor(x)
    if not (needs[0] or needs[1]):
        return empty, empty
    if not grad.numel():
        return (torch.zeros_like(x) if needs[0] else empty, torch.zeros_like(fields) if needs[1] else empty)
    gx = torch.zeros(x.shape, dtype=accumulator_dtype(x.dtype), device=x.device)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        gx = gx.contiguous(memory_format=torch.channels_last)
    gf = torch.empty_like(fields) if needs[1] else fields
    cpg = c // groups
    acc, _, _ = kernel_types(x.dtype)
    bp, bc = block(h * w, 64), block(cpg, 32, smallest=4)
    launch(_backward_kernel, (cdiv(h * w, bp), n, groups),
        x, fields, grad, gx, gf, h, w, cpg, groups, *x.stride(), *fields.stride(), *grad.stride(), *gx.stride(),
        *gf.stride(), dilation[0], dilation[1], KH=kernel_size[0], KW=kernel_size[1], SCALE=float(offset_scale),
        NEED_X=needs[0], NEED_FIELDS=needs[1], ACC=acc, BLOCK_P=bp, BLOCK_C=bc)
    return (gx.to(x.dtype) if needs[0] else empty, gf if needs[1] else empty)


def _backward_fake(grad: Tensor, x: Tensor, fields: Tensor, groups: int, kernel_size: list[int],
                   dilation: list[int], offset_scale: float, needs: list[bool]) -> tuple[Tensor, Tensor]:
    empty = no_grad_tensor(x)
    return (torch.empty_like(x) if needs[0] else empty, torch.empty_like(fields) if needs[1] else empty)


def _reference(x: Tensor, fields: Tensor, groups: int, kernel_size: list[int], dilation: list[int],
               offset_scale: float) -> Tensor:
    """The same by ``bilinear_sample`` (``derivatives.dcnv3_sample``), for double backward and forward-mode AD."""
    return derivatives.dcnv3_sample(x, fields, groups, kernel_size, dilation, offset_scale)


_call = define_op("triton_dcnv3_sample", _forward, _forward_fake, _backward, _backward_fake, _reference)


def dcnv3_sample(x: Tensor, fields: Tensor, groups: int, kernel_size: tuple[int, int], dilation: tuple[int, int],
                 offset_scale: float) -> Tensor:
    """DCNv3's sampling: x (N, C, H, W) (the projected input), fields (N, 3·G·K, H, W) → (N, C, H, W) in x's memory
    format (see the module docstring); stride 1, 'same' zero padding d·(k − 1)/2, odd kernel sizes."""
    return _call(x, fields, int(groups), list(kernel_size), list(dilation), float(offset_scale))
