"""A layer's choice between exact forms of its function, measured once per key and cached per process (like
cuDNN's benchmark mode).

A layer with several exact forms (HetConv's grouped vs masked dense conv, deformable conv's pure op vs
torchvision's kernel, dynamic conv's batch-folded vs per-sample convs) keeps one ``FormChoice``. On the first
input of a key (the layer's configuration, the input's shape / memory format / device / dtype, grad mode) every
form is run round-robin (``round_order``): one warm-up each, then rounds until ``min_seconds`` are spent (at
least ``min_rounds``, at most ``max_rounds``); the form with the smallest minimum time wins, t_f = min_r t_{f,r}
(the minimum is the least disturbed by other processes on a busy machine). With gradients wanted, each run is forward + backward
by ``torch.autograd.grad`` on a detached copy of the input, so no ``.grad`` is touched and no caller graph runs.

Never measured under tracing, compilation or export, nor on meta / fake tensors (``is_tracing``): the caller
then runs its fixed deterministic form. Leaf module: imports torch only.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence

import torch

from .formats import channels_last_format


_EXPORTING = getattr(torch.compiler, "is_exporting", lambda: False)
_FAKE = getattr(torch._subclasses, "FakeTensor", ())  # non-strict export and make_fx run on fake tensors


def is_tracing(x: torch.Tensor) -> bool:
    """True under torch.compile / torch.export / jit.trace / jit.script / ONNX export or on a meta or fake
    tensor: no timing there, the layer runs its deterministic form."""
    return bool(torch.compiler.is_compiling() or _EXPORTING() or torch.jit.is_tracing() or torch.jit.is_scripting()
                or torch.onnx.is_in_onnx_export() or x.device.type == "meta" or isinstance(x, _FAKE))


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
    """The input's part of a key: shape, memory format, device, dtype and whether a backward pass follows."""
    return (x.shape, memory_format_name(x), x.device, x.dtype, backward)


def round_order(labels: Sequence[str], r: int) -> list[str]:
    """Round r's order of candidates timed round-robin: the labels rotated by ⌊r/2⌋, reversed in odd rounds. A
    rotation alone keeps the cyclic order, so each candidate would always run right after the same one (a, b, c →
    c, a, b: b still follows a) and inherit its cold or warm caches; the reversal makes it follow the other
    neighbour too (for 3 candidates, 6 rounds run all 6 orders)."""
    k = (r // 2) % len(labels)
    rotated = list(labels[k:]) + list(labels[:k])
    return rotated[::-1] if r % 2 else rotated


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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FormChoice:
    """The cached choice of one layer family: ``choose(key, forms, ...)`` returns the fastest form's name.

    ``prefer``: a form kept unless another is measured faster by more than ``margin`` (a relative time), so
    near ties measured on a noisy machine do not flip to a form that is not really faster.
    ``measurements`` counts how often forms were actually timed (one per new key), for tests and reports;
    ``clear()`` forgets every choice (say, after changing thread counts) and bumps ``generation``, which layers
    that remember their choice per input put in their keys."""

    def __init__(self, family: str, min_rounds: int = 3, max_rounds: int = 15, min_seconds: float = 0.05,
                 prefer: str | None = None, margin: float = 0.0) -> None:
        self.family = family
        self.prefer, self.margin = prefer, margin
        self.min_rounds, self.max_rounds, self.min_seconds = min_rounds, max_rounds, min_seconds
        self.cache: dict[Hashable, str] = {}
        self.measurements = 0
        self.generation = 0

    def clear(self) -> None:
        self.cache.clear()
        self.generation += 1

    def __contains__(self, key: Hashable) -> bool:
        return key in self.cache

    def get(self, key: Hashable) -> str | None:
        """The form chosen for ``key``, or None when it has not been measured yet (nothing is timed)."""
        return self.cache.get(key)

    def for_input(self, config: Hashable, x: torch.Tensor,
                  forms: Callable[[], Mapping[str, Callable[[torch.Tensor], torch.Tensor]]],
                  params: Sequence[torch.Tensor | None]) -> str:
        """The fastest of ``forms()`` (name → f(x); called only when measuring) for a layer of configuration
        ``config`` on inputs like ``x``: key = (config, shape, memory format, device, dtype, backward), where
        backward = grad mode on and ``x`` or one of ``params`` requires grad. Measured on a detached copy of
        ``x``; cached afterwards."""
        trainable = [t for t in params if t is not None and t.requires_grad]
        backward = torch.is_grad_enabled() and (x.requires_grad or bool(trainable))
        key = (config, *input_key(x, backward))
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        probe = x.detach().requires_grad_(x.requires_grad and backward)
        calls = {name: (lambda fn=fn: fn(probe)) for name, fn in forms().items()}
        return self.choose(key, calls, x.device, [probe, *trainable] if backward else [])

    def choose(self, key: Hashable, forms: Mapping[str, Callable[[], torch.Tensor]], device: torch.device,
               wrt: Sequence[torch.Tensor] = ()) -> str:
        """The form with the smallest minimum time on this key, measured the first time the key is seen.

        ``forms``: name → zero-argument call computing the output; ``wrt``: tensors requiring grad whose
        gradients a training step would compute (empty: forward only, timed under ``no_grad``)."""
        if key in self.cache:
            return self.cache[key]
        if not forms:
            raise ValueError(f"forms={forms!r} must name at least one form to choose from ({self.family})")
        if _UNTIMED[0]:
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

        best = {name: float("inf") for name in forms}
        for fn in forms.values():
            run(fn)  # warm-up: allocations, kernel selection, weight reorders
        started, rounds = time.perf_counter(), 0
        while rounds < self.max_rounds and (rounds < self.min_rounds
                                            or time.perf_counter() - started < self.min_seconds):
            for name in round_order(list(forms), rounds):
                best[name] = min(best[name], timed(forms[name]))
            rounds += 1
        self.measurements += 1
        fastest = min(best, key=best.__getitem__)
        if self.prefer in best and best[self.prefer] <= (1 + self.margin) * best[fastest]:
            fastest = self.prefer  # a near tie: t_prefer ≤ (1 + margin)·t_fastest keeps the preferred form
        self.cache[key] = fastest
        return self.cache[key]
