"""Load a family's parameters with the best approximation of a dense convolution's weights.

``approximate_(layer, weight, bias)`` sets ``layer``'s parameters from a dense 2-D conv kernel
W (C_out, C_in, kh, kw) (grouped kernels are expanded to block-diagonal first, see ``dense_kernel``) and
returns the relative error ‖W_eff − W‖_F / ‖W‖_F of the kernel the layer now computes. It dispatches on the
layer's class, so ``convert`` never names a family. Exact where the family can represent W (standard,
true convolution, dynamic — every kernel starts as W —, deformable — zero offsets —, MixConv/HetConv/grouped
when W already has their structure); otherwise the Frobenius-optimal projection or low-rank factorisation:

* spatially separable: truncated SVD of W reshaped to (C_in·kh, C_out·kw) (Jaderberg et al. 2014, scheme 2);
* depthwise separable: rank-``depth_multiplier`` SVD of each input channel's (C_out, kh·kw) slice;
* flattened: rank-1 (CP) decomposition of each filter by the higher-order power method;
* grouped / HetConv / MixConv: orthogonal projection onto the kernels the layer has (zeros elsewhere,
  kernels centred and cropped or zero-padded to the layer's kernel size).
"""

from __future__ import annotations

from functools import singledispatch

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L


def dense_kernel(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, C_in/groups, kh, kw) → block-diagonal (C_out, C_in, kh, kw)."""
    out, per_group = weight.shape[:2]
    full = weight.new_zeros(out, per_group * groups, *weight.shape[2:])
    rows = out // groups
    for g in range(groups):
        full[g * rows:(g + 1) * rows, g * per_group:(g + 1) * per_group] = weight[g * rows:(g + 1) * rows]
    return full


def fit_kernel(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre ``kernel`` (…, kh, kw) in a ``size`` window: zero-pad when larger, crop when smaller."""
    out = kernel
    for axis, target in zip((-2, -1), size):
        have = out.shape[axis]
        if target > have:
            before = (target - have) // 2
            pad = [0, 0, 0, 0]
            pad[(0 if axis == -1 else 2)] = before
            pad[(1 if axis == -1 else 3)] = target - have - before
            out = F.pad(out, pad)
        elif target < have:
            start = (have - target) // 2
            out = out.narrow(axis, start, target)
    return out


def relative_error(approximation: torch.Tensor, target: torch.Tensor) -> float:
    norm = torch.linalg.norm(target)
    diff = torch.linalg.norm(approximation - target)
    return float(diff / norm) if norm > 0 else float(diff)


def _set(param: nn.Parameter | None, value: torch.Tensor | None) -> None:
    if param is None:
        return
    with torch.no_grad():
        param.copy_(torch.zeros_like(param) if value is None else value.reshape(param.shape))


@singledispatch
def approximate_(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    """Set ``layer`` to approximate the dense conv (weight (C_out, C_in, kh, kw), bias); return the rel. error."""
    raise TypeError(f"{type(layer).__name__} cannot be initialised from a dense convolution's weights")


def _grouped_projection(weight: torch.Tensor, groups: int, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernels a (groups, size) conv keeps from W, in its own layout, and the dense kernel it then computes."""
    fitted = fit_kernel(weight, size)
    out, cin = weight.shape[:2]
    rows, cols = out // groups, cin // groups
    blocks = torch.cat([fitted[g * rows:(g + 1) * rows, g * cols:(g + 1) * cols] for g in range(groups)])
    return blocks, fit_kernel(dense_kernel(blocks, groups), tuple(weight.shape[2:]))


@approximate_.register
def _(layer: L.ConvNd, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    if isinstance(layer, L.ResizeConvNd):
        raise TypeError("ResizeConv upsamples first: it cannot take the place of a same-size convolution")
    blocks, effective = _grouped_projection(weight, layer.groups, layer.kernel_size)
    order = torch.arange(layer.out_channels)
    if isinstance(layer, L.ShuffledGroupedConv2d):
        # Output i of the layer is conv channel (i mod g)·(C/g) + ⌊i/g⌋: give that conv channel W's row i.
        g, c = layer.groups, layer.out_channels
        source = (order % g) * (c // g) + order // g
        inverse = torch.empty_like(source)
        inverse[source] = order
        blocks, effective_perm = _grouped_projection(weight[inverse], g, layer.kernel_size)
        effective = effective_perm[source]
        bias = None if bias is None else bias[inverse]
    if layer.mode == "convolution":
        blocks = blocks.flip((-2, -1))
    _set(layer.weight, blocks)
    _set(layer.bias, bias)
    return relative_error(effective, weight)


@approximate_.register
def _(layer: L.DynamicConvNd, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    blocks, effective = _grouped_projection(weight, layer.groups, layer.kernel_size)
    _set(layer.weight, blocks.unsqueeze(0).expand_as(layer.weight))  # Σ π_k W = W for any attention π
    _set(layer.bias, None if bias is None else bias.unsqueeze(0).expand_as(layer.bias))
    return relative_error(effective, weight)


@approximate_.register
def _(layer: L.DeformConv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    blocks, effective = _grouped_projection(weight, layer.groups, layer.kernel_size)
    layer.reset_parameters()  # zero offsets (and mask logits: m = sigmoid(0) = ½)
    _set(layer.weight, blocks * 2 if layer.modulated else blocks)  # ½·2W = W for v2
    _set(layer.bias, bias)
    return relative_error(effective, weight)


@approximate_.register
def _(layer: L.SpatiallySeparableConv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    out, cin, kh, kw = weight.shape
    # W[o, c, i, j] = Σ_m row[o, m, j]·col[m, c, i]  ⇔  M[(c, i), (o, j)] = Σ_m U[(c, i), m] s_m V[m, (o, j)].
    matrix = weight.permute(1, 2, 0, 3).reshape(cin * kh, out * kw)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    rank = min(layer.mid_channels, s.numel())
    scale = s[:rank].sqrt()
    column = weight.new_zeros(layer.mid_channels, cin, kh)
    row = weight.new_zeros(out, layer.mid_channels, kw)
    column[:rank] = (u[:, :rank] * scale).T.reshape(rank, cin, kh)
    row[:, :rank] = (vh[:rank].T * scale).reshape(out, kw, rank).permute(0, 2, 1)
    _set(layer.column.weight, column)
    _set(layer.row.weight, row)
    _set(layer.row.bias, bias)
    return relative_error(torch.einsum("omj,mci->ocij", row, column), weight)


@approximate_.register
def _(layer: L.DepthwiseSeparableConvNd, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    extras = (layer.depthwise_norm, layer.depthwise_act, layer.pointwise_norm, layer.pointwise_act)
    if not all(isinstance(m, nn.Identity) for m in extras):
        raise TypeError("a DepthwiseSeparableConv with norm_layer/activation inside is not linear")
    fitted = fit_kernel(weight, layer.depthwise.kernel_size)
    out, cin = weight.shape[:2]
    m = layer.depthwise.depth_multiplier
    taps = fitted[0, 0].numel()
    depthwise = weight.new_zeros(cin * m, taps)
    pointwise = weight.new_zeros(out, cin * m)
    for c in range(cin):  # W[:, c] ≈ P_c D_c with P_c (C_out × m), D_c (m × k²): rank-m SVD
        u, s, vh = torch.linalg.svd(fitted[:, c].reshape(out, taps), full_matrices=False)
        r = min(m, s.numel())
        scale = s[:r].sqrt()
        depthwise[c * m:c * m + r] = vh[:r] * scale[:, None]
        pointwise[:, c * m:c * m + r] = u[:, :r] * scale
    _set(layer.depthwise.weight, depthwise)
    _set(layer.depthwise.bias, None)
    _set(layer.pointwise.weight, pointwise)
    _set(layer.pointwise.bias, bias)
    effective = torch.einsum("om,mt->omt", pointwise, depthwise).reshape(out, cin, m, taps).sum(2)
    return relative_error(fit_kernel(effective.reshape(fitted.shape), tuple(weight.shape[2:])), weight)


def rank1_filters(weight: torch.Tensor, iterations: int = 50) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best rank-1 fit W[o] ≈ a[o] ⊗ b[o] ⊗ c[o] of each filter (C_in × kh × kw) by the higher-order power
    method, started from the leading singular vectors of each unfolding (De Lathauwer et al. 2000)."""
    out, cin, kh, kw = weight.shape
    a = torch.linalg.svd(weight.reshape(out, cin, -1), full_matrices=False)[0][:, :, 0]
    b = torch.linalg.svd(weight.permute(0, 2, 1, 3).reshape(out, kh, -1), full_matrices=False)[0][:, :, 0]
    c = torch.linalg.svd(weight.permute(0, 3, 1, 2).reshape(out, kw, -1), full_matrices=False)[0][:, :, 0]
    for _ in range(iterations):
        a = F.normalize(torch.einsum("ocij,oi,oj->oc", weight, b, c), dim=1)
        b = F.normalize(torch.einsum("ocij,oc,oj->oi", weight, a, c), dim=1)
        c = torch.einsum("ocij,oc,oi->oj", weight, a, b)  # carries the scale
    return a, b, c


@approximate_.register
def _(layer: L.FlattenedConv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    fitted = fit_kernel(weight, layer.kernel_size)
    lateral, vertical, horizontal = rank1_filters(fitted)
    _set(layer.lateral.weight, lateral)
    _set(layer.vertical.weight, vertical)
    _set(layer.horizontal.weight, horizontal)
    for conv in (layer.lateral, layer.vertical):
        _set(conv.bias, None)
    _set(layer.horizontal.bias, bias)
    effective = torch.einsum("oc,oi,oj->ocij", lateral, vertical, horizontal)
    return relative_error(fit_kernel(effective, tuple(weight.shape[2:])), weight)


@approximate_.register
def _(layer: L.MixConv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    effective = torch.zeros_like(weight)
    row = col = 0
    for conv, cin, cout in zip(layer.convs, layer.in_splits, layer.out_splits):
        block = weight[row:row + cout, col:col + cin]
        kept, block_effective = _grouped_projection(block, conv.groups, conv.kernel_size)
        _set(conv.weight, kept)
        _set(conv.bias, None if bias is None else bias[row:row + cout])
        effective[row:row + cout, col:col + cin] = block_effective
        row, col = row + cout, col + cin
    return relative_error(effective, weight)


@approximate_.register
def _(layer: L.HetConv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    out, cin = weight.shape[:2]
    p = layer.p
    fitted = fit_kernel(weight, layer.kernel_size)
    j = torch.arange(out)[:, None]
    m = torch.arange(cin // p)[None, :]
    kxk = fitted[j, j % p + p * m]  # filter j's k×k kernels sit on channels c = (j mod p) + p·m
    centre = fitted[:, :, layer.kernel_size[0] // 2, layer.kernel_size[1] // 2]
    from ..layers.hetconv import one_by_one_mask

    mask = one_by_one_mask(out, cin, p)
    _set(layer.weight_kxk, kxk)
    _set(layer.weight_1x1, centre[mask])
    _set(layer.bias, bias)
    effective = torch.zeros_like(fitted)
    effective[j, j % p + p * m] = kxk
    effective[:, :, layer.kernel_size[0] // 2, layer.kernel_size[1] // 2] += torch.where(mask, centre, 0.0)
    return relative_error(fit_kernel(effective, tuple(weight.shape[2:])), weight)
