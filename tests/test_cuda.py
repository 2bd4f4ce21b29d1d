"""Every family, in every dimension it has, on a CUDA device: the output against the NumPy oracle (fp32, TF32 off),
the gradients against the CPU layer's (checked by gradcheck elsewhere), channels-last in → channels-last out with
the same numbers, bfloat16 autocast close to fp32, capture in a CUDA graph (forward, and forward + backward by
make_graphed_callables) and torch.compile(mode='reduce-overhead'). convzoo's Triton kernels, each pinned as its
layer's form: against the oracle (fp32, fp64) and the CPU layer's gradients, both memory formats, fp16 / bf16. Skipped on a machine without CUDA (CI, the developers'
machines); run on a GPU machine with ``pytest tests/test_cuda.py``."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from convzoo.deploy import checks
from convzoo.verify import randomize_parameters_, relative_max_error

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


# --- convzoo's Triton kernels on the GPU (the same kernels run under the interpreter in tests/triton_interpreted) ---

def _triton_layers() -> dict[str, tuple[Callable[[], torch.nn.Module], tuple[int, ...], Any]]:
    """name → (layer builder, input shape, the FormChoice that offers its Triton form). Sizes span several tiles
    (positions > 64, channels > 32) and uneven edges."""
    import convzoo
    from convzoo.layers import dcnv3, deformable, depthwise, dynamic, involution, patches

    return {
        "depthwise m=2": (lambda: convzoo.DepthwiseConv2d(36, 72, 3, stride=2, padding=1), (3, 36, 19, 17),
                          depthwise._CHOICE),
        "depthwise 1-D m=3": (lambda: convzoo.DepthwiseConv1d(12, 36, 5, padding=2, dilation=2), (3, 12, 40),
                              depthwise._CHOICE),
        "involution": (lambda: convzoo.Involution2d(40, 40, 3, padding=1, groups=4), (3, 40, 19, 17),
                       involution._CHOICE),
        "involution stride 2": (lambda: convzoo.Involution2d(16, 16, 7, stride=2, padding=3, groups=2),
                                (2, 16, 21, 18), involution._CHOICE),
        "deformable v2": (lambda: convzoo.DeformConv2d(36, 40, 3, padding=1, offset_groups=2, modulated=True),
                          (3, 36, 19, 17), deformable._CHOICE),
        "deformable v1 grouped": (lambda: convzoo.DeformConv2d(24, 40, 3, stride=2, padding=2, dilation=2, groups=4,
                                                               offset_groups=3), (2, 24, 19, 17), deformable._CHOICE),
        "dcnv3": (lambda: convzoo.DCNv3Conv2d(32, 40, 3, groups=2), (3, 32, 15, 13), dcnv3._CHOICE),
        "dynamic": (lambda: convzoo.DynamicConv2d(36, 40, 3, padding=1, temperature=3.0), (3, 36, 19, 17),
                    dynamic._CHOICE),
        "dynamic 1-D grouped": (lambda: convzoo.DynamicConv1d(16, 24, 3, stride=2, padding=1, groups=2),
                                (3, 16, 41), dynamic._CHOICE),
        "condconv": (lambda: convzoo.CondConv2d(36, 40, 3, padding=1, num_experts=4), (3, 36, 19, 17),
                     patches._CHOICE),
        "odconv": (lambda: convzoo.ODConv2d(36, 40, 3, stride=2, padding=1), (3, 36, 19, 17), patches._CHOICE),
    }


@contextlib.contextmanager
def _pinned(choice: Any, name: str):
    """Every choice ``choice`` makes returns ``name`` (the form must be among those offered)."""
    asked: list[list[str]] = []

    def choose(key, forms, device, wrt=()):
        asked.append(sorted(forms))
        assert name in forms, f"{name!r} not offered: {sorted(forms)}"
        return name

    choice.choose = choose
    choice.clear()
    try:
        yield asked
    finally:
        del choice.choose
        choice.clear()


TRITON_CASES = list(_triton_layers()) if torch.cuda.is_available() else []


# Families whose output is only piecewise smooth in the input: bilinear sampling at offsets predicted from the input
# has kinks where a sample point crosses a pixel row or column, and fp32 offsets (an fp32 conv of the input) land on
# the other side of one for a few of ~10⁴ points — the fp32 pure-PyTorch path on the CPU differs from fp64 by 7.5e-4
# there too. Their gradients are compared with the CPU layer's in fp64; their fp32 forward is still checked.
KINKED = ("deformable", "dcnv3")


@pytest.mark.parametrize("name", TRITON_CASES)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_triton_form_matches_oracle_and_cpu_gradients(name: str, fmt: str, dtype: torch.dtype) -> None:
    """The layer with its Triton form pinned on CUDA: output against the NumPy oracle and gradients against the CPU
    layer's (fp64 PyTorch forms, checked by gradcheck elsewhere); fp32 within 1e-4 (TF32 off), fp64 within 1e-10."""
    build, shape, choice = _triton_layers()[name]
    tolerance = FP32_TOLERANCE if dtype == torch.float32 else 1e-10
    torch.manual_seed(0)
    cpu = randomize_parameters_(build().double(), torch.Generator().manual_seed(3))
    gpu = copy.deepcopy(cpu).to(dtype).cuda()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    if fmt == "channels_last" and x.dim() != 4:
        pytest.skip("1-D data has no channels_last format")
    xg = x.to(dtype).cuda()
    xg = (xg.contiguous(memory_format=torch.channels_last) if fmt == "channels_last" else xg).requires_grad_()
    with _pinned(choice, "triton") as asked:
        y = gpu(xg)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        y.backward(weights.to(dtype).cuda())
    assert asked, f"{name}: the Triton form was never offered on CUDA"
    assert y.dtype == dtype
    assert relative_max_error(y.detach().cpu(), cpu.reference_output(x.numpy())) < tolerance
    if fmt == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    if dtype == torch.float32 and name.startswith(KINKED):
        return
    xc = x.clone().requires_grad_()
    (cpu(xc) * weights).sum().backward()
    pairs = [("input", xc.grad, xg.grad)] + [(n, p.grad, q.grad) for (n, p), q in
                                             zip(cpu.named_parameters(), gpu.parameters()) if p.grad is not None]
    for what, expected, actual in pairs:
        assert actual is not None, f"{name}: no CUDA gradient for {what}"
        error = relative_max_error(actual.cpu(), expected.numpy())
        assert error < tolerance, f"{name}: Triton gradient of {what} off by {error:.3g} against the CPU layer's"


@pytest.mark.parametrize("name", TRITON_CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_triton_form_half_precision(name: str, dtype: torch.dtype) -> None:
    """fp16 / bf16 layers with the Triton form against the same layer in fp32 (relative 1e-2 fp16, 3e-2 bf16).
    Deformable and DCNv3: against fp32 sampling at the offsets and masks the half-precision layer predicted (those
    are a tenth of a pixel off at a few pixels' size in bf16, which no sampling kernel can make up for)."""
    build, shape, choice = _triton_layers()[name]
    torch.manual_seed(0)
    module = randomize_parameters_(build(), torch.Generator().manual_seed(3)).cuda()
    half = copy.deepcopy(module).to(dtype)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4)).cuda()
    xh = x.to(dtype)
    with torch.no_grad():
        with _pinned(choice, "triton"):
            y = half(xh)
        if name.startswith("deformable"):
            offset, mask = half.offsets_and_mask(xh)
            expected = module.sample_and_convolve(xh.float(), offset.float(), None if mask is None else mask.float(),
                                                  "torch")
        elif name.startswith("dcnv3"):
            expected = module.project_out(module.sample(module.project_in(xh.float()), half.branch(xh).float()))
        else:
            with _pinned(choice, "triton"):
                expected = module(x)
    assert y.dtype == dtype
    checks.assert_close(y.float(), expected, 1e-2 if dtype == torch.float16 else 3e-2, f"{dtype} Triton form")


# --- CUDA graphs -------------------------------------------------------------------------------------------------

def _warm(step: Callable[[], Any]) -> None:
    """Three calls on a side stream, as torch.cuda.graph's documentation asks (allocator, cuDNN and FormChoice
    choices are made there, not during the capture)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)


@pytest.mark.parametrize("name, dim", CASES)
def test_cuda_graph_capture_and_replay(name: str, dim: int) -> None:
    """Forward (no grad) captured in torch.cuda.graph and replayed on new data: the eager output."""
    module = _randomized(name, dim).cuda()
    static = checks.sample(dim).cuda()
    with torch.no_grad():
        _warm(lambda: module(static))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = module(static)
        fresh = checks.sample(dim, seed=9).cuda()
        static.copy_(fresh)
        graph.replay()
        expected = module(fresh)
    checks.assert_close(out, expected, FP32_TOLERANCE, "CUDA graph replay")


@pytest.mark.parametrize("name, dim", CASES)
def test_cuda_graph_training_step(name: str, dim: int) -> None:
    """Forward + backward captured by torch.cuda.make_graphed_callables: the eager gradients."""
    module = _randomized(name, dim).cuda().train()
    reference = copy.deepcopy(module)
    x = checks.sample(dim).cuda().requires_grad_()
    graphed = torch.cuda.make_graphed_callables(module, (x,), allow_unused_input=True)
    fresh = checks.sample(dim, seed=9).cuda().requires_grad_()
    graphed(fresh).sum().backward()
    fresh_ref = fresh.detach().clone().requires_grad_()
    reference(fresh_ref).sum().backward()
    checks.assert_close(fresh.grad, fresh_ref.grad, FP32_TOLERANCE, "graphed input gradient")
    for (n, p), q in zip(module.named_parameters(), reference.parameters()):
        if q.grad is not None:
            checks.assert_close(p.grad, q.grad, FP32_TOLERANCE, f"graphed gradient of {n}")


@pytest.mark.parametrize("name, dim", CASES)
def test_cuda_compile_reduce_overhead(name: str, dim: int) -> None:
    """torch.compile(mode='reduce-overhead') (inductor + CUDA graphs): the eager output, on three calls."""
    from torch._dynamo.utils import counters

    module = _randomized(name, dim).cuda()
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(module, mode="reduce-overhead")
    with torch.no_grad():
        for seed in (1, 2, 3):
            x = checks.sample(dim, seed=seed).cuda()
            y = compiled(x).clone()  # a graph's output is overwritten by its next replay
            checks.assert_close(y, module(x), FP32_TOLERANCE, "torch.compile reduce-overhead")
    # inductor runs a graph it cannot capture eagerly and counts it (the reason is logged): none may be skipped
    assert counters["inductor"]["cudagraph_skips"] == 0, f"{name} {dim}-D: CUDA graphs skipped under reduce-overhead"
