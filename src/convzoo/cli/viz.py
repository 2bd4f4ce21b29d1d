"""Implementations behind ``convzoo viz`` and ``convzoo report`` (the typer commands in convzoo/cli.py are thin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer


def _fail(error: Exception) -> None:
    typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
    raise typer.Exit(2)


def run_viz(target: str, output: str, in_channels: int, out_channels: int, kernel: int, dim: int,
            size: int | None, options: dict[str, Any]) -> None:
    from ..viz import render
    from ..viz.spec import LayerSpec

    try:
        spec = None if target in _special_names() else LayerSpec(
            target, in_channels, out_channels, kernel, dim, size, {k: v for k, v in options.items() if v is not None})
        path = render(target, output, spec)
    except (ValueError, TypeError, RuntimeError) as error:
        _fail(error)
    typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


def _special_names() -> list[str]:
    from ..viz.special import SPECIAL

    return list(SPECIAL)


def run_report(output: str, batch: int, in_channels: int, out_channels: int, size: int, repeats: int | None,
               rows_path: str | None, sweep: str) -> None:
    from ..viz.report import build_report

    try:
        rows = json.loads(Path(rows_path).read_text()) if rows_path else None
        compare_kwargs = {"batch": batch, "in_channels": in_channels, "out_channels": out_channels, "size": size,
                          "repeats": repeats, "progress": lambda name: typer.echo(f"timing {name}", err=True)}
        path = build_report(output, rows=rows, sweep=sweep, compare_kwargs=compare_kwargs)
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        _fail(error)
    typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


app = typer.Typer()


@app.command("viz")
def viz_command(
    target: str = typer.Argument(..., help="a family name, or a special picture: overlap, checkerboard, "
                                           "receptive_field, deformable_sampling, sobel"),
    output: str = typer.Option(..., "-o", "--output", help="file to write: .png or .svg (figure), .gif (animation)"),
    in_channels: int = typer.Option(4, "--in", help="input channels"),
    out_channels: int = typer.Option(4, "--out", help="output channels"),
    kernel: int = typer.Option(3, "--kernel", help="kernel size"),
    dim: int = typer.Option(2, "--dim", help="spatial dims (1, 2 or 3; 3-D is drawn as depth slices)"),
    size: Optional[int] = typer.Option(None, "--size", help="input size per spatial dim"),
    stride: Optional[int] = typer.Option(None, "--stride"),
    padding: Optional[int] = typer.Option(None, "--padding"),
    dilation: Optional[int] = typer.Option(None, "--dilation"),
    groups: Optional[int] = typer.Option(None, "--groups"),
    output_padding: Optional[int] = typer.Option(None, "--output-padding"),
    p: Optional[int] = typer.Option(None, "--p", help="HetConv's p (1/p of the kernels are k×k)"),
) -> None:
    """Draw a family's connectivity (computed by autograd from the real layer) or a special picture."""
    run_viz(target, output, in_channels, out_channels, kernel, dim, size,
            {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
             "output_padding": output_padding, "p": p})


@app.command("report")
def report_command(
    output: str = typer.Option("report.html", "-o", "--output", help="the HTML file to write"),
    batch: int = typer.Option(8, "--batch", help="compare: batch size"),
    in_channels: int = typer.Option(64, "--in", help="compare: input channels"),
    out_channels: int = typer.Option(128, "--out", help="compare: output channels"),
    size: int = typer.Option(56, "--size", help="compare: input height and width"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="compare: timing runs (default: ~0.25 s each)"),
    rows: Optional[str] = typer.Option(None, "--rows", help="use compare rows from this JSON file instead of timing"),
    sweep: str = typer.Option("runs/sweep/sweep.json", "--sweep", help="sweep results, included when the file exists"),
) -> None:
    """One self-contained HTML file: compare table, MACs-vs-time plot, sweep table, a gallery of every family."""
    run_report(output, batch, in_channels, out_channels, size, repeats, rows, sweep)


@app.command("serve")
def serve_command(
    port: int = typer.Option(8000, "--port", help="TCP port"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only)"),
) -> None:
    """Local web explorer: pick a family and its parameters, see its connectivity, output shape, params, MACs."""
    from ..viz.serve import serve

    serve(host, port)
