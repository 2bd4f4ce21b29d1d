"""Which operators of an exported graph the int8 float policy keeps in floating point (``deploy/float_policy.py``).

The policy is read from the graph alone (torch.export; no quantizer needed): an operator stays float when it computes
sampling positions. A branch that predicts offsets and masks together and joins them with one ``cat`` (DCNv3) must
keep only the offset predictor: the masks weight the samples, they do not move them.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import convzoo
from convzoo.deploy.float_policy import POSITIONS, SAMPLING, keep_float


class JointBranch(nn.Module):
    """One branch → cat([offsets, masks]) along ``dim`` (optionally permuted after), then sliced: offsets feed
    grid_sample's grid, masks weight the samples. ``read`` is the slice of the joined channels the grid takes."""

    def __init__(self, permute: bool, read: slice) -> None:
        super().__init__()
        self.offset, self.mask, self.permute, self.read = nn.Linear(4, 2), nn.Linear(4, 1), permute, read

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 4, H, W)
        h = x.permute(0, 2, 3, 1)  # (N, H, W, 4)
        joined = torch.cat([self.offset(h), torch.sigmoid(self.mask(h))], dim=-1)  # (N, H, W, 3)
        if self.permute:
            joined = joined.permute(0, 3, 1, 2)  # (N, 3, H, W): the slice is taken on dim 1, the cat's dim 3
            grid, masks = joined[:, self.read].permute(0, 2, 3, 1), joined[:, 2:]
        else:
            grid, masks = joined[..., self.read], joined[..., 2:].permute(0, 3, 1, 2)
        return F.grid_sample(x, torch.tanh(grid[..., :2]), align_corners=False) * masks


def _kept(module: nn.Module, x: torch.Tensor) -> dict[str, str]:
    graph = torch.export.export(module.eval(), (x,)).module()
    return {node.name: reason for node, reason in keep_float(graph).items()}


def _linear_names(module: JointBranch, x: torch.Tensor) -> tuple[str, str]:
    """The exported names of the offset and the mask Linear (export numbers them in call order)."""
    graph = torch.export.export(module.eval(), (x,)).module()
    weights = {node.name: node for node in graph.graph.nodes if node.op in ("placeholder", "get_attr")}
    names = {}
    for node in graph.graph.nodes:
        if node.target == torch.ops.aten.linear.default:
            names["offset" if "offset" in node.args[1].name else "mask"] = node.name
    assert weights and set(names) == {"offset", "mask"}, names
    return names["offset"], names["mask"]


@pytest.mark.parametrize("permute", [False, True])
def test_the_mask_predictor_joined_by_cat_is_not_a_position_node(permute: bool) -> None:
    torch.manual_seed(0)
    module, x = JointBranch(permute, slice(0, 2)), torch.randn(1, 4, 5, 5)
    offset, mask = _linear_names(module, x)
    kept = _kept(module, x)
    assert kept[offset] == POSITIONS
    assert mask not in kept, kept  # the old walk followed every part of the cat: the masks were "positions"
    assert kept["grid_sampler"] == SAMPLING


@pytest.mark.parametrize("permute", [False, True])
def test_a_slice_that_reads_both_parts_keeps_both(permute: bool) -> None:
    module, x = JointBranch(permute, slice(1, 3)), torch.randn(1, 4, 5, 5)  # grid = (Δ offset, mask)
    offset, mask = _linear_names(module, x)
    kept = _kept(module, x)
    assert kept[offset] == POSITIONS and kept[mask] == POSITIONS, kept


def test_dcnv3_keeps_only_its_offset_predictor_of_the_branch() -> None:
    """DCNv3's PyTorch-op form: the branch's depthwise conv, norm and offset Linear compute positions; the mask
    Linear and its softmax only weight the samples (InternImage's Eq. 3: y = Σ_g Σ_k m_gk · w_g · x_g(p + p_k + Δp_gk))."""
    torch.manual_seed(0)
    layer = convzoo.DCNv3Conv2d(8, 8, 3, groups=2).eval()
    x = torch.randn(1, 8, 6, 6)
    layer(x)
    graph = torch.export.export(layer, (x,)).module()
    kept = keep_float(graph)
    linears = {node.args[1].name: node for node in graph.graph.nodes if node.target == torch.ops.aten.linear.default}
    assert kept[linears["branch_offset_weight"]] == POSITIONS
    for name in ("branch_mask_weight", "input_proj_weight", "output_proj_weight"):
        assert linears[name] not in kept, (name, {n.name: r for n, r in kept.items()})
    softmax = next(node for node in graph.graph.nodes if node.target == torch.ops.aten.softmax.int)
    assert softmax not in kept
