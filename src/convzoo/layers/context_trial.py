"""A form measured faster on the layer alone, confirmed in the network's own calls before it is kept.

``FormChoice`` times a layer's forms on the layer alone, each form right after itself: its input sits in the caches
its own previous call left, and its threads were just started by itself. Inside a network the input was just written
by the previous layer, by that layer's own threads, and a form that won alone can lose there (MobileNet v2 at batch 1
on channels_last data: the depthwise layers whose kernel won alone made the network 5–10 % slower than with torch's
conv; ``benchmarks/bench_models.py``). So when a forward-only key's measured choice is not the family's preferred
form, the next real calls of that key alternate between the two forms, each computing the real output with an exact
form and timed on the CPU with ``time.perf_counter``: each layer with the key alternates its own calls (two as
warm-up, then pairs, the order alternating pair by pair), and the pairs' time ratios t_measured / t_preferred of
all those layers are pooled. After ``PAIRS`` ratios the measured form is kept when their median is below
1 − margin, else the preferred form, and that becomes the key's choice for every layer. Imports torch and
``base`` (the ``Runner`` type) only.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from .base import Runner

PAIRS = 8  # pairs of real calls compared (each form once per pair), pooled over the layers with the key
QUICK_PAIRS = 1  # under ``quick_choices()`` (test suites): one pair
WARMUP_CALLS = 2  # each layer's first calls on trial are not counted: the network may still be timing other keys

class TrialSlot:
    """One layer's part of a trial: its calls so far and the time of its pair's first call."""

    def __init__(self) -> None:
        self.calls = 0
        self.pending: float | None = None


class ContextTrial:
    """The state of one key's trial: the two forms, the pooled time ratios, and the decision (``winner``) once
    ``pairs`` ratios are in."""

    def __init__(self, measured: str, preferred: str, margin: float, pairs: int = PAIRS,
                 warmup: int = WARMUP_CALLS) -> None:
        self.measured, self.preferred, self.margin = measured, preferred, margin
        self.pairs, self.warmup = pairs, warmup
        self.ratios: list[float] = []  # t_measured / t_preferred, one per pair
        self.winner: str | None = None

    def next_form(self, slot: TrialSlot) -> str:
        """The form a layer's next call runs: alternating during its warm-up; then its pair i runs (measured,
        preferred) for even i, (preferred, measured) for odd i, so neither form always follows the other's call."""
        if slot.calls < self.warmup:
            return self.measured if slot.calls % 2 == 0 else self.preferred
        pair, second = divmod(slot.calls - self.warmup, 2)
        return self.measured if (pair % 2 == 0) != bool(second) else self.preferred

    def record(self, slot: TrialSlot, form: str, seconds: float) -> None:
        """Count the layer's call just run (``form``, timed ``seconds``); decide after the last pair."""
        slot.calls += 1
        if slot.calls <= self.warmup or self.winner is not None:
            return
        first = slot.pending  # read once: two threads calling one layer may interleave here
        if first is None:
            slot.pending = seconds
            return
        slot.pending = None
        measured, preferred = (seconds, first) if form == self.measured else (first, seconds)
        self.ratios.append(measured / preferred if preferred > 0 else 1.0)
        if len(self.ratios) >= self.pairs:
            kept = statistics.median(self.ratios) < 1 - self.margin
            self.winner = self.measured if kept else self.preferred


def trial_runner(trial: ContextTrial, build: Callable[[str], Runner], decide: Callable[[str], None]) -> Runner:
    """The runner of one layer's calls while ``trial`` runs: each call runs the form ``next_form`` names
    (``build(name)`` gives its runner) and is timed. At the decision ``decide(winner)`` records it as the key's
    choice; from then on a call of this runner drops the layer's plans (its next call plans the kept form alone) and
    runs the kept form."""
    runners = {trial.measured: build(trial.measured), trial.preferred: build(trial.preferred)}
    slot, clock = TrialSlot(), time.perf_counter

    def run(m: Any, x: torch.Tensor) -> Any:
        if trial.winner is not None:  # decided by another layer's calls
            m.forget_plans()
            return runners[trial.winner](m, x)
        form = trial.next_form(slot)
        start = clock()
        y = runners[form](m, x)
        trial.record(slot, form, clock() - start)
        if trial.winner is not None:
            decide(trial.winner)
            m.forget_plans()
        return y

    return run
