"""Receptive fields (Araujo, Norouzi & Shlens, "Computing Receptive Fields of Convolutional Neural Networks",
Distill 2019), per layer with k_eff = d·(k−1) + 1:

    r_out = r_in + (k_eff − 1)·j_in,  j_out = j_in·s,  c_out = c_in + ((k_eff − 1)/2 − p_before)·j_in

Each row reports the LOCAL window along the spatial path (as the literature does for SE networks) and, apart,
``global_path``: the output also depends on the whole input through a path that pools or mixes every position
(global pooling, squeeze-excitation gates, attention, group/instance-norm statistics, dynamic conv's attention).
A row whose value is a bound rather than exact names the op in ``note``.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Optional, Union

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..layers.base import ConvzooLayer
from ..arithmetic.refusal import layer_where, refusal

Number = Union[int, float]

# ---------------------------------------------------------------------------------------------------------
# A field is tracked per spatial dim as (r, j, c): size in input pixels, jump (distance in input pixels between
# adjacent positions of the feature map) and c = centre of the field of the feature map's position 0, in input
# pixel coordinates (input pixel 0 has centre 0). Fractions keep upsampling exact. ``glob``: a global path
# reaches it; ``note``: why the value is a bound (empty when exact).
#
# After upsampling the field of a position depends on its phase: nearest ×2 gives outputs 2m and 2m + 1 input m's
# field, which sits ½·j_out left of the first's linear place c + u·j and ½·j_out right of the second's. ``phases``
# keeps, per dim, each phase's true interval around c + u·j (position u has phase u mod P), and (r, c) are their
# union: every position's window holds every pixel it reads. A later stride that brings the phases together
# (a stride-2 conv after a ×2 upsampling) makes the field exact again.

Phase = tuple[Fraction, Fraction]  # (lo, hi): a phase's interval [c + u·j + lo, c + u·j + hi] in input pixels
Reads = Callable[[int], Sequence[int]]  # output position v → the input positions it reads


def _shortest(phases: tuple[Phase, ...]) -> tuple[Phase, ...]:
    """The shortest period of the per-phase intervals; () when every phase has the same interval."""
    n = len(phases)
    for p in range(1, n + 1):
        if n % p == 0 and all(phases[i] == phases[i % p] for i in range(n)):
            return () if p == 1 else phases[:p]
    return phases


@dataclass(frozen=True)
class _Field:
    size: tuple[Fraction, ...]
    jump: tuple[Fraction, ...]
    start: tuple[Fraction, ...]
    glob: bool = False
    note: str = ""
    phases: tuple[tuple[Phase, ...], ...] = ()  # per dim, () where every position has the window (r, c + u·j)
    phase_op: str = ""  # the op that made the windows depend on the phase (for the row's note)

    def _windows(self, d: int) -> tuple[Phase, ...]:
        """Dim d's interval per phase, around c + u·j (one phase: the window ±(r − 1)/2)."""
        if self.phases and self.phases[d]:
            return self.phases[d]
        half = (self.size[d] - 1) / 2
        return ((-half, half),)

    def collapsed(self) -> _Field:
        """Every position given the union window (r, c): what an op that does not follow phases sees."""
        return replace(self, phases=(), phase_op="")

    def _remap(self, d: int, ratio: Fraction, period: int, reads: Reads) -> tuple[Fraction, Fraction, Fraction,
                                                                                 tuple[Phase, ...]]:
        """Dim d after an op whose output v reads the inputs ``reads(v)``, given reads(v + period) = reads(v) +
        period·ratio, a whole number of input phase periods: (r, j, c, phases) of the hulls of what they read."""
        windows, jump, start = self._windows(d), self.jump[d], self.start[d]
        out_jump = jump * ratio
        spans: list[Optional[Phase]] = []
        for v in range(period):
            inputs = list(reads(v))
            if not inputs:  # reads nothing (a transposed conv's output between taps): no constraint
                spans.append(None)
                continue
            here = v * out_jump
            spans.append((min(start + i * jump + windows[i % len(windows)][0] for i in inputs) - here,
                          max(start + i * jump + windows[i % len(windows)][1] for i in inputs) - here))
        known = [span for span in spans if span is not None]
        lo, hi = min(a for a, _ in known), max(b for _, b in known)
        centre = (lo + hi) / 2
        phases = tuple((a - centre, b - centre) for a, b in (span or (lo, hi) for span in spans))
        return hi - lo + 1, out_jump, centre, _shortest(phases)

    def _mapped(self, maps: Sequence[tuple[Fraction, int, Reads]], op: str) -> _Field:
        """The field after an op given per dim as (ratio of the jumps, period, reads)."""
        dims = [self._remap(d, *m) for d, m in enumerate(maps)]
        phases = tuple(ph for *_, ph in dims)
        phased = any(phases)
        return replace(self, size=tuple(r for r, *_ in dims), jump=tuple(j for _, j, _, _ in dims),
                       start=tuple(c for _, _, c, _ in dims), phases=phases if phased else (),
                       phase_op=(self.phase_op or op) if phased else "")

    def _period(self, d: int) -> int:
        return len(self._windows(d))

    def conv(self, k_eff: Sequence[int], s: Sequence[Fraction], before: Sequence[Fraction]) -> _Field:
        """r + (k_eff − 1)·j, j·s, c + ((k_eff − 1)/2 − p_before)·j (on the union window when phased)."""
        if self.phases:
            return self.collapsed().conv(k_eff, s, before)
        return replace(
            self,
            size=tuple(r + (k - 1) * j for r, k, j in zip(self.size, k_eff, self.jump)),
            jump=tuple(j * ss for j, ss in zip(self.jump, s)),
            start=tuple(c + (Fraction(k - 1, 2) - p) * j for c, k, p, j in zip(self.start, k_eff, before, self.jump)),
        )

    def shifted(self, before: Sequence[int]) -> _Field:
        """Padding ``before`` elements ahead of position 0 (a pad op): new position 0 is old position −before."""
        if self.phases:
            return self._mapped([(Fraction(1), self._period(d), lambda v, b=int(b): [v - b])
                                 for d, b in enumerate(before)], "")
        return replace(self, start=tuple(c - b * j for c, b, j in zip(self.start, before, self.jump)))

    def sliced(self, d: int, lo: int, step: int) -> _Field:
        """Positions lo, lo + step, … of dim d kept (x[..., lo::step])."""
        if not self.phases or not self.phases[d]:
            return replace(self, start=tuple(c + lo * j if i == d else c for i, (c, j) in
                                             enumerate(zip(self.start, self.jump))),
                           jump=tuple(j * step if i == d else j for i, j in enumerate(self.jump)))
        maps = [(Fraction(1), self._period(i), lambda v: [v]) for i in range(len(self.size))]
        maps[d] = (Fraction(step), self._period(d) // math.gcd(self._period(d), step), lambda v: [lo + step * v])
        return self._mapped(maps, "")

    def whole(self, spatial: Sequence[int]) -> _Field:
        """Every output reads all n positions of the map (global pooling, attention, flatten → linear): the union
        r + (n − 1)·j, centred on the map's middle; all outputs share it, so the jump becomes 0."""
        if self.phases:  # the hull of the n positions' own windows
            size, start = [], []
            for d, n in enumerate(spatial):
                windows = self._windows(d)
                ends = [(self.start[d] + u * self.jump[d] + windows[u % len(windows)][0],
                         self.start[d] + u * self.jump[d] + windows[u % len(windows)][1])
                        for u in (*range(min(n, len(windows))), *range(max(0, n - len(windows)), n))]
                lo, hi = min(a for a, _ in ends), max(b for _, b in ends)
                size.append(hi - lo + 1)
                start.append((lo + hi) / 2)
            return replace(self.collapsed(), size=tuple(size), jump=(Fraction(0),) * len(spatial),
                           start=tuple(start), glob=True)
        f = self.conv(tuple(spatial), (Fraction(0),) * len(spatial), (Fraction(0),) * len(spatial))
        return replace(f, glob=True)

    def also_global(self) -> _Field:
        """The same window, and a global path too (an SE gate, dynamic conv's attention, norm statistics)."""
        return replace(self, glob=True)

    def bounded(self, note: str) -> _Field:
        """The value is a bound, not exact: ``note`` says which op and why (the first such note is kept)."""
        return replace(self, note=self.note or note)

    # The steps layers declare in their ``receptive_field_step`` (the layer contract):

    def window(self, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
               before: Sequence[int]) -> _Field:
        """A sliding window: k_eff = d·(k − 1) + 1, stride s, ``before`` padding elements ahead of input 0; output v
        reads inputs v·s − before + t·d, t < k (per phase when the windows depend on it)."""
        if not self.phases:
            k_eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
            return self.conv(k_eff, tuple(Fraction(x) for x in stride), tuple(Fraction(x) for x in before))
        maps = []
        for d, (k, s, dl, b) in enumerate(zip(kernel, stride, dilation, before)):
            k, s, dl, b = int(k), int(s), int(dl), int(b)
            maps.append((Fraction(s), self._period(d) // math.gcd(self._period(d), s),
                         lambda v, k=k, s=s, dl=dl, b=b: [v * s - b + t * dl for t in range(k)]))
        return self._mapped(maps, "")

    def upsampled(self, factor: Sequence[Any], mode: str, align_corners: bool = False,
                  sizes: Sequence[tuple[int, int]] | None = None) -> _Field:
        """Resampling by ``factor`` as F.interpolate does it: output u reads, with scale = 1/f, input ⌊u·scale⌋
        ('nearest'), ⌊(u + ½)·scale⌋ ('nearest-exact'), the 2 (linear modes) or 4 (bicubic) neighbours of
        x = (u + ½)·scale − ½ (x = u·(n − 1)/(o − 1) with align_corners and ``sizes`` (n, o) per dim; only x
        itself when it falls on an input), or ⌊u·scale⌋ … ⌈(u + 1)·scale⌉ − 1 ('area'). Jump j·scale; the
        window per phase is the hull of what it reads."""
        maps = []
        for d, ff in enumerate(factor):
            if align_corners and not mode.startswith("nearest") and mode != "area" and sizes is not None:
                n, o = sizes[d]
                scale = Fraction(n - 1, o - 1) if o > 1 else Fraction(0)
            else:
                scale = 1 / Fraction(ff)
            period = scale.denominator * (self._period(d) // math.gcd(self._period(d), scale.numerator))
            maps.append((scale, period, _interpolation_reads(mode, scale, align_corners)))
        names = [str(_plain(Fraction(f))) for f in factor]
        label = names[0] if len(set(names)) == 1 else "×".join(names)  # ×2, or ×2×3 with a factor per dim
        return self._mapped(maps, f"upsampling ×{label} ({mode})")

    def transposed(self, kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                   padding: Sequence[int]) -> _Field:
        """Transposed conv: output o = i·s − p + t·d reads the inputs i = (o + p − t·d)/s of the taps t < k for
        which that is whole (the inserted zeros read nothing); jump j/s; the window per output phase o mod s
        is the hull of what it reads (a k = 3, s = 2 conv: one phase reads 1 input, the other 2)."""
        maps = []
        for d, (k, s, dl, p) in enumerate(zip(kernel, stride, dilation, padding)):
            k, s, dl, p = int(k), int(s), int(dl), int(p)
            maps.append((Fraction(1, s), s * self._period(d),
                         lambda o, k=k, s=s, dl=dl, p=p: [(o + p - t * dl) // s for t in range(k)
                                                          if (o + p - t * dl) % s == 0]))
        return self._mapped(maps, f"transposed conv stride {tuple(int(s) for s in stride)}")


def _interpolation_reads(mode: str, scale: Fraction, align_corners: bool) -> Reads:
    """The input positions F.interpolate's output v reads (away from the borders, where torch clamps)."""
    half = Fraction(1, 2)
    if mode == "nearest":
        return lambda v: [math.floor(v * scale)]
    if mode == "nearest-exact":
        return lambda v: [math.floor((v + half) * scale)]
    if mode == "area":  # adaptive average pooling to the larger size
        return lambda v: list(range(math.floor(v * scale), math.ceil((v + 1) * scale)))
    taps = (-1, 0, 1, 2) if mode == "bicubic" else (0, 1)

    def reads(v: int) -> list[int]:
        x = v * scale if align_corners else (v + half) * scale - half
        i = math.floor(x)
        return [i] if x == i else [i + t for t in taps]  # on an input: the other weights are 0

    return reads


def _plain(x: Fraction) -> Number:
    return int(x) if x.denominator == 1 else float(x)


@dataclass(frozen=True)
class FieldRow:
    """One layer: the local window's ``size`` (pixels), ``stride`` (jump, pixels; 0 once every position reads
    the same pixels), ``start`` (centre of position 0's field), per dim; ``global_path``: the output also
    depends on the whole input through a global path; ``note``: why the row is a bound (empty: exact).

    ``phases``: per dim, () where every position u reads the window start + u·stride ± (size − 1)/2; after
    upsampling, where a position's window depends on its phase u mod P, the P intervals (lo, hi) around
    start + u·stride — size and start are then their union, and ``window(position)`` gives each position's own."""

    name: str
    type: str
    size: tuple[Number, ...]
    stride: tuple[Number, ...]
    start: tuple[Number, ...]
    global_path: bool = False
    note: str = ""
    phases: tuple[tuple[tuple[Number, Number], ...], ...] = ()
    _field: Optional[_Field] = field(default=None, repr=False, compare=False)  # the exact fractions behind it

    @classmethod
    def of(cls, name: str, kind: str, f: _Field) -> FieldRow:
        note = f.note
        if not note and f.phases:  # a union over phases: a bound for the positions whose phase reads less
            periods = "×".join(str(len(ph) or 1) for ph in f.phases)
            note = (f"{f.phase_op}: each position's window depends on its phase (period {periods}); size and start "
                    "give their union, window(position) each position's")
        phases = tuple(tuple((_plain(lo), _plain(hi)) for lo, hi in ph) for ph in f.phases)
        return cls(name, kind, tuple(map(_plain, f.size)), tuple(map(_plain, f.jump)), tuple(map(_plain, f.start)),
                   f.glob, note, phases, f)

    def window(self, position: Sequence[int]) -> tuple[tuple[Number, Number], ...]:
        """Per dim, the first and last input coordinate output ``position`` reads (not clipped to the input):
        start + u·stride + (lo, hi) of u's phase, or ± (size − 1)/2 where the window does not depend on it."""
        f = self._field or _Field(*(tuple(Fraction(v) for v in values) for values in (self.size, self.stride,
                                                                                       self.start)))
        spans = []
        for d, u in enumerate(position):
            windows = f._windows(d)
            lo, hi = windows[u % len(windows)]
            centre = f.start[d] + u * f.jump[d]
            spans.append((_plain(centre + lo), _plain(centre + hi)))
        return tuple(spans)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "size": list(self.size), "stride": list(self.stride),
                "start": list(self.start), "global_path": self.global_path, "note": self.note,
                "phases": [[list(ph) for ph in dim] for dim in self.phases]}


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

    @property
    def notes(self) -> list[str]:
        """The distinct reasons some rows are bounds, in order of appearance (empty: every row is exact)."""
        return list(dict.fromkeys(row.note for row in self.layers if row.note))


class ConvzooTracer(torch.fx.Tracer):
    """fx tracer that keeps every convzoo layer (any ``ConvzooLayer``, a user's subclass too: their forwards hold
    data-dependent shape checks) and every torch.nn leaf as a single call_module node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, ConvzooLayer) or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> torch.fx.GraphModule:
    tracer = ConvzooTracer()
    modes = {m: m.training for m in module.modules()}
    module.eval()  # the inference graph (training-only branches such as stochastic depth's sampling left out)
    try:
        graph = tracer.trace(module)
    except Exception as error:  # fx raises TraceError, TypeError, AttributeError… on data-dependent code
        raise TypeError(f"cannot trace {type(module).__name__} with torch.fx ({type(error).__name__}: "
                        f"{str(error).splitlines()[0] if str(error) else ''}); give the layer a "
                        "receptive_field_step(field, in_shape, step) method (see MixConv2d)") from error
    finally:
        for m, training in modes.items():
            m.training = training
    return torch.fx.GraphModule(tracer.root, graph)


def _tuple(value: Any, dim: int) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dim


def _torch_before(padding: Any, kernel: Sequence[int], dilation: Sequence[int], dim: int) -> tuple[int, ...]:
    """The padding ahead of input 0 for a torch conv or pool ('same' puts the smaller half before)."""
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    if padding == "valid":
        return (0,) * dim
    return tuple(int(p) for p in _tuple(padding, dim))


def _adaptive(f: _Field, spatial: Sequence[int], out: Sequence[int], op: str) -> _Field:
    """Adaptive pooling n → o: window i covers [⌊i·n/o⌋, ⌈(i+1)·n/o⌉). o | n: a window of n/o at stride n/o
    (exact); o = 1: the whole map; otherwise windows of varying size and stride: the largest window, the mean
    stride n/o and position 0's centre (a bound, said in the note)."""
    out = tuple(n if o is None else int(o) for o, n in zip(out, spatial))
    if all(o == 1 for o in out):
        return f.whole(spatial)
    kernels, strides, starts, exact = [], [], [], True
    for n, o in zip(spatial, out):
        widths = [-(-(i + 1) * n // o) - (i * n // o) for i in range(o)]
        kernels.append(max(widths))
        strides.append(Fraction(n, o))
        starts.append(Fraction(widths[0] - 1, 2))
        exact = exact and n % o == 0
    if exact:  # windows of n/o at stride n/o from position 0
        return f.window(kernels, [int(s) for s in strides], [1] * len(kernels), [0] * len(kernels))
    g = f.conv(kernels, strides, tuple(Fraction(k - 1, 2) - s for k, s in zip(kernels, starts)))
    return g.bounded(f"{op} {tuple(spatial)}→{out}: windows vary in size and stride; size is the largest, "
                     "stride the mean")


def _upsample_factor(in_spatial: Sequence[int], out_spatial: Sequence[int]) -> tuple[Fraction, ...]:
    return tuple(Fraction(o, i) for i, o in zip(in_spatial, out_spatial))


_POOLS = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._LPPoolNd)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
             nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_PADS = (nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd, nn.modules.padding._ReplicationPadNd,
         *((nn.modules.padding._CircularPadNd,) if hasattr(nn.modules.padding, "_CircularPadNd") else ()))


def _pad_before(pad: Sequence[int], dim: int) -> tuple[int, ...]:
    """F.pad's list names the last dim first: (left, right, top, bottom, …); the before-padding per spatial dim."""
    pad = list(pad) + [0] * max(0, 2 * dim - len(pad))
    return tuple(int(pad[2 * (dim - 1 - i)]) for i in range(dim))


def _module_field(module: nn.Module, f: _Field, in_shape: Sequence[int], out_shape: Sequence[int] | None = None
                  ) -> _Field:
    """The field after ``module`` given the field ``f`` of its input of shape (N, C, *spatial) (the ``step`` that
    composite layers call on their children)."""
    dim = len(f.size)
    spatial = tuple(in_shape[2:])
    if isinstance(module, ConvzooLayer) or callable(getattr(module, "receptive_field_step", None)):
        return module.receptive_field_step(f, in_shape, _module_field)  # the layer contract
    if len(spatial) != dim:  # e.g. Linear after flatten, or a 1-D head: no spatial structure left to track
        return f
    if isinstance(module, _ADAPTIVE):
        return _adaptive(f, spatial, _tuple(module.output_size, dim), type(module).__name__)
    if isinstance(module, nn.Flatten):
        return f.whole(spatial)
    if isinstance(module, _PADS):
        return f.shifted(_pad_before(module.padding, dim))
    if isinstance(module, nn.Upsample):
        factor = None if module.scale_factor is None else \
            tuple(Fraction(v).limit_denominator(1000) for v in _tuple(module.scale_factor, dim))
        if out_shape is None and factor is not None:
            out_shape = (*in_shape[:2], *(math.floor(n * float(v)) for n, v in zip(spatial, factor)))
        if out_shape is None:
            raise TypeError(f"receptive_field needs nn.Upsample(scale_factor=...) here, got size={module.size!r}")
        if factor is None or module.recompute_scale_factor:  # torch then scales by the sizes' ratio
            factor = _upsample_factor(spatial, out_shape[2:])
        return f.upsampled(factor, module.mode, bool(module.align_corners), tuple(zip(spatial, out_shape[2:])))
    if isinstance(module, (nn.modules.conv._ConvNd, *_POOLS)):
        kernel = _tuple(module.kernel_size, dim)
        stride = _tuple(module.stride if module.stride is not None else module.kernel_size, dim)
        dilation = _tuple(getattr(module, "dilation", 1), dim)
        if getattr(module, "transposed", False):
            return f.transposed(kernel, stride, dilation, _tuple(module.padding, dim))
        return f.window(kernel, stride, dilation, _torch_before(getattr(module, "padding", 0), kernel, dilation, dim))
    if isinstance(module, (nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)):
        return f.also_global()  # statistics over the whole map
    return f  # activations, norms, dropout, identity, linear on channels: pointwise in space


# --- tensors in the graph: a field plus where its positions are -------------------------------------------------


@dataclass(frozen=True)
class _Track:
    """What the analysis knows about one tensor: its field, the tensor axes holding the spatial positions
    (``axes``, one per dim), or the one axis holding all of them flattened row-major (``tokens``), and the
    spatial ``grid``. No axes and no tokens: positions are gone (after flatten into channels, or an int index)."""

    field: _Field
    axes: tuple[int, ...]
    tokens: Optional[int]
    grid: tuple[int, ...]

    @property
    def positional(self) -> tuple[int, ...]:
        return self.axes if self.axes else (() if self.tokens is None else (self.tokens,))

    def with_field(self, f: _Field) -> _Track:
        return replace(self, field=f)

    def lost(self, f: Optional[_Field] = None) -> _Track:
        return _Track(self.field if f is None else f, (), None, self.grid)


Value = Union[_Track, tuple, None]


def _shape_of(meta: Any) -> Optional[tuple[int, ...]]:
    shape = getattr(meta, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _is_multi(meta: Any) -> bool:
    """Several outputs' metadata (a tuple of TensorMetadata — itself a NamedTuple, hence the shape test)."""
    return isinstance(meta, (tuple, list)) and not hasattr(meta, "shape")


def _name(target: Any) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", str(target))


def _axis(d: Any, ndim: int) -> int:
    return int(d) % ndim if ndim else 0


_POINTWISE = {
    "add", "iadd", "sub", "isub", "mul", "imul", "truediv", "itruediv", "div", "floordiv", "neg", "pow", "sqrt",
    "rsqrt", "exp", "log", "abs", "clamp", "clamp_min", "clamp_max", "clip", "relu", "relu_", "relu6", "sigmoid",
    "sigmoid_", "tanh", "gelu", "silu", "hardswish", "hardsigmoid", "hardtanh", "leaky_relu", "elu", "selu",
    "mish", "softplus", "contiguous", "clone", "to", "float", "half", "double", "type_as", "dropout", "dropout2d",
    "alpha_dropout", "batch_norm", "where", "masked_fill", "sign", "floor", "ceil", "round", "detach", "erf",
    "reciprocal", "square", "mul_", "add_", "div_", "sub_", "and_", "or_", "eq", "ne", "lt", "gt", "le", "ge",
    "maximum", "minimum", "expand", "expand_as", "requires_grad_", "hardswish_", "hardsigmoid_", "sigmoid_",
    "matmul_weight", "linear_channels", "_assert", "stochastic_depth", "dropout1d", "dropout3d", "local_response_norm",
    "channel_shuffle", "native_channel_shuffle", "pixel_norm", "bernoulli", "fill_", "zero_",
}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "std", "var", "logsumexp", "norm", "prod", "median",
               "nanmean", "nansum", "argmax", "argmin", "all", "any"}
_RESHAPES = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as", "ravel"}
_SPLITS = {"chunk", "split", "unbind", "tensor_split", "split_with_sizes"}
_MIXING = {"matmul", "bmm", "baddbmm", "einsum", "scaled_dot_product_attention", "mm", "addmm", "multi_head_attention_forward"}
_CONVS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_TRANSPOSED = {F.conv_transpose1d: 1, F.conv_transpose2d: 2, F.conv_transpose3d: 3}
_FUNCTIONAL_POOLS = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3, F.avg_pool1d: 1, F.avg_pool2d: 2,
                     F.avg_pool3d: 3, F.lp_pool1d: 1, F.lp_pool2d: 2, torch.max_pool1d: 1, torch.max_pool2d: 2,
                     torch.max_pool3d: 3, torch.avg_pool1d: 1}
_FUNCTIONAL_ADAPTIVE = {F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
                        F.adaptive_max_pool2d, F.adaptive_max_pool3d, torch.adaptive_avg_pool1d}


def _arg(node: torch.fx.Node, index: int, name: str, default: Any) -> Any:
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[index] if len(node.args) > index else default


class _Walker:
    """Walks the traced graph in order, keeping a ``Value`` per node and a row per tensor-producing node."""

    def __init__(self, gm: torch.fx.GraphModule, dim: int, rows: list[FieldRow], misaligned: list[Misalignment]):
        self.gm, self.dim, self.rows, self.misaligned = gm, dim, rows, misaligned
        self.values: dict[torch.fx.Node, Value] = {}
        self.row_of: dict[torch.fx.Node, FieldRow] = {}

    # -- helpers --
    def shape(self, node: Any) -> Optional[tuple[int, ...]]:
        return _shape_of(node.meta.get("tensor_meta")) if isinstance(node, torch.fx.Node) else None

    def track(self, node: Any) -> Optional[_Track]:
        value = self.values.get(node) if isinstance(node, torch.fx.Node) else None
        return value if isinstance(value, _Track) else None

    def standard(self, t: _Track, shape: tuple[int, ...]) -> bool:
        """Positions on the last ``dim`` axes after (N, C): what torch's conv and pool layers read."""
        return len(shape) == self.dim + 2 and t.axes == tuple(range(2, 2 + self.dim))

    def unknown(self, t: _Track, what: str) -> _Track:
        """An op the analysis cannot follow: the whole input is assumed (a bound), and the row says so."""
        if not t.positional:
            return t
        return t.with_field(t.field.whole(t.grid).bounded(f"{what}: not analysed, assumed to read the whole input"))

    def mixing(self, t: _Track, axes: Sequence[int]) -> _Track:
        """An op that reads every element along ``axes``: whole map when those hold positions."""
        if any(a in t.positional for a in axes):
            return t.with_field(t.field.whole(t.grid))
        return t

    # -- the walk --
    def run(self, f_in: _Field, in_shape: tuple[int, ...]) -> tuple[Optional[_Track], FieldRow]:
        out_row = FieldRow.of("input", "input", f_in)
        out: Optional[_Track] = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.values[node] = _Track(f_in, tuple(range(2, 2 + self.dim)), None, tuple(in_shape[2:])) \
                    if self.shape(node) == in_shape else None
                continue
            if node.op == "output":
                found = next((a for a in _nodes_in(node.args) if _first_track([self.values.get(a)]) is not None), None)
                if found is not None:
                    out = _first_track([self.values[found]])
                    out_row = self.row_of.get(found, out_row)
                break
            if node.op == "get_attr" or not any(self.track(a) or isinstance(self.values.get(a), tuple)
                                                 for a in node.all_input_nodes):
                self.values[node] = None
                continue
            value, kind, name = self.step(node)
            self.values[node] = _regrid(value, node.meta.get("tensor_meta"))
            value = self.values[node]
            first = _first_track([value])
            if first is not None and node.meta.get("tensor_meta") is not None and not _is_getitem_of_tuple(node, self):
                out_row = FieldRow.of(name, kind, first.field)
                self.rows.append(out_row)
                self.row_of[node] = out_row
        if out is None:
            return None, out_row
        return out, FieldRow.of(out_row.name, out_row.type, out.field)

    def step(self, node: torch.fx.Node) -> tuple[Value, str, str]:
        meta = node.meta.get("tensor_meta")
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            return self.module(module, node, meta), type(module).__name__, str(node.target)
        return self.function(node, meta), _name(node.target), node.name

    # -- modules --
    def module(self, module: nn.Module, node: torch.fx.Node, meta: Any) -> Value:
        x = node.args[0] if node.args else next(iter(node.kwargs.values()))
        t, in_shape, out_shape = self.track(x), self.shape(x), _shape_of(meta)
        if t is None:
            return self.merge(node, meta)
        if isinstance(module, nn.MultiheadAttention):
            seq = 1 if module.batch_first else 0
            tracks = [self.track(a) for a in node.args[:3]]
            out = self.mixing(t, [seq]) if any(tr is not None and seq in tr.positional for tr in tracks) else t
            return (out, None)
        if isinstance(module, (nn.Linear, nn.Bilinear, nn.LazyLinear)):
            return self.mixing(t, [len(in_shape) - 1])
        if isinstance(module, nn.LayerNorm):
            return self.mixing(t, range(len(in_shape) - len(module.normalized_shape), len(in_shape)))
        if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)):
            return self.mixing(t, [_axis(module.dim if module.dim is not None else -1, len(in_shape))])
        if isinstance(module, (nn.Flatten, nn.Unflatten)):
            return self.reshape(t, in_shape, out_shape, type(module).__name__)
        if isinstance(module, nn.Upsample) or isinstance(module, (ConvzooLayer, nn.modules.conv._ConvNd, *_POOLS,
                                                                  *_ADAPTIVE, *_PADS)) \
                or callable(getattr(module, "receptive_field_step", None)):
            if not self.standard(t, in_shape):
                return self.unknown(t, f"{type(module).__name__} on a tensor whose positions are not its last dims")
            return t.with_field(_module_field(module, t.field, in_shape, out_shape))
        if isinstance(module, (nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)):
            return t.with_field(t.field.also_global()) if t.positional else t
        if _is_pointwise_module(module):
            return t
        return self.unknown(t, type(module).__name__)

    # -- functions and methods --
    def function(self, node: torch.fx.Node, meta: Any) -> Value:
        target, name = node.target, _name(node.target)
        args = node.args
        x = args[0] if args else None
        t = self.track(x)
        in_shape, out_shape = self.shape(x), _shape_of(meta)
        if target is operator.getitem:
            value = self.values.get(x)
            if isinstance(value, tuple):
                index = args[1]
                return value[index] if isinstance(index, int) and -len(value) <= index < len(value) else None
            if t is None:
                return None
            return self.index(t, in_shape, args[1], name)
        if meta is None or name in ("size", "dim", "numel", "__len__", "getattr", "stride", "shape"):
            return None
        if t is not None and in_shape is not None:
            ndim = len(in_shape)
            if target in _CONVS or target in _TRANSPOSED:
                return self.functional_conv(node, t, in_shape)
            if target in _FUNCTIONAL_POOLS:
                kernel = _tuple(_arg(node, 1, "kernel_size", 1), self.dim)
                stride = _arg(node, 2, "stride", None)
                stride = _tuple(stride if stride not in (None, [], ()) else kernel, self.dim)
                padding = _tuple(_arg(node, 3, "padding", 0), self.dim)
                dilation = _tuple(_arg(node, 4, "dilation", 1), self.dim) if "max" in name or target in (
                    F.max_pool1d, F.max_pool2d, F.max_pool3d) else (1,) * self.dim
                if not self.standard(t, in_shape):
                    return self.unknown(t, name)
                return t.with_field(t.field.window(kernel, stride, dilation, padding))
            if target in _FUNCTIONAL_ADAPTIVE:
                if not self.standard(t, in_shape):
                    return self.unknown(t, name)
                return t.with_field(_adaptive(t.field, in_shape[2:], _tuple(_arg(node, 1, "output_size", 1), self.dim),
                                              name))
            if name == "pad":
                pad = _arg(node, 1, "pad", ())
                if not t.axes:
                    return self.unknown(t, "pad") if t.positional else t
                last = len(pad) // 2  # F.pad pads the last len(pad)/2 dims
                before = [0] * self.dim
                for i, a in enumerate(t.axes):
                    k = ndim - 1 - a
                    if k < last:
                        before[i] = int(pad[2 * k])
                return t.with_field(t.field.shifted(before))
            if name in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear"):
                if not self.standard(t, in_shape):
                    return self.unknown(t, name)
                mode = _arg(node, 3, "mode", "nearest") if name in ("interpolate", "upsample") else \
                    ("bilinear" if "bilinear" in name else "nearest")
                corners = bool(_arg(node, 4, "align_corners", None)) if name in ("interpolate", "upsample") else \
                    name == "upsample_bilinear"  # F.upsample_bilinear aligns the corners
                scale = _arg(node, 2, "scale_factor", None)
                factor = _upsample_factor(in_shape[2:], out_shape[2:])
                if scale is not None and not _arg(node, 5, "recompute_scale_factor", None):
                    factor = tuple(Fraction(v).limit_denominator(1000) for v in _tuple(scale, self.dim))
                return t.with_field(t.field.upsampled(factor, mode, corners, tuple(zip(in_shape[2:], out_shape[2:]))))
            if name in _RESHAPES:
                return self.reshape(t, in_shape, out_shape, name)
            if name in ("permute", "transpose", "movedim", "swapaxes", "moveaxis"):
                return self.permute(node, t, ndim, name)
            if name in ("softmax", "log_softmax", "softmin", "cumsum", "cumprod", "sort", "topk", "cummax"):
                d = _arg(node, 1, "dim", -1)
                return self.mixing(t, [_axis(d if d is not None else -1, ndim)])
            if name in _REDUCTIONS:
                if _is_multi(meta):  # (values, indices)
                    reduced = self.reduce(node, t, in_shape, _shape_of(meta[0]))
                    return (reduced, reduced)
                return self.reduce(node, t, in_shape, out_shape)
            if name == "normalize":  # F.normalize: a p-norm along dim (default 1, the channels)
                return self.mixing(t, [_axis(_arg(node, 2, "dim", 1), ndim)])
            if name == "layer_norm":
                normalized = _arg(node, 1, "normalized_shape", ())
                return self.mixing(t, range(ndim - len(_tuple(normalized, 1)), ndim))
            if name in ("group_norm", "instance_norm"):
                return t.with_field(t.field.also_global()) if t.positional else t
            if name == "linear":
                return self.mixing(t, [ndim - 1]) if self.track(_arg(node, 1, "weight", None)) is None else \
                    self.token_mixing(node, name)
            if name in _SPLITS:
                return self.split(node, t, ndim, meta, name)
            if name == "roll":
                dims = _arg(node, 2, "dims", None)
                axes = range(ndim) if dims is None else [_axis(d, ndim) for d in _tuple(dims, 1)]
                if any(a in t.positional for a in axes):
                    return t.with_field(t.field.bounded("roll: cyclic shift of positions, not tracked"))
                return t
        if name in _MIXING or name in ("matmul", "__matmul__"):
            return self.matmul(node, name)
        if name in ("cat", "concat", "concatenate", "stack"):
            return self.concatenate(node, meta, name)
        if name in _POINTWISE or t is None:
            return self.merge(node, meta)
        return self.unknown(t, name) if in_shape is not None else self.merge(node, meta)

    def functional_conv(self, node: torch.fx.Node, t: _Track, in_shape: tuple[int, ...]) -> _Track:
        transposed = node.target in _TRANSPOSED
        weight = self.shape(_arg(node, 1, "weight", None))
        if weight is None or not self.standard(t, in_shape):
            return self.unknown(t, _name(node.target))
        if self.track(_arg(node, 1, "weight", None)) is not None:  # a kernel computed from the input
            t = t.with_field(t.field.also_global())
        kernel = weight[2:]
        stride = _tuple(_arg(node, 3, "stride", 1), self.dim)
        padding = _arg(node, 4, "padding", 0)
        if transposed:
            dilation = _tuple(_arg(node, 7, "dilation", 1), self.dim)
            return t.with_field(t.field.transposed(kernel, stride, dilation, _tuple(padding, self.dim)))
        dilation = _tuple(_arg(node, 5, "dilation", 1), self.dim)
        return t.with_field(t.field.window(kernel, stride, dilation, _torch_before(padding, kernel, dilation, self.dim)))

    def token_mixing(self, node: torch.fx.Node, name: str) -> Value:
        """A product of two activations (attention's QKᵀ and AV): every output mixes every position."""
        tracks = [self.track(a) for a in node.all_input_nodes]
        tracks = [tr for tr in tracks if tr is not None]
        merged = self.merge(node, node.meta.get("tensor_meta"))
        base = merged if isinstance(merged, _Track) else tracks[0]
        positional = [tr for tr in tracks if tr.positional]
        if not positional:
            return base
        source = positional[0]
        whole = source.field.whole(source.grid)
        return replace(base, field=replace(whole, size=tuple(max(a, b) for a, b in zip(whole.size, base.field.size))),
                       axes=base.axes or source.axes, tokens=base.tokens if base.positional else source.tokens)

    def matmul(self, node: torch.fx.Node, name: str) -> Value:
        tracked = [a for a in node.all_input_nodes if self.track(a) is not None]
        if len(tracked) >= 2:
            return self.token_mixing(node, name)
        t = self.track(tracked[0])
        shape = self.shape(tracked[0])
        if name in ("einsum", "scaled_dot_product_attention", "multi_head_attention_forward"):
            return self.unknown(t, name)
        first = node.args and node.args[0] is tracked[0] if name in ("matmul", "mm", "bmm") else \
            (len(node.args) > 1 and node.args[1] is tracked[0])
        ndim = len(shape)
        return self.mixing(t, [ndim - 1] if first else [ndim - 2])

    def merge(self, node: torch.fx.Node, meta: Any) -> Value:
        """Elementwise ops over several inputs (add, mul, …): the spatial path is the inputs that keep positions;
        an input broadcast over the positions (pooled to 1×1: an SE gate) is a global path, not a window."""
        inputs = [a for a in node.all_input_nodes if self.track(a) is not None]
        if not inputs:
            first = next((self.values[a] for a in node.all_input_nodes if isinstance(self.values.get(a), tuple)), None)
            return first
        out_shape = _shape_of(meta)
        tracks = [self.track(a) for a in inputs]
        if len(tracks) == 1 or out_shape is None:
            return self.align(tracks[0], self.shape(inputs[0]), out_shape)
        spread, gates = [], []
        for a, tr in zip(inputs, tracks):
            shape = self.shape(a)
            sizes = [shape[p] for p in tr.positional] if shape is not None else []
            whole = all(j == 0 for j in tr.field.jump)  # every position reads the same pixels (pooled, attention)
            (spread if any(s > 1 for s in sizes) and not whole else gates).append((a, tr))
        if not spread:  # nothing keeps positions (all pooled): an ordinary merge
            spread, gates = list(zip(inputs, tracks)), []
        branches = [tr.field for _, tr in spread]
        if len({b.phases for b in branches}) > 1:  # windows that alternate differently: merge their unions
            branches = [b.collapsed() for b in branches]
        if len(branches) > 1 and any(b.jump != branches[0].jump or b.start != branches[0].start for b in branches):
            self.misaligned.append(Misalignment(node.name, _name(node.target),
                                                tuple(tuple(map(_plain, b.jump)) for b in branches),
                                                tuple(tuple(map(_plain, b.start)) for b in branches)))
        largest = max(branches, key=lambda b: b.size)
        f = replace(largest, size=tuple(max(b.size[i] for b in branches) for i in range(len(largest.size))),
                    glob=any(b.glob for b in branches) or any(tr.field.glob for _, tr in gates),
                    note=next((b.note for b in branches if b.note), "") or next(
                        (tr.field.note for _, tr in gates if tr.field.note), ""))
        if any(not tr.field.glob for _, tr in gates):  # one position's value broadcast over the map (not pooled)
            f = f.bounded(f"{_name(node.target)}: a single position broadcast over the map, not tracked")
        a, tr = spread[0]
        return self.align(tr.with_field(f), self.shape(a), out_shape)

    def align(self, t: _Track, in_shape: Optional[tuple[int, ...]], out_shape: Optional[tuple[int, ...]]) -> _Track:
        """Broadcasting prepends dims: shift the axes by the rank difference."""
        if in_shape is None or out_shape is None or len(in_shape) == len(out_shape):
            return t
        shift = len(out_shape) - len(in_shape)
        return replace(t, axes=tuple(a + shift for a in t.axes), tokens=None if t.tokens is None else t.tokens + shift)

    def concatenate(self, node: torch.fx.Node, meta: Any, name: str) -> Value:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        d = _arg(node, 1, "dim", 0)
        tracked = [a for a in tensors if self.track(a) is not None]
        if not tracked:
            return None
        shape = self.shape(tracked[0])
        merged = self.merge(node, meta)
        if not isinstance(merged, _Track):
            return merged
        if name == "stack":
            new = _axis(d, len(shape) + 1)
            return replace(merged, axes=tuple(a + (a >= new) for a in merged.axes),
                           tokens=None if merged.tokens is None else merged.tokens + (merged.tokens >= new))
        if _axis(d, len(shape)) in merged.positional and len(tracked) > 1:
            return merged.with_field(merged.field.bounded(f"{name} along positions: fields of different maps joined"))
        return merged

    def index(self, t: _Track, shape: tuple[int, ...], index: Any, name: str) -> Value:
        """x[...]: slices of position axes move and stride the grid; an int index drops the axis."""
        items = list(index) if isinstance(index, tuple) else [index]
        if any(not isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in items):
            return self.unknown(t, "tensor indexing")
        if Ellipsis in items:
            e = items.index(Ellipsis)
            used = sum(1 for i in items if i is not None and i is not Ellipsis)
            items[e:e + 1] = [slice(None)] * (len(shape) - used)
        items += [slice(None)] * (len(shape) - sum(1 for i in items if i is not None))
        f, new_axes, tokens, out_axis, in_axis = t.field, {}, None, 0, 0
        lost = False
        for item in items:
            if item is None:
                out_axis += 1
                continue
            if isinstance(item, int):
                if in_axis == t.tokens and shape[in_axis] != math.prod(t.grid):  # e.g. a class token: not a position
                    f = f.whole(t.grid)
                if in_axis in t.positional:
                    lost = True
                in_axis += 1
                continue
            lo, _, step = item.indices(shape[in_axis])
            if in_axis in t.axes:
                i = t.axes.index(in_axis)
                f = f.sliced(i, lo, step)
                new_axes[i] = out_axis
            elif in_axis == t.tokens:
                tokens = out_axis
                if (lo, step) != (0, 1) and shape[in_axis] == math.prod(t.grid):
                    lost = True
            in_axis += 1
            out_axis += 1
        g = f
        if lost or (t.axes and len(new_axes) != len(t.axes)):
            return t.lost(g)
        return _Track(g, tuple(new_axes[i] for i in range(len(new_axes))), tokens, t.grid)

    def permute(self, node: torch.fx.Node, t: _Track, ndim: int, name: str) -> _Track:
        rest = [a for a in node.args[1:]]
        if name == "permute":
            order = [_axis(d, ndim) for d in (rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple))
                                               else rest or node.kwargs.get("dims", ()))]
        else:
            a, b = (rest + [None, None])[:2]
            a = node.kwargs.get("dim0", node.kwargs.get("source", a))
            b = node.kwargs.get("dim1", node.kwargs.get("destination", b))
            if name in ("movedim", "moveaxis"):
                src, dst = _axis(a, ndim), _axis(b, ndim)
                order = [i for i in range(ndim) if i != src]
                order.insert(dst, src)
            else:
                order = list(range(ndim))
                a, b = _axis(a, ndim), _axis(b, ndim)
                order[a], order[b] = order[b], order[a]
        where = {old: new for new, old in enumerate(order)}
        return replace(t, axes=tuple(where[a] for a in t.axes),
                       tokens=None if t.tokens is None else where[t.tokens])

    def reshape(self, t: _Track, in_shape: tuple[int, ...], out_shape: tuple[int, ...], name: str) -> _Track:
        """Match the dims of the two shapes in groups of equal product; positions survive a one-to-one group, a
        group flattening exactly the spatial axes (tokens), or one splitting tokens back into the grid."""
        if not t.positional:
            return t
        groups = _reshape_groups(in_shape, out_shape)
        axes: dict[int, int] = {}
        tokens = None
        for ins, outs in groups:
            held = [a for a in ins if a in t.positional]
            if not held:
                continue
            if all(in_shape[a] == 1 for a in held) and t.axes:
                continue  # a 1×1 map: nothing positional to keep
            if len(ins) == 1 and len(outs) == 1:
                if t.axes:
                    axes[t.axes.index(ins[0])] = outs[0]
                else:
                    tokens = outs[0]
            elif t.axes and tuple(ins) == t.axes and len(outs) == 1:
                tokens = outs[0]
            elif t.tokens is not None and ins == [t.tokens] and tuple(out_shape[o] for o in outs) == t.grid:
                axes = dict(enumerate(outs))
            elif len(outs) == 1:  # positions merged with channels into one vector: what reads it reads them all
                return t.lost(t.field.whole(t.grid))
            else:
                return self.unknown(t, f"{name} {in_shape}→{out_shape} splitting positions").lost()
        if tokens is not None and not axes:
            return _Track(t.field, (), tokens, t.grid)
        if t.axes and len(axes) == len(t.axes):
            return _Track(t.field, tuple(axes[i] for i in range(len(t.axes))), None, t.grid)
        if t.tokens is not None and len(axes) == self.dim:
            return _Track(t.field, tuple(axes[i] for i in range(self.dim)), None, t.grid)
        return t.lost()

    def reduce(self, node: torch.fx.Node, t: _Track, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> _Track:
        ndim = len(in_shape)
        dims = _arg(node, 1, "dim", None)
        keep = bool(_arg(node, 2, "keepdim", False))
        axes = list(range(ndim)) if dims is None else [_axis(d, ndim) for d in _tuple(dims, 1)]
        out = self.mixing(t, axes)
        if keep or not out.positional:
            return out
        if any(a in out.positional for a in axes):
            return out.lost()
        shift = {a: a - sum(1 for r in axes if r < a) for a in range(ndim)}
        return replace(out, axes=tuple(shift[a] for a in out.axes),
                       tokens=None if out.tokens is None else shift[out.tokens])

    def split(self, node: torch.fx.Node, t: _Track, ndim: int, meta: Any, name: str) -> Value:
        d = _arg(node, 2 if name != "unbind" else 1, "dim", 0)
        axis = _axis(d, ndim)
        count = len(meta) if _is_multi(meta) else 1
        if axis not in t.positional:
            if name == "unbind":
                shift = lambda a: a - (a > axis)  # noqa: E731
                t = replace(t, axes=tuple(shift(a) for a in t.axes), tokens=None if t.tokens is None else shift(t.tokens))
            return tuple(t for _ in range(count))
        return tuple(self.unknown(t, f"{name} along positions") for _ in range(count))


def _is_getitem_of_tuple(node: torch.fx.Node, walker: _Walker) -> bool:
    return node.target is operator.getitem and isinstance(walker.values.get(node.args[0]), tuple)


def _nodes_in(args: Any) -> list[torch.fx.Node]:
    """The nodes in a (nested) output structure, in order (dict values, tuple and list items)."""
    if isinstance(args, torch.fx.Node):
        return [args]
    if isinstance(args, dict):
        args = list(args.values())
    if isinstance(args, (tuple, list)):
        return [n for a in args for n in _nodes_in(a)]
    return []


def _regrid(value: Value, meta: Any) -> Value:
    """The grid of a tensor whose positions are on axes is read from its shape (tokens keep their grid)."""
    if isinstance(value, tuple):
        metas = meta if _is_multi(meta) else (None,) * len(value)
        return tuple(_regrid(v, m) for v, m in zip(value, metas))
    shape = _shape_of(meta)
    if isinstance(value, _Track) and value.axes and shape is not None and max(value.axes) < len(shape):
        return replace(value, grid=tuple(shape[a] for a in value.axes))
    return value


def _first_track(values: Any) -> Optional[_Track]:
    for v in values:
        if isinstance(v, _Track):
            return v
        if isinstance(v, (tuple, list)):
            found = _first_track(v)
            if found is not None:
                return found
    return None


_POINTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
                      nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Softsign,
                      nn.LogSigmoid, nn.Tanhshrink, nn.Threshold, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                      nn.Dropout3d, nn.AlphaDropout, nn.modules.batchnorm._BatchNorm, nn.LocalResponseNorm,
                      nn.ChannelShuffle, nn.Softmax2d)


def _is_pointwise_module(module: nn.Module) -> bool:
    return isinstance(module, _POINTWISE_MODULES)


def _reshape_groups(a: Sequence[int], b: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Split two shapes of equal product into consecutive groups of dims with equal products (1s on their own)."""
    groups: list[tuple[list[int], list[int]]] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if i < len(a) and a[i] == 1 and not (j < len(b) and b[j] == 1):
            groups.append(([i], []))
            i += 1
            continue
        if j < len(b) and b[j] == 1 and not (i < len(a) and a[i] == 1):
            groups.append(([], [j]))
            j += 1
            continue
        ins, outs = [i], [j]
        pa, pb = a[i], b[j]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                pa *= a[i]
                ins.append(i)
                i += 1
            else:
                pb *= b[j]
                outs.append(j)
                j += 1
        groups.append((ins, outs))
    return groups


class _NodeError(Exception):
    """A node of the traced graph failed while shapes were propagated: ``node`` and the ``error`` it raised."""

    def __init__(self, node: torch.fx.Node, error: Exception) -> None:
        super().__init__(f"{node.format_node()}: {error}")
        self.node, self.error = node, error


class _Shapes(torch.fx.Interpreter):
    """Runs the graph, recording each node's output(s) as empty meta tensors in ``node.meta['tensor_meta']``
    (shape and dtype: all the walk reads). Unlike torch's ShapeProp it prints nothing and names the failing node
    (``_NodeError``): the meta attempt failing is expected for ops without a meta kernel."""

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except Exception as error:  # re-raised with the node: the caller decides
            raise _NodeError(n, error) from error
        found: list[bool] = []

        def shape_only(value: Any) -> Any:
            if not isinstance(value, torch.Tensor):
                return value
            found.append(True)
            return torch.empty(value.shape, dtype=value.dtype, device="meta")

        meta = torch.fx.node.map_aggregate(result, shape_only)
        if found:
            n.meta["tensor_meta"] = meta
        return result


def _input_error(gm: torch.fx.GraphModule, in_shape: tuple[int, ...], failed: _NodeError) -> ValueError:
    """The error for an input shape that a layer of the model refuses (or that fails in it), naming the layer."""
    node, error = failed.node, failed.error
    if node.op == "call_module":
        where = layer_where(str(node.target), gm.get_submodule(str(node.target)))
    else:
        where = f"op '{node.name}' ({_name(node.target)})"
    return refusal(in_shape, where, error)  # type: ignore[return-value]


def _shape_propagate(gm: torch.fx.GraphModule, in_shape: tuple[int, ...]) -> None:
    """Every node's output shape, computed on the meta device (no memory, no arithmetic); falls back to a real
    forward on zeros for ops without a meta kernel (on a copy when lazy parameters would be materialised: the
    caller's model is left as it was). A layer that refuses the shape is one ValueError naming it."""
    from ..arithmetic.cost import _to_meta

    try:
        meta = _to_meta(gm, torch.float32).eval()
        for module in meta.modules():  # plain tensor attributes (fx constants) too
            for key, value in list(vars(module).items()):
                if isinstance(value, torch.Tensor) and not value.is_meta:
                    setattr(module, key, value.to("meta"))
        with torch.no_grad():
            _Shapes(meta).run(torch.empty(in_shape, device="meta"))
        for ours, theirs in zip(gm.graph.nodes, meta.graph.nodes):
            if "tensor_meta" in theirs.meta:
                ours.meta["tensor_meta"] = theirs.meta["tensor_meta"]
        return
    except _NodeError as failed:
        # A layer's own shape check (ValueError) runs on meta tensors as on real ones: the shape is wrong, not the
        # device (a model with meta parameters could not run for real to say so).
        if isinstance(failed.error, ValueError):
            raise _input_error(gm, in_shape, failed) from failed.error
    except Exception:  # noqa: BLE001 - the copy to meta failed: run it for real below
        pass
    device = next((p.device for p in gm.parameters() if p.device.type != "meta"), torch.device("cpu"))
    lazy = any(isinstance(t, nn.parameter.UninitializedTensorMixin) for t in [*gm.parameters(), *gm.buffers()])
    runner = copy.deepcopy(gm) if lazy else gm
    training = runner.training
    try:
        with torch.no_grad():
            _Shapes(runner.eval()).run(torch.zeros(in_shape, device=device))
    except _NodeError as failed:
        raise _input_error(gm, in_shape, failed) from failed.error
    finally:
        runner.train(training)
    if runner is not gm:
        for ours, theirs in zip(gm.graph.nodes, runner.graph.nodes):
            if "tensor_meta" in theirs.meta:
                ours.meta["tensor_meta"] = theirs.meta["tensor_meta"]


def receptive_field(model: nn.Module, input_shape: Sequence[int]) -> ReceptiveField:
    """Receptive field of every layer of ``model`` for an input of shape (N, C, *spatial) (Araujo et al. 2019).

    Per layer and dim: r = r_in + (k_eff − 1)·j_in, j = j_in·s, c = c_in + ((k_eff − 1)/2 − p_before)·j_in with
    k_eff = d·(k−1)+1; ``start`` is c, the CENTRE of the field of the feature map's first position, in input
    pixel coordinates (its left edge is c − (r−1)/2). The graph is traced with torch.fx in eval mode (convzoo
    layers and torch.nn leaves kept whole) and shapes are propagated on the meta device.

    Spatial path and global path: each row gives the local window; ``global_path`` says the output also depends
    on the whole input (global pooling, an input broadcast over the positions — an SE gate x·σ(W·mean(x)) —,
    a product of two activations — attention —, group/instance-norm statistics, dynamic conv's attention). At an
    elementwise merge the window is the largest over the branches that keep positions; merges whose branches
    differ in jump or centre are listed in ``misaligned``. An op that reads every position (global pooling,
    attention, flatten into channels) gives the union r + (n − 1)·j of the map's fields, shared by every
    position: the stride becomes 0.

    Followed exactly: torch and convzoo convs, pools, pads (they shift the centre), upsampling by any factor and
    transposed convs (below), adaptive pooling n → o when o divides n (a window n/o at stride
    n/o; o = 1 is the whole map), the functional forms (F.conv*, F.*pool*, F.pad, F.interpolate, F.adaptive_*),
    tuple-returning ops (chunk, split, unbind) and indexing, slicing of positions (x[..., ::2, 1::2]), permutes
    and reshapes of channels-last and token layouts (positions flattened to one axis and back), reductions and
    softmax along given dims. A bound, with the op named in the row's ``note`` (``ReceptiveField.notes`` lists
    them): adaptive pooling whose size does not divide the map (largest window, mean stride), cyclic shifts
    (roll), and any op the analysis does not know, which is assumed to read the whole input.

    Layers: geometry is read from kernel_size / stride / dilation / padding; a convzoo layer (or any module with
    ``receptive_field_step``) maps the field itself (the layer contract). Deformable convs report the nominal
    grid: learned offsets can move every tap anywhere.

    Channels: the field is of the map as a whole, every channel alike — the union over channels. A layer that
    sends some channels through a window and others through none (Ghost's cheap ops, PartialConv's untouched
    channels, a channel split) gives every channel the largest window, so after a stack of such layers the size is
    an upper bound for some channels (Ghost1d then PartialConv1d(n_div=2) reports 23 where each output reads at
    most 19 inputs); it never misses a pixel an output reads.

    Upsampling (F.interpolate's modes as torch computes them, align_corners too; pixel shuffle as nearest) and
    transposed convs (output o = i·s − p + t·d reads the inputs of the taps that land on one: the inserted zeros
    read nothing): the jump divides by the factor, and what a position reads depends on its phase — nearest ×2
    gives outputs 2m and 2m + 1 the one field of input m. Each phase's interval is kept (``FieldRow.phases``;
    ``FieldRow.window(position)`` gives a position's own, exact), size and start are their union (every position's
    window holds every pixel it reads; the row's note says so), and later layers map each phase, so a stride that
    brings the phases together (a stride-2 conv after ×2) makes the field exact again. Ops that do not follow
    phases (merges of differently alternating branches, adaptive pooling that is not exact) take the union.
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
    gm = _trace(model)
    _shape_propagate(gm, shape)
    _, out_row = _Walker(gm, dim, rows, misaligned).run(start, shape)
    return ReceptiveField(rows, out_row, misaligned)
