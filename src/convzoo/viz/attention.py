"""A side branch's attention, drawn from what the layer declares (``attentions()`` of the layer contract), never
from its name:

* over the K kernels of ``kernel_bank()`` (dynamic conv, CondConv, ODConv's α_w): the K candidate kernels of the
  drawn filter in signed colours with their scale, the sample's weights as bars, the aggregated kernel Σ πₖ·Wₖ;
* over the kernel's taps, the input channels and the filters (ODConv's α_s, α_c, α_f): a heat map over the taps and
  bars over the channels, multiplied into the aggregated kernel — the kernel the conv then applies;
* over branches per channel (selective kernel): one stacked bar per output channel, a segment per branch.

``decisive_sample`` picks the drawn sample: of the input with some channels dimmed (every subset, or 63 seeded
ones beyond 6 channels), at the lowest strength (1, 2 or 4 × the random input) where that is enough, the one whose
attention weights differ most — at least ``VISIBLE`` where it can be found — so the choice the attention makes
shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle
from torch import nn

from ..layers.base import Attention, ConvzooLayer
from .draw import EDGE, SMALL, Block, Cell, arrow, cells, column, fmt, label, row, signed_cells
from .layout import BUDGET, flow
from .wiring import group_colour

BAR = "#6a51a3"
DIM = 0.15  # the gain of a dimmed channel in the candidate samples
STRENGTHS = (1.0, 2.0, 4.0)  # the bright channels' gains tried, lowest first
VISIBLE = 0.15  # attention weights this far apart read as a choice at a glance
BAR_CELLS = 4.0


def attentions_of(model: nn.Module, values: torch.Tensor) -> list[Attention]:
    return model.attentions(values) if isinstance(model, ConvzooLayer) else []


def spread(parts: Sequence[Attention]) -> float:
    """max − min of the weights that choose (over kernels or branches; else of every part)."""
    chosen = [a for a in parts if a.over in ("kernels", "branches")] or list(parts)
    return max((float(a.values.max() - a.values.min()) for a in chosen), default=0.0)


def decisive_sample(model: nn.Module, sides: Sequence, x: torch.Tensor, seed: int = 0
                    ) -> tuple[torch.Tensor, str | None]:
    """(sample (C, *S), sentence) — ``x`` with the other channels dimmed (× DIM) and a channel subset brightened
    (× the lowest of ``STRENGTHS`` at which the spread reaches ``VISIBLE``, else the largest) whose attention
    spread is largest; ``x`` unchanged and None when no side stage holds an attention."""
    with torch.no_grad():
        if not any(attentions_of(model, s.fn(x[None])) for s in sides):
            return x, None
    c = x.shape[0]
    if c <= 6:
        masks = [[(m >> k) & 1 for k in range(c)] for m in range(1, 2 ** c)]
    else:
        gen = torch.Generator().manual_seed(seed)
        masks = [[1] * c] + (torch.rand(62, c, generator=gen) < 0.5).int().tolist()
    best, where, strength, batch = -1.0, 0, 1.0, x[None]
    for strength in STRENGTHS:
        gains = DIM + (strength - DIM) * torch.tensor(masks, dtype=x.dtype)  # (B, C)
        batch = x[None] * gains.reshape(*gains.shape, *(1,) * (x.dim() - 1))
        with torch.no_grad():
            outputs = [s.fn(batch) for s in sides]
        best, where = -1.0, 0
        for b in range(len(masks)):
            value = max(spread(attentions_of(model, out[b:b + 1])) for out in outputs)
            if value > best + 1e-9:
                best, where = value, b
        if best >= VISIBLE:
            break
    bright = [k for k in range(c) if masks[where][k]]
    names = ", ".join(f"c{k}" for k in bright)
    gain = f" × {strength:g}" if strength != 1 else " at full strength"
    if len(bright) == c:
        text = f"sample: every input channel{gain}"
    else:
        text = f"sample: input channel{'s' if len(bright) > 1 else ''} {names}{gain}, the others × {DIM:g}"
    return batch[where], (f"{text} — of {len(masks)} such samples, the one whose attention weights differ most "
                          f"(largest − smallest = {best:.2f})")


def bars(values: Sequence[float], names: Sequence[str], highlight: int | None = None, colour: str = BAR,
         top: float | None = None) -> Block:
    """One horizontal bar per value (length ∝ value, the largest ``BAR_CELLS`` long), its name and its value."""
    top = top or max(max(values), 1e-12)
    lines = []
    for k, (v, n) in enumerate(zip(values, names)):
        length = max(0.08, BAR_CELLS * float(v) / top)
        strong = k == highlight

        def paint(ax: Axes, x: float, y: float, length=length, strong=strong) -> None:
            ax.add_patch(Rectangle((x, y + 0.08), length, 0.44, facecolor=colour, edgecolor="black" if strong
                                   else "none", linewidth=1.5))

        lines.append(row([label(n, SMALL, "bold" if strong else "normal"), Block(BAR_CELLS, 0.6, paint),
                          label(fmt(float(v)), SMALL)], gap=0.25, align="center"))
    return column(lines, gap=0.05)


def kernels_block(bank: torch.Tensor, pi: torch.Tensor, j: int, c: int, name: str = "π", final: bool = True
                  ) -> tuple[Block, np.ndarray, float]:
    """K kernels of filter j on input channel c (signed colours, one scale), the weights π as bars, Σ πₖ·Wₖ
    (``final``: the kernel the steered conv applies). Returns the block, the aggregated kernel and the scale."""
    local = c % bank.shape[2]
    ws = bank[:, j, local].double().numpy()
    p = pi.double().numpy()
    agg = np.tensordot(p, ws, axes=1)
    scale = float(np.abs(ws).max()) or 1.0
    tiles = [column([label(f"W{k}", SMALL), cells(signed_cells(ws[k], scale))], gap=0.15) for k in range(len(ws))]
    best = int(p.argmax())
    block = row([
        column([label(f"THE {len(ws)} KERNELS IT MIXES (filter {j}, input c{c})", weight="bold"),
                row(tiles, gap=0.6), scale_row(scale)], gap=0.3),
        arrow(1.8, "weigh by"),
        column([label(f"{name}(x): WEIGHTS FOR THIS SAMPLE", weight="bold"),
                bars(p.tolist(), [f"{name}{k}" for k in range(len(p))], highlight=best)], gap=0.3),
        arrow(1.8, f"Σ {name}ₖ·Wₖ"),
        column([label("AGGREGATED KERNEL", weight="bold"), cells(signed_cells(agg, scale)),
                label("(the kernel the conv applies)" if final else "", SMALL)], gap=0.3),
    ], gap=0.7, align="top")
    return block, agg, scale


def scale_row(scale: float) -> Block:
    from .step import scale_bar

    return row([label("red +, blue −:", SMALL), scale_bar(scale)], gap=0.3, align="center")


def heat_cells(values: np.ndarray, top: float = 1.0) -> list[list[Cell]]:
    """Values in [0, top] as shades of the bar colour (white = 0), the value printed."""
    grid = values.reshape(values.shape[0], -1) if values.ndim >= 2 else values[None]
    r, g, b = (0x6a / 255, 0x51 / 255, 0xa3 / 255)
    out = []
    for line in grid:
        out.append([Cell((1 - (1 - r) * min(1.0, v / top), 1 - (1 - g) * min(1.0, v / top),
                          1 - (1 - b) * min(1.0, v / top), 1.0), f"{v:.2f}".lstrip("0")) for v in line])
    return out


def omni_block(parts: Sequence[Attention], bank: torch.Tensor, j: int, c: int, kernel_shape: Sequence[int]) -> Block:
    """Attention over kernels, then the per-tap, per-input-channel and per-filter attentions multiplied in: the
    kernel the conv applies, α_f[j]·α_c[c]·α_s ⊙ Σ α_wk·W_k."""
    by = {a.over: a for a in parts}
    kern = by["kernels"]
    first, agg, scale = kernels_block(bank, kern.values, j, c, kern.name, final=False)
    final = agg.copy()
    pieces: list[Block] = [label("× the other three attentions:", SMALL)]
    if "taps" in by:
        a_s = by["taps"].values.double().numpy().reshape(tuple(kernel_shape))
        final = final * a_s
        pieces.append(column([label(f"{by['taps'].name}: one weight per kernel tap", weight="bold"),
                              cells(heat_cells(a_s), SMALL)], gap=0.3))
    if "input channels" in by:
        a_c = by["input channels"].values.double().numpy()
        final = final * a_c[c]
        pieces.append(column([label(f"{by['input channels'].name}: per input channel", weight="bold"),
                              bars(a_c.tolist(), [f"c{k}" for k in range(len(a_c))], highlight=c, top=1.0)],
                             gap=0.3))
    if "filters" in by:
        a_f = by["filters"].values.double().numpy()
        final = final * a_f[j]
        pieces.append(column([label(f"{by['filters'].name}: per filter (output)", weight="bold"),
                              bars(a_f.tolist(), [f"f{k}" for k in range(len(a_f))], highlight=j, top=1.0)],
                             gap=0.3))
    top = float(np.abs(final).max()) or 1.0
    pieces.append(arrow(1.8, "multiply"))
    pieces.append(column([label("KERNEL THE CONV APPLIES", weight="bold"),
                          label(f"(filter {j} on c{c}; own scale ±{fmt(top)})", SMALL),
                          cells(signed_cells(final, top))], gap=0.3))
    return column([first, flow(pieces, BUDGET[0], gap=0.9)], gap=0.6)


def branches_block(a: torch.Tensor, name: str) -> Block:
    """(M, C) weights: per output channel a stacked bar, one segment per branch in its colour."""
    m, c = a.shape
    width = 5.0
    lines = []
    for ch in range(c):
        shares = a[:, ch].double().tolist()

        def paint(ax: Axes, x: float, y: float, shares=shares) -> None:
            left = x
            for k, s in enumerate(shares):
                ax.add_patch(Rectangle((left, y + 0.08), width * s, 0.44, facecolor=group_colour(k), edgecolor=EDGE,
                                       linewidth=0.5))
                left += width * s

        text = " / ".join(fmt(s) for s in shares)
        lines.append(row([label(f"c{ch}", SMALL), Block(width, 0.6, paint), label(text, SMALL)], gap=0.25,
                         align="center"))
    key = row([row([cells([[Cell(group_colour(k))]], SMALL), label(f"branch {k + 1}", SMALL)], gap=0.2,
                   align="center") for k in range(m)], gap=0.6)
    half = -(-len(lines) // 2) if len(lines) > 3 else len(lines)
    table = row([column(lines[:half], gap=0.05), column(lines[half:], gap=0.05)], gap=1.5)
    return column([row([label(f"{name}: each output channel's share of the {m} branches (softmax over branches)",
                              weight="bold"), key], gap=1.0, align="center"), table], gap=0.3)


def attention_block(model: nn.Module, sub: nn.Module, values: torch.Tensor, j: int, c: int,
                    kernel_shape: Sequence[int]) -> Block | None:
    """The picture of the attentions ``model`` declares in a side stage's ``values`` (None: it declares none).
    ``sub``: the stage the attention steers (its ``kernel_bank()`` is drawn); j, c: filter and input channel."""
    parts = attentions_of(model, values)
    if not parts:
        return None
    by = {a.over: a for a in parts}
    bank = sub.kernel_bank() if isinstance(sub, ConvzooLayer) else None
    if "kernels" in by and bank is not None and bank.shape[0] == by["kernels"].values.numel():
        if len(parts) > 1:
            return omni_block(parts, bank.detach(), j, c, kernel_shape)
        return kernels_block(bank.detach(), by["kernels"].values, j, c, by["kernels"].name)[0]
    if "branches" in by:
        return branches_block(by["branches"].values, by["branches"].name)
    blocks = [column([label(f"{a.name} over {a.over}", weight="bold"),
                      bars(a.values.flatten().tolist(), [str(k) for k in range(a.values.numel())])], gap=0.3)
              for a in parts]
    return row(blocks, gap=1.0)
