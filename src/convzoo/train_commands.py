"""What ``convzoo train`` and ``convzoo sweep`` do once typer has parsed the options.

Every user-facing failure (unknown family or model, bad data spec or path, corrupt or mismatched checkpoint)
becomes one line on stderr and exit code 2, never a traceback; ``--stop-after-steps`` exits with 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from .checkpoint import CheckpointError
from .train import StopTraining, TrainConfig

console = Console()


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
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        _fail(error)
    finally:
        _cleanup()


def _log() -> Callable[[Any], None]:
    """Only rank 0 prints."""
    return console.print if _is_main() else (lambda _: None)


def run_train(**options: Any) -> None:
    from .train import train

    config = TrainConfig(**options)
    with _one_line_errors():
        result = train(config, log=_log())
    if _is_main():
        console.print(f"best test accuracy {result['best_accuracy']:.4f}, final {result['final_accuracy']:.4f}; "
                      f"log and checkpoint in {config.out}")


def run_sweep(convs: str, out: str, **options: Any) -> None:
    from .sweep import sweep

    names = [c.strip() for c in convs.split(",") if c.strip()]
    if not names:
        _fail(ValueError("--conv needs at least one family, e.g. standard,depthwise_separable"))
    with _one_line_errors():
        rows = sweep(TrainConfig(**options), names, out, log=_log())
    if not _is_main():
        return
    table = Table(title=f"convzoo sweep — {options.get('model')} on {options.get('data')} "
                        f"(MACs per 32×32 image; FLOPs = 2 × MACs; latency: median, batch 1, 1 CPU thread)")
    for column in ("family", "params", "MACs", "latency (ms)", "best accuracy"):
        table.add_column(column, justify="left" if column == "family" else "right")
    for row in rows:
        table.add_row(row["family"], f"{row['params']:,}", f"{row['macs']:,}", f"{row['latency_ms']:.2f}",
                      f"{row['best_accuracy']:.4f}")
    console.print(table)
    console.print(f"written {out}/sweep.json and {out}/sweep.csv")
