"""Channel shuffle and the shuffled grouped convolution of ShuffleNet (article 001 §11, article 003 §2.1).

A grouped conv's output group g only sees input group g; shuffling the channels afterwards hands every next
group a slice of every previous group, so information crosses groups at no multiply-add cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, elementwise_cost
from ..functional import channel_shuffle
from ..geometry import IntOrTuple, Padding, check_positive_int, check_window_fits
from .base import Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward
from .form_choice import FormChoice, is_tracing
from .conv import Conv1d, Conv2d, Conv3d, ConvNd, grouped_projection, native_conv_call

if TYPE_CHECKING:
    import numpy as np

# (groups, input shape / format / device / dtype, backward) → the faster of the two exact shuffles on this machine
_CHOICE = FormChoice("ChannelShuffle", prefer="F.channel_shuffle", margin=0.03)


class ChannelShuffle(ConvzooLayer, nn.Module):
    """Permute channels as (groups, C/groups) → (C/groups, groups): output i = input (i mod g)·C/g + ⌊i/g⌋.

    Same permutation as ``torch.nn.ChannelShuffle``; input (N, C, *S) with 1–3 spatial dims, same shape out.
    """

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = check_positive_int(groups, "groups")

    forward = planned_forward

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """Check ``x`` once per key. Eager inputs run the faster of two exact forms, timed on this machine once per
        key (``FormChoice``): torch's own ``F.channel_shuffle`` (one native op) and the view / transpose / copy
        formulation (``functional.channel_shuffle``, channels-last kept); traced ones the latter, which every
        exporter knows."""
        if not 3 <= x.dim() <= 5:
            raise ValueError(f"ChannelShuffle expects (N, C, L), (N, C, H, W) or (N, C, D, H, W), got shape {tuple(x.shape)}")
        if is_tracing(x):
            return lambda m, x: channel_shuffle(x, m.groups)
        if x.shape[1] % self.groups:
            raise ValueError(f"groups={self.groups} must divide the number of channels {x.shape[1]}")
        groups = self.groups
        forms: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "F.channel_shuffle": lambda t: F.channel_shuffle(t, groups),
            "view_transpose": lambda t: channel_shuffle(t, groups)}
        form = forms[_CHOICE.for_input(("ChannelShuffle", groups), x, lambda: forms, [])]
        return lambda m, x: form(x)

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """A permutation: 0 MACs, 0 ops; the tensor is read and written once."""
        return elementwise_cost(tuple(input_shape), 0)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        return ref.channel_shuffle(x, self.groups)

    def native_alternatives(self) -> list[Alternative]:
        return [("native", "F.channel_shuffle", lambda x: F.channel_shuffle(x, self.groups))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError("ChannelShuffle has no weights: it cannot take the place of a convolution")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        return field  # a permutation of channels: space is untouched

    def stages(self) -> list[Stage]:
        return [Stage("channel shuffle", self, module=self)]

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ShuffledGroupedConvNd(ConvzooLayer, nn.Module):
    """A grouped conv (``groups`` groups), then a channel shuffle with the same number of groups.

    Shapes: (N, C_in, *S) → (N, C_out, *O); parameters ``conv.weight`` (C_out, C_in/groups, *K), ``conv.bias``.
    Arguments as ``torch.nn.Conv*d``.
    """

    _conv: ClassVar[type[ConvNd]]

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
    ) -> None:
        super().__init__()
        self.conv = self._conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                               padding_mode, device, dtype)
        self.shuffle = ChannelShuffle(self.conv.groups)
        self.in_channels, self.out_channels, self.groups = self.conv.in_channels, self.conv.out_channels, self.conv.groups

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check once per key, under this layer's name (the grouped conv's would name a Conv*d); the
        runner is the conv and the shuffle."""
        conv = self.conv
        check_window_fits(x.shape[2:], conv.kernel_size, conv.dilation, conv.padding_pairs, type(self).__name__,
                          conv.padding_mode)
        return _shuffled_grouped_run

    def extra_repr(self) -> str:
        return geometry_repr(self, source=self.conv)

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Grouped conv (MACs N·prod(O)·C_out·(C_in/g)·prod(k)) + the shuffle: 0 ops, its output read and written."""
        conv = self.conv.cost(input_shape)
        return conv + elementwise_cost(conv.output_shape, 0)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        return ref.channel_shuffle(self.conv.reference_output(x), self.groups)

    def native_alternatives(self) -> list[Alternative]:
        conv = native_conv_call(self.conv)
        return [("native", "F.conv + F.channel_shuffle", lambda x: F.channel_shuffle(conv(x), self.groups))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Output i is conv channel (i mod g)·(C/g) + ⌊i/g⌋: give that conv channel W's row i, then project onto
        the groups (exact when W is block-diagonal in the shuffled order)."""
        from ..dense_kernels import load_, relative_frobenius_error

        g, c = self.groups, self.out_channels
        order = torch.arange(c)
        source = (order % g) * (c // g) + order // g
        inverse = torch.empty_like(source)
        inverse[source] = order
        blocks, effective = grouped_projection(weight[inverse], g, self.conv.kernel_size)
        load_(self.conv.weight, blocks)
        load_(self.conv.bias, None if bias is None else bias[inverse])
        return relative_frobenius_error(effective[source], weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        return step(self.conv, field, in_shape)

    def stages(self) -> list[Stage]:
        return [Stage(f"grouped conv (g={self.groups})", self.conv, module=self.conv),
                Stage("channel shuffle", self.shuffle, module=self.shuffle)]


class ShuffledGroupedConv1d(ShuffledGroupedConvNd):
    """1-D shuffled grouped convolution: input (N, C_in, L); see ``ShuffledGroupedConvNd``."""

    dim, _conv = 1, Conv1d


class ShuffledGroupedConv2d(ShuffledGroupedConvNd):
    """2-D shuffled grouped convolution: input (N, C_in, H, W); see ``ShuffledGroupedConvNd``."""

    dim, _conv = 2, Conv2d


class ShuffledGroupedConv3d(ShuffledGroupedConvNd):
    """3-D shuffled grouped convolution: input (N, C_in, D, H, W); see ``ShuffledGroupedConvNd``."""

    dim, _conv = 3, Conv3d


def _shuffled_grouped_run(m: ShuffledGroupedConvNd, x: torch.Tensor) -> torch.Tensor:
    modules = m._modules  # dict look-ups, not nn.Module.__getattr__: this runs every call
    return modules["shuffle"](modules["conv"](x))  # type: ignore[misc]
