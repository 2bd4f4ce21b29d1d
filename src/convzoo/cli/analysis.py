"""``convzoo cost`` (params, MACs, other ops, bytes; per module with --depth) and ``convzoo rf`` (receptive fields)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

import typer

from .common import (
    COST_DTYPES,
    TARGET_FORMS,
    console,
    model_input_errors,
    parse_args,
    parse_depth,
    parse_dtype,
    parse_shape,
    resolve_target,
)

app = typer.Typer()


def weight_params(module) -> int:  # type: ignore[no-untyped-def]
    """Weights of the modules whose weights are multiplied in the MACs, read by type: torch's convs (``_ConvNd``,
    transposed ones included), ``Linear``, ``Bilinear``, ``MultiheadAttention``'s input projections (its output
    projection is a Linear) and convzoo's layers (their own weight tensors); biases excluded. Positional
    embeddings, class tokens, embeddings and norms are not: ``p.dim() > 1`` counted ViT's pos_embedding and
    class_token (152,064 of vit_b_16's 86,444,544)."""
    from torch import nn

    from ..layers.base import ConvzooLayer

    weights: dict[int, int] = {}  # by tensor, so that a weight tied into two modules is counted once
    for m in module.modules():
        if isinstance(m, nn.MultiheadAttention):
            own = [m.in_proj_weight, m.q_proj_weight, m.k_proj_weight, m.v_proj_weight]
        elif isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.Bilinear, ConvzooLayer)):
            bias = getattr(m, "bias", None)
            own = [p for p in m.parameters(recurse=False) if p is not bias]
        else:
            continue
        weights.update((id(p), p.numel()) for p in own if p is not None)
    return sum(weights.values())


def _materialize_lazy(module, shape: tuple[int, ...]) -> None:  # type: ignore[no-untyped-def]
    """A lazy layer (global depthwise's kernel is the feature map) gets its parameters from one forward on zeros of
    the ``--input`` shape, so that its weights can be counted like any other's."""
    import torch
    from torch.nn.parameter import UninitializedTensorMixin

    if any(isinstance(t, UninitializedTensorMixin) for t in [*module.parameters(), *module.buffers()]):
        with torch.no_grad():
            module.eval()(torch.zeros(shape))


_UNBATCHED = {2: "C, L", 3: "C, H, W", 4: "C, D, H, W"}  # an input's dims without the batch, by its rank


@contextmanager
def unbatched_input(text: str | None, shape: tuple[int, ...], default: tuple[int, ...] | None) -> Iterator[None]:
    """An ``--input`` one number short of the target's batched rank (``default``'s) is ONE unbatched input, which
    torch's convs run as a batch of one: a failure on it says so, so that a shape the user never typed
    ((1, 1, 64, 56) for --input 1,64,56) is explained rather than quoted bare."""
    try:
        yield
    except (ValueError, RuntimeError) as error:
        if text is None or default is None or len(shape) != len(default) - 1 or len(shape) not in _UNBATCHED:
            raise
        layout = _UNBATCHED[len(shape)]
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"--input {text} has {len(shape)} numbers for a target of {len(default)}-D inputs, so it is "
                         f"read as one unbatched ({layout}) input {shape}, which torch's convs run as the batch "
                         f"{(1, *shape)}; give N, {layout} for a batched input. {reason}") from None


# The target and layer options cost and rf share (one typer declaration each, reused as both defaults). The layer
# options default to None (not given) so that a target they do not shape can refuse them (layer_options).
TARGET = typer.Argument(..., help=TARGET_FORMS)
INPUT = typer.Option(None, "--input", help="input shape, e.g. 1,3,224,224")
IN_CHANNELS = typer.Option(None, "--in", help="family: input channels (default 64)")
OUT_CHANNELS = typer.Option(None, "--out", help="family: output channels (default 128, or --in for a family that "
                                                "keeps the width)")
KERNEL = typer.Option(None, "--kernel", help="family: kernel size (default 3; not for a family without a window)")
DIM = typer.Option(None, "--dim", help="family: spatial dims (default 2)")
FAMILY_IN, FAMILY_KERNEL, FAMILY_DIM = 64, 3, 2  # a family's --in / --kernel / --dim when not given


def layer_options(target: str, in_channels: int | None, out_channels: int | None, kernel: int | None,
                  dim: int | None) -> tuple[int, int | None, int, int]:
    """--in, --out, --kernel, --dim (None: not given) → the values ``resolve_target`` builds a family with. They
    shape a family's layer only: given for a model or a ``module.path:callable`` target, or --kernel for a family
    without a window (pointwise, global depthwise: its layer sets its own kernel), they are a ValueError naming
    the option, the value and the rule, where they were dropped without a word."""
    from ..models import MODELS
    from ..registry import family

    given = [f"{flag} {value}" for flag, value in (("--in", in_channels), ("--out", out_channels),
                                                   ("--kernel", kernel), ("--dim", dim)) if value is not None]
    try:
        fam = family(target)
    except ValueError:  # a model, a callable, or a name resolve_target refuses in its own words
        fam = None
    if fam is None and given and (target in MODELS or ":" in target):
        raise ValueError(f"{', '.join(given)} given for {target!r}: --in, --out, --kernel and --dim shape a family's "
                         "layer, and a model sets its own layers; leave them out (a model's arguments go in --arg "
                         "name=value, its input shape in --input)")
    if fam is not None and kernel is not None and not fam.window:
        raise ValueError(f"family {target!r} takes no 'kernel' argument (--kernel {kernel} given): it has no window "
                         "to choose, its layer sets its own kernel size; leave --kernel out")
    return (FAMILY_IN if in_channels is None else in_channels, out_channels,
            FAMILY_KERNEL if kernel is None else kernel, FAMILY_DIM if dim is None else dim)


@app.command("cost")
def cost_command(
    target: str = TARGET,
    input: Optional[str] = INPUT,
    in_channels: Optional[int] = IN_CHANNELS,
    out_channels: Optional[int] = OUT_CHANNELS,
    kernel: Optional[int] = KERNEL,
    dim: Optional[int] = DIM,
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    arg: Optional[list[str]] = typer.Option(None, "--arg", help="name=value for the layer or model, e.g. width_mult=0.5"),
    depth: Optional[str] = typer.Option(None, "--depth", metavar="N",
                                        help="subtotals per module to N name levels (0: the model alone), as "
                                             "fvcore's max_depth; with --json also as 'groups'"),
    by_type: bool = typer.Option(False, "--by-type", help="subtotals per operator type (Conv2d, BatchNorm2d, add, "
                                                          "...), most MACs first, as fvcore's by_operator; with "
                                                          "--json also as 'by_type'"),
    dtype: str = typer.Option("float32", "--dtype", help=f"element type of the bytes column: {', '.join(COST_DTYPES)}"),
) -> None:
    """Params, weight MACs (FLOPs = 2 × MACs), activation MACs (attention), other ops and bytes per layer (or per
    module with --depth, per operator type with --by-type), computed on the meta device."""
    import json

    from ..arithmetic.cost import cost, millions

    try:
        if by_type and depth is not None:
            raise ValueError(f"--by-type and --depth {depth} are two groupings of the same rows: give one")
        levels = None if depth is None else parse_depth(depth)  # both checked before any model is built
        element = parse_dtype(dtype)
        module, default = resolve_target(target, *layer_options(target, in_channels, out_channels, kernel, dim),
                                         parse_args(arg))
        shape = parse_shape(input) if input else default
        if shape is None:
            raise ValueError(f"{target!r} has no default input shape: give --input N,C,H,W")
        with unbatched_input(input, shape, default), model_input_errors(target, shape, given=bool(input)):
            report = cost(module, shape, dtype=element)
            _materialize_lazy(module, shape)
    except (ValueError, TypeError, RuntimeError) as error:
        typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    weights = weight_params(module)
    if as_json:
        groups = {} if levels is None else {"depth": levels, "groups": [g.to_dict() for g in report.by_depth(levels)]}
        if by_type:
            groups["by_type"] = [g.to_dict() for g in report.by_type()]
        typer.echo(json.dumps({**report.to_dict(), "weight_params": weights, **groups}))
    else:
        console.print(report.type_table() if by_type else
                      report.table() if levels is None else report.depth_table(levels))
        if report.activation_macs:
            console.print(f"activation × activation MACs (attention QKᵀ, AV), not in the MACs: "
                          f"{millions(report.activation_macs)} M")
        console.print(f"input {shape}: {millions(report.macs)} M MACs (FLOPs = 2 × MACs = {millions(report.flops)} M); "
                      f"params {report.params:,} (all parameters, incl. norm and bias); conv and linear weights "
                      f"alone {weights:,} ({millions(weights)} M)")


def _join(values) -> str:  # type: ignore[no-untyped-def]
    """Per-dim values as the Python API gives them, without the tuple's brackets: ``(435, 435)`` → ``435, 435``."""
    return ", ".join(str(v) for v in values)


@app.command("rf")
@app.command("receptive-field", hidden=True)  # the long name, typed in full, is the same command
def rf_command(
    target: str = TARGET,
    input: Optional[str] = INPUT,
    in_channels: Optional[int] = IN_CHANNELS,
    out_channels: Optional[int] = OUT_CHANNELS,
    kernel: Optional[int] = KERNEL,
    dim: Optional[int] = DIM,
    as_json: bool = typer.Option(False, "--json", help="print the rows as JSON"),
    arg: Optional[list[str]] = typer.Option(None, "--arg",
                                            help="name=value for the layer or model, e.g. width_mult=0.5"),
) -> None:
    """Receptive field per layer (Araujo et al. 2019), per spatial dim: size r = r_in + (k_eff − 1)·j_in in input
    pixels, jump j = j_in·s between adjacent outputs, start = centre of position 0's field; 'global' where the output
    also reads the whole input (global pooling, SE gates, attention)."""
    import json
    from dataclasses import asdict

    from torch import nn

    from ..analysis import receptive_field

    try:
        module, default = resolve_target(target, *layer_options(target, in_channels, out_channels, kernel, dim),
                                         parse_args(arg))
        if not isinstance(module, nn.Module):
            raise TypeError(f"{target} gave a {type(module).__name__}, not a torch.nn.Module")
        shape = parse_shape(input) if input else default
        if shape is None:
            raise ValueError(f"{target!r} has no default input shape: give --input N,C,H,W")
        with unbatched_input(input, shape, default), model_input_errors(target, shape, given=bool(input)):
            field = receptive_field(module, shape)
    except (ValueError, TypeError, RuntimeError) as error:
        typer.echo(f"error: {str(error).splitlines()[0]}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"input_shape": list(shape), "layers": [r.to_dict() for r in field.layers],
                               "output": field.output.to_dict(), "notes": field.notes,
                               "misaligned": [asdict(m) for m in field.misaligned]}))
        return
    from rich.table import Table

    noted = bool(field.notes)
    table = Table(title=f"convzoo rf — input {tuple(shape)}; size and jump in input pixels per spatial dim, start = "
                        "centre of output position 0's field; global: the output also reads the whole input")
    for column in ("layer", "type", "size", "jump", "start", "global", *(("note",) if noted else ())):
        table.add_column(column, justify="right" if column in ("size", "jump", "start") else "left")
    for row in field.layers:
        table.add_row(row.name, row.type, _join(row.size), _join(row.stride), _join(row.start),
                      "yes" if row.global_path else "", *((row.note,) if noted else ()))
    out = field.output
    table.add_row("output", "", _join(out.size), _join(out.stride), _join(out.start), "yes" if out.global_path else "",
                  *((out.note,) if noted else ()), style="bold")
    console.print(table)
    for merge in field.misaligned:
        console.print(f"misaligned merge {merge.name} ({merge.type}): its inputs' jumps {merge.strides}, starts "
                      f"{merge.starts}")
    if noted:
        console.print("bounds, not exact: " + "; ".join(field.notes))
