"""Render the README's GPU table from the JSON that ``convzoo bench --device cuda`` wrote (benchmarks/run_cuda.sh).

    python tools/cuda_table.py [benchmarks/results/cuda/bench.json]                # print the markdown
    python tools/cuda_table.py benchmarks/results/cuda/bench.json --write README.md  # replace it between the markers

One row per family: the best-format forward and forward+backward medians, the speed-up vs the standard conv's best
forward, convzoo's time / the fastest native composition of the same math (timed in the same rounds), the roofline
bound ratio, and peers (peer time / convzoo time, > 1: convzoo faster) in convzoo's best format.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

START, END = "<!-- cuda-table:start -->", "<!-- cuda-table:end -->"


def _best_bound_ratio(summary: dict) -> str:
    ratios = [row.get("fwd_vs_bound") for row in summary.get("roofline", {}).values() if row.get("fwd_vs_bound")]
    return f"{min(ratios):.1f}" if ratios else "—"


def render(data: dict) -> str:
    machine = data["machine"]
    n, c_in, size, _, c_out, k = data["shape"]
    by_family = {f["family"]: f for f in data["families"]}
    standard = next(s for s in data["summary"] if s["family"] == "standard")["fwd_ms"]
    lines = [f"{machine.get('gpu', machine['device'])}, torch {machine['torch']}, cuDNN {machine.get('cudnn', '?')}; "
             f"layer {c_in}→{c_out}, {k}×{k}, batch {n}, {size}², fp32 (cuDNN's default TF32 for convs); measured "
             f"GEMM peak {machine['gemm_peak_gmacs'] / 1e3:.1f} TMAC/s (fp32 `torch.mm`), copy bandwidth "
             f"{machine['copy_bandwidth_gbs'] / 1e3:.2f} TB/s. Times: medians in ms, CUDA events, each family's best "
             "memory format.", "",
             "| family | MAC ratio | fwd ms (fmt) | speed-up vs standard | vs fastest native, fwd | fwd+bwd ms (fmt) "
             "| vs fastest native, fwd+bwd | fwd / roofline bound | peers (time / convzoo) |",
             "|---|---:|---|---:|---:|---|---:|---:|---|"]
    for s in data["summary"]:
        if "fwd_ms" not in s:
            continue
        peers = [f"{v['name']} {v['forward_ms'] / s['fwd_ms']:.2f}×" for v in by_family[s["family"]]["variants"]
                 if v["kind"] == "peer" and v["memory_format"] == s["fwd_format"] and v.get("forward_ms")]
        vs = lambda key: f"{s[key]:.2f}" if math.isfinite(s.get(key, math.nan)) else "—"  # noqa: E731
        lines.append(f"| {s['family']} | {s['mac_ratio']:.3f} | {s['fwd_ms']:.2f} ({s['fwd_format']}) | "
                     f"{standard / s['fwd_ms']:.2f} | {vs('fwd_vs_native')} | {s['fwd_bwd_ms']:.2f} "
                     f"({s['fwd_bwd_format']}) | {vs('fwd_bwd_vs_native')} | {_best_bound_ratio(s)} | "
                     f"{'; '.join(peers)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", default="benchmarks/results/cuda/bench.json")
    parser.add_argument("--write", metavar="README", help="replace the table between the cuda-table markers")
    args = parser.parse_args()
    with open(args.json) as f:
        table = render(json.load(f))
    if not args.write:
        print(table)
        return
    with open(args.write) as f:
        text = f.read()
    if START not in text or END not in text:
        sys.exit(f"error: {args.write} has no {START} … {END} markers")
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: f"{START}\n{table}\n{END}", text, flags=re.S)
    with open(args.write, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
