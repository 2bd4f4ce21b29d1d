"""Triton for the GPU kernels: one lazy import, one warning per cause, and which inputs get Triton forms.

Triton ships with torch's Linux CUDA wheels; a CPU-only torch may lack it, so nothing imports triton until a layer
asks for a Triton form on an input that can run one: a CUDA tensor, or a CPU tensor when the process runs Triton's
interpreter (``TRITON_INTERPRET=1`` before triton is imported: kernels then run on CPU tensors through NumPy, which
is how the tests check every kernel without a GPU). ``CONVZOO_DISABLE_TRITON=1`` turns the forms off.

Also the per-dtype constants every kernel takes (``kernel_types``) and the launch-size helpers.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import torch

_triton: Any = None
_cause: str | None = None
_warned: set[str] = set()
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def triton_module() -> Any:
    """The imported ``triton`` module, or None when it cannot be imported (the cause is kept for the warning)."""
    global _triton, _cause
    if _triton is None and _cause is None:
        if _env_flag("CONVZOO_DISABLE_TRITON"):
            _cause = "CONVZOO_DISABLE_TRITON is set"
            return None
        try:
            import triton
            import triton.language  # noqa: F401  (the kernels' language; fails on a broken install)
        except Exception as exc:  # ImportError, or a triton built for another torch
            _cause = f"triton could not be imported ({type(exc).__name__}: {exc})"
        else:
            _triton = triton
    return _triton


def available() -> bool:
    """True when triton imports."""
    return triton_module() is not None


def unavailable_cause() -> str | None:
    """Why Triton is not used (None when it is)."""
    triton_module()
    return _cause


@functools.lru_cache(maxsize=1)
def interpreting() -> bool:
    """True when Triton's interpreter runs the kernels (``TRITON_INTERPRET=1``, read once: triton reads it when a
    kernel module is imported): on CPU tensors, through NumPy."""
    return _env_flag("TRITON_INTERPRET")


def warn_unavailable(what: str, cause: str | None = None) -> None:
    """Warn once per (what, cause) that ``what`` keeps PyTorch's forms on the GPU, naming the cause."""
    cause = cause or unavailable_cause() or "unknown cause"
    key = f"{what}: {cause}"
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"convzoo: {what} runs on PyTorch's forms instead of convzoo's Triton kernel: {cause}",
                      RuntimeWarning, stacklevel=3)


def offered(x: torch.Tensor, what: str) -> bool:
    """Whether a layer offers its Triton form for input ``x``: a CUDA tensor (a CPU one under the interpreter) of a
    floating dtype the kernels take, outside autocast (the kernels take one dtype for all operands). Cheap after
    the first call; warns once (naming ``what``) when the device could run Triton but triton does not import."""
    if x.is_cuda:
        device = "cuda"
    elif interpreting() and x.device.type == "cpu":
        device = "cpu"
    else:
        return False  # the common CPU case: one attribute and one cached call
    if x.dtype not in _DTYPES or torch.is_autocast_enabled(device):
        return False
    if _triton is not None:
        return True
    if not available():
        if device == "cuda" and not _env_flag("CONVZOO_DISABLE_TRITON"):
            warn_unavailable(what)
        return False
    return True


def kernel_types(dtype: torch.dtype) -> tuple[Any, Any, str]:
    """(accumulator, dot operand, dot precision) for a kernel on ``dtype`` data, as ``tl`` dtypes and the string
    ``tl.dot``'s ``input_precision`` takes: fp64 accumulates in fp64; everything else in fp32. Half types enter
    ``tl.dot`` as themselves on a GPU (tensor cores), as fp32 under the interpreter (its bf16 dot is wrong).
    fp32 products use TF32 exactly when torch's convs do (``torch.backends.cudnn.allow_tf32``)."""
    import triton.language as tl

    if dtype == torch.float64:
        return tl.float64, tl.float64, "ieee"
    if dtype == torch.float32:
        tf32 = torch.backends.cudnn.allow_tf32 and not interpreting()
        return tl.float32, tl.float32, "tf32" if tf32 else "ieee"
    half = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}[dtype]
    return tl.float32, tl.float32 if interpreting() else half, "ieee"


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """The torch dtype of buffers that kernels accumulate into with atomics or partial sums."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def block(size: int, largest: int, smallest: int = 16) -> int:
    """A power-of-two tile edge covering ``size`` up to ``largest`` (at least ``smallest``: ``tl.dot`` needs 16)."""
    edge = smallest
    while edge < size and edge < largest:
        edge *= 2
    return edge


def cdiv(a: int, b: int) -> int:
    """⌈a / b⌉ for positive b."""
    return -(-a // b)


def split_count(programs: int, chunks: int, device: torch.device) -> int:
    """How many slices a reduction over ``chunks`` tiles is split into (partial sums added afterwards), so that
    ``programs`` × splits fills the GPU about four times over; 1 under the interpreter (one core, serial)."""
    if device.type != "cuda":
        return 1
    target = 4 * _multiprocessors(device.index if device.index is not None else torch.cuda.current_device())
    return max(1, min(chunks, cdiv(target, max(programs, 1))))


@functools.lru_cache(maxsize=None)
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


DEFAULT_STAGES = 3  # Triton's software-pipelining depth on NVIDIA GPUs when a launch names none
# (kernel, device, constants) → the pipeline stages it launches with where the default did not fit the GPU
_STAGES: dict[tuple[Any, ...], int] = {}


def launch(kernel: Any, grid: tuple[int, ...], *args: Any, **constants: Any) -> None:
    """``kernel[grid](*args, **constants)``, with fewer pipeline stages where Triton's default needs more shared
    memory per block than the GPU has (Triton's ``OutOfResources`` at launch: on sm_86 / sm_89 GPUs, 99 KB against
    163 KB on sm_80 and 227 KB on sm_90, the fp32 deformable weight-gradient tile needs about 105 KB at 3 stages;
    ``tools/triton_gpu_compile.py`` lists every kernel's need per GPU). The stage count that fits is kept per
    kernel, device and constants, so the failed attempts happen once per process."""
    if _STAGES:  # empty on a GPU where every kernel fits: one check per launch
        stages = _STAGES.get(_stages_key(kernel, args, constants))
        if stages is not None:
            kernel[grid](*args, num_stages=stages, **constants)
            return
    try:
        kernel[grid](*args, **constants)
        return
    except triton_module().OutOfResources as exc:
        error = exc
    for stages in range(DEFAULT_STAGES - 1, 0, -1):
        try:
            kernel[grid](*args, num_stages=stages, **constants)
        except triton_module().OutOfResources as exc:
            error = exc
            continue
        _STAGES[_stages_key(kernel, args, constants)] = stages
        return
    raise error


def _stages_key(kernel: Any, args: tuple[Any, ...], constants: dict[str, Any]) -> tuple[Any, ...]:
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
    return (kernel, device, tuple(sorted(constants.items())))


def empty_like_format(x: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
    """An uninitialised (N, C, H, W) tensor in ``x``'s memory format (channels_last in → channels_last out)."""
    fmt = torch.channels_last if (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                                  and not x.is_contiguous()) else torch.contiguous_format
    return torch.empty(shape, dtype=dtype or x.dtype, device=x.device, memory_format=fmt)
