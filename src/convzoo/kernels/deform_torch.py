"""Deformable convolution v1/v2 as a pure-PyTorch op (torchvision ``deform_conv2d`` semantics and argument order).

For output position p = (oh, ow), tap t = (i, j) and offset group g the sample point is

    py = oh·s_h − pad_h + i·d_h + Δy,   px = ow·s_w − pad_w + j·d_w + Δx,

read by bilinear interpolation from the four neighbours (y0, x0) = (⌊py⌋, ⌊px⌋), (y0, x0+1), (y0+1, x0),
(y0+1, x0+1) with weights (1−ly)(1−lx), (1−ly)lx, ly(1−lx), ly·lx (ly = py − y0, lx = px − x0); a neighbour outside
the image reads zero. One ``grid_sample`` reads every (sample, offset group, tap, position) point for all the
group's channels (``bilinear_sample``, whose backward takes the positions' derivative from the right at integer
positions, as torchvision's does); the columns come out as (N, groups, C/groups·k², H_out·W_out) and one GEMM with
the weight (per conv group) gives the output, in channels_last order for a channels_last input.

Non-finite offsets or masks never index memory: their points read zero, and the outputs they touch are set to NaN,
as a standard conv propagates NaN.

float16 / bfloat16 inputs: the positions are float32 (from the offsets in any dtype) and ``bilinear_sample`` reads
them in float32, so the columns carry one rounding to the input's dtype, as a plain conv's input does; the mask
product and the GEMM run in the input's dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .bilinear_sample import bilinear_sample
from .grad_layout import grad_in_layout


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if len(value) != 2:
        raise ValueError(f"{name}={value!r} must be an int or a pair of ints")
    return (int(value[0]), int(value[1]))


def deform_conv2d(
    x: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: Tensor | None = None,
) -> Tensor:
    """y = deformable conv of x (N, C, H, W) with weight (C_out, C/groups, kh, kw); offset (N, 2·G·kh·kw, Ho, Wo)
    as (dy, dx) per tap, taps row-major, G = offset groups; mask (N, G·kh·kw, Ho, Wo) for v2 or None.
    The output keeps the input's memory format (channels_last in → channels_last out)."""
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"x and weight must be 4-D, got x {tuple(x.shape)} and weight {tuple(weight.shape)}")
    n, c, h, w = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    if c_per_group == 0 or c % c_per_group:
        raise ValueError(f"weight.shape[1]={c_per_group} must divide the input's channels C={c}")
    groups = c // c_per_group
    if c_out % groups:
        raise ValueError(f"weight.shape[0]={c_out} must be divisible by groups={groups}")
    taps = kh * kw
    if offset.dim() != 4 or offset.shape[1] == 0 or offset.shape[1] % (2 * taps):
        raise ValueError(f"offset must have shape (N, 2·offset_groups·{taps}, Ho, Wo), got {tuple(offset.shape)}")
    og = offset.shape[1] // (2 * taps)
    if c % og:
        raise ValueError(f"offset groups G={og} (from offset.shape[1]) must divide the input's channels C={c}")
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    ho, wo = offset.shape[2], offset.shape[3]
    if offset.shape[0] != n:
        raise ValueError(f"offset.shape[0]={offset.shape[0]} must equal the batch N={n}")
    if mask is not None and tuple(mask.shape) != (n, og * taps, ho, wo):
        raise ValueError(f"mask must have shape {(n, og * taps, ho, wo)}, got {tuple(mask.shape)}")
    # contiguity first: inside torch.func.vmap only that query is implemented (a contiguous x is never channels_last)
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)

    # Sample coordinates (N, G, taps, Ho, Wo): one per (sample, offset group, tap, position), shared by the group's
    # channels inside grid_sample (which computes each point's 4 indices and weights once, then loops channels).
    coord_dtype = torch.promote_types(offset.dtype, torch.float32)
    off = offset.to(coord_dtype).reshape(n, og, taps, 2, ho, wo)
    dev = offset.device
    tap_i = (torch.arange(kh, device=dev, dtype=coord_dtype) * dh).repeat_interleave(kw)  # (taps,)
    tap_j = (torch.arange(kw, device=dev, dtype=coord_dtype) * dw).repeat(kh)
    row = torch.arange(ho, device=dev, dtype=coord_dtype) * sh - ph
    col = torch.arange(wo, device=dev, dtype=coord_dtype) * sw - pw
    py = off[:, :, :, 0] + (tap_i[:, None] + row)[:, :, None]  # (N, G, taps, Ho, Wo)
    px = off[:, :, :, 1] + (tap_j[:, None] + col)[:, None, :]
    # Read by grid_sample (``bilinear_sample``: the positions' derivative from the right at integer positions, as
    # torchvision's); non-finite or far-away points never reach the sampler as such: they read zero, and the
    # outputs they touch are set to NaN below.
    sampled = bilinear_sample(x.contiguous().reshape(n * og, c // og, h, w), py.reshape(n * og, taps, ho * wo),
                              px.reshape(n * og, taps, ho * wo))  # (N·G, C/G, taps, L)
    columns = sampled.reshape(n, og, c // og, taps, ho * wo)
    if mask is not None:
        columns = columns * mask.reshape(n, og, 1, taps, ho * wo).to(columns.dtype)
    columns = columns.reshape(n, groups, c_per_group * taps, ho * wo)  # row index c·taps + t, as the weight's
    w_mat = grad_in_layout(weight).reshape(groups, c_out // groups, c_per_group * taps)  # ∂w in weight's strides
    if channels_last:  # (N, L, C_out): channels_last comes out of the GEMM directly
        out = torch.matmul(columns.transpose(-1, -2), w_mat.transpose(-1, -2))  # (N, groups, L, C_out/g)
        out = out.permute(0, 2, 1, 3).reshape(n, ho, wo, c_out)
        if bias is not None:
            out = out + bias
        y = out.permute(0, 3, 1, 2)
    else:
        y = torch.matmul(w_mat, columns).reshape(n, c_out, ho, wo)
        if bias is not None:
            y = y + bias.reshape(1, c_out, 1, 1)
    bad = ~torch.isfinite(offset).all(dim=1)  # (N, Ho, Wo): some tap of some group had a non-finite offset
    if mask is not None:
        bad = bad | ~torch.isfinite(mask).all(dim=1)
    return torch.where(bad[:, None], torch.nan, y)
