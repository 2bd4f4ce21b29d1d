"""Training checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors and primitive containers (dicts, lists, numbers, strings), so the safe
unpickler can read it: model / optimizer / scheduler state dicts, the epoch and step, the run's config and
every RNG state (torch, CUDA, NumPy and Python's ``random``, converted to tensors / lists). It is written to a
temporary file in the same folder and moved into place with ``os.replace``, so a crash mid-write leaves the
previous checkpoint intact; a file that cannot be read raises ``CheckpointError`` and is never written over
by a fresh run.
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import Any

import numpy as np
import torch


class CheckpointError(ValueError):
    """The checkpoint file is unreadable, truncated or not a convzoo training checkpoint."""


FORMAT = 1
REQUIRED = ("format", "config", "epoch", "global_step", "model", "optimizer", "scheduler", "rng")


def rng_state() -> dict[str, Any]:
    """Every RNG the training run touches, as tensors and lists (weights_only-loadable)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state: dict[str, Any], path: str) -> None:
    """Write ``state`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str) -> dict[str, Any]:
    """Read a checkpoint with the safe unpickler; CheckpointError (one line) when it is not a good one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling / zip / EOF failure means the same thing to the user
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({reason[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or any(k not in state for k in REQUIRED):
        raise CheckpointError(f"checkpoint {path} is not a convzoo training checkpoint (format {FORMAT})")
    return state
