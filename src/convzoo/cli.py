"""The ``convzoo`` command."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .registry import families, family

app = typer.Typer(help="Every convolution of modern CNNs as a verified PyTorch layer.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
console = Console()


@app.command("list")
def list_families() -> None:
    """Show every convolution family: name, what it is, dims, where the seed articles describe it."""
    table = Table(title="convzoo families")
    for column in ("name", "title", "dims", "seed", "summary"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for f in families():
        table.add_row(f.name, f.title, ",".join(map(str, f.dims)), f.seed, f.summary)
    console.print(table)


@app.command()
def verify(
    names: Optional[list[str]] = typer.Argument(None, help="families to check (default: all)"),
    seed: int = typer.Option(0, help="random seed for inputs and parameters"),
) -> None:
    """Compare every family with its NumPy reference on random inputs (fp32 vs fp64); exit 1 if any fails."""
    from .verify import TOLERANCE, verify_family

    try:
        chosen = [family(n) for n in names] if names else families()
    except ValueError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    table = Table(title=f"convzoo verify — max relative error vs reference.py (pass < {TOLERANCE:g})")
    for column in ("family", "dim", "input", "output", "rel. error", "result"):
        table.add_column(column, no_wrap=column == "family")
    failures = 0
    for f in chosen:
        for dim in f.dims:
            result = verify_family(f.name, dim=dim, size=9 if dim < 3 else 5, seed=seed)
            failures += not result.passed
            verdict = "[green]pass[/green]" if result.passed else "[red]FAIL[/red]"
            table.add_row(f.name, str(dim), str(result.input_shape), str(result.output_shape),
                          f"{result.rel_error:.2e}", verdict)
    console.print(table)
    if failures:
        console.print(f"[red]{failures} check(s) failed[/red]")
        raise typer.Exit(1)
    console.print("[green]every family matches its reference[/green]")


def parse_args(pairs: Optional[list[str]]) -> dict:
    """``["width_mult=0.5", "conv='standard'"]`` → keyword arguments (values read as Python literals)."""
    import ast

    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--arg {pair!r} must look like name=value")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value  # a bare word such as conv=standard
    return kwargs


def resolve_target(target: str, in_channels: int, out_channels: int, kernel: int, dim: int,
                   kwargs: Optional[dict] = None):
    """TARGET -> (module, default input shape or None). Forms: a family name, ``torchvision:NAME``, a convzoo
    model name (looked up in ``convzoo.models`` once that module exists), or ``module.path:callable``."""
    import importlib

    if target.startswith("torchvision:"):
        import torchvision

        name = target.split(":", 1)[1]
        try:
            builder = torchvision.models.get_model_builder(name)
        except ValueError:
            raise ValueError(f"unknown torchvision model {name!r}") from None
        return builder(weights=None, **(kwargs or {})), (1, 3, 224, 224)
    if ":" in target:
        path, _, attr = target.partition(":")
        try:
            factory = getattr(importlib.import_module(path), attr)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot import {target!r}: {error}") from None
        return factory(**(kwargs or {})), None
    try:
        fam = family(target)
    except ValueError:
        fam = None
    if fam is not None:
        size = (56,) * dim
        return fam.build(in_channels, out_channels, kernel, dim, **(kwargs or {})), (1, in_channels, *size)
    try:  # hook for convzoo's own architectures (mobilenet_v1, shufflenet_v1) once convzoo.models exists
        models = importlib.import_module("convzoo.models")
    except ImportError:
        models = None
    factory = getattr(models, target, None) if models is not None else None
    if callable(factory):  # e.g. convzoo.models.mobilenet_v1(), called with its defaults
        model = factory(**(kwargs or {}))
        return model, getattr(model, "default_input_shape", (1, 3, 224, 224))
    names = ", ".join(f.name for f in families())
    raise ValueError(f"unknown target {target!r}: give a family ({names}), torchvision:NAME or module.path:callable")


@app.command("cost")
def cost_command(
    target: str = typer.Argument(..., help="family name, torchvision:NAME, or module.path:callable"),
    input: Optional[str] = typer.Option(None, "--input", help="input shape, e.g. 1,3,224,224"),
    in_channels: int = typer.Option(64, "--in", help="family: input channels"),
    out_channels: int = typer.Option(128, "--out", help="family: output channels"),
    kernel: int = typer.Option(3, "--kernel", help="family: kernel size"),
    dim: int = typer.Option(2, "--dim", help="family: spatial dims"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    arg: Optional[list[str]] = typer.Option(None, "--arg", help="name=value for the layer or model, e.g. width_mult=0.5"),
) -> None:
    """Params, MACs (FLOPs = 2 × MACs), other ops and bytes per layer, computed on the meta device."""
    import json

    from .cost import cost

    try:
        module, default = resolve_target(target, in_channels, out_channels, kernel, dim, parse_args(arg))
        shape = tuple(int(s) for s in input.split(",")) if input else default
        if shape is None:
            raise ValueError(f"{target!r} has no default input shape: give --input N,C,H,W")
        report = cost(module, shape)
    except (ValueError, TypeError, RuntimeError) as error:
        typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    weights = sum(p.numel() for p in module.parameters() if p.dim() > 1)
    if as_json:
        typer.echo(json.dumps({**report.to_dict(), "weight_params": weights}))
    else:
        console.print(report.table())
        console.print(f"input {shape}: {report.macs / 1e6:,.1f} M MACs (FLOPs = 2 × MACs = {report.flops / 1e6:,.1f} M); "
                      f"params {report.params:,} (all parameters, incl. norm and bias); conv and linear weights "
                      f"alone {weights:,} ({weights / 1e6:.1f} M)")


@app.command("convert")
def convert_command(
    source: str = typer.Argument(..., help="convzoo model name, torchvision:NAME, or module.path:callable"),
    to: str = typer.Option("depthwise_separable", "--to", help="the family to convert every Conv2d to"),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="save the converted model (torch.save)"),
    input: Optional[str] = typer.Option(None, "--input", help="input shape for per-layer MACs, e.g. 1,3,224,224"),
    arg: Optional[list[str]] = typer.Option(None, "--arg", help="name=value for the family, e.g. mid_channels=16"),
) -> None:
    """Replace every Conv2d of a model by a family, starting from the best approximation of its weights."""
    from .models.convert import convert

    try:
        model, default = resolve_target(source, 0, 0, 0, 2)
        shape = tuple(int(s) for s in input.split(",")) if input else default
        new_model, report = convert(model, to, input_shape=shape, **parse_args(arg))
    except (ValueError, TypeError, RuntimeError) as error:
        typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    console.print(report.table())
    console.print(f"{len(report.converted)} layer(s) converted, {len(report.skipped)} kept")
    if output:
        import torch

        torch.save(new_model, output)
        console.print(f"saved to {output}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
