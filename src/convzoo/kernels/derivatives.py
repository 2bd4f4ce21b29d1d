"""Second and forward-mode derivatives of convzoo's kernel Functions, from each Function's torch composition.

A kernel Function's backward runs compiled kernels (numba, Triton) on detached data: the gradients it returns carry
no graph, so differentiating them again (a WGAN-GP gradient penalty, a Hessian-vector product) would silently drop
every term through them; and its forward has no tangent rule for forward-mode AD. ``KernelFunction`` gives both from
``reference``, the Function's own computation in differentiable torch ops (same arguments as ``forward``):

- a backward run under grad mode (torch runs a backward with grad mode on exactly when ``create_graph=True``) returns
  ``graph_backward``: the reference recomputed on the saved inputs (the caller's tensors, with their graph) and
  differentiated by autograd with ``create_graph=True``, so every higher derivative is torch's own;
- ``apply`` with an input carrying a forward-mode tangent (inside ``torch.autograd.forward_ad.dual_level``) runs the
  reference instead: torch's ops carry the tangent. (Inside ``torch.func`` transforms the layers run their PyTorch
  forms, never a kernel.)

Where the reference itself has no such derivative (none here: every op it calls has both), torch raises its own
error rather than returning numbers. A first-order backward and a call outside a dual level run the kernels as
before: the added cost is one grad-mode read per backward and one module-global read per call. The torch
compositions the kernels share are here too (``padded_conv``, ``involution``, ``dcnv3_sample``,
``per_sample_conv``), so that a Triton module need not import a numba one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd import forward_ad

from .bilinear_sample import bilinear_sample

Tensor = torch.Tensor


def has_tangent(args: Sequence[Any]) -> bool:
    """Whether a tensor among ``args`` carries a forward-mode tangent at the current dual level (False at once
    outside any dual level: the common case costs one global read)."""
    if forward_ad._current_level < 0:
        return False
    return any(isinstance(a, Tensor) and forward_ad.unpack_dual(a).tangent is not None for a in args)


def graph_backward(ctx: Any, reference: Callable[..., Any], inputs: Sequence[Any],
                   *grads: Tensor) -> tuple[Tensor | None, ...]:
    """∂L/∂inputs = vjp of ``reference(*inputs)`` with ``grads``, by torch's autograd with the graph kept
    (``create_graph=True``): differentiable in the inputs and in ``grads``. ``inputs`` are ``forward``'s arguments
    in order (trailing non-tensor ones may be left to ``reference``'s defaults), tensors as saved (graph-connected:
    save the caller's tensors, not detached copies); a tensor gets a gradient where ``ctx.needs_input_grad`` asks
    for one, every other argument None."""
    wrt = [i for i, a in enumerate(inputs) if isinstance(a, Tensor) and ctx.needs_input_grad[i] and a.requires_grad]
    result: list[Tensor | None] = [None] * len(ctx.needs_input_grad)
    if not wrt:
        return tuple(result)
    with torch.enable_grad():
        # each input through an alias of its own: the partial derivatives, not the total ones (an input computed
        # from another, as involution's kernels from x, would otherwise add the path through it a second time)
        args = [a.view_as(a) if i in wrt else a for i, a in enumerate(inputs)]
        out = reference(*args)
    outs = out if isinstance(out, tuple) else (out,)
    got = torch.autograd.grad(outs, [args[i] for i in wrt], grads, create_graph=True, allow_unused=True)
    for i, g in zip(wrt, got):
        result[i] = g
    return tuple(result)


class KernelFunction(torch.autograd.Function):
    """Base of a kernel Function: subclasses define ``forward`` / ``backward`` (kernels) and ``reference`` (the same
    function in differentiable torch ops, ``forward``'s arguments less ``ctx``). ``apply`` runs ``reference`` when an
    argument carries a forward-mode tangent; a subclass's ``backward`` starts with ``if torch.is_grad_enabled():
    return graph_backward(ctx, reference, saved inputs, grad)`` (module docstring)."""

    @staticmethod
    def reference(*args: Any) -> Any:
        raise NotImplementedError("a KernelFunction defines reference(), its forward in torch ops")

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        if forward_ad._current_level >= 0 and has_tangent(args):
            return cls.reference(*args, **kwargs)
        return super().apply(*args, **kwargs)


def pad(x: Tensor, pairs: Sequence[tuple[int, int]]) -> Tensor:
    """x zero-padded by (before, after) per spatial dim (dims in order; a negative 'after' crops: the rows a
    strided output never reads)."""
    return F.pad(x, [p for pair in reversed(pairs) for p in pair])


def padded_conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int],
                pairs: Sequence[tuple[int, int]], dilation: Sequence[int], groups: int) -> Tensor:
    """torch's conv of 1-D or 2-D x (N, C, *S) with zero padding (before, after) per spatial dim."""
    conv = F.conv1d if x.dim() == 3 else F.conv2d
    return conv(pad(x, pairs), weight, bias, tuple(stride), 0, tuple(dilation), groups)


def after_padding(size: int, kernel: int, stride: int, dilation: int, before: int, out: int) -> int:
    """The 'after' padding (negative: a crop) that makes the padded extent exactly what ``out`` outputs read:
    (out − 1)·s + d·(k − 1) + 1 − size − before."""
    return (out - 1) * stride + dilation * (kernel - 1) + 1 - size - before


def involution(x: Tensor, kernels: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
               pairs: Sequence[tuple[int, int]], dilation: Sequence[int]) -> Tensor:
    """Y[n, c, p] = Σ_t H[n, g(c)·T + t, p] · x_pad[n, c, p·s + t·d] for 2-D x (N, C, H, W), kernels
    (N, G·T, Ho, Wo), g(c) = c // (C/G), zero padding (before, after) per dim: ``F.unfold``, then a product summed
    over the taps."""
    n, c = x.shape[:2]
    ho, wo = kernels.shape[2:]
    taps = kernel_size[0] * kernel_size[1]
    groups = kernels.shape[1] // taps
    cols = F.unfold(pad(x, pairs), tuple(kernel_size), tuple(dilation), 0, tuple(stride))  # (N, C·T, Ho·Wo)
    cols = cols.view(n, groups, c // groups, taps, ho, wo)
    return (cols * kernels.to(x.dtype).view(n, groups, 1, taps, ho, wo)).sum(3).view(n, c, ho, wo)


def dcnv3_sample(x: Tensor, fields: Tensor, groups: int, kernel_size: Sequence[int], dilation: Sequence[int],
                 offset_scale: float) -> Tensor:
    """DCNv3's y_c(i, j) = Σ_k m_gk · x_c(i + s·((u − (kh−1)/2)·d_h + Δy_gk), j + s·((q − (kw−1)/2)·d_w + Δx_gk))
    for c in group g, k = (u, q) row-major, s = ``offset_scale``: x (N, C, H, W), fields (N, 3·G·K, H, W) holding
    (Δx, Δy) of (g, k) at 2·(g·K + k) and m_gk at 2·G·K + g·K + k → (N, C, H, W), by ``bilinear_sample`` (zeros
    outside the image). A non-finite location or mask makes its group's outputs there NaN, as the kernels do."""
    n, c, h, w = x.shape
    (kh, kw), (dh, dw) = kernel_size, dilation
    taps = kh * kw
    fields = fields.to(x.dtype)
    shifts = fields[:, :2 * groups * taps].reshape(n, groups, taps, 2, h, w)
    masks = fields[:, 2 * groups * taps:].reshape(n, groups, taps, h, w)
    grid = torch.arange(taps, device=x.device, dtype=x.dtype)
    tap_y = ((grid // kw) - (kh - 1) / 2) * dh
    tap_x = ((grid % kw) - (kw - 1) / 2) * dw
    rows = torch.arange(h, device=x.device, dtype=x.dtype).view(h, 1)
    cols = torch.arange(w, device=x.device, dtype=x.dtype)
    py = rows + offset_scale * (tap_y.view(taps, 1, 1) + shifts[:, :, :, 1])  # (N, G, K, H, W)
    px = cols + offset_scale * (tap_x.view(taps, 1, 1) + shifts[:, :, :, 0])
    sampled = bilinear_sample(x.reshape(n * groups, c // groups, h, w), py.reshape(n * groups, taps, h * w),
                              px.reshape(n * groups, taps, h * w))  # (N·G, C/G, K, H·W)
    y = (sampled * masks.reshape(n * groups, 1, taps, h * w)).sum(2).view(n, groups, c // groups, h, w)
    bad = ~(torch.isfinite(py) & torch.isfinite(px) & torch.isfinite(masks)).all(2)  # (N, G, H, W)
    return torch.where(bad[:, :, None], torch.nan, y).view(n, c, h, w)


def pairs_of(flat: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """[before₀, after₀, before₁, after₁, …] (the Triton ops' padding lists) as (before, after) pairs per dim."""
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


def per_sample_conv(x: Tensor, weight: Tensor, bias: Tensor | None, stride: Sequence[int],
                    pairs: Sequence[tuple[int, int]], dilation: Sequence[int], groups: int) -> Tensor:
    """y[n] = conv(x[n], weight[n]) + bias[n] for x (N, C_in, *S) (1-D or 2-D), weight (N, C_out, C_in/g, *k), bias
    (N, C_out) or None: one torch conv with N·g groups over the batch folded into the channels."""
    n, c_out = weight.shape[:2]
    y = padded_conv(x.reshape(1, -1, *x.shape[2:]), weight.reshape(n * c_out, *weight.shape[2:]),
                    None if bias is None else bias.reshape(-1), stride, pairs, dilation, n * groups)
    return y.reshape(n, c_out, *y.shape[2:])
