"""compare / bench / report after the s20 CLI review: the machine and the run's settings recorded and printed,
--threads applied, the baseline row exactly the baseline, bench's baseline and --sweep outputs, --arg errors in
one line, the GEMM peak measured as the layers are, and timing texts that match the code. Tiny shapes, 1–3 rounds;
no time is asserted (only identities between the numbers of one run)."""

from __future__ import annotations

import inspect
import json
import math
import re

import pytest
import torch
from typer.testing import CliRunner

from convzoo.cli import app
from convzoo.perf.compare import compare

TINY = ["--batch", "1", "--in", "4", "--out", "8", "--size", "6"]


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def proc_cpu_model() -> str:
    """The CPU model as the kernel reports it (what lscpu's 'Model name' reads), '' where there is none."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.lower().startswith("model name")),
                        "")
    except OSError:
        return ""


# --- 2. the machine and the settings ---------------------------------------------------------------------------------


def test_compare_json_records_the_runs_settings_and_machine():
    result = invoke("compare", "standard", "grouped", *TINY, "--kernel", "3", "--repeats", "1", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["settings"] | {"timing": ""} == {
        "batch": 1, "in_channels": 4, "out_channels": 8, "size": 6, "kernel": 3, "dtype": "float32",
        "device": "cpu", "memory_format": "contiguous", "threads": torch.get_num_threads(), "repeats": 1,
        "timing": "", "compile": None}
    machine = document["machine"]
    assert machine["torch"] == torch.__version__ and machine["threads"] == torch.get_num_threads()
    if proc_cpu_model():
        assert machine["cpu"] == proc_cpu_model()
    # the rows keep their format: the same keys as before the header, one row per family asked
    assert [r["family"] for r in document["rows"]] == ["standard", "grouped"]
    assert {"family", "params", "macs", "mac_ratio", "forward_ms", "speed_ratio", "in_channels"} <= set(
        document["rows"][0])


def test_compare_and_bench_print_the_cpu_model_and_flags(tmp_path):
    table = invoke("compare", "standard", *TINY, "--repeats", "1")
    bench = invoke("bench", "standard", *TINY, "--no-backward", "-o", str(tmp_path / "b.json"), "--plot", "")
    for result in (table, bench):
        assert result.exit_code == 0, result.output
        text = " ".join(result.stdout.split())
        assert "CPU: " in text and "flags: " in text and "torch CPU capability: " in text
        assert f"{torch.get_num_threads()} thread(s)" in text and torch.__version__ in text
        if proc_cpu_model():
            assert f"CPU: {proc_cpu_model()}" in text


def rows_file(tmp_path, header: bool):
    row = {"family": "standard", "params": 1168, "macs": 73728, "forward_ms": 0.02, "in_channels": 8,
           "out_channels": 16, "mac_ratio": 1.0, "speed_ratio": 1.0}
    data = {"settings": {"batch": 1, "in_channels": 8, "out_channels": 16, "size": 8, "kernel": 3,
                         "dtype": "float32", "device": "cpu", "threads": 1, "repeats": 3},
            "machine": {"cpu": "Some CPU", "threads": 1, "torch": "2.x"}, "rows": [row]} if header else [row]
    path = tmp_path / ("c.json" if header else "legacy.json")
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("header", [True, False])
def test_report_refuses_settings_that_contradict_the_rows(tmp_path, header):
    path = rows_file(tmp_path, header)
    result = invoke("report", "--rows", str(path), "--in", "64", "--out", "128", "-o", str(tmp_path / "r.html"))
    assert result.exit_code == 2 and not (tmp_path / "r.html").exists()
    [line] = result.stderr.splitlines()
    assert line.startswith("error: --in 64 contradicts") and "in_channels 8" in line


def test_report_takes_the_rows_settings_from_the_file(tmp_path):
    from convzoo.viz.report import build_report, read_rows

    rows = read_rows(rows_file(tmp_path, True))
    assert rows.settings["in_channels"] == 8 and rows.machine["cpu"] == "Some CPU" and rows[0]["family"] == "standard"
    legacy = read_rows(rows_file(tmp_path, False))
    assert list(legacy) == list(rows) and legacy.settings == {"in_channels": 8, "out_channels": 16}
    html = build_report(tmp_path / "r.html", rows=rows, settings={"in_channels": 8}, rows_source="c.json",
                        names=["standard"], figures=[], animations=False).read_text(encoding="utf-8")
    said = html.split("<b>Speed.</b>")[1].split("<br>")[0]
    assert "batch 1, in_channels 8, out_channels 16, size 8, kernel 3" in said and "Some CPU" in said


# --- 3. --threads ----------------------------------------------------------------------------------------------------


def test_compare_threads_are_applied_for_the_run_and_restored():
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 1
    seen: list[int] = []
    compare(batch=1, in_channels=4, out_channels=8, size=6, families=["grouped"], repeats=1,
            progress=lambda name: seen.append(torch.get_num_threads()), threads=wanted)
    assert seen and set(seen) == {wanted} and torch.get_num_threads() == before
    result = invoke("compare", "grouped", *TINY, "--repeats", "1", "--threads", str(wanted), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["threads"] == wanted and torch.get_num_threads() == before


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_compare_refuses_a_thread_count_below_one(threads):
    result = invoke("compare", "standard", *TINY, "--repeats", "1", "--threads", threads)
    assert result.exit_code == 2 and result.stderr.splitlines() == [f"error: --threads={threads} must be a positive int"]


# --- 4. bench's baseline and --sweep's outputs -----------------------------------------------------------------------


def test_bench_adds_standard_as_the_baseline_and_writes_the_plot(tmp_path):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    result = invoke("bench", "depthwise_separable", *TINY, "--no-backward", "-o", str(out), "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert "'standard' added as the baseline" in result.stdout and png.stat().st_size > 0
    data = json.loads(out.read_text())
    table = data["tables"][0]
    names = [c["name"] for c in table["columns"]]
    rows = {r[0]: dict(zip(names, r)) for r in table["rows"]}
    summary = {s["family"]: s for s in data["data"]["summary"]}
    assert set(rows) == {"depthwise_separable", "standard"}
    assert rows["depthwise_separable"]["speed-up vs standard"] == pytest.approx(
        summary["standard"]["fwd_ms"] / summary["depthwise_separable"]["fwd_ms"])


def test_bench_sweep_refuses_a_plot_and_writes_its_results_to_o(tmp_path):
    refused = invoke("bench", "hetconv", "--sweep", "--quick", "--plot", str(tmp_path / "s.png"))
    assert refused.exit_code == 2 and refused.stderr.startswith("error: --plot")
    assert "does not apply with --sweep" in refused.stderr
    out = tmp_path / "s.json"
    result = invoke("bench", "hetconv", "--sweep", "--quick", "--no-backward", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["title"].startswith("HetConv at every shape") and data["data"]["rows"]


# --- 5. --arg errors -------------------------------------------------------------------------------------------------


def defaulted(cls: type) -> list[str]:
    return [n for n, p in inspect.signature(cls).parameters.items() if p.default is not inspect.Parameter.empty]


def test_arg_errors_name_the_option_the_key_and_the_arguments():
    import torchvision

    cases = {("standard", "foo=1"): "--arg foo=1: standard (Conv2d) has no argument 'foo'; its arguments: ",
             ("standard", "kernel_size=5"): "--arg kernel_size=5: a family's kernel_size comes from --kernel; give "
                                            "--kernel 5 instead",
             ("convolution", "mode='correlation'"): "--arg mode='correlation': convolution (Conv2d) sets mode itself",
             ("torchvision:resnet18", "foo=1"): "--arg foo=1: torchvision:resnet18 (ResNet) has no argument 'foo'; "
                                                "its arguments: "}
    for (target, pair), start in cases.items():
        result = invoke("cost", target, "--arg", pair)
        assert result.exit_code == 2, result.output
        [line] = result.stderr.splitlines()
        assert line.startswith("error: " + start), line
    listing = invoke("cost", "standard", "--arg", "foo=1").stderr.split("its arguments: ")[1].strip().split(", ")
    assert {"stride", "padding", "dilation", "groups", "bias", "padding_mode"} <= set(listing)
    assert set(listing) <= set(defaulted(torch.nn.Conv2d)) | {"mode"}
    resnet = invoke("cost", "torchvision:resnet18", "--arg", "foo=1").stderr.split("its arguments: ")[1].strip()
    assert resnet.split(", ") == defaulted(torchvision.models.ResNet)


# --- 6. the baseline row ---------------------------------------------------------------------------------------------


def test_the_baseline_row_is_the_baseline():
    rows = {r.family: r for r in compare(batch=1, in_channels=8, out_channels=16, size=8,
                                         families=["standard", "depthwise_separable", "grouped"], repeats=3)}
    std = rows["standard"]
    assert std.speed_ratio == 1.0 and std.mac_ratio == 1.0
    for name in ("depthwise_separable", "grouped"):  # every row is scaled by the baseline row's own time
        assert rows[name].speed_ratio == pytest.approx(std.forward_ms / rows[name].forward_ms)
        assert math.isnan(rows[name].noise_floor)
    assert math.isfinite(std.noise_floor) and std.noise_floor > 0  # standard vs a second copy of itself
    assert std.gmacs_per_s == pytest.approx(std.macs / (std.forward_ms * 1e-3) / 1e9)


def test_the_table_states_the_noise_floor():
    from rich.console import Console

    from convzoo.perf.compare import compare_table

    rows = compare(batch=1, in_channels=4, out_channels=8, size=6, families=["standard"], repeats=2)
    console = Console(width=400, record=True)
    console.print(compare_table(rows))
    text = " ".join(console.export_text().split())
    assert f"Noise floor: a second copy of standard timed in the same rounds ran at {rows[0].noise_floor:.2f}×" in text


# --- 7. the GEMM peak ------------------------------------------------------------------------------------------------


def test_gemm_peak_is_its_fastest_call(monkeypatch):
    import convzoo.perf.timing as timing

    monkeypatch.setattr(timing, "measure", lambda *a, **k: timing.Timing(median_ms=2.0, min_ms=1.0, runs=5))
    assert timing.gemm_peak(n=10) == pytest.approx(10**3 / 1e-3 / 1e9)  # n³ MACs in the fastest call's 1 ms


def test_gemm_peak_on_the_cpu_is_the_best_size(monkeypatch):
    """Short calls find undisturbed rounds on a busy machine, long ones use threads better: the best size counts."""
    import convzoo.perf.timing as timing

    fastest = {256: 0.5, 512: 2.0, 1024: 30.0, 1536: 80.0}  # ms: 512³ MACs in 2 ms is the best throughput here
    monkeypatch.setattr(timing, "measure", lambda fn, xs, **k: timing.Timing(99.0, fastest[xs[0].shape[0]], 5))
    assert timing.CPU_GEMM_SIZES == tuple(fastest)
    assert timing.gemm_peak() == pytest.approx(max(n**3 / (ms * 1e-3) / 1e9 for n, ms in fastest.items()))
    assert timing.gemm_peak() == pytest.approx(512**3 / 2e-3 / 1e9)


def test_the_gemm_uses_tf32_exactly_when_cudnn_convs_do():
    from convzoo.perf.timing import matmul_like_conv

    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for conv_tf32 in (True, False):
            torch.backends.cudnn.allow_tf32 = conv_tf32
            torch.backends.cuda.matmul.allow_tf32 = not conv_tf32
            with matmul_like_conv("cuda") as used:
                assert torch.backends.cuda.matmul.allow_tf32 is conv_tf32 and used is conv_tf32
            assert torch.backends.cuda.matmul.allow_tf32 is (not conv_tf32)  # restored
            with matmul_like_conv("cpu") as used:
                assert used is False and torch.backends.cuda.matmul.allow_tf32 is (not conv_tf32)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_of_gemm_peak_is_the_fastest_round_and_defined_above_100_percent():
    from convzoo.perf.bench import FamilyBench, Variant, families_results_table

    bench = FamilyBench("standard", (1, 4, 8, 8), 10**9, 1.0, 1000, [
        Variant("standard", "convzoo", "convzoo Conv2d", "contiguous", 2.0, None, 0.0, forward_min_ms=1.0),
        Variant("standard", "convzoo", "convzoo Conv2d", "channels_last", 4.0, None, 0.0, forward_min_ms=1.5)])
    summary = bench.summary(gemm_gmacs=500.0)
    assert summary["gmacs_per_s"] == pytest.approx(500.0)  # the median: 10⁹ MACs in 2 ms
    assert summary["peak_fraction"] == pytest.approx(2.0)  # the fastest round: 10⁹ MACs in 1 ms = 1000 GMAC/s
    notes = families_results_table([summary], [bench.to_dict()], 500.0, 10.0).notes
    assert "fastest round" in notes and "above 100 %" in notes and "Winograd" in notes


# --- 8. timing texts -------------------------------------------------------------------------------------------------


def test_repeats_help_and_the_report_say_how_compare_times(tmp_path):
    from convzoo.perf.compare import MAX_ROUNDS, MAX_TIME, MIN_ROUNDS, MIN_TIME, timing_rule
    from convzoo.viz.report import build_report

    help_text = " ".join(invoke("compare", "--help").stdout.replace("│", " ").split())
    assert f"at least {MIN_TIME:g} s and {MIN_ROUNDS} rounds" in help_text
    assert f"up to {MAX_TIME:g} s or {MAX_ROUNDS} rounds" in help_text and "0.25" not in help_text
    assert re.search(rf"at least {MIN_TIME:g} s and {MIN_ROUNDS} rounds.*up to {MAX_TIME:g} s or {MAX_ROUNDS} "
                     "rounds", timing_rule(None))
    assert timing_rule(1).startswith("1 round per family") and "fastest round" in timing_rule(1)
    html = build_report(tmp_path / "r.html", settings={"batch": 1, "in_channels": 4, "out_channels": 8, "size": 6,
                                                        "repeats": 1}, names=["pointwise"], figures=[],
                        animations=False).read_text(encoding="utf-8")
    assert timing_rule(1).replace("'", "&#x27;") in html and "medians" not in html.split("<br>")[0]


# --- channels_last --------------------------------------------------------------------------------------------------


def test_compare_channels_last_times_every_layer_and_input_in_nhwc(monkeypatch):
    """--channels-last: the baseline and each family see NHWC inputs and hold NHWC 4-D weights, as a model converted
    with ``model.to(memory_format=torch.channels_last)`` does; the settings say so; the layers still match the
    oracle (the rows' error)."""
    import convzoo.perf.compare as cmp

    seen: dict[str, set[bool]] = {}
    built = cmp.build_layer

    def spying(name, *args, **kwargs):
        b = built(name, *args, **kwargs)

        def record(module, inputs) -> None:
            x = inputs[0]
            if x.device.type != "meta":  # the timed calls (cost() runs the layer on the meta device)
                seen.setdefault(name, set()).add(x.is_contiguous(memory_format=torch.channels_last)
                                                 and not x.is_contiguous())

        b.module.register_forward_pre_hook(record)
        return b

    monkeypatch.setattr(cmp, "build_layer", spying)
    rows = compare(batch=2, in_channels=4, out_channels=8, size=6, families=["standard", "depthwise", "hetconv"],
                   repeats=1, memory_format=torch.channels_last)
    assert seen == {"standard": {True}, "depthwise": {True}, "hetconv": {True}}
    assert all(r.max_error < 1e-5 for r in rows)
    result = invoke("compare", "depthwise", *TINY, "--repeats", "1", "--json", "--channels-last")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["memory_format"] == "channels_last"
    with pytest.raises(ValueError, match="memory_format=torch.preserve_format must be"):
        compare(batch=1, in_channels=4, out_channels=8, size=6, families=["standard"], repeats=1,
                memory_format=torch.preserve_format)


def test_compare_channels_last_is_refused_with_another_runtime():
    result = invoke("compare", "depthwise", *TINY, "--runtime", "onnxruntime", "--channels-last")
    assert result.exit_code == 2 and "--channels-last times eager PyTorch layers" in result.output


def test_compare_table_names_the_layout_it_timed():
    # the title said "times (NCHW)" under --channels-last too
    nhwc = invoke("compare", "depthwise", *TINY, "--repeats", "1", "--channels-last")
    assert nhwc.exit_code == 0, nhwc.output
    assert "times (NHWC) = fastest rounds" in nhwc.output and "times (NCHW)" not in nhwc.output
    nchw = invoke("compare", "depthwise", *TINY, "--repeats", "1")
    assert "times (NCHW) = fastest rounds" in nchw.output
