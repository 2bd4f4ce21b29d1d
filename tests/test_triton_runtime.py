"""Triton stays optional: convzoo imports and runs every family on the CPU without importing triton, works when
triton cannot be imported at all, and offers Triton forms only to inputs that can run them (CUDA tensors, or CPU
tensors under ``TRITON_INTERPRET=1``). The kernels themselves: tests/test_triton_kernels.py (interpreter) and
tests/test_cuda.py (GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import convzoo
from convzoo.kernels import triton_runtime
from convzoo.layers import triton_forms

SOURCE = str(Path(convzoo.__file__).parents[1])


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environment.update(env, PYTHONPATH=os.pathsep.join([SOURCE, *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True, timeout=300)


def test_cpu_forwards_never_load_a_triton_kernel() -> None:
    """(torch itself may import triton — torch._dynamo does, when torchvision's ops load it — but convzoo neither
    imports it nor loads a kernel module on the CPU.)"""
    code = """
import sys, torch, convzoo
from convzoo.kernels import triton_runtime
for name in ("deformable", "dcnv3", "involution", "dynamic", "condconv", "odconv", "depthwise_separable"):
    layer = convzoo.build(name, 4, 4, 3, 2)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    layer(x).sum().backward()
dw = convzoo.DepthwiseConv2d(4, 8, 3, padding=1)
dw(torch.randn(1, 4, 5, 5)).sum().backward()
kernels = [m for m in sys.modules if m.startswith("convzoo.kernels.triton_") and not m.endswith("_runtime")]
print("imported by convzoo:", triton_runtime._triton is not None, kernels)
"""
    result = _run(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported by convzoo: False []" in result.stdout


def test_convzoo_works_where_triton_cannot_be_imported() -> None:
    """A CPU-only torch may come without triton: a stand-in module that fails to import, as a broken install."""
    code = """
import sys
sys.modules["triton"] = None  # `import triton` now raises ImportError
import torch, convzoo
from convzoo.kernels import triton_runtime
layer = convzoo.build("involution", 4, 4, 3, 2)
print(tuple(layer(torch.randn(1, 4, 6, 6)).shape), triton_runtime.available(), triton_runtime.unavailable_cause())
"""
    result = _run(code, TRITON_INTERPRET="1")  # even asked for: the forms stay PyTorch's
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(1, 4, 6, 6) False triton could not be imported (ModuleNotFoundError" in result.stdout


def test_disabling_by_environment() -> None:
    result = _run("from convzoo.kernels import triton_runtime as t; print(t.available(), t.unavailable_cause())",
                  CONVZOO_DISABLE_TRITON="1")
    assert result.stdout.strip() == "False CONVZOO_DISABLE_TRITON is set", result.stderr[-2000:]


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter offers CPU inputs")
def test_only_inputs_that_can_run_a_kernel_are_offered() -> None:
    assert not triton_forms.offered(torch.randn(2, 3), "test")
    assert not triton_runtime.offered(torch.randn(2, 3, device="meta"), "test")
    assert not triton_runtime.offered(torch.zeros(2, 3, dtype=torch.int64), "test")


def test_pinning_triton_on_a_cpu_input_says_what_it_needs() -> None:
    layer = convzoo.DeformConv2d(4, 4, 3, padding=1)
    layer.implementation = "triton"
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("the interpreter runs it")
    with pytest.raises(ValueError, match="implementation='triton' needs a CUDA input"):
        layer(torch.randn(1, 4, 5, 5))


def test_tile_sizes() -> None:
    assert [triton_runtime.block(n, 64) for n in (1, 16, 17, 64, 1000)] == [16, 16, 32, 64, 64]
    assert triton_runtime.block(3, 32, smallest=4) == 4
    assert triton_runtime.split_count(10, 50, torch.device("cpu")) == 1


class _KernelNeedingFewerStages:
    """Stands in for a Triton kernel that needs more shared memory than the GPU has above ``fits_at`` stages: its
    launch raises Triton's OutOfResources there, as Triton's launcher does."""

    def __init__(self, fits_at: int) -> None:
        self.fits_at, self.launched = fits_at, []

    def __getitem__(self, grid: tuple[int, ...]):
        def run(*args, num_stages: int = triton_runtime.DEFAULT_STAGES, **constants) -> None:
            self.launched.append(num_stages)
            if num_stages > self.fits_at:
                raise pytest.importorskip("triton").OutOfResources(108032, 101376, "shared memory")
        return run


def test_launch_falls_back_to_fewer_stages_where_shared_memory_is_short(monkeypatch) -> None:
    """Triton's default 3 stages of the fp32 deformable weight-gradient kernel need 105.5 KB of shared memory, an
    sm_86 / sm_89 GPU has 99 KB per block (tools/triton_gpu_compile.py): the launch retries with fewer stages,
    keeps the count that fits for those constants, and raises when none fits."""
    pytest.importorskip("triton")
    monkeypatch.setattr(triton_runtime, "_STAGES", {})
    x = torch.zeros(2)
    kernel = _KernelNeedingFewerStages(fits_at=2)
    triton_runtime.launch(kernel, (1,), x, 3, BLOCK=64)
    assert kernel.launched == [3, 2]
    triton_runtime.launch(kernel, (1,), x, 3, BLOCK=64)  # the count that fits is kept: no failed attempt
    assert kernel.launched == [3, 2, 2]
    triton_runtime.launch(kernel, (1,), x, 3, BLOCK=32)  # other constants: another kernel variant, tried afresh
    assert kernel.launched == [3, 2, 2, 3, 2]
    fits = _KernelNeedingFewerStages(fits_at=3)
    triton_runtime.launch(fits, (1,), x, BLOCK=64)
    assert fits.launched == [3]
    never = _KernelNeedingFewerStages(fits_at=0)
    with pytest.raises(pytest.importorskip("triton").OutOfResources):
        triton_runtime.launch(never, (1,), x, BLOCK=64)
    assert never.launched == [3, 2, 1]
