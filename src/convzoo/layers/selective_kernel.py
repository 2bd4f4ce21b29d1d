"""Selective kernel convolution (Li, Wang, Hu & Yang 2019, "Selective Kernel Networks", CVPR 2019,
arXiv:1903.06586).

Split: M branches with different receptive fields, U_m = ReLU(conv_m(x)) (the paper's 5×5 branch is a 3×3 conv with
dilation 2 when ``keep_3x3``). Fuse: U = Σ_m U_m, s = GAP(U), z = ReLU(FC(s)) with d = max(C/r, L) units. Select:
a_m = softmax over the branches of (A_m z), per channel, and V = Σ_m a_m ⊙ U_m (the paper's Eqs. 1–6). The paper
puts BatchNorm after each branch conv and after the squeeze FC; here the convs and the FC carry biases instead (an
eval-mode BatchNorm folds into them). Each branch sees all input channels (the paper; timm's default
``split_input=True`` gives each branch a slice of them instead).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..arithmetic.cost import LayerCost, compose, elementwise_cost, module_cost, numel
from ..geometry import IntOrTuple, check_groups, check_positive_int, check_window_fits, expand
from .base import (Alternative, Attention, ConvzooLayer, Runner, Stage, geometry_repr, input_checked,
                   planned_forward, stored)
from .conv import Conv1d, Conv2d, Conv3d, native_conv_call

if TYPE_CHECKING:
    import numpy as np

_CONV = {1: Conv1d, 2: Conv2d, 3: Conv3d}


class BranchAttention(nn.Module):
    """Fuse and select: (N, M·C, *O) branch outputs (branch-major) → (N, M·C) weights, softmax over the M branches
    of each channel: a = softmax_m(select(ReLU(squeeze(GAP(Σ_m U_m)))))."""

    def __init__(self, channels: int, branches: int, hidden: int, device=None, dtype=None) -> None:
        super().__init__()
        self.branches = branches
        self.squeeze = nn.Linear(channels, hidden, device=device, dtype=dtype)
        self.select = nn.Linear(hidden, branches * channels, device=device, dtype=dtype)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        n, c = u.shape[0], self.squeeze.in_features  # C named, not inferred: an empty batch has no elements to infer
        fused = u.reshape(n, self.branches, c, *u.shape[2:]).sum(1)
        z = torch.relu(self.squeeze(fused.mean(dim=tuple(range(2, fused.dim())))))
        return torch.softmax(self.select(z).reshape(n, self.branches, c), dim=1).flatten(1)


class BranchSelect(nn.Module):
    """Select: V = Σ_m a_m ⊙ U_m from the concatenated branch outputs (N, M·C, *O), a = ``attention(u)``."""

    def __init__(self, channels: int, branches: int, hidden: int, device=None, dtype=None) -> None:
        super().__init__()
        self.channels, self.branches = channels, branches
        self.attention = BranchAttention(channels, branches, hidden, device=device, dtype=dtype)

    def forward(self, u: torch.Tensor, hold_attention: bool = False) -> torch.Tensor:
        """``hold_attention``: the weights enter as constants (detached): the same values, but gradients (and so
        pictures) see only the per-position mix of the branches, the way tools treat a side branch."""
        if hold_attention:  # computed without autograd: none of its ops lies on a differentiated path
            with torch.no_grad():
                a = self.attention(u)
        else:
            a = self.attention(u)
        n, ones = u.shape[0], (1,) * (u.dim() - 2)
        # Accumulated branch by branch with elementwise ops on channel slices of u, so V keeps u's memory format
        # (a reduction over a branch axis would come back contiguous) and no (N, M, C, *O) product is stored.
        parts = u.split(self.channels, dim=1)  # M × (N, C, *O)
        weights = a.reshape(n, self.branches, self.channels, *ones).unbind(1)  # M × (N, C, 1, …)
        v = parts[0] * weights[0]
        for part, weight in zip(parts[1:], weights[1:]):
            v = torch.addcmul(v, part, weight)
        return v



class SelectiveKernelConvNd(ConvzooLayer, nn.Module):
    """Shapes: (N, C_in, *S) → (N, C_out, *O); O as a conv with 'same' padding at this stride.

    ``kernel_size``: the branches' kernel sizes, one odd int per branch (an int is one branch), as timm's
    ``SelectiveKernel`` reads it: (3, 5) is a 3×3 and a 5×5 branch in every dim, not a 3×5 window. The attribute
    ``kernel_sizes`` holds that list (the repr prints it) and ``kernel_size`` the envelope, the widest branch's span
    d·(k−1)+1 per dim ((5, 5) for (3, 5) with ``keep_3x3``). Each branch pads d·(k−1)/2 so all line up (``padding``
    must be 'same', as MixConv). ``groups`` applies to every branch conv (the paper uses
    ResNeXt's 32). Keyword-only: ``reduction`` r and ``min_hidden`` L (d = max(C_out // r, L); the paper's 16
    and 32), ``keep_3x3`` (a k×k branch becomes 3×3 with dilation (k−1)/2, the paper's choice).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = (3, 5),
        stride: IntOrTuple = 1,
        padding: str = "same",
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        reduction: int = 16,
        min_hidden: int = 32,
        keep_3x3: bool = True,
    ) -> None:
        super().__init__()
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        if padding != "same":
            raise ValueError(f"padding={padding!r}: every branch pads d·(k − 1)/2 so that the branches' outputs line "
                             "up; give padding='same'")
        sizes = (kernel_size,) if not isinstance(kernel_size, Sequence) else tuple(kernel_size)
        if not sizes:
            raise TypeError(f"kernel_size={kernel_size!r} must be an int or a non-empty sequence of odd ints")
        sizes = tuple(expand(k, 1, "kernel_size")[0] for k in sizes)
        if any(k % 2 == 0 for k in sizes):
            raise ValueError(f"kernel_size={kernel_size!r} must be odd: each branch is centred on its output")
        dilation = check_positive_int(dilation, "dilation")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_sizes, self.padding, self.padding_mode = sizes, padding, padding_mode
        self.stride = expand(stride, self.dim, "stride")
        self.keep_3x3 = bool(keep_3x3)
        reduction, min_hidden = check_positive_int(reduction, "reduction"), check_positive_int(min_hidden, "min_hidden")
        factory = {"device": device, "dtype": dtype}
        self.branches = nn.ModuleList()
        for k in sizes:
            kk, dd = (3, dilation * (k - 1) // 2) if keep_3x3 and k > 3 else (k, dilation)
            self.branches.append(_CONV[self.dim](in_channels, out_channels, kk, self.stride, dd * (kk - 1) // 2, dd,
                                                 groups, bias, padding_mode, **factory))
        self.kernel_size = tuple(max(b.dilation[0] * (b.kernel_size[0] - 1) + 1 for b in self.branches)
                                 for _ in range(self.dim))  # the widest branch's span
        self.fuse_select = BranchSelect(out_channels, len(sizes), max(out_channels // reduction, min_hidden),
                                        **factory)

    @property
    def attention(self) -> BranchAttention:
        return self.fuse_select.attention

    def reset_parameters(self) -> None:
        for branch in self.branches:
            branch.reset_parameters()
        self.attention.squeeze.reset_parameters()
        self.attention.select.reset_parameters()

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """Every branch ReLU(conv_m(x)), concatenated branch-major: (N, M·C_out, *O)."""
        return torch.cat([torch.relu(branch(x)) for branch in self.branches], dim=1)

    def select(self, u: torch.Tensor) -> torch.Tensor:
        """V = Σ_m a_m ⊙ U_m with a = the attention computed from these branch outputs."""
        return self.fuse_select(u)

    # rank and channels checked on the input as given (an unbatched input's error quoted the batch of one)
    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The padding check once per key, under this layer's name (a 'reflect' / 'circular' 'same' padding must fit
        inside the input, for every branch); the runner is split (the branches) and select (the attention)."""
        for branch in self.branches:
            check_window_fits(x.shape[2:], branch.kernel_size, branch.dilation, branch.padding_pairs,
                              type(self).__name__, self.padding_mode)
        return _split_select

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Branch convs (their own MACs) + ReLU (1 op per element) + fuse Σ_m U_m ((M−1) adds per output element)
        + GAP + squeeze and select FCs (MACs) + ReLU + softmax over branches (3 ops per weight) + the weighted sum
        Σ_m a_m ⊙ U_m (M multiply-accumulates per output element, of two activations: activation MACs, as
        involution's kernel × patch)."""
        n, m = input_shape[0], len(self.branches)
        parts = [branch.cost(tuple(input_shape)) for branch in self.branches]
        out = (n, self.out_channels, *parts[0].output_shape[2:])
        att = self.attention
        hidden = att.squeeze.out_features
        parts += [elementwise_cost((n, m * self.out_channels, *out[2:]), 1),
                  LayerCost(0, 0, (m - 1) * numel(out), (m + 1) * numel(out), out),
                  LayerCost(0, 0, numel(out), numel(out) + n * self.out_channels, (n, self.out_channels)),
                  module_cost(att.squeeze, (n, self.out_channels), (n, hidden)), elementwise_cost((n, hidden), 1),
                  module_cost(att.select, (n, hidden), (n, m * self.out_channels)),
                  elementwise_cost((n, m * self.out_channels), 3),
                  LayerCost(0, 0, 0, (m + 1) * numel(out) + n * m * self.out_channels, out,
                            activation_macs=m * numel(out))]
        return compose(parts, out)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        att = self.attention
        return ref.selective_kernel(
            x, [to_numpy(b.weight) for b in self.branches],
            None if self.branches[0].bias is None else [to_numpy(b.bias) for b in self.branches],
            [b.dilation for b in self.branches], to_numpy(att.squeeze.weight), to_numpy(att.squeeze.bias),
            to_numpy(att.select.weight), to_numpy(att.select.bias), self.stride, self.groups, self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        calls = [native_conv_call(b) for b in self.branches]

        def direct(x: torch.Tensor) -> torch.Tensor:
            return self.select(torch.cat([torch.relu(f(x)) for f in calls], dim=1))

        out: list[Alternative] = [("native", "F.conv per branch + attention", direct)]
        peer = self._timm_peer()
        if peer is not None:
            out.append(("peer", "timm SelectiveKernel (split_input=False, identity BatchNorms)", peer))
        return out

    def _timm_peer(self) -> nn.Module | None:
        """timm's SelectiveKernel holding this layer's weights: each branch sees all inputs (split_input=False), the
        convs' biases and the squeeze's bias are carried by its BatchNorms set to x + bias (eval, mean 0, variance
        1 − eps); timm's select FC has no bias, so only a zero select bias can be matched."""
        if self.dim != 2 or self.padding_mode != "zeros" or self.branches[0].bias is None or not self.keep_3x3:
            return None
        if any(self.attention.select.bias != 0) or any(k < 3 for k in self.kernel_sizes) or len(self.branches) < 2:
            return None
        try:
            from timm.layers import SelectiveKernel
        except ImportError:
            return None
        base = self.branches[0].dilation[0]
        peer = SelectiveKernel(self.in_channels, self.out_channels, list(self.kernel_sizes), self.stride[0], base,
                               self.groups, rd_channels=self.attention.squeeze.out_features, keep_3x3=True,
                               split_input=False)
        return load_into_timm_selective_kernel(self, peer).eval()

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError("selective_kernel cannot stand in for a plain conv: every branch ends in a ReLU and the "
                        "branches are mixed by input-dependent weights, so no parameter setting makes it linear")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """Parallel centred branches of equal stride: the widest branch's field, and a global path (the select
        attention pools the whole input, so every output depends on every pixel)."""
        return max((step(branch, field, in_shape) for branch in self.branches), key=lambda f: f.size).also_global()

    def stages(self) -> list[Stage]:
        names = " | ".join(f"{b.kernel_size[0]}×{b.kernel_size[0]} d{b.dilation[0]}" for b in self.branches)
        # The attention is the side branch (it reads the layer's input through the branches); the select step takes
        # its values held (detached: the same output; pictures then show the per-position mix of the branches).
        return [Stage("fuse + select: softmax over branches of FC(ReLU(FC(GAP(Σ_m U_m))))",
                      lambda x: self.attention(self.split(x)), side=True),
                Stage(f"split: branches {names} (conv → ReLU), concatenated", self.split),
                Stage("Σ_m a_m ⊙ U_m (per channel and position; the attention held as the side branch's values)",
                      lambda u: self.fuse_select(u, hold_attention=True))]

    def attentions(self, values: torch.Tensor) -> list[Attention]:
        """The side stage's (1, M·C) output: a_m per branch (rows, the split stage's order) and output channel."""
        m, c = len(self.branches), self.out_channels
        if values.dim() != 2 or values.shape != (1, m * c):
            return []
        return [Attention("a", "branches", values[0].reshape(m, c))]

    def extra_repr(self) -> str:
        # torch's convention (geometry_repr) with the constructor's kernel_sizes and dilation: the attribute
        # kernel_size is the widest branch's span, and keep_3x3 turns a k×k branch into a dilated 3×3
        first = self.branches[0]
        k = self.kernel_sizes[0]
        dilation = first.dilation[0] // ((k - 1) // 2) if self.keep_3x3 and k > 3 else first.dilation[0]
        return geometry_repr(self, {"kernel_size": None, "dilation": (dilation,) * self.dim,
                                    "kernel_sizes": self.kernel_sizes, "keep_3x3": self.keep_3x3},
                             bias=stored(first, "bias") is not None)


def load_into_timm_selective_kernel(layer: SelectiveKernelConvNd, peer: nn.Module) -> nn.Module:
    """Copy ``layer``'s weights into timm's SelectiveKernel ``peer``; its BatchNorms become x + (our bias)."""
    def as_bias(bn: nn.BatchNorm2d, bias: torch.Tensor) -> None:
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.fill_(1.0)
        bn.bias.copy_(bias)

    peer = peer.to(device=layer.attention.squeeze.weight.device, dtype=layer.attention.squeeze.weight.dtype)
    with torch.no_grad():
        for ours, theirs in zip(layer.branches, peer.paths):
            theirs.conv.weight.copy_(ours.weight)
            as_bias(theirs.bn, ours.bias)
        att = layer.attention
        peer.attn.fc_reduce.weight.copy_(att.squeeze.weight.reshape(peer.attn.fc_reduce.weight.shape))
        as_bias(peer.attn.bn, att.squeeze.bias)
        peer.attn.fc_select.weight.copy_(att.select.weight.reshape(peer.attn.fc_select.weight.shape))
    return peer


class SelectiveKernelConv1d(SelectiveKernelConvNd):
    """1-D ``SelectiveKernelConvNd``: input (N, C, L)."""

    dim = 1


class SelectiveKernelConv2d(SelectiveKernelConvNd):
    """2-D ``SelectiveKernelConvNd``: input (N, C, H, W)."""

    dim = 2


class SelectiveKernelConv3d(SelectiveKernelConvNd):
    """3-D ``SelectiveKernelConvNd``: input (N, C, D, H, W)."""

    dim = 3


def _split_select(m: SelectiveKernelConvNd, x: torch.Tensor) -> torch.Tensor:
    """Selective kernel's runner: the branches, then the attention's weighted sum."""
    return m.select(m.split(x))
