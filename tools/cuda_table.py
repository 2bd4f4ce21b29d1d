"""Render the README's GPU tables from the JSON that benchmarks/run_cuda.sh wrote: ``convzoo bench --device cuda``
(bench.json) and benchmarks/bench_gpu_kernels.py (kernels.json).

    python tools/cuda_table.py [benchmarks/results/cuda/bench.json]                # print the markdown
    python tools/cuda_table.py benchmarks/results/cuda/bench.json --write README.md  # replace it between the markers
    python tools/cuda_table.py --kernels benchmarks/results/cuda/kernels.json [--write README.md]

bench.json, one row per family: the best-format forward and forward+backward medians, the speed-up vs the standard
conv's best forward, convzoo's time / the fastest native composition of the same math (timed in the same rounds),
the roofline bound ratio, and peers (peer time / convzoo time, > 1: convzoo faster) in convzoo's best format.
kernels.json, one row per (family, what it is compared with, batch, pass): each side in its faster memory format,
ratio = other / convzoo of the medians (and of the fastest rounds), and the issue's target where it sets one.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

START, END = "<!-- cuda-table:start -->", "<!-- cuda-table:end -->"
KERNELS_START, KERNELS_END = "<!-- cuda-kernels:start -->", "<!-- cuda-kernels:end -->"


def target(family: str, other: str) -> float | None:
    """The acceptance ratio (other / convzoo) issue 24 sets for a comparison, or None."""
    if family == "deformable_v2" and other.startswith("torchvision"):
        return 1.0
    if family in ("mixconv", "dynamic", "condconv") and other.startswith("timm"):
        return 1.0
    if family in ("dcnv3", "involution") and other.endswith(" form") and "Triton" not in other:
        return 2.0
    return None


def render_kernels(data: dict) -> str:
    """The kernels table: per (family, level, convzoo side, other side, batch, pass), each side's faster format."""
    machine = data["machine"]
    c_in, c_out, size, k = data["shape"]
    best: dict[tuple, dict] = {}
    for row in data["rows"]:
        key = (row["family"], row["level"], row["convzoo"], row["other"], row["batch"], row["pass"])
        entry = best.setdefault(key, {"convzoo": (math.inf, "", math.inf), "other": (math.inf, "", math.inf),
                                      "path": row.get("forward_path", "")})
        for side in ("convzoo", "other"):
            if row[f"{side}_ms"] < entry[side][0]:
                entry[side] = (row[f"{side}_ms"], row["format"], row[f"{side}_min_ms"])
    lines = [f"{machine.get('gpu', machine['device'])}, torch {machine['torch']}; {c_in}→{c_out} (involution "
             f"{c_in}→{c_in}), {k}×{k}, {size}², fp32 with torch's default TF32; CUDA events, {data['rounds']} "
             "round-robin rounds; medians in ms, each side in its faster memory format (NCHW or channels_last); "
             "ratio = other / convzoo (> 1: convzoo faster), of the medians and of the fastest rounds.", "",
             "| family | convzoo | vs | batch | pass | convzoo ms (fmt) | other ms (fmt) | ratio | ratio (fastest) "
             "| target |", "|---|---|---|---:|---|---|---|---:|---:|---|"]
    for (family, level, ours, other, batch, step), entry in best.items():
        (a, fa, amin), (b, fb, bmin) = entry["convzoo"], entry["other"]
        goal = target(family, other)
        verdict = "" if goal is None else f"≥ {goal:.1f}: {'met' if b / a >= goal else 'NOT met'}"
        ours, other_label = ((name + f" — {entry['path']}" if entry["path"] and "(auto)" in name else name)
                             for name in (ours, other))
        lines.append(f"| {family} | {ours} | {other_label} | {batch} | {step} | {a:.3f} ({fa}) | {b:.3f} ({fb}) | "
                     f"{b / a:.2f} | {bmin / amin:.2f} | {verdict} |")
    return "\n".join(lines)


def write_between(path: str, start: str, end: str, table: str) -> None:
    with open(path) as f:
        text = f.read()
    if start not in text or end not in text:
        sys.exit(f"error: {path} has no {start} … {end} markers")
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{table}\n{end}", text, flags=re.S)
    with open(path, "w") as f:
        f.write(text)


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
    parser.add_argument("--kernels", metavar="JSON", help="render bench_gpu_kernels.py's JSON (the kernels table)")
    parser.add_argument("--write", metavar="README", help="replace the table between its markers in README")
    args = parser.parse_args()
    tables = []
    if args.kernels:
        with open(args.kernels) as f:
            tables.append((KERNELS_START, KERNELS_END, render_kernels(json.load(f))))
    else:
        with open(args.json) as f:
            tables.append((START, END, render(json.load(f))))
    for start, end, table in tables:
        if args.write:
            write_between(args.write, start, end, table)
        else:
            print(table)


if __name__ == "__main__":
    main()
