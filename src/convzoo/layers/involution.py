"""Involution (Li et al. 2021, "Involution: Inverting the Inherence of Convolution for Visual Recognition",
CVPR 2021, arXiv:2103.06255).

The kernel is generated at every output position from that position's own features and shared by the channels
of a group (the paper's Eqs. 4 and 6): H_p = W_1 σ(W_0 X_p) ∈ R^{G×K×K}, Y_{p,c} = Σ_t H_{p, g(c), t} · X_{p+t, c}.
Channels are not mixed (C_out = C_in); the weights live in the generator (two per-position FCs, i.e. 1×1 convs,
reduction r). X_p is the input feature at the window's centre (at stride s the paper's code average-pools s×s
instead; here the centre pixel is read, so any padding and stride give the conv's output size). The paper's
BatchNorm after W_0 is folded into W_0's bias.

The kernels are applied by one of two exact forms: 'strided_views' (one strided view of the padded input per
tap, accumulated in place) or, for 1-D / 2-D CPU fp32 / fp64 inputs, 'kernel' (convzoo's numba kernel,
``convzoo.kernels.involution_cpu``: no padded copy, both memory formats). ``implementation='auto'`` (the default)
times both once per process per layer configuration and input (shape, memory format, dtype, whether a backward
follows) and keeps the faster (``_CHOICE``, a ``form_choice.FormChoice``); under tracing / compile / export it runs
'strided_views'. In a forward that records no backward (inference) on the CPU, one more form computes the whole
layer, generator included, in one kernel (``FUSED``: each output row's kernels generated from its window centres and
applied while in cache, never written out); 'auto' times it against generator + apply, 'kernel' runs it on
channels-last inputs. Where numba cannot be imported or the kernel does not compile, 'strided_views' runs and one
warning names the cause.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, compose, conv_output_tensor_shape, elementwise_cost, numel
from ..arithmetic.shapes import conv_output_shape
from ..functional import channels_to_first, channels_to_last, pad_pairs
from ..geometry import (
    PADDING_MODES,
    IntOrTuple,
    Padding,
    PaddingPairs,
    check_choice,
    check_groups,
    check_positive_int,
    check_window_fits,
    resolve_geometry,
)
from .base import Alternative, ConvzooLayer, Stage, geometry_repr, input_checked, stored
from .fastpaths import is_channels_last
from . import triton_forms
from .form_choice import FormChoice, input_key, is_tracing, kernel_ready, tracing_active
from .patches import window_patches

if TYPE_CHECKING:
    import numpy as np

IMPLEMENTATIONS = ("auto", "strided_views", "kernel", triton_forms.TRITON)
FUSED = "kernel, generator fused"  # the whole forward by one CPU kernel, in passes that record no backward
# (configuration, input shape / format / device / dtype, backward) → 'strided_views', 'kernel' (numba) or 'triton'
_CHOICE = FormChoice("Involution", prefer="strided_views", margin=0.03)
_KERNEL_DTYPES = (torch.float32, torch.float64)


class KernelGenerator(nn.Module):
    """H = span(ReLU(reduce(X at each window centre))): (N, C, *S) → (N, G·T, *O), group-major, taps row-major."""

    def __init__(self, channels: int, hidden: int, groups: int, kernel_size: tuple[int, ...], stride: tuple[int, ...],
                 dilation: tuple[int, ...], pairs: PaddingPairs, padding_mode: str, bias: bool,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.dilation, self.pairs = kernel_size, stride, dilation, pairs
        self.padding_mode = padding_mode
        self.reduce = nn.Linear(channels, hidden, bias=bias, device=device, dtype=dtype)
        self.span = nn.Linear(hidden, groups * math.prod(kernel_size), bias=bias, device=device, dtype=dtype)

    def centres(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, *O): the padded input at each output position's window centre p·s + d·⌊(k−1)/2⌋ — a strided view
        of x itself when every centre lies inside x (no padded copy: 'same' padding at stride 1 reads x)."""
        index: list[slice] = [slice(None), slice(None)]
        inside = True
        for size, k, s, d, (lo, hi) in zip(x.shape[2:], self.kernel_size, self.stride, self.dilation, self.pairs):
            out = (size + lo + hi - d * (k - 1) - 1) // s + 1
            start = d * ((k - 1) // 2)
            index.append(slice(start, start + s * (out - 1) + 1, s))
            inside = inside and start - lo >= 0 and start + s * (out - 1) - lo < size
        if inside:
            shifted = [slice(None), slice(None)] + [slice(i.start - lo, i.stop - lo, i.step)
                                                    for i, (lo, _) in zip(index[2:], self.pairs)]
            return x[tuple(shifted)]
        return pad_pairs(x, self.pairs, self.padding_mode)[tuple(index)]

    def _watched(self) -> bool:
        """A forward (pre-)hook on either FC, which the 1×1-conv form would not call."""
        return any(m._forward_hooks or m._forward_pre_hooks for m in (self.reduce, self.span))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, G·T, *O): NCHW centres through the two FCs as 1×1 convs over (N, C, prod(O)) (no transposed copy, the
        kernels come out NCHW), eagerly and when no hook watches the FCs; else the FCs on its channels-last view
        (what tracing and export record)."""
        centres = self.centres(x)
        if centres.is_contiguous() and centres.shape[0] > 0 and not self._watched() and not tracing_active(x):
            flat = centres.flatten(2)
            hidden = torch.relu(F.conv1d(flat, self.reduce.weight.unsqueeze(-1), self.reduce.bias))
            return F.conv1d(hidden, self.span.weight.unsqueeze(-1), self.span.bias).reshape(
                x.shape[0], -1, *centres.shape[2:])
        # channels moved by permutes of non-negative dims (what TorchScript's ONNX exporter writes correctly)
        hidden = torch.relu(self.reduce(channels_to_last(centres)))
        return channels_to_first(self.span(hidden))


def _fused_forms(layer: Any) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The two exact forward-only forms of ``layer`` (an ``InvolutionNd``) on the CPU: generator then apply, or the
    fused kernel."""
    return {"generator + apply": layer._generate_and_apply, FUSED: layer._fused_forward}


class InvolutionNd(ConvzooLayer, nn.Module):
    """Shapes: (N, C, *S) → (N, C, *O), O as a conv's; generator reduce (C → max(C // r, 1)), span (→ G·prod(k)).

    Arguments, order and defaults as ``torch.nn.Conv*d``: ``out_channels`` must equal ``in_channels``;
    ``groups`` G is the number of kernels per position (C/G channels share one); ``bias`` is the generator FCs'.
    Keyword-only ``reduction`` r (the paper's 4).
    """

    compiles_as_op = True  # compiled on the CPU: one op running the eager forward (its kernel); compiled_layer.py

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
        reduction: int = 4,
    ) -> None:
        super().__init__()
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        if out_channels != in_channels:
            raise ValueError(f"out_channels={out_channels} must equal in_channels={in_channels}: involution does not "
                             "mix channels (follow it with a 1×1 conv to change the width)")
        self.reduction = check_positive_int(reduction, "reduction")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        geometry = resolve_geometry(self.dim, kernel_size, stride, padding, dilation)
        self.kernel_size, self.stride, self.dilation = geometry.kernel_size, geometry.stride, geometry.dilation
        self.padding, self.padding_pairs = geometry.padding, geometry.padding_pairs
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.generator = KernelGenerator(in_channels, max(in_channels // self.reduction, 1), groups, self.kernel_size,
                                         self.stride, self.dilation, self.padding_pairs, self.padding_mode, bias,
                                         device=device, dtype=dtype)
        self.implementation = "auto"  # or "strided_views" / "kernel": see the module docstring

    def reset_parameters(self) -> None:
        self.generator.reduce.reset_parameters()
        self.generator.span.reset_parameters()

    def involve(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Y[n, c, p] = Σ_t H[n, g(c), t, p]·xpad[n, c, p·s + t·d], kernels (N, G·T, *O): accumulated one tap at a
        time, in place, from strided views of the padded input (no (N, C, T, *O) patch tensor: measured 3.5× faster
        forward on NCHW and 7.6× on channels_last data than multiplying the unfolded patches, 2.9× forward+backward;
        8×64×56², k = 3, 1 thread)."""
        xp = pad_pairs(x, self.padding_pairs, self.padding_mode)
        n, c, out = x.shape[0], self.in_channels, kernels.shape[2:]
        h = kernels.reshape(n, self.groups, 1, math.prod(self.kernel_size), *out)  # explicit: N = 0 has no -1
        y: torch.Tensor | None = None
        for t, tap in enumerate(itertools.product(*(range(k) for k in self.kernel_size))):  # taps row-major
            window = (slice(None), slice(None)) + tuple(slice(i * d, i * d + s * (o - 1) + 1, s) for i, d, s, o in
                                                         zip(tap, self.dilation, self.stride, out))
            term = xp[window].reshape(n, self.groups, c // self.groups, *out)
            y = term * h[:, :, :, t] if y is None else y.addcmul_(term, h[:, :, :, t])
        assert y is not None  # a kernel has at least one tap
        return y.reshape(n, c, *out)

    def _kernel_runs(self, x: torch.Tensor, kernels: torch.Tensor) -> bool:
        """convzoo's CPU kernel applies: 1-D / 2-D CPU fp32 / fp64 input and kernels of one dtype (not under
        autocast, whose generator gives bfloat16 kernels); it compiles on the first call."""
        if self.dim == 3 or x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES or kernels.dtype != x.dtype:
            return False
        return kernel_ready("involution_cpu", x.dtype, type(self).__name__)

    def _kernel_involve(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """``involve`` by convzoo's CPU kernel: zero padding read as zeros, other padding modes applied first."""
        from ..kernels.involution_cpu import involve

        if self.padding_mode == "zeros":
            return involve(x, kernels, self.kernel_size, self.stride, tuple(lo for lo, _ in self.padding_pairs),
                           self.dilation)
        padded = pad_pairs(x, self.padding_pairs, self.padding_mode)
        return involve(padded, kernels, self.kernel_size, self.stride, (0,) * self.dim, self.dilation)

    def apply_kernels(self, x: torch.Tensor, kernels: torch.Tensor, implementation: str | None = None) -> torch.Tensor:
        """Y = Σ_t H_t · (x shifted by tap t), kernels (N, G·T, *O), by ``implementation`` ('strided_views',
        'kernel' (numba, CPU), 'triton' (CUDA); default: the layer's, 'auto' = the fastest measured for this
        configuration and input, once per process)."""
        choice = check_choice(implementation or self.implementation, "implementation", IMPLEMENTATIONS)
        if choice == "strided_views" or is_tracing(x):
            return self.involve(x, kernels)
        forms: dict[str, Any] = {"strided_views": self.involve}
        if self._kernel_runs(x, kernels):
            forms["kernel"] = self._kernel_involve
        if self.dim < 3 and triton_forms.offered(x, "Involution"):
            forms[triton_forms.TRITON] = self._triton_involve
        if choice != "auto":
            if choice in forms:
                return forms[choice](x, kernels)
            if choice == "kernel" and (self.dim == 3 or x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES):
                raise ValueError(f"implementation='kernel' runs on 1-D / 2-D CPU float32 / float64 inputs, got a "
                                 f"{self.dim}-D {x.device.type} {x.dtype} input; use 'auto' or 'strided_views'")
            if choice == triton_forms.TRITON:
                raise ValueError(f"implementation='triton' runs where Triton does (1-D / 2-D CUDA inputs), got a "
                                 f"{self.dim}-D {x.device.type} input; use 'auto' or 'strided_views'")
            return self.involve(x, kernels)  # numba missing or no compile (warned once), or autocast's kernels
        if len(forms) == 1:
            return self.involve(x, kernels)
        name = triton_forms.fastest(_CHOICE, self._config(), x, forms, (x, kernels), "Involution")
        return forms[name](x, kernels)

    def _config(self) -> tuple[object, ...]:
        return (type(self).__name__, self.in_channels, self.groups, self.kernel_size, self.stride, self.dilation,
                self.padding_pairs, self.padding_mode)

    @input_checked  # rank and channels on the input as given (an unbatched input's error quoted the batch of one)
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        if self._fused_runs(x):
            if self.implementation == "kernel":  # the fused kernel reads channels-last data; NCHW: its own kernel
                return self._fused_forward(x) if is_channels_last(x) else self._generate_and_apply(x)
            # measured on a private copy: the generator's hooks and parametrizations see one call, as torch's
            name = triton_forms.fastest(_CHOICE, (FUSED, *self._config()), x, _fused_forms, (x,), "Involution",
                                        layer=self)
            return self._fused_forward(x) if name == FUSED else self._generate_and_apply(x)
        return self._generate_and_apply(x)

    def _generate_and_apply(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply_kernels(x, self.generator(x))

    def _fused_runs(self, x: torch.Tensor) -> bool:
        """The generator and the apply can run as one CPU kernel (``_fused_forward``): a forward that records no
        backward (grad mode off, or neither x nor a generator parameter requires grad) of a 1-D / 2-D CPU fp32 /
        fp64 input of the generator's dtype, eagerly (no tracing, no dispatch mode), with no hook on the generator's
        FCs and no autocast, for implementation 'auto' or 'kernel'."""
        if self.implementation not in ("auto", "kernel") or self.dim == 3 or x.device.type != "cpu":
            return False
        gen = self.generator
        if (x.dtype not in _KERNEL_DTYPES or stored(gen.reduce, "weight").dtype != x.dtype  # not evaluated: a
                or stored(gen.span, "weight").dtype != x.dtype):  # parametrization runs once, in the form
            return False
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in gen.parameters())):
            return False
        if is_tracing(x) or torch.is_autocast_enabled("cpu") or gen._watched():  # a dispatch mode (a flop
            return False  # counter) would see no torch op
        return kernel_ready("involution_cpu", x.dtype, type(self).__name__)

    def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The whole forward by one CPU kernel (``kernels.involution_cpu.generate_and_involve``): each output row's
        kernels generated from its window centres and applied while in cache; neither the (N, G·T, *O) kernels nor
        the hidden features are written. Other padding modes than zeros pad first (the centres then read the padded
        input, as the generator does)."""
        from ..kernels.involution_cpu import generate_and_involve

        pairs = self.padding_pairs
        if self.padding_mode != "zeros":
            x, pairs = pad_pairs(x, pairs, self.padding_mode), tuple((0, 0) for _ in pairs)
        out = conv_output_shape(tuple(x.shape[2:]), self.kernel_size, self.stride, pairs, self.dilation)
        gen = self.generator
        return generate_and_involve(x, gen.reduce.weight, gen.reduce.bias, gen.span.weight, gen.span.bias,
                                    self.kernel_size, self.stride, tuple(lo for lo, _ in pairs), self.dilation, out)

    def _triton_involve(self, x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """``involve`` by convzoo's Triton kernel (``kernels/triton_involution.py``; 1-D and 2-D)."""
        from ..kernels.triton_involution import involution

        pairs = self.padding_pairs
        if self.padding_mode != "zeros":
            x, pairs = pad_pairs(x, pairs, self.padding_mode), tuple((0, 0) for _ in pairs)
        return involution(x, kernels, self.groups, self.kernel_size, self.stride, pairs, self.dilation)

    def forward_path(self, x: torch.Tensor) -> str:
        """How a forward without gradients applies the kernels to ``x``: the layer's ``implementation``, or for
        'auto' the form measured faster for this configuration and input (once per process)."""
        if self.implementation != "auto":
            return self.implementation
        if _CHOICE.get(((FUSED, *self._config()), *input_key(x, False))) == FUSED:
            return f"auto: {FUSED}"
        choice = _CHOICE.get((self._config(), *input_key(x, False)))
        return f"auto: {choice}" if choice else "auto (not measured yet)"

    def _patch_product(self, x: torch.Tensor) -> torch.Tensor:
        """The same sum from the unfolded patches, (N, G, C/G, T, *O) products summed over T."""
        kernels = self.generator(x)
        patches = window_patches(x, self.kernel_size, self.stride, self.dilation, self.padding_pairs,
                                 self.padding_mode)  # (N, C, T, *O)
        n, c, taps, out = x.shape[0], self.in_channels, patches.shape[2], patches.shape[3:]
        grouped = patches.reshape(n, self.groups, c // self.groups, taps, *out)
        return (grouped * kernels.reshape(n, self.groups, 1, taps, *out)).sum(3).reshape(n, c, *out)

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Generator: N·prod(O)·(C·h + h·G·T) MACs (two per-position FCs) and a ReLU (1 op per hidden value);
        the involution itself, y = Σ_t kernel_t · x_t, multiply-accumulates generated kernels with input values
        — activation × activation: N·C·T·prod(O) activation MACs, apart from the weight MACs."""
        n, c = input_shape[0], input_shape[1]
        out = conv_output_tensor_shape(input_shape, c, self.kernel_size, self.stride, self.padding_pairs,
                                       self.dilation)
        positions = n * numel(out[2:])
        gen = self.generator
        hidden, spans, taps = gen.reduce.out_features, gen.span.out_features, math.prod(self.kernel_size)
        params = sum(p.numel() for p in gen.parameters())
        reduce = LayerCost(0, positions * c * hidden, 0, positions * c + positions * hidden, (n, hidden, *out[2:]))
        relu = elementwise_cost((n, hidden, *out[2:]), 1)
        span = LayerCost(params, positions * hidden * spans, 0, positions * (hidden + spans) + params,
                         (n, spans, *out[2:]))
        involve = LayerCost(0, 0, 0, numel(input_shape) + positions * spans + numel(out), out,
                            activation_macs=positions * c * taps)
        return compose([reduce, relu, span, involve])

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref
        from .conv import to_numpy

        gen = self.generator
        return ref.involution(x, to_numpy(gen.reduce.weight), to_numpy(gen.reduce.bias), to_numpy(gen.span.weight),
                              to_numpy(gen.span.bias), self.kernel_size, self.groups, self.stride,
                              ref.resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation),
                              self.dilation, self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        return [("native", "unfolded patches × kernels, summed over taps", self._patch_product)]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        raise TypeError("involution cannot stand in for a dense conv: it never mixes channels and its kernel is "
                        "generated from the input at each position, so no parameters give a fixed C_out×C_in kernel")

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The window (the kernel generator reads only the window's centre, inside it)."""
        return field.window(self.kernel_size, self.stride, self.dilation, [lo for lo, _ in self.padding_pairs])

    def stages(self) -> list[Stage]:
        t = "×".join(map(str, self.kernel_size))
        return [Stage(f"kernel generation: a {t} kernel per position and group from that position's features "
                      "(FC → ReLU → FC)", self.generator, side=True, module=self.generator),
                # the generated kernels enter as the side branch's values (detached: same output, and the pictures'
                # autograd then sees the window each output reads, not the generator's dependence on the input)
                Stage(f"involution: each channel's {t} window times its group's generated kernel",
                      lambda x: self.involve(x, self.generator(x).detach()), kernel_per_position=True)]

    def extra_repr(self) -> str:
        # bias is the kernel generator's FCs' (stored: a parametrized bias is not evaluated for a repr)
        return geometry_repr(self, {"reduction": self.reduction},
                             bias=stored(self.generator.reduce, "bias") is not None)


class Involution1d(InvolutionNd):
    """1-D ``InvolutionNd``: input (N, C, L)."""

    dim = 1


class Involution2d(InvolutionNd):
    """2-D ``InvolutionNd``: input (N, C, H, W)."""

    dim = 2


class Involution3d(InvolutionNd):
    """3-D ``InvolutionNd``: input (N, C, D, H, W)."""

    dim = 3
