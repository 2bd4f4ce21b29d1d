"""Deformable convolution v1/v2 (torchvision ``deform_conv2d`` semantics) as a Triton implicit GEMM: the bilinear,
masked reads happen inside the GEMM's loads, so no column tensor is ever written.

    y[n, o, p] = b[o] + Σ_{c ∈ group(o)} Σ_t W[o, c, t] · m_gt(p) · x_c(p·s − pad + t·d + Δp_gt(p))

(g = c's offset group, x_c read bilinearly with zeros outside, ``triton_bilinear``). Forward: one program per
(position tile, sample, conv group × output-channel tile) accumulates (positions × C_out/g) over taps and input
channels; the channels are walked in segments that lie in one conv group and one offset group (length gcd of the
two group sizes), so each segment's points are computed once per tap. Backward: (1) per (position tile, sample,
offset group × tap), the column gradient gcol = gy · W (a GEMM tile over C_out/g, never stored) gives the mask and
offset gradients (reduced over the group's channels in registers) and the input gradient (scattered to the four
neighbours with atomics into an fp32 / fp64 buffer, as torchvision's CUDA kernel does: not bitwise deterministic);
(2) the weight gradient Σ_{n,p} gy · column, the (sample, position) sum split into slices whose partial sums torch
adds; (3) the bias gradient by torch. A non-finite offset or mask makes the outputs it touches NaN (as the pure op)
and contributes no gradient. Any strides (NCHW and NHWC), output in x's memory format, fp16 / bf16 / fp32 / fp64.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from . import deform_torch
from .triton_autograd import define_op, no_grad_tensor
from .triton_bilinear import corners, gather, scatter
from .triton_runtime import accumulator_dtype, block, cdiv, empty_like_format, kernel_types, launch, split_count

Tensor = torch.Tensor


@triton.jit
def _forward_kernel(x_ptr, off_ptr, m_ptr, w_ptr, b_ptr, y_ptr, H, W, HO, WO, CPG, OPG, CPOG, SEG, O_BLOCKS,
                    sxn, sxc, sxh, sxw, son, soc, soh, sow, smn, smc, smh, smw, swo, swc, swh, sww,
                    syn, syc, syh, syw, SH, SW, PH, PW, DH, DW,
                    KH: tl.constexpr, KW: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr,
                    ACC: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
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
    x_n = x_ptr + n * sxn
    off_p = off_ptr + n * son + oh * soh + ow * sow
    m_p = m_ptr + n * smn + oh * smh + ow * smw
    w_o = w_ptr + o[None, :] * swo
    acc = tl.zeros([BLOCK_P, BLOCK_O], dtype=ACC)
    for i in tl.static_range(KH):
        for j in tl.static_range(KW):
            base_y = (oh * SH - PH + i * DH).to(ACC)
            base_x = (ow * SW - PW + j * DW).to(ACC)
            for segment in range(0, CPG // SEG):
                c_first = group * CPG + segment * SEG  # this segment's channels lie in one offset group
                field = c_first // CPOG * (KH * KW) + i * KW + j  # (offset group, tap)
                py = tl.where(p_ok, base_y + tl.load(off_p + 2 * field * soc, mask=p_ok, other=0.0).to(ACC), -2.0)
                px = base_x + tl.load(off_p + (2 * field + 1) * soc, mask=p_ok, other=0.0).to(ACC)
                y0, x0, ly, lx, ok00, ok01, ok10, ok11, finite = corners(py, px, H, W)
                scale = tl.where(finite, 1.0, float("nan")).to(ACC)
                if HAS_MASK:
                    scale = scale * tl.load(m_p + field * smc, mask=p_ok, other=0.0).to(ACC)
                w00 = ((1 - ly) * (1 - lx) * scale)[:, None]
                w01 = ((1 - ly) * lx * scale)[:, None]
                w10 = (ly * (1 - lx) * scale)[:, None]
                w11 = (ly * lx * scale)[:, None]
                for c0 in range(0, SEG, BLOCK_C):
                    c = c0 + tl.arange(0, BLOCK_C)
                    c_ok = c < SEG
                    x00, x01, x10, x11 = gather(x_n + (c_first + c)[None, :] * sxc, y0, x0, sxh, sxw,
                                                ok00, ok01, ok10, ok11, c_ok[None, :], ACC)
                    column = w00 * x00 + w01 * x01 + w10 * x10 + w11 * x11
                    weight = tl.load(w_o + (segment * SEG + c)[:, None] * swc + i * swh + j * sww,
                                     mask=c_ok[:, None] & o_ok[None, :], other=0.0)
                    acc = tl.dot(column.to(DOT), weight.to(DOT), acc, input_precision=PREC, out_dtype=ACC)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=o_ok, other=0.0).to(ACC)[None, :]
    y = y_ptr + n * syn + o[None, :] * syc + (oh * syh + ow * syw)[:, None]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & o_ok[None, :])


@triton.jit
def _fields_grad_kernel(x_ptr, off_ptr, m_ptr, w_ptr, g_ptr, gx_ptr, goff_ptr, gm_ptr,
                        H, W, HO, WO, CPG, OPG, CPOG, SEG,
                        sxn, sxc, sxh, sxw, son, soc, soh, sow, smn, smc, smh, smw, swo, swc, swh, sww,
                        sgn, sgc, sgh, sgw, sbn, sbc, sbh, sbw, sfn, sfc, sfh, sfw, sqn, sqc, sqh, sqw,
                        SH, SW, PH, PW, DH, DW,
                        KW: tl.constexpr, T: tl.constexpr, HAS_MASK: tl.constexpr, NEED_X: tl.constexpr,
                        NEED_FIELDS: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr, PREC: tl.constexpr,
                        BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    n = tl.program_id(1).to(tl.int64)
    field = tl.program_id(2)  # offset group · T + tap
    og = field // T
    t = field % T
    i = t // KW
    j = t % KW
    p_ok = p < HO * WO
    oh = p // WO
    ow = p % WO
    off_p = off_ptr + n * son + oh * soh + ow * sow
    py = (oh * SH - PH + i * DH).to(ACC) + tl.load(off_p + 2 * field * soc, mask=p_ok, other=0.0).to(ACC)
    px = (ow * SW - PW + j * DW).to(ACC) + tl.load(off_p + (2 * field + 1) * soc, mask=p_ok, other=0.0).to(ACC)
    py = tl.where(p_ok, py, -2.0)  # rows past the end read nothing
    y0, x0, ly, lx, ok00, ok01, ok10, ok11, finite = corners(py, px, H, W)
    m = tl.full([BLOCK_P], 1.0, ACC)
    if HAS_MASK:
        m = tl.load(m_ptr + n * smn + field * smc + oh * smh + ow * smw, mask=p_ok, other=0.0).to(ACC)
    m = tl.where(finite & (m - m == 0), m, 0.0)  # a non-finite point's outputs are NaN: no gradient flows
    g_p = g_ptr + n * sgn + (oh * sgh + ow * sgw)[:, None]
    grad_m = tl.zeros([BLOCK_P], dtype=ACC)
    grad_y = tl.zeros([BLOCK_P], dtype=ACC)
    grad_x = tl.zeros([BLOCK_P], dtype=ACC)
    for segment in range(0, CPOG // SEG):
        c_first = og * CPOG + segment * SEG  # this segment's channels lie in one conv group
        group = c_first // CPG
        for c0 in range(0, SEG, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            c_ok = c < SEG
            column = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)  # ∂L/∂column = Σ_o gy[o, p] · W[o, c, t]
            for o0 in range(0, OPG, BLOCK_O):
                o = group * OPG + o0 + tl.arange(0, BLOCK_O)
                o_ok = o0 + tl.arange(0, BLOCK_O) < OPG
                gy = tl.load(g_p + o[None, :] * sgc, mask=p_ok[:, None] & o_ok[None, :], other=0.0)
                weight = tl.load(w_ptr + o[:, None] * swo + (c_first - group * CPG + c)[None, :] * swc + i * swh
                                 + j * sww, mask=o_ok[:, None] & c_ok[None, :], other=0.0)
                column = tl.dot(gy.to(DOT), weight.to(DOT), column, input_precision=PREC, out_dtype=ACC)
            if NEED_FIELDS:
                x00, x01, x10, x11 = gather(x_ptr + n * sxn + (c_first + c)[None, :] * sxc, y0, x0, sxh, sxw,
                                            ok00, ok01, ok10, ok11, c_ok[None, :], ACC)
                hy = (1 - ly)[:, None]
                hx = (1 - lx)[:, None]
                value = hy * (hx * x00 + lx[:, None] * x01) + ly[:, None] * (hx * x10 + lx[:, None] * x11)
                grad_m += tl.sum(column * value, axis=1)
                grad_y += tl.sum(column * (hx * (x10 - x00) + lx[:, None] * (x11 - x01)), axis=1)
                grad_x += tl.sum(column * (hy * (x01 - x00) + ly[:, None] * (x11 - x10)), axis=1)
            if NEED_X:
                scatter(gx_ptr + n * sbn + (c_first + c)[None, :] * sbc, y0, x0, sbh, sbw, ok00, ok01, ok10, ok11,
                        c_ok[None, :], column * m[:, None], ly, lx)
    if NEED_FIELDS:
        goff = goff_ptr + n * sfn + oh * sfh + ow * sfw
        dtype = goff_ptr.dtype.element_ty
        tl.store(goff + 2 * field * sfc, (grad_y * m).to(dtype), mask=p_ok)
        tl.store(goff + (2 * field + 1) * sfc, (grad_x * m).to(dtype), mask=p_ok)
        if HAS_MASK:
            grad_m = tl.where(finite, grad_m, 0.0)
            tl.store(gm_ptr + n * sqn + field * sqc + oh * sqh + ow * sqw, grad_m.to(gm_ptr.dtype.element_ty),
                     mask=p_ok)


@triton.jit
def _weight_grad_kernel(x_ptr, off_ptr, m_ptr, g_ptr, part_ptr, H, W, HO, WO, CPG, OPG, CPOG, SEG, CO, TOTAL,
                        O_BLOCKS, C_TILES, SEG_TILES, CHUNKS,
                        sxn, sxc, sxh, sxw, son, soc, soh, sow, smn, smc, smh, smw, sgn, sgc, sgh, sgw,
                        SH, SW, PH, PW, DH, DW,
                        KW: tl.constexpr, T: tl.constexpr, HAS_MASK: tl.constexpr, ACC: tl.constexpr,
                        DOT: tl.constexpr, PREC: tl.constexpr,
                        BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr):
    tile = tl.program_id(0)
    group = tile // (O_BLOCKS * C_TILES)
    o_local = ((tile // C_TILES) % O_BLOCKS) * BLOCK_O + tl.arange(0, BLOCK_O)
    segment = (tile % C_TILES) // SEG_TILES
    c = ((tile % C_TILES) % SEG_TILES) * BLOCK_C + tl.arange(0, BLOCK_C)  # within the segment
    t = tl.program_id(1)
    split = tl.program_id(2)
    i = t // KW
    j = t % KW
    o = group * OPG + o_local
    o_ok = o_local < OPG
    c_ok = c < SEG
    c_first = group * CPG + segment * SEG
    field = c_first // CPOG * T + t
    acc = tl.zeros([BLOCK_O, BLOCK_C], dtype=ACC)
    first = split * CHUNKS
    last = tl.minimum(first + CHUNKS, tl.cdiv(TOTAL, BLOCK_P))
    for chunk in range(first, last):
        q = chunk * BLOCK_P + tl.arange(0, BLOCK_P)  # flattened (sample, output position)
        q_ok = q < TOTAL
        n = (q // (HO * WO)).to(tl.int64)
        p = q % (HO * WO)
        oh = p // WO
        ow = p % WO
        off_p = off_ptr + n * son + oh * soh + ow * sow
        py = (oh * SH - PH + i * DH).to(ACC) + tl.load(off_p + 2 * field * soc, mask=q_ok, other=0.0).to(ACC)
        px = (ow * SW - PW + j * DW).to(ACC) + tl.load(off_p + (2 * field + 1) * soc, mask=q_ok, other=0.0).to(ACC)
        py = tl.where(q_ok, py, -2.0)  # rows past the end (of the last sample) read nothing
        y0, x0, ly, lx, ok00, ok01, ok10, ok11, finite = corners(py, px, H, W)
        scale = tl.where(finite, 1.0, 0.0).to(ACC)  # a non-finite point's outputs are NaN: no gradient flows
        if HAS_MASK:
            m = tl.load(m_ptr + n * smn + field * smc + oh * smh + ow * smw, mask=q_ok, other=0.0).to(ACC)
            scale = tl.where(m - m == 0, scale * m, 0.0)
        x00, x01, x10, x11 = gather(x_ptr + (n * sxn)[:, None] + (c_first + c)[None, :] * sxc, y0, x0, sxh, sxw,
                                    ok00, ok01, ok10, ok11, c_ok[None, :], ACC)
        hy = ((1 - ly) * scale)[:, None]
        ly = (ly * scale)[:, None]
        column = hy * ((1 - lx)[:, None] * x00 + lx[:, None] * x01) + ly * ((1 - lx)[:, None] * x10
                                                                           + lx[:, None] * x11)
        gy = tl.load(g_ptr + (n * sgn + oh * sgh + ow * sgw)[None, :] + o[:, None] * sgc,
                     mask=o_ok[:, None] & q_ok[None, :], other=0.0)
        acc = tl.dot(gy.to(DOT), column.to(DOT), acc, input_precision=PREC, out_dtype=ACC)
    part = part_ptr + ((split * CO + o[:, None]) * CPG + (segment * SEG + c)[None, :]) * T + t
    tl.store(part, acc, mask=o_ok[:, None] & c_ok[None, :])


def _output(x: Tensor, offset: Tensor, weight: Tensor) -> Tensor:
    return empty_like_format(x, (x.shape[0], weight.shape[0], offset.shape[2], offset.shape[3]))


def _sizes(x: Tensor, offset: Tensor, weight: Tensor) -> tuple[int, int, int, int, int]:
    """(conv groups, channels per conv group, per offset group, segment length, output channels per group)."""
    c, (co, cpg, kh, kw) = x.shape[1], weight.shape
    groups = c // cpg
    cpog = c // (offset.shape[1] // (2 * kh * kw))
    return groups, cpg, cpog, math.gcd(cpg, cpog), co // groups


def _forward(x: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
             stride: list[int], padding: list[int], dilation: list[int]) -> Tensor:
    y = _output(x, offset, weight)
    n, _, h, w = x.shape
    _, _, kh, kw = weight.shape
    ho, wo = y.shape[2:]
    groups, cpg, cpog, seg, opg = _sizes(x, offset, weight)
    if y.numel():
        acc, dot, precision = kernel_types(x.dtype)
        bp, bo, bc = block(ho * wo, 64), block(opg, 64), block(seg, 32)
        o_blocks = cdiv(opg, bo)
        m = offset if mask is None else mask
        launch(_forward_kernel, (cdiv(ho * wo, bp), n, groups * o_blocks),
            x, offset, m, weight, x if bias is None else bias, y, h, w, ho, wo, cpg, opg, cpog, seg, o_blocks,
            *x.stride(), *offset.stride(), *m.stride(), *weight.stride(), *y.stride(),
            stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
            KH=kh, KW=kw, HAS_MASK=mask is not None, HAS_BIAS=bias is not None, ACC=acc, DOT=dot, PREC=precision,
            BLOCK_P=bp, BLOCK_O=bo, BLOCK_C=bc)
    return y


def _forward_fake(x: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
                  stride: list[int], padding: list[int], dilation: list[int]) -> Tensor:
    return _output(x, offset, weight)


def _backward(grad: Tensor, x: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
              bias: Optional[Tensor], stride: list[int], padding: list[int], dilation: list[int], needs: list[bool]
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    n, _, h, w = x.shape
    co, _, kh, kw = weight.shape
    taps = kh * kw
    ho, wo = grad.shape[2:]
    groups, cpg, cpog, seg, opg = _sizes(x, offset, weight)
    acc, dot, precision = kernel_types(x.dtype)
    geometry = (stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])
    m = offset if mask is None else mask
    empty = no_grad_tensor(x)
    grads = [empty] * 5
    need_fields = needs[1] or needs[2]
    if (needs[0] or need_fields) and grad.numel():
        gx = torch.zeros(x.shape, dtype=accumulator_dtype(x.dtype), device=x.device)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            gx = gx.contiguous(memory_format=torch.channels_last)
        goff = torch.empty_like(offset) if need_fields else offset
        gm = torch.empty_like(m) if need_fields and mask is not None else m
        bp, bo, bc = block(ho * wo, 64), block(opg, 32), block(seg, 32)
        launch(_fields_grad_kernel, (cdiv(ho * wo, bp), n, (offset.shape[1] // 2)),
            x, offset, m, weight, grad, gx, goff, gm, h, w, ho, wo, cpg, opg, cpog, seg,
            *x.stride(), *offset.stride(), *m.stride(), *weight.stride(), *grad.stride(), *gx.stride(),
            *goff.stride(), *gm.stride(), *geometry, KW=kw, T=taps, HAS_MASK=mask is not None, NEED_X=needs[0],
            NEED_FIELDS=need_fields, ACC=acc, DOT=dot, PREC=precision, BLOCK_P=bp, BLOCK_O=bo, BLOCK_C=bc)
        grads[0] = gx.to(x.dtype) if needs[0] else empty
        grads[1] = goff if needs[1] else empty
        grads[2] = gm if needs[2] else empty
    elif needs[0] or need_fields:
        grads[:3] = [torch.zeros_like(x) if needs[0] else empty, torch.zeros_like(offset) if needs[1] else empty,
                     torch.zeros_like(m) if needs[2] else empty]
    if needs[3]:
        total = n * ho * wo
        bp, bo, bc = block(total, 64), block(opg, 64), block(seg, 32)
        o_blocks, seg_tiles = cdiv(opg, bo), cdiv(seg, bc)
        c_tiles = (cpg // seg) * seg_tiles
        chunks = cdiv(total, bp)
        splits = split_count(groups * o_blocks * c_tiles * taps, chunks, x.device)
        part = torch.zeros((splits, co, cpg, taps), dtype=accumulator_dtype(x.dtype), device=x.device)
        if total:
            launch(_weight_grad_kernel, (groups * o_blocks * c_tiles, taps, splits),
                x, offset, m, grad, part, h, w, ho, wo, cpg, opg, cpog, seg, co, total, o_blocks, c_tiles, seg_tiles,
                cdiv(chunks, splits), *x.stride(), *offset.stride(), *m.stride(), *grad.stride(), *geometry,
                KW=kw, T=taps, HAS_MASK=mask is not None, ACC=acc, DOT=dot, PREC=precision,
                BLOCK_P=bp, BLOCK_O=bo, BLOCK_C=bc)
        grads[3] = part.sum(0).reshape(weight.shape).to(weight.dtype)
    if needs[4]:
        grads[4] = grad.sum(dim=(0, 2, 3)).to(grad.dtype)
    return tuple(grads)  # type: ignore[return-value]


def _backward_fake(grad: Tensor, x: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor,
                   bias: Optional[Tensor], stride: list[int], padding: list[int], dilation: list[int],
                   needs: list[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    empty = no_grad_tensor(x)
    likes = (x, offset, mask, weight, bias)
    return tuple(torch.empty_like(t) if need and t is not None else empty  # type: ignore[return-value]
                 for need, t in zip(needs, likes))


def _reference(x: Tensor, offset: Tensor, mask: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
               stride: list[int], padding: list[int], dilation: list[int]) -> Tensor:
    """The same by ``deform_torch.deform_conv2d``, for double backward and forward-mode AD (``derivatives``)."""
    return deform_torch.deform_conv2d(x, offset, weight, bias, tuple(stride), tuple(padding), tuple(dilation), mask)


_call = define_op("triton_deform_conv2d", _forward, _forward_fake, _backward, _backward_fake, _reference)


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None,
                  stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                  dilation: tuple[int, int] = (1, 1), mask: Tensor | None = None) -> Tensor:
    """torchvision's ``deform_conv2d`` (same arguments and order): x (N, C, H, W), offset (N, 2·G·kh·kw, Ho, Wo) as
    (dy, dx) per tap, weight (C_out, C/groups, kh, kw), mask (N, G·kh·kw, Ho, Wo) for v2 → (N, C_out, Ho, Wo) in x's
    memory format; symmetric zero padding. All tensors of one dtype."""
    return _call(x, offset, mask, weight, bias, list(stride), list(padding), list(dilation))
