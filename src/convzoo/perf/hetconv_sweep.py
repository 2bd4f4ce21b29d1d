"""``convzoo bench hetconv --sweep``: HetConv's layer (implementation 'auto') against the masked dense conv
(``MaskedDenseConv2d``: the ``nn.Conv2d`` one would write instead of HetConv) and against its grouped form (the
p-group k×k + dense 1×1), over a representative grid of shapes, in both memory formats.

Per row the layer and the masked dense conv run round-robin in the same rounds (``round_robin``), so the ratio
convzoo / masked dense is fair on a busy machine; the acceptance is ratio ≤ 1.05 in every row. The grouped form
is timed against the masked dense conv in rounds of its own. The grid is
hand-picked (not the full product of batch 1–32, channels 16–256, maps 7–112, p 2–8, k 3/5): rows whose masked
dense conv exceeds ``max_gmacs`` are left out, so the whole sweep takes a few minutes on 2 cores.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .results import Table, machine_info, write_results
from .timing import FORMATS, make_inputs, round_robin, to_format

# (batch, channels in = out, map size, p, k): small maps where one dense call wins, large maps where the
# grouped form's fewer MACs win, and the crossings between.
GRID: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 16, 7, 2, 3), (1, 64, 14, 4, 3), (1, 128, 28, 8, 3), (1, 256, 7, 4, 5), (1, 32, 112, 4, 3),
    (4, 16, 56, 2, 5), (4, 64, 28, 4, 5), (4, 128, 14, 2, 3), (4, 256, 14, 8, 3), (4, 32, 56, 8, 3),
    (8, 64, 28, 4, 3), (8, 64, 56, 4, 3), (8, 128, 7, 4, 3), (8, 16, 112, 4, 3), (8, 256, 7, 2, 5),
    (16, 32, 28, 2, 3), (16, 128, 14, 4, 5), (32, 16, 28, 8, 3), (32, 64, 7, 2, 3), (32, 64, 14, 8, 5),
)
QUICK_GRID: tuple[tuple[int, int, int, int, int], ...] = ((1, 8, 7, 2, 3), (2, 8, 9, 4, 5))


class MaskedDenseConv2d(nn.Conv2d):
    """The baseline: a HetConv layer run as one dense ``nn.Conv2d`` with its masked kernel (zeros where HetConv has
    no tap), same bias, geometry and weight memory format. Without autograd the kernel is loaded once, so a call
    is a plain ``nn.Conv2d`` call; with autograd the kernel is rebuilt from the layer's own weights every call
    (``dense_weight()``), so the gradients reach HetConv's parameters as in training."""

    def __init__(self, layer: Any) -> None:
        pairs = layer.padding_pairs
        if any(lo != hi for lo, hi in pairs) or layer.padding_mode != "zeros":
            raise ValueError(f"the sweep's baseline takes symmetric zero padding, got {pairs} {layer.padding_mode}")
        weight = layer.dense_weight().detach()
        super().__init__(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                         tuple(lo for lo, _ in pairs), layer.dilation, bias=layer.bias is not None,
                         device=weight.device, dtype=weight.dtype)
        self.__dict__["source"] = layer  # not a submodule: its parameters stay the layer's
        self.requires_grad_(False)  # its own copy serves passes without autograd only
        with torch.no_grad():
            self.weight.copy_(weight)
            if layer.bias is not None:
                self.bias.copy_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self._conv_forward(x, self.source.dense_weight(), self.source.bias)
        return self._conv_forward(x, self.weight, self.bias)


@dataclass
class SweepRow:
    """One shape in one memory format and pass: medians in ms, the form 'auto' chose, convzoo / masked dense."""

    batch: int
    channels: int
    size: int
    p: int
    kernel: int
    memory_format: str
    backward: bool
    masked_dense_ms: float
    grouped_ms: float
    convzoo_ms: float
    chosen: str
    ratio: float  # convzoo / masked dense (medians)
    ratio_of_minima: float  # convzoo / masked dense (fastest runs: the least disturbed by other processes)

    @property
    def shape(self) -> str:
        return f"{self.batch}×{self.channels}×{self.size}² p={self.p} k={self.kernel}"


def masked_dense_gmacs(batch: int, channels: int, size: int, kernel: int) -> float:
    """MACs of the masked dense conv at stride 1, 'same' padding: N·C_out·HW·C_in·k², in 10⁹."""
    return batch * channels * channels * size * size * kernel * kernel / 1e9


def sweep(grid: Sequence[tuple[int, int, int, int, int]] = GRID, formats: Sequence[str] = tuple(FORMATS),
          backward: bool = False, max_gmacs: float = 2.0, min_time: float = 0.5, max_rounds: int = 400,
          dtype: torch.dtype = torch.float32, device: str = "cpu",
          progress: Callable[[str], None] | None = None) -> list[SweepRow]:
    """Time the layer ('auto', its choice made before timing) against the masked dense conv, and the grouped form
    against it too, on every grid shape in every format, forward (and forward+backward with ``backward``): each
    pair interleaved round-robin (``round_order``); rounds = clamp(min_time / (one round's time), 3, max_rounds),
    so microsecond rows get hundreds of rounds."""
    from ..layers.hetconv import HetConv2d

    rows: list[SweepRow] = []
    for batch, channels, size, p, kernel in grid:
        if masked_dense_gmacs(batch, channels, size, kernel) > max_gmacs:
            continue
        torch.manual_seed(0)
        layer = HetConv2d(channels, channels, kernel, padding=kernel // 2, p=p, device=device, dtype=dtype)
        masked = MaskedDenseConv2d(layer)
        for fmt_name in formats:
            to_format(layer, FORMATS[fmt_name])
            to_format(masked, FORMATS[fmt_name])
            for grad in (False, True) if backward else (False,):
                if progress:
                    progress(f"{batch}×{channels}×{size}² p={p} k={kernel} {fmt_name}{' fwd+bwd' if grad else ''}")
                inputs = make_inputs((batch, channels, size, size), 3, device, dtype, FORMATS[fmt_name],
                                     requires_grad=grad)
                with torch.set_grad_enabled(grad):
                    chosen = layer.chosen_form(inputs[0])  # the one-time measurement, outside the timed rounds
                grouped = functools.partial(layer._grouped_form, frozen=None if grad else fmt_name)  # as the layer runs it
                params = [*layer.parameters(), *masked.parameters()]

                def timed(fns: dict[str, Callable[[torch.Tensor], Any]]) -> dict[str, Any]:
                    candidates = {k: (f, inputs) for k, f in fns.items()}
                    probe = round_robin(candidates, backward=grad, params=params, rounds=1)
                    per_round = sum(t.median_ms for t in probe.values()) * 1e-3
                    rounds = max(3, min(max_rounds, math.ceil(min_time / max(per_round, 1e-9))))
                    return round_robin(candidates, backward=grad, params=params, rounds=rounds)

                # The acceptance pair alone in its rounds: a third candidate in between (the grouped form) leaves
                # caches cold for whichever runs after it, which shows in microsecond rows.
                t = timed({"masked_dense": masked, "convzoo": layer})
                gr = timed({"masked_dense": masked, "grouped": grouped})["grouped"].median_ms
                md, cz = t["masked_dense"].median_ms, t["convzoo"].median_ms
                rows.append(SweepRow(batch, channels, size, p, kernel, fmt_name, grad, md, gr, cz, chosen, cz / md,
                                     t["convzoo"].min_ms / t["masked_dense"].min_ms))
        to_format(layer, torch.contiguous_format)
        to_format(masked, torch.contiguous_format)
    return rows


def sweep_table(rows: Sequence[SweepRow], title: str) -> Any:
    """The rows for the terminal: the results table (:func:`sweep_results_table`) as a rich Table."""
    from .results_page import rich_table

    return rich_table(sweep_results_table([asdict(r) | {"shape": r.shape} for r in rows]), title)


SWEEP_DESCRIPTION = (
    "HetConv's layer (implementation 'auto', its one-time choice made before the rounds) against the masked dense "
    "conv (an `nn.Conv2d` holding HetConv's masked kernel, rebuilt from its weights under autograd when a backward "
    "follows) over a grid of shapes (batch 1–32, channels 16–256, maps 7–112, p 2–8, k 3/5), both memory formats, "
    "forward and forward+backward. The layer and the masked dense conv run as a pair in their own interleaved "
    "rounds; the grouped form (p-group k×k + dense 1×1) against the masked dense conv in rounds of its own. "
    "Acceptance: convzoo / masked dense ≤ 1.05 in every row.")


def _summary(rows: Sequence[dict[str, Any]]) -> str:
    """What the acceptance reads from the rows: the worst ratio per pass, the rows over 1.05, and the ratios where
    each kind of form was chosen (range and median per pass)."""
    def part(pass_rows: list[dict[str, Any]], label: str) -> str:
        grouped = sorted(r["ratio"] for r in pass_rows if r["chosen"].startswith("grouped"))
        dense = sorted(r["ratio"] for r in pass_rows if not r["chosen"].startswith("grouped"))
        text = f"{label}: max {max(r['ratio'] for r in pass_rows):.3f}"
        if grouped:
            text += (f"; a grouped form chosen in {len(grouped)} rows, {grouped[0]:.3f}–{grouped[-1]:.3f} "
                     f"(median {statistics.median(grouped):.3f})")
        if dense:
            text += f"; masked dense chosen in {len(dense)} rows, median {statistics.median(dense):.3f}"
        return text

    passes = [part([r for r in rows if r["backward"] == b], name) for b, name in ((False, "forward"),
                                                                                    (True, "forward+backward"))
              if any(r["backward"] == b for r in rows)]
    over = [f"{r['shape']} {r['memory_format']} {'fwd+bwd' if r['backward'] else 'fwd'} ({r['ratio']:.3f})"
            for r in rows if r["ratio"] > 1.05]
    return (f"{len(rows)} rows; convzoo / masked dense — " + ". ".join(passes)
            + f". Rows over 1.05: {len(over)}" + (f" ({'; '.join(over)})" if over else "") + ".")


def sweep_results_table(rows: Sequence[dict[str, Any]]) -> Table:
    """The sweep's rows (``asdict(SweepRow) | {'shape': ...}``) as a results table, its summary in the notes."""
    worst_min = max((r["ratio_of_minima"] for r in rows), default=math.nan)
    return Table("HetConv against the masked dense conv, every shape",
                 ["shape", "format", "pass", ("masked dense ms", ".3f"), ("grouped ms", ".3f"),
                  ("convzoo ms", ".3f"), "chosen", ("convzoo / masked dense", ".3f"), ("(fastest rounds)", ".3f")],
                 [[r["shape"], r["memory_format"], "fwd+bwd" if r["backward"] else "fwd", r["masked_dense_ms"],
                   r["grouped_ms"], r["convzoo_ms"], r["chosen"], r["ratio"], r["ratio_of_minima"]] for r in rows],
                 _summary(rows) + f" Of the fastest rounds, the max is {worst_min:.3f}. Acceptance ≤ 1.05; times "
                 "are medians (ms) of runs interleaved round-robin.")


def run_sweep_command(console: Any, dtype: str, device: str, threads: int | None, backward: bool, quick: bool,
                      output: str | None) -> list[SweepRow]:
    """The body of ``convzoo bench hetconv --sweep``: the table, and the results file when ``output`` is given."""
    import os

    from .compare import checked_options
    from .timing import configure

    torch_dtype, dev = checked_options(dtype, device, ["hetconv"])
    info = configure(dev, threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    grid, min_time = (QUICK_GRID, 0.0) if quick else (GRID, 0.5)
    with console.status("hetconv sweep") as status:
        rows = sweep(grid, backward=backward, min_time=min_time, max_rounds=3 if quick else 400, dtype=torch_dtype,
                     device=dev, progress=lambda s: status.update(f"hetconv sweep {s}"))
    info["load_average"] = (load, os.getloadavg() if load is not None else None)
    from .runtime_compare import machine_header

    console.print(sweep_table(rows, f"HetConv sweep — {info['device']}, {info['threads']} thread(s), "
                                    f"torch {info['torch']}, load {load}\n"
                                    + machine_header(info["threads"], runtimes=False, device=info["device"])))
    if output:
        dicts = [asdict(r) | {"shape": r.shape} for r in rows]
        write_results(output, f"HetConv at every shape: the layer against the masked dense conv ({info['device']})",
                      [sweep_results_table(dicts)], description=SWEEP_DESCRIPTION,
                      machine=machine_info(dev, load_average_before=load and round(load[0], 2)),
                      data={"max_ratio": max((r.ratio for r in rows), default=None),
                            "max_ratio_of_minima": max((r.ratio_of_minima for r in rows), default=None),
                            "rows": dicts})
        console.print(f"results: {output}")
    return rows
