"""`convzoo cost` vs fvcore's FlopCountAnalysis on torchvision resnet50, input (1, 3, 224, 224): time and conv MACs.

    .venv/bin/pip install -e '.[peers]' && .venv/bin/python benchmarks/cost_vs_fvcore.py [--out PATH]

fvcore counts one "flop" per multiply-add (i.e. MACs) for conv and linear layers; both are compared on the conv
layers (and in total). Times are medians of 3 calls each, side by side in one run. Writes
``benchmarks/results/cost_vs_fvcore.json`` (the results format of ``convzoo.perf.results``).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

from convzoo import cost
from convzoo.perf.results import Table, write_results

DESCRIPTION = (
    "`convzoo cost` against fvcore's `FlopCountAnalysis` on torchvision's ResNet-50 with input (1, 3, 224, 224): "
    "the time each takes (median of 3 calls, side by side in one run) and the conv MACs each counts (fvcore counts "
    "one \"flop\" per multiply-add, i.e. MACs).")


def median_time(fn, runs: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    try:
        from fvcore.nn import FlopCountAnalysis
    except ImportError:
        print("fvcore is not installed (pip install -e '.[peers]'): nothing to compare")
        return
    model = torchvision.models.resnet50(weights=None).eval()
    x = torch.rand(1, 3, 224, 224)
    t_cz, report = median_time(lambda: cost(model, x.shape))

    def fv():
        analysis = FlopCountAnalysis(model, x)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return analysis.total(), analysis.by_operator()

    t_fv, (fv_total, fv_ops) = median_time(fv)
    cz_conv = sum(r.macs for r in report.layers if "Conv" in r.type)
    print(f"resnet50 (1, 3, 224, 224): convzoo cost {t_cz * 1e3:.0f} ms, fvcore FlopCountAnalysis {t_fv * 1e3:.0f} ms "
          f"-> convzoo {t_fv / t_cz:.1f}x faster")
    print(f"conv MACs: convzoo {cz_conv:,}  fvcore {fv_ops.get('conv', 0):,}  equal: {cz_conv == fv_ops.get('conv')}")
    print(f"total MACs: convzoo {report.macs:,} (conv + linear)  fvcore {fv_total:,} (all counted ops: "
          f"{', '.join(f'{k}={v:,}' for k, v in fv_ops.items())})")
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else \
        Path(__file__).parent / "results" / "cost_vs_fvcore.json"
    table = Table("ResNet-50, input (1, 3, 224, 224)", ["tool", ("ms", ".0f"), "conv MACs", "total MACs"],
                  [["convzoo cost", t_cz * 1e3, cz_conv, report.macs],
                   ["fvcore FlopCountAnalysis", t_fv * 1e3, fv_ops.get("conv"), fv_total]],
                  f"convzoo is {t_fv / t_cz:.1f}× faster; conv MACs equal: {cz_conv == fv_ops.get('conv')}. convzoo's "
                  "total counts conv and linear layers; fvcore's every op it counts ("
                  + ", ".join(f"{k} {v:,}" for k, v in fv_ops.items()) + ").")
    write_results(out, "convzoo cost against fvcore", [table], description=DESCRIPTION)
    print(f"results: {out}")


if __name__ == "__main__":
    main()
