"""A kernel that changes with the position (involution): the kernel one output channel applies at a few output
positions, read from the stage's own Jacobian — K[t] = ∂y[j, p] / ∂x[c, window(p)_t] with the side branch's
values held — and drawn side by side with the positions marked, when the kernels differ."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .draw import PICKED, SMALL, Block, Cell, cells, column, fmt, label, row, signed_cells
from .planes import Plane
from .reads import Reads

NAMES = "ABC"


def interior_positions(r: Reads) -> list[tuple[int, ...]]:
    """Output positions whose whole window lies inside the input (a tap on padding multiplies a zero, so the
    Jacobian cannot show its weight there)."""
    g = r.geometry
    assert g is not None
    return [o for o in np.ndindex(*r.output_shape[1:])
            if all(all(0 <= v < n for v, n in zip(q, r.input_shape[1:])) for _, q in g.window(tuple(o)))]


def most_different(kernels: np.ndarray, n: int = 3) -> list[int]:
    """Indices of ``n`` kernels far apart: the one farthest from the mean, then each next the farthest from those
    already picked (max–min distance)."""
    picked = [int(np.abs(kernels - kernels.mean(0)).sum(1).argmax())]
    while len(picked) < min(n, len(kernels)):
        gaps = np.min([np.abs(kernels - kernels[i]).sum(1) for i in picked], axis=0)
        picked.append(int(gaps.argmax()))
    return picked


def position_kernels(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, r: Reads, out_channel: int,
                     positions: Sequence[tuple[int, ...]]) -> tuple[int, np.ndarray] | None:
    """(input channel c, kernels (P, T)): the weight of each window tap of output (out_channel, p) on channel c,
    the first channel that output reads, for every p in ``positions``. None for a non-window stage."""
    g = r.geometry
    if g is None or g.kind != "gather":
        return None
    links = r.channel_links()[out_channel]
    if not bool((links > 0).any()):
        return None
    c = int((links > 0).float().argmax())
    inp = x.detach().clone().requires_grad_(True)
    y = fn(inp)
    kernels = np.zeros((len(positions), r.n_taps))
    for i, p in enumerate(positions):
        grad = torch.autograd.grad(y[(0, out_channel, *p)], inp, retain_graph=True)[0][0, c]
        for t, q in g.window(tuple(p)):
            if all(0 <= v < n for v, n in zip(q, grad.shape)):
                kernels[i, t] = float(grad[q])
    return c, kernels


def varies(kernels: np.ndarray) -> bool:
    """The kernels differ between positions (beyond round-off)."""
    scale = float(np.abs(kernels).max())
    return scale > 0 and float(np.abs(kernels - kernels[0]).max()) > 1e-4 * scale


def position_kernels_block(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, r: Reads,
                           out_channel: int = 0) -> Block | None:
    """The output plane with positions A, B, C marked (three whose kernels differ most); the kernel output channel
    ``out_channel`` applies at each;
    and each minus the average kernel over all positions (what the generator changes). None when the kernel is
    the same everywhere."""
    if r.geometry is None or r.geometry.kind != "gather":
        return None
    everywhere = interior_positions(r)
    found = position_kernels(fn, x, r, out_channel, everywhere) if len(everywhere) > 1 else None
    if found is None or not varies(found[1]):
        return None
    c, all_kernels = found
    chosen = most_different(all_kernels)
    positions = [everywhere[i] for i in chosen]
    kernels = all_kernels[chosen]
    deviation = kernels - all_kernels.mean(0)
    plane = Plane(tuple(r.output_shape[1:]))
    grid = plane.empty()
    for o in np.ndindex(*plane.size):
        rr, cc = plane.cell(o)
        grid[rr][cc] = Cell("#d6ebd3")
    for name, p in zip(NAMES, positions):
        rr, cc = plane.cell(p)
        grid[rr][cc] = Cell(PICKED, name, outline="black")
    scale, reach = float(np.abs(all_kernels).max()), float(np.abs(deviation).max())
    shape = r.kernel_shape

    def tiles(values: np.ndarray, top: float) -> Block:
        return row([column([label(f"at {name} {tuple(p)}", SMALL), cells(signed_cells(k.reshape(shape), top))], gap=0.15)
                    for name, p, k in zip(NAMES, positions, values)], gap=0.8)

    change = 100 * float((all_kernels.max(0) - all_kernels.min(0)).max()) / scale
    return row([column([label(f"OUTPUT c{out_channel}: positions", weight="bold"), cells(grid, SMALL)], gap=0.3),
                column([label(f"KERNEL OF OUTPUT c{out_channel} ON INPUT c{c}, GENERATED AT EACH POSITION",
                              weight="bold"),
                        label(f"read from the stage's Jacobian; red +, blue −; a tap changes by up to {change:.0f} % "
                              "of the largest tap from position to position", SMALL),
                        tiles(kernels, scale),
                        label(f"minus the average kernel over the {len(everywhere)} positions whose window is inside "
                              f"(scale ±{fmt(reach)})",
                              SMALL),
                        tiles(deviation, reach)], gap=0.3)], gap=1.2, align="top")
