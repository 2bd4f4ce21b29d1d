"""Involution's per-position kernels applied on the CPU (numba), forward and backward, NCHW and channels_last,
fp32 / fp64, 2-D (1-D runs as 2-D with H = 1):

    y[n, c, p] = Σ_t H[n, g(c)·T + t, p] · x[n, c, p·s + t·d − pad],   g(c) = c // (C/G), taps t row-major,

reads outside the input being zero (the zero padding is never materialised; other padding modes are applied by
torch first and run with pad = 0). No unfold and no (N, C, T, *O) patch tensor.

NCHW: forward one task per (sample, channel) plane, a row of outputs accumulated tap by tap from a row of the input
and a row of the kernels, laid out (N, G, T, Ho, Wo). channels_last: one task per output row, each position's
kernels (G·T contiguous values) applied to contiguous runs of channels. Backward, one kernel per format: the
kernels' gradient ∂H[n, g·T + t, p] = Σ_{c ∈ g} ∂y[n, c, p]·x[n, c, p·s + t·d − pad] (tasks: per (sample, group,
output row) in NCHW, per output row in channels_last) and the input's gradient gathered or scattered inside one
task's own input row or plane, so no two tasks write one value.
"""

from __future__ import annotations

from typing import Any

import torch
from numba import prange

from .numba_runtime import njit, sync_threads

_FAST = {"contract"}
_REDUCE = {"contract", "reassoc"}


@njit()
def _span(out: int, size: int, stride: int, start: int) -> tuple[int, int]:  # pragma: no cover - compiled
    """The outputs o in [lo, hi) whose input index o·stride + start lies in [0, size)."""
    lo = max(0, -(start // stride)) if start < 0 else 0
    hi = min(out, (size - 1 - start) // stride + 1) if start <= size - 1 else 0
    return lo, max(lo, hi)


@njit(parallel=True, fastmath=_FAST)
def _forward_nchw(x: Any, kern: Any, y: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int,
                  dw: int) -> None:  # pragma: no cover - compiled
    """y (N, C, Ho, Wo) from x (N, C, H, W) and kern (N, G, T, Ho, Wo); one task per (sample, channel)."""
    n_, c, h, w = x.shape
    groups, ho, wo = kern.shape[1], y.shape[2], y.shape[3]
    cg = c // groups
    for task in prange(n_ * c):
        n = task // c
        ch = task - n * c
        g = ch // cg
        for oh in range(ho):
            yrow = y[n, ch, oh]
            yrow[:] = 0
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= h:
                    continue
                xrow = x[n, ch, ih]
                for j in range(kw):
                    krow = kern[n, g, i * kw + j, oh]
                    start = j * dw - pw
                    lo, hi = _span(wo, w, sw, start)
                    yr, kr, xr = yrow[lo:hi], krow[lo:hi], xrow[lo * sw + start:hi * sw + start:sw]
                    for k in range(hi - lo):
                        yr[k] += kr[k] * xr[k]


@njit(parallel=True, fastmath=_REDUCE)
def _backward_nchw(x: Any, kern: Any, gy: Any, gx: Any, gk: Any, kh: int, kw: int, sh: int, sw: int, ph: int,
                   pw: int, dh: int, dw: int) -> None:  # pragma: no cover - compiled
    """gk (N, G, T, Ho, Wo) = ∂/∂kern and gx (N, C, H, W) = ∂/∂x from gy (N, C, Ho, Wo). Tasks: first one per
    (sample, group, output row) for gk, then one per (sample, channel) plane for gx (a scatter inside the plane)."""
    n_, c, h, w = x.shape
    groups, ho, wo = kern.shape[1], gy.shape[2], gy.shape[3]
    cg = c // groups
    kernel_tasks = n_ * groups * ho
    for task in prange(kernel_tasks + n_ * c):
        if task < kernel_tasks:
            n = task // (groups * ho)
            g = (task - n * groups * ho) // ho
            oh = task - n * groups * ho - g * ho
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                for j in range(kw):
                    grow = gk[n, g, i * kw + j, oh]
                    grow[:] = 0
                    if ih < 0 or ih >= h:
                        continue
                    start = j * dw - pw
                    lo, hi = _span(wo, w, sw, start)
                    gr = grow[lo:hi]
                    for ch in range(g * cg, g * cg + cg):
                        xr, dyr = x[n, ch, ih, lo * sw + start:hi * sw + start:sw], gy[n, ch, oh, lo:hi]
                        for k in range(hi - lo):
                            gr[k] += dyr[k] * xr[k]
        else:
            n = (task - kernel_tasks) // c
            ch = task - kernel_tasks - n * c
            g = ch // cg
            plane = gx[n, ch]
            plane[:, :] = 0
            for oh in range(ho):
                dyrow = gy[n, ch, oh]
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    gxrow = plane[ih]
                    for j in range(kw):
                        krow = kern[n, g, i * kw + j, oh]
                        start = j * dw - pw
                        lo, hi = _span(wo, w, sw, start)
                        gr, kr, dyr = gxrow[lo * sw + start:hi * sw + start:sw], krow[lo:hi], dyrow[lo:hi]
                        for k in range(hi - lo):
                            gr[k] += kr[k] * dyr[k]


@njit(parallel=True, fastmath=_FAST)
def _forward_nhwc(x: Any, kern: Any, y: Any, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int,
                  dw: int) -> None:  # pragma: no cover - compiled
    """y (N, Ho, Wo, C) from x (N, H, W, C) and kern (N, Ho, Wo, G·T); one task per output row."""
    n_, h, w, c = x.shape
    _, ho, wo, gt = kern.shape
    taps = kh * kw
    groups = gt // taps
    cg = c // groups
    for task in prange(n_ * ho):
        n = task // ho
        oh = task - n * ho
        for ow in range(wo):
            row = y[n, oh, ow]
            krow = kern[n, oh, ow]
            row[:] = 0
            for i in range(kh):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= h:
                    continue
                for j in range(kw):
                    iw = ow * sw - pw + j * dw
                    if iw < 0 or iw >= w:
                        continue
                    xrow = x[n, ih, iw]
                    for g in range(groups):
                        a = krow[g * taps + i * kw + j]
                        r, xr = row[g * cg:g * cg + cg], xrow[g * cg:g * cg + cg]
                        for k in range(cg):
                            r[k] += a * xr[k]


@njit(parallel=True, fastmath=_REDUCE)
def _backward_nhwc(x: Any, kern: Any, gy: Any, gx: Any, gk: Any, kh: int, kw: int, sh: int, sw: int, ph: int,
                   pw: int, dh: int, dw: int) -> None:  # pragma: no cover - compiled
    """gk (N, Ho, Wo, G·T) and gx (N, H, W, C) from gy (N, Ho, Wo, C). Tasks: one per output row for gk, then one
    per input row for gx (a scatter inside that row)."""
    n_, h, w, c = x.shape
    _, ho, wo, gt = kern.shape
    taps = kh * kw
    groups = gt // taps
    cg = c // groups
    for task in prange(n_ * ho + n_ * h):
        if task < n_ * ho:
            n = task // ho
            oh = task - n * ho
            for ow in range(wo):
                dyrow, grow = gy[n, oh, ow], gk[n, oh, ow]
                grow[:] = 0
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        if iw < 0 or iw >= w:
                            continue
                        xrow = x[n, ih, iw]
                        for g in range(groups):
                            dyr, xr = dyrow[g * cg:g * cg + cg], xrow[g * cg:g * cg + cg]
                            total = grow[g * taps + i * kw + j]
                            for k in range(cg):
                                total += dyr[k] * xr[k]
                            grow[g * taps + i * kw + j] = total
        else:
            n = (task - n_ * ho) // h
            ih = task - n_ * ho - n * h
            xrows = gx[n, ih]  # the gradient of input row ih: (W, C)
            xrows[:, :] = 0
            for i in range(kh):
                r = ih + ph - i * dh
                if r < 0 or r % sh != 0 or r // sh >= ho:
                    continue
                oh = r // sh
                for ow in range(wo):
                    dyrow, krow = gy[n, oh, ow], kern[n, oh, ow]
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        if iw < 0 or iw >= w:
                            continue
                        gxrow = xrows[iw]
                        for g in range(groups):
                            a = krow[g * taps + i * kw + j]
                            gr, dyr = gxrow[g * cg:g * cg + cg], dyrow[g * cg:g * cg + cg]
                            for k in range(cg):
                                gr[k] += a * dyr[k]


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class InvolutionFunction(torch.autograd.Function):
    """y (N, C, Ho, Wo) = Σ_t H[:, g(c)·T + t]·x shifted by tap t (module docstring); x (N, C, H, W), kernels
    (N, G·T, Ho, Wo); pad = the (top, left) zero padding. The output is channels_last when x is."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernels: torch.Tensor, kernel_size: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
        n, c, _, _ = x.shape
        ho, wo = kernels.shape[2:]
        kh, kw = kernel_size
        geometry = (kh, kw, *stride, *padding, *dilation)
        nhwc = _channels_last(x)
        ctx.geometry, ctx.nhwc = geometry, nhwc
        sync_threads()
        if nhwc:
            xs, ks = x.detach().permute(0, 2, 3, 1).contiguous(), kernels.detach().permute(0, 2, 3, 1).contiguous()
            y = torch.empty(n, ho, wo, c, dtype=x.dtype)
            _forward_nhwc(xs.numpy(), ks.to(x.dtype).numpy(), y.numpy(), *geometry)
            y = y.permute(0, 3, 1, 2)
        else:
            xs = x.detach().contiguous()
            ks = kernels.detach().reshape(n, -1, kh * kw, ho, wo).to(x.dtype).contiguous()
            y = torch.empty(n, c, ho, wo, dtype=x.dtype)
            _forward_nchw(xs.numpy(), ks.numpy(), y.numpy(), *geometry)
        ctx.save_for_backward(xs, ks)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xs, ks = ctx.saved_tensors
        gx, gk = torch.empty_like(xs), torch.empty_like(ks)
        sync_threads()
        if ctx.nhwc:
            _backward_nhwc(xs.numpy(), ks.numpy(), grad.permute(0, 2, 3, 1).contiguous().numpy(), gx.numpy(),
                           gk.numpy(), *ctx.geometry)
            return gx.permute(0, 3, 1, 2), gk.permute(0, 3, 1, 2), None, None, None, None
        _backward_nchw(xs.numpy(), ks.numpy(), grad.contiguous().numpy(), gx.numpy(), gk.numpy(), *ctx.geometry)
        n, groups, taps, ho, wo = gk.shape
        return gx, gk.view(n, groups * taps, ho, wo), None, None, None, None


def involve(x: torch.Tensor, kernels: torch.Tensor, kernel_size: tuple[int, ...], stride: tuple[int, ...],
            padding: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """Y[n, c, p] = Σ_t H[n, g(c)·T + t, p]·x[n, c, p·s + t·d − pad] for 1-D or 2-D x (N, C, *S), kernels
    (N, G·T, *O), zero padding ``padding`` (before each dim; the after-padding only sets O)."""
    if x.dim() == 3:  # 1-D as 2-D with H = 1
        y = InvolutionFunction.apply(x.unsqueeze(2), kernels.unsqueeze(2), (1, *kernel_size), (1, *stride),
                                     (0, *padding), (1, *dilation))
        return y.squeeze(2)
    return InvolutionFunction.apply(x, kernels, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation))


def warm_up(dtype: torch.dtype) -> None:
    """Compile (or load from the cache) every kernel of this module for ``dtype``: a tiny forward and backward in
    each memory format."""
    for memory_format in (torch.contiguous_format, torch.channels_last):
        x = torch.ones(1, 2, 3, 3, dtype=dtype).contiguous(memory_format=memory_format).requires_grad_()
        kernels = torch.full((1, 9, 3, 3), 0.5, dtype=dtype, requires_grad=True)
        involve(x, kernels, (3, 3), (1, 1), (1, 1), (1, 1)).sum().backward()
