"""Exact cost and receptive field of every family, against independent derivations.

Costs: params, weight MACs and the output shape from each paper's definition, written out here from the
constructor's arguments alone (never read from the layer), at settings that break symmetric shortcuts (stride 2,
dilation, groups, odd sizes, 1-D and 3-D); params also equal ``sum(p.numel())``, the shape equals the forward's,
and the MACs equal torch's FlopCounterMode (FLOPs / 2) on the real forward where the forward runs exactly the
paper's products. Receptive fields: for stacked models with positive weights, attention / offset predictors zero
(the local path alone) and a positive input, the input pixels that get a non-zero gradient from one output position
span exactly the reported window [c + o·j − (r − 1)/2, c + o·j + (r − 1)/2], clipped to the input.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import convzoo as cz

Shape = tuple[int, ...]
Hand = tuple[int, int, Shape]  # (params, weight MACs, output shape)
N = 2


def _tuple(v: Any, dim: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dim


def _out(size: Shape, k: tuple[int, ...], s: tuple[int, ...], d: tuple[int, ...], pad: tuple[int, ...]) -> Shape:
    """O = ⌊(S + p_total − d·(k − 1) − 1) / s⌋ + 1 per dim (p_total: both sides)."""
    return tuple((si + p - di * (ki - 1) - 1) // st + 1 for si, ki, st, di, p in zip(size, k, s, d, pad))


def _geometry(k: Any, dim: int, kw: dict[str, Any]) -> tuple[tuple[int, ...], ...]:
    """The registry's default padding: 'same' at stride 1 (total d·(k − 1)), else d·(k − 1)//2 each side."""
    k, s, d = _tuple(k, dim), _tuple(kw.get("stride", 1), dim), _tuple(kw.get("dilation", 1), dim)
    if s == (1,) * dim:
        pad = tuple(di * (ki - 1) for ki, di in zip(k, d))
    else:
        pad = tuple(2 * (di * (ki - 1) // 2) for ki, di in zip(k, d))
    return k, s, d, pad


def dense(ci: int, co: int, k: Any, dim: int, kw: dict[str, Any], size: Shape, groups: int = 1) -> Hand:
    """Conv: |W| = C_out·(C_in/g)·prod(k), params |W| + C_out, MACs N·prod(O)·|W|."""
    k, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, k, s, d, pad)
    w = co * (ci // groups) * math.prod(k)
    return w + co, N * math.prod(out) * w, (N, co, *out)


def depthwise_separable(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """MobileNet: depthwise C_in·k^D (+ C_in) then pointwise C_in·C_out (+ C_out), both at the output size."""
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    return ci * math.prod(kk) + ci + ci * co + co, N * math.prod(out) * ci * (math.prod(kk) + co), (N, co, *out)


def flattened(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Jin et al. 2014: lateral 1×1 C_in → C_out at the input size, then per channel k×1 (stride on H) and 1×k."""
    (kh, kw_), (sh, sw), (dh, dw), (ph, pw) = _geometry(k, 2, kw)
    hm, wo = (size[0] + ph - dh * (kh - 1) - 1) // sh + 1, (size[1] + pw - dw * (kw_ - 1) - 1) // sw + 1
    macs = N * (math.prod(size) * ci * co + hm * size[1] * co * kh + hm * wo * co * kw_)
    return ci * co + co * (kh + kw_) + 3 * co, macs, (N, co, hm, wo)


def spatially_separable(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """k×1 C_in → mid (= C_out, no bias, stride on H), then 1×k mid → C_out (+ bias)."""
    (kh, kw_), (sh, sw), (dh, dw), (ph, pw) = _geometry(k, 2, kw)
    hm, wo = (size[0] + ph - dh * (kh - 1) - 1) // sh + 1, (size[1] + pw - dw * (kw_ - 1) - 1) // sw + 1
    macs = N * (hm * size[1] * co * ci * kh + hm * wo * co * co * kw_)
    return co * ci * kh + co * co * kw_ + co, macs, (N, co, hm, wo)


def mixconv(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Tan & Le 2019: kernels k, k + 2, k + 4 on equal channel splits (remainder to the first), each 'same'
    (output ⌈S/s⌉); depthwise per group when C_in = C_out, else a dense conv per group."""
    sizes, n = (k, k + 2, k + 4), 3

    def split(c: int) -> list[int]:
        return [c // n + (c % n if i == 0 else 0) for i in range(n)]

    s = _tuple(kw.get("stride", 1), 2)
    out = tuple(-(-si // st) for si, st in zip(size, s))
    params = macs = 0
    for kk, a, b in zip(sizes, split(ci), split(co)):
        w = b * (1 if ci == co else a) * kk * kk
        params, macs = params + w + b, macs + N * math.prod(out) * w
    return params, macs, (N, co, *out)


def hetconv(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Singh et al. 2019: each filter has C_in/p k×k kernels and C_in − C_in/p 1×1 kernels."""
    p = kw["p"]
    kk, s, d, pad = _geometry(k, 2, kw)
    out = _out(size, kk, s, d, pad)
    per = (ci // p) * math.prod(kk) + ci - ci // p
    return co * per + co, N * math.prod(out) * co * per, (N, co, *out)


def dynamic(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Chen et al. 2020: K = 4 kernels (+ biases), attention GAP → FC C_in → C_in/4 → ReLU → FC → K; MACs: the
    two FCs, the aggregation N·K·|W| and the conv with the aggregated kernel."""
    kernels, g, hidden = 4, kw.get("groups", 1), max(ci // 4, 1)
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    w = co * (ci // g) * math.prod(kk)
    params = kernels * (w + co) + ci * hidden + hidden + hidden * kernels + kernels
    return params, N * (ci * hidden + hidden * kernels + kernels * w + math.prod(out) * w), (N, co, *out)


def condconv(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Yang et al. 2019: K = 4 experts (+ biases), routing sigmoid(FC(GAP(x))); combination N·K·|W| and the conv."""
    experts, g = 4, kw.get("groups", 1)
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    w = co * (ci // g) * math.prod(kk)
    macs = N * (ci * experts + experts * w + math.prod(out) * w)
    return experts * (w + co) + ci * experts + experts, macs, (N, co, *out)


def odconv(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Li et al. 2022: K = 4 kernels, one bias; squeeze FC to max(⌊C_in/16⌋, 4) (the registry's floor), heads to
    C_in, C_out, prod(k) and K; aggregation N·K·|W| and the conv."""
    kernels, g, hidden = 4, kw.get("groups", 1), max(int(ci * 0.0625), 4)
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    w, heads = co * (ci // g) * math.prod(kk), ci + co + math.prod(kk) + kernels
    params = kernels * w + co + ci * hidden + hidden + hidden * heads + heads
    return params, N * (ci * hidden + hidden * heads + kernels * w + math.prod(out) * w), (N, co, *out)


def selective_kernel(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Li et al. 2019: branches 3^D and 5^D-as-3^D-dilated-2 (+ biases); fuse FC C_out → max(C_out/16, 4), select
    FC → 2·C_out (+ biases); output ⌈S/s⌉ (each branch pads d·(k − 1)/2)."""
    branches, g, hidden = 2, kw.get("groups", 1), max(co // 16, 4)
    out = tuple(-(-si // st) for si, st in zip(size, _tuple(kw.get("stride", 1), dim)))
    w = co * (ci // g) * 3**dim
    params = branches * (w + co) + co * hidden + hidden + hidden * branches * co + branches * co
    return params, N * (branches * math.prod(out) * w + co * hidden + hidden * branches * co), (N, co, *out)


def involution(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Li et al. 2021: kernel generator at each output position, reduce C → C/4 → ReLU → span G·k^D (+ biases);
    its weight MACs only (the kernel × input products are activation × activation)."""
    groups, hidden = kw["groups"], max(ci // 4, 1)
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    taps = math.prod(kk)
    params = ci * hidden + hidden + hidden * groups * taps + groups * taps
    return params, N * math.prod(out) * (ci * hidden + hidden * groups * taps), (N, co, *out)


def deformable(fields: int) -> Callable[..., Hand]:
    def hand(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
        """Dai et al. 2017 / Zhu et al. 2018: offset conv C_in → fields·G·k² (+ bias, same window), then the conv on
        the sampled values (+ bias); sampling and masking are not weight MACs."""
        g, og = kw.get("groups", 1), kw.get("offset_groups", 1)
        kk, s, d, pad = _geometry(k, 2, kw)
        out = _out(size, kk, s, d, pad)
        taps = math.prod(kk)
        offsets = fields * og * taps
        params = offsets * ci * taps + offsets + co * (ci // g) * taps + co
        return params, N * math.prod(out) * (offsets * ci * taps + co * (ci // g) * taps), (N, co, *out)
    return hand


def subpixel(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Shi et al. 2016: conv C_in → C_out·r^D (+ bias) at low resolution, then the shuffle (no MACs)."""
    r = kw.get("upscale_factor", 2)
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    w = co * r**dim * ci * math.prod(kk)
    return w + co * r**dim, N * math.prod(out) * w, (N, co, *(o * r for o in out))


def resize(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Upsample ×f (no MACs), then a 'same' conv on the upsampled map."""
    f = _tuple(kw.get("scale_factor", 2), dim)
    return dense(ci, co, k, dim, {}, tuple(a * b for a, b in zip(size, f)))


def acnet(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Ding et al. 2019: k^D + one k-along-each-axis kernel, convs without bias, each with a BN (γ, β)."""
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    g, taps = kw.get("groups", 1), math.prod(kk) + sum(kk)
    return co * (ci // g) * taps + 2 * co * (1 + dim), N * math.prod(out) * co * (ci // g) * taps, (N, co, *out)


def repvgg(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Ding et al. 2021: 3^D + 1^D convs (no bias) with BNs, and an identity BN when C_in = C_out at stride 1."""
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    g, identity = kw.get("groups", 1), ci == co and s == (1,) * dim
    w = co * (ci // g) * (math.prod(kk) + 1)
    return w + 2 * co * (2 + identity), N * math.prod(out) * w, (N, co, *out)


def large_kernel(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Ding et al. 2022: depthwise k^D + small 5^D (k − 2 below 7), no bias, each with a BN."""
    small = 5 if k >= 7 else max(1, k - 2)
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    w = co * (k**dim + small**dim)  # C_in/groups = 1
    return w + 4 * co, N * math.prod(out) * w, (N, co, *out)


def partial(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Chen et al. 2023: a k^D conv (+ bias) on c_p = C/4 channels, the rest passed through."""
    cp = ci // 4
    return cp * cp * k**dim + cp, N * math.prod(size) * cp * cp * k**dim, (N, co, *size)


def ghost(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Han et al. 2020: ratio s = 2, m = ⌈C_out/2⌉ intrinsic maps by a k^D conv, m ghost maps by a 3^D depthwise
    conv on them (both with bias), concatenated and cut to C_out."""
    m = -(-co // 2)
    kk, s, d, pad = _geometry(k, dim, kw)
    out = _out(size, kk, s, d, pad)
    params = ci * m * math.prod(kk) + m + m * 3**dim + m
    return params, N * math.prod(out) * (m * ci * math.prod(kk) + m * 3**dim), (N, co, *out)


def dcnv3(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """Wang et al. 2023 (InternImage): input projection C×C, depthwise k×k → LayerNorm (γ, β) → GELU → offsets
    (2GK) and masks (GK) linears, the sampled sum, output projection C × C_out; all with bias."""
    groups, taps, c = kw["groups"], k * k, ci
    params = c * c + c + c * taps + c + 2 * c + c * 3 * groups * taps + 3 * groups * taps + c * co + co
    return params, N * math.prod(size) * c * (c + taps + 3 * groups * taps + co), (N, co, *size)


def transposed(ci: int, co: int, k: int, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """O = (S − 1)·s − 2p + d·(k − 1) + output_padding + 1; MACs N·prod(S)·C_in·(C_out/g)·prod(k)."""
    kk, s, d = _tuple(k, dim), _tuple(kw["stride"], dim), _tuple(kw.get("dilation", 1), dim)
    p, g = _tuple(kw["padding"], dim), kw.get("groups", 1)
    out = tuple((si - 1) * st - 2 * pi + di * (ki - 1) + 1 for si, st, pi, di, ki in zip(size, s, p, d, kk))
    w = ci * (co // g) * math.prod(kk)
    return w + co, N * math.prod(size) * w, (N, co, *out)


def global_depthwise(ci: int, co: int, k: Any, dim: int, kw: dict[str, Any], size: Shape) -> Hand:
    """One weight per input position and output channel (+ bias); output 1×1."""
    return co * math.prod(size) + co, N * co * math.prod(size), (N, co, 1, 1)


# (family, C_in, C_out, kernel, dim, build options, input spatial size, hand formula, forward runs the paper's MACs)
CASES: list[tuple[str, int, int, Any, int, dict[str, Any], Shape, Callable[..., Hand], bool]] = [
    ("standard", 6, 8, 3, 2, {"stride": 2}, (11, 9), dense, True),
    ("standard", 4, 8, 3, 3, {"groups": 2, "stride": 2}, (5, 6, 7), lambda *a: dense(*a, groups=2), True),
    ("convolution", 4, 6, (3, 5), 2, {"dilation": (1, 2)}, (9, 12), dense, True),
    ("dilated", 4, 6, 5, 1, {"dilation": 3}, (21,), dense, True),
    ("pointwise", 6, 9, None, 3, {"groups": 3}, (3, 4, 5),
     lambda ci, co, k, dim, kw, sz: dense(ci, co, 1, dim, kw, sz, 3), True),
    ("pointwise_grouped", 6, 9, None, 2, {"groups": 3, "stride": 2}, (11, 9),
     lambda ci, co, k, dim, kw, sz: dense(ci, co, 1, dim, kw, sz, 3), True),
    ("grouped", 8, 12, 3, 1, {"groups": 4, "dilation": 2}, (17,), lambda *a: dense(*a, groups=4), True),
    ("shuffled_grouped", 6, 9, 3, 2, {"groups": 3, "stride": 2}, (11, 9), lambda *a: dense(*a, groups=3), True),
    ("depthwise", 6, 12, 3, 2, {"stride": 2}, (11, 9), lambda ci, co, k, dim, kw, sz: dense(ci, co, k, dim, kw, sz, ci),
     True),
    ("depthwise", 5, 5, 5, 1, {"dilation": 2}, (17,), lambda ci, co, k, dim, kw, sz: dense(ci, co, k, dim, kw, sz, ci),
     True),
    ("depthwise_separable", 6, 10, 3, 2, {"stride": 2}, (11, 9), depthwise_separable, True),
    ("depthwise_separable", 4, 8, 3, 3, {}, (4, 5, 6), depthwise_separable, True),
    ("transposed", 6, 4, 4, 1, {"stride": 3, "padding": 1}, (9,), transposed, True),
    ("transposed", 4, 6, 3, 3, {"stride": 2, "groups": 2, "dilation": 2, "padding": 0}, (3, 4, 5), transposed, True),
    ("resize", 4, 6, 3, 3, {"scale_factor": 3}, (2, 3, 3), resize, True),
    ("spatially_separable", 5, 7, (5, 3), 2, {"dilation": 2}, (12, 13), spatially_separable, True),
    ("spatially_separable", 6, 8, 3, 2, {"stride": 2}, (11, 9), spatially_separable, True),
    ("flattened", 6, 8, 3, 2, {"stride": 2}, (11, 9), flattened, True),
    ("global_depthwise", 6, 6, (7, 5), 2, {}, (7, 5), global_depthwise, True),
    ("mixconv", 6, 9, 3, 2, {"stride": 2}, (11, 9), mixconv, True),
    ("mixconv", 9, 9, 3, 2, {}, (8, 7), mixconv, True),
    ("hetconv", 8, 12, 3, 2, {"p": 4, "stride": 2}, (11, 9), hetconv, False),  # forms run a masked / padded kernel
    ("hetconv", 6, 6, 5, 2, {"p": 2}, (9, 8), hetconv, False),
    ("dynamic", 8, 12, 3, 1, {"groups": 4, "dilation": 2}, (17,), dynamic, False),  # bias aggregation: a matmul
    ("dynamic", 4, 8, 3, 3, {"stride": 2}, (4, 5, 6), dynamic, False),
    ("condconv", 6, 8, 3, 2, {"stride": 2}, (11, 9), condconv, False),
    ("odconv", 8, 12, 3, 1, {"groups": 4, "dilation": 2}, (17,), odconv, True),
    ("odconv", 6, 8, 3, 3, {"stride": 2}, (5, 4, 6), odconv, True),
    ("selective_kernel", 6, 8, 3, 2, {"stride": 2}, (11, 9), selective_kernel, True),
    ("selective_kernel", 4, 8, 3, 3, {"groups": 2}, (4, 5, 3), selective_kernel, True),
    ("involution", 6, 6, 3, 2, {"stride": 2, "groups": 2}, (11, 9), involution, True),
    ("involution", 8, 8, 5, 1, {"dilation": 2, "groups": 4}, (17,), involution, True),
    ("deformable", 4, 6, 3, 2, {"dilation": 2, "groups": 2, "offset_groups": 2}, (9, 8), deformable(2), True),
    ("deformable", 6, 8, 3, 2, {"stride": 2}, (11, 9), deformable(2), True),
    ("deformable_v2", 4, 6, 3, 2, {"dilation": 2, "offset_groups": 2, "stride": 2}, (9, 8), deformable(3), True),
    ("subpixel", 6, 4, 3, 1, {"upscale_factor": 3}, (9,), subpixel, True),
    ("subpixel", 4, 6, 3, 3, {"stride": 2}, (5, 3, 4), subpixel, True),
    ("acnet", 6, 8, 3, 2, {"stride": 2}, (11, 9), acnet, True),
    ("acnet", 4, 6, 3, 3, {"dilation": 2}, (6, 7, 5), acnet, True),
    ("repvgg", 6, 6, 3, 2, {}, (11, 9), repvgg, True),
    ("repvgg", 4, 4, 3, 1, {"groups": 2, "dilation": 2}, (13,), repvgg, True),
    ("repvgg", 6, 8, 3, 2, {"stride": 2}, (11, 9), repvgg, True),
    ("large_kernel", 6, 6, 13, 2, {"stride": 2}, (21, 19), large_kernel, True),
    ("large_kernel", 4, 4, 5, 3, {}, (6, 7, 5), large_kernel, True),
    ("partial", 8, 8, 5, 3, {}, (5, 6, 7), partial, True),
    ("partial", 8, 8, 3, 1, {}, (11,), partial, True),
    ("ghost", 6, 9, 3, 2, {"stride": 2}, (11, 9), ghost, True),
    ("ghost", 4, 7, 1, 1, {}, (13,), ghost, True),
    ("ghost", 4, 6, 3, 3, {"dilation": 2}, (6, 5, 7), ghost, True),
    ("dcnv3", 6, 8, 3, 2, {"groups": 2}, (11, 9), dcnv3, True),
    ("dcnv3", 8, 8, 5, 2, {"groups": 4, "dilation": 2}, (11, 12), dcnv3, True),
]


def _build(name: str, ci: int, co: int, k: Any, dim: int, kw: dict[str, Any]) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cz.build(name, ci, co, k, dim, **dict(kw)).eval()


def _flop_counter_macs(layer: nn.Module, x: torch.Tensor) -> tuple[int, Shape]:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = layer(x)
    return counter.get_total_flops() // 2, tuple(y.shape)


def test_every_family_has_a_case():
    assert {f.name for f in cz.families()} == {case[0] for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[4]}d-{'-'.join(f'{k}{v}' for k, v in c[5].items())}")
def test_cost_equals_the_paper_formula_the_parameters_and_the_forward(case):
    name, ci, co, k, dim, kw, size, hand, exact_forward = case
    torch.manual_seed(0)
    layer = _build(name, ci, co, k, dim, kw)
    shape = (N, ci, *size)
    params, macs, out = hand(ci, co, k, dim, kw, size)
    report = cz.cost(layer, shape)
    assert (report.params, report.macs, tuple(report.output_shape)) == (params, macs, out)
    assert layer.cost(shape).macs == macs
    counted, forward_shape = _flop_counter_macs(layer, torch.randn(shape))
    assert sum(p.numel() for p in layer.parameters()) == params
    assert forward_shape == out
    if exact_forward:
        assert counted == macs


def test_dynamic_and_condconv_bias_aggregation_is_the_only_matmul_not_in_the_macs():
    """The forward aggregates the K biases with a matmul (FlopCounterMode counts it); by the convention biases are
    not MACs, so the cost puts those N·K·C_out products in other ops: the counts differ by exactly that."""
    for name in ("dynamic", "condconv"):
        layer = _build(name, 6, 8, 3, 2, {"stride": 2})
        shape = (N, 6, 11, 9)
        counted, _ = _flop_counter_macs(layer, torch.randn(shape))
        assert counted - cz.cost(layer, shape).macs == N * 4 * 8


# --- receptive fields --------------------------------------------------------------------------------------------


def _positive_(model: nn.Module) -> nn.Module:
    """Kernels |w| + 0.05, biases |b|; attention, routing, offset and mask predictors zero (constant attention,
    zero offsets, uniform DCNv3 masks): every path but the attentions' contributes, nothing cancels."""
    side = ("attention", "routing", "offset_conv", "branch.offset", "branch.mask", "fuse_select")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(s in name for s in side):
                p.zero_()
            elif "weight" in name:
                p.abs_().add_(0.05)
            else:
                p.abs_()
    return model.eval().double()


def _gradient_box(model: nn.Module, x: torch.Tensor, position: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Per spatial dim, the first and last input index with a non-zero gradient from output ``position`` (all
    channels). torch.func.grad: the layers run their deterministic torch forms (no timing, no kernel compile);
    grid_sample's normalised coordinates put an integer position ~1e-16 off, so the neighbour it does not read gets
    a ~1e-16 gradient: a real dependence is of order 1 here (positive weights and input)."""
    grad = torch.func.grad(lambda t: model(t)[(0, slice(None), *position)].sum())(x)[0].abs().sum(0)
    hit = (grad > 1e-9 * grad.max()).nonzero()
    return tuple((int(hit[:, d].min()), int(hit[:, d].max())) for d in range(hit.shape[1]))


C = cz
STACKS: list[tuple[str, Callable[[], nn.Module], Shape]] = [
    ("dilated-strided-deformable", lambda: nn.Sequential(
        C.Conv2d(2, 3, 3, padding=2, dilation=2), C.Conv2d(3, 3, 3, stride=2, padding=1),
        C.DeformConv2d(3, 2, 3, padding=1)), (1, 2, 23, 21)),
    ("deformable-s2-d2-then-v2", lambda: nn.Sequential(
        C.DeformConv2d(2, 3, 3, stride=2, padding=2, dilation=2), C.DeformConv2d(3, 2, 3, padding=1, modulated=True)),
     (1, 2, 23, 21)),
    ("dwsep-mixconv-hetconv", lambda: nn.Sequential(
        C.DepthwiseSeparableConv2d(4, 4, 5, stride=2, padding=2), C.MixConv2d(4, 4, (3, 5, 7), stride=2),
        C.HetConv2d(4, 4, 3, padding=2, dilation=2, p=2)), (1, 4, 37, 35)),
    ("spatsep-flattened-ghost", lambda: nn.Sequential(
        C.SpatiallySeparableConv2d(2, 4, (5, 3), stride=(2, 1), padding=(2, 1)),
        C.FlattenedConv2d(4, 4, (3, 5), padding=(1, 2)), C.GhostModule2d(4, 4, 3, stride=2, padding=1)),
     (1, 2, 31, 29)),
    ("acnet-repvgg-large-partial", lambda: nn.Sequential(
        C.ACNetConv2d(4, 4, 3, stride=2), C.RepVGGBlock2d(4, 4, 3, dilation=2),
        C.LargeKernelConv2d(4, 4, 9, small_kernel=3), C.PartialConv2d(4, 4, 3, n_div=2)), (1, 4, 41, 39)),
    ("involution-dcnv3-sk", lambda: nn.Sequential(
        C.Involution2d(4, 4, 3, stride=2, padding=1, groups=2), C.DCNv3Conv2d(4, 4, 3, dilation=2, groups=2),
        C.SelectiveKernelConv2d(4, 4, (3, 5), min_hidden=4)), (1, 4, 31, 29)),
    ("dynamic-condconv-odconv", lambda: nn.Sequential(
        C.DynamicConv2d(2, 4, 3, stride=2, padding=1), C.CondConv2d(4, 4, 3, padding=3, dilation=3),
        C.ODConv2d(4, 2, 3, padding=1)), (1, 2, 31, 29)),
    ("grouped-shuffled-pointwise-depthwise", lambda: nn.Sequential(
        C.Conv2d(4, 4, 3, stride=2, padding=1, groups=2), C.ShuffledGroupedConv2d(4, 4, 3, padding=1, groups=2),
        C.PointwiseConv2d(4, 4, stride=2, groups=2), C.DepthwiseConv2d(4, 4, 5, padding=2)), (1, 4, 29, 27)),
    ("even-same-strided-convolution", lambda: nn.Sequential(
        C.Conv2d(2, 2, 4, padding="same"), C.Conv2d(2, 2, 3, stride=2),
        C.Conv2d(2, 2, (3, 2), padding="same", mode="convolution")), (1, 2, 21, 20)),
    ("dilated-chain-mixconv-even", lambda: nn.Sequential(
        C.Conv2d(2, 2, 3, dilation=2, padding=2), C.Conv2d(2, 2, 3, dilation=2), C.Conv2d(2, 2, 2, stride=2),
        C.Conv2d(2, 2, 3, dilation=3, padding=3), C.MixConv2d(2, 2, (2, 4))), (1, 2, 35, 33)),
    ("resize-bilinear-x3-strided", lambda: nn.Sequential(
        C.ResizeConv2d(2, 3, 3, scale_factor=3, upsample_mode="bilinear"), C.Conv2d(3, 2, 3, stride=3)),
     (1, 2, 9, 8)),
    ("1d-ghost-dynamic-partial", lambda: nn.Sequential(
        C.GhostModule1d(2, 4, 3, stride=2, padding=1), C.DynamicConv1d(4, 4, 3, stride=2, padding=2, dilation=2),
        C.PartialConv1d(4, 4, 5, n_div=2, dilation=2)), (1, 2, 41)),
    ("3d-dwsep-odconv-acnet", lambda: nn.Sequential(
        C.DepthwiseSeparableConv3d(2, 2, 3, stride=2, padding=1), C.ODConv3d(2, 2, 3, padding=2, dilation=2),
        C.ACNetConv3d(2, 2, 3)), (1, 2, 17, 15, 16)),
]


@pytest.mark.parametrize(("name", "make", "shape"), STACKS, ids=[s[0] for s in STACKS])
def test_receptive_field_equals_the_gradient_support(name, make, shape):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _positive_(make())
    field = cz.receptive_field(model, shape).output
    x = torch.rand(shape, dtype=torch.float64) + 0.5
    out = cz.cost(model, shape).output_shape[2:]
    for position in itertools.product(*[sorted({0, o // 2, o - 1}) for o in out]):
        expected = []
        for d, (lo, hi) in enumerate(field.window(position)):  # start + o·stride ± (size − 1)/2 or o's phase's
            expected.append((max(0, math.ceil(lo)), min(shape[2 + d] - 1, math.floor(hi))))
        assert _gradient_box(model, x, position) == tuple(expected), position


# Upsampling inside the stack (nearest resize, sub-pixel shuffle, a transposed conv): windows that depend on the
# output's phase, followed where a later stride brings the phases together (the field is exact again) and given
# per phase by FieldRow.window where none does (the sub-pixel output last).
UPSAMPLING_STACKS = [
    ("resize-nearest-subpixel-strided", lambda: nn.Sequential(
        C.ResizeConv2d(2, 3, 3), C.SubPixelConv2d(3, 2, 3, padding=1), C.Conv2d(2, 2, 3, stride=2, padding=1)),
     (1, 2, 9, 8)),
    ("3d-dwsep-involution-subpixel", lambda: nn.Sequential(
        C.DepthwiseSeparableConv3d(2, 2, 3, stride=2, padding=1), C.Involution3d(2, 2, 3, padding=1, groups=1),
        C.SubPixelConv3d(2, 2, 3, padding=1)), (1, 2, 13, 11, 12)),
    ("1d-transposed-between-convs", lambda: nn.Sequential(
        C.Conv1d(2, 2, 3, dilation=3, padding=3), C.TransposedConv1d(2, 2, 4, stride=2, padding=1),
        C.Conv1d(2, 2, 3, stride=2)), (1, 2, 25)),
]


@pytest.mark.parametrize(("name", "make", "shape"), UPSAMPLING_STACKS, ids=[s[0] for s in UPSAMPLING_STACKS])
def test_receptive_field_after_upsampling_equals_the_gradient_support(name, make, shape):
    test_receptive_field_equals_the_gradient_support(name, make, shape)


def test_transposed_conv_then_strided_conv_is_exact_again():
    # conv k3 d3 p3: x[v − 3 … v + 3]; transposed k4 s2 p1: output o reads inputs (o + 1 − t)/2; the stride-2 conv
    # output w reads transposed outputs 2w … 2w + 2, i.e. inputs w − 1 … w + 1 in every case: x[w − 4 … w + 4]
    # (the transposed step alone put the centre ¼ pixel off: start 0.25)
    out = cz.receptive_field(UPSAMPLING_STACKS[2][1](), (1, 2, 25)).output
    assert (out.size, out.stride, out.start, out.note, out.phases) == ((9,), (1,), (0,), "", ())


P = N * 11 * 9  # positions of the (N, 6, 11, 9) maps below


@pytest.mark.parametrize(("name", "kw", "products", "other"), [
    # N·C·T·prod(O) kernel × patch products; other ops: the generator's ReLU on h = C/4 = 1 hidden value
    ("involution", {"groups": 2}, P * 6 * 9, P * 1),
    # N·C·K·H·W mask × sampled value products summed over the K points; other ops: LayerNorm 4 and GELU 1 per
    # element, softmax 3 per mask logit (G·K per position), bilinear sampling 4 per sampled value
    ("dcnv3", {"groups": 2}, P * 6 * 9, 4 * P * 6 + P * 6 + 3 * P * 2 * 9 + 4 * P * 6 * 9),
    # DCNv2's modulation scales each sample once before the weight MAC (a gate): other ops, with the sigmoid of
    # the G·K mask logits and the sampling; no activation MACs
    ("deformable_v2", {}, 0, P * 9 + 4 * P * 6 * 9 + P * 6 * 9),
])
def test_activation_products_are_reported_apart(name, kw, products, other):
    layer = _build(name, 6, 6, 3, 2, kw)
    own = layer.cost((N, 6, 11, 9))
    report = cz.cost(layer, (N, 6, 11, 9))
    assert (own.activation_macs, own.other_ops) == (products, other)
    assert (report.activation_macs, report.other_ops, report.macs) == (products, other, own.macs)
    assert [row.activation_macs for row in report.layers] == [products]
    assert ("activation_macs", products) in report.to_dict()["layers"][0].items()


def test_selective_kernel_weighted_sum_is_activation_macs():
    # Σ_m a_m ⊙ U_m: M = 2 products of two activations (attention × branch output) per output element, summed
    layer = _build("selective_kernel", 6, 8, 3, 2, {"stride": 2})
    own = layer.cost((N, 6, 11, 9))
    assert own.output_shape == (N, 8, 6, 5) and own.activation_macs == 2 * N * 8 * 6 * 5
    assert cz.cost(layer, (N, 6, 11, 9)).activation_macs == own.activation_macs


class _TorchOpsInvolution(nn.Module):
    """Involution2d's operator in torch ops: the generator's two linears, patches by unfold, kernel × patch
    summed over the taps as one batched matmul (an activation × activation product)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen, g = self.layer.generator, self.layer.groups
        hidden = torch.relu(torch.nn.functional.linear(x.permute(0, 2, 3, 1), gen.reduce.weight, gen.reduce.bias))
        kernels = torch.nn.functional.linear(hidden, gen.span.weight, gen.span.bias)  # (N, H, W, G·T)
        n, c, h, w = x.shape
        taps = kernels.shape[-1] // g
        patches = torch.nn.functional.unfold(x, 3, padding=1).reshape(n, g, c // g, taps, h * w)
        left = patches.permute(0, 1, 4, 2, 3).reshape(-1, c // g, taps)
        right = kernels.reshape(n, h * w, g, taps).permute(0, 2, 1, 3).reshape(-1, taps, 1)
        return (left @ right).reshape(n, g, h * w, c // g).permute(0, 1, 3, 2).reshape(n, c, h, w)


class _TorchOpsDeformV2(nn.Module):
    """DeformConv2d(modulated) at zero offsets in torch ops: the offset conv, σ(mask), the samples by unfold, each
    multiplied by its mask, then the weights as one matmul."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.layer.offset_conv
        fields = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)  # offsets (unused: 0) and masks
        mask = torch.sigmoid(fields[:, 2 * 9:])  # (N, K, H, W)
        n, c, h, w = x.shape
        samples = torch.nn.functional.unfold(x, 3, padding=1).reshape(n, c, 9, h * w)
        modulated = (samples * mask.reshape(n, 1, 9, h * w)).reshape(n, c * 9, h * w)
        y = self.layer.weight.reshape(self.layer.out_channels, -1) @ modulated
        return y.reshape(n, -1, h, w) + self.layer.bias.reshape(1, -1, 1, 1)


class _TorchOpsDynamic(nn.Module):
    """DynamicConv2d (no bias) in torch ops: its attention module, the aggregation π @ W_bank (attention ×
    weights), and one grouped conv with the samples folded into the groups."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer, n = self.layer, x.shape[0]
        attention = layer.attention(x, layer.temperature)  # (N, K)
        bank = layer.kernels
        kernels = (attention @ bank.reshape(bank.shape[0], -1)).reshape(n * bank.shape[1], *bank.shape[2:])
        y = torch.nn.functional.conv2d(x.reshape(1, -1, *x.shape[2:]), kernels, padding=1, groups=n)
        return y.reshape(n, -1, *y.shape[2:])


@pytest.mark.parametrize(("name", "kw", "wrap"), [
    ("involution", {"groups": 2}, _TorchOpsInvolution),
    ("deformable_v2", {}, _TorchOpsDeformV2),
    ("dynamic", {"bias": False}, _TorchOpsDynamic),
])
def test_own_cost_splits_macs_as_the_generic_count_of_the_same_operator(name, kw, wrap):
    """A family's own cost and cz.cost's generic count (aten convs / matmuls, a product with a weight operand a
    weight MAC, one of two activations an activation MAC, elementwise products not MACs) of the same operator
    written in torch ops agree on both: involution's kernel × patch is activation MACs, DCNv2's modulation is
    not a MAC, dynamic conv's aggregation Σ π_k·W_k (attention × weights) is weight MACs."""
    torch.manual_seed(0)
    layer = _build(name, 6, 6, 3, 2, kw)
    if name == "deformable_v2":
        with torch.no_grad():
            layer.offset_conv.weight[:2 * 9].zero_()
            layer.offset_conv.bias[:2 * 9].zero_()
    ops = wrap(layer).eval()
    x = torch.randn(N, 6, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(ops(x), layer(x), rtol=1e-4, atol=1e-5)  # the same operator
    own, generic = cz.cost(layer, (N, 6, 11, 9)), cz.cost(ops, (N, 6, 11, 9))
    assert (generic.macs, generic.activation_macs) == (own.macs, own.activation_macs)
