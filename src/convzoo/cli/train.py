"""What ``convzoo train`` and ``convzoo sweep`` do once typer has parsed the options.

Every user-facing failure (unknown family or model, bad data spec or path, corrupt or mismatched checkpoint, an
optional package that is not installed) becomes one line on stderr and exit code 2, never a traceback;
``--stop-after-steps`` exits with 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..train.checkpoint import CheckpointError
from ..train.extras import MissingExtra
from ..train.loop import StopTraining, TrainConfig
from .common import console



def _fail(error: BaseException, code: int = 2) -> None:
    message = (str(error).strip().splitlines() or [type(error).__name__])[0]
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _cleanup() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Bad specs and checkpoints end in one line and exit 2; a debug stop (--stop-after-steps) in exit 3;
    the process group is torn down either way."""
    try:
        yield
    except StopTraining as stop:
        typer.echo(str(stop), err=True)
        raise typer.Exit(3) from None
    except (CheckpointError, ValueError, FileNotFoundError, MissingExtra) as error:
        _fail(error)
    finally:
        _cleanup()


def _log() -> Callable[[Any], None]:
    """Only rank 0 prints."""
    return console.print if _is_main() else (lambda _: None)


def check_device(device: str) -> None:
    """``--device`` must be auto, cpu or cuda[:i], and ``cuda`` needs a usable GPU: an error before anything is
    built."""
    if device not in ("auto", "cpu") and device.partition(":")[0] != "cuda":
        _fail(ValueError(f"--device {device!r} must be auto, cpu or cuda[:i]"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail(ValueError(f"--device {device!r}: no CUDA device is available (torch.cuda.is_available() is "
                             f"False); use --device cpu or auto"))
        index = device.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            _fail(ValueError(f"--device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"))


def _uses_temperature(layer: Any) -> bool:
    from ..train.rules import dynamic_layers

    return bool(dynamic_layers(layer))


def _uses_offset_lr(layer: Any) -> bool:
    from ..train.rules import param_groups

    return len(param_groups(layer, 1.0)) > 1  # the offset convs get a group of their own


# Options that act on some families' layers only, found by the same rules the loop applies (train/rules.py), with
# what such a layer has: given for a run where no chosen family builds one, they would change nothing.
FAMILY_OPTIONS: tuple[tuple[str, str, str, Callable[[Any], bool]], ...] = (
    ("temperature_epochs", "--temperature-epochs", "an attention whose temperature is annealed", _uses_temperature),
    ("offset_lr_mult", "--offset-lr-mult", "a deformable offset conv", _uses_offset_lr),
)


def _builds(name: str, dim: int, uses: Callable[[Any], bool]) -> bool:
    """Whether family ``name``'s ``dim``-D layer (8 → 8 channels, built on the meta device) has what ``uses``
    finds."""
    import torch

    from ..registry import family

    fam = family(name)
    if dim not in fam.dims:
        return False
    try:
        with torch.device("meta"):
            return uses(fam.build(8, 8, None, dim))
    except (ValueError, TypeError, RuntimeError):  # a family that cannot be built so is no user of the option
        return False


def check_family_options(config: TrainConfig, convs: list[Optional[str]], options: dict[str, Any]) -> None:
    """An option of ``FAMILY_OPTIONS`` given (not None in ``options``) where none of the families ``convs`` (None:
    the model's own convolutions) builds a layer it acts on is a ValueError naming the option, the value, the
    families it applies to and what was chosen."""
    from ..registry import families

    dim = 1 if config.resolved_model == "cnn1d" else 2
    for key, flag, what, uses in FAMILY_OPTIONS:
        value = options.get(key)
        if value is None or any(name is not None and _builds(name, dim, uses) for name in convs):
            continue
        users = [f.name for f in families() if _builds(f.name, dim, uses)]
        chosen = ",".join(n for n in convs if n is not None)
        chose = (f"--conv {chosen} builds none" if chosen else
                 f"{config.resolved_model} (its own convolutions, no family) has none")
        raise ValueError(f"{flag} {value:g} applies only to families whose layer has {what} "
                         f"({', '.join(users) or 'none'} in {dim}-D), and {chose}: leave it out"
                         + (", or choose one of them with --conv" if chosen else ""))


def run_train(**options: Any) -> None:
    import os

    from ..train.loop import train

    check_device(options["device"])
    given = {key: options[key] for key, *_ in FAMILY_OPTIONS}
    options = {k: v for k, v in options.items() if not (k == "offset_lr_mult" and v is None)}  # None: default
    checkpoint = os.path.join(options["out"], "checkpoint.pt")
    if options.get("resume") and not os.path.exists(checkpoint):
        _fail(FileNotFoundError(f"--resume: there is no checkpoint at {checkpoint}; drop --resume to start a new "
                                f"run there, or give the --out of the run to continue"))
    config = TrainConfig(**options)
    with _one_line_errors():
        config.validate()  # an unknown model or family in its own words before the option check below
        check_family_options(config, [config.resolved_conv], given)
        result = train(config, log=_log())
    if _is_main():
        console.print(f"best test accuracy {result['best_accuracy']:.4f}, final {result['final_accuracy']:.4f}; "
                      f"log and checkpoint in {config.out}")


def _mean_interval(mean: float, pair: Optional[list[float]], scale: float, digits: int, seeds: int = 1) -> str:
    """``mean [low, high]`` with the 95 % interval (asymmetric near a bound); just the mean for one seed, and the
    mean marked ``(every seed)`` where several seeds gave one value (no interval: see ``interval95``)."""
    if pair is None:
        return f"{mean * scale:.{digits}f}" + (" (every seed)" if seeds > 1 else "")
    return f"{mean * scale:.{digits}f} [{pair[0] * scale:.{digits}f}, {pair[1] * scale:.{digits}f}]"


def run_sweep(convs: Optional[str], out: str, seeds: int, workers: int, ray: Optional[str],
              trial_threads: Optional[int], int8: bool = False, **options: Any) -> None:
    """``convs`` None (no --conv): the model's default families (``train.sweep.default_convs``)."""
    import time

    from ..train.sweep import ALPHA, LATENCY_RUNS, default_convs, sweep

    check_device(options["device"])
    names = None if convs is None else [c.strip() for c in convs.split(",") if c.strip()]
    if names == []:
        _fail(ValueError("--conv needs at least one family, e.g. standard,depthwise_separable"))
    given = {key: options[key] for key, *_ in FAMILY_OPTIONS}
    options = {k: v for k, v in options.items() if not (k == "offset_lr_mult" and v is None)}  # None: default
    config = TrainConfig(**options)
    started = time.perf_counter()
    with _one_line_errors():
        config.validate()  # a value out of range in its own words before the option check below
        check_family_options(config, default_convs(config) if names is None else names, given)
        rows = sweep(config, names, out, log=_log(), seeds=seeds, workers=workers, ray=ray, threads=trial_threads,
                     int8=int8)
    if not _is_main():
        return
    n = len(rows[0]["seeds"])
    stats = (f"; accuracy: mean [95 % interval] of {n} seeds (t on the logit scale; none where every seed gave the "
             f"same value, nor a p-value where two families both did: no spread, no test); * p < {ALPHA} vs "
             f"{rows[0]['family']} (Welch)") if n > 1 else ""
    trial = rows[0]["trials"][0]
    table = Table(title=f"convzoo sweep — {config.resolved_model} on {config.data}, {trial['threads']} torch "
                        f"thread(s) per trial (MACs per input; latency: fastest of {LATENCY_RUNS} interleaved "
                        f"rounds, batch 1, 1 CPU thread, timed once per family: it does not depend on the "
                        f"seed{stats})")
    for column in ("family", "params", "MACs", "latency ms", "accuracy %", "Δ", "p"):
        table.add_column(column, justify="left" if column == "family" else "right",
                         no_wrap=True)
    for row in rows:
        p = "" if row["p_value"] is None else f"{row['p_value']:.2g}{'*' if row['significant'] else ''}"
        delta = "" if row is rows[0] else f"{100 * row['delta_vs_baseline']:+.1f}"
        table.add_row(row["family"], f"{row['params']:,}", f"{row['macs']:,}", f"{row['latency_ms']:.3f}",
                      _mean_interval(row["mean_accuracy"], row["accuracy_ci95"], 100, 1, n), delta, p)
    Console(width=max(console.width, 100)).print(table)  # a narrower table would cut the numbers
    if int8:
        from ..train.int8_eval import int8_table

        Console(width=max(console.width, 100)).print(int8_table(rows))
    console.print(f"{len(rows) * n} trials in {time.perf_counter() - started:.0f} s; written {out}/sweep.json, "
                  f"sweep.csv, sweep_trials.csv and sweep_pareto.png" + (", sweep_int8.csv" if int8 else ""))


app = typer.Typer()


def _training_options(model, conv, data, epochs, batch_size, lr, optimizer, weight_decay, label_smoothing, width_mult,
                      seed, resume, temperature_epochs, offset_lr_mult, accum_steps, device, progress,
                      max_train_samples, max_test_samples, stop_after_steps) -> dict:
    return dict(locals())


_TRAIN_OPTIONS = dict(
    model=typer.Option("auto", help="auto (cnn1d for sequences, mobilenet_v1 for images) | mobilenet_v1 | "
                                    "shufflenet_v1 (32×32-input variants) | cnn1d (1-D sequences)"),
    data=typer.Option("digits", help="digits | mnist1d | mnist5k | cifar10:PATH | imagefolder:PATH (nothing is "
                                     "downloaded; mnist1d and mnist5k need the data extra)"),
    epochs=typer.Option(4, help="training epochs"),
    batch_size=typer.Option(32, "--batch-size", help="global batch size (split over torchrun processes)"),
    lr=typer.Option(0.05, help="peak learning rate (cosine schedule per step)"),
    optimizer=typer.Option("sgd", help="sgd (Nesterov momentum 0.9) | adamw"),
    weight_decay=typer.Option(5e-4, "--weight-decay"),
    label_smoothing=typer.Option(0.0, "--label-smoothing"),
    width_mult=typer.Option(0.25, "--width-mult", help="MobileNet / 1-D CNN width α (ShuffleNet: scale)"),
    seed=typer.Option(0, help="seed for initialisation and data order (sweep: the first of --seeds)"),
    resume=typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    temperature_epochs=typer.Option(None, "--temperature-epochs",
                                    help="dynamic conv: epochs to anneal T 30→1 (default min(10, max(1, epochs/2)); "
                                         "0: no annealing)"),
    offset_lr_mult=typer.Option(None, "--offset-lr-mult", help="deformable conv: offset-conv lr multiplier (≥ 0; "
                                                               "default 0.1)"),
    accum_steps=typer.Option(1, "--accum-steps", help="micro-batches per step: on one process, the weights that N "
                                                      "CPU torchrun processes reach (not their BatchNorm running "
                                                      "statistics; see the training guide)"),
    device=typer.Option("auto", help="auto | cpu | cuda[:i]"),
    progress=typer.Option(True, "--progress/--no-progress", help="rich progress bars"),
    max_train_samples=typer.Option(None, "--max-train-samples", help="debug: use the first N ≥ 1 training samples"),
    max_test_samples=typer.Option(None, "--max-test-samples", help="debug: use the first N ≥ 1 test samples"),
    stop_after_steps=typer.Option(None, "--stop-after-steps", help="debug: exit (code 3) after N steps"),
)


@app.command("train")
def train_command(
    conv: Optional[str] = typer.Option(None, help="family for the model's blocks (default: the model's own: "
                                                  "depthwise_separable for mobilenet_v1 and cnn1d; shufflenet_v1 "
                                                  "has its own convolutions and takes none)"),
    out: str = typer.Option("runs/train", help="folder for metrics.jsonl and checkpoint.pt"),
    model: str = _TRAIN_OPTIONS["model"], data: str = _TRAIN_OPTIONS["data"], epochs: int = _TRAIN_OPTIONS["epochs"],
    batch_size: int = _TRAIN_OPTIONS["batch_size"], lr: float = _TRAIN_OPTIONS["lr"],
    optimizer: str = _TRAIN_OPTIONS["optimizer"], weight_decay: float = _TRAIN_OPTIONS["weight_decay"],
    label_smoothing: float = _TRAIN_OPTIONS["label_smoothing"], width_mult: float = _TRAIN_OPTIONS["width_mult"],
    seed: int = _TRAIN_OPTIONS["seed"], resume: bool = _TRAIN_OPTIONS["resume"],
    temperature_epochs: Optional[float] = _TRAIN_OPTIONS["temperature_epochs"],
    offset_lr_mult: Optional[float] = _TRAIN_OPTIONS["offset_lr_mult"],
    accum_steps: int = _TRAIN_OPTIONS["accum_steps"],
    device: str = _TRAIN_OPTIONS["device"], progress: bool = _TRAIN_OPTIONS["progress"],
    max_train_samples: Optional[int] = _TRAIN_OPTIONS["max_train_samples"],
    max_test_samples: Optional[int] = _TRAIN_OPTIONS["max_test_samples"],
    stop_after_steps: Optional[int] = _TRAIN_OPTIONS["stop_after_steps"],
) -> None:
    """Train one model with one convolution family; works unchanged under torchrun (DDP). Reproducible: the same
    command and seed give bitwise the same weights, and --resume after a kill the weights of an uninterrupted run,
    on the same machine and thread count, because every layer runs its preferred exact form instead of the one
    timed fastest at run time (no slower per epoch on digits; the first epoch skips the timing)."""
    run_train(out=out, **_training_options(model, conv, data, epochs, batch_size, lr, optimizer, weight_decay,
                                           label_smoothing, width_mult, seed, resume, temperature_epochs,
                                           offset_lr_mult, accum_steps, device, progress, max_train_samples,
                                           max_test_samples, stop_after_steps))


@app.command("sweep")
def sweep_command(
    conv: Optional[str] = typer.Option(None, help="comma-separated families (default: standard and the model's "
                                                  "own, depthwise_separable; shufflenet_v1, which takes no family: "
                                                  "the model alone)"),
    out: str = typer.Option("runs/sweep", help="folder for sweep.json / .csv / _pareto.png and one run per trial"),
    seeds: int = typer.Option(1, "--seeds", help="trials per family, seeds --seed, --seed+1, …; >1 adds 95 % "
                                                 "intervals and Welch's t-test against the first family"),
    workers: int = typer.Option(1, "--workers", help="trials run in parallel in this many processes (no Ray)"),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                      help="run each trial as a Ray task: 'local' starts a local Ray instance, "
                                           "HOST:PORT / ray://HOST:PORT / auto joins a running cluster "
                                           "(needs the distributed extra)"),
    trial_threads: Optional[int] = typer.Option(None, "--trial-threads",
                                                help="torch CPU threads per trial, the same on every executor so "
                                                     "that results are identical (default 1; recorded with each "
                                                     "trial)"),
    model: str = _TRAIN_OPTIONS["model"], data: str = _TRAIN_OPTIONS["data"], epochs: int = _TRAIN_OPTIONS["epochs"],
    batch_size: int = _TRAIN_OPTIONS["batch_size"], lr: float = _TRAIN_OPTIONS["lr"],
    optimizer: str = _TRAIN_OPTIONS["optimizer"], weight_decay: float = _TRAIN_OPTIONS["weight_decay"],
    label_smoothing: float = _TRAIN_OPTIONS["label_smoothing"], width_mult: float = _TRAIN_OPTIONS["width_mult"],
    seed: int = _TRAIN_OPTIONS["seed"],
    resume: bool = typer.Option(False, "--resume", help="continue each trial from its OUT/FAMILY/seed-S/"
                                                        "checkpoint.pt (a trial without one starts afresh)"),
    temperature_epochs: Optional[float] = _TRAIN_OPTIONS["temperature_epochs"],
    offset_lr_mult: Optional[float] = _TRAIN_OPTIONS["offset_lr_mult"],
    accum_steps: int = _TRAIN_OPTIONS["accum_steps"],
    device: str = _TRAIN_OPTIONS["device"], progress: bool = _TRAIN_OPTIONS["progress"],
    max_train_samples: Optional[int] = _TRAIN_OPTIONS["max_train_samples"],
    max_test_samples: Optional[int] = _TRAIN_OPTIONS["max_test_samples"],
    stop_after_steps: Optional[int] = _TRAIN_OPTIONS["stop_after_steps"],
    int8: bool = typer.Option(False, "--int8", help="also quantize each trained model to int8 and report its test "
                                                    "accuracy on ExecuTorch/XNNPACK next to float32 (the mobile "
                                                    "extra); sweep_int8.csv"),
) -> None:
    """Train the same network per family and seed; table of params, MACs, latency and mean accuracy over seeds with
    95 % intervals and significance; JSON, CSV and a Pareto plot. Reproducible: the same numbers serially, with
    --workers and on Ray. --int8: each trained model's int8 accuracy next to float32."""
    run_sweep(conv, out, seeds, workers, ray, trial_threads, int8,
              **_training_options(model, None, data, epochs, batch_size, lr, optimizer, weight_decay,
                                  label_smoothing, width_mult, seed, resume, temperature_epochs, offset_lr_mult,
                                  accum_steps, device, progress, max_train_samples, max_test_samples,
                                  stop_after_steps))
