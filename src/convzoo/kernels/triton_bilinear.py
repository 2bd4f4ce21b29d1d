"""Bilinear reads for the Triton kernels of the deformable families (deformable v1/v2, DCNv3), torchvision's
convention: a point reads zero unless −1 < y < H and −1 < x < W; inside, its four neighbours (⌊y⌋ + {0, 1}, ⌊x⌋ +
{0, 1}) weigh (1 − l_y)(1 − l_x), (1 − l_y)l_x, l_y(1 − l_x), l_y·l_x (l = fractional part) and a neighbour outside
the image reads zero. A non-finite coordinate never becomes an index: it is reported (``finite``) so the caller makes
its output NaN, as a standard conv propagates NaN; huge finite coordinates are outside and read zero.
"""

import triton
import triton.language as tl


@triton.jit
def corners(py, px, H, W):
    """For vectors of sample points (py, px): (y0, x0, ly, lx, ok00, ok01, ok10, ok11, finite) — the top-left
    neighbour, the fractional parts, which of the four neighbours lie in the image, which points are finite."""
    finite = ((py - py) == 0) & ((px - px) == 0)  # False for NaN and ±Inf
    inside = finite & (py > -1.0) & (py < H) & (px > -1.0) & (px < W)
    py = tl.where(inside, py, -2.0)
    px = tl.where(inside, px, -2.0)
    y0f = tl.floor(py)
    x0f = tl.floor(px)
    y0 = y0f.to(tl.int32)
    x0 = x0f.to(tl.int32)
    top = inside & (y0 >= 0)
    bottom = inside & (y0 + 1 < H)
    left = x0 >= 0
    right = x0 + 1 < W
    return y0, x0, py - y0f, px - x0f, top & left, top & right, bottom & left, bottom & right, finite


@triton.jit
def gather(channel, y0, x0, sh, sw, ok00, ok01, ok10, ok11, c_ok, ACC: tl.constexpr):
    """The four neighbours of every point in every channel of a tile, as [points, channels] in ``ACC``:
    ``channel`` is the [1, channels] pointer to each channel's plane, ``c_ok`` [1, channels] its mask."""
    at = (y0 * sh + x0 * sw)[:, None]
    x00 = tl.load(channel + at, mask=ok00[:, None] & c_ok, other=0.0).to(ACC)
    x01 = tl.load(channel + at + sw, mask=ok01[:, None] & c_ok, other=0.0).to(ACC)
    x10 = tl.load(channel + at + sh, mask=ok10[:, None] & c_ok, other=0.0).to(ACC)
    x11 = tl.load(channel + at + sh + sw, mask=ok11[:, None] & c_ok, other=0.0).to(ACC)
    return x00, x01, x10, x11


@triton.jit
def scatter(target, y0, x0, sh, sw, ok00, ok01, ok10, ok11, c_ok, value, ly, lx):
    """Add ``value`` [points, channels] times each neighbour's bilinear weight into ``target`` (pointer [1,
    channels] to each channel's plane) with atomics: the adjoint of ``gather`` weighted by the same weights."""
    at = (y0 * sh + x0 * sw)[:, None]
    ly = ly[:, None]
    lx = lx[:, None]
    dtype = target.dtype.element_ty
    tl.atomic_add(target + at, (value * (1 - ly) * (1 - lx)).to(dtype), mask=ok00[:, None] & c_ok)
    tl.atomic_add(target + at + sw, (value * (1 - ly) * lx).to(dtype), mask=ok01[:, None] & c_ok)
    tl.atomic_add(target + at + sh, (value * ly * (1 - lx)).to(dtype), mask=ok10[:, None] & c_ok)
    tl.atomic_add(target + at + sh + sw, (value * ly * lx).to(dtype), mask=ok11[:, None] & c_ok)
