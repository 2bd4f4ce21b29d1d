"""Receptive fields (Araujo, Norouzi & Shlens, "Computing Receptive Fields of Convolutional Neural Networks",
Distill 2019), per layer with k_eff = d·(k−1) + 1:

    r_out = r_in + (k_eff − 1)·j_in,  j_out = j_in·s,  c_out = c_in + ((k_eff − 1)/2 − p_before)·j_in
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Union

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from ..layers.base import ConvzooLayer

Number = Union[int, float]

# ---------------------------------------------------------------------------------------------------------
# Receptive fields (Araujo, Norouzi & Shlens, "Computing Receptive Fields of Convolutional Neural Networks",
# Distill 2019). A field is tracked per spatial dim as (r, j, c): size in input pixels, jump (distance in input
# pixels between adjacent positions of the feature map) and c = centre of the field of the feature map's
# position 0, in input pixel coordinates (input pixel 0 has centre 0). Fractions keep upsampling exact.


@dataclass(frozen=True)
class _Field:
    size: tuple[Fraction, ...]
    jump: tuple[Fraction, ...]
    start: tuple[Fraction, ...]

    def conv(self, k_eff: Sequence[int], s: Sequence[Fraction], before: Sequence[Fraction]) -> _Field:
        """r + (k_eff − 1)·j, j·s, c + ((k_eff − 1)/2 − p_before)·j."""
        return _Field(
            tuple(r + (k - 1) * j for r, k, j in zip(self.size, k_eff, self.jump)),
            tuple(j * ss for j, ss in zip(self.jump, s)),
            tuple(c + (Fraction(k - 1, 2) - p) * j for c, k, p, j in zip(self.start, k_eff, before, self.jump)),
        )

    def upsample(self, f: Sequence[int], taps: int, offset: Sequence[Fraction]) -> _Field:
        """Upsampling by f: each output reads ``taps`` adjacent inputs; jump j/f; position 0 sits at c + offset·j."""
        return _Field(
            tuple(r + (taps - 1) * j for r, j in zip(self.size, self.jump)),
            tuple(j / ff for j, ff in zip(self.jump, f)),
            tuple(c + o * j for c, o, j in zip(self.start, offset, self.jump)),
        )

    def whole(self, spatial: Sequence[int]) -> _Field:
        """A layer that reads the whole feature map (global pooling, flatten → linear): one window of size n."""
        return self.conv(tuple(spatial), tuple(Fraction(n) for n in spatial), (Fraction(0),) * len(spatial))

    # The steps layers declare in their ``receptive_field_step`` (the layer contract):

    def window(self, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
               before: Sequence[int]) -> _Field:
        """A sliding window: k_eff = d·(k − 1) + 1, stride s, ``before`` padding elements ahead of input 0."""
        k_eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        return self.conv(k_eff, tuple(Fraction(x) for x in stride), tuple(Fraction(x) for x in before))

    def upsampled(self, factor: Sequence[int], mode: str) -> _Field:
        """Upsampling by ``factor`` (align_corners=False: output u sits at input coordinate (u + ½)/f − ½);
        'nearest' reads 1 input, the linear modes 2 neighbours per dim."""
        taps = 1 if mode == "nearest" else 2
        return self.upsample(factor, taps, tuple(Fraction(1, 2 * f) - Fraction(1, 2) for f in factor))

    def transposed(self, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                   padding: Sequence[int]) -> _Field:
        """Transposed conv = insert s−1 zeros (jump j/s, position 0 on input 0), then a stride-1 conv with padding
        k_eff − 1 − p on that grid. Output o reads the inputs (o − q)/s for the taps q = d·t ≡ o (mod s); over the
        phases these span at most Δ = (d/g)·⌊(k − 1)·g/s⌋ inputs apart, g = gcd(d, s), so r grows by Δ·j (not
        (k_eff − 1)·j/s: the zeros read nothing) and the jump divides by s."""
        k_eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        spans = tuple(Fraction(d // math.gcd(d, s) * ((k - 1) * math.gcd(d, s) // s))
                      for k, d, s in zip(kernel, dilation, stride))
        up = _Field(self.size, tuple(j / s for j, s in zip(self.jump, stride)), self.start)
        centred = up.conv(k_eff, (Fraction(1),) * len(k_eff), tuple(Fraction(k - 1 - p) for k, p in zip(k_eff, padding)))
        return _Field(tuple(r + dl * j for r, dl, j in zip(self.size, spans, self.jump)), centred.jump, centred.start)


def _plain(x: Fraction) -> Number:
    return int(x) if x.denominator == 1 else float(x)


@dataclass(frozen=True)
class FieldRow:
    """One layer: ``size`` (pixels), ``stride`` (jump, pixels), ``start`` (centre of position 0's field), per dim."""

    name: str
    type: str
    size: tuple[Number, ...]
    stride: tuple[Number, ...]
    start: tuple[Number, ...]

    @classmethod
    def of(cls, name: str, kind: str, f: _Field) -> FieldRow:
        return cls(name, kind, tuple(map(_plain, f.size)), tuple(map(_plain, f.jump)), tuple(map(_plain, f.start)))


@dataclass(frozen=True)
class Misalignment:
    """A merge (add, cat, …) whose inputs differ in stride or centre: their positions see shifted inputs."""

    name: str
    type: str
    strides: tuple[tuple[Number, ...], ...]
    starts: tuple[tuple[Number, ...], ...]


@dataclass
class ReceptiveField:
    """Result of ``receptive_field``: ``layers`` in execution order, ``output`` (the model output's row),
    ``misaligned`` (merges whose branches differ in stride or centre; empty when the graph is aligned)."""

    layers: list[FieldRow]
    output: FieldRow
    misaligned: list[Misalignment] = field(default_factory=list)

    @property
    def is_aligned(self) -> bool:
        return not self.misaligned


class ConvzooTracer(torch.fx.Tracer):
    """fx tracer that keeps every convzoo layer (any ``ConvzooLayer``, a user's subclass too: their forwards hold
    data-dependent shape checks) and every torch.nn leaf as a single call_module node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, ConvzooLayer) or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> torch.fx.GraphModule:
    tracer = ConvzooTracer()
    try:
        graph = tracer.trace(module)
    except torch.fx.proxy.TraceError as error:
        raise TypeError(f"cannot trace {type(module).__name__} with torch.fx ({error}); give the layer a "
                        "receptive_field_step(field, in_shape, step) method (see MixConv2d)") from error
    return torch.fx.GraphModule(tracer.root, graph)


def _tuple(value: Any, dim: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dim


def _torch_before(module: nn.Module, kernel: Sequence[int], dilation: Sequence[int], dim: int) -> tuple[int, ...]:
    """The padding ahead of input 0 for a torch conv or pool ('same' puts the smaller half before)."""
    padding = getattr(module, "padding", 0)
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    if padding == "valid":
        return (0,) * dim
    return tuple(int(p) for p in _tuple(padding, dim))


_WHOLE_MODULES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                  nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Flatten)
_WHOLE_FUNCTIONS = {"flatten", "view", "reshape", "mean", "sum", "amax", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
                    "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"}
_WINDOWED = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
             nn.modules.pooling._LPPoolNd)


def _module_field(module: nn.Module, f: _Field, in_shape: Sequence[int]) -> _Field:
    """The field after ``module`` given the field ``f`` of its input of shape (N, C, *spatial)."""
    dim = len(f.size)
    spatial = tuple(in_shape[2:])
    if isinstance(module, ConvzooLayer) or callable(getattr(module, "receptive_field_step", None)):
        return module.receptive_field_step(f, in_shape, _module_field)  # the layer contract
    if len(spatial) != dim:  # e.g. Linear after flatten, or a 1-D head: no spatial structure left to track
        return f
    if isinstance(module, _WHOLE_MODULES):
        return f.whole(spatial)
    if isinstance(module, nn.Upsample):
        if module.scale_factor is None:
            raise TypeError(f"receptive_field needs nn.Upsample(scale_factor=...), got size={module.size!r}")
        return f.upsampled(tuple(int(v) for v in _tuple(module.scale_factor, dim)), module.mode)
    if isinstance(module, _WINDOWED):
        kernel = _tuple(module.kernel_size, dim)
        stride = _tuple(module.stride if module.stride is not None else module.kernel_size, dim)
        dilation = _tuple(getattr(module, "dilation", 1), dim)
        if getattr(module, "transposed", False):
            return f.transposed(kernel, stride, dilation, _tuple(module.padding, dim))
        return f.window(kernel, stride, dilation, _torch_before(module, kernel, dilation, dim))
    return f  # activations, norms, dropout, identity, linear on channels: pointwise in space


def _function_name(node: torch.fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _propagate(
    gm: torch.fx.GraphModule, f_in: _Field, in_shape: Sequence[int], rows: list[FieldRow] | None = None,
    misaligned: list[Misalignment] | None = None,
) -> tuple[_Field, FieldRow]:
    """Walk the graph in order; merges take the largest field over their inputs (max over paths)."""
    training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(tuple(in_shape)))
    finally:
        gm.train(training)
    fields: dict[torch.fx.Node, _Field] = {}
    out_field, out_row = f_in, FieldRow.of("input", "input", f_in)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            fields[node] = f_in
            continue
        inputs = [a for a in node.all_input_nodes if a in fields]
        if node.op == "output":
            out_field = fields[inputs[0]] if inputs else f_in
            break
        if not inputs:
            continue
        first = inputs[0]
        first_shape = first.meta["tensor_meta"].shape if "tensor_meta" in first.meta else in_shape
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            f = _module_field(module, fields[first], first_shape)
            kind, name = type(module).__name__, str(node.target)
        else:
            kind, name = _function_name(node), node.name
            f = _merge(inputs, fields, kind, name, misaligned)
            spatial = tuple(first_shape[2:])
            if kind in _WHOLE_FUNCTIONS and len(spatial) == len(f.size) and len(inputs) == 1:
                out_shape = node.meta.get("tensor_meta")
                if out_shape is None or tuple(getattr(out_shape, "shape", ())[2:]) != spatial:
                    f = f.whole(spatial)
        fields[node] = f
        out_row = FieldRow.of(name, kind, f)
        if rows is not None:
            rows.append(out_row)
    return out_field, FieldRow.of(out_row.name, out_row.type, out_field)


def _merge(inputs: list[torch.fx.Node], fields: dict[torch.fx.Node, _Field], kind: str, name: str,
           misaligned: list[Misalignment] | None) -> _Field:
    branches = [fields[a] for a in inputs]
    if len(branches) == 1:
        return branches[0]
    if misaligned is not None and any(b.jump != branches[0].jump or b.start != branches[0].start for b in branches):
        misaligned.append(Misalignment(name, kind, tuple(tuple(map(_plain, b.jump)) for b in branches),
                                       tuple(tuple(map(_plain, b.start)) for b in branches)))
    largest = max(branches, key=lambda b: b.size)
    return _Field(tuple(max(b.size[i] for b in branches) for i in range(len(largest.size))), largest.jump, largest.start)


def receptive_field(model: nn.Module, input_shape: Sequence[int]) -> ReceptiveField:
    """Receptive field of every layer of ``model`` for an input of shape (N, C, *spatial) (Araujo et al. 2019).

    Per layer and dim: r = r_in + (k_eff − 1)·j_in, j = j_in·s, c = c_in + ((k_eff − 1)/2 − p_before)·j_in with
    k_eff = d·(k−1)+1; ``start`` is c, the CENTRE of the field of the feature map's first position, in input
    pixel coordinates (its left edge is c − (r−1)/2). The graph is traced with torch.fx (convzoo layers and
    torch.nn leaves kept whole); at a merge (add, cat, mul…) the field is the largest over the incoming paths
    and a merge whose inputs differ in jump or centre is listed in ``misaligned``.

    Geometry is read from the layers: kernel_size / stride / dilation / _pairs (or padding, 'same'). Layers
    without it that have children (depthwise separable, spatially separable, flattened) compose their
    children; a layer may define ``receptive_field_step`` (MixConv: the largest of its parallel kernels).
    Transposed convs are upsampling: zeros inserted (jump j/s), then a stride-1 conv; an output reads only the
    taps that land on inputs, so r grows by (d/g)·⌊(k−1)·g/s⌋·j_in with g = gcd(d, s) (for d = 1: ⌈k/s⌉ − 1
    input steps), the largest over the output phases; ``start`` keeps the continuous centre of the
    zero-inserted grid, c + (p − (k_eff − 1)/2)·j/s. After one upsampling layer the size is exact (the largest
    footprint over output phases); after several, footprints depend on the phase in ways the (r, j) model
    cannot carry and the value is its approximation (the tests see it under by < 1 pixel). Resize-convs (and nn.Upsample) upsample first (jump j/f,
    nearest reads 1 input, linear 2), then convolve. Adaptive/global pooling, flatten, spatial means and a
    whole-map kernel (GlobalDepthwiseConv2d) read the whole map. Deformable convs report the nominal grid:
    learned offsets can move every tap anywhere. Dynamic convs report their kernel's window, but their
    attention pools the whole input, so (through the kernel weights) every output depends on every input
    pixel. Pointwise layers (activations, norms) change nothing. After upsampling, ``start`` uses the
    align_corners=False coordinate (u + ½)/f − ½ of output u: the exact centre of a nearest-upsampled
    pixel's field alternates with u's phase, so there ``start`` is the average over one period.
    """
    shape = tuple(input_shape)
    if len(shape) < 3 or not all(isinstance(n, int) and n >= 1 for n in shape):
        raise ValueError(f"input_shape={input_shape!r} must be (N, C, *spatial) with positive ints")
    dim = len(shape) - 2
    start = _Field((Fraction(1),) * dim, (Fraction(1),) * dim, (Fraction(0),) * dim)
    rows: list[FieldRow] = []
    misaligned: list[Misalignment] = []
    if isinstance(model, ConvzooLayer):  # a single convzoo layer: keep it whole, as in a model
        model = nn.Sequential(model)
    _, out_row = _propagate(_trace(model), start, shape, rows, misaligned)
    return ReceptiveField(rows, out_row, misaligned)
