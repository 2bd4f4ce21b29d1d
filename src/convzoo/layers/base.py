"""The layer contract, and the input step and per-input plans every family's forward goes through.

The geometry (``resolve_geometry``, ``padding_pairs``, ``check_window_fits``) and the argument checks are in
``convzoo/geometry.py``, below the layers; ``check_input`` here gives the one message each family uses for an input
of the wrong rank or channel count.

The contract: every family's layer subclasses ``ConvzooLayer`` and provides, in its own file, everything a tool
needs (tools call these methods and never look a family up by name or module path):

* ``cost(input_shape) -> LayerCost``: analytic params / MACs / other ops / elements moved;
* ``reference_output(x) -> ndarray``: the output recomputed by ``oracle/reference.py`` (NumPy, torch-free) from
  the layer's parameters and its constructor arguments (padding resolved by the oracle, not taken from here);
* ``native_alternatives() -> list[Alternative]``: the same function from native torch ops, peers and naive forms
  (what ``bench`` times it against);
* ``approximate_dense_(weight, bias) -> float``: load the best approximation of a dense conv kernel, return the
  relative error (what ``convert`` uses); raise ``TypeError`` with the reason when the family cannot stand in;
* ``receptive_field_step(field, in_shape, step) -> field``: how the layer maps a receptive field;
* ``stages() -> list[Stage]``: its sub-steps in order, for stage-by-stage pictures;
* optional, for pictures: ``kernel_bank()`` (the K kernels a dynamic layer mixes), ``attentions(values)`` (the
  attentions a side stage's output holds, named) and ``illustrate_()`` (put a copy in the state in which its
  mechanism shows, and say what changed).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from .formats import channels_last_format

if TYPE_CHECKING:
    import numpy as np

    from ..arithmetic.cost import LayerCost


CONTRACT = ("cost", "reference_output", "native_alternatives", "approximate_dense_", "receptive_field_step", "stages")


def _check_tensor(x: Any, layer: str) -> None:
    if not isinstance(x, torch.Tensor):
        hint = "; convert it with torch.from_numpy(x)" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{layer} expects a torch.Tensor input, got {type(x).__name__}{hint}")


def _fx_leaf(module: nn.Module, x: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Under torch.fx symbolic tracing (``x`` a ``Proxy``): the call of ``module`` itself as one graph node, else
    None. A layer picks its form from the input's shape, which a Proxy does not have, so every convzoo layer is a
    leaf under any tracer (symbolic_trace, torchvision's create_feature_extractor, torch.ao's prepare_fx)."""
    if not isinstance(x, torch.fx.Proxy):
        return None
    path = x.tracer.path_of_module(module)
    if not path:  # the traced root itself: a node calling it would call the GraphModule that replaces it
        raise TypeError(f"torch.fx cannot trace {type(module).__name__} itself: it chooses its form from the input's "
                        "shape, which a Proxy does not have; trace a model holding it (the layer becomes one "
                        "call_module node), e.g. torch.nn.Sequential(layer), or use torch.export.export")
    return x.tracer.create_proxy("call_module", path, (x, *args), kwargs)


def check_input(x: Any, dim: int, channels: int, layer: str) -> None:
    """Input must be a tensor (N, C, *spatial) with ``dim`` spatial dims and ``channels`` channels, or the unbatched
    (C, *spatial) that the input step gives a batch of one. The messages quote the shape as ``x`` has it.
    A torch.fx ``Proxy`` passes: it has no shape to check, and the wrapped forward it goes on to makes the layer's
    call one graph node (``_fx_leaf``; HetConv's own forward checks first, then reaches its wrapped one)."""
    if isinstance(x, torch.fx.Proxy):
        return
    _check_tensor(x, layer)
    rank = x.dim()
    if rank != dim + 2 and rank != dim + 1:
        names = ("N", "C", "L") if dim == 1 else ("N", "C", "H", "W") if dim == 2 else ("N", "C", "D", "H", "W")
        raise ValueError(
            f"{layer} expects a {dim + 2}-D input ({', '.join(names)}) or an unbatched {dim + 1}-D one "
            f"({', '.join(names[1:])}), got shape {tuple(x.shape)}"
        )
    if x.shape[rank - dim - 1] != channels:
        raise ValueError(f"{layer} expects {channels} input channels, got {x.shape[rank - dim - 1]} (input shape "
                         f"{tuple(x.shape)})")


def input_checked(forward: Callable[..., Any]) -> Callable[..., Any]:
    """A composite layer's ``forward``: ``check_input`` on the input as the caller passed it, then ``forward`` behind
    the input step and the per-input plans (as every family's). Without it a wrong input reaches a sub-layer first,
    whose message names the sub-layer and quotes the batch of one that the input step made of an unbatched input.
    The check runs where no plan is kept for the input's key (which holds its shape as given): no cost to a
    planned call."""
    return _batch_friendly(forward, check_as_given=True)


def refuse_arguments(layer: str, given: dict[str, Any], reasons: dict[str, str]) -> None:
    """Refuse the keyword arguments in ``given`` (a constructor's ``**kwargs``): ``reasons[name]`` says why a torch
    conv argument has no meaning for the family; any other name is refused as Python refuses it, but under the name
    of the class the caller built rather than the base class whose ``__init__`` it reached."""
    for name, value in given.items():
        if name in reasons:
            raise TypeError(f"{layer} has no {name} (got {name}={value!r}): {reasons[name]}")
        raise TypeError(f"{layer}() got an unexpected keyword argument {name!r}")


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def layer_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of the module's first floating parameter (None when it has none). ``parameters()`` yields the
    module's own parameters first, so those are looked at directly (no generator over the submodules: this runs
    on every forward)."""
    for p in module._parameters.values():
        if p is not None and p.is_floating_point():
            return p.dtype
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


def prepare_input(module: nn.Module, x: Any, layer: str) -> tuple[torch.Tensor, bool]:
    """The step every layer's forward starts with: ``x`` must be a tensor whose dtype is the layer's (autocast
    aside), with or without the batch dimension, as torch's convs accept. Returns the batched input and whether
    the batch dimension was added (the output then drops it again).

    One message for every family: a dtype mismatch names both dtypes and the two fixes.
    """
    _check_tensor(x, layer)
    expected = layer_dtype(module)
    if expected is not None and x.dtype != expected and not torch.is_autocast_enabled(x.device.type):
        if x.is_floating_point():
            fix = (f"convert the input with x.to(torch.{_dtype_name(expected)}) or the layer with "
                   f"layer.to(torch.{_dtype_name(x.dtype)})")
        else:
            fix = f"convert the input with x.to(torch.{_dtype_name(expected)})"
        raise TypeError(f"{layer} has {_dtype_name(expected)} parameters but got a {_dtype_name(x.dtype)} input; "
                        f"{fix}")
    dim = getattr(module, "dim", None)
    if not isinstance(dim, int):  # a layer that does not name its dimension: one spatial dim per kernel entry
        kernel = getattr(module, "kernel_size", None)
        dim = len(kernel) if isinstance(kernel, tuple) else None
    if isinstance(dim, int) and x.dim() == dim + 1:
        return x.unsqueeze(0), True
    return x, False


def _in_channels_last_of(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The layer contract: a channels-last input gives a channels-last output. torch's own convs do not always
    (a 1×1 ``Conv3d`` on one thread returns NCDHW for an NDHWC input), so every forward ends here; a no-op when
    the output already is."""
    fmt = channels_last_format(x)
    if fmt is None or y.dim() != x.dim():
        return y
    try:
        if channels_last_format(y) is not None or y.is_contiguous(memory_format=fmt):
            return y
    except RuntimeError:  # a vmap-batched output (an ensemble's: x plain, the parameters batched) has no memory
        if _FUNCTORCH() is None:  # format to ask about or convert to (NYI); its layout is vmap's
            raise
        return y
    if torch.onnx.is_in_onnx_export():
        # ONNX tensors have no memory format (the values are the same), and TorchScript's exporter (dynamo=False)
        # has no symbolic for contiguous(memory_format=...).
        return y
    return y.contiguous(memory_format=fmt)


# --- the per-input plan: what a call re-derives, computed once per input key ---------------------------------------

# f(layer, x): a layer's forward on inputs of one key, with everything that depends only on the layer and the key
# (checks, the form choice, the padding plan) already done. A plain function of the layer, never a bound method or
# a closure over it, so a table of them holds no reference to its module.
Runner = Callable[[Any, torch.Tensor], Any]

_PLANS = "_convzoo_plans"  # the per-module table, in the module's __dict__ (never a state_dict entry)
MEASURED_FORM_KEY = "_convzoo_measured_form_key"  # the class name a compiled op key starts with (compiled_choice)
MEASURED_FORM_RUNNERS = "_convzoo_measured_form_runners"  # its runners there, per input key
OP_KEY = "_convzoo_op_key"  # a compiles_as_op layer's own id, which its compiled op names (compiled_layer)
COMPILED_LAYER: list[Any] = [None]  # the module layers.compiled_layer, once imported (it imports this one)
MAX_PLANS = 64  # input keys remembered per layer: inputs of ever-new sizes (detection, crops) start it over
_NO_PLANS: dict[Any, Runner] = {}
_COMPILING = torch.compiler.is_compiling
_EXPORTING = getattr(torch.compiler, "is_exporting", lambda: False)
_JIT_TRACING = torch._C._get_tracing_state
_GRAD = torch._C.is_grad_enabled
_DISPATCH_MODE = getattr(torch.utils._python_dispatch, "is_in_torch_dispatch_mode", lambda: False)
_FUNCTORCH = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)
_AUTOCAST = getattr(torch._C, "_is_any_autocast_enabled", lambda: False)
_THREADS = torch.get_num_threads
_EPOCH = [0]  # bumped by ``forget_plans()``: every table's keys go stale at once


def forget_plans() -> None:
    """Make every layer re-plan its next call (e.g. after ``FormChoice.clear()``: choices are part of plans)."""
    _EPOCH[0] += 1


def plan_key(forward: Callable[..., Any], x: torch.Tensor) -> tuple[Any, ...]:
    """What a plan depends on besides the layer: which ``forward`` (a subclass's forward calling its parent's
    holds one plan each), the input's shape, strides (memory format), dtype and device, grad mode, whether ``x``
    requires grad, torch's thread count (form choices are timed with it) and the plans' epoch. The layer's own
    state (training mode, parameters' dtype and device, attributes) empties its table when it changes."""
    return (forward, x.shape, x.stride(), x.dtype, x.device, _GRAD(), x.requires_grad, _THREADS(), _EPOCH[0])


def planned(forward: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a ``forward`` that, called with the input alone, is ``self.plan_forward(x)(self, x)``: the wrapper
    then plans the first eager call of a key itself and keeps the runner (extra arguments still reach
    ``forward``)."""
    forward.__convzoo_planned__ = True  # type: ignore[attr-defined]
    return forward


@planned
def planned_forward(self: Any, x: torch.Tensor) -> Any:
    """``forward`` of a layer that plans (``plan_forward``): its plan for ``x``, run. A family writes
    ``forward = planned_forward``; the wrapper then keeps the runner per key and later calls run it directly."""
    return self.plan_forward(x)(self, x)


def parameter_reader(module: nn.Module, name: str) -> Callable[[nn.Module], Any]:
    """f(layer) reading parameter ``name`` at call time: from ``_parameters`` when it lives there now (a dict
    look-up, a tenth of ``nn.Module.__getattr__``'s cost), else through the attribute (a parametrization's
    property computes it). Plans that use it are emptied when that changes (``register_parametrization`` sets
    and deletes attributes)."""
    if name in module._parameters:
        return lambda m: m._parameters[name]
    return lambda m: getattr(m, name)


def stored(module: nn.Module, name: str) -> torch.Tensor | None:
    """What ``module.<name>`` is stored as, read without evaluating a parametrization: the parameter (or buffer)
    itself, else its parametrization's first original — for the checks a plan makes (None or not, dtype, device),
    which must not evaluate it: torch's convs evaluate a parametrized weight once per call (spectral_norm's power
    iteration advances at each evaluation)."""
    for table in (module._parameters, module._buffers):
        if name in table:
            return table[name]
    lists = module._modules.get("parametrizations")
    if lists is not None and name in lists._modules:
        plist = lists._modules[name]
        originals = [*plist._parameters.values(), *plist._buffers.values()]  # original, or original0, original1, …
        return originals[0] if originals else None
    return getattr(module, name)


def stored_shape(module: nn.Module, name: str) -> torch.Size | None:
    """The shape ``module.<name>`` has, read without evaluating a parametrization: a parametrized tensor keeps the
    shape it was registered with; with several originals (weight_norm's magnitude g (C, 1, …, 1) and direction v)
    that is their broadcast shape — ``stored`` alone gave g's, a 1×1 kernel. None where the tensor is None."""
    lists = module._modules.get("parametrizations")
    if lists is not None and name in lists._modules:
        plist = lists._modules[name]
        originals = [*plist._parameters.values(), *plist._buffers.values()]
        try:
            return torch.broadcast_shapes(*(t.shape for t in originals))
        except RuntimeError:  # a parametrization whose originals do not broadcast: evaluate it once
            return getattr(module, name).shape
    tensor = stored(module, name)
    return None if tensor is None else tensor.shape


def _checked_call(self: nn.Module, forward: Callable[..., Any], x: Any, args: tuple[Any, ...],
                  kwargs: dict[str, Any]) -> Any:
    """The whole input step and the family's forward, every time: under tracing / compile / export, for tensor
    subclasses (fake tensors) and for calls with more arguments than the input; under torch.fx tracing, the
    layer's call as one node (``_fx_leaf``)."""
    node = _fx_leaf(self, x, args, kwargs)
    if node is not None:
        return node
    x, unbatched = prepare_input(self, x, type(self).__name__)
    if unbatched:
        rank = x.dim() - 1
        args = tuple(a.unsqueeze(0) if isinstance(a, torch.Tensor) and a.dim() == rank else a for a in args)
        kwargs = {k: v.unsqueeze(0) if isinstance(v, torch.Tensor) and v.dim() == rank else v
                  for k, v in kwargs.items()}
    y = forward(self, x, *args, **kwargs)
    if isinstance(y, torch.Tensor):
        y = _in_channels_last_of(y, x)
    return y.squeeze(0) if unbatched and isinstance(y, torch.Tensor) else y


def _compose(body: Runner, unbatched: bool, fmt: torch.memory_format | None) -> Runner:
    """The table entry: ``body`` itself for a batched input whose format needs no care, else ``body`` between
    the batch dimension added and dropped and the output put in the input's channels-last format (a no-op when it
    already is: checked every call, since it costs less than being wrong)."""
    if not unbatched and fmt is None:
        return body
    if not unbatched:
        return lambda m, x: body(m, x).contiguous(memory_format=fmt)
    if fmt is None:
        return lambda m, x: body(m, x.unsqueeze(0)).squeeze(0)
    return lambda m, x: body(m, x.unsqueeze(0)).contiguous(memory_format=fmt).squeeze(0)


def _planned_call(self: nn.Module, forward: Callable[..., Any], x: torch.Tensor, key: tuple[Any, ...]) -> Any:
    """The first eager call of a key: the input step, the layer's plan (``plan_forward`` where ``forward`` is
    ``planned``; else ``forward`` itself runs on every later call, only the input step is skipped), the output,
    and the table entry. Inputs of another dtype than the layer's (accepted under autocast) are not remembered:
    without autocast they must raise the input step's message."""
    xb, unbatched = prepare_input(self, x, type(self).__name__)
    plans = getattr(forward, "__convzoo_planned__", False)
    body: Runner = self.plan_forward(xb) if plans else forward  # type: ignore[attr-defined]
    y = body(self, xb)
    if not isinstance(y, torch.Tensor):
        return y
    fmt = channels_last_format(xb) if y.dim() == xb.dim() else None
    if fmt is not None:
        y = y.contiguous(memory_format=fmt)
    if unbatched:
        y = y.squeeze(0)
    expected = layer_dtype(self)
    if expected is None or expected == x.dtype:
        table = self.__dict__.setdefault(_PLANS, {})  # __dict__ directly: our __setattr__ would empty it
        if len(table) >= MAX_PLANS:
            table.clear()
        table[key] = _compose(body, unbatched, fmt)
    return y


def _batch_friendly(forward: Callable[..., Any], check_as_given: bool = False) -> Callable[..., Any]:
    """Wrap a layer's ``forward`` with the input step (``prepare_input``: the dtype message, unbatched (C, *S)
    inputs and tensor arguments of the same rank given a batch of one, which the output loses again; a
    channels-last input gives a channels-last output) and the per-input plan: an eager call whose key
    (``plan_key``) was seen before goes straight to the runner planned then, with no check, choice or format
    decision re-derived. Tracing, compilation and export (which must see the whole forward), tensor subclasses
    and calls with extra arguments always take the whole step. ``check_as_given``: before that step, ``check_input``
    on ``x`` as the caller passed it (``input_checked``)."""

    @functools.wraps(forward)
    def wrapped(self: nn.Module, x: Any, *args: Any, **kwargs: Any) -> Any:
        if (args or kwargs or type(x) is not torch.Tensor or _COMPILING() or _EXPORTING() or _JIT_TRACING()
                or _DISPATCH_MODE() or _FUNCTORCH() is not None or _AUTOCAST()):
            # plans made under FlopCounterMode & co., torch.func transforms or autocast (native forms) are not
            # kept, and a plan made outside never runs inside them (a kernel would ignore autocast)
            op = COMPILED_LAYER[0]
            if _COMPILING() and op is not None and op.applies(self, x, bool(args or kwargs)):
                return op.call(self, x)  # compiled on the CPU: one op running the eager forward (compiled_layer)
            if check_as_given:
                check_input(x, self.dim, self.in_channels, type(self).__name__)
            return _checked_call(self, forward, x, args, kwargs)
        key = (forward, x.shape, x.stride(), x.dtype, x.device, _GRAD(), x.requires_grad, _THREADS(), _EPOCH[0])
        run = self.__dict__.get(_PLANS, _NO_PLANS).get(key)
        if run is not None:
            return run(self, x)
        if check_as_given:
            check_input(x, self.dim, self.in_channels, type(self).__name__)
        return _planned_call(self, forward, x, key)

    wrapped.__convzoo_prepared__ = True  # type: ignore[attr-defined]
    return wrapped


def _batch_friendly_cost(cost: Callable[[Any, tuple[int, ...]], Any]) -> Callable[[Any, tuple[int, ...]], Any]:
    """Wrap a family's ``cost(input_shape)`` so that a direct call takes what its forward takes: an unbatched
    (C, *S) shape is counted as the batch of one, its output shape given back without the batch dim, and any other
    rank raises one ValueError naming the shapes it takes (``arithmetic.cost.module_cost``, which ``cz.cost`` uses,
    does the same)."""

    @functools.wraps(cost)
    def wrapped(self: Any, input_shape: Sequence[int]) -> Any:
        from ..arithmetic.cost import module_cost

        shape = tuple(input_shape)
        rank = getattr(self, "dim", None)
        if isinstance(rank, int) and len(shape) != rank + 2:
            return module_cost(self, shape)  # unbatched: counted as N = 1; a wrong rank: its message
        return cost(self, shape)

    wrapped.__convzoo_prepared__ = True  # type: ignore[attr-defined]
    return wrapped


def init_conv_(weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """PyTorch's default conv initialisation: Kaiming-uniform(a=√5) weight, bias ~ U(±1/√fan_in)."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = math.prod(weight.shape[1:])
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound)


def autocast_enabled(x: torch.Tensor) -> bool:
    """Whether autocast is on for ``x``'s device type (False for types autocast does not know, such as meta)."""
    try:
        return torch.is_autocast_enabled(x.device.type)
    except RuntimeError:
        return False


def zero_started_weight_checked(module: nn.Module, path: str, layer: str,
                                why: str) -> contextlib.AbstractContextManager[None]:
    """A context to call ``module`` in whose weight starts at zero (``why``: what the zero start means). Such a weight
    has no norm: under torch's weight_norm or spectral_norm (which divide by it) it is 0/0 = NaN. When ``module``
    (reached as ``path`` in ``layer``) carries a parametrization and its weight is not finite, one ValueError names it
    and the fix. The check and the call read one evaluation (``parametrize.cached``): spectral_norm's power iteration
    advances once per call, as under torch's convs. Unparametrized modules cost one dict lookup, and nothing is
    checked under tracing, compilation or export."""
    if "parametrizations" not in module._modules or "weight" not in module._modules["parametrizations"]:
        return contextlib.nullcontext()
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return contextlib.nullcontext()
    return _finite_weight_cached(module, path, layer, why)


@contextlib.contextmanager
def _finite_weight_cached(module: nn.Module, path: str, layer: str, why: str) -> Iterator[None]:
    with parametrize.cached():
        if not bool(torch.isfinite(module.weight).all()):
            kinds = ", ".join(type(p).__name__.strip("_") for p in module.parametrizations["weight"])
            raise ValueError(
                f"{layer}.{path}.weight is not finite under its parametrization ({kinds}): it starts at zero ({why}), "
                f"and weight_norm / spectral_norm divide by the weight's norm, 0/0; give it a non-zero start before "
                f"the parametrization, e.g. torch.nn.init.normal_(layer.{path}.weight, std=1e-3), or leave {path} "
                f"unparametrized")
        yield


# --- the contract ------------------------------------------------------------------------------------------------

# (kind, label, fn): kind is 'native' (torch ops computing the same function), 'peer' (another library's layer)
# or 'naive' (a published slow approach); fn(x) equals the layer's forward.
Alternative = tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class Stage:
    """One named step of a layer's forward, for stage-by-stage pictures.

    Main stages compose in order: the first reads the layer's input, each next one the previous main stage's
    output, and the last gives the layer's output. A ``side`` stage (an attention branch, an offset predictor)
    reads the same tensor as the next main stage and produces values that stage uses (attention weights,
    offsets); it is drawn as its own branch, not as part of the data path. ``module`` is the sub-layer that
    does the step, when there is one (pictures can then draw its own connectivity and taps).
    ``kernel_per_position``: the stage applies a window kernel generated at each position (involution), so a
    picture draws that kernel at a few positions, read from the stage's Jacobian with the side values held.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    side: bool = False
    module: nn.Module | None = None
    kernel_per_position: bool = False


@dataclass(frozen=True)
class Attention:
    """One attention held in a side stage's output, for pictures: its symbol ``name``, what it weighs (``over``:
    'kernels' (of ``kernel_bank()``), 'taps' (of the kernel), 'input channels', 'filters', or 'branches' (the
    parallel paths a later stage sums, weighted per channel)) and its ``values`` for one sample: (n,), or
    (branches, channels) for 'branches'."""

    name: str
    over: str
    values: torch.Tensor


def compose_stages(stages: Sequence[Stage], x: torch.Tensor) -> torch.Tensor:
    """Run the main stages in order (what the layer computes, stage by stage)."""
    for stage in stages:
        if not stage.side:
            x = stage.fn(x)
    return x


def check_kernel_matches_weight(layer: nn.Module, kernel_size: tuple[int, ...], given: Any) -> None:
    """A torch conv's ``kernel_size`` set after construction must be its weight's spatial shape (a lazy weight
    takes any): ValueError naming the value and the weight's shape otherwise."""
    weight = layer.__dict__["_parameters"].get("weight")
    if (isinstance(weight, torch.Tensor) and not isinstance(weight, nn.parameter.UninitializedParameter)
            and tuple(weight.shape[2:]) != tuple(kernel_size)):
        raise ValueError(f"{type(layer).__name__}: kernel_size={given!r} does not match the weight's spatial shape "
                         f"{tuple(weight.shape[2:])}: set a weight of the new size first")


_FIXED_GEOMETRY = frozenset({"kernel_size", "stride", "padding", "dilation", "padding_pairs"})
_BUILT = "_convzoo_built"  # in a layer's __dict__ once its outermost __init__ has returned
_INIT_DEPTH = "_convzoo_init_depth"


def _marks_built(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that marks the layer built when the outermost of the nested ``__init__`` calls returns (a
    family's __init__ calls its base's): from then on the geometry of a layer that is not a torch conv is fixed."""

    @functools.wraps(init)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        depth = self.__dict__.get(_INIT_DEPTH, 0)
        self.__dict__[_INIT_DEPTH] = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            self.__dict__[_INIT_DEPTH] = depth
            if depth == 0:
                del self.__dict__[_INIT_DEPTH]
        if depth == 0:
            self.__dict__[_BUILT] = True
            if COMPILED_LAYER[0] is not None:
                COMPILED_LAYER[0].register(self)

    wrapped.__convzoo_marks_built__ = True  # type: ignore[attr-defined]
    return wrapped


class ConvzooLayer:
    """Mixin that marks a convzoo family's layer and declares the contract (see the module docstring).

    It holds no state and no ``__init__``: a family subclasses it next to ``torch.nn.Conv*d`` (convs that are
    torch convs) or ``torch.nn.Module`` (composite families). A user's subclass inherits the whole contract.
    """

    dim: ClassVar[int]
    # Under torch.compile on the CPU, run as one op that calls the eager forward (its measured form, convzoo's
    # kernels) instead of tracing the native form: for families whose eager forward is much the faster
    # (compiled_layer.py). A layer's own attribute of this name turns it off (False) for that layer.
    compiles_as_op: ClassVar[bool] = False

    def __prepare_scriptable__(self) -> nn.Module:
        """``torch.jit.script`` calls this first: say in words that it cannot compile the layer (its forward
        chooses a measured form in Python) and what to use, instead of TorchScript's errors about attributes."""
        raise TypeError(f"torch.jit.script cannot compile {type(self).__name__}: convzoo layers choose their form in "
                        "Python; use torch.jit.trace, torch.export.export or torch.compile (docs: Deploying)")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every family's forward starts with the same input step (``prepare_input``): one dtype message, and
        # unbatched inputs accepted as torch's convs accept them; eager calls of a key seen before run its plan.
        super().__init_subclass__(**kwargs)
        init = vars(cls).get("__init__")
        if init is not None and not getattr(init, "__convzoo_marks_built__", False):
            cls.__init__ = _marks_built(init)  # type: ignore[method-assign]
        forward = vars(cls).get("forward")
        if forward is not None and not getattr(forward, "__convzoo_prepared__", False):
            cls.forward = _batch_friendly(forward)  # type: ignore[method-assign]
        cost = vars(cls).get("cost")
        if cost is not None and not getattr(cost, "__convzoo_prepared__", False):
            cls.cost = _batch_friendly_cost(cost)  # type: ignore[method-assign]

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """For a layer whose ``forward = planned_forward``: the checks and choices for inputs like the batched
        ``x``, and the runner f(layer, x) computing the forward on every input of the same key (``plan_key``) with
        nothing re-derived; it runs under tracing too, so it must hold the tracing cases. Layers with their own
        ``forward`` need none: later calls of a key skip only the input step and run that ``forward``."""
        raise NotImplementedError(f"{type(self).__name__} has forward = planned_forward but no plan_forward()")

    def forget_plans(self) -> None:
        """Drop this layer's per-input plans (rebuilt on the next call). Needed only after writes that bypass the
        module (``p.data = ...`` of another dtype, ``_parameters[...] = ...``). Weight values are never part of a
        plan: a kernel derived from them (a flipped or scattered copy) is derived at each call, since a write
        through ``p.data`` (or a NumPy view) moves no counter a cache could key on."""
        self.__dict__.pop(_PLANS, None)

    def __setattr__(self, name: str, value: Any) -> None:
        # Any attribute set (train()/eval(), a new weight or sub-module, a parametrization's class swap,
        # ``implementation``, ``temperature``) may change what a plan decided: the next call of each key re-plans.
        if name in _FIXED_GEOMETRY and self.__dict__.get(_BUILT) and not isinstance(self, nn.modules.conv._ConvNd):
            # torch's convs read these at each call (convzoo's torch convs re-resolve them: conv.py); the other
            # families built sub-layers, kernels and padding for them, which a new value would silently disagree with
            raise AttributeError(
                f"{type(self).__name__}.{name} is fixed when the layer is built (its sub-layers, kernels and padding "
                f"were made for {name}={getattr(self, name, None)!r}); build a new layer with {name}={value!r}")
        self.__dict__.pop(_PLANS, None)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        self.__dict__.pop(_PLANS, None)
        super().__delattr__(name)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        self.forget_plans()  # .to() / .half() / .cuda(): another dtype or device, checked again
        return super()._apply(fn, recurse)  # type: ignore[misc]

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles start without plans or compiled-graph keys (derived state, rebuilt on first use; a
        conv registers a new key when unpickled)."""
        state = super().__getstate__()  # type: ignore[misc]
        return {k: v for k, v in state.items()
                if k not in (_PLANS, MEASURED_FORM_KEY, MEASURED_FORM_RUNNERS, OP_KEY)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        if COMPILED_LAYER[0] is not None:  # a copy or an unpickled layer: an id of its own for its compiled op
            COMPILED_LAYER[0].register(self)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        raise NotImplementedError(f"{type(self).__name__} does not declare cost()")

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not declare reference_output()")

    def native_alternatives(self) -> list[Alternative]:
        raise NotImplementedError(f"{type(self).__name__} does not declare native_alternatives()")

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not declare approximate_dense_()")

    def receptive_field_step(self, field: Any, in_shape: Sequence[int], step: Callable[..., Any]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not declare receptive_field_step()")

    def stages(self) -> list[Stage]:
        raise NotImplementedError(f"{type(self).__name__} does not declare stages()")

    def kernel_bank(self) -> torch.Tensor | None:
        """The K kernels a layer mixes per sample, (K, C_out, C_in/groups, *k) (dynamic, CondConv, ODConv): pictures
        draw them beside the sample's attention. None for a layer with one kernel."""
        return None

    def attentions(self, values: torch.Tensor) -> list[Attention]:
        """The attentions in ``values``, the output of one of the layer's side stages for one sample (1, …), for
        pictures. Default: a (1, K) output beside a K-kernel ``kernel_bank()`` is one attention over the kernels;
        any other output holds none (offsets, masks)."""
        bank = self.kernel_bank()
        if bank is not None and values.dim() == 2 and tuple(values.shape) == (1, bank.shape[0]):
            return [Attention("π", "kernels", values[0])]
        return []

    def illustrate_(self) -> str | None:
        """For pictures: put this layer — a copy made to be drawn — in a state in which its mechanism is visible,
        and return one sentence saying what was changed from the layer as built. Default: nothing (None)."""
        return None

    def forward_path(self, x: torch.Tensor) -> str:
        """Which internal formulation ``forward`` runs on an input like ``x`` (its device, dtype and memory
        format), for the bench: a composite joins its stages' sub-layers' paths, any other layer is 'native'."""
        try:
            stages = self.stages()
        except NotImplementedError:
            return "native"
        parts = []
        for stage in stages:
            module = stage.module
            if module is not None and module is not self and isinstance(module, ConvzooLayer):
                parts.append(module.forward_path(x))
        return " | ".join(parts) if parts else "native"


def missing_contract(cls: type) -> list[str]:
    """The contract methods ``cls`` does not implement itself (still the mixin's placeholder)."""
    return [name for name in CONTRACT if getattr(cls, name) is getattr(ConvzooLayer, name)]


def geometry_repr(module: nn.Module, extra: dict[str, object] | None = None, *, source: nn.Module | None = None,
                  bias: bool | None = None) -> str:
    """``torch.nn.Conv*d``'s extra_repr convention: the channels, ``kernel_size`` and ``stride`` always; padding,
    dilation, output_padding, groups, ``bias=False`` and padding_mode only where they differ from torch's defaults
    (0, 1, 0, 1, a bias, 'zeros'); then ``extra``, where a key naming one of those fields replaces its value in place.

    ``source``: the module holding the geometry, for a composite whose first sub-layer carries the constructor's
    arguments (default ``module``); the channels are always ``module``'s. ``bias``: whether the layer adds a bias,
    for a composite without a ``bias`` of its own (default: ``source.bias`` is not None, when it has one)."""
    src = module if source is None else source
    fields = dict(extra or {})
    parts = [f"{module.in_channels}, {module.out_channels}"]
    kernel = fields.pop("kernel_size", getattr(src, "kernel_size", None))
    if kernel is not None:
        parts.append(f"kernel_size={kernel}")
    stride = fields.pop("stride", getattr(src, "stride", None))
    if stride is not None:
        parts.append(f"stride={stride}")
    defaults = {"padding": 0, "dilation": 1, "output_padding": 0, "groups": 1}
    for name, default in defaults.items():
        value = fields.pop(name, getattr(src, name, default))
        if value != default and not (isinstance(value, tuple) and value and all(v == default for v in value)):
            parts.append(f"{name}={value!r}")
    has_bias = getattr(src, "bias", True) is not None if bias is None else bias
    if not has_bias:
        parts.append("bias=False")
    padding_mode = fields.pop("padding_mode", getattr(src, "padding_mode", "zeros"))
    if padding_mode != "zeros":
        parts.append(f"padding_mode={padding_mode!r}")
    for name, value in fields.items():
        parts.append(f"{name}={value!r}")
    return ", ".join(parts)
