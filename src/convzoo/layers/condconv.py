"""CondConv (Yang et al. 2019, "CondConv: Conditionally Parameterized Convolutions for Efficient Inference",
arXiv:1904.04971).

K expert kernels are combined per example by sigmoid routing weights (the paper's Eq. 1 and §3):
r(x) = sigmoid(GAP(x)·R) with R a (C_in → K) fully connected layer,  W(x) = Σ_k r_k(x)·W_k,
b(x) = Σ_k r_k(x)·b_k,  y = W(x) ⋆ x + b(x). Unlike dynamic convolution's softmax, the routing weights are
independent sigmoids: they need not sum to 1. The per-example kernels are applied by one batched matmul over
window patches (``patches.per_sample_conv``), so the computation and an exported graph work at any batch size.
"""

from __future__ import annotations

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
from .base import (
    Alternative,
    Attention,
    ConvzooLayer,
    Runner,
    Stage,
    geometry_repr,
    init_conv_,
    input_checked,
    planned_forward,
)
from .conv import grouped_projection
from .kernel_bank import accept_unstacked_banks, bank_view, timm_condconv_peer
from .form_choice import is_tracing
from .patches import fastest_per_sample_conv, per_sample_conv

if TYPE_CHECKING:
    import numpy as np


class Routing(nn.Module):
    """r(x) = sigmoid(fc(mean_spatial(x))): (N, C_in, *S) → (N, K), each entry in (0, 1) on its own."""

    def __init__(self, in_channels: int, num_experts: int, device=None, dtype=None) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_experts, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x.mean(dim=tuple(range(2, x.dim())))))


class CondConvNd(ConvzooLayer, nn.Module):
    """Shapes: (N, C_in, *S) → (N, C_out, *O) as ``Conv*d``; weight (K·C_out, C_in/groups, *k) — the K experts
    stacked along the first axis (``layers/kernel_bank.py``: a 2-D layer's weight is 4-D, so ``model.to(
    memory_format=torch.channels_last)`` works); ``experts`` is the (K, C_out, C_in/groups, *k) view — and bias
    (K, C_out).

    Arguments, order and defaults as ``torch.nn.Conv*d``; ``num_experts`` K (keyword-only; the paper uses 8).
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
        num_experts: int = 8,
    ) -> None:
        super().__init__()
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        self.num_experts = check_positive_int(num_experts, "num_experts")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        geometry = resolve_geometry(self.dim, kernel_size, stride, padding, dilation)
        self.kernel_size, self.stride, self.dilation = geometry.kernel_size, geometry.stride, geometry.dilation
        self.padding, self.padding_pairs = geometry.padding, geometry.padding_pairs
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(self.num_experts * out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(self.num_experts, out_channels, **factory)) if bias else None
        self.routing = Routing(in_channels, self.num_experts, **factory)
        self.reset_parameters()
        accept_unstacked_banks(self)

    @property
    def experts(self) -> torch.Tensor:
        """The K expert kernels, (K, C_out, C_in/groups, *k) (a view of ``weight``)."""
        return bank_view(self.weight, self.num_experts)

    def kernel_bank(self) -> torch.Tensor:
        return self.experts

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for k in range(self.num_experts):  # each expert initialised as an independent conv
                init_conv_(self.experts[k], None if self.bias is None else self.bias[k])
        self.routing.fc.reset_parameters()

    # rank and channels checked on the input as given (an unbatched input's error quoted the batch of one)
    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The window check and the conv's form once per key; the runner routes, combines and convolves."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        conv = per_sample_conv if is_tracing(x) else fastest_per_sample_conv  # the batch stays symbolic when traced
        stride, pairs, dilation, groups, mode = (self.stride, self.padding_pairs, self.dilation, self.groups,
                                                 self.padding_mode)

        def run(m: CondConvNd, x: torch.Tensor) -> torch.Tensor:
            weight, bias = m.combine(m._modules["routing"](x))  # type: ignore[misc]
            return conv(x, weight, bias, stride, pairs, dilation, groups, mode)

        return run

    def combine(self, routing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-example kernels (N, C_out, C_in/g, *k) and biases (N, C_out): W(x) = Σ_k r_k·W_k."""
        # each read once: a parametrized tensor is evaluated once per call, as by torch's convs
        bank, bias = bank_view(self.weight, self.num_experts), self.bias
        weight = (routing @ bank.reshape(self.num_experts, -1)).reshape(routing.shape[0], *bank.shape[1:])
        return weight, None if bias is None else routing @ bias

    def _per_sample(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.combine(self.routing(x))
        return torch.cat([conv_with_pairs(x[i:i + 1], weight[i], None if bias is None else bias[i], self.stride,
                                          self.padding_pairs, self.dilation, self.groups, self.padding_mode)
                          for i in range(x.shape[0])])

    def _batch_folded(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        weight, bias = self.combine(self.routing(x))
        y = conv_with_pairs(x.reshape(1, n * self.in_channels, *x.shape[2:]), weight.flatten(0, 1),
                            None if bias is None else bias.flatten(), self.stride, self.padding_pairs, self.dilation,
                            n * self.groups, self.padding_mode)
        return y.reshape(n, self.out_channels, *y.shape[2:])

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Routing + combination + the conv:

        - routing: GAP (N·C_in·prod(S) other ops), the FC N·C_in·K MACs, sigmoid N·K other ops;
        - combination W(x) = Σ_k r_k W_k: N·K·C_out·(C_in/g)·prod(k) MACs (weights times a routing scalar, summed;
          the bias combination N·K·C_out is other ops, as biases are not MACs);
        - the per-example conv: N·prod(O)·C_out·(C_in/g)·prod(k) MACs.
        """
        n, c, k = input_shape[0], input_shape[1], self.num_experts
        bias = 0 if self.bias is None else self.out_channels
        out = conv_output_tensor_shape(input_shape, self.out_channels, self.kernel_size, self.stride,
                                       self.padding_pairs, self.dilation)
        kernel = tuple(self.experts.shape[1:])
        gap = LayerCost(0, 0, numel(input_shape), numel(input_shape) + n * c, (n, c))
        fc = module_cost(self.routing.fc, (n, c), (n, k))
        weights = self.weight.numel() + k * bias
        combined = n * (numel(kernel) + bias)
        combination = LayerCost(weights, n * k * numel(kernel), n * k * bias, n * k + weights + combined, (n, *kernel))
        conv = LayerCost(0, conv_macs(out, kernel), 0, numel(input_shape) + combined + numel(out), out)
        return compose([gap, fc, elementwise_cost((n, k), 1), combination, conv])

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        return ref.condconv(x, to_numpy(self.experts), to_numpy(self.bias), to_numpy(self.routing.fc.weight),
                            to_numpy(self.routing.fc.bias), self.stride,
                            ref.resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation),
                            self.dilation, self.groups, self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        out: list[Alternative] = [("native", "batch-folded grouped conv", self._batch_folded),
                                  ("naive", "per-example loop", self._per_sample)]
        peer = self._timm_peer()
        if peer is not None:
            out.append(("peer", "timm CondConv2d (routing from this layer)", lambda x: peer(x, self.routing(x))))
        return out

    def _timm_peer(self) -> nn.Module | None:
        """timm's CondConv2d holding this layer's experts (2-D, symmetric zero padding); it takes the routing
        weights as an argument, which EfficientNet-CondConv computes as sigmoid(Linear(GAP(x))), as here."""
        return timm_condconv_peer(self, self.num_experts)

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Routing FC zeroed (every r_k = sigmoid(0) = ½) and every expert 2W/K: Σ_k r_k W_k = W exactly (when W
        fits kernel and groups); training then moves the routing."""
        from ..dense_kernels import load_, relative_frobenius_error

        blocks, effective = grouped_projection(weight, self.groups, self.kernel_size)
        scale = 2.0 / self.num_experts
        load_(self.weight, (blocks * scale).unsqueeze(0).expand_as(self.experts).reshape(self.weight.shape))
        load_(self.bias, None if bias is None else (bias * scale).unsqueeze(0).expand_as(self.bias))
        with torch.no_grad():
            self.routing.fc.weight.zero_()
            self.routing.fc.bias.zero_()
        return relative_frobenius_error(effective, weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The kernel's window, and a global path: the routing pools the whole input into the kernel weights, so
        every output depends on every pixel."""
        return field.window(self.kernel_size, self.stride, self.dilation,
                            [lo for lo, _ in self.padding_pairs]).also_global()

    def stages(self) -> list[Stage]:
        return [Stage(f"routing r = sigmoid(FC(GAP(x))) over K={self.num_experts} experts", self.routing, side=True,
                      module=self.routing),
                Stage("conv with the combined kernel Σ r_k W_k", self, module=self)]

    def attentions(self, values: torch.Tensor) -> list[Attention]:
        """The routing stage's (1, K) output: the weights r_k of the K experts (independent sigmoids)."""
        if values.dim() != 2 or values.shape != (1, self.num_experts):
            return []
        return [Attention("r", "kernels", values[0])]

    def extra_repr(self) -> str:
        return geometry_repr(self, {"num_experts": self.num_experts})


class CondConv1d(CondConvNd):
    """1-D ``CondConvNd``: input (N, C, L)."""

    dim = 1


class CondConv2d(CondConvNd):
    """2-D ``CondConvNd``: input (N, C, H, W)."""

    dim = 2


class CondConv3d(CondConvNd):
    """3-D ``CondConvNd``: input (N, C, D, H, W)."""

    dim = 3
