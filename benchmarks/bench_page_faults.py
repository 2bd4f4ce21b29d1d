"""What fresh memory costs a CPU op here: first-touch page faults, and how they move an op's time.

PyTorch's CPU allocator takes large tensors from glibc's malloc, which hands memory back to the operating system
when enough is free at the top of its heap (and serves the largest blocks by ``mmap`` until it learns their size).
The next large tensor then lands on fresh pages, and the first write to each 4 KiB page is a page fault that the
kernel serves by zeroing it. This script measures, in the same process:

- the cost of one fault: a fresh anonymous mapping of the bench output's size, one write per page (fastest of
  ``--rounds``), in µs per fault;
- the exact forms of one layer (``DepthwiseConv2d(64, 128, 3)`` on NCHW b8 × 56², output 12.8 MB: the forms its
  ``FormChoice`` compares) timed back to back (each call's output reuses the pages the previous call freed) and
  round-robin (the forms take turns, as in a measurement or a network), with minor faults per call from
  ``getrusage``; fastest and median of the rounds.

Where a round-robin call faults on the pages of its output, its time includes faults × the fault cost, which can
exceed the op's own; ``FormChoice`` therefore runs every form twice in a row in each round
(``layers/form_choice.py``).

    python benchmarks/bench_page_faults.py [--threads 2] [--rounds 30] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import mmap
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from convzoo.layers.form_choice import round_order
from convzoo.perf.results import Table, machine_info, machine_tag, write_results
from convzoo.perf.results_page import table_markdown

PAGE = mmap.PAGESIZE


def fault_cost(size: int, rounds: int) -> float:
    """Seconds per first-touch fault: a fresh anonymous mapping of ``size`` bytes, one write per page (fastest of
    ``rounds``)."""
    best = float("inf")
    for _ in range(rounds):
        region = mmap.mmap(-1, size)
        pages = np.frombuffer(region, dtype=np.uint8)
        start = time.perf_counter()
        pages[::PAGE] = 1
        best = min(best, time.perf_counter() - start)
        del pages
        region.close()
    return best / (size // PAGE)


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(argv: list[str] | None = None) -> Table:
    import convzoo as cz

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--quick", action="store_true", help="small shapes and 2 rounds; writes nothing")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = 2 if args.quick else args.rounds
    n, c, size = (1, 8, 16) if args.quick else (8, 64, 56)
    x = torch.randn(n, c, size, size)
    layer = cz.DepthwiseConv2d(c, 2 * c, 3, padding=1)
    forms = {name: (lambda name=name: layer.run_form(name, x)) for name in layer.forms(x)}
    out_bytes = 4 * n * 2 * c * size * size
    per_fault = fault_cost(max(out_bytes, 16 * PAGE), rounds)
    times: dict[tuple[str, str], list[float]] = {}
    faults: dict[tuple[str, str], int] = {}
    with torch.no_grad():
        for f in forms.values():
            f()  # warm-up: compilation, oneDNN's kernel choice
        for r in range(rounds):
            for name, f in forms.items():  # back to back: the same form three times, the last two timed
                f()
                for _ in range(2):
                    _one(f, times.setdefault((name, "back to back"), []), faults, (name, "back to back"))
            for _ in range(2):  # round-robin: each form once per turn
                for name in round_order(list(forms), r):
                    _one(forms[name], times.setdefault((name, "round-robin"), []), faults, (name, "round-robin"))
    rows = []
    for (name, how), ts in times.items():
        rows.append([name, how, 1e3 * min(ts), 1e3 * statistics.median(ts), faults[(name, how)] / len(ts),
                     1e3 * faults[(name, how)] / len(ts) * per_fault])
    rows.sort(key=lambda row: (row[0], row[1]))
    table = Table(f"The forms of DepthwiseConv2d({c}, {2 * c}, 3) on NCHW b{n} × {size}² (output "
                  f"{out_bytes / 1e6:.1f} MB); one first-touch fault = {per_fault * 1e6:.2f} µs",
                  ["form", "calls", ("fastest ms", ".3f"), ("median ms", ".3f"), ("minor faults / call", ".0f"),
                   ("faults × fault cost, ms", ".2f")], rows,
                  "Fastest and median of the rounds; faults per call from getrusage over the same calls.")
    print(table_markdown(table))
    if not args.quick:
        info = machine_info(fault_us=round(per_fault * 1e6, 3))
        write_results(args.out / f"page_faults-{machine_tag(info)}.json", "What fresh memory costs a CPU op",
                      [table], description=(
                          "The cost of a first-touch page fault (a fresh mapping, one write per page), and the "
                          "exact forms of one layer timed back to back against round-robin, with minor faults per "
                          "call from getrusage: why FormChoice runs every form twice in a row in each round."),
                      machine=info, data={"fault_seconds": per_fault, "output_bytes": out_bytes,
                                          "rows": [dict(zip(["form", "calls", "fastest_ms", "median_ms",
                                                             "faults_per_call", "fault_ms"], row)) for row in rows]})
    return table


def _one(f: Callable[[], object], times: list[float], faults: dict[tuple[str, str], int], key: tuple[str, str]) -> None:
    before = _faults()
    start = time.perf_counter()
    f()
    times.append(time.perf_counter() - start)
    faults[key] = faults.get(key, 0) + _faults() - before


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
