"""A layer's choice between exact forms of its function, measured once per key and cached per process (like
cuDNN's benchmark mode).

A layer with several exact forms (HetConv's grouped vs masked dense conv, deformable conv's pure op vs
torchvision's kernel, dynamic conv's batch-folded vs per-sample convs) keeps one ``FormChoice``. On the first
input of a key (the layer's configuration, the input's shape / memory format / device / dtype, grad mode) every
form is run round-robin (``round_order``): one warm-up each, then rounds until ``min_seconds`` are spent (at
least ``min_rounds``, at most ``max_rounds``); the form with the smallest minimum time wins, t_f = min_r t_{f,r}
(the minimum is the least disturbed by other processes on a busy machine). Each round runs every form twice in a
row and keeps both times: when forms alternate, the allocator often hands large tensors fresh pages from the
operating system, whose first-touch faults can cost more than the op itself and fall on whichever form comes next
(``benchmarks/bench_page_faults.py`` measures both); the second call in a row reuses the pages the first freed, so
some time of each form is free of them. With gradients wanted, each run is forward + backward
by ``torch.autograd.grad`` on a detached copy of the input, so no ``.grad`` is touched and no caller graph runs.

The measurement is invisible to the caller (``measuring``): a layer's forms run on a private copy of it
(``private_copy``: the same parameter storages as detached leaves, its own copies of the buffers, no hooks, each
parametrization evaluated once into a plain tensor), outside any saved-tensor hooks (``torch.utils.checkpoint``
counts the tensors a forward saves), with global module hooks suspended and the random generators restored. So
hooks fire, parametrizations advance (spectral_norm's power iteration), BatchNorm statistics move and random
numbers are drawn exactly as in one ordinary call; what is timed is still the forms' own computation on the
call's tensors.

Never measured under tracing, compilation or export, nor on meta / fake tensors (``is_tracing``): the caller
then runs its fixed deterministic form; nor during a CUDA graph capture (timing synchronises the device, which a
capture forbids): a key first seen there runs its preferred or first form. For tests, ``offered_forms`` records the
forms each family is offered and ``pinned_form`` makes a family take one of them, so every form can be checked down
every path, not only the one this machine's timing picks. A form measured faster than the preferred one on the
layer alone is confirmed in the layer's own calls inside the network before it is kept (``in_context``,
``context_trial.py``). Imports torch, ``base`` (the ``Runner`` type), ``formats``, ``context_trial`` and
``kernels.readiness`` only.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import readiness as _readiness  # numba itself is imported on a kernel's first use
from .base import Runner
from .context_trial import PAIRS, QUICK_PAIRS, ContextTrial, trial_runner
from .formats import channels_last_format


_EXPORTING = getattr(torch.compiler, "is_exporting", lambda: False)
_FAKE = getattr(torch._subclasses, "FakeTensor", ())  # non-strict export and make_fx run on fake tensors
_DISPATCH_MODE = getattr(torch.utils._python_dispatch, "is_in_torch_dispatch_mode", lambda: False)
_FUNCTORCH = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)  # inside vmap / grad / jacrev


def is_tracing(x: torch.Tensor) -> bool:
    """True under torch.compile / torch.export / jit.trace / jit.script / ONNX export, under a torch dispatch mode
    (FlopCounterMode and the like would count the measurement's runs), inside a ``torch.func`` transform (vmap,
    grad, jacrev: timing would run on its wrapped tensors, and convzoo's kernels have no batching rule), or on a
    meta or fake tensor: no timing there, the layer runs its deterministic form."""
    return bool(torch.compiler.is_compiling() or _EXPORTING() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export() or x.device.type == "meta" or isinstance(x, _FAKE)
                or _DISPATCH_MODE() or _FUNCTORCH() is not None)


_COMPILING = torch.compiler.is_compiling
_JIT_TRACING = torch._C._get_tracing_state


def tracing_active(x: torch.Tensor) -> bool:
    """``is_tracing`` without the meta-device, ONNX and scripting checks, cheap enough for every eager call
    (≈0.15 µs against ≈2 µs): enough where the caller's eager cache is keyed on the device (a meta input never
    hits it); ONNX exporters run the forward under jit tracing or torch.export, which this sees, and a scripted
    forward never runs this Python. Compilation is asked first: dynamo folds it to True."""
    return bool(_COMPILING() or _EXPORTING() or _JIT_TRACING() or isinstance(x, _FAKE))


def memory_format_name(x: torch.Tensor) -> str:
    """'channels_last' for a 4-D NHWC-strided tensor that is not also NCHW-contiguous, 'channels_last_3d' for
    such a 5-D NDHWC tensor, else 'contiguous'."""
    fmt = channels_last_format(x)
    if fmt is None:
        return "contiguous"
    return "channels_last" if fmt == torch.channels_last else "channels_last_3d"


def input_key(x: torch.Tensor, backward: bool) -> tuple[Hashable, ...]:
    """The input's part of a key: shape, memory format, device, dtype, whether a backward pass follows, and torch's
    thread count (the fastest form on one thread is not always the fastest on several)."""
    return (x.shape, memory_format_name(x), x.device, x.dtype, backward, torch.get_num_threads())


def round_order(labels: Sequence[str], r: int) -> list[str]:
    """Round r's order of candidates timed round-robin: the labels rotated by ⌊r/2⌋, reversed in odd rounds. A
    rotation alone keeps the cyclic order, so each candidate would always run right after the same one (a, b, c →
    c, a, b: b still follows a) and inherit its cold or warm caches; the reversal makes it follow the other
    neighbour too (for 3 candidates, 6 rounds run all 6 orders)."""
    k = (r // 2) % len(labels)
    rotated = list(labels[k:]) + list(labels[:k])
    return rotated[::-1] if r % 2 else rotated


# --- measuring out of the caller's sight -------------------------------------------------------------------------

# torch's global module hooks: forward ones are skipped by the measuring thread only (``_UnlessMeasuring``); backward
# ones are set aside for every thread (on CUDA a backward runs on autograd's device threads, which cannot tell a
# measurement's backward from another thread's)
_GLOBAL_FORWARD_HOOKS = ("_global_forward_pre_hooks", "_global_forward_hooks")
_GLOBAL_BACKWARD_HOOKS = ("_global_backward_pre_hooks", "_global_backward_hooks")
_MODULE_HOOKS = ("_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
                 "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_pre_hooks",
                 "_backward_hooks")
_SUSPENDED: dict[str, dict[object, object]] = {}  # the global hooks set aside while a measurement runs
_SUSPENSIONS = [0]  # measurements under way, all threads (the global hooks are the process's)
_SUSPEND_LOCK = threading.Lock()
_LOCAL = threading.local()  # .depth: this thread's measurements under way
_AUTOGRAD = torch._C._autograd


def measuring_now() -> bool:
    """True while this thread measures forms (inside ``measuring``): calls there are not the network's calls."""
    return getattr(_LOCAL, "depth", 0) > 0


class _UnlessMeasuring:
    """A global forward (pre-)hook while some thread measures forms: nothing in a thread that is measuring, the hook
    itself in every other thread (their module calls are the program's own)."""

    __slots__ = ("hook",)

    def __init__(self, hook: Callable[..., object]) -> None:
        self.hook = hook

    def __call__(self, *args: object, **kwargs: object) -> object:
        return None if measuring_now() else self.hook(*args, **kwargs)


def _suspend_global_hooks() -> None:
    """Forward hooks wrapped in place (the dicts keep their size: a module call iterating them in another thread
    meanwhile must not fail), backward hooks set aside; hooks registered meanwhile fire everywhere."""
    from torch.nn.modules import module as torch_module

    with _SUSPEND_LOCK:
        _SUSPENSIONS[0] += 1
        if _SUSPENSIONS[0] == 1:
            for name in _GLOBAL_FORWARD_HOOKS:
                hooks = getattr(torch_module, name)
                for key, hook in list(hooks.items()):
                    hooks[key] = _UnlessMeasuring(hook)
            for name in _GLOBAL_BACKWARD_HOOKS:
                hooks = getattr(torch_module, name)
                _SUSPENDED[name] = dict(hooks)
                hooks.clear()


def _resume_global_hooks() -> None:
    from torch.nn.modules import module as torch_module

    with _SUSPEND_LOCK:
        _SUSPENSIONS[0] -= 1
        if _SUSPENSIONS[0] == 0:
            for name in _GLOBAL_FORWARD_HOOKS:  # hooks removed meanwhile stay removed
                hooks = getattr(torch_module, name)
                for key, hook in list(hooks.items()):
                    if isinstance(hook, _UnlessMeasuring):
                        hooks[key] = hook.hook
            for name in _GLOBAL_BACKWARD_HOOKS:  # hooks registered meanwhile stay
                hooks = getattr(torch_module, name)
                hooks.update(_SUSPENDED.pop(name, {}))


def _pop_saved_tensors_hooks() -> list[tuple[Callable[..., object], Callable[..., object]]]:
    """This thread's saved-tensor hooks (torch.utils.checkpoint's, a user's offloading), innermost first, taken off
    the stack: the measurement's saved tensors are its own."""
    stack = []
    if _AUTOGRAD._saved_tensors_hooks_is_enabled():
        while (top := _AUTOGRAD._top_saved_tensors_default_hooks(True)) is not None:
            stack.append(top)
            _AUTOGRAD._pop_saved_tensors_default_hooks()
    return stack


def _push_saved_tensors_hooks(stack: list[tuple[Callable[..., object], Callable[..., object]]]) -> None:
    for pack, unpack in reversed(stack):
        _AUTOGRAD._push_saved_tensors_default_hooks(pack, unpack)


@contextlib.contextmanager
def measuring(device: torch.device) -> Iterator[None]:
    """The context of a measurement, out of the caller's sight: no saved-tensor hooks (checkpoint's would count the
    measurement's saved tensors, which its recomputation does not save again), torch's global module hooks
    suspended (forward hooks for this thread only; backward hooks for all threads, a backward in another thread
    meanwhile misses them), and the CPU's and a CUDA ``device``'s random generators
    restored afterwards (dropout in a form; as ``torch.random.fork_rng``, draws another thread makes meanwhile are
    undone too). Nests."""
    stack = _pop_saved_tensors_hooks()
    _suspend_global_hooks()
    _LOCAL.depth = getattr(_LOCAL, "depth", 0) + 1
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            yield
    finally:
        _LOCAL.depth -= 1
        _resume_global_hooks()
        _push_saved_tensors_hooks(stack)


def kernel_ready(module: str, dtype: torch.dtype, what: str) -> bool:
    """``kernels.readiness.kernel_ready``, its first answer per (module, dtype) found inside ``measuring``: that
    answer runs the kernels' warm-up (a tiny forward and backward), which must neither save tensors into a
    caller's checkpoint nor fail there and leave the kernels off for the process. Later calls: one dict look-up."""
    answer = _readiness._ready.get((module, dtype))  # the answer kept for the process (readiness.forget empties it)
    if answer is None:
        with measuring(torch.device("cpu")):
            answer = _readiness.kernel_ready(module, dtype, what)
    return answer


def _base_class(module: nn.Module) -> type:
    """The module's class before ``torch.nn.utils.parametrize`` swapped in its generated subclass."""
    cls = type(module)
    return cls.__bases__[0] if "parametrizations" in module._modules and cls.__name__.startswith("Parametrized") \
        else cls


def private_copy(layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` (and its submodules) to measure forms on, which nothing the caller sees: parameters are
    the same storages as fresh leaves (``requires_grad`` as theirs, no tensor hooks), buffers are copies (BatchNorm's
    statistics, spectral_norm's vectors), no module hooks, each parametrization evaluated once (on the copy's own
    buffers) into a plain tensor, no per-input plans. Shared submodules stay shared. Costs one copy of the buffers."""
    copies: dict[int, nn.Module] = {}

    def leaf(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None or isinstance(t, nn.parameter.UninitializedTensorMixin):
            return t
        # a plain tensor, as torch.func.functional_call puts there: an nn.Parameter costs autograd.grad a Python
        # isinstance check per call, which would be timed with every form
        return t.detach().requires_grad_(t.requires_grad)

    def copy(module: nn.Module) -> nn.Module:
        if id(module) in copies:
            return copies[id(module)]
        cls = type(module)
        state = _base_class(module).__getstate__(module)  # a family's own __getstate__ drops its caches
        if not isinstance(state, dict):
            state = dict(module.__dict__)
        state = {k: (type(v)(v) if type(v) in (dict, list, set) else v) for k, v in state.items()}
        state.pop("_convzoo_plans", None)
        for name in _MODULE_HOOKS:
            if name in state:
                state[name] = type(state[name])()
        state["_is_full_backward_hook"] = None
        state["_parameters"] = {k: leaf(p) for k, p in module._parameters.items()}
        state["_buffers"] = {k: None if b is None else b.clone() for k, b in module._buffers.items()}
        new = cls.__new__(cls)
        copies[id(module)] = new
        state["_modules"] = {k: None if m is None else copy(m) for k, m in module._modules.items()}
        new.__dict__.update(state)
        if "parametrizations" in new._modules and cls is not _base_class(module):
            lists = new._modules.pop("parametrizations")
            values = {}
            with torch.no_grad():  # once, on the copy's buffers; a leaf like a parameter
                for name, plist in lists.items():
                    value = plist()
                    wanted = any(p.requires_grad for p in plist.parameters())
                    values[name] = value.detach().requires_grad_(wanted and value.is_floating_point())
            new.__class__ = _base_class(module)
            for name, value in values.items():  # a parametrized buffer stays a buffer
                (new._parameters if len(lists[name]._parameters) else new._buffers)[name] = value
        return new

    return copy(layer)


# Head-to-head rounds confirming a form measured faster than a family's preferred one, when by less than
# CONFIRM_WITHIN× (a larger lead is taken as measured; ``FormChoice.choose``).
# Functions a counter replaces while it runs (ptflops' 'pytorch' backend patches torch.nn.functional and the
# matrix products to count their calls): timing forms then would be counted as the model's work.
_COUNTED = [(module, name, getattr(module, name)) for module, names in (
    (F, ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "linear",
         "relu", "softmax", "interpolate", "grid_sample", "unfold")),
    (torch, ("matmul", "mm", "bmm", "addmm", "baddbmm", "einsum")),
    (torch.Tensor, ("matmul", "__matmul__"))) for name in names if hasattr(module, name)]


def torch_functions_replaced() -> bool:
    """Whether a tool has replaced torch's functions (a counter counting their calls, as ptflops does)."""
    return any(getattr(module, name, None) is not original for module, name, original in _COUNTED)


CONFIRM_ROUNDS = 8
CONFIRM_WITHIN = 1.5
_UNTIMED = [0]  # > 0 inside ``untimed()``


@contextlib.contextmanager
def untimed() -> Iterator[None]:
    """Within, ``choose`` times and caches nothing and returns ``prefer`` (when among the forms) or the first form:
    for tools that run a layer once on each of many input shapes (the explorer's Jacobian rows, one batch size per
    request), where timing each new shape costs more than the forms differ. Every form is exact: the outputs are
    the same."""
    _UNTIMED[0] += 1
    try:
        yield
    finally:
        _UNTIMED[0] -= 1


_QUICK = [False]  # set by ``quick_choices()``


@contextlib.contextmanager
def quick_choices(enabled: bool = True) -> Iterator[None]:
    """Within, a new key's forms are timed in one round (each form twice in a row, after its warm-up) instead of
    ``min_rounds`` rounds lasting ``min_seconds``: for a test suite or a short script, where thousands of keys are
    each seen once and full timing costs more than an occasional near miss. ``quick_choices(False)`` restores full
    timing inside it. What is chosen stays cached after the block, as outside it."""
    previous = _QUICK[0]
    _QUICK[0] = enabled
    try:
        yield
    finally:
        _QUICK[0] = previous


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_TRIALS = [True]  # set by ``context_trials()``


@contextlib.contextmanager
def context_trials(enabled: bool = True) -> Iterator[None]:
    """Within ``context_trials(False)``, a form measured faster than its family's preferred one on the layer alone
    is kept as measured, without the trial in the network's own calls (``FormChoice.in_context``): to see what the
    trials change (``benchmarks/bench_models.py --no-trials``), or where a script's first calls must each run the
    form the key keeps. Trials already under way go on."""
    previous = _TRIALS[0]
    _TRIALS[0] = enabled
    try:
        yield
    finally:
        _TRIALS[0] = previous


_INSTANCES: "weakref.WeakSet[FormChoice]" = weakref.WeakSet()
_FIXED = [False]


def forget_choices() -> None:
    """Every ``FormChoice`` forgets what it chose (``clear``): the next input of each key is measured again, e.g.
    to see how stable the choices are on a machine, or after changing what else runs on it."""
    for choice in list(_INSTANCES):
        choice.clear()


@contextmanager
def fixed_choices() -> Iterator[None]:
    """Within it every ``FormChoice`` takes its ``prefer`` form (else its first) without timing anything. The forms
    are all exact but round differently, so where a result must depend only on the inputs — a sweep trial, which
    trains for many steps — timing noise may not pick one. Every choice is forgotten on entry and exit
    (``clear``), so none made inside leaks out or the other way round."""
    previous = _FIXED[0]
    forget_choices()
    _FIXED[0] = True
    try:
        yield
    finally:
        _FIXED[0] = previous
        forget_choices()


_OFFERED: list[dict[str, list[str]]] = []  # the records of the open ``offered_forms()`` blocks
_PINNED: list[tuple[str, str]] = []  # (family, form) of the open ``pinned_form()`` blocks, innermost last


@contextmanager
def offered_forms() -> Iterator[dict[str, list[str]]]:
    """Within it, every choice records the forms it chooses among in the yielded dict (family → form names, in the
    order first offered; forms that failed here are not offered). Every choice is forgotten on entry, so each key
    run inside chooses again and is recorded; what it chooses stays cached after the block, as outside it."""
    record: dict[str, list[str]] = {}
    forget_choices()
    _OFFERED.append(record)
    try:
        yield record
    finally:
        _OFFERED.remove(record)


@contextmanager
def pinned_form(family: str, form: str) -> Iterator[None]:
    """Within it, every choice of ``family`` (``FormChoice.family``) among forms that include ``form`` takes it,
    untimed and uncached; other choices go on as outside. For tests that run each exact form of a layer down every
    path (autocast, float64, another memory format), not only the form this machine's timing picks: a user's
    machine may pick any. Every choice is forgotten on entry and exit, so none made inside leaks out."""
    forget_choices()
    _PINNED.append((family, form))
    try:
        yield
    finally:
        _PINNED.remove((family, form))
        forget_choices()


_CONTEXT_FILES = ("torch/utils/checkpoint.py", "torch/autograd/graph.py")  # the caller's context, not the form
_BACKWARD_ENTRY = "_engine_run_backward"  # graph.py's call into the autograd engine: every backward passes it


def _own_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the form's own failure (a kernel that does not compile or run here, in its forward or its
    backward), which drops the form for the process; not one raised by the caller's context (checkpoint's frames,
    saved-tensor hooks), which ``measuring`` keeps away and which must reach the caller rather than blacklist a
    working kernel."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.replace("\\", "/").endswith(_CONTEXT_FILES) and code.co_name != _BACKWARD_ENTRY:
            return False
        tb = tb.tb_next
    return True


class FormChoice:
    """The cached choice of one layer family: ``choose(key, forms, ...)`` returns the fastest form's name.

    ``prefer``: a form kept unless another is measured faster by more than ``margin`` (a relative time), so
    near ties measured on a noisy machine do not flip to a form that is not really faster; and a form that beats it
    in the rounds by less than ``CONFIRM_WITHIN``× must beat it head to head too: ``CONFIRM_ROUNDS`` rounds of the
    two alone (each twice in a row, the order alternating), the median over rounds of their ratio below
    1 − ``margin``. The rounds of every form in turn run each after a different one, and on some CPUs a form's
    time depends on the op before it by tens of per cent, so a form can win the rounds and lose against the
    preferred form run beside it alone.
    ``measurements`` counts how often forms were actually timed (one per new key), for tests and reports;
    ``clear()`` forgets every choice (say, after changing thread counts) and bumps ``generation``, which layers
    that remember their choice per input put in their keys.
    ``prune``: after the first timed round, forms slower than ``prune`` × the fastest are not timed again (a
    native form 50× off the best would otherwise cost seconds per key).
    ``failed``: form name → cause, for forms named ``fallible`` (convzoo's compiled kernels) that raised while
    being measured: they are dropped from this and later choices, with one warning naming the cause."""

    def __init__(self, family: str, min_rounds: int = 3, max_rounds: int = 15, min_seconds: float = 0.05,
                 prefer: str | None = None, margin: float = 0.0, prune: float = 4.0) -> None:
        self.family = family
        self.prefer, self.margin, self.prune = prefer, margin, prune
        self.min_rounds, self.max_rounds, self.min_seconds = min_rounds, max_rounds, min_seconds
        self.cache: dict[Hashable, str] = {}
        self.trials: dict[Hashable, ContextTrial] = {}  # forward-only keys on trial in the network's calls
        self.confirmed: dict[Hashable, str] = {}  # the forms the trials kept (also in ``cache``)
        self.failed: dict[str, str] = {}
        self.measurements = 0
        self.generation = 0
        _INSTANCES.add(self)

    def clear(self) -> None:
        from .base import forget_plans  # layers remember their chosen form in their per-input plans

        self.cache.clear()
        self.trials.clear()
        self.confirmed.clear()
        self.generation += 1
        forget_plans()

    def __contains__(self, key: Hashable) -> bool:
        return key in self.cache

    def get(self, key: Hashable) -> str | None:
        """The form chosen for ``key``, or None when it has not been measured yet (nothing is timed)."""
        return self.cache.get(key)

    def for_input(self, config: Hashable, x: torch.Tensor,
                  forms: Callable[..., Mapping[str, Callable[[torch.Tensor], torch.Tensor]]],
                  params: Sequence[torch.Tensor | None] = (), fallible: Collection[str] = (),
                  layer: nn.Module | None = None) -> str:
        """The fastest of the forms (name → f(x); built only when measuring) for a layer of configuration
        ``config`` on inputs like ``x``: key = (config, shape, memory format, device, dtype, backward), where
        backward = grad mode on and ``x`` or one of the parameters requires grad. Measured on a detached copy of
        ``x``; cached afterwards (and replaced by the form a trial in the network's own calls keeps: ``in_context``).

        With ``layer`` (the caller's module), ``forms(copy)`` builds the forms on ``private_copy(layer)``, whose
        trainable parameters are the ones timed (``params``, default all of the layer's, only say whether a
        backward follows: read them without evaluating a parametrization, ``base.stored``); without, ``forms()``
        builds them and ``params`` are the parameters."""
        if layer is not None and not params:
            params = list(layer.parameters())
        trainable = [t for t in params if t is not None and t.requires_grad]
        backward = torch.is_grad_enabled() and (x.requires_grad or bool(trainable))
        key = (config, *input_key(x, backward))
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        with measuring(x.device):  # the copy's parametrizations are evaluated out of sight too
            probe = x.detach().requires_grad_(x.requires_grad and backward)
            if layer is None:
                table, wrt = forms(), trainable
            else:
                private = private_copy(layer)
                table, wrt = forms(private), [p for p in private.parameters() if p.requires_grad]
            calls = {name: (lambda fn=fn: fn(probe)) for name, fn in table.items()}
            return self.choose(key, calls, x.device, [probe, *wrt] if backward else [], fallible)

    def in_context(self, config: Hashable, x: torch.Tensor, chosen: str, offered: Collection[str],
                   params: Sequence[torch.Tensor | None], build: Callable[[str], Runner]) -> Runner:
        """The runner of a layer's calls on inputs like ``x`` for the form ``chosen`` (``build(name)`` gives a
        form's runner f(layer, x)). When the form was measured faster than the preferred one on the layer alone, for
        a forward-only key on the CPU, the runner is a trial instead: the next real calls of the key alternate
        between the two forms, timed, and the faster in the network becomes the key's choice (``context_trial.py``,
        ``confirmed`` records it); during the trial the outputs agree to rounding, not bitwise. Not under
        ``fixed_choices`` / ``untimed`` / ``pinned_form``, ``torch.use_deterministic_algorithms(True)``, tracing or
        autocast or ``context_trials(False)``, nor inside a measurement (a private copy's calls are not the
        network's), nor on other devices (timing a call there would synchronise it), nor for a key with a backward
        (its time is not the forward's)."""
        trainable = any(t is not None and t.requires_grad for t in params)
        backward = torch.is_grad_enabled() and (x.requires_grad or trainable)
        if (chosen == self.prefer or self.prefer not in offered or backward or x.device.type != "cpu"
                or not _TRIALS[0] or _FIXED[0] or _UNTIMED[0] or _PINNED or measuring_now()
                or torch.are_deterministic_algorithms_enabled()
                or is_tracing(x) or torch.is_autocast_enabled("cpu")):
            return build(chosen)
        key = (config, *input_key(x, False))
        if key in self.confirmed or self.cache.get(key) != chosen:  # decided already, or not this key's choice
            return build(chosen)
        trial = self.trials.get(key)
        if trial is None or trial.measured != chosen:
            trial = self.trials[key] = ContextTrial(chosen, self.prefer, self.margin,
                                                    QUICK_PAIRS if _QUICK[0] else PAIRS)

        def decide(winner: str) -> None:
            if self.trials.get(key) is trial:
                self.cache[key] = winner
                del self.trials[key]
                self.confirmed[key] = winner

        return trial_runner(trial, build, decide)

    def choose(self, key: Hashable, forms: Mapping[str, Callable[[], torch.Tensor]], device: torch.device,
               wrt: Sequence[torch.Tensor] = (), fallible: Collection[str] = ()) -> str:
        """The form with the smallest minimum time on this key, measured the first time the key is seen.

        ``forms``: name → zero-argument call computing the output; ``wrt``: tensors requiring grad whose
        gradients a training step would compute (empty: forward only, timed under ``no_grad``); ``fallible``:
        forms that may fail to run here (a kernel that does not compile) and are then dropped with a warning."""
        pinned = bool(_PINNED) and _PINNED[-1][0] == self.family and _PINNED[-1][1] in forms \
            and _PINNED[-1][1] not in self.failed
        if key in self.cache and not pinned:
            return self.cache[key]
        forms = {name: fn for name, fn in forms.items() if name not in self.failed}
        if not forms:
            raise ValueError(f"forms={forms!r} must name at least one form to choose from ({self.family})")
        for record in _OFFERED:
            offered = record.setdefault(self.family, [])
            offered.extend(name for name in forms if name not in offered)
        if pinned:
            return _PINNED[-1][1]
        if device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            # timing synchronises the device, which a CUDA graph capture forbids: the preferred (else the first)
            # form runs, unmeasured and not cached; warm a key up before capturing it to get its measured form
            return self.prefer if self.prefer in forms else next(iter(forms))
        if _FIXED[0]:  # fixed_choices(): the same form on every machine and every run, nothing timed
            self.cache[key] = self.prefer if self.prefer in forms else next(iter(forms))
            return self.cache[key]
        if _UNTIMED[0] or torch_functions_replaced():  # nothing timed (see above), nothing cached
            return self.prefer if self.prefer in forms else next(iter(forms))
        wrt = [t for t in wrt if t.requires_grad] if torch.is_grad_enabled() else []

        def run(fn: Callable[[], torch.Tensor]) -> None:
            if not wrt:
                with torch.no_grad():
                    fn()
                return
            y = fn()
            torch.autograd.grad(y, wrt, torch.ones_like(y), allow_unused=True)

        def timed(fn: Callable[[], torch.Tensor]) -> float:
            _sync(device)
            start = time.perf_counter()
            run(fn)
            _sync(device)
            return time.perf_counter() - start

        with measuring(device):
            return self._measure(key, forms, run, timed, fallible)

    def _measure(self, key: Hashable, forms: dict[str, Callable[[], torch.Tensor]],
                 run: Callable[[Callable[[], torch.Tensor]], None],
                 timed: Callable[[Callable[[], torch.Tensor]], float], fallible: Collection[str]) -> str:
        """``choose``'s measurement (inside ``measuring``): warm-up, rounds, confirmation; caches the winner."""
        for name, fn in list(forms.items()):
            try:
                run(fn)  # warm-up: allocations, kernel selection (or compilation), weight reorders
            except Exception as exc:  # a fallible form's own failure drops it, named
                if name not in fallible or len(forms) == 1 or not _own_failure(exc):
                    raise
                self._drop(name, forms, exc)
        best = {name: float("inf") for name in forms}
        started, rounds = time.perf_counter(), 0
        min_rounds, max_rounds, min_seconds = (1, 1, 0.0) if _QUICK[0] else (self.min_rounds, self.max_rounds,
                                                                            self.min_seconds)
        while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - started < min_seconds):
            for name in round_order(list(best), rounds):  # twice in a row: the second call's output usually
                best[name] = min(best[name], timed(forms[name]), timed(forms[name]))  # reuses the first's pages
            if rounds == 0 and len(best) > 1:  # slow forms are not timed again
                limit = self.prune * min(best.values())
                best = {name: t for name, t in best.items() if t <= limit}
            rounds += 1
        self.measurements += 1
        fastest = min(best, key=best.__getitem__)
        if self.prefer in best and best[self.prefer] <= (1 + self.margin) * best[fastest]:
            fastest = self.prefer  # a near tie: t_prefer ≤ (1 + margin)·t_fastest keeps the preferred form
        elif self.prefer in best and not _QUICK[0] and best[self.prefer] <= CONFIRM_WITHIN * best[fastest]:
            # a lead the op-order effects could explain is confirmed head to head
            ratios = []
            for r in range(CONFIRM_ROUNDS):
                pair = (fastest, self.prefer) if r % 2 else (self.prefer, fastest)
                times = {name: min(timed(forms[name]), timed(forms[name])) for name in pair}
                ratios.append(times[fastest] / times[self.prefer])
            if statistics.median(ratios) > 1 - self.margin:
                fastest = self.prefer
        self.cache[key] = fastest
        return self.cache[key]

    def _drop(self, name: str, forms: dict[str, Callable[[], torch.Tensor]], exc: BaseException) -> None:
        cause = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        self.failed[name] = cause
        del forms[name]
        warnings.warn(f"convzoo: {self.family} runs without its form '{name}', which failed here ({cause}); "
                      "PyTorch's forms are used instead", RuntimeWarning, stacklevel=5)
