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


@app.command("compare")
def compare_command(
    batch: int = typer.Option(8, "--batch", help="batch size N"),
    in_channels: int = typer.Option(64, "--in", help="input channels"),
    out_channels: int = typer.Option(128, "--out", help="output channels"),
    size: int = typer.Option(56, "--size", help="input height = width"),
    kernel: int = typer.Option(3, "--kernel", help="kernel size k"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, float64, float16 or bfloat16"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="timed runs per measurement (default: ~0.25 s)"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
    csv_path: Optional[str] = typer.Option(None, "--csv", help="also write the rows to this CSV file"),
    names: Optional[list[str]] = typer.Argument(None, help="families (default: all)"),
) -> None:
    """Every family on one layer shape: params, MACs and MAC ratio vs standard next to measured speed."""
    from .compare import run_compare_command

    run_compare_command(console, batch, in_channels, out_channels, size, kernel, dtype, device, repeats, as_json,
                        csv_path, names)


@app.command("bench")
def bench_command(
    names: Optional[list[str]] = typer.Argument(None, help="families (default: all)"),
    batch: int = typer.Option(8, "--batch", help="batch size N"),
    in_channels: int = typer.Option(64, "--in", help="input channels"),
    out_channels: int = typer.Option(128, "--out", help="output channels"),
    size: int = typer.Option(56, "--size", help="input height = width"),
    kernel: int = typer.Option(3, "--kernel", help="kernel size k"),
    dtype: str = typer.Option("float32", "--dtype", help="float32, float64, float16 or bfloat16"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    threads: Optional[int] = typer.Option(None, "--threads", help="pin the CPU thread count (default: torch's)"),
    no_backward: bool = typer.Option(False, "--no-backward", help="time forward only"),
    output: str = typer.Option("bench.json", "-o", "--output", help="JSON results file"),
    plot_path: Optional[str] = typer.Option("bench.png", "--plot", help="PNG: MAC ratio vs speed ratio"),
) -> None:
    """Careful harness: convzoo's layer vs native compositions, peers and naive forms, both memory formats."""
    from .bench import run_bench_command

    run_bench_command(console, names, batch, in_channels, out_channels, size, kernel, dtype, device, threads,
                      not no_backward, output, plot_path)


def _training_options(model, conv, data, epochs, batch_size, lr, optimizer, weight_decay, label_smoothing, width_mult,
                      seed, resume, temperature_epochs, offset_lr_mult, accum_steps, device, progress,
                      max_train_samples, max_test_samples, stop_after_steps) -> dict:
    return dict(locals())


_TRAIN_OPTIONS = dict(
    model=typer.Option("mobilenet_v1", help="mobilenet_v1 | shufflenet_v1 (32×32-input variants)"),
    data=typer.Option("digits", help="digits | cifar10:PATH | imagefolder:PATH (nothing is downloaded)"),
    epochs=typer.Option(4, help="training epochs"),
    batch_size=typer.Option(32, "--batch-size", help="global batch size (split over torchrun processes)"),
    lr=typer.Option(0.05, help="peak learning rate (cosine schedule per step)"),
    optimizer=typer.Option("sgd", help="sgd (Nesterov momentum 0.9) | adamw"),
    weight_decay=typer.Option(5e-4, "--weight-decay"),
    label_smoothing=typer.Option(0.0, "--label-smoothing"),
    width_mult=typer.Option(0.25, "--width-mult", help="MobileNet width α (ShuffleNet: scale)"),
    seed=typer.Option(0, help="seed for initialisation and data order"),
    resume=typer.Option(False, "--resume", help="continue from OUT/checkpoint.pt"),
    temperature_epochs=typer.Option(None, "--temperature-epochs",
                                    help="dynamic conv: epochs to anneal T 30→1 (default min(10, epochs/2))"),
    offset_lr_mult=typer.Option(0.1, "--offset-lr-mult", help="deformable conv: offset-conv lr multiplier"),
    accum_steps=typer.Option(1, "--accum-steps", help="micro-batches per step (emulates N processes on one)"),
    device=typer.Option("auto", help="auto | cpu | cuda[:i]"),
    progress=typer.Option(True, "--progress/--no-progress", help="rich progress bars"),
    max_train_samples=typer.Option(None, "--max-train-samples", help="debug: use the first N training images"),
    max_test_samples=typer.Option(None, "--max-test-samples", help="debug: use the first N test images"),
    stop_after_steps=typer.Option(None, "--stop-after-steps", help="debug: exit (code 3) after N steps"),
)


@app.command("train")
def train_command(
    conv: str = typer.Option("depthwise_separable", help="family for MobileNet's 3×3 blocks"),
    out: str = typer.Option("runs/train", help="folder for metrics.jsonl and checkpoint.pt"),
    model: str = _TRAIN_OPTIONS["model"], data: str = _TRAIN_OPTIONS["data"], epochs: int = _TRAIN_OPTIONS["epochs"],
    batch_size: int = _TRAIN_OPTIONS["batch_size"], lr: float = _TRAIN_OPTIONS["lr"],
    optimizer: str = _TRAIN_OPTIONS["optimizer"], weight_decay: float = _TRAIN_OPTIONS["weight_decay"],
    label_smoothing: float = _TRAIN_OPTIONS["label_smoothing"], width_mult: float = _TRAIN_OPTIONS["width_mult"],
    seed: int = _TRAIN_OPTIONS["seed"], resume: bool = _TRAIN_OPTIONS["resume"],
    temperature_epochs: Optional[float] = _TRAIN_OPTIONS["temperature_epochs"],
    offset_lr_mult: float = _TRAIN_OPTIONS["offset_lr_mult"], accum_steps: int = _TRAIN_OPTIONS["accum_steps"],
    device: str = _TRAIN_OPTIONS["device"], progress: bool = _TRAIN_OPTIONS["progress"],
    max_train_samples: Optional[int] = _TRAIN_OPTIONS["max_train_samples"],
    max_test_samples: Optional[int] = _TRAIN_OPTIONS["max_test_samples"],
    stop_after_steps: Optional[int] = _TRAIN_OPTIONS["stop_after_steps"],
) -> None:
    """Train one model with one convolution family; works unchanged under torchrun (DDP)."""
    from .train_commands import run_train

    run_train(out=out, **_training_options(model, conv, data, epochs, batch_size, lr, optimizer, weight_decay,
                                           label_smoothing, width_mult, seed, resume, temperature_epochs,
                                           offset_lr_mult, accum_steps, device, progress, max_train_samples,
                                           max_test_samples, stop_after_steps))


@app.command("sweep")
def sweep_command(
    conv: str = typer.Option("standard,depthwise_separable", help="comma-separated families"),
    out: str = typer.Option("runs/sweep", help="folder for sweep.json / sweep.csv and one run per family"),
    model: str = _TRAIN_OPTIONS["model"], data: str = _TRAIN_OPTIONS["data"], epochs: int = _TRAIN_OPTIONS["epochs"],
    batch_size: int = _TRAIN_OPTIONS["batch_size"], lr: float = _TRAIN_OPTIONS["lr"],
    optimizer: str = _TRAIN_OPTIONS["optimizer"], weight_decay: float = _TRAIN_OPTIONS["weight_decay"],
    label_smoothing: float = _TRAIN_OPTIONS["label_smoothing"], width_mult: float = _TRAIN_OPTIONS["width_mult"],
    seed: int = _TRAIN_OPTIONS["seed"], resume: bool = _TRAIN_OPTIONS["resume"],
    temperature_epochs: Optional[float] = _TRAIN_OPTIONS["temperature_epochs"],
    offset_lr_mult: float = _TRAIN_OPTIONS["offset_lr_mult"], accum_steps: int = _TRAIN_OPTIONS["accum_steps"],
    device: str = _TRAIN_OPTIONS["device"], progress: bool = _TRAIN_OPTIONS["progress"],
    max_train_samples: Optional[int] = _TRAIN_OPTIONS["max_train_samples"],
    max_test_samples: Optional[int] = _TRAIN_OPTIONS["max_test_samples"],
    stop_after_steps: Optional[int] = _TRAIN_OPTIONS["stop_after_steps"],
) -> None:
    """Train the same network once per family; table of params, MACs, latency and best accuracy."""
    from .train_commands import run_sweep

    run_sweep(conv, out, **_training_options(model, "standard", data, epochs, batch_size, lr, optimizer,
                                             weight_decay, label_smoothing, width_mult, seed, resume,
                                             temperature_epochs, offset_lr_mult, accum_steps, device, progress,
                                             max_train_samples, max_test_samples, stop_after_steps))


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
    from .viz.cli import run_viz

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
    from .viz.cli import run_report

    run_report(output, batch, in_channels, out_channels, size, repeats, rows, sweep)


@app.command("serve")
def serve_command(
    port: int = typer.Option(8000, "--port", help="TCP port"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (default: this machine only)"),
) -> None:
    """Local web explorer: pick a family and its parameters, see its connectivity, output shape, params, MACs."""
    from .viz.serve import serve

    serve(host, port)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
