"""Involution's per-position kernels applied on the CPU (numba), forward and backward, fp32 / fp64, 2-D (1-D runs as
2-D with H = 1):

    y[n, c, p] = Σ_t H[n, g(c)·T + t, p] · x[n, c, p·s + t·d − pad],   g(c) = c // (C/G), taps t row-major,

reads outside the input being zero (the zero padding is never materialised; other padding modes are applied by
torch first and run with pad = 0). No unfold and no (N, C, T, *O) patch tensor.

NCHW forward at stride 1 along the rows (``_forward_nchw``): one task per (sample, group, output row); a tile of
_CHANNELS channels of the group × _BLOCKS blocks of LANES positions accumulates in registers, each tap's kernel
vectors loaded once for the tile's channels and every input vector read by a masked load (lanes outside the row
read nothing and add kernel × 0). Other NCHW inputs are copied to channels-last and the output copied back.
On channels-last data: one task per output row; per group and pair of channel blocks, tiles of positions along
the row in register accumulators, every tap adding a broadcast kernel value times an input block (a tap outside
the input reads a row of zeros). Backward (on channels-last copies for NCHW inputs): the
kernels' gradient ∂H[n, g·T + t, p] = Σ_{c ∈ g} ∂y[n, c, p]·x[n, c, p·s + t·d − pad] as nine dot products per pass
(one task per output row), and the input's gradient gathered, for any stride, from the outputs that read each input
pixel (one task per input row), so no two tasks write one value.

Without autograd the layer can run its whole forward here (``generate_and_involve``): per output row, the kernels
H[:, p] = W_span ReLU(W_reduce x_centre(p) + b_reduce) + b_span are generated into an L1 scratch row, _GEN_TILE
positions at a time, and applied at once (``_apply_row``, shared with the channels-last forward).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numba import prange

from . import derivatives
from .derivatives import KernelFunction, after_padding, graph_backward, has_tangent
from .numba_runtime import njit, run_tasks, sync_threads
from .simd import (FULL, LANES, borrowed, fill_at, fma_scalar_at, fma_vv_at, keep_alive, lanes, load_at, relu_at,
                   store_at, tile)

_FAST = {"contract"}
_REDUCE = {"contract", "reassoc"}
_TILE = 4  # forward: output positions along a row per register tile (× 2 blocks of LANES channels)
_TILE_BLOCKS = 2 * _TILE
_CHANNELS, _BLOCKS = 4, 4  # NCHW forward: a tile of 4 channels × 4 blocks of LANES positions along a row
_NCHW_TILE = _CHANNELS * _BLOCKS
_GEN_TILE = 8  # fused generator: positions per register tile (one block of LANES hidden / kernel values each)


@njit(fastmath=_FAST)
def _fma9(r: Any, a: Any, rows: Any, zeros: Any, at: Any, c0: int) -> None:  # pragma: no cover - compiled
    """r[k] += Σ_q a[q]·rows[at[q], c0 + k] for the nine taps q (a row of zeros where at[q] < 0), k < len(r): nine
    taps in one pass (a loop per tap over a short run of channels costs more in loop overhead than arithmetic)."""
    n = len(r)
    x0 = rows[at[0], c0:c0 + n] if at[0] >= 0 else zeros[:n]
    x1 = rows[at[1], c0:c0 + n] if at[1] >= 0 else zeros[:n]
    x2 = rows[at[2], c0:c0 + n] if at[2] >= 0 else zeros[:n]
    x3 = rows[at[3], c0:c0 + n] if at[3] >= 0 else zeros[:n]
    x4 = rows[at[4], c0:c0 + n] if at[4] >= 0 else zeros[:n]
    x5 = rows[at[5], c0:c0 + n] if at[5] >= 0 else zeros[:n]
    x6 = rows[at[6], c0:c0 + n] if at[6] >= 0 else zeros[:n]
    x7 = rows[at[7], c0:c0 + n] if at[7] >= 0 else zeros[:n]
    x8 = rows[at[8], c0:c0 + n] if at[8] >= 0 else zeros[:n]
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8]
    for k in range(n):
        r[k] += (a0 * x0[k] + a1 * x1[k] + a2 * x2[k] + a3 * x3[k] + a4 * x4[k] + a5 * x5[k] + a6 * x6[k]
                 + a7 * x7[k] + a8 * x8[k])


@njit(fastmath=_REDUCE)
def _dot9(out: Any, g: Any, rows: Any, zeros: Any, at: Any, c0: int) -> None:  # pragma: no cover - compiled
    """out[q] = Σ_k g[k]·rows[at[q], c0 + k] (0 where at[q] < 0), k < len(g), for the nine taps q in one pass."""
    n = len(g)
    x0 = rows[at[0], c0:c0 + n] if at[0] >= 0 else zeros[:n]
    x1 = rows[at[1], c0:c0 + n] if at[1] >= 0 else zeros[:n]
    x2 = rows[at[2], c0:c0 + n] if at[2] >= 0 else zeros[:n]
    x3 = rows[at[3], c0:c0 + n] if at[3] >= 0 else zeros[:n]
    x4 = rows[at[4], c0:c0 + n] if at[4] >= 0 else zeros[:n]
    x5 = rows[at[5], c0:c0 + n] if at[5] >= 0 else zeros[:n]
    x6 = rows[at[6], c0:c0 + n] if at[6] >= 0 else zeros[:n]
    x7 = rows[at[7], c0:c0 + n] if at[7] >= 0 else zeros[:n]
    x8 = rows[at[8], c0:c0 + n] if at[8] >= 0 else zeros[:n]
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = out[0] * 0
    for k in range(n):
        gk = g[k]
        s0 += gk * x0[k]
        s1 += gk * x1[k]
        s2 += gk * x2[k]
        s3 += gk * x3[k]
        s4 += gk * x4[k]
        s5 += gk * x5[k]
        s6 += gk * x6[k]
        s7 += gk * x7[k]
        s8 += gk * x8[k]
    out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7], out[8] = s0, s1, s2, s3, s4, s5, s6, s7, s8


@njit(inline="always")
def _input_rows(at: Any, t0: int, taps: int, tdy: Any, tdx: Any, oh: int, ow: int, h: int, w: int, sh: int, sw: int,
                ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """at[q] = the input pixel ih·W + iw that tap t0 + q (row offset tdy[t], column offset tdx[t]) of output
    (oh, ow) reads, −1 outside (or past the taps)."""
    for q in range(9):
        at[q] = -1
        if t0 + q < taps:
            ih, iw = oh * sh - ph + tdy[t0 + q], ow * sw - pw + tdx[t0 + q]
            if 0 <= ih < h and 0 <= iw < w:
                at[q] = ih * w + iw


@njit(inline="always")
def _output_rows(at: Any, t0: int, taps: int, tdy: Any, tdx: Any, ih: int, iw: int, ho: int, wo: int, sh: int,
                 sw: int, ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """at[q] = the output position oh·Wo + ow whose tap t0 + q reads input pixel (ih, iw), −1 when none does."""
    for q in range(9):
        at[q] = -1
        if t0 + q < taps:
            ry, rx = ih + ph - tdy[t0 + q], iw + pw - tdx[t0 + q]
            if ry < 0 or rx < 0:
                continue
            if sh != 1:
                if ry % sh != 0:
                    continue
                ry //= sh
            if sw != 1:
                if rx % sw != 0:
                    continue
                rx //= sw
            if ry < ho and rx < wo:
                at[q] = ry * wo + rx


@njit(fastmath=_FAST, inline="always")
def _tile_taps(acc: Any, x1: Any, zeros: Any, k1: Any, kt: int, gt: int, row_at: Any, col_at: Any, at: int,
               step: int, m0: int, m1: int) -> None:  # pragma: no cover - compiled
    """acc (_TILE positions × 2 blocks) = Σ_t k1[kt + t + q·gt] · x1[row_at[t] + col_at[t] + at + q·step + block]
    for positions q whose taps stay in the row; a tap whose row is outside the input (row_at[t] < 0) reads
    ``zeros``. The coefficient index is unsigned: no negative-index wraparound in the loop."""
    for b in range(_TILE_BLOCKS):
        fill_at(acc, b * LANES, 0.0)
    for t in range(len(row_at)):
        inside = row_at[t] >= 0
        src = x1 if inside else zeros
        at_x = row_at[t] + col_at[t] + at if inside else 0
        s = step if inside else 0
        for q in range(_TILE):
            coef = k1[np.uint64(kt + t + q * gt)]
            fma_scalar_at(acc, 2 * q * LANES, coef, src, at_x + q * s, m0)
            fma_scalar_at(acc, (2 * q + 1) * LANES, coef, src, at_x + q * s + LANES, m1)


@njit(fastmath=_FAST, inline="always")
def _apply_row(acc: Any, row_at: Any, col_at: Any, x1: Any, k1: Any, at_k: int, y1: Any, at_y: int, zeros: Any,
               n: int, oh: int, h: int, w: int, c: int, wo: int, gt: int, tdy: Any, tdx: Any, sh: int, sw: int,
               ph: int, pw: int, ow_lo: int, ow_hi: int) -> None:  # pragma: no cover - compiled
    """Output row (n, oh) of y (…, Wo, C) at ``at_y`` from x (N, H, W, C) and the row's kernels (Wo, G·T) at
    ``at_k`` in k1. Per group and pair of channel blocks, tiles of _TILE positions along the row keep their
    2·_TILE accumulators in registers while every tap adds kernel value × input block (one scalar broadcast feeds
    both blocks); positions whose taps leave the row (outside [ow_lo, ow_hi)) run one at a time. A tap outside the
    input reads ``zeros`` (a NaN kernel value there still gives NaN, as from the zero padding). ``col_at`` (T,)
    holds (tdx[t] − pw)·C; ``row_at`` (T,) is scratch for each tap's input row offset (−1 outside x)."""
    taps = len(tdy)
    cg = c // (gt // taps)
    for t in range(taps):
        ih = oh * sh - ph + tdy[t]
        row_at[t] = (n * h + ih) * w * c if 0 <= ih < h else -1
    for g in range(gt // taps):
        for cb in range(g * cg, (g + 1) * cg, 2 * LANES):
            m0 = lanes(0, min(LANES, (g + 1) * cg - cb))
            m1 = lanes(0, max(0, min(LANES, (g + 1) * cg - cb - LANES)))
            ow = 0
            while ow < wo:
                if ow >= ow_lo and ow + _TILE <= ow_hi:
                    kt = at_k + ow * gt + g * taps
                    if m0 == FULL and m1 == FULL:  # constant masks: plain loads folded into the FMAs
                        _tile_taps(acc, x1, zeros, k1, kt, gt, row_at, col_at, ow * sw * c + cb, sw * c, FULL, FULL)
                    else:
                        _tile_taps(acc, x1, zeros, k1, kt, gt, row_at, col_at, ow * sw * c + cb, sw * c, m0, m1)
                    for q in range(_TILE):
                        store_at(acc, 2 * q * LANES, y1, at_y + (ow + q) * c + cb, m0)
                        store_at(acc, (2 * q + 1) * LANES, y1, at_y + (ow + q) * c + cb + LANES, m1)
                    ow += _TILE
                else:
                    fill_at(acc, 0, 0.0)
                    fill_at(acc, LANES, 0.0)
                    for t in range(taps):
                        iw = ow * sw - pw + tdx[t]
                        inside = row_at[t] >= 0 and 0 <= iw < w
                        src = x1 if inside else zeros
                        at_x = row_at[t] + iw * c + cb if inside else 0
                        coef = k1[at_k + ow * gt + g * taps + t]
                        fma_scalar_at(acc, 0, coef, src, at_x, m0)
                        fma_scalar_at(acc, LANES, coef, src, at_x + LANES, m1)
                    store_at(acc, 0, y1, at_y + ow * c + cb, m0)
                    store_at(acc, LANES, y1, at_y + ow * c + cb + LANES, m1)
                    ow += 1


@njit(inline="always")
def _inside_columns(w: int, wo: int, tdx: Any, sw: int, pw: int) -> tuple[int, int]:  # pragma: no cover - compiled
    """[ow_lo, ow_hi): the output columns whose every tap reads inside the input row."""
    ow_lo = min(wo, max(0, (pw - tdx.min() + sw - 1) // sw))
    return ow_lo, max(ow_lo, min(wo, (w - 1 + pw - tdx.max()) // sw + 1))


@njit(fastmath=_FAST)
def _forward_tiles(begin: int, end: int, x: Any, kern: Any, y: Any, zeros: Any, tdy: Any, tdx: Any, sh: int, sw: int,
                   ph: int, pw: int) -> None:  # pragma: no cover - compiled
    """y (N, Ho, Wo, C) from x (N, H, W, C) and kern (N, Ho, Wo, G·T); tasks: output rows (n, oh), each
    ``_apply_row``."""
    _, h, w, c = x.shape
    _, ho, wo, gt = kern.shape
    x1, k1, y1, zeros = borrowed(x.ravel()), borrowed(kern.ravel()), borrowed(y.ravel()), borrowed(zeros)
    acc = tile(x1, _TILE_BLOCKS)
    row_at_, col_at_ = np.empty(len(tdy), np.int64), (tdx - pw) * c
    row_at, col_at = borrowed(row_at_), borrowed(col_at_)  # no reference counting in the inlined loops
    ow_lo, ow_hi = _inside_columns(w, wo, tdx, sw, pw)
    for task in range(begin, end):
        n = task // ho
        oh = task - n * ho
        _apply_row(acc, row_at, col_at, x1, k1, (n * ho + oh) * wo * gt, y1, (n * ho + oh) * wo * c, zeros, n, oh, h,
                   w, c, wo, gt, tdy, tdx, sh, sw, ph, pw, ow_lo, ow_hi)
    keep_alive(row_at_)
    keep_alive(col_at_)


@njit(fastmath=_FAST, inline="always")
def _tile_fc(gen: Any, src: Any, at: int, step: int, depth: int, weight: Any, width: int, bias: Any, out: Any,
             out_at: int, stored: int, relu: bool) -> None:  # pragma: no cover - compiled
    """out[out_at + q·width + o] = bias[o] + Σ_k src[at + q·step + k] · weight[k·width + o] for the _GEN_TILE
    positions q (the first ``stored`` written), through a ReLU when ``relu`` (a constant): one fully connected layer
    on a tile of positions, LANES outputs at a time in _GEN_TILE register accumulators, each weight row loaded once
    for the tile. The source index is unsigned: no negative-index wraparound in the loop."""
    for o0 in range(0, width, LANES):
        mask = lanes(0, min(LANES, width - o0))
        for q in range(_GEN_TILE):
            load_at(gen, q * LANES, bias, o0, mask)
        for k in range(depth):
            for q in range(_GEN_TILE):
                fma_scalar_at(gen, q * LANES, src[np.uint64(at + q * step + k)], weight, k * width + o0, mask)
        for q in range(stored):
            if relu:
                relu_at(gen, q * LANES)
            store_at(gen, q * LANES, out, out_at + q * width + o0, mask)


@njit(fastmath=_FAST)
def _generate_apply(begin: int, end: int, x: Any, w1t: Any, b1: Any, w2t: Any, b2: Any, y: Any, zeros: Any,
                    tdy: Any, tdx: Any, cy: int, cx: int, sh: int, sw: int, ph: int, pw: int
                    ) -> None:  # pragma: no cover - compiled
    """The whole involution forward, generator included, for y (N, Ho, Wo, C) from x (N, H, W, C); tasks: output
    rows (n, oh). First the row's kernels, into a (Wo, G·T) scratch row that stays in L1: at each position the
    centre x_p = x[n, oh·sh + cy − ph, ow·sw + cx − pw] (zeros outside), h = ReLU(w1t^T x_p + b1) with w1t (C, hid),
    k = w2t^T h + b2 with w2t (hid, G·T), each a sum of scalar × weight-row vectors, _GEN_TILE positions at a time
    (each weight row loaded once for all of them); then ``_apply_row``. The kernels and the hidden features never
    reach memory."""
    _, h, w, c = x.shape
    _, ho, wo, _ = y.shape
    hid, gt = w2t.shape
    x1, y1, w1, w2 = borrowed(x.ravel()), borrowed(y.ravel()), borrowed(w1t.ravel()), borrowed(w2t.ravel())
    b1, b2, zeros = borrowed(b1), borrowed(b2), borrowed(zeros)
    acc, gen = tile(x1, _TILE_BLOCKS), tile(x1, _GEN_TILE)
    scratch = np.empty(_GEN_TILE * c + _GEN_TILE * hid + wo * gt, x.dtype)  # no reference counting in the loops:
    centres = borrowed(scratch[:_GEN_TILE * c])  # borrowed views, scratch kept alive to the end
    hidden = borrowed(scratch[_GEN_TILE * c:_GEN_TILE * (c + hid)])
    row = borrowed(scratch[_GEN_TILE * (c + hid):])
    row_at_, col_at_ = np.empty(len(tdy), np.int64), (tdx - pw) * c
    row_at, col_at = borrowed(row_at_), borrowed(col_at_)
    ow_lo, ow_hi = _inside_columns(w, wo, tdx, sw, pw)
    for task in range(begin, end):
        n = task // ho
        oh = task - n * ho
        ih = oh * sh + cy - ph
        for ow0 in range(0, wo, _GEN_TILE):  # _GEN_TILE positions at a time: independent accumulator chains
            iw0 = ow0 * sw + cx - pw
            src, at0, step = x1, ((n * h + ih) * w + iw0) * c, sw * c  # the centres read in place ...
            if not (0 <= ih < h and iw0 >= 0 and ow0 + _GEN_TILE <= wo and iw0 + (_GEN_TILE - 1) * sw < w):
                src, at0, step = centres, 0, c  # ... or copied, zeros outside x, at the edges
                for q in range(_GEN_TILE):
                    iw = iw0 + q * sw
                    inside = ow0 + q < wo and 0 <= ih < h and 0 <= iw < w
                    at_x = ((n * h + ih) * w + iw) * c
                    for k in range(c):
                        centres[q * c + k] = x1[at_x + k] if inside else 0
            _tile_fc(gen, src, at0, step, c, w1, hid, b1, hidden, 0, _GEN_TILE, True)
            _tile_fc(gen, hidden, 0, hid, hid, w2, gt, b2, row, ow0 * gt, min(_GEN_TILE, wo - ow0), False)
        _apply_row(acc, row_at, col_at, x1, row, 0, y1, (n * ho + oh) * wo * c, zeros, n, oh, h, w, c, wo, gt, tdy,
                   tdx, sh, sw, ph, pw, ow_lo, ow_hi)
    keep_alive(scratch)
    keep_alive(row_at_)
    keep_alive(col_at_)


@njit(fastmath=_FAST)
def _forward_nchw(begin: int, end: int, x: Any, kern: Any, y: Any, zeros: Any, tdy: Any, tdx: Any, sh: int, ph: int,
                  pw: int) -> None:  # pragma: no cover - compiled
    """y (N, C, Ho, Wo) from x (N, C, H, W) and kern (N, G·T, Ho, Wo), C-contiguous, stride 1 along the rows (sh
    down the columns); tasks: (n, g, oh). Per tile (_CHANNELS channels × _BLOCKS blocks of the row) and tap, the
    _BLOCKS kernel vectors are loaded once and multiply every channel's input vector; a tap whose input row is
    outside the input adds kernel × ``zeros`` (a NaN kernel value there still gives NaN, as the zero padding does)."""
    _, c, h, w = x.shape
    _, gt, ho, wo = kern.shape
    taps = len(tdy)
    groups = gt // taps
    cg = c // groups
    x1, k1, y1 = x.ravel(), kern.ravel(), y.ravel()
    acc, kv = tile(x1, _NCHW_TILE), tile(x1, _BLOCKS)
    blocks = ((wo + LANES - 1) // LANES + _BLOCKS - 1) // _BLOCKS * _BLOCKS
    out_mask = np.empty(blocks, np.int64)  # lanes of block q inside the output row
    in_mask = np.empty((blocks, taps), np.int64)  # ... whose tap t reads inside the input row
    for q in range(blocks):
        out_mask[q] = lanes(0, max(0, min(LANES, wo - q * LANES)))
        for t in range(taps):
            col = q * LANES + tdx[t] - pw  # the input column lane 0 reads
            in_mask[q, t] = lanes(min(LANES, max(0, -col)), max(0, min(LANES, w - col, wo - q * LANES)))
    for task in range(begin, end):
        oh = task % ho
        n = task // ho // groups
        g = task // ho - n * groups
        for q0 in range(0, blocks, _BLOCKS):
            for c0 in range(g * cg, (g + 1) * cg, _CHANNELS):
                for k in range(_NCHW_TILE):
                    fill_at(acc, k * LANES, 0.0)
                for t in range(taps):
                    at_k = ((n * gt + g * taps + t) * ho + oh) * wo + q0 * LANES
                    for q in range(_BLOCKS):
                        load_at(kv, q * LANES, k1, at_k + q * LANES, out_mask[q0 + q])
                    ih = oh * sh - ph + tdy[t]
                    for j in range(_CHANNELS):
                        if c0 + j < (g + 1) * cg:
                            if 0 <= ih < h:
                                at_x = ((n * c + c0 + j) * h + ih) * w + q0 * LANES + tdx[t] - pw
                                for q in range(_BLOCKS):
                                    fma_vv_at(acc, (j * _BLOCKS + q) * LANES, kv, q * LANES, x1, at_x + q * LANES,
                                              in_mask[q0 + q, t])
                            else:
                                for q in range(_BLOCKS):
                                    fma_vv_at(acc, (j * _BLOCKS + q) * LANES, kv, q * LANES, zeros, 0, FULL)
                for j in range(_CHANNELS):
                    if c0 + j < (g + 1) * cg:
                        at_y = ((n * c + c0 + j) * ho + oh) * wo + q0 * LANES
                        for q in range(_BLOCKS):
                            store_at(acc, (j * _BLOCKS + q) * LANES, y1, at_y + q * LANES, out_mask[q0 + q])


@njit(parallel=True, fastmath=_REDUCE)
def _backward_nhwc(x: Any, kern: Any, gy: Any, gx: Any, gk: Any, tdy: Any, tdx: Any, sh: int, sw: int, ph: int,
                   pw: int) -> None:  # pragma: no cover - compiled
    """gk (N, Ho, Wo, G·T) and gx (N, H, W, C) from gy (N, Ho, Wo, C). Tasks: one per output row for gk (nine dot
    products over a group's channels at a time), then one per input row for gx, gathered from the outputs that read
    it (any stride), nine taps at a time."""
    n_, h, w, c = x.shape
    _, ho, wo, gt = kern.shape
    taps = len(tdy)
    groups = gt // taps
    cg = c // groups
    for task in prange(n_ * ho + n_ * h):
        zeros = np.zeros(c, x.dtype)
        coef = np.zeros(9, x.dtype)
        at = np.empty(9, np.int64)
        if task < n_ * ho:
            n = task // ho
            oh = task - n * ho
            x2 = x[n].reshape(h * w, c)
            for ow in range(wo):
                dyrow, grow = gy[n, oh, ow], gk[n, oh, ow]
                for t0 in range(0, taps, 9):
                    _input_rows(at, t0, taps, tdy, tdx, oh, ow, h, w, sh, sw, ph, pw)
                    for g in range(groups):
                        c0 = g * cg
                        _dot9(coef, dyrow[c0:c0 + cg], x2, zeros, at, c0)
                        for q in range(min(9, taps - t0)):
                            grow[g * taps + t0 + q] = coef[q]
        else:
            n = (task - n_ * ho) // h
            ih = task - n_ * ho - n * h
            gy2, k2 = gy[n].reshape(ho * wo, c), kern[n].reshape(ho * wo, gt)
            for iw in range(w):
                row = gx[n, ih, iw]
                row[:] = 0
                for t0 in range(0, taps, 9):
                    _output_rows(at, t0, taps, tdy, tdx, ih, iw, ho, wo, sh, sw, ph, pw)
                    for g in range(groups):
                        c0 = g * cg
                        for q in range(9):
                            coef[q] = k2[at[q], g * taps + t0 + q] if at[q] >= 0 else 0
                        _fma9(row[c0:c0 + cg], coef, gy2, zeros, at, c0)


def _tap_offsets(kernel_size: tuple[int, int], dilation: tuple[int, int]) -> tuple[Any, Any]:
    """(i·d_h, j·d_w) of every tap t = i·kw + j, as two int64 arrays: the kernels never divide to find a tap."""
    (kh, kw), (dh, dw) = kernel_size, dilation
    rows, cols = np.meshgrid(np.arange(kh) * dh, np.arange(kw) * dw, indexing="ij")
    return rows.ravel().astype(np.int64), cols.ravel().astype(np.int64)


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class InvolutionFunction(KernelFunction):
    """y (N, C, Ho, Wo) = Σ_t H[:, g(c)·T + t]·x shifted by tap t (module docstring); x (N, C, H, W), kernels
    (N, G·T, Ho, Wo); pad = the (top, left) zero padding. An NCHW input at stride 1 along the rows runs the NCHW
    forward; others run on channels-last data (the layer's generator gives its kernels that way: an NCHW input is
    copied to channels_last and the output copied back). The backward runs on channels-last data. Under
    ``create_graph`` and with a forward-mode tangent, ``reference`` (``derivatives``)."""

    @staticmethod
    def reference(x: torch.Tensor, kernels: torch.Tensor, kernel_size: tuple[int, int], stride: tuple[int, int],
                  padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
        """The same y by ``F.unfold`` (``derivatives.involution``), the 'after' padding from the output size."""
        pairs = tuple((pad, after_padding(size, k, s, d, pad, out)) for size, k, s, d, pad, out in
                      zip(x.shape[2:], kernel_size, stride, dilation, padding, kernels.shape[2:]))
        return derivatives.involution(x, kernels, kernel_size, stride, pairs, dilation)

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernels: torch.Tensor, kernel_size: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
        n, c, _, _ = x.shape
        ho, wo = kernels.shape[2:]
        tdy, tdx = _tap_offsets(kernel_size, dilation)
        ctx.geometry = (tdy, tdx, *stride, *padding)
        ctx.arguments = (kernel_size, stride, padding, dilation)
        ctx.save_for_backward(x, kernels)  # the caller's tensors (``reference``); the backward makes its copies
        zeros = torch.zeros(2 * LANES, dtype=x.dtype)
        if not _channels_last(x) and stride[1] == 1:
            xc, kc = x.detach().contiguous(), kernels.detach().to(x.dtype).contiguous()
            y = torch.empty(n, c, ho, wo, dtype=x.dtype)
            run_tasks(_forward_nchw, n * (kc.shape[1] // len(tdy)) * ho, xc.numpy(), kc.numpy(), y.numpy(),
                      zeros.numpy(), tdy, tdx, stride[0], padding[0], padding[1], work=y.numel())
            return y
        xs = x.detach().permute(0, 2, 3, 1).contiguous()
        ks = kernels.detach().to(x.dtype).permute(0, 2, 3, 1).contiguous()
        y = torch.empty(n, ho, wo, c, dtype=x.dtype)
        run_tasks(_forward_tiles, n * ho, xs.numpy(), ks.numpy(), y.numpy(), zeros.numpy(), *ctx.geometry,
                  work=y.numel())
        y = y.permute(0, 3, 1, 2)
        return y if _channels_last(x) else y.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, kernels = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, InvolutionFunction.reference, (x, kernels, *ctx.arguments), grad)
        xs = x.detach().permute(0, 2, 3, 1).contiguous()  # no copy when channels-last
        ks = kernels.detach().to(x.dtype).permute(0, 2, 3, 1).contiguous()
        gx, gk = torch.empty_like(xs), torch.empty_like(ks)
        sync_threads()
        _backward_nhwc(xs.numpy(), ks.numpy(), grad.permute(0, 2, 3, 1).contiguous().numpy(), gx.numpy(), gk.numpy(),
                       *ctx.geometry)
        return gx.permute(0, 3, 1, 2), gk.permute(0, 3, 1, 2), None, None, None, None


def involve(x: torch.Tensor, kernels: torch.Tensor, kernel_size: tuple[int, ...], stride: tuple[int, ...],
            padding: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """Y[n, c, p] = Σ_t H[n, g(c)·T + t, p]·x[n, c, p·s + t·d − pad] for 1-D or 2-D x (N, C, *S), kernels
    (N, G·T, *O), zero padding ``padding`` (before each dim; the after-padding only sets O)."""
    if x.dim() == 3:  # 1-D as 2-D with H = 1
        y = InvolutionFunction.apply(x.unsqueeze(2), kernels.unsqueeze(2), (1, *kernel_size), (1, *stride),
                                     (0, *padding), (1, *dilation))
        return y.squeeze(2)
    return InvolutionFunction.apply(x, kernels, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation))


def generate_and_involve(x: torch.Tensor, reduce_weight: torch.Tensor, reduce_bias: torch.Tensor | None,
                         span_weight: torch.Tensor, span_bias: torch.Tensor | None, kernel_size: tuple[int, ...],
                         stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
                         output_size: tuple[int, ...]) -> torch.Tensor:
    """The involution forward with its generator, without autograd: Y[n, c, p] = Σ_t H[n, g(c)·T + t, p] ·
    x[n, c, p·s + t·d − pad] with H[n, :, p] = W_span ReLU(W_reduce x[n, :, centre(p)] + b_reduce) + b_span and
    centre(p) = p·s + d·⌊(k − 1)/2⌋ − pad (zeros outside x). 1-D or 2-D x (N, C, *S) → (N, C, *output_size), zero
    padding ``padding`` before each dim; reduce (hid, C), span (G·T, hid), G dividing C. Runs on channels-last data
    (an NCHW x is copied in and the output copied back), one task per output row (``_generate_apply``). With a
    forward-mode tangent on an argument, the same by torch's ops (``_generate_and_involve_torch``)."""
    if has_tangent((x, reduce_weight, reduce_bias, span_weight, span_bias)):
        return _generate_and_involve_torch(x, reduce_weight, reduce_bias, span_weight, span_bias, kernel_size,
                                           stride, padding, dilation, output_size)
    if x.dim() == 3:  # 1-D as 2-D with H = 1
        x, kernel_size, stride, padding = x.unsqueeze(2), (1, *kernel_size), (1, *stride), (0, *padding)
        dilation, output_size = (1, *dilation), (1, *output_size)
        return _generate_and_involve_2d(x, reduce_weight, reduce_bias, span_weight, span_bias, kernel_size, stride,
                                        padding, dilation, output_size).squeeze(2)
    return _generate_and_involve_2d(x, reduce_weight, reduce_bias, span_weight, span_bias, kernel_size, stride,
                                    padding, dilation, output_size)


def _generate_and_involve_torch(x: torch.Tensor, reduce_weight: torch.Tensor, reduce_bias: torch.Tensor | None,
                                span_weight: torch.Tensor, span_bias: torch.Tensor | None,
                                kernel_size: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...],
                                dilation: tuple[int, ...], output_size: tuple[int, ...]) -> torch.Tensor:
    """``generate_and_involve`` by differentiable torch ops: the centres as a strided slice of the zero-padded x,
    the two FCs as ``F.linear``, then ``derivatives.involution``."""
    squeeze = x.dim() == 3
    if squeeze:  # 1-D as 2-D with H = 1
        x, kernel_size, stride, padding = x.unsqueeze(2), (1, *kernel_size), (1, *stride), (0, *padding)
        dilation, output_size = (1, *dilation), (1, *output_size)
    pairs = tuple((pad, after_padding(size, k, s, d, pad, out)) for size, k, s, d, pad, out in
                  zip(x.shape[2:], kernel_size, stride, dilation, padding, output_size))
    padded = derivatives.pad(x, pairs)
    (ho, wo), (sh, sw) = output_size, stride
    cy, cx = (d * ((k - 1) // 2) for k, d in zip(kernel_size, dilation))
    centres = padded[:, :, cy:cy + (ho - 1) * sh + 1:sh, cx:cx + (wo - 1) * sw + 1:sw]  # (N, C, Ho, Wo)
    hidden = torch.relu(F.linear(centres.movedim(1, -1), reduce_weight.to(x.dtype),
                                 None if reduce_bias is None else reduce_bias.to(x.dtype)))
    kernels = F.linear(hidden, span_weight.to(x.dtype), None if span_bias is None else span_bias.to(x.dtype))
    y = derivatives.involution(x, kernels.movedim(-1, 1), kernel_size, stride, pairs, dilation)
    return y.squeeze(2) if squeeze else y


def _generate_and_involve_2d(x: torch.Tensor, reduce_weight: torch.Tensor, reduce_bias: torch.Tensor | None,
                             span_weight: torch.Tensor, span_bias: torch.Tensor | None, kernel_size: tuple[int, ...],
                             stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...],
                             output_size: tuple[int, ...]) -> torch.Tensor:
    n, c = x.shape[:2]
    hid, gt = reduce_weight.shape[0], span_weight.shape[0]
    tdy, tdx = _tap_offsets(kernel_size, dilation)
    cy, cx = (d * ((k - 1) // 2) for k, d in zip(kernel_size, dilation))
    dtype = x.dtype
    xs = x.detach().permute(0, 2, 3, 1).contiguous()  # no copy for channels-last x
    y = torch.empty(n, *output_size, c, dtype=dtype)
    w1t = reduce_weight.detach().to(dtype).t().contiguous()
    w2t = span_weight.detach().to(dtype).t().contiguous()
    b1 = torch.zeros(hid, dtype=dtype) if reduce_bias is None else reduce_bias.detach().to(dtype).contiguous()
    b2 = torch.zeros(gt, dtype=dtype) if span_bias is None else span_bias.detach().to(dtype).contiguous()
    zeros = torch.zeros(2 * LANES, dtype=dtype)
    run_tasks(_generate_apply, n * output_size[0], xs.numpy(), w1t.numpy(), b1.numpy(), w2t.numpy(), b2.numpy(),
              y.numpy(), zeros.numpy(), tdy, tdx, cy, cx, *stride, *padding, work=y.numel())
    y = y.permute(0, 3, 1, 2)
    return y if _channels_last(x) else y.contiguous()


def warm_up(dtype: torch.dtype) -> None:
    """Compile (or load from the cache) every kernel of this module for ``dtype``: one tiny forward and backward."""
    x = torch.ones(1, 2, 3, 3, dtype=dtype, requires_grad=True)
    kernels = torch.full((1, 9, 3, 3), 0.5, dtype=dtype, requires_grad=True)
    involve(x, kernels, (3, 3), (1, 1), (1, 1), (1, 1)).sum().backward()
    involve(x.detach().contiguous(memory_format=torch.channels_last), kernels.detach(), (3, 3), (1, 1), (1, 1), (1, 1))
    generate_and_involve(x.detach(), torch.ones(1, 2, dtype=dtype), torch.ones(1, dtype=dtype),
                         torch.ones(9, 1, dtype=dtype), None, (3, 3), (1, 1), (1, 1), (1, 1), (3, 3))
