"""Same weights in convzoo's layers and in timm's independent implementations give the same outputs, and
convzoo.cost agrees with an independent MAC count (forward hooks on timm's convs and linears). Skipped without timm.
timm's code is only run here, never copied."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import convzoo as cz

timm = pytest.importorskip("timm")


def hook_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Conv / linear MACs counted from the shapes seen at run time (independent of convzoo.cost)."""
    total = 0

    def conv(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.weight[0].numel()

    def linear(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    handles = [m.register_forward_hook(conv if isinstance(m, nn.modules.conv._ConvNd) else linear)
               for m in model.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total


def random_bn_(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


def _load_bn(mine: nn.Module, theirs: nn.Module) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(mine, name).data.copy_(getattr(theirs, name).data)


def load_repvgg_from_timm(mine: cz.models.RepVGG, theirs: nn.Module) -> None:
    from timm.models.byobnet import RepVggBlock

    ours = [m for m in mine.modules() if isinstance(m, cz.RepVGGBlock2d)]
    peers = [m for m in theirs.modules() if isinstance(m, RepVggBlock)]
    assert len(ours) == len(peers) == 22
    for a, b in zip(ours, peers):
        a.branches["kxk"].conv.weight.data.copy_(b.conv_kxk.conv.weight.data)
        _load_bn(a.branches["kxk"].bn, b.conv_kxk.bn)
        a.branches["1x1"].conv.weight.data.copy_(b.conv_1x1.conv.weight.data)
        _load_bn(a.branches["1x1"].bn, b.conv_1x1.bn)
        assert (a.identity is None) == (b.identity is None)
        if a.identity is not None:
            _load_bn(a.identity, b.identity)
    mine.fc.load_state_dict(theirs.get_classifier().state_dict())


@pytest.mark.slow
def test_repvgg_a0_equals_timm_with_the_same_weights_and_fuses_to_timms_deploy_model():
    theirs = random_bn_(timm.create_model("repvgg_a0", pretrained=False)).eval()
    mine = cz.models.repvgg_a0()
    load_repvgg_from_timm(mine, theirs)
    mine.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        y_theirs, y_mine = theirs(x), mine(x)
    torch.testing.assert_close(y_mine, y_theirs, rtol=1e-4, atol=1e-4)
    fused, _ = cz.reparameterize(mine)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), y_theirs, rtol=1e-4, atol=1e-4)


def test_repvgg_block_equals_timm_block_with_the_same_weights():
    from timm.models.byobnet import RepVggBlock

    for cin, cout, stride in ((8, 8, 1), (8, 16, 2)):
        theirs = random_bn_(RepVggBlock(cin, cout, 3, stride)).eval()
        mine = cz.RepVGGBlock2d(cin, cout, 3, stride).eval()
        mine.branches["kxk"].conv.weight.data.copy_(theirs.conv_kxk.conv.weight.data)
        _load_bn(mine.branches["kxk"].bn, theirs.conv_kxk.bn)
        mine.branches["1x1"].conv.weight.data.copy_(theirs.conv_1x1.conv.weight.data)
        _load_bn(mine.branches["1x1"].bn, theirs.conv_1x1.bn)
        if theirs.identity is not None:
            _load_bn(mine.identity, theirs.identity)
        x = torch.randn(2, cin, 12, 12)
        with torch.no_grad():
            torch.testing.assert_close(torch.relu(mine(x)), theirs(x), rtol=1e-5, atol=1e-5)


def test_repvgg_a0_cost_equals_an_independent_count_on_timms_model_and_the_paper():
    shape = (1, 3, 224, 224)
    theirs = timm.create_model("repvgg_a0", pretrained=False).eval()
    mine = cz.models.repvgg_a0()
    report = cz.cost(mine, shape)
    assert report.macs == hook_macs(theirs, torch.zeros(shape))  # training-time (multi-branch) form
    assert report.params == sum(p.numel() for p in theirs.parameters())
    fused, rep = cz.reparameterize(mine, shape)
    for m in theirs.modules():  # timm's own deploy conversion of every block
        if hasattr(m, "reparameterize") and m is not theirs:
            m.reparameterize()
    assert rep.macs_after == hook_macs(theirs, torch.zeros(shape))
    # RepVGG paper, Table 4: RepVGG-A0 (deployed) 8.30 M params, 1.4 G FLOPs (multiply-adds): 1.36 G exactly
    assert round(rep.params_after / 1e6, 2) == 8.31 or round(rep.params_after / 1e6, 1) == 8.3
    assert round(rep.macs_after / 1e9, 2) == 1.36


def test_ghost_module_equals_timm_ghost_module_with_the_same_weights():
    from timm.models.ghostnet import GhostModule

    for cin, cout, k, stride in ((8, 16, 1, 1), (6, 9, 3, 2)):
        theirs = random_bn_(GhostModule(cin, cout, k, ratio=2, dw_size=3, stride=stride)).eval()
        mine = cz.GhostModule2d(cin, cout, k, stride, k // 2, bias=False, norm_layer=nn.BatchNorm2d,
                                activation=nn.ReLU).eval()
        mine.primary.weight.data.copy_(theirs.primary_conv[0].weight.data)
        _load_bn(mine.primary_norm, theirs.primary_conv[1])
        mine.cheap.weight.data.copy_(theirs.cheap_operation[0].weight.data)
        _load_bn(mine.cheap_norm, theirs.cheap_operation[1])
        x = torch.randn(2, cin, 11, 11)
        with torch.no_grad():
            torch.testing.assert_close(mine(x), theirs(x), rtol=1e-5, atol=1e-5)
        assert mine.cost(tuple(x.shape)).macs == hook_macs(theirs, x)


def test_partial_conv_equals_fasternets_partial_conv3_with_the_same_weights():
    from timm.models.fasternet import Partial_conv3

    for forward in ("split_cat", "slicing"):
        theirs = Partial_conv3(16, 4, forward).eval()
        mine = cz.PartialConv2d(16, 16, 3, bias=False, n_div=4)
        mine.conv.weight.data.copy_(theirs.partial_conv3.weight.data)
        x = torch.randn(2, 16, 10, 10)
        with torch.no_grad():
            torch.testing.assert_close(mine(x), theirs(x), rtol=1e-6, atol=1e-6)
        assert mine.cost(tuple(x.shape)).macs == hook_macs(theirs, x)


def load_fasternet_from_timm(mine: cz.models.FasterNet, theirs: nn.Module) -> None:
    from timm.models.fasternet import MLPBlock

    mine.embed[0].load_state_dict(theirs.patch_embed.proj.state_dict())
    mine.embed[1].load_state_dict(theirs.patch_embed.norm.state_dict())
    for i, (ours, peer) in enumerate(zip(mine.stages, theirs.stages)):
        if i > 0:
            ours[0].load_state_dict(peer.downsample.reduction.state_dict())
            ours[1].load_state_dict(peer.downsample.norm.state_dict())
    blocks = [m for m in mine.modules() if isinstance(m, cz.models.FasterNetBlock)]
    peers = [m for m in theirs.modules() if isinstance(m, MLPBlock)]
    assert len(blocks) == len(peers) == 13
    for a, b in zip(blocks, peers):
        a.pconv.conv.load_state_dict(b.spatial_mixing.partial_conv3.state_dict())
        a.mlp.load_state_dict(b.mlp.state_dict())
    mine.head[1].load_state_dict(theirs.conv_head.state_dict())
    mine.head[4].load_state_dict(theirs.classifier.state_dict())


def test_fasternet_t0_equals_timm_with_the_same_weights_and_reproduces_the_papers_cost():
    shape = (1, 3, 224, 224)
    theirs = random_bn_(timm.create_model("fasternet_t0", pretrained=False)).eval()
    mine = cz.models.fasternet_t0()
    load_fasternet_from_timm(mine, theirs)
    mine.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(mine(x), theirs(x), rtol=1e-4, atol=1e-4)
    report = cz.cost(mine, shape)
    assert report.macs == hook_macs(theirs, torch.zeros(shape))
    assert report.params == sum(p.numel() for p in theirs.parameters())
    # FasterNet paper (Table 10 / Appendix): FasterNet-T0 0.34 G FLOPs (multiply-adds), 3.9 M params
    assert round(report.macs / 1e9, 2) == 0.34 and round(report.params / 1e6, 1) == 3.9


def _copy_state(mine: nn.Module, theirs: nn.Module) -> None:
    """Tensors of two modules built in the same order, copied pairwise (shapes checked)."""
    ours, peers = list(mine.state_dict().values()), list(theirs.state_dict().values())
    assert len(ours) == len(peers)
    for a, b in zip(ours, peers):
        assert a.shape == b.shape
        a.copy_(b)


def load_ghostnet_from_timm(mine: cz.models.GhostNet, theirs: nn.Module) -> None:
    from timm.models.ghostnet import GhostBottleneck

    _copy_state(mine.stem[0], theirs.conv_stem)
    _copy_state(mine.stem[1], theirs.bn1)
    blocks = [m for m in mine.modules() if isinstance(m, cz.models.GhostBottleneck)]
    peers = [m for m in theirs.modules() if isinstance(m, GhostBottleneck)]
    assert len(blocks) == len(peers) == 16
    for a, b in zip(blocks, peers):
        _copy_state(a.expand, b.ghost1)
        assert isinstance(a.depthwise, nn.Identity) == (b.conv_dw is None)
        if b.conv_dw is not None:
            _copy_state(a.depthwise[0], b.conv_dw)
            _copy_state(a.depthwise[1], b.bn_dw)
        assert isinstance(a.se, nn.Identity) == (b.se is None)
        if b.se is not None:
            _copy_state(a.se.reduce, b.se.conv_reduce)
            _copy_state(a.se.expand, b.se.conv_expand)
        _copy_state(a.project, b.ghost2)
        _copy_state(a.shortcut, b.shortcut)
    _copy_state(mine.blocks[-1], theirs.blocks[-1])
    _copy_state(mine.head[1], theirs.conv_head)
    _copy_state(mine.head[-1], theirs.classifier)


def test_ghostnet_1_0_equals_timm_with_the_same_weights():
    theirs = random_bn_(timm.create_model("ghostnet_100", pretrained=False)).eval()
    mine = cz.models.ghostnet_1_0()
    with torch.no_grad():
        load_ghostnet_from_timm(mine, theirs)
    mine.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        y_mine, y_theirs = mine(x), theirs(x)
    assert float(y_theirs.std()) > 0
    torch.testing.assert_close(y_mine, y_theirs, rtol=1e-5, atol=1e-5 * float(y_theirs.abs().max()))


def test_ghostnet_1_0_cost_equals_an_independent_count_on_timms_model_and_the_paper():
    shape = (1, 3, 224, 224)
    theirs = timm.create_model("ghostnet_100", pretrained=False).eval()
    report = cz.cost(cz.models.ghostnet_1_0(), shape)
    assert report.macs == hook_macs(theirs, torch.zeros(shape))
    assert report.params == sum(p.numel() for p in theirs.parameters())
    # GhostNet paper, Table 7: GhostNet 1.0× 141 M FLOPs (multiply-adds), 5.2 M params: 141,150,512 / 5,182,508
    assert round(report.macs / 1e6) == 141 and round(report.params / 1e6, 1) == 5.2
