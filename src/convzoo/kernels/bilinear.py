"""Bilinear reads with zeros outside the image, shared by the deformable kernels (numba, inlined).

torchvision's ``deform_conv2d`` convention (``grid_sample``'s too, with ``align_corners=False``, on pixel
coordinates): a point (py, px) with py ≤ −1, py ≥ H, px ≤ −1 or px ≥ W reads 0; otherwise, with
(y0, x0) = (⌊py⌋, ⌊px⌋), ly = py − y0, lx = px − x0,

    v = (1−ly)(1−lx)·I[y0, x0] + (1−ly)·lx·I[y0, x0+1] + ly·(1−lx)·I[y0+1, x0] + ly·lx·I[y0+1, x0+1],

a neighbour outside the image counting as 0. The range test comes before any float → int conversion, so NaN, ±Inf
and huge offsets never index memory.
"""

from __future__ import annotations

import math
from typing import Any

from .numba_runtime import njit
from .simd import FULL, LANES, block, fill, fill_at, fma, fma_vv_at, lanes, load, store, tile, total_at


@njit()
def set_weights(wts: Any, ly: float, lx: float, m: float) -> None:  # pragma: no cover - compiled
    """wts[0:4] = m × the four bilinear weights (order of ``neighbours``' index); wts[4:8] = ly, lx, 1 − ly, 1 − lx."""
    uy, ux = 1.0 - ly, 1.0 - lx
    wts[0] = uy * ux * m
    wts[1] = uy * lx * m
    wts[2] = ly * ux * m
    wts[3] = ly * lx * m
    wts[4] = ly
    wts[5] = lx
    wts[6] = uy
    wts[7] = ux


@njit()
def neighbours(py: float, px: float, h: int, w: int, index: Any,
               slopes: bool) -> tuple[bool, float, float]:  # pragma: no cover - compiled
    """(reads, ly, lx) for the point (py, px) of an h × w image, and index[0:4] = the flat pixels y·w + x of
    (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1), −1 for a neighbour outside the image. ``reads`` is False
    (and index untouched) when the point reads nothing: outside by a whole pixel or more, or not finite. With
    ``slopes`` (the backward) a coordinate of exactly −1 counts as inside: the value there is 0 but its derivative
    is the one from inside the image, as torchvision's and grid_sample's backward give it."""
    low_y, low_x = (py >= -1.0, px >= -1.0) if slopes else (py > -1.0, px > -1.0)
    if not (low_y and py < h and low_x and px < w):
        return False, 0.0, 0.0
    y0 = int(math.floor(py))
    x0 = int(math.floor(px))
    top, bottom, left, right = y0 >= 0, y0 + 1 < h, x0 >= 0, x0 + 1 < w
    index[0] = y0 * w + x0 if top and left else -1
    index[1] = y0 * w + x0 + 1 if top and right else -1
    index[2] = (y0 + 1) * w + x0 if bottom and left else -1
    index[3] = (y0 + 1) * w + x0 + 1 if bottom and right else -1
    return True, py - y0, px - x0


@njit(fastmath={"contract"}, inline="always")
def gather(row: Any, d: int, x1: Any, stride: int, c: int, count: int, index: Any,
           wts: Any) -> None:  # pragma: no cover - compiled
    """row[d + k] = Σ_q wts[q]·x1[index[q]·stride + c + k], k < count, over the neighbours inside the image
    (index ≥ 0), x1 the image (H·W, stride) flattened: LANES channels at a time in one register (a plain loop over
    the channels, left to LLVM's vectoriser, ran slower: ``bench_kernels_irregular``)."""
    acc = block(x1)
    i0, i1, i2, i3 = index[0], index[1], index[2], index[3]
    if i0 >= 0 and i1 >= 0 and i2 >= 0 and i3 >= 0 and count % LANES == 0:  # inside, whole blocks: no tests
        a0, a1, a2, a3 = wts[0], wts[1], wts[2], wts[3]
        for k0 in range(0, count, LANES):
            fill(acc, 0.0)
            fma(acc, a0, x1, i0 * stride + c + k0, FULL)
            fma(acc, a1, x1, i1 * stride + c + k0, FULL)
            fma(acc, a2, x1, i2 * stride + c + k0, FULL)
            fma(acc, a3, x1, i3 * stride + c + k0, FULL)
            store(acc, row, d + k0, FULL)
        return
    for k0 in range(0, count, LANES):
        mask = lanes(0, min(LANES, count - k0))
        fill(acc, 0.0)
        for q in range(4):
            if index[q] >= 0:
                fma(acc, wts[q], x1, index[q] * stride + c + k0, mask)
        store(acc, row, d + k0, mask)


@njit(fastmath={"contract"}, inline="always")
def sum_points(row: Any, d: int, x1: Any, stride: int, c: int, count: int, index: Any, wts: Any,
               points: int) -> None:  # pragma: no cover - compiled
    """row[d + k] = Σ_{p < points} Σ_q wts[p, q]·x1[index[p, q]·stride + c + k], k < count, over each point's
    neighbours inside the image (index[p, q] ≥ 0; a point that reads nothing has all four at −1): LANES channels at
    a time summed over every point in one register, stored once."""
    acc = block(x1)
    for k0 in range(0, count, LANES):
        mask = lanes(0, min(LANES, count - k0))
        fill(acc, 0.0)
        for p in range(points):
            for q in range(4):
                if index[p, q] >= 0:
                    fma(acc, wts[p, q], x1, index[p, q] * stride + c + k0, mask)
        store(acc, row, d + k0, mask)


@njit(fastmath={"contract"}, inline="always")
def slopes(grow: Any, d: int, x1: Any, stride: int, c: int, count: int, index: Any, wts: Any,
           acc: Any) -> None:  # pragma: no cover - compiled
    """acc += (Σ_k g_k·∂v_k/∂ly, Σ_k g_k·∂v_k/∂lx, Σ_k g_k·v_k), k < count, v_k the unmasked bilinear read of
    channel c + k of x1 (H·W, stride) flattened, g_k = grow[d + k]; wts = the four weights, then ly, lx, 1 − ly,
    1 − lx (in the data's dtype). Through the dot products D_q = Σ_k g_k·x[index[q], c + k] (0 for a neighbour
    outside), LANES channels at a time in four registers: Σ g·v = Σ_q wts[q]·D_q, Σ g·∂v/∂ly = (1 − lx)(D2 − D0) +
    lx(D3 − D1), Σ g·∂v/∂lx = (1 − ly)(D1 − D0) + ly(D3 − D2)."""
    dots, gv = tile(x1, 4), block(x1)
    for q in range(4):
        fill_at(dots, q * LANES, 0.0)
    for k0 in range(0, count, LANES):
        mask = lanes(0, min(LANES, count - k0))
        load(gv, grow, d + k0, mask)
        for q in range(4):
            if index[q] >= 0:
                fma_vv_at(dots, q * LANES, gv, 0, x1, index[q] * stride + c + k0, mask)
    d0, d1, d2, d3 = total_at(dots, 0), total_at(dots, LANES), total_at(dots, 2 * LANES), total_at(dots, 3 * LANES)
    ly, lx, uy, ux = wts[4], wts[5], wts[6], wts[7]
    acc[0] += ux * (d2 - d0) + lx * (d3 - d1)
    acc[1] += uy * (d1 - d0) + ly * (d3 - d2)
    acc[2] += wts[0] * d0 + wts[1] * d1 + wts[2] * d2 + wts[3] * d3


@njit(fastmath={"contract"}, inline="always")
def scatter(grow: Any, d: int, gx1: Any, stride: int, c: int, count: int, index: Any, wts: Any,
            m: float) -> None:  # pragma: no cover - compiled
    """gx1[index[q]·stride + c + k] += m·wts[q]·grow[d + k], k < count, for the neighbours inside the image (gx1 the
    gradient (H·W, stride) flattened), LANES channels at a time."""
    acc = block(gx1)
    for q in range(4):
        if index[q] >= 0:
            aq, at = wts[q] * m, index[q] * stride + c
            for k0 in range(0, count, LANES):
                mask = lanes(0, min(LANES, count - k0))
                load(acc, gx1, at + k0, mask)
                fma(acc, aq, grow, d + k0, mask)
                store(acc, gx1, at + k0, mask)
