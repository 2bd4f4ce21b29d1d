"""DCNv3, the core operator of InternImage (Wang et al. 2023, "InternImage: Exploring Large-Scale Vision Foundation
Models with Deformable Convolutions", CVPR 2023, arXiv:2211.05778), as a pure-PyTorch op (``F.grid_sample``).

The paper's Eq. 4: y(p₀) = Σ_g Σ_k m_gk · w_g · x_g(p₀ + p_k + Δp_gk). The input is first projected (w, shared by
every point: ``input_proj``), split into G groups of C/G channels; each group has its own offsets Δp_gk and
modulation scalars m_gk for the K = k×k points, normalised by a softmax over the K points (sum 1). Offsets and
masks are predicted from the input by a depthwise k×k conv → LayerNorm → GELU → linear, as in the authors' code;
the sum is followed by an output projection. Sampling is bilinear with zeros outside the (zero-padded) input.
Points are in row-major order with offsets given as (Δx, Δy) pairs; sampling location for point (u, v) at output
(i, j): (j + d·(k−1)/2 + s_o·((v − (k−1)/2)·d + Δx), i + … likewise), s_o = ``offset_scale`` (the authors' code
scales the grid and the offsets by it; 1.0 by default). Offsets start at zero and masks uniform (1/K), as theirs.

The sum over points has two exact forms: 'grid_sample' (one ``F.grid_sample`` over every group's K points, then the
masked sum) and, on the CPU in fp32 / fp64, 'kernel' (convzoo's numba kernel, ``convzoo.kernels.dcnv3_cpu``: each
position's K bilinear reads summed per group in one pass on the channels-last data, no per-point sample tensor).
``implementation='auto'`` (the default) times both once per process per layer configuration and input (shape,
dtype, whether a backward follows) and keeps the faster (``_CHOICE``, a ``form_choice.FormChoice``); under tracing,
compile, export or autocast it runs 'grid_sample'. Where numba cannot be imported or the kernel does not compile,
'grid_sample' runs and one warning names the cause.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, compose, elementwise_cost, numel
from ..geometry import IntOrTuple, check_choice, check_groups, check_positive_int, check_window_fits, expand
from ..kernels.bilinear_sample import bilinear_sample
from .base import (
    Alternative,
    ConvzooLayer,
    Stage,
    geometry_repr,
    input_checked,
    stored,
    zero_started_weight_checked,
)

from . import triton_forms
from .form_choice import FormChoice, input_key, is_tracing, kernel_ready

if TYPE_CHECKING:
    import numpy as np

IMPLEMENTATIONS = ("auto", "grid_sample", "kernel", triton_forms.TRITON)
# (configuration, input shape / format / device / dtype, backward) → 'grid_sample', 'kernel' (numba) or 'triton'
_CHOICE = FormChoice("DCNv3Conv2d", prefer="grid_sample", margin=0.03)
_KERNEL_DTYPES = (torch.float32, torch.float64)


class OffsetMaskBranch(nn.Module):
    """(N, C, H, W) → (N, 3·G·K, H, W): offsets (Δx, Δy per point, group-major) then softmax masks over the K points."""

    def __init__(self, channels: int, groups: int, kernel_size: tuple[int, int], dilation: tuple[int, int],
                 device=None, dtype=None) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.groups, self.points = groups, math.prod(kernel_size)
        pad = tuple(d * (k - 1) // 2 for k, d in zip(kernel_size, dilation))
        self.depthwise = nn.Conv2d(channels, channels, kernel_size, 1, pad, dilation, groups=channels, **factory)
        self.norm = nn.LayerNorm(channels, eps=1e-6, **factory)
        self.offset = nn.Linear(channels, groups * self.points * 2, **factory)
        self.mask = nn.Linear(channels, groups * self.points, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.norm(self.depthwise(x).permute(0, 2, 3, 1)))  # (N, H, W, C)
        n, hh, ww = h.shape[:3]
        mask = torch.softmax(self.mask(h).reshape(n, hh, ww, self.groups, self.points), dim=-1).flatten(3)
        return torch.cat([self.offset(h), mask], dim=-1).permute(0, 3, 1, 2)


class DCNv3Conv2d(ConvzooLayer, nn.Module):
    """Shapes: (N, C_in, H, W) → (N, C_out, H, W) (stride 1, 'same' padding d·(k−1)/2, odd k: the InternImage
    operator). Arguments in ``torch.nn.Conv2d``'s order: ``groups`` is DCNv3's G (C_in/G channels share offsets and
    masks), ``bias`` the projections'. Keyword-only ``offset_scale``."""

    compiles_as_op = True  # compiled on the CPU: one op running the eager forward (its kernel); compiled_layer.py

    dim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple = 3,
        stride: IntOrTuple = 1,
        padding: str = "same",
        dilation: IntOrTuple = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        offset_scale: float = 1.0,
    ) -> None:
        super().__init__()
        in_channels, _, groups = check_groups(in_channels, in_channels, groups)
        out_channels = check_positive_int(out_channels, "out_channels")
        self.kernel_size = expand(kernel_size, 2, "kernel_size")
        if any(k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size={kernel_size!r} must be odd: the sampling grid is centred on each output")
        self.stride = expand(stride, 2, "stride")
        if self.stride != (1, 1):
            raise ValueError(f"stride={stride!r} must be 1: DCNv3 predicts offsets at every input position (InternImage "
                             "downsamples with separate convs)")
        if padding != "same":
            raise ValueError(f"padding={padding!r}: DCNv3 pads d·(k − 1)/2 so that the grid is centred; give 'same'")
        self.padding_mode = check_choice(padding_mode, "padding_mode", ("zeros",))
        self.dilation = expand(dilation, 2, "dilation")
        # inf scales a zero offset to inf·0 = NaN sampling positions: finite, as the dynamic families' temperature
        if (not isinstance(offset_scale, (int, float)) or isinstance(offset_scale, bool)
                or not math.isfinite(offset_scale) or not offset_scale > 0):
            raise ValueError(f"offset_scale={offset_scale!r} must be a positive finite number")
        self.offset_scale = float(offset_scale)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.padding = padding
        self.padding_pairs = tuple((d * (k - 1) // 2,) * 2 for k, d in zip(self.kernel_size, self.dilation))
        factory = {"device": device, "dtype": dtype}
        self.input_proj = nn.Linear(in_channels, in_channels, bias=bias, **factory)
        self.branch = OffsetMaskBranch(in_channels, groups, self.kernel_size, self.dilation, **factory)
        self.output_proj = nn.Linear(in_channels, out_channels, bias=bias, **factory)
        self.implementation = "auto"  # or "grid_sample" / "kernel": see the module docstring
        self.reset_parameters()

    @property
    def points(self) -> int:
        return math.prod(self.kernel_size)

    def reset_parameters(self) -> None:
        for linear in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
        self.branch.depthwise.reset_parameters()
        self.branch.norm.reset_parameters()
        for linear in (self.branch.offset, self.branch.mask):  # regular grid and uniform masks at the start
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def locations(self, fields: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling locations in padded-input pixel coordinates, (N, G, H, W, K, 2) as (x, y), and masks
        (N, G, H, W, K), from the branch's output (N, 3·G·K, H, W)."""
        n, _, h, w = fields.shape
        g, k = self.groups, self.points
        offsets = fields[:, :2 * g * k].permute(0, 2, 3, 1).reshape(n, h, w, g, k, 2).permute(0, 3, 1, 2, 4, 5)
        masks = fields[:, 2 * g * k:].permute(0, 2, 3, 1).reshape(n, h, w, g, k).permute(0, 3, 1, 2, 4)
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        dtype, device = fields.dtype, fields.device
        ty = (torch.arange(kh, dtype=dtype, device=device) - (kh - 1) / 2) * dh
        tx = (torch.arange(kw, dtype=dtype, device=device) - (kw - 1) / 2) * dw
        grid = torch.stack([tx.repeat(kh), ty.repeat_interleave(kw)], dim=-1)  # (K, 2) as (x, y), row-major points
        cy = torch.arange(h, dtype=dtype, device=device) + dh * (kh - 1) / 2
        cx = torch.arange(w, dtype=dtype, device=device) + dw * (kw - 1) / 2
        centres = torch.stack([cx.reshape(1, w).expand(h, w), cy.reshape(h, 1).expand(h, w)], dim=-1)
        where = centres.reshape(1, 1, h, w, 1, 2) + self.offset_scale * (grid.reshape(1, 1, 1, 1, k, 2) + offsets)
        return where, masks

    def project_in(self, x: torch.Tensor) -> torch.Tensor:
        """The input projection w, one C×C linear at every pixel: (N, C, H, W) → (N, C, H, W)."""
        return self.input_proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def project_out(self, x: torch.Tensor) -> torch.Tensor:
        """The output projection, C → C_out at every pixel."""
        return self.output_proj(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def sample(self, projected: torch.Tensor, fields: torch.Tensor,
               point_weight: torch.Tensor | None = None) -> torch.Tensor:
        """y_c(p) = Σ_k m_gk(p) · x_c(p + p_k + Δp_gk(p)) by bilinear sampling (``grid_sample``), c in group g; the
        sum weighted by ``point_weight`` (C, K) when given. (N, C, H, W) → (N, C, H, W)."""
        n, c, h, w = projected.shape
        g, k = self.groups, self.points
        (ph, _), (pw, _) = self.padding_pairs
        padded = F.pad(projected, (pw, pw, ph, ph))
        hp, wp = padded.shape[2:]
        # float16 / bfloat16 fields (a .half() / .bfloat16() layer, or the branch's linears under autocast) give
        # locations in float32: in their own precision they would sample up to a quarter pixel off on a 56-pixel map.
        where, masks = self.locations(fields.float() if fields.dtype in (torch.float16, torch.bfloat16) else fields)
        # Read by grid_sample (``bilinear_sample``: at integer positions, where every point starts, the positions'
        # derivative is the one from the right, as convzoo's kernels give it; half images are read in float32).
        sampled = bilinear_sample(padded.reshape(n * g, c // g, hp, wp), where[..., 1].reshape(n * g, h, w * k),
                                  where[..., 0].reshape(n * g, h, w * k), sanitize=False)
        weights = masks.unsqueeze(2)  # (N, G, 1, H, W, K)
        if point_weight is not None:
            weights = weights * point_weight.reshape(1, g, c // g, 1, 1, k)
        mixed = (sampled.reshape(n, g, c // g, h, w, k) * weights).sum(-1).reshape(n, c, h, w)
        # half fields' masks are float32: the sum comes back in the samples' dtype (no cast, no graph node, else)
        return mixed if mixed.dtype == sampled.dtype else mixed.to(sampled.dtype)

    def _kernel_sample(self, projected: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """``sample`` by convzoo's CPU kernel, on the channels-last data the projections and the branch produce."""
        from ..kernels.dcnv3_cpu import dcnv3_sample

        mixed = dcnv3_sample(projected.permute(0, 2, 3, 1), fields.permute(0, 2, 3, 1), self.kernel_size,
                             self.dilation, self.offset_scale)
        return mixed.permute(0, 3, 1, 2)

    def _kernel_runs(self, projected: torch.Tensor, fields: torch.Tensor) -> bool:
        """convzoo's CPU kernel applies: CPU fp32 / fp64 tensors of one dtype, no autocast (it compiles on the first
        call)."""
        if (projected.device.type != "cpu" or projected.dtype not in _KERNEL_DTYPES or fields.dtype != projected.dtype
                or torch.is_autocast_enabled("cpu")):
            return False
        return kernel_ready("dcnv3_cpu", projected.dtype, type(self).__name__)

    def sample_points(self, projected: torch.Tensor, fields: torch.Tensor,
                      implementation: str | None = None) -> torch.Tensor:
        """Σ_k m_gk · x_g(p + p_k + Δp_gk), (N, C, H, W) → (N, C, H, W), by ``implementation`` ('grid_sample',
        'kernel' (numba, CPU), 'triton' (CUDA); default: the layer's, 'auto' = the fastest measured for this
        configuration and input, once per process)."""
        choice = check_choice(implementation or self.implementation, "implementation", IMPLEMENTATIONS)
        if choice == "grid_sample" or is_tracing(projected):
            return self.sample(projected, fields)
        forms: dict[str, Any] = {"grid_sample": self.sample}
        if self._kernel_runs(projected, fields):
            forms["kernel"] = self._kernel_sample
        if triton_forms.offered(projected, "DCNv3"):
            forms[triton_forms.TRITON] = self._triton_sample
        if choice != "auto":
            if choice in forms:
                return forms[choice](projected, fields)
            if choice == "kernel" and (projected.device.type != "cpu" or projected.dtype not in _KERNEL_DTYPES):
                raise ValueError(f"implementation='kernel' runs on CPU float32 / float64 inputs, got "
                                 f"{projected.device.type} {projected.dtype}; use 'auto' or 'grid_sample'")
            if choice == triton_forms.TRITON:
                raise ValueError(f"implementation='triton' runs where Triton does (CUDA inputs), got a "
                                 f"{projected.device.type} input; use 'auto' or 'grid_sample'")
            return self.sample(projected, fields)  # numba missing or no compile (warned once), or autocast
        if len(forms) == 1:
            return self.sample(projected, fields)
        name = triton_forms.fastest(_CHOICE, self._choice_config(), projected, forms, (projected, fields), "DCNv3")
        return forms[name](projected, fields)

    def _choice_config(self) -> tuple[Any, ...]:
        return (type(self).__name__, self.in_channels, self.kernel_size, self.dilation, self.groups, self.offset_scale)

    def aggregate(self, x: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """input_proj → Σ_k m_gk · x_g(location) by bilinear sampling → output_proj."""
        return self.project_out(self.sample_points(self.project_in(x), fields))

    def _triton_sample(self, projected: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        """``sample`` by convzoo's Triton kernel (``kernels/triton_dcnv3.py``)."""
        from ..kernels.triton_dcnv3 import dcnv3_sample

        return dcnv3_sample(projected, fields, self.groups, self.kernel_size, self.dilation, self.offset_scale)

    def forward_path(self, x: torch.Tensor) -> str:
        """How a forward without gradients sums the points for ``x``: the layer's ``implementation``, or for
        'auto' the form measured faster for this configuration and input (once per process)."""
        if self.implementation != "auto":
            return self.implementation
        with torch.no_grad():
            projected = self.project_in(x)  # the sampling's input, whose layout the choice is keyed on
        choice = _CHOICE.get((self._choice_config(), *input_key(projected, False)))
        return f"auto: {choice}" if choice else "auto (not measured yet)"

    @input_checked  # rank and channels on the input as given (an unbatched input's error quoted the batch of one)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        why = "the sampling starts on the regular grid with equal masks"
        with zero_started_weight_checked(self.branch.offset, "branch.offset", "DCNv3Conv2d", why), \
                zero_started_weight_checked(self.branch.mask, "branch.mask", "DCNv3Conv2d", why):
            return self.aggregate(x, self.branch(x))

    def _torchvision(self, x: torch.Tensor) -> torch.Tensor:
        """The same aggregation as a torchvision deform_conv2d with a depthwise all-ones kernel: offset groups G,
        the softmax masks as v2 masks, offsets = location − regular grid point, as (Δy, Δx)."""
        from torchvision.ops import deform_conv2d

        fields = self.branch(x)
        n, c, h, w = x.shape
        where, masks = self.locations(fields)  # (N, G, H, W, K, 2)
        (kh, kw), (dh, dw) = self.kernel_size, self.dilation
        ry = (torch.arange(kh, dtype=x.dtype) * dh).repeat_interleave(kw)
        rx = (torch.arange(kw, dtype=x.dtype) * dw).repeat(kh)
        base_y = torch.arange(h, dtype=x.dtype).reshape(h, 1, 1) + ry
        base_x = torch.arange(w, dtype=x.dtype).reshape(1, w, 1) + rx
        dy, dx = where[..., 1] - base_y, where[..., 0] - base_x  # (N, G, H, W, K)
        offset = torch.stack([dy, dx], dim=-1).permute(0, 1, 4, 5, 2, 3).reshape(n, -1, h, w)
        mask = masks.permute(0, 1, 4, 2, 3).reshape(n, -1, h, w)
        projected = self.project_in(x)
        ones = torch.ones(c, 1, kh, kw, dtype=x.dtype, device=x.device)
        mixed = deform_conv2d(projected, offset, ones, None, 1, (self.padding_pairs[0][0], self.padding_pairs[1][0]),
                              self.dilation, mask)
        return self.project_out(mixed)

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs (weights): input projection P·C², depthwise conv P·C·k², offset and mask linears P·C·3GK, output
        projection P·C·C_out (P = N·H·W). Activation MACs: the aggregation Σ_k m_gk · x_g(p + p_k + Δp_gk), P·C·K
        mask × sampled value products summed over the K points (activation × activation, not weight MACs). Other
        ops: LayerNorm 4 and GELU 1 per element, softmax 3 per mask, bilinear sampling 4 multiply-adds per sampled
        value (P·C·K values)."""
        n, c, h, w = input_shape
        positions, k, g = n * h * w, self.points, self.groups
        out = (n, self.out_channels, h, w)
        plane = (n, c, h, w)
        b = self.branch

        def linear(m: nn.Linear, cin: int, cout: int) -> LayerCost:
            params = sum(p.numel() for p in m.parameters())
            return LayerCost(params, positions * cin * cout, 0, positions * (cin + cout) + params,
                             (n, cout, h, w))

        dw_params = sum(p.numel() for p in b.depthwise.parameters())
        parts = [linear(self.input_proj, c, c),
                 LayerCost(dw_params, positions * c * k, 0, 2 * numel(plane) + dw_params, plane),
                 LayerCost(2 * c, 0, 4 * numel(plane), 2 * numel(plane) + 2 * c, plane),
                 elementwise_cost(plane, 1),
                 linear(b.offset, c, 2 * g * k), linear(b.mask, c, g * k), elementwise_cost((n, g * k, h, w), 3),
                 LayerCost(0, 0, 4 * positions * c * k, numel(plane) + 3 * positions * g * k + numel(plane), plane,
                           activation_macs=positions * c * k),
                 linear(self.output_proj, c, self.out_channels)]
        return compose(parts, out)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        b = self.branch
        return ref.dcnv3(x, to_numpy(self.input_proj.weight), to_numpy(self.input_proj.bias),
                         to_numpy(b.depthwise.weight), to_numpy(b.depthwise.bias), to_numpy(b.norm.weight),
                         to_numpy(b.norm.bias), b.norm.eps, to_numpy(b.offset.weight), to_numpy(b.offset.bias),
                         to_numpy(b.mask.weight), to_numpy(b.mask.bias), to_numpy(self.output_proj.weight),
                         to_numpy(self.output_proj.bias), self.groups, self.kernel_size, self.dilation,
                         self.offset_scale)

    def native_alternatives(self) -> list[Alternative]:
        return [("native", "torchvision deform_conv2d (depthwise ones kernel, G offset groups)", self._torchvision)]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError("dcnv3 cannot stand in for a dense conv: its K points share one projection and are mixed by "
                        "softmax masks that sum to 1 per group, so it has no per-tap, per-channel-pair kernel")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The nominal (zero-offset) grid: learned offsets can move every point anywhere."""
        return field.window(self.kernel_size, (1, 1), self.dilation, [lo for lo, _ in self.padding_pairs])

    def stages(self) -> list[Stage]:
        """Branch (side) → input proj → per-group sampling → output proj. The branch's values, computed from the
        layer's input by the input-proj stage, are held for the sampling stage (``PointSampling``), so that stage
        reads only its group's points on each channel."""
        held: dict[str, torch.Tensor] = {}

        def project(x: torch.Tensor) -> torch.Tensor:
            held["fields"] = self.branch(x).detach()
            return self.project_in(x)

        sampler = PointSampling(self, held)
        return [Stage(f"offsets and softmax masks for G={self.groups} groups × K={self.points} points "
                      "(depthwise conv → LayerNorm → GELU → linear)", self.branch, side=True, module=self.branch),
                Stage("input proj: one C×C linear at every pixel, shared by all points", project),
                Stage("sampling: Σ_k m_gk · x_c(p + p_k + Δp_gk), bilinear; channel c in group g", sampler,
                      module=sampler),
                Stage("output proj: C → C_out at every pixel", self.project_out)]

    def extra_repr(self) -> str:
        # bias is the projections' (stored: a parametrized bias is not evaluated for a repr)
        return geometry_repr(self, {"offset_scale": self.offset_scale},
                             bias=stored(self.input_proj, "bias") is not None)


def _held(held: dict[str, torch.Tensor], batch: int) -> torch.Tensor:
    """The held branch values for a batch of ``batch``: as computed, or — when they came from copies of one
    input (a picture's Jacobian rows) — the first sample's, repeated."""
    fields = held["fields"]
    return fields if fields.shape[0] == batch else fields[:1].expand(batch, *fields.shape[1:])


def _centred(values: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Held values (N, ·, H, W) at the centre of a map of ``size`` (the output of an input a picture extended past
    its edge by zeros on every side, ``viz.taps.extended_rows``; DCNv3's output has its input's size), zeros
    around: the outputs of the input's own cells keep their values, the others read nothing held."""
    grow = [a - b for a, b in zip(size, values.shape[-2:])]
    if not any(grow):
        return values
    return F.pad(values, [grow[1] // 2, grow[1] - grow[1] // 2, grow[0] // 2, grow[0] - grow[0] // 2])


class HeldOffsets(nn.Module):
    """The offsets Δp of the held branch values, (N, 2·G·K, H, W): a side stage (zero → the regular grid)."""

    def __init__(self, held: dict[str, torch.Tensor], count: int) -> None:
        super().__init__()
        self.held, self.count = held, count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _centred(_held(self.held, x.shape[0])[:, :self.count], x.shape[-2:])


class PointSampling(nn.Module):
    """DCNv3's sampling step alone, for pictures: y_c(p) = Σ_k w_ck · m_gk(p) · x_c(p + p_k + Δp_gk(p)) with the
    branch's values held. w = 1 (C, 1, k, k): DCNv3 has no per-point weight (its w is the shared projection); a
    one-hot w isolates one point's reads. Not part of the layer (no parameter of the layer's)."""

    modulated = True  # every sampling point is scaled by its softmax mask (as ``DeformConv2d(modulated=True)``)

    def __init__(self, layer: DCNv3Conv2d, held: dict[str, torch.Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "layer", layer)  # a reference, not a sub-module
        self.held = held
        self.offsets = HeldOffsets(held, 2 * layer.groups * layer.points)
        weight = torch.ones(layer.in_channels, 1, *layer.kernel_size, dtype=layer.input_proj.weight.dtype,
                            device=layer.input_proj.weight.device)
        self.weight = nn.Parameter(weight, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = _centred(_held(self.held, x.shape[0])[:, self.offsets.count:], x.shape[-2:])
        fields = torch.cat([self.offsets(x), masks.to(x.dtype)], dim=1)
        return self.layer.sample(x, fields.to(x.dtype), self.weight.reshape(self.weight.shape[0], -1))

    def stages(self) -> list[Stage]:
        return [Stage("offsets Δp (held)", self.offsets, side=True, module=self.offsets),
                Stage("sampling at p + p_k + Δp", self, module=self)]
