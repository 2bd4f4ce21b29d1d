"""MixConv (Tan & Le 2019, "MixConv: Mixed Depthwise Convolutional Kernels", arXiv:1907.09595;
article 003 §2.1): split the channels into groups, convolve group i with kernel_size[i] and 'same'
padding, concatenate. Depthwise per group when in_channels == out_channels (the paper's case).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..arithmetic.cost import LayerCost, compose, elementwise_cost
from ..geometry import IntOrTuple, check_choice, check_positive_int, check_window_fits, expand
from .base import (Alternative, ConvzooLayer, Runner, Stage, geometry_repr, input_checked, planned_forward,
                   refuse_arguments)
from .conv import Conv2d, grouped_projection, native_conv_call

if TYPE_CHECKING:
    import numpy as np

SPLITS = ("equal", "exponential")


def split_channels(channels: int, groups: int, split: str = "equal") -> list[int]:
    """Channel counts per group. 'equal': C // n each, the remainder to the first group.
    'exponential': group i gets ⌊C / 2^(i+1)⌋, the last group the rest (e.g. 32 → 16, 8, 8)."""
    check_choice(split, "split", SPLITS)
    if split == "equal":
        sizes = [channels // groups] * groups
        sizes[0] += channels - sum(sizes)
    else:
        sizes = [channels >> (i + 1) for i in range(groups - 1)]
        sizes.append(channels - sum(sizes))
    if min(sizes) < 1:
        raise ValueError(f"{channels} channels are too few for {groups} kernel groups with split={split!r}: {sizes}")
    return sizes


class MixConv2d(ConvzooLayer, nn.Module):
    """y = concat_i conv_{k_i}(x_i). Shapes: (N, C_in, H, W) → (N, C_out, ⌈H/s⌉, ⌈W/s⌉) for odd kernels.

    ``kernel_size`` lists the groups' kernel sizes, one int per group as timm's ``MixedConv2d`` reads it: (3, 5)
    is a 3×3 group and a 5×5 group, not a 3×5 window; an int is one group. The attribute ``kernel_sizes`` holds
    that list (the repr prints it) and ``kernel_size`` the envelope (k_max, k_max), the window the layer spans
    (its receptive field and the dense kernel it equals). Group i has ``in_splits[i]`` inputs and
    ``out_splits[i]`` outputs; its kernel is k_i×k_i with 'same' padding d·(k_i−1) (the odd element after, also
    at stride > 1), so all groups give the same output size: ``padding`` must be 'same' (the paper's rule).
    Arguments as ``torch.nn.Conv2d`` otherwise, less ``groups`` (depthwise per group when C_in = C_out, else
    dense; ``groups=`` raises a TypeError saying so): in_channels … dilation keep torch's positions, everything
    after is keyword-only, so a torch-ordered positional call cannot put its groups into ``bias``. ``split``:
    'equal' or 'exponential'.
    """

    dim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = (3, 5, 7),
        stride: IntOrTuple = 1,
        padding: str = "same",
        dilation: IntOrTuple = 1,
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        split: str = "equal",
        **unsupported: Any,
    ) -> None:
        refuse_arguments(type(self).__name__, unsupported, {
            "groups": "each kernel size's channel group is depthwise when in_channels == out_channels, else dense "
                      "(kernel_size sets the groups)"})
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        out_channels = check_positive_int(out_channels, "out_channels")
        if padding != "same":
            raise ValueError(f"padding={padding!r}: MixConv pads every group 'same' (d·(k_i − 1)), so that the "
                             "groups' outputs line up; give padding='same'")
        sizes = (kernel_size,) if isinstance(kernel_size, int) or not isinstance(kernel_size, Sequence) else kernel_size
        if not sizes:
            raise TypeError(f"kernel_size={kernel_size!r} must be an int or a non-empty sequence of ints")
        self.kernel_sizes = tuple(expand(k, 1, "kernel_size")[0] for k in sizes)
        self.kernel_size = (max(self.kernel_sizes),) * 2
        self.padding, self.padding_mode = padding, padding_mode
        self.in_channels, self.out_channels, self.split = in_channels, out_channels, split
        self.stride = expand(stride, 2, "stride")
        self.dilation = expand(dilation, 2, "dilation")
        self.in_splits = split_channels(in_channels, len(self.kernel_sizes), split)
        self.out_splits = split_channels(out_channels, len(self.kernel_sizes), split)
        self.depthwise = in_channels == out_channels
        self.convs = nn.ModuleList()
        for k, cin, cout in zip(self.kernel_sizes, self.in_splits, self.out_splits):
            totals = [d * (k - 1) for d in self.dilation]
            pairs = tuple((t // 2, t - t // 2) for t in totals)
            self.convs.append(Conv2d(cin, cout, k, self.stride, pairs, self.dilation, cin if self.depthwise else 1,
                                     bias, padding_mode, device=device, dtype=dtype))

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()

    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """The padding check once per key, under this layer's name (a 'reflect' / 'circular' 'same' padding must fit
        inside the input, for every group's kernel); the runner splits, convolves each group, concatenates."""
        for conv in self.convs:
            check_window_fits(x.shape[2:], conv.kernel_size, conv.dilation, conv.padding_pairs, type(self).__name__,
                              self.padding_mode)
        return _mixed

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """Parallel groups, all centred and equally strided, so the layer's field is the largest group's (the
        largest kernel). ``step(module, field, in_shape)`` maps one conv."""
        return max((step(conv, field, in_shape) for conv in self.convs), key=lambda f: f.size)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        weights = [to_numpy(c.weight) for c in self.convs]
        biases = None if self.convs[0].bias is None else [to_numpy(c.bias) for c in self.convs]
        if self.padding_mode != "zeros":
            import numpy as np

            parts = np.split(x, np.cumsum(self.in_splits)[:-1], axis=1)
            return np.concatenate([c.reference_output(p) for c, p in zip(self.convs, parts)], axis=1)
        return ref.mixconv(x, weights, self.in_splits, biases, self.stride, self.dilation)

    def native_alternatives(self) -> list[Alternative]:
        calls = [native_conv_call(c) for c in self.convs]
        out: list[Alternative] = [("native", "split + F.conv2d ×n + cat", lambda x: torch.cat(
            [f(p) for f, p in zip(calls, torch.split(x, self.in_splits, dim=1))], dim=1))]
        try:  # timm's MixedConv2d: the same split/cat idea (peer)
            from timm.layers import MixedConv2d
        except ImportError:
            return out
        if self.stride == (1, 1) and self.dilation == (1, 1) and self.padding_mode == "zeros":
            peer = MixedConv2d(self.in_channels, self.out_channels, list(self.kernel_sizes), padding="",
                               depthwise=self.depthwise, bias=self.convs[0].bias is not None)
            peer = peer.to(device=self.convs[0].weight.device, dtype=self.convs[0].weight.dtype)
            if [c.in_channels for c in peer.values()] == list(self.in_splits):
                with torch.no_grad():
                    for mine, theirs in zip(self.convs, peer.values()):
                        theirs.weight.copy_(mine.weight)
                        if mine.bias is not None:
                            theirs.bias.copy_(mine.bias)
                out.append(("peer", "timm MixedConv2d", peer))
        return out

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Each group keeps its diagonal block of W (its channels), centred in its own kernel size."""
        from ..dense_kernels import load_, relative_frobenius_error

        effective = torch.zeros_like(weight)
        row = col = 0
        for conv, cin, cout in zip(self.convs, self.in_splits, self.out_splits):
            block = weight[row:row + cout, col:col + cin]
            kept, block_effective = grouped_projection(block, conv.groups, conv.kernel_size)
            load_(conv.weight, kept)
            load_(conv.bias, None if bias is None else bias[row:row + cout])
            effective[row:row + cout, col:col + cin] = block_effective
            row, col = row + cout, col + cin
        return relative_frobenius_error(effective, weight)

    def stages(self) -> list[Stage]:
        """The groups run side by side; one stage that splits, convolves each group and concatenates."""
        names = " | ".join(f"{k}×{k}" for k in self.kernel_sizes)
        return [Stage(f"groups {names}", self, module=self)]

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Sum over the groups of conv MACs N·prod(O)·cout_i·(cin_i/groups_i)·k_i², + the concatenation (0 ops;
        output read and written once). The channel split is a view (free)."""
        parts = [conv.cost((input_shape[0], cin, *input_shape[2:])) for conv, cin in zip(self.convs, self.in_splits)]
        out = (input_shape[0], self.out_channels, *parts[0].output_shape[2:])
        return compose([*parts, elementwise_cost(out, 0)])

    def extra_repr(self) -> str:
        # kernel_sizes, not the envelope kernel_size: the constructor's groups (see the class docstring)
        return geometry_repr(self, {"kernel_size": None, "kernel_sizes": self.kernel_sizes, "split": self.split,
                                    "in_splits": self.in_splits,
                                    "out_splits": self.out_splits},
                             bias=getattr(self.convs[0], "bias", None) is not None)


def _mixed(m: MixConv2d, x: torch.Tensor) -> torch.Tensor:
    """MixConv's runner: concat_i conv_i(x_i), the groups' convs read from ``_modules`` (no nn.Module.__getattr__
    per call)."""
    convs = m._modules["convs"]._modules.values()  # type: ignore[union-attr]
    return torch.cat([conv(part) for conv, part in zip(convs, x.split_with_sizes(m.in_splits, 1))], dim=1)
