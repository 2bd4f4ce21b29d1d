"""``convzoo sweep``: the same network trained once per convolution family — accuracy next to cost.

Answers the MobileNet paper's Table 4 question on the user's data. Each row: family, params and MACs (from
``convzoo.cost`` on one 32×32 input; FLOPs = 2 × MACs), measured inference latency (median of
``LATENCY_RUNS`` timed forwards at batch 1 in eval mode on the training device after warm-up; one thread on CPU), and the best
test accuracy over the epochs. Written to ``OUT/sweep.json`` (a list of rows with exactly the keys of
``COLUMNS``; the HTML report reads it) and ``OUT/sweep.csv``; each family's run lives in ``OUT/FAMILY/``.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import time
from dataclasses import replace
from typing import Any, Callable

import torch
from torch import nn

from .loop import TrainConfig, train

COLUMNS = ("family", "params", "macs", "latency_ms", "best_accuracy")
LATENCY_RUNS = 30


@torch.no_grad()
def latency_ms(model: nn.Module, shape: tuple[int, ...], device: str, runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one forward at ``shape`` in ms, after 10 warm-up runs.

    On CPU it runs on one thread: at batch 1 the layers are too small to split, and on a shared machine
    OpenMP threads waiting for a busy core made the 2-thread median vary 5–100× between runs.
    """
    model.eval()
    x = torch.randn(shape, device=device)
    threads = torch.get_num_threads()
    if not device.startswith("cuda"):
        torch.set_num_threads(1)
    try:
        for _ in range(10):
            model(x)
        times = []
        for _ in range(runs):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def sweep(base: TrainConfig, convs: list[str], out: str, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    from ..analysis.cost import cost
    from ..registry import family

    for name in convs:
        family(name)  # unknown names fail before any training
    rows = []
    rank0 = True
    for name in convs:
        config = replace(base, conv=name, out=os.path.join(out, name))
        config.validate()
        result = train(config, log=log)
        rank0 = result["rank"] == 0
        if not rank0:
            continue
        model = result["model"]
        shape = (1, 3, 32, 32)
        report = cost(model, shape)
        rows.append({"family": name, "params": int(report.params), "macs": int(report.macs),
                     "latency_ms": round(latency_ms(model, shape, result["device"]), 4),
                     "best_accuracy": round(float(result["best_accuracy"]), 4)})
    if rank0:
        write(rows, out)
    return rows


def write(rows: list[dict[str, Any]], out: str) -> None:
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, ".sweep.json.tmp")
    with open(tmp, "w") as handle:
        json.dump([{k: row[k] for k in COLUMNS} for row in rows], handle, indent=1)
    os.replace(tmp, os.path.join(out, "sweep.json"))
    with open(os.path.join(out, "sweep.csv"), "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
