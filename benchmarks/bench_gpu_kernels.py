"""convzoo's Triton kernels against what they replace and against the GPU peers, side by side in one process (the
GPU acceptance of issue 24). CUDA events; every candidate runs once per round, the rounds in ``round_order`` (each
candidate first, last and right after each other one alike); medians and fastest rounds; ratio = other / convzoo
(> 1: convzoo faster).

- deformable v2: the Triton implicit GEMM vs torchvision's ``deform_conv2d`` CUDA kernel — the op alone on the same
  x, offsets, masks and weight, and the whole layer (offset conv + op) vs the layer's torchvision peer;
- MixConv, dynamic conv, CondConv: the layer (its FormChoice's pick) vs timm's ``MixedConv2d`` / ``CondConv2d``;
- DCNv3, involution, depthwise m = 2, ODConv: the layer with its Triton form vs the same layer with its PyTorch
  form, and the layer as it runs by default (FormChoice's pick, named in the row).

Shape: C_in 64 → 128 (involution: 64 → 64), 3×3, 56², fp32 with torch's default TF32 settings, batch 8 (and 32
for deformable v2; ``--every-batch`` for all), forward and forward + backward, NCHW and channels_last. The results
file (the results format of ``convzoo.perf.results``: the table below, each side in its faster memory format, and
the raw rows under ``data``) is rewritten after each family, so a run cut by its time limit keeps what it measured.
Usage (a CUDA machine; benchmarks/run_cuda.sh runs it):

    python benchmarks/bench_gpu_kernels.py [--batches 8 32] [--rounds 15] [-o benchmarks/results/cuda_kernels.json]
    TRITON_INTERPRET=1 python benchmarks/bench_gpu_kernels.py --device cpu --batches 1 --channels 4 8 --size 6 \
        --rounds 1 -o /tmp/kernels.json     # a dry run of the same steps on the CPU (Triton's interpreter)
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from convzoo.perf.compare import build_for_compare
from convzoo.perf.results import Table, machine_info, write_results
from convzoo.perf.timing import configure, make_inputs, round_robin

DESCRIPTION = (
    "convzoo's Triton kernels against what they replace and against the GPU peers, side by side in one process: "
    "deformable v2 (the Triton implicit GEMM vs torchvision's `deform_conv2d` CUDA kernel, the op alone and the "
    "whole layer), MixConv, dynamic conv and CondConv (the layer vs timm's `MixedConv2d` / `CondConv2d`), DCNv3, "
    "involution, depthwise m = 2 and ODConv (the layer with its Triton form vs its PyTorch form, and as it runs by "
    "default). CUDA events; every candidate once per round, rounds in `round_order`; medians and fastest rounds; "
    "ratio = other / convzoo (> 1: convzoo faster).")

Fn = Callable[[torch.Tensor], torch.Tensor]
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def _peers(module: torch.nn.Module) -> dict[str, Fn]:
    return {label: fn for kind, label, fn in module.native_alternatives() if kind == "peer"}


def _deform_op(module: Any, x: torch.Tensor) -> tuple[dict[str, Fn], list[torch.Tensor]]:
    """The deformable op alone: the same offsets (N(0, 1) pixels), masks and weight for both kernels."""
    from torchvision.ops import deform_conv2d as torchvision_deform

    from convzoo.kernels.triton_deform import deform_conv2d as triton_deform

    g = torch.Generator(device=x.device).manual_seed(0)
    n, _, h, w = x.shape
    taps = module.num_taps
    offset = torch.randn(n, 2 * taps, h, w, device=x.device, generator=g).requires_grad_()
    mask = torch.rand(n, taps, h, w, device=x.device, generator=g).requires_grad_()
    weight, bias = module.weight, module.bias
    fns = {"convzoo Triton (op)": lambda t: triton_deform(t, offset, weight, bias, (1, 1), (1, 1), (1, 1), mask),
           "torchvision deform_conv2d (op)": lambda t: torchvision_deform(t, offset, weight, bias, 1, 1, 1, mask)}
    return fns, [offset, mask, weight, bias]


def _with_forms(module: Any, triton: Fn, pytorch: Fn, pytorch_label: str) -> dict[str, Fn]:
    return {"convzoo Triton form": triton, f"convzoo {pytorch_label} form": pytorch, "convzoo layer (auto)": module}


def comparisons(name: str, module: Any) -> dict[str, Fn]:
    """Candidates for one family: the first is convzoo's, compared with each of the others."""
    if name == "deformable_v2":
        module.implementation = "triton"
        return {"convzoo layer (Triton)": module, **_peers(module)}
    if name in ("mixconv", "dynamic", "condconv"):
        return {"convzoo layer (auto)": module, **_peers(module)}
    if name == "involution":
        return _with_forms(module, lambda x: module._triton_involve(x, module.generator(x)),
                           lambda x: module.involve(x, module.generator(x)), "strided views")
    if name == "dcnv3":
        return _with_forms(module, lambda x: module.project_out(module._triton_sample(module.project_in(x),
                                                                                      module.branch(x))),
                           lambda x: module.project_out(module.sample(module.project_in(x), module.branch(x))),
                           "grid_sample")
    if name == "depthwise_m2":
        return _with_forms(module, lambda x: module.run_form("triton", x), lambda x: module.run_form("native", x),
                           "native grouped conv")
    if name == "odconv":
        from convzoo.layers.patches import batch_folded_conv
        from convzoo.kernels.triton_per_sample import per_sample_conv

        def form(conv: Callable[..., torch.Tensor]) -> Fn:
            def run(x: torch.Tensor) -> torch.Tensor:
                a_c, a_f, a_s, a_w = module.attention.split(module.attention(x))
                y = conv(x * a_c[:, :, None, None], module.aggregate(a_s, a_w), None, module.stride,
                         module.padding_pairs, module.dilation, module.groups)
                return y * a_f[:, :, None, None] + module.bias.reshape(-1, 1, 1)
            return run

        return _with_forms(module, form(per_sample_conv), form(batch_folded_conv), "batch-folded conv")
    raise ValueError(name)


def _choice(name: str) -> Any:
    """The FormChoice that picks the family's form (what 'auto' ran is read from it after the rounds)."""
    from convzoo.layers import conv, dcnv3, deformable, dynamic, involution, mixconv, patches

    return {"deformable_v2": deformable._CHOICE, "dcnv3": dcnv3._CHOICE, "involution": involution._CHOICE,
            "dynamic": dynamic._CHOICE, "condconv": patches._CHOICE, "odconv": patches._CHOICE,
            "depthwise_m2": conv._CHOICE}.get(name, getattr(mixconv, "_CHOICE", None))  # depthwise: ConvNd's


def _build(name: str, batch: int, channels: tuple[int, int], size: int, device: str) -> tuple[Any, tuple[int, ...]]:
    if name == "depthwise_m2":
        import convzoo

        return (convzoo.DepthwiseConv2d(channels[0], 2 * channels[0], 3, padding=1).to(device),
                (batch, channels[0], size, size))
    return build_for_compare(name, batch, *channels, size, 3, torch.float32, device)


def run(names: list[str], batches: list[int], rounds: int, device: str, channels: tuple[int, int] = (64, 128),
        size: int = 56, every_batch: bool = False, save: Callable[[list[dict[str, Any]]], None] = lambda rows: None
        ) -> list[dict[str, Any]]:
    """The rows of every comparison; deformable v2 at every batch of ``batches``, the others at the first one only
    unless ``every_batch`` (the issue asks for batches 8 and 32 for deformable). ``save(rows)`` after each family,
    so a run stopped by its time limit keeps what it measured."""
    rows: list[dict[str, Any]] = []
    for name in names:
        for batch in batches if every_batch or name == "deformable_v2" else batches[:1]:
            module, shape = _build(name, batch, channels, size, device)
            for fmt, memory_format in FORMATS.items():
                module = module.to(memory_format=memory_format)
                for backward in (False, True):
                    inputs = make_inputs(shape, 3, device, memory_format=memory_format, requires_grad=backward)
                    params = list(module.parameters())
                    groups = [("layer", comparisons(name, module))]
                    if name == "deformable_v2":
                        op, tensors = _deform_op(module, inputs[0])
                        groups.append(("op", op))
                        params += tensors
                    for level, fns in groups:
                        started = time.perf_counter()
                        choice = _choice(name)
                        if choice is not None:
                            choice.clear()
                        timings = round_robin({k: (f, inputs) for k, f in fns.items()}, backward=backward,
                                              params=params, rounds=rounds)
                        ours, *others = fns
                        picked = sorted(set(choice.cache.values())) if choice is not None else []
                        chosen = "auto picked " + "/".join(picked) if picked and level == "layer" else ""
                        for other in others:
                            a, b = timings[ours], timings[other]
                            rows.append({"family": name, "level": level, "batch": batch, "format": fmt,
                                         "pass": "fwd+bwd" if backward else "fwd", "convzoo": ours, "other": other,
                                         "convzoo_ms": a.median_ms, "other_ms": b.median_ms,
                                         "convzoo_min_ms": a.min_ms, "other_min_ms": b.min_ms,
                                         "ratio": b.median_ms / a.median_ms, "ratio_min": b.min_ms / a.min_ms,
                                         "forward_path": chosen})
                            r = rows[-1]
                            print(f"{name:13s} {level:5s} b{batch:<3d} {fmt:13s} {r['pass']:7s} {ours} "
                                  f"{a.median_ms:.3f} ms vs {other} {b.median_ms:.3f} ms: ratio {r['ratio']:.2f} "
                                  f"(min {r['ratio_min']:.2f}) [{time.perf_counter() - started:.1f}s]", flush=True)
            del module
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        save(rows)
    return rows


def target(family: str, other: str) -> float | None:
    """The acceptance ratio (other / convzoo) issue 24 sets for a comparison, or None."""
    if family == "deformable_v2" and other.startswith("torchvision"):
        return 1.0
    if family in ("mixconv", "dynamic", "condconv") and other.startswith("timm"):
        return 1.0
    if family in ("dcnv3", "involution") and other.endswith(" form") and "Triton" not in other:
        return 2.0
    return None


def kernels_table(rows: list[dict[str, Any]], shape: list[int], rounds: int) -> Table:
    """One line per (family, level, convzoo side, other side, batch, pass), each side in its faster memory format;
    ratio = other / convzoo of the medians and of the fastest rounds, and the issue's target where it sets one."""
    c_in, c_out, size, k = shape
    best: dict[tuple, dict] = {}
    for row in rows:
        key = (row["family"], row["level"], row["convzoo"], row["other"], row["batch"], row["pass"])
        entry = best.setdefault(key, {"convzoo": (math.inf, "", math.inf), "other": (math.inf, "", math.inf),
                                      "path": row.get("forward_path", "")})
        for side in ("convzoo", "other"):
            if row[f"{side}_ms"] < entry[side][0]:
                entry[side] = (row[f"{side}_ms"], row["format"], row[f"{side}_min_ms"])
    body = []
    for (family, level, ours, other, batch, step), entry in best.items():
        (a, fa, amin), (b, fb, bmin) = entry["convzoo"], entry["other"]
        goal = target(family, other)
        verdict = "" if goal is None else f"≥ {goal:.1f}: {'met' if b / a >= goal else 'NOT met'}"
        ours = ours + f" — {entry['path']}" if entry["path"] and "(auto)" in ours else ours
        body.append([family, ours, other, batch, step, f"{a:.3f} ({fa})", f"{b:.3f} ({fb})", b / a, bmin / amin,
                     verdict])
    return Table(f"Triton kernels against what they replace and the peers ({c_in}→{c_out}, involution "
                 f"{c_in}→{c_in}, {k}×{k}, {size}²)",
                 ["family", "convzoo", "vs", "batch", "pass", "convzoo ms (fmt)", "other ms (fmt)", ("ratio", ".2f"),
                  ("ratio (fastest)", ".2f"), "target"], body,
                 f"fp32 with torch's default TF32; CUDA events, {rounds} round-robin rounds; medians in ms, each side "
                 "in its faster memory format (NCHW or channels_last); ratio = other / convzoo (> 1: convzoo "
                 "faster), of the medians and of the fastest rounds.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", nargs="*", default=["deformable_v2", "dcnv3", "involution", "dynamic", "condconv",
                                                       "mixconv", "odconv", "depthwise_m2"])
    parser.add_argument("--batches", nargs="*", type=int, default=[8, 32])
    parser.add_argument("--every-batch", action="store_true", help="every family at every batch (default: only "
                        "deformable v2 at all of them, the others at the first)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--channels", nargs=2, type=int, default=[64, 128], metavar=("C_IN", "C_OUT"))
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("-o", "--output", default="benchmarks/results/cuda_kernels.json")
    args = parser.parse_args()
    configure(args.device)
    machine = machine_info(args.device)
    print(f"machine: {machine}", flush=True)
    shape = [*args.channels, args.size, 3]

    def save(rows: list[dict[str, Any]]) -> None:
        if rows:
            write_results(args.output, "convzoo's Triton kernels on the GPU", [kernels_table(rows, shape, args.rounds)],
                          description=DESCRIPTION, machine=machine,
                          data={"rounds": args.rounds, "shape": shape, "rows": rows})

    run(args.names, args.batches, args.rounds, args.device, tuple(args.channels), args.size, args.every_batch, save)
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()
