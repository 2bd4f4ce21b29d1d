"""convzoo.arithmetic against the real operators, the seed articles' worked numbers and hand derivations.

Output sizes are checked against torch.nn.Conv*d / ConvTranspose*d on random configurations (valid and invalid);
receptive fields against Araujo et al.'s recurrences worked by hand and against autograd (which input pixels
reach an output); overlap maps against counting taps and against a real transposed conv on ones.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
import torchvision
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from torch import nn

import convzoo as cz
from convzoo.analysis import receptive_field
from convzoo.arithmetic import (
    conv_output_size,
    is_even_overlap,
    overlap_map,
    transposed_output_size,
    transposed_output_sizes,
)

MANY = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TORCH_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TORCH_TRANSPOSED = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
kernels = st.sampled_from([1, 2, 3, 3, 4, 5])
strides = st.sampled_from([1, 1, 2, 2, 3])
dilations = st.sampled_from([1, 1, 1, 2, 3])
paddings = st.sampled_from([0, 0, 1, 1, 2, 3])
# In about a third of the cases one argument in one dim is broken (0 kernel/stride/dilation, negative padding).
BREAKS = {"k": 0, "s": 0, "d": 0, "p": -1, "a": None}


def _break(data, args: dict[str, list[int]], dim: int) -> None:
    name = data.draw(st.sampled_from([None] * 8 + [n for n in BREAKS if n in args]))
    if name is not None:
        axis = data.draw(st.integers(0, dim - 1))
        value = BREAKS[name]
        args[name][axis] = max(args["s"][axis], args["d"][axis]) if value is None else value


def _args(values: list[int], dim: int) -> int | tuple[int, ...]:
    return values[0] if dim == 1 else tuple(values)


def _torch_shape(build, x: torch.Tensor) -> tuple[int, ...] | Exception:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zero-element init warnings for k = 0
            return tuple(build()(x).shape[2:])
    except (RuntimeError, ValueError) as error:
        return error


@MANY
@given(st.data())
def test_conv_output_size_matches_torch(data) -> None:
    dim = data.draw(st.sampled_from([1, 2, 3]))
    top = {1: 12, 2: 9, 3: 6}[dim]
    i = [data.draw(st.integers(1, top)) for _ in range(dim)]
    k = [data.draw(kernels) for _ in range(dim)]
    s = [data.draw(strides) for _ in range(dim)]
    d = [data.draw(dilations) for _ in range(dim)]
    p = data.draw(st.one_of(st.lists(paddings, min_size=dim, max_size=dim), st.sampled_from(["same", "valid"])))
    _break(data, {"k": k, "s": s, "d": d, **({} if isinstance(p, str) else {"p": p})}, dim)
    p_args = p if isinstance(p, str) else _args(p, dim)
    x = torch.zeros(1, 1, *i)
    got = _torch_shape(lambda: TORCH_CONV[dim](1, 1, tuple(k), tuple(s), p if isinstance(p, str) else tuple(p),
                                               tuple(d), bias=False), x)
    event("invalid" if isinstance(got, Exception) else "valid")
    if isinstance(got, Exception):
        with pytest.raises(ValueError):
            conv_output_size(_args(i, dim), _args(k, dim), _args(s, dim), p_args, _args(d, dim))
    else:
        ours = conv_output_size(_args(i, dim), _args(k, dim), _args(s, dim), p_args, _args(d, dim))
        assert ((ours,) if dim == 1 else ours) == got


@MANY
@given(st.data())
def test_transposed_output_size_matches_torch(data) -> None:
    dim = data.draw(st.sampled_from([1, 2, 3]))
    top = {1: 10, 2: 6, 3: 4}[dim]
    i = [data.draw(st.integers(1, top)) for _ in range(dim)]
    k = [data.draw(kernels) for _ in range(dim)]
    s = [data.draw(strides) for _ in range(dim)]
    d = [data.draw(dilations) for _ in range(dim)]
    p = [data.draw(paddings) for _ in range(dim)]
    a = [data.draw(st.integers(0, max(ss, dd) - 1)) for ss, dd in zip(s, d)]
    _break(data, {"k": k, "s": s, "d": d, "p": p, "a": a}, dim)
    x = torch.zeros(1, 1, *i)
    got = _torch_shape(lambda: TORCH_TRANSPOSED[dim](1, 1, tuple(k), tuple(s), tuple(p), tuple(a), bias=False,
                                                     dilation=tuple(d)), x)
    args = [_args(v, dim) for v in (i, k, s, p, a, d)]
    # torch raises for a negative output size but returns an empty tensor for size 0: both are invalid here
    event("invalid" if isinstance(got, Exception) or 0 in got else "valid")
    if isinstance(got, Exception) or 0 in got:
        with pytest.raises(ValueError):
            transposed_output_size(*args)
    else:
        ours = transposed_output_size(*args)
        assert ((ours,) if dim == 1 else ours) == got


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3))
def test_transposed_output_sizes_are_exactly_the_reachable_ones(i: int, k: int, s: int, p: int, d: int) -> None:
    try:
        sizes = transposed_output_sizes(i, k, s, p, d)
    except ValueError:
        assume(False)
    x = torch.zeros(1, 1, i)
    reachable = set()
    for a in range(-2, max(s, d) + 3):  # every output_padding torch accepts gives a listed size; no other does
        try:
            reachable.add(nn.ConvTranspose1d(1, 1, k, s, p, a, bias=False, dilation=d)(x).shape[-1])
        except (ValueError, RuntimeError):
            pass
    assert sorted(reachable) == sizes
    if d <= s:  # torch's forward(output_size=...) assumes the range o₀ … o₀ + s − 1 (it ignores dilation)
        conv = nn.ConvTranspose1d(1, 1, k, s, p, bias=False, dilation=d)
        for o in range(1, max(sizes) + 6):
            try:
                assert conv(x, output_size=[o]).shape[-1] == o
                assert o in sizes
            except ValueError:
                assert o not in sizes


def _conv1d_size(i: int, k: int, s: int, p: int, d: int) -> int | None:
    try:
        return torch.nn.functional.conv1d(torch.zeros(1, 1, i), torch.zeros(1, 1, k), stride=s, padding=p,
                                          dilation=d).shape[-1]
    except RuntimeError:  # the padded input is shorter than the dilated kernel
        return None


def test_transposed_output_sizes_against_torch_over_a_grid() -> None:
    """Every size is what F.conv_transpose1d gives for some output_padding a < max(s, d) (empty outputs dropped; a
    ValueError only when none is left); ``inverse=True`` keeps exactly those whose F.conv1d gives i back."""
    import torch.nn.functional as F

    for i, k, s, p, d in itertools.product(range(1, 6), range(1, 5), range(1, 4), range(4), range(1, 4)):
        reachable = []
        for a in range(max(s, d)):
            try:
                o = F.conv_transpose1d(torch.zeros(1, 1, i), torch.zeros(1, 1, k), stride=s, padding=p,
                                       output_padding=a, dilation=d).shape[-1]
            except RuntimeError:  # a negative size
                continue
            if o >= 1:
                reachable.append(o)
        inverse = [o for o in reachable if _conv1d_size(o, k, s, p, d) == i]
        for wanted, flag in ((reachable, False), (inverse, True)):
            if wanted:
                assert transposed_output_sizes(i, k, s, p, d, inverse=flag) == wanted, (i, k, s, p, d, flag)
            else:
                with pytest.raises(ValueError, match="every output size must be >= 1"):
                    transposed_output_sizes(i, k, s, p, d, inverse=flag)


def test_transposed_output_sizes_keep_the_valid_sizes_when_output_padding_0_is_empty() -> None:
    # i=1, k=2, s=3, p=1: a = 0 gives 0 (empty), a = 1 and 2 give 1 and 2 (PyTorch agrees)
    assert transposed_output_sizes(1, 2, 3, 1) == [1, 2] == [transposed_output_size(1, 2, 3, 1, a) for a in (1, 2)]


def test_transposed_output_sizes_with_dilation_above_stride() -> None:
    # i=4, k=3, s=1, d=2: output_padding 0 or 1 (< max(s, d) = 2) gives 8 or 9; a conv maps 8 → 4 but 9 → 5
    assert transposed_output_sizes(4, 3, 1, 0, 2) == [8, 9]
    assert transposed_output_sizes(4, 3, 1, 0, 2, inverse=True) == [8]
    assert conv_output_size(8, 3, 1, 0, 2) == 4 and conv_output_size(9, 3, 1, 0, 2) == 5


def test_transposed_output_sizes_for_tuples_is_a_tuple_of_lists() -> None:
    # i=4, k=3, p=1: o₀ = 3·2 − 2 + 2 + 1 = 7 at stride 2, 4 at stride 1
    assert transposed_output_sizes((4, 4), 3, (2, 1), 1) == ([7, 8], [4])


def test_seed_articles_worked_numbers() -> None:
    assert conv_output_size(7, 3) == 5  # 7×7 input, 3×3 kernel → 5×5
    assert conv_output_size((12, 12), (5, 5)) == (8, 8)  # 12×12 with 5×5 → 8×8
    assert transposed_output_size((2, 2), (3, 3)) == (4, 4)  # 3×3 transposed on 2×2, stride 1 → 4×4
    assert transposed_output_size((2, 2), (3, 3), 2) == (5, 5)  # ... stride 2 → 5×5
    assert conv_output_size(5, 3, p="same") == 5 and conv_output_size(5, 4, p="same", d=2) == 5
    assert conv_output_size(5, 3, p="valid") == 3
    # stacked 3×3 convs with dilation 1, 2, 4: receptive fields 3, 7, 15 (article 001 §7)
    model = nn.Sequential(*(nn.Conv2d(1, 1, 3, padding=d, dilation=d) for d in (1, 2, 4)))
    rf = receptive_field(model, (1, 1, 32, 32))
    assert [row.size for row in rf.layers] == [(3, 3), (7, 7), (15, 15)]
    assert rf.output.size == (15, 15) and rf.output.stride == (1, 1) and rf.output.start == (0, 0)


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: conv_output_size(5, 0), "k (kernel_size)=0"),
        (lambda: conv_output_size(5, 3, 0), "s (stride)=0"),
        (lambda: conv_output_size(5, 3, 1, -1), "p (padding)=-1"),
        (lambda: conv_output_size(5, 3, 1, 0, 0), "d (dilation)=0"),
        (lambda: conv_output_size(5, 3, 2, "same"), "p='same' needs s (stride) == 1"),
        (lambda: conv_output_size(5, 3, 1, "full"), "p='full'"),
        (lambda: conv_output_size(2, 3), "output would be empty"),
        (lambda: transposed_output_size(2, 3, 2, 0, 2), "output_padding=2 must be smaller than max"),
        (lambda: transposed_output_size((2, 2), 3, 1, (3, 3)), "padding=(3, 3) leaves an empty output (-2, -2)"),
        (lambda: overlap_map(0, 2), "kernel_size=0"),
        (lambda: overlap_map((3, 3), 2, dim=1), "dim=1"),
    ],
)
def test_invalid_arguments_are_named(call, words: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value)


# ------------------------------------------------------------------------------------------ receptive fields


def _resnet50_by_hand(stride_on_3x3: bool) -> tuple[int, int]:
    """Araujo et al.'s recurrence worked over ResNet-50's layers: conv1 7×7/2, maxpool 3×3/2, then bottlenecks
    (1×1, 3×3, 1×1) ×3, ×4, ×6, ×3; the first block of stages 2–4 has stride 2, on the 3×3 conv in v1.5
    (torchvision) or on the first 1×1 conv in v1 (He et al. 2015)."""
    r, j = 1, 1
    for k, s in ((7, 2), (3, 2)):
        r, j = r + (k - 1) * j, j * s
    for stage, blocks in enumerate((3, 4, 6, 3)):
        for block in range(blocks):
            s = 2 if stage > 0 and block == 0 else 1
            if not stride_on_3x3:
                j *= s  # the 1×1 conv before the 3×3 takes the stride: adds nothing to r, but doubles j first
            r += 2 * j  # the 3×3 conv
            if stride_on_3x3:
                j *= s
    return r, j


def test_resnet50_receptive_field() -> None:
    rf = receptive_field(torchvision.models.resnet50(), (1, 3, 224, 224))
    last = next(row for row in reversed(rf.layers) if row.name.startswith("layer4"))
    print(f"resnet50 @224: last conv layer {last.name}: size {last.size}, stride {last.stride}, start {last.start}; "
          f"output ({rf.output.name}, after global pooling): size {rf.output.size}, stride {rf.output.stride}")
    assert _resnet50_by_hand(stride_on_3x3=True) == (427, 32)
    assert _resnet50_by_hand(stride_on_3x3=False) == (483, 32)  # v1: Araujo et al.'s table lists 483 for ResNet-50
    assert last.size == (427, 427) and last.stride == (32, 32) and last.start == (0, 0)
    # global average pooling over the 7×7 map: 427 + (7 − 1)·32 = 619 pixels, the whole (padded) image
    assert rf.output.size == (619, 619)
    assert rf.is_aligned  # every downsample shortcut (1×1, stride 2, no padding) is centred like its 3×3 branch
    names = [row.name for row in rf.layers]
    assert names.index("conv1") < names.index("layer1.0.conv1") < names.index("fc")


class Branchy(nn.Module):
    """stem 3×3 → residual add (5×5 branch + identity) → cat(3×3 stride-2 conv, 2×2 max-pool)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 1, 3, padding=1)
        self.wide = nn.Conv2d(1, 1, 5, padding=2)
        self.down = nn.Conv2d(1, 1, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        y = self.wide(y) + y
        return torch.cat([self.down(y), self.pool(y)], dim=1)


def test_merges_take_the_largest_field_and_flag_misalignment() -> None:
    rf = receptive_field(Branchy(), (1, 1, 16, 16))
    rows = {row.name: row for row in rf.layers}
    assert rows["stem"].size == (3, 3)
    assert rows["wide"].size == (7, 7) and rows["add"].size == (7, 7)  # max(7 via wide, 3 via identity)
    assert rows["down"].size == (9, 9) and rows["down"].start == (0, 0)  # 7 + 2·1; centre + (1 − 1)·1
    assert rows["pool"].size == (8, 8) and rows["pool"].start == (0.5, 0.5)  # 7 + 1·1; centre + (1/2 − 0)·1
    assert rows["cat"].size == (9, 9) and rf.output.size == (9, 9) and rf.output.stride == (2, 2)
    assert [m.name for m in rf.misaligned] == ["cat"]  # the add is aligned; the cat's branches are offset by ½ px
    assert rf.misaligned[0].starts == ((0, 0), (0.5, 0.5))


def test_convzoo_families_hand_derived() -> None:
    # dilated 3×3, d=2: k_eff = 5; two of them: 5 + 4 = 9
    dilated = nn.Sequential(cz.build("dilated", 2, 2), cz.build("dilated", 2, 2))
    assert receptive_field(dilated, (1, 2, 16, 16)).output.size == (9, 9)
    # 3×3 conv then transposed 3×3 / 2 (p=1): zeros inserted (jump ½), r = 3 + (3 − 1)·½ = 4, centre stays 0
    transposed = nn.Sequential(cz.Conv2d(2, 2, 3, padding=1), cz.build("transposed", 2, 2))
    out = receptive_field(transposed, (1, 2, 8, 8)).output
    assert (out.size, out.stride, out.start) == ((4, 4), (0.5, 0.5), (0, 0))
    # torch pools on 16²: max-pool 3/2, pad 1, dilation 2 (k_eff 5): r 5, j 2, centre 0 + (2 − 1)·1 = 1, map 7²;
    # avg-pool 2/2: r 5 + 1·2 = 7, j 4, centre 1 + (½ − 0)·2 = 2, map 3²; nearest ×2 upsample: outputs 2m and
    # 2m + 1 both read pool output m, [4m − 1, 4m + 5]: around 2u that is [−1, 5] (u even) and [−3, 3] (u odd), so
    # r 9 (their union), j 2, centre 1, map 6²; global pool: the hull of the 6 positions' windows, [−1, 13]: 15
    # (the pool map's own union), then flatten and linear keep it
    pools = nn.Sequential(nn.MaxPool2d(3, 2, 1, dilation=2), nn.AvgPool2d(2), nn.Upsample(scale_factor=2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 3))
    rows = receptive_field(pools, (1, 1, 16, 16)).layers
    assert [(r.size, r.stride, r.start) for r in rows[:3]] == [
        ((5, 5), (2, 2), (1, 1)), ((7, 7), (4, 4), (2, 2)), ((9, 9), (2, 2), (1, 1))]
    assert rows[2].window((4, 5)) == ((7, 13), (7, 13))  # outputs 4 and 5 read pool output 2: [7, 13]
    assert [r.size for r in rows[3:]] == [(15, 15)] * 3
    # transposed 4×4 / 2, p 1 (even overlap): output o = 2i − 1 + t reads 2 inputs per dim, m − 1 and m for o = 2m,
    # m and m + 1 for o = 2m + 1: around o/2 that is [−1, 0] and [−½, ½], union r 2.5 centred −¼
    transposed = receptive_field(cz.TransposedConv2d(1, 1, 4, 2, 1), (1, 1, 8, 8)).output
    assert (transposed.size, transposed.stride, transposed.start) == ((2.5, 2.5), (0.5, 0.5), (-0.25, -0.25))
    assert transposed.window((4, 5)) == ((1, 2), (2, 3)) and "transposed conv" in transposed.note
    # mixconv: the largest kernel (7) decides
    assert receptive_field(cz.build("mixconv", 6, 6), (1, 6, 16, 16)).output.size == (7, 7)
    # global depthwise after a 3×3 conv on 9×9: 3 + (9 − 1)·1 = 11 (it reads the whole 9×9 map)
    gdc = nn.Sequential(cz.Conv2d(2, 2, 3, padding=1), cz.build("global_depthwise", 2, 2))
    assert receptive_field(gdc, (1, 2, 9, 9)).output.size == (11, 11)
    # composites compose their children: depthwise separable 3×3/2 then spatially separable 5 and flattened 3
    composite = nn.Sequential(cz.DepthwiseSeparableConv2d(2, 2, 3, stride=2, padding=1),
                              cz.build("spatially_separable", 2, 2, 5), cz.build("flattened", 2, 2, 3))
    assert [row.size for row in receptive_field(composite, (1, 2, 16, 16)).layers] == [(3, 3), (11, 11), (15, 15)]
    # resize-conv: nearest ×2 (jump ½) then 3×3 'same': output 2m reads upsampled 2m − 1 … 2m + 1, inputs m − 1
    # and m; output 2m + 1 inputs m and m + 1: 2 pixels each, [−1, 0] and [−½, ½] around u/2, union 2.5
    resize = receptive_field(cz.build("resize", 1, 1), (1, 1, 8, 8)).output
    assert (resize.size, resize.start) == ((2.5, 2.5), (-0.25, -0.25))
    assert resize.window((6, 7)) == ((2, 3), (3, 4))
    # hetconv, dynamic, deformable (nominal grid), 1-D and 3-D forms: a 3×3(×3) window each
    for name in ("hetconv", "dynamic", "deformable", "shuffled_grouped", "depthwise"):
        assert receptive_field(cz.build(name, 4, 4), (1, 4, 8, 8)).output.size == (3, 3), name
    assert receptive_field(cz.build("standard", 1, 1, 5, dim=1, stride=2), (1, 1, 12)).output.size == (5,)
    assert receptive_field(cz.build("dilated", 1, 1, 3, dim=3), (1, 1, 8, 8, 8)).output.size == (5, 5, 5)


def _gradient_field(model: nn.Module, shape: tuple[int, ...], position: tuple[int, ...]) -> tuple[list[int], list[float]]:
    """Span and centre (input pixels) of the inputs whose gradient reaches output ``position`` (all channels)."""
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.rand_like(param) * 0.9 + 0.1)  # all positive: nothing cancels
    x = torch.rand(shape, requires_grad=True)
    y = model(x)
    y[(0, slice(None), *position)].sum().backward()
    hit = x.grad[0].abs().sum(0).nonzero()
    lo, hi = hit.min(0).values.tolist(), hit.max(0).values.tolist()
    return [h - l + 1 for l, h in zip(lo, hi)], [(h + l) / 2 for l, h in zip(lo, hi)]


@pytest.mark.parametrize(
    "model",
    [
        lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), cz.Conv2d(2, 2, 3, 2, 2, dilation=2),
                              nn.AvgPool2d(3, 2, 1), cz.DepthwiseSeparableConv2d(2, 3, 5, padding=(1, 2))),
        lambda: nn.Sequential(cz.MixConv2d(3, 3), cz.HetConv2d(3, 3, 3, p=3, stride=2, padding=1),
                              cz.SpatiallySeparableConv2d(3, 2, (3, 5), dilation=2, padding=0)),
        lambda: nn.Sequential(cz.Conv1d(1, 2, 4, 3), cz.DepthwiseSeparableConv1d(2, 2, 3, dilation=3, padding="same")),
        lambda: nn.Sequential(cz.ResizeConv2d(1, 2, 3), cz.Conv2d(2, 1, 3, stride=2)),
        lambda: nn.Sequential(cz.Conv2d(1, 2, 3), cz.TransposedConv2d(2, 1, 3, 2)),
        lambda: nn.Sequential(cz.Conv2d(1, 2, 3), cz.TransposedConv2d(2, 1, 4, 2, 1), cz.Conv2d(1, 1, 3)),
        lambda: nn.Sequential(cz.TransposedConv2d(1, 2, 5, 3, dilation=2), cz.TransposedConv2d(2, 1, 3, 1, 1)),
    ],
)
def test_receptive_field_matches_gradient_footprint(model) -> None:
    net = model().eval()
    dim = 1 if isinstance(net[0], cz.Conv1d) else 2
    shape = (1, net[0].in_channels, *((48,) * dim))
    rf = receptive_field(net, shape)
    out_spatial = net(torch.zeros(shape)).shape[2:]
    centre = tuple(n // 2 for n in out_spatial)
    upsampling = any(isinstance(m, (cz.ResizeConvNd, cz.TransposedConvNd)) for m in net)
    # after upsampling the window depends on the output's phase: every phase of 6 consecutive positions is checked
    for t in range(6 if upsampling else 1):
        position = tuple(c + t for c in centre)
        span, mid = _gradient_field(net, shape, position)
        windows = rf.output.window(position)
        assert [b - a + 1 for a, b in windows] == span, (position, windows, span)
        assert [(a + b) / 2 for a, b in windows] == mid, (position, windows, mid)
        assert all(b - a + 1 <= r for (a, b), r in zip(windows, rf.output.size))  # size: the union of phases
    if not upsampling:  # centre of output u's field = start + u·stride (exact without upsampling)
        assert tuple(mid) == tuple(c + u * j for c, u, j in zip(rf.output.start, centre, rf.output.stride))


def test_dynamic_conv_attention_sees_the_whole_input() -> None:
    # documented caveat: the 3-tap window is the conv's field, but the attention pools every input pixel
    net = cz.DynamicConv1d(1, 1, 3, padding=1).eval()
    assert receptive_field(net, (1, 1, 20)).output.size == (3,)
    span, _ = _gradient_field(net, (1, 1, 20), (10,))
    assert span == [20]


def test_receptive_field_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="input_shape"):
        receptive_field(nn.Conv2d(1, 1, 3), (1, 1, 0, 4))


# ------------------------------------------------------------------------------------------ overlap


def test_overlap_map_examples() -> None:
    assert overlap_map(3, 2, dim=1).tolist() == [2, 1]  # checkerboard: alternating 2 and 1 taps
    assert overlap_map(4, 2, dim=1).tolist() == [2, 2]  # even
    assert overlap_map(3, 2).tolist() == [[4, 2], [2, 1]]  # 2-D: outer product of the 1-D counts
    assert overlap_map((3, 4), (2, 2)).tolist() == [[4, 4], [2, 2]]
    assert overlap_map(5, 3, dim=1).tolist() == [2, 2, 1]
    assert is_even_overlap(4, 2) and is_even_overlap((4, 6), (2, 3)) and is_even_overlap(3, 1)
    assert not is_even_overlap(3, 2) and not is_even_overlap((4, 3), 2)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("s", [1, 2, 3, 4])
def test_overlap_map_matches_transposed_conv_on_ones(dim: int, k: int, s: int) -> None:
    n = 6
    conv = cz.TransposedConv1d(1, 1, k, s, bias=False) if dim == 1 else cz.TransposedConv2d(1, 1, k, s, bias=False)
    nn.init.ones_(conv.weight)
    with torch.no_grad():
        y = conv(torch.ones(1, 1, *((n,) * dim)))[0, 0].round().to(torch.int64)
    counts = overlap_map(k, s, dim)
    interior = range(k - 1, (n - 1) * s + 1)  # outputs whose every tap lands on an input
    for o in interior:
        index = (o,) * dim
        assert y[index] == counts[tuple(v % s for v in index)]
    if dim == 2:  # mixed phases too
        o1, o2 = k - 1, k if k <= (n - 1) * s else k - 1
        assert y[o1, o2] == counts[o1 % s, o2 % s]
    assert is_even_overlap(k, s) == bool((counts == counts.flatten()[0]).all()) == (k % s == 0)
