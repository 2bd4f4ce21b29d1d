"""ACNet's asymmetric convolution block (Ding et al. 2019, "ACNet: Strengthening the Kernel Skeletons for Powerful
CNN via Asymmetric Convolution Blocks", https://arxiv.org/abs/1908.03930).

A k×k conv, a 1×k conv and a k×1 conv, each followed by BatchNorm, summed (eq. 3–4). The 1×k and k×1 kernels
strengthen the kernel's "skeleton" (its central row and column); at inference the three branches fold into one
k×k conv (BN folding + branch addition, "additivity of convolution"). In 3-D the same idea takes one 1-D kernel
along each axis (k×1×1, 1×k×1, 1×1×k).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..geometry import IntOrTuple, Padding, expand
from .branches import BranchConvNd


class ACNetConvNd(BranchConvNd):
    """y = BN₁(W_{k×k} ⋆ x) + BN₂(W_{1×k} ⋆ x) + BN₃(W_{k×1} ⋆ x). Shapes: (N, C_in, *S) → (N, C_out, *O).

    Arguments as ``torch.nn.Conv*d`` (``bias`` default False: each BN has its own shift); ``padding`` None (the
    default) centres the window (d·(k − 1) in total). Any padding works: along its short axis an asymmetric branch
    reads the k×k window's centre line, so where the padding is under d·(k − 1)/2 (0, 'valid') it crops the input
    there (the paper's crop layer). ``fused_conv()`` gives the single k×k conv.
    """

    dim: ClassVar[int]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        stride: IntOrTuple = 1,
        padding: Padding | None = None,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = False,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        kernel = expand(kernel_size, self.dim, "kernel_size")
        # ASCII branch names ('kxk', 'kx1', '1xk'): TorchScript's serializer mangles '×' in a module path, so a
        # traced block saved but did not load; state dicts with the old '×' names still load (branches.py)
        branches = {"x".join(["k"] * self.dim): kernel}
        for axis in range(self.dim):
            size = tuple(k if d == axis else 1 for d, k in enumerate(kernel))
            label = "x".join("k" if d == axis else "1" for d in range(self.dim))
            branches[label] = size
        self._build(in_channels, out_channels, branches, stride, padding, dilation, groups, bias, padding_mode, device,
                    dtype, False, eps, momentum)


class ACNetConv2d(ACNetConvNd):
    """2-D ``ACNetConvNd``: input (N, C, H, W)."""

    dim = 2


class ACNetConv3d(ACNetConvNd):
    """3-D ``ACNetConvNd``: input (N, C, D, H, W)."""

    dim = 3
