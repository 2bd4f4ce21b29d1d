"""receptive_field on any model: the issue's five minimal cases, torchvision's whole classification zoo (built with
meta parameters), published values, and a cross-check of sampled layers against autograd: the gradient footprint
of one output element on a positively weighted copy (nothing cancels) must be the reported window at that
position (clipped to the image), and the whole input for rows flagged ``global_path``."""

from __future__ import annotations

import contextlib
import math
import time
import warnings

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import convzoo as cz
from convzoo.analysis import receptive_field


@contextlib.contextmanager
def meta_parameters():
    """Build a model with every parameter and buffer on the meta device (no memory, no init cost), while the
    builder's own arithmetic (e.g. regnet's width rule, which calls .tolist()) still runs on real tensors."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        register_parameter(self, name, None if param is None else nn.Parameter(param.to("meta"), param.requires_grad))

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def meta_model(name: str, module=torchvision.models, **kwargs) -> nn.Module:
    with meta_parameters():
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    assert all(p.is_meta for p in model.parameters())
    return model


def footprints(model: nn.Module, shape: tuple[int, ...], names: list[str | None]
               ) -> dict[str | None, tuple[tuple[int, ...], tuple[list[int], list[int]]]]:
    """For each module name (None: the model output): the centred position of its output and the (first, last)
    input pixel per spatial dim whose gradient reaches it there, summed over channels (one forward pass)."""
    captured: dict[str | None, torch.Tensor] = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda m, i, o, name=name: captured.setdefault(name, o)) for name in names if name is not None]
    x = torch.rand(shape, requires_grad=True)
    try:
        captured[None] = model(x)
    finally:
        for handle in handles:
            handle.remove()
    found = {}
    for name in names:
        y = captured[name]
        position = tuple(n // 2 for n in y.shape[2:])
        x.grad = None
        y[(0, slice(None), *position)].sum().backward(retain_graph=True)
        hit = x.grad[0].abs().sum(0).nonzero()
        found[name] = position, (hit.min(0).values.tolist(), hit.max(0).values.tolist())
    return found


def positive_(model: nn.Module) -> nn.Module:
    """All parameters positive, in [0.1, 1) divided by the fan-in for weights (activations stay O(1), so no
    sigmoid gate saturates to a zero gradient): no sum cancels, every ReLU passes. Eval mode."""
    with torch.no_grad():
        for param in model.parameters():
            fan_in = math.prod(param.shape[1:]) if param.dim() > 1 else 1
            param.copy_((torch.rand_like(param) * 0.9 + 0.1) / fan_in)
    return model.eval()


def expected_span(row, position: tuple[int, ...], spatial: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """The reported window at ``position`` clipped to the image; the whole image for a global row."""
    if row.global_path:
        return [0] * len(spatial), [n - 1 for n in spatial]
    lo, hi = [], []
    for c, j, r, u, n in zip(row.start, row.stride, row.size, position, spatial):
        centre = c + u * j
        lo.append(max(0, math.ceil(centre - (r - 1) / 2)))
        hi.append(min(n - 1, math.floor(centre + (r - 1) / 2)))
    return lo, hi


def check_rows(model: nn.Module, shape: tuple[int, ...], names: list[str | None]) -> None:
    rf = receptive_field(model, shape)
    rows = {row.name: row for row in rf.layers}
    found = footprints(model, shape, names)
    for name in names:
        row = rf.output if name is None else rows[name]
        assert not row.note, (name, row.note)
        position, got = found[name]
        assert got == expected_span(row, position, shape[2:]), (name, row, got)


# ------------------------------------------------------------------------------------------ the five minimal cases


class SqueezeExcite(nn.Module):
    """Three 3×3 convs with x · mean(x) gates between them (the issue: stride 1024, RF 3138 before the fix)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (nn.Conv2d(2, 2, 3, padding=1) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(x)
        x = x * x.mean((2, 3), keepdim=True)
        x = self.b(x)
        x = x * x.mean((2, 3), keepdim=True)
        return self.c(x)


class Chunked(nn.Module):
    """shufflenet_v2's split: x.chunk(2, 1), one half through a 5×5 conv, concatenated back."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.wide = nn.Conv2d(2, 2, 5, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.stem(x).chunk(2, 1)
        return torch.cat([a, self.wide(b)], 1)


class FunctionalPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.max_pool2d(self.conv(x), 3, 2), 2)


def test_se_gate_is_a_global_path_not_a_window() -> None:
    rf = receptive_field(SqueezeExcite(), (1, 2, 32, 32))
    out = rf.output
    assert (out.size, out.stride, out.start, out.global_path) == ((7, 7), (1, 1), (0, 0), True)
    assert rf.is_aligned and not rf.notes
    assert [row.global_path for row in rf.layers if row.name in ("a", "b", "c")] == [False, True, True]
    check_rows(positive_(SqueezeExcite()), (1, 2, 32, 32), ["a", None])


def test_chunk_and_getitem() -> None:
    rf = receptive_field(Chunked(), (1, 2, 16, 16))
    assert (rf.output.size, rf.output.stride, rf.output.global_path) == ((7, 7), (1, 1), False)
    check_rows(positive_(Chunked()), (1, 2, 16, 16), ["stem", "wide", None])


def test_functional_max_pool() -> None:
    rf = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Identity()), (1, 1, 32, 32))
    assert rf.output.size == (3, 3)
    rows = receptive_field(FunctionalPool(), (1, 1, 32, 32)).layers
    # conv 3: r 3, c 1; max-pool 3/2: r 3 + 2 = 5, j 2, c 1 + 1 = 2; avg-pool 2/2: r 5 + 2 = 7, j 4, c 2 + ½·2 = 3
    assert [(r.type, r.size, r.stride, r.start) for r in rows] == [
        ("Conv2d", (3, 3), (1, 1), (1, 1)), ("max_pool2d", (5, 5), (2, 2), (2, 2)),
        ("avg_pool2d", (7, 7), (4, 4), (3, 3))]


def test_zero_pad_moves_the_centre() -> None:
    # ZeroPad2d(1) then a 3×3 conv without padding is a 'same' conv: the centre of position 0 is pixel 0
    padded = nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(1, 1, 3))
    out = receptive_field(padded, (1, 1, 8, 8)).output
    assert (out.size, out.start) == ((3, 3), (0, 0))
    asymmetric = nn.Sequential(nn.ZeroPad2d((2, 0, 1, 0)), nn.Conv2d(1, 1, 3))  # (left, right, top, bottom)
    assert receptive_field(asymmetric, (1, 1, 8, 8)).output.start == (0, -1)  # (row, column): 1 − 1, 1 − 2
    functional = receptive_field(_Lambda(lambda x: F.pad(x, (1, 1, 1, 1))), (1, 1, 8, 8)).output
    assert functional.start == (-1, -1)
    check_rows(positive_(padded), (1, 1, 8, 8), [None])


class _Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def test_adaptive_pooling_to_a_size_above_one() -> None:
    # 7×7 input, 3×3 conv → 5×5, AdaptiveAvgPool2d(5): the identity (true RF 3, stride 1; was 7, stride 5)
    out = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(5)), (1, 1, 7, 7)).output
    assert (out.size, out.stride, out.start, out.global_path, out.note) == ((3, 3), (1, 1), (1, 1), False, "")
    # 12 → 4 divides: a 3-window at stride 3 (exact); 12 → 5 does not: a bound, said in the note
    divides = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.AdaptiveAvgPool2d(4))
    out = receptive_field(divides, (1, 1, 12, 12)).output
    assert (out.size, out.stride, out.start, out.note) == ((5, 5), (3, 3), (1, 1), "")
    check_rows(positive_(divides), (1, 1, 12, 12), [None])
    bounded = receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.AdaptiveAvgPool2d(5)), (1, 1, 12, 12))
    assert "AdaptiveAvgPool2d (12, 12)→(5, 5)" in bounded.output.note and bounded.notes
    # windows of 12 → 5: [0,3) [2,5) [4,8) [7,10) [9,12): the largest has 4 positions → r = 3 + 3 = 6
    assert bounded.output.size == (6, 6)
    assert receptive_field(nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveMaxPool2d(1)), (1, 1, 9, 9)).output.global_path


def test_functional_interpolate_and_conv() -> None:
    weight = nn.Parameter(torch.ones(1, 1, 3, 3))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = F.conv2d(x, self.weight, stride=2, padding=1)
            return F.interpolate(y, scale_factor=2, mode="nearest")

    out = receptive_field(Net(), (1, 1, 16, 16)).output
    # conv 3/2 p1: r 3, j 2, c 0; nearest ×2: outputs 2m and 2m + 1 both read conv output m, [2m − 1, 2m + 1]:
    # around u that is [−1, 1] (u even) and [−2, 0] (u odd), union r 4, j 1, centre −½
    assert (out.size, out.stride, out.start) == ((4, 4), (1, 1), (-0.5, -0.5))
    assert out.window((4, 5)) == ((3, 5), (3, 5)) and out.phases == (((-0.5, 1.5), (-1.5, 0.5)),) * 2
    assert "upsampling ×2 (nearest)" in out.note


def test_layers_are_recognised_by_the_contract_not_the_name() -> None:
    class Mine(cz.Conv2d):  # a user's subclass, living outside convzoo
        pass

    net = nn.Sequential(Mine(1, 1, 5, padding=2))
    net.add_module("layers_renamed", cz.DepthwiseSeparableConv2d(1, 1, 3, padding=1))
    assert receptive_field(net, (1, 1, 16, 16)).output.size == (7, 7)


def test_dynamic_conv_is_flagged_global() -> None:
    out = receptive_field(cz.DynamicConv2d(2, 2, 3, padding=1), (1, 2, 12, 12)).output
    assert (out.size, out.global_path) == ((3, 3), True)


def test_attention_is_token_mixing() -> None:
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Conv2d(3, 8, 4, 4)
            self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            t = self.embed(x).flatten(2).transpose(1, 2)  # (N, HW, C)
            t = t + self.attention(t, t, t)[0]
            n, hw, c = t.shape
            return t.transpose(1, 2).reshape(n, c, 4, 4)

    rf = receptive_field(Tokens(), (1, 3, 16, 16))
    rows = {row.name: row for row in rf.layers}
    assert rows["embed"].size == (4, 4) and not rows["embed"].global_path
    assert rows["attention"].global_path and rows["attention"].stride == (0, 0)
    assert (rf.output.size, rf.output.stride, rf.output.global_path) == ((4, 4), (4, 4), True)


def test_unknown_ops_are_named_not_silent() -> None:
    rf = receptive_field(_Lambda(lambda x: torch.fft.fft2(x).real), (1, 1, 8, 8))
    assert rf.output.global_path and "fft2" in rf.output.note and rf.notes


# ------------------------------------------------------------------------------------------ torchvision


def test_vgg16_and_resnet50_published_values_hold() -> None:
    rf = receptive_field(meta_model("vgg16"), (1, 3, 224, 224))
    rows = {row.name: row for row in rf.layers}
    assert rows["features.30"].size == (212, 212) and rows["features.30"].stride == (32, 32)
    assert rows["avgpool"].size == (212, 212) and rows["avgpool"].stride == (32, 32)  # 7 → 7: the identity
    assert rf.output.global_path and not rf.notes
    rf = receptive_field(meta_model("resnet50"), (1, 3, 224, 224))
    assert {row.name: row for row in rf.layers}["layer4.2.conv3"].size == (427, 427)


def test_swin_t_last_stage_is_global() -> None:
    rf = receptive_field(meta_model("swin_t"), (1, 3, 224, 224))
    last = [row for row in rf.layers if row.name.startswith("features.7")]
    assert last and all(row.global_path for row in last)
    assert rf.output.global_path
    assert {row.name: row for row in rf.layers}["features.0.0"].size == (4, 4)  # the patch embedding


def test_vit_b_32_patches_then_global() -> None:
    rf = receptive_field(meta_model("vit_b_32"), (1, 3, 224, 224))
    rows = {row.name: row for row in rf.layers}
    assert (rows["conv_proj"].size, rows["conv_proj"].stride, rows["conv_proj"].global_path) == ((32, 32), (32, 32), False)
    assert rf.output.global_path and rf.output.size == (224, 224) and not rf.notes


FAST_SAMPLE = ["alexnet", "convnext_tiny", "efficientnet_b0", "googlenet", "inception_v3", "maxvit_t", "mnasnet0_5",
               "mobilenet_v3_small", "regnet_y_400mf", "shufflenet_v2_x0_5", "squeezenet1_1", "vit_b_32"]


def _analyse(name: str) -> None:
    size = 299 if name == "inception_v3" else 224
    rf = receptive_field(meta_model(name), (1, 3, size, size))
    assert rf.output.global_path, name  # every classifier's logits read the whole image
    for row in rf.layers:
        assert all(0 <= j <= 32 for j in row.stride), (name, row)  # no compounded strides (was 7.8e21)
        assert all(1 <= r < 10_000 for r in row.size), (name, row)
        if any(j == 0 for j in row.stride):
            assert row.global_path, (name, row)
    if name.startswith(("swin", "maxvit")):  # window attention / window partition reshapes: bounds, named
        assert rf.notes and all(":" in note for note in rf.notes), (name, rf.notes)
    else:
        assert not rf.notes, (name, rf.notes)
    assert name != "inception_v3" or rf.is_aligned  # F.max_pool2d / F.avg_pool2d are followed now


@pytest.mark.parametrize("name", FAST_SAMPLE)
def test_zoo_sample(name: str) -> None:
    _analyse(name)


@pytest.mark.slow
def test_whole_torchvision_classification_zoo() -> None:
    names = torchvision.models.list_models(module=torchvision.models)
    assert len(names) >= 80
    start = time.perf_counter()
    for name in names:
        _analyse(name)
    print(f"{len(names)} models analysed in {time.perf_counter() - start:.1f} s")


@pytest.mark.slow
@pytest.mark.parametrize("module", ["segmentation", "detection"])
def test_segmentation_and_detection_backbones(module: str) -> None:
    for name in torchvision.models.list_models(module=getattr(torchvision.models, module)):
        with meta_parameters():
            model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
        target = model.backbone if module == "detection" else model
        rf = receptive_field(target, (1, 3, 512, 512))
        assert all(all(j <= 512 for j in row.stride) for row in rf.layers), name  # no compounded strides
        assert all(not row.note or "normalize" not in row.note for row in rf.layers), name


# ------------------------------------------------------------------------------------------ against autograd


def _avg_for_max(model: nn.Module) -> nn.Module:
    """Max pools send the gradient to one argmax only; an average pool of the same geometry has the same field."""
    for name, child in model.named_children():
        if isinstance(child, nn.MaxPool2d):
            setattr(model, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode))
        else:
            _avg_for_max(child)
    return model


# Input sizes are chosen so that no stride drops border pixels (squeezenet's valid 3×3/2 stem on 65, not 64):
# the global rows' footprint is then the whole image.
@pytest.mark.parametrize(("name", "size", "rows"), [
    ("resnet18", 64, ["conv1", "maxpool", "layer1.1.conv2", "layer2.0.downsample.0", "layer2.1.bn2", None]),
    ("squeezenet1_1", 65, ["features.3.expand3x3", "features.6.squeeze", None]),
    pytest.param("shufflenet_v2_x0_5", 96, ["stage2.0.branch1.2", "stage2.1.branch2.5", "stage3.0.branch2.3", None],
                 marks=pytest.mark.slow),
    pytest.param("efficientnet_b0", 48, ["features.1.0.block.0.0", "features.1.0.block.2.0",
                                         "features.2.0.block.1.0", None], marks=pytest.mark.slow),
])
def test_sampled_layers_match_the_gradient_footprint(name: str, size: int, rows: list) -> None:
    torch.manual_seed(0)
    model = positive_(_avg_for_max(torchvision.models.get_model(name, weights=None)))
    check_rows(model, (1, 3, size, size), rows)


@pytest.mark.slow
def test_vit_rows_match_the_gradient_footprint() -> None:
    torch.manual_seed(0)
    model = positive_(torchvision.models.vit_b_32(weights=None, image_size=64))
    check_rows(model, (1, 3, 64, 64), ["conv_proj", None])
