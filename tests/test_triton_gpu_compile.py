"""tools/triton_gpu_compile.py: convzoo's Triton kernels compiled for NVIDIA GPUs on a machine without one (Triton's
interpreter checks their arithmetic, not their compilation). The default run compiles deformable v2's kernels for
sm_86 (RTX 30xx / A10, 99 KB of shared memory per block), where the fp32 weight-gradient tile at Triton's default 3
stages does not fit and the layer's launch falls back to 2; the whole matrix (sm_80 / sm_86 / sm_90, four dtypes,
both formats) is a slow test. Compiled kernels land in Triton's on-disk cache: a second run takes seconds."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import convzoo

TOOL = Path(__file__).parents[1] / "tools" / "triton_gpu_compile.py"
pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


def _run(*args: str, timeout: float, **env: str) -> subprocess.CompletedProcess:
    source = str(Path(convzoo.__file__).parents[1])
    environment = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    environment.update(env, PYTHONPATH=os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, str(TOOL), *args], env=environment, capture_output=True, text=True,
                          timeout=timeout)


def test_deformable_kernels_compile_for_sm_86_and_the_weight_gradient_launches_with_fewer_stages() -> None:
    result = _run("--arch", "86", "--dtypes", "float32", "--formats", "contiguous", "--quick",
                  "--families", "deformable_v2", timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("| sm_86 |")]
    kernels = {row[1] for row in rows}
    assert kernels == {f"triton_deform.{name}" for name in ("_forward_kernel", "_fields_grad_kernel",
                                                           "_weight_grad_kernel")}, rows
    weight_grad = {row[3]: row[4] for row in rows if row[1] == "triton_deform._weight_grad_kernel"}
    assert weight_grad["3"].endswith("(99) ✗") and not weight_grad["2"].endswith("✗"), weight_grad
    assert float(weight_grad["3"].split()[0]) > 99 > float(weight_grad["2"].split()[0])
    assert "fewer stages: triton_deform._weight_grad_kernel (float32, 2 stages)" in result.stdout
    assert result.stdout.rstrip().endswith("0 failures")


def test_the_interpreter_is_refused() -> None:
    result = _run("--arch", "90", timeout=120, TRITON_INTERPRET="1")
    assert result.returncode == 2 and "unset TRITON_INTERPRET" in result.stderr


@pytest.mark.slow
def test_every_kernel_compiles_for_sm_80_86_90_in_every_dtype_and_format() -> None:
    result = _run(timeout=7200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for arch in (80, 86, 90):
        assert f"sm_{arch}: " in result.stdout and f"sm_{arch}: nothing compiled" not in result.stdout
