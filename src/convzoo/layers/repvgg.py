"""The RepVGG block (Ding et al. 2021, "RepVGG: Making VGG-style ConvNets Great Again",
https://arxiv.org/abs/2101.03697).

Training time: a 3×3 conv + BN, a 1×1 conv + BN and (when C_in = C_out and stride 1) an identity + BN, summed
(eq. 1; the ReLU follows the block). Inference: the three fold into one 3×3 conv with bias (§3.3, Fig. 4), so the
deployed network is a plain VGG-style stack of 3×3 convs and ReLUs.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..geometry import IntOrTuple, Padding, expand
from .branches import BranchConvNd


class RepVGGBlockNd(BranchConvNd):
    """y = BN₁(W_{k×k} ⋆ x) + BN₂(W_{1×1} ⋆ x) + BN₀(x). Shapes: (N, C_in, *S) → (N, C_out, *O).

    Arguments as ``torch.nn.Conv*d`` (``bias`` default False: the BNs carry the shifts); ``padding`` None (the default)
    centres the window (the paper's padding 1 for 3×3); any other padding works, the 1×1 branch reading the k×k
    window's centre (cropping the input where the padding is under d·(k − 1)/2). ``identity`` (keyword): None adds
    the BN identity branch exactly when C_in = C_out, stride is 1 and the padding keeps the size (the paper's rule),
    True requires it, False leaves it out. ``fused_conv()`` gives the single k×k conv.
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
        identity: bool | None = None,
        eps: float = 1e-5,
        momentum: float = 0.1,
    ) -> None:
        super().__init__()
        kernel = expand(kernel_size, self.dim, "kernel_size")
        # ASCII names ('kxk', '1x1'): a '×' in a module path broke loading a saved torch.jit.trace (branches.py)
        branches = {"x".join(["k"] * self.dim): kernel, "x".join(["1"] * self.dim): (1,) * self.dim}
        self._build(in_channels, out_channels, branches, stride, padding, dilation, groups, bias, padding_mode, device,
                    dtype, identity, eps, momentum)


class RepVGGBlock1d(RepVGGBlockNd):
    """1-D ``RepVGGBlockNd``: input (N, C, L)."""

    dim = 1


class RepVGGBlock2d(RepVGGBlockNd):
    """2-D ``RepVGGBlockNd``: input (N, C, H, W)."""

    dim = 2


class RepVGGBlock3d(RepVGGBlockNd):
    """3-D ``RepVGGBlockNd``: input (N, C, D, H, W)."""

    dim = 3
