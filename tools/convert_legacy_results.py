"""One-off: the results committed before the results format (``convzoo.perf.results``) converted to it, without
re-running anything: each file's own numbers, machine and date where it recorded them ("not recorded" where it did
not), the date otherwise left null and the commit that added the data named in ``provenance``.

    PYTHONPATH=src python tools/convert_legacy_results.py      # in the repository root; rewrites benchmarks/results
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

from convzoo.perf.bench import FamilyBench, bench_results_tables, plot, peers_results_table, roofline_results_table
from convzoo.perf.hetconv_sweep import SWEEP_DESCRIPTION, sweep_results_table
from convzoo.perf.results import Table, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# --- parsing the old text outputs -------------------------------------------------------------------------------------

def typed(cell: str) -> tuple[Any, str]:
    """A printed cell back to a value and the format that prints it the same: '1,849.7' → (1849.7, ',.1f')."""
    text = cell.strip()
    if text in ("—", "nan", ""):
        return (None, "") if text else ("", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+|-?\d+", text):
        return int(text.replace(",", "")), ""
    m = re.fullmatch(r"-?[\d,]+\.(\d+)", text)
    if m:
        return float(text.replace(",", "")), ("," if "," in text else "") + f".{len(m.group(1))}f"
    m = re.fullmatch(r"-?\d\.(\d+)e[-+]\d+", text)
    if m:
        return float(text), f".{len(m.group(1))}e"
    m = re.fullmatch(r"(\d+)%", text)
    if m:
        return int(m.group(1)) / 100, "{:.0%}"
    return text, ""


def table_from_cells(caption: str, header: list[str], cells: list[list[str]], notes: str = "",
                     machine: dict[str, Any] | None = None) -> Table:
    """Typed rows; each column's format is the longest one its cells were printed with."""
    rows, formats = [], [""] * len(header)
    for line in cells:
        row = []
        for j, cell in enumerate(line):
            value, fmt = typed(cell)
            row.append(value)
            if len(fmt) > len(formats[j]):
                formats[j] = fmt
        rows.append(row)
    columns = [(name, fmt) if fmt else name for name, fmt in zip(header, formats)]
    return Table(caption, columns, rows, notes, machine or {})


def markdown_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(the paragraph before, header, rows) of each Markdown table."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
            split = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
            header, rows = split(lines[i]), []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(split(lines[i]))
                i += 1
            out.append((before, header, rows))
        else:
            i += 1
    return out


def rich_tables(text: str) -> list[dict[str, Any]]:
    """Each box-drawn table of a rich printout: title lines above, header, rows, caption lines below."""
    out, lines, i = [], text.splitlines(), 0
    above: list[str] = []
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("┏"):
            header_lines, rows = [], []
            i += 1
            while not lines[i].lstrip().startswith("┡"):
                header_lines.append([c.strip() for c in lines[i].strip().strip("┃").split("┃")])
                i += 1
            header = [" ".join(p for p in parts if p) for parts in zip(*header_lines)]
            i += 1
            while not lines[i].lstrip().startswith("└"):
                rows.append([c.strip() for c in lines[i].strip().strip("│").split("│")])
                i += 1
            i += 1
            below = []
            while i < len(lines) and lines[i].strip() and not lines[i].lstrip().startswith("┏"):
                below.append(lines[i].strip())
                i += 1
            out.append({"above": [a.strip() for a in above if a.strip()], "header": header, "rows": rows,
                        "below": below})
            above = []
        else:
            above.append(line)
            i += 1
    return out


# --- the files ----------------------------------------------------------------------------------------------------------

def bench_all() -> None:
    raw = json.loads((RESULTS / "bench.json").read_text())
    md = (RESULTS / "bench_all.md").read_text()
    cpu, cores, threads, torch_version = re.fullmatch(r"(.+), (\d+) cores, (\d+) threads, torch (\S+)",
                                                      raw["machine"]).groups()
    tables = bench_results_tables(raw["summary"], raw["families"], raw["gemm_peak_gmacs"], raw["copy_gbs"])
    parts = markdown_tables(md)
    het, dyn = parts[1], parts[2]
    tables.append(table_from_cells("HetConv (p = 4, k = 3), forward ms per format", het[1], het[2],
                                   "Medians (ms), timed round-robin in the same rounds."))
    tables.append(table_from_cells("Dynamic conv, batch 32, 64→64, 28²: against a static conv and the per-sample loop",
                                   dyn[1], dyn[2], "Medians (ms) of runs interleaved round-robin."))
    m = re.search(r"input \((.+?)\): picks \*\*(\w+)\*\*; contiguous ([\d.]+) ms, channels_last ([\d.]+) ms, "
                  r"speed-up ([\d.]+)×", md)
    tables.append(Table("`convzoo.optimize` on a 4-conv standard network",
                        ["input", "picks", ("contiguous ms", ".1f"), ("channels_last ms", ".1f"),
                         ("speed-up", "{:.2f}×")],
                        [[f"({m.group(1)})", m.group(2), float(m.group(3)), float(m.group(4)), float(m.group(5))]]))
    write_results(RESULTS / "bench_all.json", "Every family on one layer shape (CPU)", tables,
                  description=script("bench_all").DESCRIPTION,
                  machine={"cpu": cpu, "cores": int(cores), "threads": int(threads), "torch": torch_version,
                           "gemm_peak_gmacs": round(raw["gemm_peak_gmacs"], 1), "copy_bandwidth_gbs": round(raw["copy_gbs"], 1)},
                  date="2026-11-29", command="python benchmarks/bench_all.py",
                  figures=[("mac_vs_speed.png", "MAC ratio against measured speed-up, per family")],
                  data={k: raw[k] for k in ("gemm_peak_gmacs", "copy_gbs", "summary", "families")},
                  provenance="converted from `bench.json` and `bench_all.md` (commit 4c626cf); the date is the "
                             "README's record of the run; the load average was not recorded in the files; the "
                             "figure redrawn from `bench.json` (the committed PNG was an older run's).")
    plot([FamilyBench.from_dict(d) for d in raw["families"]], str(RESULTS / "mac_vs_speed.png"))


def bench_all_new_families() -> None:
    md = (RESULTS / "bench_all_new_families.md").read_text()
    _, header, rows = markdown_tables(md)[0]
    cpu, cores, threads, torch_version = re.search(r"Machine: (.+), (\d+) cores, (\d+) threads, torch (\S+)",
                                                   md).groups()
    peak, bw = re.search(r"GEMM peak ([\d.]+) GMAC/s .*copy bandwidth ([\d.]+) GB/s", md).groups()
    write_results(RESULTS / "bench_all_new_families.json", "The families added in round 15 (CPU)",
                  [table_from_cells("Every family against its fastest native composition", header, rows,
                                    f"Measured limits: GEMM peak {peak} GMAC/s (fp32 `torch.mm`), copy bandwidth {bw} "
                                    "GB/s. The speed-up against standard is empty: standard was not in this run.")],
                  description=script("bench_all").DESCRIPTION,
                  machine={"cpu": cpu, "cores": int(cores), "threads": int(threads), "torch": torch_version,
                           "gemm_peak_gmacs": float(peak), "copy_bandwidth_gbs": float(bw)},
                  date=None, command="python benchmarks/bench_all.py subpixel acnet repvgg large_kernel partial ghost "
                                     "condconv odconv selective_kernel involution dcnv3",
                  provenance="converted from `bench_all_new_families.md` (commit 2fb8b77, 2026-11-29).",
                  superseded_by="bench_all")


def compare_busy() -> None:
    text = (RESULTS / "compare_two_busy_loops.txt").read_text()
    t = rich_tables(text)[0]
    load, cpus = re.search(r"load average ([\d.]+) on (\d+) CPU", text).groups()
    threads, torch_version = re.search(r"on cpu, (\d+) thread\(s\), torch (\S+)", text).groups()
    notes = " ".join(t["below"][:-1])
    write_results(RESULTS / "compare_two_busy_loops.json", "`convzoo compare` under two busy loops",
                  [table_from_cells("Every family against 'standard', timed round-robin with it (NCHW)", t["header"],
                                    t["rows"], notes)],
                  description=COMPARE_DESCRIPTION + " This run was taken with two busy-loop processes competing for "
                  "the two cores, to test that the fastest rounds keep the ratios stable.",
                  machine={"cores": int(cpus), "threads": int(threads), "torch": torch_version,
                           "load_average": float(load)},
                  date=None, command="convzoo compare",
                  provenance="converted from `compare_two_busy_loops.txt` (commit 715fc2a, 2026-11-29); the CPU "
                             "model was not recorded. " + t["below"][-1] + ".")


COMPARE_DESCRIPTION = (
    "`convzoo compare` (= `make run`): every family on one layer shape (batch 8, 64 → 128, 56², 3×3, fp32), timed "
    "round-robin with 'standard' (baseline forward, family forward, baseline forward+backward, family "
    "forward+backward per round, the order alternating). Each family's fastest round is divided by the baseline's "
    "fastest in the same rounds and scaled by the baseline's fastest round of the whole run: other processes only "
    "add time, so the fastest round is the undisturbed one, and rows timed at different loads stay comparable. "
    "Rows whose per-round ratios spread over 25 % (or with forward+backward below forward) are marked `!`.")


def cuda_bench() -> None:
    raw = json.loads((RESULTS / "cuda" / "bench.json").read_text())
    m = raw["machine"]
    n, c_in, size, _, c_out, k = raw["shape"]
    from convzoo.perf.bench import BENCH_DESCRIPTION

    write_results(RESULTS / "cuda_bench.json", "Every family on one layer shape (NVIDIA H200)",
                  bench_results_tables(raw["summary"], raw["families"], m["gemm_peak_gmacs"], m["copy_bandwidth_gbs"]),
                  description=BENCH_DESCRIPTION + f" Layer {c_in}→{c_out}, {k}×{k}, batch {n}, {size}², float32 "
                  "(cuDNN's default TF32 for convs).",
                  machine={"gpu": m["gpu"], "cudnn": m["cudnn"], "threads": m["threads"], "torch": m["torch"],
                           "gemm_peak_gmacs": round(m["gemm_peak_gmacs"], 1),
                           "copy_bandwidth_gbs": round(m["copy_bandwidth_gbs"], 1)},
                  date=None, command=f"convzoo bench --device cuda -o benchmarks/results/cuda_bench.json "
                                     "--plot benchmarks/results/cuda_bench.png",
                  figures=[("cuda_bench.png", "MAC ratio against measured speed-up, per family (H200)")],
                  data={"shape": raw["shape"], "summary": raw["summary"], "families": raw["families"]},
                  provenance="converted from `cuda/bench.json` (commit 4c626cf, 2026-11-30); the run's logs stay in "
                             "`benchmarks/results/cuda/`.")


def cuda_compare() -> None:
    text = (RESULTS / "cuda" / "compare.log").read_text()
    t = rich_tables(text)[0]
    threads, torch_version, gpu = re.search(r"on cuda, (\d+) thread\(s\), torch (\S+), (.+)$", text, re.M).groups()
    write_results(RESULTS / "cuda_compare.json", "`convzoo compare` on the GPU (NVIDIA H200)",
                  [table_from_cells("Every family against 'standard', timed round-robin with it (NCHW)", t["header"],
                                    t["rows"], " ".join(t["below"][:-1]))],
                  description=COMPARE_DESCRIPTION + " On CUDA the times are CUDA events.",
                  machine={"gpu": gpu.strip(), "threads": int(threads), "torch": torch_version}, date=None,
                  command="convzoo compare --device cuda",
                  provenance="converted from `cuda/compare.log` (commit 98670a1, 2026-11-29). " + t["below"][-1] + ".")


def _dynamic_runs(text: str) -> list[dict[str, Any]]:
    """The runs of bench_dynamic.py's printout: threads, torch, per pass the candidates and the ratios, profiles."""
    runs = []
    for block in re.split(r"\n(?==== )", text):
        label = block.splitlines()[0][4:].strip() if block.startswith("=== ") else ""
        head = re.search(r"threads (\d+), torch (\S+), load average \(([\d.]+)", block)
        run = {"label": label, "threads": int(head.group(1)), "torch": head.group(2).rstrip(","),
               "load": round(float(head.group(3)), 2), "passes": [], "profile": []}
        for part in re.split(r"\n(?=dynamic b)", block)[1:]:
            title = re.match(r"dynamic b(\d+) (\d+)->(\d+) (\d+)x\d+ 3x3, (fwd\+bwd|fwd); static conv's best format: "
                             r"(\w+); auto chose (\{.*?\})", part)
            rows = [[m[0].strip(), float(m[1]), float(m[2]), int(m[3]), float(m[4])] for m in re.findall(
                r"^  (.+?)\s+median\s+([\d.]+) ms\s+min\s+([\d.]+)\s+\(n=(\d+)\)\s+/ static \(\w+\) = ([\d.]+)",
                part, re.M)]
            ratios = [[m[0], float(m[1]), float(m[2])] for m in re.findall(
                r"dynamic auto \((\w+)\) / static \(\w+\): ([\d.]+) \(medians\), ([\d.]+) \(minima", part)]
            run["passes"].append({"shape": title.groups()[:4], "pass": title.group(5), "best": title.group(6),
                                  "chosen": ast.literal_eval(title.group(7)), "rows": rows, "ratios": ratios})
        for m in re.findall(r"profile (fwd\+bwd|fwd) (dynamic auto|static conv)(?: \[(\w+)\])?: ([\d.]+) ms a call; "
                            r"self ms \(calls\) per op: (.+)", block):
            run["profile"].append([m[0], m[1], m[2], float(m[3]), m[4].strip()])
        runs.append(run)
    return runs


def _dynamic_tables(run: dict[str, Any], suffix: str, machine: dict[str, Any]) -> list[Table]:
    ratios = [[p["pass"], fmt, p["chosen"][fmt], a, b] for p in run["passes"] for fmt, a, b in p["ratios"]]
    tables = [Table(f"Dynamic conv / static conv in its best format (target ≤ 1.3){suffix}",
                    ["pass", "input format", "form 'auto' chose", ("medians", ".2f"), ("fastest rounds", ".2f")],
                    ratios, "The static conv's best format is chosen by medians for the first ratio and by fastest "
                    "rounds for the second.", machine)]
    for p in run["passes"]:
        n, c, _, h = p["shape"]
        tables.append(Table(f"Dynamic conv b{n} {c}→{c} {h}² 3×3, {p['pass']}: every candidate{suffix}",
                            ["candidate", ("median ms", ".2f"), ("fastest ms", ".2f"), "runs",
                             (f"median / static conv ({p['best']})", ".2f")], p["rows"],
                            f"The static conv's best format (by medians): {p['best']}.", machine))
    if run["profile"]:
        tables.append(Table(f"Where the time goes: torch.profiler's self time per op, channels_last, per call{suffix}",
                            ["pass", "module", "form", ("ms a call", ".2f"),
                             "self ms (calls) per op, the nine largest"], run["profile"], "", machine))
    return tables


def bench_dynamic() -> None:
    description = script("bench_dynamic").DESCRIPTION
    run, = _dynamic_runs((RESULTS / "dynamic.txt").read_text())
    write_results(RESULTS / "bench_dynamic.json", "Dynamic conv against a static conv",
                  _dynamic_tables(run, "", {}), description=description,
                  machine={"threads": run["threads"], "torch": run["torch"], "load_average": run["load"]}, date=None,
                  command="python benchmarks/bench_dynamic.py",
                  provenance="converted from `dynamic.txt` (commit 2fb8b77, 2026-11-29); the CPU model was not "
                             "recorded.")
    runs = _dynamic_runs((RESULTS / "dynamic_dyn.txt").read_text())
    tables = []
    for run, suffix in zip(runs, (" — 2 threads, with --profile", " — 1 thread", " — a second 2-thread run")):
        tables += _dynamic_tables(run, suffix, {"threads": run["threads"], "load_average": run["load"]})
    write_results(RESULTS / "bench_dynamic-profile.json", "Dynamic conv against a static conv: profile, one thread",
                  tables, description=description, machine={"torch": runs[0]["torch"]}, date=None,
                  command="python benchmarks/bench_dynamic.py --profile; then --threads 1; then again",
                  provenance="converted from `dynamic_dyn.txt` (commits d2d1373 and 5e89db6, 2026-11-29): three runs, "
                             "each table's header gives its threads and load; the CPU model was not recorded.")


def hetconv_sweeps() -> None:
    raw = json.loads((RESULTS / "hetconv_sweep.json").read_text())
    m = raw["machine"]
    write_results(RESULTS / "hetconv_sweep.json", "HetConv at every shape: the layer against the masked dense conv",
                  [sweep_results_table(raw["rows"])], description=SWEEP_DESCRIPTION,
                  machine={"threads": m["threads"], "torch": m["torch"],
                           "load_average": round(m["load_average"][0][0], 2),
                           "load_average_after": round(m["load_average"][1][0], 2)},
                  date=None, command="convzoo bench hetconv --sweep --sweep-json benchmarks/results/hetconv_sweep.json",
                  data={k: raw[k] for k in ("max_ratio", "max_ratio_of_minima", "rows")},
                  provenance="converted from `hetconv_sweep.json` (commit 1e2da48, 2026-11-29); the CPU model was not "
                             "recorded.")
    text = (RESULTS / "hetconv_sweep_1thread.txt").read_text()
    t = rich_tables(text)[0]
    threads, torch_version, load = re.search(r"cpu, (\d+) thread\(s\), torch (\S+), load \(([\d.]+)", text).groups()
    rows = []
    for shape, fmt, step, md, gr, cz, chosen, ratio, minima in t["rows"]:
        rows.append({"shape": shape, "memory_format": fmt, "backward": step == "fwd+bwd", "masked_dense_ms": float(md),
                     "grouped_ms": float(gr), "convzoo_ms": float(cz), "chosen": chosen, "ratio": float(ratio),
                     "ratio_of_minima": float(minima)})
    write_results(RESULTS / "hetconv_sweep_1thread.json",
                  "HetConv at every shape, one thread: the layer against the masked dense conv",
                  [sweep_results_table(rows)], description=SWEEP_DESCRIPTION,
                  machine={"threads": int(threads), "torch": torch_version, "load_average": round(float(load), 2)},
                  date=None, command="convzoo bench hetconv --sweep --threads 1", data={"rows": rows},
                  provenance="converted from `hetconv_sweep_1thread.txt` (commit 3de9a5e, 2026-11-29; the printed "
                             "table, 3 decimals); the CPU model was not recorded.")


def kernels() -> None:
    raw = json.loads((RESULTS / "kernels-amd-epyc-avx512.json").read_text())
    m = raw["machine"]
    bench = script("bench_kernels")
    rows = []
    for d in raw["rows"]:
        row = bench.Row(d["family"], d["case"], d["format"],
                        {k: d[k] for k in ("bound", "kernel_fwd", "kernel_fwd_bwd", "native_fwd", "native_fwd_bwd")},
                        {"fwd": d["native_fwd_form"], "fwd_bwd": d["native_fwd_bwd_form"]})
        rows.append(row)
    simd = " ".join(f for f in m["flags"].split() if f.startswith(("avx", "fma", "sse4", "amx", "f16c")))
    write_results(RESULTS / "kernels-amd-epyc-avx512.json", "convzoo's CPU kernels against the copy bound",
                  [bench.results_table(rows)], description=bench.DESCRIPTION,
                  machine={"cpu": m["cpu"], "cpu_flags": simd, "cpu_capability": m["capability"],
                           "threads": int(m["threads"]), "torch": m["torch"], "python": m["python"],
                           "numba": m["numba"], "load_average": float(m["load"])},
                  date=m["date"], command="python benchmarks/bench_kernels.py", data={"rows": raw["rows"]},
                  provenance="converted from `kernels-amd-epyc-avx512.json` (commit fac2d59).")


def kernels_irregular() -> None:
    raw = json.loads((RESULTS / "kernels_irregular" / "provisional_1thread_cputime.json").read_text())
    m = raw["machine"]
    bench = script("bench_kernels_irregular")
    write_results(RESULTS / "kernels_irregular-provisional-1thread-cputime.json",
                  "Irregular families: the kernels against the forms they replace (provisional, CPU time)",
                  [bench.results_table(raw["rows"])], description=bench.DESCRIPTION,
                  machine={"cpu": m["cpu"], "cpu_flags": m["simd"], "cpu_capability": m["capability"],
                           "threads": m["threads"], "torch": m["torch"], "numba": m["numba"],
                           "load_average": m["load"], "clock": m["clock"]},
                  date=None, command="python benchmarks/bench_kernels_irregular.py --threads 1 --clock cpu",
                  data={"rows": raw["rows"]},
                  provenance="converted from `kernels_irregular/provisional_1thread_cputime.json` (commit e29bcdd, "
                             "2026-12-05): provisional, one thread, process CPU time on a shared machine.")


def roofline() -> None:
    raw = json.loads((RESULTS / "roofline.json").read_text())
    m = raw["machine"]
    text = (RESULTS / "roofline.txt").read_text()
    load, cpus = re.search(r"load average ([\d.]+) on (\d+) CPU", text).groups()
    results = [FamilyBench.from_dict(d) for d in raw["roofline"]]
    peers = [FamilyBench.from_dict(d) for d in raw["peers"]]
    tables = [roofline_results_table([r.summary(m["gemm_peak_gmacs"]) for r in results]),
              peers_results_table([r.summary(m["gemm_peak_gmacs"]) for r in peers])]
    write_results(RESULTS / "roofline.json", "Memory-bound families on the roofline, and the peers", tables,
                  description=script("bench_roofline").DESCRIPTION,
                  machine={"cores": int(cpus), "threads": m["threads"], "torch": m["torch"],
                           "gemm_peak_gmacs": round(m["gemm_peak_gmacs"], 1),
                           "copy_bandwidth_gbs": round(m["copy_bandwidth_gbs"], 1), "load_average": float(load)},
                  date=None, command="python benchmarks/bench_roofline.py",
                  data={"roofline": raw["roofline"], "peers": raw["peers"]},
                  provenance="converted from `roofline.json` and `roofline.txt` (commit 4c626cf, 2026-11-30); the "
                             "CPU model was not recorded.")


def roofline_roof() -> None:
    text = (RESULTS / "roofline_roof.txt").read_text()
    t = rich_tables(text)[0]
    torch_version, threads, peak, bw, load = re.search(
        r"torch (\S+), (\d+) thread\(s\); GEMM peak ([\d.]+) GMAC/s, copy bandwidth ([\d.]+) GB/s; load average at "
        r"start ([\d.]+)", text).groups()
    header = ["family", "format", "fwd ms", "bound ms", "fwd / bound", "fastest / bound", "fwd+bwd ms",
              "fwd+bwd bound ms", "fwd+bwd / bound", "fwd+bwd fastest / bound", "path"]
    write_results(RESULTS / "roofline_roof.json", "Memory-bound families on the roofline (an earlier, loaded run)",
                  [table_from_cells("Roofline: each family against its bound", header, t["rows"], " ".join(t["below"]))],
                  description=script("bench_roofline").DESCRIPTION,
                  machine={"threads": int(threads), "torch": torch_version, "gemm_peak_gmacs": float(peak),
                           "copy_bandwidth_gbs": float(bw), "load_average": float(load)},
                  date=None, command="python benchmarks/bench_roofline.py --skip-peers",
                  provenance="converted from `roofline_roof.txt` (commit 33b154b, 2026-11-29, taken on branch roof at "
                             "a load average of 6–7 by its commit message); the CPU model was not recorded.",
                  superseded_by="roofline")


def sweep_mnist1d() -> None:
    tool = script("sweep_results")
    rows = json.loads((RESULTS / "sweep_mnist1d" / "sweep.json").read_text())
    write_results(RESULTS / "sweep_mnist1d.json", "MNIST-1D: accuracy against cost, seven families × five seeds",
                  [tool.sweep_table(rows)],
                  description=tool.DESCRIPTION + "\n\nMNIST-1D (4000 / 1000 sequences of length 40), the 1-D CNN at "
                  "width 0.25, 10 epochs, batch 32, SGD lr 0.05, seeds 0–4; 35 trials on 2 CPU cores with "
                  "`--workers 2 --trial-threads 1`. Written before the sweep recorded each trial's environment "
                  "and before the logit-scale intervals: its intervals are symmetric Student-t intervals.",
                  machine=None, date=None,
                  command="convzoo sweep --data mnist1d --conv standard,dilated,depthwise_separable,grouped,dynamic,"
                          "depthwise,pointwise --seeds 5 --epochs 10 --workers 2 --trial-threads 1 "
                          "--out benchmarks/results/sweep_mnist1d",
                  figures=[("sweep_mnist1d/sweep_pareto.png",
                            "Accuracy against MACs and against latency, with the Pareto front")],
                  data={"rows": rows},
                  provenance="converted from `sweep_mnist1d/sweep.json` (commit d416e9d, 2026-11-29); the sweep's own "
                             "files stay in `benchmarks/results/sweep_mnist1d/`.")


if __name__ == "__main__":
    for convert in (bench_all, bench_all_new_families, compare_busy, cuda_bench, cuda_compare, bench_dynamic,
                    hetconv_sweeps, kernels, kernels_irregular, roofline, roofline_roof, sweep_mnist1d):
        convert()
        print("converted:", convert.__name__)
