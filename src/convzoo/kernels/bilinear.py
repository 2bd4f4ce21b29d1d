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


@njit(inline="always")
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


@njit(inline="always")
def neighbours(py: float, px: float, h: int, w: int, index: Any) -> tuple[bool, float, float]:
    """(reads, ly, lx) for the point (py, px) of an h × w image, and index[0:4] = the flat pixels y·w + x of
    (y0, x0), (y0, x0+1), (y0+1, x0), (y0+1, x0+1), −1 for a neighbour outside the image. ``reads`` is False
    (and index untouched) when the point reads nothing: outside by a whole pixel or more, or not finite."""
    if not (py > -1.0 and py < h and px > -1.0 and px < w):
        return False, 0.0, 0.0
    y0 = int(math.floor(py))
    x0 = int(math.floor(px))
    top, bottom, left, right = y0 >= 0, y0 + 1 < h, x0 >= 0, x0 + 1 < w
    index[0] = y0 * w + x0 if top and left else -1
    index[1] = y0 * w + x0 + 1 if top and right else -1
    index[2] = (y0 + 1) * w + x0 if bottom and left else -1
    index[3] = (y0 + 1) * w + x0 + 1 if bottom and right else -1
    return True, py - y0, px - x0


@njit(inline="always")
def gather(row: Any, d: int, xn: Any, c: int, count: int, index: Any, wts: Any) -> None:  # pragma: no cover
    """row[d + k] = Σ_q wts[q]·xn[index[q], c + k] over the neighbours inside the image (index ≥ 0)."""
    i0, i1, i2, i3 = index[0], index[1], index[2], index[3]
    if i0 >= 0 and i1 >= 0 and i2 >= 0 and i3 >= 0:
        a0, a1, a2, a3 = wts[0], wts[1], wts[2], wts[3]
        for k in range(count):
            row[d + k] = a0 * xn[i0, c + k] + a1 * xn[i1, c + k] + a2 * xn[i2, c + k] + a3 * xn[i3, c + k]
        return
    for k in range(count):
        row[d + k] = 0
    for q in range(4):
        iq = index[q]
        if iq >= 0:
            aq = wts[q]
            for k in range(count):
                row[d + k] += aq * xn[iq, c + k]


@njit(inline="always")
def accumulate(row: Any, d: int, xn: Any, c: int, count: int, index: Any, wts: Any) -> None:  # pragma: no cover
    """row[d + k] += Σ_q wts[q]·xn[index[q], c + k] over the neighbours inside the image (index ≥ 0)."""
    i0, i1, i2, i3 = index[0], index[1], index[2], index[3]
    if i0 >= 0 and i1 >= 0 and i2 >= 0 and i3 >= 0:
        a0, a1, a2, a3 = wts[0], wts[1], wts[2], wts[3]
        for k in range(count):
            row[d + k] += a0 * xn[i0, c + k] + a1 * xn[i1, c + k] + a2 * xn[i2, c + k] + a3 * xn[i3, c + k]
        return
    for q in range(4):
        iq = index[q]
        if iq >= 0:
            aq = wts[q]
            for k in range(count):
                row[d + k] += aq * xn[iq, c + k]


@njit(inline="always")
def slopes(grow: Any, d: int, xn: Any, c: int, count: int, index: Any, wts: Any, acc: Any) -> None:  # pragma: no cover
    """acc += (Σ_k g_k·∂v_k/∂ly, Σ_k g_k·∂v_k/∂lx, Σ_k g_k·v_k) over channels c + k, v_k the unmasked bilinear read,
    g_k = grow[d + k]; wts = the four weights, then ly, lx, 1 − ly, 1 − lx (all in the data's dtype)."""
    i0, i1, i2, i3 = index[0], index[1], index[2], index[3]
    a0, a1, a2, a3 = wts[0], wts[1], wts[2], wts[3]
    ly, lx, uy, ux = wts[4], wts[5], wts[6], wts[7]
    zero = acc[0] * 0
    sy, sx, sm = zero, zero, zero
    if i0 >= 0 and i1 >= 0 and i2 >= 0 and i3 >= 0:
        for k in range(count):
            g = grow[d + k]
            v0, v1, v2, v3 = xn[i0, c + k], xn[i1, c + k], xn[i2, c + k], xn[i3, c + k]
            sm += g * (a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3)
            sy += g * (ux * (v2 - v0) + lx * (v3 - v1))
            sx += g * (uy * (v1 - v0) + ly * (v3 - v2))
    else:
        for k in range(count):
            g = grow[d + k]
            v0 = xn[i0, c + k] if i0 >= 0 else zero
            v1 = xn[i1, c + k] if i1 >= 0 else zero
            v2 = xn[i2, c + k] if i2 >= 0 else zero
            v3 = xn[i3, c + k] if i3 >= 0 else zero
            sm += g * (a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3)
            sy += g * (ux * (v2 - v0) + lx * (v3 - v1))
            sx += g * (uy * (v1 - v0) + ly * (v3 - v2))
    acc[0] += sy
    acc[1] += sx
    acc[2] += sm


@njit(inline="always")
def scatter(grow: Any, d: int, gxn: Any, c: int, count: int, index: Any, wts: Any, m: float) -> None:  # pragma: no cover
    """gxn[index[q], c + k] += m·wts[q]·grow[d + k] for the neighbours inside the image."""
    for q in range(4):
        iq = index[q]
        if iq >= 0:
            aq = wts[q] * m
            for k in range(count):
                gxn[iq, c + k] += aq * grow[d + k]
