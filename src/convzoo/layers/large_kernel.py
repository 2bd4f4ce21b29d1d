"""Large-kernel depthwise convolution with a parallel small kernel (RepLKNet: Ding et al. 2022, "Scaling Up Your
Kernels to 31x31: Revisiting Large Kernel Design in CNNs", https://arxiv.org/abs/2203.06717).

A depthwise K×K conv (K up to 31) + BN, and in parallel a depthwise small k×k conv (5×5) + BN, summed (§3,
guideline 3: the small kernel helps optimisation); after training the small kernel is zero-padded to K×K and
merged into the large one (structural re-parameterisation), leaving one large depthwise conv.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..geometry import IntOrTuple, Padding, check_positive_int, expand
from .branches import BranchConvNd


class LargeKernelConvNd(BranchConvNd):
    """y = BN_L(W_{K×K} ⋆ x) + BN_S(W_{k×k} ⋆ x), both grouped (depthwise by default). Shapes as ``torch.nn.Conv*d``.

    ``groups`` None means ``in_channels`` (depthwise, the paper's case; then ``out_channels`` must be a multiple
    of it). ``padding`` None centres the window (K // 2 for odd K). ``small_kernel`` (keyword, default 5) must not
    exceed ``kernel_size`` per dim. ``fused_conv()`` gives the single large conv.
    """

    dim: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 31,
        stride: IntOrTuple = 1,
        padding: Padding | None = None,
        dilation: IntOrTuple = 1,
        groups: int | None = None,
        bias: bool = False,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        small_kernel: IntOrTuple = 5,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        kernel = expand(kernel_size, self.dim, "kernel_size")
        small = expand(small_kernel, self.dim, "small_kernel")
        if any(s > k for s, k in zip(small, kernel)):
            raise ValueError(f"small_kernel={small_kernel!r} must not exceed kernel_size={kernel_size!r}")
        groups = check_positive_int(in_channels, "in_channels") if groups is None else groups
        self._build(in_channels, out_channels, {"large": kernel, "small": small}, stride, padding, dilation, groups,
                    bias, padding_mode, device, dtype, False, eps, momentum)
        self.small_kernel = small

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, small_kernel={self.small_kernel}"


class LargeKernelConv1d(LargeKernelConvNd):
    """1-D ``LargeKernelConvNd``: input (N, C, L)."""

    dim = 1


class LargeKernelConv2d(LargeKernelConvNd):
    """2-D ``LargeKernelConvNd``: input (N, C, H, W)."""

    dim = 2


class LargeKernelConv3d(LargeKernelConvNd):
    """3-D ``LargeKernelConvNd``: input (N, C, D, H, W)."""

    dim = 3
