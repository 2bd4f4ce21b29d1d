"""Speed-up of structural re-parameterisation: multi-branch (training-time) vs fused (one conv per block).

Times, round-robin in one run (``measure_interleaved``, so machine load hits both alike), the eval-mode forward of
RepVGG-A0 and of stacks of ACNet / large-kernel blocks before and after ``convzoo.reparameterize``, checks the
outputs agree, and prints params / MACs / latency ratios.

    python benchmarks/reparameterize.py [--batch 8] [--size 224] [--min-time 2] [--threads N] [--device cuda]
        [--out benchmarks/results/reparameterize.json]

The results file is in the format of ``convzoo.perf.results`` (rendered by the docs site).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

import convzoo as cz
from convzoo.perf.results import Table, machine_info, write_results

DESCRIPTION = (
    "Structural re-parameterisation: the eval-mode forward of RepVGG-A0 and of stacks of ACNet and large-kernel "
    "(RepLK) blocks before and after `convzoo.reparameterize` (multi-branch training form vs one fused conv per "
    "block), timed round-robin in one run (`measure_interleaved`), with the outputs checked to agree.")


def _random_bn_(model: nn.Module) -> nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model.eval()


def models(size: int) -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    acnet = nn.Sequential(*[nn.Sequential(cz.ACNetConv2d(64, 64, 3), nn.ReLU()) for _ in range(4)])
    large = nn.Sequential(*[nn.Sequential(cz.LargeKernelConv2d(128, 128, 31, small_kernel=5), nn.ReLU())
                            for _ in range(2)])
    return {"RepVGG-A0": (cz.models.repvgg_a0(), (3, size, size)),
            "ACNet 4× 64→64 3×3": (acnet, (64, size // 4, size // 4)),
            "RepLK 2× dw 31×31+5×5, 128 ch": (large, (128, size // 8, size // 8))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CUDA events timing)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reparameterize.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {args.device}, threads {torch.get_num_threads()}, batch {args.batch}, fp32, "
          "eval mode")
    print(f"{'model':32} {'params before→after':>24} {'MACs before→after':>28} {'ms before':>10} {'ms after':>9} "
          f"{'speed-up':>8} {'max rel err':>11}")
    rows = []
    for name, (model, chw) in models(args.size).items():
        model = _random_bn_(model).to(args.device)
        shape = (args.batch, *chw)
        fused, report = cz.reparameterize(model, shape, time=True, min_time=args.min_time)
        x = torch.randn(shape, device=args.device)
        with torch.no_grad():
            y, z = model(x), fused(x)
        error = float((y - z).abs().max() / y.abs().max())
        print(f"{name:32} {report.params_before / 1e6:10.2f}M→{report.params_after / 1e6:.2f}M "
              f"({report.params_after / report.params_before:.3f}×) "
              f"{report.macs_before / 1e9:8.3f}G→{report.macs_after / 1e9:.3f}G "
              f"({report.macs_after / report.macs_before:.3f}×) {report.latency_before_ms:10.2f} "
              f"{report.latency_after_ms:9.2f} {report.speedup:7.2f}× {error:11.1e}")
        rows.append([name, report.params_before, report.params_after, report.macs_before, report.macs_after,
                     report.latency_before_ms, report.latency_after_ms, report.speedup, error])
    table = Table(f"Multi-branch against fused, batch {args.batch}, fp32, eval mode",
                  ["model", "params before", "params after", "MACs before", "MACs after", ("ms before", ".2f"),
                   ("ms after", ".2f"), ("speed-up", "{:.2f}×"), ("max rel. error", ".1e")], rows,
                  "Latencies: medians of runs interleaved round-robin; max rel. error = max |before − after| / "
                  "max |before|.")
    write_results(args.out, f"Structural re-parameterisation: speed-up of the fused models ({args.device})", [table],
                  description=DESCRIPTION, machine=machine_info(args.device))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
