"""Re-parameterisable branch blocks (ACNet, RepVGG, RepLKNet) at any padding: a branch whose kernel k_b is smaller
than the block's K reads the block's padded input cropped by d·o before and d·(K − k_b − o) after,
o = (K − k_b) // 2; where the padding is smaller than that (padding 0, 'valid'), the input itself is sliced.

The reference here is written from torch's F.pad / F.convNd / F.batch_norm and slicing, not from the layer's code.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import convzoo as cz
from convzoo.verify import check_module

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def padded(x: torch.Tensor, pairs: tuple[tuple[int, int], ...], mode: str) -> torch.Tensor:
    flat = [v for pair in reversed(pairs) for v in pair]
    return F.pad(x, flat) if mode == "zeros" else F.pad(x, flat, mode=_MODE[mode])


def reference(block: cz.BranchConvNd, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Σ_b BN_b(conv(crop_b(pad(x)), W_b)) (+ BN_id(x)): every branch aligned to the centre of the main K window."""
    dim, kernel, d = x.dim() - 2, block.kernel_size, block.dilation
    xp = padded(x, block.padding_pairs, block.padding_mode)
    total = torch.zeros(())
    for name, branch in block.branches.items():
        w = branch.conv.weight if weights is None else weights[name]
        index = [slice(None), slice(None)]
        for axis in range(dim):
            k, o = w.shape[2 + axis], (kernel[axis] - w.shape[2 + axis]) // 2
            index.append(slice(d[axis] * o, xp.shape[2 + axis] - d[axis] * (kernel[axis] - k - o)))
        z = _CONV[dim](xp[tuple(index)], w, branch.conv.bias, block.stride, 0, d, block.groups)
        bn = branch.bn
        total = total + F.batch_norm(z, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    if block.identity is not None:
        bn = block.identity
        total = total + F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return total


def randomised(block: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics (the default BN is the identity map, which hides misplaced shifts)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        for name, b in block.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g, dtype=b.dtype) + 0.5)
    return block.eval()


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


CASES = [  # (class, args, kwargs, input spatial size)
    (cz.ACNetConv2d, (4, 6, 3), {"padding": 0}, (9, 8)),
    (cz.ACNetConv2d, (4, 4, 5), {"padding": (2, 1)}, (9, 8)),
    (cz.ACNetConv2d, (4, 6, 3), {"padding": "valid", "stride": 2, "dilation": 2}, (13, 11)),
    (cz.ACNetConv2d, (4, 6, (5, 3)), {"padding": ((0, 1), (2, 0)), "stride": (2, 1), "dilation": (1, 2)}, (11, 9)),
    (cz.ACNetConv2d, (4, 4, 3), {"padding": 0, "groups": 2, "bias": True}, (7, 6)),
    (cz.ACNetConv3d, (2, 3, 3), {"padding": 0, "stride": (1, 2, 1)}, (5, 6, 5)),
    (cz.ACNetConv3d, (2, 3, 5), {"padding": (1, 0, 2), "dilation": (1, 1, 2)}, (6, 7, 9)),
    (cz.RepVGGBlock1d, (4, 4, 3), {"padding": 0}, (9,)),
    (cz.RepVGGBlock1d, (4, 6, 5), {"padding": 1, "dilation": 2, "stride": 2}, (15,)),
    (cz.RepVGGBlock2d, (4, 4, 3), {"padding": 0, "groups": 2}, (8, 7)),
    (cz.RepVGGBlock2d, (4, 8, 3), {"padding": 0, "stride": 2}, (9, 8)),
    (cz.RepVGGBlock2d, (4, 4, 4), {"padding": 0}, (8, 7)),  # even K: o = 1, the crop is (1, 2)
    (cz.RepVGGBlock3d, (2, 4, 3), {"padding": 0}, (5, 5, 6)),
    (cz.LargeKernelConv2d, (4, 8, 7), {"padding": 1, "small_kernel": 3}, (10, 9)),  # depthwise, m = 2
]
IDS = [f"{c.__name__}-{a}-{k}" for c, a, k, _ in CASES]


@pytest.mark.parametrize(("cls", "args", "kwargs", "size"), CASES, ids=IDS)
def test_cropped_branches_match_the_reference_and_the_fused_conv(cls, args, kwargs, size):
    block = randomised(cls(*args, **kwargs))
    x = torch.randn(2, args[0], *size, generator=torch.Generator().manual_seed(1))
    expected = reference(block, x)
    with torch.no_grad():
        y = block(x)
        assert y.shape == expected.shape  # the main k×k window's output size
        assert relative(y, expected) < 1e-5
        assert relative(block.fused_conv()(x), y) < 1e-5
    assert check_module(block, x) < 1e-5  # the NumPy oracle (reference.py) agrees too
    # the fused kernel is the training-time kernels, each BN-scaled and zero-padded at offset (K − k) // 2
    fused = block.fused_conv().weight.detach().double()
    by_hand = torch.zeros_like(fused)
    for branch in block.branches.values():
        bn, w = branch.bn, branch.conv.weight.detach().double()
        t = bn.weight.detach().double() / (bn.running_var.double() + bn.eps).sqrt()
        at = [slice(None), slice(None)]
        at += [slice((big - k) // 2, (big - k) // 2 + k) for big, k in zip(block.kernel_size, w.shape[2:])]
        by_hand[tuple(at)] += w * t.reshape(-1, *(1,) * (w.dim() - 1))
    assert torch.allclose(fused, by_hand, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("cls", "args", "kwargs", "size"), [CASES[i] for i in (0, 3, 6, 8, 11)],
                         ids=[IDS[i] for i in (0, 3, 6, 8, 11)])
def test_cropped_branches_gradients(cls, args, kwargs, size):
    """Training mode: gradients of x and of every branch weight equal the reference's; gradcheck in float64."""
    block = randomised(cls(*args, **kwargs)).double().train()
    x = torch.randn(2, args[0], *size, dtype=torch.float64, generator=torch.Generator().manual_seed(2),
                    requires_grad=True)
    ref = {name: b.conv.weight.detach().clone().requires_grad_(True) for name, b in block.branches.items()}
    block.eval()  # BN with its running statistics in both, so that the two see the same map
    g = torch.randn(block(x).shape, dtype=torch.float64)
    gx, *gw = torch.autograd.grad((block(x) * g).sum(), [x, *(b.conv.weight for b in block.branches.values())])
    rx, *rw = torch.autograd.grad((reference(block, x, ref) * g).sum(), [x, *ref.values()])
    assert torch.allclose(gx, rx, atol=1e-12)
    for a, b in zip(gw, rw):
        assert torch.allclose(a, b, atol=1e-12)
    small = torch.randn(1, args[0], *size, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: block(t), (small,))
    block.train()  # batch statistics: the BN's own gradient through the cropped branches
    assert torch.autograd.gradcheck(lambda t: block(t), (small.detach().repeat(2, 1, *(1,) * len(size))
                                                         .requires_grad_(True),))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(("cls", "args", "kwargs", "size"), [
    (cz.ACNetConv2d, (3, 4, 5), {"padding": 1}, (7, 8)),  # crop on the 1-wide axis, pad 1 on the long one
    (cz.ACNetConv2d, (3, 4, 3), {"padding": ((2, 0), (0, 2))}, (6, 7)),  # one side cropped, the other padded
    (cz.RepVGGBlock1d, (3, 3, 5), {"padding": ((3, 0),)}, (9,)),  # crops 2 after, pads 1 before: circular wraps x
    (cz.ACNetConv3d, (2, 3, 3), {"padding": ((1, 1), (0, 2), (2, 0))}, (4, 5, 5)),
])
def test_padding_modes_with_crops(mode, cls, args, kwargs, size):
    """A torch padding mode pads the uncropped input, then the branch crops: the same map the main k×k reads."""
    block = randomised(cls(*args, padding_mode=mode, **kwargs))
    x = torch.randn(2, args[0], *size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = block(x)
        assert relative(y, reference(block, x)) < 1e-5
        assert relative(block.fused_conv()(x), y) < 1e-5
    assert check_module(block, x) < 1e-5


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_centred_padding_keeps_the_branch_convs_as_before(mode):
    """With the default (centred) padding nothing is cropped: each branch conv pads d·(k_b − 1)/2 in the mode."""
    block = randomised(cz.ACNetConv2d(3, 4, 5, padding_mode=mode))
    for branch in block.branches.values():
        assert branch.crop is None and branch.pad_first is None
        k = branch.conv.kernel_size
        assert branch.conv.padding_pairs == tuple(((kk - 1) // 2, (kk - 1) // 2) for kk in k)
        assert branch.conv.padding_mode == mode
    x = torch.randn(2, 3, 7, 6)
    with torch.no_grad():
        assert relative(block(x), reference(block, x)) < 1e-5
        assert relative(block.fused_conv()(x), block(x)) < 1e-5


def test_crop_is_a_view_and_the_layout_is_exact():
    """ACNet 3×3 at padding 0: the k×1 branch drops one column each side, the 1×k one a row each side (d = 2: two)."""
    block = cz.ACNetConv2d(2, 2, 3, padding=0, dilation=(1, 2))
    assert block.branches["kx1"].crop == ((0, 0), (2, 2))
    assert block.branches["1xk"].crop == ((1, 1), (0, 0))
    assert block.branches["kxk"].crop is None
    x = torch.randn(1, 2, 6, 9)
    assert block.branches["kx1"].align(x).data_ptr() == x[:, :, :, 2:].data_ptr()  # a slice, not a copy


@pytest.mark.parametrize(("block", "shape", "taps"), [
    # ACNet 3×3, padding 0 on (1, 4, 12, 10) → (1, 6, 10, 8): 80 positions · 6 · 4 · (9 + 3 + 3)
    (lambda: cz.ACNetConv2d(4, 6, 3, padding=0), (1, 4, 12, 10), 80 * 6 * 4 * (9 + 3 + 3)),
    # stride 2, dilation 2, 'valid' on (2, 4, 13, 11): ((13 − 5) // 2 + 1) · ((11 − 5) // 2 + 1) = 5 · 4 per sample
    (lambda: cz.ACNetConv2d(4, 6, 3, padding="valid", stride=2, dilation=2), (2, 4, 13, 11), 2 * 20 * 6 * 4 * 15),
    # RepVGG 3×3, groups 2, padding 0 on (1, 4, 8, 7) → 6 · 5 positions, C_in/g = 2: 3×3 + 1×1
    (lambda: cz.RepVGGBlock2d(4, 4, 3, padding=0, groups=2), (1, 4, 8, 7), 30 * 4 * 2 * (9 + 1)),
    # 3-D ACNet 3×3×3, padding 0 on (1, 2, 5, 5, 6) → 3·3·4 = 36 positions: 27 + 3 · 3
    (lambda: cz.ACNetConv3d(2, 3, 3, padding=0), (1, 2, 5, 5, 6), 36 * 3 * 2 * (27 + 9)),
])
def test_cost_of_cropped_branches_is_counted_by_hand(block, shape, taps):
    layer = block()
    report = cz.cost(layer, shape)
    assert report.macs == taps
    with torch.no_grad():
        out = layer.eval()(torch.randn(shape))
    assert tuple(layer.cost(shape).output_shape) == tuple(out.shape)
    # and per branch: the conv's MACs on its cropped input are its output positions · C_out · C_in/g · prod(k_b)
    for branch in layer.branches.values():
        conv = branch.conv
        part = conv.cost(branch.conv_input_shape(shape))
        assert part.macs == out.numel() * (conv.in_channels // conv.groups) * math.prod(conv.kernel_size)


def test_depthwise_branches_on_cropped_views_run_convzoos_kernel_too():
    """A cropped branch hands its conv a strided view; convzoo's own depthwise kernel (numba) gives the same sum."""
    pytest.importorskip("numba")
    block = randomised(cz.LargeKernelConv2d(4, 8, 7, padding=0, small_kernel=3))
    x = torch.randn(2, 4, 11, 10)
    expected = reference(block, x)
    forms = block.branches["small"].conv.forms(block.branches["small"].align(x))
    if "kernel" not in forms:
        pytest.skip("convzoo's CPU kernels do not run here")
    for branch in block.branches.values():
        branch.conv.implementation = "kernel"
    with torch.no_grad():
        assert relative(block(x), expected) < 1e-5


def _valid_resnet_like() -> nn.Module:
    """A ResNet-style stem and block with 'valid' (padding 0) k×k convs; the shortcut crops to match."""

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=0, bias=False), nn.BatchNorm2d(c)
            self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=0, bias=False), nn.BatchNorm2d(c)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + x[:, :, 2:-2, 2:-2])

    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=0, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         Block(8), Block(8), nn.Conv2d(8, 16, 3, stride=2, padding=0))


@pytest.mark.parametrize("to", ["acnet", "repvgg"])
def test_convert_takes_valid_convs(to):
    model = randomised(_valid_resnet_like())
    new, report = cz.convert(model, to, input_shape=(1, 3, 33, 31))
    assert [row.replaced for row in report.layers] == [True] * 6, [row.note for row in report.layers]
    assert all(row.rel_error < 1e-6 for row in report.layers)
    x = torch.randn(2, 3, 33, 31)
    new.eval()
    with torch.no_grad():
        assert relative(new(x), model(x)) < 1e-5  # exact: the main branch holds W, the others are zeroed
        fused, fusing = cz.reparameterize(new, (1, 3, 33, 31))
        assert relative(fused(x), model(x)) < 1e-5
    # MACs by hand on (1, 3, 33, 31): the stem 5×5 / 2 gives 15×14; the 3×3 valid convs 13×12, 11×10, 9×8, 7×6;
    # the last 3×3 / 2 gives 3×2. A block adds its small branches' taps at the same output positions.
    small = {"acnet": {25: 5 + 5, 9: 3 + 3}, "repvgg": {25: 1, 9: 1}}[to]
    layers = [(15 * 14, 8, 3, 25), (13 * 12, 8, 8, 9), (11 * 10, 8, 8, 9), (9 * 8, 8, 8, 9), (7 * 6, 8, 8, 9),
              (3 * 2, 16, 8, 9)]
    dense = sum(p * o * i * k for p, o, i, k in layers)
    assert report.macs_before == dense == fusing.macs_after
    assert report.macs_after == dense + sum(p * o * i * small[k] for p, o, i, k in layers)
    assert report.layers[0].macs_after == 15 * 14 * 8 * 3 * (25 + small[25])


def test_convert_resnet18_with_padding_zero_convs():
    """torchvision's resnet18 with every k×k conv at padding 0: all 17 become blocks (before: all 17 kept)."""
    model = torchvision.models.resnet18(num_classes=10)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1):
            m.padding = (0, 0)
    for to, cls in (("acnet", cz.ACNetConv2d), ("repvgg", cz.RepVGGBlock2d)):
        new, report = cz.convert(model, to)
        rows = [row for row in report.layers if "downsample" not in row.name]
        assert len(rows) == 17 and all(row.replaced for row in rows), [row.note for row in rows if not row.replaced]
        assert all(isinstance(new.get_submodule(row.name), cls) for row in rows)
        assert new.get_submodule("layer1.0.conv1").padding == (0, 0)


def test_skip_note_names_the_probe_and_the_rule():
    """A family that cannot keep the conv's padding (MixConv fixes 'same') is kept with a note that says the shapes
    come from convert's own probe, not the user's input, and which argument differs."""
    _, report = cz.convert(nn.Sequential(nn.Conv2d(6, 6, 3, groups=6)), "mixconv", force=True,
                           input_shape=(1, 6, 12, 12))
    note = report.layers[0].note
    assert "gives output (1, 6, 10, 9) where the conv gives (1, 6, 8, 7) on a (1, 6, 10, 9) probe input" in note
    assert "not the model's input" in note and "padding=(0, 0)" in note and "built with padding=same" in note
