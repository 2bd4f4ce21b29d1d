"""Partial convolution, PConv (Chen et al. 2023, "Run, Don't Walk: Chasing Higher FLOPS for Faster Neural
Networks" — FasterNet, https://arxiv.org/abs/2303.03667, §3.1).

A regular k×k conv on the first c_p = C / n_div channels only; the other channels pass through untouched. With
n_div = 4 it has 1/16 of the MACs of a full k×k conv and 1/4 of its memory traffic (the point of the paper: fewer
memory accesses, hence higher achieved FLOPS than a depthwise conv).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ..arithmetic.cost import LayerCost, elementwise_cost
from ..geometry import IntOrTuple, Padding, check_positive_int, check_window_fits
from .base import (Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward,
                   refuse_arguments)
from .conv import Conv1d, Conv2d, Conv3d, ConvNd, native_conv_call, to_numpy

if TYPE_CHECKING:
    import numpy as np


class PartialConvNd(ConvzooLayer, nn.Module):
    """y = concat(W ⋆ x[:, :c_p] (+ b), x[:, c_p:]), c_p = C // n_div, W: (c_p, c_p, *K).
    Shapes: (N, C, *S) → (N, C, *S).

    Arguments as ``torch.nn.Conv*d`` where they mean something: ``out_channels`` must equal ``in_channels``,
    ``stride`` must be 1 and the padding must keep the size (default 'same', as FasterNet's k // 2), since the
    untouched channels are passed through as they are. No ``groups`` (the conv is dense on its c_p channels;
    ``groups=`` raises a TypeError saying so): in_channels … dilation keep torch's positions, everything after is
    keyword-only, so a torch-ordered positional call cannot put its groups into ``bias``. ``n_div`` (default 4,
    the paper's) sets c_p.
    """

    _conv: ClassVar[type[ConvNd]]
    dim: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        stride: IntOrTuple = 1,
        padding: Padding = "same",
        dilation: IntOrTuple = 1,
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        n_div: int = 4,
        **unsupported: Any,
    ) -> None:
        refuse_arguments(type(self).__name__, unsupported, {
            "groups": "its conv is dense on the first in_channels // n_div channels (use n_div)"})
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        out_channels = check_positive_int(out_channels, "out_channels")
        if out_channels != in_channels:
            raise ValueError(f"out_channels={out_channels} must equal in_channels={in_channels}: a partial conv "
                             "passes the untouched channels through")
        self.n_div = check_positive_int(n_div, "n_div")
        self.conv_channels = in_channels // self.n_div
        if self.conv_channels < 1:
            raise ValueError(f"n_div={n_div} must not exceed in_channels={in_channels} (c_p = C // n_div ≥ 1)")
        self.conv = self._conv(self.conv_channels, self.conv_channels, kernel_size, stride, padding, dilation, 1,
                               bias, padding_mode, device, dtype)
        if self.conv.stride != (1,) * self.dim:
            raise ValueError(f"stride={stride!r} must be 1: the untouched channels keep the input's size")
        for (lo, hi), k, d in zip(self.conv.padding_pairs, self.conv.kernel_size, self.conv.dilation):
            if lo + hi != d * (k - 1):
                raise ValueError(f"padding={padding!r} must keep the size (d·(k − 1) = {d * (k - 1)} in total per "
                                 "dim, e.g. 'same'): the untouched channels keep the input's size")
        self.in_channels = self.out_channels = in_channels
        self.kernel_size, self.stride, self.dilation = self.conv.kernel_size, self.conv.stride, self.conv.dilation
        self.padding, self.padding_pairs = self.conv.padding, self.conv.padding_pairs
        self.padding_mode = self.conv.padding_mode

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The padding check once per key, under this layer's name (a 'reflect' / 'circular' padding must fit
        inside the input); the runner splits, convolves the head, concatenates."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        sizes = [self.conv_channels, self.in_channels - self.conv_channels]

        def run(m: PartialConvNd, x: torch.Tensor) -> torch.Tensor:
            head, rest = torch.split(x, sizes, dim=1)
            return torch.cat([m._modules["conv"](head), rest], dim=1)  # type: ignore[misc]

        return run

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Conv MACs N·prod(S)·c_p²·prod(k) (= 1/n_div² of a full conv) + the concatenation: 0 ops, the output
        written and read once."""
        n, _, *spatial = input_shape
        return self.conv.cost((n, self.conv_channels, *spatial)) + elementwise_cost(tuple(input_shape), 0)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        return ref.partial_conv(x, to_numpy(self.conv.weight), to_numpy(self.conv.bias), self.padding,
                                self.dilation, self.conv.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        conv, c_p = native_conv_call(self.conv), self.conv_channels

        def slicing(x: torch.Tensor) -> torch.Tensor:  # FasterNet's inference form: overwrite the first c_p
            y = x.clone()
            y[:, :c_p] = conv(x[:, :c_p])
            return y

        return [("native", "split + F.conv + cat", lambda x: torch.cat([conv(x[:, :c_p]), x[:, c_p:]], dim=1)),
                ("native", "clone + slice assign (FasterNet inference)", slicing)]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError("a partial conv passes C − C/n_div channels through unchanged (a fixed identity): it cannot "
                        "take the place of a learned dense convolution")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The conv's window (the untouched channels' field is smaller and inside it)."""
        return step(self.conv, field, in_shape)

    def stages(self) -> list[Stage]:
        return [Stage(f"conv on the first {self.conv_channels} of {self.in_channels} channels, rest untouched", self,
                      module=self)]

    def extra_repr(self) -> str:
        return geometry_repr(self, {"n_div": self.n_div}, bias=getattr(self.conv, "bias", None) is not None)


class PartialConv1d(PartialConvNd):
    """1-D ``PartialConvNd``: input (N, C, L)."""

    dim, _conv = 1, Conv1d


class PartialConv2d(PartialConvNd):
    """2-D ``PartialConvNd``: input (N, C, H, W)."""

    dim, _conv = 2, Conv2d


class PartialConv3d(PartialConvNd):
    """3-D ``PartialConvNd``: input (N, C, D, H, W)."""

    dim, _conv = 3, Conv3d
