"""What the first call of a layer on convzoo's numba kernels costs: cold (an empty on-disk cache) and cached (a new
process reading the cache the cold run filled), per layer, forward and backward.

    python benchmarks/bench_compile.py [--out benchmarks/results] [--cases depthwise_nchw,gdc,...]

Results go to ``compile_cost-<cpu>.json`` (tagged with the CPU model and torch's CPU capability).

Each case runs in fresh Python processes with ``NUMBA_CACHE_DIR`` set to a new temporary directory: the first
process compiles (cold), the second and third load what it cached. A process imports torch and convzoo, builds
the layer small (its kernel pinned: ``implementation = "kernel"``), then times its first forward (numba's import
included: convzoo imports it lazily, at the first kernel), the first backward, and a later forward (the steady
state, for scale). A case that runs after another one in the same process would find numba imported and shared
kernels compiled, so every case has its own processes and its own cache. The times are wall-clock seconds on
whatever else the machine is doing (the load average is in the header); compilation is single-threaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from convzoo.perf.results import Table, machine_info, machine_tag, write_results

# name: (what it is, the code that builds `layer` and `x`; the layer's kernel is pinned)
CASES: dict[str, tuple[str, str]] = {
    "depthwise_nchw": ("DepthwiseConv2d(8, 8, 3) on NCHW", "layer = cz.DepthwiseConv2d(8, 8, 3, padding=1); "
                       "x = torch.randn(2, 8, 12, 12)"),
    "depthwise_channels_last": ("DepthwiseConv2d(8, 8, 3) on channels_last",
                                "layer = cz.DepthwiseConv2d(8, 8, 3, padding=1); "
                                "x = torch.randn(2, 8, 12, 12).contiguous(memory_format=torch.channels_last)"),
    "depthwise_m2": ("DepthwiseConv2d(8, 16, 3), multiplier 2, NCHW", "layer = cz.DepthwiseConv2d(8, 16, 3, padding=1); "
                     "x = torch.randn(2, 8, 12, 12)"),
    "gdc": ("GlobalDepthwiseConv2d(8, 8, 7) on NCHW", "layer = cz.GlobalDepthwiseConv2d(8, 8, 7); "
            "x = torch.randn(2, 8, 7, 7)"),
    "flattened": ("FlattenedConv2d(8, 8, 3) on NCHW", "layer = cz.FlattenedConv2d(8, 8, 3, padding=1); "
                  "x = torch.randn(2, 8, 12, 12)"),
    "involution": ("involution (registry default, 8 channels) on NCHW", "layer = cz.build('involution', 8, 8); "
                   "x = torch.randn(2, 8, 12, 12)"),
    "deformable_v2": ("DeformConv2d(8, 8, 3, modulated=True) on NCHW",
                      "layer = cz.DeformConv2d(8, 8, 3, padding=1, modulated=True); x = torch.randn(2, 8, 12, 12)"),
    "dcnv3": ("dcnv3 (registry default, 8 channels) on NCHW", "layer = cz.build('dcnv3', 8, 8); "
              "x = torch.randn(2, 8, 12, 12)"),
}

PROBE = """
import json, time, warnings
import torch
import convzoo as cz
torch.manual_seed(0)
{build}
layer.implementation = "kernel"
x.requires_grad_(True)
t0 = time.perf_counter(); y = layer(x); t1 = time.perf_counter()
y.sum().backward(); t2 = time.perf_counter()
for _ in range(3):
    s = time.perf_counter(); layer(x); steady = time.perf_counter() - s
print(json.dumps({{"forward": t1 - t0, "backward": t2 - t1, "steady": steady}}))
"""


def run_case(build: str, cache: str) -> dict[str, float]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", PROBE.format(build=build)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    args = parser.parse_args()
    names = [n for n in args.cases.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; choose from {list(CASES)}")
    machine = machine_info()
    rows, data = [], {}
    for name in names:
        about, build = CASES[name]
        with tempfile.TemporaryDirectory() as cache:
            cold = run_case(build, cache)
            cached = min((run_case(build, cache) for _ in range(2)), key=lambda r: r["forward"] + r["backward"])
        data[name] = {"cold": cold, "cached": cached}
        rows.append([about, cold["forward"], cold["backward"], cached["forward"], cached["backward"],
                     1e3 * cached["steady"]])
        print(f"{about}: cold {cold['forward']:.2f} + {cold['backward']:.2f} s, cached {cached['forward']:.2f} + "
              f"{cached['backward']:.2f} s", flush=True)
    table = Table("First call of a layer on convzoo's numba kernels, seconds (fresh process each)",
                  ["layer (kernel pinned)", ("cold forward s", ".2f"), ("cold backward s", ".2f"),
                   ("cached forward s", ".2f"), ("cached backward s", ".2f"), ("later forward ms", ".2f")], rows,
                  "cold: an empty NUMBA_CACHE_DIR (compiles; the forward includes numba's import); cached: a new "
                  "process reading what the cold one wrote (the faster of two); later forward: a call after the "
                  "first ones, for scale.")
    path = write_results(os.path.join(args.out, f"compile_cost-{machine_tag(machine)}.json"),
                         "What the first call costs: numba compilation",
                         [table], description=__doc__.split("\n\n", 2)[2], machine=machine, data=data)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
