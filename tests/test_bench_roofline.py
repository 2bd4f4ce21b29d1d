"""The bench's roofline bound (per stage, from the layer contract), the path column and the peers rows: structure
only, no timing asserts."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from convzoo.perf.bench import (
    BACKWARD_FACTOR,
    bench_family,
    bench_module,
    roofline_stages,
    stage_costs,
)
from convzoo.perf.compare import build_for_compare

QUICK = {"min_time": 0.0, "max_repeats": 1, "min_repeats": 1}


@pytest.mark.parametrize("name", ["flattened", "shuffled_grouped", "depthwise", "global_depthwise", "dynamic"])
def test_stages_add_up_to_the_layer(name):
    module, shape = build_for_compare(name, 2, 4, 8, 6, 3, torch.float32, "cpu")
    parts = stage_costs(module, shape, torch.float32)
    whole = cz.cost(module, shape)
    assert sum(p[1] for p in parts) == whole.macs and sum(p[2] for p in parts) == whole.bytes
    if name in ("flattened", "shuffled_grouped"):  # composites are split into their stages
        assert len(parts) == len(module.stages())


def test_bound_is_max_of_compute_and_traffic_per_stage():
    module, shape = build_for_compare("flattened", 2, 4, 8, 6, 3, torch.float32, "cpu")
    peak, bandwidth = 10.0, 5.0
    for st in roofline_stages(module, shape, torch.float32, peak, bandwidth):
        assert st.bound_ms == pytest.approx(1e3 * max(st.macs / (peak * 1e9), st.bytes / (bandwidth * 1e9)))


def test_roofline_rows_per_format_with_path():
    result = bench_family("depthwise", 1, 4, 8, 6, 3, peak_gmacs=10.0, bandwidth_gbs=5.0, **QUICK)
    rows = result.roofline()
    assert set(rows) == {"contiguous", "channels_last"}
    module = cz.DepthwiseConv2d(4, 8, 3, padding=1)  # the family's layer: the path is one of its forms there
    for fmt, memory_format in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        assert rows[fmt]["path"] in module.forms(torch.rand(1, 4, 8, 6).contiguous(memory_format=memory_format))
    for row in rows.values():
        assert row["fwd_vs_bound"] == pytest.approx(row["fwd_ms"] / result.bound_ms)
        assert row["fwd_bwd_bound_ms"] == pytest.approx(BACKWARD_FACTOR * result.bound_ms)
    summary = result.summary()
    assert summary["roofline"] == rows


def test_channel_shuffle_benches_as_a_module():
    result = bench_module("channel shuffle", cz.ChannelShuffle(2), (1, 4, 5, 5), peak_gmacs=10.0, bandwidth_gbs=5.0,
                          **QUICK)
    assert result.macs == 0 and result.bound_ms == pytest.approx(1e3 * result.bytes / 5e9)
    assert {v.memory_format for v in result.variants if v.kind == "convzoo"} == {"contiguous", "channels_last"}


@pytest.mark.parametrize(("name", "peer"), [("mixconv", "timm MixedConv2d"), ("dynamic", "timm CondConv2d"),
                                            ("deformable", "torchvision deform_conv2d")])
def test_peers_timed_in_both_formats_and_passes(name, peer):
    pytest.importorskip("timm")
    pytest.importorskip("torchvision")
    result = bench_family(name, 1, 6, 6, 8, 3, **QUICK)
    rows = [r for r in result.peers() if r["peer"].startswith(peer)]
    assert {r["format"] for r in rows} == {"contiguous", "channels_last"}
    assert all("fwd_ratio" in r and "fwd_bwd_ratio" in r for r in rows)
    assert all(v.max_abs_diff < 1e-4 for v in result.variants if v.kind == "peer")  # the same function


def test_cli_bench_prints_roofline_and_peers(tmp_path):
    pytest.importorskip("timm")
    out = tmp_path / "b.json"
    result = CliRunner().invoke(app, ["bench", "depthwise", "mixconv", "--batch", "1", "--in", "4", "--out", "8",
                                      "--size", "8", "-o", str(out), "--plot", ""])
    assert result.exit_code == 0, result.output
    assert "roofline" in result.output and "fwd / bound" in result.output and "peers" in result.output
    data = json.loads(out.read_text())
    rows = data["data"]["summary"][0]["roofline"]
    assert set(rows) == {"contiguous", "channels_last"} and all("path" in r and "bound_ms" in r for r in rows.values())
    assert data["data"]["summary"][1]["peers"]
    captions = [t["caption"] for t in data["tables"]]
    assert captions[1].startswith("Roofline") and captions[2].startswith("Peers")
