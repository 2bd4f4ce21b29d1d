"""convzoo.cost on torchvision's classification zoo against an independent count: forward hooks on the modules
that hold conv and linear weights (and on the attention modules that apply their projection weights through
F.linear), run on the meta device. ``macs`` must equal the hook count of weight multiply-accumulates exactly; the
activation × activation products of attention are ``activation_macs``, counted by hand here for ViT and Swin."""

from __future__ import annotations

import json
import math
import time

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.swin_transformer import ShiftedWindowAttention
from typer.testing import CliRunner

import convzoo as cz
from convzoo.cli import app
from test_receptive_field_zoo import meta_parameters


def hook_macs(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Σ weight MACs from forward hooks: conv N·prod(out)·|W|, transposed conv N·prod(in)·|W|, linear
    prod(leading dims)·in·out; multi-head attention L·N·(3E² in + E² out); Swin window attention: its qkv and
    proj weights on the window-padded map (B·H_p·W_p tokens)."""
    total = 0

    def conv(m: nn.Module, i: tuple, o: torch.Tensor) -> None:
        nonlocal total
        if m.transposed:
            total += i[0].shape[0] * math.prod(i[0].shape[2:]) * m.weight.numel()
        else:
            total += o.shape[0] * math.prod(o.shape[2:]) * m.weight.numel()

    def linear(m: nn.Module, i: tuple, o: torch.Tensor) -> None:
        nonlocal total
        total += math.prod(o.shape[:-1]) * m.in_features * m.out_features

    def attention(m: nn.MultiheadAttention, i: tuple, o: tuple) -> None:
        nonlocal total
        q, k, v = i[:3]
        total += q.shape[0] * q.shape[1] * m.embed_dim * m.embed_dim  # query projection (and out_proj below)
        total += k.shape[0] * k.shape[1] * m.kdim * m.embed_dim + v.shape[0] * v.shape[1] * m.vdim * m.embed_dim
        total += q.shape[0] * q.shape[1] * m.embed_dim * m.embed_dim

    def window(m: nn.Module, i: tuple, o: torch.Tensor) -> None:
        nonlocal total
        b, h, w, c = i[0].shape
        tokens = b * math.ceil(h / m.window_size[0]) * m.window_size[0] * math.ceil(w / m.window_size[1]) * m.window_size[1]
        total += tokens * (m.qkv.weight.numel() + m.proj.weight.numel())

    handles = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            handles.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear))
        elif isinstance(module, nn.MultiheadAttention):
            handles.append(module.register_forward_hook(attention))
        elif isinstance(module, ShiftedWindowAttention):
            handles.append(module.register_forward_hook(window))
    try:
        with torch.no_grad():
            model.eval()(torch.empty(shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return total


def _compare(name: str) -> tuple[int, int]:
    size = 299 if name == "inception_v3" else 224
    with meta_parameters():
        model = torchvision.models.get_model(name, weights=None)
    report = cz.cost(model, (1, 3, size, size))
    assert report.params == sum(p.numel() for p in model.parameters()), name
    assert report.macs == hook_macs(model, (1, 3, size, size)), name
    return report.macs, report.activation_macs


def test_vit_b_32_weight_macs_equal_the_hook_count_and_attention_is_apart() -> None:
    macs, activation = _compare("vit_b_32")
    # 12 layers × (QKᵀ + AV) over L = 7·7 + 1 = 50 tokens of width 768: 2·50²·768 each
    assert activation == 12 * 2 * 50 * 50 * 768 == 46_080_000
    assert macs == 4_363_106_304  # torchvision's table lists 4.41 G, which includes the 46.1 M above


def test_swin_t_window_attention_is_apart() -> None:
    macs, activation = _compare("swin_t")
    # per stage: blocks × windows × 2·49²·C; (2, 2, 6, 2) blocks, 64/16/4/1 windows, C = 96·2^s
    assert activation == sum(b * n * 2 * 49 * 49 * c for b, n, c in
                             ((2, 64, 96), (2, 16, 192), (6, 4, 384), (2, 1, 768)))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "inception_v3", "maxvit_t", "convnext_tiny"])
def test_cost_equals_the_hook_count_sample(name: str) -> None:
    _, activation = _compare(name)
    assert (activation > 0) == (name == "maxvit_t")


@pytest.mark.slow
def test_cost_equals_the_hook_count_on_every_classifier() -> None:
    names = torchvision.models.list_models(module=torchvision.models)
    start = time.perf_counter()
    for name in names:
        _compare(name)
    print(f"{len(names)} classifiers: params and weight MACs equal the hook count ({time.perf_counter() - start:.1f} s)")


def test_cli_json_and_table_have_activation_macs() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["cost", "torchvision:vit_b_32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["activation_macs"] == 46_080_000 and data["macs"] == 4_363_106_304
    assert "activation" in data["convention"]
    assert all("activation_macs" in row for row in data["layers"])
    result = runner.invoke(app, ["cost", "standard", "--in", "3", "--out", "8", "--input", "1,3,8,8"])
    assert result.exit_code == 0 and "activation" in result.stdout  # the convention, in the title
    result = runner.invoke(app, ["cost", "torchvision:vit_b_32"])
    assert result.exit_code == 0 and "activation MACs" in " ".join(result.stdout.split())
