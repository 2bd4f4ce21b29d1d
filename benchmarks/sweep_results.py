"""A ``convzoo sweep`` folder as a results file, so the docs site renders the sweep like every benchmark.

    python benchmarks/sweep_results.py runs/sweep -o benchmarks/results/sweep_mnist1d.json \
        --title "MNIST-1D: accuracy against cost" --command "convzoo sweep --data mnist1d ..." [--about TEXT]

Reads ``FOLDER/sweep.json`` (one row per family; rows written before ``mean_accuracy`` existed call the mean
``best_accuracy``) and writes one table — params, MACs, latency and accuracy with their 95 % intervals, the
difference to the first family and Welch's p (and, for a ``--int8`` sweep, a second table: float32 against int8
accuracy of the same weights) — with ``sweep_pareto.png`` as its figure when the folder lies next
to the results file. The machine is the trials' own record (threads, torch, CPU: every trial records them); a
sweep whose rows carry no trials has its machine "not recorded".
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from convzoo.perf.results import Table, write_results

DESCRIPTION = (
    "The same network trained once per convolution family and seed (`convzoo sweep`): each trial's best test "
    "accuracy over its epochs, averaged over seeds, next to the family's parameters, MACs per input and the "
    "trained model's median batch-1 latency on one CPU thread (every model timed round-robin in one process, so "
    "load from other processes hits each alike), with 95 % intervals over seeds and Welch's t-test against the "
    "first family (* = significant at 0.05).")


def _interval(values: Any, scale: float, digits: int) -> str:
    return f"[{values[0] * scale:.{digits}f}, {values[1] * scale:.{digits}f}]" if values else "—"


def sweep_table(rows: list[dict[str, Any]]) -> Table:
    """One line per family: params, MACs, latency (95 % interval), accuracy in % (95 % interval), Δ vs the first
    family in points, Welch's p."""
    body = []
    for row in rows:
        accuracy = row.get("mean_accuracy", row.get("best_accuracy"))
        p = row.get("p_value")
        body.append([row["family"], row["params"], row["macs"], row["latency_ms"],
                     _interval(row.get("latency_ci95"), 1, 3), accuracy * 100,
                     _interval(row.get("accuracy_ci95"), 100, 1),
                     None if p is None else 100 * row["delta_vs_baseline"],
                     None if p is None else f"{p:.2g}{' *' if row.get('significant') else ''}"])
    method = next((r["interval_method"] for r in rows if r.get("interval_method")),
                  "symmetric Student-t intervals over seeds (written before the logit-scale intervals)")
    return Table("Accuracy against cost, per family",
                 ["family", "params", "MACs", ("latency ms", ".3f"), "latency 95 % interval",
                  ("mean best test accuracy %", ".1f"), "accuracy 95 % interval", ("Δ vs first, points", "{:+.1f}"),
                  "Welch p"], body, f"Intervals: {method}.")


def int8_table(rows: list[dict[str, Any]]) -> Table:
    """One line per family of a ``--int8`` sweep: float32 and int8 test accuracy of the same trained weights (mean
    over seeds, int8's 95 % interval), the mean paired difference int8 − float32 with its interval, the share of
    MACs in int8 and the layers left in floating point."""
    body = [[row["family"], 100 * row["fp32_accuracy"], 100 * row["int8_accuracy"],
             _interval(row.get("int8_accuracy_ci95"), 100, 1), 100 * row["int8_delta"],
             _interval(row.get("int8_delta_ci95"), 100, 1), 100 * row["int8_mac_fraction"],
             ", ".join(row.get("float_layers", [])) or "none"] for row in rows]
    runtime = rows[0].get("int8_runtime", "xnnpack")
    return Table(f"int8 on {runtime} against float32, the same weights (each trial's last epoch)",
                 ["family", ("fp32 %", ".1f"), ("int8 %", ".1f"), "int8 95 % interval", ("int8 − fp32, points", "{:+.1f}"),
                  "difference 95 % interval", ("int8 MACs %", ".0f"), "float layers"], body,
                 "Post-training int8 (PT2E, calibrated on training batches), run on the runtime named; intervals "
                 "over seeds (int8 accuracy on the logit scale, the paired difference a Student-t interval).")


def trials_machine(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The environment every trial recorded, as the machine header; keys on which trials differ say so."""
    trials = [t for row in rows for t in row.get("trials", [])]
    if not trials:
        return None
    machine: dict[str, Any] = {}
    for key, name in (("cpu", "cpu"), ("cpu_capability", "cpu_capability"), ("threads", "threads"),
                      ("torch", "torch")):
        values = {str(t.get(key)) for t in trials if t.get(key) is not None}
        if values:
            machine[name] = values.pop() if len(values) == 1 else "differs between trials: " + ", ".join(sorted(values))
    return machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the sweep's --out folder (holds sweep.json)")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--title", required=True)
    parser.add_argument("--command", required=True, help="the convzoo sweep command that made the folder")
    parser.add_argument("--about", default="", help="the data, model and training settings, one paragraph")
    parser.add_argument("--date", default="today", help="ISO date of the sweep (default today)")
    args = parser.parse_args()
    rows = json.loads((args.folder / "sweep.json").read_text(encoding="utf-8"))
    pareto = args.folder / "sweep_pareto.png"
    figures = []
    if pareto.exists():
        figures.append((os.path.relpath(pareto, args.output.parent),
                        "Accuracy against MACs and against latency, with the Pareto front"))
    description = DESCRIPTION + (f"\n\n{args.about}" if args.about else "")
    tables = [sweep_table(rows)] + ([int8_table(rows)] if all("int8_accuracy" in row for row in rows) else [])
    write_results(args.output, args.title, tables, description=description,
                  machine=trials_machine(rows), date=args.date, command=args.command, figures=figures,
                  data={"rows": rows})
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
