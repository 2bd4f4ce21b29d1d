"""Post-training int8 quantization of any model built from convzoo layers, through PyTorch's PT2E flow.

``quantize(model, example_input, backend, calibration)``: ``torch.export`` → weights computed from parameters
folded into constants (HetConv's scattered kernel, re-parameterised branches: a quantizer quantizes a weight per
output channel only when it is a constant) → a BatchNorm that follows no conv becomes the 1×1 depthwise conv it
equals → a depthwise conv with multiplier m > 1 reads its input repeated m times (``depthwise_repeat.py``) → the
float policy marks what has no int8 form (``float_policy.py``) → the backend's quantizer annotates
the rest → ``prepare_pt2e`` → one forward per calibration batch (observers record each tensor's range) →
``convert_pt2e``. The result runs in eager PyTorch
(int8 arithmetic simulated by quantize/dequantize pairs around float ops) and lowers to a runtime
(``runtimes.py``). ``report`` says per convzoo layer what runs in int8 (``int8_report.py``).

Backends: 'xnnpack' (ExecuTorch's ``XNNPACKQuantizer``: int8 weights symmetric per output channel from their
min/max, int8 activations asymmetric per tensor with the range a histogram observer finds to minimise the
quantization error) and 'onnxruntime' (the same with uint8 activations, U8S8, which onnxruntime's QDQ format fuses
into its int8 kernels). The model is exported with fixed shapes:
calibration batches must have the example input's shape.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .depthwise_repeat import CONV_OPS, depthwise_repeat_input
from .extras import QUANTIZE_PACKAGES, require
from .int8_report import QuantizationReport, layer_report

BACKENDS = ("xnnpack", "onnxruntime")


@dataclass
class QuantizedModel:
    """An int8 model: ``module`` (the converted PT2E graph; calling it runs the int8 arithmetic simulated in
    float), the ``backend`` it was quantized for, its ``example_input`` (shapes are fixed to it) and ``report``."""

    module: torch.fx.GraphModule
    backend: str
    example_input: torch.Tensor
    report: QuantizationReport

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.module(x)

    def export(self) -> torch.export.ExportedProgram:
        """The quantized graph as an ExportedProgram (what ExecuTorch lowers and the ONNX exporter reads)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.export.export(self.module, (self.example_input,))


def backend_quantizer(backend: str) -> Any:
    """The torchao Quantizer of ``backend``: ExecuTorch's XNNPACKQuantizer with its symmetric per-channel config;
    for onnxruntime the same with uint8 activations (U8S8, what its x86 int8 kernels take: with int8 activations
    it converts them to uint8 itself and leaves convolutions whose input is shared unfused)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} must be one of {', '.join(BACKENDS)}")
    require(QUANTIZE_PACKAGES, "convzoo.quantize")
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import QuantizationConfig

    config = get_symmetric_quantization_config(is_per_channel=True)
    if backend == "onnxruntime":
        uint8 = dataclasses.replace(config.input_activation, dtype=torch.uint8, quant_min=0, quant_max=255)
        config = QuantizationConfig(uint8, uint8, config.weight, config.bias, config.is_qat)
    return XNNPACKQuantizer().set_global(config)


def fold_constants(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Replace every node that does not depend on a graph input by its value (a constant attribute), so that a
    weight computed from parameters reaches its convolution as a constant. Constructors (arange, zeros) are folded
    too: masks and index tables built from them are constants of the model."""
    from torchao.quantization.pt2e.constant_fold import ConstantFolder, replace_node_with_constant

    with torch.utils._python_dispatch._disable_current_modes(), torch.no_grad():
        folder = ConstantFolder(graph_module, skip_constructors=False)
        folder.run()
        for node, value in folder.node_replacements.items():
            replace_node_with_constant(graph_module, node, value)
        for node in list(graph_module.graph.find_nodes(op="get_attr")):
            if not node.users:
                graph_module.graph.erase_node(node)
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return graph_module


_DEPTHWISE_1X1 = {3: torch.ops.aten.conv1d.default, 4: torch.ops.aten.conv2d.default, 5: torch.ops.aten.conv3d.default}


def batch_norms_as_convs(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Replace every inference BatchNorm whose input no convolution computes (RepVGG's identity branch BN₀(x)) by
    the 1×1 depthwise conv it equals: y = x · s + (β − μ · s), s = γ / √(σ² + ε), per channel. The quantizer then
    quantizes it as a conv (weights per channel) instead of leaving it float; a BN after a conv is folded into the
    conv by ``prepare_pt2e`` already. With no BN left, ``convert_pt2e``'s conv-BN folding for QAT graphs, which
    traces a hundred patterns whenever a BN remains, has nothing to do."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.target is not torch.ops.aten.batch_norm.default or node.args[5]:  # training-mode BN: as it is
            continue
        source, weight, bias, mean, var = node.args[:5]
        rank = node.meta["val"].dim() if "val" in node.meta else 0
        constants = [a for a in (weight, bias, mean, var) if a is not None]
        if (rank not in _DEPTHWISE_1X1 or (isinstance(source, torch.fx.Node) and source.target in CONV_OPS)
                or mean is None or not all(isinstance(a, torch.fx.Node) and a.op == "get_attr" for a in constants)):
            continue
        values = {a: operator.attrgetter(a.target)(graph_module) for a in constants}
        scale = torch.rsqrt(values[var] + node.args[7])
        if weight is not None:
            scale = scale * values[weight]
        shift = -values[mean] * scale + (values[bias] if bias is not None else 0.0)
        channels, ones = scale.numel(), (1,) * (rank - 2)
        with graph.inserting_before(node):
            attributes = []
            for suffix, value in (("weight", scale.reshape(channels, 1, *ones)), ("bias", shift)):
                name = f"{node.name}_as_conv_{suffix}"
                graph_module.register_buffer(name, value.detach().clone())
                attribute = graph.get_attr(name)
                attribute.meta["val"] = value
                attributes.append(attribute)
            conv = graph.call_function(_DEPTHWISE_1X1[rank], (source, *attributes, [1] * (rank - 2),
                                                               [0] * (rank - 2), [1] * (rank - 2), channels))
        conv.meta.update(node.meta)
        node.replace_all_uses_with(conv)
        graph.erase_node(node)
    graph.lint()
    graph_module.recompile()
    return graph_module


def _check_batches(example_input: Any, calibration: Iterable[torch.Tensor] | None) -> list[torch.Tensor]:
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a tensor, got {type(example_input).__name__}")
    if example_input.dtype != torch.float32:  # int8 PT2E quantizes float32 graphs only (its observers and ops)
        raise TypeError(f"example_input must be float32 (and the model float32: .float()), got "
                        f"{example_input.dtype}")
    batches = [example_input] if calibration is None else list(calibration)
    if not batches:
        raise ValueError("calibration is empty: give at least one batch (or None to calibrate on example_input)")
    for i, batch in enumerate(batches):
        if not isinstance(batch, torch.Tensor) or tuple(batch.shape) != tuple(example_input.shape):
            shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__
            raise ValueError(f"calibration batch {i} has shape {shape}; it must have the example input's shape "
                             f"{tuple(example_input.shape)} (the model is exported with fixed shapes)")
    return batches


def quantize(model: nn.Module, example_input: torch.Tensor, backend: str = "xnnpack",
             calibration: Iterable[torch.Tensor] | None = None) -> QuantizedModel:
    """Post-training int8 quantization of ``model`` (eval mode, CPU, float32) for ``backend``.

    ``calibration``: batches of the example input's shape that set each activation's int8 range (the backend
    quantizer's observers over all of them: a histogram for activations, see the module docstring); None calibrates
    on ``example_input`` alone. ``model`` is put in eval mode (BatchNorm statistics and dropout as deployed). Operators without an int8 form stay float inside
    the quantized model; ``QuantizedModel.report`` names them per convzoo layer.

    >>> q = quantize(convzoo.models.mobilenet_v1(0.25, 128), torch.randn(1, 3, 128, 128))
    >>> print(q.report)   # every layer 'int8': 100.0% of the MACs
    """
    quantizer = backend_quantizer(backend)
    batches = _check_batches(example_input, calibration)
    other = next((p.dtype for p in model.parameters() if p.is_floating_point() and p.dtype != torch.float32), None)
    if other is not None:
        raise TypeError(f"model has {other} parameters; quantize takes a float32 model (model.float())")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.composable_quantizer import ComposableQuantizer

    from .float_policy import keep_float_quantizer

    model = model.eval()
    with torch.no_grad():
        model(example_input)  # materialises lazy parameters; a wrong input fails here with the layer's message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = batch_norms_as_convs(fold_constants(torch.export.export(model, (example_input,)).module()))
        depthwise_repeat_input(graph, keep_global=backend == "xnnpack")  # the int8 depthwise kernels: m = 1
        prepared = prepare_pt2e(graph, ComposableQuantizer([keep_float_quantizer(), quantizer]))
        with torch.no_grad():
            for batch in batches:
                prepared(batch)
        converted = convert_pt2e(prepared)
    name = f"{type(quantizer).__name__} (for {backend})"
    return QuantizedModel(converted, backend, example_input, layer_report(converted, model, name, example_input))
