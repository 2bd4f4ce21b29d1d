"""Inference and training under torch.compile on the CPU: convzoo's depthwise layers against torch's conv, eager and
compiled.

    python benchmarks/bench_compiled.py [--quick] [--threads 2] [--out benchmarks/results]

Under ``torch.compile`` a convzoo depthwise layer with multiplier m > 1, and in training any depthwise layer, is one
opaque op (``convzoo::measured_form``) that runs the form the layer measures in eager mode, with a second op for its
backward that runs the eager training step (``layers/compiled_choice.py``); in inference with m = 1 it traces
torch's conv. Torch's ``nn.Conv2d`` with groups = C_in is what a user would compile instead. For each case
(depthwise 3×3, m = 1 and 2, b8 × 64 × 56², NCHW and channels_last; MobileNet v1 1.0-224 at batch 1, built from
convzoo's layers, against the same network with every convzoo conv as the ``nn.Conv2d`` it equals) four callables
are timed round-robin in the same rounds (order rotated each round, fastest round of each, ms): torch eager, torch
compiled, convzoo eager, convzoo compiled; inference under ``torch.no_grad()``, training as one forward and the
gradients of the input and every parameter for a fixed output gradient (``torch.autograd.grad``, nothing
accumulated; MobileNet's batch norms keep their statistics, as in fine-tuning). Then every family that is one op
under ``torch.compile`` on the CPU (``compiles_as_op``: ``layers/compiled_layer.py``), its 64 → 64 3×3 layer at
b8 × 64 × 56²: eager, compiled with its native form traced, and compiled as one op, in the same rounds, inference
and a training step. Prints the machine and markdown tables and writes the run in the results format to
``OUT/compiled-<cpu>.json`` (the reading beside it, ``compiled-<cpu>.md``, is written by hand). ``--quick``: small
shapes, MobileNet left out, one whole-layer family, nothing written (a smoke run).
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from collections.abc import Callable

import torch
from torch import nn

import convzoo as cz
from convzoo.perf.compare import compile_limits
from convzoo.perf.results import Table, write_machine_results
from convzoo.perf.runtime_compare import interleaved_rounds, machine_header
from convzoo.perf.timing import torch_threads

COLUMNS = ["case", "format", "convzoo eager form", ("torch eager ms", ".3f"), ("torch compiled ms", ".3f"),
           ("convzoo eager ms", ".3f"), ("convzoo compiled ms", ".3f"), ("compiled: convzoo / torch", ".2f"),
           ("convzoo: compiled / eager", ".2f")]


def as_torch_convs(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every convzoo conv (a torch conv subclass) replaced by the plain ``nn.Conv*d``
    with the same arguments and weights: what the network would be without convzoo."""
    def plain(conv: cz.ConvNd) -> nn.Module:
        plain_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[conv.dim]
        twin = plain_type(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                          conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
        twin.load_state_dict(conv.state_dict())
        return twin

    if isinstance(model, cz.ConvNd):
        return plain(model)
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, cz.ConvNd):
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent), attribute, plain(module))
    return model


def cases(quick: bool) -> list[tuple[str, str, nn.Module, torch.Tensor]]:
    n, c, size = (2, 8, 12) if quick else (8, 64, 56)
    out = []
    for m in (1, 2):
        for fmt_name, fmt in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
            layer = cz.DepthwiseConv2d(c, c * m, 3, padding=1)
            out.append((f"depthwise 3×3 m={m} b{n}×{c}×{size}²", fmt_name, layer,
                        torch.randn(n, c, size, size).contiguous(memory_format=fmt)))
    if not quick:
        out.append(("MobileNet v1 1.0-224 b1", "NCHW", cz.models.mobilenet_v1(1.0, 224), torch.randn(1, 3, 224, 224)))
    return out


def measure(name: str, fmt: str, model: nn.Module, x: torch.Tensor, seconds: float = 2.0) -> list[object]:
    model = model.eval()
    plain = as_torch_convs(model).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), model(x), rtol=1e-4, atol=1e-4)
        compiled_plain, compiled = torch.compile(plain), torch.compile(model)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
        fns: list[Callable[[torch.Tensor], object]] = [plain, compiled_plain, model, compiled]
        times = [min(t) for t in interleaved_rounds(fns, [x], min_time=seconds, max_time=4 * seconds)]
        form = model.measured_path(x) if isinstance(model, cz.ConvNd) else "per layer"
    torch_eager, torch_compiled, own_eager, own_compiled = times
    return [name, fmt, form, torch_eager, torch_compiled, own_eager, own_compiled, own_compiled / torch_compiled,
            own_compiled / own_eager]


def measure_training(name: str, fmt: str, model: nn.Module, x: torch.Tensor, seconds: float = 2.0) -> list[object]:
    """As ``measure``, for one training step: forward, then the gradients of x and every parameter. Batch norms
    keep their statistics (eval mode, as in fine-tuning): batch statistics of one image make the gradients too
    ill-conditioned to compare two float32 computations (eager against eager differed by 3 %)."""
    model, x = model.eval(), x.detach().requires_grad_(True)
    plain = as_torch_convs(model).eval()
    grad = torch.randn_like(plain(x))

    def step(module: nn.Module) -> Callable[[torch.Tensor], object]:
        wrt = [x, *module.parameters()]
        return lambda t: torch.autograd.grad(module(t), wrt, grad)

    compiled_plain, compiled = torch.compile(plain), torch.compile(model)
    expected = step(plain)(x)
    for got in (step(compiled)(x), step(model)(x)):  # the compiled and eager steps give torch's gradients (sums
        for g, e in zip(got, expected):              # of b·H·W float32 products: tolerance from their size)
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5 * float(e.abs().max()))
    fns = [step(plain), step(compiled_plain), step(model), step(compiled)]
    times = [min(t) for t in interleaved_rounds(fns, [x], min_time=seconds, max_time=4 * seconds)]
    torch_eager, torch_compiled, own_eager, own_compiled = times
    form = model.measured_path(x) if isinstance(model, cz.ConvNd) else "per layer"
    return [name, fmt, form, torch_eager, torch_compiled, own_eager, own_compiled, own_compiled / torch_compiled,
            own_compiled / own_eager]


LAYER_COLUMNS = ["family", "pass", ("eager ms", ".3f"), ("compiled, native form traced ms", ".3f"),
                 ("compiled, one op ms", ".3f"), ("one op / eager", ".2f"), ("traced / one op", ".2f")]


def op_families(quick: bool) -> list[str]:
    """The families whose layers are one op under torch.compile on the CPU (``compiles_as_op``, read through the
    contract); the first only with ``quick``."""
    names = [fam.name for fam in cz.families() if 2 in fam.dims and fam.compiles_as_op]
    return names[:1] if quick else names


def measure_layer(name: str, quick: bool, seconds: float) -> list[list[object]]:
    """One family's layer (C → C, 3×3): eager, compiled with its native form traced (``compiles_as_op = False``),
    and compiled as one op, timed in the same rounds; inference, then one training step (the gradients of the input
    and every parameter). Both compiled layers are checked against the eager one first."""
    n, c, size = (2, 8, 12) if quick else (8, 64, 56)
    torch.manual_seed(0)
    layer = cz.build(name, c, c)
    traced = copy.deepcopy(layer)
    traced.compiles_as_op = False
    x = torch.randn(n, c, size, size)
    with torch.no_grad():
        expected = layer(x)
        native, op = torch.compile(traced), torch.compile(layer)
        for f in (native, op):
            torch.testing.assert_close(f(x), expected, rtol=1e-4, atol=1e-4)
        times = [min(t) for t in interleaved_rounds([layer, native, op], [x], min_time=seconds, max_time=4 * seconds)]
    rows: list[list[object]] = [[name, "inference", *times, times[2] / times[0], times[1] / times[2]]]
    xg, grad = x.detach().requires_grad_(True), torch.randn_like(expected)

    def step(module: Callable[[torch.Tensor], torch.Tensor], owner: nn.Module) -> Callable[[torch.Tensor], object]:
        wrt = [xg, *owner.parameters()]
        return lambda t: torch.autograd.grad(module(t), wrt, grad)

    steps = [step(layer, layer), step(native, traced), step(op, layer)]
    reference = steps[0](xg)
    for got in (steps[1](xg), steps[2](xg)):
        for g, e in zip(got, reference):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))
    times = [min(t) for t in interleaved_rounds(steps, [xg], min_time=seconds, max_time=4 * seconds)]
    rows.append([name, "training step", *times, times[2] / times[0], times[1] / times[2]])
    return rows


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, no MobileNet, nothing written")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(machine_header(args.threads))
    rows, training = [], []
    seconds = 0.1 if args.quick else 2.0
    # the thread count for the run only; no silent fall back to eager past dynamo's 8 graphs per function
    with torch_threads(args.threads), warnings.catch_warnings(), compile_limits({}):
        warnings.simplefilter("ignore")
        for name, fmt, model, x in cases(args.quick):
            rows.append(measure(name, fmt, model, x, seconds))
            print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in rows[-1]), flush=True)
        for name, fmt, model, x in cases(args.quick):
            training.append(measure_training(name, fmt, model, x, seconds))
            print("training", " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in training[-1]),
                  flush=True)
        layers = []
        for name in op_families(args.quick):
            layers += measure_layer(name, args.quick, seconds)
            for row in layers[-2:]:
                print(" | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row), flush=True)
    tables = [Table("Inference under torch.compile: torch's conv against convzoo's layer, eager and compiled, ms "
                    "(fastest round, all four timed in the same rounds)", COLUMNS, rows,
                    "convzoo eager form: what the layer measured fastest on this machine and runs, eager and "
                    "compiled; torch: the same network with plain nn.Conv2d layers."),
              Table("Training step (forward and the gradients of input, weight and bias) under torch.compile, ms "
                    "(fastest round, all four timed in the same rounds)", COLUMNS, training,
                    "convzoo eager form: the form the layer measured fastest with its backward on this machine; "
                    "compiled, m > 1 runs it (and one more forward) in the backward op."),
              Table("Whole layers under torch.compile: the families that are one op there (compiles_as_op), "
                    "b8 × 64 × 56², 64 → 64, 3×3, NCHW, ms (fastest round, all three timed in the same rounds)",
                    LAYER_COLUMNS, layers,
                    "eager: the layer as is (its measured form); compiled, native form traced: a copy with "
                    "compiles_as_op = False, whose forward torch.compile traces (the fixed native form); compiled, "
                    "one op: convzoo::eager_layer running the eager forward (training: its backward op runs the "
                    "eager step plus one forward). Both compiled layers' outputs and gradients are checked against "
                    "the eager layer's first.")]
    if not args.quick:
        path = write_machine_results(args.out, "compiled", "Inference and training under torch.compile", tables,
                                     description=__doc__.split("\n\n", 2)[2])
        print(f"wrote {path}")
    return rows + training + layers


if __name__ == "__main__":
    main()
