"""Measured form choices (layers/form_choice.py) in HetConv, deformable and dynamic conv: every form equals the NumPy
oracle, the measurement runs once per key, tracing / meta runs the deterministic form, and the HetConv sweep
reports its rows. No time is asserted."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.layers import dynamic as dynamic_module
from convzoo.layers import hetconv as hetconv_module
from convzoo.layers import form_choice
from convzoo.layers import shuffle as shuffle_module
from convzoo.layers.form_choice import (FormChoice, forget_choices, input_key, offered_forms, pinned_form,
                                        quick_choices, untimed)
from convzoo.perf.hetconv_sweep import QUICK_GRID, sweep
from convzoo.perf.results import read_results

FORMATS = (torch.contiguous_format, torch.channels_last)
HET_GEOMETRIES = [dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, p=4),
                  dict(in_channels=6, out_channels=7, kernel_size=3, padding="same", dilation=2, p=3),
                  dict(in_channels=8, out_channels=10, kernel_size=5, stride=2, padding=2, p=2),
                  dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, padding_mode="reflect", p=4)]


@pytest.fixture(autouse=True)
def _full_timing():
    """The rest of the suite times one round per key (conftest's ``quick_choices``); here choices are timed in
    full, as outside the tests."""
    with quick_choices(False):
        yield


@pytest.mark.parametrize("implementation", hetconv_module.IMPLEMENTATIONS)
@pytest.mark.parametrize("geometry", HET_GEOMETRIES, ids=str)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_every_hetconv_form_equals_the_oracle_and_keeps_the_format(implementation, geometry, fmt):
    torch.manual_seed(0)
    layer = cz.HetConv2d(**geometry)
    layer.implementation = implementation
    x = torch.randn(2, geometry["in_channels"], 11, 10).contiguous(memory_format=fmt)
    y = layer(x)
    np.testing.assert_allclose(y.detach().numpy(), layer.reference_output(x.numpy()), rtol=1e-5, atol=1e-5)
    assert y.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("implementation", hetconv_module.IMPLEMENTATIONS[1:])
def test_every_hetconv_form_has_the_oracle_gradient(implementation):
    torch.manual_seed(0)
    layer = cz.HetConv2d(6, 5, 3, padding=1, p=3).double()
    layer.implementation = implementation
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *params: layer(x), (x, *layer.parameters()))


def test_hetconv_implementation_is_checked():
    layer = cz.HetConv2d(4, 4, 3, p=2)
    layer.implementation = "fast"
    with pytest.raises(ValueError, match="implementation"):
        layer(torch.randn(1, 4, 5, 5))


def test_hetconv_measures_once_per_key():
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=4)
    x = torch.randn(2, 8, 7, 7)
    hetconv_module._CHOICE.clear()  # an earlier test in this process may have measured this key
    before = hetconv_module._CHOICE.measurements
    with torch.no_grad():
        first = layer.chosen_form(x)
        for _ in range(3):
            assert layer.chosen_form(x) == first
            layer(x)
    assert hetconv_module._CHOICE.measurements == before + 1
    layer(x)  # grad enabled, parameters require grad: a forward+backward key, measured once
    layer(x)
    assert hetconv_module._CHOICE.measurements == before + 2
    with torch.no_grad():
        layer(x.contiguous(memory_format=torch.channels_last))  # another memory format: another key
        layer(torch.randn(3, 8, 7, 7))  # another shape: another key
    assert hetconv_module._CHOICE.measurements == before + 4
    assert first in hetconv_module.IMPLEMENTATIONS[1:]
    # the choice made for grad mode never touched a .grad
    assert all(p.grad is None for p in layer.parameters())


def test_hetconv_tracing_and_meta_use_the_grouped_form():
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=4)
    before = hetconv_module._CHOICE.measurements
    assert layer.to("meta").chosen_form(torch.empty(2, 8, 7, 7, device="meta")) == "grouped"
    assert layer.dense_weight().shape == (8, 8, 3, 3)  # the masked kernel still builds on meta
    assert hetconv_module._CHOICE.measurements == before
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=4)
    x = torch.randn(2, 8, 9, 9)
    expected = layer(x)  # the eager keys (grad and no-grad, as trace's check runs) are measured here
    with torch.no_grad():
        layer(x)
    before = hetconv_module._CHOICE.measurements
    traced = torch.jit.trace(layer, x)
    assert str(traced.graph).count("aten::_convolution(") == 2  # the grouped form: p-group k×k + dense 1×1
    torch.testing.assert_close(traced(x), expected, rtol=1e-5, atol=1e-5)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), expected, rtol=1e-5, atol=1e-5)
    assert hetconv_module._CHOICE.measurements == before


def _counting(calls: dict[str, int]):
    """form(name): a form returning zeros that counts its runs in ``calls[name]``."""
    def form(name: str):
        def run() -> torch.Tensor:
            calls[name] += 1
            return torch.zeros(1)
        return run
    return form


def test_form_choice_caches_and_rejects_no_forms():
    choice = FormChoice("test")
    calls = {"a": 0, "b": 0}
    form = _counting(calls)

    key = input_key(torch.zeros(1, 2, 3, 3), False)
    picked = choice.choose(key, {"a": form("a"), "b": form("b")}, torch.device("cpu"))
    assert picked in ("a", "b") and choice.measurements == 1 and calls["a"] >= 4
    seen = dict(calls)
    assert choice.choose(key, {"a": form("a"), "b": form("b")}, torch.device("cpu")) == picked
    assert calls == seen and choice.measurements == 1
    with pytest.raises(ValueError, match="forms"):
        choice.choose("other", {}, torch.device("cpu"))


def test_a_form_that_wins_the_rounds_must_beat_the_preferred_form_head_to_head(monkeypatch):
    """'b' is fast only right after 'c' (0.8 ms, else 1.5 ms), 'a' always 1 ms: b wins the rounds of all three,
    where it sometimes follows c, but not the rounds of b and a alone: a, the preferred form, is kept. Without a
    preference the rounds decide, and a lead beyond CONFIRM_WITHIN is taken as measured. A fake clock that only the
    forms advance makes it exact."""
    clock, last = [0.0], [""]

    def form(name: str):
        def run() -> torch.Tensor:
            clock[0] += {"a": 1e-3, "c": 2e-3}.get(name, 0.8e-3 if last[0] == "c" else 1.5e-3)
            last[0] = name
            return torch.zeros(1)
        return run

    monkeypatch.setattr(form_choice.time, "perf_counter", lambda: clock[0])
    forms = {"a": form("a"), "b": form("b"), "c": form("c")}
    assert FormChoice("test").choose("k", forms, torch.device("cpu")) == "b"
    assert FormChoice("test", prefer="a", margin=0.03).choose("k", forms, torch.device("cpu")) == "a"
    forms["b"] = lambda: (clock.__setitem__(0, clock[0] + 0.9e-3), torch.zeros(1))[1]  # b faster everywhere
    assert FormChoice("test", prefer="a", margin=0.03).choose("k", forms, torch.device("cpu")) == "b"
    calls = {"a": 0, "b": 0}
    counting = {name: (lambda name=name: (calls.__setitem__(name, calls[name] + 1), forms[name]())[1])
                for name in ("a", "b")}
    forms["b"] = lambda: (clock.__setitem__(0, clock[0] + 0.5e-3), torch.zeros(1))[1]  # twice as fast: no rounds
    choice = FormChoice("test", prefer="a", margin=0.03, min_rounds=3, max_rounds=3)  # of the two alone
    assert choice.choose("k", counting, torch.device("cpu")) == "b" and calls == {"a": 7, "b": 7}


def test_untimed_runs_nothing_caches_nothing_and_keeps_the_preferred_form():
    calls = {"a": 0, "b": 0}
    form = _counting(calls)

    forms = {"a": form("a"), "b": form("b")}
    with untimed():
        assert FormChoice("test").choose("k", forms, torch.device("cpu")) == "a"  # the first form
        preferring = FormChoice("test", prefer="b")
        assert preferring.choose("k", forms, torch.device("cpu")) == "b"
    assert calls == {"a": 0, "b": 0} and "k" not in preferring and preferring.measurements == 0
    assert preferring.choose("k", forms, torch.device("cpu")) in ("a", "b") and preferring.measurements == 1


def test_pinned_form_overrides_its_family_only_where_offered_and_caches_nothing():
    calls = {"a": 0, "b": 0, "c": 0}
    form = _counting(calls)
    forms = {"a": form("a"), "b": form("b")}
    choice, other = FormChoice("pinned family"), FormChoice("another family")
    choice.choose("k", forms, torch.device("cpu"))  # measured and cached before the block
    measured = choice.measurements
    with pinned_form("pinned family", "b"):
        assert "k" not in choice  # forgotten on entry
        before = dict(calls)
        assert choice.choose("k", forms, torch.device("cpu")) == "b" and calls == before  # nothing timed
        assert "k" not in choice and choice.measurements == measured  # nor cached
        assert choice.choose("k2", {"a": form("a"), "c": form("c")}, torch.device("cpu")) in ("a", "c")  # not offered
        assert other.choose("k", forms, torch.device("cpu")) in ("a", "b") and other.measurements == 1
        choice.failed["b"] = "RuntimeError: planted"  # a form that failed here is not pinned
        assert choice.choose("k3", forms, torch.device("cpu")) == "a"
    assert "k2" not in choice and "k" not in other  # forgotten on exit


def test_offered_forms_records_each_family_s_forms_in_order():
    form = _counting({"a": 0, "b": 0, "c": 0})
    choice, other = FormChoice("recorded family"), FormChoice("recorded other")
    choice.choose("k", {"a": form("a"), "b": form("b")}, torch.device("cpu"))
    with offered_forms() as offered:
        choice.choose("k", {"a": form("a"), "b": form("b")}, torch.device("cpu"))  # chosen again: forgotten
        choice.choose("k2", {"c": form("c"), "a": form("a")}, torch.device("cpu"))
        other.choose("k", {"b": form("b")}, torch.device("cpu"))
    assert offered == {"recorded family": ["a", "b", "c"], "recorded other": ["b"]}
    assert "k2" in choice  # choices made inside stay cached


def test_hetconv_sweep_rows_have_the_structure():
    rows = sweep(QUICK_GRID[:1], backward=True, min_time=0.0, max_rounds=1)
    assert len(rows) == 4  # 2 formats × 2 passes
    for row in rows:
        assert row.chosen in hetconv_module.IMPLEMENTATIONS[1:]
        assert row.masked_dense_ms > 0 and row.grouped_ms > 0 and row.convzoo_ms > 0
        assert row.ratio == pytest.approx(row.convzoo_ms / row.masked_dense_ms) and row.ratio_of_minima > 0
    assert {r.memory_format for r in rows} == {"contiguous", "channels_last"}


def test_cli_bench_sweep_quick_writes_json(tmp_path):
    path = tmp_path / "sweep.json"
    result = CliRunner().invoke(app, ["bench", "hetconv", "--sweep", "--quick", "--no-backward",
                                      "--sweep-json", str(path)])
    assert result.exit_code == 0, result.output
    assert "convzoo / masked dense" in result.output
    data = json.loads(path.read_text())["data"]
    assert len(data["rows"]) == 2 * len(QUICK_GRID) and data["max_ratio"] > 0
    assert {"shape", "memory_format", "masked_dense_ms", "grouped_ms", "convzoo_ms", "chosen", "ratio"} <= set(
        data["rows"][0])
    table = read_results(path).tables[0]  # the results format the docs render, one row per measured row
    assert len(table.rows) == len(data["rows"]) and table.rows[0][7] == data["rows"][0]["ratio"]
    bad = CliRunner().invoke(app, ["bench", "standard", "--sweep"])
    assert bad.exit_code == 2 and "hetconv" in bad.output


DYNAMIC_CASES = [(cz.DynamicConv1d, (3, 4, 9)), (cz.DynamicConv2d, (3, 4, 9, 8)), (cz.DynamicConv3d, (2, 4, 5, 6, 5))]
DYNAMIC_GEOMETRIES = [{}, {"groups": 2, "stride": 2, "dilation": 2}, {"padding": 1, "padding_mode": "reflect"}]


def _dynamic_forms(cls) -> list[str]:
    layer = cls(4, 6, 3)
    x = torch.randn(1, 4, *(5,) * layer.dim)
    return ["auto", *layer._forms(x)]


@pytest.mark.parametrize("geometry", DYNAMIC_GEOMETRIES, ids=str)
@pytest.mark.parametrize("cls,shape", DYNAMIC_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_every_dynamic_form_equals_the_oracle_and_keeps_the_format(cls, shape, geometry):
    torch.manual_seed(0)
    layer = cls(4, 6, 3, temperature=1.0, **geometry)
    x = torch.randn(*shape)
    expected = layer.reference_output(x.numpy())
    for fmt in FORMATS if len(shape) == 4 else (torch.contiguous_format,):
        xf = x.contiguous(memory_format=fmt)
        for implementation in _dynamic_forms(cls):
            layer.implementation = implementation
            y = layer(xf)
            np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-5, atol=1e-5,
                                       err_msg=f"{implementation} {fmt}")
            assert y.is_contiguous(memory_format=fmt), (implementation, fmt)


@pytest.mark.parametrize("implementation", _dynamic_forms(cz.DynamicConv2d)[1:])
def test_every_dynamic_form_has_the_oracle_gradient(implementation):
    torch.manual_seed(0)
    layer = cz.DynamicConv2d(4, 4, 3, padding=1, temperature=1.0, num_kernels=2).double()
    layer.implementation = implementation
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, *params: layer(x), (x, *layer.parameters()))


def test_dynamic_implementation_is_checked():
    layer = cz.DynamicConv1d(4, 4, 3)
    layer.implementation = "per_sample_channels_last"  # 2-D only
    with pytest.raises(ValueError, match="implementation='per_sample_channels_last'"):
        layer(torch.randn(2, 4, 7))


def test_dynamic_measures_once_per_key_and_traces_the_unfolded_form():
    layer = cz.DynamicConv2d(4, 6, 3, padding=1)
    x = torch.randn(3, 4, 8, 8)
    dynamic_module._CHOICE.clear()  # an earlier test in this process may have measured this key
    before = dynamic_module._CHOICE.measurements
    with torch.no_grad():
        for _ in range(3):
            layer(x)
    layer(x)
    assert dynamic_module._CHOICE.measurements == before + 2  # the no-grad key and the grad key
    traced = torch.jit.trace(layer, x, check_trace=False)
    assert "aten::matmul" in str(traced.graph)  # _unfolded, the batch-agnostic form
    assert dynamic_module._CHOICE.measurements == before + 2


def test_dynamic_measures_every_form_with_a_backward_too(monkeypatch):
    """No form is left out of the measurement because it lost on one machine: with gradients wanted, the NHWC
    batch-folded forms are timed as well."""
    layer = cz.DynamicConv2d(4, 6, 3, padding=1)
    timed: list[set[str]] = []
    choose = dynamic_module._CHOICE.choose

    def spy(key, forms, *args, **kwargs):
        timed.append(set(forms))
        return choose(key, forms, *args, **kwargs)

    monkeypatch.setattr(dynamic_module._CHOICE, "choose", spy)
    dynamic_module._CHOICE.clear()
    layer(torch.randn(2, 4, 8, 8))
    assert timed == [set(layer._forms(torch.randn(2, 4, 8, 8)))]
    assert {"batch_folded_channels_last", "batch_folded_chunks_channels_last"} <= timed[0]


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_channel_shuffle_times_both_exact_forms_once_per_key(fmt):
    layer = cz.ChannelShuffle(4)
    x = torch.randn(2, 8, 5, 5).contiguous(memory_format=fmt)
    shuffle_module._CHOICE.clear()
    before = shuffle_module._CHOICE.measurements
    for _ in range(3):
        y = layer(x)
    assert shuffle_module._CHOICE.measurements == before + 1
    assert torch.equal(y, x.reshape(2, 4, 2, 5, 5).transpose(1, 2).reshape(2, 8, 5, 5))
    assert y.is_contiguous(memory_format=fmt)


# --- HetConv's per-key dispatch and frozen weights (reused where no gradient reaches a parameter) --------------


def _het_oracle(layer, x):
    return torch.from_numpy(layer.reference_output(x.detach().numpy())).to(x.dtype)


@pytest.mark.parametrize("implementation", hetconv_module.IMPLEMENTATIONS)
def test_hetconv_frozen_weights_follow_in_place_updates(implementation):
    torch.manual_seed(0)
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=4)
    layer.implementation = implementation
    x = torch.randn(2, 8, 7, 7)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    for _ in range(3):
        with torch.no_grad():
            torch.testing.assert_close(layer(x), _het_oracle(layer, x), rtol=1e-5, atol=1e-5)
        layer(x).sin().sum().backward()  # a training step: the frozen weights must not serve it
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
        opt.step()  # in place: bumps the weights' versions
        opt.zero_grad()
    with torch.no_grad():
        layer.weight_1x1.mul_(-2)
        torch.testing.assert_close(layer(x), _het_oracle(layer, x), rtol=1e-5, atol=1e-5)
        layer.load_state_dict({k: torch.randn_like(v) for k, v in layer.state_dict().items()})
        torch.testing.assert_close(layer(x), _het_oracle(layer, x), rtol=1e-5, atol=1e-5)


def test_hetconv_frozen_weights_follow_data_swaps_and_forget_cache():
    torch.manual_seed(0)
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=2)
    layer.implementation = "masked_dense"
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        layer(x)
        layer.weight_kxk.data = torch.randn_like(layer.weight_kxk)  # a new storage
        torch.testing.assert_close(layer(x), _het_oracle(layer, x), rtol=1e-5, atol=1e-5)
        layer.weight_kxk.data.zero_()  # through .data: no version bump, and nothing cached to go stale
        torch.testing.assert_close(layer(x), _het_oracle(layer, x), rtol=1e-5, atol=1e-5)


def test_hetconv_gradients_match_the_oracle_after_inference_calls():
    torch.manual_seed(0)
    layer = cz.HetConv2d(6, 6, 3, padding=1, p=3).double()
    layer.implementation = "masked_dense"
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    with torch.inference_mode():
        layer(x.detach())  # fills the frozen kernel inside inference mode
    with torch.no_grad():
        layer(x.detach())
    assert torch.autograd.gradcheck(lambda x, *params: layer(x), (x, *layer.parameters()))
    layer.requires_grad_(False)  # frozen parameters, input gradient wanted: the frozen kernel serves it
    assert torch.autograd.gradcheck(lambda x: layer(x), (x,))


def test_hetconv_dispatch_follows_implementation_choice_clear_and_dtype():
    torch.manual_seed(0)
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=4)
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        for implementation in hetconv_module.IMPLEMENTATIONS:
            layer.implementation = implementation
            torch.testing.assert_close(layer(x), _het_oracle(layer, x), rtol=1e-5, atol=1e-5)
        layer.implementation = "fast"
        with pytest.raises(ValueError, match="implementation"):
            layer(x)  # a new implementation is a new key: checked again
        layer.implementation = "auto"
        layer(x)
        before = hetconv_module._CHOICE.measurements
        hetconv_module._CHOICE.clear()
        layer(x)  # clear() reaches the layer's table: measured again
        assert hetconv_module._CHOICE.measurements == before + 1
        with pytest.raises(ValueError, match="input channels"):
            layer(torch.randn(2, 4, 7, 7))
        layer.double()
        with pytest.raises(TypeError, match="float64 parameters but got a float32 input"):
            layer(x)  # .double() forgot the float32 key
        torch.testing.assert_close(layer(x.double()), _het_oracle(layer, x.double()))


def test_hetconv_copies_and_unbatched_inputs_keep_their_own_caches():
    import copy
    import pickle

    torch.manual_seed(0)
    layer = cz.HetConv2d(8, 8, 3, padding=1, p=4)
    layer.implementation = "masked_dense"
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        layer(x)
        for twin in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
            assert "_frozen_cache" not in twin.__dict__ and "_dispatch" not in twin.__dict__
            twin.weight_kxk.add_(1)
            torch.testing.assert_close(twin(x), _het_oracle(twin, x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(layer(x), _het_oracle(layer, x), rtol=1e-5, atol=1e-5)
        y = layer(x[0])  # unbatched: (C, H, W) in, (C_out, H, W) out, every call through the contract
        torch.testing.assert_close(layer(x[0]), y)
        assert y.shape == (8, 7, 7)
        with pytest.raises(TypeError, match="torch.Tensor"):
            layer(x.numpy())


def test_form_choice_keeps_the_preferred_form_in_near_ties():
    import time

    def sleeper(seconds):
        return lambda: time.sleep(seconds) or torch.zeros(1)

    choice = FormChoice("test", min_rounds=2, max_rounds=2, prefer="plain", margin=0.5)
    assert choice.choose("tie", {"plain": sleeper(0.012), "fancy": sleeper(0.010)}, torch.device("cpu")) == "plain"
    assert choice.choose("win", {"plain": sleeper(0.030), "fancy": sleeper(0.005)}, torch.device("cpu")) == "fancy"


def test_hetconv_dispatch_table_stays_bounded():
    """Inputs of ever-new sizes do not grow the per-layer dispatch table without bound, and results stay exact."""
    import convzoo as cz
    from convzoo.layers import hetconv

    layer = cz.HetConv2d(4, 4, 3, padding=1, p=2)
    with torch.no_grad():
        for size in range(3, 3 + 2 * hetconv._MAX_DISPATCH):
            x = torch.randn(1, 4, size, 5)
            torch.testing.assert_close(layer(x), layer._masked_dense_form(x))
    assert 0 < len(layer.__dict__["_dispatch"]) <= hetconv._MAX_DISPATCH


def test_fixed_choices_take_the_preferred_or_first_form_without_timing():
    """Inside ``fixed_choices`` (a sweep trial) nothing is timed: ``prefer`` if it is a form, else the first form;
    what was chosen inside is forgotten on exit, and what was measured before is forgotten on entry."""
    from convzoo.layers.form_choice import fixed_choices

    slow_first = {"slow": lambda: (time.sleep(0.01), torch.zeros(1))[1], "fast": lambda: torch.zeros(1)}
    plain, preferring = FormChoice("t", min_seconds=0.0), FormChoice("t", min_seconds=0.0, prefer="fast")
    assert plain.choose("k", slow_first, torch.device("cpu")) == "fast" and plain.measurements == 1
    generation = plain.generation
    with fixed_choices():
        assert "k" not in plain and plain.generation == generation + 1
        assert plain.choose("k", slow_first, torch.device("cpu")) == "slow"
        assert preferring.choose("k", slow_first, torch.device("cpu")) == "fast"
        assert plain.measurements == 1 and preferring.measurements == 0
    assert "k" not in plain and plain.choose("k", slow_first, torch.device("cpu")) == "fast"


def test_forget_choices_makes_every_choice_measure_again():
    layer = cz.DynamicConv2d(4, 6, 3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        layer(x)
        before = dynamic_module._CHOICE.measurements
        layer(x)
        assert dynamic_module._CHOICE.measurements == before  # cached
        forget_choices()
        layer(x)
    assert dynamic_module._CHOICE.measurements == before + 1


def test_quick_choices_time_one_round_and_can_be_switched_off_inside():
    """Inside ``quick_choices`` a new key runs each form once to warm up and twice timed (one round), whatever the
    instance's rounds and seconds; ``quick_choices(False)`` inside it times in full again (min_rounds = 3: 7 runs)."""
    calls = {"a": 0, "b": 0}
    form = _counting(calls)
    choice = FormChoice("test", min_rounds=3, max_rounds=3, min_seconds=10.0, prune=1e9)  # no form dropped
    with quick_choices():
        choice.choose("quick", {"a": form("a"), "b": form("b")}, torch.device("cpu"))
        assert calls == {"a": 3, "b": 3} and choice.measurements == 1
        with quick_choices(False):
            choice.choose("full", {"a": form("a"), "b": form("b")}, torch.device("cpu"))
        assert calls == {"a": 3 + 7, "b": 3 + 7} and choice.measurements == 2


class _FailsInBackward(torch.autograd.Function):
    """Runs forward, fails in its backward: a GPU kernel whose gradient kernel needs more shared memory than the GPU
    has (Triton's OutOfResources) compiles and runs forward and fails only when a training step is measured."""

    @staticmethod
    def forward(ctx, x):
        return 2 * x

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("out of resources: shared memory, required 108032, hardware limit 101376")


def test_a_fallible_form_whose_backward_fails_is_dropped_with_a_warning_not_raised():
    x = torch.randn(4, requires_grad=True)
    forms = {"good": lambda: x * 2, "bad": lambda: _FailsInBackward.apply(x)}
    choice = FormChoice("test-backward", prefer="good")
    with pytest.warns(RuntimeWarning, match="without its form 'bad'.*shared memory"):
        assert choice.choose(("k",), forms, x.device, [x], fallible=("bad",)) == "good"
    assert "shared memory" in choice.failed["bad"]
    with pytest.raises(RuntimeError, match="shared memory"):  # not named fallible: the failure reaches the caller
        FormChoice("test-backward-2", prefer="good").choose(("k",), forms, x.device, [x])


def test_a_failure_raised_through_checkpoint_is_the_caller_s_not_the_form_s():
    """The form's own failure, in its forward or its backward (through the autograd engine's entry in
    torch/autograd/graph.py), drops it; one raised through torch.utils.checkpoint's frames does not."""
    x = torch.randn(4, requires_grad=True)
    with pytest.raises(RuntimeError) as in_backward:
        torch.autograd.grad(_FailsInBackward.apply(x).sum(), [x])
    assert form_choice._own_failure(in_backward.value)

    def fails(t):
        raise RuntimeError("raised inside the caller's checkpoint")

    with pytest.raises(RuntimeError) as in_checkpoint:
        torch.utils.checkpoint.checkpoint(fails, x, use_reentrant=False)
    assert not form_choice._own_failure(in_checkpoint.value)


@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_training_keys_time_forward_and_backward_on_detached_copies(monkeypatch, modulated):
    """A training step's deformable op is the fastest forward + backward, not the fastest forward: with gradients
    wanted the forms are timed with their backward to detached copies of the call's tensors (x, offset, mask for
    v2, weight, bias), so the caller's graph is never run; without, forward only."""
    from convzoo.layers import deformable as deformable_module

    layer = cz.DeformConv2d(4, 6, 3, padding=1, modulated=modulated)
    timed: list[list[torch.Tensor]] = []
    choose = deformable_module._CHOICE.choose

    def spy(key, forms, device, wrt=(), **kwargs):
        timed.append(list(wrt))
        return choose(key, forms, device, wrt, **kwargs)

    monkeypatch.setattr(deformable_module._CHOICE, "choose", spy)
    deformable_module._CHOICE.clear()
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    y = layer(x)
    assert len(timed) == 1 and len(timed[0]) == (5 if modulated else 4)
    assert all(t.is_leaf and t.requires_grad for t in timed[0]) and not any(t is x for t in timed[0])
    grads = torch.autograd.grad(y.square().sum(), [x, layer.weight, *layer.offset_conv.parameters()])
    again = torch.autograd.grad(layer(x).square().sum(), [x, layer.weight, *layer.offset_conv.parameters()])
    for first, second in zip(grads, again):  # the measured call's graph was left whole
        torch.testing.assert_close(first, second, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        layer(torch.randn(2, 4, 7, 7))
    assert len(timed) == 2 and timed[1] == []
