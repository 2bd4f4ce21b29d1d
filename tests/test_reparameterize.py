"""Structural re-parameterisation: every ACNet / RepVGG / large-kernel block fuses EXACTLY into one torch conv
(eval-mode BatchNorm with random statistics folded in), found by its ``fused_conv`` interface; the fused model
has fewer params and MACs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo as cz

CASES = [("acnet", 2, 3), ("acnet", 3, 3), ("repvgg", 1, 3), ("repvgg", 2, 3), ("repvgg", 3, 3),
         ("large_kernel", 1, 31), ("large_kernel", 2, 13)]


def random_bn_(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 2 + 0.1)
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
    return module


@pytest.mark.parametrize(("name", "dim", "k"), CASES, ids=[f"{n}-{d}d" for n, d, _ in CASES])
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_conv_equals_the_branches_in_eval_mode(name, dim, k, stride):
    kw = {} if name == "large_kernel" else {"groups": 2}
    block = random_bn_(cz.build(name, 4, 4, k, dim, stride=stride, padding=k // 2, **kw)).eval()
    fused = block.fused_conv()
    assert isinstance(fused, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(fused, cz.ConvNd)
    x = torch.randn(2, 4, *(9 if dim < 3 else 6,) * dim)
    with torch.no_grad():
        y, z = block(x), fused(x)
    assert (y - z).abs().max() / y.abs().max() < 1e-5


def test_reparameterize_a_model_fuses_every_block_by_its_interface():
    class MyBlock(nn.Module):  # a user's block: not a convzoo class, only the interface
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.conv(x))

        def fused_conv(self) -> nn.Module:
            return nn.utils.fusion.fuse_conv_bn_eval(self.conv, self.bn)

    model = nn.Sequential(cz.RepVGGBlock2d(3, 8, stride=2), nn.ReLU(),
                          nn.Sequential(cz.ACNetConv2d(8, 8, bias=True), nn.ReLU(), cz.LargeKernelConv2d(8, 8, 13)),
                          cz.RepVGGBlock2d(8, 8), MyBlock(), nn.ReLU())
    random_bn_(model)
    fused, report = cz.reparameterize(model, (2, 3, 20, 20))
    assert report.fused == ["0", "2.0", "2.2", "3", "4"]
    assert model.training and isinstance(model[0], cz.RepVGGBlock2d)  # the original is untouched
    assert all(isinstance(m, nn.Conv2d) for m in (fused[0], fused[2][0], fused[2][2], fused[3], fused[4]))
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        y, z = model.eval()(x), fused(x)
    assert (y - z).abs().max() / y.abs().max() < 1e-5
    assert report.params_after < report.params_before and report.macs_after < report.macs_before
    assert report.params_after == sum(p.numel() for p in fused.parameters())
    assert report.macs_after == cz.cost(fused, (2, 3, 20, 20)).macs


def test_reparameterize_reports_latency_when_asked():
    model = nn.Sequential(cz.RepVGGBlock2d(4, 4), nn.ReLU())
    _, report = cz.reparameterize(model, (1, 4, 8, 8), time=True, min_time=0.01)
    assert report.latency_before_ms > 0 and report.latency_after_ms > 0 and report.speedup > 0
    assert "speed-up" in report.summary()
    with pytest.raises(ValueError, match="time=True needs input_shape"):
        cz.reparameterize(model, time=True)


def test_a_convolution_mode_branch_fuses_with_its_flipped_kernel():
    """convert(model, 'convolution') makes the branches true convolutions: the fused conv equals the block (it read
    the stored weight unflipped: 0.97 off)."""
    model = nn.Sequential(cz.RepVGGBlock2d(4, 4), nn.ReLU(), cz.ACNetConv2d(4, 4))
    model, _ = cz.convert(random_bn_(model), "convolution")
    assert model[0].branches["kxk"].conv.mode == "convolution"
    fused, report = cz.reparameterize(model.eval())
    assert report.fused == ["0", "2"]
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        y, z = model(x), fused(x)
    assert (y - z).abs().max() / y.abs().max() < 1e-5


@pytest.mark.parametrize(("family", "found"), [("grouped", r"Conv2d with a \(4, 2, 3, 3\) weight"),
                                               ("depthwise_separable", "DepthwiseSeparableConv2d")])
def test_a_block_whose_branches_convert_replaced_says_so(family, found):
    block = cz.RepVGGBlock2d(4, 4)
    converted, _ = cz.convert(nn.Sequential(block), family, **({"groups": 2} if family == "grouped" else {}))
    with pytest.raises(ValueError, match=rf"RepVGGBlock2d\.branches\['kxk'\]\.conv is {found}, not one conv with a "
                                         r"\(4, 4, k…\) weight: only blocks whose branches are plain convs fuse"):
        converted[0].fused_conv()


def test_a_block_used_twice_is_fused_once_and_stays_shared():
    block = random_bn_(cz.RepVGGBlock2d(4, 4))
    model = nn.Sequential(block, nn.ReLU(), block).eval()
    fused, report = cz.reparameterize(model, (2, 4, 9, 9))
    assert report.fused == ["0", "2"] and fused[0] is fused[2] and isinstance(fused[0], cz.ConvNd)
    assert not any(isinstance(m, cz.RepVGGBlock2d) for m in fused.modules())
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        y, z = model(x), fused(x)
    assert (y - z).abs().max() / y.abs().max() < 1e-5
