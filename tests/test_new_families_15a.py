"""Sub-pixel, ACNet, RepVGG, large-kernel, partial and Ghost layers against the NumPy oracle (reference.py, written
from the papers' equations) on shapes and arguments drawn by hypothesis; fp32 relative error < 1e-5. BatchNorm
running statistics are drawn at random too, and both train mode (batch statistics) and eval mode are checked."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import convzoo as cz
from convzoo.verify import TOLERANCE, check_module, randomize_parameters_

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOP = {1: 11, 2: 8, 3: 5}


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    randomize_parameters_(module, g)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return module


def rand(shape, seed: int) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def check(module: nn.Module, x: torch.Tensor, seed: int, train: bool) -> None:
    randomize_(module, seed).train(train)
    error = check_module(module, x)
    assert error < TOLERANCE, f"{module}: relative error {error:.3g}"


@SETTINGS
@given(st.data())
def test_subpixel_matches_reference(data):
    dim = data.draw(st.sampled_from([1, 2, 3]))
    r = data.draw(st.integers(1, 3 if dim < 3 else 2))
    k = data.draw(st.integers(1, 3))
    cin, cout = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    size = tuple(data.draw(st.integers(k, max(k, TOP[dim]))) for _ in range(dim))  # at least the kernel
    layer = cz.build("subpixel", cin, cout, k, dim, upscale_factor=r, padding=data.draw(st.sampled_from([0, "same"])),
                     padding_mode=data.draw(st.sampled_from(["zeros", "reflect"])) if min(size) > k else "zeros")
    x = rand((2, cin, *size), data.draw(st.integers(0, 99)))
    assert layer(x).shape[2:] == tuple(r * o for o in layer.conv(x).shape[2:])
    check(layer, x, data.draw(st.integers(0, 99)), False)


@SETTINGS
@given(st.data())
def test_branch_blocks_match_reference_in_train_and_eval(data):
    name = data.draw(st.sampled_from(["acnet", "repvgg", "large_kernel"]))
    dim = data.draw(st.sampled_from(cz.family(name).dims))
    k = data.draw(st.sampled_from([1, 3, 5] if name != "large_kernel" else [3, 5, 7]))
    if name == "acnet":
        k = max(k, 3)
    stride = data.draw(st.integers(1, 2))
    c = data.draw(st.sampled_from([2, 4]))
    cout = c if name == "large_kernel" else data.draw(st.sampled_from([c, 2 * c]))
    groups = data.draw(st.sampled_from([1, 2])) if name != "large_kernel" else None
    kw = {"stride": stride, "padding": k // 2 + data.draw(st.integers(0, 1)),
          "padding_mode": data.draw(st.sampled_from(["zeros", "reflect", "circular"])), "bias": data.draw(st.booleans())}
    if groups is not None:
        kw["groups"] = groups
    layer = cz.build(name, c, cout, k, dim, **kw)
    # at least the kernel; reflect/circular padding (as torch's) also needs more input than padding
    low = k if kw["padding_mode"] == "zeros" else max(k, kw["padding"] + 1)
    size = tuple(data.draw(st.integers(low, max(low, TOP[dim]))) for _ in range(dim))
    x = rand((3, c, *size), data.draw(st.integers(0, 99)))
    check(layer, x, data.draw(st.integers(0, 99)), data.draw(st.booleans()))


@SETTINGS
@given(st.data())
def test_partial_matches_reference(data):
    dim = data.draw(st.sampled_from([1, 2, 3]))
    n_div = data.draw(st.integers(1, 4))
    c = n_div * data.draw(st.integers(1, 2)) + data.draw(st.integers(0, 1))
    k = data.draw(st.integers(1, 4))
    layer = cz.PartialConv1d if dim == 1 else cz.PartialConv2d if dim == 2 else cz.PartialConv3d
    module = layer(c, c, k, dilation=data.draw(st.integers(1, 2)), n_div=n_div, bias=data.draw(st.booleans()))
    size = tuple(data.draw(st.integers(1, TOP[dim])) for _ in range(dim))
    x = rand((2, c, *size), data.draw(st.integers(0, 99)))
    y = module(x)
    assert torch.equal(y[:, module.conv_channels:], x[:, module.conv_channels:])  # untouched, bit for bit
    check(module, x, data.draw(st.integers(0, 99)), False)


@SETTINGS
@given(st.data())
def test_ghost_matches_reference(data):
    dim = data.draw(st.sampled_from([1, 2, 3]))
    ratio = data.draw(st.integers(2, 4))
    cin, cout = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 7))
    k = data.draw(st.integers(1, 3))
    module = cz.build("ghost", cin, cout, k, dim, ratio=ratio, dw_size=data.draw(st.sampled_from([1, 3])),
                      stride=data.draw(st.integers(1, 2)))
    assert module.primary.out_channels == -(-cout // ratio)
    size = tuple(data.draw(st.integers(k, max(k, TOP[dim]))) for _ in range(dim))  # at least the kernel
    x = rand((2, cin, *size), data.draw(st.integers(0, 99)))
    check(module, x, data.draw(st.integers(0, 99)), False)


def test_costs_follow_the_papers_formulas():
    n, c, h = 2, 16, 10
    shape = (n, c, h, h)
    # sub-pixel: the conv runs at low resolution with C_out·r² filters
    assert cz.build("subpixel", c, 8, 3, upscale_factor=3).cost(shape).macs == n * h * h * 8 * 9 * c * 9
    # partial: (C/n_div)²·k² per position, 1/16 of the full conv for n_div = 4
    assert cz.PartialConv2d(c, c, 3).cost(shape).macs * 16 == n * h * h * c * c * 9
    # ghost: m·C_in·k² + m·(s−1)·d², m = C_out/s
    assert cz.GhostModule2d(c, 32, 1, ratio=2, dw_size=3).cost(shape).macs == n * h * h * (16 * c + 16 * 9)
    # RepVGG at training time: 3×3 + 1×1 (identity and BN are not MACs); BN 2 ops/element per branch
    block = cz.RepVGGBlock2d(c, c, 3)
    cost = block.cost(shape)
    assert cost.macs == n * h * h * c * c * (9 + 1)
    assert cost.other_ops == 3 * 2 * n * c * h * h + 2 * n * c * h * h
    assert cz.cost(block, shape).macs == cost.macs


def test_errors_name_argument_value_and_rule():
    with pytest.raises(ValueError, match=r"out_channels=8 must equal in_channels=4"):
        cz.PartialConv2d(4, 8)
    with pytest.raises(ValueError, match=r"stride=2 must be 1"):
        cz.PartialConv2d(4, 4, 3, 2, 1)
    with pytest.raises(ValueError, match=r"n_div=8 must not exceed in_channels=4"):
        cz.PartialConv2d(4, 4, n_div=8)
    with pytest.raises(ValueError, match=r"small_kernel=9 must not exceed kernel_size=7"):
        cz.LargeKernelConv2d(4, 4, 7, small_kernel=9)
    with pytest.raises(ValueError, match=r"identity=True needs in_channels == out_channels"):
        cz.RepVGGBlock2d(4, 8, identity=True)
    with pytest.raises(ValueError, match=r"a centred size-keeping padding \(got \(\(0, 0\), \(0, 0\)\)\)"):
        cz.RepVGGBlock2d(4, 4, padding=0, identity=True)  # any padding builds (small branches crop); not the identity
    with pytest.raises(ValueError, match=r"ratio=1 must be >= 2"):
        cz.GhostModule2d(4, 4, ratio=1)
    with pytest.raises(ValueError, match=r"init='he' is unknown"):
        cz.SubPixelConv2d(4, 4, init="he")


def test_repvgg_identity_branch_follows_the_papers_rule():
    assert cz.RepVGGBlock2d(8, 8).identity is not None
    assert cz.RepVGGBlock2d(8, 8, stride=2).identity is None
    assert cz.RepVGGBlock2d(8, 16).identity is None
    assert cz.RepVGGBlock2d(8, 8, identity=False).identity is None
