"""Where MobileNets run: float32 vs int8 on ExecuTorch/XNNPACK and onnxruntime, measured side by side in one run.

    python benchmarks/int8_runtimes.py [--quick] [--threads N] [--part all|models|families] [--out benchmarks/results]

1. The papers' networks end to end at batch 1, 224×224: MobileNet v1 1.0-224 (α = 1, ρ = 224; Table 8: 569 M
   MACs), ShuffleNet v1 1× with g = 3 (Table 2: 140 M FLOPs, i.e. MACs) and GhostNet 1.0× (Table 7: 141 M). Each in
   eager PyTorch float32 (NCHW, as ``convzoo compare`` times it, and channels_last), on XNNPACK float32 and int8,
   on onnxruntime float32 and int8 — all six timed round-robin
   in the same rounds (order rotated each round), fastest round and median per runtime, int8 speed-up = the same
   runtime's float32 fastest / int8 fastest, error = relative L2 of the logits vs eager float32 (random weights,
   BatchNorms at their initial statistics, int8 calibrated on 8 random batches, measured on another one).
2. ``convzoo compare --runtime xnnpack --dtype int8`` for every family (64 → 128 channels, 56×56, batch 8), each
   family next to eager float32 in the same rounds: the MAC ratio against the measured speed ratio on the runtime
   where MobileNets run; then the same on onnxruntime int8.

Prints markdown tables (the machine first: CPU model and flags, torch's CPU capability, versions, threads) and
writes the run in the results format (``convzoo.perf.results``) to OUT/int8_runtimes-<cpu>.json (tagged with the
CPU model and torch's CPU capability: each machine its own file), which the docs' Performance pages render (the
reading beside it, int8_runtimes-<cpu>.md, is written by hand and quotes only numbers the tables show).
``--quick``: MobileNet only and five families at a smaller shape (a smoke run, not a measurement; written to
int8_runtimes_quick-<cpu>.json).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings

import torch

from convzoo import cost, models
from convzoo.deploy.runtimes import Runner, runner, set_threads
from convzoo.perf.results import Table, machine_info, machine_tag, write_results
from convzoo.perf.runtime_compare import (
    compare_on_runtime,
    interleaved_rounds,
    machine_header,
    markdown_table,
    runtime_versions,
)

MODELS = {  # name: (builder, the paper's MACs in millions)
    "MobileNet v1 1.0-224": (lambda: models.mobilenet_v1(1.0, 224), 569),
    "ShuffleNet v1 1× g=3": (lambda: models.shufflenet_v1(groups=3, scale=1.0), 140),
    "GhostNet 1.0×": (lambda: models.ghostnet(1.0), 141),
}
RUNTIMES = [("eager", "fp32"), ("xnnpack", "fp32"), ("xnnpack", "int8"), ("onnxruntime", "fp32"),
            ("onnxruntime", "int8")]
QUICK_FAMILIES = ["standard", "depthwise_separable", "grouped", "shuffled_grouped", "ghost"]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.double() - expected.double()).norm() / expected.double().norm())


def model_rows(name: str, build, paper_macs: int, threads: int, rounds: int | None) -> list[dict]:
    torch.manual_seed(0)
    model = build().eval()
    g = torch.Generator().manual_seed(0)
    calibration = [torch.randn(1, 3, 224, 224, generator=g) for _ in range(8)]
    x = torch.randn(1, 3, 224, 224, generator=g)
    with torch.no_grad():
        expected = model(x)
    macs = cost(model, (1, 3, 224, 224)).macs
    prepared, seconds, quantized = {}, {}, None
    for runtime, dtype in RUNTIMES:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepared[runtime, dtype] = runner(model, x, runtime, dtype, calibration, threads=threads,
                                              quantized=quantized if runtime == "xnnpack" else None)
        if dtype == "int8" and runtime == "xnnpack":
            quantized = prepared[runtime, dtype].quantized
        seconds[runtime, dtype] = time.perf_counter() - start
    # eager PyTorch also in channels_last: its NCHW depthwise kernels are the slow ones, so the gain of a runtime
    # is shown against the better of the two layouts
    channels_last = copy.deepcopy(model).to(memory_format=torch.channels_last)

    def eager_channels_last(t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return channels_last(t.contiguous(memory_format=torch.channels_last))

    prepared["eager channels_last", "fp32"] = Runner("eager", "fp32", eager_channels_last)
    seconds["eager channels_last", "fp32"] = 0.0
    keys = list(prepared)
    times = interleaved_rounds([prepared[k].run for k in keys], [x], repeats=rounds, min_time=3.0, max_time=30.0,
                               min_rounds=10, max_rounds=200)
    fastest = {k: min(t) for k, t in zip(keys, times)}
    rows = []
    for k, t in zip(keys, times):
        runtime, dtype = k
        with torch.no_grad():
            error = relative_error(prepared[k](x), expected)
        rows.append({"model": name, "runtime": runtime, "dtype": dtype, "macs": macs, "paper_macs_m": paper_macs,
                     "fastest_ms": fastest[k], "median_ms": statistics.median(t), "rounds": len(t),
                     "int8_speedup": fastest[runtime, "fp32"] / fastest[k] if dtype == "int8" else None,
                     "vs_eager_fp32": fastest["eager", "fp32"] / fastest[k],
                     "vs_eager_fp32_channels_last": fastest["eager channels_last", "fp32"] / fastest[k], "error": error,
                     "prepare_s": seconds[k], "size_mb": (prepared[k].size_bytes or 0) / 1e6,
                     "runs": prepared[k].summary()})
    return rows


MODEL_COLUMNS = [("model", ""), ("MACs (M)", ".0f"), ("paper MACs (M)", ".0f"), ("runtime", ""), ("dtype", ""),
                 ("fastest ms", ".2f"), ("median ms", ".2f"), ("int8 speed-up", ".2f"), ("vs eager fp32 NCHW", ".2f"),
                 ("vs eager fp32 NHWC", ".2f"), ("logits error", ".1e"), ("file MB", ".1f"), ("runs", "")]
FAMILY_COLUMNS = [("family", ""), ("MACs (M)", ".1f"), ("MAC ratio", ".3f"), ("runtime ms", ".2f"),
                  ("speed ratio", ".2f"), ("eager fp32 ms", ".2f"), ("eager ratio", ".2f"), ("vs eager", ".2f"),
                  ("error", ".1e"), ("runs", "")]


def model_cells(r: dict) -> list:
    return [r["model"], r["macs"] / 1e6, r["paper_macs_m"], r["runtime"], r["dtype"], r["fastest_ms"], r["median_ms"],
            r["int8_speedup"], r["vs_eager_fp32"], r["vs_eager_fp32_channels_last"], r["error"], r["size_mb"],
            r["runs"]]


def family_cells(r: dict) -> list:
    def number(value: float):
        return None if r["failed"] or value != value else value  # NaN: not measured

    return [r["family"], r["macs"] / 1e6, number(r["mac_ratio"]), number(r["ms"]), number(r["speed_ratio"]),
            number(r["eager_ms"]), number(r["eager_speed_ratio"]), number(r["vs_eager"]), number(r["error"]),
            f"failed: {r['failed']}" if r["failed"] else r["summary"]]


def model_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(name for name, _ in MODEL_COLUMNS) + " |",
             "|" + "|".join("---" if not f else "---:" for _, f in MODEL_COLUMNS) + "|"]
    for r in rows:
        lines.append("| " + " | ".join("" if v is None else format(v, f) for v, (_, f) in
                                       zip(model_cells(r), MODEL_COLUMNS)) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MobileNet and five families, small shape (smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for every runtime (default: torch's)")
    parser.add_argument("--part", choices=("all", "models", "families"), default="all",
                        help="only the networks (1.) or only the families (2.); files get the part in their name")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    set_threads(threads)
    header = machine_header(threads)
    print(header, flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    data: dict = {"machine": header, "load_before": load, "models": [], "families": {}}
    selected = list(MODELS.items())[:1] if args.quick else list(MODELS.items())
    if args.part != "families":
        for name, (build, paper) in selected:
            rows = model_rows(name, build, paper, threads, 10 if args.quick else None)
            data["models"] += rows
            print(model_table(rows), flush=True)
    shape = dict(batch=1, in_channels=16, out_channels=32, size=16) if args.quick else {}
    where = "batch 1, 16 → 32 channels, 16×16" if args.quick else "batch 8, 64 → 128 channels, 56×56"
    for runtime in ("xnnpack", "onnxruntime") if args.part != "models" else ():
        rows = compare_on_runtime(runtime, "int8", families=QUICK_FAMILIES if args.quick else None,
                                  repeats=3 if args.quick else None, threads=threads,
                                  progress=lambda n: print(f"  {runtime} int8: {n}", flush=True), **shape)
        data["families"][runtime] = [r.to_dict() for r in rows]
        text = f"## Every family on {runtime} int8 next to eager float32 ({where}, k = 3)\n\n{markdown_table(rows)}"
        print(text, flush=True)
    tables = []
    if data["models"]:
        tables.append(Table("The papers' networks, batch 1, 224×224: float32 vs int8 on each runtime, all timed in "
                            "the same rounds", MODEL_COLUMNS, [model_cells(r) for r in data["models"]],
                            notes="int8 speed-up = the same runtime's float32 fastest / int8 fastest; vs eager = "
                                  "eager float32 fastest (NCHW, channels_last) / this row's fastest; logits error = "
                                  "relative L2 vs eager float32 (random weights, calibrated on 8 random batches)."))
    for runtime, rows in data["families"].items():
        tables.append(Table(f"Every family on {runtime} int8 next to eager float32 ({where}, k = 3)", FAMILY_COLUMNS,
                            [family_cells(r) for r in rows],
                            notes="speed ratio = standard / family on the runtime (> 1 faster); eager ratio = the "
                                  "same in eager float32; vs eager = the family's eager float32 time / its int8 "
                                  "time; error = relative L2 vs eager float32; runs: share of the MACs in int8, "
                                  "operators outside the XNNPACK delegate, onnxruntime's int8 kernels."))
    machine = machine_info(threads=threads, load_average=round(load, 2), **runtime_versions())
    name = "int8_runtimes" + ("" if args.part == "all" else f"_{args.part}") + ("_quick" if args.quick else "")
    path = write_results(os.path.join(args.out, f"{name}-{machine_tag(machine)}.json"),
                         "int8 on mobile runtimes" + (" (quick smoke run)" if args.quick else ""), tables,
                         description=__doc__.split("\n\n", 2)[2].split("\n\nPrints")[0], machine=machine,
                         data=data)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
