"""Check layers against the NumPy oracle in ``reference.py``.

``reference_output(module, x)`` asks the layer (its contract's ``reference_output``) to recompute its output with
``reference.py`` from its parameters and constructor arguments. ``verify_family`` runs one
registry family on random data, with every parameter re-drawn at random (so zero-initialised parts such as
deformable offsets are exercised), and returns the relative error ‖y − y_ref‖∞ / ‖y_ref‖∞.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .layers.base import ConvzooLayer
from .registry import build

TOLERANCE = 1e-5  # fp32 relative error


def to_numpy(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def reference_output(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The module's output recomputed by ``reference.py`` from its parameters (x: float64 ndarray): the layer's own
    ``reference_output`` (the layer contract), so a user's subclass of a convzoo layer is checked the same way."""
    if not isinstance(module, ConvzooLayer):
        raise TypeError(f"no NumPy reference for {type(module).__name__}: it is not a convzoo layer")
    return module.reference_output(x)


def randomize_parameters_(module: nn.Module, generator: torch.Generator, scale: float = 0.5) -> nn.Module:
    """Re-draw every parameter from U(−scale, scale), so zero-initialised parts (deformable offsets) are exercised."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale)
    return module


def relative_max_error(y: torch.Tensor, expected: np.ndarray) -> float:
    """‖y − expected‖∞ / ‖expected‖∞ (absolute error when expected is all zeros)."""
    diff = np.abs(to_numpy(y) - expected).max(initial=0.0)
    peak = np.abs(expected).max(initial=0.0)
    return float(diff / peak) if peak > 0 else float(diff)


@dataclass(frozen=True)
class Verification:
    family: str
    dim: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rel_error: float

    @property
    def passed(self) -> bool:
        return self.rel_error < TOLERANCE


def check_module(module: nn.Module, x: torch.Tensor) -> float:
    """Relative error of ``module(x)`` against the reference."""
    with torch.no_grad():
        y = module(x)
    return relative_max_error(y, reference_output(module, to_numpy(x)))


def verify_family(name: str, dim: int = 2, in_channels: int = 8, out_channels: int = 8, kernel_size: int | None = None,
                  size: int = 9, batch: int = 2, seed: int = 0, **kwargs) -> Verification:
    """Build family ``name``, randomise it, and compare its fp32 output with the fp64 reference."""
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed={seed} must be between 0 and 2**64 - 1 (torch.Generator's range)")
    generator = torch.Generator().manual_seed(seed)
    module = build(name, in_channels, out_channels, kernel_size, dim, **kwargs)
    x = torch.rand((batch, in_channels) + (size,) * dim, generator=generator, dtype=torch.float64) * 2 - 1
    x = x.float()
    with torch.no_grad():
        module(x)  # materialise lazy parameters before randomising them
    randomize_parameters_(module, generator)
    error = check_module(module, x)
    with torch.no_grad():
        out_shape = tuple(module(x).shape)
    return Verification(name, dim, tuple(x.shape), out_shape, error)
