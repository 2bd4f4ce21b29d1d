"""Involution's per-position kernels applied as Triton kernels (no unfold, no per-tap passes over the output).

    y[n, c, p] = Σ_t H[n, g(c)·T + t, p] · x[n, c, p·s + t·d − pad]        (g(c) = c // (C/G), zeros outside x)

Forward: one program per (position tile, sample, channel tile), taps unrolled, each input value read once per tap.
Backward of the input as a gather (no atomics): gx[n, c, q] = Σ_t H[n, g(c)·T + t, p_t(q)] · gy[n, c, p_t(q)] with
p_t(q) = (q + pad − t·d)/s where the division is exact; of the kernels: gH[n, g·T + t, p] = Σ_{c ∈ g} gy[n, c, p] ·
x[n, c, p·s + t·d − pad], one program per (position tile, sample, group). Any strides for x, H and the gradients
(NCHW and NHWC), output in x's memory format, fp16 / bf16 / fp32 / fp64. 1-D data runs as H = 1.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import derivatives
from .triton_autograd import define_op, no_grad_tensor
from .triton_runtime import block, cdiv, empty_like_format, kernel_types, launch

Tensor = torch.Tensor


@triton.jit
def _forward_kernel(x_ptr, k_ptr, y_ptr, C, H, W, HO, WO, CPG,
                    sxn, sxc, sxh, sxw, skn, skc, skh, skw, syn, syc, syh, syw,
                    SH, SW, PH, PW, DH, DW,
                    KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.program_id(1).to(tl.int64)
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = p < HO * WO
    c_ok = c < C
    oh = p // WO
    ow = p % WO
    x_n = x_ptr + n * sxn + c[None, :] * sxc
    kernels = k_ptr + n * skn + ((c // CPG) * (KH * KW))[None, :] * skc + (oh * skh + ow * skw)[:, None]
    tile_ok = p_ok[:, None] & c_ok[None, :]
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
    for i in tl.static_range(KH):
        ih = oh * SH - PH + i * DH
        row_ok = p_ok & (ih >= 0) & (ih < H)
        for j in tl.static_range(KW):
            iw = ow * SW - PW + j * DW
            ok = row_ok & (iw >= 0) & (iw < W)
            xv = tl.load(x_n + (ih * sxh + iw * sxw)[:, None], mask=ok[:, None] & c_ok[None, :], other=0.0)
            hv = tl.load(kernels + (i * KW + j) * skc, mask=tile_ok, other=0.0)
            acc += xv.to(ACC) * hv.to(ACC)
    y = y_ptr + n * syn + c[None, :] * syc + (oh * syh + ow * syw)[:, None]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=tile_ok)


@triton.jit
def _input_grad_kernel(g_ptr, k_ptr, gx_ptr, C, H, W, HO, WO, CPG,
                       sgn, sgc, sgh, sgw, skn, skc, skh, skw, sxn, sxc, sxh, sxw,
                       SH, SW, PH, PW, DH, DW,
                       KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr,
                       BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr):
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    n = tl.program_id(1).to(tl.int64)
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    q_ok = q < H * W
    c_ok = c < C
    qh = q // W
    qw = q % W
    g_n = g_ptr + n * sgn + c[None, :] * sgc
    k_n = k_ptr + n * skn + ((c // CPG) * (KH * KW))[None, :] * skc
    acc = tl.zeros([BLOCK_Q, BLOCK_C], dtype=ACC)
    for i in tl.static_range(KH):
        nh = qh + PH - i * DH  # = oh·SH when output row oh reads input row qh through tap row i
        oh = nh // SH
        row_ok = q_ok & (nh >= 0) & (nh % SH == 0) & (oh < HO)
        for j in tl.static_range(KW):
            nw = qw + PW - j * DW
            ow = nw // SW
            ok = (row_ok & (nw >= 0) & (nw % SW == 0) & (ow < WO))[:, None] & c_ok[None, :]
            g = tl.load(g_n + (oh * sgh + ow * sgw)[:, None], mask=ok, other=0.0)
            hv = tl.load(k_n + (i * KW + j) * skc + (oh * skh + ow * skw)[:, None], mask=ok, other=0.0)
            acc += g.to(ACC) * hv.to(ACC)
    gx = gx_ptr + n * sxn + c[None, :] * sxc + (qh * sxh + qw * sxw)[:, None]
    tl.store(gx, acc.to(gx_ptr.dtype.element_ty), mask=q_ok[:, None] & c_ok[None, :])


@triton.jit
def _kernel_grad_kernel(x_ptr, g_ptr, gk_ptr, H, W, HO, WO, CPG,
                        sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw, skn, skc, skh, skw,
                        SH, SW, PH, PW, DH, DW,
                        KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr,
                        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.program_id(1).to(tl.int64)
    group = tl.program_id(2)
    p_ok = p < HO * WO
    oh = p // WO
    ow = p % WO
    x_n = x_ptr + n * sxn + group * CPG * sxc
    g_n = g_ptr + n * sgn + group * CPG * sgc + (oh * sgh + ow * sgw)[:, None]
    gk = gk_ptr + n * skn + group * (KH * KW) * skc + oh * skh + ow * skw
    for i in tl.static_range(KH):
        ih = oh * SH - PH + i * DH
        row_ok = p_ok & (ih >= 0) & (ih < H)
        for j in tl.static_range(KW):
            iw = ow * SW - PW + j * DW
            ok = row_ok & (iw >= 0) & (iw < W)
            acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
            for c0 in range(0, CPG, BLOCK_C):
                c = c0 + tl.arange(0, BLOCK_C)
                c_ok = c < CPG
                g = tl.load(g_n + c[None, :] * sgc, mask=p_ok[:, None] & c_ok[None, :], other=0.0)
                xv = tl.load(x_n + c[None, :] * sxc + (ih * sxh + iw * sxw)[:, None],
                             mask=ok[:, None] & c_ok[None, :], other=0.0)
                acc += g.to(ACC) * xv.to(ACC)
            tl.store(gk + (i * KW + j) * skc, tl.sum(acc, axis=1).to(gk_ptr.dtype.element_ty), mask=p_ok)


def _as_2d(x: Tensor, kernels: Tensor, kernel_size: list[int], stride: list[int], padding: list[int],
           dilation: list[int]) -> tuple[Tensor, Tensor, list[int], list[int], list[int], list[int]]:
    """1-D data as 2-D with H = 1; padding per dim as (before, after)."""
    if x.dim() == 3:
        return (x.unsqueeze(2), kernels.unsqueeze(2), [1, kernel_size[0]], [1, stride[0]],
                [0, 0, padding[0], padding[1]], [1, dilation[0]])
    return x, kernels, kernel_size, stride, padding, dilation


def _forward(x: Tensor, kernels: Tensor, groups: int, kernel_size: list[int], stride: list[int],
             padding: list[int], dilation: list[int]) -> Tensor:
    x2, k2, (kh, kw), s, pad, d = _as_2d(x, kernels, kernel_size, stride, padding, dilation)
    n, c, h, w = x2.shape
    ho, wo = k2.shape[2:]
    y = empty_like_format(x2, (n, c, ho, wo))
    if y.numel():
        acc, _, _ = kernel_types(x.dtype)
        bp, bc = block(ho * wo, 64), block(c, 32)
        launch(_forward_kernel, (cdiv(ho * wo, bp), n, cdiv(c, bc)),
            x2, k2, y, c, h, w, ho, wo, c // groups, *x2.stride(), *k2.stride(), *y.stride(),
            s[0], s[1], pad[0], pad[2], d[0], d[1], KH=kh, KW=kw, ACC=acc, BLOCK_P=bp, BLOCK_C=bc)
    return y.squeeze(2) if x.dim() == 3 else y


def _forward_fake(x: Tensor, kernels: Tensor, groups: int, kernel_size: list[int], stride: list[int],
                  padding: list[int], dilation: list[int]) -> Tensor:
    x2, k2, *_ = _as_2d(x, kernels, kernel_size, stride, padding, dilation)
    y = empty_like_format(x2, (x2.shape[0], x2.shape[1], *k2.shape[2:]))
    return y.squeeze(2) if x.dim() == 3 else y


def _backward(grad: Tensor, x: Tensor, kernels: Tensor, groups: int, kernel_size: list[int], stride: list[int],
              padding: list[int], dilation: list[int], needs: list[bool]) -> tuple[Tensor, Tensor]:
    x2, k2, (kh, kw), s, pad, d = _as_2d(x, kernels, kernel_size, stride, padding, dilation)
    g2 = grad.unsqueeze(2) if x.dim() == 3 else grad
    n, c, h, w = x2.shape
    ho, wo = k2.shape[2:]
    cpg = c // groups
    acc, _, _ = kernel_types(x.dtype)
    grad_x = grad_k = no_grad_tensor(x)
    geometry = (s[0], s[1], pad[0], pad[2], d[0], d[1])
    if needs[0]:
        gx = empty_like_format(x2, tuple(x2.shape))
        bq, bc = block(h * w, 64), block(c, 32)
        if gx.numel():
            launch(_input_grad_kernel, (cdiv(h * w, bq), n, cdiv(c, bc)),
                g2, k2, gx, c, h, w, ho, wo, cpg, *g2.stride(), *k2.stride(), *gx.stride(), *geometry,
                KH=kh, KW=kw, ACC=acc, BLOCK_Q=bq, BLOCK_C=bc)
        grad_x = gx.squeeze(2) if x.dim() == 3 else gx
    if needs[1]:
        gk = torch.empty_like(k2)
        bp, bc = block(ho * wo, 64), block(cpg, 32)
        if gk.numel():
            launch(_kernel_grad_kernel, (cdiv(ho * wo, bp), n, groups),
                x2, g2, gk, h, w, ho, wo, cpg, *x2.stride(), *g2.stride(), *gk.stride(), *geometry,
                KH=kh, KW=kw, ACC=acc, BLOCK_P=bp, BLOCK_C=bc)
        grad_k = gk.squeeze(2) if x.dim() == 3 else gk
    return grad_x, grad_k


def _backward_fake(grad: Tensor, x: Tensor, kernels: Tensor, groups: int, kernel_size: list[int],
                   stride: list[int], padding: list[int], dilation: list[int], needs: list[bool]
                   ) -> tuple[Tensor, Tensor]:
    empty = no_grad_tensor(x)
    return (torch.empty_like(x) if needs[0] else empty, torch.empty_like(kernels) if needs[1] else empty)


def _reference(x: Tensor, kernels: Tensor, groups: int, kernel_size: list[int], stride: list[int],
               padding: list[int], dilation: list[int]) -> Tensor:
    """The same by ``F.unfold`` (``derivatives.involution``), for double backward and forward-mode AD."""
    x2, k2, size, s, pad, d = _as_2d(x, kernels, kernel_size, stride, padding, dilation)
    y = derivatives.involution(x2, k2, size, s, derivatives.pairs_of(pad), d)
    return y.squeeze(2) if x.dim() == 3 else y


_call = define_op("triton_involution", _forward, _forward_fake, _backward, _backward_fake, _reference)


def involution(x: Tensor, kernels: Tensor, groups: int, kernel_size: tuple[int, ...], stride: tuple[int, ...],
               padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...]) -> Tensor:
    """y = involution of x (N, C, H, W) or (N, C, L) with per-position kernels (N, G·T, *O) (taps row-major), zero
    padding as (before, after) pairs per spatial dim → (N, C, *O) in x's memory format (module docstring)."""
    pad = [v for pair in padding for v in pair]
    return _call(x, kernels, int(groups), list(kernel_size), list(stride), pad, list(dilation))
