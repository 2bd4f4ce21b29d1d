"""A depthwise (kh×1) conv followed by a depthwise (1×kw) conv, fused on the CPU (numba): flattened convolution's
V∘H stages, and any such separable pair. NCHW and channels_last, fp32 / fp64.

    v[n, c, r, w] = b_V[c] + Σ_i w_V[c, i] · z[n, c, r·s_h + i·d_h − p_h, w]          (V: k_h×1, per channel)
    y[n, c, r, q] = b_H[c] + Σ_t w_H[c, t] · v[n, c, r, q·s_w + t·d_w − p_w]           (H: 1×k_w, per channel)

v never reaches y's memory, so the pair moves one input and one output; H's padding pads v with zeros, not b_V.
NCHW, one task per (sample, channel) plane: for 3×1 then 1×3 at stride 1 with H padded by 1 before (flattened's
pair; ``_pair_nchw_same``) v never leaves the registers: each row of a tile keeps three consecutive blocks of v and H
reads them through constant shuffles. At H's stride 1 otherwise (``_pair_nchw_rows``) a tile of 4 rows of v × 4
blocks of LANES columns accumulates in registers and goes to a zero-padded buffer of 4 rows that H reads 4 blocks at
a time; other strides go one row and one vector at a time (``_pair_nchw``). channels_last, one task per output row,
LANES channels at a time: at H's stride 1 and dilation 1 with kw <= 3 (``_pair_nhwc_dense``) v stays in registers
(each tile of 8 outputs computes the 10 positions of v it reads); otherwise V's row goes to a zero-padded row buffer
first (``_pair_nhwc``); flattened's pair (``_pair_nhwc_same``) walks the columns of a tile of 4 output rows with
v's values of the column and the three open outputs of each row in registers. Large channels_last outputs are
written with non-temporal stores, as in the depthwise kernel. The backward recomputes v with the depthwise kernel
and runs the depthwise kernels' backward for H, then V.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .depthwise import backward as depthwise_backward
from .depthwise import dense, output_size, streams
from .depthwise import forward as depthwise_forward
from .depthwise_same import OPEN_SLOTS, WINDOW_ROWS, close_column, same_3x3, window_tile
from .derivatives import KernelFunction, graph_backward, padded_conv
from .grad_layout import dense_strides, in_layout
from .numba_runtime import njit, run_tasks
from .simd import (
    FULL,
    LANES,
    block,
    borrowed,
    copy_at,
    fill,
    fma,
    fma_even,
    fma_step,
    fill_at,
    fma_at,
    fma_vv_at,
    fma_window_at,
    keep_alive,
    keep_at,
    lanes,
    load,
    load_at,
    prefetch,
    store,
    store_at,
    store_fence,
    stream_at,
    tile,
)

_FAST = {"contract"}
_ROWS, _BLOCKS = 4, 4  # NCHW at H's stride 1: a tile of 4 rows of v × 4 blocks of LANES columns in registers
_ACCUMULATORS = _ROWS * _BLOCKS
_SAME_ROWS = 4  # NCHW 3×1 then 1×3, v in registers: rows of v per tile
_V_SLOTS = 3 * _SAME_ROWS  # three consecutive blocks of v for each tile row
_TILE = 8  # channels_last: positions along a row per register tile (one block of LANES channels each)
_HALO = 2  # channels_last, v in registers: the extra positions of v a tile reads (kw <= 3)
_WINDOW, _H_TAPS = _TILE + _HALO, _HALO + 1
_AHEAD = 2 * _TILE  # positions ahead of the tile whose input the channels_last kernel prefetches


@njit(fastmath=_FAST)
def _pair_nchw(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any, sh: int, dh: int, ph: int,
               sw: int, dw: int, pw: int) -> None:  # pragma: no cover - compiled
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
def _pair_nchw_rows(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any, rows: Any, sh: int,
                    ph: int, dw: int, pw: int) -> None:  # pragma: no cover - compiled
    """The pair at H's stride 1 (any V stride, any dilations; rows: V's tap rows i·d_h, int64). z (N, C, H, W),
    wv (C, kh), bv (C,), wh (C, kw), bh (C,), y (N, C, Hv, Wo), C-contiguous; tasks: (n, c) planes. A tile of _ROWS
    rows of v × _BLOCKS blocks of LANES columns accumulates in registers (each input vector loaded once for every
    tile row that reads it) and goes to a zero-padded buffer of _ROWS rows; H then reads the buffer _BLOCKS output
    blocks at a time, each tap's weight broadcast once for them (the general kernel tests every tap's row and
    computes one vector at a time)."""
    c_, h_, w_ = z.shape[1], z.shape[2], z.shape[3]
    ho, wo = y.shape[2], y.shape[3]
    kh, kw = len(rows), wh.shape[1]
    z1, y1 = z.ravel(), y.ravel()
    chunk = _BLOCKS * LANES
    v_chunks, h_chunks = (w_ + chunk - 1) // chunk, (wo + chunk - 1) // chunk
    width = max(pw + v_chunks * chunk, h_chunks * chunk + (kw - 1) * dw)  # every store of v and read of H inside
    width = (width + LANES - 1) // LANES * LANES
    span = (_ROWS - 1) * sh + rows[kh - 1] + 1  # input rows a tile reads: tile row j, tap i read j·sh + rows[i]
    tap_of = np.full(span * _ROWS, -1, dtype=np.int64)  # tap_of[u·_ROWS + j]: the tap by which tile row j reads u
    for i in range(kh):
        for j in range(_ROWS):
            tap_of[(j * sh + rows[i]) * _ROWS + j] = i
    masks = np.empty(v_chunks * _BLOCKS, dtype=np.int64)  # the input columns of each block of v
    for q in range(v_chunks * _BLOCKS):
        masks[q] = lanes(0, min(LANES, max(0, w_ - q * LANES)))
    acc, xt, wt = tile(z1, _ACCUMULATORS), tile(z1, _BLOCKS), block(z1)
    buffer = np.zeros(_ROWS * width + LANES, dtype=z.dtype)  # zero outside the columns v is written to
    skip = (-(buffer.ctypes.data // z.itemsize)) % LANES  # buffer rows start on a 64-byte boundary (fp32)
    vb = buffer[skip:skip + _ROWS * width]
    for task in range(begin, end):
        c = task % c_
        for oh0 in range(0, ho, _ROWS):
            top = oh0 * sh - ph  # the input row of the tile's u = 0
            for q0 in range(0, v_chunks * _BLOCKS, _BLOCKS):
                for k in range(_ACCUMULATORS):
                    fill_at(acc, k * LANES, bv[c])
                for u in range(span):
                    ih = top + u
                    if 0 <= ih < h_:
                        base = (task * h_ + ih) * w_ + q0 * LANES
                        for q in range(_BLOCKS):
                            load_at(xt, q * LANES, z1, base + q * LANES, masks[q0 + q])
                        for j in range(_ROWS):
                            i = tap_of[u * _ROWS + j]
                            if i >= 0:
                                fill(wt, wv[c, i])
                                for q in range(_BLOCKS):
                                    fma_at(acc, (j * _BLOCKS + q) * LANES, wt, 0, xt, q * LANES)
                for j in range(_ROWS):
                    for q in range(_BLOCKS):
                        store_at(acc, (j * _BLOCKS + q) * LANES, vb, j * width + pw + (q0 + q) * LANES, masks[q0 + q])
            for j in range(min(_ROWS, ho - oh0)):
                row = (task * ho + oh0 + j) * wo
                for q0 in range(0, h_chunks * _BLOCKS, _BLOCKS):
                    for q in range(_BLOCKS):
                        fill_at(acc, q * LANES, bh[c])
                    for t in range(kw):
                        fill(wt, wh[c, t])
                        for q in range(_BLOCKS):
                            fma_vv_at(acc, q * LANES, wt, 0, vb, j * width + (q0 + q) * LANES + t * dw, FULL)
                    for q in range(_BLOCKS):
                        o = (q0 + q) * LANES
                        if o + LANES <= wo:
                            store_at(acc, q * LANES, y1, row + o, FULL)
                        elif o < wo:
                            store_at(acc, q * LANES, y1, row + o, lanes(0, wo - o))


@njit(fastmath=_FAST, inline="always")
def _same_step(vt: Any, vw: Any, ht: Any, xt: Any, acc: Any, z1: Any, y1: Any, bias_v: float, bias_h: float,
               v_at: int, v_mask: int, y_at: int, y_mask: int, top: int, h_: int, w_: int, wo: int, rows_left: int,
               checks: bool, v_on: bool, y_on: bool) -> None:  # pragma: no cover - compiled
    """One step of ``_pair_nchw_same`` along a tile: v's next block (into each row's slot 2) from the input block
    at v_at if v_on (else zero), then H's output block at y_at from each row's three blocks if y_on, then each row's
    blocks move down a slot. checks: test the tile's input and output rows (the tile is at a border)."""
    for j in range(_SAME_ROWS):
        fill_at(vt, (3 * j + 2) * LANES, bias_v if v_on else 0.0)
    if v_on:
        for u in range(_SAME_ROWS + 2):  # input row top + u feeds tile rows u − i (tap i)
            if not checks or 0 <= top + u < h_:
                load_at(xt, 0, z1, v_at + u * w_, v_mask)
                for i in range(3):
                    if 0 <= u - i < _SAME_ROWS:
                        fma_at(vt, (3 * (u - i) + 2) * LANES, vw, i * LANES, xt, 0)
        if v_mask != FULL:
            for j in range(_SAME_ROWS):
                keep_at(vt, (3 * j + 2) * LANES, v_mask)
    if y_on:
        for j in range(_SAME_ROWS):
            if not checks or j < rows_left:
                fill(acc, bias_h)
                fma_window_at(acc, 0, ht, 0, vt, (3 * j + 1) * LANES, -1)
                fma_window_at(acc, 0, ht, LANES, vt, (3 * j + 1) * LANES, 0)
                fma_window_at(acc, 0, ht, 2 * LANES, vt, (3 * j + 1) * LANES, 1)
                store(acc, y1, y_at + j * wo, y_mask)
    for j in range(_SAME_ROWS):
        copy_at(vt, (3 * j) * LANES, vt, (3 * j + 1) * LANES)
        copy_at(vt, (3 * j + 1) * LANES, vt, (3 * j + 2) * LANES)


@njit(fastmath=_FAST, inline="always")
def _same_tile(vt: Any, vw: Any, ht: Any, xt: Any, acc: Any, z1: Any, y1: Any, bias_v: float, bias_h: float,
               z_at: int, y_at: int, top: int, h_: int, w_: int, wo: int, rows_left: int,
               inside: bool) -> None:  # pragma: no cover - compiled
    """A tile of _SAME_ROWS output rows of ``_pair_nchw_same``, left to right: the steps where every load and store
    is a whole block (no masks; rows tested only for a tile not ``inside`` the plane), and at the row's two ends
    steps with masks and tests. Two copies of the step's code (compile time: a third copy, untested for the tiles
    inside, gained little)."""
    v_blocks, y_blocks = (w_ + LANES - 1) // LANES, (wo + LANES - 1) // LANES
    steady = min(w_ // LANES, wo // LANES + 1)  # steps 1 … steady − 1: v's block and H's block b − 1 whole
    for j in range(_SAME_ROWS):
        fill_at(vt, (3 * j) * LANES, 0.0)
        fill_at(vt, (3 * j + 1) * LANES, 0.0)
    for b in range(y_blocks + 1):
        if 1 <= b < steady:
            _same_step(vt, vw, ht, xt, acc, z1, y1, bias_v, bias_h, z_at + b * LANES, FULL, y_at + (b - 1) * LANES,
                       FULL, top, h_, w_, wo, rows_left, not inside, True, True)
        else:
            v_mask = lanes(0, max(0, min(LANES, w_ - b * LANES)))
            y_mask = lanes(0, max(0, min(LANES, wo - (b - 1) * LANES)))
            _same_step(vt, vw, ht, xt, acc, z1, y1, bias_v, bias_h, z_at + b * LANES, v_mask, y_at + (b - 1) * LANES,
                       y_mask, top, h_, w_, wo, rows_left, True, b < v_blocks, b > 0)


@njit(fastmath=_FAST)
def _pair_nchw_same(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any,
                    ph: int) -> None:  # pragma: no cover - compiled
    """The pair with 3 taps each, V at stride 1 and dilation 1 (any row padding), H at stride 1, dilation 1 and
    padding 1 before (any after): v never leaves the registers, and a tile inside the plane tests no position.
    z (N, C, H, W), wv (C, 3), bv (C,), wh (C, 3), bh (C,), y (N, C, Hv, Wo), C-contiguous; tasks: (n, c) planes.
    For a tile of _SAME_ROWS rows, each input row is loaded once for the tile rows that read it, and each row
    keeps three consecutive blocks of v in registers: H's output block k reads v's blocks k − 1, k, k + 1 through
    constant shuffles (v is zero outside the row: H's padding)."""
    c_, h_, w_ = z.shape[1], z.shape[2], z.shape[3]
    ho, wo = y.shape[2], y.shape[3]
    z1, y1 = borrowed(z.ravel()), borrowed(y.ravel())  # passed to the inlined steps: no reference counting
    vt, acc, xt, vw, ht = tile(z1, _V_SLOTS), block(z1), tile(z1, 1), tile(z1, 3), tile(z1, 3)
    for task in range(begin, end):
        c = task % c_
        for i in range(3):
            fill_at(vw, i * LANES, wv[c, i])
            fill_at(ht, i * LANES, wh[c, i])
        for oh0 in range(0, ho, _SAME_ROWS):
            top = oh0 - ph
            z_at, y_at = (task * h_ + top) * w_, (task * ho + oh0) * wo
            inside = top >= 0 and top + _SAME_ROWS + 1 < h_ and oh0 + _SAME_ROWS <= ho
            _same_tile(vt, vw, ht, xt, acc, z1, y1, bv[c], bh[c], z_at, y_at, top, h_, w_, wo, ho - oh0, inside)


@njit(inline="always")
def _aligned_scratch(size: int, like: Any) -> Any:  # pragma: no cover - compiled
    """An uninitialised (size,) array of ``like``'s dtype starting on a 64-byte boundary (fp32)."""
    scratch = np.empty(size + LANES, dtype=like.dtype)
    skip = (-(scratch.ctypes.data // like.itemsize)) % LANES
    return scratch[skip:skip + size]


@njit(inline="always")
def _output_row(task: int, rows: int, sh: int, ph: int, dh: int, kh: int, h_: int) -> tuple[int, int, int, int]:
    """(n, top, t_lo, t_hi) of channels_last task (output row) ``task``: V's tap i reads input row top + i·dh,
    inside the input for t_lo ≤ i < t_hi."""
    n = task // rows
    top = (task - n * rows) * sh - ph
    return n, top, max(0, (dh - 1 - top) // dh), min(kh, (h_ - top + dh - 1) // dh)


@njit(fastmath=_FAST, inline="always")
def _taps_nhwc(acc: Any, wt: Any, w1: Any, b: Any, src: Any, dst: Any, out_tile: Any, c_: int, t_lo: int, t_hi: int,
               read: int, tap_step: int, step: int, write: int, count: int, stream: bool) -> None:  # pragma: no cover
    """dst[write + p·c_ + k] = b[k] + Σ_{t_lo ≤ t < t_hi} w1[t·c_ + k] · src[read + t·tap_step + p·step + k] for the
    positions p < count and every channel k < c_: _TILE positions at a time in registers (each tap's weights loaded
    once per tile), the rest one at a time. ``stream`` (c_ a multiple of LANES, dst 64-byte aligned): a tile goes
    through ``out_tile`` (_TILE·c_) to dst in address order, by non-temporal stores."""
    full = count - count % _TILE
    for p0 in range(0, full, _TILE):  # a tile's _TILE positions, all channels, before the next: memory in order
        for c0 in range(0, c_, LANES):
            mask = lanes(0, min(LANES, c_ - c0))
            for p in range(_TILE):
                load_at(acc, p * LANES, b, c0, mask)
            for t in range(t_lo, t_hi):
                load(wt, w1, t * c_ + c0, mask)
                at = read + t * tap_step + p0 * step + c0
                for p in range(_TILE):
                    fma_vv_at(acc, p * LANES, wt, 0, src, at + p * step, mask)
            for p in range(_TILE):
                if stream:
                    store_at(acc, p * LANES, out_tile, p * c_ + c0, FULL)
                else:
                    store_at(acc, p * LANES, dst, write + (p0 + p) * c_ + c0, mask)
        if stream:
            for k in range(0, _TILE * c_, LANES):
                load_at(acc, 0, out_tile, k, FULL)
                stream_at(acc, 0, dst, write + p0 * c_ + k)
    for p in range(full, count):
        for c0 in range(0, c_, LANES):
            mask = lanes(0, min(LANES, c_ - c0))
            load_at(acc, 0, b, c0, mask)
            for t in range(t_lo, t_hi):
                load(wt, w1, t * c_ + c0, mask)
                fma_vv_at(acc, 0, wt, 0, src, read + t * tap_step + p * step + c0, mask)
            store_at(acc, 0, dst, write + p * c_ + c0, mask)


@njit(fastmath=_FAST)
def _pair_nhwc(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any, sh: int, dh: int, ph: int,
               sw: int, dw: int, pw: int, stream: bool) -> None:  # pragma: no cover - compiled
    """z (N, H, W, C), wv (kh, C), bv (C,), wh (kw, C), bh (C,), y (N, Hv, Wo, C), C-contiguous; tasks: output
    rows. V's row goes to a zero-padded row buffer (positions pw … pw + W − 1), then H reads it; both per block of
    LANES channels on tiles of _TILE positions in registers (``_taps_nhwc``)."""
    _, h_, w_, c_ = z.shape
    rows, wo = y.shape[1], y.shape[2]
    kh, kw = wv.shape[0], wh.shape[0]
    z1, wv1, wh1, y1 = z.ravel(), wv.ravel(), wh.ravel(), y.ravel()
    width = max((wo - 1) * sw + (kw - 1) * dw + 1, pw + w_)  # padded v row, in positions
    acc, wt = tile(z1, _TILE), block(z1)
    buffer = np.zeros(width * c_, dtype=z.dtype)  # zero outside the positions a row of v is written to
    out_tile = _aligned_scratch(_TILE * c_, z)
    for task in range(begin, end):
        n, top, t_lo, t_hi = _output_row(task, rows, sh, ph, dh, kh, h_)
        _taps_nhwc(acc, wt, wv1, bv, z1, buffer, out_tile, c_, t_lo, t_hi, (n * h_ + top) * w_ * c_, dh * w_ * c_, c_,
                   pw * c_, w_, False)
        _taps_nhwc(acc, wt, wh1, bh, buffer, y1, out_tile, c_, 0, kw, 0, dw * c_, sw * c_, task * wo * c_, wo, stream)
    if stream:
        store_fence()  # the streamed stores visible before the caller (or another thread) reads y


@njit(fastmath=_FAST, inline="always")
def _dense_tile_nhwc(acc: Any, vt: Any, wt: Any, ht: Any, z1: Any, wv1: Any, bv: Any, wh1: Any, bh: Any, dst: Any,
                     dst_at: int, n: int, top: int, t_lo: int, t_hi: int, q0: int, c0: int,
                     sizes: tuple[int, int, int, int, int, int], ahead: int, mask: int,
                     checks: bool) -> None:  # pragma: no cover - compiled
    """One tile of ``_pair_nhwc_dense``: the _WINDOW positions of v it reads (q0 − pw + j) for LANES channels from
    c0, then its _TILE outputs to dst[dst_at + p·C]. checks (a constant): test each position of v against
    the row (the tile is at the row's ends); else none is tested."""
    h_, w_, c_, kw, dh, pw = sizes
    if ahead >= 0:
        for p in range(_TILE):
            prefetch(z1, ahead + (q0 + p) * c_ + c0)
    for j in range(_WINDOW):  # v at positions q0 − pw + j: b_V inside the row, 0 outside
        if not checks or 0 <= q0 - pw + j < w_:
            load_at(vt, j * LANES, bv, c0, mask)
        else:
            fill_at(vt, j * LANES, 0.0)
    for i in range(t_lo, t_hi):
        load(wt, wv1, i * c_ + c0, mask)
        at = ((n * h_ + top + i * dh) * w_ + q0 - pw) * c_ + c0
        for j in range(_WINDOW):
            if not checks or 0 <= q0 - pw + j < w_:
                fma_vv_at(vt, j * LANES, wt, 0, z1, at + j * c_, mask)
    for t in range(_H_TAPS):
        if t < kw:
            load_at(ht, t * LANES, wh1, t * c_ + c0, mask)
    for p in range(_TILE):
        load_at(acc, p * LANES, bh, c0, mask)
        for t in range(_H_TAPS):
            if t < kw:
                fma_at(acc, p * LANES, ht, t * LANES, vt, (p + t) * LANES)
    for p in range(_TILE):
        store_at(acc, p * LANES, dst, dst_at + p * c_, mask)


@njit(fastmath=_FAST)
def _pair_nhwc_dense(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any, sh: int, dh: int,
                     ph: int, pw: int, stream: bool) -> None:  # pragma: no cover - compiled
    """``_pair_nhwc`` at H's stride 1 and dilation 1, kw <= _HALO + 1, Wo >= _TILE: v never leaves the registers.
    Per tile of _TILE output positions q0 … and block of LANES channels, the _TILE + kw − 1 positions of v it reads
    (q0 − pw + j; zero outside the row) accumulate in registers from V's taps, and H adds them up, shifted, into
    _TILE accumulators (``_dense_tile_nhwc``; tiles inside the row test nothing). The last tile is shifted back to
    end with the row (positions computed twice get the same values). A tile's outputs reach y in address order
    through ``out_tile`` (non-temporal stores if ``stream``)."""
    _, h_, w_, c_ = z.shape
    rows, wo = y.shape[1], y.shape[2]
    kh, kw = wv.shape[0], wh.shape[0]
    z1, wv1, wh1, y1 = borrowed(z.ravel()), borrowed(wv.ravel()), borrowed(wh.ravel()), borrowed(y.ravel())
    bv, bh = borrowed(bv), borrowed(bh)  # passed to the inlined tiles: no reference counting
    acc, vt, wt, ht = tile(z1, _TILE), tile(z1, _WINDOW), block(z1), tile(z1, _H_TAPS)
    scratch = _aligned_scratch(_TILE * c_, z)
    out_tile = borrowed(scratch)
    sizes = (h_, w_, c_, kw, dh, pw)
    for task in range(begin, end):
        n, top, t_lo, t_hi = _output_row(task, rows, sh, ph, dh, kh, h_)
        ahead = top + (kh - 1) * dh  # the input row this output row is the first to read: prefetched
        ahead = ((n * h_ + ahead) * w_ + _AHEAD - pw) * c_ if 0 <= ahead < h_ else -1
        q = 0
        while q < wo:
            q0 = min(q, wo - _TILE)
            inside = q0 >= pw and q0 - pw + _WINDOW <= w_
            dst, at = (out_tile, 0) if stream else (y1, (task * wo + q0) * c_)  # rows of C channels in both
            for c0 in range(0, c_, LANES):
                mask = lanes(0, min(LANES, c_ - c0))
                if inside and mask == FULL:
                    _dense_tile_nhwc(acc, vt, wt, ht, z1, wv1, bv, wh1, bh, dst, at + c0, n, top, t_lo, t_hi,
                                     q0, c0, sizes, ahead, FULL, False)
                else:
                    _dense_tile_nhwc(acc, vt, wt, ht, z1, wv1, bv, wh1, bh, dst, at + c0, n, top, t_lo, t_hi,
                                     q0, c0, sizes, ahead, mask, True)
            if stream:
                for k in range(0, _TILE * c_, LANES):
                    load_at(acc, 0, out_tile, k, FULL)
                    stream_at(acc, 0, y1, (task * wo + q0) * c_ + k)
            q = q0 + _TILE
    if stream:
        store_fence()  # the streamed stores visible before the caller (or another thread) reads y
    keep_alive(scratch)


@njit(fastmath=_FAST, inline="always")
def _window_step(acc: Any, vt: Any, wv: Any, wh: Any, xv: Any, bv: Any, bh: Any, src: Any, out: Any, x_at: int,
                 y_at: int, mask: int, top: int, h_: int, row_x: int, row_y: int, rows_left: int, checks: bool,
                 x_on: bool, y_on: bool, stream: bool) -> None:  # pragma: no cover - compiled
    """One step of ``_pair_nhwc_same`` at column iw: v at (tile row j, iw) from input rows top + j + i (if x_on:
    the column is inside the row; else v is H's zero padding), added by H's taps to the open outputs (slot
    3 j + s: position iw − 1 + s; tap t into slot 2 − t); then position iw − 1 of each row is stored (if y_on;
    non-temporal if ``stream``, only where checks is False) and the slots move down, the last from b_H."""
    if x_on:
        for j in range(WINDOW_ROWS):
            copy_at(vt, j * LANES, bv, 0)
        for u in range(WINDOW_ROWS + 2):  # input row top + u feeds v's rows u − i (tap i)
            if not checks or 0 <= top + u < h_:
                load_at(xv, 0, src, x_at + u * row_x, mask)
                for i in range(3):
                    if 0 <= u - i < WINDOW_ROWS:
                        fma_at(vt, (u - i) * LANES, wv, i * LANES, xv, 0)
        for j in range(WINDOW_ROWS):
            for t in range(3):
                fma_at(acc, (3 * j + 2 - t) * LANES, wh, t * LANES, vt, j * LANES)
    close_column(acc, bh, out, y_at, row_y, mask, rows_left, checks, y_on, stream)


@njit(fastmath=_FAST)
def _pair_nhwc_same(begin: int, end: int, z: Any, wv: Any, bv: Any, wh: Any, bh: Any, y: Any, ph: int,
                    stream: bool) -> None:  # pragma: no cover - compiled
    """``_pair_nhwc_dense`` for 3×1 then 1×3 at stride 1 with H padded by one column before (flattened's pair):
    z (N, H, W, C), wv and wh (3, C), biases (C,), y (N, Ho, Wo, C). Tasks: (n, tile of WINDOW_ROWS output rows);
    per block of LANES channels the tile walks the columns iw = 0 … Wo: each column's WINDOW_ROWS + 2 input vectors
    give v's WINDOW_ROWS values there (in registers), which H adds to the three open outputs of their row; the one
    completed is stored. No position of v is computed twice; the steps inside the map test nothing."""
    h_, w_, c_ = z.shape[1], z.shape[2], z.shape[3]
    ho, wo = y.shape[1], y.shape[2]
    s1, o1 = borrowed(z.ravel()), borrowed(y.ravel())
    wv1, wh1, bv1, bh1 = borrowed(wv.ravel()), borrowed(wh.ravel()), borrowed(bv), borrowed(bh)
    acc, vt, wvt, wht = tile(s1, OPEN_SLOTS), tile(s1, WINDOW_ROWS), tile(s1, 3), tile(s1, 3)
    xv, bvt, bht = block(s1), block(s1), block(s1)
    tiles = (ho + WINDOW_ROWS - 1) // WINDOW_ROWS
    row_x, row_y = w_ * c_, wo * c_
    steady = min(w_, wo + 1)  # steps 1 … steady − 1 read a column and store a position
    for task in range(begin, end):
        n, oh0, top, inside = window_tile(task, tiles, ph, h_, ho)
        for c0 in range(0, c_, LANES):
            mask = lanes(0, min(LANES, c_ - c0))
            for k in range(3):
                load_at(wvt, k * LANES, wv1, k * c_ + c0, mask)
                load_at(wht, k * LANES, wh1, k * c_ + c0, mask)
            load_at(bvt, 0, bv1, c0, mask)
            load_at(bht, 0, bh1, c0, mask)
            for k in range(OPEN_SLOTS):
                copy_at(acc, k * LANES, bht, 0)
            x_at = (n * h_ + top) * row_x + c0
            y_at = (n * ho + oh0) * row_y - c_ + c0  # position −1 of the tile's first row
            whole = inside and mask == FULL
            for iw in range(wo + 1):
                if whole and 1 <= iw < steady:
                    _window_step(acc, vt, wvt, wht, xv, bvt, bht, s1, o1, x_at + iw * c_, y_at + iw * c_, FULL, top,
                                 h_, row_x, row_y, ho - oh0, False, True, True, stream)
                else:
                    _window_step(acc, vt, wvt, wht, xv, bvt, bht, s1, o1, x_at + iw * c_, y_at + iw * c_, mask, top,
                                 h_, row_x, row_y, ho - oh0, True, iw < w_, iw >= 1, False)
    if stream:
        store_fence()  # the streamed stores visible before the caller (or another thread) reads y


PairGeometry = tuple[int, int, tuple[int, int], int, int, tuple[int, int]]  # V: s, d, pads; H: s, d, pads


class SeparablePairFunction(KernelFunction):
    """y = H(V(z)) for z (N, C, H, W) NCHW- or channels_last-contiguous (the output in the same format), V weight
    (C, 1, kh, 1), H weight (C, 1, 1, kw), biases (C,) or None. Under ``create_graph`` and with a forward-mode
    tangent, ``reference`` (``derivatives``)."""

    @staticmethod
    def reference(z: torch.Tensor, wv: torch.Tensor, bv: torch.Tensor | None, wh: torch.Tensor,
                  bh: torch.Tensor | None, geometry: PairGeometry, window: bool = True) -> torch.Tensor:
        """The same y as two ``F.conv2d`` (groups = C) on zero-padded inputs."""
        del window
        sh, dh, pads_h, sw, dw, pads_w = geometry
        c = z.shape[1]
        v = padded_conv(z, wv, bv, (sh, 1), (pads_h, (0, 0)), (dh, 1), c)
        return padded_conv(v, wh, bh, (1, sw), ((0, 0), pads_w), (1, dw), c)

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, wv: torch.Tensor, bv: torch.Tensor | None, wh: torch.Tensor,
                bh: torch.Tensor | None, geometry: PairGeometry, window: bool = True) -> torch.Tensor:
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
            arrays = (zd.permute(0, 2, 3, 1).numpy(), wv.detach().reshape(c, kh).t().contiguous().numpy(), b_v.numpy(),
                      wh.detach().reshape(c, kw).t().contiguous().numpy(), b_h.numpy(), y.permute(0, 2, 3, 1).numpy())
            if window and same_pair((kh, kw), (sh, sw), (dh, dw), pw0):
                tasks = n * -(-rows // WINDOW_ROWS)
                run_tasks(_pair_nhwc_same, tasks, *arrays, ph0, streams(y), work=y.numel())
            elif sw == 1 and dw == 1 and kw <= _H_TAPS and wo >= _TILE:
                run_tasks(_pair_nhwc_dense, n * rows, *arrays, sh, dh, ph0, pw0, streams(y), work=y.numel())
            else:
                run_tasks(_pair_nhwc, n * rows, *arrays, sh, dh, ph0, sw, dw, pw0, streams(y), work=y.numel())
        else:
            y = torch.empty((n, c, rows, wo), dtype=z.dtype)
            planes = (zd.contiguous().numpy(), wv.detach().reshape(c, kh).numpy(), b_v.numpy(),
                      wh.detach().reshape(c, kw).numpy(), b_h.numpy(), y.numpy())
            if same_pair((kh, kw), (sh, sw), (dh, dw), pw0):
                run_tasks(_pair_nchw_same, n * c, *planes, ph0, work=y.numel())
            elif sw == 1:
                run_tasks(_pair_nchw_rows, n * c, *planes, np.arange(kh, dtype=np.int64) * dh, sh, ph0, dw, pw0,
                          work=y.numel())
            else:
                run_tasks(_pair_nchw, n * c, *planes, sh, dh, ph0, sw, dw, pw0, work=y.numel())
        ctx.save_for_backward(z, wv, bv, wh, bh)
        ctx.geometry = geometry
        ctx.strides = [None if t is None else dense_strides(t) for t in (wv, bv, wh, bh)]
        return y

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """v = V(z) recomputed by the depthwise kernel, then H's backward (∂v, ∂w_H, ∂b_H) and V's (∂z, ∂w_V,
        ∂b_V) by the depthwise kernels' backward: no autograd graph, and y is not computed again."""
        z, wv, bv, wh, bh = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, SeparablePairFunction.reference, (z, wv, bv, wh, bh, ctx.geometry), grad)
        sh, dh, (ph0, ph1), sw, dw, (pw0, pw1) = ctx.geometry
        need_z, need_wv, need_bv, need_wh, need_bh = ctx.needs_input_grad[:5]
        h, w = z.shape[2:]
        kh, kw = wv.shape[2], wh.shape[3]
        rows, wo = output_size(h, kh, sh, dh, ph0, ph1), output_size(w, kw, sw, dw, pw0, pw1)
        along_h = ((sh, 1), (dh, 1), (ph0, 0), (rows, w))  # V as a depthwise conv's geometry, then H
        along_w = ((1, sw), (1, dw), (0, pw0), (rows, wo))
        need_v = need_z or need_wv or need_bv
        zd, wv, wh = z.detach(), wv.detach(), wh.detach()
        v = depthwise_forward(zd, wv, None if bv is None else bv.detach(), along_h)
        grad_v, grad_wh, grad_bh = depthwise_backward(v, wh, grad.detach(), along_w, (need_v, need_wh, need_bh))
        grad_z = grad_wv = grad_bv = None
        if need_v:
            grad_z, grad_wv, grad_bv = depthwise_backward(zd, wv, grad_v, along_h, (need_z, need_wv, need_bv))
        grad_wv, grad_bv, grad_wh, grad_bh = (in_layout(g, strides) for g, strides in
                                              zip((grad_wv, grad_bv, grad_wh, grad_bh), ctx.strides))
        return grad_z, grad_wv, grad_bv, grad_wh, grad_bh, None, None


def separable_pair(z: torch.Tensor, wv: torch.Tensor, bv: torch.Tensor | None, wh: torch.Tensor,
                   bh: torch.Tensor | None, geometry: PairGeometry, window: bool = True) -> torch.Tensor:
    """H(V(z)) with V a per-channel (kh×1) conv and H a per-channel (1×kw) conv (weights (C, 1, kh, 1) and
    (C, 1, 1, kw)), geometry = (V stride, V dilation, V (before, after) padding, H stride, H dilation, H padding).
    ``window``: on channels_last data, flattened's 3×1 then 1×3 runs ``_pair_nhwc_same`` (else the position
    tiles of ``_pair_nhwc_dense``, faster where the window spills: the layer times both)."""
    z = dense(z)
    return SeparablePairFunction.apply(z, wv, bv, wh, bh, geometry, window)


def same_pair(kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int], pad_w: int) -> bool:
    """Whether the pair is flattened's 3×1 then 1×3 at stride 1 and dilation 1 with H padded by one column before
    (kernel = (kh, kw), stride = (V's, H's), …): the register-window kernels run it, and on channels_last data
    ``window`` chooses between them and the position tiles."""
    return same_3x3(*kernel, *stride, *dilation, pad_w)
