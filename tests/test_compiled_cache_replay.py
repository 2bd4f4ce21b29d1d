"""The compiled depthwise op's key (``layers/compiled_choice.py``) is the layer's configuration, so that a graph that
inductor's on-disk caches replay in another process runs the same computation or is not replayed at all.

The key used to be a per-process counter ("DepthwiseConv2d#1"): a process compiling a stride-2 layer replayed the
graph another process had compiled for a stride-1 layer and failed inductor's size check (6 == 12). Outputs are
checked against torch's own ``F.conv2d``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

import convzoo as cz
from convzoo.layers import compiled_choice


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_layers_of_one_configuration_share_a_key_and_other_configurations_differ() -> None:
    """Equal keys for two layers built apart (other weights: the op takes them as inputs) and for padding='same',
    which resolves to the same pairs; a different key for each change of class, geometry (dilation 2 with
    padding 2 keeps the output's size), bias, padding mode, mode or pinned form."""
    base = {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "padding": 1}
    first, second = cz.DepthwiseConv2d(**base), cz.DepthwiseConv2d(**base)
    assert not torch.equal(first.weight, second.weight)
    same = cz.DepthwiseConv2d(**{**base, "padding": "same"})
    assert compiled_choice.handle(first) == compiled_choice.handle(second) == compiled_choice.handle(same)
    pinned = cz.DepthwiseConv2d(**base)
    pinned.implementation = "kernel"
    others = [cz.DepthwiseConv2d(**{**base, "stride": 2}), cz.DepthwiseConv2d(**{**base, "dilation": 2, "padding": 2}),
              cz.DepthwiseConv2d(**{**base, "kernel_size": 5, "padding": 2}), cz.DepthwiseConv2d(4, 12, 3, padding=1),
              cz.DepthwiseConv2d(**base, bias=False), cz.DepthwiseConv2d(**base, padding_mode="reflect"),
              cz.DepthwiseConv2d(**{**base, "padding": 2}), cz.DepthwiseConv1d(**base),
              cz.Conv2d(**base, groups=4), cz.Conv2d(**base, groups=4, mode="convolution"), pinned]
    keys = [compiled_choice.handle(m) for m in [first, *others]]
    assert len(set(keys)) == len(keys), keys


@pytest.mark.parametrize("geometry", [{"stride": 2, "padding": 1}, {"dilation": 2, "padding": 2}, {"padding": "same"},
                                      {"kernel_size": (3, 5), "stride": (1, 2), "padding": (0, 2)}])
def test_the_fake_function_reads_the_output_size_from_the_key_alone(geometry: dict) -> None:
    """While compiling (fake tensors) the op's output size follows from its key, with no layer alive: a graph
    from another process carries its geometry. Checked against F.conv2d's size."""
    layer = cz.DepthwiseConv2d(4, 8, geometry.pop("kernel_size", 3), **geometry)
    key, x = compiled_choice.handle(layer), torch.randn(2, 4, 11, 12)
    expected = F.conv2d(x, layer.weight, None, layer.stride, layer.padding, layer.dilation, groups=4).shape
    weight, bias = layer.weight.detach(), layer.bias.detach()
    del layer
    gc.collect()
    with FakeTensorMode() as mode:
        fake = torch.ops.convzoo.measured_form(mode.from_tensor(x), mode.from_tensor(weight), mode.from_tensor(bias),
                                               key)
    assert fake.shape == expected


# One process: each spec (a DepthwiseConv2d(8, 16, 3) configuration and a seed for its weights) compiled by inductor
# in inference, its output against F.conv2d, with the FX graph cache's hits and misses for that compile.
_SCRIPT = r"""
import json, sys, warnings
import torch, torch.nn.functional as F
import convzoo as cz
from torch._dynamo.utils import counters
warnings.simplefilter("ignore")
torch.set_grad_enabled(False)
for spec in json.loads(sys.argv[1]):
    torch.manual_seed(spec.pop("seed"))
    layer = cz.DepthwiseConv2d(8, 16, 3, **spec).eval()
    x = torch.randn(2, 8, 12, 12)
    hits, misses = counters["inductor"]["fxgraph_cache_hit"], counters["inductor"]["fxgraph_cache_miss"]
    try:
        y = torch.compile(layer)(x)
        expected = F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation, groups=8)
        error = float((y - expected).abs().max()) if y.shape == expected.shape else f"shape {tuple(y.shape)}"
    except Exception as e:
        error = f"{type(e).__name__}: {str(e)[:200]}"
    print(json.dumps({"error": error, "hit": counters["inductor"]["fxgraph_cache_hit"] - hits,
                      "miss": counters["inductor"]["fxgraph_cache_miss"] - misses}))
    torch._dynamo.reset()
"""


def _compile_in_a_new_process(specs: list[dict], cache: str) -> list[dict]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
           "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(specs)], check=False, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_a_graph_cached_by_another_process_is_replayed_only_for_its_configuration(tmp_path) -> None:
    """Two processes, one inductor cache. The second builds a stride-2 layer, then a dilation-2 one (same output
    size as the first process's layers), then one of the first process's configuration with other weights: the
    first two miss the cache and compute their own convolution, the third is replayed (the key is stable across
    processes) and computes with its own weights."""
    cache = str(tmp_path / "inductor")
    first = _compile_in_a_new_process([{"padding": 1, "seed": 0}, {"padding": 1, "seed": 1}], cache)
    second = _compile_in_a_new_process([{"padding": 1, "stride": 2, "seed": 2},
                                        {"padding": 2, "dilation": 2, "seed": 3}, {"padding": 1, "seed": 4}], cache)
    for result in first + second:
        assert isinstance(result["error"], float) and result["error"] < 1e-5, (first, second)
    assert first[0]["miss"] == 1 and second[0]["miss"] == 1 and second[1]["miss"] == 1, (first, second)
    assert first[1]["hit"] == 1 and second[2]["hit"] == 1, (first, second)  # same configuration, other weights


def test_threads_running_one_configuration_with_other_weights_each_get_their_own_output() -> None:
    """Layers of one key differ only in the tensors the op is given; threads calling it at once with different
    weights (each swaps them into its own private copy) get their own convolution."""
    from concurrent.futures import ThreadPoolExecutor

    layers = [cz.DepthwiseConv2d(4, 8, 3, padding=1).eval() for _ in range(2)]
    for layer in layers:
        layer.implementation = "channels_last round trip"  # a pinned torch form: no timing, no kernel to load
    key, x = compiled_choice.handle(layers[0]), torch.randn(1, 4, 9, 9)

    def run(layer: torch.nn.Module) -> float:
        expected = F.conv2d(x, layer.weight, layer.bias, 1, 1, 1, groups=4)
        with torch.no_grad():
            outputs = [torch.ops.convzoo.measured_form(x, layer.weight, layer.bias, key) for _ in range(100)]
        return max(float((y - expected).abs().max()) for y in outputs)

    with ThreadPoolExecutor(2) as pool:
        errors = list(pool.map(run, layers * 2))
    assert max(errors) < 1e-5, errors
