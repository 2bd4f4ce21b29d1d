"""Every family, in every dimension it has, on a CUDA device: the output against the NumPy oracle (fp32, TF32 off),
the gradients against the CPU layer's (checked by gradcheck elsewhere), channels-last in → channels-last out with
the same numbers, and bfloat16 autocast close to fp32. Skipped on a machine without CUDA (CI, the developers'
machines); run on a GPU machine with ``pytest tests/test_cuda.py``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from convzoo.deploy import checks
from convzoo.oracle.verify import randomize_parameters_, relative_max_error

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# cuDNN's fp32 algorithms (Winograd, FFT, implicit GEMM with split reductions) sum in other orders than the fp64
# oracle, and other GPUs pick other algorithms: 1e-4 (the CPU tests use 1e-5), TF32 off.
FP32_TOLERANCE = 1e-4
CASES = [pytest.param(name, dim, id=f"{name}-{dim}d") for name, dim in checks.cases()]


@pytest.fixture(autouse=True)
def no_tf32():
    """Full fp32 products: TF32 (10-bit mantissa) would be a 1e-3 error, not a bug."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _randomized(name: str, dim: int) -> torch.nn.Module:
    return randomize_parameters_(checks.build(name, dim), torch.Generator().manual_seed(7))


@pytest.mark.parametrize("name, dim", CASES)
def test_cuda_matches_oracle(name: str, dim: int) -> None:
    module = _randomized(name, dim)
    x = checks.sample(dim)
    expected = module.reference_output(x.double().numpy())
    with torch.no_grad():
        y = copy.deepcopy(module).cuda()(x.cuda())
    assert y.is_cuda
    error = relative_max_error(y.cpu(), expected)
    assert error < FP32_TOLERANCE, f"{name} {dim}-D on CUDA: relative error {error:.3g} vs the NumPy oracle"


@pytest.mark.parametrize("name, dim", CASES)
def test_cuda_gradients_match_cpu(name: str, dim: int) -> None:
    cpu = _randomized(name, dim).train()
    gpu = copy.deepcopy(cpu).cuda()
    x = checks.sample(dim).requires_grad_()
    xg = x.detach().cuda().requires_grad_()
    y = cpu(x)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    (y * weights).sum().backward()
    (gpu(xg) * weights.cuda()).sum().backward()
    pairs = [("input", x.grad, xg.grad)]
    pairs += [(n, p.grad, q.grad) for (n, p), q in zip(cpu.named_parameters(), gpu.parameters()) if p.grad is not None]
    for what, expected, actual in pairs:
        assert actual is not None, f"{name} {dim}-D: no CUDA gradient for {what}"
        error = relative_max_error(actual.cpu(), expected.double().numpy())
        assert error < FP32_TOLERANCE, f"{name} {dim}-D: CUDA gradient of {what} off by {error:.3g} (relative)"


@pytest.mark.parametrize("name, dim", [c for c in CASES if c.values[1] > 1])
def test_cuda_channels_last(name: str, dim: int) -> None:
    fmt = checks.MEMORY_FORMAT[dim]
    module = _randomized(name, dim).cuda()
    x = checks.sample(dim).cuda()
    with torch.no_grad():
        expected = module(x)
        y = module.to(memory_format=fmt)(x.contiguous(memory_format=fmt))
    assert y.is_contiguous(memory_format=fmt), f"{name}: {fmt} input gave strides {y.stride()} on CUDA"
    checks.assert_close(y, expected, FP32_TOLERANCE, f"{fmt} on CUDA")


@pytest.mark.parametrize("name, dim", CASES)
def test_cuda_autocast_bfloat16(name: str, dim: int) -> None:
    module = _randomized(name, dim).cuda()
    x = checks.sample(dim).cuda()
    with torch.no_grad():
        expected = module(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = module(x)
    assert torch.isfinite(y).all()
    checks.assert_close(y.float(), expected, 3e-2, "autocast cuda bfloat16")


def test_relative_error_rejects_a_wrong_answer() -> None:
    """The comparison these tests rely on fails on a 1 % error."""
    assert relative_max_error(torch.ones(3) * 1.01, np.ones(3)) > FP32_TOLERANCE
