"""What one layer step reads, computed from the real layer: everything a picture of it needs.

``analyse(module, input_shape)`` runs the layer on a sample input and derives, by autograd only,
* ``index``: the kernel tap linking each (output, input) pair (``taps``), links the kernel parameter does not
  explain (HetConv's 1×1 part) placed on the window by the fitted geometry, or -2 when no tap can be named;
* ``geometry``: the gather / scatter window (``window.fit_geometry``), None for irregular reads;
* ``pair_kernel``: the kernel each (c_out, c_in) pair applies, tap by tap — the Jacobian entry divided by the
  tap's read coefficient, so it is the real weight for any weight layout (grouped, HetConv, an aggregated
  dynamic kernel);
* the sample input, the layer's output on it and the Jacobian (with the side branches held).
Links and kernels come from the step's linear wiring (``linear``): clipping activations (ReLU, ...) taken out, so
a channel whose ReLU is idle on the sample still shows what its conv reads.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..layers.base import ConvzooLayer
from ..layers.form_choice import untimed
from .linear import wiring_jacobian
from .matrix import eval_copy, check_input_shape, jacobian
from .taps import DTYPE, EPS, SIDE_FLAG, TapMap, hold_side_branches, side_modules, tap_map
from .window import Geometry, fit_geometry

NO_TAP = -2  # linked, but no kernel tap can be named


@dataclass
class Reads:
    module: nn.Module  # the float32 copy that was analysed
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    x: torch.Tensor  # (C_in, *S)
    y: torch.Tensor  # (C_out, *O)
    index: torch.Tensor  # (C_out, *O, C_in, *S) int64: tap, -1 none, NO_TAP linked without a tap
    tap_map: TapMap | None
    geometry: Geometry | None
    pair_kernel: torch.Tensor | None  # (C_out, C_in, T), NaN where the pair has no such tap
    kernel_shape: tuple[int, ...]
    regular: Geometry | None = None  # irregular reads: the window with the side branches' output set to zero
    jac: torch.Tensor | None = None  # (C_out, *O, C_in, *S): ∂y/∂x with the side branches held
    # pair_taps, once: an animation's frames each ask for it for every frame's sum text
    _pairs: torch.Tensor | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    # windows.window_groups, once: every frame's drawing asks for it twice
    _groups: tuple | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    @property
    def n_taps(self) -> int:
        return math.prod(self.kernel_shape)

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1

    def centre(self) -> tuple[int, ...]:
        return tuple(s // 2 for s in self.output_shape[1:])

    def pair_taps(self) -> torch.Tensor:
        """Bool (C_out, C_in, T): tap t exists for the pair (seen linking some output to some input)."""
        if self._pairs is not None:
            return self._pairs
        c_out, c_in, n = self.output_shape[0], self.input_shape[0], self.n_taps
        idx = self.index.reshape(c_out, -1, c_in, math.prod(self.input_shape[1:])).permute(0, 2, 1, 3)
        idx = idx.reshape(c_out, c_in, -1)
        onehot = torch.zeros(c_out, c_in, n + 1, dtype=torch.bool)
        onehot.scatter_(2, (idx.clamp(min=-1) + 1), True)
        self._pairs = onehot[:, :, 1:]
        return self._pairs

    def channel_links(self) -> torch.Tensor:
        """Int (C_out, C_in): the number of kernel taps each channel pair uses (0: not connected)."""
        counts = self.pair_taps().sum(-1)
        linked = (self.index != -1).reshape(self.output_shape[0], -1, self.input_shape[0],
                                             math.prod(self.input_shape[1:])).any(3).any(1)
        return torch.where(linked & (counts == 0), torch.ones_like(counts), counts)


ILLUSTRATED = "_convzoo_illustrated"  # on an illustrative copy: the names of the parameters filled in
CHANGED = "_convzoo_changed"  # on an illustrative copy: what the layer's own ``illustrate_`` changed, or None


def illustrative_copy(module: nn.Module, input_shape: Sequence[int], seed: int = 0, own: bool = False) -> nn.Module:
    """A float32 eval copy in which zero-initialised side-branch parameters (a deformable offset conv, DCNv3's
    offset and mask linears at initialisation, which would draw a plain grid) get seeded random values, so their
    mechanism shows. The filled parameters' names are kept in the copy's ``ILLUSTRATED`` attribute (for captions).
    In a declared side branch each sub-module whose own parameters are all zero is filled; in a layer that
    declares none, each sub-module whose parameters are all zero (it is then flagged as a side branch). With
    ``own`` the layer's ``illustrate_()`` also runs (the stage pictures, which print the sentence it returns)."""
    model = eval_copy(module, input_shape, DTYPE)
    gen = torch.Generator().manual_seed(seed)
    declared = side_modules(model)
    names = {id(m): n for n, m in model.named_modules()}
    if declared:
        candidates = [(m, False) for side in declared for m in side.modules()]
    else:
        candidates = [(m, True) for m in model.modules() if m is not model]
    filled: list[str] = []
    with torch.no_grad():
        for sub, recurse in candidates:
            params = list(sub.parameters(recurse=recurse))
            if params and all(float(p.abs().max()) == 0 for p in params):
                if not declared:
                    setattr(sub, SIDE_FLAG, True)  # a zero-initialised branch steers; it is not the data path
                for p in params:
                    fan_in = max(p[0].numel(), 1) if p.dim() > 1 else 1
                    scale = 0.6 if p.dim() == 1 else 0.8 / math.sqrt(fan_in)
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
                filled.append(names.get(id(sub), type(sub).__name__))
    setattr(model, ILLUSTRATED, filled)
    # the layer's own say (the contract's illustrate_): a state in which its mechanism shows, in one sentence
    setattr(model, CHANGED, model.illustrate_() if own and isinstance(model, ConvzooLayer) else None)
    return model


def _geometry_taps(geometry: Geometry, links: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Give links that the kernel parameter does not explain the tap the gather window puts them on."""
    d = len(geometry.kernel_shape)
    extra = (links & (index < 0)).nonzero()
    for row in extra.tolist():
        o, q = row[1:1 + d], row[2 + d:2 + 2 * d]
        t = []
        for r in range(d):
            num = q[r] - geometry.a[r] * o[r] - geometry.c[r]
            step = geometry.b[r]
            t.append(num // step if num % step == 0 and 0 <= num // step < geometry.kernel_shape[r] else -1)
        flat = int(torch.tensor(t) @ torch.tensor([math.prod(geometry.kernel_shape[r + 1:]) for r in range(d)])) \
            if min(t) >= 0 else NO_TAP
        index[tuple(row)] = flat
    index[links & (index == -1)] = NO_TAP
    return index


def footprint_taps(links: torch.Tensor, input_shape: tuple[int, ...]) -> TapMap | None:
    """For a same-size layer without one kernel parameter (MixConv's groups, a composite seen whole): taps by
    offset from the output position, q − o, in one centred frame as large as the widest window — each channel
    pair then uses the taps of its own window (3×3 inside 7×7 for MixConv's first group)."""
    d = len(input_shape) - 1
    out_shape = tuple(links.shape[:1 + d])
    if out_shape[1:] != input_shape[1:] or not bool(links.any()):
        return None
    idx = links.nonzero()
    offsets = idx[:, 2 + d:] - idx[:, 1:1 + d]
    reach = offsets.abs().max(0).values
    kernel_shape = tuple(int(2 * r + 1) for r in reach)
    n_taps = math.prod(kernel_shape)
    strides = torch.tensor([math.prod(kernel_shape[r + 1:]) for r in range(d)])
    t = ((offsets + reach) * strides).sum(1)
    coef = torch.zeros(n_taps, *links.shape, dtype=DTYPE)
    coef[(t, *idx.T)] = 1
    return TapMap(input_shape, out_shape, kernel_shape, "", coef)


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def analyse(module: nn.Module, input_shape: Sequence[int], x: torch.Tensor | None = None, seed: int = 0,
            illustrate: bool = True) -> Reads:
    """The reads of ``module`` on a sample input ``x`` (C_in, *S) (default: seeded random values in [0, 1))."""
    input_shape = check_input_shape(input_shape)
    model = illustrative_copy(module, input_shape, seed) if illustrate else eval_copy(module, input_shape, DTYPE)
    if x is None:
        x = torch.rand(*input_shape, generator=torch.Generator().manual_seed(seed + 1), dtype=DTYPE)
    x = x.to(DTYPE).reshape(input_shape)
    with torch.no_grad():
        y = model(x[None])[0]
    try:
        tm: TapMap | None = tap_map(model, input_shape, x=x[None])
    except ValueError:
        tm = None
    held = copy.deepcopy(model)
    hold_side_branches(model, held)
    jac = jacobian(held, x[None]).reshape(*y.shape, *input_shape)
    # the linear operator's wiring: a ReLU idle on this sample must not hide what its conv reads
    wired = wiring_jacobian(held, x[None], side_modules(held))
    wiring = jac if wired is None else wired.reshape(jac.shape)
    links = (jac != 0) | (wiring != 0)
    if tm is not None:
        links |= tm.linked
    if tm is None:
        tm = footprint_taps(links, input_shape)
    geometry = fit_geometry(tm) if tm is not None else None
    index = tm.index.clone() if tm is not None else torch.full(links.shape, -1, dtype=torch.int64)
    if geometry is not None and geometry.kind == "gather":
        index = _geometry_taps(geometry, links, index)
    else:
        index[links & (index == -1)] = NO_TAP
    kernel_shape = tm.kernel_shape if tm is not None else (1,) * (len(input_shape) - 1)
    pair_kernel = None
    if tm is not None and geometry is not None:
        pair_kernel = _pair_kernel(wiring, tm, index, len(input_shape) - 1, whole_cells=True)
    regular = None
    if tm is not None and side_modules(model):
        held_still = tap_map(model, input_shape, x=x[None], zero_side=True)
        # where each tap reads with the side branches at zero; its weights (DCNv3's masks) may still vary
        regular = fit_geometry(dataclasses.replace(held_still, coefficients=(held_still.coefficients.abs() > EPS)
                                                   .to(DTYPE)))
    return Reads(model, input_shape, tuple(y.shape), x, y, index, tm, geometry, pair_kernel, kernel_shape, regular,
                 jac)


def _pair_kernel(jac: torch.Tensor, tm: TapMap, index: torch.Tensor, d: int, whole_cells: bool = False
                 ) -> torch.Tensor:
    """The weight of each (c_out, c_in, tap): for whole-cell reads (a fitted window) the Jacobian entry itself —
    the weight the step applies, attentions multiplied in (dynamic, CondConv, ODConv) —, else the Jacobian entry
    over the tap's read coefficient (the kernel weight of a fractional read)."""
    c_out, c_in, n = tm.output_shape[0], tm.input_shape[0], math.prod(tm.kernel_shape)
    kernel = torch.full((c_out, c_in, n), float("nan"), dtype=DTYPE)
    hits = (index >= 0).nonzero()
    if len(hits):
        taps = index[index >= 0]
        coef = tm.coefficients.gather(0, index.clamp(min=0)[None])[0][index >= 0]
        if whole_cells:
            coef = torch.ones_like(coef)
        values = jac[index >= 0] / torch.where(coef.abs() > EPS, coef, torch.ones_like(coef))
        kernel[hits[:, 0], hits[:, 1 + d], taps] = values
    return kernel
