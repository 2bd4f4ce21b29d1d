"""convzoo's layers inside real networks: torchvision's depthwise models with their depthwise convs swapped for
convzoo's, against the models as torchvision builds them, eager, on the CPU.

    python benchmarks/bench_models.py [--quick] [--threads 2] [--seconds 2] [--out benchmarks/results]
                                      [--models mobilenet_v2,...] [--formats NCHW,channels_last] [--modes inference]
                                      [--placements 3] [--keep-freed-memory] [--no-trials]

What a practitioner does: ``convzoo.convert(model, "depthwise")`` replaces exactly the convs that already are
depthwise (an exact swap: same weights, same function) by ``DepthwiseConv2d``, which measures its exact forms
(torch's conv, convzoo's numba kernels, memory-format round trips) on this machine and runs the fastest; for
inference a form measured faster than torch's conv on the layer alone is confirmed in the network's own calls
first (``layers/context_trial.py``; the trials run to their decisions before any timing). Every other layer is
torch's. For each model, batch, memory format and mode the two networks are timed round-robin in the same rounds
(order alternating, fastest round of each, ms; ``--placements`` sets of rounds, each on fresh copies of every
network, since where a copy's parameters land in memory can slow it by several per cent for a whole run), with a third
network: the swapped one with its depthwise layers pinned to torch's conv (``implementation='native'``), which
separates what the layers' choices do inside the network from what their call path costs; for inference a fourth,
pinned to the forms measured on each layer alone (what the trials change). Inference runs under ``torch.no_grad()``
in eval mode, training as one forward in train mode (batch norms on batch statistics) and the gradients of every
parameter (``torch.autograd.grad`` of a fixed random output gradient, nothing accumulated). Before timing, the
networks' outputs (and training gradients) are checked equal. Prints the machine and markdown tables and writes the
run in the results format to ``OUT/models-<cpu>.json`` (the reading beside it, ``models-<cpu>.md``, is written by
hand). ``--quick``: one small model at 64², nothing written (a smoke run); ``--models`` / ``--formats`` /
``--modes`` / ``--no-trials`` run a part, nothing written. ``--keep-freed-memory`` starts the script again with
glibc's thresholds raised, so that the fresh-page faults of glibc's defaults (docs: Speed) do not fall on whichever
network allocates next: on the 2-core VM of the results the same network's fastest round moved by up to 16 % between
runs without it.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import warnings
from collections.abc import Callable

import torch
import torchvision
from torch import nn

import convzoo as cz
from convzoo.layers import context_trial
from convzoo.layers.form_choice import context_trials
from convzoo.perf.results import Table, write_machine_results
from convzoo.perf.runtime_compare import interleaved_rounds, machine_header

COLUMNS = ["model", "batch", "format", "depthwise convs", ("torch ms", ".3f"), ("convzoo ms", ".3f"),
           ("convzoo / torch", ".2f"), ("convzoo, torch's form ms", ".3f"), ("torch's form / torch", ".2f"),
           "forms chosen"]
# glibc's thresholds (bytes) that keep freed memory in the process (``--keep-freed-memory``)
KEEP_FREED_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(2**32), "MALLOC_TRIM_THRESHOLD_": str(2**32)}
# inference also times the forms measured on each layer alone, without the trials in the network's calls
INFERENCE_COLUMNS = COLUMNS[:9] + [("convzoo, forms measured alone ms", ".3f"), ("forms measured alone / torch", ".2f"),
                                   "forms chosen", "forms measured alone"]
# (torchvision builder, image size, inference batches, training batches)
MODELS: list[tuple[str, int, tuple[int, ...], tuple[int, ...]]] = [
    ("mobilenet_v2", 224, (1, 8), (8,)),
    ("mobilenet_v3_large", 224, (1, 8), (8,)),
    ("efficientnet_b0", 224, (1, 8), (8,)),
    ("convnext_tiny", 224, (1,), ()),
]
QUICK_MODELS: list[tuple[str, int, tuple[int, ...], tuple[int, ...]]] = [("mobilenet_v2", 64, (2,), (2,))]
FORMATS = (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last))


def swapped(model: nn.Module) -> tuple[nn.Module, int]:
    """``convert(model, "depthwise")`` and the number of convs it swapped; ValueError unless every swap is exact."""
    new, report = cz.convert(model, "depthwise")
    swaps = report.converted
    worst = max((row.rel_error or 0.0 for row in swaps), default=0.0)
    if not swaps or worst > 1e-6:
        raise ValueError(f"convert(.., 'depthwise') swapped {len(swaps)} convs with relative error up to {worst:.3g}: "
                         "the benchmark compares the same function")
    return new, len(swaps)


def torch_form_only(model: nn.Module) -> nn.Module:
    """A copy of the swapped model whose depthwise layers are pinned to torch's conv (``implementation='native'``):
    the same network with convzoo's call path but none of its choices, to tell the two apart."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if isinstance(module, cz.DepthwiseConv2d):
            module.implementation = "native"
    return twin


def depthwise_inputs(model: nn.Module, x: torch.Tensor) -> dict[nn.Module, torch.Tensor]:
    """Each depthwise layer of ``model`` → its input when the model runs on ``x`` (one call under no_grad)."""
    seen: dict[nn.Module, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.setdefault(m, args[0]))
             for m in model.modules() if isinstance(m, cz.DepthwiseConv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def forms_measured_alone(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of the swapped model whose depthwise layers are pinned to the forms measured on each layer alone for
    inference on ``x`` (``context_trials(False)``: no trial in the network's calls), to time in the same rounds what
    the trials change. Leaves ``model`` to plan its next calls again (with trials)."""
    with context_trials(False):
        seen = depthwise_inputs(model, x)
        with torch.no_grad():
            picks = {name: m.measured_path(seen[m]) for name, m in model.named_modules() if m in seen}
    for m in seen:
        m.forget_plans()  # planned without trials: plan again
    twin = copy.deepcopy(model)
    for name, pick in picks.items():
        twin.get_submodule(name).implementation = pick
    return twin


def forms_chosen(model: nn.Module, x: torch.Tensor, backward: bool) -> str:
    """How many depthwise layers run each form for input ``x``, with their backward or not (the forms they
    measured during the runs, read back)."""
    counts: dict[str, int] = {}
    for module, seen in depthwise_inputs(model, x).items():
        with torch.set_grad_enabled(backward):
            form = module.measured_path(seen)
        counts[form] = counts.get(form, 0) + 1
    return ", ".join(f"{form} ×{n}" for form, n in sorted(counts.items()))


Setup = Callable[[nn.Module, nn.Module, nn.Module, torch.Tensor],
                 tuple[list[nn.Module], Callable[[nn.Module], Callable[[torch.Tensor], object]]]]


def inference(plain: nn.Module, ours: nn.Module, pinned: nn.Module,
              x: torch.Tensor) -> tuple[list[nn.Module], Callable[[nn.Module], Callable[[torch.Tensor], object]]]:
    """The networks timed for inference (eval mode; with the one pinned to the forms measured alone), their outputs
    checked equal (also in each of the calls that run convzoo's trials in context to their decisions, before any
    timing), and f(network) → the timed call."""
    plain.eval(), ours.eval(), pinned.eval()
    alone = forms_measured_alone(ours, x)
    with torch.no_grad():
        expected = plain(x)
        for got in (ours(x), pinned(x), alone(x)):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
        for _ in range(context_trial.WARMUP_CALLS + 2 * context_trial.PAIRS):  # the trials decide: timed after
            torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))

    def run(model: nn.Module) -> Callable[[torch.Tensor], object]:
        def call(t: torch.Tensor) -> object:
            with torch.no_grad():
                return model(t)
        return call

    return [plain, ours, pinned, alone], run


def training(plain: nn.Module, ours: nn.Module, pinned: nn.Module,
             x: torch.Tensor) -> tuple[list[nn.Module], Callable[[nn.Module], Callable[[torch.Tensor], object]]]:
    """The networks timed for training steps (train mode), their gradients checked equal, and f(network) → the
    timed step."""
    plain.train(), ours.train(), pinned.train()
    grad = torch.randn_like(plain(x))

    def step(model: nn.Module) -> Callable[[torch.Tensor], object]:
        params = list(model.parameters())
        return lambda t: torch.autograd.grad(model(t), params, grad.to(t.dtype))

    # the same gradients, checked in float64 copies: batch statistics of small late maps make float32 gradients
    # differ by orders of magnitude between any two summation orders
    twins = copy.deepcopy(plain).double(), copy.deepcopy(ours).double()
    expected, got = (torch.manual_seed(0) and step(twin)(x.double()) for twin in twins)  # the same dropout masks
    scale = max(float(e.abs().max()) for e in expected)  # gradients that are 0 in exact arithmetic (a conv bias
    for g, e in zip(got, expected):                      # before a batch norm) are rounding on both sides
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-9 * scale)
    return [plain, ours, pinned], step


def fastest_over_placements(networks: list[nn.Module], call: Callable[[nn.Module], Callable[[torch.Tensor], object]],
                            x: torch.Tensor, seconds: float, placements: int) -> list[float]:
    """Each network's fastest round (ms) over ``placements`` sets of interleaved rounds, each set on fresh copies of
    every network: where a network's parameters land in memory can make one copy of the same network several per
    cent slower than another for the whole run (ConvNeXt-T with the same ops in two copies: 1.07 and 1.01 of
    torchvision's), and fresh copies give each network the same chances."""
    best = [float("inf")] * len(networks)
    for placement in range(placements):
        copies = networks if placement == 0 else [copy.deepcopy(n) for n in networks]
        rounds = interleaved_rounds([call(n) for n in copies], [x], min_time=seconds / placements,
                                    max_time=4 * seconds / placements)
        best = [min(b, min(t)) for b, t in zip(best, rounds)]
        del copies
    return best


def run_cases(models: list[tuple[str, int, tuple[int, ...], tuple[int, ...]]], modes: list[str],
              formats: list[tuple[str, torch.memory_format]], seconds: float,
              placements: int = 1) -> dict[str, list[list[object]]]:
    """Time every (model, mode, batch, format) case: each mode's table rows."""
    tables: dict[str, list[list[object]]] = {"inference": [], "training": []}
    for name, size, inference_batches, training_batches in models:
        torch.manual_seed(0)
        plain = getattr(torchvision.models, name)(weights=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, count = swapped(plain)
        setups: tuple[tuple[str, tuple[int, ...], Setup], ...] = (("inference", inference_batches, inference),
                                                                  ("training", training_batches, training))
        for mode, batches, setup in setups:
            for batch in batches if mode in modes else ():
                for fmt_name, fmt in formats:
                    net_plain, net_ours = plain.to(memory_format=fmt), ours.to(memory_format=fmt)
                    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
                    networks, call = setup(net_plain, net_ours, torch_form_only(net_ours), x)
                    times = fastest_over_placements(networks, call, x, seconds, placements)
                    row = [name, batch, fmt_name, count, times[0], times[1], times[1] / times[0], times[2],
                           times[2] / times[0], forms_chosen(net_ours, x, backward=mode == "training")]
                    if mode == "inference":  # the forms measured alone, without trials (training has none)
                        row[9:9] = [times[3], times[3] / times[0]]
                        row.append(forms_chosen(networks[3], x, backward=False))
                    tables[mode].append(row)
                    print(mode, " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row), flush=True)
    return tables


def main(argv: list[str] | None = None) -> list[list[object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small model, nothing written")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per case (at least 5 rounds)")
    parser.add_argument("--placements", type=int, default=3,
                        help="sets of rounds per case, each on fresh copies of the networks (fastest over all)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--models", help="comma-separated subset of " + ", ".join(m[0] for m in MODELS)
                        + " (nothing written)")
    parser.add_argument("--formats", help="comma-separated subset of NCHW, channels_last (nothing written)")
    parser.add_argument("--modes", help="comma-separated subset of inference, training (nothing written)")
    parser.add_argument("--keep-freed-memory", action="store_true",
                        help=f"run with glibc's {' and '.join(KEEP_FREED_MEMORY)} raised, so freed memory stays in the "
                        "process: no fresh-page faults falling on whichever network allocates next (docs: Speed)")
    parser.add_argument("--no-trials", action="store_true", help="keep the forms measured on each layer alone, "
                        "without confirming them in the network's calls (form_choice.context_trials; nothing written)")
    args = parser.parse_args(argv)
    if args.keep_freed_memory and not memory_kept():
        parser.error("--keep-freed-memory: glibc reads " + " and ".join(KEEP_FREED_MEMORY) + " when the process "
                     "starts; run this file as a script (it starts itself again with them set) or set them first")
    subset = bool(args.models or args.formats or args.modes or args.no_trials)
    models = [m for m in (QUICK_MODELS if args.quick else MODELS) if not args.models or m[0] in args.models.split(",")]
    formats = [f for f in FORMATS if not args.formats or f[0] in args.formats.split(",")]
    modes = args.modes.split(",") if args.modes else ["inference", "training"]
    torch.set_num_threads(args.threads)
    allocator = (", ".join(f"{k}={v}" for k, v in KEEP_FREED_MEMORY.items()) + " (freed memory kept in the process)"
                 if args.keep_freed_memory else "glibc's defaults (freed memory given back: fresh-page faults)")
    print(machine_header(args.threads) + f"\nallocator: {allocator}")
    with context_trials(not args.no_trials):
        tables = run_cases(models, modes, formats, args.seconds, args.placements)
    result = [Table("Inference (eval mode, `torch.no_grad()`): torchvision's model against the same model with its "
                    "depthwise convs swapped for convzoo's, ms (fastest round, all timed in the same rounds)",
                    INFERENCE_COLUMNS, tables["inference"],
                    "forms chosen: the forms convzoo's depthwise layers kept on this machine for their inputs in "
                    "this run (measured on each layer alone, then confirmed in the network's own calls) and ran; "
                    "forms measured alone: the forms before the trials, which the fourth network runs."),
              Table("Training step (train mode, forward and the gradients of every parameter), ms (fastest round, "
                    "both timed in the same rounds)", COLUMNS, tables["training"],
                    "forms chosen: the forms the layers measured fastest with their backward.")]
    if not args.quick and not subset:
        path = write_machine_results(args.out, "models", "convzoo's depthwise layers in torchvision's networks", result,
                                     description=__doc__.split("\n\n", 2)[2] + f"\nAllocator: {allocator}.")
        print(f"wrote {path}")
    return tables["inference"] + tables["training"]


def memory_kept() -> bool:
    """Whether this process started with ``KEEP_FREED_MEMORY``'s settings."""
    return all(os.environ.get(k) == v for k, v in KEEP_FREED_MEMORY.items())


if __name__ == "__main__":
    if "--keep-freed-memory" in sys.argv[1:] and not memory_kept():  # glibc reads them once, at start
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **KEEP_FREED_MEMORY})
    main()
