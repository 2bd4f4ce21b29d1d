"""Implementations behind ``convzoo viz`` and ``convzoo report`` (the typer commands in convzoo/cli.py are thin)."""

from __future__ import annotations

import errno
from typing import Any, Optional

import typer

from .perf import DEFAULT_ROUNDS


def _fail(error: Exception) -> None:
    typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
    raise typer.Exit(2)


def default_spec(target: str, in_channels: int = 6, out_channels: int = 6, kernel: int | None = None, dim: int = 2,
                 size: int | None = None, options: dict[str, Any] | None = None):
    """The ``LayerSpec`` that ``convzoo viz TARGET`` draws: the family's picture kernel when none is given (3
    unless its registry record names another), the input size left to ``viz.picture_size``."""
    from ..registry import family
    from ..viz.spec import LayerSpec

    fam = family(target)
    if kernel is not None and not fam.window:  # LayerSpec cannot tell an asked 3 from the default one
        raise ValueError(f"family {target!r} takes no 'kernel' argument (--kernel {kernel} given): it has no window "
                         "to choose, its layer sets its own kernel size; leave --kernel out")
    if kernel is None:
        kernel = fam.picture_kernel or 3
    return LayerSpec(target, in_channels, out_channels, kernel, dim, size,
                     {k: v for k, v in (options or {}).items() if v is not None})


def _special_options(target: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options a special picture reads, from ``options`` (CLI names without ``--`` → value, None = not given):
    every other given one is a ValueError naming it and what the picture reads (the Pictures page's promise: an
    option a special picture does not read is refused, never dropped)."""
    from ..viz.special import special_options

    reads = special_options(target)
    for name, value in options.items():
        if value is not None and name not in reads:
            uses = f"it reads only {', '.join('--' + r for r in reads)}" if reads else "it takes no options"
            raise ValueError(f"--{name.replace('_', '-')} is not used by the special picture {target!r}: {uses}")
    return {name: value for name, value in options.items() if name in reads}


def run_viz(target: str, output: str, in_channels: int | None, out_channels: int | None, kernel: int | None,
            dim: int | None, size: int | None, options: dict[str, Any], numbers: bool = False,
            input_values: str | None = None, kernel_values: str | None = None, title: bool = True,
            planes: int | None = None) -> None:
    """``in_channels``, ``out_channels``, ``dim`` None: not given (a family is drawn at PICTURE_CHANNELS, 2-D)."""
    from ..viz import render

    try:
        if target in _special_names():
            # every option the user can give, by its CLI name (a flag off by default is None unless given), so
            # that a special picture refuses what it does not read instead of drawing its default picture
            given = _special_options(target, {"in": in_channels, "out": out_channels, "kernel": kernel, "dim": dim,
                                              "size": size, **options, "numbers": numbers or None,
                                              "input_values": input_values, "kernel_values": kernel_values,
                                              "no_title": None if title else True, "planes": planes})
            path = render(target, output, None, special=given)
        else:
            spec = default_spec(target, PICTURE_CHANNELS if in_channels is None else in_channels,
                                PICTURE_CHANNELS if out_channels is None else out_channels, kernel,
                                2 if dim is None else dim, size, options)
            path = render(target, output, spec, numbers=numbers, input_values=input_values,
                          kernel_values=kernel_values, title=title, planes=planes)
    except (ValueError, TypeError, RuntimeError) as error:
        _fail(error)
    typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


def check_folder(path: str, option: str) -> None:
    """An output folder is created when missing, but only inside an existing, writable folder, as every other
    command refuses an output whose folder does not exist (a typo such as /nonexist/f made a tree of folders).
    ValueError naming the option, the path and the rule."""
    import os

    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a file: give a folder to write the figures into")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{option} {path!r}: the folder {parent!r} does not exist (only the last folder of the path "
                         "is created)")
    written = path if os.path.isdir(path) else parent  # where files, or the new folder, are created
    if not os.access(written, os.W_OK):
        raise ValueError(f"{option} {path!r}: the folder {written!r} is not writable")


def run_figures(output: str, fmt: str, only: list[str] | None, lang: str = "both", listing: bool = False) -> None:
    from ..viz.article_figures import FIGURES, check_lang, figure_names, write_figures

    try:
        check_lang(lang)
        if listing:
            unknown = sorted(set(only or []) - set(figure_names()))
            if unknown:
                raise ValueError(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(figure_names())}")
            for fig in FIGURES:
                if not only or fig.name in only:
                    typer.echo(f"{fig.name}{fig.suffix or ''}\n  {fig.title(lang)}\n  "
                               + fig.caption_text(lang).replace("\n", "\n  "))
            return
        check_folder(output, "-o")
        paths = write_figures(output, fmt, only or None, lang=lang,
                              progress=lambda name: typer.echo(f"drawing {name}", err=True))
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        _fail(error)
    by_name = {f.name: f for f in FIGURES}
    for path in paths:
        typer.echo(f"{path.name}: {by_name[path.stem].title(lang)}")
    typer.echo(f"wrote {len(paths)} figures (+ captions) to {output}")


def _special_names() -> list[str]:
    from ..viz.special import SPECIAL

    return list(SPECIAL)


def run_report(output: str, batch: int | None, in_channels: int | None, out_channels: int | None,
               size: int | None, repeats: int | None, rows_path: str | None, sweep: str | None,
               families: str | None = None) -> None:
    from ..viz.report import DEFAULT_SETTINGS, build_report, check_output, read_rows

    try:
        check_output(output)
        for flag, value in (("--batch", batch), ("--in", in_channels), ("--out", out_channels), ("--size", size),
                            ("--repeats", repeats)):
            if value is not None and value < 1:
                raise ValueError(f"{flag} {value} must be a positive integer")
        names = [n.strip() for n in families.split(",") if n.strip()] if families else None
        given = {k: v for k, v in (("batch", batch), ("in_channels", in_channels), ("out_channels", out_channels),
                                   ("size", size)) if v is not None}
        if rows_path:
            rows, settings, source = read_rows(rows_path), given, rows_path
        else:
            settings = {**DEFAULT_SETTINGS, **given, **({"repeats": repeats} if repeats else {})}
            rows, source = None, None
        path = build_report(output, rows=rows, sweep=sweep, settings=settings, rows_source=source, names=names,
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
# 6 channels by default: the registry's default groups (gcd(C_in, C_out, 4)) is then 2, so a grouped conv is not a
# depthwise one, HetConv's p is 2 and MixConv has 3 channel groups.
PICTURE_CHANNELS = 6


@app.command("viz")
def viz_command(
    target: str = typer.Argument(..., help="a family name, or a special picture: overlap, checkerboard, "
                                           "receptive_field, deformable_sampling, sobel"),
    output: str = typer.Option(..., "-o", "--output", help="file to write: .png or .svg (figure), .gif (animation)"),
    in_channels: Optional[int] = typer.Option(None, "--in", help=f"input channels (default {PICTURE_CHANNELS})"),
    out_channels: Optional[int] = typer.Option(None, "--out", help=f"output channels (default {PICTURE_CHANNELS})"),
    kernel: Optional[int] = typer.Option(None, "--kernel", help="kernel size (default 3, or the larger one a family's picture needs: large_kernel 11)"),
    dim: Optional[int] = typer.Option(None, "--dim", help="spatial dims (1, 2 or 3; default 2; 3-D is drawn as "
                                                          "depth slices)"),
    size: Optional[int] = typer.Option(None, "--size", help="input size per spatial dim"),
    stride: Optional[int] = typer.Option(None, "--stride"),
    padding: Optional[int] = typer.Option(None, "--padding"),
    dilation: Optional[int] = typer.Option(None, "--dilation"),
    groups: Optional[int] = typer.Option(None, "--groups"),
    output_padding: Optional[int] = typer.Option(None, "--output-padding"),
    p: Optional[int] = typer.Option(None, "--p", help="HetConv's p (1/p of the kernels are k×k)"),
    numbers: bool = typer.Option(False, "--numbers", help="print the values in the cells (random input)"),
    input_values: Optional[str] = typer.Option(None, "--input-values",
                                               help="input numbers: ',' within a row, ';' between rows, e.g. "
                                                    "\"3,3,2,1,0;0,0,1,3,1;3,1,2,2,3;2,0,0,2,2;2,0,0,0,1\""),
    kernel_values: Optional[str] = typer.Option(None, "--kernel-values",
                                                help="kernel numbers, same format, e.g. \"0,1,2;2,2,0;0,1,2\" "
                                                     "(bias set to 0)"),
    title: bool = typer.Option(True, "--title/--no-title", help="draw the title lines"),
    planes: Optional[int] = typer.Option(None, "--planes", help="channel planes drawn in full (default 1, 4 with "
                                         "numbers; the wiring shows every channel). More planes give a picture "
                                         "larger than the default 1600×1400 px budget"),
) -> None:
    """Draw a family from its real layer (kernel taps, padding, stages, channel wiring) or a special picture."""
    run_viz(target, output, in_channels, out_channels, kernel, dim, size,
            {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
             "output_padding": output_padding, "p": p}, numbers, input_values, kernel_values, title, planes)


@app.command("figures")
def figures_command(
    output: str = typer.Option("figures", "-o", "--output", help="directory to write the figures into"),
    fmt: str = typer.Option("png", "--format", help="png or svg"),
    only: Optional[list[str]] = typer.Option(None, "--only", help="draw only this figure (repeatable)"),
    lang: str = typer.Option("both", "--lang", help="caption language: zh (the articles' Chinese terms), en, or "
                                                    "both"),
    listing: bool = typer.Option(False, "--list", help="list the figures with their titles and captions; draw "
                                                       "nothing"),
) -> None:
    """Every figure the seed articles describe, drawn from real layers: DIR/<article>-<section>_<what>.png (.gif for
    an animation) with a caption file each and DIR/captions.md; titles and captions give the articles' Chinese
    term next to the English (--lang)."""
    run_figures(output, fmt, only, lang, listing)


@app.command("report")
def report_command(
    output: str = typer.Option("report.html", "-o", "--output", help="the HTML file to write"),
    batch: Optional[int] = typer.Option(None, "--batch", help="timing: batch size (default 8)"),
    in_channels: Optional[int] = typer.Option(None, "--in", help="timing: input channels (default 64)"),
    out_channels: Optional[int] = typer.Option(None, "--out", help="timing: output channels (default 128)"),
    size: Optional[int] = typer.Option(None, "--size", help="timing: input height and width (default 56)"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="rounds per family, each timing 'standard' and "
                                          f"the family back to back (default: {DEFAULT_ROUNDS})"),
    rows: Optional[str] = typer.Option(None, "--rows", help="compare rows from this JSON file (`convzoo compare "
                                       "--json`) instead of timing; --in/--out/--size/--batch then state their shape"),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="a sweep JSON file: its table, and the "
                                        "sweep_pareto.png beside it when there is one"),
    families: Optional[str] = typer.Option(None, "--families", help="only these families, comma-separated "
                                           "(default: all)"),
) -> None:
    """One self-contained HTML page to learn from: every family's idea, pictures, cost formula with the numbers
    and measured speed; a comparison grid; MACs against measured time; the article figures."""
    run_report(output, batch, in_channels, out_channels, size, repeats, rows, sweep, families)


@app.command("serve")
def serve_command(
    port: int = typer.Option(8000, "--port", help="TCP port (1–65535)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only)"),
) -> None:
    """Local web explorer (works offline): the window walks the output on load; hover or click an output to see
    the inputs and kernel taps it reads, its kernel, the values under it and the dot product (numbers), every
    filter's kernel, shapes, params and MACs, stage by stage; the state lives in the URL."""
    run_serve(host, port)
