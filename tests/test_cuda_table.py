"""tools/cuda_table.py's kernels table (benchmarks/bench_gpu_kernels.py's JSON → README): each side in its faster
memory format, ratios other / convzoo, and the issue's targets judged."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOL = Path(__file__).parents[1] / "tools" / "cuda_table.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("cuda_table", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(family, other, fmt, ours_ms, other_ms, **extra):
    return {"family": family, "level": "layer", "batch": 8, "format": fmt, "pass": "fwd", "convzoo": "convzoo layer",
            "other": other, "convzoo_ms": ours_ms, "other_ms": other_ms, "convzoo_min_ms": ours_ms * 0.9,
            "other_min_ms": other_ms, **extra}


def test_kernels_table(tool, tmp_path):
    data = {"machine": {"device": "cuda", "gpu": "GPU X", "torch": "2.x"}, "rounds": 15, "shape": [64, 128, 56, 3],
            "rows": [_row("deformable_v2", "torchvision deform_conv2d (direct)", "contiguous", 0.5, 0.9),
                     _row("deformable_v2", "torchvision deform_conv2d (direct)", "channels_last", 0.4, 1.0),
                     _row("involution", "convzoo strided views form", "contiguous", 0.3, 0.45),
                     _row("odconv", "convzoo batch-folded conv form", "contiguous", 0.3, 0.6)]}
    table = tool.render_kernels(data)
    lines = table.splitlines()
    assert lines[0].startswith("GPU X, torch 2.x; 64→128")
    deform = next(line for line in lines if line.startswith("| deformable_v2"))
    # convzoo's faster format is channels_last (0.4), torchvision's contiguous (0.9): 0.9 / 0.4
    assert "0.400 (channels_last) | 0.900 (contiguous) | 2.25 |" in deform and "≥ 1.0: met" in deform
    assert "≥ 2.0: NOT met" in next(line for line in lines if line.startswith("| involution"))
    assert next(line for line in lines if line.startswith("| odconv")).endswith("|  |")
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{tool.KERNELS_START}\nstale table\n{tool.KERNELS_END}\nb\n")
    tool.write_between(str(readme), tool.KERNELS_START, tool.KERNELS_END, table)
    text = readme.read_text()
    assert "stale table" not in text and text.startswith("a\n") and text.endswith("b\n") and "| deformable_v2 |" in text
