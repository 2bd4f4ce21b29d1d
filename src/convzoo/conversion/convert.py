"""Swap the convolutions of any model for a convzoo family, starting from the best approximation of the
trained weights (the compression route of Jaderberg et al. 2014 / Denton et al. 2014).

``convert(model, to=...)`` replaces every ``torch.nn.Conv2d`` — and convzoo's plain ``Conv2d`` — (or those
``where`` selects: a callable ``where(name, module) -> bool``, or an fnmatch pattern of module names) by
``convzoo.build(to, ...)`` with the same channels, kernel, stride, padding, dilation and bias, loads it with
``approximate_`` (exact or optimal low rank, see ``convzoo.approximate``) and reports, per layer, params and
MACs before and after and the relative error of the kernel the new layer computes. A layer is left as it was,
and its row says why, when the family cannot take it (e.g. HetConv with p not dividing its channels); and, unless
``force=True``, when
- the family factorises the k×k window and the kernel is 1×1 (there is no window to factorise);
- the family is a compression family and would not reduce both the layer's params and its MACs here (a stem with 3
  input channels, a 1×1 conv), unless the swap is exact at equal cost (a depthwise conv to ``'depthwise'``: the
  same function in the family's layer, which is taken);
- the family mixes no channels where the conv does: its best fit of the all-ones kernel of the conv's shape
  (every channel and tap alike; rank 1, so every factorisation, Ghost and dynamic layer holds it exactly) is no
  better than keeping one input channel per output, error √(1 − g/C_in). ``'depthwise'`` on a dense conv (an RGB
  stem, a 1×1 expansion, a squeeze-excite conv) would drop the trained channel mixing and the network with it;
  ``'grouped'`` and HetConv still mix channels (in groups, in the 1×1 part) and convert.
The rules read the layer's shape, never its weights: a model converts to the same structure whatever its weights
(``models.load_converted`` rebuilds from an untrained source), and a model built on the meta device converts
(its rows' ``rel_error`` is None: not measured). The report's totals give the model's params and MACs before
and after. An option that the family's constructor refuses on every layer it is built for (``num_kernels=0``) is
one ValueError, not a model with nothing converted.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import numbers
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .approximate import approximate_
from ..dense_kernels import dense_kernel
from ..geometry import padding_pairs
from ..registry import family as lookup_family

Selector = Callable[[str, nn.Module], bool]
_WHERE_RULE = ("must be a callable (name, module) -> bool or a str (an fnmatch pattern of module names, such as "
               "'layer1' or 'layer*.0.conv1')")


def _selector(where: Selector | str | None) -> Selector | None:
    """``where`` as a callable. A str is an fnmatch pattern (case-sensitive; ``*`` also crosses dots) that selects a
    conv when its dotted name, or the name of a module holding it, matches: ``'layer1'`` selects ``layer1.0.conv1``
    (not ``layer10.0.conv1``), ``'*.conv1'`` every ``conv1``. TypeError naming ``where`` for anything else."""
    if where is None:
        return None
    if isinstance(where, str):
        def matches(name: str, module: nn.Module) -> bool:
            parts = name.split(".")
            return any(fnmatch.fnmatchcase(".".join(parts[:i]), where) for i in range(1, len(parts) + 1))

        return matches
    if not callable(where):
        raise TypeError(f"where={where!r} {_WHERE_RULE}")
    try:  # a selector of the wrong arity would fail inside the loop as "takes 1 positional argument"
        inspect.signature(where).bind("", nn.Identity())
    except TypeError:
        raise TypeError(f"where={where!r} {_WHERE_RULE}; it does not take (name, module)") from None
    except ValueError:  # no signature to read (some builtins): the call decides
        pass
    return where


class InputShapeError(ValueError):
    """``convert``'s ``input_shape`` is one the model fails on; ``__cause__`` is the model's own error (the CLI
    words it as its other commands do: the target and ``--input``)."""


def _checked_input_shape(input_shape: Any) -> tuple[int, ...]:
    """The user's ``input_shape`` as a tuple of ints ≥ 0; TypeError / ValueError naming it and the rule."""
    if (isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence)
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in input_shape)):
        raise TypeError(f"input_shape={input_shape!r} must be a tuple of ints: the shape of one input the model "
                        "takes, (N, C, H, W) for a model of 2-D convs")
    shape = tuple(int(s) for s in input_shape)
    for size in shape:
        if size < 0:
            raise ValueError(f"input_shape={shape}: size {size} is negative; every size must be 0 or more")
    return shape


def _names_an_option(error: Exception, family_kwargs: dict[str, Any]) -> bool:
    """The error's message names one of the user's options as ``name=`` (the constructors' convention,
    "num_kernels=0 must be positive"), so the option, not only the conv's geometry, is what it refuses."""
    return any(re.search(rf"(?<![\w.]){re.escape(name)}=", str(error)) for name in family_kwargs)


@dataclass
class ConvertedLayer:
    """One row of the report. ``rel_error`` = ‖W_new − W‖_F / ‖W‖_F of the equivalent dense kernel (None for a
    kept layer, and for a replaced one on the meta device: not measured); ``converted``: the layer was replaced."""

    name: str
    before: str
    after: str
    params_before: int
    params_after: int
    macs_before: int | None = None
    macs_after: int | None = None
    rel_error: float | None = None
    note: str = ""
    replaced: bool = False  # rel_error is None for a replaced layer on the meta device (no values to compare)

    @property
    def converted(self) -> bool:
        return self.replaced


@dataclass
class ConversionReport:
    """What ``convert`` did: the target ``family``, one row per considered layer (before/after module, params and MACs
    before → after, ``rel_error`` = ‖W_new − W‖_F / ‖W‖_F, a ``note`` for kept layers), and the model's totals
    ``params_before/after`` (all parameters) and, with an input shape, ``macs_before/after`` (weight MACs of the
    whole model); ``converted`` / ``skipped`` filter the rows, ``table()`` is a rich table, ``to_dict()`` plain data."""

    family: str
    layers: list[ConvertedLayer] = field(default_factory=list)
    input_shape: tuple[int, ...] | None = None
    params_before: int = 0
    params_after: int = 0
    macs_before: int | None = None
    macs_after: int | None = None

    @property
    def converted(self) -> list[ConvertedLayer]:
        return [row for row in self.layers if row.converted]

    @property
    def skipped(self) -> list[ConvertedLayer]:
        return [row for row in self.layers if not row.converted]

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "input_shape": self.input_shape, "params_before": self.params_before,
                "params_after": self.params_after, "macs_before": self.macs_before, "macs_after": self.macs_after,
                "layers": [asdict(r) for r in self.layers]}

    def totals(self) -> str:
        """One line: the model's params and MACs before → after."""
        line = f"model params {self.params_before:,} → {self.params_after:,}"
        if self.macs_before is not None:
            line += f", MACs {self.macs_before:,} → {self.macs_after:,} (input {self.input_shape})"
        return line

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"convert to {self.family!r} — MACs = conv/linear multiply-accumulates; "
                            f"error = ‖W_new − W‖_F / ‖W‖_F")
        for column in ("layer", "before", "after", "params", "MACs", "rel. error", "note"):
            table.add_column(column, no_wrap=column == "layer")
        for r in self.layers:
            macs = "" if r.macs_before is None else f"{r.macs_before:,} → {r.macs_after:,}"
            error = f"{r.rel_error:.2e}" if r.rel_error is not None else "not measured" if r.converted else ""
            table.add_row(r.name, r.before, r.after, f"{r.params_before:,} → {r.params_after:,}", macs, error, r.note)
        table.caption = self.totals()
        return table


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def is_dense_conv2d(module: nn.Module) -> bool:
    """A 2-D convolution: torch's ``nn.Conv2d`` or a subclass (convzoo's ``Conv2d``, ``DepthwiseConv2d``,
    ``PointwiseConv2d``, a user's own)."""
    return isinstance(module, nn.Conv2d)


def dense_weight(conv: nn.Module) -> torch.Tensor:
    """The conv's kernel as a dense cross-correlation kernel (C_out, C_in, kh, kw)."""
    weight = conv.weight.detach()
    if getattr(conv, "mode", "correlation") == "convolution":
        weight = weight.flip((-2, -1))
    return dense_kernel(weight, conv.groups)


def _build_replacement(to: str, conv: nn.Module, family_kwargs: dict[str, Any],
                       device: torch.device | None = None, dtype: torch.dtype | None = None) -> nn.Module:
    """``build(to, ...)`` with the conv's geometry, on ``device`` / ``dtype`` (default: the conv's)."""
    kernel = conv.kernel_size[0] if conv.kernel_size[0] == conv.kernel_size[1] else conv.kernel_size
    padding = conv.padding
    if isinstance(padding, str):
        # the conv's own (before, after) pairs where they are uneven: 'same' of an even span puts its odd element
        # after for torch's convs, before for the true convolution (scipy's rule), so the name alone would shift
        pairs = getattr(conv, "padding_pairs", None) or padding_pairs(padding, conv.kernel_size, conv.stride,
                                                                      conv.dilation)
        padding = pairs if any(lo != hi for lo, hi in pairs) else padding
    kwargs: dict[str, Any] = dict(stride=conv.stride, padding=padding, dilation=conv.dilation,
                                  bias=conv.bias is not None, device=device or conv.weight.device,
                                  dtype=dtype or conv.weight.dtype)
    if conv.padding_mode != "zeros":
        kwargs["padding_mode"] = conv.padding_mode
    kwargs.update(family_kwargs)
    kernel = kwargs.pop("kernel_size", kernel)  # e.g. MixConv's groups, given by the caller
    build = lookup_family(to).build
    attempts = [{"groups": conv.groups}] if conv.groups > 1 and "groups" not in family_kwargs else []
    attempts.append({})
    error: Exception | None = None
    for extra in attempts:
        for drop_padding in (False, True):  # a family with fixed 'same' padding (MixConv) takes no padding
            args = {k: v for k, v in {**kwargs, **extra}.items() if not (drop_padding and k == "padding")}
            try:
                return build(conv.in_channels, conv.out_channels, kernel, 2, **args)
            except (TypeError, ValueError) as e:
                error = e
    raise error  # type: ignore[misc]


def _check_same_geometry(conv: nn.Module, layer: nn.Module) -> None:
    """The replacement must map a probe input to the same output shape as the conv it replaces."""
    extent = max(d * (k - 1) + 1 for d, k in zip(conv.dilation, conv.kernel_size))
    probe = conv.weight.new_zeros(1, conv.in_channels, extent + 7, extent + 6)
    with torch.no_grad():
        before, after = tuple(conv(probe).shape), tuple(layer(probe).shape)
    if before != after:  # the layer's own geometry, when it has one: it says which argument differs
        found = ", ".join(f"{name}={getattr(layer, name)}" for name in ("stride", "padding", "dilation")
                          if hasattr(layer, name) and getattr(layer, name) != getattr(conv, name))
        raise ValueError(f"{type(layer).__name__} gives output {after} where the conv gives {before} on a "
                         f"{tuple(probe.shape)} probe input (convert's own test size, not the model's input): a "
                         f"replacement must keep the conv's output shape for every input, which needs the conv's "
                         f"stride={conv.stride}, padding={conv.padding}, dilation={conv.dilation}"
                         + (f"; the {type(layer).__name__} was built with {found} (it refused or fixes the conv's)"
                            if found else ""))


def _macs_by_layer(model: nn.Module, input_shape: Sequence[int]) -> tuple[dict[str, int], int]:
    from ..arithmetic.cost import cost

    report = cost(model, tuple(input_shape))
    return {row.name: row.macs for row in report.layers}, report.macs


def _layer_macs(layer: nn.Module, probe: tuple[int, ...]) -> int | None:
    """Weight MACs of one layer on the probe input (None when the layer declares no cost)."""
    from ..arithmetic.cost import cost

    try:
        return cost(layer, probe).macs
    except (TypeError, ValueError, RuntimeError):
        return None


def _conv_inputs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The input shape each dense conv of ``model`` (by name) sees on one ``input_shape`` input, from a forward of
    a meta copy (no memory, no compute); {} when the model does not run on meta (the notes then give the probe's
    MACs). The cost report cannot say it: a convzoo layer is one row, its inner convs have none."""
    from ..arithmetic.cost import _to_meta  # cost's weightless deep copy (no parameter data copied)

    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if args and isinstance(args[0], torch.Tensor):
                shapes.setdefault(name, tuple(args[0].shape))
        return hook

    try:
        meta = _to_meta(model, torch.float32).eval()
        for name, module in meta.named_modules(remove_duplicate=False):
            if is_dense_conv2d(module):
                module.register_forward_pre_hook(record(name))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta(torch.empty(tuple(input_shape), device="meta"))
    except Exception:  # noqa: BLE001 - a model that cannot run on meta: the probe's numbers, said as such
        return {}
    return shapes


def _probe_shape(conv: nn.Module) -> tuple[int, ...]:
    extent = max(d * (k - 1) + 1 for d, k in zip(conv.dilation, conv.kernel_size))
    return (1, conv.in_channels, extent + 7, extent + 6)


_REFERENCE: dict[str, tuple[bool, bool]] = {}
_PROBES: dict[tuple[Any, ...], float] = {}
EXACT = 1e-5  # a swap is exact when the family holds a random kernel of the conv's shape to this relative error


def _probe_error(to: str, conv: nn.Module, family_kwargs: dict[str, Any], kernel: str) -> float:
    """Relative error of family ``to``'s approximation of a probe kernel with ``conv``'s shape and groups, fitted
    in a float32 twin on the CPU (the conv may be on the meta device): ``kernel='ones'`` the all-ones kernel,
    ``'random'`` a fixed Gaussian one (error ~0: the family holds every kernel of this shape). Depends on the shape
    only, so it is computed once per (family, options, geometry). Raises what the family raises for this conv."""
    key = (to, repr(sorted(family_kwargs.items())), kernel, type(conv), conv.in_channels, conv.out_channels,
           conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups, conv.bias is not None,
           conv.padding_mode)
    if key not in _PROBES:
        with warnings.catch_warnings():  # what building warns, building the layer itself has warned already
            warnings.simplefilter("ignore")
            twin = _build_replacement(to, conv, family_kwargs, torch.device("cpu"), torch.float32)
        shape = (conv.out_channels, conv.in_channels // conv.groups, *conv.kernel_size)
        if kernel == "ones":
            weight = torch.ones(shape)
        else:
            weight = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        _PROBES[key] = approximate_(twin, dense_kernel(weight, conv.groups), None)
    return _PROBES[key]


def _family_kind(to: str, family_kwargs: dict[str, Any]) -> tuple[bool, bool]:
    """(compresses, factorises the window) for family ``to``, measured on reference 16 → 16 convs, never looked
    up by name: it compresses when its 3×3 layer has fewer parameters than the dense 3×3; it factorises the window
    when its parameters grow clearly slower than k² from k = 3 to k = 5 (ratio < 2 against the dense 25/9):
    separable, flattened and mixed-kernel layers do, dense, grouped and dynamic ones do not."""
    key = to + repr(sorted(family_kwargs.items()))
    if key not in _REFERENCE:
        build = lookup_family(to).build
        extra = {k: v for k, v in family_kwargs.items() if k != "kernel_size"}
        try:
            with torch.device("meta"):
                p3, p5 = (_params(build(16, 16, k, 2, bias=False, **extra)) for k in (3, 5))
            _REFERENCE[key] = (p3 < 16 * 16 * 9, p5 < 2 * p3)
        except TypeError as error:
            if "unexpected keyword argument" in str(error):  # a misspelt option would keep every layer, silently
                raise TypeError(f"convert(to={to!r}, ...): {error} — the options go to the {to!r} layer's "
                                "constructor") from None
            _REFERENCE[key] = (False, False)
        except (ValueError, RuntimeError):
            _REFERENCE[key] = (False, False)
    return _REFERENCE[key]


FORCE = "force=True (CLI: --force)"  # the rules' notes name the option in both of its spellings


def _macs_note(conv: nn.Module, layer: nn.Module, probe: tuple[int, ...], at: Callable[[], tuple[int, ...] | None],
               probe_macs: tuple[int | None, int | None]) -> str:
    """', MACs before → after' for a rule's note: at the conv's input in the model (``at()``: its shape on the
    model's input, None when unknown), else on convert's probe input, said as such; '' when a layer declares no
    cost."""
    shape = at()
    if shape is not None:
        before, after = _layer_macs(conv, shape), _layer_macs(layer, shape)
        if before is not None and after is not None:
            return f", MACs {before:,} → {after:,} at this layer's input {tuple(shape)} in the model"
    if None in probe_macs:
        return ""
    return (f", MACs {probe_macs[0]:,} → {probe_macs[1]:,} on convert's {probe[2]}×{probe[3]} probe input (the "
            "conv's input in the model is not known)")


def _keep_or_take(to: str, conv: nn.Module, layer: nn.Module, params_before: int, compresses: bool,
                  family_kwargs: dict[str, Any],
                  at: Callable[[], tuple[int, ...] | None] = lambda: None) -> str:
    """The rules ``force`` skips: raise ValueError (the row's reason) to keep ``conv``; else return the row's
    note ('' or why an equal-cost swap is taken). The rules read the probe input's MACs (shape only, so a model
    converts alike at every input size); the notes quote them at the conv's input in the model where ``at()``
    gives it."""
    note = ""
    if compresses:
        probe = _probe_shape(conv)
        before_macs, after_macs = _layer_macs(conv, probe), _layer_macs(layer, probe)
        after_params = _params(layer)
        known = before_macs is not None and after_macs is not None
        reduces = after_params < params_before and (not known or after_macs < before_macs)
        grows = after_params > params_before or (known and after_macs > before_macs)
        if not reduces:
            macs = _macs_note(conv, layer, probe, at, (before_macs, after_macs))
            if grows or _probe_error(to, conv, family_kwargs, "random") > EXACT:
                raise ValueError(f"{to!r} would not reduce params and MACs here (params {params_before:,} → "
                                 f"{after_params:,}{macs}); {FORCE} converts it anyway")
            note = f"exact swap at equal cost (params {params_before:,} → {after_params:,}{macs})"
    per_output = conv.in_channels // conv.groups  # input channels each output mixes
    if per_output > 1:
        error, diagonal = _probe_error(to, conv, family_kwargs, "ones"), (1 - 1 / per_output) ** 0.5
        if error >= diagonal - 1e-4:  # no better than one input channel per output: no channel mixing
            raise ValueError(f"{to!r} mixes no channels, where this conv mixes {per_output} input channels into each "
                             f"output (its best fit of even the all-ones kernel keeps one channel in {per_output}: "
                             f"relative error {error:.3f}), so the trained channel mixing would be lost; {FORCE} "
                             "converts it anyway")
    return note


def convert(
    model: nn.Module,
    to: str = "depthwise_separable",
    where: Selector | str | None = None,
    input_shape: Sequence[int] | None = None,
    force: bool = False,
    **family_kwargs: Any,
) -> tuple[nn.Module, ConversionReport]:
    """Return a copy of ``model`` with its 2-D convs (see ``is_dense_conv2d``) replaced by family ``to``, and the
    report.

    A conv is kept, with the reason in its row, when the family cannot take it; unless ``force``, also when the
    family factorises the window and the kernel is 1×1; when a compression family would not reduce both the
    layer's params and its MACs (on a probe input), unless the swap is exact at equal params and MACs (the family
    holds a random kernel of the conv's shape to ``EXACT``); or when the family mixes no channels where the conv
    does (its fit of the all-ones kernel of the conv's shape is no better than one input channel per output:
    ``'depthwise'`` for a dense conv). These rules read shapes, never weights: a model on the meta device converts
    to the same structure, with ``rel_error`` None (not measured).
    ``where``: a callable ``(name, module) -> bool``, or a str: an fnmatch pattern selecting the convs whose name,
    or a containing module's name, matches (``'layer4'``, ``'layer*.0.conv1'``).
    ``input_shape`` (default: ``model.default_input_shape`` if the model has one) adds per-layer and total MACs.
    Raises ValueError for an unknown family, a model with no ``nn.Conv2d`` to convert (or none ``where``
    selects), an ``input_shape`` the model fails on, and options the family's constructor refuses on every layer
    it is built for when no layer converts (an option refused by some layers only keeps those, with the reason).
    """
    if not lookup_family(to).replaces_kxk:  # an unknown family raises a ValueError listing the known ones
        raise ValueError(f"family {to!r} cannot replace a k×k convolution (it changes the layer's shape or "
                         f"ignores its kernel)")
    select = _selector(where)
    shape_given = input_shape is not None
    input_shape = _checked_input_shape(input_shape) if shape_given else getattr(model, "default_input_shape", None)
    macs_before: tuple[dict[str, int], int] | None = None
    if input_shape is not None:  # first: a shape the model refuses fails before the fits, in words
        try:
            macs_before = _macs_by_layer(model, input_shape)
        except (RuntimeError, AssertionError, ValueError, IndexError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise InputShapeError(f"input_shape={tuple(input_shape)}{'' if shape_given else ' (its default_input_shape)'}"
                             f": {type(model).__name__} fails on an input of this shape ({reason}); input_shape "
                             "must be the shape of one input the model takes, of the model's input rank — "
                             "(N, C, H, W) for a model of 2-D convs") from error
    new_model = copy.deepcopy(model)
    convs = [(name, m) for name, m in new_model.named_modules(remove_duplicate=False)  # a shared conv: each use
             if is_dense_conv2d(m)]
    targets = [(name, m) for name, m in convs if select is None or select(name, m)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no torch.nn.Conv2d (or convzoo Conv2d) to convert")
    if not targets:
        names = ", ".join(name or "(the model)" for name, _ in convs[:6]) + (", …" if len(convs) > 6 else "")
        raise ValueError(f"where={where!r} selects none of the {len(convs)} convs of {type(model).__name__} "
                         f"({names}); " + ("a pattern selects a conv whose dotted name, or a containing module's "
                                           "name, matches it (fnmatch: *, ?, [...])" if isinstance(where, str)
                                           else "where(name, module) returned false for each"))
    report = ConversionReport(to)
    _family_kind(to, family_kwargs)  # a misspelt option raises here
    compresses, factorises = _family_kind(to, {})  # what the family is, not what these options make of a probe
    inputs: list[dict[str, tuple[int, ...]]] = []  # the convs' input shapes, found once, when a note needs them

    def conv_input(name: str) -> tuple[int, ...] | None:
        if input_shape is None:
            return None
        if not inputs:
            inputs.append(_conv_inputs(model, input_shape))
        return inputs[0].get(name)

    shared: dict[int, tuple[str, nn.Module | None]] = {}  # id(conv) → (its first name, its replacement or None)
    built: list[str] = []  # the layers the family's constructor was given
    refused: list[tuple[str, Exception]] = []  # ... and those it refused naming one of the options
    for name, conv in targets:
        groups = f", groups={conv.groups}" if conv.groups > 1 else ""  # a DepthwiseConv2d is a Conv2d too
        row = ConvertedLayer(name, f"{type(conv).__name__}({conv.in_channels}, {conv.out_channels}, "
                                   f"{conv.kernel_size}{groups})", "", _params(conv), _params(conv))
        parent_name, _, attribute = name.rpartition(".")
        if id(conv) in shared:  # the same module again (weight tying): the same replacement, so the tie holds
            first, layer = shared[id(conv)]
            row.note = f"the module of {first}, used again"
            if layer is not None:
                setattr(new_model.get_submodule(parent_name) if parent_name else new_model, attribute, layer)
                row.after, row.params_after = type(layer).__name__, _params(layer)
            else:
                row.after = row.before
            report.layers.append(row)
            continue
        shared[id(conv)] = (name, None)
        try:
            if not force and factorises and all(k == 1 for k in conv.kernel_size):
                raise ValueError(f"a 1×1 conv has no window for {to!r} to factorise (it would only re-factor the "
                                 f"channel mixing); {FORCE} converts it anyway")
            built.append(name)
            try:
                layer = _build_replacement(to, conv, family_kwargs)
            except (TypeError, ValueError) as error:
                if _names_an_option(error, family_kwargs):
                    refused.append((name, error))
                raise
            _check_same_geometry(conv, layer)
            if not force:
                row.note = _keep_or_take(to, conv, layer, row.params_before, compresses, family_kwargs,
                                         lambda name=name: conv_input(name))
            bias = None if conv.bias is None else conv.bias.detach()
            error = approximate_(layer, dense_weight(conv), bias)
        except (TypeError, ValueError) as error:
            row.after, row.note = row.before, f"kept: {error}"
            report.layers.append(row)
            continue
        if conv.weight.is_meta:  # shapes only: the structure is converted, the weights come with load_state_dict
            row.note = "; ".join(filter(None, [row.note, "on the meta device: error not measured"]))
        else:
            row.rel_error = error
        row.replaced = True
        layer.train(conv.training)
        shared[id(conv)] = (name, layer)
        setattr(new_model.get_submodule(parent_name) if parent_name else new_model, attribute, layer)
        row.after, row.params_after = type(layer).__name__, _params(layer)
        report.layers.append(row)
    if built and len(refused) == len(built) and not report.converted:
        # the options, not the model, are what nothing converts for: the model back unchanged would hide it
        raise _options_refused(to, family_kwargs, refused)
    report.params_before, report.params_after = _params(model), _params(new_model)
    if input_shape is not None and macs_before is not None:
        report.input_shape = tuple(input_shape)
        (before, report.macs_before), (after, report.macs_after) = macs_before, _macs_by_layer(new_model, input_shape)
        for row in report.layers:
            row.macs_before, row.macs_after = before.get(row.name), after.get(row.name)
    return new_model, report


def _options_refused(to: str, family_kwargs: dict[str, Any], refused: list[tuple[str, Exception]]) -> ValueError:
    """One error for options the family's constructor refused on every layer it was built for: its own words
    (the option, the value, the rule) first, then the layers."""
    options = ", ".join(f"{name}={value!r}" for name, value in family_kwargs.items())
    reasons = list(dict.fromkeys(str(error) for _, error in refused))  # distinct, in layer order
    names = ", ".join(name for name, _ in refused[:4]) + (", …" if len(refused) > 4 else "")
    others = f"; other layers: {'; '.join(reasons[1:3])}" if len(reasons) > 1 else ""
    return ValueError(f"convert(to={to!r}, {options}): {reasons[0]} — the {to!r} layer refused the options on each "
                      f"of the {len(refused)} layer(s) it was built for ({names}){others}, so none would convert")
