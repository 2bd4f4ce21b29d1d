"""Checks shared by the interpreter tests: relative errors, the layer's form pinned, and gradients against the
NumPy oracle by central finite differences (fp64) along random directions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from convzoo.layers.form_choice import FormChoice

# max |a − b| / max |b| allowed against fp64 results
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 4e-2}
HALF_GRAD_TOLERANCE = {torch.float32: 2e-5, torch.float16: 3e-2, torch.bfloat16: 1e-1}


def rel(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    a = torch.as_tensor(actual).detach().double().cpu()
    b = torch.as_tensor(expected).detach().double().cpu()
    assert a.shape == b.shape, f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def is_channels_last(y: torch.Tensor) -> bool:
    return y.dim() == 4 and y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()


@contextmanager
def pinned(choice: FormChoice, name: str) -> Iterator[list[str]]:
    """Every choice ``choice`` makes returns ``name`` (nothing is timed: the interpreter is slow); yields the list
    of the form sets it was asked to choose from, so a test sees that the layer really offered its forms."""
    asked: list[str] = []

    def choose(key, forms, device, wrt=(), fallible=()):
        asked.append(",".join(sorted(forms)))
        assert name in forms, f"{name!r} not among the offered forms {sorted(forms)}"
        return name

    saved = choice.__dict__.get("choose")
    choice.choose = choose  # type: ignore[method-assign]
    choice.clear()
    try:
        yield asked
    finally:
        if saved is None:
            del choice.choose
        else:
            choice.choose = saved
        choice.clear()


def gradients(run: Callable[[], torch.Tensor], wrt: Sequence[torch.Tensor], weights: torch.Tensor
              ) -> list[torch.Tensor]:
    """∂ Σ(y·weights) / ∂wrt for y = run()."""
    y = run()
    return list(torch.autograd.grad(y, wrt, weights.to(y.dtype)))


def check_against_oracle_fd(oracle: Callable[[], np.ndarray], tensors: Sequence[torch.Tensor],
                            grads: Sequence[torch.Tensor], weights: torch.Tensor, seed: int = 0,
                            eps: float = 1e-6, tolerance: float = 1e-6) -> None:
    """For each tensor in ``tensors`` (fp64, changed in place and restored): the directional derivative of
    Σ(oracle()·weights) along a random direction v, by central differences, equals ⟨grad, v⟩."""
    rng = torch.Generator().manual_seed(seed)
    w = weights.double().numpy()
    for index, (t, g) in enumerate(zip(tensors, grads)):
        v = torch.randn(t.shape, generator=rng, dtype=torch.float64)
        with torch.no_grad():
            t.add_(eps * v)
            plus = float((oracle() * w).sum())
            t.sub_(2 * eps * v)
            minus = float((oracle() * w).sum())
            t.add_(eps * v)
        numeric = (plus - minus) / (2 * eps)
        analytic = float((g.double() * v).sum())
        assert abs(numeric - analytic) <= tolerance * max(1.0, abs(numeric)), (
            f"tensor {index} {tuple(t.shape)}: directional derivative {analytic:.12g} vs oracle's finite "
            f"difference {numeric:.12g}")
