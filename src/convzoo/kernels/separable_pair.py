"""A depthwise (kh×1) conv followed by a depthwise (1×kw) conv, fused on the CPU (numba): flattened convolution's
V∘H stages, and any such separable pair. NCHW and channels_last, fp32 / fp64.

    v[n, c, r, w] = b_V[c] + Σ_i w_V[c, i] · z[n, c, r·s_h + i·d_h − p_h, w]          (V: k_h×1, per channel)
    y[n, c, r, q] = b_H[c] + Σ_t w_H[c, t] · v[n, c, r, q·s_w + t·d_w − p_w]           (H: 1×k_w, per channel)

v never reaches memory: each task computes one row of v into a zero-padded row buffer (H's padding pads v with
zeros, not with b_V) and H reads it from there, so the pair moves one input and one output. NCHW: one task per
(sample, channel) plane, LANES columns at a time; channels_last: one task per output row, LANES channels at a time.
The backward recomputes v with the depthwise kernel and runs the depthwise kernels' backward for H, then V.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .depthwise import dense, depthwise_conv, output_size
from .numba_runtime import njit, run_tasks
from .simd import (
    FULL,
    LANES,
    block,
    fill,
    fma,
    fma_even,
    fma_step,
    fma_vv,
    lanes,
    load,
    store,
)

_FAST = {"contract"}


@njit(fastmath=_FAST)
def _pair_nchw(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any, sh: int, dh: int, ph: int, sw: int, dw: int,
               pw: int) -> None:  # pragma: no cover - compiled
    """z (N, C, H, W), wv (C, kh), bv (C,), wh (C, kw), bh (C,), y (N, C, Hv, Wo), C-contiguous."""
    _, c_, h_, w_ = z.shape
    rows, wo = y.shape[2], y.shape[3]
    kh, kw = wv.shape[1], wh.shape[1]
    z1, y1 = z.ravel(), y.ravel()
    blocks = (wo + LANES - 1) // LANES
    width = max(blocks * LANES * sw + (kw - 1) * dw + 1, pw + w_) + LANES  # padded v row; every H read inside
    acc = block(z1)
    buffer = np.zeros(width, dtype=z.dtype)  # zero outside the columns a row of v is written to
    for task in range(begin, end):
        c = task % c_
        for r in range(rows):
            for u in range(0, w_, LANES):  # the row of v, at columns pw … pw + W − 1 of the buffer
                mask = lanes(0, min(LANES, w_ - u))
                fill(acc, bv[c])
                for i in range(kh):
                    ih = r * sh + i * dh - ph
                    if 0 <= ih < h_:
                        fma(acc, wv[c, i], z1, (task * h_ + ih) * w_ + u, mask)
                store(acc, buffer, pw + u, mask)
            out = (task * rows + r) * wo
            for q in range(blocks):
                mask = lanes(0, min(LANES, wo - q * LANES))
                fill(acc, bh[c])
                for t in range(kw):
                    if sw == 1:
                        fma(acc, wh[c, t], buffer, q * LANES + t * dw, FULL)
                    elif sw == 2:
                        fma_even(acc, wh[c, t], buffer, q * LANES * 2 + t * dw, FULL)
                    else:
                        fma_step(acc, wh[c, t], buffer, q * LANES * sw + t * dw, sw, FULL)
                store(acc, y1, out + q * LANES, mask)


@njit(fastmath=_FAST)
def _pair_nhwc(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any, sh: int, dh: int, ph: int, sw: int, dw: int,
               pw: int) -> None:  # pragma: no cover - compiled
    """z (N, H, W, C), wv (kh, C), bv (C,), wh (kw, C), bh (C,), y (N, Hv, Wo, C), C-contiguous."""
    _, h_, w_, c_ = z.shape
    rows, wo = y.shape[1], y.shape[2]
    kh, kw = wv.shape[0], wh.shape[0]
    z1, wv1, wh1, y1 = z.ravel(), wv.ravel(), wh.ravel(), y.ravel()
    width = max((wo - 1) * sw + (kw - 1) * dw + 1, pw + w_)  # padded v row, in positions
    acc = block(z1)
    buffer = np.zeros(width * c_, dtype=z.dtype)  # zero outside the positions a row of v is written to
    for task in range(begin, end):
        n = task // rows
        r = task - n * rows
        for u in range(w_):  # the row of v, at positions pw … pw + W − 1 of the buffer
            for c0 in range(0, c_, LANES):
                mask = lanes(0, min(LANES, c_ - c0))
                load(acc, bv, c0, mask)
                for i in range(kh):
                    ih = r * sh + i * dh - ph
                    if 0 <= ih < h_:
                        fma_vv(acc, wv1, i * c_ + c0, z1, ((n * h_ + ih) * w_ + u) * c_ + c0, mask)
                store(acc, buffer, (pw + u) * c_ + c0, mask)
        for q in range(wo):
            for c0 in range(0, c_, LANES):
                mask = lanes(0, min(LANES, c_ - c0))
                load(acc, bh, c0, mask)
                for t in range(kw):
                    fma_vv(acc, wh1, t * c_ + c0, buffer, (q * sw + t * dw) * c_ + c0, mask)
                store(acc, y1, (task * wo + q) * c_ + c0, mask)


PairGeometry = tuple[int, int, tuple[int, int], int, int, tuple[int, int]]  # V: s, d, pads; H: s, d, pads


class SeparablePairFunction(torch.autograd.Function):
    """y = H(V(z)) for z (N, C, H, W) NCHW- or channels_last-contiguous (the output in the same format), V weight
    (C, 1, kh, 1), H weight (C, 1, 1, kw), biases (C,) or None."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, wv: torch.Tensor, bv: torch.Tensor | None, wh: torch.Tensor,
                bh: torch.Tensor | None, geometry: PairGeometry) -> torch.Tensor:
        sh, dh, (ph0, ph1), sw, dw, (pw0, pw1) = geometry
        n, c, h, w = z.shape
        kh, kw = wv.shape[2], wh.shape[3]
        rows, wo = output_size(h, kh, sh, dh, ph0, ph1), output_size(w, kw, sw, dw, pw0, pw1)
        zeros = torch.zeros(c, dtype=z.dtype)
        b_v = zeros if bv is None else bv.detach().contiguous()
        b_h = zeros if bh is None else bh.detach().contiguous()
        nhwc = not z.is_contiguous() and z.is_contiguous(memory_format=torch.channels_last)
        zd = z.detach()
        if nhwc:
            y = torch.empty((n, c, rows, wo), dtype=z.dtype, memory_format=torch.channels_last)
            run_tasks(_pair_nhwc, n * rows, zd.permute(0, 2, 3, 1).numpy(), wv.detach().reshape(c, kh).t().contiguous().numpy(),
                      b_v.numpy(), wh.detach().reshape(c, kw).t().contiguous().numpy(), b_h.numpy(),
                      y.permute(0, 2, 3, 1).numpy(), sh, dh, ph0, sw, dw, pw0, work=y.numel())
        else:
            y = torch.empty((n, c, rows, wo), dtype=z.dtype)
            run_tasks(_pair_nchw, n * c, zd.contiguous().numpy(), wv.detach().reshape(c, kh).numpy(), b_v.numpy(),
                      wh.detach().reshape(c, kw).numpy(), b_h.numpy(), y.numpy(), sh, dh, ph0, sw, dw, pw0,
                      work=y.numel())
        ctx.save_for_backward(z, wv, bv, wh, bh)
        ctx.geometry = geometry
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        z, wv, bv, wh, bh = ctx.saved_tensors
        sh, dh, pairs_h, sw, dw, pairs_w = ctx.geometry
        inputs = [t.detach().requires_grad_(need) if t is not None else None
                  for t, need in zip((z, wv, bv, wh, bh), ctx.needs_input_grad[:5])]
        with torch.enable_grad():  # V then H by the depthwise kernels (v recomputed); their backward runs kernels
            v = depthwise_conv(inputs[0], inputs[1], inputs[2], (sh, 1), (pairs_h, (0, 0)), (dh, 1))
            y = depthwise_conv(v, inputs[3], inputs[4], (1, sw), ((0, 0), pairs_w), (1, dw))
        wanted = [t for t in inputs if t is not None and t.requires_grad]
        found = iter(torch.autograd.grad(y, wanted, grad)) if wanted else iter(())
        grads = tuple(next(found) if t is not None and t.requires_grad else None for t in inputs)
        return (*grads, None)


def separable_pair(z: torch.Tensor, wv: torch.Tensor, bv: torch.Tensor | None, wh: torch.Tensor,
                   bh: torch.Tensor | None, geometry: PairGeometry) -> torch.Tensor:
    """H(V(z)) with V a per-channel (kh×1) conv and H a per-channel (1×kw) conv (weights (C, 1, kh, 1) and
    (C, 1, 1, kw)), geometry = (V stride, V dilation, V (before, after) padding, H stride, H dilation, H padding)."""
    z = dense(z)
    return SeparablePairFunction.apply(z, wv, bv, wh, bh, geometry)
