"""A form measured faster on the layer alone is confirmed in the layer's own calls (``layers/context_trial.py``)."""

from __future__ import annotations

import copy
import time

import pytest
import torch
import torch.nn.functional as F

import convzoo as cz
from convzoo.kernels import cpu_kernels
from convzoo.layers import conv as conv_module
from convzoo.layers import context_trial
from convzoo.layers import global_depthwise as gdc_module
from convzoo.layers.context_trial import ContextTrial, TrialSlot
from convzoo.layers.form_choice import FormChoice, context_trials, fixed_choices, input_key, quick_choices


def _decide(trial: ContextTrial, seconds: dict[str, float]) -> list[str]:
    """Run ``trial`` to its decision with one layer whose forms take ``seconds[form]``; the forms in call order."""
    order, slot = [], TrialSlot()
    while trial.winner is None:
        form = trial.next_form(slot)
        order.append(form)
        trial.record(slot, form, seconds[form])
    return order


def test_a_trial_warms_up_then_alternates_the_order_pair_by_pair():
    trial = ContextTrial("kernel", "native", margin=0.03, pairs=4, warmup=2)
    order = _decide(trial, {"kernel": 1.0, "native": 2.0})
    assert order == ["kernel", "native",  # warm-up, not counted
                     "kernel", "native", "native", "kernel", "kernel", "native", "native", "kernel"]
    assert trial.ratios == [0.5] * 4 and trial.winner == "kernel"


@pytest.mark.parametrize("measured_seconds, kept", [(0.9, "kernel"), (0.98, "native"), (1.5, "native")])
def test_a_trial_keeps_the_measured_form_only_when_faster_by_more_than_the_margin(measured_seconds, kept):
    trial = ContextTrial("kernel", "native", margin=0.03, pairs=3, warmup=0)
    _decide(trial, {"kernel": measured_seconds, "native": 1.0})
    assert trial.winner == kept


def test_the_median_pair_decides_so_one_disturbed_pair_does_not():
    trial = ContextTrial("kernel", "native", margin=0.03, pairs=3, warmup=0)
    times, slot = iter([1.0, 2.0, 2.0, 1.0, 50.0, 2.0]), TrialSlot()  # the third pair's kernel call: disturbed
    while trial.winner is None:
        form = trial.next_form(slot)
        trial.record(slot, form, next(times))
    assert trial.ratios == [0.5, 0.5, 25.0] and trial.winner == "kernel"


def test_layers_sharing_a_key_pair_their_own_calls_and_pool_the_ratios():
    trial = ContextTrial("kernel", "native", margin=0.03, pairs=2, warmup=0)
    a, b = TrialSlot(), TrialSlot()
    seconds = {("a", "kernel"): 1.0, ("a", "native"): 2.0, ("b", "kernel"): 3.0, ("b", "native"): 4.0}
    for name, slot in (("a", a), ("b", b), ("a", a), ("b", b)):  # interleaved, as in one network
        form = trial.next_form(slot)
        trial.record(slot, form, seconds[name, form])
    assert trial.ratios == [0.5, 0.75] and trial.winner == "kernel"  # a's pair, b's pair: never a against b


class _Layer:
    """What a trial's runner needs of a layer: ``forget_plans``."""

    def __init__(self) -> None:
        self.forgotten = 0

    def forget_plans(self) -> None:
        self.forgotten += 1


def _runners(calls: list[str], slow: str, sleep: float = 0.02):
    def build(name):
        def run(m, x):
            calls.append(name)
            if name == slow:
                time.sleep(sleep)
            return x + 1
        return run
    return build


@pytest.mark.parametrize("slow, kept", [("fast_alone", "preferred"), ("preferred", "fast_alone")])
def test_in_context_times_the_real_calls_and_makes_the_faster_form_the_key_s_choice(slow, kept):
    choice = FormChoice("test-context", prefer="preferred", margin=0.03)
    x, calls = torch.zeros(3), []
    key = (("cfg",), *input_key(x, False))
    choice.cache[key] = "fast_alone"  # measured faster alone
    layers = [_Layer(), _Layer()]
    with torch.no_grad(), quick_choices(False):
        runs = [choice.in_context(("cfg",), x, "fast_alone", ["preferred", "fast_alone"], [], _runners(calls, slow))
                for _ in layers]
        while key in choice.trials:
            for layer, run in zip(layers, runs):
                assert torch.equal(run(layer, x), x + 1)  # every call computes the output
        assert choice.cache[key] == kept and choice.confirmed == {key: kept}
        assert len(calls) == 2 * (context_trial.WARMUP_CALLS + context_trial.PAIRS)  # PAIRS ratios, two layers
        assert sorted(set(calls)) == ["fast_alone", "preferred"]
        assert layers[0].forgotten + layers[1].forgotten == 1  # the deciding layer plans again
        runs[1 - layers[0].forgotten](layers[1 - layers[0].forgotten], x)  # the other: its next call
        assert calls[-1] == kept and layers[0].forgotten + layers[1].forgotten == 2
        again = choice.in_context(("cfg",), x, kept, ["preferred", "fast_alone"], [], _runners(calls, slow))
        again(layers[0], x)
        assert key not in choice.trials and calls[-1] == kept  # confirmed: no second trial
    assert choice.for_input(("cfg",), x, lambda: pytest.fail("measured again"), []) == kept
    choice.clear()
    assert not choice.trials and not choice.confirmed


def test_no_trial_for_the_preferred_form_a_backward_another_device_or_when_switched_off():
    choice = FormChoice("test-context-none", prefer="preferred", margin=0.03)
    layer, calls = _Layer(), []
    build = _runners(calls, slow="")
    x = torch.zeros(3)
    w = torch.zeros(3, requires_grad=True)
    for t in (x, x.to("meta")):
        choice.cache[("c", *input_key(t, False))] = "other"
    direct = [
        choice.in_context("c", x, "preferred", ["preferred", "other"], [], build),  # the preferred form
        choice.in_context("c", x, "other", ["other"], [], build),  # the preferred form not offered
        choice.in_context("c", x, "other", ["preferred", "other"], [w], build),  # a backward follows
        choice.in_context("c", x.to("meta"), "other", ["preferred", "other"], [], build),  # not the CPU
    ]
    with fixed_choices():
        direct.append(choice.in_context("c", x, "other", ["preferred", "other"], [], build))
    with context_trials(False):
        direct.append(choice.in_context("c", x, "other", ["preferred", "other"], [], build))
    torch.use_deterministic_algorithms(True)  # bitwise repeatable calls wanted: no alternating forms
    try:
        direct.append(choice.in_context("c", x, "other", ["preferred", "other"], [], build))
    finally:
        torch.use_deterministic_algorithms(False)
    for run in direct:
        run(layer, torch.zeros(3))
    assert not choice.trials
    assert calls == ["preferred", "other", "other", "other", "other", "other", "other"]


def _depthwise_with_kernel_chosen_alone(fmt: torch.memory_format):
    if cpu_kernels("depthwise", "DepthwiseConv2d") is None:
        pytest.skip("convzoo's CPU kernels do not run here")
    layer = cz.DepthwiseConv2d(8, 8, 3, padding=1).eval()
    x = torch.randn(2, 8, 12, 12).contiguous(memory_format=fmt)
    key = (layer._choice_config(), *input_key(x, False))
    conv_module._CHOICE.clear()
    conv_module._CHOICE.cache[key] = "kernel"  # as if the kernel had won alone on this machine
    return layer, x, key


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("slow, kept", [("kernel", "native"), ("native", "kernel")])
def test_a_depthwise_conv_confirms_its_form_in_its_own_calls(monkeypatch, fmt, slow, kept):
    layer, x, key = _depthwise_with_kernel_chosen_alone(fmt)
    twin = copy.deepcopy(layer)  # the same key: it takes the decision without a trial of its own
    expected = F.conv2d(x, layer.weight, layer.bias, 1, 1, 1, 8)
    built = conv_module.ConvNd._runner
    ran = []

    def runner(self, path, x=None):  # the form `slow` takes 20 ms more
        run = built(self, path, x)

        def timed(m, t):
            ran.append(path)
            if path == slow:
                time.sleep(0.02)
            return run(m, t)
        return timed

    monkeypatch.setattr(conv_module.ConvNd, "_runner", runner)
    try:
        with torch.no_grad(), quick_choices(False):  # PAIRS pairs, their median: robust to a busy machine
            for _ in range(context_trial.WARMUP_CALLS + 2 * context_trial.PAIRS + 2):
                y = layer(x)
                torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)  # the trial's calls are all exact
                assert y.is_contiguous(memory_format=fmt)
            assert ran[:2] == ["kernel", "native"] and ran[-2:] == [kept, kept]  # decided: the kept form alone
            assert layer.measured_path(x) == kept and conv_module._CHOICE.confirmed == {key: kept}
            assert torch.equal(twin(x), layer(x)) and ran[-2:] == [kept, kept]
    finally:
        conv_module._CHOICE.clear()


def test_a_trial_survives_plans_dropped_by_eval_and_is_skipped_when_pinned_or_training():
    layer, x, key = _depthwise_with_kernel_chosen_alone(torch.contiguous_format)
    try:
        with torch.no_grad(), quick_choices(False):  # full trials: PAIRS pairs
            layer(x)
            layer.eval()  # drops the plans, not the trial
            layer(x)
            trial = conv_module._CHOICE.trials[key]
            assert trial.winner is None and trial.ratios == []
        layer.train()
        xg = x.clone().requires_grad_(True)
        conv_module._CHOICE.cache[(layer._choice_config(), *input_key(xg, True))] = "channels_last round trip"
        layer(xg).sum().backward()  # training: the form was measured with its backward, no trial
        layer.implementation = "native"
        with torch.no_grad():
            layer(x)
        assert list(conv_module._CHOICE.trials) == [key]
    finally:
        conv_module._CHOICE.clear()


def test_a_global_depthwise_conv_confirms_its_form_in_its_own_calls():
    layer = cz.GlobalDepthwiseConv2d(6, 12, 5).eval()
    x = torch.randn(3, 6, 5, 5)
    key = (layer._choice_config(), *input_key(x, False))
    choice = gdc_module._CHOICE
    choice.clear()
    choice.cache[key] = "matmul"  # as if the batched matmul had won alone
    expected = F.conv2d(x, layer.weight, layer.bias, groups=6)
    try:
        with torch.no_grad():
            for _ in range(context_trial.WARMUP_CALLS + 2 * context_trial.QUICK_PAIRS):
                torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
            assert choice.confirmed[key] in ("matmul", "native") and layer.forward_path(x) == choice.confirmed[key]
    finally:
        choice.clear()
