"""Depthwise convolution on the CPU (numba), forward and backward, for NCHW and channels_last data, fp32 / fp64.

    y[n, c·m + j, p] = b[c·m + j] + Σ_t w[c·m + j, t] · x[n, c, p·s + t·d − pad]

with depth multiplier m ≥ 1 written straight into the interleaved output channels c·m + j, any kernel size,
stride, dilation and (before, after) padding. 1-D runs as 2-D with H = 1. Zero padding is never materialised.
A 3×3 'same' (stride 1, one column of padding before, m = 1) runs the register windows of ``depthwise_same``
(``_forward_plan`` says which kernel runs where); the kernels below take every other geometry.

Forward, NCHW: one task per (sample, channel) plane; the input rows are staged once each into a ring of
zero-padded rows (rows, not a plane). At stride 1 along the rows and m = 1 (``_correlate_nchw_rows``, also ∂x), a
tile of 4 output rows × 4 blocks of LANES outputs accumulates in registers and each vector loaded from a staged row
feeds every tile row that reads it (3×3: a load per two FMAs); otherwise (``_correlate_nchw``) one output row at a
time, 4 blocks, the kernel row's weights in a register (unaligned loads: cutting each tap's vector from aligned
loads by shuffles measured slower on an AVX-512 EPYC, whose 512-bit shuffles share the FMA's ports).
channels_last: one task per output row; tiles of 8 positions × a block of LANES output channels (the interleaved
c·m + j, each lane reading its input channel) in 8 register accumulators, the input row the task is first to read
prefetched ahead; a tile's outputs go through a small buffer and reach y in address order (stores scattered over a
tile's 8 pixels measured twice as slow when y is not in cache), with non-temporal stores for large outputs. At
stride 1 and dilation 1 along the row (kw <= 3, m = 1 or 2: ``_forward_nhwc_dense``) each input column a kernel
row reads is loaded once for every tap that reads it; the general kernel loads each tap's
input. Every address of the accumulators is a constant once the tile loops are unrolled, so they stay in registers
(blocks addressed through runtime indices would live in memory).
Backward, NCHW: ∂x as the same correlation of ∂y with the flipped kernel (stride 1) or a scatter (stride > 1);
channels_last: ∂x gathered per input row (any stride). ∂w, ∂b: per-task partial sums added up by torch.

Kernels are serial numba functions over a range of tasks, run on torch.get_num_threads() threads by
``numba_runtime.run_tasks``. The kernel sizes in ``UNROLLED`` (fp32) get their tap loops unrolled (taps as tuple
offsets: one compilation per size); every other size and fp64 share one compilation with the taps in arrays.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .depthwise_same import WINDOW_ROWS, correlate_nchw_same, correlate_nhwc_same, same_3x3, weight_grad_nhwc_same
from .derivatives import KernelFunction, after_padding, forward_ad, graph_backward, has_tangent, padded_conv
from .grad_layout import dense_strides, in_layout
from .numba_runtime import njit, run_tasks, tasks_runner
from .simd import (
    FULL,
    LANES,
    add_at,
    block,
    fill,
    fill_at,
    fma,
    fma_at,
    fma_block,
    fma_block_step,
    fma_even,
    fma_lane,
    fma_lane_even,
    fma_step,
    fma_vv,
    fma_vv_step,
    lanes,
    load,
    load_at,
    load_rep2,
    load_rep4,
    load_repeat,
    load_step,
    prefetch,
    store,
    store_at,
    store_fence,
    stream_at,
    tile,
    total,
    total_at,
)

_FAST = {"contract"}  # fused multiply-add; no reassociation, no finite-math assumptions (NaN and Inf propagate)
_TILE = 8  # output positions per channels_last tile (8 accumulators)
_ROWS, _BLOCKS = 4, 4  # an NCHW tile: output rows × blocks of LANES along them
_ACCUMULATORS = _ROWS * _BLOCKS
_WEIGHT_TAPS = 10  # NCHW weight gradient: 9 taps (kh, kw <= 3) and the bias, one register accumulator each
_SPLIT = 2  # channels_last weight gradient: accumulators per tap (independent FMA chains; 4 spill to the stack)
_SPLIT_ACCUMULATORS = 4 * _SPLIT  # for 3 taps of a kernel row and the bias
_AHEAD = 2 * _TILE  # positions ahead of the tile whose input the channels_last forward prefetches
STREAM_BYTES = 1 << 22  # channels_last outputs from 4 MiB on are written with non-temporal stores (``streams``)
UNROLLED = frozenset({(3, 3), (5, 5), (7, 7), (1, 3), (3, 1), (1, 5), (5, 1), (1, 7), (7, 1)})


@njit(fastmath=_FAST)
def _correlate_nchw(begin: int, end: int, src: Any, w: Any, b: Any, out: Any, sources: int, rows: Any, cols: Any,
                    sh: int, sw: int, ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """out[n, o, p] = b[o] + Σ_{k<S} Σ_{i,t} w[o·S + k, i, t] · src[n, (o // R)·S + k, p·s + (rows[i], cols[t]) − pad],
    S = ``sources``, R = C_out·S / C_src: the forward (S = 1, R = m; rows = i·d_h, cols = t·d_w) and, with the
    flipped kernel, ∂x at stride 1 (S = m, R = 1). src (N, C_src, H, W), w (C_out·S, kh, kw), b (C_out,),
    out (N, C_out, Ho, Wo), C-contiguous; rows / cols tuples (tap loops unrolled) or int64 arrays (any size).
    Tasks: (n, group of S source planes)."""
    c_src, h_, w_ = src.shape[1], src.shape[2], src.shape[3]
    c_out, ho, wo = out.shape[1], out.shape[2], out.shape[3]
    kh, kw = len(rows), len(cols)
    taps = kh * kw
    groups = c_src // sources
    per_group = c_out // groups
    s1, wf, o1 = src.ravel(), w.ravel(), out.ravel()
    blocks = (wo + LANES - 1) // LANES
    # staged row: every lane's read (and the stride-2 pair) inside, a multiple of LANES so rows start aligned
    width = (blocks * LANES * sw + cols[kw - 1] + 1 + LANES - 1) // LANES * LANES + LANES
    slots = 1  # the ring holds (kh − 1)·d_h + 1 rows, rounded up to a power of two (slot = row & (slots − 1))
    while slots < rows[kh - 1] + 1:
        slots *= 2
    copy_lo, copy_hi = max(0, -pw), min(w_, width - pw)  # input columns kept: staged column = input column + pw
    fast = kw <= LANES and sw <= 2  # a kernel row's weights in one register block
    a0, a1, a2, a3 = block(s1), block(s1), block(s1), block(s1)
    wr = block(wf)
    buffer = np.zeros(sources * slots * width + LANES, dtype=src.dtype)
    skip = (-(buffer.ctypes.data // src.itemsize)) % LANES  # staged rows start on a 64-byte boundary (fp32)
    st = buffer[skip:skip + sources * slots * width]
    tags = np.empty((sources, slots), dtype=np.int64)
    for task in range(begin, end):
        n = task // groups
        g = task - n * groups
        tags[:] = -1
        for oh in range(ho):
            for k in range(sources):  # stage the rows this output row reads, once each
                plane = (n * c_src + g * sources + k) * h_
                for i in range(kh):
                    ih = oh * sh + rows[i] - ph
                    slot = ih & (slots - 1)
                    if 0 <= ih < h_ and tags[k, slot] != ih:
                        tags[k, slot] = ih
                        at = (k * slots + slot) * width + pw
                        for u in range(copy_lo, copy_hi, LANES):
                            mask = lanes(0, min(LANES, copy_hi - u))
                            load(a0, s1, (plane + ih) * w_ + u, mask)
                            store(a0, st, at + u, mask)
            for r in range(per_group):
                o = g * per_group + r
                row = ((n * c_out + o) * ho + oh) * wo
                for k in range(sources):
                    first = (o * sources + k) * taps
                    q = 0
                    while fast and q + 4 <= blocks:  # four blocks at a time
                        at_out = row + q * LANES
                        if k == 0:
                            fill(a0, b[o])
                            fill(a1, b[o])
                            fill(a2, b[o])
                            fill(a3, b[o])
                        else:  # ∂x: the earlier sources' sum is in the output row
                            load(a0, o1, at_out, FULL)
                            load(a1, o1, at_out + LANES, FULL)
                            load(a2, o1, at_out + 2 * LANES, FULL)
                            load(a3, o1, at_out + 3 * LANES, FULL)
                        for i in range(kh):
                            ih = oh * sh + rows[i] - ph
                            if 0 <= ih < h_:
                                base = (k * slots + (ih & (slots - 1))) * width + q * LANES * sw
                                load(wr, wf, first + i * kw, lanes(0, kw))  # this kernel row's weights
                                if sw == 1:  # block offsets as constants: loads address base + immediate
                                    for t in range(kw):
                                        at = base + cols[t]
                                        fma_lane(a0, wr, t, st, at, FULL)
                                        fma_lane(a1, wr, t, st, at + LANES, FULL)
                                        fma_lane(a2, wr, t, st, at + 2 * LANES, FULL)
                                        fma_lane(a3, wr, t, st, at + 3 * LANES, FULL)
                                else:
                                    for t in range(kw):
                                        at = base + cols[t]
                                        fma_lane_even(a0, wr, t, st, at, FULL)
                                        fma_lane_even(a1, wr, t, st, at + 2 * LANES, FULL)
                                        fma_lane_even(a2, wr, t, st, at + 4 * LANES, FULL)
                                        fma_lane_even(a3, wr, t, st, at + 6 * LANES, FULL)
                        store(a0, o1, at_out, FULL)
                        store(a1, o1, at_out + LANES, FULL)
                        store(a2, o1, at_out + 2 * LANES, FULL)
                        store(a3, o1, at_out + 3 * LANES, lanes(0, min(LANES, wo - (q + 3) * LANES)))
                        q += 4
                    while q < blocks:  # the rest one block at a time
                        at_out = row + q * LANES
                        mask = lanes(0, min(LANES, wo - q * LANES))
                        if k == 0:
                            fill(a0, b[o])
                        else:
                            load(a0, o1, at_out, mask)
                        for i in range(kh):
                            ih = oh * sh + rows[i] - ph
                            if 0 <= ih < h_:
                                base = (k * slots + (ih & (slots - 1))) * width + q * LANES * sw
                                for t in range(kw):
                                    wt = wf[first + i * kw + t]
                                    if sw == 1:
                                        fma(a0, wt, st, base + cols[t], FULL)
                                    elif sw == 2:
                                        fma_even(a0, wt, st, base + cols[t], FULL)
                                    else:
                                        fma_step(a0, wt, st, base + cols[t], sw, FULL)
                        store(a0, o1, at_out, mask)
                        q += 1


@njit(fastmath=_FAST, inline="always")
def _stage_rows(xv: Any, src: Any, st: Any, tags: Any, task: int, top: int, span: int, slots: int, h_: int, w_: int,
                width: int, pw: int, copy_lo: int, copy_hi: int) -> None:  # pragma: no cover - compiled
    """Copy the input rows top … top + span − 1 of plane ``task`` (src flat, rows of w_) that are inside the plane
    and not staged yet into the ring ``st`` (``slots`` rows of ``width``, a power of two; row ih in slot
    ih & (slots − 1), at column pw + v), columns copy_lo … copy_hi; ``tags[slot]`` holds the row a slot has."""
    for u in range(span):
        ih = top + u
        slot = ih & (slots - 1)
        if 0 <= ih < h_ and tags[slot] != ih:
            tags[slot] = ih
            for v in range(copy_lo, copy_hi, LANES):
                mask = lanes(0, min(LANES, copy_hi - v))
                load(xv, src, (task * h_ + ih) * w_ + v, mask)
                store(xv, st, slot * width + pw + v, mask)


@njit(fastmath=_FAST)
def _correlate_nchw_rows(begin: int, end: int, src: Any, w: Any, b: Any, out: Any, rows: Any, cols: Any, sh: int,
                         ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """out[n, c, oh, ow] = b[c] + Σ_{i,t} w[c, i, t] · src[n, c, oh·sh + rows[i] − ph, ow + cols[t] − pw]: m = 1,
    stride 1 along the rows (any stride down the columns, any dilation; rows, cols int64 arrays: one compilation per
    dtype); the forward, and ∂x with the flipped kernel. src (N, C, H, W), w (C, kh, kw), b (C,), out (N, C, Ho, Wo),
    C-contiguous. Tasks: (n, c) planes. The input rows are staged once each, zero-padded, in a ring; a tile of _ROWS
    output rows × _BLOCKS blocks of LANES outputs accumulates in registers: each vector loaded from a staged row
    feeds every output row of the tile that reads it, each tap's weight broadcast once for the _BLOCKS blocks."""
    c_, h_, w_ = src.shape[1], src.shape[2], src.shape[3]
    ho, wo = out.shape[2], out.shape[3]
    kh, kw = len(rows), len(cols)
    s1, wf, o1 = src.ravel(), w.ravel(), out.ravel()
    chunks = ((wo + LANES - 1) // LANES + _BLOCKS - 1) // _BLOCKS
    width = (chunks * _BLOCKS * LANES + cols[kw - 1] + 1 + LANES - 1) // LANES * LANES  # every tile's reads inside
    span = (_ROWS - 1) * sh + rows[kh - 1] + 1  # input rows a tile reads: tile row j, kernel row i read j·sh + rows[i]
    slots = 1
    while slots < span:
        slots *= 2
    copy_lo, copy_hi = max(0, -pw), min(w_, width - pw)  # input columns kept: staged column = input column + pw
    acc, xt, xv, wv = tile(s1, _ACCUMULATORS), tile(s1, _BLOCKS), block(s1), block(wf)
    buffer = np.zeros(slots * width + LANES, dtype=src.dtype)
    skip = (-(buffer.ctypes.data // src.itemsize)) % LANES  # staged rows start on a 64-byte boundary (fp32)
    st = buffer[skip:skip + slots * width]
    tags = np.empty(slots, dtype=np.int64)
    tap_of = np.empty(span * _ROWS, dtype=np.int64)  # tap_of[u·_ROWS + j]: the kernel row by which tile row j reads u
    tap_of[:] = -1
    for i in range(kh):
        for j in range(_ROWS):
            tap_of[(j * sh + rows[i]) * _ROWS + j] = i
    for task in range(begin, end):
        c = task % c_
        tags[:] = -1
        for oh0 in range(0, ho, _ROWS):
            top = oh0 * sh - ph  # the input row of the tile's u = 0
            # stage the rows this tile reads, once each
            _stage_rows(xv, s1, st, tags, task, top, span, slots, h_, w_, width, pw, copy_lo, copy_hi)
            for q0 in range(0, chunks * _BLOCKS, _BLOCKS):
                for k in range(_ACCUMULATORS):
                    fill_at(acc, k * LANES, b[c])
                for u in range(span):
                    ih = top + u
                    if 0 <= ih < h_:
                        base = (ih & (slots - 1)) * width + q0 * LANES
                        for t in range(kw):
                            for q in range(_BLOCKS):  # loaded once for the tile rows that read them
                                load_at(xt, q * LANES, st, base + cols[t] + q * LANES, FULL)
                            for j in range(_ROWS):
                                i = tap_of[u * _ROWS + j]
                                if i >= 0:
                                    fill(wv, wf[(c * kh + i) * kw + t])
                                    for q in range(_BLOCKS):
                                        fma_at(acc, (j * _BLOCKS + q) * LANES, wv, 0, xt, q * LANES)
                for j in range(_ROWS):
                    if oh0 + j < ho:
                        row = (task * ho + oh0 + j) * wo + q0 * LANES
                        for q in range(_BLOCKS):
                            if (q0 + q + 1) * LANES <= wo:
                                store_at(acc, (j * _BLOCKS + q) * LANES, o1, row + q * LANES, FULL)
                            elif (q0 + q) * LANES < wo:
                                store_at(acc, (j * _BLOCKS + q) * LANES, o1, row + q * LANES,
                                         lanes(0, wo - (q0 + q) * LANES))


@njit(fastmath=_FAST)
def _scatter_input_grad_nchw(begin: int, end: int, g: Any, w: Any, gx: Any, sh: int, sw: int, dh: int, dw: int,
                             ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """∂x[n, c, ih, iw] = Σ_j Σ_t w[c·m + j, t] · ∂y[n, c·m + j, oh, ow] over (oh, ow, t) with ih = oh·sh + i·dh − ph,
    iw = ow·sw + t·dw − pw: any stride, accumulated in the ∂x plane itself. Tasks: (n, c) planes."""
    c_, h_, w_ = gx.shape[1], gx.shape[2], gx.shape[3]
    cm, ho, wo = g.shape[1], g.shape[2], g.shape[3]
    kh, kw = w.shape[1], w.shape[2]
    m = cm // c_
    g1, w1, gx1 = g.ravel(), w.ravel(), gx.ravel()
    for task in range(begin, end):
        n = task // c_
        c = task - n * c_
        base = task * h_ * w_
        gx1[base:base + h_ * w_] = 0.0
        for j in range(m):
            o = c * m + j
            for oh in range(ho):
                grow = ((n * cm + o) * ho + oh) * wo
                for i in range(kh):
                    ih = oh * sh + i * dh - ph
                    if ih < 0 or ih >= h_:
                        continue
                    xrow = base + ih * w_
                    for t in range(kw):
                        wt = w1[(o * kh + i) * kw + t]
                        off = t * dw - pw
                        lo = -(off // sw) if off < 0 else 0
                        hi = min(wo, (w_ - 1 - off) // sw + 1) if off < w_ else 0
                        for ow in range(lo, hi):
                            gx1[xrow + ow * sw + off] += wt * g1[grow + ow]


@njit(fastmath=_FAST)
def _column_masks(size: int, out: int, kernel: int, stride: int, dilation: int, pad: int) -> Any:  # pragma: no cover
    """masks[b, t]: the lanes l of output block b (outputs b·LANES + l < out) whose input column
    (b·LANES + l)·stride + t·dilation − pad lies in [0, size); masks[b, kernel]: the lanes inside the row."""
    blocks = (out + LANES - 1) // LANES
    masks = np.zeros((blocks, kernel + 1), dtype=np.int64)
    for b in range(blocks):
        count = min(LANES, out - b * LANES)
        masks[b, kernel] = lanes(0, count)
        for t in range(kernel):
            off = b * LANES * stride + t * dilation - pad  # input column of lane 0
            lo = -(off // stride) if off < 0 else 0
            hi = min(count, (size - 1 - off) // stride + 1) if off < size else 0
            masks[b, t] = lanes(lo, hi)
    return masks


@njit(fastmath=_FAST, inline="always")
def _pick(a0: Any, a1: Any, a2: Any, a3: Any, a4: Any, a5: Any, a6: Any, a7: Any, t: int) -> Any:  # pragma: no cover
    """Accumulator t of eight (a constant choice once the tap loop is unrolled)."""
    if t < 4:
        return a0 if t == 0 else (a1 if t == 1 else (a2 if t == 2 else a3))
    return a4 if t == 4 else (a5 if t == 5 else (a6 if t == 6 else a7))


@njit(fastmath=_FAST)
def _weight_grad_nchw(begin: int, end: int, x: Any, g: Any, partial: Any, masks: Any, rows: Any, cols: Any, sh: int,
                      sw: int, ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """partial[n, o, i·kw + t] = Σ_p ∂y[n, o, p] · x[n, o // m, p·s + (rows[i], cols[t]) − pad], partial[n, o, kh·kw] =
    Σ_p ∂y[n, o, p] (the bias); masks from ``_column_masks``. Tasks: (n, o) planes; torch sums over n. For each
    kernel row, a block of ∂y is loaded once and feeds one register accumulator per tap (up to 8 taps a row)."""
    c_, h_, w_ = x.shape[1], x.shape[2], x.shape[3]
    cm, ho, wo = g.shape[1], g.shape[2], g.shape[3]
    kh, kw = len(rows), len(cols)
    m = cm // c_
    x1, g1 = x.ravel(), g.ravel()
    a0, a1, a2, a3, a4, a5, a6, a7 = block(g1), block(g1), block(g1), block(g1), block(g1), block(g1), block(g1), block(g1)
    gb = block(g1)
    for task in range(begin, end):
        n = task // cm
        o = task - n * cm
        plane = (n * c_ + o // m) * h_
        for i in range(kh):
            for t0 in range(0, kw, 8):  # up to eight taps of the row at a time (one pass when kw <= 8)
                taps = kw if kw <= 8 else min(8, kw - t0)
                fill(a0, 0.0)
                fill(a1, 0.0)
                fill(a2, 0.0)
                fill(a3, 0.0)
                fill(a4, 0.0)
                fill(a5, 0.0)
                fill(a6, 0.0)
                fill(a7, 0.0)
                for oh in range(ho):
                    ih = oh * sh + rows[i] - ph
                    if ih < 0 or ih >= h_:
                        continue
                    for q in range(masks.shape[0]):
                        load(gb, g1, (task * ho + oh) * wo + q * LANES, masks[q, kw])
                        base = (plane + ih) * w_ + q * LANES * sw - pw
                        for t in range(taps):
                            acc = _pick(a0, a1, a2, a3, a4, a5, a6, a7, t)
                            if sw == 1:
                                fma_block(acc, gb, x1, base + cols[t0 + t], masks[q, t0 + t])
                            else:
                                fma_block_step(acc, gb, x1, base + cols[t0 + t], sw, masks[q, t0 + t])
                for t in range(taps):
                    partial[n, o, i * kw + t0 + t] = total(_pick(a0, a1, a2, a3, a4, a5, a6, a7, t))
        fill(a0, 0.0)
        for oh in range(ho):
            for q in range(masks.shape[0]):
                fma(a0, 1.0, g1, (task * ho + oh) * wo + q * LANES, masks[q, kw])
        partial[n, o, kh * kw] = total(a0)


@njit(fastmath=_FAST)
def _weight_grad_nchw_rows(begin: int, end: int, x: Any, g: Any, partial: Any, rows: Any, cols: Any, ph: int,
                           pw: int) -> None:  # pragma: no cover - compiled
    """partial[n, c, i·kw + t] = Σ_p ∂y[n, c, p] · x[n, c, p + (i, cols[t]) − pad], partial[n, c, kh·kw] = Σ_p ∂y[n, c, p]
    (the bias): m = 1, stride 1, kernel rows at dilation 1 (rows = 0 … kh − 1, kh, kw <= 3, unrolled tuples).
    Tasks: (n, c) planes; torch sums over n. The input rows are staged, zero-padded, in a ring; for a tile of _ROWS
    rows of ∂y and a block of LANES columns, the ∂y blocks are loaded once, each staged input vector once, and every
    (input row, tap) pair feeds the tap's register accumulator from each ∂y row that meets it."""
    c_, h_, w_ = x.shape[1], x.shape[2], x.shape[3]
    ho, wo = g.shape[2], g.shape[3]
    kh, kw = len(rows), len(cols)
    x1, g1 = x.ravel(), g.ravel()
    blocks = (wo + LANES - 1) // LANES
    width = (blocks * LANES + cols[kw - 1] + 1 + LANES - 1) // LANES * LANES
    span = _ROWS + kh - 1
    slots = 1
    while slots < span:
        slots *= 2
    copy_lo, copy_hi = max(0, -pw), min(w_, width - pw)
    acc, gt, xv, ones = tile(x1, _WEIGHT_TAPS), tile(g1, _ROWS), block(x1), block(x1)
    fill(ones, 1.0)
    buffer = np.zeros(slots * width + LANES, dtype=x.dtype)
    skip = (-(buffer.ctypes.data // x.itemsize)) % LANES
    st = buffer[skip:skip + slots * width]
    tags = np.empty(slots, dtype=np.int64)
    for task in range(begin, end):
        n = task // c_
        c = task - n * c_
        tags[:] = -1
        for k in range(_WEIGHT_TAPS):
            fill_at(acc, k * LANES, 0.0)
        for oh0 in range(0, ho, _ROWS):
            top = oh0 - ph
            _stage_rows(xv, x1, st, tags, task, top, span, slots, h_, w_, width, pw, copy_lo, copy_hi)
            for q in range(blocks):
                mask = lanes(0, min(LANES, wo - q * LANES))  # lanes past the row: ∂y and x both read as 0
                for j in range(_ROWS):
                    if oh0 + j < ho:
                        load_at(gt, j * LANES, g1, (task * ho + oh0 + j) * wo + q * LANES, mask)
                        fma_at(acc, (_WEIGHT_TAPS - 1) * LANES, ones, 0, gt, j * LANES)
                for u in range(span):
                    ih = top + u
                    if 0 <= ih < h_:
                        base = (ih & (slots - 1)) * width + q * LANES
                        for t in range(kw):
                            load(xv, st, base + cols[t], mask)
                            for j in range(_ROWS):
                                if 0 <= u - j < kh and oh0 + j < ho:
                                    fma_at(acc, ((u - j) * kw + t) * LANES, gt, j * LANES, xv, 0)
        for k in range(kh * kw):
            partial[n, c, k] = total_at(acc, k * LANES)
        partial[n, c, kh * kw] = total_at(acc, (_WEIGHT_TAPS - 1) * LANES)


@njit(fastmath=_FAST, inline="always")
def _input_block(xv: Any, x1: Any, at: int, m: int, phase: int, mask: int) -> None:  # pragma: no cover - compiled
    """xv[l] = x1[at + (phase + l) // m] on the lanes in mask: the input channel of each output channel in a block."""
    if m == 1:
        load(xv, x1, at, mask)
    elif m == 2 and phase == 0:
        load_rep2(xv, x1, at, mask)
    elif m == 4 and phase == 0:
        load_rep4(xv, x1, at, mask)
    else:
        load_repeat(xv, x1, at, m, phase, mask)


@njit(fastmath=_FAST, inline="always")
def _dense_tile_nhwc(acc: Any, wt: Any, xv: Any, x1: Any, wf: Any, n: int, oh: int, ow0: int, o0: int, sizes: Any,
                     rows: Any, m: int, mask: int) -> None:  # pragma: no cover - compiled
    """Adds the taps to the tile ``acc`` (_TILE accumulators: positions ow0 … ow0 + _TILE − 1) at stride 1 and
    dilation 1 along the row (kw <= _TILE), for output channels o0 + l, l in mask (o0 % m == 0): each input column a
    kernel row reads is loaded once and feeds every tap that reads it, the kernel row's weights held in the tile
    ``wt``. Columns in the padding are skipped (positions past the row's end get values that are never stored).
    sizes = (H, W, C, C·m, kw, sh, sw, ph, pw)."""
    h_, w_, c_, cm, kw, sh, _, ph, pw = sizes
    for i in range(len(rows)):
        ih = oh * sh + rows[i] - ph
        if 0 <= ih < h_:
            for t in range(kw):
                load_at(wt, t * LANES, wf, (i * kw + t) * cm + o0, mask)
            at = ((n * h_ + ih) * w_ + ow0 - pw) * c_ + o0 // m
            for u in range(_TILE + kw - 1):
                if 0 <= ow0 - pw + u < w_:
                    _input_block(xv, x1, at + u * c_, m, 0, mask)
                    for t in range(kw):
                        if 0 <= u - t < _TILE:
                            fma_at(acc, (u - t) * LANES, wt, t * LANES, xv, 0)


@njit(fastmath=_FAST, inline="always")
def _inner_tile_nhwc(acc: Any, wt: Any, xv: Any, x1: Any, wf: Any, n: int, oh: int, ow0: int, o0: int, sizes: Any,
                     rows: Any, cols: Any, m: int, mask: int) -> None:  # pragma: no cover - compiled
    """Adds the taps to the tile ``acc`` for positions ow0 … ow0 + _TILE − 1 whose taps all lie inside the row (any
    stride and dilation), output channels o0 + l, l in mask (o0 % m == 0): each tap's weight block loaded once for
    the _TILE positions. sizes as in ``_dense_tile_nhwc``."""
    h_, w_, c_, cm, kw, sh, sw, ph, pw = sizes
    for i in range(len(rows)):
        ih = oh * sh + rows[i] - ph
        if 0 <= ih < h_:
            step = sw * c_
            for t in range(kw):
                load_at(wt, 0, wf, (i * kw + t) * cm + o0, mask)
                at = ((n * h_ + ih) * w_ + ow0 * sw + cols[t] - pw) * c_ + o0 // m
                for p in range(_TILE):
                    _input_block(xv, x1, at, m, 0, mask)
                    fma_at(acc, p * LANES, wt, 0, xv, 0)
                    at += step


@njit(fastmath=_FAST, inline="always")
def _forward_nhwc_rows(begin: int, end: int, x: Any, w: Any, b: Any, y: Any, rows: Any, cols: Any, sh: int, sw: int,
                       ph: int, pw: int, stream: bool, dense: bool, fixed: int) -> None:  # pragma: no cover - compiled
    """The body of the channels_last forwards. ``dense`` (a constant): every position in tiles of _TILE
    (``_dense_tile_nhwc``: stride 1 and dilation 1 along the row, kw <= 3); else tiles (``_inner_tile_nhwc``) over the
    positions whose taps lie inside the row, the last tile shifted back to end with them (positions computed twice
    get the same values), and the positions at the row's ends one at a time. ``fixed`` (a constant) is the multiplier
    the tiles are compiled for (0: any m, tiles for m = 1); the other blocks go one position at a time."""
    h_, w_, c_ = x.shape[1], x.shape[2], x.shape[3]
    ho, wo, cm = y.shape[1], y.shape[2], y.shape[3]
    kh, kw = len(rows), len(cols)
    m = fixed if fixed > 0 else cm // c_
    sizes = (h_, w_, c_, cm, kw, sh, sw, ph, pw)
    x1, wf, b1, y1 = x.ravel(), w.ravel(), b.ravel(), y.ravel()
    acc, wt, xv, xs = tile(x1, _TILE), tile(wf, _TILE), block(x1), block(x1)
    ow_lo = min(wo, (pw + sw - 1) // sw)  # the positions ow_lo <= ow < ow_hi read no padding along the row
    ow_hi = max(ow_lo, min(wo, (w_ - 1 - cols[kw - 1] + pw) // sw + 1))
    if dense:
        ow_lo, ow_hi = 0, wo
    tiled = ow_hi - ow_lo >= _TILE or dense
    tiled_channels = cm // LANES * LANES if m == max(fixed, 1) else 0  # the channels the tiles compute
    out_tile = np.empty(_TILE * cm + LANES, dtype=y.dtype)
    skip = (-(out_tile.ctypes.data // y.itemsize)) % LANES  # 64-byte aligned (fp32)
    out_tile = out_tile[skip:skip + _TILE * cm]
    for task in range(begin, end):
        n = task // ho
        oh = task - n * ho
        ahead = oh * sh + rows[kh - 1] - ph  # the input row this output row is the first to read: prefetched
        ahead = ((n * h_ + ahead) * w_ + _AHEAD) * c_ if 0 <= ahead < h_ else -1
        ow = 0
        while ow < wo:
            if tiled and ow_lo <= ow < ow_hi:
                ow0 = ow if dense else min(ow, ow_hi - _TILE)
                count = min(_TILE, wo - ow0)
            else:
                ow0, count = ow, 1
            for o0 in range(0, cm, LANES):
                mask = lanes(0, min(LANES, cm - o0))
                if ahead >= 0:
                    for p in range(_TILE):
                        prefetch(x1, ahead + ((ow0 + p) * sw) * c_ + o0 // m)
                if count > 1 and mask == FULL and m == max(fixed, 1):
                    for p in range(_TILE):
                        load_at(acc, p * LANES, b1, o0, FULL)
                    if dense:
                        _dense_tile_nhwc(acc, wt, xv, x1, wf, n, oh, ow0, o0, sizes, rows, max(fixed, 1), FULL)
                    else:
                        _inner_tile_nhwc(acc, wt, xv, x1, wf, n, oh, ow0, o0, sizes, rows, cols, max(fixed, 1), FULL)
                    for p in range(_TILE):  # into the tile's buffer: written out in address order below
                        store_at(acc, p * LANES, out_tile, p * cm + o0, FULL)
                else:  # position by position, taps in the padding skipped (one accumulator: any m, any mask)
                    c0, phase = o0 // m, o0 % m
                    for p in range(count):
                        load(xv, b1, o0, mask)
                        for i in range(kh):
                            ih = oh * sh + rows[i] - ph
                            if 0 <= ih < h_:
                                for t in range(kw):
                                    iw = (ow0 + p) * sw + cols[t] - pw
                                    if 0 <= iw < w_:
                                        _input_block(xs, x1, ((n * h_ + ih) * w_ + iw) * c_ + c0, m, phase, mask)
                                        fma_vv(xv, wf, (i * kw + t) * cm + o0, xs, 0, mask)
                        store(xv, y1, (task * wo + ow0 + p) * cm + o0, mask)
            if count > 1:  # the tile's full channel blocks, from its buffer to y in address order
                out = (task * wo + ow0) * cm
                for p in range(count):
                    for o0 in range(0, tiled_channels, LANES):
                        load_at(acc, 0, out_tile, p * cm + o0, FULL)
                        if stream:
                            stream_at(acc, 0, y1, out + p * cm + o0)
                        else:
                            store_at(acc, 0, y1, out + p * cm + o0, FULL)
            ow = ow0 + count
    if stream:
        store_fence()  # the streamed stores visible before the caller (or another thread) reads y


@njit(fastmath=_FAST)
def _forward_nhwc(begin: int, end: int, x: Any, w: Any, b: Any, y: Any, rows: Any, cols: Any, sh: int, sw: int,
                  ph: int, pw: int, stream: bool) -> None:  # pragma: no cover - compiled
    """y[n, oh, ow, o] = b[o] + Σ_{i,t} w[i, t, o] · x[n, oh·sh + rows[i] − ph, ow·sw + cols[t] − pw, o // m]:
    x (N, H, W, C), w (kh, kw, C·m), b (C·m,), y (N, Ho, Wo, C·m), C-contiguous, any geometry and multiplier.
    Tasks: output rows (n, oh). Along the row, tiles of _TILE positions with one register accumulator each (for m = 1
    and blocks of LANES channels, where the tile's taps lie inside the row); in a tile, the blocks of LANES output
    channels one after the other. Other positions and channel blocks go one position at a time, skipping the taps
    in the padding."""
    _forward_nhwc_rows(begin, end, x, w, b, y, rows, cols, sh, sw, ph, pw, stream, False, 0)


@njit(fastmath=_FAST)
def _forward_nhwc_dense(begin: int, end: int, x: Any, w: Any, b: Any, y: Any, rows: Any, cols: Any, sh: int,
                        sw: int, ph: int, pw: int, stream: bool) -> None:  # pragma: no cover - compiled
    """``_forward_nhwc`` for m = 1, stride 1 and dilation 1 along the row, kw <= 3 (cols = 0, 1, …): every tile
    loads each input column once per kernel row (``_dense_tile_nhwc``)."""
    _forward_nhwc_rows(begin, end, x, w, b, y, rows, cols, sh, sw, ph, pw, stream, True, 1)


@njit(fastmath=_FAST)
def _forward_nhwc_dense2(begin: int, end: int, x: Any, w: Any, b: Any, y: Any, rows: Any, cols: Any, sh: int,
                         sw: int, ph: int, pw: int, stream: bool) -> None:  # pragma: no cover - compiled
    """``_forward_nhwc_dense`` for m = 2: a block of output channels reads its input channels with one load of
    LANES / 2 and a shuffle."""
    _forward_nhwc_rows(begin, end, x, w, b, y, rows, cols, sh, sw, ph, pw, stream, True, 2)


def _forward_nhwc_kernel(rows: Any, cols: Any, stride: int, multiplier: int) -> tuple[Any, Any, Any]:
    """(kernel, rows, cols) for the channels_last forward: a dense one for unrolled taps (``tap_offsets``' tuples)
    with m = 1 or 2, stride 1 and dilation 1 along the row, kw <= 3; else the general one, which takes the taps as
    arrays (one compilation per dtype for every size and geometry)."""
    if isinstance(cols, tuple) and stride == 1 and len(cols) <= 3 and cols[-1] == len(cols) - 1 and multiplier <= 2:
        return (_forward_nhwc_dense if multiplier == 1 else _forward_nhwc_dense2), rows, cols
    return (_forward_nhwc, *_taps(rows, cols))


@njit(fastmath=_FAST)
def _input_grad_nhwc(begin: int, end: int, g: Any, w: Any, gx: Any, sh: int, sw: int, dh: int, dw: int, ph: int,
                     pw: int) -> None:  # pragma: no cover - compiled
    """∂x[n, ih, iw, c] = Σ_{j, i, t} w[i, t, j, c] · ∂y[n, oh, ow, c·m + j] over the (oh, ow) with
    oh·sh + i·dh − ph = ih and ow·sw + t·dw − pw = iw (any stride), gathered; w (kh, kw, m, C). Tasks: input rows."""
    h_, w_, c_ = gx.shape[1], gx.shape[2], gx.shape[3]
    ho, wo, cm = g.shape[1], g.shape[2], g.shape[3]
    kh, kw, m = w.shape[0], w.shape[1], w.shape[2]
    g1, w1, gx1 = g.ravel(), w.ravel(), gx.ravel()
    acc = block(gx1)
    for task in range(begin, end):
        n = task // h_
        ih = task - n * h_
        for iw in range(w_):
            for c0 in range(0, c_, LANES):
                mask = lanes(0, min(LANES, c_ - c0))
                fill(acc, 0.0)
                for i in range(kh):
                    oh = ih + ph - i * dh
                    if sh != 1:  # (an integer division costs more than the taps' FMAs: none at stride 1)
                        oh = oh // sh if oh % sh == 0 else -1
                    if oh < 0 or oh >= ho:
                        continue
                    for t in range(kw):
                        ow = iw + pw - t * dw
                        if sw != 1:
                            ow = ow // sw if ow % sw == 0 else -1
                        if ow < 0 or ow >= wo:
                            continue
                        at = ((n * ho + oh) * wo + ow) * cm + c0 * m
                        for j in range(m):
                            if m == 1:
                                fma_vv(acc, w1, (i * kw + t) * c_ + c0, g1, at, mask)
                            else:
                                fma_vv_step(acc, w1, ((i * kw + t) * m + j) * c_ + c0, g1, at + j, m, mask)
                store(acc, gx1, (task * w_ + iw) * c_ + c0, mask)


@njit(fastmath=_FAST)
def _weight_grad_nhwc_dense(begin: int, end: int, x: Any, g: Any, partial: Any, rows_per_chunk: int, rows: Any,
                            cols: Any, ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """``_weight_grad_nhwc`` for m = 1, stride 1, dilation 1, kw <= 3 (rows, cols = 0 … k − 1, unrolled tuples): per
    output row, block of LANES channels and kernel row i, the kw taps' accumulators (and the bias's, with i = 0) stay
    in registers over the row, then are added to partial (chunks, kh + 1, kw, 1, C), zeroed by the caller. Row by
    row, so the rows ∂y pairs with are read while in cache; along the row, tiles of _TILE positions of ∂y are loaded
    once and each input column once, feeding every tap that pairs them (columns in the padding and positions past
    the row skipped). Each tap keeps _SPLIT accumulators (position p adds to p mod _SPLIT), summed at the row's end:
    _SPLIT independent chains of fused multiply-adds, not one chain as long as the row."""
    n_, h_, w_, c_ = x.shape
    ho, wo = g.shape[1], g.shape[2]
    kh, kw = len(rows), len(cols)
    x1, g1, p1 = x.ravel(), g.ravel(), partial.ravel()
    acc, gt, xv = tile(x1, _SPLIT_ACCUMULATORS), tile(g1, _TILE), block(x1)
    bias = 3 * _SPLIT  # the bias's accumulators follow the three taps'
    for k in range(begin, end):
        base = k * (kh + 1) * kw * c_
        for row in range(k * rows_per_chunk, min(n_ * ho, (k + 1) * rows_per_chunk)):
            n = row // ho
            oh = row - n * ho
            for c0 in range(0, c_, LANES):
                mask = lanes(0, min(LANES, c_ - c0))
                for i in range(kh):
                    ih = oh + rows[i] - ph
                    if (ih < 0 or ih >= h_) and i > 0:
                        continue
                    for a in range(_SPLIT_ACCUMULATORS):
                        fill_at(acc, a * LANES, 0.0)
                    for ow0 in range(0, wo, _TILE):
                        valid = min(_TILE, wo - ow0)
                        for p in range(_TILE):
                            if p < valid:
                                load_at(gt, p * LANES, g1, (row * wo + ow0 + p) * c_ + c0, mask)
                                if i == 0:
                                    add_at(acc, (bias + p % _SPLIT) * LANES, gt, p * LANES)
                        if 0 <= ih < h_:
                            at = ((n * h_ + ih) * w_ + ow0 - pw) * c_ + c0
                            if valid == _TILE and ow0 >= pw and ow0 - pw + _TILE + kw - 1 <= w_:  # no edge: no test
                                for u in range(_TILE + kw - 1):
                                    load(xv, x1, at + u * c_, mask)
                                    for t in range(kw):
                                        if 0 <= u - t < _TILE:  # constants once unrolled
                                            fma_at(acc, (t * _SPLIT + (u - t) % _SPLIT) * LANES, gt,
                                                   (u - t) * LANES, xv, 0)
                            else:
                                for u in range(_TILE + kw - 1):
                                    if 0 <= ow0 - pw + u < w_:
                                        load(xv, x1, at + u * c_, mask)
                                        for t in range(kw):
                                            if 0 <= u - t < _TILE and u - t < valid:
                                                fma_at(acc, (t * _SPLIT + (u - t) % _SPLIT) * LANES, gt,
                                                       (u - t) * LANES, xv, 0)
                    for t in range(4):  # the split sums added up; then partial[k, i, t] += the taps' and the bias's
                        for r in range(1, _SPLIT):
                            add_at(acc, t * _SPLIT * LANES, acc, (t * _SPLIT + r) * LANES)
                    for t in range(kw):
                        load(xv, p1, base + (i * kw + t) * c_ + c0, mask)
                        add_at(acc, t * _SPLIT * LANES, xv, 0)
                        store_at(acc, t * _SPLIT * LANES, p1, base + (i * kw + t) * c_ + c0, mask)
                    if i == 0:  # partial[k, kh, 0]
                        load(xv, p1, base + kh * kw * c_ + c0, mask)
                        add_at(acc, bias * LANES, xv, 0)
                        store_at(acc, bias * LANES, p1, base + kh * kw * c_ + c0, mask)


@njit(fastmath=_FAST)
def _weight_grad_nhwc(begin: int, end: int, x: Any, g: Any, partial: Any, rows_per_chunk: int, rows: Any, cols: Any,
                      sh: int, sw: int, ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """partial[k, i, t, j, c] = Σ ∂y[n, oh, ow, c·m + j] · x[n, ih, iw, c] over the output rows (n, oh) of chunk k,
    partial[k, kh, 0, j, c] = Σ ∂y[n, oh, ow, c·m + j] (the bias). Tasks: chunks of rows; partial
    (chunks, kh + 1, kw, m, C) zeroed by the caller, summed over the chunks by torch. Along a row, each ∂y block is
    loaded once and feeds one register accumulator per tap (up to 8 taps of a kernel row at a time)."""
    n_, h_, w_, c_ = x.shape
    ho, wo, cm = g.shape[1], g.shape[2], g.shape[3]
    kh, kw = len(rows), len(cols)
    m = partial.shape[3]
    x1, g1, p1 = x.ravel(), g.ravel(), partial.ravel()
    a0, a1, a2, a3, a4, a5, a6, a7 = block(x1), block(x1), block(x1), block(x1), block(x1), block(x1), block(x1), block(x1)
    gb = block(g1)
    for k in range(begin, end):
        base = k * (kh + 1) * kw * m * c_
        for row in range(k * rows_per_chunk, min(n_ * ho, (k + 1) * rows_per_chunk)):
            n = row // ho
            oh = row - n * ho
            for i in range(kh):
                ih = oh * sh + rows[i] - ph
                if ih < 0 or ih >= h_:
                    continue
                for j in range(m):
                    for c0 in range(0, c_, LANES):
                        mask = lanes(0, min(LANES, c_ - c0))
                        for t0 in range(0, kw, 8):  # one pass when kw <= 8
                            taps = kw if kw <= 8 else min(8, kw - t0)
                            slot = base + ((i * kw + t0) * m + j) * c_ + c0  # tap t0 + t is t·m·C further
                            for t in range(taps):
                                load(_pick(a0, a1, a2, a3, a4, a5, a6, a7, t), p1, slot + t * m * c_, mask)
                            for ow in range(wo):
                                at_g = (row * wo + ow) * cm + c0 * m + j
                                if m == 1:
                                    load(gb, g1, at_g, mask)
                                else:
                                    load_step(gb, g1, at_g, m, mask)
                                for t in range(taps):
                                    iw = ow * sw + cols[t0 + t] - pw
                                    if 0 <= iw < w_:
                                        fma_block(_pick(a0, a1, a2, a3, a4, a5, a6, a7, t), gb, x1,
                                                  ((n * h_ + ih) * w_ + iw) * c_ + c0, mask)
                            for t in range(taps):
                                store(_pick(a0, a1, a2, a3, a4, a5, a6, a7, t), p1, slot + t * m * c_, mask)
            for j in range(m):
                for c0 in range(0, c_, LANES):
                    mask = lanes(0, min(LANES, c_ - c0))
                    slot = base + (kh * kw * m + j) * c_ + c0
                    load(a0, p1, slot, mask)
                    for ow in range(wo):
                        at_g = (row * wo + ow) * cm + c0 * m + j
                        if m == 1:
                            fma(a0, 1.0, g1, at_g, mask)
                        else:
                            fma_step(a0, 1.0, g1, at_g, m, mask)
                    store(a0, p1, slot, mask)


# --- torch side ----------------------------------------------------------------------------------------------------

Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]  # stride, dilation, pad, out


def window_choice(weight_shape: tuple[int, ...], multiplier: int, stride: tuple[int, ...],
                  dilation: tuple[int, ...], padding_pairs: tuple[tuple[int, int], ...]) -> bool:
    """Whether ``window`` changes what runs for a 2-D depthwise conv on channels_last data: a 3×3 'same' with
    m = 1 (``same_3x3``), whose register windows spill when compiled for 16 vector registers (AVX2)."""
    return (len(weight_shape) == 4 and weight_shape[1] == 1 and multiplier == 1 and len(stride) == 2
            and same_3x3(*weight_shape[2:], *stride, *dilation, padding_pairs[1][0]))


def tap_offsets(kernel: tuple[int, int], dilation: tuple[int, int], dtype: torch.dtype) -> tuple[Any, Any]:
    """The taps' offsets i·d_h and t·d_w: tuples (tap loops unrolled, one compilation per kernel size) for the fp32
    kernel sizes in ``UNROLLED``, else int64 arrays (one compilation for every size)."""
    rows = tuple(i * dilation[0] for i in range(kernel[0]))
    cols = tuple(t * dilation[1] for t in range(kernel[1]))
    if dtype == torch.float32 and tuple(kernel) in UNROLLED:
        return rows, cols
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def _taps(rows: Any, cols: Any) -> tuple[np.ndarray, np.ndarray]:
    """The tap offsets as int64 arrays (the kernels that take them so compile once per dtype)."""
    return np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)


def _nhwc(t: torch.Tensor) -> bool:
    """A 4-D tensor laid out NHWC (and not also NCHW-contiguous)."""
    return not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _as_nhwc(t: torch.Tensor) -> np.ndarray:
    return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1).numpy()


def streams(y: torch.Tensor) -> bool:
    """Whether the channels_last forward writes y (channels_last) with non-temporal stores: y larger than
    ``STREAM_BYTES`` (it cannot stay in the writing cores' L2 caches anyway; streaming skips reading every line
    before it is written) and every block of LANES channels on a 64-byte boundary."""
    return y.numel() * y.element_size() >= STREAM_BYTES and y.shape[1] % LANES == 0 and y.data_ptr() % 64 == 0


def _forward_plan(nhwc: bool, n: int, c: int, cm: int, ho: int, kernel_size: tuple[int, int], stride: tuple[int, int],
                  dilation: tuple[int, int], pad: tuple[int, int], dtype: torch.dtype,
                  window: bool) -> tuple[Any, int, tuple[Any, ...], bool]:
    """(kernel, tasks, its arguments after (x, w, b, y), whether a ``stream`` flag follows them) for the forward
    correlation of N × C → C·m channels with Ho output rows, NCHW (w (C·m, kh, kw)) or channels_last
    (w (kh·kw, C·m)).
    A 3×3 'same' (``same_3x3``, m = 1) runs ``depthwise_same``'s register windows: always on NCHW (faster compiled
    for AVX-512 and for AVX2: ``benchmarks/bench_register_windows.py``), on channels_last if ``window`` (else the
    position tiles; the layer times both)."""
    (kh, kw), (sh, sw), (dh, dw), (ph, pw) = kernel_size, stride, dilation, pad
    rows, cols = tap_offsets((kh, kw), (dh, dw), dtype)
    same = same_3x3(kh, kw, sh, sw, dh, dw, pw) and cm == c
    if nhwc:
        if same and window:
            return correlate_nhwc_same, n * -(-ho // WINDOW_ROWS), (ph,), True
        kernel, rows, cols = _forward_nhwc_kernel(rows, cols, sw, cm // c)
        return kernel, n * ho, (rows, cols, sh, sw, ph, pw), True
    if same:
        return correlate_nchw_same, n * cm, (ph,), False
    if sw == 1 and cm == c:
        return _correlate_nchw_rows, n * cm, (*_taps(rows, cols), sh, ph, pw), False
    return _correlate_nchw, n * c, (1, rows, cols, sh, sw, ph, pw), False


def forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geometry: Geometry,
            window: bool = True) -> torch.Tensor:
    """The depthwise conv of x (N, C, H, W), NCHW- or channels_last-contiguous, by the kernels (no autograd)."""
    stride, dilation, pad, (ho, wo) = geometry
    n, c = x.shape[:2]
    cm, _, kh, kw = weight.shape
    b = (torch.zeros(cm, dtype=x.dtype) if bias is None else bias).contiguous().numpy()
    nhwc = _nhwc(x)
    kernel, tasks, args, streamed = _forward_plan(nhwc, n, c, cm, ho, (kh, kw), stride, dilation, pad, x.dtype, window)
    if nhwc:
        y = torch.empty((n, cm, ho, wo), dtype=x.dtype, memory_format=torch.channels_last)
        run_tasks(kernel, tasks, _as_nhwc(x), weight.reshape(cm, kh * kw).t().contiguous().numpy(), b,
                  y.permute(0, 2, 3, 1).numpy(), *args, *((streams(y),) if streamed else ()), work=y.numel())
    else:
        y = torch.empty((n, cm, ho, wo), dtype=x.dtype)
        run_tasks(kernel, tasks, x.contiguous().numpy(), weight.reshape(cm, kh, kw).numpy(), b, y.numpy(), *args,
                  work=y.numel())
    return y


def backward(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, geometry: Geometry,
             needs: tuple[bool, bool, bool], window: bool = True) -> tuple[torch.Tensor | None, ...]:
    """(∂x, ∂w, ∂b) of the depthwise conv for the upstream gradient ``grad`` (those not in ``needs`` are None);
    ``window`` as in ``_forward_plan`` (∂x of a channels_last 3×3 'same' is its correlation)."""
    (sh, sw), (dh, dw), (ph, pw), _ = geometry
    n, c, h, w = x.shape
    cm, _, kh, kw = weight.shape
    m = cm // c
    need_x, need_w, need_b = needs
    grad_x = grad_w = grad_b = None
    if _nhwc(x) and m > 1 and sh == sw == 1:
        return _backward_per_multiplier(x, weight, grad, geometry, needs)
    if _nhwc(x):
        g = _as_nhwc(grad)
        if need_x:
            grad_x = torch.empty((n, c, h, w), dtype=x.dtype, memory_format=torch.channels_last)
            if m == 1 and sh == 1 and sw == 1:  # ∂x = ∂y ⋆ flip(w), padded by d·(k − 1) − pad: the forward kernel
                flipped = weight.reshape(c, kh, kw).flip(1, 2).reshape(c, kh * kw).t().contiguous().numpy()
                kernel, tasks, args, streamed = _forward_plan(True, n, c, c, h, (kh, kw), (1, 1), (dh, dw),
                                                              (dh * (kh - 1) - ph, dw * (kw - 1) - pw), x.dtype, window)
                run_tasks(kernel, tasks, g, flipped, np.zeros(c, dtype=g.dtype), grad_x.permute(0, 2, 3, 1).numpy(),
                          *args, *((streams(grad_x),) if streamed else ()), work=grad_x.numel())
            else:
                taps = weight.reshape(c, m, kh, kw).permute(2, 3, 1, 0).contiguous().numpy()  # (kh, kw, m, C)
                run_tasks(_input_grad_nhwc, n * h, g, taps, grad_x.permute(0, 2, 3, 1).numpy(), sh, sw, dh, dw, ph,
                          pw, work=grad_x.numel())
        if need_w or need_b:
            rows = n * g.shape[1]
            tiles = n * -(-g.shape[1] // WINDOW_ROWS)  # the window kernel's tasks: tiles of WINDOW_ROWS rows
            same = m == 1 and same_3x3(kh, kw, sh, sw, dh, dw, pw)
            chunks = max(1, min(tiles if same else rows, 4 * torch.get_num_threads()))
            partial = torch.zeros((chunks, kh + 1, kw, m, c), dtype=x.dtype)
            offsets = tap_offsets((kh, kw), (dh, dw), x.dtype)
            if same:  # faster than the kernels below compiled for AVX-512 and for AVX2
                run_tasks(weight_grad_nhwc_same, chunks, _as_nhwc(x), g, partial.numpy(), -(-tiles // chunks), ph,
                          work=g.size)
            elif isinstance(offsets[0], tuple) and m == 1 and sh == sw == dh == dw == 1 and kw <= 3:
                run_tasks(_weight_grad_nhwc_dense, chunks, _as_nhwc(x), g, partial.numpy(), -(-rows // chunks),
                          *offsets, ph, pw, work=g.size)
            else:
                run_tasks(_weight_grad_nhwc, chunks, _as_nhwc(x), g, partial.numpy(), -(-rows // chunks), *offsets,
                          sh, sw, ph, pw, work=g.size)
            sums = partial.sum(0)  # (kh + 1, kw, m, C)
            grad_w = sums[:kh].permute(3, 2, 0, 1).reshape(cm, 1, kh, kw)
            grad_b = sums[kh, 0].t().reshape(cm)
    else:
        g = grad.contiguous().numpy()
        if need_x:
            grad_x = torch.empty((n, c, h, w), dtype=x.dtype)
            taps = weight.reshape(cm, kh, kw)
            if sh == 1 and sw == 1:  # ∂x = Σ_j ∂y_j ⋆ flip(w_j), padded by d·(k − 1) − pad
                rows, cols = tap_offsets((kh, kw), (dh, dw), x.dtype)
                flipped, zeros = taps.flip(1, 2).contiguous().numpy(), np.zeros(c, dtype=g.dtype)
                if m == 1:
                    kernel, tasks, args, _ = _forward_plan(False, n, c, c, h, (kh, kw), (1, 1), (dh, dw),
                                                           (dh * (kh - 1) - ph, dw * (kw - 1) - pw), x.dtype, window)
                    run_tasks(kernel, tasks, g, flipped, zeros, grad_x.numpy(), *args, work=grad_x.numel())
                else:
                    run_tasks(_correlate_nchw, n * c, g, flipped, zeros, grad_x.numpy(), m, rows, cols, 1, 1,
                              dh * (kh - 1) - ph, dw * (kw - 1) - pw, work=grad_x.numel())
            else:
                run_tasks(_scatter_input_grad_nchw, n * c, g, taps.contiguous().numpy(), grad_x.numpy(), sh, sw, dh, dw,
                          ph, pw, work=grad_x.numel())
        if need_w or need_b:
            partial = torch.empty((n, cm, kh * kw + 1), dtype=x.dtype)
            rows, cols = tap_offsets((kh, kw), (dh, dw), x.dtype)
            if isinstance(rows, tuple) and m == 1 and sh == sw == dh == 1 and kh <= 3 and kw <= 3:
                run_tasks(_weight_grad_nchw_rows, n * cm, x.contiguous().numpy(), g, partial.numpy(), rows, cols, ph,
                          pw, work=g.size)
            else:
                masks = _column_masks(w, g.shape[3], kw, sw, dw, pw)
                run_tasks(_weight_grad_nchw, n * cm, x.contiguous().numpy(), g, partial.numpy(), masks, rows, cols,
                          sh, sw, ph, pw, work=g.size)
            sums = partial.sum(0)
            grad_w = sums[:, :kh * kw].reshape(cm, 1, kh, kw)
            grad_b = sums[:, kh * kw]
    return grad_x, grad_w if need_w else None, grad_b if need_b else None


def _backward_per_multiplier(x: torch.Tensor, weight: torch.Tensor, grad: torch.Tensor, geometry: Geometry,
                             needs: tuple[bool, bool, bool]) -> tuple[torch.Tensor | None, ...]:
    """``backward`` for m > 1 on channels_last data at stride 1 as m backwards of m = 1 (the tiled kernels), one per
    j on ∂y's channels c·m + j (de-interleaved once): ∂x = Σ_j ∂x_j, ∂w[c·m + j] = ∂w_j[c], ∂b[c·m + j] = ∂b_j[c]."""
    n, c = x.shape[:2]
    cm, _, kh, kw = weight.shape
    m = cm // c
    ho, wo = grad.shape[2:]
    split = grad.permute(0, 2, 3, 1).reshape(n, ho, wo, c, m).permute(4, 0, 1, 2, 3).contiguous()  # (m, N, Ho, Wo, C)
    taps = weight.reshape(c, m, 1, kh, kw)
    parts = [backward(x, taps[:, j].contiguous(), split[j].permute(0, 3, 1, 2), geometry, needs) for j in range(m)]
    grad_x = None
    if needs[0]:
        grad_x = parts[0][0]
        for part in parts[1:]:
            grad_x.add_(part[0])
    grad_w = torch.stack([p[1] for p in parts], 1).reshape(cm, 1, kh, kw) if needs[1] else None
    grad_b = torch.stack([p[2] for p in parts], 1).reshape(cm) if needs[2] else None
    return grad_x, grad_w, grad_b


class DepthwiseConv2dFunction(KernelFunction):
    """y = depthwise_conv(x, w, b) on x (N, C, H, W) NCHW- or channels_last-contiguous (the output in the same
    format), w (C·m, 1, kh, kw), b (C·m,) or None; the backward runs the kernels too (under ``create_graph``, and
    with a forward-mode tangent, ``reference``: ``derivatives``). ``window`` as in ``_forward_plan``."""

    @staticmethod
    def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geometry: Geometry,
                  window: bool = True) -> torch.Tensor:
        """The same y by ``F.conv2d`` (groups = C) on x padded by (before, after) per dim, 'after' from the
        output size."""
        del window
        (sh, sw), (dh, dw), (ph, pw), (ho, wo) = geometry
        kh, kw = weight.shape[2:]
        pairs = ((ph, after_padding(x.shape[2], kh, sh, dh, ph, ho)),
                 (pw, after_padding(x.shape[3], kw, sw, dw, pw, wo)))
        return padded_conv(x, weight, bias, (sh, sw), pairs, (dh, dw), x.shape[1])

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, geometry: Geometry,
                window: bool = True) -> torch.Tensor:
        ctx.save_for_backward(x, weight, bias)  # the caller's tensors: ``reference`` differentiates through them
        ctx.geometry, ctx.window = geometry, window
        ctx.strides = dense_strides(weight), None if bias is None else dense_strides(bias)
        return forward(x.detach(), weight.detach(), None if bias is None else bias.detach(), geometry, window)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, DepthwiseConv2dFunction.reference, (x, weight, bias, ctx.geometry, ctx.window),
                                  grad)
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2] and bias is not None)
        grad_x, grad_w, grad_b = backward(x.detach(), weight.detach(), grad.detach(), ctx.geometry, needs, ctx.window)
        grad_w, grad_b = in_layout(grad_w, ctx.strides[0]), in_layout(grad_b, ctx.strides[1])
        return grad_x, grad_w, grad_b, None, None


def dense(x: torch.Tensor) -> torch.Tensor:
    """x itself when NCHW- or channels_last-contiguous, else a copy in the layout its strides are closest to (a
    channel slice of channels_last data stays channels_last, as torch's convs keep it)."""
    if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return x
    nhwc_like = x.dim() == 4 and x.stride(1) < x.stride(3)
    return x.contiguous(memory_format=torch.channels_last if nhwc_like else torch.contiguous_format)


def output_size(size: int, kernel: int, stride: int, dilation: int, before: int, after: int) -> int:
    """⌊(size + before + after − d·(k − 1) − 1) / s⌋ + 1."""
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, ...],
                   padding_pairs: tuple[tuple[int, int], ...], dilation: tuple[int, ...],
                   window: bool = True) -> torch.Tensor:
    """Depthwise 1-D or 2-D conv (groups = C, weight (C·m, 1, *k)) with zero (before, after) padding per dim, on
    NCHW / NCL data or channels_last / NLC data; the output comes back in the input's layout. ``window``: a
    channels_last 3×3 'same' conv runs ``depthwise_same``'s register windows (else the position tiles)."""
    if x.dim() == 3:  # (N, C, L) as (N, C, 1, L): NCL stays NCHW-contiguous, NLC becomes channels_last
        y = depthwise_conv(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, *stride), ((0, 0), *padding_pairs),
                           (1, *dilation), window)
        return y.squeeze(2)
    x = dense(x)
    kh, kw = weight.shape[2:]
    out = tuple(output_size(x.shape[2 + d], (kh, kw)[d], stride[d], dilation[d], *padding_pairs[d]) for d in range(2))
    geometry = (tuple(stride), tuple(dilation), tuple(lo for lo, _ in padding_pairs), out)
    return DepthwiseConv2dFunction.apply(x, weight, bias, geometry, window)


Launch = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _generic(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, stride: tuple[int, ...],
             padding_pairs: tuple[tuple[int, int], ...], dilation: tuple[int, ...], window: bool) -> torch.Tensor:
    return depthwise_conv(x, weight, bias, stride, padding_pairs, dilation, window)


@functools.lru_cache(maxsize=512)
def planned_depthwise_conv(shape: tuple[int, ...], strides: tuple[int, ...], dtype: torch.dtype,
                           weight_shape: tuple[int, ...], stride: tuple[int, ...],
                           padding_pairs: tuple[tuple[int, int], ...], dilation: tuple[int, ...], grad: bool,
                           threads: int, window: bool = True) -> Launch:
    """f(x, weight, bias) = ``depthwise_conv(x, weight, bias, stride, padding_pairs, dilation)`` for inputs of this
    shape, strides and dtype, in this grad mode and thread count, with what depends only on them decided here once:
    the layout, the output size, the taps, the kernel and its split into chunks. Without grad on dense data
    (NCHW / NCL, channels_last / NLC) a call is one allocation, the numpy views and the kernel (inline in the
    calling thread when the work is one chunk; ``numpy(force=True)``: the CPU tensor's own memory, detached by
    torch in one step); with grad, the autograd function on the planned geometry; an input with a forward-mode
    tangent, ``depthwise_conv`` (whose Function hands it to torch's conv). ``window`` as in ``depthwise_conv``."""
    del threads  # part of the key only: ``tasks_runner`` reads torch.get_num_threads() now
    generic: Launch = functools.partial(_generic, stride=stride, padding_pairs=padding_pairs, dilation=dilation,
                                        window=window)
    dim = len(shape) - 2
    if dim not in (1, 2) or len(weight_shape) != dim + 2:
        return generic
    probe = torch.empty_strided(shape, strides, dtype=dtype, device="meta")
    if dim == 1:  # (N, C, L) as (N, C, 1, L), as ``depthwise_conv`` does
        probe = probe.unsqueeze(2)
        stride, padding_pairs, dilation = (1, *stride), ((0, 0), *padding_pairs), (1, *dilation)
    nchw = probe.is_contiguous()
    nhwc = not nchw and probe.is_contiguous(memory_format=torch.channels_last)
    if not (nchw or nhwc):
        return generic  # strided data: ``dense`` copies it every call
    n, c, h, w = probe.shape
    cm, kh, kw = weight_shape[0], *((1, *weight_shape[2:]) if dim == 1 else weight_shape[2:])
    (sh, sw), (dh, dw), (ph, pw) = stride, dilation, (lo for lo, _ in padding_pairs)
    ho, wo = (output_size(size, k, s, d, *pair)
              for size, k, s, d, pair in zip((h, w), (kh, kw), stride, dilation, padding_pairs))
    if grad:
        geometry = ((sh, sw), (dh, dw), (ph, pw), (ho, wo))
        if dim == 1:
            return lambda x, w, b: DepthwiseConv2dFunction.apply(x.unsqueeze(2), w.unsqueeze(2), b, geometry,
                                                                 window).squeeze(2)
        return lambda x, w, b: DepthwiseConv2dFunction.apply(x, w, b, geometry, window)
    kernel, tasks, args, streamed = _forward_plan(nhwc, n, c, cm, ho, (kh, kw), (sh, sw), (dh, dw), (ph, pw), dtype,
                                                  window)
    run = tasks_runner(kernel, tasks, work=n * cm * ho * wo)
    zeros = torch.zeros(cm, dtype=dtype).numpy()
    out4 = (n, cm, ho, wo)
    if nchw:
        x4, w3, out = (n, c, h, w), (cm, kh, kw), (out4 if dim == 2 else (n, cm, wo))

        def launch_nchw(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            if forward_ad._current_level >= 0 and has_tangent((x, weight, bias)):  # a tangent: torch's ops
                return generic(x, weight, bias)
            y = torch.empty(out, dtype=dtype)
            run(x.numpy(force=True).reshape(x4), weight.numpy(force=True).reshape(w3),
                zeros if bias is None else bias.numpy(force=True), y.numpy().reshape(out4), *args)
            return y

        return launch_nchw
    big = streamed and n * cm * ho * wo * probe.element_size() >= STREAM_BYTES and cm % LANES == 0  # ``streams``
    flag = (lambda y: (big and y.data_ptr() % 64 == 0,)) if streamed else (lambda y: ())  # less the alignment
    taps = kh * kw
    if dim == 2:
        def launch_nhwc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            if forward_ad._current_level >= 0 and has_tangent((x, weight, bias)):  # a tangent: torch's ops
                return generic(x, weight, bias)
            y = torch.empty(out4, dtype=dtype, memory_format=torch.channels_last)
            run(x.numpy(force=True).transpose(0, 2, 3, 1),
                np.ascontiguousarray(weight.numpy(force=True).reshape(cm, taps).T),
                zeros if bias is None else bias.numpy(force=True), y.numpy().transpose(0, 2, 3, 1), *args, *flag(y))
            return y

        return launch_nhwc

    def launch_nlc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if forward_ad._current_level >= 0 and has_tangent((x, weight, bias)):  # a tangent: torch's ops
            return generic(x, weight, bias)
        y = torch.empty((n, wo, cm), dtype=dtype)  # (N, L, C): the (N, C, L) output's NLC storage
        run(x.numpy(force=True).transpose(0, 2, 1).reshape(n, 1, w, c),
            np.ascontiguousarray(weight.numpy(force=True).reshape(cm, taps).T),
            zeros if bias is None else bias.numpy(force=True), y.numpy().reshape(n, 1, wo, cm), *args, *flag(y))
        return y.permute(0, 2, 1)

    return launch_nlc
