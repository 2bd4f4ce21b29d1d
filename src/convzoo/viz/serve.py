"""``convzoo serve``: a local, offline web explorer. The page (``static/explorer.html`` + ``explorer.js``, plain
JavaScript and SVG, nothing fetched from elsewhere) draws client-side from JSON that the server computes with the
real layer: shapes, params and MACs (``convzoo.cost``), the connectivity (autograd, ``viz.connectivity``) and the
kernel taps an output reads (the one-hot-kernel Jacobian of ``viz.taps``, one output row at a time).

The explorer's limits (the README states the same):

* each argument within ``spec.LIMITS`` (size: 1–48 for 1-D, 1–24 for 2-D, 1–8 for 3-D);
* every drawn step (the whole layer, or each stage) links at most ``BUDGET`` = 2**22 (input element, output
  element) pairs, so that its connectivity is computed in seconds;
* the layer's own checks (groups divide the channels, the kernel fits the padded input, ...).

The page offers only values that pass them (``choices``), so it never shows an error state.

API (GET, JSON):
``/api/families`` → [{name, title, summary, article, dims, params}];
``/api/state?<any query>`` → {state, query, notes}: the nearest valid state (unknown or impossible values dropped,
each drop explained in ``notes``) — how the page reads a hand-edited URL;
``/api/layer?<state>`` → numbers, ``choices`` (per control: the values that keep the state valid), maps (shapes)
and links (steps); HTTP 400 with {"error": ...} for an invalid state;
``/api/links?<state>`` → per link, the dependency sets (patterns, see ``encode_deps``);
``/api/taps?<state>&link=L&out=N`` → the inputs output N of link L reads, each with its kernel tap and weight;
``/api/taps?<state>&link=L&in=N`` → the outputs that read input N, each with the tap through which it does.
State: ``family``, ``view`` (layer | stages) and the integer arguments ``dim, in_channels, out_channels, kernel,
size`` and the family's own (``spec.OPTIONAL``); a missing argument takes the family's default.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..arithmetic.cost import cost
from ..registry import families
from ..registry import family as get_family
from .connectivity import connectivity, prepare
from .spec import DEFAULT_SIZE, OPTIONAL, LayerSpec, accepted, describe, limit

BUDGET = 2**22  # (input element, output element) pairs per drawn step
BASIC = ("dim", "in_channels", "out_channels", "kernel", "size")
VIEWS = ("layer", "stages")
SEED = 0
EPS = 1e-9  # a read coefficient below this is round-off (float64), as in viz.taps
STATIC = ("explorer.html", "explorer.js", "explorer.css")
State = dict[str, Any]  # {"family": str, "view": str, <argument>: int, ...}; absent argument = default


@lru_cache(maxsize=None)
def accepted_args(name: str) -> tuple[str, ...]:
    return tuple(accepted(name))


@lru_cache(maxsize=1)
def family_list() -> list[dict[str, Any]]:
    return [{"name": f.name, "title": f.title, "summary": f.summary, "article": f.article, "dims": list(f.dims),
             "params": list(accepted_args(f.name))} for f in families()]


def controls(state: State) -> list[str]:
    """The state's controls in cascade order: a later control's choices depend on the earlier ones."""
    return ["view", *BASIC, *accepted_args(state["family"])]


def default_dim(name: str) -> int:
    dims = get_family(name).dims
    return 2 if 2 in dims else dims[0]


def layer_spec(state: State) -> LayerSpec:
    """The LayerSpec of a state. A missing out_channels equals in_channels (valid for every family)."""
    name = state["family"]
    in_channels = state.get("in_channels", 4)
    options = {k: v for k, v in state.items() if k in OPTIONAL}
    return LayerSpec(name, in_channels, state.get("out_channels", in_channels), state.get("kernel", 3),
                     state.get("dim", default_dim(name)), state.get("size"), options)


def query_of(state: State) -> str:
    """The URL query of a state: family first, then the explicit values in control order."""
    items = [("family", state["family"])]
    items += [(k, state[k]) for k in controls(state) if k in state and not (k == "view" and state[k] == "layer")]
    return urlencode(items)


def read_query(query: dict[str, list[str]], extra: Sequence[str] = ()) -> State:
    """A query string's state, strictly: ValueError naming an unknown, missing or non-integer parameter."""
    state: State = {}
    known = ("family", "view", *BASIC, *OPTIONAL, *extra)
    for key, items in query.items():
        if key not in known:
            raise ValueError(f"unknown parameter {key!r}; known: {', '.join(known)}")
        raw = items[-1].strip()
        if raw == "" or key in extra:
            continue
        if key in ("family", "view"):
            state[key] = raw
            continue
        try:
            state[key] = int(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r} must be an integer") from None
    if "family" not in state:
        raise ValueError("missing parameter 'family'")
    get_family(state["family"])  # ValueError listing the families
    if state.get("view", "layer") not in VIEWS:
        raise ValueError(f"view={state['view']!r} is unknown; choose one of {', '.join(VIEWS)}")
    return state


# --- what a state draws: maps (tensors) linked by steps ----------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One drawn step: map ``src`` → map ``dst`` by ``fn`` (the whole layer, or one main stage)."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    module: nn.Module | None
    sides: tuple[Any, ...]  # the side stages (Stage) feeding this step


def declared_stages(module: nn.Module) -> list[Any] | None:
    """The layer's ``stages()`` (the layer contract), or None when it declares none."""
    method = getattr(module, "stages", None)
    if not callable(method):
        return None
    try:
        return list(method())
    except NotImplementedError:
        return None


def steps_of(module: nn.Module, view: str) -> list[Step]:
    if view == "layer":
        return [Step(type(module).__name__, module, module, ())]
    stages = declared_stages(module)
    main = [s for s in stages or [] if not s.side]
    if stages is None or (len(main) < 2 and len(main) == len(stages)):
        raise ValueError(f"view='stages': {type(module).__name__} declares no stages to show apart; use view=layer")
    steps, sides = [], []
    for stage in stages:
        if stage.side:
            sides.append(stage)
        else:
            steps.append(Step(stage.name, stage.fn, stage.module, tuple(sides)))
            sides = []
    return steps


@dataclass(frozen=True)
class Plan:
    spec: LayerSpec
    shapes: tuple[tuple[int, ...], ...]  # the maps: input, [intermediate...], output; no batch dim


def _key(state: State) -> str:
    return json.dumps(state, sort_keys=True)


@lru_cache(maxsize=4096)
def _plan(key: str) -> Plan:
    state = json.loads(key)
    spec = layer_spec(state).validate()
    with torch.no_grad():
        module = spec.build(device="meta")
        x = torch.zeros(1, *spec.input_shape, device="meta")
        shapes = [tuple(spec.input_shape)]
        for step in steps_of(module, state.get("view", "layer")):
            x = step.fn(x)
            shapes.append(tuple(x.shape[1:]))
    for (a, b) in zip(shapes, shapes[1:]):
        if min(b) < 1:
            raise ValueError(f"the output shape {b} is empty: choose a smaller kernel, stride or dilation")
        pairs = math.prod(a) * math.prod(b)
        if pairs > BUDGET:
            raise ValueError(f"{math.prod(a)} input × {math.prod(b)} output elements = {pairs:,} pairs exceeds the "
                             f"explorer's budget of {BUDGET:,} per step: choose fewer channels or a smaller size")
    return Plan(spec, tuple(shapes))


def plan(state: State) -> Plan:
    """Validate a state (ValueError with the rule it breaks) and give the shapes of the maps it draws."""
    try:
        return _plan(_key(state))
    except (TypeError, RuntimeError, NotImplementedError, IndexError) as error:  # the layer's own checks
        raise ValueError(str(error).splitlines()[0]) from None


@lru_cache(maxsize=65536)
def _valid(key: str) -> bool:
    try:
        plan(json.loads(key))
        return True
    except ValueError:
        return False


def valid(state: State) -> bool:
    return _valid(_key(state))


def _candidates(state: State, name: str) -> list[Any]:
    if name == "view":
        return list(VIEWS)
    if name == "dim":
        return list(get_family(state["family"]).dims)
    lo, hi = limit(name, state.get("dim", default_dim(state["family"])))
    return ([None] if name in OPTIONAL else []) + list(range(lo, hi + 1))


def _with(state: State, name: str, value: Any) -> State:
    new = {k: v for k, v in state.items() if k != name}
    if value is not None and not (name == "view" and value == "layer"):
        new[name] = value
    return new


def choices(state: State) -> dict[str, list[dict[str, Any]]]:
    """Per control, the values the page offers: those that keep the state valid, and those that are valid once
    the later controls go back to their defaults. Each carries the query of the state it leads to. ``kernel`` is
    offered only to families with a window of the caller's choosing (``Family.window``)."""
    order = controls(state)
    result: dict[str, list[dict[str, Any]]] = {}
    for i, name in enumerate(order):
        if name == "kernel" and not get_family(state["family"]).window:
            continue
        options = []
        for value in _candidates(state, name):
            new = _with(state, name, value)
            if not valid(new):
                new = _with({k: v for k, v in state.items() if k not in order[i + 1:]}, name, value)
                if not valid(new):
                    continue
            options.append({"value": value, "query": query_of(new)})
        result[name] = options
    return result


def normalize(raw: dict[str, list[str]]) -> tuple[State, list[str]]:
    """The nearest valid state to a (hand-edited) query: each value that is unknown, not an integer or impossible
    with the earlier ones is dropped (its default used) and explained in a note."""
    notes: list[str] = []
    name = raw.get("family", [""])[-1].strip()
    try:
        get_family(name)
    except ValueError as error:
        if name:
            notes.append(str(error).split(";")[0] + "; showing 'standard'")
        name = "standard"
    state: State = {"family": name}
    wanted: State = {}
    for key, items in raw.items():
        raw_value = items[-1].strip()
        if key == "family" or raw_value == "":
            continue
        if key not in controls(state):
            notes.append(f"{key}={raw_value} is not an argument of {name}; ignored")
        elif key == "view":
            wanted[key] = raw_value
        else:
            try:
                wanted[key] = int(raw_value)
            except ValueError:
                notes.append(f"{key}={raw_value!r} must be an integer; ignored")
    order = [k for k in controls(state) if k in wanted]
    for i, key in enumerate(order):
        trial = _with(state, key, wanted[key])
        rest = {k: wanted[k] for k in order[i + 1:]}
        if valid({**trial, **rest}) or valid(trial):
            state = trial
            continue
        try:
            plan(trial)
            reason = "impossible"
        except ValueError as error:
            reason = str(error)
        notes.append(f"{key}={wanted[key]} dropped: {reason}")
    while not valid(state):  # only if a kept value needed one that was dropped later
        last = [k for k in controls(state) if k in state][-1]
        notes.append(f"{last}={state.pop(last)} dropped: no valid state keeps it")
    return state, notes


# --- the real module and its data ---------------------------------------------------------------------------------


@dataclass
class Live:
    """A state's randomised copy of the real layer (``viz.connectivity.prepare``) and its steps, in float32 (for
    connectivity) and float64 (for taps), and the input each step is evaluated at: the positive random tensor
    that ``connectivity`` itself uses (seed + 1), so that deps and taps of input-dependent layers agree."""

    plan: Plan
    model: nn.Module
    steps: list[Step]
    model64: nn.Module
    steps64: list[Step]
    inputs: list[torch.Tensor]


@contextlib.contextmanager
def side_branches_fixed(model: nn.Module) -> Iterator[None]:
    """Hold the layer's side stages (attention, offsets) fixed at their value: a whole-layer picture then shows
    what the main path reads, and the side branch is drawn as its own stage (what viz.taps does too)."""
    handles = []
    for stage in declared_stages(model) or []:
        if stage.side and isinstance(stage.module, nn.Module):
            handles.append(stage.module.register_forward_hook(
                lambda _m, _i, out: out.detach() if isinstance(out, torch.Tensor) else out))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


_LOCK = threading.Lock()  # functional_call swaps a module's parameters: one taps computation at a time


@lru_cache(maxsize=16)
def _live(key: str) -> Live:
    state = json.loads(key)
    the_plan = plan(state)
    spec = the_plan.spec
    view = state.get("view", "layer")
    model = prepare(spec.build(), spec.input_shape, seed=SEED)
    model64 = copy.deepcopy(model).to(torch.float64)
    inputs = [torch.rand(1, *shape, generator=torch.Generator().manual_seed(SEED + 1)) + 0.25
              for shape in the_plan.shapes[:-1]]
    return Live(the_plan, model, steps_of(model, view), model64, steps_of(model64, view), inputs)


def live(state: State) -> Live:
    return _live(_key(state))


def encode_deps(mask: torch.Tensor) -> dict[str, Any]:
    """Compact dependency sets of a (n_out, C_in, S) bool mask: ``patterns`` = distinct sets of spatial positions
    (flat indices into one input channel), ``rows`` = distinct per-input-channel pattern lists (-1: channel not
    read), ``row_of[n]`` = output n's row. Input (c, s) is read by output n iff s ∈ patterns[rows[row_of[n]][c]]."""
    n_out, c_in, s = mask.shape
    flat = mask.reshape(n_out * c_in, s).numpy()
    unique, inverse = np.unique(np.packbits(flat, axis=1), axis=0, return_inverse=True)
    patterns = [np.flatnonzero(np.unpackbits(u)[:s]).tolist() for u in unique]
    ids = inverse.reshape(n_out, c_in).astype(np.int64)
    for pid, pattern in enumerate(patterns):
        if not pattern:
            ids[ids == pid] = -1
    rows, row_of = np.unique(ids, axis=0, return_inverse=True)
    return {"patterns": patterns, "rows": rows.tolist(), "row_of": row_of.reshape(-1).tolist()}


def decode_deps(deps: dict[str, Any], out_index: int, spatial: int) -> list[int]:
    """The flat input indices output ``out_index`` reads (what the page computes from ``encode_deps``)."""
    row = deps["rows"][deps["row_of"][out_index]]
    return sorted(c * spatial + s for c, pid in enumerate(row) if pid >= 0 for s in deps["patterns"][pid])


def kernel_param(module: nn.Module | None, spatial_dims: int) -> str | None:
    """The module's own kernel parameter ((C_out, C_in, *K) or (K, C_out, C_in, *K)), None if it has none."""
    if module is None:
        return None
    from .taps import kernel_parameter

    try:
        return kernel_parameter(module, spatial_dims)
    except ValueError:
        return None


def link_data(state: State) -> list[dict[str, Any]]:
    """Per step: its connectivity (``encode_deps``), kernel shape and side stages' outputs."""
    lv = live(state)
    out = []
    with side_branches_fixed(lv.model):
        for step, x in zip(lv.steps, lv.inputs):
            shape = tuple(x.shape[1:])
            fn = step.fn
            mask = connectivity(lambda t: fn(t), shape, seed=SEED, randomise=False).mask
            n_out = math.prod(mask.shape[: mask.dim() - len(shape)])
            sides = []
            for side in step.sides:
                with torch.no_grad():
                    value = side.fn(x)
                flat = value.detach().reshape(-1)
                sides.append({"name": side.name, "shape": list(value.shape[1:]),
                              "values": [round(float(v), 4) for v in flat] if flat.numel() <= 64 else None})
            name = kernel_param(step.module, len(shape) - 1)
            kernel = list(getattr(step.module, name).shape[-(len(shape) - 1):]) if name else None
            held = [s.name for s in declared_stages(lv.model) or [] if s.side and isinstance(s.module, nn.Module)] \
                if not step.sides and len(lv.steps) == 1 else []
            out.append({"name": step.name, "kernel_shape": kernel, "sides": sides, "pad": None, "held": held,
                        "deps": encode_deps(mask.reshape(n_out, shape[0], math.prod(shape[1:])))})
    for i, link in enumerate(out):  # a padding ring where the layer is a sliding window (checked at the centre)
        if link["kernel_shape"]:
            out_shape = lv.plan.shapes[i + 1]
            centre = int(np.ravel_multi_index((0, *(s // 2 for s in out_shape[1:])), out_shape))
            if _taps_json(_key(state), i, centre)["padded"] is not None:
                link["pad"] = _pairs(lv.steps[i].module, len(out_shape) - 1)
    return out


def tap_coefficients(module: nn.Module, x: torch.Tensor, outs: Sequence[int], parameter: str,
                     column: int | None = None, block: int = 256) -> torch.Tensor:
    """Float64 (len(outs), T, n): the coefficient with which kernel tap t of output ``outs[b]`` (flat) reads each
    input element (n = C_in·prod(S)), or only input ``column`` (n = 1) — viz.taps's definition (the Jacobian
    with the one-hot kernel e_t minus with the zero kernel), for the given output rows only. Rows are computed
    as viz.matrix.jacobian does, one sample of a replicated batch per output, so a hover costs T + 1 backward
    passes whatever the number of rows."""
    kernel = getattr(module, parameter)
    n_taps = math.prod(kernel.shape[-(x.dim() - 2):])

    def rows(weight: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        inp = x.detach().expand(len(chosen), *x.shape[1:]).clone().requires_grad_(True)
        y = functional_call(module, {parameter: weight}, (inp,)).reshape(len(chosen), -1)
        (grad,) = torch.autograd.grad(y.gather(1, chosen[:, None]).sum(), inp, allow_unused=True)
        grad = torch.zeros_like(inp) if grad is None else grad
        flat = grad.reshape(len(chosen), -1)
        return flat if column is None else flat[:, column: column + 1]

    blocks = []
    for start in range(0, len(outs), block):
        chosen = torch.tensor(list(outs[start: start + block]), dtype=torch.long)
        base = rows(torch.zeros_like(kernel), chosen)
        per_tap = []
        for t in range(n_taps):
            one_hot = torch.zeros_like(kernel).reshape(-1, n_taps)
            one_hot[:, t] = 1
            per_tap.append(rows(one_hot.reshape(kernel.shape), chosen) - base)
        blocks.append(torch.stack(per_tap, dim=1))
    coef = torch.cat(blocks)
    return torch.where(coef.abs() > EPS, coef, torch.zeros_like(coef))


def _as_tuple(value: Any, dims: int) -> tuple[int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * dims
    if isinstance(value, (tuple, list)) and len(value) == dims and all(isinstance(v, int) for v in value):
        return tuple(value)
    return None


def _pairs(module: nn.Module | None, dims: int) -> list[list[int]] | None:
    """The module's (before, after) padding per spatial dim: ``padding_pairs`` (the layer contract), else an
    integer ``padding`` applied to both sides."""
    pairs = getattr(module, "padding_pairs", None)
    if pairs is not None:
        return [[int(lo), int(hi)] for lo, hi in pairs]
    padding = _as_tuple(getattr(module, "padding", None), dims)
    return [[p, p] for p in padding] if padding is not None else None


def window(module: nn.Module, shape_in: Sequence[int], shape_out: Sequence[int], kernel: Sequence[int],
           out_pos: Sequence[int], reads: dict[int, set[tuple[int, ...]]]) -> list[dict[str, Any]] | None:
    """The padding cells a sliding window reads, when the module is one: its real reads (``reads``: tap → input
    positions) must be exactly ``o·stride − pad_before + t·dilation`` (t mirrored for a true convolution) for
    every tap that lands inside the input. None when the module's attributes or its reads say otherwise."""
    dims = len(kernel)
    stride = _as_tuple(getattr(module, "stride", None), dims)
    dilation = _as_tuple(getattr(module, "dilation", None), dims)
    pairs = _pairs(module, dims)
    if stride is None or dilation is None or pairs is None:
        return None
    taps = list(np.ndindex(*kernel))
    for mirrored in (False, True):
        padded, ok = [], True
        for t, tap in enumerate(taps):
            k = tuple(kk - 1 - tt for kk, tt in zip(kernel, tap)) if mirrored else tap
            pos = tuple(o * s - lo + kk * d for o, s, (lo, _), kk, d in zip(out_pos, stride, pairs, k, dilation))
            inside = all(0 <= p < n for p, n in zip(pos, shape_in[1:]))
            if inside != (pos in reads.get(t, set())) or len(reads.get(t, set()) - {pos}) > 0:
                ok = False
                break
            if not inside:
                padded.append({"pos": list(pos), "tap": t})
        if ok:
            return padded
    return None


@lru_cache(maxsize=1024)
def _taps_json(key: str, link: int, out_index: int) -> dict[str, Any]:
    state = json.loads(key)
    lv = live(state)
    if not 0 <= link < len(lv.steps):
        raise ValueError(f"link={link} is out of range: this view has links 0 to {len(lv.steps) - 1}")
    step, x = lv.steps64[link], lv.inputs[link].to(torch.float64)
    shape_in = tuple(x.shape[1:])
    shape_out = lv.plan.shapes[link + 1]
    n_out = math.prod(shape_out)
    if not 0 <= out_index < n_out:
        raise ValueError(f"out={out_index} is out of range: link {link} has outputs 0 to {n_out - 1}")
    spatial = len(shape_in) - 1
    name = kernel_param(step.module, spatial)
    if name is None or step.module is None:
        return {"kernel_shape": None, "reads": [], "padded": None, "used": [],
                "note": f"{step.name} has no kernel of its own: no taps to show"}
    with _LOCK, side_branches_fixed(lv.model64):
        coef = tap_coefficients(step.module, x, [out_index], name)[0]
    kernel = tuple(getattr(step.module, name).shape[-spatial:])
    linked = coef.abs() > EPS
    reads = []
    per_tap: dict[int, set[tuple[int, ...]]] = {}
    plane = math.prod(shape_in[1:])
    for i in torch.nonzero(linked.any(0)).reshape(-1).tolist():
        t = int(coef[:, i].abs().argmax())
        reads.append([i, t, round(float(coef[t, i]), 4), int(linked[:, i].sum())])
        per_tap.setdefault(t, set()).add(tuple(int(v) for v in np.unravel_index(i % plane, shape_in[1:])))
    out_pos = tuple(int(v) for v in np.unravel_index(out_index, shape_out))[1:]
    padded = window(step.module, shape_in, shape_out, kernel, out_pos, per_tap)
    used = sorted(set(torch.nonzero(linked.any(1)).reshape(-1).tolist()) | {p["tap"] for p in padded or []})
    return {"kernel_shape": list(kernel), "reads": reads, "padded": padded, "used": used, "note": ""}


MAX_READERS = 512  # outputs coloured by tap when an input is hovered: T + 1 backward passes of this batch


@lru_cache(maxsize=1024)
def _column_json(key: str, link: int, in_index: int) -> dict[str, Any]:
    state = json.loads(key)
    lv = live(state)
    if not 0 <= link < len(lv.steps):
        raise ValueError(f"link={link} is out of range: this view has links 0 to {len(lv.steps) - 1}")
    step, x = lv.steps64[link], lv.inputs[link].to(torch.float64)
    shape_in = tuple(x.shape[1:])
    if not 0 <= in_index < math.prod(shape_in):
        raise ValueError(f"in={in_index} is out of range: link {link} has inputs 0 to {math.prod(shape_in) - 1}")
    name = kernel_param(step.module, len(shape_in) - 1)
    if name is None or step.module is None:
        return {"kernel_shape": None, "reads": [], "used": [],
                "note": f"{step.name} has no kernel of its own: no taps to show"}
    deps = _links_json(key)["links"][link]["deps"]
    channel, position = divmod(in_index, math.prod(shape_in[1:]))
    sets = [set(p) for p in deps["patterns"]]
    readers = [o for o, row in enumerate(deps["row_of"]) if (pid := deps["rows"][row][channel]) >= 0
               and position in sets[pid]]
    if len(readers) > MAX_READERS:
        return {"kernel_shape": None, "reads": [], "used": [],
                "note": f"{len(readers)} outputs read it: too many to colour by tap"}
    with _LOCK, side_branches_fixed(lv.model64):
        coef = tap_coefficients(step.module, x, readers, name, column=in_index)[:, :, 0]  # (readers, T)
    reads = []
    for o, row in zip(readers, coef):
        linked = row.abs() > EPS
        if linked.any():
            t = int(row.abs().argmax())
            reads.append([o, t, round(float(row[t]), 4), int(linked.sum())])
    kernel = tuple(getattr(step.module, name).shape[-(len(shape_in) - 1):])
    used = torch.nonzero((coef.abs() > EPS).any(0)).reshape(-1).tolist()
    return {"kernel_shape": list(kernel), "reads": reads, "used": used, "note": ""}


def column_json(state: State, link: int, in_index: int) -> dict[str, Any]:
    """Input ``in_index`` (flat over (C, *S)) of step ``link``: ``reads`` = [output flat index, the tap through
    which it reads this input (the strongest), its coefficient, how many taps do] — the stamp of a transposed
    conv, the window positions of a conv."""
    plan(state)
    return _column_json(_key(state), link, in_index)


def taps_json(state: State, link: int, out_index: int) -> dict[str, Any]:
    """Output ``out_index`` (flat over (C, *S)) of step ``link``: ``reads`` = [input flat index, tap (the strongest
    when several read it), its coefficient, how many taps read it]; ``padded`` = padding cells its window reads
    (when the module is a plain sliding window), else None; ``used`` = the taps that read anything."""
    plan(state)
    return _taps_json(_key(state), link, out_index)


def _formula(module: nn.Module) -> str:
    """The layer's ``cost`` docstring, its hard line breaks joined (paragraphs kept)."""
    doc = (inspect.getdoc(getattr(module, "cost", None)) or "").strip()
    lines: list[str] = []
    for line in doc.splitlines():
        line = line.strip()
        if lines and line and lines[-1] and not line.startswith(("-", "*", "•")):
            lines[-1] += " " + line
        else:
            lines.append(line)
    return "\n".join(lines)


def _resolved(module: nn.Module, names: Sequence[str]) -> dict[str, Any]:
    """What the layer made of each argument (shown as 'auto (…)' for a default); None when it does not say."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(module, name, None)
        if name == "padding" and getattr(module, "padding_pairs", None) is not None:
            value = [v for pair in module.padding_pairs for v in pair]  # shown as one int when all sides agree
        if isinstance(value, (tuple, list)) and value and all(v == value[0] for v in value):
            value = value[0]
        out[name] = value if isinstance(value, int) and not isinstance(value, bool) else None
    return out


@lru_cache(maxsize=256)
def _layer_json(key: str) -> dict[str, Any]:
    state = json.loads(key)
    the_plan = plan(state)
    spec = the_plan.spec
    module = spec.build()
    report = cost(module, (1, *spec.input_shape))
    fam = get_family(spec.family)
    view = state.get("view", "layer")
    steps = steps_of(module, view)
    names = accepted_args(spec.family)
    effective = {"view": view, "dim": spec.dim, "in_channels": spec.in_channels, "out_channels": spec.out_channels,
                 "kernel": spec.kernel, "size": spec.size or DEFAULT_SIZE[spec.dim],
                 **_resolved(module, names), **{k: v for k, v in spec.options.items()}}
    return {
        "state": state, "query": query_of(state), "effective": effective, "choices": choices(state),
        "family": fam.name, "title": fam.title, "summary": fam.summary, "article": fam.article,
        "layer": f"{type(module).__name__}({module.extra_repr() or describe(module)})",
        "input_shape": [1, *spec.input_shape], "output_shape": list(report.output_shape),
        "params": report.params, "macs": report.macs, "formula": _formula(module),
        "maps": [list(s) for s in the_plan.shapes], "links": [s.name for s in steps],
        "budget": BUDGET,
    }


def layer_json(state: State) -> dict[str, Any]:
    plan(state)
    try:
        return _layer_json(_key(state))
    except (TypeError, RuntimeError) as error:
        raise ValueError(str(error).splitlines()[0]) from None


def links_json(state: State) -> dict[str, Any]:
    plan(state)
    return _links_json(_key(state))


@lru_cache(maxsize=64)
def _links_json(key: str) -> dict[str, Any]:
    return {"links": link_data(json.loads(key))}


# --- HTTP ---------------------------------------------------------------------------------------------------------

CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}


def static_file(name: str) -> bytes:
    return resources.files("convzoo.viz").joinpath("static", name).read_bytes()


class Handler(BaseHTTPRequestHandler):
    server_version = "convzoo"

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page moved on before the answer came
            pass

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data, separators=(",", ":")).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        name = "explorer.html" if url.path in ("/", "/index.html") else url.path.lstrip("/")
        if name in STATIC:
            return self._send(200, static_file(name), CONTENT_TYPES[name[name.rindex("."):]])
        try:
            if url.path == "/api/families":
                return self._json(200, family_list())
            if url.path == "/api/state":
                state, notes = normalize(query)
                return self._json(200, {"state": state, "query": query_of(state), "notes": notes})
            if url.path == "/api/layer":
                return self._json(200, layer_json(read_query(query)))
            if url.path == "/api/links":
                return self._json(200, links_json(read_query(query)))
            if url.path == "/api/taps":
                state = read_query(query, extra=("link", "out", "in"))
                link = _int_arg(query, "link")
                if "in" in query:
                    return self._json(200, column_json(state, link, _int_arg(query, "in")))
                return self._json(200, taps_json(state, link, _int_arg(query, "out")))
        except ValueError as error:
            return self._json(400, {"error": str(error)})
        except Exception as error:  # a bug, not the user's request: say so instead of dropping the connection
            self.log_error("internal error on %s: %r", self.path, error)
            return self._json(500, {"error": f"internal error: {type(error).__name__}: {error}"})
        return self._json(404, {"error": f"no such path {url.path!r}; try / or /api/families"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


def _int_arg(query: dict[str, list[str]], name: str) -> int:
    raw = query.get(name, [""])[-1].strip()
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} must be an integer") from None


def make_server(host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    """The explorer's HTTP server (not started). ValueError for a port outside 1–65535 (0: any free port)."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port={port!r} is out of range: must be between 1 and 65535")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.quiet = quiet  # type: ignore[attr-defined]
    return server


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    server = make_server(host, port)
    print(f"convzoo explorer on http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
