"""Where MobileNets run: a model (float32) or its PT2E int8 form (``quantize.py``) on a runtime, as one callable.

- 'eager': PyTorch itself (float32 only: PyTorch runs a PT2E int8 graph as float ops between quantize/dequantize
  pairs, a simulation, not int8 kernels).
- 'xnnpack': ``to_edge_transform_and_lower`` with the ``XnnpackPartitioner`` → ``.to_executorch()`` → ExecuTorch's
  Python runtime. Operators the partitioner leaves out run on ExecuTorch's portable kernels (listed in
  ``Runner.notes``).
- 'onnxruntime': the graph exported by ``torch.onnx.export`` (dynamo, opset 19) — for int8 the PT2E graph, whose
  quantize/dequantize pairs become QuantizeLinear/DequantizeLinear (QDQ) that onnxruntime fuses into int8
  kernels (QLinearConv, QLinearMatMul, …; ``Runner.notes`` counts them in the optimised graph).

Every runner takes inputs of the example input's shape (graphs are exported with fixed shapes) and runs on
``threads`` CPU threads (default: torch's setting), so runtimes are timed on equal footing. ``runner`` leaves the
process's torch thread count as it found it: each call sets its count for the call and restores it after.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .depthwise_repeat import depthwise_repeat_input
from .extras import require_runtime

RUNTIMES = ("eager", "xnnpack", "onnxruntime")
DTYPES = ("fp32", "int8")
ORT_INT8_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul",
                "QLinearConcat", "QLinearSigmoid", "QLinearGlobalAveragePool", "QLinearAveragePool",
                "QLinearLeakyRelu", "QLinearSoftmax", "QGemm", "QLinearConvTranspose")


Output = Any  # a tensor, or a tuple of tensors for a model with several outputs


def _one_or_tuple(outputs: Any) -> Output:
    outputs = tuple(outputs)
    return outputs[0] if len(outputs) == 1 else outputs


@dataclass
class Runner:
    """A model ready to run on ``runtime`` in ``dtype``: ``runner(x)`` returns the output as a torch tensor.

    What the runtime did with the graph: ``outside_delegate`` (XNNPACK: operator → count left to ExecuTorch's
    portable kernels), ``int8_kernels`` (onnxruntime: int8 operator → count in its optimised graph),
    ``dequantized_activations`` (onnxruntime: activations dequantized inside the graph, float operators between
    int8 ones), ``quantized`` (the ``QuantizedModel`` for int8); ``size_bytes``: the program's or the ONNX file's
    size (None for eager)."""

    runtime: str
    dtype: str
    run: Callable[[torch.Tensor], Output]
    size_bytes: int | None = None
    outside_delegate: dict[str, int] = field(default_factory=dict)
    int8_kernels: dict[str, int] | None = None
    dequantized_activations: int = 0
    quantized: Any = None
    keep_alive: tuple[Any, ...] = ()  # objects the runtime reads from while the runner lives
    threads: int | None = None  # CPU threads of each call (None: whatever the process has)

    def __call__(self, x: torch.Tensor) -> Output:
        if self.threads is None:
            return self.run(x)
        with threads_for(self.threads):
            return self.run(x)

    @property
    def notes(self) -> list[str]:
        """One line each: the layers kept (partly) float, the operators outside the XNNPACK delegate, the int8
        kernels onnxruntime runs."""
        lines = quantized_notes(self.quantized) if self.quantized is not None else []
        if self.outside_delegate:
            ops = ", ".join(f"{op} ×{n}" for op, n in sorted(self.outside_delegate.items()))
            lines.append(f"outside the XNNPACK delegate (ExecuTorch portable kernels): {ops}")
        if self.int8_kernels is not None:
            ops = ", ".join(f"{op} ×{n}" for op, n in self.int8_kernels.items())
            lines.append(f"onnxruntime int8 kernels: {ops or 'none'}")
            if self.dequantized_activations:
                lines.append(f"{self.dequantized_activations} activation(s) dequantized inside the graph (float "
                             f"operators between int8 ones)")
        return lines

    def summary(self) -> str:
        """A short line for tables: the share of MACs in int8, operators outside the delegate / int8 kernels."""
        parts = []
        if self.quantized is not None:
            parts.append(f"int8 MACs {self.quantized.report.int8_fraction():.0%}")
        if self.outside_delegate:
            parts.append(f"{sum(self.outside_delegate.values())} op(s) outside XNNPACK")
        if self.int8_kernels is not None:
            parts.append(f"ORT int8 kernels: {', '.join(self.int8_kernels) or 'none'}")
        return "; ".join(parts)


def check_runtime(runtime: str, dtype: str) -> None:
    """ValueError for an unknown runtime or dtype, or int8 on eager; MissingPackage when the runtime's packages
    are not installed."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} must be one of {', '.join(RUNTIMES)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {', '.join(DTYPES)}")
    if runtime == "eager" and dtype == "int8":
        raise ValueError("dtype='int8' needs runtime 'xnnpack' or 'onnxruntime': eager PyTorch runs a PT2E int8 "
                         "model as float ops between quantize/dequantize pairs (a simulation, not int8 kernels)")
    if runtime != "eager":
        require_runtime(runtime)
    if dtype == "int8":
        from .extras import QUANTIZE_PACKAGES, require

        require(QUANTIZE_PACKAGES, "int8 quantization")


# ExecuTorch's runtime logs at Info level, through its Python bindings to sys.stderr, with no level or variable to
# turn it off: its CPU probe when the thread pool starts ("[cpuinfo_utils.cpp:71] Reading file /sys/devices/soc0/…",
# ARM registers read on any CPU) and each pool reset. Only these lines are dropped (quiet_executorch).
_EXECUTORCH_CHATTER = re.compile(r"\[(cpuinfo_utils\.cpp:\d+\] |threadpool\.cpp:\d+\] Resetting threadpool to \d+ "
                                 r"threads\.\s*$)")


class _DropChatter:
    """A stand-in for sys.stderr that passes on every whole line but ExecuTorch's Info lines; anything else (fileno,
    encoding, …) is the real stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream, self._partial = stream, ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        kept = "".join(line + "\n" for line in lines if not _EXECUTORCH_CHATTER.match(line))
        if kept:
            self._stream.write(kept)
        return len(text)

    def finish(self) -> None:
        """Pass on a last unfinished line (unless it is chatter)."""
        if self._partial and not _EXECUTORCH_CHATTER.match(self._partial):
            self._stream.write(self._partial)
        self._partial = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def quiet_executorch() -> Iterator[None]:
    """Inside the block, ExecuTorch's Info lines (``_EXECUTORCH_CHATTER``) written to sys.stderr are dropped;
    every other line written there (an error, a warning) is passed on as it comes."""
    import sys

    stream = sys.stderr
    quiet = _DropChatter(stream)
    sys.stderr = quiet
    try:
        yield
    finally:
        if sys.stderr is quiet:  # unless the block set its own
            sys.stderr = stream
        quiet.finish()


def set_threads(threads: int) -> None:
    """The same CPU thread count for PyTorch and ExecuTorch's thread pool (onnxruntime takes it per session), for
    the whole process (a command's); :func:`threads_for` sets it for a block only."""
    torch.set_num_threads(threads)
    try:
        from executorch.extension.pybindings import portable_lib
    except ImportError:
        return
    count = getattr(portable_lib, "_threadpool_get_thread_count", None)
    with quiet_executorch():  # the first use starts the pool (the CPU probe's lines); each reset logs one
        if count is None or count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)


@contextmanager
def threads_for(threads: int) -> Iterator[None]:
    """:func:`set_threads` inside the block; torch's thread count restored after. ExecuTorch's pool keeps the
    count (only ExecuTorch reads it, and resetting it costs a pool; each runner's call sets its own)."""
    before = torch.get_num_threads()
    set_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


# --- XNNPACK through ExecuTorch --------------------------------------------------------------------------------


def _partitioner() -> Any:
    """XNNPACK's partitioner, except that a padding whose input is an int8 tensor (dequantized) stays out of the
    delegate: XNNPACK takes such a pad as quantized in and float out and refuses it at load time
    (xnn_status_invalid_parameter in StaticConstantPad); outside it, the pad runs on the portable kernels."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import ConstantPadConfig
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    from .int8_report import is_dequantize

    class FloatPadConfig(ConstantPadConfig):
        def check_constraints(self, node: torch.fx.Node, ep: Any) -> bool:
            if is_dequantize(node.args[0]):
                return False
            return super().check_constraints(node, ep)

    configs = [FloatPadConfig if c is ConstantPadConfig else c for c in ALL_PARTITIONER_CONFIGS]
    return XnnpackPartitioner(configs=configs)


def _outside_delegate(program: Any) -> dict[str, int]:
    """Operators left to ExecuTorch's portable kernels, counted by name."""
    counts: collections.Counter[str] = collections.Counter()
    for node in program.exported_program().graph.nodes:
        if node.op != "call_function":
            continue
        name = str(getattr(node.target, "__name__", node.target))
        if "call_delegate" in name or name == "getitem":
            continue
        counts[name.removeprefix("aten.").split(".")[0]] += 1
    return dict(counts)


def pad_then_pool(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Rewrite every ``avg_pool2d`` that counts its implicit zero padding (``count_include_pad=True``, torch's
    default) as an explicit zero pad followed by the same pooling without padding: the same function, which XNNPACK's
    delegate takes, where the padded form falls back to ExecuTorch's portable kernel (ShuffleNet v1's three
    stride-2 shortcuts made the whole network 12× slower on XNNPACK, 51 vs 4.1 ms float32, one thread)."""
    graph = program.graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not torch.ops.aten.avg_pool2d.default:
            continue
        x, kernel, stride, padding = (list(node.args) + [[], [], [0, 0]])[:4]
        include_pad = node.args[5] if len(node.args) > 5 else node.kwargs.get("count_include_pad", True)
        padding = list(padding) * (2 // len(padding)) if padding else [0, 0]
        if not include_pad or not any(padding):
            continue
        pads = [padding[1], padding[1], padding[0], padding[0]]  # (left, right, top, bottom)
        with graph.inserting_before(node):
            pad = graph.call_function(torch.ops.aten.constant_pad_nd.default, (x, pads, 0.0))
        pad.meta = {**x.meta, "val": torch.nn.functional.pad(x.meta["val"], pads)}
        node.args = (pad, kernel, stride, [0, 0], *node.args[4:])
        changed = True
    if changed:
        program.graph_module.recompile()
    return program


def xnnpack_runner(program: torch.export.ExportedProgram, dtype: str) -> Runner:
    """Lower ``program`` to ExecuTorch with the XNNPACK delegate (after :func:`pad_then_pool` and
    ``depthwise_repeat_input``), load it in the Python runtime."""
    require_runtime("xnnpack")
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        depthwise_repeat_input(program.graph_module, keep_global=True)  # XNNPACK's depthwise kernels: m = 1
        lowered = to_edge_transform_and_lower(pad_then_pool(program), partitioner=[_partitioner()])
        outside = _outside_delegate(lowered)
        buffer = lowered.to_executorch().buffer
    with quiet_executorch():  # loading the XNNPACK delegate starts the thread pool: the CPU probe's lines
        loaded = Runtime.get().load_program(buffer)
        method = loaded.load_method("forward")

    def run(x: torch.Tensor) -> Output:
        return _one_or_tuple(method.execute([x]))

    # the runtime reads the program in place: the buffer and the program must outlive the method
    return Runner("xnnpack", dtype, run, len(buffer), outside_delegate=outside, keep_alive=(buffer, loaded))


# --- onnxruntime -----------------------------------------------------------------------------------------------


def onnx_file(module: nn.Module, example_input: torch.Tensor, path: Path) -> None:
    """``torch.onnx.export`` (dynamo, opset 19) at the example input's shape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example_input,), str(path), dynamo=True, opset_version=19, external_data=False,
                          verbose=False)


def onnxruntime_session(path: Path, threads: int) -> tuple[Any, dict[str, int], int]:
    """A CPU session with full graph optimisation on ``threads`` threads; the int8 kernels in the optimised graph
    it writes, and how many activations it still dequantizes inside the graph."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # its warning that an optimised file is machine-specific: we only read it
    optimized = path.with_suffix(".opt.onnx")
    options.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(optimized)).graph
    ops = collections.Counter(node.op_type for node in graph.node)
    int8 = {op: ops[op] for op in ORT_INT8_OPS if ops[op]}
    outputs = {o.name for o in graph.output}
    constants = {i.name for i in graph.initializer}  # dequantized weights are not activations
    inner = sum(n.op_type == "DequantizeLinear" and not set(n.output) & outputs and n.input[0] not in constants
                for n in graph.node)
    return session, int8, inner


def onnxruntime_runner(module: nn.Module, example_input: torch.Tensor, dtype: str, threads: int) -> Runner:
    """Export ``module`` (a float model, or a converted PT2E graph for int8) to ONNX and open it in onnxruntime."""
    require_runtime("onnxruntime")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx_file(module, example_input, path)
        session, int8, inner = onnxruntime_session(path, threads)
        size = os.path.getsize(path)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> Output:
        return _one_or_tuple([torch.from_numpy(y) for y in session.run(None, {name: x.detach().numpy()})])

    if dtype != "int8":
        return Runner("onnxruntime", dtype, run, size)
    return Runner("onnxruntime", dtype, run, size, int8_kernels=int8, dequantized_activations=inner)


# --- one entry point -------------------------------------------------------------------------------------------


def runner(model: nn.Module, example_input: torch.Tensor, runtime: str = "xnnpack", dtype: str = "int8",
           calibration: Iterable[torch.Tensor] | None = None, backend: str | None = None,
           threads: int | None = None, quantized: Any = None) -> Runner:
    """``model`` ready to run on ``runtime`` in ``dtype`` ('fp32' or 'int8': quantized with
    ``convzoo.quantize(model, example_input, backend, calibration)``, backend defaulting to the runtime, unless
    an already ``quantized`` model is given). Inputs must have the example input's shape."""
    check_runtime(runtime, dtype)
    if quantized is not None and dtype != "int8":
        raise ValueError(f"quantized= is an int8 model but dtype={dtype!r}: give dtype='int8' to run it (or leave "
                         "quantized out to run the float model)")
    own = getattr(quantized, "backend", runtime)
    if quantized is not None and runtime != "eager" and own != runtime:
        raise ValueError(f"quantized= was made for backend {own!r}, not runtime={runtime!r}: each runtime takes "
                         f"the int8 graph of its own quantizer (convzoo.quantize(model, x, backend={runtime!r}))")
    threads = threads or torch.get_num_threads()
    with threads_for(threads):
        result = _prepare(model, example_input, runtime, dtype, calibration, backend, threads, quantized)
    result.threads = threads
    return result


def _prepare(model: nn.Module, example_input: torch.Tensor, runtime: str, dtype: str,
             calibration: Iterable[torch.Tensor] | None, backend: str | None, threads: int,
             quantized: Any) -> Runner:
    model = model.eval()
    if dtype == "int8" and quantized is None:
        from .quantize import quantize

        quantized = quantize(model, example_input, backend or runtime, calibration)
    if runtime == "eager":
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x)

        return Runner("eager", dtype, run)
    if runtime == "xnnpack":
        if dtype == "int8":
            program = quantized.export()
        else:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                program = torch.export.export(model, (example_input,))
        result = xnnpack_runner(program, dtype)
    else:
        module = quantized.module if dtype == "int8" else model
        result = onnxruntime_runner(module, example_input, dtype, threads)
    result.quantized = quantized
    return result


def quantized_notes(quantized: Any) -> list[str]:
    """The convzoo layers a quantized model keeps (partly) in floating point, one line."""
    partial = [r for r in quantized.report.layers if r.status != "int8" and r.int8_macs + r.float_macs]
    if not partial:
        return []
    return ["float layers: " + "; ".join(f"{r.name} {r.status} ({', '.join(r.float_ops)})" for r in partial)]
