"""Transposed convolution ("deconvolution"), article 001 §6.

It is the adjoint of a convolution: with C the (sparse) matrix of conv(·, w), y = Cᵀx, so
⟨conv(x, w), y⟩ = ⟨x, conv_transpose(y, w)⟩. Equivalently: insert s−1 zeros between input elements, pad
d·(k−1)−p on each side, and correlate with the flipped kernel. Output size per dim:
o = (i − 1)·s − 2p + d·(k − 1) + output_padding + 1; ``output_size=`` in ``forward`` picks output_padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, transposed_conv_macs, weight_cost
from ..arithmetic.shapes import transposed_output_size, transposed_output_sizes
from ..geometry import PADDING_MODES, IntOrTuple, check_choice, check_groups, expand
from .base import (
    Alternative,
    ConvzooLayer,
    Runner,
    Stage,
    check_input,
    check_kernel_matches_weight,
    init_conv_,
    input_checked,
    parameter_reader,
    planned,
)

if TYPE_CHECKING:
    import numpy as np

_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


_GEOMETRY = frozenset({"kernel_size", "stride", "padding", "dilation", "output_padding"})
_READY = "_convzoo_geometry_ready"


class TransposedConvNd(ConvzooLayer):
    """y = Cᵀ x per group. Shapes: input (N, C_in, *S) → (N, C_out, *O); weight (C_in, C_out/groups, *K).

    Arguments, order and defaults as ``torch.nn.ConvTranspose{1,2,3}d`` (whose subclass it is).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        output_padding: IntOrTuple = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: IntOrTuple = 1,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        kernel = expand(kernel_size, self.dim, "kernel_size")
        strides = expand(stride, self.dim, "stride")
        pads = expand(padding, self.dim, "padding", minimum=0)
        dilations = expand(dilation, self.dim, "dilation")
        extra = expand(output_padding, self.dim, "output_padding", minimum=0)
        for a, s_, d in zip(extra, strides, dilations):
            if a >= max(s_, d):
                raise ValueError(
                    f"output_padding={output_padding!r} must be smaller than max(stride, dilation)="
                    f"{max(s_, d)} in every dimension"
                )
        if check_choice(padding_mode, "padding_mode", PADDING_MODES) != "zeros":
            raise ValueError(f"padding_mode={padding_mode!r}: a transposed conv only supports 'zeros' (as torch)")
        super().__init__(in_channels, out_channels, kernel, strides, pads, extra, groups, bias,  # type: ignore[call-arg]
                         dilations, padding_mode, device=device, dtype=dtype)
        self.__dict__[_READY] = True  # from here on a geometry set is validated (a subclass's __init__ included)

    @property
    def padding_pairs(self) -> tuple[tuple[int, int], ...]:
        """(before, after) per spatial dim: the conv whose transpose this is pads p on both sides."""
        return tuple((p, p) for p in self.padding)

    def __setattr__(self, name: str, value: Any) -> None:
        """Torch reads a transposed conv's geometry at each call: setting ``stride``, ``padding``, ``dilation``,
        ``output_padding`` or ``kernel_size`` on a built one is allowed, validated and expanded to tuples as the
        constructor would."""
        if name not in _GEOMETRY or _READY not in self.__dict__:
            super().__setattr__(name, value)
            return
        given = {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                 "dilation": self.dilation, "output_padding": self.output_padding, name: value}
        minimum = {"padding": 0, "output_padding": 0}
        resolved = {key: expand(given[key], self.dim, key, **({"minimum": minimum[key]} if key in minimum else {}))
                    for key in given}
        check_kernel_matches_weight(self, resolved["kernel_size"], given["kernel_size"])
        for a, s_, d in zip(resolved["output_padding"], resolved["stride"], resolved["dilation"]):
            if a >= max(s_, d):
                raise ValueError(f"{type(self).__name__}: output_padding={resolved['output_padding']} must be smaller "
                                 f"than max(stride, dilation)={max(s_, d)} in every dimension")
        for key, value_ in resolved.items():
            super().__setattr__(key, value_)

    def reset_parameters(self) -> None:
        init_conv_(self.weight, self.bias)

    def output_sizes(self, spatial: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The smallest and largest spatial output sizes an input of size ``spatial`` allows: per dim the non-empty
        ones of o₀ + a, a = 0 … max(s, d) − 1 (``transposed_output_sizes``; o₀ itself may be < 1). ValueError when a
        dim has none."""
        choices = transposed_output_sizes(tuple(spatial), self.kernel_size, self.stride, self.padding, self.dilation)
        return tuple(min(c) for c in choices), tuple(max(c) for c in choices)  # type: ignore[union-attr]

    def _resolve_output_padding(self, spatial: Sequence[int], output_size: Sequence[int] | None) -> tuple[int, ...]:
        if output_size is None:
            return self.output_padding
        wanted = tuple(output_size)[-self.dim:]
        if len(wanted) != self.dim:
            raise ValueError(f"output_size={tuple(output_size)} must give {self.dim} spatial sizes")
        smallest, largest = self.output_sizes(spatial)
        for w, lo, hi in zip(wanted, smallest, largest):
            if not lo <= w <= hi:
                raise ValueError(
                    f"output_size={tuple(wanted)} is not reachable from input size {tuple(spatial)}: "
                    f"each size must lie between {smallest} and {largest}"
                )
        # a = o − o₀, o₀ the size at output_padding 0 (not the smallest non-empty size, which may be o₀ + a > o₀).
        return tuple(w - ((i - 1) * s - 2 * p + d * (k - 1) + 1) for w, i, k, s, p, d in
                     zip(wanted, spatial, self.kernel_size, self.stride, self.padding, self.dilation))

    @input_checked  # rank and channels on the input as given (an unbatched input's error quoted the batch of one)
    @planned
    def forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None) -> torch.Tensor:
        return self.plan_forward(x, output_size)(self, x)

    def plan_forward(self, x: torch.Tensor, output_size: Sequence[int] | None = None) -> Runner:
        """Check ``x``, resolve ``output_padding`` (from ``output_size`` when given) and the output size once; the
        runner is one native transposed conv."""
        check_input(x, self.dim, self.in_channels, type(self).__name__)
        output_padding = self._resolve_output_padding(x.shape[2:], output_size)
        # Symbolic sizes (torch.export with dynamic H/W, jit.trace): torch's own kernel checks the output size.
        if all(type(s) is int for s in x.shape[2:]):
            out = transposed_output_size(tuple(x.shape[2:]), self.kernel_size, self.stride, self.padding,
                                         output_padding, self.dilation)
            if min(out) < 1:  # type: ignore[type-var]
                raise ValueError(f"{type(self).__name__}: padding={self.padding} leaves an empty output {out} "
                                 f"for input size {tuple(x.shape[2:])}")
        op, stride, padding, groups, dilation = (_CONV_TRANSPOSE[self.dim], self.stride, self.padding, self.groups,
                                                 self.dilation)
        weight, bias = parameter_reader(self, "weight"), parameter_reader(self, "bias")
        return lambda m, x: op(x, weight(m), bias(m), stride, padding, output_padding, groups, dilation)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs = N·prod(in spatial)·C_in·(C_out/groups)·prod(k): each input element meets each tap once (the
        zeros a stride inserts are not multiplied). Output size with this layer's ``output_padding``."""
        spatial = transposed_output_size(tuple(input_shape[2:]), self.kernel_size, self.stride, self.padding,
                                         self.output_padding, self.dilation)
        out = (input_shape[0], self.out_channels, *spatial)  # type: ignore[misc]
        return weight_cost(input_shape, out, self.weight.shape, 0 if self.bias is None else self.out_channels,
                           transposed_conv_macs(input_shape, self.weight.shape))

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        return ref.transposed_conv(x, to_numpy(self.weight), to_numpy(self.bias), self.stride, self.padding,
                                   self.output_padding, self.dilation, self.groups)

    def native_alternatives(self) -> list[Alternative]:
        op = _CONV_TRANSPOSE[self.dim]
        return [("native", "F.conv_transpose", lambda x: op(x, self.weight, self.bias, self.stride, self.padding,
                                                            self.output_padding, self.groups, self.dilation))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError(f"{type(self).__name__} upsamples: it cannot take the place of a same-size convolution")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """Zeros inserted (jump j/s), then a stride-1 conv that reads only the taps landing on inputs."""
        return field.transposed(self.kernel_size, self.stride, self.dilation, self.padding)

    def stages(self) -> list[Stage]:
        return [Stage("transposed conv (scatter)", self, module=self)]


class TransposedConv1d(TransposedConvNd, nn.ConvTranspose1d):
    """1-D transposed convolution: input (N, C_in, L); see ``TransposedConvNd``."""

    dim = 1


class TransposedConv2d(TransposedConvNd, nn.ConvTranspose2d):
    """2-D transposed convolution: input (N, C_in, H, W); see ``TransposedConvNd``."""

    dim = 2


class TransposedConv3d(TransposedConvNd, nn.ConvTranspose3d):
    """3-D transposed convolution: input (N, C_in, D, H, W); see ``TransposedConvNd``."""

    dim = 3
