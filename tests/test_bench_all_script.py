"""benchmarks/bench_all.py --quick: the results file and plot, named after the CPU with --machine-tag (another CPU
type's run beside the committed one the family pages quote), and the plot the results file names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convzoo.perf.results import machine_info, machine_tag, read_results

pytestmark = pytest.mark.slow  # two runs of the script (~10 s)
SCRIPT = Path(__file__).parent.parent / "benchmarks" / "bench_all.py"


def _run(out: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args, "standard", "depthwise"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_bench_all_names_its_files_after_the_machine_when_asked(tmp_path):
    tag = machine_tag(machine_info())
    _run(tmp_path / "tagged", "--machine-tag")
    assert sorted(p.name for p in (tmp_path / "tagged").iterdir()) == [f"bench_all-{tag}.json",
                                                                       f"mac_vs_speed-{tag}.png"]
    run = read_results(tmp_path / "tagged" / f"bench_all-{tag}.json")
    assert [f["path"] for f in run.figures] == [f"mac_vs_speed-{tag}.png"]  # the page finds the plot it names
    assert "--machine-tag" in run.command
    _run(tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["bench_all.json", "mac_vs_speed.png"]
