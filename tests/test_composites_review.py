"""The composite and torch-ordered layers' arguments, input errors and reprs against torch's conventions.

1. A call written for ``torch.nn.Conv2d`` binds every positional value to the same meaning or raises: families
   without ``groups`` make everything after ``dilation`` keyword-only, and ``groups=`` raises naming the class.
2. A wrong input raises under the name of the layer the caller built, quoting the input's shape as given.
3. ``extra_repr`` is ``torch.nn.Conv2d``'s for the same geometry (channels, kernel_size, stride always; the rest
   when not torch's default), then the family's own arguments.
4. docs/guide/families.md states which layers are torch convs and whose defaults differ; checked against the code.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo as cz

lit = re.escape
TORCH_ORDER = [name for name in inspect.signature(nn.Conv2d.__init__).parameters if name != "self"]
TRANSPOSED_ORDER = [name for name in inspect.signature(nn.ConvTranspose2d.__init__).parameters if name != "self"]
DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "guide" / "families.md"

# the families with no ``groups``, each class the user can call
NO_GROUPS = ["DepthwiseSeparableConv1d", "DepthwiseSeparableConv2d", "DepthwiseSeparableConv3d",
             "SpatiallySeparableConv2d", "FlattenedConv2d", "HetConv2d", "GhostModule1d", "GhostModule2d",
             "GhostModule3d", "PartialConv1d", "PartialConv2d", "PartialConv3d", "MixConv2d"]


def _conv_like_layers() -> list[str]:
    """Every public layer class whose constructor starts (in_channels, out_channels)."""
    names = []
    for name in cz.__all__:
        cls = getattr(cz, name)
        if isinstance(cls, type) and issubclass(cls, nn.Module) and not name.endswith("Nd"):
            if list(inspect.signature(cls.__init__).parameters)[1:3] == ["in_channels", "out_channels"]:
                names.append(name)
    return names


# --- 1. torch-ordered positional calls ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", _conv_like_layers())
def test_positional_parameters_are_a_prefix_of_torchs(name: str) -> None:
    """The parameters a positional call can reach are torch's, in torch's order: a torch-ordered positional call
    reaches the same meaning or raises (too many positional arguments)."""
    cls = getattr(cz, name)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    order = TRANSPOSED_ORDER if issubclass(cls, nn.ConvTranspose2d.__mro__[1]) else TORCH_ORDER
    assert positional == order[:len(positional)], (name, positional)


@pytest.mark.parametrize("name", NO_GROUPS)
def test_torch_ordered_groups_cannot_become_bias(name: str) -> None:
    """torch's seventh positional argument is groups; these families have none, so it must not bind to bias."""
    with pytest.raises(TypeError, match="positional argument"):
        getattr(cz, name)(4, 4, 3, 1, 1, 1, 2)


@pytest.mark.parametrize("name", NO_GROUPS)
def test_groups_keyword_names_the_class_and_says_why(name: str) -> None:
    with pytest.raises(TypeError, match=lit(f"{name} has no groups (got groups=2): ")):
        getattr(cz, name)(4, 4, 3, groups=2)


@pytest.mark.parametrize("name", NO_GROUPS + ["GlobalDepthwiseConv2d"])
def test_a_misspelt_keyword_names_the_class_the_caller_built(name: str) -> None:
    with pytest.raises(TypeError, match=lit(f"{name}() got an unexpected keyword argument 'paddin'")):
        getattr(cz, name)(4, 4, 3, paddin=1)


def test_depthwise_separable_by_keyword_computes_torchs_composition() -> None:
    """bias / padding_mode / device / dtype by keyword reach both stages: the output is torch's depthwise conv then
    its 1×1 conv with the same weights, no bias."""
    torch.manual_seed(0)
    layer = cz.DepthwiseSeparableConv2d(4, 8, 3, 2, 1, 2, bias=False, padding_mode="reflect", dtype=torch.float64)
    assert layer.depthwise.bias is None and layer.pointwise.bias is None
    x = torch.randn(2, 4, 11, 10, dtype=torch.float64)
    depthwise = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), layer.depthwise.weight, None, 2, 0, 2, 4)
    expected = F.conv2d(depthwise, layer.pointwise.weight)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("argument, value, why", [
    ("stride", 2, "there is one output position per channel"), ("padding", 1, "exactly (unpadded)"),
    ("dilation", 2, "tap for tap (undilated)"), ("padding_mode", "reflect", "it has no padding"),
    ("groups", 4, "it is depthwise, groups=in_channels always")])
def test_global_depthwise_refuses_what_it_has_not(argument: str, value: object, why: str) -> None:
    with pytest.raises(TypeError, match=lit(f"GlobalDepthwiseConv2d has no {argument} (got {argument}={value!r}): ")
                       + ".*" + lit(why)):
        cz.GlobalDepthwiseConv2d(4, 4, 5, **{argument: value})


def test_global_depthwise_torch_ordered_stride_cannot_become_bias() -> None:
    with pytest.raises(TypeError, match="positional argument"):
        cz.GlobalDepthwiseConv2d(4, 4, 5, 1)


# --- 2. input errors under the caller's layer and shape -----------------------------------------------------------

COMPOSITES = {  # family → the class build() gives in 2-D
    "depthwise_separable": "DepthwiseSeparableConv2d", "spatially_separable": "SpatiallySeparableConv2d",
    "flattened": "FlattenedConv2d", "shuffled_grouped": "ShuffledGroupedConv2d", "subpixel": "SubPixelConv2d",
    "ghost": "GhostModule2d", "partial": "PartialConv2d", "mixconv": "MixConv2d", "resize": "ResizeConv2d",
    "acnet": "ACNetConv2d", "repvgg": "RepVGGBlock2d", "large_kernel": "LargeKernelConv2d", "hetconv": "HetConv2d",
    "global_depthwise": "GlobalDepthwiseConv2d"}


def _build(name: str, *args: object, **kwargs: object) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the registry's default-groups warning
        return cz.build(name, *args, **kwargs)


@pytest.mark.parametrize("shape", [(3, 9, 8), (2, 3, 9, 8)], ids=["unbatched", "batched"])
@pytest.mark.parametrize("name", COMPOSITES)
def test_wrong_channels_name_the_layer_and_the_shape_as_given(name: str, shape: tuple[int, ...]) -> None:
    layer = _build(name, 4, 4)
    assert type(layer).__name__ == COMPOSITES[name]
    with pytest.raises(ValueError, match=lit(f"{COMPOSITES[name]} expects 4 input channels, got 3 (input shape "
                                             f"{shape})")):
        layer(torch.randn(shape))


@pytest.mark.parametrize("name", [n for n in COMPOSITES if n != "global_depthwise"])
def test_wrong_rank_names_the_layer(name: str) -> None:
    with pytest.raises(ValueError, match=lit(f"{COMPOSITES[name]} expects a 4-D input (N, C, H, W) or an unbatched "
                                             "3-D one (C, H, W), got shape (4, 9)")):
        _build(name, 4, 4)(torch.randn(4, 9))


@pytest.mark.parametrize("name", ["depthwise_separable", "spatially_separable", "flattened", "shuffled_grouped",
                                  "subpixel", "ghost", "acnet", "hetconv"])
def test_a_kernel_larger_than_the_input_names_the_layer(name: str) -> None:
    """A 5-wide window, unpadded, on a 3×3 input: 5 > 3 (hand count)."""
    layer = _build(name, 4, 4, 5, padding=0)
    with pytest.raises(ValueError, match=lit(f"{COMPOSITES[name]}: kernel_size=5 with dilation=1 spans 5 but "
                                             "spatial dim 0 of the input is 3 (+0 padding = 3)")):
        layer(torch.randn(4, 3, 3))


def test_resize_says_the_window_is_read_on_the_upsampled_input() -> None:
    """A 1×1 input upsampled ×2 is 2×2: a 5-wide unpadded kernel does not fit (5 > 2)."""
    layer = cz.ResizeConv2d(4, 4, 5, padding=0)
    with pytest.raises(ValueError, match=lit("ResizeConv2d (its conv reads the input upsampled from (1, 1) ×(2, 2) "
                                             "to (2, 2)): kernel_size=5 with dilation=1 spans 5 but spatial dim 0 of "
                                             "the input is 2")):
        layer(torch.randn(4, 1, 1))


@pytest.mark.parametrize("mode", ["reflect", "circular"])
@pytest.mark.parametrize("name", ["mixconv", "partial"])
def test_a_padding_that_cannot_copy_names_the_layer(name: str, mode: str) -> None:
    """A 7-wide 'same' window pads 3 each side; a 1-wide map cannot give 3 to reflect (< 1) or wrap (≤ 1)."""
    layer = _build(name, 4, 4, 7, padding_mode=mode)
    with pytest.raises(ValueError, match=lit(f"{COMPOSITES[name]}: padding=(3, 3) (before, after) of spatial dim 0 "
                                             f"with padding_mode={mode!r}")):
        layer(torch.randn(4, 1, 1))


def test_flattened_fused_kernel_form_checks_the_window() -> None:
    """The fused V∘H kernel has no window check of its own: it used to fail with torch's 'negative dimension'."""
    layer = cz.FlattenedConv2d(4, 4, 5)
    x = torch.randn(1, 4, 3, 3)
    if "kernel" not in layer.forms(x):
        pytest.skip("convzoo's CPU kernels are not available here")
    layer.implementation = "kernel"
    with pytest.raises(ValueError, match=lit("FlattenedConv2d: kernel_size=5 with dilation=1 spans 5")):
        layer(x)


@pytest.mark.parametrize("name", COMPOSITES)
def test_unbatched_input_is_the_batch_of_one(name: str) -> None:
    torch.manual_seed(0)
    layer = _build(name, 4, 4, dtype=torch.float64).eval()
    x = torch.randn(4, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer(x[None])[0])


# Single-layer families still quoting the batch of one that the input step makes: a strict xfail each, so that the
# fix makes the suite say so (then drop the entry).
UNBATCHED_GAPS: dict[str, str] = {}  # family → why its unbatched error quotes a batch (none left)


def _every_family_dim() -> list:
    cases = []
    for family in cz.families():
        for dim in family.dims:
            marks = ([pytest.mark.xfail(strict=True, reason=UNBATCHED_GAPS[family.name])]
                     if family.name in UNBATCHED_GAPS else [])
            cases.append(pytest.param(family.name, dim, marks=marks, id=f"{family.name}-{dim}d"))
    return cases


@pytest.mark.parametrize("name, dim", _every_family_dim())
def test_every_family_quotes_an_unbatched_input_as_given(name: str, dim: int) -> None:
    """Single-layer families too (conv, CondConv, ODConv, dynamic, involution, deformable, DCNv3, SK): the wrong
    channel count of a (C, *S) input is quoted as (C, *S), not as the (1, C, *S) the input step makes of it."""
    layer = _build(name, 4, 4, dim=dim)
    shape = (3, *(9,) * dim)
    with pytest.raises(ValueError, match=lit(f"{type(layer).__name__} expects 4 input channels, got 3 (input shape "
                                             f"{shape})")):
        layer(torch.randn(shape))


def test_global_depthwise_takes_its_kernel_from_an_unbatched_first_input() -> None:
    """Lazy: an unbatched (C, H, W) first input sets the kernel to (H, W), not (W,); y[o] = b[o] + Σ w[o]·x[o]."""
    torch.manual_seed(0)
    layer = cz.GlobalDepthwiseConv2d(3, dtype=torch.float64)
    x = torch.randn(3, 9, 8, dtype=torch.float64)
    y = layer(x)
    assert layer.kernel_size == (9, 8)
    expected = (layer.weight[:, 0] * x).sum((1, 2)) + layer.bias
    torch.testing.assert_close(y, expected[:, None, None])


# --- 3. reprs: torch.nn.Conv2d's for the same geometry ------------------------------------------------------------


def _torch_head(*args: object, **kwargs: object) -> str:
    """nn.Conv2d's extra_repr for these arguments, with convzoo's quoted strings ('reflect', not reflect)."""
    text = nn.Conv2d(*args, **kwargs).extra_repr()
    return re.sub(r"(padding|padding_mode)=([a-z]+)", r"\1='\2'", text)


GEOMETRY = dict(stride=2, padding=1, dilation=2)
REPRS = {  # layer → (the torch conv with the same geometry, what the family adds)
    "DepthwiseSeparableConv2d": (lambda: cz.DepthwiseSeparableConv2d(4, 8, 3, **GEOMETRY, bias=False,
                                                                       padding_mode="reflect", depth_multiplier=2),
                                 ((4, 8, 3), dict(GEOMETRY, bias=False, padding_mode="reflect")),
                                 ", depth_multiplier=2"),
    "SpatiallySeparableConv2d": (lambda: cz.SpatiallySeparableConv2d(4, 8, 3, **GEOMETRY, bias=False,
                                                                       padding_mode="circular"),
                                 ((4, 8, 3), dict(GEOMETRY, bias=False, padding_mode="circular")),
                                 ", mid_channels=8"),
    "FlattenedConv2d": (lambda: cz.FlattenedConv2d(4, 8, 3, **GEOMETRY, bias=False, padding_mode="replicate"),
                        ((4, 8, 3), dict(GEOMETRY, bias=False, padding_mode="replicate")), ""),
    "ShuffledGroupedConv2d": (lambda: cz.ShuffledGroupedConv2d(4, 8, 3, 2, 1, 2, 2, False, "reflect"),
                              ((4, 8, 3, 2, 1, 2, 2, False, "reflect"), {}), ""),
    "SubPixelConv2d": (lambda: cz.SubPixelConv2d(4, 8, 3, 2, 1, 2, 2, False, "reflect"),
                       ((4, 8, 3, 2, 1, 2, 2, False, "reflect"), {}), ", upscale_factor=2, init='icnr'"),
    "ResizeConv2d": (lambda: cz.ResizeConv2d(4, 8, 3, 2, 1, 2, 2, False, "reflect"),
                     ((4, 8, 3, 2, 1, 2, 2, False, "reflect"), {}),
                     ", scale_factor=(2, 2), upsample_mode='nearest'"),
    "GhostModule2d": (lambda: cz.GhostModule2d(4, 8, 3, **GEOMETRY, bias=False, padding_mode="reflect"),
                      ((4, 8, 3), dict(GEOMETRY, bias=False, padding_mode="reflect")), ", ratio=2, dw_size=(3, 3)"),
    "ACNetConv2d": (lambda: cz.ACNetConv2d(4, 8, 3, 2, 1, 2, 2, True, "reflect"),
                    ((4, 8, 3, 2, 1, 2, 2, True, "reflect"), {}), ", branches=(kxk, kx1, 1xk), identity=False"),
    "RepVGGBlock2d": (lambda: cz.RepVGGBlock2d(4, 8, 3, 2, 1, 2, 2, True, "circular"),
                      ((4, 8, 3, 2, 1, 2, 2, True, "circular"), {}), ", branches=(kxk, 1x1), identity=False"),
    "LargeKernelConv2d": (lambda: cz.LargeKernelConv2d(4, 8, 7, 2, 3, 2, None, False, "reflect", small_kernel=3),
                          ((4, 8, 7, 2, 3, 2, 4, False, "reflect"), {}),
                          ", branches=(large, small), identity=False, small_kernel=(3, 3)"),
    "HetConv2d": (lambda: cz.HetConv2d(4, 8, 3, **GEOMETRY, bias=False, padding_mode="reflect", p=2),
                  ((4, 8, 3), dict(GEOMETRY, bias=False, padding_mode="reflect")), ", p=2"),
    # single-layer families with torch's argument order
    "CondConv2d": (lambda: cz.CondConv2d(4, 8, 3, 2, 1, 2, 2, False, "reflect"),
                   ((4, 8, 3, 2, 1, 2, 2, False, "reflect"), {}), ", num_experts=8"),
    "ODConv2d": (lambda: cz.ODConv2d(4, 8, 3, 2, 1, 2, 2, False, "circular"),
                 ((4, 8, 3, 2, 1, 2, 2, False, "circular"), {}), ", num_kernels=4, temperature=1.0"),
    "DynamicConv2d": (lambda: cz.DynamicConv2d(4, 8, 3, 2, 1, 2, 2, False, "replicate"),
                      ((4, 8, 3, 2, 1, 2, 2, False, "replicate"), {}), ", num_kernels=4, temperature=30.0"),
    "Involution2d": (lambda: cz.Involution2d(4, 4, 3, 2, 1, 2, 2, False, "reflect"),
                     ((4, 4, 3, 2, 1, 2, 2, False, "reflect"), {}), ", reduction=4"),
    "DeformConv2d": (lambda: cz.DeformConv2d(4, 8, 3, 2, 1, 2, 2, False, "reflect"),
                     ((4, 8, 3, 2, 1, 2, 2, False, "reflect"), {}), ""),
    "DCNv3Conv2d": (lambda: cz.DCNv3Conv2d(8, 8, 3, 1, "same", 2, 2, False),
                    ((8, 8, 3, 1, "same", 2, 2, False), {}), ", offset_scale=1.0"),
}


@pytest.mark.parametrize("name", REPRS)
def test_repr_is_torchs_for_the_same_geometry(name: str) -> None:
    build, (args, kwargs), own = REPRS[name]
    assert build().extra_repr() == _torch_head(*args, **kwargs) + own


@pytest.mark.parametrize("build, torch_args, own", [
    (lambda: cz.DepthwiseSeparableConv2d(4, 8, 3), (4, 8, 3), ""),
    (lambda: cz.SpatiallySeparableConv2d(4, 8, 3), (4, 8, 3), ", mid_channels=8"),
    (lambda: cz.FlattenedConv2d(4, 8, 3), (4, 8, 3), ""),
    (lambda: cz.ShuffledGroupedConv2d(4, 8, 3), (4, 8, 3), ""),
    (lambda: cz.GhostModule2d(4, 8), (4, 8, 1), ", ratio=2, dw_size=(3, 3)"),
], ids=["depthwise_separable", "spatially_separable", "flattened", "shuffled_grouped", "ghost"])
def test_default_repr_is_torchs_default(build, torch_args, own) -> None:
    assert build().extra_repr() == nn.Conv2d(*torch_args).extra_repr() + own


def test_mixconv_and_partial_show_their_geometry() -> None:
    mix = cz.MixConv2d(4, 8, (3, 5), 2, dilation=2, bias=False, padding_mode="reflect")
    assert mix.extra_repr() == ("4, 8, stride=(2, 2), padding='same', dilation=(2, 2), bias=False, "
                                "padding_mode='reflect', kernel_sizes=(3, 5), split='equal', in_splits=[2, 2], "
                                "out_splits=[4, 4]")
    partial = cz.PartialConv2d(8, 8, 3, dilation=2, bias=False, padding_mode="circular")
    assert partial.extra_repr() == ("8, 8, kernel_size=(3, 3), stride=(1, 1), padding='same', dilation=(2, 2), "
                                    "bias=False, padding_mode='circular', n_div=4")


def test_selective_kernel_shows_its_geometry() -> None:
    """As MixConv: kernel_sizes for the branches (kernel_size is the widest span); dilation the constructor's, not a
    keep_3x3 branch's (5×5 at d=2 is a 3×3 at d=4); groups, bias=False and padding_mode when not torch's default."""
    sk = cz.SelectiveKernelConv2d(4, 8, (3, 5), 2, "same", 2, 2, False, "reflect")
    assert [b.dilation for b in sk.branches] == [(2, 2), (4, 4)]
    assert sk.extra_repr() == ("4, 8, stride=(2, 2), padding='same', dilation=(2, 2), groups=2, bias=False, "
                               "padding_mode='reflect', kernel_sizes=(3, 5), keep_3x3=True")
    assert cz.SelectiveKernelConv2d(4, 8).extra_repr() == ("4, 8, stride=(1, 1), padding='same', kernel_sizes=(3, 5), "
                                                           "keep_3x3=True")
    assert cz.SelectiveKernelConv1d(4, 8, (5, 7), dilation=3, keep_3x3=False).extra_repr() == (
        "4, 8, stride=(1,), padding='same', dilation=(3,), kernel_sizes=(5, 7), keep_3x3=False")


@pytest.mark.parametrize("build, torch_args", [
    (lambda: cz.Conv2d(4, 8, 3, 2, 1, 2, 2, False, "reflect"), (4, 8, 3, 2, 1, 2, 2, False, "reflect")),
    (lambda: cz.Conv2d(4, 8, 3, padding="same", dilation=2), (4, 8, 3, 1, "same", 2)),
    (lambda: cz.DepthwiseConv2d(4, 8, 3, 2, 1, 2, bias=False, padding_mode="circular"),
     (4, 8, 3, 2, 1, 2, 4, False, "circular")),
    (lambda: cz.PointwiseConv2d(4, 8, bias=False), (4, 8, 1, 1, 0, 1, 1, False)),
], ids=["conv", "conv-same", "depthwise", "pointwise"])
def test_torch_convs_print_torchs_own_repr(build, torch_args) -> None:
    """Conv*d, DepthwiseConv*d and PointwiseConv*d subclass nn.Conv*d: the repr is torch's own text (its unquoted
    padding_mode=reflect included)."""
    assert build().extra_repr() == nn.Conv2d(*torch_args).extra_repr()


# --- 4. the documented signatures ---------------------------------------------------------------------------------


def _documented_rows() -> dict[str, tuple[dict[str, object], set[str]]]:
    """families.md's table of layers whose defaults differ from torch's: class → (defaults, torch args lacked)."""
    text = DOCS.read_text()
    table = text[text.index("| layers | defaults that differ from torch's | torch arguments they lack |"):]
    rows: dict[str, tuple[dict[str, object], set[str]]] = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("|"):
            break
        layers, defaults, lacked = (cell.strip() for cell in line.strip("|").split("|"))
        stem, *dims = layers.strip("`").split("/")
        base = re.match(r"(.*?)(\d)d$", stem)
        names = [stem] + [f"{base.group(1)}{d}" for d in dims] if base else [stem]
        values = {m.group(1): ast.literal_eval(m.group(2)) for m in re.finditer(r"`(\w+)=([^`]+)`", defaults)}
        for name in names:
            rows[name] = (values, set(re.findall(r"`(\w+)`", lacked)))
    return rows


def test_families_page_states_every_differing_default() -> None:
    """Every layer whose signature departs from torch's is in the table, with exactly its departures; the table
    names no layer that does not."""
    torch_defaults = {name: p.default for name, p in inspect.signature(nn.Conv2d.__init__).parameters.items()
                      if name != "self"}
    documented = _documented_rows()
    found = {}
    for name in _conv_like_layers():
        cls = getattr(cz, name)
        if issubclass(cls, nn.modules.conv._ConvTransposeNd):
            continue  # torch's ConvTranspose order, checked above
        params = inspect.signature(cls.__init__).parameters
        defaults = {arg: params[arg].default for arg, default in torch_defaults.items()
                    if arg in params and params[arg].default != default}
        lacked = {arg for arg in torch_defaults if arg not in params}
        if defaults or lacked:
            found[name] = (defaults, lacked)
    assert found == documented


def test_families_page_names_the_torch_convs() -> None:
    text = " ".join(DOCS.read_text().split())
    assert ("Four kinds of layer are torch convs: `Conv*d`, `DepthwiseConv*d` and `PointwiseConv*d` subclass "
            "`torch.nn.Conv*d`, `TransposedConv*d` subclasses `torch.nn.ConvTranspose*d`.") in text
    torch_convs = {name for name in cz.__all__ if isinstance(getattr(cz, name), type)
                   and issubclass(getattr(cz, name), nn.modules.conv._ConvNd)}
    stems = ("Conv", "DepthwiseConv", "PointwiseConv", "TransposedConv")
    assert torch_convs == {f"{stem}{d}d" for stem in stems for d in (1, 2, 3)}
