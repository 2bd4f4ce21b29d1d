"""Per convzoo layer: how much of it a quantized graph runs in int8, and why the rest stays in floating point.

A layer is found from each graph node's ``nn_module_stack`` (the module path torch.export records): the outermost
module on the path that is a ``ConvzooLayer`` (the layer contract; a user's subclass counts). Nodes outside every
convzoo layer (stems, norms, heads) are gathered in one row, ``OUTSIDE``.

An operator runs in int8 when every floating-point tensor it reads comes from a dequantize node (the PT2E
quantize → dequantize → op → quantize pattern that backends replace by an int8 kernel). A layer's status weighs
its multiply-accumulates (convolutions, linear maps, matrix products: MACs from the traced shapes): 'int8' when all
of them run in int8, 'float' when none does, 'partly' in between; a layer without MACs goes by its other operators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.fx import GraphModule, Node

from ..layers.base import ConvzooLayer
from .float_policy import FLOAT_REASON, MATMUL_OPS, WEIGHTED_OPS

OUTSIDE = "(outside convzoo layers)"
_aten = torch.ops.aten
# operators that only move or relabel data: they run wherever their neighbours run and are not reported
MOVEMENT = {"view", "reshape", "_unsafe_view", "permute", "transpose", "flatten", "unflatten", "slice", "select",
            "squeeze", "unsqueeze", "expand", "contiguous", "clone", "alias", "_to_copy", "to", "split",
            "split_with_sizes", "chunk", "unbind", "cat", "stack", "pad", "constant_pad_nd", "pixel_shuffle",
            "pixel_unshuffle", "channel_shuffle", "_assert_tensor_metadata", "getitem", "repeat", "index",
            "index_select", "narrow", "t", "dropout", "identity", "lift_fresh_copy", "detach", "new_zeros", "zeros",
            "zeros_like", "arange", "full", "full_like", "scalar_tensor", "empty", "_assert_scalar", "sym_size"}


FUSED_ACTIVATIONS = {"relu", "relu_", "hardtanh", "hardtanh_", "relu6", "clamp"}


def op_name(node: Node) -> str:
    """'conv2d' for aten.conv2d.default; the target's name otherwise."""
    target = node.target
    name = getattr(target, "__name__", str(target))
    if isinstance(target, torch._ops.OpOverload):
        name = target._schema.name.split("::")[-1]
    return name.split(".")[0]


def is_quantize(node: object) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and "quantize_per" in str(node.target) \
        and "dequantize" not in str(node.target)


def is_dequantize(node: object) -> bool:
    return isinstance(node, Node) and node.op == "call_function" and "dequantize" in str(node.target)


def _tensor_meta(node: object) -> object:
    """The shape and dtype ShapeProp recorded (``layer_report`` runs it: quantize/dequantize nodes have no
    traced ``val``)."""
    return node.meta.get("tensor_meta") if isinstance(node, Node) else None


def _shape(node: object) -> tuple[int, ...] | None:
    meta = _tensor_meta(node)
    return tuple(int(s) for s in meta.shape) if hasattr(meta, "shape") else None


def _is_float(node: object) -> bool:
    meta = _tensor_meta(node)
    return hasattr(meta, "dtype") and meta.dtype.is_floating_point


def macs(node: Node) -> int:
    """Multiply-accumulates of a convolution, linear map or matrix product, from the traced shapes (0 if unknown)."""
    out = _shape(node)
    if out is None:
        return 0
    if node.target in WEIGHTED_OPS:
        weight = _shape(node.args[1])
        if weight is None:
            return 0
        transposed = "transpose" in op_name(node) or (op_name(node) == "convolution" and bool(node.args[6]))
        if transposed:
            source = _shape(node.args[0]) or ()
            return math.prod(source) * math.prod(weight[1:])
        return math.prod(out) * math.prod(weight[1:])
    if node.target in MATMUL_OPS and node.target is not _aten.einsum.default:
        first = _shape(node.args[0]) if node.target is not _aten.baddbmm.default else _shape(node.args[1])
        return math.prod(out) * (first[-1] if first else 0)
    return 0


def _float_inputs(node: Node) -> list[Node]:
    return [a for a in node.all_input_nodes if _is_float(a)]


def runs_int8(node: Node) -> bool:
    """Every floating-point tensor the operator reads is dequantized int8 (the bias of a conv aside: backends
    quantize it to int32 from the input and weight scales), or it is an activation fused into the int8 operator
    before it (conv → ReLU → quantize: the conv's output is quantized only after the ReLU)."""
    inputs = list(node.args[:2]) if node.target in WEIGHTED_OPS else _float_inputs(node)
    inputs = [a for a in inputs if isinstance(a, Node)]
    if bool(inputs) and all(is_dequantize(a) for a in inputs):
        return True
    return _fused_activation(node, inputs)


def _fused_activation(node: Node, inputs: list[Node]) -> bool:
    if len(inputs) != 1 or op_name(node) not in FUSED_ACTIVATIONS:
        return False
    producer = inputs[0]
    return (len(producer.users) == 1 and producer.op == "call_function" and not is_dequantize(producer)
            and runs_int8(producer) and any(is_quantize(user) for user in node.users))


def why_float(node: Node, quantizer: str) -> str:
    """The reason recorded by the float policy, else that the backend's quantizer has no int8 pattern for it."""
    return node.meta.get(FLOAT_REASON) or f"{quantizer} has no int8 pattern for it"


@dataclass
class LayerQuantization:
    """One convzoo layer of a quantized model: its module path and class, its status ('int8', 'partly',
    'float'), the MACs that run in int8 and in floating point, and each floating-point operator with the reason."""

    name: str
    type: str
    status: str = "int8"
    int8_macs: int = 0
    float_macs: int = 0
    float_ops: dict[str, str] = field(default_factory=dict)  # operator name → why it stays float
    _int8_other: int = 0
    _float_other: int = 0

    def _finish(self) -> None:
        if self.int8_macs + self.float_macs:
            int8, floating = self.int8_macs, self.float_macs
        else:
            int8, floating = self._int8_other, self._float_other
        self.status = "float" if int8 == 0 else "int8" if floating == 0 else "partly"

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "type": self.type, "status": self.status, "int8_macs": self.int8_macs,
                "float_macs": self.float_macs, "float_ops": dict(self.float_ops)}


@dataclass
class QuantizationReport:
    """The rows of :func:`layer_report`, in graph order, and the quantizer that annotated the graph."""

    quantizer: str
    layers: list[LayerQuantization]

    def float_layers(self) -> list[str]:
        """Paths of the convzoo layers with operators left in floating point ('partly' or 'float')."""
        return [row.name for row in self.layers if row.status != "int8" and row.name != OUTSIDE]

    def int8_fraction(self) -> float:
        """Share of all MACs that run in int8."""
        total = sum(r.int8_macs + r.float_macs for r in self.layers)
        return sum(r.int8_macs for r in self.layers) / total if total else math.nan

    def to_dict(self) -> dict[str, object]:
        return {"quantizer": self.quantizer, "int8_mac_fraction": self.int8_fraction(),
                "layers": [row.to_dict() for row in self.layers]}

    def __str__(self) -> str:
        lines = [f"int8 report ({self.quantizer}): {self.int8_fraction():.1%} of the MACs run in int8"]
        width = max((len(r.name) for r in self.layers), default=0)
        for row in self.layers:
            total = row.int8_macs + row.float_macs
            share = f"{row.int8_macs / total:6.1%} of {total:,} MACs int8" if total else "no MACs"
            lines.append(f"  {row.name:<{width}}  {row.type:<26} {row.status:<6}  {share}")
            for op, reason in row.float_ops.items():
                lines.append(f"  {'':<{width}}    float: {op} — {reason}")
        return "\n".join(lines)


def owning_layer(node: Node, model: nn.Module) -> tuple[str, str] | None:
    """(path, class name) of the outermost ConvzooLayer on the node's module stack; None outside every layer."""
    stack = node.meta.get("nn_module_stack") or {}
    for path, _ in stack.values():
        try:
            module = model.get_submodule(path) if path else model
        except AttributeError:
            continue
        if isinstance(module, ConvzooLayer):
            return path or "(model)", type(module).__name__
    return None


def layer_report(converted: GraphModule, model: nn.Module, quantizer: str,
                 example_input: torch.Tensor) -> QuantizationReport:
    """Walk the converted graph once (shapes from one forward of ``example_input``) and sum, per owning layer,
    the MACs that run in int8 and in float."""
    from torch.fx.passes.shape_prop import ShapeProp

    with torch.no_grad():
        ShapeProp(converted).propagate(example_input)
    rows: dict[str, LayerQuantization] = {}
    for node in converted.graph.nodes:
        if node.op != "call_function" or is_quantize(node) or is_dequantize(node) or op_name(node) in MOVEMENT:
            continue
        if not _is_float(node):
            continue  # integer index arithmetic, shapes
        owner = owning_layer(node, model) or (OUTSIDE, "")
        row = rows.setdefault(owner[0], LayerQuantization(*owner))
        count = macs(node)
        int8 = runs_int8(node)
        if count:
            if int8:
                row.int8_macs += count
            else:
                row.float_macs += count
        elif int8:
            row._int8_other += 1
        else:
            row._float_other += 1
        if not int8:
            reason, known = why_float(node, quantizer), row.float_ops.get(op_name(node))
            if known is None or reason not in known.split("; "):
                row.float_ops[op_name(node)] = reason if known is None else f"{known}; {reason}"
    for row in rows.values():
        row._finish()
    ordered = [r for r in rows.values() if r.name != OUTSIDE] + ([rows[OUTSIDE]] if OUTSIDE in rows else [])
    return QuantizationReport(quantizer, ordered)
