"""``convzoo sweep``: the same network trained per convolution family and seed — accuracy next to cost.

Answers the MobileNet paper's Table 4 question on the user's data. Every (family, seed) pair is one *trial*:
one training run in its own folder ``OUT/FAMILY/seed-S/`` (checkpoint, metrics.jsonl, TensorBoard events,
``attempts.jsonl``), seeds ``seed, seed+1, …``. Trials run one after the other (default), in ``workers``
processes on this machine, or as Ray tasks (``ray=ADDRESS``: ``'local'`` starts a local instance, anything else
is passed to ``ray.init(address=...)``); a Ray task whose worker dies is retried and resumes from its trial's
checkpoint, so a lost worker costs at most one trial's unfinished epoch.

Reproducible: a trial's numbers depend only on its configuration and seed, whichever executor ran it. Every trial
runs with the same number of torch CPU threads (``threads``, default ``TRIAL_THREADS`` = 1: a float sum split
over another number of threads rounds differently, and the difference grows over training) and with each
layer's choice between exact forms fixed instead of timed (``form_choice.fixed_choices``); the thread count, the
torch version and the CPU (model and torch's CPU capability, which picks oneDNN's kernels) are recorded with each
trial, since another CPU or torch may round differently.

After training, this process times each family once (``LATENCY_METHOD``): latency does not depend on the seed
(every seed's model has the same layers and shapes), so timing every seed's model only measured other processes'
load (identical models gave medians of 5.1, 1.7 and 1.5 ms in one round-robin run). One trained model per family
runs in interleaved rounds (``perf.runtime_compare.interleaved_rounds``: every family once per round, the order
rotated and reversed each round, so load hits every family alike) and its fastest round is its latency (load only
adds time). Params and MACs come from ``convzoo.cost`` on one input of the data's shape (FLOPs = 2 × MACs).

Per family, ``OUT/sweep.json`` holds one row: ``mean_accuracy`` (the mean over seeds of each trial's best test
accuracy), every seed's value (``accuracies``, and ``final_accuracies`` after the last epoch), the latency
(``latency_ms``, how it was timed in ``latency_method``), the accuracy's 95 % interval over seeds
(:func:`interval95`, method in ``INTERVAL_METHOD``; null for one seed or when every seed gave the same value),
Welch's t-test of the family's accuracies against the first family's (p-value, ``significant`` at ``ALPHA``;
null where it is undefined), and the trials with their environment. ``OUT/sweep.csv`` is the same table flat,
``OUT/sweep_trials.csv`` one line per trial, and ``OUT/sweep_pareto.png`` the accuracy-vs-MACs and
accuracy-vs-latency plot (:func:`pareto_plot`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import statistics
import time
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import torch
from torch import nn

from .extras import require
from .loop import TrainConfig, build_model, pick_device, train

COLUMNS = ("family", "params", "macs", "latency_ms", "mean_accuracy")  # the keys every consumer may rely on
CSV_COLUMNS = ("family", "params", "macs", "latency_ms", "mean_accuracy", "accuracy_ci95_low", "accuracy_ci95_high",
               "accuracy_std", "seeds", "p_value", "significant")
TRIAL_COLUMNS = ("family", "seed", "params", "macs", "best_accuracy", "final_accuracy", "seconds",
                 "attempts", "threads", "torch", "cpu", "cpu_capability", "host")
TRIAL_THREADS = 1  # torch CPU threads per trial unless told otherwise: the same on every executor
INTERVAL_METHOD = ("95 % Student-t interval over seeds of the accuracy on the logit scale, half-width by the delta "
                   "method around the mean: inside (0, 1) by construction; none where every seed gave the same value "
                   "(a t-interval of width 0 would claim certainty that a few seeds cannot give)")
LATENCY_RUNS = 30
LATENCY_WARMUP = 10
LATENCY_METHOD = (f"fastest of {LATENCY_RUNS} interleaved rounds (every family's model once per round, the order "
                  f"rotated and reversed each round) after {LATENCY_WARMUP} warm-up calls each; batch 1, eval mode, "
                  f"one CPU thread; timed once per family on its first seed's trained model (latency does not "
                  f"depend on the seed), so no interval over seeds")
ALPHA = 0.05
RAY_RETRIES = 3


# --- one trial ---------------------------------------------------------------------------------------------------


def _attempt(folder: str, token: str) -> int:
    """Record this attempt in ``folder/attempts.jsonl``; return its number within sweep ``token`` (1 = first).
    Under torchrun (never retried) nothing is recorded: every rank's trial is attempt 1."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "attempts.jsonl")
    earlier = 0
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                try:
                    earlier += json.loads(line).get("sweep") == token
                except ValueError:
                    continue
    with open(path, "a") as handle:
        handle.write(json.dumps({"sweep": token, "attempt": earlier + 1, "pid": os.getpid(),
                                 "host": socket.gethostname(), "time": time.time()}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return earlier + 1


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    import platform

    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def trial_environment(threads: int) -> dict[str, Any]:
    """What a trial's numbers may depend on besides its configuration and seed: torch CPU threads, torch version,
    CPU model and torch's CPU capability (the vector ISA its kernels were picked for), and the host."""
    return {"threads": threads, "torch": torch.__version__, "cpu": cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "host": socket.gethostname()}


def run_trial(config: TrainConfig, token: str, threads: int = TRIAL_THREADS) -> dict[str, Any]:
    """Train one (family, seed) trial in ``config.out`` on ``threads`` torch CPU threads, with the layers' form
    choices fixed (``fixed_choices``); return its numbers, its environment and the trained weights (CPU).

    A second attempt within the same sweep ``token`` (the first one's worker died) resumes from the trial's
    checkpoint.
    """
    from ..arithmetic.cost import cost
    from ..layers.form_choice import fixed_choices

    attempt = _attempt(config.out, token)
    if attempt > 1:
        config = replace(config, resume=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        with fixed_choices():
            result = train(config, log=lambda _: None)
    finally:
        torch.set_num_threads(previous)
    model: nn.Module = result["model"]
    report = cost(model, (1, *result["input_shape"]))
    return {"family": config.arm, "seed": config.seed, "params": int(report.params), "macs": int(report.macs),
            "best_accuracy": float(result["best_accuracy"]), "final_accuracy": float(result["final_accuracy"]),
            "seconds": time.perf_counter() - started, "attempts": attempt, "rank": result["rank"],
            **trial_environment(threads),
            "num_classes": result["num_classes"], "input_shape": list(result["input_shape"]),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


# --- latency -----------------------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def latencies_ms(models: Sequence[nn.Module], shapes: Sequence[tuple[int, ...]], device: str,
                 runs: int = LATENCY_RUNS) -> list[float]:
    """Fastest batch-1 forward time (ms) of each model over ``runs`` interleaved rounds (``LATENCY_METHOD``):
    t_m = min_r t_{m,r}, every model once per round in ``round_order`` (so none always follows the same one).

    The fastest round, not the median: other processes' load only adds time, and on a shared machine it moved the
    median of identical models 3× within one run. On CPU it runs on one thread: at batch 1 the layers are too small
    to split, and OpenMP threads waiting for a busy core made the 2-thread median vary 5–100× between runs.
    """
    from ..perf.runtime_compare import interleaved_rounds

    inputs = [torch.randn(shape, device=device) for shape in shapes]

    def call(model: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def run(_: torch.Tensor) -> None:  # each model its own input: shapes may differ between models
            _sync(device)
            model(x)
            _sync(device)
        return run

    threads = torch.get_num_threads()
    if not device.startswith("cuda"):
        torch.set_num_threads(1)
    try:
        for model, x in zip(models, inputs):
            model.eval()
            for _ in range(LATENCY_WARMUP):  # the layers' form choices are made and confirmed here, not timed
                model(x)
        times = interleaved_rounds([call(m, x) for m, x in zip(models, inputs)], inputs[:1], repeats=runs)
    finally:
        torch.set_num_threads(threads)
    return [min(t) for t in times]


def latency_ms(model: nn.Module, shape: tuple[int, ...], device: str, runs: int = LATENCY_RUNS) -> float:
    """Fastest wall time of one forward at ``shape`` in ms (see :func:`latencies_ms`)."""
    return latencies_ms([model], [shape], device, runs)[0]


# --- statistics --------------------------------------------------------------------------------------------------


def interval95(values: Sequence[float], bounds: str = "probability") -> Optional[tuple[float, float]]:
    """95 % interval of the mean of ``values`` over seeds that stays inside the values' range by construction;
    None for fewer than 2 values or when they are all equal.

    The Student-t interval m ± t·s/√n (t at 0.975 with n − 1 degrees of freedom, s the sample standard deviation)
    is computed on a scale where the bound is at infinity and mapped back: ``bounds='probability'`` (accuracies in
    [0, 1]) uses the logit, η = ln(m / (1 − m)), ``'positive'`` (latencies) the log, η = ln m. The half-width there
    follows from the delta method, h = t·s/√n · |dη/dm| (1 / (m(1 − m)) for the logit, 1/m for the log), so the
    interval is [g⁻¹(η − h), g⁻¹(η + h)]: it contains the mean, is asymmetric near a bound, equals the
    ordinary t-interval to first order far from it, and never leaves (0, 1) or (0, ∞) — a t-interval clipped to
    [0, 1] would claim certainty at the bound that no data gave. ``'none'`` (differences, e.g. int8 − float32
    accuracy per seed) is the t-interval itself. Seeds are the replicates: the interval is for the
    training randomness (initialisation, data order) on this test set. No spread (s = 0, which includes a mean at
    a bound) gives None, not the point [m, m]: a few equal seeds do not show that the next one lands there too
    (the int8 − float32 difference of two seeds, −0.7 and −0.7, is not known to ±0).
    """
    from scipy import stats

    if bounds not in ("probability", "positive", "none"):
        raise ValueError(f"bounds={bounds!r} must be 'probability', 'positive' or 'none'")
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    spread = statistics.stdev(values)
    if spread == 0:
        return None
    half = float(stats.t.ppf(0.975, len(values) - 1)) * spread / math.sqrt(len(values))
    if bounds == "none":
        return mean - half, mean + half
    if bounds == "positive":
        h = half / mean
        return mean * math.exp(-h), mean * math.exp(h)
    eta, h = math.log(mean / (1 - mean)), half / (mean * (1 - mean))
    return 1 / (1 + math.exp(-(eta - h))), 1 / (1 + math.exp(-(eta + h)))


def welch_p(a: Sequence[float], b: Sequence[float]) -> Optional[float]:
    """Two-sided p-value of Welch's t-test (unequal variances); None when it is undefined: n < 2, or neither
    sample has any spread (t = Δ/0 and the Welch–Satterthwaite degrees of freedom 0/0 — three seeds at 99.72 %
    against three at 100 % are not a p of 0)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        return None
    with warnings.catch_warnings():  # scipy calls a sample of equal values "catastrophic cancellation"; it is exact
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def _rounded(pair: Optional[tuple[float, float]], digits: int) -> Optional[list[float]]:
    return None if pair is None else [round(pair[0], digits), round(pair[1], digits)]


def summarize(trials: Sequence[dict[str, Any]], families: Sequence[str]) -> list[dict[str, Any]]:
    """One row per family (in ``families`` order) from its trials: the mean accuracy over seeds and every seed's
    value, its 95 % interval (:func:`interval95`), Welch vs the first family, the family's latency (every trial of
    a family carries the same one, ``LATENCY_METHOD``), and the trials with their environment (threads, torch,
    CPU)."""
    rows: list[dict[str, Any]] = []
    baseline: list[float] = []
    for index, name in enumerate(families):
        mine = sorted((t for t in trials if t["family"] == name), key=lambda t: t["seed"])
        accuracies = [t["best_accuracy"] for t in mine]
        if index == 0:
            baseline = accuracies
        p = None if index == 0 else welch_p(accuracies, baseline)
        rows.append({
            "family": name, "params": mine[0]["params"], "macs": mine[0]["macs"],
            "latency_ms": round(mine[0]["latency_ms"], 4),
            "mean_accuracy": round(statistics.fmean(accuracies), 6),
            "seeds": [t["seed"] for t in mine],
            "accuracies": accuracies,  # each seed's best test accuracy over the epochs, unrounded
            "final_accuracies": [t.get("final_accuracy") for t in mine],
            "accuracy_std": round(statistics.stdev(accuracies), 6) if len(accuracies) > 1 else None,
            "accuracy_ci95": _rounded(interval95(accuracies, "probability"), 6),
            "latency_method": LATENCY_METHOD,
            "interval_method": INTERVAL_METHOD,
            "baseline": families[0],
            "delta_vs_baseline": round(statistics.fmean(accuracies) - statistics.fmean(baseline), 6),
            "p_value": None if p is None else float(f"{p:.3g}"),
            "significant": None if p is None else p < ALPHA,
            "trials": [{k: t.get(k) for k in ("seed", "best_accuracy", "final_accuracy", "seconds", "attempts",
                                                "threads", "torch", "cpu", "cpu_capability", "host")}
                       for t in mine],
        })
    return rows


# --- running the trials ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    config: TrainConfig
    threads: int


def _run_serial(trials: list[Trial], token: str, log: Callable[[str], None]) -> list[dict[str, Any]]:
    results = []
    for trial in trials:
        results.append(run_trial(trial.config, token, trial.threads))
        log(_done(results[-1], len(results), len(trials)))
    return results


def _run_workers(trials: list[Trial], token: str, workers: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    results = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_trial, t.config, token, t.threads) for t in trials]
        for future in as_completed(futures):
            results.append(future.result())
            log(_done(results[-1], len(results), len(trials)))
    return results


def _run_ray(trials: list[Trial], token: str, address: str, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """One Ray task per trial (as many CPUs as its threads, and 1 GPU with ``--device cuda``; ``auto`` means CPU on
    Ray), retried up
    to ``RAY_RETRIES`` times when its worker dies. Uses the Ray instance this process already joined, else
    starts a local one (``'local'``) or joins ``address``."""
    require("ray", "distributed", "--ray")
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            _check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                message = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ValueError(f"--ray {address}: cannot join the Ray cluster ({message[:200]})") from None
    try:
        # a CUDA trial gets one GPU of its own, which Ray exposes to it as device cuda:0
        gpus = 1 if trials[0].config.device.startswith("cuda") else 0
        trials = [replace(t, config=replace(t.config, device="cuda")) if gpus else t for t in trials]
        task = ray.remote(num_cpus=trials[0].threads, num_gpus=gpus, max_retries=RAY_RETRIES)(run_trial)
        pending = [task.remote(t.config, token, t.threads) for t in trials]
        results = []
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                results.append(ray.get(done[0]))
            except ray.exceptions.RayTaskError as error:  # an error in the trial itself: report it as such
                cause = getattr(error, "cause", None)
                raise (cause if isinstance(cause, Exception) else RuntimeError(str(error))) from None
            log(_done(results[-1], len(results), len(trials)))
        return results
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT or ray://HOST:PORT address must answer a TCP connection (``ray.init`` would retry for minutes);
    ``auto`` is left to Ray."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray {address!r} must be 'local', 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise ValueError(f"--ray {address}: nothing answers at {host}:{port} ({error.strerror or error}); start "
                         f"the cluster (ray start --head) or use --ray local") from None


def _done(result: dict[str, Any], count: int, total: int) -> str:
    retried = f", attempt {result['attempts']}" if result["attempts"] > 1 else ""
    return (f"trial {count}/{total}: {result['family']} seed {result['seed']}: best accuracy "
            f"{result['best_accuracy']:.4f} ({result['seconds']:.1f} s on {result['threads']} thread(s){retried})")


def default_convs(base: TrainConfig) -> list[Optional[str]]:
    """The families a sweep compares when none are given: standard against the model's own family (MobileNet's
    depthwise separable blocks, Table 4 of the paper), or [None] (the model alone) for a model that takes none."""
    own = base.resolved_conv
    return [None] if own is None else list(dict.fromkeys(["standard", own]))


def sweep(base: TrainConfig, convs: Optional[list[str]], out: str, log: Callable[[str], None] = print, seeds: int = 1,
          workers: int = 1, ray: Optional[str] = None, threads: Optional[int] = None,
          int8: bool = False) -> list[dict[str, Any]]:
    """Train ``seeds`` trials per family in ``convs`` (serially, in ``workers`` processes, or on Ray), measure
    latency, write sweep.json / sweep.csv / sweep_trials.csv / sweep_pareto.png to ``out``; return the rows.

    ``convs`` None: the model's default (``default_convs``): standard against the model's own family, or, for a
    model with its own convolutions that takes no family (shufflenet_v1), that model alone, its row named after it.

    ``threads``: torch CPU threads per trial, the same for every executor so that the numbers are (default
    ``TRIAL_THREADS``); a Ray task reserves that many CPUs. ``int8``: also quantize every trained model and add its
    int8 test accuracy and the difference from float32 (``int8_eval.py``; sweep_int8.csv).
    """
    from ..registry import family

    if convs is None:
        convs = default_convs(base)
    for name in convs:
        if name is not None:
            family(name)  # unknown names fail before any training
    repeated = sorted({str(name) for name in convs if convs.count(name) > 1})
    if repeated:  # a repeated family would pool one seed's trials twice: doubled seeds, a test against itself
        raise ValueError(f"--conv {','.join(map(str, convs))} names {', '.join(repeated)} more than once: give each "
                         f"family once (--seeds sets the trials per family)")
    if int8:  # int8 (issue 26): its packages are checked before any training
        from .int8_eval import require_int8

        require_int8()
    for name, value in (("seeds", seeds), ("workers", workers)):
        if value < 1:
            raise ValueError(f"{name}={value} must be a positive integer")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out={out!r} is a file: give a folder (created if missing) for sweep.json and the trials")
    if ray is not None and workers > 1:
        raise ValueError(f"--ray and --workers={workers} exclude each other: Ray schedules the trials itself")
    if threads is not None and threads < 1:  # the CLI's --trial-threads
        raise ValueError(f"threads={threads} (--trial-threads: torch CPU threads per trial) must be a positive "
                         f"integer")
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and (ray is not None or workers > 1):
        raise ValueError("--ray / --workers cannot run under torchrun: run the sweep as one process")
    threads = TRIAL_THREADS if threads is None else threads
    trials = []
    for name in convs:
        for i in range(seeds):
            config = replace(base, conv=name, seed=base.seed + i,
                             progress=base.progress and ray is None and workers == 1)
            config.out = os.path.join(out, config.arm, f"seed-{base.seed + i}")
            config.validate()  # every bad setting fails before any training
            trials.append(Trial(config, threads))
    token = uuid.uuid4().hex
    if ray is not None:
        results = _run_ray(trials, token, ray, log)
    elif workers > 1:
        results = _run_workers(trials, token, workers, log)
    else:
        results = _run_serial(trials, token, log)
    if results and results[0]["rank"] != 0:
        return []
    if int8:  # before the latencies: they take the trained weights out of the results
        from . import int8_eval

        int8_eval.measure(results, trials)
    _measure_latencies(results, trials, base.device)
    rows = summarize(results, list(dict.fromkeys(t.config.arm for t in trials)))
    if int8:
        os.makedirs(out, exist_ok=True)
        int8_eval.add_columns(rows, results, out)
    write(rows, out, results)
    return rows


def _measure_latencies(results: list[dict[str, Any]], trials: list[Trial], device: str) -> None:
    """Rebuild each family's first-seed trained model in this process and time them in interleaved rounds
    (``LATENCY_METHOD``); every trial of the family gets that ``latency_ms``. The weights are dropped."""
    device = pick_device(device, 0)
    by_key = {(t.config.arm, t.config.seed): t.config for t in trials}
    first: dict[str, dict[str, Any]] = {}
    for result in sorted(results, key=lambda r: r["seed"]):
        first.setdefault(result["family"], result)
    models, shapes = [], []
    for result in first.values():
        config = by_key[(result["family"], result["seed"])]
        model = build_model(config, result["num_classes"], tuple(result["input_shape"]))
        model.load_state_dict(result["state_dict"])
        models.append(model.to(device))
        shapes.append((1, *result["input_shape"]))
    latency = dict(zip(first, latencies_ms(models, shapes, device)))
    for result in results:
        result.pop("state_dict", None)
        result["latency_ms"] = latency[result["family"]]


# --- output ------------------------------------------------------------------------------------------------------


def write(rows: list[dict[str, Any]], out: str, trials: Sequence[dict[str, Any]] = ()) -> None:
    """sweep.json (atomically), sweep.csv, sweep_trials.csv and sweep_pareto.png in ``out``."""
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, ".sweep.json.tmp")
    with open(tmp, "w") as handle:
        json.dump(rows, handle, indent=1)
    os.replace(tmp, os.path.join(out, "sweep.json"))
    write_csv(os.path.join(out, "sweep.csv"), CSV_COLUMNS, rows, {"accuracy_ci95": "accuracy"},
              lambda row: {"seeds": len(row["seeds"])})
    if trials:
        with open(os.path.join(out, "sweep_trials.csv"), "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=TRIAL_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for trial in sorted(trials, key=lambda t: (_row_index(rows, t["family"]), t["seed"])):
                writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in trial.items()})
    pareto_plot(rows, os.path.join(out, "sweep_pareto.png"))


def write_csv(path: str, columns: Sequence[str], rows: Sequence[dict[str, Any]], intervals: dict[str, str],
              cells: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """One line per row in ``columns``: the row's own values, each interval key k (a [low, high] pair or None) as
    the columns ``intervals[k]``_ci95_low / _high, then ``cells(row)``; None is written as an empty cell."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            flat = {k: row.get(k) for k in columns}
            for key, name in intervals.items():
                flat[f"{name}_ci95_low"], flat[f"{name}_ci95_high"] = row[key] or (None, None)
            flat.update(cells(row))
            writer.writerow({k: "" if v is None else v for k, v in flat.items()})


def _row_index(rows: Sequence[dict[str, Any]], name: str) -> int:
    return next(i for i, row in enumerate(rows) if row["family"] == name)


# --- the Pareto plot ---------------------------------------------------------------------------------------------


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points that no other point beats (cost as low or lower and accuracy as high or higher, one
    of them strictly), sorted by cost."""
    points = list(zip(costs, accuracies))
    front = [i for i, (c_i, a_i) in enumerate(points)
             if not any(c <= c_i and a >= a_i and (c, a) != (c_i, a_i) for c, a in points)]
    return sorted(front, key=lambda i: points[i][0])


def pareto_plot(rows: Sequence[dict[str, Any]], path: str) -> str:
    """Write :func:`pareto_figure` of sweep.json ``rows`` to ``path`` (PNG); return ``path``."""
    pareto_figure(rows).savefig(path, dpi=110)
    return path


def pareto_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """Accuracy vs MACs and vs measured latency (means with 95 % interval error bars), the Pareto front as a
    step line, every family labelled where its label overlaps no other label, marker, error bar or legend.
    ``rows`` are sweep.json rows; a family marked ``*`` differs significantly from the first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    seeds = max(len(row["seeds"]) for row in rows)
    ys = [100 * row["mean_accuracy"] for row in rows]
    ci = [row.get("accuracy_ci95") for row in rows]
    yerr = [[y - 100 * c[0] if c else 0.0 for y, c in zip(ys, ci)],
            [100 * c[1] - y if c else 0.0 for y, c in zip(ys, ci)]]
    names = [row["family"] + ("*" if row.get("significant") else "") for row in rows]
    panels = []
    for ax, key, label in ((axes[0], "macs", "MACs per input (log scale)"),
                           (axes[1], "latency_ms", "latency at batch 1, ms, fastest round (log scale)")):
        xs = [float(row[key]) for row in rows]
        xerr = None
        if key == "latency_ms" and any(row.get("latency_ci95") for row in rows):  # older sweep.json: latency per seed
            lci = [row.get("latency_ci95") for row in rows]
            xerr = [[x - c[0] if c else 0.0 for x, c in zip(xs, lci)],
                    [c[1] - x if c else 0.0 for x, c in zip(xs, lci)]]
        bars = ax.errorbar(xs, ys, yerr=yerr, xerr=xerr, fmt="o", color="tab:blue", ecolor="0.55", elinewidth=1,
                           capsize=3, zorder=3)
        front = pareto_front(xs, ys)
        if len(front) > 1:
            ax.step([xs[i] for i in front], [ys[i] for i in front], where="post", color="tab:orange", alpha=0.8,
                    zorder=2, label="Pareto front (lower cost, higher accuracy)", gid="pareto-front")
            ax.legend(loc="best", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("best test accuracy, %" + (f" (mean of {seeds} seeds, 95 % interval)" if seeds > 1 else ""))
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.25, y=0.12)
        panels.append((ax, xs, bars))
    note = (f"* differs from {rows[0]['family']} (Welch's t-test, p < {ALPHA})" if seeds > 1
            else "one seed per family (no intervals)")
    fig.suptitle(f"Accuracy vs cost — {note}", fontsize=11)
    fig.tight_layout()
    for ax, xs, bars in panels:
        _place_labels(fig, ax, xs, ys, names, bars)
    return fig


def _overlap(a: Any, b: Any) -> float:
    """Area shared by two display-space boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _gap(box: Any, x: float, y: float) -> float:
    """Distance from display point (x, y) to ``box`` (0 inside it)."""
    return math.hypot(max(box.x0 - x, 0.0, x - box.x1), max(box.y0 - y, 0.0, y - box.y1))


def _place_labels(fig: Any, ax: Any, xs: Sequence[float], ys: Sequence[float], names: Sequence[str],
                  bars: Any) -> None:
    """Greedy placement, points left to right: each label takes the nearest offset (rings of 16 directions) whose
    box stays inside the axes, overlaps no marker, error bar, Pareto step, legend or earlier label, and is not
    nearer to another marker than to its own; failing that, the least-overlapping offset. A label not right next
    to its marker gets a thin leader line."""
    from matplotlib.transforms import Bbox

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    markers = ax.transData.transform(list(zip(xs, ys)))
    obstacles = [Bbox.from_extents(px - 5, py - 5, px + 5, py + 5) for px, py in markers]
    for collection in bars.lines[2]:  # the error bar segments
        for segment in collection.get_segments():
            (x0, y0), (x1, y1) = ax.transData.transform(segment)
            obstacles.append(Bbox.from_extents(min(x0, x1) - 2, min(y0, y1) - 2, max(x0, x1) + 2, max(y0, y1) + 2))
    legend = ax.get_legend()
    if legend is not None:
        obstacles.append(legend.get_window_extent(renderer))
    for line in (line for line in ax.get_lines() if line.get_gid() == "pareto-front"):
        points = ax.transData.transform(line.get_xydata())
        for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
            for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1))):  # drawn horizontal first, then vertical
                obstacles.append(Bbox.from_extents(min(a[0], b[0]) - 1, min(a[1], b[1]) - 1,
                                                   max(a[0], b[0]) + 1, max(a[1], b[1]) + 1))
    rings = (7, 14, 24, 36, 50, 66)
    offsets = [(r * math.cos(math.radians(a)), r * math.sin(math.radians(a))) for r in rings
               for a in (0, 180, 45, 135, 315, 225, 90, 270, 22, 158, 338, 202, 67, 113, 293, 247)]
    for i in sorted(range(len(xs)), key=lambda i: (xs[i], ys[i])):
        best: Optional[tuple[tuple[float, bool], float, float, Any]] = None
        for dx, dy in offsets:
            ha = "left" if dx > 1 else "right" if dx < -1 else "center"
            va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
            text = ax.annotate(names[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                               fontsize=9)
            box = text.get_window_extent(renderer).expanded(1.06, 1.15)
            text.remove()
            outside = box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1
            own = _gap(box, *markers[i])
            ambiguous = any(_gap(box, *m) < own for j, m in enumerate(markers) if j != i)
            score = (sum(_overlap(box, o) for o in obstacles) + (1e6 if outside else 0.0), ambiguous)
            if best is None or score < best[0]:
                best = (score, dx, dy, box)
            if score == (0.0, False):
                break
        assert best is not None
        _, dx, dy, box = best
        leader = {"arrowprops": {"arrowstyle": "-", "color": "0.5", "lw": 0.6, "shrinkA": 1, "shrinkB": 4}} \
            if math.hypot(dx, dy) > rings[0] + 1 else {}
        ax.annotate(names[i], (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                    ha="left" if dx > 1 else "right" if dx < -1 else "center",
                    va="bottom" if dy > 1 else "top" if dy < -1 else "center", fontsize=9, zorder=5, **leader)
        obstacles.append(box)
