"""What the explorer explains beyond connectivity, computed from the real layer by autograd (never by family):

* ``palette``: the colours of the static pictures (``draw``), as the hex strings the page uses — one source;
* ``kernel_rows``: for chosen outputs, the one-hot-kernel Jacobian A_t (the coefficient with which kernel tap t
  reads each input, ``viz.taps``'s definition), the zero-kernel Jacobian J(0) and the Jacobian J(W) at the
  layer's own kernel — T + 2 backward passes whatever the number of outputs;
* ``window_terms``: per input channel c and tap t, the weight W[c, t] the output applies and the value x̃[c, t]
  under that tap (a bilinear sample for a deformable conv), with y = Σ W·x̃ + (reads not through the kernel)
  + bias exactly;
* ``fit_step_geometry``: the gather / scatter window of a step (``window.Geometry``), fitted to the reads of a
  lattice of outputs and checked again on every hovered one (``scatter_matches``): the padding ring, and a
  transposed conv's direct form — zeros inserted between input cells, padding around (``direct_cells``);
* ``sampling_points``: where each tap of a fractional read samples (coefficient-weighted mean position; past the
  input's edge, its place on the input extended with zeros, ``irregular.extended_means``) and its regular grid
  point (the same step with its side branches' output set to zero).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.colors import to_hex
from torch import nn

from .draw import (
    EDGE,
    INPUT,
    MUTED,
    OTHER,
    OUTPUT,
    PADDING,
    PICKED,
    ZERO,
    signed_colour,
    tap_colours,
)
from .irregular import NEIGHBOUR, past_the_edge
from .taps import EPS
from .window import Geometry, _solve

# float32 throughout, as viz.taps (exact for whole-cell reads; float64 sends dilated convs down a slow path); a
# coefficient below EPS is round-off.
ELEMENTS = 2**23  # float32 elements of one block of coefficients (32 MiB)

# The named colours of the static pictures, by the role the page gives them.
NAMED = {"input": INPUT, "output": OUTPUT, "padding": PADDING, "zero": ZERO, "picked": PICKED, "edge": EDGE,
         "other": OTHER, "neighbour": NEIGHBOUR, "muted": MUTED}


def palette() -> dict[str, str]:
    """The static pictures' named colours as hex: what the page paints cells with (no colour is written in JS)."""
    return {name: to_hex(colour) for name, colour in NAMED.items()}


def tap_palette(n_taps: int) -> list[str]:
    """``draw.tap_colours(n)`` as hex: tap t of an n-tap kernel is the same colour here and in every picture."""
    return [to_hex(c) for c in tap_colours(max(n_taps, 1))]


def signed_fills(values: np.ndarray, scale: float | None = None) -> list[str | None]:
    """``draw.signed_colour`` of each value (red +, blue −, saturated at ``scale``: default max |value|); None for
    NaN (no such weight)."""
    flat = np.asarray(values, dtype=float).reshape(-1)
    finite = flat[np.isfinite(flat)]
    top = float(np.abs(finite).max()) if scale is None and finite.size else (scale or 0.0)
    return [to_hex(signed_colour(float(v), top)) if np.isfinite(v) else None for v in flat]


def rounded(values: np.ndarray | torch.Tensor, digits: int = 4) -> list[float | None]:
    flat = np.asarray(values, dtype=float).reshape(-1)
    return [round(float(v), digits) if np.isfinite(v) else None for v in flat]


# --- Jacobian rows ------------------------------------------------------------------------------------------------


@dataclass
class KernelRows:
    """For B chosen outputs (flat indices): ``coef`` (B, T, n) = A_t, ``base`` (B, n) = J(0), ``full`` (B, n) =
    J(W); n = C_in·prod(S). A layer linear in its kernel has J(W) = J(0) + Σ_t W_t·A_t."""

    coef: torch.Tensor
    base: torch.Tensor
    full: torch.Tensor


def _rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Rows ``chosen`` of ∂fn/∂x at x (1, C, *S), one sample of a replicated batch per row."""
    inp = x.detach().expand(len(chosen), *x.shape[1:]).clone().requires_grad_(True)
    y = fn(inp).reshape(len(chosen), -1)
    (grad,) = torch.autograd.grad(y.gather(1, chosen[:, None]).sum(), inp, allow_unused=True)
    return (torch.zeros_like(inp) if grad is None else grad).reshape(len(chosen), -1)


def jacobian_rows(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, outs: Sequence[int],
                  block: int = 256) -> torch.Tensor:
    """(len(outs), n): rows ``outs`` of the Jacobian of ``fn`` at ``x``."""
    parts = [_rows(fn, x, torch.tensor(list(outs[s:s + block]), dtype=torch.long)) for s in range(0, len(outs), block)]
    return torch.cat(parts) if parts else torch.zeros(0, x.numel(), dtype=x.dtype)


@contextlib.contextmanager
def kernel_swapped(module: nn.Module, name: str, value: torch.Tensor) -> Iterator[None]:
    """``module``'s parameter ``name`` replaced by the tensor ``value`` while inside (what torch.func.functional_call
    does for one call of the module, here for any function that calls it: a stage that concatenates its output
    with its input, a layer whose sub-module it is)."""
    original = module._parameters[name]
    module._parameters[name] = value  # type: ignore[assignment]
    try:
        yield
    finally:
        module._parameters[name] = original


def kernel_rows(module: nn.Module, x: torch.Tensor, outs: Sequence[int], parameter: str,
                fn: Callable[[torch.Tensor], torch.Tensor] | None = None, column: int | None = None) -> KernelRows:
    """A_t, J(0) and J(W) for outputs ``outs`` of ``fn`` (default ``module``) as a function of ``module``'s kernel
    parameter ``parameter``, or only for input ``column`` (n = 1). Blocks of outputs keep each block's
    coefficients within ``ELEMENTS``."""
    kernel = getattr(module, parameter)
    call = module if fn is None else fn
    n_taps = math.prod(kernel.shape[-(x.dim() - 2):])
    width = 1 if column is not None else x.numel()
    block = max(1, min(256, ELEMENTS // max(1, n_taps * width)))

    def rows(weight: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        with kernel_swapped(module, parameter, weight):
            flat = _rows(call, x, chosen)
        return flat if column is None else flat[:, column: column + 1]

    coefs, bases, fulls = [], [], []
    for start in range(0, len(outs), block):
        chosen = torch.tensor(list(outs[start: start + block]), dtype=torch.long)
        base = rows(torch.zeros_like(kernel), chosen)
        per_tap = []
        for t in range(n_taps):
            one_hot = torch.zeros_like(kernel).reshape(-1, n_taps)
            one_hot[:, t] = 1
            per_tap.append(rows(one_hot.reshape(kernel.shape), chosen) - base)
        coef = torch.stack(per_tap, dim=1)
        coefs.append(torch.where(coef.abs() > EPS, coef, torch.zeros_like(coef)))
        bases.append(base)
        fulls.append(rows(kernel.detach(), chosen))
    return KernelRows(torch.cat(coefs), torch.cat(bases), torch.cat(fulls))


# --- the weights and values under one output's window -------------------------------------------------------------


@dataclass
class Terms:
    """One output's window, per input channel c and tap t (C_in, T): ``weight`` W (NaN: not read at this output),
    ``value`` x̃ (the value under the tap: Σ_i A_t[i]·x_i / Σ_i A_t[i]), ``read`` (the tap reads channel c here).
    ``kernel_sum`` = Σ W·x̃ over the read taps, ``linear`` = J(W)·x, so linear − kernel_sum are reads not through
    the kernel (HetConv's 1×1 part) and y − linear is the bias (of the output, with side branches held)."""

    weight: np.ndarray
    value: np.ndarray
    read: np.ndarray
    kernel_sum: float
    linear: float


def window_terms(coef: torch.Tensor, base: torch.Tensor, full: torch.Tensor, x: torch.Tensor,
                 channels: int) -> Terms:
    """The terms of one output from its rows (coef (T, n), base and full (n,)) and the input x (n,).

    Per input channel c, (J(W) − J(0))[c] = Σ_t W[c, t]·A_t[c]: W[c, ·] is its least-squares solution over the
    taps that read channel c (exact when their reads differ: a whole cell each, or a deformable tap's bilinear
    neighbours), NaN when no exact one exists. W is then scaled by the tap's total coefficient s = Σ_i A_t[i] (a
    DCNv2 mask, CondConv's Σ routing) and x̃ = A_t·x / s, so that W·x̃ is the tap's exact contribution and a plain
    read shows the kernel weight and the input value."""
    n_taps = coef.shape[0]
    a = coef.reshape(n_taps, channels, -1).double()
    d = (full - base).reshape(channels, -1).double()
    xv = x.reshape(channels, -1).double()
    read = (a.abs() > EPS).any(-1)  # (T, C)
    weight = torch.full((n_taps, channels), float("nan"), dtype=torch.float64)
    for c in range(channels):
        taps = torch.nonzero(read[:, c]).reshape(-1)
        if not len(taps):
            continue
        system = a[taps, c].T  # (S, k)
        solution = torch.linalg.lstsq(system, d[c][:, None]).solution[:, 0]
        if torch.allclose(system @ solution, d[c], atol=1e-5 * max(1.0, float(d[c].abs().max()))):
            weight[taps, c] = solution
    total = a.sum(-1)  # (T, C)
    safe = torch.where(total.abs() > EPS, total, torch.ones_like(total))
    value = torch.where(total.abs() > EPS, (a * xv[None]).sum(-1) / safe, torch.zeros_like(total))
    weight = weight * total
    kernel_sum = float(torch.where(read & weight.isfinite(), weight * value, torch.zeros_like(weight)).sum())
    return Terms(weight.T.numpy(), value.T.numpy(), read.T.numpy(), kernel_sum, float(full.double() @ x.double()))


def crop_terms(row: torch.Tensor, x: torch.Tensor, shape_in: Sequence[int]) -> list[dict[str, object]]:
    """A step without a kernel of its own: per input channel it reads, the Jacobian row over the bounding box of
    what it reads (the kernel this output applies there) and the input values in that box."""
    channels, spatial = shape_in[0], tuple(shape_in[1:])
    j = row.reshape(channels, *spatial).double()
    xv = x.reshape(channels, *spatial).double()
    out = []
    for c in range(channels):
        hits = torch.nonzero(j[c].abs() > EPS)
        if not len(hits):
            continue
        lo, hi = hits.min(0).values.tolist(), hits.max(0).values.tolist()
        box = tuple(slice(a, b + 1) for a, b in zip(lo, hi))
        w = j[c][box]
        out.append({"c": c, "origin": lo, "shape": list(w.shape), "w": rounded(w), "x": rounded(xv[c][box]),
                    "fill": signed_fills(w.numpy())})
    return out


# --- the window's geometry ----------------------------------------------------------------------------------------


def lattice(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Output positions spread over every dim (first, second, middle, last), to fit a window to."""
    axes = [sorted({0, min(1, s - 1), s // 2, s - 1}) for s in shape]
    return [tuple(p) for p in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(shape)).tolist()]


def fit_step_geometry(coef: torch.Tensor, positions: Sequence[Sequence[int]], kernel_shape: Sequence[int],
                      shape_in: Sequence[int], shape_out: Sequence[int]) -> Geometry | None:
    """The gather or scatter window (``window.Geometry``) reproducing every read of outputs at ``positions`` (of
    one output channel; coef (P, T, n)), or None: a read through two taps, or no integer window fits (fractional
    reads). The coefficients may differ (ODConv's spatial attention scales each tap): only positions count."""
    linked = coef.abs() > EPS
    if not bool(linked.any()) or bool((linked.sum(1) > 1).any()):
        return None
    d = len(kernel_shape)
    spatial = tuple(shape_in[1:])
    hits = linked.nonzero().numpy()  # (m, 3): position index, tap, flat input
    taps = np.stack(np.unravel_index(hits[:, 1], tuple(kernel_shape)), 1)
    q = np.stack(np.unravel_index(hits[:, 2] % math.prod(spatial), spatial), 1)
    o = np.asarray(positions)[hits[:, 0]]
    for kind, (src, dst, n_src) in (("gather", (o, q, shape_out[1:])), ("scatter", (q, o, spatial))):
        params = [_solve(src[:, r], taps[:, r], dst[:, r], n_src[r], kernel_shape[r]) for r in range(d)]
        if all(p is not None for p in params):
            a, b, c = (tuple(int(p[i]) for p in params) for i in range(3))  # type: ignore[index]
            return Geometry(kind, a, b, c, tuple(kernel_shape), spatial, tuple(shape_out[1:]))
    return None


def scatter_reads(g: Geometry, o: Sequence[int]) -> set[tuple[int, tuple[int, ...]]]:
    """(tap, input position) that output ``o`` of a scatter window reads: o = a·q + b·t + c."""
    found = set()
    for t, tc in enumerate(g.tap_coords()):
        q = []
        for a, b, c, oi, ti, n in zip(g.a, g.b, g.c, o, tc, g.input_size):
            num = oi - b * ti - c
            if num % a or not 0 <= num // a < n:
                break
            q.append(num // a)
        else:
            found.add((t, tuple(q)))
    return found


def direct_cells(g: Geometry) -> list[int]:
    """A scatter window's direct form, flat over ``g.stretched_size()``: the input's spatial flat index where an
    input cell lands, −1 for an inserted zero (between input cells), −2 for padding (around them)."""
    size = g.stretched_size()
    first = g.stretched_position((0,) * len(g.a))
    last = g.stretched_position(tuple(s - 1 for s in g.input_size))
    cells = np.full(size, -2, dtype=np.int64)
    inside = tuple(slice(max(lo, 0), min(hi, n - 1) + 1) for lo, hi, n in zip(first, last, size))
    cells[inside] = -1
    for i, q in enumerate(np.ndindex(*g.input_size)):
        z = g.stretched_position(q)
        if all(0 <= v < n for v, n in zip(z, size)):
            cells[z] = i
    return cells.reshape(-1).tolist()


# --- fractional reads ---------------------------------------------------------------------------------------------


def sampling_points(coef: torch.Tensor, regular: torch.Tensor | None, shape_in: Sequence[int],
                    past: np.ndarray | None = None, window: dict[int, Sequence[int]] | None = None
                    ) -> list[list[float]]:
    """For each input channel c and tap t that reads it: [c, t, *position, strength, *regular position] — the
    coefficient-weighted mean input position it samples (exact for bilinear sampling), Σ coefficients (bilinear
    weights × a DCNv2 / DCNv3 mask), and the cell it reads with the side branches at zero (omitted when that
    tap reads nothing there). ``past`` (T, C_in, d + 1): the output's row of ``irregular.extended_means`` (its reads
    on the input extended with zeros), so that a tap sampling past the edge sits where it samples (below 0 or past
    size − 1, ``irregular.past_the_edge``) with the zeros it reads in its strength, and a tap reading only padding
    has a point; ``window`` (tap → position): its regular window, whose grid points may lie in the padding."""
    channels, spatial = shape_in[0], tuple(shape_in[1:])
    n_taps = coef.shape[0]
    a = coef.reshape(n_taps, channels, -1).double()
    grid = torch.tensor(np.stack(np.unravel_index(np.arange(math.prod(spatial)), spatial), 1), dtype=torch.float64)
    out = []
    for t in range(n_taps):
        for c in range(channels):
            w = a[t, c]
            total = float(w.sum())
            if past is not None and past_the_edge(total, past[t, c]):
                pos, strength = [float(v) for v in past[t, c, :-1]], float(past[t, c, -1])
            elif abs(total) > EPS:
                pos, strength = [float(v) for v in (w[:, None] * grid).sum(0) / total], total
            else:
                continue
            point = [c, t, *[round(v, 3) for v in pos], round(strength, 4)]
            if window is not None:
                point += [float(v) for v in window.get(t, ())]
            elif regular is not None:
                r = regular.reshape(n_taps, channels, -1)[t, c]
                if bool((r.abs() > EPS).any()):
                    point += [float(v) for v in grid[int(r.abs().argmax())]]
            out.append(point)
    return out


def is_fractional(coef: torch.Tensor, channels: int) -> bool:
    """Some tap reads several cells of one channel (interpolation), for one output's coef (T, n). A tap scaled by an
    attention (ODConv's spatial one) reads one whole cell: not a sampling point."""
    linked = coef.reshape(coef.shape[0], channels, -1).abs() > EPS
    return bool((linked.sum(-1) > 1).any())
