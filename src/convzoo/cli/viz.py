"""Implementations behind ``convzoo viz`` and ``convzoo report`` (the typer commands in convzoo/cli.py are thin)."""

from __future__ import annotations

import errno
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


def run_report(output: str, batch: int | None, in_channels: int | None, out_channels: int | None,
               size: int | None, repeats: int | None, rows_path: str | None, sweep: str | None) -> None:
    from ..viz.report import DEFAULT_SETTINGS, build_report, check_output, read_rows

    try:
        check_output(output)
        given = {k: v for k, v in (("batch", batch), ("in_channels", in_channels), ("out_channels", out_channels),
                                   ("size", size)) if v is not None}
        if rows_path:
            rows, settings, source = read_rows(rows_path), given, rows_path
        else:
            settings = {**DEFAULT_SETTINGS, **given, **({"repeats": repeats} if repeats else {})}
            rows, source = None, None
        path = build_report(output, rows=rows, sweep=sweep, settings=settings, rows_source=source,
                            progress=lambda step: typer.echo(step, err=True))
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        _fail(error)
    typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


def run_serve(host: str, port: int) -> None:
    from ..viz.serve import make_server

    if not 1 <= port <= 65535:
        _fail(ValueError(f"--port {port} is out of range: must be between 1 and 65535"))
    try:
        server = make_server(host, port)
    except OSError as error:  # busy port, unknown host, no permission
        reason = "it is already in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
        _fail(OSError(f"cannot listen on {host} port {port}: {reason}"))
    typer.echo(f"convzoo explorer on http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


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
    batch: Optional[int] = typer.Option(None, "--batch", help="timing: batch size (default 8)"),
    in_channels: Optional[int] = typer.Option(None, "--in", help="timing: input channels (default 64)"),
    out_channels: Optional[int] = typer.Option(None, "--out", help="timing: output channels (default 128)"),
    size: Optional[int] = typer.Option(None, "--size", help="timing: input height and width (default 56)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="timing runs (default: ~0.25 s each)"),
    rows: Optional[str] = typer.Option(None, "--rows", help="compare rows from this JSON file (`convzoo compare "
                                       "--json`) instead of timing; --in/--out/--size/--batch then state their shape"),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="a sweep JSON file: its table, and the "
                                        "sweep_pareto.png beside it when there is one"),
) -> None:
    """One self-contained HTML page to learn from: every family's idea, pictures, cost formula with the numbers
    and measured speed; a comparison grid; MACs against measured time."""
    run_report(output, batch, in_channels, out_channels, size, repeats, rows, sweep)


@app.command("serve")
def serve_command(
    port: int = typer.Option(8000, "--port", help="TCP port (1–65535)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only)"),
) -> None:
    """Local web explorer (works offline): hover an output to see the inputs and kernel taps it reads, slide the
    window, see shapes, params and MACs, stage by stage; the state lives in the URL."""
    run_serve(host, port)
