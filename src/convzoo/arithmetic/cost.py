"""Analytic cost of layers and models: parameters, multiply-accumulates, other ops and memory traffic.

Convention (the MobileNet paper's and fvcore's): MACs = multiply-accumulates with conv / linear weights (an
aggregated dynamic kernel is a weight); bias, norms and activations are not MACs; FLOPs = 2 × MACs.

Activation MACs: multiply-accumulates whose two factors are both activations — a contraction of two tensors
computed from the input, Σ_t a_t·b_t: attention's QKᵀ and AV, involution's generated kernel × input patch summed
over the taps, DCNv3's mask × sampled value summed over the points. They are counted apart as
``activation_macs`` (their own column and JSON field; ``LayerCost.activation_macs`` for a layer's own ``cost``)
and never added to ``macs``. The split is the one the generic torch-ops path makes on the same operator: a matrix
product (mm, bmm, einsum) of two activations is an activation MAC, one with a weight operand a weight MAC — so
dynamic / CondConv / ODConv's kernel aggregation Σ_k π_k·W_k (attention × weights) is weight MACs — and a
per-element product summed by nothing of its own (an SE or ODConv gate, DCNv2's modulation of each sample before
the weight MAC, SiLU's x·σ(x)) is not a MAC.

Work that is not a multiply-accumulate (bilinear sampling, interpolation, softmax, norms, activations, pooling,
sigmoid masks and gates) is counted separately as ``other_ops`` and never added to the MACs — in a module (``nn.ReLU``)
or as a function run outside every module that has a cost (a residual ``x + y``, an SE gate's ``x * s``, ``F.relu``,
``x.mean((2, 3))``: the same formulas, attributed to the module whose forward runs them). Bytes moved = (input
elements read + parameters read + output elements written) × the dtype's element size; a composite layer sums this
over its parts, i.e. its intermediate tensors are written once and read once. Arithmetic intensity = FLOPs / byte.

Input shapes are batched, (N, C, *S); where a layer's forward accepts an unbatched (C, *S) input as torch's convs
do, ``cost`` and ``module_cost`` count it as N = 1 (the layer's spatial rank is read from its ``dim``, its
``kernel_size`` or, for torch's pools, its class).

``cost(model, input_shape)`` runs the model on the ``meta`` device (no memory, no compute): forward hooks make
every module with a ``cost(input_shape) -> LayerCost`` method, and every native layer listed in this file, a
leaf; convolutions and matrix products run directly inside other modules (``F.conv2d`` in a user's forward) are
caught by a ``TorchDispatchMode`` and attributed to the innermost module being run.
"""

from __future__ import annotations

import copy
import math
import sys
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Union

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .shapes import conv_output_shape

Shape = tuple[int, ...]
CONVENTION = ("MACs = conv/linear weight multiply-accumulates (bias, norm, activation excluded); FLOPs = 2 × MACs; "
              "activation × activation multiply-accumulates (attention QKᵀ, AV; involution, DCNv3) counted apart as "
              "activation MACs")


@dataclass(frozen=True)
class LayerCost:
    """Analytic cost of one layer on one input shape.

    ``macs`` are weight multiply-accumulates; ``activation_macs`` those between two activations (involution's
    kernel × patch, DCNv3's mask × sample), never part of ``macs``; ``other_ops`` counts non-MAC arithmetic (see the
    module docstring). ``elements`` counts the elements moved (inputs read + parameters read + outputs written);
    bytes are ``elements × element size``.
    """

    params: int
    macs: int
    other_ops: int
    elements: int
    output_shape: Shape
    activation_macs: int = 0

    def __add__(self, later: LayerCost) -> LayerCost:
        """Sequential composition: costs add up; the output shape is the later part's."""
        return LayerCost(self.params + later.params, self.macs + later.macs, self.other_ops + later.other_ops,
                         self.elements + later.elements, later.output_shape,
                         self.activation_macs + later.activation_macs)


def compose(parts: Iterable[LayerCost], output_shape: Sequence[int] | None = None) -> LayerCost:
    """Sum of the parts' costs (intermediate tensors counted as written and read); output shape of the last part
    unless given."""
    parts = list(parts)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    if output_shape is not None:
        total = replace(total, output_shape=tuple(output_shape))
    return total


def numel(shape: Sequence[int]) -> int:
    return math.prod(shape)


def millions(count: float) -> str:
    """``count`` in millions for a table or a summary: one decimal from 1 M up (``568.7``), two significant digits
    below (``0.0063``), so that a count that is not zero never prints as ``0.0``."""
    value = count / 1e6
    if count == 0 or abs(value) >= 1:
        return f"{value:,.1f}"
    return f"{value:.{1 - math.floor(math.log10(abs(value)))}f}"


def conv_macs(out_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Conv MACs = N·prod(out spatial)·C_out·(C_in/groups)·prod(k), with weight (C_out, C_in/groups, *k)."""
    return out_shape[0] * numel(out_shape[2:]) * numel(weight_shape)


def transposed_conv_macs(in_shape: Sequence[int], weight_shape: Sequence[int]) -> int:
    """Transposed conv MACs = N·prod(in spatial)·C_in·(C_out/groups)·prod(k), weight (C_in, C_out/groups, *k):
    every input element meets every tap once (no s^dim factor — the inserted zeros are not multiplied)."""
    return in_shape[0] * numel(in_shape[2:]) * numel(weight_shape)


def conv_output_tensor_shape(in_shape: Sequence[int], out_channels: int, kernel: Sequence[int], stride: Sequence[int],
                   pairs: Sequence[tuple[int, int]], dilation: Sequence[int]) -> Shape:
    """(N, C_out, *O) with O from ``arithmetic.conv_output_shape`` for (before, after) padding pairs."""
    spatial = conv_output_shape(tuple(in_shape[2:]), kernel, stride, tuple(pairs), dilation)
    return (in_shape[0], out_channels, *spatial)


def weight_cost(in_shape: Sequence[int], out_shape: Sequence[int], weight_shape: Sequence[int], bias: int,
                macs: int, other_ops: int = 0) -> LayerCost:
    """A layer with one weight tensor (and ``bias`` bias elements): elements = input + parameters + output."""
    params = numel(weight_shape) + bias
    return LayerCost(params, macs, other_ops, numel(in_shape) + params + numel(out_shape), tuple(out_shape))


def conv_cost(in_shape: Sequence[int], out_shape: Sequence[int], weight_shape: Sequence[int], bias: int) -> LayerCost:
    """Cost of a convolution with weight (C_out, C_in/g, *k): MACs = ``conv_macs``."""
    return weight_cost(in_shape, out_shape, weight_shape, bias, conv_macs(out_shape, weight_shape))


def elementwise_cost(shape: Sequence[int], ops_per_element: int) -> LayerCost:
    """A shape-preserving elementwise op (activation, sigmoid, shuffle copy): reads and writes the tensor once."""
    n = numel(shape)
    return LayerCost(0, 0, ops_per_element * n, 2 * n, tuple(shape))


def interpolation_ops(out_shape: Sequence[int], mode: str) -> int:
    """Resampling ops: 1 per output element for 'nearest' (an indexed copy), 2^dim multiply-adds per output
    element for (bi/tri)linear, 4^dim for bicubic."""
    dim = len(out_shape) - 2
    per = {"nearest": 1, "nearest-exact": 1, "bicubic": 4**dim}.get(mode, 2**dim)
    return per * numel(out_shape)


def interpolation_cost(in_shape: Sequence[int], out_shape: Sequence[int], mode: str) -> LayerCost:
    return LayerCost(0, 0, interpolation_ops(out_shape, mode), numel(in_shape) + numel(out_shape), tuple(out_shape))


# --- native layers ---------------------------------------------------------------------------------------------

NativeFormula = Callable[[nn.Module, Shape, Shape], LayerCost]


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _plain(module: nn.Module, i: Shape, o: Shape, macs: int = 0, other: int = 0) -> LayerCost:
    params = _own_params(module)
    return LayerCost(params, macs, other, numel(i) + params + numel(o), o)


def _conv(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    return _plain(m, i, o, macs=conv_macs(o, m.weight.shape))


def _conv_transpose(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    return _plain(m, i, o, macs=transposed_conv_macs(i, m.weight.shape))


def _linear(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """Linear MACs = prod(leading dims)·in_features·out_features."""
    return _plain(m, i, o, macs=numel(i[:-1]) * m.in_features * m.out_features)


def _bilinear(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    return _plain(m, i, o, macs=numel(o[:-1]) * numel(m.weight.shape))


# Ops per output element, shared by the modules' formulas and the same work run as functions (_functional_other_ops)
BATCH_NORM_OPS, STAT_NORM_OPS, SOFTMAX_OPS = 2, 4, 3


def _batch_norm(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """Inference-time norm with known statistics: one multiply-add per element (2 ops)."""
    return _plain(m, i, o, other=BATCH_NORM_OPS * numel(o))


def _stat_norm(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """Layer/Group/Instance norm: mean and variance (2 ops/element) plus normalise and affine (2 ops/element)."""
    return _plain(m, i, o, other=STAT_NORM_OPS * numel(o))


def _activation(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """One op per output element."""
    return _plain(m, i, o, other=numel(o))


def _softmax(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """exp, sum, divide: 3 ops per element."""
    return _plain(m, i, o, other=SOFTMAX_OPS * numel(o))


def _pool(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """Windowed pooling: prod(kernel) ops per output element."""
    dim = len(o) - 2
    k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * dim
    return _plain(m, i, o, other=numel(o) * numel(k))


def _adaptive_pool(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """Adaptive pooling: each input element enters (at least) one window: ≈ one op per input element."""
    return _plain(m, i, o, other=max(numel(i), numel(o)))


def _upsample(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    return _plain(m, i, o, other=interpolation_ops(o, m.mode))


def _free(m: nn.Module, i: Shape, o: Shape) -> LayerCost:
    """Views and inference no-ops (Identity, Flatten, Dropout): nothing computed, nothing moved."""
    return LayerCost(_own_params(m), 0, 0, 0, o)


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
                nn.LogSigmoid, nn.Tanhshrink, nn.Threshold)
NATIVE: dict[type[nn.Module], NativeFormula] = {
    nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv,
    nn.ConvTranspose1d: _conv_transpose, nn.ConvTranspose2d: _conv_transpose, nn.ConvTranspose3d: _conv_transpose,
    nn.Linear: _linear, nn.Bilinear: _bilinear,
    nn.BatchNorm1d: _batch_norm, nn.BatchNorm2d: _batch_norm, nn.BatchNorm3d: _batch_norm,
    nn.LayerNorm: _stat_norm, nn.GroupNorm: _stat_norm, nn.InstanceNorm1d: _stat_norm,
    nn.InstanceNorm2d: _stat_norm, nn.InstanceNorm3d: _stat_norm, nn.LocalResponseNorm: _stat_norm,
    nn.Softmax: _softmax, nn.LogSoftmax: _softmax, nn.Softmax2d: _softmax,
    nn.MaxPool1d: _pool, nn.MaxPool2d: _pool, nn.MaxPool3d: _pool,
    nn.AvgPool1d: _pool, nn.AvgPool2d: _pool, nn.AvgPool3d: _pool, nn.LPPool1d: _pool, nn.LPPool2d: _pool,
    nn.AdaptiveAvgPool1d: _adaptive_pool, nn.AdaptiveAvgPool2d: _adaptive_pool, nn.AdaptiveAvgPool3d: _adaptive_pool,
    nn.AdaptiveMaxPool1d: _adaptive_pool, nn.AdaptiveMaxPool2d: _adaptive_pool, nn.AdaptiveMaxPool3d: _adaptive_pool,
    nn.Upsample: _upsample, nn.UpsamplingNearest2d: _upsample, nn.UpsamplingBilinear2d: _upsample,
    nn.Identity: _free, nn.Flatten: _free, nn.Unflatten: _free, nn.Dropout: _free, nn.Dropout1d: _free,
    nn.Dropout2d: _free, nn.Dropout3d: _free, nn.AlphaDropout: _free,
    **{a: _activation for a in _ACTIVATIONS},
}


# Native leaves whose output has the input's shape: on the meta copy they are not run at all (identity), since
# only shapes matter there — meta batch norm alone went through Python decompositions for 90 of 150 ms on resnet50.
_SHAPE_PRESERVING = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
                     nn.LocalResponseNorm, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                     nn.AlphaDropout, *_ACTIVATIONS)


def _pass_through(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return x


def _native_formula(module: nn.Module) -> NativeFormula | None:
    for cls in type(module).__mro__:
        if cls in NATIVE:
            return NATIVE[cls]
    return None


_POOL_DIMS: dict[type[nn.Module], int] = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
    nn.LPPool1d: 1, nn.LPPool2d: 2, **({nn.LPPool3d: 3} if hasattr(nn, "LPPool3d") else {}),
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
}


def spatial_rank(module: nn.Module) -> int | None:
    """How many spatial dims the module's input (N, C, *S) has, where the module says: a layer with its own
    ``cost`` by its int ``dim`` (convzoo's layers) or, like torch's convs, by its ``kernel_size`` tuple; torch's
    pools by their class. None for the rest (their formulas do not depend on where the batch is)."""
    if callable(getattr(module, "cost", None)):
        dim = getattr(module, "dim", None)
        if isinstance(dim, int) and not isinstance(dim, bool):
            return dim
    for cls in type(module).__mro__:
        if cls in _POOL_DIMS:
            return _POOL_DIMS[cls]
    if isinstance(module, nn.modules.conv._ConvNd) or callable(getattr(module, "cost", None)):
        kernel = getattr(module, "kernel_size", None)
        return len(kernel) if isinstance(kernel, tuple) else None
    return None


def module_cost(module: nn.Module, in_shape: Sequence[int], out_shape: Sequence[int] | None = None) -> LayerCost:
    """Cost of one module: its own ``cost`` method when it has one, else the native formula (which needs the
    output shape; shape-preserving modules — norms, activations, Identity — default to the input shape).

    An unbatched input (C, *S), which torch's convs and convzoo's layers accept, is counted as the batch of one
    (1, C, *S) — the formulas read N from dim 0 and the spatial sizes from dim 2 on — and the output shape is
    given back without the batch dim; a rank that is neither raises ValueError."""
    shape = tuple(in_shape)
    rank = spatial_rank(module)
    if rank is not None and len(shape) == rank + 1:
        batched = module_cost(module, (1, *shape), None if out_shape is None else (1, *out_shape))
        return replace(batched, output_shape=tuple(batched.output_shape[1:]))
    if rank is not None and len(shape) != rank + 2:
        raise ValueError(f"input_shape={shape} does not fit {type(module).__name__}: it takes (N, C, *S) with "
                         f"{rank} spatial dim{'s' if rank > 1 else ''}, or an unbatched (C, *S)")
    own = getattr(module, "cost", None)
    if callable(own):
        return own(shape)
    formula = _native_formula(module)
    if formula is None:
        raise TypeError(f"no cost formula for {type(module).__name__}: give it a cost(input_shape) method")
    return formula(module, shape, tuple(out_shape if out_shape is not None else shape))


def sequential_cost(modules: Iterable[nn.Module], input_shape: Sequence[int]) -> LayerCost:
    """Cost of modules applied one after another: the sum of their costs, each on the previous output."""
    parts, shape = [], tuple(input_shape)
    for module in modules:
        part = module_cost(module, shape)
        parts.append(part)
        shape = part.output_shape
    return compose(parts)


# --- functional ops caught while no leaf is active ----------------------------------------------------------------

_aten = torch.ops.aten


def _shape(t: Any) -> Shape:
    return tuple(t.shape)


def _functional_macs(func: Any, args: tuple, out: Any) -> tuple[int, tuple[Any, ...]] | None:
    """(multiply-accumulates, the operands multiplied) of one aten conv or matrix product; None for other ops."""
    packet = getattr(func, "overloadpacket", None)
    if packet in (_aten.convolution, _aten._convolution):
        x, w, transposed = args[0], args[1], args[6]
        macs = transposed_conv_macs(_shape(x), _shape(w)) if transposed else conv_macs(_shape(out), _shape(w))
        return macs, ()  # a conv kernel is a weight (an aggregated dynamic kernel too)
    if packet in (_aten.mm, _aten.addmm):
        a, b = (args[0], args[1]) if packet is _aten.mm else (args[1], args[2])
        return a.shape[0] * a.shape[1] * b.shape[1], (a, b)
    if packet in (_aten.bmm, _aten.baddbmm):
        a, b = (args[0], args[1]) if packet is _aten.bmm else (args[1], args[2])
        return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2], (a, b)
    return None


_COPIES = {_aten.clone, _aten._to_copy, _aten.copy_, _aten.copy, _aten.lift_fresh_copy, _aten.alias}
_ELEMENTWISE = {_aten.hardswish, _aten.hardswish_, _aten.hardtanh, _aten.hardtanh_, _aten.mish, _aten.softplus,
                _aten.elu, _aten.leaky_relu, _aten.leaky_relu_, _aten.prelu, _aten._prelu_kernel}  # not tagged pointwise
_SOFTMAX = {_aten._softmax, _aten._log_softmax, _aten.softmax, _aten.log_softmax}
_STAT_NORMS = {_aten.native_layer_norm, _aten.native_group_norm, _aten.layer_norm, _aten.group_norm}
_BATCH_NORMS = {_aten.native_batch_norm, _aten._native_batch_norm_legit_no_training, _aten._native_batch_norm_legit,
                _aten.batch_norm}
_WINDOW_POOLS = {_aten.avg_pool1d, _aten.avg_pool2d, _aten.avg_pool3d, _aten.max_pool1d, _aten.max_pool2d,
                 _aten.max_pool3d, _aten.max_pool2d_with_indices, _aten.max_pool3d_with_indices}
_ADAPTIVE_POOLS = {_aten.adaptive_avg_pool1d, _aten.adaptive_avg_pool2d, _aten._adaptive_avg_pool2d,
                   _aten.adaptive_avg_pool3d, _aten._adaptive_avg_pool3d, _aten.adaptive_max_pool1d,
                   _aten.adaptive_max_pool2d, _aten.adaptive_max_pool3d}
_INTERPOLATIONS = {_aten.upsample_nearest1d: "nearest", _aten.upsample_nearest2d: "nearest",
                   _aten.upsample_nearest3d: "nearest", _aten.upsample_linear1d: "linear",
                   _aten.upsample_bilinear2d: "bilinear", _aten.upsample_bicubic2d: "bicubic",
                   _aten.upsample_trilinear3d: "trilinear"}


def _functional_other_ops(func: Any, args: tuple, out: Any) -> int:
    """Non-MAC arithmetic of one aten op run outside every leaf (a residual add, an SE gate's product, F.relu,
    x.mean((2, 3)), F.softmax), by the native leaves' formulas: one op per output element for element-wise ops, one
    per input element for reductions and adaptive pools, 3 per element for softmax, 2 (batch) or 4 (layer / group)
    norms, prod(kernel) per output of a windowed pool. Views, copies and casts compute nothing: 0."""
    packet = getattr(func, "overloadpacket", None)
    outputs = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    if not outputs or packet in _COPIES:
        return 0
    y = numel(_shape(outputs[0]))
    if packet in _SOFTMAX:
        return SOFTMAX_OPS * y
    if packet in _STAT_NORMS:
        return STAT_NORM_OPS * y
    if packet in _BATCH_NORMS:
        return BATCH_NORM_OPS * y
    if packet in _ADAPTIVE_POOLS and x is not None:
        return max(numel(_shape(x)), y)
    if packet in _WINDOW_POOLS:
        kernel = args[1] if len(args) > 1 else ()
        kernel = tuple(kernel) if isinstance(kernel, (list, tuple)) else (kernel,)
        return y * numel(kernel * (len(_shape(outputs[0])) - 2) if len(kernel) == 1 else kernel)
    if packet in _INTERPOLATIONS:
        return interpolation_ops(_shape(outputs[0]), _INTERPOLATIONS[packet])
    if torch.Tag.reduction in func.tags and x is not None:
        return numel(_shape(x))
    if torch.Tag.pointwise in func.tags or packet in _ELEMENTWISE:
        return y
    return 0


# --- the report ---------------------------------------------------------------------------------------------------


class _Intensity:
    """FLOPs = 2 × MACs and arithmetic intensity = FLOPs per byte moved, for anything with .macs and .bytes."""

    macs: int
    bytes: int

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else 0.0


@dataclass(frozen=True)
class LayerRow(_Intensity):
    """One leaf layer of a profiled model. ``bytes`` = elements moved × element size."""

    name: str
    type: str
    input_shape: Shape
    output_shape: Shape
    params: int
    macs: int
    other_ops: int
    bytes: int
    activation_macs: int = 0
    call: int = 1  # which call of its module this row is (a module run twice has rows 1 and 2; params in row 1)

    @property
    def module(self) -> str:
        """The module's name: ``name`` without the " (call k)" that a second call's row carries."""
        return self.name.removesuffix(f" (call {self.call})") if self.call > 1 else self.name

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "params": self.params, "macs": self.macs,
                "activation_macs": self.activation_macs, "flops": self.flops, "other_ops": self.other_ops,
                "bytes": self.bytes, "intensity": self.intensity}


@dataclass(frozen=True)
class GroupRow(_Intensity):
    """A module's subtotal in ``CostReport.by_depth``: ``name`` (dotted; '' the model), ``level`` (its name's parts;
    an ``own`` line is one level below its module), ``type`` (its class; '' when unknown), ``rows`` (how many of
    the report's rows it sums) and the sums. ``own``: the module's own rows only (its forward's functional ops, its
    directly held parameters), not its children's."""

    name: str
    level: int
    type: str
    rows: int
    params: int
    macs: int
    activation_macs: int
    other_ops: int
    bytes: int
    own: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "type": self.type, "own": self.own, "rows": self.rows,
                "params": self.params, "macs": self.macs, "activation_macs": self.activation_macs,
                "flops": self.flops, "other_ops": self.other_ops, "bytes": self.bytes, "intensity": self.intensity}


def _add_row(sums: list[int], row: LayerRow) -> None:
    """Add ``row`` to a subtotal [rows, params, MACs, activation MACs, other ops, bytes] (``GroupRow``'s order): its
    params only on its module's first call, so a module run twice counts its parameters once."""
    for i, value in enumerate((1, row.params if row.call == 1 else 0, row.macs, row.activation_macs, row.other_ops,
                               row.bytes)):
        sums[i] += value


@dataclass
class CostReport(_Intensity):
    """Per-leaf rows and int totals. Totals count each parameter once (a module called twice adds its MACs twice).
    ``macs`` are weight multiply-accumulates only; ``activation_macs`` those between two activations."""

    layers: list[LayerRow]
    input_shape: Shape
    dtype: torch.dtype
    params: int = 0
    macs: int = 0
    other_ops: int = 0
    bytes: int = 0
    output_shape: Shape = field(default=())
    activation_macs: int = 0
    module_types: dict[str, str] = field(default_factory=dict, repr=False)  # module name -> class name

    def by_depth(self, depth: int) -> list[GroupRow]:
        """Subtotals of the module tree to ``depth`` name levels, as fvcore's ``flop_count_table(max_depth=depth)``
        and torchinfo's ``depth`` show it: one line per module whose dotted name has at most ``depth`` parts and
        under which some row lies, in pre-order (the model, level 0, first; children in the order they first ran).

        A line sums params, MACs, activation MACs, other ops and bytes over the rows named by it or below it
        (``a.b`` is under ``a``; ``a.bc`` is not); a module's parameters are counted once however often it runs
        (the params of its row for call 1), so the model's line equals the report's totals exactly. A module above
        ``depth`` that has rows of its own (the functional ops its forward runs, such as a residual add, or
        parameters it holds itself) and lines below it gets an ``own`` line for those, last among its children, so
        that every line's children add up to it. A module reached under several names is under its first, the
        name its rows carry.
        """
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
            raise ValueError(f"depth={depth!r} must be an int >= 0 (0: the model alone, 1: its children, ...)")
        totals: dict[tuple[str, ...], list[int]] = {}  # path -> [rows, params, macs, activation macs, other ops, bytes]
        own: dict[tuple[str, ...], list[int]] = {}  # a module above depth -> the same sums over its own rows
        children: dict[tuple[str, ...], list[tuple[str, ...]]] = {}  # in the order they first appear among the rows

        for row in self.layers:
            parts = tuple(row.module.split(".")) if row.module else ()
            path: tuple[str, ...] = ()
            for level in range(min(len(parts), depth) + 1):
                path = parts[:level]
                if path not in totals:
                    totals[path] = [0] * 6
                    children.setdefault(path, [])
                    if level:
                        children[path[:-1]].append(path)
                _add_row(totals[path], row)
            if len(parts) < depth:  # the row is the module's own, not under a child of it
                _add_row(own.setdefault(path, [0] * 6), row)

        def line(path: tuple[str, ...], sums: list[int], level: int, is_own: bool = False) -> GroupRow:
            name = ".".join(path)
            return GroupRow(name, level, self.module_types.get(name, ""), *sums, own=is_own)

        lines: list[GroupRow] = []

        def walk(path: tuple[str, ...]) -> None:
            lines.append(line(path, totals[path], len(path)))
            for child in children[path]:
                walk(child)
            if children[path] and path in own:
                lines.append(line(path, own[path], len(path) + 1, is_own=True))

        if () in totals:
            walk(())
        return lines

    def by_type(self) -> list[GroupRow]:
        """Subtotals per operator type (the rows' ``type``: a leaf module's class; the ops a module's forward runs
        itself, such as a residual add, under that module's class), as fvcore's ``by_operator`` groups them: one line
        per type, most MACs first (then other ops, then bytes), each summing its rows — a module's parameters once
        however often it runs — so that the lines add up to the report's totals."""
        sums: dict[str, list[int]] = {}  # type -> [rows, params, macs, activation macs, other ops, bytes]
        for row in self.layers:
            _add_row(sums.setdefault(row.type, [0] * 6), row)
        lines = [GroupRow(kind, 1, kind, *values) for kind, values in sums.items()]
        return sorted(lines, key=lambda g: (-g.macs, -g.other_ops, -g.bytes, g.type))

    def type_table(self) -> Any:
        """A ``rich.table.Table`` of ``by_type()``, with each type's share of the MACs, then the totals."""
        from rich.table import Table

        table = Table(title=f"convzoo cost by operator type — input {self.input_shape}, {self.dtype}; each line sums "
                            f"the rows of one type (a module's params once however often it runs); {CONVENTION}")
        apart = bool(self.activation_macs)
        columns = ("type", "rows", "params", "MACs", "% of MACs", *(("activation MACs",) if apart else ()),
                   "other ops", "bytes", "FLOP/byte")
        for column in columns:
            table.add_column(column, justify="left" if column == "type" else "right")

        def cells(g: Any, rows: int) -> list[str]:
            share = f"{100 * g.macs / self.macs:.1f}" if self.macs else "—"
            return [f"{rows:,}", f"{g.params:,}", f"{g.macs:,}", share,
                    *((f"{g.activation_macs:,}",) if apart else ()), f"{g.other_ops:,}", f"{g.bytes:,}",
                    f"{g.intensity:.2f}"]

        for g in self.by_type():
            table.add_row(g.type or "(unknown)", *cells(g, g.rows))
        table.add_row("total", *cells(self, len(self.layers)), style="bold")
        return table

    def depth_table(self, depth: int) -> Any:
        """A ``rich.table.Table`` of ``by_depth(depth)``: each module's line indented by its level, then the
        totals (the model's line)."""
        from rich.table import Table

        lines = self.by_depth(depth)
        table = Table(title=f"convzoo cost by module, depth {depth} — input {self.input_shape}, {self.dtype}; each "
                            "line sums the rows under it (a module's params once however often it runs); '(own)': "
                            "what a module's forward computes itself (a residual add, a gate) and parameters it "
                            f"holds directly; {CONVENTION}")
        apart = bool(self.activation_macs)
        columns = ("module", "type", "rows", "params", "MACs", *(("activation MACs",) if apart else ()),
                   "other ops", "bytes", "FLOP/byte")
        for column in columns:
            table.add_column(column, justify="left" if column in ("module", "type") else "right")

        def cells(g: GroupRow) -> list[str]:
            return [f"{g.rows:,}", f"{g.params:,}", f"{g.macs:,}", *((f"{g.activation_macs:,}",) if apart else ()),
                    f"{g.other_ops:,}", f"{g.bytes:,}", f"{g.intensity:.2f}"]

        for g in lines[1:]:
            label = (g.name or "(model)") + (" (own)" if g.own else "")
            table.add_row("  " * (g.level - 1) + label, g.type, *cells(g))
        if lines:
            table.add_row("total", "", *cells(lines[0]), style="bold")
        return table

    def table(self) -> Any:
        """A ``rich.table.Table``: one row per leaf, then the totals (an activation-MACs column when there are
        any)."""
        from rich.table import Table

        table = Table(title=f"convzoo cost — input {self.input_shape}, {self.dtype}; {CONVENTION}; "
                            "other ops = non-MAC work (sampling, softmax, norms, activations, pooling, resampling)")
        apart = bool(self.activation_macs)  # the activation-MACs column, when the model has any (attention)
        columns = ("layer", "type", "output", "params", "MACs", *(("activation MACs",) if apart else ()),
                   "other ops", "bytes", "FLOP/byte")
        for column in columns:
            table.add_column(column, justify="left" if column in ("layer", "type", "output") else "right")

        def cells(r: Any) -> list[str]:
            return [str(r.output_shape), f"{r.params:,}", f"{r.macs:,}",
                    *((f"{r.activation_macs:,}",) if apart else ()), f"{r.other_ops:,}", f"{r.bytes:,}",
                    f"{r.intensity:.2f}"]

        for r in self.layers:
            table.add_row(r.name or "(model)", r.type, *cells(r))
        table.add_row("total", "", *cells(self), style="bold")
        return table

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: totals, the convention, and the rows."""
        return {"convention": CONVENTION, "input_shape": list(self.input_shape), "dtype": str(self.dtype),
                "output_shape": list(self.output_shape), "params": self.params, "macs": self.macs,
                "activation_macs": self.activation_macs, "flops": self.flops, "other_ops": self.other_ops,
                "bytes": self.bytes, "intensity": self.intensity, "layers": [r.to_dict() for r in self.layers]}


# --- the profiler -------------------------------------------------------------------------------------------------


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for v in value:
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(value, dict):
        return _first_tensor(list(value.values()))
    return None


def _to_meta(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Deep copy of ``model`` on the meta device without copying any parameter data: each parameter and buffer
    is pre-seeded in deepcopy's memo with a meta tensor of the same shape (floating ones in ``dtype``)."""
    memo: dict[int, Any] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            memo[id(tensor)] = type(tensor)(device="meta", dtype=dtype) if isinstance(tensor, nn.Parameter) \
                else nn.UninitializedBuffer(device="meta", dtype=dtype)
            continue
        meta = torch.empty_like(tensor, device="meta", dtype=dtype if tensor.is_floating_point() else tensor.dtype)
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _meta_state(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``model`` as an empty meta tensor (floating ones in ``dtype``), by name: one
    name per tensor (functional_call sets a tied tensor's other names itself, and refuses two values for them)."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return {name: torch.empty_like(t, device="meta", dtype=dtype if t.is_floating_point() else t.dtype)
            for name, t in named}


def _meta_inputs(example: Union[Sequence[int], torch.Tensor, tuple], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    if isinstance(example, torch.Tensor):
        return (torch.empty_like(example, device="meta", dtype=dtype if example.is_floating_point() else example.dtype),)
    if isinstance(example, (tuple, list)) and example and all(isinstance(s, int) for s in example):
        return (torch.empty(tuple(example), device="meta", dtype=dtype),)
    if isinstance(example, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in example):
        return tuple(_meta_inputs(t, dtype)[0] for t in example)
    raise TypeError(f"input must be a shape (ints), a tensor or a tuple of tensors, got {example!r}")


# torch's meta kernels of nearest upsampling hand torch._check an int for an empty input ("cond must be a bool",
# torch 2.14), where its CPU kernel returns an empty batch or says why it refuses the input.
_NEAREST_UPSAMPLE = (_aten.upsample_nearest1d, _aten.upsample_nearest2d, _aten.upsample_nearest3d,
                     _aten._upsample_nearest_exact1d, _aten._upsample_nearest_exact2d, _aten._upsample_nearest_exact3d)


def _run_on_meta(func: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)`` on meta tensors; a nearest upsampling of an empty input runs the CPU kernel on an
    empty tensor of its shape (no memory, no compute) and gives its output's shape back on meta."""
    x = args[0] if args else None
    if getattr(func, "overloadpacket", None) in _NEAREST_UPSAMPLE and isinstance(x, torch.Tensor) and not x.numel():
        real = func(torch.empty(x.shape, dtype=x.dtype), *args[1:], **kwargs)
        return torch.empty(real.shape, dtype=real.dtype, device="meta")
    return func(*args, **kwargs)


class _Profiler(TorchDispatchMode):
    """Tracks the module stack through hooks; counts aten convs / matmuls run outside every leaf. A matrix product
    is a weight MAC when an operand is a weight (a parameter, or a view, reshape or cast of weights only: the
    tensors in ``weights``), else an activation MAC (attention's QKᵀ, AV)."""

    def __init__(self, names: dict[nn.Module, str], itemsize: int, weights: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self.names, self.itemsize = names, itemsize
        self.weights: dict[int, weakref.ref] = {}  # by id, checked through a weak reference (ids get reused)
        for tensor in weights:
            self.mark_weight(tensor)
        self.stack: list[tuple[nn.Module, bool]] = []
        self.leaf_depth = 0
        self.rows: list[LayerRow] = []
        # module -> [macs, elements, order, activation macs, other ops]
        self.functional: dict[nn.Module, list[int]] = {}
        self.seen: set[nn.Module] = set()
        self.calls: dict[nn.Module, int] = {}  # leaf module -> how many times it has run
        self.params = 0
        # The innermost module whose forward raised, with its arguments (the layer a refused input names), and
        # whether the error was the profiler's own (then no layer of the model is at fault).
        self.failed: tuple[nn.Module, tuple, dict] | None = None
        self.own_error = False

    def mark_weight(self, tensor: torch.Tensor) -> None:
        self.weights[id(tensor)] = weakref.ref(tensor)

    def is_weight(self, tensor: Any) -> bool:
        ref = self.weights.get(id(tensor))
        return ref is not None and ref() is tensor

    def is_leaf(self, module: nn.Module) -> bool:
        return callable(getattr(module, "cost", None)) or _native_formula(module) is not None

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.failed = None  # a module runs again: the model caught the error recorded before
        leaf = self.leaf_depth == 0 and self.is_leaf(module)
        self.stack.append((module, leaf))
        self.leaf_depth += leaf

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        _, leaf = self.stack.pop()
        self.leaf_depth -= leaf
        if output is None and sys.exc_info()[1] is not None:
            # its forward raised (the hook is always_call, to keep the stack): report that error, not ours, naming
            # the innermost module it came from (the first to get here)
            if self.failed is None:
                self.failed = (module, args, kwargs)
            return
        if not leaf:
            return
        try:
            self.count(module, args, kwargs, output)
        except Exception:
            self.own_error = True
            raise

    def count(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        """One row for a leaf call: its cost on the shapes it was given and gave."""
        x, y = _first_tensor(args) if args else _first_tensor(kwargs), _first_tensor(output)
        if x is None or y is None:
            raise TypeError(f"{self.names[module] or type(module).__name__}: cost needs a tensor input and output")
        layer = module_cost(module, _shape(x), _shape(y))
        if tuple(layer.output_shape) != _shape(y):
            raise RuntimeError(f"{type(module).__name__}.cost gives output shape {layer.output_shape} but its "
                               f"forward gives {_shape(y)}")
        first = module not in self.seen
        self.seen.add(module)
        self.params += layer.params if first else 0
        self.calls[module] = call = self.calls.get(module, 0) + 1
        # A module called again (weight tying, a block applied twice): its own name, with which call this row is.
        name = self.names[module] if call == 1 else f"{self.names[module]} (call {call})"
        self.rows.append(LayerRow(name, type(module).__name__, _shape(x), _shape(y), layer.params,
                                  layer.macs, layer.other_ops, layer.elements * self.itemsize,
                                  layer.activation_macs, call))

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = _run_on_meta(func, args, kwargs or {})
        counted = _functional_macs(func, args, out)
        if counted is None:
            tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
            if tensors and all(self.is_weight(t) for t in tensors):  # t(), view, reshape, cast… of weights
                for t in torch.utils._pytree.tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        self.mark_weight(t)
            elif self.leaf_depth == 0:
                other = _functional_other_ops(func, args, out)
                if other:
                    entry = self._entry()
                    entry[4] += other
                    entry[1] += sum(numel(_shape(t)) for t in tensors) + numel(_shape(_first_tensor(out)))
        elif self.leaf_depth == 0:
            macs, operands = counted
            weighted = not operands or any(self.is_weight(t) for t in operands)
            entry = self._entry()
            entry[0 if weighted else 3] += macs
            entry[1] += sum(numel(_shape(a)) for a in args if isinstance(a, torch.Tensor)) + numel(_shape(out))
        return out

    def _entry(self) -> list[int]:
        """The counts of the innermost module being run (None: the model's own code outside every module)."""
        owner = self.stack[-1][0] if self.stack else None
        return self.functional.setdefault(owner, [0, 0, len(self.functional), 0, 0])


_PROBE_ELEMENTS = 1 << 24  # a real forward of the failing layer when its input and weights are at most this big


def _real_error(module: nn.Module, args: tuple, kwargs: dict) -> Exception | None:
    """The error a real forward of ``module`` (zero weights, on the CPU) raises on zeros of the shapes it was given
    on meta, or None when it runs or cannot be set up. torch's CPU checks say more than its meta kernels ("expected
    input[1, 1, 224, 224] to have 3 channels" for "Invalid channel dimensions"); only small layers are tried."""
    try:
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        size = sum(t.numel() for t in [*tensors, *module.parameters(), *module.buffers()])
        if size > _PROBE_ELEMENTS:
            return None
        probe = _to_meta(module, torch.float32).to_empty(device="cpu").eval()
        with torch.no_grad():
            for t in [*probe.parameters(), *probe.buffers()]:
                t.zero_()
        real_args, real_kwargs = torch.utils._pytree.tree_map(
            lambda t: torch.zeros(t.shape, dtype=torch.float32 if t.is_floating_point() else t.dtype)
            if isinstance(t, torch.Tensor) else t, (args, kwargs))
    except Exception:  # noqa: BLE001 - lazy or unusual parameters: keep the meta error
        return None
    try:
        with torch.no_grad():
            probe(*real_args, **real_kwargs)
    except Exception as error:  # noqa: BLE001 - the layer's own words for the same input
        return error
    return None


def _layer_refusal(names: dict[nn.Module, str], failed: tuple[nn.Module, tuple, dict], inputs: tuple[torch.Tensor, ...],
                   error: Exception) -> Exception:
    """``error`` (raised by the layer ``failed`` names, on meta) as ``analysis.refusal`` words it, keeping its type: the
    layer, the shape it was given when that is not the model's input, and the layer's error, in torch's CPU words
    when they differ (a layer's own ValueError is the same on meta)."""
    from .refusal import layer_where, refusal

    module, args, kwargs = failed
    x = _first_tensor(args) if args else _first_tensor(kwargs)
    model_input = _shape(inputs[0])
    layer_input = None if x is None or _shape(x) == model_input else _shape(x)
    said = error if isinstance(error, ValueError) else (_real_error(module, args, kwargs) or error)
    return refusal(model_input, layer_where(names[module], module, layer_input), said, kind=type(error))


def cost(model: nn.Module, input_shape_or_example: Union[Sequence[int], torch.Tensor, tuple],
         dtype: torch.dtype = torch.float32) -> CostReport:
    """Profile ``model`` on one input (a shape, or example tensor(s)) on the meta device: no memory, no compute.

    Rows: one per leaf call (modules with a ``cost`` method, native layers) and one per other module that ran
    convolutions / matmuls itself or holds parameters of its own. Totals are ints: params, macs, flops, other_ops,
    bytes (element size of ``dtype``).

    >>> cost(torch.nn.Conv2d(3, 4, 3, bias=False), (1, 3, 5, 5)).macs  # 9 outputs · 4 · 3·3·3
    972
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    itemsize = torch.empty((), dtype=dtype).element_size()
    inputs = _meta_inputs(input_shape_or_example, dtype)
    uses = [m for _, m in model.named_modules(remove_duplicate=False)]
    lazy = (any(isinstance(t, nn.parameter.UninitializedTensorMixin) for t in [*model.parameters(), *model.buffers()])
            or len({id(m) for m in uses}) < len(uses))
    # Lazy layers materialise on their first call, and a module used under two names would keep the meta tensors
    # (functional_call restores its parameters once per name), so those run on a deep copy; any other model runs
    # in place with its parameters swapped for meta tensors (torch.func.functional_call), which skips the copy.
    target = _to_meta(model, dtype) if lazy else model
    names: dict[nn.Module, str] = {}
    for name, module in target.named_modules(remove_duplicate=False):
        names.setdefault(module, name)  # a module under several names (weight tying) is reported by its first
    state = None if lazy else _meta_state(target, dtype)
    weights = list(state.values()) if state is not None else [*target.parameters()]
    profiler = _Profiler(names, itemsize, weights)
    modes = {m: m.training for m in names}
    patched = {m: m.__dict__.get("forward") for m in names
               if isinstance(m, _SHAPE_PRESERVING) and not callable(getattr(m, "cost", None))}
    handles = []
    failure: Exception | None = None
    try:
        # Inference cost: eval mode (no running-stat updates, no training-only branches such as auxiliary heads);
        # shape-preserving leaves pass their input through, since only shapes matter on meta.
        target.eval()
        for module in patched:
            module.forward = _pass_through
        for module in names:
            handles.append(module.register_forward_pre_hook(profiler.pre, with_kwargs=True))
            handles.append(module.register_forward_hook(profiler.post, with_kwargs=True, always_call=True))
        try:
            with torch.no_grad(), profiler:
                if lazy:
                    output = target(*inputs)
                else:
                    output = torch.func.functional_call(target, state, inputs)
        except Exception as error:
            # a layer of the model failed (not the root's own code, not the profiler): named below, once the
            # model is as it was
            if profiler.failed is None or profiler.own_error or profiler.failed[0] is target:
                raise
            failure = error
    finally:
        for handle in handles:
            handle.remove()
        for module, forward in patched.items():
            del module.forward
            if forward is not None:
                module.forward = forward
        for module, training in modes.items():
            module.training = training
    if failure is not None:
        raise _layer_refusal(names, profiler.failed, inputs, failure) from failure  # type: ignore[arg-type]
    rows = profiler.rows
    params = profiler.params
    # Modules outside every leaf that ran weight ops themselves, or own parameters no leaf counted.
    inside = {sub for leaf in profiler.seen for sub in leaf.modules()}
    for module, name in names.items():
        if module in inside:
            continue
        inside.add(module)  # a module reachable under two names gets one row
        own = sum(p.numel() for p in module._parameters.values() if p is not None)  # this module's own
        macs, elements, _, activation, other = profiler.functional.get(module, (0, 0, 0, 0, 0))
        if own or macs or activation or other:
            params += own
            rows.append(LayerRow(name, type(module).__name__, (), (), own, macs, other, (elements + own) * itemsize,
                                 activation))
    out = _first_tensor(output)
    return CostReport(
        layers=rows, input_shape=_shape(inputs[0]), dtype=dtype, params=params, macs=sum(r.macs for r in rows),
        other_ops=sum(r.other_ops for r in rows), bytes=sum(r.bytes for r in rows),
        output_shape=_shape(out) if out is not None else (),
        activation_macs=sum(r.activation_macs for r in rows),
        module_types={name: type(module).__name__ for module, name in names.items()},
    )
