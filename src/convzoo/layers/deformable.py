"""Deformable convolution v1 (Dai et al. 2017, arXiv:1703.06211) and v2 (Zhu et al. 2018, arXiv:1811.11168);
article 003 §2.2.

y(p) = Σ_t w_t · m_t(p) · x(p·s + t·d + Δp_t(p)), x read by bilinear interpolation (zero outside). The
offsets Δp (and, for v2, the masks m = sigmoid(·)) come from an ordinary conv on the same input with the same
kernel/stride/padding/dilation. It is zero-initialised, so at init v1 equals a plain conv with
``weight``/``bias`` and v2 (m = 0.5) equals half of it plus the bias.

Exact implementations of the sampling + conv: ``convzoo.kernels.deform_torch.deform_conv2d`` (pure PyTorch:
grid_sample into columns, one GEMM; autocast-safe, torch.compile-able, NaN-safe, keeps channels_last), torchvision's
``deform_conv2d`` kernel, on the CPU in fp32 / fp64 convzoo's own numba kernels (``convzoo.kernels.deform_cpu``: the
bilinear, masked reads written straight into the GEMM's columns, NaN-safe, keeps channels_last) and, on CUDA,
convzoo's Triton implicit GEMM (``kernels/triton_deform.py``: no column tensor; the same NaN rule).
``implementation='auto'`` (the default) picks per layer configuration and input (shape, memory format, device,
dtype, grad mode) by timing them once per process on the first such input (``_CHOICE``, a
``form_choice.FormChoice``; with gradients wanted, forward and backward on detached copies); under autocast,
torch.export / jit tracing or on meta tensors it always runs the pure
op (torchvision's kernel refuses mixed dtypes), and under torch.compile too except on the CPU, where the whole layer
is one op running its eager forward (``compiled_layer.py``). Where numba or Triton cannot be imported or a kernel
does not compile, that form is not offered and one warning names the cause. torchvision's CPU kernel segfaults on
NaN offsets, so its path gets the fields with non-finite values replaced by 0 and sets the output positions that
read one to NaN, on the device, with no host sync; under ONNX export it runs torchvision's op unguarded, which
exports as the single ``DeformConv`` node. Every form computes the sampling positions and bilinear weights in at
least float32 (for a float16 layer torchvision's op runs in float32, its half kernel holding positions in float16).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..arithmetic.cost import LayerCost, compose, conv_macs, elementwise_cost, numel
from ..arithmetic.shapes import conv_output_shape
from ..geometry import (
    PADDING_MODES,
    IntOrTuple,
    Padding,
    check_choice,
    check_groups,
    check_positive_int,
    check_window_fits,
    expand,
)
from .base import (
    Alternative,
    ConvzooLayer,
    Stage,
    geometry_repr,
    init_conv_,
    input_checked,
    stored,
    zero_started_weight_checked,
)
from ..functional import pad_pairs
from .conv import Conv2d, grouped_projection, native_conv_call
from ..kernels import triton_runtime
from . import triton_forms
from ..kernels.derivatives import has_tangent
from .form_choice import FormChoice, input_key, is_tracing, kernel_ready

_FUNCTORCH = getattr(torch._C._functorch, "peek_interpreter_stack", lambda: None)  # inside vmap / grad / ...

if TYPE_CHECKING:
    import numpy as np


def _deform_conv2d(*args: Any, **kwargs: Any) -> torch.Tensor:
    from torchvision.ops import deform_conv2d  # imported with the first layer: torchvision costs ~1 s at import

    return deform_conv2d(*args, **kwargs)


def _load_torchvision_ops() -> None:
    """Import torchvision's ops (once per process, where torchvision is installed). ``torch.onnx.export`` builds
    its table of ONNX functions before it runs the model, and leaves out ``torchvision::deform_conv2d`` (the
    ``DeformConv`` node the layer exports as) when torchvision's ops are not loaded yet: so they are loaded when a
    layer is built, not at its first call (a layer exported in a fresh process failed to convert)."""
    try:
        import torchvision.ops  # noqa: F401
    except ImportError:  # torchvision is a dependency; without it the 'torchvision' form fails when asked for
        pass


IMPLEMENTATIONS = ("auto", "torch", "torchvision", "kernel", "triton")
# (configuration, input shape / format / device / dtype, grad mode) → the fastest implementation, timed (forward,
# and backward where gradients are wanted) on the first such input
_CHOICE = FormChoice("DeformConv2d", prefer="torch", margin=0.03)
_KERNEL_DTYPES = (torch.float32, torch.float64)


def _kernel_runs(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None) -> bool:
    """convzoo's CPU kernel applies: CPU fp32 / fp64 tensors of one dtype (it compiles on the first call)."""
    if x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES or offset.dtype != x.dtype:
        return False
    if mask is not None and mask.dtype != x.dtype:
        return False
    return kernel_ready("deform_cpu", x.dtype, "DeformConv2d")


def _torchvision_runs(x: torch.Tensor) -> bool:
    """torchvision's deform_conv2d has kernels for float16 / float32 / float64, none for bfloat16."""
    return x.dtype in (torch.float16, torch.float32, torch.float64)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _finite_fields(offset: torch.Tensor, mask: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Offsets and mask with every non-finite value replaced by 0, and ``bad`` (N, 1, H_out, W_out): the output
    positions that read a non-finite value. All on the device, with no host sync (a ``bool(tensor)`` check would
    stall a GPU's launch queue every call)."""
    finite = torch.isfinite(offset)
    bad = ~finite.all(dim=1, keepdim=True)
    offset = torch.where(finite, offset, torch.zeros((), dtype=offset.dtype, device=offset.device))
    if mask is not None:
        finite_mask = torch.isfinite(mask)
        bad = bad | ~finite_mask.all(dim=1, keepdim=True)
        mask = torch.where(finite_mask, mask, torch.zeros((), dtype=mask.dtype, device=mask.device))
    return offset, mask, bad


class DeformConv2d(ConvzooLayer, nn.Module):
    """Shapes: input (N, C_in, H, W) → (N, C_out, H_out, W_out); weight (C_out, C_in/groups, kh, kw);
    offset (N, 2·offset_groups·kh·kw, H_out, W_out) in torchvision's layout (dy, dx per tap, taps row-major);
    mask (N, offset_groups·kh·kw, H_out, W_out). ``offset_conv`` predicts both (offsets first, then masks).

    Arguments, order and defaults as ``torch.nn.Conv2d``; ``offset_groups`` and ``modulated`` (v2) are
    keyword-only. Padding other than symmetric zeros is applied to the input first (the offset conv pads the
    same way); samples that fall outside the padded input read zero.
    """

    compiles_as_op = True  # compiled on the CPU: one op running the eager forward (its kernel); compiled_layer.py

    dim = 2

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
        offset_groups: int = 1,
        modulated: bool = False,
    ) -> None:
        super().__init__()
        _load_torchvision_ops()
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        offset_groups = check_positive_int(offset_groups, "offset_groups")
        if in_channels % offset_groups:
            raise ValueError(f"offset_groups={offset_groups} must divide in_channels={in_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.offset_groups, self.modulated = offset_groups, bool(modulated)
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.implementation = "auto"  # or "torch" / "torchvision" / "triton": see the module docstring
        factory = {"device": device, "dtype": dtype}
        # The offset conv carries (and validates) the geometry; the deformable conv uses the same.
        fields_per_tap = 3 if modulated else 2  # (dy, dx) and, for v2, the mask
        taps = math.prod(expand(kernel_size, 2, "kernel_size"))
        self.offset_conv = Conv2d(in_channels, fields_per_tap * offset_groups * taps, kernel_size, stride, padding,
                                  dilation, padding_mode=padding_mode, **factory)
        oc = self.offset_conv
        self.kernel_size, self.stride, self.dilation = oc.kernel_size, oc.stride, oc.dilation
        self.padding, self.padding_pairs = oc.padding, oc.padding_pairs
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_conv_(self.weight, self.bias)
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    @property
    def num_taps(self) -> int:
        return self.kernel_size[0] * self.kernel_size[1]

    def _check_field(self, field: torch.Tensor, name: str, per_tap: int, x: torch.Tensor) -> None:
        out = conv_output_shape(x.shape[2:], self.kernel_size, self.stride, self.padding_pairs, self.dilation)
        expected = (x.shape[0], per_tap * self.offset_groups * self.num_taps, *out)
        if tuple(field.shape) != expected:
            raise ValueError(f"{name} must have shape {expected} (N, {per_tap}·offset_groups·kh·kw, H_out, W_out), "
                             f"got {tuple(field.shape)}")

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The offset conv's prediction: offsets (N, 2·G·k², H_out, W_out) and, for v2, masks sigmoid(·)."""
        with zero_started_weight_checked(self.offset_conv, "offset_conv", "DeformConv2d", "the sampling starts on "
                                         "the regular grid"):
            predicted = self.offset_conv(x)
        n_offsets = 2 * self.offset_groups * self.num_taps
        mask = torch.sigmoid(predicted[:, n_offsets:]) if self.modulated else None
        return predicted[:, :n_offsets], mask

    def _geometry_args(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.padding_mode == "zeros" and all(lo == hi for lo, hi in self.padding_pairs):
            return x, (self.padding_pairs[0][0], self.padding_pairs[1][0])
        return pad_pairs(x, self.padding_pairs, self.padding_mode), (0, 0)

    def sample_and_convolve(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None,
                            implementation: str | None = None) -> torch.Tensor:
        """Bilinear sampling at p·s + t·d + Δp (times the mask for v2), then the weights: one deformable conv,
        by ``implementation`` ('torch' / 'torchvision' / 'triton'; default: the layer's, see the module docstring)."""
        from ..kernels.deform_torch import deform_conv2d

        padded, padding = self._geometry_args(x)
        choice = check_choice(implementation or self.implementation, "implementation", IMPLEMENTATIONS)
        # read once per call: a parametrized weight is evaluated once, as by torch's convs, however many runs
        # the form choice times (spectral_norm's power iteration advances at each evaluation)
        weight, bias = self.weight, self.bias
        call_tensors = (padded, offset, mask, weight, bias)

        def run(name: str, guarded: bool = True, tensors: tuple[Any, ...] = call_tensors) -> torch.Tensor:
            padded, offset, mask, weight, bias = tensors  # the call's, or the measurement's detached copies
            if name == triton_forms.TRITON:  # the implicit GEMM of kernels/triton_deform.py (same NaN rule)
                from ..kernels.triton_deform import deform_conv2d as triton_deform_conv2d

                return triton_deform_conv2d(padded, offset, weight, bias, self.stride, padding,
                                            self.dilation, mask)
            if name == "torch":  # NaN / Inf offsets and masks give NaN where they are read
                return deform_conv2d(padded, offset, weight, bias, self.stride, padding, self.dilation, mask)
            if name == "kernel":  # the same NaN rule, in the kernel
                from ..kernels.deform_cpu import deform_conv2d as kernel_deform_conv2d

                return kernel_deform_conv2d(padded, offset, weight, bias, self.stride, padding,
                                            self.dilation, mask)
            # torchvision's CPU kernel dies (SIGSEGV) on NaN offsets: it gets finite fields, and the output
            # positions that read a non-finite value become NaN, as in the pure op
            safe_offset, safe_mask, bad = _finite_fields(offset, mask) if guarded else (offset, mask, None)
            if x.dtype == torch.float16:  # its half kernel holds positions in float16 (1/32 pixel steps past 32)
                y = _deform_conv2d(padded.float(), safe_offset.float(), weight.float(),
                                   None if bias is None else bias.float(), self.stride, padding,
                                   self.dilation, None if safe_mask is None else safe_mask.float()).to(x.dtype)
            else:
                y = _deform_conv2d(padded, safe_offset, weight, bias, self.stride, padding, self.dilation,
                                   safe_mask)
            if bad is not None:
                y = y.masked_fill(bad, math.nan)
            return y.contiguous(memory_format=torch.channels_last) if _is_channels_last(x) else y

        if torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing():
            return run("torchvision", guarded=False)  # the dynamo exporter: one DeformConv node
        # TorchScript's exporter (dynamo=False) cannot trace torchvision's op (its CUDA-version check returns an int):
        # it records the pure op's GridSample form (opset ≥ 16) through the is_tracing branch
        if choice == "torch" or is_tracing(x):
            if _FUNCTORCH() is not None:  # inside torch.func.vmap a non-contiguous x cannot say whether it is
                # channels_last (NYI); the pure op reads a contiguous copy anyway
                return run("torch", tensors=(padded.contiguous(), *call_tensors[1:]))
            return run("torch")
        if choice == "kernel" and not _kernel_runs(x, offset, mask):
            if x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES:
                raise ValueError(f"implementation='kernel' runs on CPU float32 / float64 inputs, got {x.device.type} "
                                 f"{x.dtype}; use 'auto', 'torch' or 'torchvision'")
            choice = "torch"  # numba missing or the kernel did not compile: warned once, the pure op runs
        if choice == "auto":
            mixed = x.dtype != offset.dtype or (mask is not None and mask.dtype != x.dtype)
            if mixed or torch.is_autocast_enabled(x.device.type):
                return run("torch")
            names = ["torch", *(["torchvision"] if _torchvision_runs(x) else []),
                     *(["kernel"] if _kernel_runs(x, offset, mask) else []),
                     *([triton_forms.TRITON] if triton_forms.offered(x, "DeformConv2d") else [])]
            # timed on detached copies of the call's tensors, with their backward when gradients are wanted
            forms = {name: (lambda *tensors, name=name: run(name, tensors=tensors)) for name in names}
            choice = triton_forms.fastest(_CHOICE, self._choice_config(), x, forms, call_tensors, "DeformConv2d")
            if choice == "torchvision" and has_tangent((x, offset, mask, weight, bias)):
                choice = "torch"  # torchvision's op has no forward-mode rule: its tangent came back None, silently
        elif choice == triton_forms.TRITON and not triton_forms.offered(x, "DeformConv2d"):
            cause = triton_runtime.unavailable_cause() if x.device.type == "cuda" else None
            raise ValueError(f"implementation='triton' needs a CUDA input (or TRITON_INTERPRET=1 on the CPU) outside "
                             f"autocast and triton installed; got a {x.device.type} {x.dtype} input"
                             + (f" ({cause})" if cause else ""))
        return run(choice)

    def _choice_config(self) -> tuple[Any, ...]:
        """What besides the input decides which deformable op is fastest (``triton_forms.fastest``'s config)."""
        return (self.kernel_size, self.stride, self.dilation, self.padding_pairs, self.padding_mode, self.groups,
                self.offset_groups, self.modulated, self.out_channels, stored(self, "bias") is not None)

    @input_checked  # rank and channels on the input as given (an unbatched input's error quoted the batch of one)
    def forward(self, x: torch.Tensor, offset: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        if mask is not None and not self.modulated:
            raise ValueError("mask is only used by deformable conv v2: construct DeformConv2d with modulated=True")
        if offset is None or (self.modulated and mask is None):
            predicted_offset, predicted_mask = self.offsets_and_mask(x)
            offset = predicted_offset if offset is None else offset
            mask = predicted_mask if mask is None else mask
        self._check_field(offset, "offset", 2, x)
        if mask is not None:
            self._check_field(mask, "mask", 1, x)
        return self.sample_and_convolve(x, offset, mask)

    def forward_path(self, x: torch.Tensor) -> str:
        """The deformable op a forward without gradients runs on ``x``: the layer's ``implementation``, or for
        'auto' the one measured fastest for this configuration and input (once per process)."""
        if self.implementation != "auto":
            return self.implementation
        with torch.no_grad():
            choice = _CHOICE.get((self._choice_config(), *input_key(x, False)))
        return f"auto: {choice}" if choice else "auto (not measured yet)"

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Offset conv + (v2: sigmoid of the mask logits) + the deformable conv:

        - offset conv: N·HW_out·(3 or 2)·G·k²·C_in·k² MACs (G = offset_groups);
        - sampling: every sampled value x(p + Δp) is a bilinear mix of 4 neighbours, 4 multiply-adds, counted as
          4·N·C_in·k²·HW_out other ops (the 4 reads hit the input; traffic counts the input once);
        - v2 modulation: N·C_in·k²·HW_out mask multiplies, other ops: each sample is scaled once and summed only
          by the weight MAC, a gate rather than an activation MAC (as cost counts the same layer written in torch
          ops: a multiply by the mask, then a conv);
        - the conv: N·HW_out·C_out·(C_in/g)·k² MACs; elements = input + offsets (+ mask) + weight + bias + output.
        """
        offset = self.offset_conv.cost(input_shape)
        n, c = input_shape[0], input_shape[1]
        out = (n, self.out_channels, *offset.output_shape[2:])
        positions = n * numel(out[2:])
        samples = positions * c * self.num_taps
        fields = positions * self.offset_groups * self.num_taps
        parts = [offset]
        if self.modulated:
            parts.append(elementwise_cost((n, self.offset_groups * self.num_taps, *out[2:]), 1))  # sigmoid
        params = self.weight.numel() + (0 if self.bias is None else self.out_channels)
        other = 4 * samples + (samples if self.modulated else 0)
        moved = numel(input_shape) + 2 * fields + (fields if self.modulated else 0) + params + numel(out)
        parts.append(LayerCost(params, conv_macs(out, self.weight.shape), other, moved, out))
        return compose(parts)

    def reference_output(self, x: np.ndarray, offset: np.ndarray | None = None,
                         mask: np.ndarray | None = None) -> np.ndarray:
        """Deformable conv from the definition (reference.deform_conv2d: explicit bilinear sampling per tap);
        offsets / masks predicted by the offset conv's own reference unless given."""
        import numpy as np

        from ..oracle import reference as ref
        from .conv import to_numpy

        if offset is None or (self.modulated and mask is None):
            predicted = self.offset_conv.reference_output(x)
            n_offsets = 2 * self.offset_groups * self.num_taps
            offset = predicted[:, :n_offsets] if offset is None else offset
            if self.modulated and mask is None:
                mask = 1.0 / (1.0 + np.exp(-predicted[:, n_offsets:]))
        pairs = ref.resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation)
        padded = ref.pad(x, pairs, self.padding_mode)
        return ref.deform_conv2d(padded, to_numpy(self.weight), offset, mask, to_numpy(self.bias), self.stride, 0,
                                 self.dilation)

    def native_alternatives(self) -> list[Alternative]:
        offsets = native_conv_call(self.offset_conv)
        n_offsets = 2 * self.offset_groups * self.num_taps

        def run(implementation: str) -> Callable[[torch.Tensor], torch.Tensor]:
            def direct(x: torch.Tensor) -> torch.Tensor:
                predicted = offsets(x)
                mask = torch.sigmoid(predicted[:, n_offsets:]) if self.modulated else None
                return self.sample_and_convolve(x, predicted[:, :n_offsets], mask, implementation)

            return direct

        return [("peer", "torchvision deform_conv2d (direct)", run("torchvision")),
                ("native", "convzoo.kernels.deform_torch.deform_conv2d (pure torch, direct)", run("torch"))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Zero offsets read the regular grid, so W loads exactly (v2: mask sigmoid(0) = ½, so 2W is stored)."""
        from ..dense_kernels import load_, relative_frobenius_error

        blocks, effective = grouped_projection(weight, self.groups, self.kernel_size)
        self.reset_parameters()
        load_(self.weight, blocks * 2 if self.modulated else blocks)
        load_(self.bias, bias)
        return relative_frobenius_error(effective, weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The nominal (zero-offset) grid: learned offsets can move every tap anywhere."""
        return field.window(self.kernel_size, self.stride, self.dilation, [lo for lo, _ in self.padding_pairs])

    def stages(self) -> list[Stage]:
        return [Stage("offset conv (predicts Δp" + (" and masks)" if self.modulated else ")"),
                      self.offset_conv, side=True, module=self.offset_conv),
                Stage("bilinear sampling at p + Δp, then the weights", self, module=self)]

    def extra_repr(self) -> str:
        extra: dict[str, object] = {}
        if self.offset_groups != 1:
            extra["offset_groups"] = self.offset_groups
        if self.modulated:
            extra["modulated"] = True
        return geometry_repr(self, extra)
