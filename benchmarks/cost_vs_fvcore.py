"""`convzoo cost` vs fvcore's FlopCountAnalysis on torchvision resnet50, input (1, 3, 224, 224): time and conv MACs.

    .venv/bin/pip install -e '.[peers]' && .venv/bin/python benchmarks/cost_vs_fvcore.py

fvcore counts one "flop" per multiply-add (i.e. MACs) for conv and linear layers; both are compared on the conv
layers (and in total). Times are medians of 3 calls each, side by side in one run.
"""

from __future__ import annotations

import statistics
import time

import torch
import torchvision

from convzoo import cost


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


if __name__ == "__main__":
    main()
