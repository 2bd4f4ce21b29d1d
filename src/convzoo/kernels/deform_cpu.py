"""Deformable convolution v1/v2 on the CPU: numba kernels that write the bilinear, masked samples straight into the
GEMM's columns, MKL's GEMM (``torch.mm``) for the weights, and the backward as kernels too. fp32 / fp64, NCHW and
channels_last inputs.

For output position l = (oh, ow), tap t = (i, j) and offset group o (torchvision's layout: offset channel
2·(o·K + t) is Δy, the next Δx; mask channel o·K + t):

    cols[n, l, g·K·Cg + t·Cg + c'] = m · x_c(oh·s_h − p_h + i·d_h + Δy, ow·s_w − p_w + j·d_w + Δx),  c = g·Cg + c'
    y[n, l, g·Cout_g + o'] = b + Σ_r cols[n, l, g·K·Cg + r] · W_g[o', r]     (one GEMM per conv group g)

read bilinearly with zeros outside (``bilinear``). The columns are position-major and, inside a conv group, tap-
major, so each write and each of the four reads is a contiguous run of channels of the channels-last input; the
output comes out of the GEMM channels-last. A position whose offsets or masks are not all finite gets a row of NaN
columns, so every output at that position is NaN (as the pure op and the guarded torchvision path give).

Backward: ∂cols = ∂y·W and ∂W = ∂yᵀ·cols by GEMM; one kernel then scatters ∂cols back to the input through the
bilinear weights and sums, per (position, tap, offset group), ∂/∂Δy, ∂/∂Δx and ∂/∂m over the group's channels. Its
tasks are (sample, offset group, chunk of channels), so no two write the same input value; the per-chunk sums are
added by torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import prange

from .bilinear import gather, neighbours, scatter, set_weights, slopes
from .numba_runtime import njit, sync_threads

_FAST = {"contract"}  # fused multiply-add only: NaN and Inf propagate
_REDUCE = {"contract", "reassoc"}  # sums over channels may be reordered (vectorised)


@njit(inline="always")
def _finite(off: Any, msk: Any, n: int, oh: int, ow: int) -> bool:  # pragma: no cover - compiled
    for f in range(off.shape[3]):
        if not math.isfinite(off[n, oh, ow, f]):
            return False
    for f in range(msk.shape[3]):
        if not math.isfinite(msk[n, oh, ow, f]):
            return False
    return True


@njit(parallel=True, fastmath=_FAST)
def _columns(x: Any, off: Any, msk: Any, cols: Any, first: int, h: int, w: int, kh: int, kw: int, sh: int, sw: int,
             ph: int, pw: int, dh: int, dw: int, groups: int) -> None:  # pragma: no cover - compiled
    """cols (R, Wo, K·C): the columns of output rows first … first + R − 1 (row r = n·Ho + oh) from x (N, H·W, C),
    off (N, Ho, Wo, 2·G·K), msk (N, Ho, Wo, G·K); one task per output row."""
    c = x.shape[2]
    _, ho, wo, nf = off.shape
    taps = kh * kw
    cpo, cg = c // (nf // (2 * taps)), c // groups
    for task in prange(cols.shape[0]):
        n = (first + task) // ho
        oh = first + task - n * ho
        index = np.empty(4, np.int64)
        wts = np.empty(8, x.dtype)
        xn = x[n]
        for ow in range(wo):
            row = cols[task, ow]
            if not _finite(off, msk, n, oh, ow):
                row[:] = np.nan
                continue
            for f in range(nf // 2):  # f = o·K + t
                o = f // taps
                t = f - o * taps
                i = t // kw
                py = oh * sh - ph + i * dh + off[n, oh, ow, 2 * f]
                px = ow * sw - pw + (t - i * kw) * dw + off[n, oh, ow, 2 * f + 1]
                reads, ly, lx = neighbours(py, px, h, w, index)
                if reads:
                    set_weights(wts, ly, lx, msk[n, oh, ow, f])
                c0, c1 = o * cpo, o * cpo + cpo
                while c0 < c1:  # the offset group's channels, cut where a conv group ends
                    g = c0 // cg
                    e = min(c1, g * cg + cg)
                    d = g * taps * cg + t * cg + c0 - g * cg
                    if reads:
                        gather(row, d, xn, c0, e - c0, index, wts)
                    else:
                        row[d:d + e - c0] = 0
                    c0 = e


@njit(parallel=True, fastmath=_REDUCE)
def _columns_backward(x: Any, off: Any, msk: Any, gcols: Any, gx: Any, part: Any, h: int, w: int, kh: int, kw: int,
                      sh: int, sw: int, ph: int, pw: int, dh: int, dw: int) -> None:  # pragma: no cover - compiled
    """gx (N, H·W, C) += the columns' gradient gcols (groups, N·L, K·Cg) read back through the bilinear weights;
    part (S, N, L, G·K, 3) = (∂/∂Δy, ∂/∂Δx, ∂/∂m) summed over chunk s of the offset group's channels. One task per
    (sample, offset group, chunk)."""
    n_, _, c = x.shape
    _, ho, wo, nf = off.shape
    groups = gcols.shape[0]
    taps = kh * kw
    og = nf // (2 * taps)
    cpo, cg = c // og, c // groups
    splits = part.shape[0]
    chunk = (cpo + splits - 1) // splits
    for task in prange(n_ * og * splits):
        n = task // (og * splits)
        o = (task - n * og * splits) // splits
        s = task - n * og * splits - o * splits
        lo = o * cpo + s * chunk
        hi = min(o * cpo + cpo, lo + chunk)
        index = np.empty(4, np.int64)
        wts = np.empty(8, x.dtype)
        acc = np.empty(3, x.dtype)
        xn, gxn = x[n], gx[n]
        for oh in range(ho):
            for ow in range(wo):
                l = oh * wo + ow
                if lo >= hi or not _finite(off, msk, n, oh, ow):
                    continue  # a NaN position's outputs are NaN whatever the input: no gradient reaches it
                for t in range(taps):
                    f = o * taps + t
                    i = t // kw
                    py = oh * sh - ph + i * dh + off[n, oh, ow, 2 * f]
                    px = ow * sw - pw + (t - i * kw) * dw + off[n, oh, ow, 2 * f + 1]
                    reads, ly, lx = neighbours(py, px, h, w, index)
                    if not reads:
                        continue
                    m = msk[n, oh, ow, f]
                    set_weights(wts, ly, lx, 1.0)
                    acc[:] = 0
                    c0 = lo
                    while c0 < hi:
                        g = c0 // cg
                        e = min(hi, g * cg + cg)
                        d = t * cg + c0 - g * cg
                        grow = gcols[g, n * ho * wo + l]
                        slopes(grow, d, xn, c0, e - c0, index, wts, acc)
                        scatter(grow, d, gxn, c0, e - c0, index, wts, m)
                        c0 = e
                    part[s, n, l, f, 0] = m * acc[0]
                    part[s, n, l, f, 1] = m * acc[1]
                    part[s, n, l, f, 2] = acc[2]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _nhwc(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → its (N, H, W, C) contiguous data (no copy for channels_last data)."""
    return t.detach().permute(0, 2, 3, 1).contiguous()


def _weight_matrix(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, Cg, kh, kw) → (groups, C_out/groups, K·Cg), row index t·Cg + c' as the columns'."""
    c_out, cg, kh, kw = weight.shape
    return weight.reshape(groups, c_out // groups, cg, kh * kw).transpose(2, 3).reshape(groups, c_out // groups, -1)


def _splits(n: int, offset_groups: int, per_group: int) -> int:
    """Channel chunks per (sample, offset group) in the backward: enough tasks for every thread (4 each), chunks of
    at least 16 channels."""
    wanted = -(-4 * torch.get_num_threads() // (n * offset_groups))
    return max(1, min(wanted, per_group // 16))


class DeformConv2dFunction(torch.autograd.Function):
    """y = deformable conv of x (N, C, H, W) with offset (N, 2·G·K, Ho, Wo), mask (N, G·K, Ho, Wo) or None (v1),
    weight (C_out, C/groups, kh, kw), bias (C_out,) or None; the output keeps x's memory format."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor,
                bias: torch.Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> torch.Tensor:
        n, c, h, w = x.shape
        c_out, cg, kh, kw = weight.shape
        groups = c // cg
        ho, wo = offset.shape[2:]
        xs = _nhwc(x)
        off = _nhwc(offset)
        msk = _nhwc(mask) if mask is not None else torch.ones(n, ho, wo, offset.shape[1] // 2, dtype=x.dtype)
        cols = torch.empty(n, ho * wo, kh * kw * c, dtype=x.dtype)
        geometry = (h, w, kh, kw, *stride, *padding, *dilation)
        sync_threads()
        _columns(xs.view(n, h * w, c).numpy(), off.numpy(), msk.numpy(), cols.view(n * ho, wo, -1).numpy(), 0, *geometry,
                 groups)
        wmat = _weight_matrix(weight.detach(), groups)
        flat = cols.view(n * ho * wo, groups, -1)
        if groups == 1:
            out = torch.mm(flat[:, 0], wmat[0].t()) if bias is None else torch.addmm(bias, flat[:, 0], wmat[0].t())
        else:
            out = torch.bmm(flat.transpose(0, 1), wmat.transpose(1, 2)).transpose(0, 1).reshape(-1, c_out)
            if bias is not None:
                out += bias
        y = out.view(n, ho, wo, c_out).permute(0, 3, 1, 2)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        ctx.geometry, ctx.groups, ctx.has_mask, ctx.has_bias = geometry, groups, mask is not None, bias is not None
        ctx.save_for_backward(xs, off, msk, cols if ctx.needs_input_grad[3] else None, wmat)
        return y if channels_last else y.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xs, off, msk, cols, wmat = ctx.saved_tensors
        n, h, w, c = xs.shape
        _, ho, wo, nf = off.shape
        groups, (kh, kw) = ctx.groups, ctx.geometry[2:4]
        c_out = wmat.shape[0] * wmat.shape[1]
        gy = grad.permute(0, 2, 3, 1).reshape(n * ho * wo, groups, c_out // groups).transpose(0, 1)  # (g, N·L, Cog)
        grad_x = grad_offset = grad_mask = grad_weight = grad_bias = None
        if ctx.needs_input_grad[3]:
            gw = torch.bmm(gy.transpose(1, 2), cols.view(n * ho * wo, groups, -1).transpose(0, 1))  # (g, Cog, K·Cg)
            grad_weight = gw.reshape(c_out, kh * kw, c // groups).transpose(1, 2).reshape(c_out, c // groups, kh, kw)
        if ctx.has_bias and ctx.needs_input_grad[4]:
            grad_bias = grad.sum((0, 2, 3))
        if any(ctx.needs_input_grad[:3]):
            gcols = torch.bmm(gy, wmat)  # (groups, N·L, K·Cg)
            gx = torch.zeros(n, h * w, c, dtype=xs.dtype)
            part = torch.zeros(_splits(n, nf // (2 * kh * kw), c // (nf // (2 * kh * kw))), n, ho * wo, nf // 2, 3,
                               dtype=xs.dtype)
            sync_threads()
            _columns_backward(xs.view(n, h * w, c).numpy(), off.numpy(), msk.numpy(), gcols.numpy(), gx.numpy(),
                              part.numpy(), *ctx.geometry)
            fields = part.sum(0).view(n, ho, wo, nf // 2, 3)
            grad_x = gx.view(n, h, w, c).permute(0, 3, 1, 2)
            grad_offset = fields[..., :2].reshape(n, ho, wo, nf).permute(0, 3, 1, 2)
            if ctx.has_mask:
                grad_mask = fields[..., 2].permute(0, 3, 1, 2)
        return grad_x, grad_offset, grad_mask, grad_weight, grad_bias, None, None, None


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, mask: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision's ``deform_conv2d`` (argument order and semantics) on convzoo's CPU kernels: x (N, C, H, W)
    fp32 / fp64, offset (N, 2·G·kh·kw, Ho, Wo) as (Δy, Δx) per tap, mask (N, G·kh·kw, Ho, Wo) or None, weight
    (C_out, C/groups, kh, kw). Shapes are the caller's to check (``convzoo.deform.deform_conv2d`` checks them)."""
    return DeformConv2dFunction.apply(x, offset, mask, weight, bias, _pair(stride), _pair(padding), _pair(dilation))
