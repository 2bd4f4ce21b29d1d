"""Exact reformulations of memory-bound convolutions in PyTorch ops: forms a layer offers to its ``FormChoice``.

Each function computes the same sum as the one native conv call it stands in for (only the memory layout or the
order of independent products changes; tests compare every form with the NumPy oracle, forward and backward).
Which form is fastest depends on the CPU (oneDNN's NCHW depthwise kernel runs near its channels_last one on one
AVX-512 machine and 30× slower on another), the shape and the memory format, so none is chosen here: the layers
time them, with convzoo's own kernels (``convzoo.kernels``), on the user's machine. The measurements behind the
forms are in ``benchmarks/bench_kernels.py``'s outputs (``benchmarks/results/``, tagged with the CPU):

- ``depthwise_channels_last``: a depthwise conv as one multiplier-1 conv on NHWC data (the input repeated m times
  for m > 1; NCHW data converted in and out: the 'channels_last round trip');
- ``depthwise_split``: m multiplier-1 convs on NCHW data written into the interleaved output;
- ``pointwise_matmul``: a grouped 1×1 conv on NCHW data as one batched matmul;
- ``global_depthwise_sum`` / ``GlobalDepthwiseSum`` / ``GlobalDepthwiseSumNHWC``: GDC reading x in place in either
  format, bias included, with backwards that write ∂x in x's own layout.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..functional import channels_to_first, channels_to_last
from ..kernels.derivatives import KernelFunction, graph_backward

CHANNELS_LAST = torch.channels_last


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor laid out NHWC — channels innermost, as channels_last data and its channel slices are —
    and not also plain NCHW-contiguous (as a 1×1 map or a single channel is)."""
    return x.dim() == 4 and not x.is_contiguous() and x.stride(1) < x.stride(3)


def nchw_on_cpu(x: torch.Tensor) -> bool:
    """A 4-D CPU tensor not laid out NHWC: where a chain of depthwise stages is best run in channels_last."""
    return x.dim() == 4 and x.device.type == "cpu" and not is_channels_last(x)


def depthwise_channels_last(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                            stride: tuple[int, ...], padding: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """Depthwise 2-D conv (weight (C·m, 1, kh, kw), groups C) run as a multiplier-1 conv on channels_last data.

    y[n, c·m + j] = b + Σ_t w[c·m + j, 0, t] · x[n, c, p·s + t·d]: the input is written once in NHWC order with each
    channel repeated m times (x_r[n, c·m + j] = x[n, c]; NCHW data is copied to NHWC first), then
    one conv with groups C·m. The result comes back in x's memory format (NCHW input: one copy back).
    """
    channels = weight.shape[0]
    m = channels // x.shape[1]
    repeated = x.contiguous(memory_format=CHANNELS_LAST)  # NCHW → NHWC first: an expand from NCHW is ~4× slower
    if m > 1:  # (N, H, W, C, m) → (N, H, W, C·m): one copy writes NHWC with every channel m times
        nhwc = channels_to_last(repeated)
        repeated = channels_to_first(nhwc.unsqueeze(-1).expand(*nhwc.shape, m).reshape(*nhwc.shape[:-1], channels))
    y = torch.nn.functional.conv2d(repeated, weight.contiguous(memory_format=CHANNELS_LAST), bias, stride, padding,
                                   dilation, channels)
    return y.contiguous(memory_format=CHANNELS_LAST if is_channels_last(x) else torch.contiguous_format)


def depthwise_split(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, ...],
                    padding: tuple[int, ...], dilation: tuple[int, ...]) -> torch.Tensor:
    """Depthwise 2-D conv with depth multiplier m > 1 on NCHW data as m multiplier-1 convs.

    y[n, c·m + j] = b[c·m + j] + Σ_t w[c·m + j, 0, t] · x[n, c, p·s + t·d]: for each j one conv with groups C and
    weight w[j::m] (C, 1, kh, kw) reads x in place; its (N, C, H_out, W_out) result is copied into the j-th slice
    of the output viewed (N, C, m, H_out, W_out), which is NCHW-contiguous (N, C·m, H_out, W_out) as a whole.
    """
    channels = weight.shape[0]
    m = channels // x.shape[1]
    out: torch.Tensor | None = None
    for j in range(m):
        y = torch.nn.functional.conv2d(x, weight[j::m], None if bias is None else bias[j::m], stride, padding,
                                       dilation, x.shape[1])
        if out is None:
            out = y.new_empty(y.shape[0], y.shape[1], m, *y.shape[2:])
        out[:, :, j] = y
    assert out is not None
    return out.view(out.shape[0], channels, *out.shape[3:])


def pointwise_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int) -> torch.Tensor:
    """1×1 conv, stride 1, no padding, on NCHW-contiguous data as one batched matmul that reads x in place.

    y[n, g, o, p] = b[g, o] + Σ_c W[g, o, c] · x[n, g, c, p] with x viewed (N, g, C_in/g, prod(S)) and W
    (g, C_out/g, C_in/g); the output (N, g, C_out/g, prod(S)) is already NCHW.
    """
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    xg = x.reshape(n, groups, c_in // groups, math.prod(x.shape[2:]))  # explicit: N = 0 has no -1 to infer
    wg = weight.reshape(groups, c_out // groups, c_in // groups)
    y = torch.matmul(wg, xg)
    if bias is not None:
        y.add_(bias.view(groups, -1, 1))  # in place: matmul's backward does not need its output
    return y.reshape(n, c_out, *x.shape[2:])


def global_depthwise_sum(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """y[n, c·m + j] = b[c·m + j] + Σ_p x[n, c, p] · w[c, j, p] for x (N, C, P) read in place (NCHW) and w (C, m, P):
    one batched matmul over channels, (C, m, P) @ (C, P, N), x as the right operand, the bias as its addend.
    Returns (N, C·m), contiguous. Plain ops (autograd's bmm backward is slow: ``GlobalDepthwiseSum``)."""
    c, m = w.shape[:2]
    xp = x.permute(1, 2, 0)
    y = torch.bmm(w, xp) if bias is None else torch.baddbmm(bias.view(c, m, 1), w, xp)  # (C, m, N)
    return y.permute(2, 0, 1).contiguous().view(x.shape[0], c * m)  # a copy: a reshape would be a strided view


class GlobalDepthwiseSum(KernelFunction):
    """``global_depthwise_sum`` with a backward that writes ∂x in x's own layout, ∂x[n, c, p] = Σ_j g[n, c·m + j] ·
    w[c, j, p] (m multiply-adds over x's size), and ∂w[c, j, p] = Σ_n g[n, c·m + j] · x[n, c, p] as one batched
    matmul (autograd's own bmm backward loops over the channel-strided batches with many small copies). Under
    ``create_graph`` and with a forward-mode tangent, ``global_depthwise_sum``'s own ops (``kernels.derivatives``)."""

    reference = staticmethod(global_depthwise_sum)

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w, bias)
        return global_depthwise_sum(x, w, bias)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, global_depthwise_sum, (x, w, bias), g)
        c, m = w.shape[:2]
        g = g.to(x.dtype)  # under autocast the forward's bmm ran in bfloat16 / float16 on float32 x and w
        g3 = g.reshape(g.shape[0], c, m)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = g3[:, :, 0, None] * w[:, 0]
            for j in range(1, m):
                grad_x = grad_x + g3[:, :, j, None] * w[:, j]
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(g3.permute(1, 2, 0), x.transpose(0, 1))
        if ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b


def _batch_chunks(n: int, per_sample_bytes: int, budget: int = 4 << 20) -> list[slice]:
    """Slices of the batch, as even as possible, each holding at most ``budget`` bytes (at least one sample)."""
    count = max(1, min(n, -(-n * per_sample_bytes // budget)))
    size = -(-n // count) if n else 1
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


class GlobalDepthwiseSumNHWC(KernelFunction):
    """y[n, c·m + j] = b[c·m + j] + Σ_p x[n, p, c] · w[j, p, c] for channels_last data x viewed (N, P, C) in place
    and w (m, P, C), returned (N, C·m): for each j and each batch chunk one elementwise product (chunk, P, C),
    channels innermost, then a sum over P (a reduction over the middle axis, vectorised along C). Chunks of ≤ 4 MiB
    keep the product in cache. The backward writes ∂x in the same (N, P, C) layout, ∂x[n, p, c] =
    Σ_j g[n, c·m + j] · w[j, p, c], and ∂w[j, p, c] = Σ_n g[n, c·m + j] · x[n, p, c], both chunked the same way.
    Under ``create_graph`` and with a forward-mode tangent, ``reference`` (``kernels.derivatives``)."""

    @staticmethod
    def reference(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The same y by one ``einsum``."""
        y = torch.einsum("npc,jpc->ncj", x, w).reshape(x.shape[0], -1)
        return y if bias is None else y + bias

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, w, bias)
        n, p, c = x.shape
        y = x.new_empty(n, c, w.shape[0])
        for s in _batch_chunks(n, p * c * x.element_size()):
            for j in range(w.shape[0]):
                y[s, :, j] = (x[s] * w[j]).sum(1)
        y = y.view(n, -1)  # (N, C·m)
        return y if bias is None else y.add_(bias)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w, bias = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients torch can differentiate again
            return graph_backward(ctx, GlobalDepthwiseSumNHWC.reference, (x, w, bias), g)
        n, p, c = x.shape
        grad_b = g.sum(0) if ctx.needs_input_grad[2] else None
        g = g.reshape(n, c, -1)
        chunks = _batch_chunks(n, p * c * x.element_size())
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x, memory_format=torch.contiguous_format)
            for s in chunks:
                torch.mul(w[0], g[s, None, :, 0], out=grad_x[s])
                for j in range(1, w.shape[0]):
                    grad_x[s].addcmul_(w[j], g[s, None, :, j])
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(w)
            for s in chunks:
                for j in range(w.shape[0]):
                    grad_w[j] += (x[s] * g[s, None, :, j]).sum(0)
        return grad_x, grad_w, grad_b
