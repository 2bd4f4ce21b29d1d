"""Standard convolution in 1, 2 and 3 spatial dims, as cross-correlation or as true convolution (article 001 §1–3,
003 §1.1–1.2). Dilated and grouped convolutions are this layer with particular arguments.

``ConvNd`` holds every argument, check and contract method; ``Conv1d/2d/3d`` only name their dimension and torch
class, so each IS a ``torch.nn.Conv{1,2,3}d`` (init loops, ``fuse_modules``, pruning and counters reach it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, conv_cost, conv_output_tensor_shape
from ..functional import convolve_padding_pairs, flip_kernel, pad_pairs
from ..geometry import (
    PADDING_MODES,
    IntOrTuple,
    Padding,
    check_choice,
    check_groups,
    check_window_fits,
    resolve_geometry,
)
from .base import (
    Alternative,
    ConvzooLayer,
    Runner,
    Stage,
    check_input,
    check_kernel_matches_weight,
    init_conv_,
    input_checked,
    parameter_reader,
    planned_forward,
    stored,
)
from . import compiled_choice, triton_forms
from .fastpaths import depthwise_channels_last, depthwise_split, is_channels_last, pointwise_matmul
from .form_choice import FormChoice, is_tracing

if TYPE_CHECKING:
    import numpy as np

MODES = ("correlation", "convolution")
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}

# The measured choice between a conv's exact forms (per configuration and input key, see ``ConvNd.forms``). Torch's
# own conv is kept unless another form is measured more than 3 % faster: on a noisy machine a near tie must not
# flip to a form that is not really faster (a stride-2 depthwise forward+backward on NCHW data went 10 % slower so).
_CHOICE = FormChoice("ConvNd", prefer="native", margin=0.03)
KERNEL_TILES = "kernel, position tiles"  # convzoo's kernel without the register windows (``depthwise_same``)


def to_numpy(t: torch.Tensor | None) -> Any:
    """A parameter as a float64 ndarray for the oracle (None stays None)."""
    return None if t is None else t.detach().to("cpu", torch.float64).numpy()


def native_conv_call(conv: ConvNd, weight: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """One ``F.conv{1,2,3}d`` with the layer's parameters (an ``F.pad`` first only when the padding is asymmetric or
    not zeros): the native form every family built from convs composes for the bench."""
    w = conv.weight if weight is None else weight
    op = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[conv.dim]
    pairs = conv.padding_pairs
    if all(lo == hi for lo, hi in pairs) and conv.padding_mode == "zeros":
        pad = tuple(lo for lo, _ in pairs)
        return lambda x: op(x, w, conv.bias, conv.stride, pad, conv.dilation, conv.groups)
    return lambda x: op(pad_pairs(x, pairs, conv.padding_mode), w, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def grouped_projection(weight: torch.Tensor, groups: int, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """What a (groups, size) conv keeps of a dense kernel W (C_out, C_in, *k): its own (C_out, C_in/g, *size)
    weight, and the dense kernel it then computes (zeros off the diagonal blocks, centred and cropped/padded)."""
    from ..dense_kernels import dense_kernel, fit_kernel

    fitted = fit_kernel(weight, size)
    out, cin = weight.shape[:2]
    rows, cols = out // groups, cin // groups
    blocks = torch.cat([fitted[g * rows:(g + 1) * rows, g * cols:(g + 1) * cols] for g in range(groups)])
    return blocks, fit_kernel(dense_kernel(blocks, groups), tuple(weight.shape[2:]))


def _fuse_conv_bn(is_qat: bool, conv: nn.Module, bn: nn.Module) -> nn.Module:
    """Eval-mode fusion for ``torch.ao.quantization.fuse_modules``: the BatchNorm folded into a copy of the conv."""
    if is_qat:
        raise NotImplementedError(f"{type(conv).__name__}: quantization-aware fusion needs torch's own conv classes")
    return nn.utils.fusion.fuse_conv_bn_eval(conv, bn)


def _fuse_conv_bn_relu(is_qat: bool, conv: nn.Module, bn: nn.Module, relu: nn.Module) -> nn.Module:
    return nn.Sequential(_fuse_conv_bn(is_qat, conv, bn), relu)


def register_fusion(cls: type) -> None:
    """Teach ``torch.ao.quantization.fuse_modules`` (which looks fusers up by exact type) to fuse ``cls`` with the
    following BatchNorm (and ReLU). Written against torch's fuser table, a private name: if it moves, fusion of
    convzoo convs is simply not registered (the contract test says so)."""
    try:
        from torch.ao.quantization.fuser_method_mappings import _DEFAULT_OP_LIST_TO_FUSER_METHOD as table
    except ImportError:  # pragma: no cover - depends on torch's internals
        return
    norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[cls.dim]  # type: ignore[attr-defined]
    table[(cls, norm)] = _fuse_conv_bn
    table[(cls, norm, nn.ReLU)] = _fuse_conv_bn_relu


_GEOMETRY = frozenset({"kernel_size", "stride", "padding", "dilation", "mode", "padding_mode"})


class ConvNd(ConvzooLayer):
    """y = b + Σ w ⋆ x over each group (``mode='correlation'``), or with the kernel flipped (``'convolution'``).

    Shapes: input (N, C_in, *S) → output (N, C_out, *O); weight (C_out, C_in/groups, *K); bias (C_out,).
    Arguments, order and defaults as ``torch.nn.Conv{1,2,3}d``; ``padding`` may also be one (before, after) pair
    per dimension. ``padding_pairs`` holds the resolved padding; ``padding`` keeps torch's meaning ('same',
    'valid' or ints) — an asymmetric padding, which torch cannot express, is stored there as the pairs.
    'same' pads d·(k−1) per dim; where that is odd, the extra element goes after for 'correlation' (PyTorch's rule)
    and before for 'convolution', so that it equals ``scipy.signal.convolve(x, w, mode='same')`` (k = 4:
    ``padding_pairs`` ((2, 1),); ``padding`` stays 'same').
    """

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
        mode: str = "correlation",
    ) -> None:
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        geometry = resolve_geometry(self.dim, kernel_size, stride, padding, dilation)
        check_choice(padding_mode, "padding_mode", PADDING_MODES)
        check_choice(mode, "mode", MODES)
        super().__init__(in_channels, out_channels, geometry.kernel_size, geometry.stride,  # type: ignore[call-arg]
                         geometry.torch_padding, geometry.dilation, groups, bias, padding_mode,
                         device=device, dtype=dtype)
        self.padding = geometry.padding
        self.padding_pairs = geometry.padding_pairs
        if mode == "convolution":  # 'same' as scipy.signal.convolve: the odd element of an even span before
            self.padding_pairs = convolve_padding_pairs(padding, geometry.kernel_size, geometry.stride,
                                                        geometry.dilation)
        self.mode = mode
        compiled_choice.register(self)

    def __setattr__(self, name: str, value: Any) -> None:
        """Torch reads a conv's geometry at each call, so code that reconfigures a built conv works on torch's
        (a backbone turned to output stride 8: ``conv.stride = 1; conv.dilation = 2; conv.padding = 2``). Here the
        padding is resolved into ``padding_pairs`` once: setting ``kernel_size``, ``stride``, ``padding``,
        ``dilation``, ``mode`` or ``padding_mode`` after construction validates the new geometry and resolves it
        again, as the constructor would (ints are expanded to tuples)."""
        if name in _GEOMETRY and "mode" in self.__dict__:  # after __init__ (which sets mode last)
            self._reconfigure(name, value)
        else:
            super().__setattr__(name, value)

    def _reconfigure(self, name: str, value: Any) -> None:
        """Set one geometry attribute of a built conv: every derived one is computed first, then all are set."""
        given = {"kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
                 "dilation": self.dilation, "mode": self.mode, "padding_mode": self.padding_mode, name: value}
        mode = check_choice(given["mode"], "mode", MODES)
        padding_mode = check_choice(given["padding_mode"], "padding_mode", PADDING_MODES)
        geometry = resolve_geometry(self.dim, given["kernel_size"], given["stride"], given["padding"],
                                    given["dilation"])
        check_kernel_matches_weight(self, geometry.kernel_size, given["kernel_size"])
        pairs = geometry.padding_pairs
        if mode == "convolution":
            pairs = convolve_padding_pairs(given["padding"], geometry.kernel_size, geometry.stride,
                                           geometry.dilation)
        for key, resolved in (("kernel_size", geometry.kernel_size), ("stride", geometry.stride),
                              ("padding", geometry.padding), ("dilation", geometry.dilation),
                              ("padding_pairs", pairs), ("mode", mode), ("padding_mode", padding_mode)):
            super().__setattr__(key, resolved)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if issubclass(cls, nn.modules.conv._ConvNd) and "dim" in vars(cls):  # a concrete 1/2/3-D class
            register_fusion(cls)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        compiled_choice.register(self)  # a copy or an unpickled layer: findable by the op (it shares the key)

    def reset_parameters(self) -> None:
        init_conv_(self.weight, self.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """The batched ``x``: rank and channels, and the window (a 'reflect' / 'circular' padding must find what it
        copies, as ``F.pad`` requires)."""
        check_input(x, self.dim, self.in_channels, type(self).__name__)
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)

    def kernel(self) -> torch.Tensor:
        """The kernel the cross-correlation uses: ``weight``, flipped in every spatial axis for ``'convolution'``."""
        return flip_kernel(self.weight) if self.mode == "convolution" else self.weight

    # rank and channels checked on the input as given (an unbatched input's error quoted the batch of one)
    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """Check ``x``, pick the formulation (``forward_path``) and bind the geometry: later inputs of the key run
        one native call (or the fast path) with nothing re-derived but the flipped kernel of 'convolution'."""
        self.check_input(x)
        path = self.forward_path(x)
        if self.implementation != "auto" or is_tracing(x):
            return self._runner(path, x=x)
        return _CHOICE.in_context(self._choice_config(), x, path, self.forms(x), tuple(self.parameters()),
                                  lambda name: self._runner(name, x=x))

    def _runner(self, path: str, x: torch.Tensor | None = None) -> Runner:
        """The runner f(layer, x) for ``path``; parameters are read at call time (in-place updates,
        parametrizations), the kernel flipped for 'convolution' at every call, with or without autograd: a
        flipped copy kept between calls would miss writes through ``p.data``, which move no version counter, and
        the flip costs about one copy of the weight. Given ``x``, the runner may be planned for inputs of its key
        (shape, strides, dtype, grad mode, threads) only."""
        stride, dilation, groups, pairs = self.stride, self.dilation, self.groups, self.padding_pairs
        pad = tuple(lo for lo, _ in pairs)
        weight, bias = parameter_reader(self, "weight"), parameter_reader(self, "bias")
        kernel = weight
        if self.mode == "convolution":
            kernel = lambda m: flip_kernel(weight(m))
        if path == compiled_choice.FORM:
            key = compiled_choice.handle(self)
            assert key is not None  # forward_path gives this form only to a registered layer
            return lambda m, x: compiled_choice.measured_form(x, weight(m), bias(m), key)
        if path in ("kernel", KERNEL_TILES, triton_forms.TRITON):  # convzoo's depthwise kernels: numba or Triton
            window = path != KERNEL_TILES
            if path != triton_forms.TRITON:
                from ..kernels.depthwise import depthwise_conv as own_kernel
            else:
                from ..kernels.triton_depthwise import depthwise_conv as own_kernel
            if self.padding_mode != "zeros":
                mode, zero = self.padding_mode, tuple((0, 0) for _ in pairs)
                return lambda m, x: own_kernel(pad_pairs(x, pairs, mode), kernel(m), bias(m), stride, zero, dilation)
            if path != triton_forms.TRITON and x is not None:  # layout, output size, taps, threads decided once
                from ..kernels.depthwise import planned_depthwise_conv

                launch = planned_depthwise_conv(tuple(x.shape), x.stride(), x.dtype, self._weight_shape(),
                                                tuple(stride), tuple(pairs), tuple(dilation), torch.is_grad_enabled(),
                                                torch.get_num_threads(), window)
                if kernel is weight and "weight" in self._parameters and "bias" in self._parameters:
                    return lambda m, x: launch(x, m._parameters["weight"], m._parameters["bias"])
                return lambda m, x: launch(x, kernel(m), bias(m))
            if path == KERNEL_TILES:
                return lambda m, x: own_kernel(x, kernel(m), bias(m), stride, pairs, dilation, False)
            return lambda m, x: own_kernel(x, kernel(m), bias(m), stride, pairs, dilation)
        if path.startswith("channels_last"):
            return lambda m, x: depthwise_channels_last(x, kernel(m), bias(m), stride, pad, dilation)
        if path == "matmul":
            return lambda m, x: pointwise_matmul(x, weight(m), bias(m), groups)
        if path.startswith("split"):
            return lambda m, x: depthwise_split(x, kernel(m), bias(m), stride, pad, dilation)
        if path != "native":
            raise ValueError(f"form={path!r} is not a form of {type(self).__name__}; its forms are 'native', "
                             f"'kernel', {KERNEL_TILES!r}, 'triton', 'channels_last …', 'split ×m' and 'matmul' "
                             "(see forms(x))")
        op = _CONV[self.dim]
        if self.padding_mode != "zeros" or any(lo != hi for lo, hi in pairs):
            mode = self.padding_mode
            return lambda m, x: op(pad_pairs(x, pairs, mode), kernel(m), bias(m), stride, 0, dilation, groups)
        if kernel is weight and "weight" in self._parameters and "bias" in self._parameters:
            # the common case written out: one native call, two dict look-ups (torch's Conv2d pays two
            # nn.Module.__getattr__ calls)
            return lambda m, x: op(x, m._parameters["weight"], m._parameters["bias"], stride, pad, dilation, groups)
        return lambda m, x: op(x, kernel(m), bias(m), stride, pad, dilation, groups)

    def run_form(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """The output computed by form ``name`` (one of ``forms(x)``; all compute the same sum)."""
        return self._runner(name, x=x)(self, x)

    def forms(self, x: torch.Tensor) -> list[str]:
        """The exact forms of this conv on inputs like ``x`` ('native' first: torch's one conv call).

        On the CPU a depthwise conv (groups = C_in, 1-D or 2-D) adds convzoo's kernel ('kernel', numba; any
        multiplier m, padding and format); a 3×3 'same' with m = 1 on channels_last data also that kernel without
        its register windows ('kernel, position tiles': faster where the windows spill). With zero symmetric
        padding in 2-D it also has the rearrangements of ``layers/fastpaths.py``: on NCHW data the channels_last
        round trip (one conv on NHWC data, m > 1 as a repeated input) and, for m > 1, m multiplier-1 convs into the
        interleaved output ('split ×m'); on channels_last data, for m > 1, the ×m repeat. A grouped 1×1 conv on NCHW
        data adds a batched matmul. A depthwise conv with m > 1 in 1-D/2-D adds convzoo's Triton kernel ('triton')
        where Triton runs (CUDA)."""
        names = ["native"]
        if x.dim() != self.dim + 2:
            return names
        depthwise = self.groups == self.in_channels
        m = self.out_channels // self.in_channels
        if depthwise and m > 1 and self.dim < 3 and triton_forms.offered(x, "DepthwiseConv"):
            names.append(triton_forms.TRITON)  # CUDA (or Triton's interpreter): convzoo's Triton kernel
        if x.device.type != "cpu":
            return names
        if depthwise and self.dim in (1, 2) and "kernel" not in _CHOICE.failed:
            from ..kernels import cpu_kernels, runs_on

            kernels = cpu_kernels("depthwise", type(self).__name__) if runs_on(x, stored(self, "weight"),
                                                                                  stored(self, "bias")) else None
            if kernels is not None:
                names.append("kernel")
                if (is_channels_last(x) and self.padding_mode == "zeros" and KERNEL_TILES not in _CHOICE.failed
                        and kernels.window_choice(self._weight_shape(), m, self.stride, self.dilation,
                                                  self.padding_pairs)):
                    names.append(KERNEL_TILES)  # the register windows spill on some CPUs: timed against them
        if self.dim != 2 or self.padding_mode != "zeros" or any(lo != hi for lo, hi in self.padding_pairs):
            return names
        nchw = not is_channels_last(x)
        if depthwise and self.in_channels > 1:
            if nchw:
                names.append("channels_last round trip")
            if m > 1:
                names.append(f"split ×{m}" if nchw else f"channels_last ×{m} repeat")
        pointwise = all(k == 1 for k in self.kernel_size) and all(s == 1 for s in self.stride)
        if pointwise and self.groups > 1 and nchw and all(lo == 0 for lo, _ in self.padding_pairs):
            names.append("matmul")
        return names

    @property
    def implementation(self) -> str:
        """'auto' (the form measured fastest on this machine, per input key) or the name of a form to run."""
        return self.__dict__.get("_implementation", "auto")

    @implementation.setter
    def implementation(self, value: str) -> None:
        self.__dict__["_implementation"] = value

    def forward_path(self, x: torch.Tensor) -> str:
        """The form ``forward`` runs on ``x``: 'native' under tracing / compile / export (compiled depthwise m > 1
        inference on the CPU: one op that runs the eager choice when the compiled code runs, ``compiled_choice.py``),
        else ``measured_path``: the only form, or ``implementation`` when pinned, or the fastest measured on this
        machine for the input's key (configuration, shape, memory format, device, dtype, backward; ``FormChoice``,
        once per key and process; torch's own conv unless another form is more than 3 % faster). No form is
        preferred from measurements on another machine: oneDNN's NCHW depthwise kernel is 6× faster than its
        channels_last one on one CPU and 30× slower on another."""
        if is_tracing(x) or torch.is_autocast_enabled(x.device.type):  # before listing forms: compilers and
            if (compiled_choice.applies(self, x) and self.groups == self.in_channels > 1 and self.dim < 3
                    and (self.out_channels > self.in_channels or compiled_choice.trains(self, x))):
                return compiled_choice.FORM  # compiled depthwise, m > 1 or training: see there
            return "native"  # exporters see the one deterministic form; autocast casts inside torch's own ops
        return self.measured_path(x)

    def measured_path(self, x: torch.Tensor) -> str:
        """The form an eager call runs on ``x``: the only one, ``implementation`` when pinned, else the fastest
        measured on this machine for the input's key (``FormChoice``)."""
        names = self.forms(x)
        pinned = self.implementation
        if pinned != "auto":
            if pinned not in names:
                raise ValueError(f"implementation={pinned!r} is not a form of {type(self).__name__} on this input; "
                                 f"its forms are {names}")
            return pinned
        if len(names) == 1:
            return names[0]
        return _CHOICE.for_input(self._choice_config(), x,
                                 lambda layer: {n: lambda t, n=n: layer.run_form(n, t) for n in names},
                                 fallible=("kernel", KERNEL_TILES, triton_forms.TRITON), layer=self)

    def _choice_config(self) -> tuple[Any, ...]:
        """What besides the input decides which form is fastest."""
        return (type(self).__name__, self.in_channels, self.out_channels, self.groups, self.kernel_size,
                self.stride, self.dilation, self.padding_pairs, self.padding_mode, self.mode,
                stored(self, "bias") is not None)

    def _weight_shape(self) -> tuple[int, ...]:
        """(C_out, C_in/groups, *k), from the configuration (a parametrized weight is not evaluated for it)."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """MACs = N·prod(O)·C_out·(C_in/groups)·prod(k); elements = input + weight + bias + output."""
        out = conv_output_tensor_shape(input_shape, self.out_channels, self.kernel_size, self.stride, self.padding_pairs,
                             self.dilation)
        return conv_cost(input_shape, out, self.weight.shape, 0 if self.bias is None else self.out_channels)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        from ..oracle import reference as ref

        fn = ref.convolve if self.mode == "convolution" else ref.correlate
        return fn(x, to_numpy(self.weight), to_numpy(self.bias), self.stride, self.padding, self.dilation,
                  self.groups, self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        if self.mode == "convolution":
            # The same function with the kernel flipped once, outside the timed call (the layer flips per call).
            flipped = flip_kernel(self.weight).detach().requires_grad_()
            return [("native", "F.conv (pre-flipped kernel)", native_conv_call(self, flipped)),
                    ("native", "F.conv(flip(w))", lambda x: native_conv_call(self, flip_kernel(self.weight))(x))]
        return [("native", "F.conv", native_conv_call(self))]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Exact when W fits the layer's kernel and groups; else the orthogonal projection onto them."""
        from ..dense_kernels import load_, relative_frobenius_error

        blocks, effective = grouped_projection(weight, self.groups, self.kernel_size)
        load_(self.weight, blocks.flip(tuple(range(2, blocks.dim()))) if self.mode == "convolution" else blocks)
        load_(self.bias, bias)
        return relative_frobenius_error(effective, weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """r + (k_eff − 1)·j, j·s, c + ((k_eff − 1)/2 − p_before)·j with k_eff = d·(k − 1) + 1."""
        return field.window(self.kernel_size, self.stride, self.dilation, [lo for lo, _ in self.padding_pairs])

    def stages(self) -> list[Stage]:
        return [Stage("convolution" if self.mode == "convolution" else "conv", self, module=self)]

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (", mode='convolution'" if self.mode == "convolution" else "")


class Conv1d(ConvNd, nn.Conv1d):
    """1-D convolution: input (N, C_in, L)."""

    dim = 1


class Conv2d(ConvNd, nn.Conv2d):
    """2-D convolution: input (N, C_in, H, W)."""

    dim = 2


class Conv3d(ConvNd, nn.Conv3d):
    """3-D convolution: input (N, C_in, D, H, W)."""

    dim = 3
