"""A depthwise conv with depth multiplier m > 1 rewritten for the runtimes: repeat the input, then multiplier 1.

XNNPACK and onnxruntime's int8 ``QLinearConv`` run a grouped conv on their depthwise kernels only when every group
has one input and one output channel; with m > 1 outputs per group they fall back to a GEMM per group of one input
channel (XNNPACK's ``convolution-nhwc``, onnxruntime's ``is_depthwise_conv``). The same conv on the input with each
channel repeated m times has one output per group:

    y[n, c·m + j] = b[c·m + j] + Σ_t w[c·m + j, 0, t] · x[n, c, p·s + t·d] = conv(x_r, w, b, groups = C·m),
    x_r[n, c·m + j] = x[n, c]   (x_r = cat of m copies of x viewed (N, C, 1, S), viewed (N, C·m, *S)),

the same products summed in the same order, with the weight unchanged. The copies are distinct views because
XNNPACK's partitioner counts a concatenation's distinct inputs and keeps a cat of one tensor with itself out of its
delegate. A global depthwise conv (one output position: the kernel covers the padded input) is a dot product per
channel on XNNPACK's fallback GEMM, so there (``keep_global``) the repeat only adds traffic and it is left alone;
onnxruntime's int8 fallback is slower than its depthwise kernel on it too, so it is rewritten for onnxruntime. ``benchmarks/int8_runtimes.py`` measures the ``depthwise``,
``global_depthwise`` and ``large_kernel`` families (m = 2) on both runtimes; onnxruntime's float32 ``Conv`` has no
such condition and is left as exported.
"""

from __future__ import annotations

import torch
from torch.fx import GraphModule, Node

_aten = torch.ops.aten
CONV_OPS = {_aten.conv1d.default, _aten.conv2d.default, _aten.conv3d.default, _aten.convolution.default}


def _groups_index(node: Node) -> int:
    """Where ``groups`` sits in the node's arguments: conv1d/2d/3d (x, w, b, stride, padding, dilation, groups);
    convolution (…, dilation, transposed, output_padding, groups)."""
    return 8 if node.target is _aten.convolution.default else 6


def _groups(node: Node) -> int:
    index = _groups_index(node)
    if len(node.args) > index:
        return int(node.args[index])  # type: ignore[arg-type]
    return int(node.kwargs.get("groups", 1))  # type: ignore[arg-type]


def _multiplier(node: Node, keep_global: bool) -> int:
    """m for a depthwise conv node with one input channel and m > 1 output channels per group (groups > 1), else 1;
    1 for a global one (one output position) when ``keep_global``."""
    if node.op != "call_function" or node.target not in CONV_OPS:
        return 1
    if node.target is _aten.convolution.default and node.args[6]:  # transposed
        return 1
    x, weight = node.args[0], node.args[1]
    if not (isinstance(x, Node) and isinstance(weight, Node) and "val" in x.meta and "val" in weight.meta):
        return 1
    xv, wv, groups = x.meta["val"], weight.meta["val"], _groups(node)
    if groups <= 1 or xv.dim() != wv.dim() or xv.shape[1] != groups or wv.shape[1] != 1:
        return 1
    if keep_global and "val" in node.meta and node.meta["val"].shape[2:].numel() == 1:
        return 1
    return int(wv.shape[0]) // groups


def depthwise_repeat_input(graph_module: GraphModule, keep_global: bool = False) -> int:
    """Rewrite, in place, every depthwise conv of ``graph_module`` (an exported ATen graph) with multiplier m > 1
    as a multiplier-1 conv on the input repeated m times (see the module docstring), except global ones when
    ``keep_global``; returns how many."""
    graph, rewritten = graph_module.graph, 0
    for node in list(graph.nodes):
        m = _multiplier(node, keep_global)
        if m == 1:
            continue
        x = node.args[0]
        assert isinstance(x, Node)
        value = x.meta["val"]
        flat = [value.shape[0], value.shape[1], 1, value.shape[2:].numel()]
        shape = [value.shape[0], value.shape[1] * m, *value.shape[2:]]
        with graph.inserting_before(node):
            copies = [graph.call_function(_aten.reshape.default, (x, flat)) for _ in range(m)]
            joined = graph.call_function(_aten.cat.default, (copies, 2))
            repeated = graph.call_function(_aten.reshape.default, (joined, shape))
        flat_value = value.reshape(flat)  # fake tensors: shapes only
        joined_value = torch.cat([flat_value] * m, 2)
        values = [flat_value] * m + [joined_value, joined_value.reshape(shape)]
        for new, val in zip([*copies, joined, repeated], values):
            new.meta.update({k: v for k, v in node.meta.items() if k != "val"})  # the layer's module stack, source
            new.meta["val"] = val
        args = list(node.args)
        args[0] = repeated
        index = _groups_index(node)
        if len(args) > index:
            args[index] = shape[1]
            node.args = tuple(args)
        else:
            node.args = tuple(args)
            node.kwargs = {**node.kwargs, "groups": shape[1]}
        rewritten += 1
    if rewritten:
        graph.lint()
        graph_module.recompile()
    return rewritten
