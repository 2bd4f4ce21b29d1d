"""Window patches and per-sample kernels without batch-dependent shapes.

``window_patches`` gathers every output position's window as (N, C, T, *O) by one strided slice per tap (T =
prod(kernel), taps in row-major order, the order of a kernel's flattened ``(*k)`` dims); ``per_sample_conv``
applies a different kernel to each sample as one batched matmul over those patches. The batch never becomes a
conv's group count, so a traced / exported graph runs at any batch size (the dynamic families rely on this).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from ..functional import channels_to_first, conv_with_pairs, pad_pairs
from . import triton_forms
from ..geometry import PaddingPairs
from .form_choice import FormChoice
from .formats import channels_last_format

# (configuration, input shape / format / device / dtype, backward) → batch-folded conv or the Triton kernel
_CHOICE = FormChoice("per-sample conv", prefer="batch_folded", margin=0.03)


def window_patches(x: torch.Tensor, kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                   pairs: PaddingPairs, padding_mode: str = "zeros") -> torch.Tensor:
    """(N, C, *S) → (N, C, T, *O): patch[n, c, t, p] = xpad[n, c, p·s + t·d] for tap t (row-major over the kernel)."""
    xp = pad_pairs(x, pairs, padding_mode)
    spatial = xp.shape[2:]
    out = [(size - d * (k - 1) - 1) // s + 1 for size, k, s, d in zip(spatial, kernel_size, stride, dilation)]
    taps = []
    for tap in itertools.product(*(range(k) for k in kernel_size)):
        index = [slice(None), slice(None)]
        for t, s, d, o in zip(tap, stride, dilation, out):
            index.append(slice(t * d, t * d + s * (o - 1) + 1, s))
        taps.append(xp[tuple(index)])
    return torch.stack(taps, dim=2)


def per_sample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
                    pairs: PaddingPairs, dilation: Sequence[int], groups: int,
                    padding_mode: str = "zeros") -> torch.Tensor:
    """y[n] = conv(x[n], weight[n]) + bias[n]: weight (N, C_out, C_in/g, *k), bias (N, C_out) or None.

    One batched matmul: (N, g, C_out/g, C_in/g·T) @ (N, g, C_in/g·T, prod(O)) → (N, C_out, *O); for a
    channels-last input its transpose, (N, g, prod(O), C_in/g·T) @ (N, g, C_in/g·T, C_out/g), so the output is
    written position-major and comes back in the input's channels-last format."""
    kernel = tuple(weight.shape[3:])
    patches = window_patches(x, kernel, stride, dilation, pairs, padding_mode)  # (N, C_in, T, *O)
    out_spatial = tuple(patches.shape[3:])
    n, c_in, c_out = x.shape[0], x.shape[1], weight.shape[1]
    columns = patches.reshape(n, groups, (c_in // groups) * math.prod(kernel), math.prod(out_spatial))
    kernels = weight.reshape(n, groups, c_out // groups, (c_in // groups) * math.prod(kernel))
    if channels_last_format(x) is None:
        y = torch.matmul(kernels, columns).reshape(n, c_out, *out_spatial)
    else:  # (N, g, prod(O), C_out/g) → (N, *O, C_out) → a channels-last (N, C_out, *O) view
        y = torch.matmul(columns.transpose(2, 3), kernels.transpose(2, 3)).transpose(1, 2)
        y = channels_to_first(y.reshape(n, *out_spatial, c_out))
    if bias is not None:
        y = y + bias.reshape(n, c_out, *(1,) * len(out_spatial))  # elementwise: keeps y's format
    return y


def batch_folded_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
                      pairs: PaddingPairs, dilation: Sequence[int], groups: int,
                      padding_mode: str = "zeros") -> torch.Tensor:
    """``per_sample_conv``'s function as one native grouped conv: the N samples folded into the channels,
    (1, N·C_in, *S) ⋆ (N·C_out, C_in/g, *k) with N·g groups → (N, C_out, *O). Usually several times faster in
    eager, but the batch becomes a number in the graph (a group count): ``per_sample_conv`` is the form to trace
    or export. An empty batch goes to ``per_sample_conv`` (no conv has zero groups)."""
    n = x.shape[0]
    if n == 0:
        return per_sample_conv(x, weight, bias, stride, pairs, dilation, groups, padding_mode)
    folded = x.contiguous().reshape(1, n * x.shape[1], *x.shape[2:])
    y = conv_with_pairs(folded, weight.flatten(0, 1), None if bias is None else bias.flatten(), stride, pairs,
                        dilation, n * groups, padding_mode)
    return y.reshape(n, weight.shape[1], *y.shape[2:])


def fastest_per_sample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Sequence[int],
                            pairs: PaddingPairs, dilation: Sequence[int], groups: int,
                            padding_mode: str = "zeros") -> torch.Tensor:
    """``batch_folded_conv``; on CUDA (1-D and 2-D) it or convzoo's Triton per-sample kernel
    (``kernels/triton_per_sample.py``: each sample's kernel read by pointer, one launch), whichever the layer's
    ``FormChoice`` measures faster for this configuration and input."""
    if x.dim() > 4 or x.shape[0] == 0 or not triton_forms.offered(x, "per-sample conv"):
        return batch_folded_conv(x, weight, bias, stride, pairs, dilation, groups, padding_mode)

    def triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        from ..kernels.triton_per_sample import per_sample_conv as triton_per_sample_conv

        zero_pairs = pairs
        if padding_mode != "zeros":
            x, zero_pairs = pad_pairs(x, pairs, padding_mode), tuple((0, 0) for _ in pairs)
        return triton_per_sample_conv(x, weight, bias, stride, zero_pairs, dilation, groups)

    def folded(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return batch_folded_conv(x, weight, bias, stride, pairs, dilation, groups, padding_mode)

    forms = {"batch_folded": folded, triton_forms.TRITON: triton}
    config = ("per_sample_conv", tuple(weight.shape), tuple(stride), pairs, tuple(dilation), groups, padding_mode,
              bias is not None)
    name = triton_forms.fastest(_CHOICE, config, x, forms, (x, weight, bias), "per-sample conv")
    return forms[name](x, weight, bias)
