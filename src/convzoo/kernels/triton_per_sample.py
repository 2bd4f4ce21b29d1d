"""A conv whose kernel differs per sample (dynamic conv, CondConv, ODConv) as Triton kernels: one launch for the
batch, each sample's aggregated kernel read by pointer.

    y[n, o, p] = b[n, o] + Σ_{c ∈ group(o)} Σ_t W[n, o, c, t] · x[n, c, p·s + t·d − pad]       (zeros outside x)

Forward: an implicit GEMM per sample, (positions × C_in/g·taps) @ (C_in/g·taps × C_out/g), the A tile gathered
from x tap by tap (no patch tensor), one program per (position tile, sample, conv group × output-channel tile).
Backward of the input: the transposed implicit GEMM, gathered (no atomics): gx[n, c, q] = Σ_o Σ_t W[n, o, c, t] ·
gy[n, o, (q + pad − t·d)/s] over exact divisions; of the kernels: per sample (C_out/g × positions) @ (positions ×
C_in/g) for every tap, the positions split into slices whose partial sums torch adds; of the biases by torch. Any
strides (NCHW and NHWC), output in x's memory format, fp16 / bf16 / fp32 / fp64. 1-D data runs as H = 1.
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
def _forward_kernel(x_ptr, w_ptr, b_ptr, y_ptr, H, W, HO, WO, CPG, OPG, O_BLOCKS,
                    sxn, sxc, sxh, sxw, swn, swo, swc, swh, sww, sbn, sbo, syn, syc, syh, syw,
                    SH, SW, PH, PW, DH, DW,
                    KH: tl.constexpr, KW: tl.constexpr, HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
                    DOT: tl.constexpr, PREC: tl.constexpr,
                    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.program_id(1).to(tl.int64)
    group = tl.program_id(2) // O_BLOCKS
    o_local = (tl.program_id(2) % O_BLOCKS) * BLOCK_O + tl.arange(0, BLOCK_O)
    o = group * OPG + o_local
    p_ok = p < HO * WO
    o_ok = o_local < OPG
    oh = p // WO
    ow = p % WO
    x_n = x_ptr + n * sxn + group * CPG * sxc
    w_n = w_ptr + n * swn + o[None, :] * swo
    acc = tl.zeros([BLOCK_P, BLOCK_O], dtype=ACC)
    for i in tl.static_range(KH):
        ih = oh * SH - PH + i * DH
        row_ok = p_ok & (ih >= 0) & (ih < H)
        for j in tl.static_range(KW):
            iw = ow * SW - PW + j * DW
            ok = row_ok & (iw >= 0) & (iw < W)
            position = (ih * sxh + iw * sxw)[:, None]
            for c0 in range(0, CPG, BLOCK_C):
                c = c0 + tl.arange(0, BLOCK_C)
                c_ok = c < CPG
                a = tl.load(x_n + c[None, :] * sxc + position, mask=ok[:, None] & c_ok[None, :], other=0.0)
                b = tl.load(w_n + c[:, None] * swc + i * swh + j * sww, mask=c_ok[:, None] & o_ok[None, :],
                            other=0.0)
                acc = tl.dot(a.to(DOT), b.to(DOT), acc, input_precision=PREC, out_dtype=ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + n * sbn + o * sbo, mask=o_ok, other=0.0).to(ACC)[None, :]
    y = y_ptr + n * syn + o[None, :] * syc + (oh * syh + ow * syw)[:, None]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & o_ok[None, :])


@triton.jit
def _input_grad_kernel(g_ptr, w_ptr, gx_ptr, H, W, HO, WO, CPG, OPG, C_BLOCKS,
                       sgn, sgc, sgh, sgw, swn, swo, swc, swh, sww, sxn, sxc, sxh, sxw,
                       SH, SW, PH, PW, DH, DW,
                       KH: tl.constexpr, KW: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr,
                       PREC: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr):
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    n = tl.program_id(1).to(tl.int64)
    group = tl.program_id(2) // C_BLOCKS
    c = (tl.program_id(2) % C_BLOCKS) * BLOCK_C + tl.arange(0, BLOCK_C)
    q_ok = q < H * W
    c_ok = c < CPG
    qh = q // W
    qw = q % W
    g_n = g_ptr + n * sgn + group * OPG * sgc
    w_n = w_ptr + n * swn + group * OPG * swo + c[None, :] * swc
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
            for o0 in range(0, OPG, BLOCK_O):
                o = o0 + tl.arange(0, BLOCK_O)
                o_ok = o < OPG
                a = tl.load(g_n + o[None, :] * sgc + position, mask=ok[:, None] & o_ok[None, :], other=0.0)
                b = tl.load(w_n + o[:, None] * swo + i * swh + j * sww, mask=o_ok[:, None] & c_ok[None, :],
                            other=0.0)
                acc = tl.dot(a.to(DOT), b.to(DOT), acc, input_precision=PREC, out_dtype=ACC)
    gx = gx_ptr + n * sxn + (group * CPG + c)[None, :] * sxc + (qh * sxh + qw * sxw)[:, None]
    tl.store(gx, acc.to(gx_ptr.dtype.element_ty), mask=q_ok[:, None] & c_ok[None, :])


@triton.jit
def _weight_grad_kernel(x_ptr, g_ptr, part_ptr, N, H, W, HO, WO, CPG, OPG, CO, O_BLOCKS, C_BLOCKS, SPLITS, CHUNKS,
                        sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw,
                        SH, SW, PH, PW, DH, DW,
                        KW: tl.constexpr, T: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr,
                        PREC: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr):
    tile = tl.program_id(0)
    group = tile // (O_BLOCKS * C_BLOCKS)
    o_local = ((tile // C_BLOCKS) % O_BLOCKS) * BLOCK_O + tl.arange(0, BLOCK_O)
    c = (tile % C_BLOCKS) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(1).to(tl.int64)
    t = tl.program_id(2) // SPLITS
    split = tl.program_id(2) % SPLITS
    i = t // KW
    j = t % KW
    o = group * OPG + o_local
    o_ok = o_local < OPG
    c_ok = c < CPG
    x_n = x_ptr + n * sxn + (group * CPG + c)[None, :] * sxc
    g_n = g_ptr + n * sgn + o[:, None] * sgc
    acc = tl.zeros([BLOCK_O, BLOCK_C], dtype=ACC)
    first = split * CHUNKS
    last = tl.minimum(first + CHUNKS, tl.cdiv(HO * WO, BLOCK_P))
    for chunk in range(first, last):
        p = chunk * BLOCK_P + tl.arange(0, BLOCK_P)
        p_ok = p < HO * WO
        oh = p // WO
        ow = p % WO
        ih = oh * SH - PH + i * DH
        iw = ow * SW - PW + j * DW
        ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(g_n + (oh * sgh + ow * sgw)[None, :], mask=o_ok[:, None] & p_ok[None, :], other=0.0)
        b = tl.load(x_n + (ih * sxh + iw * sxw)[:, None], mask=ok[:, None] & c_ok[None, :], other=0.0)
        acc = tl.dot(a.to(DOT), b.to(DOT), acc, input_precision=PREC, out_dtype=ACC)
    part = part_ptr + (((split * N + n) * CO + o[:, None]) * CPG + c[None, :]) * T + t
    tl.store(part, acc, mask=o_ok[:, None] & c_ok[None, :])


def _output_size(size: int, lo: int, hi: int, k: int, s: int, d: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _as_2d(x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int]
           ) -> tuple[Tensor, Tensor, list[int], list[int], list[int]]:
    """1-D data and kernels as 2-D ones with H = 1; padding per dim as (before, after) → 4 numbers."""
    if x.dim() == 3:
        return (x.unsqueeze(2), weight.unsqueeze(3), [1, stride[0]], [0, 0, padding[0], padding[1]],
                [1, dilation[0]])
    return x, weight, stride, padding, dilation


def _output(x: Tensor, weight: Tensor, stride: list[int], padding: list[int], dilation: list[int]) -> Tensor:
    x2, w2, s, pad, d = _as_2d(x, weight, stride, padding, dilation)
    ho = _output_size(x2.shape[2], pad[0], pad[1], w2.shape[3], s[0], d[0])
    wo = _output_size(x2.shape[3], pad[2], pad[3], w2.shape[4], s[1], d[1])
    return empty_like_format(x2, (x.shape[0], weight.shape[1], ho, wo))


def _forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int, stride: list[int], padding: list[int],
             dilation: list[int]) -> Tensor:
    y = _output(x, weight, stride, padding, dilation)
    x2, w2, s, pad, d = _as_2d(x, weight, stride, padding, dilation)
    n, c, h, w = x2.shape
    _, co, cpg, kh, kw = w2.shape
    ho, wo = y.shape[2:]
    if y.numel():
        opg = co // groups
        acc, dot, precision = kernel_types(x.dtype)
        bp, bo, bc = block(ho * wo, 64), block(opg, 64), block(cpg, 32)
        o_blocks = cdiv(opg, bo)
        bias_args = (x2, 0, 0) if bias is None else (bias, bias.stride(0), bias.stride(1))
        launch(_forward_kernel, (cdiv(ho * wo, bp), n, groups * o_blocks),
            x2, w2, bias_args[0], y, h, w, ho, wo, cpg, opg, o_blocks, *x2.stride(), *w2.stride(), *bias_args[1:],
            *y.stride(), s[0], s[1], pad[0], pad[2], d[0], d[1], KH=kh, KW=kw, HAS_BIAS=bias is not None,
            ACC=acc, DOT=dot, PREC=precision, BLOCK_P=bp, BLOCK_O=bo, BLOCK_C=bc)
    return y.squeeze(2) if x.dim() == 3 else y


def _forward_fake(x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int, stride: list[int],
                  padding: list[int], dilation: list[int]) -> Tensor:
    y = _output(x, weight, stride, padding, dilation)
    return y.squeeze(2) if x.dim() == 3 else y


def _backward(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int, stride: list[int],
              padding: list[int], dilation: list[int], needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    x2, w2, s, pad, d = _as_2d(x, weight, stride, padding, dilation)
    g2 = grad.unsqueeze(2) if x.dim() == 3 else grad
    n, c, h, w = x2.shape
    _, co, cpg, kh, kw = w2.shape
    ho, wo = g2.shape[2:]
    opg = co // groups
    acc, dot, precision = kernel_types(x.dtype)
    grad_x = grad_w = grad_b = no_grad_tensor(x)
    if needs[0]:
        gx = empty_like_format(x2, tuple(x2.shape))
        bq, bc, bo = block(h * w, 64), block(cpg, 64), block(opg, 32)
        c_blocks = cdiv(cpg, bc)
        if gx.numel():
            launch(_input_grad_kernel, (cdiv(h * w, bq), n, groups * c_blocks),
                g2, w2, gx, h, w, ho, wo, cpg, opg, c_blocks, *g2.stride(), *w2.stride(), *gx.stride(),
                s[0], s[1], pad[0], pad[2], d[0], d[1], KH=kh, KW=kw, ACC=acc, DOT=dot, PREC=precision,
                BLOCK_Q=bq, BLOCK_C=bc, BLOCK_O=bo)
        grad_x = gx.squeeze(2) if x.dim() == 3 else gx
    if needs[1]:
        taps = kh * kw
        bp, bo, bc = block(ho * wo, 64), block(opg, 64), block(cpg, 64)
        o_blocks, c_blocks, chunks = cdiv(opg, bo), cdiv(cpg, bc), cdiv(ho * wo, bp)
        tiles = groups * o_blocks * c_blocks
        splits = split_count(tiles * n * taps, chunks, x.device)
        part = torch.zeros((splits, n, co, cpg, taps), dtype=accumulator_dtype(x.dtype), device=x.device)
        if n and ho * wo:
            launch(_weight_grad_kernel, (tiles, n, taps * splits),
                x2, g2, part, n, h, w, ho, wo, cpg, opg, co, o_blocks, c_blocks, splits, cdiv(chunks, splits),
                *x2.stride(), *g2.stride(), s[0], s[1], pad[0], pad[2], d[0], d[1], KW=kw, T=taps, ACC=acc,
                DOT=dot, PREC=precision, BLOCK_P=bp, BLOCK_O=bo, BLOCK_C=bc)
        grad_w = part.sum(0).reshape(weight.shape).to(weight.dtype)
    if needs[2]:
        grad_b = grad.sum(dim=list(range(2, grad.dim()))).to(grad.dtype)
    return grad_x, grad_w, grad_b


def _backward_fake(grad: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int, stride: list[int],
                   padding: list[int], dilation: list[int], needs: list[bool]) -> tuple[Tensor, Tensor, Tensor]:
    empty = no_grad_tensor(x)
    return (torch.empty_like(x) if needs[0] else empty, torch.empty_like(weight) if needs[1] else empty,
            weight.new_empty(weight.shape[:2]) if needs[2] else empty)


def _reference(x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int, stride: list[int], padding: list[int],
               dilation: list[int]) -> Tensor:
    """The same by one grouped torch conv (``derivatives.per_sample_conv``), for double backward and forward-mode
    AD."""
    return derivatives.per_sample_conv(x, weight, bias, stride, derivatives.pairs_of(padding), dilation, groups)


_call = define_op("triton_per_sample_conv", _forward, _forward_fake, _backward, _backward_fake, _reference)


def per_sample_conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: tuple[int, ...],
                    padding: tuple[tuple[int, int], ...], dilation: tuple[int, ...], groups: int) -> Tensor:
    """y[n] = conv(x[n], weight[n]) + bias[n]: x (N, C_in, H, W) or (N, C_in, L), weight (N, C_out, C_in/g, *k),
    bias (N, C_out) or None, zero padding as (before, after) pairs per spatial dim → (N, C_out, *O) in x's memory
    format (see the module docstring)."""
    pad = [v for pair in padding for v in pair]
    return _call(x, weight, bias, int(groups), list(stride), pad, list(dilation))
