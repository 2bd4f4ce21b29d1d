"""The sliding-window geometry of a layer, fitted to its tap map (never read from its class or name).

A layer whose every read is one whole cell through one tap (whatever the coefficient: an attention or mask may
scale a tap) is a *gather* window, q = a·o + b·t + c per spatial dim (a = stride, |b| = dilation, b < 0 for a flipped kernel, c = −padding before), or a *scatter* window,
o = a·q + b·t + c (a transposed conv: each input cell stamps the kernel onto the output). Anything else
(fractional or repeated reads) is *irregular* and is drawn from its read coefficients instead.

The geometry gives the pictures what the taps alone do not: where a tap falls in the padding (padding cells),
and a transposed conv's equivalent direct form — zeros inserted between input cells, padded, read with the
kernel flipped — which is how vdumoulin's conv_arithmetic draws it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .taps import EPS, TapMap


@dataclass(frozen=True)
class Geometry:
    kind: str  # "gather" or "scatter"
    a: tuple[int, ...]
    b: tuple[int, ...]
    c: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    output_size: tuple[int, ...]

    def tap_coords(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(k) for k in self.kernel_shape)))

    # --- gather -------------------------------------------------------------------------------------------------

    def window(self, o: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
        """Gather: (tap index, input position) for every tap of output ``o`` — positions may lie in the padding."""
        return [(t, tuple(a * oi + b * ti + c for a, b, c, oi, ti in zip(self.a, self.b, self.c, o, tc)))
                for t, tc in enumerate(self.tap_coords())]

    def padding(self) -> tuple[tuple[int, int], ...]:
        """Gather: cells of padding (before, after) per dim that some window reaches. Per dim the reads
        q = a·o + b·t + c over o < O, t < K reach from c + min(0, a(O−1)) + min(0, b(K−1)) to the same with max."""
        if 0 in self.output_size:
            return tuple((0, 0) for _ in self.a)
        pads = []
        for a, b, c, o, k, n in zip(self.a, self.b, self.c, self.output_size, self.kernel_shape, self.input_size):
            first = c + min(0, a * (o - 1)) + min(0, b * (k - 1))
            last = c + max(0, a * (o - 1)) + max(0, b * (k - 1))
            pads.append((max(0, -first), max(0, last - (n - 1))))
        return tuple(pads)

    # --- scatter ------------------------------------------------------------------------------------------------

    def stretched_size(self) -> tuple[int, ...]:
        """Scatter: the zero-inserted, padded input that a direct conv with the flipped kernel reads."""
        return tuple(o + abs(b) * (k - 1) for o, b, k in zip(self.output_size, self.b, self.kernel_shape))

    def stretched_position(self, q: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(a * qi + c + max(b, 0) * (k - 1)
                     for a, b, c, qi, k in zip(self.a, self.b, self.c, q, self.kernel_shape))

    def stretched_window(self, o: tuple[int, ...]) -> list[tuple[int, tuple[int, ...]]]:
        """Scatter: (tap index, stretched position) read by output ``o`` in the direct form (flipped kernel)."""
        out = []
        for u in itertools.product(*(range(k) for k in self.kernel_shape)):
            t = tuple((k - 1 - ui) if b > 0 else ui for ui, b, k in zip(u, self.b, self.kernel_shape))
            z = tuple(oi + abs(b) * ui for oi, b, ui in zip(o, self.b, u))
            out.append((int(np.ravel_multi_index(t, self.kernel_shape)), z))
        return out


def _solve(x1: np.ndarray, x2: np.ndarray, y: np.ndarray, n1: int, n2: int) -> tuple[int, int, int] | None:
    """Integers (a, b, c) with y = a·x1 + b·x2 + c exactly, or None. An unobservable coefficient (a dim of size 1)
    is set to 1."""
    cols, names = [np.ones_like(y)], ["c"]
    if n1 > 1:
        cols.append(x1); names.append("a")
    if n2 > 1:
        cols.append(x2); names.append("b")
    sol, *_ = np.linalg.lstsq(np.stack(cols, 1).astype(float), y.astype(float), rcond=None)
    coef = dict(zip(names, np.round(sol).astype(int)))
    a, b, c = int(coef.get("a", 1)), int(coef.get("b", 1)), int(coef["c"])
    if (n1 > 1 and a == 0) or (n2 > 1 and b == 0):
        return None
    return (a, b, c) if np.array_equal(a * x1 * (n1 > 1) + b * x2 * (n2 > 1) + c, y) else None


def fit_geometry(tm: TapMap) -> Geometry | None:
    """The gather or scatter window that reproduces every read of ``tm``, or None (irregular reads)."""
    coef = tm.coefficients
    linked = coef.abs() > EPS
    if not bool(linked.any()) or bool((linked.sum(0) > 1).any()):
        return None
    # Each tap reads one whole cell; its coefficient may vary (a weight multiplied in per tap or channel pair:
    # ODConv's attentions, a DCNv2 mask on the regular grid) — the window is the same.
    d = len(tm.kernel_shape)
    idx = linked.nonzero().numpy()  # (n, 1 + 1 + d + 1 + d): tap, c_out, o..., c_in, q...
    taps = np.stack(np.unravel_index(idx[:, 0], tm.kernel_shape), 1)
    o, q = idx[:, 2:2 + d], idx[:, 3 + d:3 + 2 * d]
    in_size, out_size = tm.input_shape[1:], tm.output_shape[1:]
    for kind, (src, dst, n_src) in (("gather", (o, q, out_size)), ("scatter", (q, o, in_size))):
        params = [_solve(src[:, r], taps[:, r], dst[:, r], n_src[r], tm.kernel_shape[r]) for r in range(d)]
        if all(p is not None for p in params):
            a, b, c = (tuple(p[i] for p in params) for i in range(3))  # type: ignore[index]
            return Geometry(kind, a, b, c, tm.kernel_shape, tuple(in_size), tuple(out_size))
    return None


def declared_padding(module: object, dims: int) -> tuple[tuple[int, int], ...] | None:
    """The (before, after) zero padding ``module`` applies per spatial dim, when it says: the layer contract's
    ``padding_pairs``, else a torch conv's resolved padding (``_reversed_padding_repeated_twice``)."""
    pairs = getattr(module, "padding_pairs", None)
    if isinstance(pairs, (tuple, list)) and len(pairs) == dims:
        return tuple((int(lo), int(hi)) for lo, hi in pairs)
    rev = getattr(module, "_reversed_padding_repeated_twice", None)
    if isinstance(rev, (tuple, list)) and len(rev) == 2 * dims:
        return tuple((int(rev[2 * (dims - 1 - r)]), int(rev[2 * (dims - 1 - r) + 1])) for r in range(dims))
    return None


def drawn_padding(g: Geometry, module: object) -> tuple[tuple[int, int], ...]:
    """Gather: the padding to draw — what the layer pads (PyTorch pads every side, even where no window reaches,
    e.g. the last row at stride 2), trusted when its 'before' matches the fitted window; else what windows reach."""
    reached = g.padding()
    declared = declared_padding(module, len(g.a))
    if declared is None or any(lo != -c for (lo, _), c in zip(declared, g.c)):
        return reached
    return tuple((max(lo, dlo), max(hi, dhi)) for (lo, hi), (dlo, dhi) in zip(reached, declared))


def unread_after(g: Geometry, module: object) -> tuple[int, ...]:
    """Gather: per dim, how many of the drawn padded input's last cells no window reads."""
    return tuple(hi - rhi for (_, hi), (_, rhi) in zip(drawn_padding(g, module), g.padding()))
