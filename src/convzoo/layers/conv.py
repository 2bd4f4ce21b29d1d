"""Standard convolution in 1, 2 and 3 spatial dims, as cross-correlation or as true convolution (article 001 §1–3,
003 §1.1–1.2). Dilated and grouped convolutions are this layer with particular arguments.

``ConvNd`` holds every argument, check and contract method; ``Conv1d/2d/3d`` only name their dimension and torch
class, so each IS a ``torch.nn.Conv{1,2,3}d`` (init loops, ``fuse_modules``, pruning and counters reach it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.cost import LayerCost, conv_cost, conv_output_tensor_shape
from ..functional import conv_with_pairs, flip_kernel, pad_pairs
from .base import (
    PADDING_MODES,
    Alternative,
    ConvzooLayer,
    IntOrTuple,
    Padding,
    Stage,
    check_choice,
    check_groups,
    check_input,
    check_window_fits,
    init_conv_,
    resolve_geometry,
)
from .fastpaths import depthwise_channels_last, is_channels_last, pointwise_matmul
from .form_choice import _EXPORTING

if TYPE_CHECKING:
    import numpy as np

MODES = ("correlation", "convolution")


def to_numpy(t: torch.Tensor | None) -> Any:
    """A parameter as a float64 ndarray for the oracle (None stays None)."""
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def native_conv_call(conv: ConvNd, weight: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """One ``F.conv{1,2,3}d`` with the layer's parameters (an ``F.pad`` first only when the padding is asymmetric or
    not zeros): the native form every family built from convs composes for the bench."""
    w = conv.weight if weight is None else weight
    op = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[conv.dim]
    pairs = conv.padding_pairs
    if all(lo == hi for lo, hi in pairs) and conv.padding_mode == "zeros":
        pad = tuple(lo for lo, _ in pairs)
        return lambda x: op(x, w, conv.bias, conv.stride, pad, conv.dilation, conv.groups)
    return lambda x: op(pad_pairs(x, pairs, conv.padding_mode), w, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def grouped_projection(weight: torch.Tensor, groups: int, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """What a (groups, size) conv keeps of a dense kernel W (C_out, C_in, *k): its own (C_out, C_in/g, *size)
    weight, and the dense kernel it then computes (zeros off the diagonal blocks, centred and cropped/padded)."""
    from ..conversion.kernels import dense_kernel, fit_kernel

    fitted = fit_kernel(weight, size)
    out, cin = weight.shape[:2]
    rows, cols = out // groups, cin // groups
    blocks = torch.cat([fitted[g * rows:(g + 1) * rows, g * cols:(g + 1) * cols] for g in range(groups)])
    return blocks, fit_kernel(dense_kernel(blocks, groups), tuple(weight.shape[2:]))


def _fuse_conv_bn(is_qat: bool, conv: nn.Module, bn: nn.Module) -> nn.Module:
    """Eval-mode fusion for ``torch.ao.quantization.fuse_modules``: the BatchNorm folded into a copy of the conv."""
    if is_qat:
        raise NotImplementedError(f"{type(conv).__name__}: quantization-aware fusion needs torch's own conv classes")
    return nn.utils.fusion.fuse_conv_bn_eval(conv, bn)


def _fuse_conv_bn_relu(is_qat: bool, conv: nn.Module, bn: nn.Module, relu: nn.Module) -> nn.Module:
    return nn.Sequential(_fuse_conv_bn(is_qat, conv, bn), relu)


def register_fusion(cls: type) -> None:
    """Teach ``torch.ao.quantization.fuse_modules`` (which looks fusers up by exact type) to fuse ``cls`` with the
    following BatchNorm (and ReLU). Written against torch's fuser table, a private name: if it moves, fusion of
    convzoo convs is simply not registered (the contract test says so)."""
    try:
        from torch.ao.quantization.fuser_method_mappings import _DEFAULT_OP_LIST_TO_FUSER_METHOD as table
    except ImportError:  # pragma: no cover - depends on torch's internals
        return
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[cls.dim]  # type: ignore[attr-defined]
    table[(cls, norm)] = _fuse_conv_bn
    table[(cls, norm, nn.ReLU)] = _fuse_conv_bn_relu


class ConvNd(ConvzooLayer):
    """y = b + Σ w ⋆ x over each group (``mode='correlation'``), or with the kernel flipped (``'convolution'``).

    Shapes: input (N, C_in, *S) → output (N, C_out, *O); weight (C_out, C_in/groups, *K); bias (C_out,).
    Arguments, order and defaults as ``torch.nn.Conv{1,2,3}d``; ``padding`` may also be one (before, after) pair
    per dimension. ``padding_pairs`` holds the resolved padding; ``padding`` keeps torch's meaning ('same',
    'valid' or ints) — an asymmetric padding, which torch cannot express, is stored there as the pairs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        mode: str = "correlation",
    ) -> None:
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        geometry = resolve_geometry(self.dim, kernel_size, stride, padding, dilation)
        check_choice(padding_mode, "padding_mode", PADDING_MODES)
        check_choice(mode, "mode", MODES)
        super().__init__(in_channels, out_channels, geometry.kernel_size, geometry.stride,  # type: ignore[call-arg]
                         geometry.torch_padding, geometry.dilation, groups, bias, padding_mode,
                         device=device, dtype=dtype)
        self.padding = geometry.padding
        self.padding_pairs = geometry.padding_pairs
        self.mode = mode

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if issubclass(cls, nn.modules.conv._ConvNd) and "dim" in vars(cls):  # a concrete 1/2/3-D class
            register_fusion(cls)

    def reset_parameters(self) -> None:
        init_conv_(self.weight, self.bias)

    def check_input(self, x: torch.Tensor) -> None:
        check_input(x, self.dim, self.in_channels, type(self).__name__)
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__)

    def kernel(self) -> torch.Tensor:
        """The kernel the cross-correlation uses: ``weight``, flipped in every spatial axis for ``'convolution'``."""
        return flip_kernel(self.weight) if self.mode == "convolution" else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        path = self.forward_path(x)
        pad = tuple(lo for lo, _ in self.padding_pairs)
        if path.startswith("channels_last"):
            return depthwise_channels_last(x, self.kernel(), self.bias, self.stride, pad, self.dilation)
        if path == "matmul":
            return pointwise_matmul(x, self.weight, self.bias, self.groups)
        return conv_with_pairs(x, self.kernel(), self.bias, self.stride, self.padding_pairs, self.dilation,
                               self.groups, self.padding_mode)

    def forward_path(self, x: torch.Tensor) -> str:
        """Which exact formulation ``forward`` runs on ``x`` (2-D, CPU, zero symmetric padding only; see
        ``layers/fastpaths.py``): a depthwise conv (groups = C_in > 1) with a depth multiplier m > 1 on
        channels_last data runs as a multiplier-1 conv on the input repeated m times ('channels_last ×m repeat');
        a grouped 1×1 conv (stride 1, no padding) on NCHW data as a batched matmul ('matmul'); anything else is the
        native conv. NCHW depthwise stays native: converting to channels_last and back (two transposing copies,
        ~2.4 ms each for 6.4 MB out of cache) costs as much as the slow NCHW kernel saves. A graph exported for
        deployment (torch.export, ONNX) gets the native conv: runtimes and int8 quantizers have conv kernels."""
        if x.device.type != "cpu" or self.dim != 2 or x.dim() != 4 or self.padding_mode != "zeros":
            return "native"  # the fast paths are CPU formulations; this test runs on every forward
        if _EXPORTING():
            return "native"
        if any(lo != hi for lo, hi in self.padding_pairs):
            return "native"
        nchw = not is_channels_last(x)
        m = self.out_channels // self.in_channels
        if self.groups == self.in_channels > 1 and not nchw and m > 1:
            return f"channels_last ×{m} repeat"
        pointwise = all(k == 1 for k in self.kernel_size) and all(s == 1 for s in self.stride)
        if pointwise and self.groups > 1 and nchw and all(lo == 0 for lo, _ in self.padding_pairs):
            return "matmul"
        return "native"

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs = N·prod(O)·C_out·(C_in/groups)·prod(k); elements = input + weight + bias + output."""
        out = conv_output_tensor_shape(input_shape, self.out_channels, self.kernel_size, self.stride, self.padding_pairs,
                             self.dilation)
        return conv_cost(input_shape, out, self.weight.shape, 0 if self.bias is None else self.out_channels)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        fn = ref.convolve if self.mode == "convolution" else ref.correlate
        return fn(x, to_numpy(self.weight), to_numpy(self.bias), self.stride, self.padding, self.dilation,
                  self.groups, self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        if self.mode == "convolution":
            # The same function with the kernel flipped once, outside the timed call (the layer flips per call).
            flipped = flip_kernel(self.weight).detach().requires_grad_()
            return [("native", "F.conv (pre-flipped kernel)", native_conv_call(self, flipped)),
                    ("native", "F.conv(flip(w))", lambda x: native_conv_call(self, flip_kernel(self.weight))(x))]
        return [("native", "F.conv", native_conv_call(self))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Exact when W fits the layer's kernel and groups; else the orthogonal projection onto them."""
        from ..conversion.kernels import load_, relative_frobenius_error

        blocks, effective = grouped_projection(weight, self.groups, self.kernel_size)
        load_(self.weight, blocks.flip(tuple(range(2, blocks.dim()))) if self.mode == "convolution" else blocks)
        load_(self.bias, bias)
        return relative_frobenius_error(effective, weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """r + (k_eff − 1)·j, j·s, c + ((k_eff − 1)/2 − p_before)·j with k_eff = d·(k − 1) + 1."""
        return field.window(self.kernel_size, self.stride, self.dilation, [lo for lo, _ in self.padding_pairs])

    def stages(self) -> list[Stage]:
        return [Stage("convolution" if self.mode == "convolution" else "conv", self, module=self)]

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (", mode='convolution'" if self.mode == "convolution" else "")


class Conv1d(ConvNd, nn.Conv1d):
    """1-D convolution: input (N, C_in, L)."""

    dim = 1


class Conv2d(ConvNd, nn.Conv2d):
    """2-D convolution: input (N, C_in, H, W)."""

    dim = 2


class Conv3d(ConvNd, nn.Conv3d):
    """3-D convolution: input (N, C_in, D, H, W)."""

    dim = 3
