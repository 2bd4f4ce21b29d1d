"""``convzoo sweep --int8``: each trained model quantized to int8 and its test accuracy measured where it runs.

Per trial: the trained weights (the last epoch's, whose float32 test accuracy is the trial's ``final_accuracy``)
are quantized with ``convzoo.quantize`` — calibrated on the first ``CALIBRATION_BATCHES`` batches of the training
set, in order — and run on ExecuTorch/XNNPACK (``INT8_RUNTIME``) over the whole test set; the same batches run
through the float32 model in eager PyTorch. The graph is exported at a fixed batch (``BATCH``, or the training set
size when smaller): the last test batch is padded with zeros and only its real rows are scored.

Per family: the mean int8 accuracy over seeds and its 95 % interval, and the mean paired difference int8 − float32
(same weights, same test set) with its 95 % interval (Student t over seeds, as the sweep's intervals; null for
one seed and where every seed gave the same value). The rows gain these keys in sweep.json; ``sweep_int8.csv`` holds them flat.
"""

from __future__ import annotations

import os
import statistics
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

BATCH = 256
CALIBRATION_BATCHES = 4
INT8_RUNTIME = "xnnpack"
CSV_COLUMNS = ("family", "seeds", "fp32_accuracy", "int8_accuracy", "int8_accuracy_ci95_low",
               "int8_accuracy_ci95_high", "int8_delta", "int8_delta_ci95_low", "int8_delta_ci95_high",
               "int8_mac_fraction", "float_layers")


def require_int8() -> None:
    """Before any training: the packages int8 needs, one MissingExtra line naming the extra otherwise."""
    from ..deploy.extras import MOBILE_EXTRA, QUANTIZE_PACKAGES, RUNTIME_PACKAGES
    from .extras import require

    for package in dict.fromkeys((*QUANTIZE_PACKAGES, *RUNTIME_PACKAGES[INT8_RUNTIME])):
        require(package, MOBILE_EXTRA, "--int8")


def _batches(dataset: Any, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.float(), y) for x, y in DataLoader(dataset, batch_size=size, shuffle=False)]


def _padded(x: torch.Tensor, size: int) -> torch.Tensor:
    if len(x) == size:
        return x
    return torch.cat([x, x.new_zeros(size - len(x), *x.shape[1:])])


def int8_accuracy(model: nn.Module, train_set: Any, test_set: Any) -> dict[str, Any]:
    """{'fp32_accuracy', 'int8_accuracy', 'int8_mac_fraction', 'float_layers'} of ``model`` on ``test_set``, int8 on
    ``INT8_RUNTIME`` calibrated on ``train_set``'s first batches."""
    from ..deploy.quantize import quantize
    from ..deploy.runtimes import runner

    model = model.cpu().float().eval()
    size = min(BATCH, len(train_set))
    calibration = [x for x, _ in _batches(Subset(train_set, range(min(len(train_set), size * CALIBRATION_BATCHES))),
                                          size) if len(x) == size]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = quantize(model, calibration[0], INT8_RUNTIME, calibration)
        run = runner(model, calibration[0], INT8_RUNTIME, "int8", quantized=quantized)
    correct_fp32 = correct_int8 = count = 0
    for x, y in _batches(test_set, size):
        xs = _padded(x, size)
        with torch.no_grad():
            fp32 = model(xs)[: len(y)]
        int8 = run(xs)[: len(y)]
        correct_fp32 += int((fp32.argmax(1) == y).sum())
        correct_int8 += int((int8.argmax(1) == y).sum())
        count += len(y)
    return {"fp32_accuracy": correct_fp32 / count, "int8_accuracy": correct_int8 / count,
            "int8_mac_fraction": quantized.report.int8_fraction(),
            "float_layers": quantized.report.float_layers()}


def measure(results: list[dict[str, Any]], trials: Sequence[Any]) -> None:
    """Fill each trial result with :func:`int8_accuracy` of its trained weights (``state_dict``, still there)."""
    from . import data as data_specs
    from .loop import _limit, build_model

    by_key = {(t.config.arm, t.config.seed): t.config for t in trials}
    loaded: dict[tuple[str, Optional[int], Optional[int]], tuple[Any, Any]] = {}
    for result in results:
        config = by_key[(result["family"], result["seed"])]
        key = (config.data, config.max_train_samples, config.max_test_samples)
        if key not in loaded:
            spec = data_specs.load(config.data)
            loaded[key] = (_limit(spec.train, config.max_train_samples), _limit(spec.test, config.max_test_samples))
        model = build_model(config, result["num_classes"], tuple(result["input_shape"]))
        model.load_state_dict(result["state_dict"])
        result.update(int8_accuracy(model, *loaded[key]))


def _interval(values: Sequence[float], bounds: str) -> Optional[list[float]]:
    from .sweep import interval95

    pair = interval95(values, bounds)
    return None if pair is None else [round(pair[0], 4), round(pair[1], 4)]


def add_columns(rows: list[dict[str, Any]], results: Sequence[dict[str, Any]], out: str) -> None:
    """Add the int8 keys to each family's row (see the module docstring) and write ``out/sweep_int8.csv``."""
    for row in rows:
        mine = sorted((r for r in results if r["family"] == row["family"]), key=lambda r: r["seed"])
        int8 = [r["int8_accuracy"] for r in mine]
        deltas = [r["int8_accuracy"] - r["fp32_accuracy"] for r in mine]
        row.update({
            "int8_runtime": INT8_RUNTIME,
            "fp32_accuracy": round(statistics.fmean(r["fp32_accuracy"] for r in mine), 4),
            "int8_accuracy": round(statistics.fmean(int8), 4),
            "int8_accuracies": [round(a, 4) for a in int8],
            "int8_accuracy_ci95": _interval(int8, "probability"),
            "int8_delta": round(statistics.fmean(deltas), 4),
            "int8_deltas": [round(d, 4) for d in deltas],
            "int8_delta_ci95": _interval(deltas, "none"),
            "int8_mac_fraction": round(statistics.fmean(r["int8_mac_fraction"] for r in mine), 4),
            "float_layers": sorted({name for r in mine for name in r["float_layers"]}),
        })
    from .sweep import write_csv

    write_csv(os.path.join(out, "sweep_int8.csv"), CSV_COLUMNS, rows,
              {"int8_accuracy_ci95": "int8_accuracy", "int8_delta_ci95": "int8_delta"},
              lambda row: {"seeds": len(row["int8_accuracies"]), "float_layers": " ".join(row["float_layers"])})


def int8_table(rows: Sequence[dict[str, Any]]) -> Any:
    """A rich Table: per family float32 and int8 test accuracy (mean [95 % interval] over seeds, as the sweep's
    table) and their paired difference."""
    from rich.table import Table

    seeds = len(rows[0]["int8_accuracies"])

    def pm(mean: float, ci: Optional[list[float]]) -> str:
        if ci is None:  # one seed, or every seed the same value: no interval (interval95)
            return f"{100 * mean:.1f}" + (" (every seed)" if seeds > 1 else "")
        return f"{100 * mean:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"

    table = Table(title=f"int8 on {INT8_RUNTIME} (post-training, calibrated on {CALIBRATION_BATCHES} training "
                        f"batches): test accuracy %, the last epoch's weights"
                        + (f"; mean [95 % interval] of {seeds} seeds, none where every seed gave the same value"
                           if seeds > 1 else ""))
    for column in ("family", "fp32 %", "int8 %", "int8 − fp32", "int8 MACs", "float layers"):
        table.add_column(column, justify="left" if column in ("family", "float layers") else "right")
    for row in rows:
        delta = row["int8_delta"], row["int8_delta_ci95"]
        table.add_row(row["family"], f"{100 * row['fp32_accuracy']:.1f}",
                      pm(row["int8_accuracy"], row["int8_accuracy_ci95"]),
                      ("+" if delta[0] >= 0 else "") + pm(*delta), f"{row['int8_mac_fraction']:.0%}",
                      ", ".join(row["float_layers"]) or "none")
    return table
