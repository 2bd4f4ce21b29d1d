"""DCNv3's sampling core on the CPU (numba), forward and backward, fp32 / fp64, on its channels-last data.

For position p = (i, j), group g of G (C/G channels c = g·Cg + c'), point k = (u, q) of K = kh·kw (row-major):

    y[n, p, c] = Σ_k m[n, p, g, k] · v_c(i + s·((u − (kh−1)/2)·d_h + Δy),  j + s·((q − (kw−1)/2)·d_w + Δx))

read bilinearly with zeros outside the (unpadded) image (``bilinear``; the layer's zero padding changes nothing),
s = offset_scale. The fields are the branch's output (N, H, W, 3·G·K): (Δx, Δy) of point k of group g at
2·(g·K + k), its softmax mask at 2·G·K + g·K + k. One task per output row, one pass over the K points per
(position, group), each read a contiguous run of the group's channels: no ``grid_sample`` per point and no
(N, G, Cg, H, W, K) sample tensor. A point whose location is not finite makes its group's outputs at that position
NaN; a non-finite mask does the same through m·v.

Backward: one kernel, tasks (sample, group, chunk of channels) so that no two write the same input value; it
scatters ∂y·m through the bilinear weights into ∂v and sums ∂/∂Δx, ∂/∂Δy, ∂/∂m over the chunk's channels (the
chunks' sums are added by torch).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numba import prange

from . import derivatives
from .bilinear import neighbours, scatter, set_weights, slopes, sum_points
from .derivatives import KernelFunction, graph_backward
from .numba_runtime import njit, run_tasks, sync_threads

_FAST = {"contract"}
_REDUCE = {"contract", "reassoc"}


@njit(fastmath=_FAST)
def _sample(begin: int, end: int, v: Any, fields: Any, y: Any, h: int, w: int, kh: int, kw: int, dh: int, dw: int,
            scale: float) -> None:  # pragma: no cover - compiled
    """y (N, H·W, C) from v (N, H·W, C) and fields (N, H·W, 3·G·K); tasks: rows (n, i) in [begin, end)."""
    c = v.shape[2]
    taps = kh * kw
    groups = fields.shape[2] // (3 * taps)
    cg = c // groups
    cy, cx = (kh - 1) / 2, (kw - 1) / 2
    tap_y, tap_x = np.empty(taps), np.empty(taps)  # each point's place in the grid: no division per point
    for k in range(taps):
        tap_y[k], tap_x[k] = (k // kw - cy) * dh, (k % kw - cx) * dw
    index = np.empty((taps, 4), np.int64)  # the group's points: their neighbours and weights, then one sum
    wts = np.empty((taps, 8), v.dtype)
    for task in range(begin, end):
        n = task // h
        i = task - n * h
        v1 = v[n].ravel()
        for j in range(w):
            at = i * w + j
            row = y[n, at]
            fr = fields[n, at]
            for g in range(groups):
                c0 = g * cg
                finite = True
                for k in range(taps):
                    py = i + scale * (tap_y[k] + fr[2 * (g * taps + k) + 1])
                    px = j + scale * (tap_x[k] + fr[2 * (g * taps + k)])
                    m = fr[2 * groups * taps + g * taps + k]
                    if not (math.isfinite(py) and math.isfinite(px) and math.isfinite(m)):
                        finite = False
                        break
                    reads, ly, lx = neighbours(py, px, h, w, index[k], False)
                    if reads:
                        set_weights(wts[k], ly, lx, m)
                    else:
                        index[k, :] = -1
                if finite:
                    sum_points(row, c0, v1, c, c0, cg, index, wts, taps)
                else:
                    row[c0:c0 + cg] = np.nan


@njit(parallel=True, fastmath=_REDUCE)
def _sample_backward(v: Any, fields: Any, gy: Any, gv: Any, part: Any, h: int, w: int, kh: int, kw: int, dh: int,
                     dw: int, scale: float) -> None:  # pragma: no cover - compiled
    """gv (N, H·W, C) += ∂y (N, H·W, C) through the bilinear weights × masks; part (S, N, H·W, G·K, 3) =
    (∂/∂Δy, ∂/∂Δx, ∂/∂m) summed over chunk s of the group's channels."""
    n_, _, c = v.shape
    taps = kh * kw
    groups = fields.shape[2] // (3 * taps)
    cg = c // groups
    splits = part.shape[0]
    chunk = (cg + splits - 1) // splits
    cy, cx = (kh - 1) / 2, (kw - 1) / 2
    for task in prange(n_ * groups * splits):
        n = task // (groups * splits)
        g = (task - n * groups * splits) // splits
        s = task - n * groups * splits - g * splits
        lo = g * cg + s * chunk
        hi = min(g * cg + cg, lo + chunk)
        if lo >= hi:
            continue
        index = np.empty(4, np.int64)
        wts = np.empty(8, v.dtype)
        acc = np.empty(3, v.dtype)
        v1, gv1 = v[n].ravel(), gv[n].ravel()
        for i in range(h):
            for j in range(w):
                at = i * w + j
                fr = fields[n, at]
                grow = gy[n, at]
                for k in range(taps):
                    u = k // kw
                    py = i + scale * ((u - cy) * dh + fr[2 * (g * taps + k) + 1])
                    px = j + scale * ((k - u * kw - cx) * dw + fr[2 * (g * taps + k)])
                    m = fr[2 * groups * taps + g * taps + k]
                    if not (math.isfinite(py) and math.isfinite(px) and math.isfinite(m)):
                        continue  # its outputs are NaN whatever the inputs
                    reads, ly, lx = neighbours(py, px, h, w, index, True)
                    if not reads:
                        continue
                    set_weights(wts, ly, lx, 1.0)
                    acc[:] = 0
                    slopes(grow, lo, v1, c, lo, hi - lo, index, wts, acc)
                    scatter(grow, lo, gv1, c, lo, hi - lo, index, wts, m)
                    part[s, n, at, g * taps + k, 0] = scale * m * acc[0]
                    part[s, n, at, g * taps + k, 1] = scale * m * acc[1]
                    part[s, n, at, g * taps + k, 2] = acc[2]


def _splits(n: int, groups: int, per_group: int) -> int:
    """Channel chunks per (sample, group) in the backward: a task for every thread (tasks are equal work), chunks of
    at least 16 channels (each chunk pays the per-position arithmetic again)."""
    wanted = -(-torch.get_num_threads() // max(1, n * groups))
    return max(1, min(wanted, per_group // 16))


class DCNv3SampleFunction(KernelFunction):
    """y = Σ_k m · bilinear read (see the module docstring): v (N, H, W, C) and fields (N, H, W, 3·G·K), both
    channels-last tensors, → y (N, H, W, C) contiguous. Under ``create_graph`` and with a forward-mode tangent,
    ``reference`` (``derivatives``)."""

    @staticmethod
    def reference(v: torch.Tensor, fields: torch.Tensor, kernel_size: tuple[int, int], dilation: tuple[int, int],
                  offset_scale: float) -> torch.Tensor:
        """The same y by ``bilinear_sample`` (``derivatives.dcnv3_sample`` on the NCHW views)."""
        groups = fields.shape[-1] // (3 * kernel_size[0] * kernel_size[1])
        y = derivatives.dcnv3_sample(v.permute(0, 3, 1, 2), fields.permute(0, 3, 1, 2), groups, kernel_size,
                                     dilation, offset_scale)
        return y.permute(0, 2, 3, 1)

    @staticmethod
    def forward(ctx: Any, v: torch.Tensor, fields: torch.Tensor, kernel_size: tuple[int, int],
                dilation: tuple[int, int], offset_scale: float) -> torch.Tensor:
        n, h, w, c = v.shape
        vs, fs = v.detach().contiguous(), fields.detach().to(v.dtype).contiguous()
        y = torch.empty(n, h, w, c, dtype=v.dtype)
        ctx.geometry = (h, w, *kernel_size, *dilation, float(offset_scale))
        ctx.arguments = (kernel_size, dilation, offset_scale)
        run_tasks(_sample, n * h, vs.view(n, h * w, c).numpy(), fs.view(n, h * w, fs.shape[-1]).numpy(),
                  y.view(n, h * w, c).numpy(), *ctx.geometry, work=y.numel())
        ctx.save_for_backward(v, fields)  # the caller's tensors (``reference``); no copy where they are dense
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        v, fields = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, DCNv3SampleFunction.reference, (v, fields, *ctx.arguments), grad)
        vs, fs = v.detach().contiguous(), fields.detach().to(v.dtype).contiguous()
        n, h, w, c = vs.shape
        nf = fs.shape[-1]
        taps = ctx.geometry[2] * ctx.geometry[3]
        groups = nf // (3 * taps)
        gv = torch.zeros(n, h * w, c, dtype=vs.dtype)
        part = torch.zeros(_splits(n, groups, c // groups), n, h * w, groups * taps, 3, dtype=vs.dtype)
        gy = grad.contiguous()
        sync_threads()
        _sample_backward(vs.view(n, h * w, c).numpy(), fs.view(n, h * w, nf).numpy(), gy.view(n, h * w, c).numpy(),
                         gv.numpy(), part.numpy(), *ctx.geometry)
        sums = part.sum(0)  # (N, H·W, G·K, 3): ∂/∂Δy, ∂/∂Δx, ∂/∂m; the fields hold (Δx, Δy) pairs, then masks
        shifts = torch.stack((sums[..., 1], sums[..., 0]), dim=-1).reshape(n, h * w, 2 * groups * taps)
        grad_fields = torch.cat([shifts, sums[..., 2]], dim=-1)
        return gv.view(n, h, w, c), grad_fields.view(n, h, w, nf), None, None, None


def dcnv3_sample(v: torch.Tensor, fields: torch.Tensor, kernel_size: tuple[int, int], dilation: tuple[int, int],
                 offset_scale: float) -> torch.Tensor:
    """DCNv3's Σ_k m_gk · v(p + p_k + Δp_gk) on channels-last tensors v (N, H, W, C), fields (N, H, W, 3·G·K) (the
    branch's output before its permute) → (N, H, W, C)."""
    return DCNv3SampleFunction.apply(v, fields, tuple(kernel_size), tuple(dilation), offset_scale)


def warm_up(dtype: torch.dtype) -> None:
    """Compile (or load from the cache) every kernel of this module for ``dtype``: one tiny forward and backward."""
    v = torch.ones(1, 3, 3, 2, dtype=dtype, requires_grad=True)
    fields = torch.full((1, 3, 3, 27), 0.25, dtype=dtype, requires_grad=True)
    dcnv3_sample(v, fields, (3, 3), (1, 1), 1.0).sum().backward()
