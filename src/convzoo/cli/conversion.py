"""``convzoo convert``."""

from __future__ import annotations

from typing import Optional

import typer

from .common import check_output_path, console, model_input_errors, parse_args, parse_shape, resolve_target

app = typer.Typer()


@app.command("convert")
def convert_command(
    source: str = typer.Argument(..., help="convzoo model name, torchvision:NAME, or module.path:callable"),
    to: str = typer.Option("depthwise_separable", "--to", help="the family to convert every Conv2d to"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="save the converted model: state dict + recipe (convzoo.models.load_converted)"),
    input: Optional[str] = typer.Option(None, "--input", help="input shape for per-layer MACs, e.g. 1,3,224,224"),
    arg: Optional[list[str]] = typer.Option(None, "--arg", help="name=value for the family, e.g. mid_channels=16"),
    where: Optional[str] = typer.Option(None, "--where", help="convert only the convs whose name, or a containing "
                                                              "module's name, matches this fnmatch pattern, e.g. "
                                                              "layer4 or 'layer*.0.conv1'"),
    force: bool = typer.Option(False, "--force", help="also convert layers the family cannot improve (1×1 kernels "
                                                      "for window factorisations, layers it would not make cheaper, "
                                                      "channel-mixing convs to a family that mixes none)"),
) -> None:
    """Replace every Conv2d of a model (or those --where selects) by a family, starting from the best approximation
    of its weights."""
    from ..conversion.convert import InputShapeError, convert

    try:
        if output:
            check_output_path(output, "-o")  # before the conversion, not after it
        model, default = resolve_target(source, 0, 0, 0, 2)
        shape = parse_shape(input) if input else default
        kwargs = parse_args(arg)
        with model_input_errors(source, shape):
            try:
                new_model, report = convert(model, to, where=where, input_shape=shape, force=force, **kwargs)
            except InputShapeError as error:  # the model's own error, worded as cost and export word it
                cause = error.__cause__
                raise cause if isinstance(cause, (AssertionError, RuntimeError)) else error from None
    except (ValueError, TypeError, RuntimeError) as error:
        typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    console.print(report.table())
    console.print(f"{len(report.converted)} layer(s) converted, {len(report.skipped)} kept; {report.totals()}")
    if output:
        from ..models import save_converted

        try:
            save_converted(output, new_model, source, to, {**kwargs, "force": True} if force else kwargs, shape)
        except OSError as error:
            typer.echo(f"error: -o {output!r}: {error.strerror or error}", err=True)
            raise typer.Exit(2) from None
        console.print(f"saved to {output} (state dict + recipe: torch.load reads it; "
                      f"convzoo.models.load_converted({output!r}) rebuilds the model)")
