"""The 3×3 'same' depthwise kernels (stride 1, dilation 1, one column of padding before; any rows of padding, any
columns after, m = 1): a tile of WINDOW_ROWS output rows keeps a window of the input (or of ∂y) in registers as it
walks along the rows, so every value is loaded once per tile and feeds each of the up to 9 multiply-adds that read
it.

    y[n, c, oh, ow] = b[c] + Σ_{i,t} w[c, i, t] · x[n, c, oh + i − ph, ow + t − 1]

NCHW (``correlate_nchw_same``, tasks: (n, c) planes): each of the tile's WINDOW_ROWS + 2 input rows keeps three
consecutive blocks of LANES positions, and output block k reads blocks k − 1, k, k + 1 through constant shuffles.
channels_last (``correlate_nhwc_same``, tasks: (n, tile of WINDOW_ROWS output rows)): per block of LANES channels, the
tile walks the input columns; each column's WINDOW_ROWS + 2 vectors feed three open outputs per tile row (positions
iw − 1, iw, iw + 1), and the one completed is stored. Both serve the forward and ∂x (∂y correlated with the
flipped kernel has the same padding). ``weight_grad_nhwc_same``: ∂w and ∂b on channels_last data, ∂y's last three
columns of each tile row in registers, the 9 taps' and the bias's sums in registers over a chunk of tiles.

Every address in a tile's registers is a constant once the step is unrolled (steps rotate the window by copies
that LLVM turns into register renames), and the arrays the inlined steps take are ``borrowed`` (no reference count
per call, which would spill every register). Steps inside the map run without a test or a mask; steps at its
edges test. Compiled for AVX-512 (32 registers) a tile fits in registers; compiled for AVX2 (16) it spills, and the
channels_last forward is then no faster than the position tiles of ``depthwise``: the layer times both there
(its forms 'kernel' and 'kernel, position tiles').
"""

from __future__ import annotations

from typing import Any

from .numba_runtime import njit
from .simd import (
    FULL,
    LANES,
    add_at,
    block,
    borrowed,
    copy_at,
    fill,
    fill_at,
    fma_at,
    fma_window_at,
    lanes,
    load_at,
    store,
    store_at,
    store_fence,
    stream_at,
    tile,
)

_FAST = {"contract"}  # fused multiply-add; no reassociation, no finite-math assumptions (NaN and Inf propagate)
WINDOW_ROWS = 4  # output rows per tile (tasks: tiles)
_NCHW_SLOTS = 3 * (WINDOW_ROWS + 2)  # NCHW: three consecutive blocks of each input row the tile reads
OPEN_SLOTS = 3 * WINDOW_ROWS  # channels_last: three open outputs per tile row (forwards), ∂y's last three (∂w)
_SUMS = 10  # channels_last ∂w: the 9 taps' sums and the bias's


def same_3x3(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pw: int) -> bool:
    """Whether these kernels compute this correlation: 3×3, stride 1, dilation 1, one column of padding before."""
    return (kh, kw, sh, sw, dh, dw, pw) == (3, 3, 1, 1, 1, 1, 1)


@njit(fastmath=_FAST, inline="always")
def _nchw_step(xt: Any, wt: Any, acc: Any, src: Any, out: Any, bias: float, x_at: int, x_mask: int, y_at: int,
               y_mask: int, top: int, h_: int, w_: int, wo: int, rows_left: int, checks: bool, x_on: bool,
               y_on: bool) -> None:  # pragma: no cover - compiled
    """One step of ``correlate_nchw_same`` along a tile: the next block of each input row the tile reads (into its
    slot 2; zero if not x_on, or outside the plane), then the output block at y_at of each tile row from three
    consecutive blocks of its three input rows if y_on, then the blocks move down a slot. checks (a constant): test
    the tile's input and output rows (a tile at the plane's top or bottom)."""
    for u in range(WINDOW_ROWS + 2):
        if x_on and (not checks or 0 <= top + u < h_):
            load_at(xt, (3 * u + 2) * LANES, src, x_at + u * w_, x_mask)
        else:
            fill_at(xt, (3 * u + 2) * LANES, 0.0)
    if y_on:
        for j in range(WINDOW_ROWS):
            if not checks or j < rows_left:
                fill(acc, bias)
                for i in range(3):  # input row j + i; shifts −1, 0, +1 (taps 0, 1, 2): constant shuffles
                    fma_window_at(acc, 0, wt, 3 * i * LANES, xt, (3 * (j + i) + 1) * LANES, -1)
                    fma_window_at(acc, 0, wt, (3 * i + 1) * LANES, xt, (3 * (j + i) + 1) * LANES, 0)
                    fma_window_at(acc, 0, wt, (3 * i + 2) * LANES, xt, (3 * (j + i) + 1) * LANES, 1)
                store(acc, out, y_at + j * wo, y_mask)
    for u in range(WINDOW_ROWS + 2):
        copy_at(xt, (3 * u) * LANES, xt, (3 * u + 1) * LANES)
        copy_at(xt, (3 * u + 1) * LANES, xt, (3 * u + 2) * LANES)


@njit(fastmath=_FAST, inline="always")
def _nchw_tile(xt: Any, wt: Any, acc: Any, src: Any, out: Any, bias: float, x_at: int, y_at: int, top: int, h_: int,
               w_: int, wo: int, rows_left: int, inside: bool) -> None:  # pragma: no cover - compiled
    """A tile of WINDOW_ROWS output rows of ``correlate_nchw_same``, left to right: the steps whose loads and stores
    are whole blocks (no masks; and no tests for a tile ``inside`` the plane), and at the row's two ends steps with
    masks and tests. Three copies of the step's code in all (compile time)."""
    x_blocks, y_blocks = (w_ + LANES - 1) // LANES, (wo + LANES - 1) // LANES
    steady = min(w_ // LANES, wo // LANES + 1)  # steps 1 … steady − 1: input block b and output block b − 1 whole
    for u in range(WINDOW_ROWS + 2):  # the blocks before the row: zero (the padding)
        fill_at(xt, (3 * u) * LANES, 0.0)
        fill_at(xt, (3 * u + 1) * LANES, 0.0)
    for b in range(y_blocks + 1):
        if 1 <= b < steady and inside:
            _nchw_step(xt, wt, acc, src, out, bias, x_at + b * LANES, FULL, y_at + (b - 1) * LANES, FULL, top, h_,
                       w_, wo, rows_left, False, True, True)
        elif 1 <= b < steady:
            _nchw_step(xt, wt, acc, src, out, bias, x_at + b * LANES, FULL, y_at + (b - 1) * LANES, FULL, top, h_,
                       w_, wo, rows_left, True, True, True)
        else:
            x_mask = lanes(0, max(0, min(LANES, w_ - b * LANES)))
            y_mask = lanes(0, max(0, min(LANES, wo - (b - 1) * LANES)))
            _nchw_step(xt, wt, acc, src, out, bias, x_at + b * LANES, x_mask, y_at + (b - 1) * LANES, y_mask, top,
                       h_, w_, wo, rows_left, True, b < x_blocks, b > 0)


@njit(fastmath=_FAST)
def correlate_nchw_same(begin: int, end: int, src: Any, w: Any, b: Any, out: Any, ph: int) -> None:  # pragma: no cover
    """``_correlate_nchw_rows`` for 3×3 at stride 1 and dilation 1 with 1 column of padding before (any rows of
    padding; the forward of a 'same' 3×3, and its ∂x with the flipped kernel): src (N, C, H, W), w (C, 3, 3), b (C,),
    out (N, C, Ho, Wo), C-contiguous; tasks: (n, c) planes. For a tile of WINDOW_ROWS output rows, each of the
    WINDOW_ROWS + 2 input rows it reads keeps three consecutive blocks in registers, loaded once; output block k reads
    blocks k − 1, k, k + 1 through constant shuffles (masked loads: zero outside the row, the padding). No staged
    copy of the rows, and no step of a tile's interior tests anything."""
    c_, h_, w_ = src.shape[1], src.shape[2], src.shape[3]
    ho, wo = out.shape[2], out.shape[3]
    s1, o1 = borrowed(src.ravel()), borrowed(out.ravel())  # passed to the inlined steps: no reference counting
    xt, wt, acc = tile(s1, _NCHW_SLOTS), tile(s1, 9), block(s1)
    for task in range(begin, end):
        c = task % c_
        for k in range(9):
            fill_at(wt, k * LANES, w[c, k // 3, k % 3])
        for oh0 in range(0, ho, WINDOW_ROWS):
            top = oh0 - ph
            x_at, y_at = (task * h_ + top) * w_, (task * ho + oh0) * wo
            inside = top >= 0 and top + WINDOW_ROWS + 1 < h_ and oh0 + WINDOW_ROWS <= ho
            _nchw_tile(xt, wt, acc, s1, o1, b[c], x_at, y_at, top, h_, w_, wo, ho - oh0, inside)


@njit(inline="always")
def window_tile(task: int, tiles: int, ph: int, h_: int, ho: int) -> tuple[int, int, int, bool]:  # pragma: no cover
    """Task (n, tile) of a channels_last window kernel with ``tiles`` tiles per sample: (n, its first output row oh0,
    the first input row it reads top = oh0 − ph, whether all its rows lie inside the map: nothing to test)."""
    n = task // tiles
    oh0 = (task - n * tiles) * WINDOW_ROWS
    top = oh0 - ph
    return n, oh0, top, top >= 0 and top + WINDOW_ROWS + 1 < h_ and oh0 + WINDOW_ROWS <= ho


@njit(inline="always")
def close_column(acc: Any, bias: Any, out: Any, y_at: int, row_y: int, mask: int, rows_left: int, checks: bool,
                 y_on: bool, stream: bool) -> None:  # pragma: no cover - compiled
    """The end of a step of a channels_last window kernel: each tile row's completed position (slot 3 j) stored at
    y_at + j · row_y if y_on (non-temporal if ``stream``: only where checks is False, whole blocks on 64-byte
    boundaries; checks: only the rows_left rows that exist), then the open slots move down and the last starts
    from ``bias``."""
    if y_on:
        for j in range(WINDOW_ROWS):
            if stream:
                stream_at(acc, 3 * j * LANES, out, y_at + j * row_y)
            elif not checks or j < rows_left:
                store_at(acc, 3 * j * LANES, out, y_at + j * row_y, mask)
    for j in range(WINDOW_ROWS):
        copy_at(acc, 3 * j * LANES, acc, (3 * j + 1) * LANES)
        copy_at(acc, (3 * j + 1) * LANES, acc, (3 * j + 2) * LANES)
        copy_at(acc, (3 * j + 2) * LANES, bias, 0)


@njit(fastmath=_FAST, inline="always")
def _nhwc_step(acc: Any, wt: Any, xv: Any, bias: Any, src: Any, out: Any, x_at: int, y_at: int, mask: int, top: int,
               h_: int, row_x: int, row_y: int, rows_left: int, checks: bool, x_on: bool, y_on: bool,
               stream: bool) -> None:  # pragma: no cover - compiled
    """One step of ``correlate_nhwc_same``: input column iw (x_at: row ``top``'s, if x_on) into the open outputs
    (slot 3 j + s of tile row j: position iw − 1 + s), from input row top + u to tile row u − i with tap (i, t)
    into slot 2 − t; then each row's position iw − 1 is complete and stored at y_at + j · row_y (if y_on), and the
    slots move down, the last one starting from the bias. checks (a constant): test the rows (a tile at the map's
    top or bottom)."""
    for u in range(WINDOW_ROWS + 2):
        if x_on and (not checks or 0 <= top + u < h_):
            load_at(xv, 0, src, x_at + u * row_x, mask)
            for i in range(3):
                if 0 <= u - i < WINDOW_ROWS:
                    for t in range(3):
                        fma_at(acc, (3 * (u - i) + 2 - t) * LANES, wt, (3 * i + t) * LANES, xv, 0)
    close_column(acc, bias, out, y_at, row_y, mask, rows_left, checks, y_on, stream)


@njit(fastmath=_FAST)
def correlate_nhwc_same(begin: int, end: int, x: Any, w: Any, b: Any, y: Any, ph: int,
                        stream: bool) -> None:  # pragma: no cover - compiled
    """y[n, oh, ow, c] = b[c] + Σ_{i,t} w[3 i + t, c] · x[n, oh + i − ph, ow + t − 1, c]: x (N, H, W, C), w (9, C),
    b (C,), y (N, Ho, Wo, C), C-contiguous. Tasks: (n, tile of WINDOW_ROWS output rows); per block of LANES
    channels the tile walks the columns iw = 0 … Wo (past the row's end: the padding, nothing loaded), storing position
    iw − 1 of each row at each step."""
    h_, w_, c_ = x.shape[1], x.shape[2], x.shape[3]
    ho, wo = y.shape[1], y.shape[2]
    s1, o1, w1, b1 = borrowed(x.ravel()), borrowed(y.ravel()), borrowed(w.ravel()), borrowed(b.ravel())
    acc, wt, xv, bias = tile(s1, OPEN_SLOTS), tile(s1, 9), block(s1), block(s1)
    tiles = (ho + WINDOW_ROWS - 1) // WINDOW_ROWS
    row_x, row_y = w_ * c_, wo * c_
    steady = min(w_, wo + 1)  # steps 1 … steady − 1 load a column and store a position
    for task in range(begin, end):
        n, oh0, top, inside = window_tile(task, tiles, ph, h_, ho)
        for c0 in range(0, c_, LANES):
            mask = lanes(0, min(LANES, c_ - c0))
            for k in range(9):
                load_at(wt, k * LANES, w1, k * c_ + c0, mask)
            load_at(bias, 0, b1, c0, mask)
            for s in range(OPEN_SLOTS):
                copy_at(acc, s * LANES, bias, 0)
            x_at = (n * h_ + top) * row_x + c0
            y_at = (n * ho + oh0) * row_y - c_ + c0  # position −1 of the tile's first row
            whole = inside and mask == FULL
            for iw in range(wo + 1):
                if whole and 1 <= iw < steady:
                    _nhwc_step(acc, wt, xv, bias, s1, o1, x_at + iw * c_, y_at + iw * c_, FULL, top, h_, row_x,
                               row_y, ho - oh0, False, True, True, stream)
                else:
                    _nhwc_step(acc, wt, xv, bias, s1, o1, x_at + iw * c_, y_at + iw * c_, mask, top, h_, row_x,
                               row_y, ho - oh0, True, iw < w_, iw >= 1, False)
    if stream:
        store_fence()  # the streamed stores visible before the caller (or another thread) reads y


@njit(fastmath=_FAST, inline="always")
def _grad_step(acc: Any, gw: Any, xv: Any, src: Any, grad: Any, x_at: int, g_at: int, mask: int, top: int, h_: int,
               row_x: int, row_g: int, rows_left: int, checks: bool, g_on: bool) -> None:  # pragma: no cover
    """One step of ``weight_grad_nhwc_same`` at input column iw: ∂y's position iw + 1 of each tile row (at g_at, if
    g_on; else zero) into slot 3 j + 2 and the bias's sum (slot 9 of acc); then input row top + u pairs with tile
    row j = u − i: acc[3 i + t] += ∂y[j, iw + 1 − t] · x[u, iw]; then ∂y's slots move down."""
    for j in range(WINDOW_ROWS):
        if g_on and (not checks or j < rows_left):
            load_at(gw, (3 * j + 2) * LANES, grad, g_at + j * row_g, mask)
            add_at(acc, 9 * LANES, gw, (3 * j + 2) * LANES)
        else:
            fill_at(gw, (3 * j + 2) * LANES, 0.0)
    for u in range(WINDOW_ROWS + 2):
        if not checks or 0 <= top + u < h_:
            load_at(xv, 0, src, x_at + u * row_x, mask)
            for i in range(3):
                if 0 <= u - i < WINDOW_ROWS:
                    for t in range(3):
                        fma_at(acc, (3 * i + t) * LANES, gw, (3 * (u - i) + 2 - t) * LANES, xv, 0)
    for j in range(WINDOW_ROWS):
        copy_at(gw, 3 * j * LANES, gw, (3 * j + 1) * LANES)
        copy_at(gw, (3 * j + 1) * LANES, gw, (3 * j + 2) * LANES)


@njit(fastmath=_FAST)
def weight_grad_nhwc_same(begin: int, end: int, x: Any, g: Any, partial: Any, tiles_per_chunk: int,
                          ph: int) -> None:  # pragma: no cover - compiled
    """partial[k, i, t, 0, c] += Σ ∂y[n, oh, ow, c] · x[n, oh + i − ph, ow + t − 1, c] and partial[k, 3, 0, 0, c]
    += Σ ∂y[n, oh, ow, c] over the tiles of WINDOW_ROWS output rows (n, tile) of chunk k: x (N, H, W, C), ∂y
    (N, Ho, Wo, C), partial (chunks, 4, 3, 1, C) zeroed by the caller and summed over the chunks by torch (the
    layout of ``depthwise``'s weight-gradient kernels). Tasks: chunks of tiles; per tile and block of LANES
    channels the 10 sums stay in registers while the tile walks the input columns."""
    n_, h_, w_, c_ = x.shape
    ho, wo = g.shape[1], g.shape[2]
    s1, g1, p1 = borrowed(x.ravel()), borrowed(g.ravel()), borrowed(partial.ravel())
    acc, gw, xv = tile(s1, _SUMS), tile(s1, OPEN_SLOTS), block(s1)
    tiles = (ho + WINDOW_ROWS - 1) // WINDOW_ROWS
    row_x, row_g = w_ * c_, wo * c_
    steady = min(w_, wo - 1)  # steps 0 … steady − 1 load a whole position of ∂y
    for k in range(begin, end):
        base = k * 12 * c_
        for task in range(k * tiles_per_chunk, min((k + 1) * tiles_per_chunk, n_ * tiles)):
            n, oh0, top, inside = window_tile(task, tiles, ph, h_, ho)
            for c0 in range(0, c_, LANES):
                mask = lanes(0, min(LANES, c_ - c0))
                for s in range(_SUMS):
                    load_at(acc, s * LANES, p1, base + s * c_ + c0, mask)
                x_at = (n * h_ + top) * row_x + c0
                g_at = (n * ho + oh0) * row_g + c0
                for j in range(WINDOW_ROWS):  # before column 0: ∂y's positions −1 (zero) and 0
                    fill_at(gw, (3 * j + 1) * LANES, 0.0)
                    if j < ho - oh0:
                        load_at(gw, (3 * j + 2) * LANES, g1, g_at + j * row_g, mask)
                        add_at(acc, 9 * LANES, gw, (3 * j + 2) * LANES)
                    else:
                        fill_at(gw, (3 * j + 2) * LANES, 0.0)
                    copy_at(gw, 3 * j * LANES, gw, (3 * j + 1) * LANES)
                    copy_at(gw, (3 * j + 1) * LANES, gw, (3 * j + 2) * LANES)
                whole = inside and mask == FULL
                for iw in range(w_):
                    if whole and iw < steady:
                        _grad_step(acc, gw, xv, s1, g1, x_at + iw * c_, g_at + (iw + 1) * c_, FULL, top, h_, row_x,
                                   row_g, ho - oh0, False, True)
                    else:
                        _grad_step(acc, gw, xv, s1, g1, x_at + iw * c_, g_at + (iw + 1) * c_, mask, top, h_, row_x,
                                   row_g, ho - oh0, True, iw + 1 < wo)
                for ow in range(w_ + 1, wo):  # positions only the padding pairs with (2+ columns after): ∂b alone
                    for j in range(WINDOW_ROWS):
                        if j < ho - oh0:
                            load_at(xv, 0, g1, g_at + j * row_g + ow * c_, mask)
                            add_at(acc, 9 * LANES, xv, 0)
                for s in range(_SUMS):
                    store_at(acc, s * LANES, p1, base + s * c_ + c0, mask)
