"""The list of convolution families: THE list that every tool (verify, cost, bench, viz, report, CLI) iterates.

A new family is one layer file (its layer implements the contract of ``layers/base.py``) plus one ``Family``
entry here. ``build`` gives every family the same default geometry — stride 1 and 'same' padding — so that all
of them map (N, C_in, H, W) to (N, C_out, H, W) and can be compared on one layer shape (upsampling families
double H and W).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import layers as L
from .geometry import IntOrTuple, check_positive_int, expand

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class Family:
    """One convolution family: its name, what it is, where the seed articles describe it, how to build one.

    ``article`` is the seed-article reference (e.g. "001 §8.2"). ``window``: the family has a sliding window whose
    ``kernel_size`` the caller chooses (False for pointwise — always 1 — and global depthwise — the map).
    ``replaces_kxk``: it can stand in for a k×k conv with the same channels, stride, padding and dilation.
    ``picture_kernel``: the kernel size its picture is drawn with by default (None: 3), where 3 would hide the idea.
    """

    name: str
    title: str
    article: str
    summary: str
    dims: tuple[int, ...]
    builder: Builder
    replaces_kxk: bool = True
    window: bool = True
    picture_kernel: int | None = None

    @property
    def compiles_as_op(self) -> bool:
        """Whether its layers are one op under ``torch.compile`` on the CPU (their class's ``compiles_as_op``,
        ``layers/compiled_layer.py``), read from an 8 → 8 layer built on the meta device."""
        with torch.device("meta"):
            layer = self.build(8, 8, None, 2 if 2 in self.dims else self.dims[0])
        return bool(getattr(layer, "compiles_as_op", False))

    def build(self, in_channels: int, out_channels: int, kernel_size: IntOrTuple | None = None, dim: int = 2,
              **kwargs: Any) -> nn.Module:
        """Build a C_in → C_out layer of this family; ``kwargs`` go to the layer's constructor.

        ``kernel_size`` (None: the family's default, 3) is the window: an int, or one int per dim ((1, 7) is 1×7).
        For ``mixconv`` and ``selective_kernel`` a sequence instead lists the groups' / branches' kernel sizes, as
        timm's ``MixedConv2d`` reads it: (3, 5) is a 3×3 and a 5×5 group, not a 3×5 window (the layer keeps them in
        ``kernel_sizes``). Families without a chosen window take None or the value their layer allows.
        """
        if dim not in self.dims:
            raise ValueError(f"family {self.name!r} has no {dim}-D form; dims available: {self.dims}")
        # Checked here, before the builders derive defaults from them (gcd, modulo), in the layers' own words.
        in_channels = check_positive_int(in_channels, "in_channels")
        out_channels = check_positive_int(out_channels, "out_channels")
        return self.builder(in_channels, out_channels, kernel_size, dim, **kwargs)


def _by_dim(*classes: type[nn.Module]) -> Callable[[int], type[nn.Module]]:
    return lambda dim: classes[dim - 1]


def _window(kernel_size: IntOrTuple | None, dim: int) -> tuple[int, ...]:
    return expand(3 if kernel_size is None else kernel_size, dim, "kernel_size")


def _same(kwargs: dict[str, Any], kernel: tuple[int, ...]) -> dict[str, Any]:
    """Default padding that keeps the size at stride 1 ('same', the odd element after) and pads d·(k−1)/2 per dim
    at larger strides, unless the caller gave one."""
    if "padding" not in kwargs:
        dim = len(kernel)
        stride = expand(kwargs.get("stride", 1), dim, "stride")
        dilation = expand(kwargs.get("dilation", 1), dim, "dilation")
        kwargs["padding"] = "same" if stride == (1,) * dim else tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return kwargs


def _default_groups(name: str, in_channels: int, out_channels: int, kwargs: dict[str, Any]) -> int:
    """An explicit ``groups=`` as given (the layer raises, as torch's convs do, when it does not divide both channel
    counts); by default gcd(C_in, C_out, 4), with a warning when that is 1: the grouped family would silently be an
    ungrouped conv."""
    if "groups" in kwargs:
        return kwargs.pop("groups")
    groups = math.gcd(in_channels, out_channels, 4)
    if groups == 1:
        warnings.warn(f"build({name!r}, {in_channels}, {out_channels}): the default groups=gcd(in_channels, "
                      f"out_channels, 4) is 1 for in_channels={in_channels}, out_channels={out_channels}, so the layer "
                      "is built with groups=1 (not grouped); give groups= explicitly, or two even channel counts",
                      UserWarning, stacklevel=5)  # the caller of convzoo.build
    return groups


_conv = _by_dim(L.Conv1d, L.Conv2d, L.Conv3d)
_pointwise = _by_dim(L.PointwiseConv1d, L.PointwiseConv2d, L.PointwiseConv3d)
_depthwise = _by_dim(L.DepthwiseConv1d, L.DepthwiseConv2d, L.DepthwiseConv3d)
_separable = _by_dim(L.DepthwiseSeparableConv1d, L.DepthwiseSeparableConv2d, L.DepthwiseSeparableConv3d)
_transposed = _by_dim(L.TransposedConv1d, L.TransposedConv2d, L.TransposedConv3d)
_resize = _by_dim(L.ResizeConv1d, L.ResizeConv2d, L.ResizeConv3d)
_dynamic = _by_dim(L.DynamicConv1d, L.DynamicConv2d, L.DynamicConv3d)
_shuffled = _by_dim(L.ShuffledGroupedConv1d, L.ShuffledGroupedConv2d, L.ShuffledGroupedConv3d)
ALL_DIMS = (1, 2, 3)


def _standard(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _conv(dim)(i, o, kernel, **_same(kw, kernel))


def _true_convolution(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _conv(dim)(i, o, kernel, mode="convolution", **_same(kw, kernel))


def _dilated(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kw.setdefault("dilation", 2)
    kernel = _window(k, dim)
    return _conv(dim)(i, o, kernel, **_same(kw, kernel))


def _grouped(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    groups = _default_groups("grouped", i, o, kw)
    kernel = _window(k, dim)
    return _conv(dim)(i, o, kernel, groups=groups, **_same(kw, kernel))


def _pointwise_plain(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    return _pointwise(dim)(i, o, 1 if k is None else k, **kw)


def _pointwise_grouped(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    groups = _default_groups("pointwise_grouped", i, o, kw)
    return _pointwise(dim)(i, o, 1 if k is None else k, groups=groups, **kw)


def _transposed_upsampling(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    # Default: stride 2 with padding/output_padding chosen so the output is exactly twice the input. A padding the
    # caller gives is PyTorch's case: output_padding then defaults to 0, as in torch (and conv_arithmetic's figures).
    kernel = _window(k, dim)
    kw.setdefault("stride", 2)
    if set(expand(kw["stride"], dim, "stride")) == {2} and "padding" not in kw:  # stride=2 and stride=(2, 2) alike
        kw["padding"] = tuple((kk - 1) // 2 for kk in kernel)
        kw.setdefault("output_padding", tuple(kk % 2 for kk in kernel))
    return _transposed(dim)(i, o, kernel, **kw)


def _resize_conv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    return _resize(dim)(i, o, _window(k, dim), **kw)


def _depthwise_conv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _depthwise(dim)(i, o, kernel, **_same(kw, kernel))


def _depthwise_separable(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _separable(dim)(i, o, kernel, **_same(kw, kernel))


def _spatially_separable(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return L.SpatiallySeparableConv2d(i, o, kernel, **_same(kw, kernel))


def _flattened(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return L.FlattenedConv2d(i, o, kernel, **_same(kw, kernel))


def _shuffled_grouped(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    groups = _default_groups("shuffled_grouped", i, o, kw)
    kernel = _window(k, dim)
    return _shuffled(dim)(i, o, kernel, groups=groups, **_same(kw, kernel))


def _global_depthwise(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    return L.GlobalDepthwiseConv2d(i, o, k, **kw)


def _mixconv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    """An int k gives the groups k, k+2, k+4 (MixConv's 3, 5, 7 for k = 3); a sequence names the groups' sizes."""
    k = 3 if k is None else k
    sizes = (k, k + 2, k + 4) if isinstance(k, numbers.Integral) else k
    return L.MixConv2d(i, o, sizes, **kw)


def _hetconv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kw.setdefault("p", math.gcd(i, 4))
    kernel = _window(k, dim)
    return L.HetConv2d(i, o, kernel, **_same(kw, kernel))


def _dynamic_conv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _dynamic(dim)(i, o, kernel, **_same(kw, kernel))


def _deformable(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return L.DeformConv2d(i, o, kernel, **_same(kw, kernel))


def _deformable_v2(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return L.DeformConv2d(i, o, kernel, modulated=True, **_same(kw, kernel))


_FAMILIES = [
    Family("standard", "Standard convolution (cross-correlation)", "001 §1–3, 003 §1.1",
           "Dense k×k kernel over all input channels; what deep learning calls convolution.", ALL_DIMS, _standard),
    Family("convolution", "True convolution (flipped kernel)", "001 §1, 003 §1.2",
           "Signal-processing convolution: the kernel rotated 180° before sliding.", ALL_DIMS, _true_convolution),
    Family("pointwise", "1×1 (pointwise) convolution", "001 §4",
           "Per-pixel linear map across channels; changes depth, keeps H×W.", ALL_DIMS, _pointwise_plain,
           replaces_kxk=False, window=False),
    Family("transposed", "Transposed convolution", "001 §6",
           "Adjoint of a strided conv (Cᵀx): learnable upsampling; uneven overlap gives checkerboards.",
           ALL_DIMS, _transposed_upsampling, replaces_kxk=False),
    Family("resize", "Resize-convolution", "001 §6",
           "Nearest-neighbour upsampling then a 'same' conv: upsampling without checkerboard artifacts.",
           ALL_DIMS, _resize_conv, replaces_kxk=False),
    Family("dilated", "Dilated (atrous) convolution", "001 §7, 003 §2.2",
           "Kernel taps spaced d apart: receptive field grows without extra parameters.", ALL_DIMS, _dilated),
    Family("spatially_separable", "Spatially separable convolution", "001 §8.1, 000, 003 §2.2",
           "k×1 conv then 1×k conv: 2k instead of k² multiplications for rank-limited kernels.", (2,),
           _spatially_separable),
    Family("flattened", "Flattened convolution", "001 §9, 003 §2.2",
           "1×1 across channels, then per-channel k×1 and 1×k (Jin et al. 2014).", (2,), _flattened),
    Family("depthwise", "Depthwise convolution", "001 §8.2, 003 §2.1",
           "One k×k kernel per input channel (groups = C_in); no mixing across channels.", ALL_DIMS,
           _depthwise_conv),
    Family("depthwise_separable", "Depthwise separable convolution", "001 §8.2, 000, 002, 003 §2.1",
           "Depthwise k×k then pointwise 1×1: MobileNet's block, ≈1/C_out + 1/k² of the MACs.", ALL_DIMS,
           _depthwise_separable),
    Family("grouped", "Grouped convolution", "001 §10, 003 §2.1",
           "Channels split into g groups convolved separately: 1/g of the parameters and MACs.", ALL_DIMS, _grouped),
    Family("shuffled_grouped", "Shuffled grouped convolution", "001 §11, 003 §2.1",
           "Grouped conv + channel shuffle: each next group holds channels of min(g, C/g) groups, all g when "
           "C/g ≥ g (ShuffleNet).", ALL_DIMS,
           _shuffled_grouped),
    Family("pointwise_grouped", "Pointwise grouped convolution", "001 §12",
           "Grouped 1×1 conv: ShuffleNet's cheap channel mixing.", ALL_DIMS, _pointwise_grouped,
           replaces_kxk=False, window=False),
    Family("global_depthwise", "Global depthwise convolution (GDC)", "003 §2.1",
           "Depthwise kernel as large as the feature map: learned weighted global pooling, C×H×W → C.", (2,),
           _global_depthwise, replaces_kxk=False, window=False),
    Family("mixconv", "MixConv (mixed depthwise kernels)", "003 §2.1",
           "Channel groups convolved with different kernel sizes (3, 5, 7…), concatenated (Tan & Le 2019).", (2,),
           _mixconv),
    Family("hetconv", "HetConv (heterogeneous kernels)", "003 §2.3",
           "Each filter mixes k×k kernels on 1/p of the channels with 1×1 kernels on the rest (Singh et al. 2019).",
           (2,), _hetconv),
    Family("dynamic", "Dynamic convolution", "001 §13, 003 §2.3",
           "K kernels aggregated per sample by softmax attention with temperature (Chen et al. 2020).", ALL_DIMS,
           _dynamic_conv),
    Family("deformable", "Deformable convolution v1", "003 §2.2",
           "Sampling grid shifted by learned per-position offsets, read bilinearly (Dai et al. 2017).", (2,),
           _deformable),
    Family("deformable_v2", "Deformable convolution v2 (modulated)", "003 §2.2",
           "DCN v1 plus a learned sigmoid mask per sampling point (Zhu et al. 2018).", (2,), _deformable_v2),
]

# --- issue 15a: sub-pixel, re-parameterisable blocks, partial, ghost ------------------------------------------------

_subpixel = _by_dim(L.SubPixelConv1d, L.SubPixelConv2d, L.SubPixelConv3d)
_acnet = _by_dim(None, L.ACNetConv2d, L.ACNetConv3d)  # type: ignore[arg-type]
_repvgg = _by_dim(L.RepVGGBlock1d, L.RepVGGBlock2d, L.RepVGGBlock3d)
_large = _by_dim(L.LargeKernelConv1d, L.LargeKernelConv2d, L.LargeKernelConv3d)
_partial = _by_dim(L.PartialConv1d, L.PartialConv2d, L.PartialConv3d)
_ghost = _by_dim(L.GhostModule1d, L.GhostModule2d, L.GhostModule3d)


def _subpixel_conv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _subpixel(dim)(i, o, kernel, **_same(kw, kernel))


def _acnet_block(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _acnet(dim)(i, o, kernel, **_same(kw, kernel))


def _repvgg_block(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    return _repvgg(dim)(i, o, kernel, **_same(kw, kernel))


def _large_kernel(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    """Default RepLKNet's 31 with a 5 beside it (7 with 3 in 3-D, where 31³ kernels are impractical); a given k
    takes the small kernel 5 when k ≥ 7, else k − 2 (at least 1)."""
    kernel = expand((31 if dim < 3 else 7) if k is None else k, dim, "kernel_size")
    kw.setdefault("small_kernel", tuple(5 if kk >= 7 else max(1, kk - 2) for kk in kernel))
    if "groups" not in kw and o % i:
        kw["groups"] = math.gcd(i, o)  # depthwise needs C_out a multiple of C_in; else the largest common groups
    return _large(dim)(i, o, kernel, **_same(kw, kernel))


def _partial_conv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    kw.setdefault("n_div", 4 if i % 4 == 0 else 1 if i < 2 else 2)
    return _partial(dim)(i, o, kernel, **_same(kw, kernel))


def _ghost_module(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = expand(1 if k is None else k, dim, "kernel_size")
    return _ghost(dim)(i, o, kernel, **_same(kw, kernel))


_FAMILIES += [
    Family("subpixel", "Sub-pixel convolution (pixel shuffle, ICNR init)", "001 §6",
           "Conv to C_out·r^D channels at low resolution, then pixel shuffle; ICNR init: no checkerboard at start "
           "(Shi et al. 2016; Aitken et al. 2017).", ALL_DIMS, _subpixel_conv, replaces_kxk=False),
    Family("acnet", "ACNet asymmetric convolution block", "003 §2.2",
           "k×k + 1×k + k×1 convs, each with BatchNorm, summed; fuses into one k×k conv (Ding et al. 2019).",
           (2, 3), _acnet_block),
    Family("repvgg", "RepVGG block", "003 §2.2",
           "3×3 + 1×1 + identity, each with BatchNorm, summed; fuses into one 3×3 conv (Ding et al. 2021).",
           ALL_DIMS, _repvgg_block),
    Family("large_kernel", "Large-kernel depthwise conv (RepLKNet)", "003 §2.1",
           "Depthwise 31×31 + parallel 5×5, each with BatchNorm; the small kernel merges into the large one "
           "(Ding et al. 2022).", ALL_DIMS, _large_kernel, picture_kernel=11),
    Family("partial", "Partial convolution (FasterNet PConv)", "003 §2.1",
           "k×k conv on C/n_div channels, the rest passed through: 1/n_div² of the MACs (Chen et al. 2023).",
           ALL_DIMS, _partial_conv, replaces_kxk=False),
    Family("ghost", "Ghost module (GhostNet)", "003 §2.1",
           "Primary conv to C_out/s maps, cheap depthwise ops make the rest, concatenated (Han et al. 2020).",
           ALL_DIMS, _ghost_module),
]

# --- issue 15b: dynamic and attention families ------------------------------------------------------------------

_condconv = _by_dim(L.CondConv1d, L.CondConv2d, L.CondConv3d)


def _cond_conv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    """4 experts by default (timm's default; the paper's CondConv-EfficientNet uses 8)."""
    kw.setdefault("num_experts", 4)
    kernel = _window(k, dim)
    return _condconv(dim)(i, o, kernel, **_same(kw, kernel))


_odconv = _by_dim(L.ODConv1d, L.ODConv2d, L.ODConv3d)


def _od_conv(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    """The paper's reduction 1/16, with a squeeze of at least 4 units (the paper's floor is 16: give min_hidden=16)."""
    kw.setdefault("min_hidden", 4)
    kernel = _window(k, dim)
    return _odconv(dim)(i, o, kernel, **_same(kw, kernel))


_sk = _by_dim(L.SelectiveKernelConv1d, L.SelectiveKernelConv2d, L.SelectiveKernelConv3d)


def _selective_kernel(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    """An int k gives the branches k and k+2 (SKNet's 3 and 5 for k = 3; the 5×5 as 3×3 dilated 2); a sequence
    names the branches' sizes. Each branch pads d·(k−1)/2 (the layer's rule): a ``padding`` other than 'same'
    reaches the constructor, which refuses it by name."""
    k = 3 if k is None else k
    sizes = (k, k + 2) if isinstance(k, numbers.Integral) else k
    kw.setdefault("min_hidden", 4)
    return _sk(dim)(i, o, sizes, **kw)


_involution = _by_dim(L.Involution1d, L.Involution2d, L.Involution3d)


def _involution_layer(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    kernel = _window(k, dim)
    kw.setdefault("groups", math.gcd(i, 2))
    return _involution(dim)(i, o, kernel, **_same(kw, kernel))


def _dcnv3(i: int, o: int, k: IntOrTuple | None, dim: int, **kw: Any) -> nn.Module:
    """'same' padding and stride 1 are the layer's only geometry (InternImage's; another ``padding`` is refused by
    the constructor); groups default gcd(C_in, 2)."""
    kw.setdefault("groups", math.gcd(i, 2))
    return L.DCNv3Conv2d(i, o, _window(k, dim), **kw)


_FAMILIES += [
    Family("condconv", "CondConv (conditionally parameterized)", "003 §2.3",
           "K expert kernels mixed per example by independent sigmoid routing weights (Yang et al. 2019).",
           ALL_DIMS, _cond_conv),
    Family("odconv", "ODConv (omni-dimensional dynamic convolution)", "003 §2.3",
           "Spatial, input-channel, filter and kernel attentions multiplied into the kernel per sample (Li et al. 2022).",
           ALL_DIMS, _od_conv),
    Family("selective_kernel", "Selective kernel convolution (SKNet)", "003 §2.1",
           "Branches with different receptive fields fused by a softmax attention across branches (Li et al. 2019).",
           ALL_DIMS, _selective_kernel, replaces_kxk=False),
    Family("involution", "Involution", "003 §2.3",
           "A K×K kernel generated at each position from its own features, shared by a group's channels (Li et al. 2021).",
           ALL_DIMS, _involution_layer, replaces_kxk=False),
    Family("dcnv3", "DCNv3 (InternImage's deformable operator)", "003 §2.2",
           "Projected input sampled at learned offsets per group, softmax-normalised over the points, then projected "
           "(Wang et al. 2023).", (2,), _dcnv3, replaces_kxk=False),
]
_BY_NAME = {f.name: f for f in _FAMILIES}


def families() -> list[Family]:
    """Every family, in the order of the seed articles' map."""
    return list(_FAMILIES)


def family(name: str) -> Family:
    """Look a family up by name; the error lists the names that exist."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; known families: {', '.join(_BY_NAME)}") from None


def build(name: str, in_channels: int, out_channels: int, kernel_size: IntOrTuple | None = None, dim: int = 2,
          **kwargs: Any) -> nn.Module:
    """Build family ``name`` as a layer C_in → C_out with a k×k (or k, k×k×k; an int or one int per dim; None:
    the family's default) kernel in ``dim`` spatial dims; for mixconv and selective_kernel a sequence lists the
    groups' / branches' sizes instead (``Family.build``). Families with a window pad to keep the size at stride 1.

    >>> build("depthwise_separable", 32, 64)  # doctest: +ELLIPSIS
    DepthwiseSeparableConv2d(...)
    """
    return family(name).build(in_channels, out_channels, kernel_size, dim, **kwargs)
