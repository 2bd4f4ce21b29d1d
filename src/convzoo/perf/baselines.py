"""What ``convzoo bench`` times each layer against, read from the layer's own parameters (dispatch on its class,
as ``verify.reference_output`` does): the fastest compositions of native torch ops computing the same function
("native"), peers from other libraries when installed ("peer": torchvision's ``deform_conv2d`` called directly,
timm's ``MixedConv2d`` / ``CondConv2d``), and faithful copies of naive published approaches ("naive").

Each entry is ``(kind, label, fn)`` with ``fn(x) -> y`` equal to the layer's forward (the bench reports the
max difference). Written by hand because no library offers these side-by-side forms.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import singledispatch

import torch
import torch.nn.functional as F
from torch import nn

from .. import layers as L
from ..functional import flip_kernel

Entry = tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]


def _conv_call(conv: L.ConvNd, weight: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """One ``F.conv2d`` with the layer's parameters (padding done by ``F.pad`` only when asymmetric)."""
    w = conv.weight if weight is None else weight
    pairs = conv._pairs
    if all(lo == hi for lo, hi in pairs) and conv.padding_mode == "zeros":
        pad = tuple(lo for lo, _ in pairs)
        return lambda x: F.conv2d(x, w, conv.bias, conv.stride, pad, conv.dilation, conv.groups)
    flat = [v for lo_hi in reversed(pairs) for v in lo_hi]
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return lambda x: F.conv2d(F.pad(x, flat, mode=mode), w, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


@singledispatch
def alternatives(module: nn.Module) -> list[Entry]:
    """Native / peer / naive forms of ``module``'s function; empty when none is registered."""
    return []


@alternatives.register
def _(m: L.ConvNd) -> list[Entry]:
    if m.dim != 2:
        return []
    if m.mode == "convolution":
        # The same function with the kernel flipped once, outside the timed call (the layer flips per call).
        flipped = flip_kernel(m.weight).detach().requires_grad_()
        return [("native", "F.conv2d (pre-flipped kernel)", _conv_call(m, flipped)),
                ("native", "F.conv2d(flip(w))", lambda x: _conv_call(m, flip_kernel(m.weight))(x))]
    return [("native", "F.conv2d", _conv_call(m))]


@alternatives.register
def _(m: L.ResizeConvNd) -> list[Entry]:
    conv = _conv_call(m)
    if m.dim != 2:
        return []
    return [("native", "F.interpolate + F.conv2d",
             lambda x: conv(F.interpolate(x, scale_factor=m.scale_factor, mode=m.upsample_mode)))]


@alternatives.register
def _(m: L.ShuffledGroupedConv2d) -> list[Entry]:
    conv = _conv_call(m)
    return [("native", "F.conv2d + F.channel_shuffle", lambda x: F.channel_shuffle(conv(x), m.groups))]


@alternatives.register
def _(m: L.TransposedConvNd) -> list[Entry]:
    if m.dim != 2:
        return []
    return [("native", "F.conv_transpose2d", lambda x: F.conv_transpose2d(
        x, m.weight, m.bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation))]


@alternatives.register
def _(m: L.DepthwiseSeparableConvNd) -> list[Entry]:
    if m.dim != 2 or not isinstance(m.depthwise_norm, nn.Identity) or not isinstance(m.depthwise_act, nn.Identity):
        return []
    dw, pw = _conv_call(m.depthwise), _conv_call(m.pointwise)
    return [("native", "F.conv2d(groups=C) + F.conv2d 1×1", lambda x: pw(dw(x)))]


@alternatives.register
def _(m: L.SpatiallySeparableConv2d) -> list[Entry]:
    col, row = _conv_call(m.column), _conv_call(m.row)
    return [("native", "F.conv2d k×1 + F.conv2d 1×k", lambda x: row(col(x)))]


@alternatives.register
def _(m: L.FlattenedConv2d) -> list[Entry]:
    lat, ver, hor = _conv_call(m.lateral), _conv_call(m.vertical), _conv_call(m.horizontal)
    return [("native", "3 × F.conv2d", lambda x: hor(ver(lat(x))))]


@alternatives.register
def _(m: L.GlobalDepthwiseConv2d) -> list[Entry]:
    return [("native", "F.conv2d(groups=C)", lambda x: F.conv2d(x, m.weight, m.bias, groups=m.channels)),
            ("native", "(x·w).sum(H,W)", lambda x: (x * m.weight.view(1, m.channels, *m.weight.shape[2:])).sum(
                (2, 3), keepdim=True) + (0 if m.bias is None else m.bias.view(1, -1, 1, 1)))]


@alternatives.register
def _(m: L.MixConv2d) -> list[Entry]:
    calls = [_conv_call(c) for c in m.convs]
    out = [("native", "split + F.conv2d ×n + cat",
            lambda x: torch.cat([f(p) for f, p in zip(calls, torch.split(x, m.in_splits, dim=1))], dim=1))]
    try:  # timm's MixedConv2d: the same split/cat idea (peer)
        from timm.layers import MixedConv2d
    except ImportError:
        return out
    if m.stride == (1, 1) and m.dilation == (1, 1):
        peer = MixedConv2d(m.in_channels, m.out_channels, list(m.kernel_sizes), padding="",
                           depthwise=m.depthwise, bias=m.convs[0].bias is not None)
        peer = peer.to(device=m.convs[0].weight.device, dtype=m.convs[0].weight.dtype)
        if [c.in_channels for c in peer.values()] == list(m.in_splits):
            with torch.no_grad():
                for mine, theirs in zip(m.convs, peer.values()):
                    theirs.weight.copy_(mine.weight)
                    if mine.bias is not None:
                        theirs.bias.copy_(mine.bias)
            out.append(("peer", "timm MixedConv2d", peer))
    return out


@alternatives.register
def _(m: L.HetConv2d) -> list[Entry]:
    pad = tuple(lo for lo, _ in m._pairs)

    def masked_dense(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, m.dense_weight(), m.bias, m.stride, pad, m.dilation)

    def per_filter_loop(x: torch.Tensor) -> torch.Tensor:
        # The published implementations' approach: one conv per filter with its own masked kernel.
        w = m.dense_weight()
        outs = [F.conv2d(x, w[j : j + 1], None, m.stride, pad, m.dilation) for j in range(m.out_channels)]
        y = torch.cat(outs, dim=1)
        return y if m.bias is None else y + m.bias.view(1, -1, 1, 1)

    return [("native", "masked dense F.conv2d", masked_dense),
            ("native", "grouped k×k + dense 1×1", lambda x: m._grouped_form(x)),
            ("naive", "per-filter loop", per_filter_loop)]


@alternatives.register
def _(m: L.DynamicConvNd) -> list[Entry]:
    if m.dim != 2 or m.padding_mode != "zeros":
        return []
    return [("native", "batch-folded grouped conv", lambda x: m._batch_folded(x)),
            ("native", "per-sample loop", lambda x: m._per_sample(x))]


@alternatives.register
def _(m: L.DeformConv2d) -> list[Entry]:
    from torchvision.ops import deform_conv2d

    off = _conv_call(m.offset_conv)
    n_offsets = 2 * m.offset_groups * m.num_taps

    def direct(x: torch.Tensor) -> torch.Tensor:
        predicted = off(x)
        mask = torch.sigmoid(predicted[:, n_offsets:]) if m.modulated else None
        return deform_conv2d(x, predicted[:, :n_offsets], m.weight, m.bias, m.stride, m.padding, m.dilation, mask)

    return [("native", "torchvision deform_conv2d (direct)", direct)]
