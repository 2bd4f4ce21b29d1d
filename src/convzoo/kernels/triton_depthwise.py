"""Depthwise conv with depth multiplier m ≥ 1 as Triton kernels, writing the interleaved channels c·m + j directly.

    y[n, c·m + j, p] = b[c·m + j] + Σ_t w[c·m + j, t] · x[n, c, p·s + t·d − pad]      (zeros outside x)

Forward: one program per (tile of output positions, sample, tile of output channels), taps unrolled. Backward of
the input as a gather (no atomics): gx[n, c, q] = Σ_j Σ_t w[c·m + j, t] · gy[n, c·m + j, (q + pad − t·d)/s] over the
t where the division is exact; of the weight as a reduction over (sample, position) split into slices whose partial
sums are added by torch (deterministic); of the bias by torch. Any strides (NCHW and NHWC alike), the output in the
input's memory format; fp16 / bf16 / fp32 / fp64 (fp32 or fp64 accumulation). 1-D data runs as H = 1.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from . import derivatives
from .triton_autograd import define_op, no_grad_tensor
from .triton_runtime import accumulator_dtype, block, cdiv, empty_like_format, kernel_types, launch, split_count

Tensor = torch.Tensor


@triton.jit
def _forward_kernel(x_ptr, w_ptr, b_ptr, y_ptr, H, W, CO, HO, WO, M,
                    sxn, sxc, sxh, sxw, swo, swh, sww, syn, syc, syh, syw,
                    SH, SW, PH, PW, DH, DW,
                    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
                    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.program_id(1).to(tl.int64)
    o = tl.program_id(2) * BLOCK_O + tl.arange(0, BLOCK_O)
    p_ok = p < HO * WO
    o_ok = o < CO
    oh = p // WO
    ow = p % WO
    x_channel = x_ptr + n * sxn + (o // M)[None, :] * sxc
    acc = tl.zeros([BLOCK_P, BLOCK_O], dtype=ACC)
    for i in tl.static_range(KH):
        ih = oh * SH - PH + i * DH
        row_ok = p_ok & (ih >= 0) & (ih < H)
        for j in tl.static_range(KW):
            iw = ow * SW - PW + j * DW
            ok = row_ok & (iw >= 0) & (iw < W)
            xv = tl.load(x_channel + (ih * sxh + iw * sxw)[:, None], mask=ok[:, None] & o_ok[None, :], other=0.0)
            wv = tl.load(w_ptr + o * swo + i * swh + j * sww, mask=o_ok, other=0.0)
            acc += xv.to(ACC) * wv.to(ACC)[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=o_ok, other=0.0).to(ACC)[None, :]
    y = y_ptr + n * syn + o[None, :] * syc + (oh * syh + ow * syw)[:, None]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & o_ok[None, :])


@triton.jit
def _input_grad_kernel(g_ptr, w_ptr, gx_ptr, C, H, W, HO, WO, M,
                       sgn, sgc, sgh, sgw, swo, swh, sww, sxn, sxc, sxh, sxw,
                       SH, SW, PH, PW, DH, DW,
                       KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr,
                       BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr):
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    n = tl.program_id(1).to(tl.int64)
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    q_ok = q < H * W
    c_ok = c < C
    qh = q // W
    qw = q % W
    acc = tl.zeros([BLOCK_Q, BLOCK_C], dtype=ACC)
    for i in tl.static_range(KH):
        nh = qh + PH - i * DH  # = oh·SH when output row oh reads input row qh through tap row i
        oh = nh // SH
        row_ok = q_ok & (nh >= 0) & (nh % SH == 0) & (oh < HO)
        for j in tl.static_range(KW):
            nw = qw + PW - j * DW
            ow = nw // SW
            ok = row_ok & (nw >= 0) & (nw % SW == 0) & (ow < WO)
            position = (oh * sgh + ow * sgw)[:, None]
            for jm in range(M):
                o = c * M + jm
                g = tl.load(g_ptr + n * sgn + o[None, :] * sgc + position, mask=ok[:, None] & c_ok[None, :],
                            other=0.0)
                wv = tl.load(w_ptr + o * swo + i * swh + j * sww, mask=c_ok, other=0.0)
                acc += g.to(ACC) * wv.to(ACC)[None, :]
    gx = gx_ptr + n * sxn + c[None, :] * sxc + (qh * sxh + qw * sxw)[:, None]
    tl.store(gx, acc.to(gx_ptr.dtype.element_ty), mask=q_ok[:, None] & c_ok[None, :])


@triton.jit
def _weight_grad_kernel(x_ptr, g_ptr, part_ptr, H, W, CO, HO, WO, M, TOTAL, CHUNKS,
                        sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw,
                        SH, SW, PH, PW, DH, DW,
                        KW: tl.constexpr, T: tl.constexpr, ACC: tl.constexpr,
                        BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr):
    o = tl.program_id(0) * BLOCK_O + tl.arange(0, BLOCK_O)
    t = tl.program_id(1)
    split = tl.program_id(2)
    i = t // KW
    j = t % KW
    o_ok = o < CO
    c = o // M
    acc = tl.zeros([BLOCK_P, BLOCK_O], dtype=ACC)
    first = split * CHUNKS
    last = tl.minimum(first + CHUNKS, tl.cdiv(TOTAL, BLOCK_P))
    for chunk in range(first, last):
        q = chunk * BLOCK_P + tl.arange(0, BLOCK_P)  # flattened (sample, output position)
        q_ok = q < TOTAL
        n = (q // (HO * WO)).to(tl.int64)
        p = q % (HO * WO)
        oh = p // WO
        ow = p % WO
        ih = oh * SH - PH + i * DH
        iw = ow * SW - PW + j * DW
        ok = q_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        xv = tl.load(x_ptr + (n * sxn + ih * sxh + iw * sxw)[:, None] + c[None, :] * sxc,
                     mask=ok[:, None] & o_ok[None, :], other=0.0)
        g = tl.load(g_ptr + (n * sgn + oh * sgh + ow * sgw)[:, None] + o[None, :] * sgc,
                    mask=q_ok[:, None] & o_ok[None, :], other=0.0)
        acc += xv.to(ACC) * g.to(ACC)
    tl.store(part_ptr + (split * CO + o) * T + t, tl.sum(acc, axis=0), mask=o_ok)


def _output_size(size: int, lo: int, hi: int, k: int, s: int, d: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _as_2d(x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int]
           ) -> tuple[Tensor, Tensor, list[int], list[int], list[int]]:
    """1-D data and kernels as 2-D ones with H = 1: padding given per dim as (before, after) → 4 numbers."""
    if x.dim() == 3:
        return (x.unsqueeze(2), weight.unsqueeze(2), [1, stride[0]], [0, 0, padding[0], padding[1]],
                [1, dilation[0]])
    return x, weight, stride, padding, dilation


def _output(x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int]) -> Tensor:
    """The uninitialised 2-D output (N, C·m, H_out, W_out) in the (2-D view of the) input's memory format."""
    x2, w2, s, pad, d = _as_2d(x, weight, stride, padding, dilation)
    ho = _output_size(x2.shape[2], pad[0], pad[1], w2.shape[2], s[0], d[0])
    wo = _output_size(x2.shape[3], pad[2], pad[3], w2.shape[3], s[1], d[1])
    return empty_like_format(x2, (x.shape[0], weight.shape[0], ho, wo))


def _forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int], padding: list[int],
             dilation: list[int]) -> Tensor:
    y = _output(x, weight, stride, padding, dilation)
    x2, w2, s, pad, d = _as_2d(x, weight, stride, padding, dilation)
    n, c, h, w = x2.shape
    co, _, kh, kw = w2.shape
    ho, wo = y.shape[2:]
    if y.numel():
        acc, _, _ = kernel_types(x.dtype)
        bp, bo = block(ho * wo, 64), block(co, 32)
        launch(_forward_kernel, (cdiv(ho * wo, bp), n, cdiv(co, bo)),
            x2, w2, x2 if bias is None else bias, y, h, w, co, ho, wo, co // c,
            *x2.stride(), w2.stride(0), w2.stride(2), w2.stride(3), *y.stride(),
            s[0], s[1], pad[0], pad[2], d[0], d[1],
            KH=kh, KW=kw, HAS_BIAS=bias is not None, ACC=acc, BLOCK_P=bp, BLOCK_O=bo)
    return y.squeeze(2) if x.dim() == 3 else y


def _forward_fake(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int], padding: list[int],
                  dilation: list[int]) -> Tensor:
    y = _output(x, weight, stride, padding, dilation)
    return y.squeeze(2) if x.dim() == 3 else y


def _backward(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int],
              padding: list[int], dilation: list[int], needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    x2, w2, s, pad, d = _as_2d(x, weight, stride, padding, dilation)
    g2 = grad.unsqueeze(2) if x.dim() == 3 else grad
    n, c, h, w = x2.shape
    co, _, kh, kw = w2.shape
    ho, wo = g2.shape[2:]
    acc, _, _ = kernel_types(x.dtype)
    grad_x = grad_w = grad_b = no_grad_tensor(x)
    if needs[0]:
        gx = empty_like_format(x2, tuple(x2.shape))
        bq, bc = block(h * w, 64), block(c, 32)
        if gx.numel():
            launch(_input_grad_kernel, (cdiv(h * w, bq), n, cdiv(c, bc)),
                g2, w2, gx, c, h, w, ho, wo, co // c, *g2.stride(), w2.stride(0), w2.stride(2), w2.stride(3),
                *gx.stride(), s[0], s[1], pad[0], pad[2], d[0], d[1],
                KH=kh, KW=kw, ACC=acc, BLOCK_Q=bq, BLOCK_C=bc)
        grad_x = gx.squeeze(2) if x.dim() == 3 else gx
    if needs[1]:
        total, taps = n * ho * wo, kh * kw
        bp, bo = block(total, 64), block(co, 32)
        chunks = cdiv(total, bp)
        splits = split_count(cdiv(co, bo) * taps, chunks, x.device)
        per_split = cdiv(chunks, splits)
        part = torch.zeros((splits, co, taps), dtype=accumulator_dtype(x.dtype), device=x.device)
        if total:
            launch(_weight_grad_kernel, (cdiv(co, bo), taps, splits),
                x2, g2, part, h, w, co, ho, wo, co // c, total, per_split, *x2.stride(), *g2.stride(),
                s[0], s[1], pad[0], pad[2], d[0], d[1], KW=kw, T=taps, ACC=acc, BLOCK_P=bp, BLOCK_O=bo)
        grad_w = part.sum(0).reshape(weight.shape).to(weight.dtype)
    if needs[2]:
        grad_b = grad.sum(dim=[0, *range(2, grad.dim())]).to(grad.dtype)
    return grad_x, grad_w, grad_b


def _backward_fake(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int],
                   padding: list[int], dilation: list[int], needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    empty = no_grad_tensor(x)
    return (torch.empty_like(x) if needs[0] else empty, torch.empty_like(weight) if needs[1] else empty,
            weight.new_empty(weight.shape[0]) if needs[2] else empty)


def _reference(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: list[int], padding: list[int],
               dilation: list[int]) -> Tensor:
    """The same by torch's conv (groups = C), for double backward and forward-mode AD (``derivatives``)."""
    return derivatives.padded_conv(x, weight, bias, stride, derivatives.pairs_of(padding), dilation, x.shape[1])


_call = define_op("triton_depthwise", _forward, _forward_fake, _backward, _backward_fake, _reference)


def depthwise_conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                   padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...]) -> Tensor:
    """Depthwise conv of x (N, C, H, W) or (N, C, L) with weight (C·m, 1, *k) and zero padding given as (before,
    after) pairs per spatial dim → (N, C·m, *O) in x's memory format (see the module docstring)."""
    pad = [v for pair in padding for v in pair]
    return _call(x, weight, bias, list(stride), pad, list(dilation))
