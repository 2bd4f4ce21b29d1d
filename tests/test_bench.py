"""convzoo.bench: the harness runs and reports sane numbers; the forms it times compute the layer's function.
No time is asserted."""

from __future__ import annotations

import json
import math

import pytest
import torch
from typer.testing import CliRunner

import convzoo as cz
from convzoo.perf.baselines import alternatives
from convzoo.perf.bench import bench_family
from convzoo.perf.timing import FORMATS, copy_bandwidth, gemm_peak, make_inputs, measure, measure_interleaved
from convzoo.cli import app
from convzoo.perf.compare import build_for_compare
from convzoo.verify import check_module, randomize_parameters_


def test_measure_reports_positive_finite_medians():
    xs = make_inputs((2, 3, 5, 5), 2, requires_grad=True)
    conv = torch.nn.Conv2d(3, 4, 3)
    t = measure(conv, xs, repeats=4)
    assert t.runs == 4 and 0 < t.min_ms <= t.median_ms and math.isfinite(t.median_ms)
    tb = measure(conv, xs, backward=True, params=list(conv.parameters()), repeats=2)
    assert tb.runs == 2 and tb.median_ms > 0 and conv.weight.grad is None  # grads cleared between runs
    both = measure_interleaved({"a": conv, "b": torch.nn.Identity()}, xs, min_time=0.0)
    assert set(both) == {"a", "b"} and all(v.median_ms > 0 and v.runs >= 3 for v in both.values())


def test_physical_limits_are_positive():
    assert 0 < gemm_peak(n=64) < 1e6
    assert 0 < copy_bandwidth(megabytes=1) < 1e5


@pytest.mark.parametrize("name", [f.name for f in cz.families()])
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_timed_form_computes_the_layer(name, fmt):
    """Native compositions, peers and naive forms equal the layer (and the layer the NumPy oracle) in both formats."""
    module, shape = build_for_compare(name, 2, 4, 8, 7, 3, torch.float32, "cpu")
    randomize_parameters_(module, torch.Generator().manual_seed(0))
    x = make_inputs(shape, 1, memory_format=FORMATS[fmt])[0]
    assert check_module(module, x) < 1e-5
    with torch.no_grad():
        y = module(x)
        for kind, label, fn in alternatives(module):
            assert kind in ("native", "peer", "naive")
            assert torch.allclose(fn(x), y, rtol=1e-5, atol=1e-5), (name, label)


def test_bench_family_runs_every_variant_in_both_formats():
    r = bench_family("hetconv", batch=1, in_channels=4, out_channels=8, size=6, min_time=0.0, max_repeats=2)
    kinds = {(v.kind, v.memory_format) for v in r.variants}
    assert {("convzoo", f) for f in FORMATS} | {("native", f) for f in FORMATS} | {("naive", f) for f in FORMATS} <= kinds
    for v in r.variants:
        assert v.forward_ms > 0 and v.forward_backward_ms > 0 and v.max_abs_diff < 1e-5, v
    assert r.mac_ratio == pytest.approx((4 // 4 * 9 + 4 - 1) / (4 * 9))  # (C_in/p·k² + C_in − C_in/p) / (C_in·k²)
    s = r.summary(gemm_gmacs=10.0)
    assert s["fwd_vs_native"] > 0 and s["fwd_bwd_vs_native"] > 0 and s["peak_fraction"] > 0


def test_hetconv_forms_agree_and_stay_exact_in_both_formats():
    m = cz.build("hetconv", 8, 12, 3)
    randomize_parameters_(m, torch.Generator().manual_seed(1))
    x = torch.randn(2, 8, 9, 9)
    for fmt in FORMATS.values():
        assert check_module(m, x.contiguous(memory_format=fmt)) < 1e-5
    torch.testing.assert_close(m._grouped_form(x), m._masked_dense_form(x), rtol=1e-5, atol=1e-5)


def test_dynamic_forms_agree():
    m = cz.build("dynamic", 4, 6, 3)
    x = torch.randn(3, 4, 7, 7)
    torch.testing.assert_close(m._batch_folded(x), m._per_sample(x), rtol=1e-5, atol=1e-5)


def test_optimize_returns_a_choice_and_keeps_the_function():
    net = torch.nn.Sequential(cz.build("standard", 3, 8), torch.nn.ReLU(), cz.build("standard", 8, 8))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        before = net(x)
    net2, choice = cz.optimize(net, x, repeats=2)
    assert choice.memory_format in FORMATS and set(choice.timings_ms) == set(FORMATS)
    assert all(t > 0 and math.isfinite(t) for t in choice.timings_ms.values()) and choice.speedup >= 1
    with torch.no_grad():
        torch.testing.assert_close(net2(x.contiguous(memory_format=FORMATS[choice.memory_format])), before)
    with pytest.raises(ValueError, match="4-D"):
        cz.optimize(net, torch.randn(3, 8, 8))


def test_timm_peer_when_installed():
    pytest.importorskip("timm")
    module, _ = build_for_compare("mixconv", 1, 6, 6, 8, 3, torch.float32, "cpu")
    assert any(kind == "peer" and "timm" in label for kind, label, _ in alternatives(module))


def test_cli_bench_writes_json_and_plot(tmp_path):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    result = CliRunner().invoke(app, ["bench", "standard", "depthwise_separable", "--batch", "1", "--in", "4",
                                      "--out", "8", "--size", "6", "--no-backward", "-o", str(out),
                                      "--plot", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["machine"]["threads"] >= 1 and data["machine"]["gemm_peak_gmacs"] > 0
    assert [s["family"] for s in data["data"]["summary"]] == ["standard", "depthwise_separable"]
    assert data["format"] == "convzoo-results/1" and data["machine"]["torch"] == torch.__version__
    assert [row[0] for row in data["tables"][0]["rows"]] == ["standard", "depthwise_separable"]
    assert data["figures"] == [{"path": "b.png", "caption": "MAC ratio against measured speed-up, per family"}]
    assert png.stat().st_size > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bench_on_cuda_uses_events():
    r = bench_family("standard", batch=1, in_channels=4, out_channels=8, size=6, device="cuda", max_repeats=2)
    assert all(v.forward_ms > 0 for v in r.variants)


def test_plot_names_never_overlap_each_other_or_other_points():
    """MAC-vs-speed plot: a dozen families at about 1× 1× (as every run has) and one at the right edge; every name
    box is clear of the others and of every other point's marker, and inside the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.text import Text

    from convzoo.perf.bench import place_labels

    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    points = [(f"family_{i}", 1.0 + 0.01 * i, 1.0 - 0.02 * i) for i in range(12)] + [("global_depthwise", 500.0, 50.0)]
    ax.scatter([p[1] for p in points], [p[2] for p in points])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(0.05, 600)
    fig.tight_layout()
    place_labels(ax, points)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the name, not its leader line
    assert len(boxes) == len(points)

    def overlap(a, b) -> bool:  # by more than half a pixel: names stacked a line apart touch
        return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5

    assert not any(overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    markers = [ax.transData.transform((x, y)) for _, x, y in points]
    for text, box in zip(ax.texts, boxes):
        others = [m for (name, *_), m in zip(points, markers) if name != text.get_text()]
        assert not any(box.x0 < mx + 5 and mx - 5 < box.x1 and box.y0 < my + 5 and my - 5 < box.y1
                       for mx, my in others), text.get_text()
        frame = ax.get_window_extent(renderer)
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text.get_text()
    plt.close(fig)
