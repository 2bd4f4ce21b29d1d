"""``convzoo compare`` and ``convzoo bench``."""

from __future__ import annotations

from typing import Optional

import typer

from ..perf.compare import MAX_ROUNDS, MAX_TIME, MIN_ROUNDS, MIN_TIME
from .common import check_output_path, console

app = typer.Typer()
# compare's default timing, as perf.compare._round_robin runs it
DEFAULT_ROUNDS = (f"at least {MIN_TIME:g} s and {MIN_ROUNDS} rounds, more while the ratios have not settled, up to "
                  f"{MAX_TIME:g} s or {MAX_ROUNDS} rounds")


def _check_before_timing(counts: dict[str, Optional[int]], outputs: dict[str, Optional[str]]) -> None:
    """Every count ≥ 1 and every output file's folder existing and writable, checked before any timing starts;
    a bad one ends in one line naming the option, the value and the rule, exit code 2."""
    try:
        for option, value in counts.items():
            if value is not None and value < 1:
                raise ValueError(f"{option}={value} must be a positive int")
        for option, path in outputs.items():
            if path:
                check_output_path(path, option)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def _checked_compile_mode(mode: str) -> str:
    """``--compile-mode``, one of the modes this torch's compiler knows: a one-line error, exit code 2, if not."""
    import torch._inductor

    modes = list(torch._inductor.list_mode_options())
    if mode not in modes:
        typer.echo(f"error: --compile-mode {mode!r} must be one of torch.compile's modes: {', '.join(modes)}",
                   err=True)
        raise typer.Exit(2)
    return mode


@app.command("compare")
def compare_command(
    batch: int = typer.Option(8, "--batch", help="batch size N"),
    in_channels: int = typer.Option(64, "--in", help="input channels"),
    out_channels: int = typer.Option(128, "--out", help="output channels"),
    size: int = typer.Option(56, "--size", help="input height = width"),
    kernel: int = typer.Option(3, "--kernel", help="kernel size k"),
    dtype: str = typer.Option("float32", "--dtype", help="float32 (fp32), float64, float16 or bfloat16; with "
                                                         "--runtime xnnpack|onnxruntime: fp32 or int8"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    repeats: Optional[int] = typer.Option(None, "--repeats", help="rounds per family, each timing 'standard' and the "
                                          f"family back to back (default: {DEFAULT_ROUNDS})"),
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
    csv_path: Optional[str] = typer.Option(None, "--csv", help="also write the rows to this CSV file"),
    runtime: str = typer.Option("eager", "--runtime", help="eager (PyTorch), xnnpack (ExecuTorch) or onnxruntime: "
                                                           "the last two forward only, beside eager float32"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch during the run (with "
                                                                  "--runtime: for every runtime; default: torch's)"),
    channels_last: bool = typer.Option(False, "--channels-last", help="every layer and input in channels_last "
                                                                      "(NHWC), the baseline too (eager only)"),
    compile_layers: bool = typer.Option(False, "--compile", help="time every layer, the baseline too, under "
                                        "torch.compile (each compiled before its rounds: a minute or more for "
                                        "every family)"),
    compile_mode: Optional[str] = typer.Option(None, "--compile-mode", help="torch.compile's mode (default, "
                                               "reduce-overhead, max-autotune, …; implies --compile)"),
    names: Optional[list[str]] = typer.Argument(None, help="families (default: all)"),
) -> None:
    """Every family on one layer shape: params, MACs and MAC ratio vs standard next to measured speed."""
    _check_before_timing({"--batch": batch, "--in": in_channels, "--out": out_channels, "--size": size,
                          "--kernel": kernel, "--repeats": repeats, "--threads": threads}, {"--csv": csv_path})
    compile_options = None
    if compile_layers or compile_mode is not None:
        compile_options = {} if compile_mode is None else {"mode": _checked_compile_mode(compile_mode)}
    if runtime != "eager" or dtype == "int8":
        from ..perf.runtime_compare import run_runtime_compare_command

        if device != "cpu":
            typer.echo(f"error: --runtime {runtime} runs on the CPU: --device {device!r} must be cpu", err=True)
            raise typer.Exit(2)
        if channels_last:
            typer.echo(f"error: --channels-last times eager PyTorch layers; --runtime {runtime} (and --dtype int8) "
                       "runs an exported graph in the runtime's own layout: leave one out", err=True)
            raise typer.Exit(2)
        if compile_options is not None:
            typer.echo(f"error: --compile times PyTorch layers under torch.compile; --runtime {runtime} (and --dtype "
                       "int8) runs an exported graph in the runtime: leave one out", err=True)
            raise typer.Exit(2)
        run_runtime_compare_command(console, runtime, dtype, batch, in_channels, out_channels, size, kernel,
                                    repeats, threads, as_json, csv_path, names)
        return
    from ..perf.compare import run_compare_command

    run_compare_command(console, batch, in_channels, out_channels, size, kernel, "float32" if dtype == "fp32" else
                        dtype, device, repeats, as_json, csv_path, names, threads, channels_last, compile_options)


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
    output: Optional[str] = typer.Option(None, "-o", "--output",
                                         help="results file (convzoo.perf.results' format, as the docs render it; "
                                              "default bench.json; with --sweep: the sweep's, as --sweep-json)"),
    plot_path: Optional[str] = typer.Option(None, "--plot", help="PNG: MAC ratio vs speed ratio, standard's speed "
                                            "the baseline (default bench.png; '' for none; not with --sweep)"),
    sweep: bool = typer.Option(False, "--sweep", help="hetconv only: the layer vs masked dense and grouped forms "
                                                       "over a grid of shapes (the shape options are ignored)"),
    quick: bool = typer.Option(False, "--quick", help="with --sweep: a two-shape grid, few runs (for tests)"),
    sweep_json: Optional[str] = typer.Option(None, "--sweep-json", help="with --sweep: write the results file "
                                             "(convzoo.perf.results' format) here"),
) -> None:
    """Careful harness: convzoo's layer vs native compositions, peers and naive forms, both memory formats."""
    if sweep:
        if list(names or []) != ["hetconv"]:
            typer.echo(f"error: --sweep times HetConv's forms only: give the family 'hetconv', got {names!r}", err=True)
            raise typer.Exit(2)
        if plot_path is not None:
            typer.echo(f"error: --plot {plot_path!r} does not apply with --sweep: the sweep draws no plot (its table "
                       "and --sweep-json / -o results file are its output)", err=True)
            raise typer.Exit(2)
        if output is not None and sweep_json is not None and output != sweep_json:
            typer.echo(f"error: -o {output!r} and --sweep-json {sweep_json!r} both name the sweep's results file: "
                       "give one", err=True)
            raise typer.Exit(2)
        from ..perf.hetconv_sweep import run_sweep_command

        _check_before_timing({"--threads": threads}, {"--sweep-json": sweep_json or output})
        run_sweep_command(console, dtype, device, threads, not no_backward, quick, sweep_json or output)
        return
    if quick or sweep_json:
        typer.echo("error: --quick and --sweep-json only apply with --sweep", err=True)
        raise typer.Exit(2)
    from ..perf.bench import run_bench_command

    output = "bench.json" if output is None else output
    plot_path = "bench.png" if plot_path is None else plot_path
    _check_before_timing({"--batch": batch, "--in": in_channels, "--out": out_channels, "--size": size,
                          "--kernel": kernel, "--threads": threads}, {"-o": output, "--plot": plot_path})
    run_bench_command(console, names, batch, in_channels, out_channels, size, kernel, dtype, device, threads,
                      not no_backward, output, plot_path)
