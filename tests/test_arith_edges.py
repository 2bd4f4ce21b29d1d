"""Edge cases of the arithmetic tools, each against an independent definition: a transposed conv's reachable output
sizes where output_padding 0 gives an empty output (torch's own op run at every output_padding), receptive fields
of global depthwise layers not run yet or sized for another map, cost rows of a module called twice (a hand count),
and the legacy ONNX export of involution (onnxruntime against the eager layer)."""

from __future__ import annotations

import itertools
import math
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo as cz
from convzoo.analysis import receptive_field

_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_LAYER = {1: cz.TransposedConv1d, 2: cz.TransposedConv2d, 3: cz.TransposedConv3d}


# --- TransposedConv*d.output_sizes and forward(output_size=) ------------------------------------------------------


def _torch_sizes(i: int, k: int, s: int, p: int, d: int) -> list[int]:
    """The output sizes F.conv_transpose1d gives for every output_padding a < max(s, d) it runs with."""
    x, w = torch.zeros(1, 1, i), torch.zeros(1, 1, k)
    sizes = []
    for a in range(max(s, d)):
        try:
            sizes.append(F.conv_transpose1d(x, w, None, s, p, a, 1, d).shape[-1])
        except RuntimeError:  # torch refuses an empty output
            pass
    return sizes


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_transposed_output_sizes_when_output_padding_0_is_empty(dim: int) -> None:
    # i=1, k=1, s=3, p=1, d=1: (1 − 1)·3 − 2 + 0 + 1 = −1 at a = 0, but a = 2 gives 1: torch runs it.
    layer = _LAYER[dim](2, 3, 1, stride=3, padding=1, output_padding=2)
    x = torch.randn(1, 2, *(1,) * dim)
    assert _torch_sizes(1, 1, 3, 1, 1) == [1]
    assert layer.output_sizes((1,) * dim) == ((1,) * dim, (1,) * dim)
    expected = _CONV_TRANSPOSE[dim](x, layer.weight, layer.bias, 3, 1, 2)
    torch.testing.assert_close(layer(x, output_size=(1,) * dim), expected, rtol=0, atol=0)


def test_transposed_output_sizes_and_output_size_match_torch_over_a_grid() -> None:
    for i, k, s, p, d in itertools.product((1, 2, 3), (1, 2, 3), (1, 2, 3), (0, 1, 2), (1, 2, 3)):
        sizes = _torch_sizes(i, k, s, p, d)
        layer = cz.TransposedConv1d(1, 1, k, stride=s, padding=p, dilation=d)
        if not sizes:
            with pytest.raises(ValueError, match="leaves an empty output"):
                layer.output_sizes((i,))
            continue
        assert layer.output_sizes((i,)) == ((min(sizes),), (max(sizes),)), (i, k, s, p, d)
        x = torch.randn(1, 1, i)
        o0 = (i - 1) * s - 2 * p + d * (k - 1) + 1
        for o in sizes:  # each reachable size runs as torch's op with output_padding o − o₀
            expected = F.conv_transpose1d(x, layer.weight, layer.bias, s, p, o - o0, 1, d)
            torch.testing.assert_close(layer(x, output_size=(o,)), expected, rtol=0, atol=0)


# --- receptive_field through a global depthwise layer -------------------------------------------------------------


class _ThroughNumpy(nn.Module):
    """conv → an op without a meta kernel (receptive_field falls back to a real forward) → a lazy GDC."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.gdc = cz.GlobalDepthwiseConv2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gdc(_numpy_identity(self.conv(x))).flatten(1)


@torch.fx.wrap
def _numpy_identity(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(x.detach().cpu().numpy().copy())  # meta tensors have no data: no meta kernel


def test_receptive_field_of_a_global_depthwise_layer_not_run_yet() -> None:
    gdc = cz.GlobalDepthwiseConv2d(4, 8)  # kernel_size None: the map's size, taken from the first input
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), gdc, nn.Flatten())
    rf = receptive_field(model, (1, 3, 17, 17))  # the conv gives 8×8; the GDC reads all 8×8 outputs
    row = next(r for r in rf.layers if r.name == "1")
    assert row.type == "GlobalDepthwiseConv2d" and row.size == (3 + 7 * 2,) * 2 and row.stride == (0, 0)
    assert row.start == (1 + 3.5 * 2,) * 2 and row.global_path  # the 8×8 outputs' centres 1 … 15, mean 8
    assert isinstance(gdc.weight, nn.UninitializedParameter)  # the caller's layer stays lazy


def test_receptive_field_falling_back_to_a_real_forward_leaves_a_lazy_layer_lazy() -> None:
    model = _ThroughNumpy()
    rf = receptive_field(model, (1, 3, 9, 9))
    assert rf.output.size == (9, 9) and rf.output.global_path
    assert isinstance(model.gdc.weight, nn.UninitializedParameter)  # the old fallback materialised it at 7×7


def test_receptive_field_of_a_global_depthwise_layer_sized_for_another_map() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), cz.GlobalDepthwiseConv2d(4, 4, 5))
    with pytest.raises(ValueError, match=re.escape("input_shape=(1, 3, 8, 8) cannot run through the model: layer "
                                                   "'1' (GlobalDepthwiseConv2d) raised ValueError")) as raised:
        receptive_field(model, (1, 3, 8, 8))  # the map there is 6×6, the kernel 5×5
    assert "kernel_size=(5, 5)" in str(raised.value) and "spatial size (6, 6)" in str(raised.value)
    assert "kernel_size=None" in str(raised.value)  # what to do


# --- cost rows of a module called more than once ----------------------------------------------------------------


class _CalledTwice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.conv(self.stem(x))))


def test_cost_names_each_call_of_a_shared_module() -> None:
    report = cz.cost(_CalledTwice(), (1, 3, 8, 8))
    per_call = 8 * 8 * 4 * 4 * 9  # outputs × C_in × k²
    assert [(r.name, r.macs) for r in report.layers] == [("stem", 8 * 8 * 4 * 3 * 9), ("conv", per_call),
                                                         ("conv (call 2)", per_call), ("", 0)]
    assert report.layers[-1].other_ops == 4 * 8 * 8  # the model's own torch.relu between the two calls
    assert report.params == (4 * 3 * 9 + 4) + (4 * 4 * 9 + 4)  # the shared conv's parameters once


def test_cost_names_a_module_under_two_names_by_its_first() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1)
    report = cz.cost(nn.Sequential(conv, nn.ReLU(), conv), (1, 4, 8, 8))  # weight tying: names '0' and '2'
    assert [r.name for r in report.layers] == ["0", "1", "0 (call 2)"]
    assert [r.macs for r in report.layers] == [8 * 8 * 4 * 4 * 9, 0, 8 * 8 * 4 * 4 * 9]


# --- ONNX export of involution -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_involution_onnx_export_runs_in_onnxruntime(dim: int, dynamo: bool, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from convzoo.deploy.checks import build, relative_error, sample

    module = build("involution", dim)
    x = sample(dim)
    with torch.no_grad():
        expected = module(x)
    path = tmp_path / "involution.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, (x,), str(path), dynamo=True, opset_version=19, external_data=False,
                              verbose=False)
        else:  # TorchScript's exporter: movedim(-1, 1) became Transpose(perm=[0, -1, 1, 2]), refused by onnxruntime
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert y.shape == tuple(expected.shape)
    assert relative_error(torch.from_numpy(y), expected) < 1e-5


# --- legacy ONNX export with channels-last inputs -------------------------------------------------------------------


def _legacy_onnx_output(module: nn.Module, x: torch.Tensor, path: Path) -> torch.Tensor:
    """``module(x)`` exported by TorchScript's ONNX exporter (dynamo=False) and run in onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(y)


# movedim(-1, 1) in channel_shuffle / pixel_shuffle / the per-sample conv (dynamic, CondConv, ODConv) became
# Transpose(perm=[0, -1, 1, …]), refused by onnxruntime;
# a 3-D channels-last output went through contiguous(memory_format=channels_last_3d), which the exporter refused.
@pytest.mark.parametrize(("name", "dim"), [
    ("shuffled_grouped", 2), ("shuffled_grouped", 3), ("subpixel", 2), ("subpixel", 3), ("pointwise", 3),
    ("depthwise_separable", 3), ("pointwise_grouped", 3), ("acnet", 3), ("repvgg", 3), ("ghost", 3),
    ("dynamic", 2), ("dynamic", 3), ("condconv", 2), ("condconv", 3), ("odconv", 2), ("odconv", 3)])
def test_legacy_onnx_export_of_channels_last_input_runs_in_onnxruntime(name: str, dim: int, tmp_path: Path) -> None:
    from convzoo.deploy.checks import MEMORY_FORMAT, build, relative_error, sample

    module = build(name, dim)
    x = sample(dim).contiguous(memory_format=MEMORY_FORMAT[dim])
    with torch.no_grad():
        expected = module(x)
        contiguous = module(x.contiguous())  # the layer's own value, whatever the format
    assert relative_error(expected, contiguous) < 1e-6
    y = _legacy_onnx_output(module, x, tmp_path / f"{name}.onnx")
    assert y.shape == tuple(expected.shape)
    assert relative_error(y, expected) < 1e-5


# torchvision's deform_conv2d cannot be traced by TorchScript's exporter (its CUDA-version check returns an int):
# under it the layer records its pure-op form, GridSample (opset 16+), with the batch left dynamic
@pytest.mark.parametrize("name", ["deformable", "deformable_v2"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "cl"])
def test_legacy_onnx_export_of_deformable_runs_in_onnxruntime(name: str, memory_format: torch.memory_format,
                                                              tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from convzoo.deploy.checks import relative_error

    torch.manual_seed(0)
    module = cz.build(name, 4, 6, 3, padding=1).eval()
    nn.init.normal_(module.offset_conv.weight, std=0.3)  # offsets of about a cell, reads past the edge included
    x = torch.randn(2, 4, 9, 9).contiguous(memory_format=memory_format)
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    assert "GridSample" in {node.op_type for node in onnx.load(str(path)).graph.node}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (2, 3):
        z = torch.randn(batch, 4, 9, 9)
        with torch.no_grad():
            expected = module(z)
        (y,) = session.run(None, {"x": z.numpy()})
        assert relative_error(torch.from_numpy(y), expected) < 1e-5, (batch, relative_error(torch.from_numpy(y),
                                                                                            expected))


class _PerSample(nn.Module):
    """``per_sample_conv`` with a fixed per-sample bank (2 samples, 4 → 6 channels, 3×3, groups 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 6, 2, 3, 3))
        self.bias = nn.Parameter(torch.randn(2, 6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from convzoo.layers.patches import per_sample_conv

        return per_sample_conv(x, self.weight, self.bias, (1, 1), ((1, 1), (1, 1)), (1, 1), 2)


class _DepthwiseNHWC(nn.Module):
    """``depthwise_channels_last`` with depth multiplier 2 (the repeat through an NHWC view)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from convzoo.layers.fastpaths import depthwise_channels_last

        return depthwise_channels_last(x, self.weight, None, (1, 1), (1, 1), (1, 1))


def test_legacy_onnx_export_of_the_channels_last_forms(tmp_path: Path) -> None:
    from convzoo.deploy.checks import relative_error

    torch.manual_seed(0)
    per_sample = _PerSample().eval()
    x = torch.randn(2, 4, 7, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = torch.cat([F.conv2d(x[i:i + 1], per_sample.weight[i], per_sample.bias[i], padding=1, groups=2)
                              for i in range(2)])  # torch's own conv, sample by sample
        assert relative_error(per_sample(x), expected) < 1e-5
    assert relative_error(_legacy_onnx_output(per_sample, x, tmp_path / "per_sample.onnx"), expected) < 1e-5

    depthwise = _DepthwiseNHWC().eval()
    x = torch.randn(2, 4, 7, 6)
    with torch.no_grad():
        expected = F.conv2d(x, depthwise.weight, padding=1, groups=4)
        assert relative_error(depthwise(x), expected) < 1e-5
    assert relative_error(_legacy_onnx_output(depthwise, x, tmp_path / "depthwise.onnx"), expected) < 1e-5


# --- cost of an unbatched input (C, *S) ----------------------------------------------------------------------------


def test_cost_of_an_unbatched_input_is_the_batch_of_one_by_hand() -> None:
    # torch's conv runs (C, H, W) as one sample: 9·10 positions × 6 filters × 4·3·3 = 19,440 MACs (12,960 before:
    # C read as the batch and H as the channels)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    report = cz.cost(conv, (4, 9, 10))
    assert (report.macs, report.params, report.output_shape) == (9 * 10 * 6 * 4 * 9, 6 * 4 * 9 + 6, (6, 9, 10))
    assert report.layers[0].input_shape == (4, 9, 10) and report.layers[0].output_shape == (6, 9, 10)
    # a pool given an int kernel: (4, 4, 4) outputs × 3·3 window reads (was 3 per output: a 1-D window)
    pool = cz.cost(nn.MaxPool2d(3, 2), (4, 9, 10))
    assert (pool.other_ops, pool.output_shape) == (4 * 4 * 4 * 9, (4, 4, 4))
    # the same in a model: conv, ReLU, pool, flatten, linear on one unbatched sample
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(0), nn.Linear(64, 2))
    assert cz.cost(model, (3, 10, 10)).macs == 8 * 8 * 4 * 3 * 9 + 64 * 2


@pytest.mark.parametrize("family", [f.name for f in cz.families() if f.name != "global_depthwise"])
def test_cost_of_an_unbatched_input_equals_the_batch_of_one(family: str) -> None:
    kw = {"groups": 2} if family in ("grouped", "shuffled_grouped", "pointwise_grouped") else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layer = cz.build(family, 4, 4, None if not cz.family(family).window else 3, 2, **kw).eval()
    with torch.no_grad():
        y = layer(torch.randn(4, 9, 10))  # the forward takes it, as torch's convs do
    single, batched = cz.cost(layer, (4, 9, 10)), cz.cost(layer, (1, 4, 9, 10))
    assert single.output_shape == tuple(y.shape) == batched.output_shape[1:]
    assert (single.params, single.macs, single.activation_macs, single.other_ops, single.bytes) == \
        (batched.params, batched.macs, batched.activation_macs, batched.other_ops, batched.bytes)
    direct = layer.cost((4, 9, 10))  # the layer's own method takes what its forward takes
    assert direct.output_shape == tuple(y.shape)
    own = layer.cost((1, 4, 9, 10))
    assert (direct.params, direct.macs, direct.activation_macs, direct.other_ops, direct.elements) == \
        (own.params, own.macs, own.activation_macs, own.other_ops, own.elements)
    assert (direct.macs, direct.activation_macs, direct.other_ops) == \
        (single.macs, single.activation_macs, single.other_ops)


def test_module_cost_refuses_a_rank_it_cannot_read() -> None:
    from convzoo.arithmetic.cost import module_cost

    with pytest.raises(ValueError, match=r"input_shape=\(3, 10\) does not fit Conv2d: it takes \(N, C, \*S\) with 2 "
                                         r"spatial dims, or an unbatched \(C, \*S\)"):
        module_cost(cz.Conv2d(3, 4, 3), (3, 10))
    with pytest.raises(ValueError, match=r"input_shape=\(3, 10\) does not fit Conv2d"):
        cz.Conv2d(3, 4, 3).cost((3, 10))  # the layer's own method says the same
    assert module_cost(cz.Conv2d(3, 4, 3), (3, 10, 10)).macs == 8 * 8 * 4 * 3 * 9


# --- receptive fields through upsampling, position by position ------------------------------------------------------


class _Interpolate(nn.Module):
    """F.interpolate in a forward (the functional path of receptive_field)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, **self.kwargs)


_UPSAMPLERS = {
    "nearest x2": lambda: nn.Upsample(scale_factor=2),
    "nearest x3": lambda: nn.Upsample(scale_factor=3),
    "nearest x1.5": lambda: nn.Upsample(scale_factor=1.5),
    "nearest-exact x3": lambda: nn.Upsample(scale_factor=3, mode="nearest-exact"),
    "linear x2": lambda: nn.Upsample(scale_factor=2, mode="linear"),
    "linear x3": lambda: nn.Upsample(scale_factor=3, mode="linear"),
    "linear x2 align_corners": lambda: nn.Upsample(scale_factor=2, mode="linear", align_corners=True),
    "area x3": lambda: _Interpolate(scale_factor=3, mode="area"),
    "functional nearest size": lambda: _Interpolate(size=50),
    "functional linear x2.5": lambda: _Interpolate(scale_factor=2.5, mode="linear"),
    "nearest x0.5": lambda: nn.Upsample(scale_factor=0.5),
    "transposed k3 s2": lambda: nn.ConvTranspose1d(1, 1, 3, stride=2),
    "transposed k4 s2 p1": lambda: nn.ConvTranspose1d(1, 1, 4, stride=2, padding=1),
    "transposed k5 s3 d2 p1": lambda: nn.ConvTranspose1d(1, 1, 5, stride=3, padding=1, dilation=2),
    "transposed k2 s3 (gaps)": lambda: nn.ConvTranspose1d(1, 1, 2, stride=3),
    "convzoo transposed k4 s2 p1": lambda: cz.TransposedConv1d(1, 1, 4, stride=2, padding=1),
    "subpixel x3": lambda: cz.SubPixelConv1d(1, 1, 3, upscale_factor=3, padding=1),
    "resize linear x2": lambda: cz.ResizeConv1d(1, 1, 3, upsample_mode="linear"),
}


def _support(model: nn.Module, x: torch.Tensor, position: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    """Per spatial dim, the first and last input index whose gradient from output ``position`` is non-zero."""
    x = x.clone().requires_grad_()
    model(x)[(0, 0, *position)].backward()
    hit = (x.grad[0, 0].abs() > 1e-12).nonzero()
    if hit.numel() == 0:
        return None
    return tuple((int(hit[:, d].min()), int(hit[:, d].max())) for d in range(hit.shape[1]))


def _positive(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.abs() + 0.1)  # nothing cancels
    return model.double().eval()


@pytest.mark.parametrize("name", list(_UPSAMPLERS))
def test_receptive_field_after_upsampling_is_each_positions_support(name: str) -> None:
    """Conv 3/2 (p 1) then the upsampler: every output position's window (FieldRow.window) is exactly the inputs
    its gradient reaches, the row's size the union over the phases; a strided conv after it is exact again."""
    torch.manual_seed(0)
    model = _positive(nn.Sequential(nn.Conv1d(1, 1, 3, stride=2, padding=1), _UPSAMPLERS[name]()))
    n = 40
    x = torch.rand(1, 1, n, dtype=torch.float64) + 0.5
    row = receptive_field(model, (1, 1, n)).output
    out = model(x).shape[-1]
    checked = 0
    for u in range(out):
        (lo, hi), = row.window((u,))
        support = _support(model, x, (u,))
        if lo < 0 or hi > n - 1 or support is None:  # borders (torch clamps there) or a gap between taps
            continue
        assert support == ((math.ceil(lo), math.floor(hi)),), (u, lo, hi, support)
        assert hi - lo + 1 <= row.size[0]
        checked += 1
    assert checked >= out // 2


def test_receptive_field_of_bicubic_upsampling_in_2d() -> None:
    torch.manual_seed(0)
    model = _positive(nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1),
                                    nn.Upsample(scale_factor=(2, 3), mode="bicubic")))
    x = torch.rand(1, 1, 24, 22, dtype=torch.float64) + 0.5
    row = receptive_field(model, (1, 1, 24, 22)).output
    for position in itertools.product(range(8, 14), range(10, 16)):
        expected = tuple((math.ceil(lo), math.floor(hi)) for lo, hi in row.window(position))
        assert _support(model, x, position) == expected, position
