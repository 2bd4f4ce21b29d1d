"""Parallel parts summed into one stage (side stages with the stage's output shape: ACNet's k×k, k×1 and 1×k
branches, RepVGG's 3×3, 1×1 and identity, a large kernel's small kernel), drawn as kernels: each part's kernel of
one filter on one input channel placed in the stage's kernel frame, '+', and '=' the stage's own kernel (read from
the stage, so the sum is checked by the picture). Taps that more than one part adds to are outlined — ACNet's
strengthened skeleton, RepVGG's centre, the small kernel's square inside the large one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .draw import SMALL, Block, Cell, cells, column, fmt, label, row, signed_colour
from .reads import Reads


def _offsets(r: Reads) -> dict[tuple[int, ...], int] | None:
    """Input offset (relative to stride·o) → tap, for a gather window."""
    g = r.geometry
    if g is None or g.kind != "gather":
        return None
    return {tuple(b * u + c for b, c, u in zip(g.b, g.c, coords)): t for t, coords in enumerate(g.tap_coords())}


def in_frame(part: Reads, total: Reads, j: int, c: int) -> np.ndarray | None:
    """Part's kernel of filter j on input c in the total's kernel frame (NaN where the part has no tap); None when
    a window cannot be placed in the other."""
    src, dst = _offsets(part), _offsets(total)
    if src is None or dst is None or part.pair_kernel is None or part.geometry.a != total.geometry.a:
        return None
    out = np.full(total.n_taps, np.nan)
    for rel, t in src.items():
        value = float(part.pair_kernel[j, c, t])
        if np.isnan(value):
            continue
        if rel not in dst:
            return None
        out[dst[rel]] = value
    return out


def pick_pair(parts: Sequence[Reads], j: int) -> int:
    """The input channel of filter j that the most parts read (the first of those)."""
    counts = [sum(bool(p.pair_kernel is not None and (~p.pair_kernel[j, c].isnan()).any()) for p in parts)
              for c in range(parts[0].input_shape[0])]
    return int(np.argmax(counts))


def parts_overlap(parts: Sequence[Reads]) -> bool:
    """Some channel pair is read by two parts (a sum of branches, not a split of the channels)."""
    if len(parts) < 2:
        return False
    linked = [p.channel_links() > 0 for p in parts]
    return bool(sum(m.int() for m in linked).max() > 1)


def short(value: float) -> str:
    """A weight in at most 4 characters: '.12', '-.05', '1.2', '0'."""
    rounded = round(value, 2)
    if rounded == 0:
        return "0"
    if abs(rounded) >= 1:
        return f"{value:.1f}"
    return f"{rounded:.2f}".replace("0.", ".", 1)


def parts_block(named: Sequence[tuple[str, Reads]], total: Reads, j: int) -> Block | None:
    """part₁ + part₂ + … = the stage's kernel, for filter j on the input channel most parts read."""
    parts = [r for _, r in named]
    if not parts_overlap(parts) or total.pair_kernel is None:
        return None
    c = pick_pair(parts, j)
    frames = [in_frame(p, total, j, c) for p in parts]
    if any(f is None for f in frames):
        return None
    whole = total.pair_kernel[j, c].double().numpy()
    scale = float(np.nanmax(np.abs(np.concatenate([*frames, whole])))) or 1.0
    shape = total.kernel_shape
    grid_shape = (shape[0], int(np.prod(shape[1:]))) if len(shape) > 1 else (1, shape[0])
    added = sum((~np.isnan(f)).astype(int) for f in frames)

    numbered = total.n_taps <= 25  # values printed in the cells of frames up to 5×5

    def grid(values: np.ndarray, outline: np.ndarray | None = None) -> Block:
        v = values.reshape(grid_shape)
        o = outline.reshape(grid_shape) if outline is not None else None
        return cells([[Cell(signed_colour(float(v[a, b]), scale), short(float(v[a, b])) if numbered else "",
                            outline="black" if o is not None and o[a, b] else None)
                       if not np.isnan(v[a, b]) else Cell("white", dashed=True)
                       for b in range(grid_shape[1])] for a in range(grid_shape[0])], SMALL)

    tiles: list[Block] = []
    for k, ((name, _), f) in enumerate(zip(named, frames)):
        if k:
            tiles.append(label("+", 14, "bold"))
        tiles.append(column([label(name, SMALL), grid(f)], gap=0.15))
    tiles.append(label("=", 14, "bold"))
    tiles.append(column([label("the stage's kernel", SMALL, "bold"), grid(whole, added > 1)], gap=0.15))
    several = int((added > 1).sum())
    return column([label(f"THE PARTS' KERNELS, filter {j} on input c{c}, placed in the "
                         f"{'×'.join(map(str, shape))} frame (red +, blue −, scale ±{fmt(scale)})", weight="bold"),
                   row(tiles, gap=0.5, align="center"),
                   label(f"outlined: the {several} tap{'s' if several != 1 else ''} that more than one part adds to; "
                         "dashed: no tap in that part", SMALL)], gap=0.3)
