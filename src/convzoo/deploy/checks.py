"""One check per deployment path, each on a freshly built small layer of a family, each comparing numbers.

``PATHS`` maps a path name to its check ``fn(name, dim) -> str`` ('' or a note when it passed); a check raises
``AssertionError`` (or the error the path raised) when it fails and ``NotApplicable`` when the path does not
exist for this (family, dim). ``tests/test_deploy.py`` runs every (family, dim, path), and
``tools/deploy_table.py`` runs the same checks to render the table of docs/guide/deploying.md.
"""

from __future__ import annotations

import functools

import tempfile
from typing import Any
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

CHANNELS = 4
SPATIAL = {1: (8,), 2: (8, 8), 3: (5, 5, 5)}
OTHER_SPATIAL = {1: (11,), 2: (9, 7), 3: (6, 5, 7)}
MEMORY_FORMAT = {2: torch.channels_last, 3: torch.channels_last_3d}


class NotApplicable(Exception):
    """The path does not exist for this (family, dim); the message says why."""


def build(name: str, dim: int, seed: int = 0) -> nn.Module:
    """The family's CHANNELS → CHANNELS layer, k=3, parameters materialised (global depthwise is lazy), eval mode."""
    import convzoo

    torch.manual_seed(seed)
    module = convzoo.build(name, CHANNELS, CHANNELS, None, dim).eval()
    with torch.no_grad():
        module(sample(dim))
    return module


def sample(dim: int, batch: int = 2, spatial: tuple[int, ...] | None = None, seed: int = 1,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, CHANNELS, *(spatial or SPATIAL[dim]), generator=g).to(dtype)


@functools.lru_cache(maxsize=None)
def whole_map(name: str) -> bool:
    """Whether the family's kernel IS the feature map (global depthwise), so its weights fix the spatial size:
    measured on the layer — built at one size, does it refuse another? — not looked up by name."""
    dim = min(convzoo_family(name).dims)
    module = build(name, dim)
    try:
        with torch.no_grad():
            module(sample(dim, spatial=tuple(s + 1 for s in SPATIAL[dim])))
    except ValueError:
        return True
    return False


def convzoo_family(name: str) -> Any:
    import convzoo

    return convzoo.family(name)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    a, e = actual.detach().double(), expected.detach().double()
    return float((a - e).norm() / e.norm().clamp_min(1e-12))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = relative_error(actual, expected)
    assert err < tol, f"{what}: relative error {err:.3g} >= {tol:g}"


def _other_spatial(name: str, dim: int) -> tuple[int, ...]:
    return SPATIAL[dim] if whole_map(name) else OTHER_SPATIAL[dim]


# --- the paths ---------------------------------------------------------------------------------------------------


def check_channels_last(name: str, dim: int) -> str:
    _raise_if_not_applicable(name, dim, "channels_last")
    fmt = MEMORY_FORMAT[dim]
    module = build(name, dim)
    x = sample(dim)
    with torch.no_grad():
        expected = module(x)
        model = nn.Sequential(module).to(memory_format=fmt)
        y = model(x.contiguous(memory_format=fmt))
    assert y.is_contiguous(memory_format=fmt), f"output is not {fmt} for a {fmt} input (strides {y.stride()})"
    assert_close(y, expected, 1e-5, str(fmt))
    return ""


def check_autocast(name: str, dim: int) -> str:
    """Inference and a training step under CPU bfloat16 autocast: the output, and the gradients of the input and
    of every parameter, within bfloat16's precision of float32's (a gradient that is ~0 in float32, such as a
    bias before a training-mode BatchNorm, is judged against 1 % of the largest gradient instead)."""
    module = build(name, dim)
    x = sample(dim)
    with torch.no_grad():
        expected = module(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(x)
    assert_close(y.float(), expected, 3e-2, "autocast cpu bfloat16")
    module.train()
    wrt = [x.requires_grad_(), *(p for p in module.parameters() if p.requires_grad)]
    expected_grads = torch.autograd.grad(module(x).square().sum(), wrt, allow_unused=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
    grads = torch.autograd.grad(y.float().square().sum(), wrt, allow_unused=True)
    largest = max(float(e.norm()) for e in expected_grads if e is not None)
    for index, (g, e) in enumerate(zip(grads, expected_grads)):
        if e is None or not e.any():
            continue
        assert g is not None and g.dtype == e.dtype, f"autocast cpu bfloat16: gradient {index} of {len(wrt)} is " \
                                                     f"{None if g is None else g.dtype}, not {e.dtype}"
        error = float((g - e).double().norm()) / max(float(e.norm()), 1e-2 * largest)
        assert error < 6e-2, f"autocast cpu bfloat16 backward, gradient {index} of {len(wrt)}: relative error " \
                             f"{error:.3g} >= 0.06"
    if torch.cuda.is_available():  # CUDA float16 too, where there is a GPU
        module, x = module.cuda(), x.cuda()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            y = module(x)
        assert_close(y.float().cpu(), expected, 1e-2, "autocast cuda float16")
        return "CUDA float16 checked too"
    return ""


def _check_cast(name: str, dim: int, dtype: torch.dtype, tolerance: float) -> str:
    """The layer and its input cast to ``dtype`` (``module.to(dtype)``, as ``.double()`` / ``.half()`` do) give
    the float32 output within ``tolerance``, in ``dtype``."""
    module = build(name, dim)
    x = sample(dim)
    with torch.no_grad():
        expected = module(x)
        y = module.to(dtype)(x.to(dtype))
    assert y.dtype == dtype
    assert_close(y.float(), expected, tolerance, str(dtype).removeprefix("torch."))
    return ""


def check_double(name: str, dim: int) -> str:
    return _check_cast(name, dim, torch.float64, 1e-5)


# float16 on a map whose sampling positions pass 32, where float16 steps by 1/32 pixel (on the 8×8 map at zero
# offsets every position is a small integer, exact in any dtype); HALF_TOLERANCE: see check_half
HALF_SPATIAL = {1: (40,), 2: (40, 40), 3: (34, 6, 6)}
HALF_TOLERANCE = 2e-3


def check_half(name: str, dim: int) -> str:
    """``module.half()`` on a float16 input gives the float32 layer's output within HALF_TOLERANCE. The layer's
    zero-started side branches (a deformable layer's offset conv, DCNv3's offset and mask linears) get seeded
    random values as the pictures do (``viz.reads.illustrative_copy``); a layer that has them reads where they
    say, at fractional positions, on a ``HALF_SPATIAL`` map where they pass 32 (the others, which read fixed taps,
    keep the small map: torch's float16 CPU depthwise conv with a 31-tap kernel all but hangs on a 40-wide map).
    Measured: a plain conv's error is ~4e-4 (1.2× that of the float32 layer on the float16-rounded input and
    weights), no family's is above 8e-4 on the small map; the deformable families' ~1e-3 (their offsets amplify
    the rounding: 1.4× the float32 layer's on rounded values), and 1.6–1.8e-2 while positions were held in
    float16."""
    from ..viz.reads import ILLUSTRATED, illustrative_copy

    module = illustrative_copy(build(name, dim), (CHANNELS, *SPATIAL[dim]), seed=0)
    spatial = HALF_SPATIAL[dim] if getattr(module, ILLUSTRATED) and not whole_map(name) else SPATIAL[dim]
    x = sample(dim, spatial=spatial)
    with torch.no_grad():
        expected = module(x)
        y = module.to(torch.float16)(x.to(torch.float16))
    assert y.dtype == torch.float16
    assert_close(y.float(), expected, HALF_TOLERANCE, f"float16 on a {'×'.join(map(str, spatial))} map")
    return ""


def check_compile(name: str, dim: int, backend: str = "aot_eager") -> str:
    import torch._dynamo

    torch._dynamo.reset()
    module = build(name, dim).train()
    x = sample(dim)
    expected = module(x)
    expected.square().sum().backward()
    expected_grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    compiled = torch.compile(module, backend=backend, fullgraph=True)
    y = compiled(x)
    y.square().sum().backward()
    assert_close(y, expected, 1e-5, f"compile({backend}) forward")
    for (pname, p), g in zip(module.named_parameters(), expected_grads):
        assert_close(p.grad, g, 1e-4, f"compile({backend}) grad of {pname}")
    return ""


def check_export(name: str, dim: int) -> str:
    from torch.export import Dim

    module = build(name, dim)
    x = sample(dim)
    shapes: dict[int, object] = {0: Dim.DYNAMIC}
    note = ""
    if whole_map(name):
        note = "batch only: the kernel is the feature map"
    else:
        shapes.update({2 + i: Dim.DYNAMIC for i in range(dim)})
    program = torch.export.export(module, (x,), dynamic_shapes=({**shapes},))
    for batch, spatial in ((1, SPATIAL[dim]), (3, _other_spatial(name, dim))):
        other = sample(dim, batch, spatial, seed=batch)
        with torch.no_grad():
            assert_close(program.module()(other), module(other), 1e-5, f"export at batch {batch}, size {spatial}")
    return note


def onnx_export(module: nn.Module, x: torch.Tensor, path: Path, dynamic_batch: bool = True) -> None:
    """``torch.onnx.export`` with the dynamo exporter (opset 19: DeformConv), batch dynamic when asked."""
    from torch.export import Dim

    shapes = ({0: Dim.DYNAMIC},) if dynamic_batch else None
    torch.onnx.export(module, (x,), str(path), dynamo=True, opset_version=19, dynamic_shapes=shapes,
                      external_data=False, verbose=False)


def onnx_run(path: Path, x: torch.Tensor) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def check_onnx(name: str, dim: int, batches: tuple[int, ...] = (1, 3)) -> str:
    module = build(name, dim)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        onnx_export(module, sample(dim), path)
        for batch in batches:
            x = sample(dim, batch, seed=10 + batch)
            with torch.no_grad():
                expected = module(x)
            assert_close(onnx_run(path, x), expected, 1e-4, f"onnxruntime at batch {batch}")
    return ""


def check_trace(name: str, dim: int) -> str:
    module = build(name, dim)
    with torch.no_grad():
        traced = torch.jit.trace(module, (sample(dim),), check_trace=False)
        for batch, spatial in ((3, SPATIAL[dim]), (1, _other_spatial(name, dim))):
            other = sample(dim, batch, spatial, seed=20 + batch)
            assert_close(traced(other), module(other), 1e-5, f"traced, run at batch {batch}, size {spatial}")
    return "size fixed: the kernel is the feature map" if whole_map(name) else ""


def check_unbatched(name: str, dim: int) -> str:
    module = build(name, dim)
    x = sample(dim)
    with torch.no_grad():
        batched = module(x)
        single = module(x[0])
    assert_close(single, batched[0], 1e-5, "unbatched (C, *S) input")
    return ""


def check_empty(name: str, dim: int) -> str:
    module = build(name, dim)
    x = sample(dim)
    with torch.no_grad():
        full = module(x)
        empty = module(x[:0])
    assert empty.shape == (0, *full.shape[1:]), f"empty batch gave shape {tuple(empty.shape)}"
    return ""


def check_dtype_message(name: str, dim: int) -> str:
    module = build(name, dim)
    for dtype in (torch.float64, torch.float16, torch.int64):
        x = sample(dim).to(dtype)
        try:
            module(x)
        except TypeError as error:
            text = str(error)
            wanted = [str(dtype).removeprefix("torch."), "float32", ".to("]
            assert all(w in text for w in wanted), f"{dtype}: message {text!r} lacks one of {wanted}"
        else:
            raise AssertionError(f"a {dtype} input into a float32 layer raised no error")
    return ""


def weighted_parameters(module: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(module path, module, parameter name) for every parameter of two or more dims the layer owns, the layer's
    own included — conv and linear weights, a layer's own kernels —: what ``weight_norm`` and ``spectral_norm``
    can be put on."""
    return [(path, m, name) for path, m in module.named_modules() for name, p in m._parameters.items()
            if isinstance(p, nn.Parameter) and p.dim() >= 2]


def _parametrized(name: str, dim: int, kind: str) -> str:
    """``kind`` ('weight_norm' or 'spectral_norm', from torch.nn.utils.parametrizations) on every parameter of two or
    more dims the layer owns (``weighted_parameters``). Checked against the NumPy oracle (the layer's
    ``reference_output``, which reads the parametrized weights): as built, after the parametrization's parameters
    change (weight_norm's magnitude g scaled by 1.5, spectral_norm's original weight moved) — so a kernel cached
    past the parametrization is caught —, and a training step gives every parametrization parameter a finite
    gradient.

    A weight that starts at zero (the offsets of deformable convs: sampling starts on the regular grid) has no
    norm to divide by; the layer must say so in one ValueError naming the module, and work once that weight is
    given a non-zero start — which is what the user is told to do. ``NotApplicable`` for a layer without such a
    parameter."""
    from torch.nn.utils import parametrizations

    _raise_if_not_applicable(name, dim, kind)
    module = build(name, dim)
    targets = weighted_parameters(module)
    parametrize = getattr(parametrizations, kind)
    zero = [(path, pname) for path, m, pname in targets if not getattr(m, pname).detach().any()]
    x = sample(dim)
    if zero:
        for _, m, pname in targets:
            parametrize(m, pname)
        try:
            with torch.no_grad():
                y = module(x)
        except ValueError as error:
            text = str(error)
            assert any(f"{path}.{pname}" in text for path, pname in zero) and "non-zero" in text, \
                f"{kind} on the zero-initialised {zero}: the message {text!r} does not name it and the fix"
        else:
            raise AssertionError(f"{kind} on the zero-initialised {zero}: no error, output finite: "
                                 f"{bool(torch.isfinite(y).all())}")
        module = build(name, dim)  # again, the zero weights given a small random start as the message says
        targets = weighted_parameters(module)
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for path, m, pname in targets:
                if (path, pname) in zero:
                    getattr(m, pname).copy_(torch.randn(getattr(m, pname).shape, generator=g) * 0.1)
    for _, m, pname in targets:
        parametrize(m, pname)

    def against_oracle(what: str) -> torch.Tensor:
        with torch.no_grad():
            y = module(x)
        expected = torch.from_numpy(module.reference_output(x.double().numpy()))
        assert_close(y, expected, 1e-5, f"{kind}, {what}, against the NumPy reference")
        return y

    before = against_oracle("as built")
    with torch.no_grad():
        g = torch.Generator().manual_seed(6)
        for _, m, pname in targets:
            original = m.parametrizations[pname]
            if kind == "weight_norm":
                original.original0.mul_(1.5)
            else:
                original.original.add_(torch.randn(original.original.shape, generator=g) * 0.3)
    after = against_oracle("after its parameters changed")
    assert relative_error(after, before) > 1e-3, f"{kind}: the output did not follow the changed parameters"
    module.train()
    module(x).square().sum().backward()
    for path, m, pname in targets:
        for part, p in m.parametrizations[pname].named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), \
                f"{kind}: {path or 'the layer'}.{pname}'s {part} got no finite gradient"
    return ""


def check_weight_norm(name: str, dim: int) -> str:
    return _parametrized(name, dim, "weight_norm")


def check_spectral_norm(name: str, dim: int) -> str:
    return _parametrized(name, dim, "spectral_norm")


@functools.lru_cache(maxsize=None)
def _without_weights(name: str, dim: int) -> str | None:
    import convzoo

    module = convzoo.build(name, CHANNELS, CHANNELS, None, dim)  # no forward (the test matrix asks while it is
    if any(nn.parameter.is_lazy(p) for p in module.parameters()):  # collected: no kernel compiles), unless lazy
        module = build(name, dim)
    if not weighted_parameters(module):
        return "the layer owns no parameter of two or more dims for torch's parametrizations to wrap"
    return None


# Why a path does not exist for a (family, dim), or None where it does: the test matrix leaves those cells out.
NOT_APPLICABLE: dict[str, Callable[[str, int], str | None]] = {
    "channels_last": lambda name, dim: "torch has no channels-last format for 3-D (N, C, L) tensors" if dim == 1
    else None,
    "weight_norm": _without_weights,
    "spectral_norm": _without_weights,
}


def not_applicable(name: str, dim: int, path: str) -> str | None:
    """Why ``path`` does not exist for family ``name`` in ``dim`` dims, or None."""
    rule = NOT_APPLICABLE.get(path)
    return None if rule is None else rule(name, dim)


def _raise_if_not_applicable(name: str, dim: int, path: str) -> None:
    why = not_applicable(name, dim, path)
    if why is not None:
        raise NotApplicable(why)


PATHS: dict[str, Callable[[str, int], str]] = {
    "channels_last": check_channels_last,
    "autocast_bf16": check_autocast,
    "double": check_double,
    "half": check_half,
    "compile": check_compile,
    "export": check_export,
    "onnx": check_onnx,
    "jit_trace": check_trace,
    "unbatched": check_unbatched,
    "empty_batch": check_empty,
    "dtype_message": check_dtype_message,
    "weight_norm": check_weight_norm,
    "spectral_norm": check_spectral_norm,
}


def cases() -> list[tuple[str, int]]:
    import convzoo

    return [(f.name, dim) for f in convzoo.families() for dim in f.dims]
