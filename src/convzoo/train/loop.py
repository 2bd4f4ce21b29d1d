"""``convzoo train``: one model, one convolution family, one data set — accuracy to put next to the cost.

The loop: SGD (Nesterov momentum) or AdamW, a per-step cosine schedule, optional label smoothing, an
evaluation on the test split after every epoch, a metrics JSON-lines log (``OUT/metrics.jsonl``), TensorBoard
event files (``OUT/tb/``: loss, accuracy, learning rate, dynamic-conv temperature; when tensorboard is
installed) and an atomic checkpoint (``OUT/checkpoint.pt``) after every epoch; ``resume=True`` continues from
it. ``OUT/run.json`` records the configuration and where the data came from (generation seed, split).

Models: ``model='auto'`` picks the small MobileNet for images and the small 1-D CNN (``cnn1d``) for sequences.

Scale-out: under ``torchrun --nproc_per_node=N -m convzoo train ...`` (WORLD_SIZE > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on GPU) and a DistributedSampler shards each epoch's permutation:
rank r's local batch i holds positions r, r+N, r+2N… of the single-process batch i, so N processes with local
batch B/N see exactly the samples of one process with batch B. Only rank 0 writes files.

BatchNorm under DDP: each process normalises with its own local-batch statistics. On GPU the BatchNorms are
converted to SyncBatchNorm (statistics over the global batch, so N GPUs ≡ one process with batch B).
SyncBatchNorm has no CPU kernel; on CPU ``accum_steps=N`` on one process splits each batch the same strided way
into N micro-batches and averages their gradients, which is what N gloo processes compute — for the parameters
and the optimizer state, and only when the training set size is a multiple of N (the test suite compares them).
What it does not reproduce:
- BatchNorm running statistics, hence test accuracy. DDP keeps rank 0's buffers (and broadcasts them to the
  other ranks before each forward), an average over rank 0's micro-batches only, updated once per step; one
  process updates them from every micro-batch, N times per step (``num_batches_tracked`` N× larger). Matching
  them would mean discarding N − 1 of N micro-batches' statistics in the one-process run: not done.
- A training set size that N does not divide: DistributedSampler pads the permutation with its first samples
  so that every rank gets as many, so DDP trains on (and counts in train_accuracy) a few samples twice; one
  process does not, and its last batch splits into unequal micro-batches. The weights then differ.

Determinism: the same command and seed give bitwise the same weights and metrics, and a run killed mid-epoch
and resumed ends with the same weights as an uninterrupted one, on the same machine (CPU model, torch version,
thread count, which the run records). For that, every layer's choice between its exact forms, which round
differently, is pinned (``form_choice.fixed_choices``: each layer's preferred form, nothing timed) instead of
timed on the first input of each shape; see the training guide for what that costs in speed. The data order is
a pure function of (seed, epoch) (DistributedSampler's permutation, stored in the checkpoint as ``data_order``),
temperatures are functions of the global step, and every RNG state is checkpointed; a resumed run repeats the
interrupted epoch from its start. On CUDA, cuDNN's nondeterministic backward kernels still apply unless
``torch.use_deterministic_algorithms(True)``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from . import checkpoint as ckpt
from . import data as data_specs
from .rules import dynamic_layers, param_groups, set_temperature, temperature_at

MODELS = ("auto", "mobilenet_v1", "shufflenet_v1", "cnn1d")
# The family a model builds its blocks from when no conv is given: MobileNet's depthwise separable blocks, and the
# same in its 1-D analogue; None for a model with its own convolutions that takes no family (ShuffleNet's grouped
# 1×1 + channel shuffle + depthwise units).
MODEL_CONV: dict[str, Optional[str]] = {"mobilenet_v1": "depthwise_separable", "cnn1d": "depthwise_separable",
                                        "shufflenet_v1": None}
IMAGE_MODELS = ("mobilenet_v1", "shufflenet_v1")
OPTIMIZERS = ("sgd", "adamw")
# Fields that define the run: a checkpoint made with different values cannot be resumed.
IDENTITY = ("model", "conv", "data", "epochs", "batch_size", "lr", "optimizer", "weight_decay", "label_smoothing",
            "width_mult", "seed", "temperature_start", "temperature_end", "temperature_epochs", "offset_lr_mult",
            "accum_steps", "max_train_samples", "max_test_samples")


class StopTraining(Exception):
    """Raised by the ``stop_after_steps`` debug option: simulates a run killed mid-epoch."""


@dataclass
class TrainConfig:
    model: str = "auto"
    conv: Optional[str] = None  # None: the model's own (MODEL_CONV); resolved_conv is what is built
    data: str = "digits"
    epochs: int = 4
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    width_mult: float = 0.25
    seed: int = 0
    out: str = "runs/train"
    resume: bool = False
    temperature_start: float = 30.0
    temperature_end: float = 1.0
    temperature_epochs: Optional[float] = None  # None: min(10, max(1, epochs / 2))
    offset_lr_mult: float = 0.1
    accum_steps: int = 1
    device: str = "auto"
    progress: bool = True
    # debugging / testing
    max_train_samples: Optional[int] = None
    max_test_samples: Optional[int] = None
    stop_after_steps: Optional[int] = None
    extra: dict = field(default_factory=dict)

    @property
    def resolved_model(self) -> str:
        """The model that runs: ``auto`` is cnn1d for sequence data, mobilenet_v1 for images."""
        if self.model != "auto":
            return self.model
        return "cnn1d" if data_specs.spatial_dims(self.data) == 1 else "mobilenet_v1"

    @property
    def resolved_conv(self) -> Optional[str]:
        """The family the model's blocks are built from: ``conv``, or the model's own when it is None
        (``MODEL_CONV``); None for a model with its own convolutions (shufflenet_v1)."""
        return self.conv if self.conv is not None else MODEL_CONV.get(self.resolved_model)

    @property
    def arm(self) -> str:
        """What a sweep's row and folder are named by: the family built, or the model where it takes none."""
        return self.resolved_conv or self.resolved_model

    def validate(self) -> None:
        from ..models.cnn1d import check_family
        from ..registry import family

        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; use one of: {', '.join(MODELS)}")
        if self.conv is not None:
            family(self.conv)  # ValueError listing the known families
        dims = data_specs.spatial_dims(self.data)
        if (self.resolved_model == "cnn1d") != (dims == 1):
            wanted = "cnn1d" if dims == 1 else " or ".join(IMAGE_MODELS)
            raise ValueError(f"model={self.model!r} does not take the {dims}-D inputs of data={self.data!r}; use "
                             f"--model {wanted} or auto")
        if self.resolved_model == "cnn1d":
            check_family(self.resolved_conv)  # one line listing the families with a 1-D form that fit
        elif MODEL_CONV[self.resolved_model] is None and self.conv is not None:
            takes = " and ".join(m for m, c in MODEL_CONV.items() if c is not None)
            raise ValueError(f"conv={self.conv!r}: {self.resolved_model} has its own convolutions (grouped 1×1 + "
                             f"channel shuffle + depthwise) and takes no family; conv (--conv) applies to {takes} "
                             f"only: leave it out")
        if self.resolved_model == "mobilenet_v1" and not family(self.resolved_conv).replaces_kxk:
            from ..registry import families

            raise ValueError(f"conv={self.conv!r} cannot replace MobileNet's 3×3 blocks; families that can: "
                             f"{', '.join(f.name for f in families() if f.replaces_kxk)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={self.optimizer!r} must be one of {', '.join(OPTIMIZERS)}")
        for name in ("epochs", "batch_size", "accum_steps", "max_train_samples", "max_test_samples",
                     "stop_after_steps"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:  # 0 samples: nothing to average (ZeroDivisionError, 0.0)
                raise ValueError(f"{name}={value} must be a positive integer")
        for name in ("lr", "width_mult", "temperature_start", "temperature_end"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be positive and finite")
        # 0 is meaningful for these: no weight decay, frozen offsets, no annealing (T = temperature_end throughout)
        for name, value, means in (
                ("weight_decay", self.weight_decay, "no decay"),
                ("offset_lr_mult", self.offset_lr_mult, "the offsets stay as initialised; below 0 they climb"),
                ("temperature_epochs", self.temperature_epochs, "no annealing")):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value} must be a number ≥ 0 (0: {means})")
        if not 0 <= self.seed < 2 ** 32:  # NumPy's seed range; torch's sampler would take it, NumPy refuses it
            raise ValueError(f"seed={self.seed} must be an integer in [0, 2**32 - 1]")
        if os.path.exists(self.out) and not os.path.isdir(self.out):
            raise ValueError(f"out={self.out!r} is a file: give a folder (created if missing) for metrics.jsonl and "
                             f"checkpoint.pt")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")

    def identity(self) -> dict[str, Any]:
        """The IDENTITY fields, conv as built (``resolved_conv``): conv=None and the model's own family are one
        run."""
        return {k: self.resolved_conv if k == "conv" else getattr(self, k) for k in IDENTITY}


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(requested: str, local_rank: int) -> str:
    if requested != "auto":
        return requested
    return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"


def build_model(config: TrainConfig, num_classes: int, sample_shape: tuple[int, ...] = (3, 32, 32)) -> nn.Module:
    """The configured model for inputs of ``sample_shape`` ((C, L) or (C, H, W))."""
    from ..models import cnn1d_small, mobilenet_v1_small, shufflenet_v1_small

    model = config.resolved_model
    if model == "cnn1d":
        return cnn1d_small(config.width_mult, sample_shape[0], num_classes, conv=config.resolved_conv,
                           length=sample_shape[-1])
    if model == "mobilenet_v1":
        return mobilenet_v1_small(config.width_mult, num_classes, conv=config.resolved_conv)
    return shufflenet_v1_small(groups=3, scale=config.width_mult, num_classes=num_classes)


def _to_device(x: torch.Tensor, device: str) -> torch.Tensor:
    """Images go channels_last (1.5–2× faster convolutions on CPU, tensor cores on GPU); sequences as they are."""
    return x.to(device, memory_format=torch.channels_last) if x.dim() == 4 else x.to(device)


_TENSORBOARD_NOTED = False


class _TensorBoard:
    """Scalars to ``OUT/tb/`` when tensorboard is installed; otherwise says so once per process and does nothing."""

    def __init__(self, enabled: bool, folder: str, purge_step: Optional[int], log: Callable[[str], None]) -> None:
        global _TENSORBOARD_NOTED
        self.writer = None
        if not enabled:
            return
        if importlib.util.find_spec("tensorboard") is None:
            if not _TENSORBOARD_NOTED:
                log("tensorboard is not installed: no TensorBoard event files (metrics.jsonl is written); "
                    "pip install tensorboard")
                _TENSORBOARD_NOTED = True
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(folder, purge_step=purge_step)

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _limit(dataset, n: Optional[int]):
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def _channels_last(model: nn.Module) -> nn.Module:
    """4-D weights to channels_last (5-D ones, e.g. dynamic conv's (K, C_out, C_in, kh, kw), stay as they are)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return model


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _all_sum(values: list[float], rank_info: Dist, device: str) -> list[float]:
    if rank_info.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


@torch.no_grad()
def evaluate(model: nn.Module, dataset, rank_info: Dist, device: str, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on ``dataset``; each rank takes every world-th sample, sums are reduced."""
    model.eval()
    shard = Subset(dataset, range(rank_info.rank, len(dataset), rank_info.world))
    loss_sum = correct = count = 0.0
    for x, y in DataLoader(shard, batch_size=batch_size, shuffle=False):
        x, y = _to_device(x, device), y.to(device)
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    loss_sum, correct, count = _all_sum([loss_sum, correct, count], rank_info, device)
    return loss_sum / max(count, 1), correct / max(count, 1)


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = param_groups(model, config.lr, config.offset_lr_mult)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


class _Progress:
    """Rich progress bars on rank 0 (a no-op elsewhere or when disabled)."""

    def __init__(self, enabled: bool, description: str) -> None:
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
        self.description = description

    def __enter__(self):
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def task(self, epoch: int, epochs: int, total: int):
        if self.bar is None:
            return None
        return self.bar.add_task(f"{self.description} epoch {epoch + 1}/{epochs}", total=total, info="")

    def advance(self, task, info: str = "") -> None:
        if self.bar is not None and task is not None:
            self.bar.update(task, advance=1, info=info)


def _load_for_resume(config: TrainConfig, path: str) -> Optional[dict]:
    if not config.resume or not os.path.exists(path):
        return None
    state = ckpt.load(path)
    saved = dict(state["config"])
    if config.resolved_conv is None and MODEL_CONV.get(config.resolved_model, "") is None:
        # a model with its own convolutions builds no family whatever conv says; checkpoints written before conv
        # defaulted to the model's own recorded the ignored default (depthwise_separable): the same run
        saved["conv"] = None
    different = {k: (saved.get(k), v) for k, v in config.identity().items() if saved.get(k) != v}
    if different:
        k, (old, new) = next(iter(different.items()))
        raise ckpt.CheckpointError(f"checkpoint {path} was made with {k}={old!r}, this run has {k}={new!r}; "
                                   f"use another --out or the same settings")
    return state


def _rewrite_log(path: str, keep_before_epoch: int) -> None:
    """On resume, drop log lines of epochs that will be run again (a killed run may have logged them)."""
    if not os.path.exists(path):
        return
    lines = []
    with open(path) as handle:
        for line in handle:
            try:
                if json.loads(line).get("epoch", keep_before_epoch) < keep_before_epoch:
                    lines.append(line)
            except ValueError:  # a line cut short by the kill
                continue
    with open(path, "w") as handle:
        handle.writelines(lines)


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one training; returns {'best_accuracy', 'final_accuracy', 'epochs', 'out', 'model' (unwrapped),
    'num_classes', 'input_shape' (one sample's), 'rank', 'device'}.

    Every layer takes its preferred exact form (``fixed_choices``), not the one timed fastest on this run's first
    calls: the forms round differently, and timing noise picking one per run made the same command give 0.235 and
    0.145 test accuracy, and a resumed run end with other weights than an uninterrupted one. The model comes back
    unpinned: outside this call its layers time their forms again."""
    from ..layers.form_choice import fixed_choices

    with fixed_choices():
        return _train(config, log)


def _refuse_unreadable(path: str) -> None:
    """A fresh run must not write over a checkpoint it cannot read (a truncated copy may be all that is left of a
    long run): CheckpointError naming the file and what to do."""
    if os.path.exists(path):
        try:
            ckpt.load(path)
        except ckpt.CheckpointError as error:
            raise ckpt.CheckpointError(f"{error}; --resume cannot use it and a new run would write over it: delete "
                                       f"or move it, or give another --out") from None


def _train(config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any]:
    config.validate()
    device = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    rank_info = init_distributed(device)
    if config.batch_size % (rank_info.world * config.accum_steps):
        raise ValueError(f"batch_size={config.batch_size} must be divisible by processes × accum_steps = "
                         f"{rank_info.world} × {config.accum_steps}")
    local_batch = config.batch_size // rank_info.world
    path = os.path.join(config.out, "checkpoint.pt")
    log_path = os.path.join(config.out, "metrics.jsonl")
    resumed = _load_for_resume(config, path)  # before anything is written: a bad checkpoint stops here
    if not config.resume:
        _refuse_unreadable(path)

    spec = data_specs.load(config.data)
    train_set, test_set = _limit(spec.train, config.max_train_samples), _limit(spec.test, config.max_test_samples)

    _seed_everything(config.seed)
    model = build_model(config, spec.num_classes, spec.sample_shape).to(device)
    if len(spec.sample_shape) == 3:  # images: channels_last, 1.5–2× faster convolutions on CPU (oneDNN); same results
        model = _channels_last(model)
    if rank_info.world > 1 and device.startswith("cuda"):
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    dynamic = dynamic_layers(model)
    optimizer = _make_optimizer(config, model)
    sampler = DistributedSampler(train_set, num_replicas=rank_info.world, rank=rank_info.rank, shuffle=True,
                                 seed=config.seed)
    loader = DataLoader(train_set, batch_size=local_batch, sampler=sampler, drop_last=False)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    anneal_epochs = config.temperature_epochs if config.temperature_epochs is not None else \
        min(10.0, max(1.0, config.epochs / 2))
    anneal_steps = int(round(anneal_epochs * steps_per_epoch))

    start_epoch, global_step, best, accuracy = 0, 0, 0.0, 0.0
    if resumed is not None:
        try:
            model.load_state_dict(resumed["model"])
            optimizer.load_state_dict(resumed["optimizer"])
            scheduler.load_state_dict(resumed["scheduler"])
            ckpt.set_rng_state(resumed["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            raise ckpt.CheckpointError(f"checkpoint {path} does not fit this run ({reason})") from None
        start_epoch, global_step = int(resumed["epoch"]), int(resumed["global_step"])
        best = float(resumed.get("best_accuracy", 0.0))
        accuracy = float(resumed.get("accuracy", 0.0))
        if rank_info.main:
            log(f"resuming from {path}: {start_epoch} epoch(s) done")
            saved_threads = resumed.get("threads")
            if saved_threads is not None and int(saved_threads) != torch.get_num_threads():
                log(f"note: the checkpoint was written on {int(saved_threads)} torch thread(s), this run has "
                    f"{torch.get_num_threads()}: sums split over other threads round differently, so the weights "
                    f"will not be bitwise those of an uninterrupted run")
    ddp_model: nn.Module = model
    if rank_info.world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[rank_info.local_rank]
                                                        if device.startswith("cuda") else None)
    if rank_info.main:
        os.makedirs(config.out, exist_ok=True)
        _rewrite_log(log_path, start_epoch) if resumed is not None else open(log_path, "w").close()
        # sizes: what this run trains and tests on (--max-*-samples), the data set's own in available_sizes
        data_meta = {**spec.meta, "sizes": [len(train_set), len(test_set)],
                     "available_sizes": [len(spec.train), len(spec.test)]}
        with open(os.path.join(config.out, "run.json"), "w") as handle:
            json.dump({"config": config_dict(config), "model": config.resolved_model, "data": data_meta,
                       "input_shape": list(spec.sample_shape), "num_classes": spec.num_classes,
                       "environment": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                                       "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                       "forms": "fixed (each layer's preferred exact form)"}}, handle, indent=1)
    # a resumed run drops the events of the epochs it repeats
    board = _TensorBoard(rank_info.main, os.path.join(config.out, "tb"),
                         global_step + 1 if resumed is not None else None, log)

    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    title = f"{config.resolved_model}/{config.resolved_conv}" if config.resolved_conv else config.resolved_model
    with _Progress(config.progress and rank_info.main, title) as progress, _closing(board):
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            ddp_model.train()
            task = progress.task(epoch, config.epochs, steps_per_epoch)
            loss_sum = correct = count = 0.0
            started = time.perf_counter()
            for x, y in loader:
                if dynamic:
                    set_temperature(dynamic, temperature_at(global_step, anneal_steps, config.temperature_start,
                                                            config.temperature_end))
                x, y = _to_device(x, device), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                # strided split: micro-batch p holds what rank p of accum_steps processes would hold. A last batch
                # smaller than accum_steps leaves some empty: a mean over 0 samples is NaN, so they are skipped
                # (under DDP the sampler pads every rank to as many samples, so none is empty there)
                n = config.accum_steps
                parts = [(x[p::n], y[p::n]) for p in range(n) if len(y[p::n])]
                for part, (xs, ys) in enumerate(parts):
                    sync = part == len(parts) - 1 or rank_info.world == 1
                    context = ddp_model.no_sync() if not sync else nullcontext()
                    with context:
                        logits = ddp_model(xs)
                        loss = criterion(logits, ys)
                        (loss / len(parts)).backward()
                    loss_sum += loss.item() * len(ys)
                    correct += (logits.argmax(1) == ys).sum().item()
                    count += len(ys)
                optimizer.step()
                scheduler.step()
                global_step += 1
                progress.advance(task, f"loss {loss.item():.3f}")
                if config.stop_after_steps is not None and global_step >= config.stop_after_steps:
                    raise StopTraining(f"stopped after {global_step} steps (--stop-after-steps)")
            loss_sum, correct, count = _all_sum([loss_sum, correct, count], rank_info, device)
            test_loss, accuracy = evaluate(model, test_set, rank_info, device)
            best = max(best, accuracy)
            if rank_info.main:
                record = {"epoch": epoch, "step": global_step, "train_loss": loss_sum / count,
                          "train_accuracy": correct / count, "test_loss": test_loss, "test_accuracy": accuracy,
                          "best_accuracy": best, "lr": optimizer.param_groups[0]["lr"],
                          "seconds": time.perf_counter() - started}
                if dynamic:
                    record["temperature"] = dynamic[0].temperature
                with open(log_path, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                board.scalars({"loss/train": record["train_loss"], "loss/test": test_loss,
                               "accuracy/train": record["train_accuracy"], "accuracy/test": accuracy,
                               "accuracy/best": best, "learning_rate": record["lr"],
                               **({"dynamic/temperature": record["temperature"]} if dynamic else {})}, global_step)
                ckpt.save({"format": ckpt.FORMAT, "config": config.identity(), "epoch": epoch + 1,
                           "global_step": global_step, "model": model.state_dict(),
                           "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "rng": ckpt.rng_state(), "data_order": {"seed": config.seed, "epoch": epoch + 1},
                           "best_accuracy": best, "accuracy": accuracy, "threads": torch.get_num_threads()}, path)
                log(f"epoch {epoch + 1}/{config.epochs}: train loss {loss_sum / count:.4f}, "
                    f"test accuracy {accuracy:.4f} (best {best:.4f})")
    if rank_info.world > 1:
        dist.barrier()
    return {"best_accuracy": best, "final_accuracy": accuracy, "epochs": config.epochs, "out": config.out,
            "model": model, "num_classes": spec.num_classes, "input_shape": spec.sample_shape, "rank": rank_info.rank,
            "device": device}


@contextmanager
def _closing(board: _TensorBoard) -> Iterator[_TensorBoard]:
    try:
        yield board
    finally:
        board.close()


def config_dict(config: TrainConfig) -> dict[str, Any]:
    """The configuration as run.json records it: conv is the family the model was built from (None: the model's
    own convolutions, shufflenet_v1), not the option as given."""
    return {**asdict(config), "conv": config.resolved_conv}
