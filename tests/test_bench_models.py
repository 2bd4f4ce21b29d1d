"""benchmarks/bench_models.py --quick: torchvision's MobileNet v2 with its depthwise convs swapped for convzoo's, timed
against the model as torchvision builds it (same function checked first)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import torchvision

import convzoo as cz

pytestmark = pytest.mark.slow


def _bench():
    path = Path(__file__).parent.parent / "benchmarks" / "bench_models.py"
    spec = importlib.util.spec_from_file_location("bench_models", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_bench_models_quick_rows(tmp_path) -> None:
    rows = _bench().main(["--quick", "--threads", "1", "--seconds", "0.05", "--out", str(tmp_path)])
    assert [(r[0], r[1], r[2]) for r in rows] == 2 * [("mobilenet_v2", 2, "NCHW"), ("mobilenet_v2", 2, "channels_last")]
    for i, row in enumerate(rows):
        assert row[3] == 17 and all(t > 0 for t in (row[4], row[5], row[7]))
        assert row[6] == pytest.approx(row[5] / row[4]) and row[8] == pytest.approx(row[7] / row[4])
        forms = [row[9]]
        if i < 2:  # inference: also the forms measured alone
            assert len(row) == 13 and row[10] == pytest.approx(row[9] / row[4])
            forms = [row[11], row[12]]
        for text in forms:
            counts = [int(n) for n in re.findall(r"×(\d+)", text)]  # form names may hold commas
            assert sum(counts) == 17, text  # every swapped layer reports the form it runs
    assert not any(tmp_path.iterdir())  # --quick writes nothing


def test_forms_measured_alone_pins_each_layer_to_its_form_without_trials() -> None:
    bench = _bench()
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()
    swapped, _ = bench.swapped(model)
    x = torch.randn(1, 3, 32, 32)
    alone = bench.forms_measured_alone(swapped, x)
    layers = [m for m in alone.modules() if isinstance(m, cz.DepthwiseConv2d)]
    seen = {}
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.setdefault(m, args[0])) for m in layers]
    with torch.no_grad():
        torch.testing.assert_close(alone(x), model(x), rtol=1e-5, atol=1e-6)
    for hook in hooks:
        hook.remove()
    assert len(layers) == 17 and all(m.implementation in m.forms(seen[m]) for m in layers)  # a form, pinned
    assert all(m.implementation == "auto" for m in swapped.modules() if isinstance(m, cz.DepthwiseConv2d))


def test_torch_form_only_pins_every_depthwise_layer_and_keeps_the_function() -> None:
    bench = _bench()
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=10).eval()
    swapped, count = bench.swapped(model)
    pinned = bench.torch_form_only(swapped)
    layers = [m for m in pinned.modules() if isinstance(m, cz.DepthwiseConv2d)]
    assert count == len(layers) == 17 and all(m.implementation == "native" for m in layers)
    assert all(m.implementation == "auto" for m in swapped.modules() if isinstance(m, cz.DepthwiseConv2d))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(pinned(x), model(x), rtol=1e-5, atol=1e-6)
