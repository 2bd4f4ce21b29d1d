"""Deformable convolution v1/v2 on the CPU: numba kernels that write the bilinear, masked samples straight into the
GEMM's columns, MKL's GEMM (``torch.mm`` / ``torch.bmm``) for the weights, and the backward as kernels too. fp32 /
fp64, NCHW and channels_last inputs.

For output position p = (oh, ow) (flat index l = oh·Wo + ow), tap t = (i, j) and offset group o (torchvision's
layout: offset channel 2·(o·K + t) is Δy, the next Δx; mask channel o·K + t):

    cols[l, g·K·Cg + t·Cg + c'] = m · x_c(oh·s_h − p_h + i·d_h + Δy, ow·s_w − p_w + j·d_w + Δx),  c = g·Cg + c'
    y[l, g·Cout_g + o'] = b + Σ_r cols[l, g·K·Cg + r] · W_g[o', r]     (one GEMM per conv group g)

read bilinearly with zeros outside (``bilinear``). The columns are position-major and, inside a conv group, tap-
major, so each write and each of the four reads is a contiguous run of channels of the channels-last input. One
sample at a time: its columns (Ho·Wo × K·C numbers) fill a workspace reused from call to call, and the GEMM writes
the sample's output in the input's memory format. A position whose offsets or masks are not all finite gets a row of
NaN columns, so every output at that position is NaN (as the pure op and the guarded torchvision path give).

Backward, per sample: ∂cols = ∂y·W by GEMM; the columns are recomputed for ∂W = ∂yᵀ·cols (no N·Ho·Wo·K·C tensor
kept between the passes); one kernel scatters ∂cols back to the input through the bilinear weights and sums, per
(position, tap, offset group), ∂/∂Δy, ∂/∂Δx and ∂/∂m over the group's channels. Its tasks are (offset group, chunk of
channels), so no two write the same input value; the per-chunk sums are added by torch.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch
from numba import prange

from . import deform_torch
from .bilinear import gather, neighbours, scatter, set_weights, slopes
from .derivatives import KernelFunction, graph_backward
from .grad_layout import dense_strides, in_layout
from .numba_runtime import njit, sync_threads

_FAST = {"contract"}  # fused multiply-add only: NaN and Inf propagate
_REDUCE = {"contract", "reassoc"}  # sums over channels may be reordered (vectorised)


@njit(inline="always")
def _finite(off: Any, msk: Any, oh: int, ow: int) -> bool:  # pragma: no cover - compiled
    for f in range(off.shape[2]):
        if not math.isfinite(off[oh, ow, f]):
            return False
    for f in range(msk.shape[2]):
        if not math.isfinite(msk[oh, ow, f]):
            return False
    return True


@njit(parallel=True, fastmath=_FAST)
def _columns(x: Any, off: Any, msk: Any, cols: Any, h: int, w: int, kh: int, kw: int, sh: int, sw: int, ph: int,
             pw: int, dh: int, dw: int, groups: int) -> None:  # pragma: no cover - compiled
    """One sample's columns cols (Ho, Wo, K·C) from x (H·W, C), off (Ho, Wo, 2·G·K), msk (Ho, Wo, G·K); one task
    per output row."""
    c = x.shape[1]
    x1 = x.ravel()
    ho, wo, nf = off.shape
    taps = kh * kw
    offset_groups = nf // (2 * taps)
    cpo, cg = c // offset_groups, c // groups
    tap_y, tap_x = np.empty(taps, np.int64), np.empty(taps, np.int64)  # no division per point
    for t in range(taps):
        tap_y[t], tap_x[t] = (t // kw) * dh - ph, (t % kw) * dw - pw
    for oh in prange(ho):
        index = np.empty(4, np.int64)
        wts = np.empty(8, x.dtype)
        for ow in range(wo):
            row = cols[oh, ow]
            if not _finite(off, msk, oh, ow):
                row[:] = np.nan
                continue
            for o in range(offset_groups):
                for t in range(taps):
                    f = o * taps + t
                    py = oh * sh + tap_y[t] + off[oh, ow, 2 * f]
                    px = ow * sw + tap_x[t] + off[oh, ow, 2 * f + 1]
                    reads, ly, lx = neighbours(py, px, h, w, index, False)
                    if reads:
                        set_weights(wts, ly, lx, msk[oh, ow, f])
                    c0, c1 = o * cpo, o * cpo + cpo
                    while c0 < c1:  # the offset group's channels, cut where a conv group ends
                        g = c0 // cg if groups > 1 else 0
                        e = min(c1, g * cg + cg)
                        d = g * taps * cg + t * cg + c0 - g * cg
                        if reads:
                            gather(row, d, x1, c, c0, e - c0, index, wts)
                        else:
                            row[d:d + e - c0] = 0
                        c0 = e


@njit(parallel=True, fastmath=_REDUCE)
def _columns_backward(x: Any, off: Any, msk: Any, gcols: Any, gx: Any, part: Any, h: int, w: int, kh: int, kw: int,
                      sh: int, sw: int, ph: int, pw: int, dh: int, dw: int) -> None:  # pragma: no cover - compiled
    """One sample: gx (H·W, C) += the columns' gradient gcols (groups, L, K·Cg) read back through the bilinear
    weights × masks; part (S, L, G·K, 3) = (∂/∂Δy, ∂/∂Δx, ∂/∂m) summed over chunk s of the offset group's channels.
    One task per (offset group, chunk of its channels): no two tasks write one value of gx."""
    c = x.shape[1]
    x1, gx1 = x.ravel(), gx.ravel()
    ho, wo, nf = off.shape
    groups = gcols.shape[0]
    taps = kh * kw
    og = nf // (2 * taps)
    cpo, cg = c // og, c // groups
    splits = part.shape[0]
    chunk = (cpo + splits - 1) // splits
    for task in prange(og * splits):
        o = task // splits
        s = task - o * splits
        lo = o * cpo + s * chunk
        hi = min(o * cpo + cpo, lo + chunk)
        index = np.empty(4, np.int64)
        wts = np.empty(8, x.dtype)
        acc = np.empty(3, x.dtype)
        for oh in range(ho):
            for ow in range(wo):
                at = oh * wo + ow
                if lo >= hi or not _finite(off, msk, oh, ow):
                    continue  # a NaN position's outputs are NaN whatever the input: no gradient reaches it
                for t in range(taps):
                    f = o * taps + t
                    i = t // kw
                    py = oh * sh - ph + i * dh + off[oh, ow, 2 * f]
                    px = ow * sw - pw + (t - i * kw) * dw + off[oh, ow, 2 * f + 1]
                    reads, ly, lx = neighbours(py, px, h, w, index, True)
                    if not reads:
                        continue
                    m = msk[oh, ow, f]
                    set_weights(wts, ly, lx, 1.0)
                    acc[:] = 0
                    c0 = lo
                    while c0 < hi:
                        g = c0 // cg
                        e = min(hi, g * cg + cg)
                        d = t * cg + c0 - g * cg
                        grow = gcols[g, at]
                        slopes(grow, d, x1, c, c0, e - c0, index, wts, acc)
                        scatter(grow, d, gx1, c, c0, e - c0, index, wts, m)
                        c0 = e
                    part[s, at, f, 0] = m * acc[0]
                    part[s, at, f, 1] = m * acc[1]
                    part[s, at, f, 2] = acc[2]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _weight_matrix(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, Cg, kh, kw) → (groups, C_out/groups, K·Cg), row index t·Cg + c' as the columns'."""
    c_out, cg, kh, kw = weight.shape
    return weight.reshape(groups, c_out // groups, cg, kh * kw).transpose(2, 3).reshape(groups, c_out // groups, -1)


def _splits(offset_groups: int, per_group: int) -> int:
    """Channel chunks per offset group in the backward: a task for every thread (tasks are equal work), chunks of
    at least 16 channels (each chunk pays the per-position arithmetic again)."""
    wanted = -(-torch.get_num_threads() // offset_groups)
    return max(1, min(wanted, per_group // 16))


_LOCAL = threading.local()
_CACHED_BYTES = 256 * 2**20  # workspaces up to this size are kept for the next call (per thread)


def _workspace(slot: int, numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A flat scratch tensor of ``numel`` elements, reused from call to call (a fresh 58 MB tensor costs more in
    page faults than filling it), one per slot and Python thread; kept only up to 256 MB."""
    if numel * torch.empty((), dtype=dtype).element_size() > _CACHED_BYTES:
        return torch.empty(numel, dtype=dtype)
    spaces = getattr(_LOCAL, "spaces", None)
    if spaces is None:
        spaces = _LOCAL.spaces = {}
    held = spaces.get((slot, dtype))
    if held is None or held.numel() < numel:
        with torch.inference_mode(False):  # kept for later calls: made under inference_mode, no later call
            held = spaces[(slot, dtype)] = torch.empty(numel, dtype=dtype)  # outside it could write into it
    return held[:numel]


def _sample_nhwc(x: torch.Tensor, b: int, slot: int) -> torch.Tensor:
    """Sample b of x (N, C, H, W) as (H·W, C) contiguous: a view for channels_last data, else a copy into a
    workspace."""
    c, h, w = x.shape[1:]
    xb = x[b].permute(1, 2, 0)
    if xb.is_contiguous():
        return xb.reshape(h * w, c)
    out = _workspace(slot, h * w * c, x.dtype).view(h, w, c)
    out.copy_(xb)
    return out.view(h * w, c)


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _sample_fields(offset: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(offset, mask) as the kernels read them: (N, Ho, Wo, 2·G·K) and (N, Ho, Wo, G·K) in ``dtype``, contiguous
    (ones for v1's absent mask)."""
    off = offset.detach().to(dtype).permute(0, 2, 3, 1).contiguous()
    if mask is not None:
        return off, mask.detach().to(dtype).permute(0, 2, 3, 1).contiguous()
    return off, torch.ones(*off.shape[:3], offset.shape[1] // 2, dtype=dtype)


class DeformConv2dFunction(KernelFunction):
    """y = deformable conv of x (N, C, H, W) with offset (N, 2·G·K, Ho, Wo), mask (N, G·K, Ho, Wo) or None (v1),
    weight (C_out, C/groups, kh, kw), bias (C_out,) or None; the output keeps x's memory format. One sample at a
    time: its columns (Ho·Wo × K·C) fill a reused workspace and one GEMM per conv group reads them; the backward
    recomputes them rather than keeping N·Ho·Wo·K·C numbers alive between the passes. Under ``create_graph`` and
    with a forward-mode tangent, ``reference`` (``derivatives``)."""

    @staticmethod
    def reference(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor,
                  bias: torch.Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
                  dilation: tuple[int, int]) -> torch.Tensor:
        """The same y by ``deform_torch.deform_conv2d`` (``grid_sample`` and one GEMM)."""
        return deform_torch.deform_conv2d(x, offset.to(x.dtype), weight, bias, stride, padding, dilation,
                                          None if mask is None else mask.to(x.dtype))

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor,
                bias: torch.Tensor | None, stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, offset, mask, weight, bias)  # the caller's tensors (``reference``)
        ctx.arguments = (stride, padding, dilation)
        n, c, h, w = x.shape
        c_out, cg, kh, kw = weight.shape
        groups, (ho, wo), cog = c // cg, offset.shape[2:], c_out // (c // cg)
        x, weight = x.detach(), weight.detach()
        off, msk = _sample_fields(offset, mask, x.dtype)
        geometry = (h, w, kh, kw, *stride, *padding, *dilation)
        wmat = _weight_matrix(weight, groups)  # (groups, Cog, K·Cg)
        nhwc = _channels_last(x)
        y = torch.empty(n, ho, wo, c_out, dtype=x.dtype) if nhwc else torch.empty(n, c_out, ho, wo, dtype=x.dtype)
        cols = _workspace(0, ho * wo * kh * kw * c, x.dtype).view(ho * wo, groups, -1)
        sync_threads()
        for b in range(n):
            _columns(_sample_nhwc(x, b, 1).numpy(), off[b].numpy(), msk[b].numpy(),
                     cols.view(ho, wo, -1).numpy(), *geometry, groups)
            if nhwc and groups == 1:
                torch.mm(cols[:, 0], wmat[0].t(), out=y[b].view(ho * wo, c_out))
            elif nhwc:
                y[b].view(ho * wo, groups, cog).copy_(torch.bmm(cols.transpose(0, 1), wmat.transpose(1, 2))
                                                      .transpose(0, 1))
            else:  # (groups, Cog, K·Cg) @ (groups, K·Cg, L): NCHW straight out of the GEMM
                torch.bmm(wmat, cols.permute(1, 2, 0), out=y[b].view(groups, cog, ho * wo))
        if bias is not None:
            y += bias if nhwc else bias.view(c_out, 1, 1)
        ctx.geometry, ctx.groups, ctx.has_mask = geometry, groups, mask is not None
        ctx.weight_strides = dense_strides(weight)
        return y.permute(0, 3, 1, 2) if nhwc else y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, offset, mask, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, DeformConv2dFunction.reference,
                                  (x, offset, mask, weight, bias, *ctx.arguments), grad)
        x = x.detach()
        off, msk = _sample_fields(offset, mask, x.dtype)
        wmat = _weight_matrix(weight.detach(), ctx.groups)
        n, c, h, w = x.shape
        ho, wo, nf = off.shape[1:]
        groups, (kh, kw) = ctx.groups, ctx.geometry[2:4]
        c_out, taps, cog, cg = wmat.shape[0] * wmat.shape[1], kh * kw, wmat.shape[1], c // ctx.groups
        want_x, want_fields, want_w = ctx.needs_input_grad[0], any(ctx.needs_input_grad[1:3]), ctx.needs_input_grad[3]
        grad_x = grad_offset = grad_mask = grad_weight = grad_bias = None
        if ctx.needs_input_grad[4]:
            grad_bias = grad.sum((0, 2, 3))
        if not (want_x or want_fields or want_w):
            return grad_x, grad_offset, grad_mask, grad_weight, grad_bias, None, None, None
        gy = grad.permute(0, 2, 3, 1)  # (N, Ho, Wo, C_out): a view, contiguous when grad is channels_last
        gw = torch.zeros(groups, cog, taps * cg, dtype=x.dtype) if want_w else None
        gx = torch.zeros(n, h, w, c, dtype=x.dtype) if want_x or want_fields else None
        splits = _splits(nf // (2 * taps), c // (nf // (2 * taps)))
        part = torch.zeros(n, splits, ho * wo, nf // 2, 3, dtype=x.dtype) if want_x or want_fields else None
        cols = _workspace(0, ho * wo * taps * c, x.dtype).view(ho * wo, groups, -1)
        gcols = _workspace(2, ho * wo * taps * c, x.dtype).view(groups, ho * wo, -1)
        sync_threads()
        for b in range(n):
            xb = _sample_nhwc(x, b, 1)
            gyb = gy[b].reshape(ho * wo, groups, cog).transpose(0, 1)  # (groups, L, Cog)
            if want_w:
                _columns(xb.numpy(), off[b].numpy(), msk[b].numpy(), cols.view(ho, wo, -1).numpy(), *ctx.geometry,
                         groups)
                gw.baddbmm_(gyb.transpose(1, 2), cols.transpose(0, 1))
            if gx is not None:
                torch.bmm(gyb, wmat, out=gcols)
                _columns_backward(xb.numpy(), off[b].numpy(), msk[b].numpy(), gcols.numpy(),
                                  gx[b].view(h * w, c).numpy(), part[b].numpy(), *ctx.geometry)
        if want_w:
            grad_weight = in_layout(gw.view(c_out, taps, cg).transpose(1, 2).reshape(c_out, cg, kh, kw),
                                    ctx.weight_strides)
        if gx is not None:
            fields = part.sum(1).view(n, ho, wo, nf // 2, 3)
            grad_x = gx.permute(0, 3, 1, 2)
            grad_offset = fields[..., :2].reshape(n, ho, wo, nf).permute(0, 3, 1, 2)
            if ctx.has_mask:
                grad_mask = fields[..., 2].permute(0, 3, 1, 2)
        return grad_x, grad_offset, grad_mask, grad_weight, grad_bias, None, None, None


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1, mask: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision's ``deform_conv2d`` (argument order and semantics) on convzoo's CPU kernels: x (N, C, H, W)
    fp32 / fp64, offset (N, 2·G·kh·kw, Ho, Wo) as (Δy, Δx) per tap, mask (N, G·kh·kw, Ho, Wo) or None, weight
    (C_out, C/groups, kh, kw). Shapes are the caller's to check (``deform_torch.deform_conv2d`` checks them)."""
    return DeformConv2dFunction.apply(x, offset, mask, weight, bias, _pair(stride), _pair(padding), _pair(dilation))


def warm_up(dtype: torch.dtype) -> None:
    """Compile (or load from the cache) every kernel of this module for ``dtype``: one tiny forward and backward."""
    x = torch.ones(1, 2, 3, 3, dtype=dtype, requires_grad=True)
    offset = torch.full((1, 18, 3, 3), 0.25, dtype=dtype, requires_grad=True)
    mask = torch.full((1, 9, 3, 3), 0.5, dtype=dtype, requires_grad=True)
    weight = torch.ones(2, 2, 3, 3, dtype=dtype, requires_grad=True)
    deform_conv2d(x, offset, weight, None, 1, 1, 1, mask).sum().backward()
