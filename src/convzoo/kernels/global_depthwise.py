"""Global depthwise convolution (GDC) on the CPU (numba), forward and backward, NCHW and channels_last, fp32 / fp64.

    y[n, c·m + j] = Σ_p x[n, c, p] · w[c·m + j, p]        (one weight per channel and position; p over the map)

NCHW: x (N, C, P) is read in place, one task per (sample, channel), a dot product per output accumulated LANES
positions at a time in registers. channels_last: x (N, P, C), one task per (sample, group of 64 channels, j),
4 register blocks of LANES channels running down the positions, so every cache line of x is read once; the
multiplier's outputs are computed de-interleaved (N, m, C) and interleaved by torch (a tensor of N·C·m numbers).
The backward runs kernels of the same shape: ∂x[n, c, p] = Σ_j g[n, c·m + j] · w[c·m + j, p] and
∂w[c·m + j, p] = Σ_n g[n, c·m + j] · x[n, c, p]; ∂b = Σ_n g by torch.
"""

from __future__ import annotations

from typing import Any

import torch

from .depthwise import dense
from .derivatives import KernelFunction, graph_backward
from .grad_layout import dense_strides, in_layout
from .numba_runtime import njit, run_tasks
from .simd import (
    LANES,
    add_at,
    block,
    fill,
    fill_at,
    fma,
    fma_vv,
    fma_vv_at,
    lanes,
    load_at,
    store,
    store_at,
    tile,
    total_at,
)

_FAST = {"contract"}
_OUTPUTS, _CHAINS = 4, 4  # forward: multipliers per pass over x, independent accumulators per output (NCHW)
_GROUP = 4  # channels_last forward: blocks of LANES channels at a time (256 bytes of fp32: whole cache lines)
_SPAN = 16  # channels_last forward: positions whose weights are reused from L1 by every sample
_ACCUMULATORS = _OUTPUTS * _CHAINS  # = _OUTPUTS * _GROUP


@njit(fastmath=_FAST)
def _forward_nchw(begin: int, end: int, x: Any, w: Any, y: Any) -> None:  # pragma: no cover - compiled
    """y[n, c·m + j] = Σ_p x[n, c, p] · w[c·m + j, p]; x (N, C, P), w (C·m, P), y (N, C·m). Tasks: (n, c) planes.
    Each block of x is loaded once for up to _OUTPUTS multipliers j at a time, _CHAINS independent accumulators per
    output (a chain of FMAs waits on each one's latency)."""
    c_, p_ = x.shape[1], x.shape[2]
    cm = w.shape[0]
    m = cm // c_
    x1, w1 = x.ravel(), w.ravel()
    acc, xt = tile(x1, _ACCUMULATORS), tile(x1, _CHAINS)
    for task in range(begin, end):
        n = task // c_
        c = task - n * c_
        at_x = task * p_
        for j0 in range(0, m, _OUTPUTS):
            for k in range(_OUTPUTS * _CHAINS):
                fill_at(acc, k * LANES, 0.0)
            for p0 in range(0, p_, _CHAINS * LANES):
                for k in range(_CHAINS):
                    mask = lanes(0, max(0, min(LANES, p_ - p0 - k * LANES)))
                    load_at(xt, k * LANES, x1, at_x + p0 + k * LANES, mask)
                    for j in range(_OUTPUTS):
                        if j0 + j < m:
                            fma_vv_at(acc, (j * _CHAINS + k) * LANES, xt, k * LANES, w1,
                                      (c * m + j0 + j) * p_ + p0 + k * LANES, mask)
            for j in range(_OUTPUTS):
                if j0 + j < m:
                    for k in range(1, _CHAINS):
                        add_at(acc, j * _CHAINS * LANES, acc, (j * _CHAINS + k) * LANES)
                    y[n, c * m + j0 + j] = total_at(acc, j * _CHAINS * LANES)


@njit(fastmath=_FAST)
def _forward_nhwc(begin: int, end: int, x: Any, w: Any, partial: Any, chunk: int) -> None:  # pragma: no cover
    """partial[k, n, j, c] = Σ_{p in chunk k} x[n, p, c] · w[j, p, c]; x (N, P, C), w (m, P, C), partial (chunks,
    N, m, C) zeroed by the caller, summed over the chunks by torch. Tasks: chunks of ``chunk`` positions, so x and w
    are each read once: for _SPAN positions (their weights stay in L1) every sample's accumulators (_GROUP blocks of
    LANES channels × up to _OUTPUTS multipliers, in registers) are loaded from ``partial``, run down the positions
    (each x block loaded once for the multipliers) and stored back."""
    n_, p_, c_ = x.shape
    m = w.shape[0]
    x1, w1, q1 = x.ravel(), w.ravel(), partial.ravel()
    acc, xt = tile(x1, _ACCUMULATORS), tile(x1, _GROUP)
    for task in range(begin, end):
        p_lo, p_hi = task * chunk, min(p_, (task + 1) * chunk)
        for g0 in range(0, c_, _GROUP * LANES):
            for j0 in range(0, m, _OUTPUTS):
                for ps in range(p_lo, p_hi, _SPAN):
                    pe = min(p_hi, ps + _SPAN)
                    for n in range(n_):
                        at_q = (task * n_ + n) * m * c_ + g0
                        for j in range(_OUTPUTS):
                            if j0 + j < m:
                                for k in range(_GROUP):
                                    mask = lanes(0, max(0, min(LANES, c_ - g0 - k * LANES)))
                                    load_at(acc, (j * _GROUP + k) * LANES, q1, at_q + (j0 + j) * c_ + k * LANES, mask)
                        for p in range(ps, pe):
                            for k in range(_GROUP):
                                mask = lanes(0, max(0, min(LANES, c_ - g0 - k * LANES)))
                                load_at(xt, k * LANES, x1, (n * p_ + p) * c_ + g0 + k * LANES, mask)
                                for j in range(_OUTPUTS):
                                    if j0 + j < m:
                                        fma_vv_at(acc, (j * _GROUP + k) * LANES, xt, k * LANES, w1,
                                                  ((j0 + j) * p_ + p) * c_ + g0 + k * LANES, mask)
                        for j in range(_OUTPUTS):
                            if j0 + j < m:
                                for k in range(_GROUP):
                                    mask = lanes(0, max(0, min(LANES, c_ - g0 - k * LANES)))
                                    store_at(acc, (j * _GROUP + k) * LANES, q1, at_q + (j0 + j) * c_ + k * LANES, mask)


@njit(fastmath=_FAST)
def _input_grad_nchw(begin: int, end: int, g: Any, w: Any, gx: Any) -> None:  # pragma: no cover - compiled
    """∂x[n, c, p] = Σ_j g[n, c·m + j] · w[c·m + j, p]; g (N, C·m), w (C·m, P), ∂x (N, C, P)."""
    _, c_, p_ = gx.shape
    cm = w.shape[0]
    m = cm // c_
    w1, gx1 = w.ravel(), gx.ravel()
    for task in range(begin, end):
        acc = block(gx1)
        n = task // c_
        c = task - n * c_
        for p0 in range(0, p_, LANES):
            mask = lanes(0, min(LANES, p_ - p0))
            fill(acc, 0.0)
            for j in range(m):
                fma(acc, g[n, c * m + j], w1, (c * m + j) * p_ + p0, mask)
            store(acc, gx1, task * p_ + p0, mask)


@njit(fastmath=_FAST)
def _weight_grad_nchw(begin: int, end: int, x: Any, g: Any, gw: Any) -> None:  # pragma: no cover - compiled
    """∂w[o, p] = Σ_n g[n, o] · x[n, o // m, p]; x (N, C, P), g (N, C·m), ∂w (C·m, P)."""
    n_, c_, p_ = x.shape
    cm = gw.shape[0]
    m = cm // c_
    x1, gw1 = x.ravel(), gw.ravel()
    for o in range(begin, end):
        acc = block(gw1)
        c = o // m
        for p0 in range(0, p_, LANES):
            mask = lanes(0, min(LANES, p_ - p0))
            fill(acc, 0.0)
            for n in range(n_):
                fma(acc, g[n, o], x1, (n * c_ + c) * p_ + p0, mask)
            store(acc, gw1, o * p_ + p0, mask)


@njit(fastmath=_FAST)
def _input_grad_nhwc(begin: int, end: int, g: Any, w: Any, gx: Any) -> None:  # pragma: no cover - compiled
    """∂x[n, p, c] = Σ_j g[n, j, c] · w[j, p, c]; g (N, m, C), w (m, P, C), ∂x (N, P, C). One task per (n, p)."""
    _, p_, c_ = gx.shape
    m = w.shape[0]
    g1, w1, gx1 = g.ravel(), w.ravel(), gx.ravel()
    for task in range(begin, end):
        acc = block(gx1)
        n = task // p_
        p = task - n * p_
        for c0 in range(0, c_, LANES):
            mask = lanes(0, min(LANES, c_ - c0))
            fill(acc, 0.0)
            for j in range(m):
                fma_vv(acc, g1, (n * m + j) * c_ + c0, w1, (j * p_ + p) * c_ + c0, mask)
            store(acc, gx1, task * c_ + c0, mask)


@njit(fastmath=_FAST)
def _weight_grad_nhwc(begin: int, end: int, x: Any, g: Any, gw: Any) -> None:  # pragma: no cover - compiled
    """∂w[p, j, c] = Σ_n g[n, j, c] · x[n, p, c]; x (N, P, C), g (N, m, C), ∂w (P, m, C). One task per p."""
    n_, p_, c_ = x.shape
    m = g.shape[1]
    x1, g1, gw1 = x.ravel(), g.ravel(), gw.ravel()
    for p in range(begin, end):
        acc = block(gw1)
        for j in range(m):
            for c0 in range(0, c_, LANES):
                mask = lanes(0, min(LANES, c_ - c0))
                fill(acc, 0.0)
                for n in range(n_):
                    fma_vv(acc, g1, (n * m + j) * c_ + c0, x1, (n * p_ + p) * c_ + c0, mask)
                store(acc, gw1, (p * m + j) * c_ + c0, mask)


class GlobalDepthwiseFunction(KernelFunction):
    """y (N, C·m) = Σ_p x · w for x (N, C, H, W) NCHW- or channels_last-contiguous and w (C·m, 1, H, W); the
    backward runs the kernels above (∂b is the caller's: the bias is added outside). Under ``create_graph`` and
    with a forward-mode tangent, ``reference`` (``derivatives``)."""

    @staticmethod
    def reference(x: torch.Tensor, weight: torch.Tensor, transposed: torch.Tensor | None = None) -> torch.Tensor:
        """The same y by one ``einsum`` over (C, m, P)."""
        del transposed
        n, c = x.shape[:2]
        cm = weight.shape[0]
        y = torch.einsum("ncp,cmp->ncm", x.reshape(n, c, -1), weight.reshape(c, cm // c, -1))
        return y.reshape(n, cm)

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, transposed: torch.Tensor | None = None
                ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)  # the caller's tensors (``reference``)
        x, weight = x.detach(), weight.detach()
        n, c = x.shape[:2]
        p = x.shape[2] * x.shape[3]  # explicit sizes: an empty batch has no -1 to infer
        cm = weight.shape[0]
        m = cm // c
        nhwc = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        if nhwc:
            chunks = max(1, min(-(-p // _SPAN), 2 * torch.get_num_threads()))
            chunk = -(-p // chunks)
            partial = torch.zeros((chunks, n, m, c), dtype=x.dtype)
            ctx.weight_nhwc = weight_nhwc(weight, c) if transposed is None else transposed.detach()
            run_tasks(_forward_nhwc, chunks, x.permute(0, 2, 3, 1).reshape(n, p, c).numpy(),
                      ctx.weight_nhwc.numpy(), partial.numpy(), chunk, work=x.numel())
            y = partial.sum(0).transpose(1, 2).reshape(n, cm)
        else:
            y = torch.empty((n, cm), dtype=x.dtype)
            run_tasks(_forward_nchw, n * c, x.contiguous().reshape(n, c, p).numpy(), weight.reshape(cm, p).numpy(),
                      y.numpy(), work=x.numel())
        ctx.nhwc, ctx.weight_strides = nhwc, dense_strides(weight)
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, GlobalDepthwiseFunction.reference, (x, weight), grad)
        x, weight, grad = x.detach(), weight.detach(), grad.detach()
        n, c, h, w = x.shape
        p = h * w
        cm = weight.shape[0]
        m = cm // c
        grad_x = grad_w = None
        if ctx.nhwc:
            g = grad.reshape(n, c, m).transpose(1, 2).contiguous()  # (N, m, C)
            if ctx.needs_input_grad[0]:
                grad_x = torch.empty((n, c, h, w), dtype=x.dtype, memory_format=torch.channels_last)
                run_tasks(_input_grad_nhwc, n * h * w, g.numpy(), ctx.weight_nhwc.numpy(),
                          grad_x.permute(0, 2, 3, 1).reshape(n, p, c).numpy(), work=grad_x.numel())
            if ctx.needs_input_grad[1]:
                spread = torch.empty((h * w, m, c), dtype=x.dtype)
                run_tasks(_weight_grad_nhwc, h * w, x.permute(0, 2, 3, 1).reshape(n, p, c).numpy(), g.numpy(),
                          spread.numpy(), work=x.numel())
                grad_w = in_layout(spread.permute(2, 1, 0).reshape(cm, 1, h, w), ctx.weight_strides)
        else:
            g = grad.contiguous()
            if ctx.needs_input_grad[0]:
                grad_x = torch.empty((n, c, h, w), dtype=x.dtype)
                run_tasks(_input_grad_nchw, n * c, g.numpy(), weight.reshape(cm, p).numpy(),
                          grad_x.reshape(n, c, p).numpy(), work=grad_x.numel())
            if ctx.needs_input_grad[1]:
                grad_w = torch.empty((cm, 1, h, w), dtype=x.dtype)
                run_tasks(_weight_grad_nchw, cm, x.contiguous().reshape(n, c, p).numpy(), g.numpy(),
                          grad_w.reshape(cm, p).numpy(), work=x.numel())
        return grad_x, grad_w, None


def weight_nhwc(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """(C·m, 1, H, W) → (m, H·W, C), contiguous, detached: the copy the channels_last kernels read, one (C, H·W)
    transposition per multiplier (torch copies that order about twice as fast as into (H·W, m, C), whose rows
    interleave the multipliers). A layer may keep it between calls while the weight is unchanged and pass it to
    ``global_depthwise``."""
    cm = weight.shape[0]
    return (weight.detach().reshape(channels, cm // channels, weight.shape[2] * weight.shape[3]).permute(1, 2, 0)
            .contiguous())


def global_depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     transposed: torch.Tensor | None = None) -> torch.Tensor:
    """GDC: (N, C, H, W) NCHW or channels_last, weight (C·m, 1, H, W), bias (C·m,) or None → (N, C·m, 1, 1).
    ``transposed``: ``weight_nhwc(weight, C)`` made earlier (channels_last x), else made here."""
    x = dense(x)
    y = GlobalDepthwiseFunction.apply(x, weight, transposed)
    if bias is not None:
        y = y + bias
    return y.view(x.shape[0], weight.shape[0], 1, 1)
