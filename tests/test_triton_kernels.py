"""convzoo's Triton kernels on the CPU: every file of tests/triton_interpreted/ in a process of their own with
``TRITON_INTERPRET=1`` (Triton's interpreter runs the kernels on CPU tensors through NumPy; the variable has to be
set before triton is imported, and must not reach the other tests, hence the process; one for all the files: a
process per file paid python, torch and triton's start-up six times, ~4 s each). Forward against the NumPy
oracle, gradients against the oracle's finite differences, both memory formats, fp16 / bf16 / fp32 / fp64, the
layers running the kernels as FormChoice forms, and the custom ops' opcheck. The same kernels on a GPU:
tests/test_cuda.py. Skipped where triton is not installed."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import convzoo

HERE = Path(__file__).parent / "triton_interpreted"
FILES = sorted(path.name for path in HERE.glob("test_*.py"))

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


def test_every_kernel_file_is_run() -> None:
    kernels = Path(convzoo.__file__).parent / "kernels"
    families = {p.stem.removeprefix("triton_") for p in kernels.glob("triton_*.py")}
    families -= {"runtime", "autograd", "bilinear"}  # helpers, exercised through every kernel
    tested = {name.removeprefix("test_interp_").removesuffix(".py") for name in FILES}
    assert families and families <= tested, f"kernels without an interpreter test: {sorted(families - tested)}"


def test_interpreted() -> None:
    source = str(Path(convzoo.__file__).parents[1])  # the convzoo this process imports, first on the child's path
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([source, *filter(None, [os.environ.get("PYTHONPATH")])]))
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:xdist", "-rs",
               *(str(HERE / name) for name in FILES)]
    result = subprocess.run(command, env=env, cwd=HERE.parents[1], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"under TRITON_INTERPRET=1:\n{result.stdout[-8000:]}\n{result.stderr[-3000:]}"
    lines = result.stdout.splitlines()
    ran = {name for name in FILES if any(f"{name}::" in line and " PASSED" in line for line in lines)}
    assert ran == set(FILES), f"files that ran no test: {sorted(set(FILES) - ran)}\n{result.stdout[-2000:]}"
