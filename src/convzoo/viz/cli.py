"""Implementations behind ``convzoo viz`` and ``convzoo report`` (the typer commands in convzoo/cli.py are thin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _fail(error: Exception) -> None:
    typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
    raise typer.Exit(2)


def run_viz(target: str, output: str, in_channels: int, out_channels: int, kernel: int, dim: int,
            size: int | None, options: dict[str, Any]) -> None:
    from . import render
    from .spec import LayerSpec

    try:
        spec = None if target in _special_names() else LayerSpec(
            target, in_channels, out_channels, kernel, dim, size, {k: v for k, v in options.items() if v is not None})
        path = render(target, output, spec)
    except (ValueError, TypeError, RuntimeError) as error:
        _fail(error)
    typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


def _special_names() -> list[str]:
    from .special import SPECIAL

    return list(SPECIAL)


def run_report(output: str, batch: int, in_channels: int, out_channels: int, size: int, repeats: int | None,
               rows_path: str | None, sweep: str) -> None:
    from .report import build_report

    try:
        rows = json.loads(Path(rows_path).read_text()) if rows_path else None
        compare_kwargs = {"batch": batch, "in_channels": in_channels, "out_channels": out_channels, "size": size,
                          "repeats": repeats, "progress": lambda name: typer.echo(f"timing {name}", err=True)}
        path = build_report(output, rows=rows, sweep=sweep, compare_kwargs=compare_kwargs)
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        _fail(error)
    typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")
