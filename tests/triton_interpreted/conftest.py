"""Tests of convzoo's Triton kernels on the CPU through Triton's interpreter. ``TRITON_INTERPRET=1`` must be set
before triton is imported, so these files run in their own process: ``tests/test_triton_kernels.py`` starts one
for all of them with the variable set (the main suite's ``tests/conftest.py`` skips this directory otherwise, so the
variable never reaches other tests). Run one by hand with
``TRITON_INTERPRET=1 python -m pytest tests/triton_interpreted/test_interp_deform.py``."""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton

import pytest  # noqa: E402

pytest.importorskip("triton", reason="triton is not installed (a CPU-only torch may come without it)")
