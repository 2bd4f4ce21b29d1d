"""``convzoo export``: a family or a model to ONNX, checked in onnxruntime against PyTorch."""

from __future__ import annotations

from typing import Optional

import typer

from .analysis import DIM, IN_CHANNELS, KERNEL, OUT_CHANNELS, layer_options, unbatched_input
from .common import check_output_path, console, model_input_errors, parse_args, parse_shape, resolve_target

app = typer.Typer()

TOLERANCE = 1e-4


@app.command("export")
def export_command(
    target: str = typer.Argument(..., help="family name, convzoo model, torchvision:NAME or module.path:callable"),
    output: str = typer.Option(..., "-o", "--output", help="the .onnx file to write"),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="the batch size is an input of the graph"),
    input: Optional[str] = typer.Option(None, "--input", help="input shape, e.g. 1,3,224,224 (default: the "
                                        "target's; families 1,C,56,56)"),
    in_channels: Optional[int] = IN_CHANNELS,
    out_channels: Optional[int] = OUT_CHANNELS,
    kernel: Optional[int] = KERNEL,
    dim: Optional[int] = DIM,
    arg: Optional[list[str]] = typer.Option(None, "--arg", help="name=value for the layer or model"),
) -> None:
    """Export to ONNX (torch's dynamo exporter, opset 19) and run the file in onnxruntime against PyTorch."""
    from ..deploy.onnx import export_onnx

    try:
        check_output_path(output, "-o")
        module, default = resolve_target(target, *layer_options(target, in_channels, out_channels, kernel, dim),
                                         parse_args(arg))
        shape = parse_shape(input) if input else default
        if shape is None:
            raise ValueError(f"{target!r} has no default input shape: give --input N,C,H,W")
        with unbatched_input(input, shape, default), model_input_errors(target, shape):
            result = export_onnx(module, shape, output, dynamic_batch=dynamic_batch)
    except (ValueError, TypeError, RuntimeError, ImportError) as error:
        typer.echo(f"error: {(str(error).strip().splitlines() or [type(error).__name__])[0]}", err=True)
        raise typer.Exit(2) from None
    worst = max(result.errors.values())
    for batch, err in result.errors.items():
        console.print(f"onnxruntime vs PyTorch at batch {batch}: relative error {err:.2e}")
    console.print(f"wrote {output}: input {shape}{' (batch dynamic)' if dynamic_batch else ''}, "
                  f"{len(result.ops)} ONNX nodes")
    if worst >= TOLERANCE:
        typer.echo(f"error: onnxruntime differs from PyTorch by {worst:.2e} (tolerance {TOLERANCE:g})", err=True)
        raise typer.Exit(1)
