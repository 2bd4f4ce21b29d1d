"""Grids of one channel's spatial data as cells: 1-D as one row, 2-D as rows × columns, 3-D as depth slices
side by side (one empty column between slices). ``Plane`` maps a spatial position to its cell."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .draw import PICKED, Block, Cell, cells, column, label, row, SMALL


@dataclass(frozen=True)
class Plane:
    size: tuple[int, ...]  # spatial size drawn (padding included)

    @property
    def shape(self) -> tuple[int, int]:
        if len(self.size) == 1:
            return 1, self.size[0]
        if len(self.size) == 2:
            return self.size[0], self.size[1]
        d, h, w = self.size
        return h, d * (w + 1) - 1

    def cell(self, pos: Sequence[int]) -> tuple[int, int]:
        if len(pos) == 1:
            return 0, pos[0]
        if len(pos) == 2:
            return pos[0], pos[1]
        return pos[1], pos[0] * (self.size[2] + 1) + pos[2]

    def empty(self) -> list[list[Cell]]:
        rows, cols = self.shape
        grid = [[Cell(None) for _ in range(cols)] for _ in range(rows)]
        for pos in np.ndindex(*self.size):
            r, c = self.cell(pos)
            grid[r][c] = Cell("white")
        return grid


def planes_block(grids: Sequence[list[list[Cell]]], names: Sequence[str], more: int = 0, per_row: int = 2,
                 size: float = 10, wrap: Callable[[Block], Block] | None = None) -> Block:
    """Channel planes in a grid of ``per_row`` columns, each captioned (c0, c1, …); ``more`` channels not drawn
    are said in words; ``wrap`` draws over each plane's cells (a frame)."""
    tiles = [column([label(n, SMALL), (wrap or _same)(cells(g, size))], gap=0.15) for g, n in zip(grids, names)]
    lines = [row(tiles[i:i + per_row], gap=0.8) for i in range(0, len(tiles), per_row)]
    if more:
        lines.append(label(f"+ {more} more channel{'s' if more > 1 else ''} not drawn", SMALL))
    return column(lines, gap=0.4)


def _same(block: Block) -> Block:
    return block


def mark(grid: list[list[Cell]], plane: Plane, pos: Sequence[int], text: str = "") -> None:
    r, c = plane.cell(pos)
    grid[r][c] = Cell(PICKED, text or grid[r][c].text, outline="black")
