"""Which operators of an exported graph stay in floating point under int8 post-training quantization, and why.

Decided per operator from the graph (never from a family's name), before the backend's quantizer annotates:
- sampling: ``grid_sample`` (and torchvision's ``deform_conv2d``) has no int8 kernel, and every operator that only
  computes its sampling positions stays float too — int8 positions would move the sampling points (a step of
  range/255 pixels: on a 224-pixel map about one pixel);
- per-sample kernels: a convolution, linear map or matrix product whose kernel is computed from the input
  (dynamic kernels, involution's per-position kernels, attention-weighted patches) has no constant weight to
  quantize per channel; the backends' int8 kernels take constant weights.
A kept node is marked annotated with no quantization specs, so the backend's quantizer leaves it alone and puts
quantize/dequantize pairs only at its boundary. The reason is stored in ``node.meta[FLOAT_REASON]``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.fx import GraphModule, Node

FLOAT_REASON = "convzoo_float_reason"
SAMPLING = "sampling (grid_sample) has no int8 kernel"
POSITIONS = "feeds the sampling positions (grid_sample's grid): int8 there would move the sampling points"
PER_SAMPLE = "its kernel is computed from the input (per-sample kernel): int8 kernels take constant weights"

_aten = torch.ops.aten
SAMPLING_OPS = {_aten.grid_sampler.default, _aten.grid_sampler_2d.default, _aten.grid_sampler_3d.default}
WEIGHTED_OPS = {  # (op, index of the weight operand)
    _aten.conv1d.default: 1, _aten.conv2d.default: 1, _aten.conv3d.default: 1,
    _aten.conv1d.padding: 1, _aten.conv2d.padding: 1, _aten.conv3d.padding: 1,
    _aten.conv_transpose1d.default: 1, _aten.conv_transpose2d.input: 1, _aten.conv_transpose3d.input: 1,
    _aten.convolution.default: 1, _aten.linear.default: 1,
}
MATMUL_OPS = {_aten.matmul.default, _aten.bmm.default, _aten.mm.default, _aten.baddbmm.default,
              _aten.einsum.default}


def _is_deform(node: Node) -> bool:
    return str(node.target).startswith("torchvision.deform_conv2d")


def _is_sampling(node: Node) -> bool:
    return node.op == "call_function" and (node.target in SAMPLING_OPS or _is_deform(node))


def depends_on_input(graph_module: GraphModule) -> set[Node]:
    """The nodes whose value depends on a graph input (placeholders); everything else is a constant."""
    dependent: set[Node] = set()
    for node in graph_module.graph.nodes:
        if node.op == "placeholder" or any(arg in dependent for arg in node.all_input_nodes):
            dependent.add(node)
    return dependent


def _rank(node: Node) -> int | None:
    value = node.meta.get("val")
    return value.dim() if isinstance(value, torch.Tensor) else None


def _sliced_concatenation(node: Node) -> tuple[list[Node], list[Node]] | None:
    """For ``slice(permute(...(cat(parts, dim))), d, start, end)`` along the cat's dimension: (the nodes between the
    slice and the cat, the cat included; the parts the slice reads). None for any other node.

    A layer that predicts offsets and masks with one branch (DCNv3: ``cat([offsets, masks])``) slices the offsets
    for the sampling grid; following every part of the cat would count the mask predictor as a position node."""
    if node.op != "call_function" or node.target != _aten.slice.Tensor or not isinstance(node.args[0], Node):
        return None
    source, dim = node.args[0], node.args[1] if len(node.args) > 1 else 0
    start, end = (node.args[2] if len(node.args) > 2 else None), (node.args[3] if len(node.args) > 3 else None)
    chain: list[Node] = []
    while True:
        rank = _rank(source)
        if rank is None or not isinstance(dim, int):
            return None
        dim %= rank
        if source.op == "call_function" and source.target == _aten.permute.default:
            chain.append(source)
            dim, source = source.args[1][dim], source.args[0]
        elif source.op == "call_function" and source.target == _aten.cat.default:
            break
        else:
            return None
    parts = source.args[0]
    if (len(source.args) > 1 and source.args[1] % rank != dim) or (len(source.args) == 1 and dim != 0):
        return None
    sizes = [_rank(part) and part.meta["val"].shape[dim] for part in parts]
    if not all(isinstance(size, int) for size in sizes):
        return None  # symbolic sizes: follow every part
    total = sum(sizes)
    first, last = (0 if start is None else start), (total if end is None else end)
    first, last = (first + total if first < 0 else first), (last + total if last < 0 else min(last, total))
    read, offset = [], 0
    for part, size in zip(parts, sizes):
        if offset < last and first < offset + size:
            read.append(part)
        offset += size
    return chain + [source], read


def _ancestors(nodes: Iterable[object]) -> set[Node]:
    """Every node that ``nodes`` read, following only the parts of a concatenation that a slice reads."""
    seen: set[Node] = set()
    passed: set[Node] = set()  # between a slice and its cat: reached, but their other parts are not read
    stack = [n for n in nodes if isinstance(n, Node)]
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            sliced = _sliced_concatenation(node)
            if sliced is None:
                stack.extend(node.all_input_nodes)
            else:
                passed.update(sliced[0])
                stack.extend(sliced[1])
    return seen | passed


def _position_nodes(graph_module: GraphModule) -> set[Node]:
    """Nodes that compute sampling positions: ancestors of a sampling op's positions (``grid_sample``'s grid,
    ``deform_conv2d``'s offsets) that are not also ancestors of the data it samples (the input path stays int8).
    An offset predictor is one of them even where its output also feeds a check (a NaN guard) elsewhere."""
    positions: list[object] = []
    data: list[object] = []
    for node in graph_module.graph.nodes:
        if _is_sampling(node):
            positions.append(node.args[2] if _is_deform(node) else node.args[1])
            data.append(node.args[0])
    found = _ancestors(positions) - _ancestors(data)
    return {node for node in found if node.op == "call_function"}


def keep_float(graph_module: GraphModule) -> dict[Node, str]:
    """The nodes that stay in floating point and why (see the module docstring)."""
    dependent = depends_on_input(graph_module)
    kept: dict[Node, str] = {}
    for node in _position_nodes(graph_module):
        kept[node] = POSITIONS
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        if _is_sampling(node):
            kept[node] = SAMPLING
        elif node.target in WEIGHTED_OPS:
            weight = node.args[WEIGHTED_OPS[node.target]] if len(node.args) > 1 else None
            if isinstance(weight, Node) and weight in dependent and node not in kept:
                kept[node] = PER_SAMPLE
        elif node.target in MATMUL_OPS:
            if sum(a in dependent for a in node.all_input_nodes) >= 2 and node not in kept:
                kept[node] = PER_SAMPLE
    return kept


def mark_float(nodes: Iterable[tuple[Node, str]]) -> None:
    """Annotate each node as handled, with no quantization specs, and record why it stays float."""
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    for node, reason in nodes:
        node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
        node.meta[FLOAT_REASON] = reason


def keep_float_quantizer() -> object:
    """A torchao ``Quantizer`` that only marks the nodes of :func:`keep_float`: put it first in a
    ``ComposableQuantizer`` so that the backend's quantizer skips them."""
    from torchao.quantization.pt2e.quantizer import Quantizer

    class KeepFloat(Quantizer):
        def annotate(self, model: GraphModule) -> GraphModule:
            mark_float(keep_float(model).items())
            return model

        def validate(self, model: GraphModule) -> None:
            pass

    return KeepFloat()
