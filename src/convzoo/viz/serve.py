"""``convzoo serve``: a local, offline web explorer. The page (``static/explorer.html`` + ``explorer.js``, plain
JavaScript and SVG, nothing fetched from elsewhere) draws client-side from JSON that the server computes with the
real layer: shapes, params and MACs (``convzoo.cost``), the connectivity (autograd, ``viz.connectivity``) and the
kernel taps an output reads (the one-hot-kernel Jacobian of ``viz.taps``, one output row at a time).

The explorer's limits (docs/guide/pictures-and-explorer.md states the same; a test compares them):

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
import inspect
import json
import math
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import numpy as np
import torch
from torch import nn

from ..arithmetic.cost import cost
from ..layers.form_choice import untimed
from ..registry import families
from ..registry import family as get_family
from .connectivity import prepare
from .explain import (
    EPS,
    KernelRows,
    Terms,
    crop_terms,
    direct_cells,
    fit_step_geometry,
    is_fractional,
    jacobian_rows,
    kernel_rows,
    lattice,
    palette,
    rounded,
    sampling_points,
    scatter_reads,
    signed_fills,
    tap_palette,
    window_terms,
)
from .irregular import extended_means, extended_reach
from .matrix import jacobian
from .reads import illustrative_copy
from .spec import (
    BUILD_SEED,
    DEFAULT_SIZE,
    OPTIONAL,
    LayerSpec,
    accepted,
    describe,
    limit,
)
from .window import Geometry, drawn_padding

BUDGET = 2**22  # (input element, output element) pairs per drawn step
BASIC = ("dim", "in_channels", "out_channels", "kernel", "size")
VIEWS = ("layer", "stages")
SAMPLES = 8  # input samples to choose from ("sample"): the values a dynamic layer's attention is computed from
# 6 channels, as the static pictures (`convzoo viz`): the registry's default groups, gcd(C_in, C_out, 4), is then 2,
# so grouped is not depthwise, a channel shuffle is not the identity, HetConv's p is 2 and MixConv has 3 groups.
DEFAULT_CHANNELS = 6
# Where the explorer starts a layer argument other than at the layer's default, by the argument's name (never the
# family's): a softmax temperature at 1, the trained regime (DY-CNN anneals 30 → 1), where attention chooses.
EXPLORER_DEFAULTS = {"temperature": 1}
SEED = 0
STEER_SEEDS = 8  # initialisations tried for the steering side branches (``steering_init``)
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
    """The state's controls in cascade order: a later control's choices depend on the earlier ones; the input
    ``sample`` last (it changes the values, never what is valid)."""
    return ["view", *BASIC, *accepted_args(state["family"]), "sample"]


@cache
def default_view(name: str) -> str:
    """'stages' for a layer that has no kernel of its own (a composite) and declares two or more main stages —
    its mechanism is the sequence (depthwise → pointwise, conv → pixel shuffle, grouped conv → shuffle) — else
    'layer'. Read from the layer at its defaults (the layer contract), not from the family's name."""
    try:
        spec = layer_spec({"family": name}).validate()
        module = spec.build(device="meta")
    except (ValueError, TypeError, RuntimeError):
        return "layer"
    stages = declared_stages(module) or []
    if kernel_param(module, spec.dim) is None and sum(not s.side for s in stages) >= 2:
        return "stages"
    return "layer"


def view_of(state: State) -> str:
    return state.get("view") or default_view(state["family"])


def default_of(state: State, name: str) -> Any:
    """The value a control takes when the state does not name it (None: the family's own default)."""
    return default_view(state["family"]) if name == "view" else 0 if name == "sample" else None


def default_dim(name: str) -> int:
    dims = get_family(name).dims
    return 2 if 2 in dims else dims[0]


def layer_spec(state: State) -> LayerSpec:
    """The LayerSpec of a state. A missing out_channels equals in_channels (valid for every family)."""
    name = state["family"]
    in_channels = state.get("in_channels", DEFAULT_CHANNELS)
    options = {k: v for k, v in EXPLORER_DEFAULTS.items() if k in accepted_args(name)}
    options.update({k: v for k, v in state.items() if k in OPTIONAL})
    return LayerSpec(name, in_channels, state.get("out_channels", in_channels), state.get("kernel", 3),
                     state.get("dim", default_dim(name)), state.get("size"), options)


def query_of(state: State) -> str:
    """The URL query of a state: family first, then the explicit values in control order."""
    items = [("family", state["family"])]
    items += [(k, state[k]) for k in controls(state) if k in state and state[k] != default_of(state, k)]
    return urlencode(items)


def read_query(query: dict[str, list[str]], extra: Sequence[str] = ()) -> State:
    """A query string's state, strictly: ValueError naming an unknown, missing or non-integer parameter."""
    state: State = {}
    known = ("family", "view", *BASIC, *OPTIONAL, "sample", *extra)
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
    if not 0 <= state.get("sample", 0) < SAMPLES:
        raise ValueError(f"sample={state['sample']} is out of range: must be between 0 and {SAMPLES - 1}")
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


def _shape_key(state: State) -> str:
    """The key of what a state draws, whatever its input sample (shapes and validity do not depend on it)."""
    return _key({"view": view_of(state), **{k: v for k, v in state.items() if k not in ("sample", "view")}})


@lru_cache(maxsize=4096)
def _plan(key: str) -> Plan:
    state = json.loads(key)
    spec = layer_spec(state).validate()
    # On the CPU, at the explorer's sizes (capped): a few ms where meta tensors' Python decompositions took up to
    # 30 ms per layer (a deformable conv), and the menus validate a hundred states per family.
    with torch.no_grad(), computing(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a hundred candidate states: the menus say what is valid
        module = spec.build()
        x = torch.zeros(1, *spec.input_shape)
        shapes = [tuple(spec.input_shape)]
        for step in steps_of(module, state["view"]):
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
        return _plan(_shape_key(state))
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
    return _valid(_shape_key(state))


def _candidates(state: State, name: str) -> list[Any]:
    if name == "view":
        return list(VIEWS)
    if name == "dim":
        return list(get_family(state["family"]).dims)
    if name == "sample":
        return list(range(SAMPLES))
    lo, hi = limit(name, state.get("dim", default_dim(state["family"])))
    return ([None] if name in OPTIONAL else []) + list(range(lo, hi + 1))


def _with(state: State, name: str, value: Any) -> State:
    new = {k: v for k, v in state.items() if k != name}
    if value is not None and value != default_of(state, name):
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
    """A state's randomised float32 copy of the real layer (``viz.connectivity.prepare``: positive weights, so no
    read can cancel to an exact zero) and its steps, the input sample and each step's input: the layer's input,
    then each step's output (``chain``). Sample 0 is the positive random tensor that ``connectivity`` itself
    uses (seed + 1). ``steering``: the side stages' modules held fixed in the pictures (attention, offsets,
    generated kernels), not those that are parallel branches of the output (RepVGG's, ACNet's: their output has the layer's output shape, and they are what it sums)."""

    plan: Plan
    model: nn.Module
    steps: list[Step]
    inputs: list[torch.Tensor]  # one per step
    output: torch.Tensor  # the last step's output
    steering: list[nn.Module]


def sample_input(shape: Sequence[int], sample: int) -> torch.Tensor:
    """Input sample ``sample`` (1, *shape), positive: 0.25 + uniform [0, 1) (seed + 1 + sample), and from sample 1
    on each channel scaled by its own gain in [0.25, 2) — so samples differ in what a global pooling sees."""
    gen = torch.Generator().manual_seed(SEED + 1 + sample)
    x = torch.rand(1, *shape, generator=gen) + 0.25
    if sample:
        x = x * (0.25 + 1.75 * torch.rand(1, shape[0], *[1] * (len(shape) - 1), generator=gen))
    return x


def steering_modules(model: nn.Module, x: torch.Tensor, output_shape: Sequence[int]) -> list[nn.Module]:
    """The modules of the side stages that steer the main path: those whose output is not shaped like the layer's
    output (a branch shaped like the output is summed into it, and is part of what the layer reads)."""
    found = []
    for stage in declared_stages(model) or []:
        if stage.side and isinstance(stage.module, nn.Module):
            with torch.no_grad():
                value = stage.fn(x)
            if not (isinstance(value, torch.Tensor) and tuple(value.shape[1:]) == tuple(output_shape)):
                found.append(stage.module)
    return found


def steering_init(spec: LayerSpec, model: nn.Module, steering: Sequence[nn.Module]) -> int | None:
    """Give the steering branches of ``model`` the layer's own initialisation (not ``prepare``'s positive weights,
    which make every attention nearly uniform and every offset point the same way), zero-initialised ones filled
    with seeded random values as the static pictures do (``reads.illustrative_copy``): from the first seed
    (0, 1, …) for which their output differs between input samples and moves, at every sample, when that sample's
    values move a little — with a dead ReLU a branch steers the same way whatever the input (an involution then
    applies one kernel at every position). Returns the seed (the last one tried if none qualifies), None without
    steering branches. The main path keeps its positive weights: its reads are what the pictures draw, and
    positive weights cannot cancel one."""
    if not steering:
        return None
    names = {id(m): n for n, m in model.named_modules()}
    paths = [names[id(m)] for m in steering]
    stages = [s for s in declared_stages(model) or [] if s.side and any(s.module is m for m in steering)]
    samples = [sample_input(spec.input_shape, s) for s in range(4)]
    gen = torch.Generator().manual_seed(SEED)
    nudged = [x * (1 + 0.2 * torch.rand(x.shape, generator=gen)) for x in samples]  # each value up by 0–20 %
    fam = get_family(spec.family)
    for seed in range(STEER_SEEDS):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(BUILD_SEED + seed)
            built = fam.build(spec.in_channels, spec.out_channels, spec.kernel if fam.window else None, spec.dim,
                              **dict(spec.options))
        source = illustrative_copy(built, spec.input_shape, seed)
        with torch.no_grad():
            for path in paths:
                mine, theirs = model.get_submodule(path), source.get_submodule(path)
                for (_, a), (_, b) in zip(mine.named_parameters(), theirs.named_parameters()):
                    a.copy_(b)
                for (_, a), (_, b) in zip(mine.named_buffers(), theirs.named_buffers()):
                    a.copy_(b)
            outputs, moved = [[torch.cat([torch.as_tensor(s.fn(x)).reshape(-1) for s in stages]) for x in xs]
                              for xs in (samples, nudged)]
        scale = max(float(outputs[0].abs().max()), 1e-12)
        differ = max(float((o - outputs[0]).abs().max()) for o in outputs[1:]) > 1e-3 * scale
        if differ and all(float((m - o).abs().max()) > 1e-4 * scale for m, o in zip(moved, outputs)):
            return seed
    return seed


@contextlib.contextmanager
def side_branches_fixed(model: nn.Module, modules: Sequence[nn.Module] | None = None,
                        zero: bool = False) -> Iterator[None]:
    """Hold side branches fixed at their value (``modules``; default every declared side stage's module): a
    whole-layer picture then shows what the main path reads, and the side branch is drawn as its own stage (what
    viz.taps does too). ``zero``: they output zeros instead (a deformable conv then reads its regular grid)."""
    if modules is None:
        modules = [s.module for s in declared_stages(model) or [] if s.side and isinstance(s.module, nn.Module)]

    def hold(_m: nn.Module, _i: object, out: object) -> object:
        if not isinstance(out, torch.Tensor):
            return out
        return torch.zeros_like(out) if zero else out.detach()

    handles = [module.register_forward_hook(hold) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


_LOCK = threading.RLock()  # hooks and swapped kernels change a Live's modules: one computation at a time


@contextlib.contextmanager
def computing() -> Iterator[None]:
    """One explorer computation at a time, on one thread, with every layer's eager form fixed (``untimed``): its
    tensors are small (a batch of at most 256 copies of one input), where more threads only contend — on a
    loaded 2-core machine a 6×8×8 conv's backward took 120 ms on 2 threads, 0.3 ms on 1."""
    with _LOCK, untimed():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def chain(steps: Sequence[Step], x: torch.Tensor) -> list[torch.Tensor]:
    """Each step's input, then the last step's output."""
    values = [x]
    with torch.no_grad():
        for step in steps:
            values.append(step.fn(values[-1]))
    return values


@lru_cache(maxsize=16)
def _live(key: str) -> Live:
    state = json.loads(key)
    the_plan = plan(state)
    spec = the_plan.spec
    view = view_of(state)
    with computing():
        model = prepare(spec.build(), spec.input_shape, seed=SEED)
        x = sample_input(spec.input_shape, state.get("sample", 0))
        steering = steering_modules(model, x, the_plan.shapes[-1])
        steering_init(spec, model, steering)
        steps = steps_of(model, view)
        values = chain(steps, x)
    return Live(the_plan, model, steps, values[:-1], values[-1], steering)


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


MAX_BANK = 20_000  # kernel-bank values sent to the page
MAX_SIDE = 64  # side-stage values drawn as bars
MAX_PASSES = 600  # backward passes for one step's filter strip


def side_json(stage: Any, x: torch.Tensor, held: bool) -> dict[str, Any]:
    """A side stage's output on the step's input: its shape and (when small) its values, for bars."""
    with torch.no_grad(), computing():
        value = stage.fn(x)
    parts = value if isinstance(value, (tuple, list)) else [value]
    flat = torch.cat([p.detach().reshape(-1).float() for p in parts if isinstance(p, torch.Tensor)])
    shape = list(value.shape[1:]) if isinstance(value, torch.Tensor) else [int(flat.numel())]
    return {"name": stage.name, "shape": shape, "held": held,
            "values": rounded(flat) if flat.numel() <= MAX_SIDE else None}


def _step_rows(lv: Live, link: int, outs: Sequence[int], zero_side: bool = False) -> KernelRows | None:
    """``explain.kernel_rows`` of step ``link`` (side branches held, or zeroed) for outputs ``outs``; None for a
    step without a kernel of its own. Zeroed: the layer's steering branches and the step's own side stages (a
    stage that samples at offsets held from an earlier stage — DCNv3's — declares them as its side stage)."""
    step, x = lv.steps[link], lv.inputs[link]
    name = kernel_param(step.module, x.dim() - 2)
    if name is None or step.module is None:
        return None
    held = list(lv.steering)
    if zero_side:
        held += [s.module for s in declared_stages(step.module) or []
                 if s.side and isinstance(s.module, nn.Module) and not any(s.module is m for m in held)]
    with computing(), side_branches_fixed(lv.model, held, zero=zero_side):
        return kernel_rows(step.module, x, outs, name, fn=step.fn)


def _centres(shape_out: Sequence[int], block: Sequence[int]) -> list[int]:
    """Flat indices of a ``block`` of positions at the centre of each output channel (channel-major)."""
    spatial = tuple(shape_out[1:])
    start = [max(0, min(s // 2, s - b)) for s, b in zip(spatial, block)]
    offsets = list(np.ndindex(*[min(b, s) for b, s in zip(block, spatial)]))
    return [int(np.ravel_multi_index((j, *(a + o for a, o in zip(start, off))), tuple(shape_out)))
            for j in range(shape_out[0]) for off in offsets]


@lru_cache(maxsize=128)
def _geometry(key: str, link: int, zero_side: bool = False) -> Geometry | None:
    """Step ``link``'s window, fitted to the reads of a lattice of outputs of output channel 0 (``zero_side``: with
    its side branches' output set to zero)."""
    lv = live(json.loads(key))
    shape_in, shape_out = tuple(lv.inputs[link].shape[1:]), lv.plan.shapes[link + 1]
    positions = lattice(shape_out[1:])
    outs = [int(np.ravel_multi_index((0, *p), tuple(shape_out))) for p in positions]
    rows = _step_rows(lv, link, outs, zero_side=zero_side)
    if rows is None:
        return None
    name = kernel_param(lv.steps[link].module, len(shape_in) - 1)
    kernel = tuple(getattr(lv.steps[link].module, name).shape[-(len(shape_in) - 1):])
    return fit_step_geometry(rows.coef, positions, kernel, shape_in, shape_out)


def _regular(key: str, link: int) -> Geometry | None:
    """Step ``link``'s regular window — the one it reads with its side branches at zero (a deformable conv's grid
    before the offsets move it); None for a step without side branches or such a window."""
    lv = live(json.loads(key))
    if not (lv.steering or declared_stages(lv.steps[link].module)):
        return None
    return _geometry(key, link, zero_side=True)


def _extended_row(key: str, link: int, out_index: int, coef: torch.Tensor
                  ) -> tuple[np.ndarray | None, dict[int, tuple[int, ...]] | None]:
    """Output ``out_index`` of step ``link`` (its taps' coefficients ``coef`` (T, n) on the input) read on the input
    extended with zeros (``irregular.extended_means``, (T, C_in, d + 1)): where a tap past the edge samples — and
    its regular window (tap → position, padding included). (None, None) where the extension does not apply (no
    regular window, a side value it cannot hold, reads the extension would change: reflect padding)."""
    g = _regular(key, link)
    if g is None or g.kind != "gather":
        return None, None
    lv = live(json.loads(key))
    step, x = lv.steps[link], lv.inputs[link][0]
    row = tuple(int(v) for v in np.unravel_index(out_index, lv.plan.shapes[link + 1]))
    own = coef.reshape(coef.shape[0], 1, *x.shape)
    with computing():
        found = extended_means(step.module, x, [row], g, kernel_param(step.module, x.dim() - 1), lambda _: own)
    return (None, None) if found is None else (found[:, 0], dict(g.window(row[1:])))


def _points_padding(key: str, link: int) -> list[list[int]] | None:
    """The padding ring drawn around a sampling step's planes: its regular window's (where a border output's grid
    points sit) widened to every cell past the edge that some output's sampling point reads
    (``irregular.extended_reach``), so that every point is drawn on the cells it reads; None where the extension
    does not apply (the points then stay the means of the cells read inside the map)."""
    g = _regular(key, link)
    if g is None or g.kind != "gather":
        return None
    lv = live(json.loads(key))
    step, x = lv.steps[link], lv.inputs[link][0]
    with computing():
        reach = extended_reach(step.module, x, g, kernel_param(step.module, x.dim() - 1))
    if reach is None:
        return None
    return [[max(a, c), max(b, d)] for (a, b), (c, d) in zip(drawn_padding(g, step.module), reach)]


def filters_json(lv: Live, key: str, link: int) -> dict[str, Any] | None:
    """The kernel of every filter of step ``link`` (the strip): with a kernel of its own, W[j, c, t] read as
    ``window_terms`` does at the centre of each output channel (a stride × stride block for a scatter window,
    where one output reads only some taps); without, the Jacobian row of each channel's centre output over what
    it reads (MixConv's 3×3, 5×5, 7×7; a composite's effective kernel)."""
    step, x = lv.steps[link], lv.inputs[link]
    shape_in, shape_out = tuple(x.shape[1:]), lv.plan.shapes[link + 1]
    c_in, dims = shape_in[0], len(shape_in) - 1
    name = kernel_param(step.module, dims)
    if name is None:
        outs = _centres(shape_out, (1,) * dims)
        with computing(), side_branches_fixed(lv.model, lv.steering):
            rows = jacobian_rows(step.fn, x, outs)
        crops = [crop_terms(row, x, shape_in) for row in rows]
        top = max((abs(v) for f in crops for c in f for v in c["w"] if v is not None), default=0.0)
        for f in crops:
            for c in f:
                c["fill"] = signed_fills(np.array([np.nan if v is None else v for v in c["w"]]), top)
        return {"kind": "crop", "per_filter": crops}
    kernel = tuple(getattr(step.module, name).shape[-dims:])
    n_taps = math.prod(kernel)
    g = _geometry(key, link)
    block = g.a if g is not None and g.kind == "scatter" else (1,) * dims
    outs = _centres(shape_out, block)
    per = max(1, min(256, 2**22 // max(1, n_taps * x.numel())))
    if (n_taps + 2) * math.ceil(len(outs) / per) > MAX_PASSES:
        return None
    rows = _step_rows(lv, link, outs)
    assert rows is not None
    weights = np.full((shape_out[0], c_in, n_taps), np.nan)
    n_block = len(outs) // shape_out[0]
    for b, _ in enumerate(outs):
        terms = window_terms(rows.coef[b], rows.base[b], rows.full[b], x.reshape(-1), c_in)
        j = b // n_block
        weights[j] = np.where(np.isnan(weights[j]) & terms.read, terms.weight, weights[j])
    # on a small map the centre's window reaches the padding (2×2, padding 1: the last row and column of taps):
    # those taps' weights are read at the map's corners and edges, so that every tap some output uses is shown
    missing = [j for j in range(shape_out[0]) if (np.isnan(weights[j]) & ~np.isnan(weights[j]).all(1)[:, None]).any()]
    extra = [int(np.ravel_multi_index((j, *p), tuple(shape_out))) for j in missing for p in lattice(shape_out[1:])]
    extra = [o for o in extra if o not in set(outs)]
    if extra and (n_taps + 2) * math.ceil((len(outs) + len(extra)) / per) <= MAX_PASSES:
        more = _step_rows(lv, link, extra)
        assert more is not None
        for b, o in enumerate(extra):
            terms = window_terms(more.coef[b], more.base[b], more.full[b], x.reshape(-1), c_in)
            j = o // math.prod(shape_out[1:])
            weights[j] = np.where(np.isnan(weights[j]) & terms.read, terms.weight, weights[j])
    fills = signed_fills(weights)
    per_filter = [[{"c": c, "w": rounded(weights[j, c]), "fill": fills[(j * c_in + c) * n_taps:
                                                                        (j * c_in + c + 1) * n_taps]}
                   for c in range(c_in)] for j in range(shape_out[0])]
    # what each filter reads not through the kernel parameter (HetConv's 1×1 kernels): J(0), at its first output
    besides = [crop_terms(rows.base[j * n_block], x, shape_in) for j in range(shape_out[0])]
    top = float(np.nanmax(np.abs(weights))) if np.isfinite(weights).any() else None
    for crop in (c for f in besides for c in f):  # one colour scale for the strip
        crop["fill"] = signed_fills(np.array(crop["w"], dtype=float), top)
    return {"kind": "taps", "kernel_shape": list(kernel), "per_filter": per_filter, "besides": besides}


def link_data(state: State) -> dict[str, Any]:
    """Per step: its connectivity (``encode_deps``), kernel shape and tap colours, window geometry (padding ring —
    for sampling points, the zeros they read, ``_points_padding`` — a scatter window's direct form), the kernel of
    every filter, its side stages' outputs (held ones included, in the layer view) and kernel bank; and every map's
    values on the input sample."""
    key = _key(state)
    lv = live(state)
    out = []
    for i, (step, x) in enumerate(zip(lv.steps, lv.inputs)):
        shape = tuple(x.shape[1:])
        with computing(), side_branches_fixed(lv.model, lv.steering):
            mask = jacobian(step.fn, x) != 0
        n_out = mask.shape[0]
        sides = [side_json(side, x, held=False) for side in step.sides]
        if not step.sides and len(lv.steps) == 1:
            sides += [side_json(s, x, held=True) for s in declared_stages(lv.model) or []
                      if s.side and any(s.module is m for m in lv.steering)]
        dims = len(shape) - 1
        name = kernel_param(step.module, dims)
        kernel = list(getattr(step.module, name).shape[-dims:]) if name else None
        link: dict[str, Any] = {"name": step.name, "kernel_shape": kernel, "sides": sides, "pad": None,
                                "direct": None, "deps": encode_deps(mask.reshape(n_out, shape[0], -1)),
                                "tap_colours": tap_palette(math.prod(kernel)) if kernel else None}
        g = _geometry(key, i) if kernel else None
        if g is not None and g.kind == "gather":
            link["pad"] = [list(p) for p in drawn_padding(g, step.module)]
        elif g is not None and g.kind == "scatter":
            link["direct"] = {"size": list(g.stretched_size()), "cells": direct_cells(g),
                              "zeros": [a - 1 for a in g.a]}
        elif kernel:  # fractional reads: the padding their grid and sampling points reach
            link["pad"] = _points_padding(key, i)
            regular = _regular(key, i) if link["pad"] is not None else None
            if regular is not None:  # the layer's own padding: the ring past it holds zeros only the offsets reach
                link["layer_pad"] = [list(p) for p in drawn_padding(regular, step.module)]
        link["filters"] = filters_json(lv, key, i)
        bank_of = getattr(step.module, "kernel_bank", None)
        bank = bank_of() if callable(bank_of) else None
        if isinstance(bank, torch.Tensor) and bank.numel() <= MAX_BANK:
            values = bank.detach().double().numpy()
            link["bank"] = {"shape": list(bank.shape), "values": rounded(values), "fill": signed_fills(values)}
        out.append(link)
    maps = [*lv.inputs, lv.output]
    return {"links": out, "values": [rounded(v, 3) for v in maps]}


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


def _window_json(terms: Terms, filters: dict[str, Any] | None, j: int, padded: list[dict[str, Any]] | None
                 ) -> list[dict[str, Any]]:
    """Per input channel the output reads: its kernel W (tap order; on a padding tap or an inserted zero the
    filter's weight, from the strip) and the values under it (0 there), with their products' colours."""
    on_padding = {p["tap"] for p in padded or []}
    rows = []
    top = float(np.nanmax(np.abs(terms.weight))) if np.isfinite(terms.weight).any() else 0.0
    for c in np.flatnonzero(terms.read.any(1)).tolist():
        w, v = terms.weight[c].copy(), np.where(terms.read[c], terms.value[c], 0.0)
        zero = ~terms.read[c]
        if filters is not None and filters["kind"] == "taps":
            strip = np.array([np.nan if a is None else a for a in filters["per_filter"][j][c]["w"]])
            w = np.where(zero, strip, w)
        rows.append({"c": c, "w": rounded(w), "x": rounded(v), "fill": signed_fills(w, top or None),
                     "zero": [bool(z) for z in zero], "padding": sorted(t for t in on_padding if zero[t])})
    return rows


def _rescaled(crops: list[dict[str, Any]], weight: np.ndarray) -> list[dict[str, Any]]:
    """``crops`` coloured on the kernel's scale (max |W|), so a 1×1 weight is compared with the k×k ones."""
    top = float(np.nanmax(np.abs(weight))) if np.isfinite(weight).any() else None
    for crop in crops:
        crop["fill"] = signed_fills(np.array(crop["w"], dtype=float), top)
    return crops


@lru_cache(maxsize=1024)
def _taps_json(key: str, link: int, out_index: int) -> dict[str, Any]:
    state = json.loads(key)
    lv = live(state)
    if not 0 <= link < len(lv.steps):
        raise ValueError(f"link={link} is out of range: this view has links 0 to {len(lv.steps) - 1}")
    step, x = lv.steps[link], lv.inputs[link]
    shape_in = tuple(x.shape[1:])
    shape_out = lv.plan.shapes[link + 1]
    n_out = math.prod(shape_out)
    if not 0 <= out_index < n_out:
        raise ValueError(f"out={out_index} is out of range: link {link} has outputs 0 to {n_out - 1}")
    spatial = len(shape_in) - 1
    y = float((lv.inputs[link + 1] if link + 1 < len(lv.steps) else lv.output).reshape(-1)[out_index])
    name = kernel_param(step.module, spatial)
    if name is None or step.module is None:
        with computing(), side_branches_fixed(lv.model, lv.steering):
            row = jacobian_rows(step.fn, x, [out_index])[0]
        hits = torch.nonzero(row.abs() > EPS).reshape(-1).tolist()
        fills = signed_fills(row[hits].numpy()) if hits else []
        linear = float(row @ x.reshape(-1))
        return {"kernel_shape": None, "reads": [[i, -1, round(float(row[i]), 4), 1] for i in hits], "fills": fills,
                "padded": None, "used": [], "direct": None, "points": None, "crop": crop_terms(row, x, shape_in),
                "besides": [],
                "window": None, "y": round(y, 4), "kernel_sum": round(linear, 4), "other": 0.0,
                "bias": round(y - linear, 4), "note": f"{step.name} has no kernel of its own: its reads are "
                "coloured by the weight each one gets (∂y/∂x)"}
    rows = _step_rows(lv, link, [out_index])
    assert rows is not None
    coef = rows.coef[0]
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
    g = _geometry(key, link)
    direct = None
    if g is not None and g.kind == "scatter" and scatter_reads(g, out_pos) == {
            (t, q) for t, qs in per_tap.items() for q in qs}:
        size = g.stretched_size()
        direct = [[t, int(np.ravel_multi_index(z, size))] for t, z in g.stretched_window(out_pos)
                  if all(0 <= v < n for v, n in zip(z, size))]
    points = None
    if spatial <= 2 and is_fractional(coef, shape_in[0]):
        sides = bool(lv.steering or declared_stages(step.module))
        regular = _step_rows(lv, link, [out_index], zero_side=True) if sides else None
        past, grid = _extended_row(key, link, out_index, coef) if sides else (None, None)
        points = sampling_points(coef, None if regular is None else regular.coef[0], shape_in, past, grid)
    terms = window_terms(coef, rows.base[0], rows.full[0], x.reshape(-1), shape_in[0])
    filters = _links_json(key)["links"][link]["filters"]
    return {"kernel_shape": list(kernel), "reads": reads, "padded": padded, "used": used, "note": "",
            "direct": direct, "points": points, "crop": None,
            "window": _window_json(terms, filters, out_index // math.prod(shape_out[1:]), padded),
            "besides": _rescaled(crop_terms(rows.base[0], x, shape_in), terms.weight),
            "y": round(y, 4), "kernel_sum": round(terms.kernel_sum, 4),
            "other": round(terms.linear - terms.kernel_sum, 4), "bias": round(y - terms.linear, 4)}


MAX_READERS = 512  # outputs coloured by tap when an input is hovered: T + 1 backward passes of this batch


@lru_cache(maxsize=1024)
def _column_json(key: str, link: int, in_index: int) -> dict[str, Any]:
    state = json.loads(key)
    lv = live(state)
    if not 0 <= link < len(lv.steps):
        raise ValueError(f"link={link} is out of range: this view has links 0 to {len(lv.steps) - 1}")
    step, x = lv.steps[link], lv.inputs[link]
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
    with computing(), side_branches_fixed(lv.model, lv.steering):
        coef = kernel_rows(step.module, x, readers, name, fn=step.fn, column=in_index).coef[:, :, 0]  # (readers, T)
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
    when several read it; −1 for a step without a kernel, ``fills`` then colour each read by its weight), its
    coefficient, how many taps read it]; ``padded`` = padding cells its window reads (when the module is a plain
    sliding window), else None; ``used`` = the taps that read anything; ``direct`` = [tap, flat cell] of its
    window in a scatter step's direct form; ``points`` = sampling points of fractional reads
    (``explain.sampling_points``; a tap past the input's edge where the layer samples it, ``_extended_row``);
    ``window`` = per input channel read, the kernel and the values under it
    (``crop``: the same for a step without a kernel); ``y`` = its value = ``kernel_sum`` + ``other`` (reads not
    through the kernel) + ``bias``."""
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
        if isinstance(value, float) and value.is_integer():  # a float argument the menu offers as integers
            value = int(value)
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
    view = view_of(state)
    steps = steps_of(module, view)
    names = accepted_args(spec.family)
    effective = {"view": view, "dim": spec.dim, "in_channels": spec.in_channels, "out_channels": spec.out_channels,
                 "kernel": spec.kernel, "size": spec.size or DEFAULT_SIZE[spec.dim], "sample": state.get("sample", 0),
                 **_resolved(module, names), **{k: v for k, v in spec.options.items()}}
    return {
        "state": state, "query": query_of(state), "effective": effective, "choices": choices(state),
        "family": fam.name, "title": fam.title, "summary": fam.summary, "article": fam.article,
        "layer": f"{type(module).__name__}({module.extra_repr() or describe(module)})",
        "input_shape": [1, *spec.input_shape], "output_shape": list(report.output_shape),
        "params": report.params, "macs": report.macs, "formula": _formula(module),
        "maps": [list(s) for s in the_plan.shapes], "links": [s.name for s in steps],
        "budget": BUDGET, "palette": palette(),
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
    return link_data(json.loads(key))


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
