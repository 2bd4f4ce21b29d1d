"""Structural re-parameterisation of a whole model: every block that can fuse itself into one convolution is
replaced by that convolution (ACNet, RepVGG, RepLKNet: Ding et al. 2019, 2021, 2022).

Blocks are found by an interface, never by name or type: any module with a callable ``fused_conv()`` that returns
an ``nn.Module`` equal to it at inference (eval-mode BatchNorm) is swapped for that module — a user's block with
such a method is fused too. The model itself is not changed: a deep copy is fused and returned, in eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn


def is_reparameterizable(module: nn.Module) -> bool:
    """The interface: a ``fused_conv()`` method."""
    return callable(getattr(module, "fused_conv", None))


@dataclass(frozen=True)
class ReparameterizeReport:
    """What fusion changed: the blocks fused, params (and MACs / measured latency when an input shape was given)
    before and after. Latencies are medians in ms, timed round-robin in one run (``measure_interleaved``)."""

    fused: list[str]
    params_before: int
    params_after: int
    macs_before: int | None = None
    macs_after: int | None = None
    latency_before_ms: float | None = None
    latency_after_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float | None:
        if self.latency_before_ms is None or self.latency_after_ms is None:
            return None
        return self.latency_before_ms / self.latency_after_ms

    def summary(self) -> str:
        lines = [f"fused {len(self.fused)} blocks", f"params {self.params_before:,} → {self.params_after:,} "
                 f"({self.params_after / max(self.params_before, 1):.3f}×)"]
        if self.macs_before is not None and self.macs_after is not None:
            lines.append(f"MACs {self.macs_before:,} → {self.macs_after:,} "
                         f"({self.macs_after / max(self.macs_before, 1):.3f}×)")
        if self.speedup is not None:
            lines.append(f"latency {self.latency_before_ms:.3f} → {self.latency_after_ms:.3f} ms "
                         f"(speed-up {self.speedup:.2f}×)")
        return "; ".join(lines)


def _fuse_in_place(module: nn.Module, prefix: str, fused: list[str], done: dict[int, nn.Module]) -> nn.Module:
    """``module`` with every reparameterizable block replaced by its fused conv; a module reached under several
    names (weight tying) is fused once and the one result set at every name, so the tie is kept."""
    if is_reparameterizable(module):
        fused.append(prefix or "(model)")
        return module.fused_conv()
    for name, child in list(module._modules.items()):  # not named_children(): it skips a second use
        if child is None:
            continue
        path = f"{prefix}.{name}" if prefix else name
        if id(child) in done:
            new = done[id(child)]
            if is_reparameterizable(child):
                fused.append(path)
        else:
            new = done[id(child)] = _fuse_in_place(child, path, fused, done)
        if new is not child:
            setattr(module, name, new)
    return module


def reparameterize(model: nn.Module, input_shape: Sequence[int] | None = None, *, time: bool = False,
                   min_time: float = 0.5) -> tuple[nn.Module, ReparameterizeReport]:
    """A fused copy of ``model`` (in eval mode) and a report.

    Every module with ``fused_conv()`` (outermost first; its children are not visited) becomes the conv it returns.
    ``input_shape`` (N, C, *S) adds MACs before/after (``convzoo.cost``); ``time=True`` also measures both models'
    forward latency on that shape, round-robin in one run, on the model's device.
    """
    from ..arithmetic.cost import cost

    original = copy.deepcopy(model).eval()
    fused_names: list[str] = []
    fused = _fuse_in_place(copy.deepcopy(model).eval(), "", fused_names, {}).eval()
    params_before = sum(p.numel() for p in original.parameters())
    params_after = sum(p.numel() for p in fused.parameters())
    macs_before = macs_after = None
    latency_before = latency_after = None
    notes: list[str] = []
    if input_shape is not None:
        macs_before = cost(original, tuple(input_shape)).macs
        macs_after = cost(fused, tuple(input_shape)).macs
        if time:
            from ..perf.timing import make_inputs, measure_interleaved

            param = next(original.parameters(), None)
            device = param.device if param is not None else torch.device("cpu")
            dtype = param.dtype if param is not None else torch.float32
            inputs = make_inputs(input_shape, device=device, dtype=dtype)
            timings = measure_interleaved({"before": original, "after": fused}, inputs, min_time=min_time)
            latency_before, latency_after = timings["before"].median_ms, timings["after"].median_ms
            notes.append(f"{timings['before'].runs} round-robin rounds, threads={torch.get_num_threads()}")
    elif time:
        raise ValueError("time=True needs input_shape (N, C, *S) to time the models on")
    report = ReparameterizeReport(fused_names, params_before, params_after, macs_before, macs_after, latency_before,
                                  latency_after, notes)
    return fused, report
