"""Where a convzoo layer's time goes on a GPU at the bench shape: torch.profiler over a few forward calls of each
family named (default: the ones with peers), self CPU time per op, and the host syncs (aten::item,
_local_scalar_dense, cudaStreamSynchronize) that stall the launch queue. Usage:
python benchmarks/profile_cuda_overhead.py [names...] [--device cuda] [--backward]"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from convzoo.perf.compare import build_for_compare

SYNCS = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
         "cudaMemcpy", "aten::nonzero", "aten::is_nonzero")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["mixconv", "dynamic", "deformable", "condconv", "standard"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backward", action="store_true")
    parser.add_argument("--rows", type=int, default=12)
    args = parser.parse_args()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    for name in args.names:
        module, shape = build_for_compare(name, 8, 64, 128, 56, 3, torch.float32, args.device)
        x = torch.randn(shape, device=args.device, requires_grad=args.backward)

        def step() -> None:
            if args.backward:
                module(x).sum().backward()
            else:
                with torch.no_grad():
                    module(x)

        for _ in range(5):
            step()
        torch.cuda.synchronize() if args.device.startswith("cuda") else None
        with profile(activities=activities) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize() if args.device.startswith("cuda") else None
        averages = prof.key_averages()
        syncs = {e.key: e.count // 5 for e in averages if any(s in e.key for s in SYNCS)}
        ops = sum(e.count for e in averages if e.key.startswith("aten::")) // 5
        print(f"\n=== {name} {'fwd+bwd' if args.backward else 'fwd'}: {ops} aten ops per call; syncs per call {syncs}")
        print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=48))


if __name__ == "__main__":
    main()
