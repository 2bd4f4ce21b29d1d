"""Omni-dimensional dynamic convolution, ODConv (Li, Zhou & Yao 2022, "Omni-Dimensional Dynamic Convolution",
ICLR 2022, arXiv:2209.07947).

Four attentions computed from one squeeze of the input, z = ReLU(FC(GAP(x))), multiply into the kernel per
sample (the paper's Eq. 2):  y = (α_w1 ⊙ α_f ⊙ α_c ⊙ α_s ⊙ W_1 + … + α_wK ⊙ α_f ⊙ α_c ⊙ α_s ⊙ W_K) ⋆ x, with
α_s = sigmoid(FC_s(z)/T) over the k×k taps (spatial), α_c = sigmoid(FC_c(z)/T) over input channels,
α_f = sigmoid(FC_f(z)/T) over output channels (filters), α_w = softmax(FC_w(z)/T) over the K kernels. As in the
authors' implementation the spatial, channel and filter attentions are shared by the K kernels, and α_c / α_f are
applied to the input and the output (the same product, by linearity); the optional bias is static (not attended).
Differences from the authors' code: their squeeze FC has no bias and is followed by BatchNorm — here the FC has a
bias (an eval-mode BatchNorm folds into it) — and all four attentions are always computed (theirs skips an
attention that is constant for the configuration, e.g. α_s for 1×1 kernels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..arithmetic.cost import (LayerCost, compose, conv_macs, conv_output_tensor_shape, elementwise_cost, module_cost,
                                numel)
from ..functional import conv_with_pairs
from ..geometry import (
    PADDING_MODES,
    IntOrTuple,
    Padding,
    check_choice,
    check_groups,
    check_positive_int,
    check_window_fits,
    resolve_geometry,
)
from .base import Alternative, Attention, ConvzooLayer, Stage, geometry_repr, init_conv_, input_checked
from .conv import grouped_projection
from .dynamic import TemperatureState
from .kernel_bank import accept_unstacked_banks, bank_view
from .form_choice import is_tracing
from .patches import fastest_per_sample_conv, per_sample_conv

if TYPE_CHECKING:
    import numpy as np


class OmniAttention(TemperatureState, nn.Module):
    """z = ReLU(squeeze(GAP(x))); returns one tensor (N, C_in + C_out + prod(k) + K): α_c, α_f, α_s, α_w side by
    side (one tensor, so tools can hold the branch's output fixed); ``split`` separates them. ``temperature`` T
    (annealed as dynamic convolution's, if at all) is saved in the state dict (``TemperatureState``)."""

    def __init__(self, in_channels: int, out_channels: int, taps: int, num_kernels: int, hidden: int,
                 temperature: float, device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.temperature = temperature
        self.squeeze = nn.Linear(in_channels, hidden, **factory)
        self.channel = nn.Linear(hidden, in_channels, **factory)
        self.filter = nn.Linear(hidden, out_channels, **factory)
        self.spatial = nn.Linear(hidden, taps, **factory)
        self.kernel = nn.Linear(hidden, num_kernels, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(self.squeeze(x.mean(dim=tuple(range(2, x.dim())))))
        t = self.temperature
        return torch.cat([torch.sigmoid(self.channel(z) / t), torch.sigmoid(self.filter(z) / t),
                          torch.sigmoid(self.spatial(z) / t), torch.softmax(self.kernel(z) / t, dim=1)], dim=1)

    def split(self, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(α_c (N, C_in), α_f (N, C_out), α_s (N, prod(k)), α_w (N, K))."""
        sizes = [fc.out_features for fc in (self.channel, self.filter, self.spatial, self.kernel)]
        a_c, a_f, a_s, a_w = torch.split(attention, sizes, dim=1)
        return a_c, a_f, a_s, a_w


class ODConvNd(ConvzooLayer, nn.Module):
    """Shapes: (N, C_in, *S) → (N, C_out, *O) as ``Conv*d``; weight (K·C_out, C_in/groups, *k) — the K kernels
    stacked along the first axis (``layers/kernel_bank.py``: a 2-D layer's weight is 4-D, so ``model.to(
    memory_format=torch.channels_last)`` works); ``kernels`` is the (K, C_out, C_in/groups, *k) view — bias (C_out,).

    Arguments, order and defaults as ``torch.nn.Conv*d``; keyword-only: ``num_kernels`` K (4), ``reduction`` (the
    squeeze width is max(⌊C_in·reduction⌋, ``min_hidden``); the paper's 1/16 and 16) and ``temperature`` T.
    """

    compiles_as_op = True  # compiled on the CPU: one op running the eager forward (measured form); compiled_layer.py

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
        num_kernels: int = 4,
        reduction: float = 0.0625,
        min_hidden: int = 16,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        self.num_kernels = check_positive_int(num_kernels, "num_kernels")
        min_hidden = check_positive_int(min_hidden, "min_hidden")
        if not isinstance(reduction, (int, float)) or isinstance(reduction, bool) or not 0 < reduction <= 1:
            raise ValueError(f"reduction={reduction!r} must be a number in (0, 1] (the squeeze keeps that fraction "
                             "of the input channels)")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        geometry = resolve_geometry(self.dim, kernel_size, stride, padding, dilation)
        self.kernel_size, self.stride, self.dilation = geometry.kernel_size, geometry.stride, geometry.dilation
        self.padding, self.padding_pairs = geometry.padding, geometry.padding_pairs
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(self.num_kernels * out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        hidden = max(int(in_channels * reduction), min_hidden)
        self.attention = OmniAttention(in_channels, out_channels, math.prod(self.kernel_size), self.num_kernels,
                                       hidden, temperature, **factory)
        self.reset_parameters()
        accept_unstacked_banks(self)

    @property
    def temperature(self) -> float:
        """The attention's softmax / sigmoid temperature T (``attention.temperature``; set it here to anneal it as
        dynamic convolution's, checked as there)."""
        return self.attention.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self.attention.temperature = value

    @property
    def kernels(self) -> torch.Tensor:
        """The K kernels, (K, C_out, C_in/groups, *k) (a view of ``weight``)."""
        return bank_view(self.weight, self.num_kernels)

    def kernel_bank(self) -> torch.Tensor:
        return self.kernels

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for k in range(self.num_kernels):
                init_conv_(self.kernels[k], self.bias if k == 0 else None)
        for fc in (self.attention.squeeze, self.attention.channel, self.attention.filter, self.attention.spatial,
                   self.attention.kernel):
            fc.reset_parameters()

    @input_checked  # rank and channels on the input as given (an unbatched input's error quoted the batch of one)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        a_c, a_f, a_s, a_w = self.attention.split(self.attention(x))
        ones = (1,) * self.dim
        conv = per_sample_conv if is_tracing(x) else fastest_per_sample_conv  # the batch stays symbolic when traced
        y = conv(x * a_c.reshape(*a_c.shape, *ones), self.aggregate(a_s, a_w), None, self.stride, self.padding_pairs,
                 self.dilation, self.groups, self.padding_mode)
        y = y * a_f.reshape(*a_f.shape, *ones)
        bias = self.bias  # read once: a parametrized bias is evaluated once per call, as by torch's convs
        return y if bias is None else y + bias.reshape(-1, *ones)

    def aggregate(self, a_s: torch.Tensor, a_w: torch.Tensor) -> torch.Tensor:
        """α_s ⊙ Σ_k α_wk W_k per sample: (N, C_out, C_in/g, *k)."""
        n, taps = a_w.shape[0], a_s.shape[1]
        bank = self.kernels  # read once: a parametrized weight is evaluated once per call
        mixed = (a_w @ bank.reshape(self.num_kernels, -1)).reshape(n, self.out_channels,
                                                                   self.in_channels // self.groups, taps)
        return (mixed * a_s.reshape(n, 1, 1, taps)).reshape(n, *bank.shape[1:])

    def full_kernels(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's Eq. 2 per sample: α_f ⊙ α_c ⊙ α_s ⊙ Σ_k α_wk W_k, (N, C_out, C_in/g, *k)."""
        a_c, a_f, a_s, a_w = self.attention.split(self.attention(x))
        n, per = x.shape[0], self.in_channels // self.groups
        a_c = a_c.reshape(n, self.groups, 1, per).expand(n, self.groups, self.out_channels // self.groups, per)
        scale = a_f.unsqueeze(2) * a_c.reshape(n, self.out_channels, per)  # (N, C_out, C_in/g)
        return self.aggregate(a_s, a_w) * scale.reshape(*scale.shape, *(1,) * self.dim)

    def _per_sample(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.full_kernels(x), self.bias
        return torch.cat([conv_with_pairs(x[i:i + 1], weight[i], bias, self.stride, self.padding_pairs,
                                          self.dilation, self.groups, self.padding_mode) for i in range(x.shape[0])])

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Attention + aggregation + the conv, part by part:

        - attention: GAP (N·C_in·prod(S) other ops); squeeze FC N·C_in·h and the four heads N·h·(C_in + C_out +
          prod(k) + K) MACs; ReLU (1 op), the three sigmoid(z/T) (2 ops) and softmax(z/T) (4 ops) per element;
        - aggregation Σ_k α_wk W_k: N·K·C_out·(C_in/g)·prod(k) MACs (weights times an attention scalar); the spatial
          attention's product α_s ⊙ (…) is N·C_out·(C_in/g)·prod(k) other ops (attention × a computed kernel);
        - the channel attention on the input (N·C_in·prod(S)) and the filter attention on the output
          (N·C_out·prod(O)) are activation × activation products: other ops;
        - the conv: N·prod(O)·C_out·(C_in/g)·prod(k) MACs.
        """
        n, c, k = input_shape[0], input_shape[1], self.num_kernels
        att = self.attention
        hidden, taps = att.squeeze.out_features, math.prod(self.kernel_size)
        out = conv_output_tensor_shape(input_shape, self.out_channels, self.kernel_size, self.stride,
                                       self.padding_pairs, self.dilation)
        kernel = tuple(self.kernels.shape[1:])
        gap = LayerCost(0, 0, numel(input_shape), numel(input_shape) + n * c, (n, c))
        squeeze = module_cost(att.squeeze, (n, c), (n, hidden))
        heads = [module_cost(fc, (n, hidden), (n, fc.out_features))
                 for fc in (att.channel, att.filter, att.spatial, att.kernel)]
        activations = [elementwise_cost((n, hidden), 1), elementwise_cost((n, c + self.out_channels + taps), 2),
                       elementwise_cost((n, k), 4)]
        aggregated = n * numel(kernel)
        aggregation = LayerCost(self.weight.numel(), n * k * numel(kernel), aggregated,
                                n * (k + taps) + self.weight.numel() + aggregated, (n, *kernel))
        scale_in = elementwise_cost(input_shape, 1)
        bias = 0 if self.bias is None else self.out_channels
        conv = LayerCost(bias, conv_macs(out, kernel), numel(out), numel(input_shape) + aggregated + bias + numel(out),
                         out)
        return compose([gap, squeeze, *heads, *activations, aggregation, scale_in, conv])

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        att = self.attention
        heads = {name: (to_numpy(fc.weight), to_numpy(fc.bias)) for name, fc in
                 (("squeeze", att.squeeze), ("channel", att.channel), ("filter", att.filter),
                  ("spatial", att.spatial), ("kernel", att.kernel))}
        return ref.odconv(x, to_numpy(self.kernels), to_numpy(self.bias), heads, att.temperature, self.stride,
                          ref.resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation),
                          self.dilation, self.groups, self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        return [("naive", "per-sample loop, Eq. 2 kernel", self._per_sample)]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Attention heads zeroed: α_s = α_c = α_f = ½ and α_w = 1/K, so every kernel 8W gives
        α_f·α_c·α_s·Σ_k α_wk·8W = W exactly (when W fits kernel and groups)."""
        from ..dense_kernels import load_, relative_frobenius_error

        blocks, effective = grouped_projection(weight, self.groups, self.kernel_size)
        load_(self.weight, (8 * blocks).unsqueeze(0).expand_as(self.kernels).reshape(self.weight.shape))
        load_(self.bias, bias)
        with torch.no_grad():
            for fc in (self.attention.channel, self.attention.filter, self.attention.spatial, self.attention.kernel):
                fc.weight.zero_()
                fc.bias.zero_()
        return relative_frobenius_error(effective, weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The kernel's window, and a global path: the four attentions pool the whole input into the kernel, so
        every output depends on every pixel."""
        return field.window(self.kernel_size, self.stride, self.dilation,
                            [lo for lo, _ in self.padding_pairs]).also_global()

    def stages(self) -> list[Stage]:
        return [Stage(f"four attentions (spatial, input channel, filter, kernel over K={self.num_kernels}) from "
                      "GAP → FC → ReLU", self.attention, side=True,
                      module=self.attention),
                Stage("conv with α_f ⊙ α_c ⊙ α_s ⊙ Σ α_wk W_k", self, module=self)]

    def attentions(self, values: torch.Tensor) -> list[Attention]:
        """The side stage's (1, C_in + C_out + prod(k) + K) output as the paper's four attentions."""
        sizes = [fc.out_features for fc in (self.attention.channel, self.attention.filter, self.attention.spatial,
                                             self.attention.kernel)]
        if values.dim() != 2 or values.shape != (1, sum(sizes)):
            return []
        a_c, a_f, a_s, a_w = self.attention.split(values)
        return [Attention("α_w", "kernels", a_w[0]), Attention("α_s", "taps", a_s[0]),
                Attention("α_c", "input channels", a_c[0]), Attention("α_f", "filters", a_f[0])]

    def extra_repr(self) -> str:
        return geometry_repr(self, {"num_kernels": self.num_kernels, "temperature": self.attention.temperature})


class ODConv1d(ODConvNd):
    """1-D ``ODConvNd``: input (N, C, L)."""

    dim = 1


class ODConv2d(ODConvNd):
    """2-D ``ODConvNd``: input (N, C, H, W)."""

    dim = 2


class ODConv3d(ODConvNd):
    """3-D ``ODConvNd``: input (N, C, D, H, W)."""

    dim = 3
