"""Check layers against the NumPy oracle in ``reference.py``.

``reference_output(module, x)`` reads a layer's parameters and recomputes its output from the definitions
(dispatch on the layer's class, so every tool reaches the oracle the same way). ``verify_family`` runs one
registry family on random data, with every parameter re-drawn at random (so zero-initialised parts such as
deformable offsets are exercised), and returns the relative error ‖y − y_ref‖∞ / ‖y_ref‖∞.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch

import numpy as np
import torch
from torch import nn

from .. import layers as L
from . import reference as ref
from ..registry import build

TOLERANCE = 1e-5  # fp32 relative error


def to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def _correlate(conv: L.ConvNd, x: np.ndarray) -> np.ndarray:
    fn = ref.convolve if conv.mode == "convolution" else ref.correlate
    return fn(x, to_numpy(conv.weight), to_numpy(conv.bias), conv.stride, conv._pairs, conv.dilation, conv.groups,
              conv.padding_mode)


@singledispatch
def reference_output(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The module's output recomputed by ``reference.py`` from its parameters (x: float64 ndarray)."""
    raise TypeError(f"no NumPy reference is registered for {type(module).__name__}")


@reference_output.register
def _(module: L.ConvNd, x: np.ndarray) -> np.ndarray:
    return _correlate(module, x)


@reference_output.register
def _(module: L.ResizeConvNd, x: np.ndarray) -> np.ndarray:
    return _correlate(module, ref.upsample(x, module.scale_factor, module.upsample_mode))


@reference_output.register
def _(module: L.ShuffledGroupedConv2d, x: np.ndarray) -> np.ndarray:
    return ref.channel_shuffle(_correlate(module, x), module.groups)


@reference_output.register
def _(module: L.ChannelShuffle, x: np.ndarray) -> np.ndarray:
    return ref.channel_shuffle(x, module.groups)


@reference_output.register
def _(module: L.TransposedConvNd, x: np.ndarray) -> np.ndarray:
    return ref.transposed_conv(x, to_numpy(module.weight), to_numpy(module.bias), module.stride, module.padding,
                               module.output_padding, module.dilation, module.groups)


@reference_output.register
def _(module: L.SpatiallySeparableConv2d, x: np.ndarray) -> np.ndarray:
    # One k×k conv whose kernel is the sum over mid channels of row ⊗ column: the factorisation's claim.
    column, row = to_numpy(module.column.weight), to_numpy(module.row.weight)
    kernel = np.einsum("omj,mci->ocij", row[:, :, 0, :], column[:, :, :, 0])
    pairs = (module.column._pairs[0], module.row._pairs[1])
    stride = (module.column.stride[0], module.row.stride[1])
    dilation = (module.column.dilation[0], module.row.dilation[1])
    return ref.correlate(x, kernel, to_numpy(module.row.bias), stride, pairs, dilation, 1, module.row.padding_mode)


@reference_output.register
def _(module: L.FlattenedConv2d, x: np.ndarray) -> np.ndarray:
    for conv in (module.lateral, module.vertical, module.horizontal):
        x = _correlate(conv, x)
    return x


@reference_output.register
def _(module: L.DepthwiseSeparableConvNd, x: np.ndarray) -> np.ndarray:
    extras = (module.depthwise_norm, module.depthwise_act, module.pointwise_norm, module.pointwise_act)
    if not all(isinstance(m, nn.Identity) for m in extras):
        raise TypeError("the reference covers DepthwiseSeparableConv without norm_layer/activation")
    return _correlate(module.pointwise, _correlate(module.depthwise, x))


@reference_output.register
def _(module: L.GlobalDepthwiseConv2d, x: np.ndarray) -> np.ndarray:
    return ref.correlate(x, to_numpy(module.weight), to_numpy(module.bias), groups=module.channels)


@reference_output.register
def _(module: L.MixConv2d, x: np.ndarray) -> np.ndarray:
    weights = [to_numpy(c.weight) for c in module.convs]
    biases = None if module.convs[0].bias is None else [to_numpy(c.bias) for c in module.convs]
    return ref.mixconv(x, weights, module.in_splits, biases, module.stride, module.dilation)


@reference_output.register
def _(module: L.HetConv2d, x: np.ndarray) -> np.ndarray:
    kernel = ref.hetconv_kernel(to_numpy(module.weight_kxk), to_numpy(module.weight_1x1), module.p)
    return ref.correlate(x, kernel, to_numpy(module.bias), module.stride, module._pairs, module.dilation)


@reference_output.register
def _(module: L.DynamicConvNd, x: np.ndarray) -> np.ndarray:
    att = module.attention
    fc = [to_numpy(t) for t in (att.fc1.weight, att.fc1.bias, att.fc2.weight, att.fc2.bias)]
    weight, bias = to_numpy(module.weight), to_numpy(module.bias)
    if module.padding_mode == "zeros":
        return ref.dynamic_conv(x, weight, bias, *fc, module.temperature, module.stride, module._pairs,
                                module.dilation, module.groups)
    # Other padding modes: the same definition, with the padding applied by reference.correlate.
    attention = ref.dynamic_attention(x, *fc, module.temperature)
    outputs = []
    for n in range(x.shape[0]):
        w_n = np.tensordot(attention[n], weight, axes=1)
        b_n = None if bias is None else attention[n] @ bias
        outputs.append(ref.correlate(x[n : n + 1], w_n, b_n, module.stride, module._pairs, module.dilation,
                                     module.groups, module.padding_mode))
    return np.concatenate(outputs)


def deform_reference(module: L.DeformConv2d, x: np.ndarray, offset: np.ndarray | None = None,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """Deformable conv from the definition; offsets/masks predicted by the offset conv unless given."""
    if offset is None or (module.modulated and mask is None):
        predicted = _correlate(module.offset_conv, x)
        n_offsets = 2 * module.offset_groups * module.num_taps
        offset = predicted[:, :n_offsets] if offset is None else offset
        if module.modulated and mask is None:
            mask = 1.0 / (1.0 + np.exp(-predicted[:, n_offsets:]))
    return ref.deform_conv2d(x, to_numpy(module.weight), offset, mask, to_numpy(module.bias), module.stride,
                             module.padding, module.dilation)


@reference_output.register
def _(module: L.DeformConv2d, x: np.ndarray) -> np.ndarray:
    return deform_reference(module, x)


def randomize_parameters_(module: nn.Module, generator: torch.Generator, scale: float = 0.5) -> nn.Module:
    """Re-draw every parameter from U(−scale, scale), so zero-initialised parts (deformable offsets) are exercised."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale)
    return module


def relative_error(y: torch.Tensor, expected: np.ndarray) -> float:
    """‖y − expected‖∞ / ‖expected‖∞ (absolute error when expected is all zeros)."""
    diff = np.abs(to_numpy(y) - expected).max(initial=0.0)
    peak = np.abs(expected).max(initial=0.0)
    return float(diff / peak) if peak > 0 else float(diff)


@dataclass(frozen=True)
class Verification:
    family: str
    dim: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rel_error: float

    @property
    def passed(self) -> bool:
        return self.rel_error < TOLERANCE


def check_module(module: nn.Module, x: torch.Tensor) -> float:
    """Relative error of ``module(x)`` against the reference."""
    with torch.no_grad():
        y = module(x)
    return relative_error(y, reference_output(module, to_numpy(x)))


def verify_family(name: str, dim: int = 2, in_channels: int = 8, out_channels: int = 8, kernel_size: int = 3,
                  size: int = 9, batch: int = 2, seed: int = 0, **kwargs) -> Verification:
    """Build family ``name``, randomise it, and compare its fp32 output with the fp64 reference."""
    generator = torch.Generator().manual_seed(seed)
    module = build(name, in_channels, out_channels, kernel_size, dim, **kwargs)
    x = torch.rand((batch, in_channels) + (size,) * dim, generator=generator, dtype=torch.float64) * 2 - 1
    x = x.float()
    with torch.no_grad():
        module(x)  # materialise lazy parameters before randomising them
    randomize_parameters_(module, generator)
    error = check_module(module, x)
    with torch.no_grad():
        out_shape = tuple(module(x).shape)
    return Verification(name, dim, tuple(x.shape), out_shape, error)
