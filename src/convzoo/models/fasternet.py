"""FasterNet (Chen et al. 2023, "Run, Don't Walk: Chasing Higher FLOPS for Faster Neural Networks",
https://arxiv.org/abs/2303.03667), built from ``convzoo.PartialConv2d``.

§3.3 / Fig. 4: a 4×4 stride-4 embedding conv + BN; four stages of FasterNet blocks
x + PWConv(act(BN(PWConv(PConv(x))))) (PConv 3×3 on C/4 channels, 1×1 to 2C, 1×1 back to C), each later stage
after a 2×2 stride-2 merging conv + BN doubling the channels; then global average pooling, a 1×1 conv to 1280,
the activation and a linear classifier. FasterNet-T0: C = 40, depths (1, 2, 8, 2), GELU (Table 10 / Appendix:
0.34 G FLOPs — multiply-adds — and 3.9 M params at 224²).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..layers.partial import PartialConv2d
from .arguments import positive_ints, positive_number, stage_depths


def hidden_width(model: str, channels: int, mlp_ratio: float) -> int:
    """The MLP's hidden width int(C·mlp_ratio), which must be >= 1 (0 built, then failed at the forward)."""
    mlp_ratio = positive_number(mlp_ratio, "mlp_ratio")
    hidden = int(channels * mlp_ratio)
    if hidden < 1:
        raise ValueError(f"{model}: mlp_ratio={mlp_ratio} gives a hidden width int({channels}·{mlp_ratio}) = {hidden}; "
                         f"it must be >= 1, so mlp_ratio >= 1/{channels}")
    return hidden


class FasterNetBlock(nn.Module):
    """x + PWConv₂(act(BN(PWConv₁(PConv(x))))), hidden width int(C·mlp_ratio). (N, C, H, W) → (N, C, H, W)."""

    def __init__(self, channels: int, mlp_ratio: float = 2.0, n_div: int = 4,
                 activation: Callable[[], nn.Module] = nn.GELU) -> None:
        super().__init__()
        positive_ints("FasterNetBlock", channels=channels)
        hidden = hidden_width("FasterNetBlock", channels, mlp_ratio)
        self.pconv = PartialConv2d(channels, channels, 3, bias=False, n_div=n_div)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), activation(),
                                 nn.Conv2d(hidden, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.pconv(x))


class FasterNet(nn.Module):
    """(N, C_in, H, W) → (N, num_classes): embedding (stride 4) → 4 stages (``depths`` blocks each, a stride-2
    merging conv before stages 2–4) → head."""

    def __init__(self, embed_dim: int = 40, depths: Sequence[int] = (1, 2, 8, 2), mlp_ratio: float = 2.0,
                 n_div: int = 4, feature_dim: int = 1280, num_classes: int = 1000, in_channels: int = 3,
                 activation: Callable[[], nn.Module] = nn.GELU) -> None:
        super().__init__()
        positive_ints("FasterNet", embed_dim=embed_dim, feature_dim=feature_dim, num_classes=num_classes,
                      in_channels=in_channels, n_div=n_div)
        depths = stage_depths("FasterNet", depths, 4)
        hidden_width("FasterNet", embed_dim, mlp_ratio)  # the narrowest stage's; later stages are 2×, 4×, 8× wider
        self.embed = nn.Sequential(nn.Conv2d(in_channels, embed_dim, 4, 4, bias=False), nn.BatchNorm2d(embed_dim))
        stages, channels = [], embed_dim
        for i, depth in enumerate(depths):
            layers: list[nn.Module] = []
            if i > 0:
                layers += [nn.Conv2d(channels, 2 * channels, 2, 2, bias=False), nn.BatchNorm2d(2 * channels)]
                channels *= 2
            layers += [FasterNetBlock(channels, mlp_ratio, n_div, activation) for _ in range(depth)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, feature_dim, 1, bias=False),
                                  activation(), nn.Flatten(), nn.Linear(feature_dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.embed(x)))


def fasternet_t0(num_classes: int = 1000) -> FasterNet:
    """FasterNet-T0: C = 40, depths (1, 2, 8, 2), GELU."""
    return FasterNet(40, (1, 2, 8, 2), 2.0, 4, 1280, num_classes, activation=nn.GELU)
