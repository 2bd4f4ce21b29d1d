"""The layer contract: every registered family implements every part of it, each part agrees with an independent
definition, and a user's subclass of any convzoo layer works in every tool (cost, receptive field, verify,
connectivity) — tools read layers through the contract, never by name or module path."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

import convzoo as cz
from convzoo.layers import CONTRACT, ConvzooLayer, compose_stages
from convzoo.layers.base import missing_contract
from convzoo.verify import check_module, randomize_parameters_, to_numpy

CASES = [(f.name, d) for f in cz.families() for d in f.dims]
IDS = [f"{n}-{d}d" for n, d in CASES]


def _layer(name: str, dim: int, seed: int = 0, **kwargs) -> nn.Module:
    module = cz.build(name, 4, 4, None, dim, **kwargs)
    with torch.no_grad():
        module(torch.zeros(1, 4, *(7,) * dim))  # materialise lazy parameters
    return randomize_parameters_(module, torch.Generator().manual_seed(seed))


def _input(dim: int, batch: int = 2, size: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.rand((batch, 4, *(size,) * dim), generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_every_family_declares_the_whole_contract(name, dim):
    module = _layer(name, dim)
    assert isinstance(module, ConvzooLayer)
    assert missing_contract(type(module)) == [], f"{type(module).__name__} misses part of the contract"
    assert set(CONTRACT) == {"cost", "reference_output", "native_alternatives", "approximate_dense_",
                             "receptive_field_step", "stages"}


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_contract_parts_agree_with_the_forward(name, dim):
    module = _layer(name, dim).eval()
    x = _input(dim)
    with torch.no_grad():
        y = module(x)
        # cost: the analytic output shape is the real one
        assert module.cost(tuple(x.shape)).output_shape == tuple(y.shape)
        # reference_output: the NumPy oracle (fp64) from the layer's parameters and constructor arguments
        expected = module.reference_output(to_numpy(x))
        assert np.abs(y.double().numpy() - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())
        # stages: the main stages recompose to the output; side stages run on the same input
        stages = module.stages()
        assert stages and all(isinstance(s.name, str) and s.name for s in stages)
        torch.testing.assert_close(compose_stages(stages, x), y, rtol=1e-5, atol=1e-6)
        for stage in stages:
            if stage.side:
                assert torch.isfinite(stage.fn(x)).all()
        # native alternatives: every form computes the same function
        alternatives = module.native_alternatives()
        assert alternatives, "a family must say what it is timed against"
        for kind, label, fn in alternatives:
            assert kind in ("native", "peer", "naive") and label
            torch.testing.assert_close(fn(x), y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("name", "dim"), CASES, ids=IDS)
def test_approximate_dense_is_exact_or_refuses_in_words(name, dim):
    fam = cz.family(name)
    module = _layer(name, dim)
    kernel = (3,) * dim
    weight = torch.randn(4, 4, *kernel, generator=torch.Generator().manual_seed(2), dtype=torch.float64).float()
    try:
        error = module.approximate_dense_(weight, torch.zeros(4))
    except TypeError as refusal:
        assert not fam.replaces_kxk and str(refusal)  # only families that cannot stand in may refuse
        return
    assert 0.0 <= error <= 1.0 + 1e-6
    if name in ("standard", "convolution", "dynamic", "deformable", "deformable_v2"):
        assert error < 1e-6  # these can represent any dense kernel exactly


def _footprint(module: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    """Input positions the centre output element reads (gradient of one output w.r.t. the input)."""
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    module = module.double()
    y = module(x)
    centre = tuple(s // 2 for s in y.shape[2:])
    y[(0, slice(None), *centre)].sum().backward()  # every output channel at the centre (MixConv's groups differ)
    return x.grad[0].abs().sum(0) > 0


@pytest.mark.parametrize("name", ["standard", "dilated", "depthwise_separable", "spatially_separable", "flattened",
                                  "hetconv", "mixconv", "grouped", "shuffled_grouped"])
def test_receptive_field_step_equals_the_gradient_footprint(name):
    module = _layer(name, 2).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.abs_().add_(0.1)  # positive weights: no cancellation can hide a dependence
    field = cz.receptive_field(module, (1, 4, 15, 15)).output
    footprint = _footprint(module, (1, 4, 15, 15))
    rows, cols = footprint.any(1).nonzero(), footprint.any(0).nonzero()
    assert field.size == (int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1))


GLOBAL_CASES = [(f.name, 2 if 2 in f.dims else f.dims[0]) for f in cz.families()]


@pytest.mark.parametrize(("name", "dim"), GLOBAL_CASES, ids=[f"{n}-{d}d" for n, d in GLOBAL_CASES])
def test_global_path_is_true_exactly_when_one_output_reads_every_input_pixel(name, dim):
    """Each family's receptive_field_step declares the global path (routing, attention, SE gates pooling the whole
    input); the independent check is the gradient of one output position with positive weights (no cancellation can
    hide a dependence): non-zero at every input pixel iff ``global_path``, on a map larger than the local window."""
    size = 17
    while True:
        shape = (1, 4, *(size,) * dim)
        module = cz.build(name, 4, 4, None, dim)
        with torch.no_grad():
            module(torch.zeros(shape))  # materialise lazy parameters (global depthwise: the kernel is the map)
        field = cz.receptive_field(module, shape).output
        if field.global_path or max(field.size) < size:
            break
        size = 2 * max(field.size) + 1  # a map larger than the local window, or the check says nothing
    module = randomize_parameters_(module, torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        for p in module.parameters():
            p.abs_().add_(0.1)
    reads_everything = bool(_footprint(module, shape).all())
    assert field.global_path == reads_everything, (name, field)


# --- a user's subclass works in every tool ---------------------------------------------------------------------------

SUBCLASS_CASES = [(f.name, 2 if 2 in f.dims else f.dims[0]) for f in cz.families()]


@pytest.mark.parametrize(("name", "dim"), SUBCLASS_CASES, ids=[n for n, _ in SUBCLASS_CASES])
def test_user_subclass_works_in_cost_receptive_field_verify_and_connectivity(name, dim):
    from convzoo.viz.connectivity import connectivity

    original = cz.build(name, 4, 4, None, dim)
    cls = type("MyLayer", (type(original),), {"__module__": "my_project.layers"})  # not under convzoo.*
    module = cz.build(name, 4, 4, None, dim)
    module.__class__ = cls
    shape = (1, 4, *(7,) * dim)
    report = cz.cost(module, shape)
    assert report.layers[0].type == "MyLayer" and report.macs == cz.cost(original, shape).macs
    field = cz.receptive_field(nn.Sequential(module, nn.ReLU()), shape)  # traced as a leaf, not by module name
    assert field.output.size == cz.receptive_field(nn.Sequential(original, nn.ReLU()), shape).output.size
    with torch.no_grad():
        module(torch.zeros(shape))
    randomize_parameters_(module, torch.Generator().manual_seed(0))
    assert check_module(module, _input(dim)) < 1e-5
    conn = connectivity(module, shape[1:])
    assert conn.mask.any()


# --- torch's class hierarchy ------------------------------------------------------------------------------------------

TORCH_CONVS = [(cz.Conv1d, nn.Conv1d), (cz.Conv2d, nn.Conv2d), (cz.Conv3d, nn.Conv3d),
               (cz.DepthwiseConv1d, nn.Conv1d), (cz.DepthwiseConv2d, nn.Conv2d), (cz.DepthwiseConv3d, nn.Conv3d),
               (cz.PointwiseConv1d, nn.Conv1d), (cz.PointwiseConv2d, nn.Conv2d), (cz.PointwiseConv3d, nn.Conv3d),
               (cz.TransposedConv1d, nn.ConvTranspose1d), (cz.TransposedConv2d, nn.ConvTranspose2d),
               (cz.TransposedConv3d, nn.ConvTranspose3d)]


@pytest.mark.parametrize(("ours", "theirs"), TORCH_CONVS, ids=[o.__name__ for o, _ in TORCH_CONVS])
def test_convs_are_torch_convs_with_torch_meaning(ours, theirs):
    dim = int(ours.__name__[-2])
    layer = ours(4, 8, 1 if "Pointwise" in ours.__name__ else 3, 2)
    assert isinstance(layer, theirs)
    twin = theirs(4, 8, layer.kernel_size, layer.stride, layer.padding, dilation=layer.dilation,
                  groups=layer.groups)
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, *(9,) * dim)
    torch.testing.assert_close(layer(x), twin(x))  # same weight layout and attribute meaning as torch


def test_torchvision_style_init_loop_reaches_every_convzoo_conv():
    model = nn.Sequential(cz.Conv2d(3, 8, 3), cz.DepthwiseConv2d(8, 16, 3), cz.PointwiseConv2d(16, 8),
                          cz.TransposedConv2d(8, 4, 2, 2), cz.build("depthwise_separable", 4, 4),
                          cz.build("resize", 4, 4))
    before = {n: p.clone() for n, p in model.named_parameters() if n.endswith("weight")}
    for m in model.modules():  # torchvision's ResNet init
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    after = dict(model.named_parameters())
    assert before and all(not torch.equal(before[n], after[n]) for n in before)


def test_fuse_modules_fuses_convzoo_conv_bn_relu_with_equal_output():
    from torch.ao.quantization import fuse_modules

    for conv in (cz.Conv2d(3, 8, 3, padding=1), cz.DepthwiseConv2d(8, 16, 3, padding="same"),
                 cz.Conv2d(3, 8, 3, padding=1, mode="convolution"), cz.PointwiseConv2d(8, 8, stride=2)):
        model = nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU()).eval()
        with torch.no_grad():
            model[1].running_mean.uniform_(-1, 1)
            model[1].running_var.uniform_(0.5, 2)
            model[1].weight.uniform_(0.5, 1.5)
        x = torch.randn(2, conv.in_channels, 10, 10)
        fused = fuse_modules(model, [["0", "1", "2"]])
        assert isinstance(fused[1], nn.Identity) and isinstance(fused[2], nn.Identity)
        torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-5)


def test_prune_works_on_convzoo_weights():
    from torch.nn.utils import prune

    layer = cz.DepthwiseConv2d(4, 8, 3, padding=1)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    assert int((layer.weight == 0).sum()) == layer.weight.numel() // 2
    x = torch.randn(1, 4, 6, 6)
    expected = nn.functional.conv2d(x, layer.weight_orig * layer.weight_mask, layer.bias, padding=1, groups=4)
    torch.testing.assert_close(layer(x), expected)
    prune.remove(layer, "weight")
    assert isinstance(layer.weight, nn.Parameter)


# --- torch's argument order -------------------------------------------------------------------------------------------


def test_positional_calls_written_the_torch_way():
    assert cz.DynamicConv2d(4, 8, 3, 2).stride == (2, 2)
    het = cz.HetConv2d(8, 8, 3, 2, 1, p=4)
    assert (het.stride, het.padding, het.p) == ((2, 2), (1, 1), 4)
    assert het(torch.randn(1, 8, 8, 8)).shape == (1, 8, 4, 4)
    assert cz.HetConv2d(8, 8, 3, stride=2)(torch.randn(1, 8, 9, 9)).shape == (1, 8, 4, 4)  # padding 0, as torch
    dw = cz.DepthwiseConv2d(8, 16, 3)
    assert dw.weight.shape == (16, 1, 3, 3) and dw.depth_multiplier == 2
    assert cz.DeformConv2d(4, 4, 3, 2, 1).stride == (2, 2)
    assert cz.PointwiseConv2d(8, 16, 1, 2)(torch.randn(1, 8, 8, 8)).shape == (1, 16, 4, 4)
    assert cz.SpatiallySeparableConv2d(4, 4, 3, 1, 1).padding_pairs == ((1, 1), (1, 1))
    assert cz.MixConv2d(4, 4, (3, 5), 2).stride == (2, 2)
    assert cz.ResizeConv2d(4, 4, 3, scale_factor=3)(torch.randn(1, 4, 2, 2)).shape == (1, 4, 6, 6)
    for cls, name in ((cz.HetConv2d, "p"), (cz.DynamicConv2d, "num_kernels"), (cz.DeformConv2d, "modulated"),
                      (cz.ResizeConv2d, "scale_factor"), (cz.Conv2d, "mode"), (cz.MixConv2d, "split")):
        assert inspect.signature(cls).parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, (cls, name)
    with pytest.raises(ValueError, match=r"out_channels=12 must be a multiple of in_channels=8"):
        cz.DepthwiseConv2d(8, 12, 3)
    with pytest.raises(ValueError, match=r"groups=2 must equal in_channels=8"):
        cz.DepthwiseConv2d(8, 8, 3, groups=2)


def test_numpy_integers_are_accepted_where_ints_are():
    layer = cz.Conv2d(np.int64(4), np.int64(8), np.int32(3), stride=np.int64(2), padding=(np.int64(1), 1))
    assert isinstance(layer.in_channels, int) and layer.kernel_size == (3, 3) and layer.stride == (2, 2)
    assert cz.build("hetconv", np.int64(8), 8, np.int64(3), p=np.int64(2)).p == 2


# Families whose kernel_size lists parallel branches' sizes (a tuple is not one size per dim), and families whose
# windows must be odd (centred on each output).
BRANCH_SIZES = ("mixconv", "selective_kernel")
ODD_ONLY = ("hetconv", "dcnv3")


@pytest.mark.parametrize("name", [f.name for f in cz.families() if f.window])
def test_build_takes_tuple_kernels(name):
    fam = cz.family(name)
    dim = 2 if 2 in fam.dims else fam.dims[0]
    kernel = (3, 5) if dim == 2 else (3,) * dim
    module = cz.build(name, 4, 4, kernel, dim)
    x = torch.randn(1, 4, *(9,) * dim)
    y = module(x)
    assert y.shape[2:] == tuple(2 * s for s in x.shape[2:]) or y.shape[2:] == x.shape[2:]
    if hasattr(module, "kernel_size") and name not in BRANCH_SIZES:
        assert tuple(module.kernel_size) == kernel


def test_build_refuses_kernels_a_family_cannot_take():
    with pytest.raises(ValueError, match=r"kernel_size=3 must be 1"):
        cz.build("pointwise", 4, 4, 3)
    with pytest.raises(ValueError, match=r"kernel_size=\(4, 3\) must be odd"):
        cz.build("hetconv", 4, 4, (4, 3))
    with pytest.raises(TypeError, match=r"kernel_size=\(3, 3, 3\) must be an int or a tuple of 2 ints"):
        cz.build("standard", 4, 4, (3, 3, 3))


@pytest.mark.parametrize("name", [f.name for f in cz.families() if f.window and f.name not in ("transposed",)])
def test_same_padding_against_the_oracle_which_resolves_it_itself(name):
    """Even kernels: 'same' pads d·(k−1) with the odd element AFTER; the oracle resolves 'same' on its own, so a
    layer that put it before (or took the wrong total) would disagree."""
    fam = cz.family(name)
    dim = 2 if 2 in fam.dims else fam.dims[0]
    kwargs = {} if name in BRANCH_SIZES else {"padding": "same"}
    kernel = (3, 5) if name in BRANCH_SIZES else 3 if name in ODD_ONLY else (2, 4) if dim == 2 else (4,) * dim
    if name in ODD_ONLY:
        kwargs["dilation"] = 2  # HetConv's kernel is odd: 'same' is symmetric, d·(k−1) = 4 in total
    module = cz.build(name, 4, 4, kernel, dim, **kwargs)
    randomize_parameters_(module, torch.Generator().manual_seed(3))
    x = _input(dim, size=8)
    assert check_module(module, x) < 1e-5


# --- mutations the fast suite must catch -------------------------------------------------------------------------------


def test_global_depthwise_cost_scales_with_the_batch():
    layer = cz.GlobalDepthwiseConv2d(6, 12, 5)
    for n in (1, 3):
        report = cz.cost(layer, (n, 6, 5, 5))
        assert report.macs == n * 12 * 25  # N·C_out·H·W


def test_resize_cost_depends_on_the_interpolation_mode():
    shape = (2, 4, 5, 5)
    up = (2, 4, 10, 10)
    nearest = cz.ResizeConv2d(4, 4, 3).cost(shape)
    bilinear = cz.ResizeConv2d(4, 4, 3, upsample_mode="bilinear").cost(shape)
    assert nearest.macs == bilinear.macs == math.prod(up[2:]) * 2 * 4 * 4 * 9
    assert nearest.other_ops == math.prod(up) and bilinear.other_ops == 4 * math.prod(up)


def test_receptive_field_merge_takes_the_larger_branch_even_when_it_comes_second():
    class TwoBranches(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.small = nn.Conv2d(1, 1, 1)
            self.large = nn.Conv2d(1, 1, 5, padding=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.small(x) + self.large(x)

    assert cz.receptive_field(TwoBranches(), (1, 1, 16, 16)).output.size == (5, 5)


def test_transposed_output_sizes_account_for_dilation():
    layer = cz.TransposedConv1d(1, 1, 3, stride=1, dilation=3)
    smallest, largest = layer.output_sizes((5,))
    assert smallest == ((5 - 1) * 1 + 3 * 2 + 1,) and largest == (smallest[0] + 2,)  # output_padding < max(s, d)
    y = layer(torch.randn(1, 1, 5), output_size=(largest[0],))
    assert y.shape[-1] == largest[0]


# --- module-type counters ---------------------------------------------------------------------------------------------


def _counter_model() -> nn.Module:
    return nn.Sequential(cz.Conv2d(3, 8, 3, padding=1, bias=False), cz.DepthwiseConv2d(8, 16, 3, bias=False),
                         cz.PointwiseConv2d(16, 8, bias=False), cz.build("depthwise_separable", 8, 8, bias=False))


def test_thop_counts_convzoo_layers_with_their_own_cost():
    thop = pytest.importorskip("thop")
    from convzoo.analysis.counters import thop_custom_ops

    model = _counter_model()
    x = torch.randn(1, 3, 12, 12)
    macs, _ = thop.profile(model, inputs=(x,), custom_ops=thop_custom_ops(model), verbose=False)
    assert int(macs) == cz.cost(model, tuple(x.shape)).macs
    bare, _ = thop.profile(_counter_model(), inputs=(x,), verbose=False)
    assert bare == 0  # the premise measured: exact-type tables do not see subclasses of nn.Conv2d
    plain = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert thop.profile(plain, inputs=(x,), verbose=False)[0] == cz.cost(model[0], tuple(x.shape)).macs


def test_ptflops_counts_convzoo_layers_with_their_own_cost():
    ptflops = pytest.importorskip("ptflops")
    from convzoo.analysis.counters import ptflops_hooks

    model = _counter_model()
    macs, _ = ptflops.get_model_complexity_info(model, (3, 12, 12), as_strings=False, backend="pytorch",
                                                print_per_layer_stat=False, custom_modules_hooks=ptflops_hooks(model))
    assert int(macs) == cz.cost(model, (1, 3, 12, 12)).macs


@pytest.mark.parametrize("size", [12, 28])
def test_ptflops_does_not_count_the_first_calls_timing(size: int):
    # ptflops' 'pytorch' backend replaces torch.nn.functional and the matrix products to count their calls; a layer's
    # first call timed its forms through them: a fresh PointwiseConv2d(240, 240, groups=3) at 28×28 counted 180 M or
    # 301 M MACs (run to run) for its 15,052,800, ShuffleNet v1 1.27-1.74 G for 137 M
    ptflops = pytest.importorskip("ptflops")
    from convzoo.analysis.counters import ptflops_hooks
    from convzoo.layers.form_choice import torch_functions_replaced

    layer = cz.PointwiseConv2d(240, 240, groups=3, bias=False)
    macs, _ = ptflops.get_model_complexity_info(layer, (240, size, size), as_strings=False, backend="pytorch",
                                                print_per_layer_stat=False, custom_modules_hooks=ptflops_hooks(layer))
    assert int(macs) == size * size * 240 * 80 == cz.cost(layer, (1, 240, size, size)).macs
    assert not torch_functions_replaced()  # ptflops put them back; the next call times its forms as usual
