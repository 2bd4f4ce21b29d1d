"""The softmax temperature of dynamic and omni-dimensional convs travels with the state dict: a model trained down
to T = 1 reloads at T = 1 (the constructor builds T = 30 / T = 1); a state dict saved before it did still loads,
strictly, and keeps the temperature the layer has."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import convzoo as cz
from convzoo.oracle import reference as ref


def _trained_dynamic(temperature: float = 1.0) -> cz.DynamicConv2d:
    torch.manual_seed(0)
    layer = cz.build("dynamic", 8, 8, 3, padding=1)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.5)  # kernels and attention that differ, as after training
    layer.temperature = temperature  # where the annealing (train/rules.py) ends
    return layer


def _oracle(layer: cz.DynamicConv2d, x: torch.Tensor, temperature: float) -> np.ndarray:
    att = layer.attention
    fc = [t.detach().double().numpy() for t in (att.fc1.weight, att.fc1.bias, att.fc2.weight, att.fc2.bias)]
    return ref.dynamic_conv(x.double().numpy(), layer.kernels.detach().double().numpy(),
                            layer.bias.detach().double().numpy(), *fc, temperature, 1, 1)


def test_a_dynamic_conv_reloads_at_the_temperature_it_was_trained_down_to():
    layer = _trained_dynamic(1.0)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = cz.build("dynamic", 8, 8, 3, padding=1)
    assert fresh.temperature == 30.0
    fresh.load_state_dict(torch.load(buffer))  # weights_only=True: the temperature is a tensor
    assert fresh.temperature == 1.0
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad():
        y = fresh(x)
    np.testing.assert_allclose(y.double().numpy(), _oracle(layer, x, 1.0), rtol=1e-5, atol=1e-5)
    assert np.abs(_oracle(layer, x, 30.0) - _oracle(layer, x, 1.0)).max() > 0.1  # T matters here


def test_an_older_state_dict_without_the_temperature_loads_strictly_and_keeps_the_layer_s():
    layer = _trained_dynamic(1.0)
    old = {k: v for k, v in layer.state_dict().items() if k != "_extra_state"}  # as saved before
    fresh = cz.build("dynamic", 8, 8, 3, padding=1)
    fresh.temperature = 7.0
    result = fresh.load_state_dict(old, strict=True)
    assert not result.missing_keys and not result.unexpected_keys and fresh.temperature == 7.0
    torch.testing.assert_close(fresh.weight, layer.weight, rtol=0, atol=0)
    model = torch.nn.Sequential(cz.build("dynamic", 8, 8, 3, padding=1))  # a key under a prefix, too
    model.load_state_dict({f"0.{k}": v for k, v in old.items()})
    assert model[0].temperature == 30.0


def test_the_temperature_is_not_rounded_by_half_nor_moved_with_the_model():
    layer = _trained_dynamic(1.37)
    state = layer.half().state_dict()["_extra_state"]
    assert state.dtype == torch.float64 and state.device.type == "cpu" and float(state) == 1.37
    assert not any("_extra_state" in name for name, _ in layer.named_buffers())
    with pytest.raises(ValueError, match="temperature=-1.0 must be a positive finite number"):
        layer.load_state_dict({**layer.state_dict(), "_extra_state": torch.tensor(-1.0, dtype=torch.float64)})


def test_odconv_saves_its_temperature_too():
    torch.manual_seed(0)
    layer = cz.build("odconv", 8, 8, 3, padding=1, temperature=2.5)
    fresh = cz.build("odconv", 8, 8, 3, padding=1)
    assert fresh.attention.temperature == 1.0
    fresh.load_state_dict(layer.state_dict())
    assert fresh.attention.temperature == 2.5
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        expected = torch.from_numpy(layer.reference_output(x.numpy())).float()
        torch.testing.assert_close(fresh(x), expected, rtol=1e-4, atol=1e-5)
    old = {k: v for k, v in layer.state_dict().items() if not k.endswith("_extra_state")}
    assert cz.build("odconv", 8, 8, 3, padding=1).load_state_dict(old, strict=True).missing_keys == []


def test_odconv_temperature_set_on_the_layer_reaches_its_attention():
    """``temperature=`` is ODConv's constructor argument and in its repr, but the value lived on
    ``layer.attention``: setting ``layer.temperature`` changed nothing. Now it is the attention's, checked as
    dynamic convolution's; the oracle at T = 7 (its own softmax / sigmoid of logits / T) is the reference."""
    torch.manual_seed(0)
    layer = cz.build("odconv", 8, 8, 3, padding=1).eval()
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        before = layer(x)
        layer.temperature = 7.0
        after = layer(x)
    assert layer.attention.temperature == 7.0 and "temperature=7.0" in repr(layer)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, torch.from_numpy(layer.reference_output(x.numpy())).float(), rtol=1e-4, atol=1e-5)
    for bad in (0, -1.0, float("nan"), True, "2"):
        with pytest.raises(ValueError, match=f"temperature={bad!r} must be a positive finite number"):
            layer.temperature = bad
        with pytest.raises(ValueError, match="temperature="):
            cz.build("odconv", 8, 8, 3, temperature=bad)
    assert layer.temperature == 7.0


def test_the_sweep_rebuilds_trained_models_at_their_temperature(monkeypatch):
    """sweep._measure_latencies rebuilds each trial's model (build_model + load_state_dict) to time it."""
    from convzoo.train import sweep
    from convzoo.train.loop import TrainConfig, build_model

    config = TrainConfig(conv="dynamic", width_mult=0.25, device="cpu", progress=False)
    trained = build_model(config, 10, (3, 32, 32))
    dynamic = [m for m in trained.modules() if isinstance(m, cz.DynamicConv2d)]
    assert dynamic
    for m in dynamic:
        m.temperature = 1.0
    seen = []

    def fake_latencies(models, shapes, device):
        seen.extend(models)
        return [0.0] * len(models)

    monkeypatch.setattr(sweep, "latencies_ms", fake_latencies)
    results = [{"family": "dynamic", "seed": config.seed, "num_classes": 10, "input_shape": [3, 32, 32],
                "state_dict": {k: v.detach().cpu() for k, v in trained.state_dict().items()}}]
    sweep._measure_latencies(results, [sweep.Trial(config, 1)], "cpu")
    rebuilt = [m for m in seen[0].modules() if isinstance(m, cz.DynamicConv2d)]
    assert len(rebuilt) == len(dynamic) and all(m.temperature == 1.0 for m in rebuilt)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(seen[0].eval()(x), trained.eval()(x), rtol=0, atol=0)
