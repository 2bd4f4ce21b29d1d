"""Per-input plans (``layers/base.py``): a layer checks and chooses once per input key, later calls of the key run
the planned runner only — and every change that could make a plan wrong (input key, weights, parametrizations,
dtype/device, training mode, thread count, attributes) is seen. Values are compared with the NumPy oracle."""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import convzoo
from convzoo.layers import base, context_trial
from convzoo.layers.conv import ConvNd
from convzoo.layers.dynamic import _CHOICE as DYNAMIC_CHOICE


def plans(layer: nn.Module) -> dict:
    return layer.__dict__.get(base._PLANS, {})


def oracle(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(layer.reference_output(x.detach().double().numpy()))


def close(y: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(y.double(), expected.double(), rtol=tol, atol=tol)


def counting(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Wrap ``owner.name`` so that calls are counted (the real function still runs)."""
    calls = [0]
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_second_call_runs_no_check_and_no_path_choice(monkeypatch):
    conv = convzoo.Conv2d(4, 6, 3, padding=1)
    checks = counting(monkeypatch, ConvNd, "check_input")
    paths = counting(monkeypatch, ConvNd, "forward_path")
    prepares = counting(monkeypatch, base, "prepare_input")
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        first = conv(x)
        assert (checks[0], paths[0], prepares[0]) == (1, 1, 1)
        for _ in range(3):
            assert torch.equal(conv(x), first)
        assert (checks[0], paths[0], prepares[0]) == (1, 1, 1)
        conv(torch.randn(2, 4, 7, 7))  # another tensor of the same key
        assert checks[0] == 1
    close(first, oracle(conv, x))


def test_second_call_does_no_form_choice_lookup(monkeypatch):
    layer = convzoo.build("dynamic", 4, 6)
    lookups = counting(monkeypatch, DYNAMIC_CHOICE, "for_input")
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        first = layer(x)
        assert lookups[0] == 1
        assert torch.equal(layer(x), first)
        assert lookups[0] == 1
    close(first, oracle(layer, x))


@pytest.mark.parametrize("change", ["shape", "dtype", "channels_last", "grad", "requires_grad", "device_meta",
                                    "threads"])
def test_a_changed_key_plans_again(monkeypatch, change):
    conv = convzoo.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        conv(x)
    checks = counting(monkeypatch, ConvNd, "check_input")
    threads = torch.get_num_threads()
    try:
        if change == "shape":
            y, x2 = None, torch.randn(3, 4, 5, 9)
        elif change == "dtype":
            conv = conv.double()  # .double() empties the table too; both keys are new
            x2 = x.double()
        elif change == "channels_last":
            x2 = x.contiguous(memory_format=torch.channels_last)
        elif change == "requires_grad":
            x2 = x.clone().requires_grad_()
        elif change == "device_meta":
            x2 = x.to("meta")
        else:
            x2 = x
        if change == "threads":
            torch.set_num_threads(1 if threads > 1 else 2)
        with torch.set_grad_enabled(change in ("grad", "requires_grad")):
            y = conv(x2)
    finally:
        torch.set_num_threads(threads)
    assert checks[0] == 1
    assert len(plans(conv)) == (1 if change == "dtype" else 2)
    if change == "device_meta":
        assert y.device.type == "meta" and y.shape == (2, 6, 7, 7)
        return
    close(y, oracle(conv, x2.detach().float()))
    if change == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    assert y.requires_grad == (change in ("grad", "requires_grad"))


def test_in_place_weight_changes_are_seen():
    for mode in ("correlation", "convolution"):  # 'convolution' keeps a flipped kernel without autograd
        conv = convzoo.Conv2d(3, 5, 3, padding=1, mode=mode)
        x = torch.randn(1, 3, 6, 6)
        with torch.no_grad():
            before = conv(x)
            conv.weight.mul_(-2.0)  # an in-place update (optimizer step, nn.init)
            conv.bias.add_(1.0)
            after = conv(x)
            expected = oracle(conv, x)
            conv.load_state_dict({"weight": torch.randn(5, 3, 3, 3), "bias": torch.zeros(5)})
            loaded = conv(x)
        assert not torch.allclose(before, after)
        close(after, expected)
        close(loaded, oracle(conv, x))


def test_data_swap_and_new_parameter_are_seen():
    conv = convzoo.Conv2d(3, 5, 3, padding=1, mode="convolution")
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        conv(x)
        conv.weight.data = torch.randn(5, 3, 3, 3)  # a .data swap: same object, new storage
        close(conv(x), oracle(conv, x))
        conv.weight = nn.Parameter(torch.randn(5, 3, 3, 3))  # a new parameter: the table is emptied
        close(conv(x), oracle(conv, x))


def test_parametrized_weight_is_never_stale():
    conv = convzoo.Conv2d(3, 5, 3, padding=1, mode="convolution")
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        conv(x)  # planned before the parametrization
    nn.utils.parametrizations.weight_norm(conv)
    for _ in range(2):
        with torch.no_grad():
            y = conv(x)
            expected = oracle(conv, x)  # the oracle reads the computed weight as it is now
            conv.parametrizations.weight.original0.mul_(1.5)  # g changes: the computed weight changes
            z = conv(x)
        close(y, expected)
        close(z, oracle(conv, x))
        assert not torch.allclose(y, z)
    # gradients reach the parametrization's tensors
    conv(x).square().sum().backward()
    assert conv.parametrizations.weight.original0.grad is not None


def test_old_style_weight_norm_and_pruning_are_seen():
    conv = convzoo.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        conv(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn.utils.weight_norm(conv)  # a forward pre-hook sets .weight on every call
    with torch.no_grad():
        conv.weight_g.mul_(0.5)
        close(conv(x), oracle(conv, x))
    pruned = convzoo.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        pruned(x)
    prune.l1_unstructured(pruned, "weight", amount=0.5)
    with torch.no_grad():
        y = pruned(x)
    assert (pruned.weight == 0).sum() >= 5 * 3 * 9 // 2
    close(y, oracle(pruned, x))


def test_functional_call_reads_the_given_parameters():
    conv = convzoo.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        conv(x)
        other = {"weight": torch.randn(5, 3, 3, 3), "bias": torch.randn(5)}
        y = torch.func.functional_call(conv, other, (x,))
    twin = convzoo.Conv2d(3, 5, 3, padding=1)
    twin.load_state_dict(other)
    close(y, oracle(twin, x))


def test_to_dtype_checks_again_and_errors_stay_errors():
    conv = convzoo.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        conv(x)
        conv.double()
        with pytest.raises(TypeError, match="float64 parameters but got a float32 input"):
            conv(x)
        close(conv(x.double()), oracle(conv, x))
    conv = convzoo.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        # under autocast a bfloat16 input passes the input step; without autocast it must raise, every time
        with torch.autocast("cpu", dtype=torch.bfloat16):
            conv(x.bfloat16())
            conv(x.bfloat16())
        for _ in range(2):
            with pytest.raises(TypeError, match="float32 parameters but got a bfloat16 input"):
                conv(x.bfloat16())


def test_autocast_uses_and_leaves_the_plan_correct():
    conv = convzoo.Conv2d(3, 5, 3, padding=1, mode="convolution")
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        eager = conv(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = conv(x)
            low2 = conv(x)
        after = conv(x)
    assert low.dtype == low2.dtype == torch.bfloat16
    close(low.float(), eager, 3e-2)
    assert after.dtype == torch.float32 and torch.equal(after, eager)


def test_unbatched_and_channels_last_inputs():
    conv = convzoo.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(3, 6, 6)
    with torch.no_grad():
        for _ in range(2):
            y = conv(x)
            assert y.shape == (5, 6, 6)
            close(y, oracle(conv, x[None])[0])
        nhwc = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last)
        for _ in range(2):
            y = conv(nhwc)
            assert y.is_contiguous(memory_format=torch.channels_last)
            close(y, oracle(conv, nhwc))


def test_training_mode_and_attributes_replan():
    block = convzoo.build("repvgg", 4, 4)  # BatchNorm: train and eval compute different functions
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        train = block(x)
        block.eval()
        evaluated = block(x)
    assert not torch.allclose(train, evaluated)
    fused = block.fused_conv()
    with torch.no_grad():
        close(evaluated, fused(x))
    dynamic = convzoo.build("dynamic", 4, 6)
    with torch.no_grad():
        dynamic(x)
        dynamic.temperature = 1.0  # an attribute the runner reads: the table is emptied, the value read
        close(dynamic(x), oracle(dynamic, x))


def test_implementation_change_replans(monkeypatch):
    from convzoo.layers.dynamic import DynamicConvNd

    per_sample = counting(monkeypatch, DynamicConvNd, "_per_sample_convs")
    dynamic = convzoo.build("dynamic", 4, 6)
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        dynamic.implementation = "batch_folded"
        dynamic(x)
        dynamic(x)
        assert per_sample[0] == 0
        dynamic.implementation = "per_sample"  # a plan decided the form: the table is emptied
        y = dynamic(x)
        dynamic(x)
    assert per_sample[0] == 2
    close(y, oracle(dynamic, x))


def test_requires_grad_change_gives_gradients():
    conv = convzoo.Conv2d(3, 5, 3, padding=1, mode="convolution")
    x = torch.randn(2, 3, 6, 6)
    conv.requires_grad_(False)
    conv(x)
    conv(x)
    conv.requires_grad_(True)
    conv(x).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_inference_mode_then_grad():
    conv = convzoo.Conv2d(3, 5, 3, padding=1, mode="convolution")
    x = torch.randn(2, 3, 6, 6)
    with torch.inference_mode():
        y = conv(x)
        conv(x)
    z = conv(x)
    z.sum().backward()
    assert torch.equal(y, z.detach())


@pytest.mark.parametrize("name", [f.name for f in convzoo.families() if 2 in f.dims])
def test_a_call_under_inference_mode_leaves_every_later_call_working(name):
    """Anything a call keeps for later (plans, frozen weights, kernels' scratch space) that it made under
    ``torch.inference_mode`` is an inference tensor: a later call outside it that writes there fails ("Inplace
    update to inference tensor outside InferenceMode"). The deformable kernel's per-thread workspace was made so,
    and one call under inference_mode broke every later deformable call in the process, of any layer. Each family:
    a call under inference_mode, then another layer's call with gradients, the first layer's again under no_grad,
    equal to its inference_mode output."""
    torch.manual_seed(0)
    first, second = (convzoo.build(name, 8, 8, None if not convzoo.family(name).window else 3) for _ in range(2))
    first.eval()
    x = torch.randn(1, 8, 12, 12)
    with torch.no_grad():
        second(x)  # a lazy layer takes its shape here
    with torch.inference_mode():
        served = first(x)
    second(torch.randn(2, 8, 12, 12, requires_grad=True)).square().sum().backward()
    with torch.no_grad():
        again = first(x)
    torch.testing.assert_close(again, served.clone(), rtol=1e-5, atol=1e-6)


def test_copies_and_pickles_carry_no_plans():
    conv = convzoo.Conv2d(3, 5, 3, padding=1, mode="convolution")
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        conv(x)
    assert plans(conv)
    twin = copy.deepcopy(conv)
    assert not plans(twin)
    with torch.no_grad():
        twin.weight.mul_(2.0)
        close(twin(x), oracle(twin, x))
        close(conv(x), oracle(conv, x))
    restored = pickle.loads(pickle.dumps(conv))
    with torch.no_grad():
        close(restored(x), oracle(conv, x))


def test_the_table_is_bounded():
    conv = convzoo.Conv2d(2, 2, 1)
    with torch.no_grad():
        for size in range(1, base.MAX_PLANS + 10):
            conv(torch.randn(1, 2, size, 1))
    assert 0 < len(plans(conv)) <= base.MAX_PLANS


def test_subclass_forward_keeps_its_own_plan():
    class Doubled(convzoo.Conv2d):
        def forward(self, x):
            return super().forward(x) * 2

    layer = Doubled(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        for _ in range(3):
            close(layer(x), 2 * oracle(layer, x))


def test_form_choice_clear_replans(monkeypatch):
    layer = convzoo.build("dynamic", 4, 6)
    x = torch.randn(2, 4, 7, 7)
    with torch.no_grad():
        layer(x)
        lookups = counting(monkeypatch, DYNAMIC_CHOICE, "for_input")
        DYNAMIC_CHOICE.clear()
        close(layer(x), oracle(layer, x))
    assert lookups[0] == 1


CASES = [(f.name, d) for f in convzoo.families() for d in f.dims]


@pytest.mark.parametrize("name, dim", CASES, ids=[f"{n}-{d}d" for n, d in CASES])
def test_every_family_repeats_its_first_call(name, dim):
    """Through the registry: the planned calls give exactly the first call's output, batched, unbatched and
    (2-D/3-D) channels-last, and the gradient with grad on."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = convzoo.build(name, 4, 4, None, dim).eval()
    x = torch.randn(2, 4, *([6] * dim))
    inputs = [x, x[0]]
    if dim > 1:
        inputs.append(x.contiguous(memory_format=torch.channels_last if dim == 2 else torch.channels_last_3d))
    with torch.no_grad():
        for inp in inputs:
            for _ in range(context_trial.WARMUP_CALLS + 2 * context_trial.QUICK_PAIRS):
                layer(inp)  # a trial in context alternates two exact forms, then keeps one
            layer.forget_plans()
            first = layer(inp)  # plans again
            for _ in range(2):
                again = layer(inp)
                assert torch.equal(again, first)
                assert again.stride() == first.stride()
    for _ in range(2):
        xg = x.clone().requires_grad_()
        layer(xg).square().sum().backward()
        assert xg.grad is not None and torch.isfinite(xg.grad).all()
    if hasattr(layer, "reference_output"):
        try:
            expected = oracle(layer, x)
        except (TypeError, NotImplementedError):
            return
        with torch.no_grad():
            close(layer(x), expected, 1e-4)


def test_form_choices_are_made_per_thread_count():
    from convzoo.layers.form_choice import FormChoice

    choice = FormChoice("test")
    x = torch.randn(1, 2, 4, 4)
    timed = []
    forms = lambda: {"a": lambda t: timed.append("a") or t, "b": lambda t: timed.append("b") or t}  # noqa: E731
    threads = torch.get_num_threads()
    try:
        choice.for_input("config", x, forms, [])
        choice.for_input("config", x, forms, [])
        assert choice.measurements == 1
        torch.set_num_threads(1 if threads > 1 else 2)
        choice.for_input("config", x, forms, [])
        assert choice.measurements == 2
    finally:
        torch.set_num_threads(threads)


def test_traces_flip_the_parameter_not_a_constant():
    conv = convzoo.Conv2d(3, 5, 3, padding=1, mode="convolution")
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        conv(x)
        traced = torch.jit.trace(conv, (x,), check_trace=False)
    with torch.no_grad():
        conv.weight.mul_(-1.0)  # the traced graph reads the parameter, not a flipped copy
        close(traced(x), oracle(conv, x))


def test_autocast_never_runs_a_plan_made_outside_it_and_keeps_none():
    """A kernel planned for float32 would ignore autocast: under autocast the layer runs torch's op (bfloat16 out,
    as nn.Conv2d gives), whatever ran before, and nothing planned there is kept for calls outside."""
    warm, cold = convzoo.DepthwiseConv2d(4, 8, 3, padding=1), convzoo.DepthwiseConv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        warm(x)
        planned = dict(plans(warm))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert warm(x).dtype == cold(x).dtype == torch.bfloat16
        assert plans(warm) == planned and not plans(cold)
        close(cold(x), oracle(cold, x))
