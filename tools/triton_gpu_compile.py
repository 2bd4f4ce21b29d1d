"""Compile every Triton kernel convzoo's layers launch for NVIDIA GPUs, on a machine without one, and list what each
needs of the GPU: registers, local memory (spills), shared memory against the GPU's limit per block.

    python tools/triton_gpu_compile.py            # sm_80, sm_86, sm_90; fp32 / fp16 / bf16 / fp64; both formats
    python tools/triton_gpu_compile.py --arch 90 --dtypes float32 --formats contiguous

Triton's interpreter (the CPU tests) runs a kernel's arithmetic but not its compilation for a GPU: tile shapes
``tl.dot`` refuses, half-precision dot operands (the interpreter's kernels take fp32 there), a kernel that needs more
shared memory than a GPU has, register spills. Here every family with a Triton form (found through the layers: the
forms their choices offer) runs forward and backward on CPU tensors with that form pinned, at the bench's channels
(64 → 128, or 64 → 64 where the family requires it; kernel 3; batch 2, 16²: every tile at its largest), and each
kernel launch is compiled by Triton for the target GPU (ptxas included) instead of run: a stand-in driver names the
target, and Triton's launch-time check of shared memory is applied with the target's limit, so the layers'
fewer-stages fallback (``kernels/triton_runtime.launch``) runs as on that GPU. Inputs that require gradients and,
without ``--quick``, inputs that do not (other kernel variants). Prints one row per compiled kernel variant and GPU;
exits 1 when a kernel does not compile, fits the GPU's shared memory at no stage count, or a pinned Triton form
launched nothing. Compiled kernels go to Triton's cache (``TRITON_CACHE_DIR``), so a second run takes seconds.
Must run without ``TRITON_INTERPRET``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from convzoo.kernels import triton_runtime
from convzoo.kernels.triton_runtime import DEFAULT_STAGES

# Shared memory per thread block a kernel may use on each compute capability (bytes; the CUDA C++ Programming Guide's
# table of technical specifications: 163 KB on 8.0, 99 KB on 8.6 and 8.9, 227 KB on 9.0).
SHARED_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
SHAPE = dict(batch=2, in_channels=64, out_channels=128, size=16, kernel_size=3)


@dataclass
class Variant:
    """One compiled kernel variant on one GPU: its resources and the families that launched it."""

    kernel: str
    arch: int
    dtype: str
    stages: int
    shared: int
    registers: int = -1
    local: int = -1
    fits: bool = True
    families: set[str] = field(default_factory=set)


class CompileOnlyDriver:
    """Triton's driver interface as far as compiling needs it: a device (named after the target), stream 0 and the
    target GPU. Launching is never reached: ``JITFunction.run`` is replaced while it is active."""

    def __init__(self, arch: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self) -> str:
        return f"compile-only-sm_{self.target.arch}"

    def get_current_stream(self, device: Any = None) -> int:
        return 0

    def get_current_target(self) -> Any:
        return self.target

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")


class Recorder:
    """Replaces ``JITFunction.run`` while active: each launch compiles the kernel for the driver's target instead of
    running it, records the variant, and raises Triton's ``OutOfResources`` where it needs more shared memory than
    the target has (as Triton's launch does on that GPU)."""

    def __init__(self) -> None:
        self.variants: dict[tuple[int, str], Variant] = {}  # (arch, compiled hash) → variant
        self.failures: list[str] = []
        self.family = ""
        self.launches = 0

    @contextmanager
    def compiling_for(self, arch: int) -> Iterator[None]:
        import triton
        from triton.runtime.jit import JITFunction

        original = JITFunction.run
        recorder = self

        def run(kernel: Any, *args: Any, grid: Any, warmup: bool, **kwargs: Any) -> Any:
            name = f"{kernel.fn.__module__.rsplit('.', 1)[-1]}.{kernel.fn.__name__}"
            recorder.launches += 1
            try:
                compiled = original(kernel, *args, grid=grid, warmup=True, **kwargs)
            except Exception as exc:
                recorder.failures.append(f"sm_{arch} {name} ({recorder.family}): {type(exc).__name__}: "
                                         f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}")
                raise
            limit = SHARED_LIMIT[arch]
            variant = recorder.variants.get((arch, compiled.hash))
            if variant is None:
                dtype = next((str(a.dtype).removeprefix("torch.") for a in args if isinstance(a, torch.Tensor)), "")
                variant = Variant(name, arch, dtype, kwargs.get("num_stages", DEFAULT_STAGES), compiled.metadata.shared,
                                  fits=compiled.metadata.shared <= limit)
                variant.registers, variant.local = resources(compiled.asm["cubin"])
                recorder.variants[(arch, compiled.hash)] = variant
            variant.families.add(recorder.family)
            if not variant.fits:
                raise triton.OutOfResources(compiled.metadata.shared, limit, "shared memory")
            return compiled

        with compile_only(CompileOnlyDriver(arch), run):
            yield


@contextmanager
def compile_only(stand_in: CompileOnlyDriver, run: Any) -> Iterator[None]:
    """Within, Triton's active driver is ``stand_in`` and every kernel launch calls ``run`` instead."""
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    original, previous = JITFunction.run, driver._active  # read without creating the default (no GPU here)
    driver.set_active(stand_in)
    JITFunction.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        JITFunction.run = original  # type: ignore[method-assign]
        driver._active = previous


def resources(cubin: bytes) -> tuple[int, int]:
    """(registers per thread, local memory per thread in bytes) of a compiled kernel, from ``cuobjdump`` (shipped
    with Triton); (-1, -1) when it cannot be read."""
    from triton import knobs

    tool = knobs.nvidia.cuobjdump.path
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        try:
            out = subprocess.run([tool, "--dump-resource-usage", file.name], capture_output=True, text=True,
                                 timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            return -1, -1
    registers, local = re.search(r"REG:(\d+)", out), re.search(r"LOCAL:(\d+)", out)
    return (int(registers.group(1)) if registers else -1, int(local.group(1)) if local else -1)


def triton_families(names: Sequence[str]) -> dict[str, list[str]]:
    """Family name → the choices (``FormChoice.family``) that offer its layer a Triton form, found by running each
    2-D family's layer forward and backward in both formats with Triton offered on CPU tensors, nothing compiled."""
    from convzoo.layers.form_choice import offered_forms, untimed
    from convzoo.layers.triton_forms import TRITON

    found: dict[str, list[str]] = {}
    with compile_only(CompileOnlyDriver(90), lambda kernel, *args, grid, warmup, **kwargs: None):
        for name in names:
            for fmt in FORMATS.values():
                with offered_forms() as record, untimed():
                    run_layer(name, torch.float32, fmt, True)
                for choice, forms in record.items():
                    if TRITON in forms and choice not in found.setdefault(name, []):
                        found[name].append(choice)
    return {name: choices for name, choices in found.items() if choices}


def run_layer(name: str, dtype: torch.dtype, fmt: torch.memory_format, input_grad: bool) -> None:
    """One forward and backward of the family's bench layer (``SHAPE``) on CPU tensors."""
    from convzoo.perf.compare import build_for_compare

    torch.manual_seed(0)
    module, shape = build_for_compare(name, SHAPE["batch"], SHAPE["in_channels"], SHAPE["out_channels"],
                                      SHAPE["size"], SHAPE["kernel_size"], torch.float32, "cpu")
    module = module.to(dtype=dtype, memory_format=fmt)
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(input_grad)
    y = module(x)
    y.backward(torch.ones_like(y))


def compile_all(archs: Sequence[int], dtypes: Sequence[str], formats: Sequence[str], quick: bool,
                families: Sequence[str] | None = None) -> Recorder:
    """Compile every Triton kernel variant the layers launch, for each GPU in ``archs``."""
    import convzoo as cz

    triton_runtime.offered = lambda x, what: x.dtype in DTYPES.values()  # CPU tensors take the Triton forms here
    names = [f.name for f in cz.families() if 2 in f.dims and (families is None or f.name in families)]
    found = triton_families(names)
    recorder = Recorder()
    if not found:
        recorder.failures.append("no family offered a Triton form")
    cases = [(name, choice) for name, choices in found.items() for choice in choices]
    grads = (True,) if quick else (True, False)
    for arch in archs:
        with recorder.compiling_for(arch):
            for (name, choice), dtype, fmt, input_grad in itertools.product(cases, dtypes, formats, grads):
                where = f"sm_{arch} {name} {dtype} {fmt}"
                recorder.failures += compile_case(recorder, name, choice, dtype, fmt, input_grad, where)
    return recorder


def compile_case(recorder: Recorder, name: str, choice: str, dtype: str, fmt: str, input_grad: bool,
                 where: str) -> list[str]:
    """One forward and backward of the family's layer with the Triton form of ``choice`` pinned, every launch
    compiled by ``recorder``; the failures, each prefixed with ``where``: an exception, no launch, or a Triton form
    the layer dropped (a failing form is dropped with a warning, not raised). The dropped forms are offered again
    after."""
    from convzoo.layers import triton_forms
    from convzoo.layers.form_choice import _INSTANCES, pinned_form

    recorder.family = name
    before = recorder.launches
    triton_runtime._STAGES.clear()
    failures = []
    with pinned_form(choice, triton_forms.TRITON):
        try:
            run_layer(name, DTYPES[dtype], FORMATS[fmt], input_grad)
        except Exception as exc:
            failures.append(f"{where}: {type(exc).__name__}: {exc}")
    if recorder.launches == before and not failures:
        failures.append(f"{where}: the pinned Triton form ({choice}) launched no kernel")
    dropped = dict(triton_forms._broken)
    dropped |= {c.family: c.failed.pop(triton_forms.TRITON) for c in list(_INSTANCES)
                if triton_forms.TRITON in c.failed}
    triton_forms._broken.clear()
    return failures + [f"{where}: the Triton form of {what} was dropped: {cause}" for what, cause in dropped.items()]


def table(recorder: Recorder) -> str:
    """Markdown: one row per compiled variant and GPU."""
    lines = ["| GPU | kernel | dtype | stages | shared KB (limit) | registers | local bytes | families |",
             "|---|---|---|---|---|---|---|---|"]
    for v in sorted(recorder.variants.values(), key=lambda v: (v.arch, v.kernel, v.dtype, v.stages, v.shared)):
        shared = f"{v.shared / 1024:.1f} ({SHARED_LIMIT[v.arch] / 1024:.0f})" + ("" if v.fits else " ✗")
        lines.append(f"| sm_{v.arch} | {v.kernel} | {v.dtype} | {v.stages} | {shared} | {v.registers} | {v.local} | "
                     f"{', '.join(sorted(v.families))} |")
    return "\n".join(lines)


COLUMNS = ["kernel", "dtype", "variants", "stages run", ("shared KB at 3 stages", ".1f"), ("shared KB as run", ".1f"),
           "registers", "local bytes", "families"]


def _span(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}–{high}"


def condensed_rows(recorder: Recorder, arch: int) -> list[list[Any]]:
    """One row per kernel and dtype on ``arch``: how many variants (constants and specialisations) the layers
    launch, the stage counts they run at, the most shared memory one needs at Triton's default depth and as run,
    the range of registers per thread and the most local memory of the variants that run, and the families."""
    groups: dict[tuple[str, str], list[Variant]] = {}
    for v in recorder.variants.values():
        if v.arch == arch:
            groups.setdefault((v.kernel, v.dtype), []).append(v)
    rows = []
    for (kernel, dtype), variants in sorted(groups.items()):
        run = [v for v in variants if v.fits]
        default = [v.shared for v in variants if v.stages == DEFAULT_STAGES]
        families = sorted({f for v in variants for f in v.families})
        rows.append([kernel, dtype, len(run), _span([v.stages for v in run]) if run else "none",
                     max(default) / 1024 if default else None, max((v.shared for v in run), default=0) / 1024,
                     _span([v.registers for v in run]) if run else "", max((v.local for v in run), default=0),
                     ", ".join(families)])
    return rows


def write(recorder: Recorder, archs: Sequence[int], out: str) -> str:
    """The variants as a results file: one table per GPU (``condensed_rows``), its summary line as the note."""
    import triton

    from convzoo.perf.results import Table, machine_info, write_results

    tables = [Table(f"sm_{arch}: {SHARED_LIMIT[arch] / 1024:.0f} KB of shared memory per block", COLUMNS,
                    condensed_rows(recorder, arch), notes=line)
              for arch, line in zip(archs, summary(recorder, archs))]
    description = (f"Every Triton kernel convzoo's layers launch, compiled for NVIDIA GPUs on a machine without one "
                   f"by Triton {triton.__version__} (its compiler and ptxas, for each target): what each needs of the "
                   "GPU. One row per kernel and dtype, over its variants (the constants and the dtype, stride and "
                   "memory-format specialisations the layers launch it with at the bench's channels, inputs with "
                   "and without gradients): the pipeline stages they run at, the most shared memory one needs at "
                   "Triton's default 3 stages and as run, registers per thread and local memory per thread "
                   "(register spills) as `cuobjdump` reports them. A variant whose default depth does not fit the "
                   "GPU's shared memory is launched with fewer stages (`kernels/triton_runtime.launch`). "
                   "`python tools/triton_gpu_compile.py` prints every variant.")
    path = write_results(out, "Triton kernels compiled for NVIDIA GPUs (no GPU needed)", tables,
                         description=description, machine=machine_info(triton=triton.__version__))
    return str(path)


def summary(recorder: Recorder, archs: Sequence[int]) -> list[str]:
    out = []
    for arch in archs:
        vs = [v for v in recorder.variants.values() if v.arch == arch]
        if not vs:
            out.append(f"sm_{arch}: nothing compiled")
            continue
        used = [v for v in vs if v.fits]
        spills = sorted({v.kernel for v in used if v.local > 0})
        fewer = sorted({f"{v.kernel} ({v.dtype}, {v.stages} stages)" for v in used if v.stages < DEFAULT_STAGES})
        largest = max((v.shared for v in used), default=0) / 1024
        registers = max((v.registers for v in used), default=0)
        out.append(f"sm_{arch}: {len(vs)} variants compiled, {len(vs) - len(used)} over the shared-memory limit "
                   f"(recompiled with fewer stages); largest shared memory used {largest:.1f} KB of "
                   f"{SHARED_LIMIT[arch] / 1024:.0f} KB; registers up to {registers}; "
                   f"local memory (spills) in {', '.join(spills) if spills else 'none'}; "
                   f"fewer stages: {', '.join(fewer) if fewer else 'none'}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 86, 90], choices=sorted(SHARED_LIMIT),
                        help="compute capabilities ×10 (default: 80 86 90)")
    parser.add_argument("--dtypes", default="float32,float16,bfloat16,float64")
    parser.add_argument("--formats", default="contiguous,channels_last")
    parser.add_argument("--families", help="comma-separated subset of the families (default: all with a Triton form)")
    parser.add_argument("--quick", action="store_true", help="only inputs that require gradients")
    parser.add_argument("--out", help="also write the tables as a results file (convzoo.perf.results' format), "
                                      "e.g. benchmarks/results/triton_gpu_compile.json")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "") not in ("", "0"):
        print("triton_gpu_compile: unset TRITON_INTERPRET (the interpreter compiles nothing)", file=sys.stderr)
        return 2
    dtypes, formats = args.dtypes.split(","), args.formats.split(",")
    for value, known, what in ((dtypes, DTYPES, "--dtypes"), (formats, FORMATS, "--formats")):
        unknown = [v for v in value if v not in known]
        if unknown:
            print(f"triton_gpu_compile: {what}={','.join(unknown)} is not one of {', '.join(known)}", file=sys.stderr)
            return 2
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        print(f"triton_gpu_compile: triton does not import ({exc})", file=sys.stderr)
        return 2
    os.environ["CONVZOO_DISABLE_NUMBA"] = "1"  # the CPU kernels play no part here: not compiled, not offered
    start = time.perf_counter()
    with warnings.catch_warnings():  # forms dropped or not offered are failures recorded by compile_all
        warnings.simplefilter("ignore")
        recorder = compile_all(args.arch, dtypes, formats, args.quick,
                               args.families.split(",") if args.families else None)
    print(table(recorder))
    print()
    for line in summary(recorder, args.arch):
        print(line)
    for failure in recorder.failures:
        print("FAILED:", failure)
    print(f"{len(recorder.variants)} kernel variants in {time.perf_counter() - start:.0f} s; "
          f"{len(recorder.failures)} failures")
    if args.out and not recorder.failures:
        print("written:", write(recorder, args.arch, args.out))
    return 1 if recorder.failures else 0


if __name__ == "__main__":
    sys.exit(main())
