"""Channels drawn as wiring: every input plane (left) joined by a line to every output plane (right) that reads
it, computed from the step's taps. The planes the highlighted output reads (its row of the channel links) are
small tiles of their map showing its window there, dark; the others are plain tiles — so depthwise (one line per
output, one input with a window), grouped (a band per group, the group's inputs with a window) and a standard conv
(every line, a window on every input) differ at a glance on the input side. A permutation's tiles each show the
one cell their line moves.

Colours say which lines belong together, decided from what is carried in and what the step reads: the groups an
earlier stage made (carried through a shuffle: the crossing lines keep their group's colour), else the step's
window groups (MixConv's kernel sizes, HetConv's k×k and 1×1), else its independent channel groups (grouped,
depthwise), else one neutral colour. A pass-through pair is dashed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle

from .draw import EDGE, INPUT, OUTPUT, PICKED, SMALL, Block, Cell, cells, column, label, row
from .planes import Plane
from .reads import Reads
from .windows import WindowGroup, copies

GROUP_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#393b79", "#ad494a", "#637939"]
NEUTRAL = "#4a5b6c"
MIXED = "#8c8c8c"
WIRING_HEIGHT = 8.0  # cells the tiles may take by default
HOW_TO_READ = "wiring tile = a channel's plane: dark = the window the drawn output reads"
SPAN = 5.5  # cells between the input and output columns


def group_colour(k: int) -> str:
    return GROUP_COLOURS[k % len(GROUP_COLOURS)]


def tint(colour: str | None, amount: float = 0.75, default: str = INPUT) -> tuple[float, float, float, float]:
    """``colour`` mixed with white (``amount`` of white); ``default`` when None."""
    if colour is None:
        return to_rgba(default)
    r, g, b, _ = to_rgba(colour)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount, 1.0)


@dataclass
class Colouring:
    """Colour per input channel, per output channel and per linked pair (None: neutral); legend entries."""

    inputs: list[str | None]
    outputs: list[str | None]
    pairs: dict[tuple[int, int], str]
    legend: list[tuple[str | list[str], str]] = field(default_factory=list)
    groups: int = 1  # how many groups are coloured apart

    @property
    def carried(self) -> list[str | None]:
        return list(self.outputs)


def _components(links: np.ndarray) -> list[tuple[list[int], list[int]]]:
    """Connected (outputs, inputs) components of the bipartite channel graph, ordered by first input channel."""
    c_out, c_in = links.shape
    parent = list(range(c_out + c_in))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for j, c in zip(*np.nonzero(links)):
        parent[find(int(j))] = find(c_out + int(c))
    comps: dict[int, tuple[list[int], list[int]]] = {}
    for c in range(c_in):
        if links[:, c].any():
            comps.setdefault(find(c_out + c), ([], []))[1].append(c)
    for j in range(c_out):
        if links[j].any():
            comps.setdefault(find(j), ([], []))[0].append(j)
    return sorted(comps.values(), key=lambda oc: min(oc[1]) if oc[1] else 10**9)


def _shared(r: Reads, comps: Sequence[tuple[list[int], list[int]]]) -> list[int]:
    """A colour index per component: components of one output reading one input (depthwise-like) whose Jacobian
    blocks are equal — the same weights at every position, one shared kernel (involution's groups, DCNv3's
    sampling groups) — share an index; otherwise one index per component."""
    if r.jac is None or any(len(o) != 1 or len(i) != 1 for o, i in comps):
        return list(range(len(comps)))
    d = len(r.input_shape) - 1
    blocks = [r.jac[(o[0], *(slice(None),) * d, i[0])] for o, i in comps]
    index: list[int] = []
    for k, b in enumerate(blocks):
        scale = float(b.abs().max()) or 1.0
        same = next((index[m] for m in range(k) if torch.allclose(blocks[m], b, atol=1e-6 * scale, rtol=1e-5)), None)
        index.append(same if same is not None else (max(index) + 1 if index else 0))
    return index


def colour_channels(r: Reads, groups: Sequence[WindowGroup], carried: Sequence[str | None] | None,
                    permutation: bool = False) -> Colouring:
    """Colours of the step's channels and lines (see the module docstring for the order of the rules); a
    ``permutation``'s moved channels are not called pass-through."""
    c_out, c_in = r.output_shape[0], r.input_shape[0]
    links = (r.channel_links() > 0).numpy()
    copy = copies(r).numpy() if not permutation else np.zeros_like(links)
    computed = links & ~copy
    pair_colour: dict[tuple[int, int], str] = {}
    legend: list[tuple[str | list[str], str]] = []
    inputs: list[str | None] = [None] * c_in
    n_groups = 1
    carried = list(carried) if carried is not None and len(carried) == c_in else None
    if carried is not None and len({c for c in carried}) > 1:
        inputs = carried
        for j, c in zip(*np.nonzero(links)):
            pair_colour[(int(j), int(c))] = carried[c] or NEUTRAL
        n_groups = len({c for c in carried if c is not None})
        legend.append((MIXED, "line colour = the group an input came from (grey output: mixes groups)"))
    elif len(groups) > 1:
        for k, g in enumerate(groups):
            for j, c in g.pairs.nonzero().tolist():
                pair_colour[(j, c)] = group_colour(k)
            legend.append((group_colour(k), f"{g.name} kernels"))
        n_groups = len(groups)
    else:
        comps = [oc for oc in _components(computed) if oc[0]]
        if len(comps) > 1:
            shared = _shared(r, comps)
            n_groups = len(set(shared))
            for k, (outs, ins) in zip(shared, comps):
                for c in ins:
                    inputs[c] = group_colour(k)
                for j in outs:
                    for c in np.nonzero(computed[j])[0]:
                        pair_colour[(j, int(c))] = group_colour(k)
            size = {(len(o), len(i)) for o, i in comps}
            what = ("each output reads one input channel" if size == {(1, 1)} else
                    "each output reads only its group's inputs")
            if n_groups < len(comps):
                legend.append(([group_colour(k) for k in range(min(len(GROUP_COLOURS), n_groups))],
                               f"one colour per set of channels read with the same weights (one shared kernel): "
                               f"{n_groups} sets"))
            else:
                legend.append(([group_colour(k) for k in range(min(len(GROUP_COLOURS), len(comps)))],
                               f"{len(comps)} groups, one colour each: {what}"))
    for j, c in zip(*np.nonzero(copy)):
        pair_colour[(int(j), int(c))] = inputs[c] or NEUTRAL
    if copy.any():
        legend.append((NEUTRAL, "dashed: the channel passes through unchanged"))
    if not permutation:
        legend.append((tint(NEUTRAL, 0.5), HOW_TO_READ))
    if carried is None or len(set(carried)) <= 1:  # an input's colour: the one colour of all its lines
        for c in range(c_in):
            colours = {pair_colour.get((j, c)) for j in range(c_out) if links[j, c]}
            inputs[c] = colours.pop() if len(colours) == 1 else None
    outputs: list[str | None] = []
    for j in range(c_out):
        colours = {pair_colour.get((j, int(c))) for c in np.nonzero(links[j])[0]}
        outputs.append(colours.pop() if len(colours) == 1 else (MIXED if len(colours) > 1 and n_groups > 1 else None))
    return Colouring(inputs, outputs, pair_colour, legend, n_groups)


def reading(r: Reads, out_channel: int) -> str:
    """'output c0 reads 3 of 6 input channels (c0–c2)'."""
    links = (r.channel_links()[out_channel] > 0).nonzero().flatten().tolist()
    c_in = r.input_shape[0]
    if not links:
        return f"output c{out_channel} reads no input channel"
    if len(links) == c_in:
        which = "all" if c_in > 1 else "the one"
        return f"output c{out_channel} reads {which} {c_in} input channel{'s' if c_in > 1 else ''}"
    run = links == list(range(links[0], links[-1] + 1))
    names = (f"c{links[0]}" if len(links) == 1 else f"c{links[0]}–c{links[-1]}" if run
             else ", ".join(f"c{c}" for c in links))
    return f"output c{out_channel} reads {len(links)} of {c_in} input channels ({names})"


def _footprint(r: Reads, j: int, position: Sequence[int], c: int, pair_taps: torch.Tensor) -> np.ndarray:
    """Bool (*S): the cells of input channel c that output (j, position) reads — for a gather window, the cells
    its taps fall on (as the step's input plane draws them, even where a ReLU after the conv is idle for this
    sample), else the cells it is linked to."""
    g = r.geometry
    if g is None or g.kind != "gather":
        return (r.index[(j, *position, c)] != -1).numpy()
    marks = np.zeros(r.input_shape[1:], dtype=bool)
    for t, q in g.window(tuple(position)):
        if pair_taps[j, c, t] and all(0 <= v < n for v, n in zip(q, r.input_shape[1:])):
            marks[q] = True
    return marks


def _brackets(colouring: Colouring, copy: np.ndarray, permutation: bool) -> list[tuple[int, int, str]]:
    """(first, last, text) runs of output channels to bracket: after a permutation of carried groups, the next
    groups (each holds every colour); next to pass-through channels, which are copies and which are computed."""
    c_out = len(colouring.outputs)
    if permutation and colouring.groups > 1 and c_out % colouring.groups == 0:
        size = c_out // colouring.groups
        return [(k * size, (k + 1) * size - 1, f"next group {k}") for k in range(colouring.groups)]
    if copy.any():
        kinds = copy.any(1)
        runs, start = [], 0
        for j in range(1, c_out + 1):
            if j == c_out or kinds[j] != kinds[start]:
                runs.append((start, j - 1, "passed through" if kinds[start] else "computed"))
                start = j
        return runs if len(runs) > 1 or kinds.all() else []
    return []


def mixing(colouring: Colouring, brackets: Sequence[tuple[int, int, str]]) -> str:
    """What the next groups (``brackets``: runs of output channels) hold after a permutation, counted from the
    permutation itself: how many of the ``colouring.groups`` carried groups (colours) reach each run. C = 6,
    g = 3 shuffles to [0, 2, 4, 1, 3, 5]: each run of 2 holds 2 of the 3 groups, not every group."""
    g = colouring.groups
    counts = [len({colouring.outputs[j] for j in range(first, last + 1)} - {None}) for first, last, _ in brackets]
    if not counts or g < 2:
        return ""
    if min(counts) == g:
        return "each next group (bracket) holds channels of every group"
    if min(counts) == max(counts):
        return f"each next group (bracket) holds channels of {'only ' if counts[0] < g else ''}{counts[0]} of the " \
            f"{g} groups"
    listed = ", ".join(map(str, counts[:-1])) + f" and {counts[-1]}"
    return f"the next groups (brackets) hold channels of {listed} of the {g} groups"


def wiring_block(r: Reads, out_channel: int, position: Sequence[int], colouring: Colouring,
                 height: float = WIRING_HEIGHT, permutation: bool = False, pattern: Block | None = None) -> Block:
    """The wiring of one step (input tiles → lines → output tiles), its header and legend entries."""
    c_out, c_in = r.output_shape[0], r.input_shape[0]
    links = (r.channel_links() > 0).numpy()
    copy = copies(r).numpy() if not permutation else np.zeros_like(links)
    n = max(c_in, c_out)
    total = min(height, n * 2.0)  # both columns span this height, each at its own pitch
    plane_in, plane_out = Plane(tuple(r.input_shape[1:])), Plane(tuple(r.output_shape[1:]))
    pitch_in = float(min(2.0, max(0.42, total / c_in)))
    pitch_out = float(min(2.0, max(0.42, total / c_out)))
    body_h = max(c_in * pitch_in, c_out * pitch_out)
    top_in = (body_h - c_in * pitch_in) / 2
    top_out = (body_h - c_out * pitch_out) / 2

    def tile_size(plane: Plane, other: Plane, pitch: float) -> tuple[float, float]:
        """(width, height) of a tile: a map smaller than the other side's is drawn smaller (upsampling grows)."""
        rows, cols = plane.shape
        h = pitch * (0.8 if pitch > 0.8 else 0.7) * max(0.45, min(1.0, rows / other.shape[0]))
        return float(min(3 * h, max(h, h * cols / rows))), h

    (tw_in, th_in), (tw_out, th_out) = tile_size(plane_in, plane_out, pitch_in), tile_size(plane_out, plane_in,
                                                                                           pitch_out)
    every_in = max(1, int(np.ceil(0.56 / pitch_in)))
    every_out = max(1, int(np.ceil(0.56 / pitch_out)))
    name_w = label(f"c{n - 1}", SMALL).w + 0.2
    brackets = _brackets(colouring, copy, permutation)
    bracket_w = max((label(t, SMALL).w for _, _, t in brackets), default=0.0) + (0.8 if brackets else 0.0)
    x_in = name_w
    x_out = x_in + tw_in + SPAN
    width = x_out + tw_out + name_w + bracket_w

    def centre_in(c: int) -> float:
        return top_in + (c + 0.5) * pitch_in

    def centre_out(j: int) -> float:
        return top_out + (j + 0.5) * pitch_out

    def named(k: int, n_col: int, every: int) -> bool:
        """Label channel k: every ``every``-th, and the last when it does not crowd the one before."""
        return k % every == 0 or (k == n_col - 1 and (n_col - 1) % every >= every / 2)

    def reader(c: int) -> int | None:
        """The output whose window a tile shows: the drawn one where it reads c; else none ("dark = the window the
        drawn output reads": another output's window there read as the drawn one's); a permutation's tile the
        cell its line moves (the first output computed from c, else any)."""
        if links[out_channel, c]:
            return out_channel
        if not permutation:
            return None
        computed = np.nonzero(links[:, c] & ~copy[:, c])[0]
        anyone = np.nonzero(links[:, c])[0]
        return int(computed[0]) if len(computed) else (int(anyone[0]) if len(anyone) else None)

    readers = {c: reader(c) for c in range(c_in)}
    used = r.pair_taps()

    def tile(ax: Axes, x: float, yc: float, w: float, th: float, plane: Plane, fill, marks: np.ndarray | None, ink,
             strong: bool, least: float = 0.0, gid: str | None = None) -> None:
        y = yc - th / 2
        ax.add_patch(Rectangle((x, y), w, th, facecolor=fill, edgecolor="black" if strong else EDGE,
                               linewidth=1.8 if strong else 0.6, zorder=3))
        if marks is None:
            return
        rows, cols = plane.shape
        cw, ch = w / cols, th / rows
        lone = int(marks.sum()) == 1  # a lone marked cell is drawn at least ``least`` cells wide
        mw, mh = (max(cw, least), max(ch, least)) if lone else (cw, ch)
        for q in zip(*np.nonzero(marks)):
            rr, cc = plane.cell(tuple(int(v) for v in q))
            ax.add_patch(Rectangle((x + (cc + 0.5) * cw - mw / 2, y + (rr + 0.5) * ch - mh / 2), mw, mh, facecolor=ink,
                                   edgecolor="none", zorder=4, gid=gid))

    def paint(ax: Axes, x: float, y: float) -> None:
        order = sorted(zip(*np.nonzero(links)), key=lambda jc: jc[0] == out_channel)
        for j, c in order:
            j, c = int(j), int(c)
            strong = j == out_channel or permutation
            colour = colouring.pairs.get((j, c), NEUTRAL)
            ax.plot([x + x_in + tw_in, x + x_out], [y + centre_in(c), y + centre_out(j)], color=colour,
                    linewidth=2.0 if strong else 0.9, alpha=1.0 if strong else 0.55,
                    linestyle=(0, (3, 2)) if copy[j, c] else "solid", zorder=2 if strong else 1,
                    solid_capstyle="butt")
        for c in range(c_in):
            reader = readers[c]
            marks = _footprint(r, reader, position, c, used) if reader is not None else None
            colour = colouring.inputs[c]
            ink = colour or NEUTRAL
            ink = ink if reader == out_channel else tint(ink, 0.5)
            tile(ax, x + x_in, y + centre_in(c), tw_in, th_in, plane_in, tint(colour, 0.78), marks, ink,
                 reader == out_channel, least=min(0.22, th_in / 4), gid=f"wiring in c{c} window")
            if named(c, c_in, every_in):
                ax.text(x + x_in - 0.15, y + centre_in(c), f"c{c}", fontsize=SMALL, ha="right", va="center")
        for j in range(c_out):
            marks = np.zeros(plane_out.size, dtype=bool)
            if j == out_channel:
                marks[tuple(position)] = True
            colour = colouring.outputs[j]
            tile(ax, x + x_out, y + centre_out(j), tw_out, th_out, plane_out, tint(colour, 0.78, OUTPUT),
                 marks if j == out_channel else None, PICKED, j == out_channel, least=min(0.35, th_out / 3))
            if named(j, c_out, every_out):
                ax.text(x + x_out + tw_out + 0.15, y + centre_out(j), f"c{j}", fontsize=SMALL, ha="left",
                        va="center")
        bx = x + x_out + tw_out + name_w + 0.3
        for first, last, text in brackets:
            y0, y1 = y + centre_out(first) - th_out / 2, y + centre_out(last) + th_out / 2
            ax.plot([bx, bx + 0.25, bx + 0.25, bx], [y0, y0, y1, y1], color=EDGE, linewidth=1.0)
            ax.text(bx + 0.45, (y0 + y1) / 2, text, fontsize=SMALL, va="center", ha="left")

    body = Block(width, body_h, paint)
    heads = row([label("in", SMALL), label("out", SMALL)], gap=x_out - x_in - label("in", SMALL).w)
    if permutation:
        mixed = mixing(colouring, brackets) if brackets else ""
        said = "every output channel is one input channel, moved" + (f";\nafter it, {mixed}" if mixed else "")
    else:
        said = reading(r, out_channel)
    parts: list[Block] = [label("CHANNELS: input planes → output planes", weight="bold"),
                          label(said, SMALL), row([Block(x_in, 0.1, lambda ax, x, y: None), heads], gap=0.0), body]
    if pattern is not None:
        parts.append(pattern)
    return column(parts, gap=0.15)


def pattern_block(r: Reads, out_channel: int, colouring: Colouring, groups: Sequence[WindowGroup]) -> Block | None:
    """Filters × input channels, each pair in the colour of the kernel it applies: drawn when a filter reads its
    channels through kernels of different sizes (HetConv's (c − j) mod p pattern)."""
    if len(groups) < 2:
        return None
    which = torch.full((r.output_shape[0], r.input_shape[0]), -1)
    for k, g in enumerate(groups):
        which[g.pairs] = k
    if not any(len(set(line.tolist()) - {-1}) > 1 for line in which):
        return None
    grid = [[Cell(colouring.pairs.get((j, c), "white") if which[j, c] >= 0 else "white", dashed=bool(which[j, c] < 0),
                  outline="black" if j == out_channel and which[j, c] >= 0 else None)
             for c in range(which.shape[1])] for j in range(which.shape[0])]
    shown = cells([line[:16] for line in grid[:16]], SMALL)
    return column([label("KERNEL OF EACH PAIR: row = filter (output),\ncolumn = input channel; colour = kernel size",
                         SMALL), shown], gap=0.2)
