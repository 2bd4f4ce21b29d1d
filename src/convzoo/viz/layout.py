"""The size budget of a layer picture and the layout that keeps to it.

A ``convzoo viz`` picture at its defaults fits ``MAX_PX`` (1600 × 1400 px) when saved at the figure's own ``DPI``,
where one cell is ``CELL_IN`` inches and type is >= 9 pt (12.5 px at 100 dpi); ``BUDGET`` is that size in cells,
less the margins. ``flow`` lays blocks left to right and starts a new row where the next block would cross the
budget's width (panels laid out in a grid rather than squeezed).
"""

from __future__ import annotations

from collections.abc import Sequence

from .draw import CELL_IN, DPI, Block, column, row

MAX_PX = (1600, 1400)  # width, height of a default picture
MARGIN = 0.5  # cells around the drawing (draw.render's margin)
BUDGET = tuple(px / (CELL_IN * DPI) - 2 * MARGIN for px in MAX_PX)  # (w, h) in cells


def pixels(block: Block, dpi: float = DPI) -> tuple[int, int]:
    """The (width, height) in pixels of ``block`` rendered by ``draw.render`` and saved at ``dpi``."""
    return (round((block.w + 2 * MARGIN) * CELL_IN * dpi), round((block.h + 2 * MARGIN) * CELL_IN * dpi))


def flow(blocks: Sequence[Block | None], max_width: float = BUDGET[0], gap: float = 1.0, row_gap: float = 0.8,
         align: str = "top") -> Block:
    """Blocks left to right, wrapped into rows no wider than ``max_width`` cells (a block wider than that gets a
    row of its own)."""
    lines: list[list[Block]] = [[]]
    width = 0.0
    for b in blocks:
        if b is None:
            continue
        if lines[-1] and width + gap + b.w > max_width:
            lines.append([])
            width = 0.0
        width += (gap if lines[-1] else 0.0) + b.w
        lines[-1].append(b)
    return column([row(line, gap=gap, align=align) for line in lines if line], gap=row_gap)
