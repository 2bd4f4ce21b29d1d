"""convzoo's own CPU kernels against the memory bound and against PyTorch's best native form, per family and format.

For every case and memory format, in the same interleaved rounds (fastest round kept; ``--rounds``, up to 5× as many
while a case has run under 3 s: the fastest of few rounds of a 0.1 ms call is mostly noise), it times:
- the kernel's forward, and forward + backward (∂ wrt input and every parameter);
- every native form (PyTorch ops only: the plain conv, and the rearrangements of ``layers/fastpaths.py``), and
  reports the best one's forward and forward + backward; each also as a model runs it, the layer's fair baseline:
  the plain conv as torch's own ``nn.Conv2d`` (same values), the others called from a minimal ``nn.Module``;
- the copy bound: a copy of (input + output) / 2 elements into a preallocated tensor — the bytes the op must move,
  input read once and output written once (preallocated: a fresh ``clone()`` pays page faults in some rounds and not
  in others, which made the bound itself bimodal; the ops allocate their outputs, so the ratios are conservative).
Ratios are kernel / bound, kernel / best native, and the layer's against the bound, the best native form (fastest
rounds) and the best native form in a module: there the median over rounds of the two calls' ratio in the same
round, since a ratio near 1.05 is the question and the fastest rounds of two calls come from different moments,
measured after the shared rounds in rounds of the layer and that module alone (``head_to_head``).
Results go to ``benchmarks/results/kernels-<cpu>.json`` (the results format of ``convzoo.perf.results``, tagged
with the CPU model and torch's CPU capability; its header names the machine: CPU model and SIMD flags, torch's CPU
capability, threads), rendered by the docs site.

Another family adds rows by appending a ``Case`` to ``CASES`` (a builder returning the input, the parameters, the
kernel form and the native forms for one memory format).

    python benchmarks/bench_kernels.py                 # 2 threads, every case
    python benchmarks/bench_kernels.py --threads 1 --cases depthwise --rounds 30
    python benchmarks/bench_kernels.py --quick         # tiny shapes, one round: checks the script runs
    python benchmarks/bench_kernels.py --runs 3        # every case three times, and each ratio's range
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo.layers.form_choice import forget_choices
from convzoo.perf.results import Table, machine_info, machine_tag, write_results
from convzoo.perf.results_page import table_markdown

Form = Callable[[torch.Tensor], torch.Tensor]
FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


@dataclass
class Setup:
    """One case in one memory format: the input, the parameters a backward differentiates, the kernel form and the
    native forms (name → f(x)), all computing the same function; and the convzoo layer computing it (with its own
    parameters, the same values), which runs whichever form ``FormChoice`` measured fastest here."""

    x: torch.Tensor
    params: list[torch.Tensor]
    kernel: Form
    native: dict[str, Form]
    layer: tuple[torch.nn.Module, list[torch.Tensor]] | None = None
    torch_module: tuple[torch.nn.Module, list[torch.Tensor]] | None = None  # torch's own module for "F.conv2d"


@dataclass
class Case:
    family: str
    label: str
    build: Callable[[torch.memory_format, bool], Setup]  # (format, quick) → setup


@dataclass
class Row:
    family: str
    label: str
    format: str
    times: dict[str, float] = field(default_factory=dict)  # ms, fastest round
    native_forms: dict[str, str] = field(default_factory=dict)  # fwd / fwd_bwd → the fastest native form's name
    paired: dict[str, float] = field(default_factory=dict)  # ratios of two calls timed in the same round: median

    def as_dict(self) -> dict[str, object]:
        t = self.times
        row = {"family": self.family, "case": self.label, "format": self.format, **{k: round(v, 4) for k, v in t.items()},
               "native_fwd_form": self.native_forms["fwd"], "native_fwd_bwd_form": self.native_forms["fwd_bwd"],
               "fwd_vs_bound": round(t["kernel_fwd"] / t["bound"], 2),
               "fwd_bwd_vs_bound": round(t["kernel_fwd_bwd"] / t["bound"], 2),
               "fwd_vs_native": round(t["kernel_fwd"] / t["native_fwd"], 2),
               "fwd_bwd_vs_native": round(t["kernel_fwd_bwd"] / t["native_fwd_bwd"], 2)}
        if "native_module_fwd" in t:
            row.update({"native_module_fwd_form": self.native_forms["module_fwd"],
                        "native_module_fwd_bwd_form": self.native_forms["module_fwd_bwd"]})
        if "layer_fwd" in t:  # what a user of the layer gets: the form FormChoice picked on this machine
            row.update({"layer_fwd_form": self.native_forms["layer_fwd"],
                        "layer_fwd_bwd_form": self.native_forms["layer_fwd_bwd"],
                        "layer_fwd_vs_bound": round(t["layer_fwd"] / t["bound"], 2),
                        "layer_fwd_bwd_vs_bound": round(t["layer_fwd_bwd"] / t["bound"], 2),
                        "layer_fwd_vs_native": round(t["layer_fwd"] / t["native_fwd"], 2),
                        "layer_fwd_bwd_vs_native": round(t["layer_fwd_bwd"] / t["native_fwd_bwd"], 2),
                        "layer_fwd_vs_native_module": round(self.paired["layer_fwd_vs_native_module"], 2),
                        "layer_fwd_bwd_vs_native_module": round(self.paired["layer_fwd_bwd_vs_native_module"], 2)})
        return row


# --- the cases -------------------------------------------------------------------------------------------------------


def _rand(*shape: int, fmt: torch.memory_format = torch.contiguous_format, grad: bool = True) -> torch.Tensor:
    x = torch.randn(*shape)
    if x.dim() == 4:
        x = x.contiguous(memory_format=fmt)
    return x.requires_grad_(grad)


def _depthwise(multiplier: int, kernel: int = 3, stride: int = 1) -> Callable[[torch.memory_format, bool], Setup]:
    def build(fmt: torch.memory_format, quick: bool) -> Setup:
        from convzoo.kernels.depthwise import depthwise_conv
        from convzoo.layers.fastpaths import depthwise_channels_last, depthwise_split

        n, c, size = (1, 4, 9) if quick else (8, 64, 56)
        x = _rand(n, c, size, size, fmt=fmt)
        w, b = _rand(c * multiplier, 1, kernel, kernel), _rand(c * multiplier)
        p = kernel // 2
        native: dict[str, Form] = {"F.conv2d": lambda t: F.conv2d(t, w, b, stride, p, 1, c)}
        if fmt == torch.contiguous_format:
            native["channels_last round trip"] = lambda t: depthwise_channels_last(t, w, b, (stride,) * 2, (p, p), (1, 1))
            if multiplier > 1:
                native[f"split ×{multiplier}"] = lambda t: depthwise_split(t, w, b, (stride,) * 2, (p, p), (1, 1))
        elif multiplier > 1:
            native[f"channels_last ×{multiplier} repeat"] = lambda t: depthwise_channels_last(t, w, b, (stride,) * 2,
                                                                                             (p, p), (1, 1))
        layer = cz.DepthwiseConv2d(c, c * multiplier, kernel, stride, p)
        torch_module = torch.nn.Conv2d(c, c * multiplier, kernel, stride, p, groups=c)
        return Setup(x, [w, b], lambda t: depthwise_conv(t, w, b, (stride,) * 2, ((p, p), (p, p)), (1, 1)), native,
                     _with_values(layer, w, b), _with_values(torch_module, w, b))

    return build


def _with_values(layer: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.nn.Module,
                                                                                             list[torch.Tensor]]:
    """The layer with the case's weight and bias tensors as its parameters, and those parameters: the same memory,
    so the layer, torch's module and the bare forms all read one copy (with copies, the bare forms and the minimal
    modules would keep the case's tensors warm in cache for each other, but not for the layer)."""
    layer.weight = torch.nn.Parameter(weight.detach())
    layer.bias = torch.nn.Parameter(bias.detach())
    return layer, [layer.weight, layer.bias]


def _global_depthwise(multiplier: int) -> Callable[[torch.memory_format, bool], Setup]:
    def build(fmt: torch.memory_format, quick: bool) -> Setup:
        from convzoo.kernels.global_depthwise import global_depthwise
        from convzoo.layers.fastpaths import GlobalDepthwiseSum, GlobalDepthwiseSumNHWC

        n, c, size = (2, 4, 7) if quick else (8, 64, 56)
        x = _rand(n, c, size, size, fmt=fmt)
        w, b = _rand(c * multiplier, 1, size, size), _rand(c * multiplier)

        def in_place(t: torch.Tensor) -> torch.Tensor:
            wc = w.reshape(c, multiplier, -1)
            if fmt == torch.channels_last:
                nhwc = t.permute(0, 2, 3, 1).reshape(n, -1, c)
                y = GlobalDepthwiseSumNHWC.apply(nhwc, wc.permute(1, 2, 0).contiguous(), b)
            else:
                y = GlobalDepthwiseSum.apply(t.flatten(2), wc, b)
            return y.view(n, -1, 1, 1)

        native = {"F.conv2d": lambda t: F.conv2d(t, w, b, groups=c),
                  "matmul" if fmt == torch.contiguous_format else "products + sum": in_place}
        torch_module = torch.nn.Conv2d(c, c * multiplier, size, groups=c)
        return Setup(x, [w, b], lambda t: global_depthwise(t, w, b), native,
                     _with_values(cz.GlobalDepthwiseConv2d(c, c * multiplier, size), w, b),
                     _with_values(torch_module, w, b))

    return build


def _vertical_horizontal(kernel: int) -> Callable[[torch.memory_format, bool], Setup]:
    def build(fmt: torch.memory_format, quick: bool) -> Setup:
        from convzoo.kernels.separable_pair import separable_pair

        n, c, size = (1, 4, 9) if quick else (8, 64, 56)
        x = _rand(n, c, size, size, fmt=fmt)
        wv, bv, wh, bh = _rand(c, 1, kernel, 1), _rand(c), _rand(c, 1, 1, kernel), _rand(c)
        p = kernel // 2

        def stages(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(F.conv2d(t, wv, bv, 1, (p, 0), 1, c), wh, bh, 1, (0, p), 1, c)

        native: dict[str, Form] = {"2 × F.conv2d": stages}
        if fmt == torch.contiguous_format:
            native["channels_last round trip"] = lambda t: stages(t.contiguous(memory_format=torch.channels_last)
                                                                  ).contiguous()
        return Setup(x, [wv, bv, wh, bh], lambda t: separable_pair(t, wv, bv, wh, bh, (1, 1, (p, p), 1, 1, (p, p))),
                     native)

    return build


CASES: list[Case] = [
    Case("depthwise", "3×3 m=1 b8×64×56²", _depthwise(1)),
    Case("depthwise", "3×3 m=2 b8×64×56²", _depthwise(2)),
    Case("depthwise", "3×3 m=1 stride 2 b8×64×56²", _depthwise(1, stride=2)),
    Case("depthwise", "5×5 m=1 b8×64×56²", _depthwise(1, kernel=5)),
    Case("global_depthwise", "GDC m=1 b8×64×56²", _global_depthwise(1)),
    Case("global_depthwise", "GDC m=2 b8×64×56²", _global_depthwise(2)),
    Case("flattened", "V∘H 3×1 then 1×3 b8×64×56²", _vertical_horizontal(3)),
]


# --- timing ----------------------------------------------------------------------------------------------------------


class InModule(torch.nn.Module):
    """A native form called the way a model calls it: from a module's ``forward`` (torch's module call, which
    ``nn.Conv2d`` pays on top of ``F.conv2d`` too; the form is a plain attribute and its weights are closed over, no
    ``__getattr__``: a lower baseline than a module holding them as parameters). The plain conv is instead timed as
    torch's own ``nn.Conv2d`` with the same values, the module a model runs it in."""

    def __init__(self, form: Form) -> None:
        super().__init__()
        self.form = form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.form(x)


def _fwd(f: Form, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return f(x)
    return run


def _fwd_bwd(f: Form, x: torch.Tensor, params: list[torch.Tensor]) -> Callable[[], object]:
    with torch.no_grad():
        g = torch.randn_like(f(x))

    def run() -> object:
        y = f(x)
        return torch.autograd.grad(y, [x, *params], g)
    return run


def paired_ratio(a: list[float], b: list[float]) -> float:
    """The median over rounds of a[r] / b[r], two calls timed in the same round: a machine that slows down for a
    while slows both, where the ratio of the fastest rounds compares two different moments."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def head_to_head(a: Callable[[], object], b: Callable[[], object], rounds: int) -> tuple[list[float], list[float]]:
    """Rounds of a and b alone, taking turns (a first in even rounds, b in odd ones); in its turn each runs twice in
    a row and the faster time is kept, as ``FormChoice`` does. The layer-vs-module ratio is read against 5 %: in
    the shared rounds each call follows a random other one and pays for what it left behind (spinning OpenMP
    workers, caches, freed pages handed out again), which moved the paired ratio of two 0.1 ms calls by more than
    that from run to run."""
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            fastest = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                (a, b)[which]()
                fastest = min(fastest, time.perf_counter() - start)
            times[which].append(fastest)
    return times


def measure(case: Case, fmt_name: str, rounds: int, quick: bool) -> Row:
    setup = case.build(FORMATS[fmt_name], quick)
    x = setup.x
    with torch.no_grad():
        out_numel = setup.kernel(x).numel()
    bound_src = torch.randn((x.numel() + out_numel) // 2)  # a copy moving the op's bytes: in read + out written
    bound_dst = torch.empty_like(bound_src)
    calls: dict[str, Callable[[], object]] = {"bound": lambda: bound_dst.copy_(bound_src), "kernel_fwd": _fwd(setup.kernel, x),
                                              "kernel_fwd_bwd": _fwd_bwd(setup.kernel, x, setup.params)}
    for name, f in setup.native.items():
        calls[f"native:{name}:fwd"] = _fwd(f, x)
        calls[f"native:{name}:fwd_bwd"] = _fwd_bwd(f, x, setup.params)
        if setup.layer is None:
            continue
        if name == "F.conv2d" and setup.torch_module is not None:  # a model runs the plain conv as nn.Conv2d
            module, module_params = setup.torch_module
            calls["module:nn.Conv2d:fwd"], calls["module:nn.Conv2d:fwd_bwd"] = (_fwd(module, x),
                                                                              _fwd_bwd(module, x, module_params))
        else:  # the other forms where a model would call them: inside a module's forward
            calls[f"module:{name}:fwd"] = _fwd(InModule(f), x)
            calls[f"module:{name}:fwd_bwd"] = _fwd_bwd(InModule(f), x, setup.params)
    if setup.layer is not None:
        layer, layer_params = setup.layer
        calls["layer_fwd"], calls["layer_fwd_bwd"] = _fwd(layer, x), _fwd_bwd(layer, x, layer_params)
    for call in calls.values():
        call()  # warm-up: compilation, allocations, oneDNN's kernel choice, the layer's form choice
    times: dict[str, list[float]] = {name: [] for name in calls}  # s, per round
    names = list(calls)
    r, started = 0, time.perf_counter()
    while r < rounds or (r < 5 * rounds and time.perf_counter() - started < 3.0):  # short cases: more rounds
        order = random.Random(r).sample(names, len(names))  # a new order each round: no call always follows the
        for name in order:  # same one (a backward's spinning OpenMP workers slow whatever runs next)
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        r += 1
    best = {name: min(t) for name, t in times.items()}
    row = Row(case.family, case.label, fmt_name, {"bound": 1e3 * best["bound"], "kernel_fwd": 1e3 * best["kernel_fwd"],
                                                   "kernel_fwd_bwd": 1e3 * best["kernel_fwd_bwd"]})
    for kind in ("fwd", "fwd_bwd"):
        native = {n.split(":")[1]: t for n, t in best.items() if n.startswith("native:") and n.endswith(f":{kind}")}
        fastest = min(native, key=native.__getitem__)
        row.times[f"native_{kind}"] = 1e3 * native[fastest]
        row.native_forms[kind] = fastest
        if setup.layer is not None:
            in_module = {n.split(":")[1]: t for n, t in best.items()
                         if n.startswith("module:") and n.endswith(f":{kind}")}
            fastest = min(in_module, key=in_module.__getitem__)
            row.times[f"native_module_{kind}"] = 1e3 * in_module[fastest]
            row.native_forms[f"module_{kind}"] = fastest
            layer_times, module_times = head_to_head(calls[f"layer_{kind}"], calls[f"module:{fastest}:{kind}"],
                                                     max(rounds, r))
            row.paired[f"layer_{kind}_vs_native_module"] = paired_ratio(layer_times, module_times)
            row.times[f"layer_{kind}"] = 1e3 * best[f"layer_{kind}"]
            row.native_forms[f"layer_{kind}"] = _chosen_form(setup.layer[0], x, kind == "fwd_bwd")
    return row


def _chosen_form(layer: torch.nn.Module, x: torch.Tensor, grad: bool) -> str:
    """The form the layer runs on x in this grad mode (its ``forward_path``, measured by then), or "" if it has none."""
    chosen = getattr(layer, "forward_path", None)
    if chosen is None:
        return ""
    with torch.set_grad_enabled(grad):
        return str(chosen(x if grad else x.detach()))


# --- output ----------------------------------------------------------------------------------------------------------

DESCRIPTION = (
    "convzoo's own CPU kernels (numba: depthwise, global depthwise, flattened's fused V∘H pair) against the memory "
    "bound and against PyTorch's best native form, per case and memory format. In the same interleaved rounds "
    "(a new random order each round, fastest round kept; short cases get up to 5× the rounds, within 3 s): the "
    "kernel's forward and forward + backward (∂ wrt input and every parameter), every native form (the plain conv "
    "and the rearrangements of `layers/fastpaths.py`), and the bound — a copy of (input + output) / 2 elements into "
    "a preallocated tensor, the bytes the op must move (input read once, output written once) — and the convzoo "
    "layer itself (DepthwiseConv2d, GlobalDepthwiseConv2d with the case's values), which runs the form its "
    "FormChoice measured fastest on this machine: what a user of the layer gets. The layer is a module, so it is "
    "also compared with the best native form as a model runs it — the plain conv as torch's own `nn.Conv2d` with "
    "the same values, the other forms called from a minimal module — by the median over rounds of the two calls' "
    "ratio within a round, in rounds of those two calls alone after the shared ones (each twice in a row in its "
    "turn, the faster kept).")


def results_table(rows: list[Row]) -> Table:
    """The rows as the results table: times (fastest round, ms) and the ratios kernel / bound, kernel / native, and
    the layer's (the form it chose here) against the bound and the best native form."""
    body = []
    for row in rows:
        d = row.as_dict()
        layer = [d.get("layer_fwd_vs_bound", ""), d.get("layer_fwd_bwd_vs_bound", ""),
                 d.get("layer_fwd_vs_native", ""), d.get("layer_fwd_bwd_vs_native", ""),
                 d.get("layer_fwd_vs_native_module", ""), d.get("layer_fwd_bwd_vs_native_module", "")]
        forms = f"{d['layer_fwd_form']} / {d['layer_fwd_bwd_form']}" if "layer_fwd_form" in d else ""
        body.append([row.family, row.label, row.format, d["bound"], d["kernel_fwd"], d["fwd_vs_bound"],
                     d["kernel_fwd_bwd"], d["fwd_bwd_vs_bound"], f"{d['native_fwd']:.3f} ({d['native_fwd_form']})",
                     d["fwd_vs_native"], d["fwd_bwd_vs_native"], *layer, forms])
    return Table("Kernels against the copy bound and the best native form",
                 ["family", "case", "format", ("bound", ".3f"), ("kernel fwd", ".3f"), ("×bound", ".1f"),
                  ("kernel fwd+bwd", ".3f"), ("×bound ", ".1f"), "best native fwd", ("kernel / native fwd", ".2f"),
                  ("kernel / native fwd+bwd", ".2f"), ("layer fwd ×bound", ".1f"), ("layer fwd+bwd ×bound", ".1f"),
                  ("layer / native fwd", ".2f"), ("layer / native fwd+bwd", ".2f"),
                  ("layer / native module fwd", ".2f"), ("layer / native module fwd+bwd", ".2f"),
                  "layer's forms (fwd / fwd+bwd)"],
                 body,
                 "Fastest of the rounds, ms; bound = a copy of the op's bytes (input read + output written); layer = "
                 "the convzoo layer, running the form it measured fastest on this machine; native module = the best "
                 "native form as a model runs it (the plain conv as nn.Conv2d, others from a minimal nn.Module), "
                 "layer / native module = the median over rounds of the ratio within a round.")


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--cases", default="", help="only cases whose family or label contains this text")
    parser.add_argument("--formats", default="NCHW,channels_last")
    parser.add_argument("--quick", action="store_true", help="tiny shapes and one round (a smoke test)")
    parser.add_argument("--runs", type=int, default=1,
                        help="measure every case this many times (new layers and inputs, form choices measured "
                             "again); the results add a table of each ratio's range over the runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine_info()
    runs: list[list[Row]] = []
    for run in range(args.runs):
        forget_choices()  # every run's layers choose their forms again
        rows = []
        for case in CASES:
            if args.cases and args.cases not in case.family and args.cases not in case.label:
                continue
            for fmt_name in args.formats.split(","):
                rows.append(measure(case, fmt_name, 1 if args.quick else args.rounds, args.quick))
                print(table_markdown(results_table(rows[-1:])).splitlines()[-1], flush=True)
        runs.append(rows)
    tables = [results_table(runs[0])]
    if len(runs) > 1:
        tables.append(ranges_table(runs))
    for table in tables:
        print(table_markdown(table))
    if not args.quick:
        write_results(args.out / f"kernels-{machine_tag(info)}.json", "convzoo's CPU kernels against the copy bound",
                      tables, description=DESCRIPTION, machine=info,
                      data={"rows": [r.as_dict() for r in runs[0]], "runs": [[r.as_dict() for r in rows] for rows in runs]})
    return runs[0]


RANGED = [("fwd_vs_bound", "kernel fwd ×bound"), ("fwd_bwd_vs_bound", "kernel fwd+bwd ×bound"),
          ("layer_fwd_vs_bound", "layer fwd ×bound"), ("layer_fwd_bwd_vs_bound", "layer fwd+bwd ×bound"),
          ("layer_fwd_vs_native", "layer / native fwd"), ("layer_fwd_bwd_vs_native", "layer / native fwd+bwd"),
          ("layer_fwd_vs_native_module", "layer / native module fwd"),
          ("layer_fwd_bwd_vs_native_module", "layer / native module fwd+bwd")]


def ranges_table(runs: list[list[Row]]) -> Table:
    """Each ratio's lowest and highest value over the runs (the first table holds the first run), and how many
    runs the layer ran each form in (forward / forward+backward)."""
    body = []
    for i, row in enumerate(runs[0]):
        ds = [rows[i].as_dict() for rows in runs]
        cells: list[object] = [row.family, row.label, row.format]
        for key, _ in RANGED:
            values = [d[key] for d in ds if key in d]
            cells.append(f"{min(values):.2f}–{max(values):.2f}" if values else "")
        forms = [f"{d['layer_fwd_form']} / {d['layer_fwd_bwd_form']}" for d in ds if "layer_fwd_form" in d]
        cells.append(", ".join(f"{f} ×{forms.count(f)}" for f in dict.fromkeys(forms)))
        body.append(cells)
    return Table(f"The ratios over {len(runs)} runs in one process (lowest–highest)",
                 ["family", "case", "format", *(name for _, name in RANGED), "layer's forms (runs)"], body,
                 "Each run measures every case again, with new inputs and new layers, every form choice forgotten and "
                 "measured again.")


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
