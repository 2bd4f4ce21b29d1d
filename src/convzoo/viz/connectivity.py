"""Connectivity of any module, derived by autograd: which input elements each output element depends on.

The Jacobian ∂y/∂x of the real module is computed block by block with one backward pass per block of output
elements: the input is replicated along the batch dimension, sample b picks output element b of the block, and
the gradient of Σ_b y[b, idx_b] with respect to the replicated input holds row idx_b of the Jacobian in sample b.
This needs only that samples of a batch do not interact (true of every convolution in eval mode), so it works on
any module, including a user's own, and on modules that vmap cannot batch (torchvision's deform_conv2d).
Parameters are redrawn at random on a copy of the module — positive, scaled by 1/fan-in — so that a
zero-initialised branch (a deformable offset conv) or a dead ReLU cannot hide a dependence and an exact zero in
the Jacobian means "does not depend". Every picture of ``convzoo.viz`` is drawn from this object.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..layers.form_choice import untimed

# Upper bound on Jacobian entries (output elements × input elements) so that one call stays fast.
MAX_ENTRIES = 2**25
# float32 is enough: with positive weights and inputs, paths cannot cancel to an exact zero.
DTYPE = torch.float32


@dataclass(frozen=True)
class Connectivity:
    """``mask[c_out, *o, c_in, *i]`` is True iff output element (c_out, *o) depends on input element (c_in, *i).

    ``input_shape`` = (C_in, *S) and ``output_shape`` = (C_out, *O), without the batch dimension.
    """

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    mask: torch.Tensor

    @property
    def spatial_dims(self) -> int:
        return len(self.input_shape) - 1

    def deps(self, out_channel: int, *position: int) -> torch.Tensor:
        """Bool (C_in, *S): the input elements that output (out_channel, *position) depends on."""
        return self.mask[(out_channel, *position)]

    def channel_taps(self, *position: int) -> torch.Tensor:
        """Int (C_out, C_in): for the output position ``position`` (default: the centre), how many input positions
        of channel c_in output channel c_out reads — 0 where a channel is not connected (groups, depthwise),
        k² for a k×k kernel, 1 for a 1×1 kernel (HetConv), k_i² per MixConv group."""
        pos = tuple(position) or self.centre()
        sub = self.mask[(slice(None), *pos)]
        return sub.flatten(2).sum(-1)

    def channel_map(self) -> torch.Tensor:
        """Bool (C_out, C_in): output channel c_out depends on input channel c_in at some position."""
        c_out, c_in = self.output_shape[0], self.input_shape[0]
        flat = self.mask.reshape(c_out, math.prod(self.output_shape[1:]), c_in, math.prod(self.input_shape[1:]))
        return flat.any(3).any(1)

    @property
    def spatial_dims_out(self) -> int:
        return len(self.output_shape) - 1

    def centre(self) -> tuple[int, ...]:
        return tuple(s // 2 for s in self.output_shape[1:])

    def spatial_deps(self, out_channel: int, *position: int) -> torch.Tensor:
        """Int (*S): number of input channels through which output (out_channel, *position) reads each position."""
        return self.deps(out_channel, *position).sum(0)

    def footprint(self, out_channel: int = 0, position: Sequence[int] | None = None) -> torch.Tensor:
        """Bool (*S): input positions read by one output element through any channel."""
        pos = tuple(position) if position is not None else self.centre()
        return self.deps(out_channel, *pos).any(0)

    def fan_in(self) -> torch.Tensor:
        """Int (C_out, *O): number of input elements each output element depends on."""
        return self.mask.flatten(1 + self.spatial_dims_out).sum(-1)


def _randomise(module: nn.Module, generator: torch.Generator) -> None:
    # Positive values on a positive input: ReLUs stay active and no two paths can cancel, so an exact zero in
    # the Jacobian means "no path". Weights are scaled by 1/fan-in so activations stay O(1): a softmax
    # (dynamic conv) does not saturate and deformable offsets stay within a pixel or two of the regular grid.
    with torch.no_grad():
        for p in module.parameters():
            value = torch.rand(p.shape, generator=generator, dtype=p.dtype) + 0.5
            fan_in = p[0].numel() if p.dim() > 1 else 10
            p.copy_(value / fan_in)


def prepare(module: nn.Module, input_shape: Sequence[int], seed: int = 0) -> nn.Module:
    """A float32 eval-mode copy of ``module`` with materialised, randomised (positive) parameters."""
    model = copy.deepcopy(module).to(DTYPE).eval()
    # Lazy modules (e.g. global depthwise) create their parameters on the first call.
    with torch.no_grad():
        model(torch.zeros(1, *input_shape, dtype=DTYPE))
    _randomise(model, torch.Generator().manual_seed(seed))
    return model


@untimed()  # every form is exact: a picture need not time them (seconds per new shape)
def connectivity(module: nn.Module | Callable[[torch.Tensor], torch.Tensor], input_shape: Sequence[int],
                 seed: int = 0, block: int = 256, randomise: bool = True) -> Connectivity:
    """Dependency sets of ``module`` on inputs of shape ``input_shape`` = (C_in, *S) (no batch dimension).

    >>> from convzoo import build
    >>> c = connectivity(build("standard", 1, 1, 3), (1, 5, 5))
    >>> c.deps(0, 2, 2)[0].int().tolist()[1]   # the centre output reads a 3×3 window
    [0, 1, 1, 1, 0]
    """
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) < 2 or min(input_shape) < 1:
        raise ValueError(f"input_shape={input_shape} must be (C_in, *spatial) with positive sizes")
    if isinstance(module, nn.Module):
        model = prepare(module, input_shape, seed) if randomise else copy.deepcopy(module).to(DTYPE).eval()
    else:
        model = module
    gen = torch.Generator().manual_seed(seed + 1)
    x0 = torch.rand(1, *input_shape, generator=gen, dtype=DTYPE) + 0.25
    with torch.no_grad():
        out_shape = tuple(model(x0).shape[1:])
    n_out, n_in = math.prod(out_shape), math.prod(input_shape)
    if n_out * n_in > MAX_ENTRIES:
        raise ValueError(f"connectivity of {n_out} outputs × {n_in} inputs is too large (max {MAX_ENTRIES} entries); "
                         f"use a smaller input_shape")
    rows = []
    for start in range(0, n_out, block):
        idx = torch.arange(start, min(start + block, n_out))
        x = x0.expand(len(idx), *input_shape).clone().requires_grad_(True)
        y = model(x).reshape(len(idx), n_out)
        picked = y.gather(1, idx[:, None]).sum()
        (grad,) = torch.autograd.grad(picked, x)
        rows.append(grad.reshape(len(idx), n_in) != 0)
    mask = torch.cat(rows).reshape(*out_shape, *input_shape)
    return Connectivity(input_shape, out_shape, mask)
