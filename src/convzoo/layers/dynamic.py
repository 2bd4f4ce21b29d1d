"""Dynamic convolution (Chen et al. 2020, "Dynamic Convolution: Attention over Convolution Kernels",
arXiv:1912.03458; article 001 §13, article 003 §2.3).

K parallel kernels are aggregated per sample with input-dependent attention
π(x) = softmax(FC₂(ReLU(FC₁(GAP(x)))) / T):  W(x) = Σ_k π_k(x)·W_k,  b(x) = Σ_k π_k(x)·b_k,  y = W(x) ⋆ x + b(x).
Exact eager forms (``_forms``): one grouped conv with the samples folded into groups (NCHW, NHWC, or NHWC in
chunks of ``_FOLD_CHUNK`` samples), or one conv per sample (NCHW or NHWC); ``implementation='auto'`` times them
once per input shape / format / dtype / grad mode (``form_choice``). Under ONNX export, jit.trace, torch.compile
(except on the CPU, where the whole layer is one op running its eager forward: ``compiled_layer.py``) or
torch.export the layer runs ``_unfolded`` (per-sample kernels by one batched matmul over window patches,
``patches.per_sample_conv``, in every dimension: no number in the graph depends on the batch). Each sample's output
depends only on that sample; the output keeps the input's memory format. ``temperature`` is an attribute:
anneal it from the training loop (the paper: 30 → 1 over the first epochs); it is saved in the state dict
(``TemperatureState``), so a model trained down to T = 1 reloads at T = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import (
    resolve_geometry,
    PADDING_MODES,
    IntOrTuple,
    Padding,
    check_choice,
    check_groups,
    check_positive_int,
    check_window_fits,
)
from .base import (
    Alternative,
    ConvzooLayer,
    Stage,
    geometry_repr,
    input_checked,
    parameter_reader,
    planned_forward,
    Runner,
)
from ..arithmetic.cost import (LayerCost, compose, conv_macs, conv_output_tensor_shape, elementwise_cost, module_cost,
                                numel)
from ..functional import conv_with_pairs, pad_pairs
from ..kernels.grad_layout import grad_in_layout
from .base import init_conv_, stored, stored_shape
from .conv import grouped_projection
from . import triton_forms
from .form_choice import FormChoice, is_tracing
from .formats import channels_last_format
from .kernel_bank import bank_view, timm_condconv_peer
from .patches import per_sample_conv

if TYPE_CHECKING:
    import numpy as np


# (configuration, input shape / format / device / dtype, backward) → the fastest exact eager form
_CHOICE = FormChoice("DynamicConvNd", prefer="batch_folded", margin=0.03)
# samples per grouped conv in ``batch_folded_chunks_channels_last`` (the whole batch is the form
# ``batch_folded_channels_last``); ``benchmarks/bench_dynamic.py --forms`` times the chunk sizes
_FOLD_CHUNK = 8
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _in_format_of(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``y`` in ``x``'s memory format (channels-last 2-D/3-D stays so, anything else contiguous)."""
    fmt = channels_last_format(x)
    return y.contiguous() if fmt is None else y.contiguous(memory_format=fmt)


class TemperatureState:
    """Mixin for an ``nn.Module`` with a softmax ``temperature`` set during training: the state dict carries it as
    ``<prefix>_extra_state``, a 0-dim float64 CPU tensor (a tensor, so tools that expect tensors in a state dict
    keep working; not a buffer, so ``.half()`` does not round it and ``.cuda()`` does not make the forward read it
    back from the device). A state dict saved before it existed still loads, ``strict`` or not, and leaves the
    temperature as it is."""

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"temperature={value!r} must be a positive finite number")
        self._temperature = float(value)

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor(self.temperature, dtype=torch.float64, device="cpu")

    def set_extra_state(self, state: Any) -> None:
        if isinstance(state, torch.Tensor):
            if state.is_meta:  # a meta state dict has no values: keep the current temperature
                return
            state = state.item()
        value = float(state)
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"_extra_state: temperature={value!r} must be a positive finite number")
        self.temperature = value

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,  # type: ignore[misc]
                                      missing_keys, unexpected_keys, error_msgs)
        key = prefix + "_extra_state"
        if key not in state_dict and key in missing_keys:  # an older file: nothing to restore, nothing missing
            missing_keys.remove(key)


class KernelAttention(nn.Module):
    """π(x) = softmax(fc2(ReLU(fc1(mean_spatial(x)))) / T): (N, C_in, *S) → (N, K), rows summing to 1."""

    def __init__(self, in_channels: int, num_kernels: int, reduction: int, device=None, dtype=None) -> None:
        super().__init__()
        hidden = max(in_channels // reduction, 1)
        self.fc1 = nn.Linear(in_channels, hidden, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, num_kernels, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, temperature: float) -> torch.Tensor:
        # GAP as a sum times 1/prod(S): on channels-last data torch's sum is about twice as fast as its mean, and its
        # backward is a broadcast view where mean's writes a full-size tensor
        pooled = x.sum(dim=tuple(range(2, x.dim()))) * (1.0 / math.prod(x.shape[2:]))
        fc = self._modules  # not nn.Module.__getattr__ twice per call; fc1 and fc2 still run as modules (hooks)
        return torch.softmax(fc["fc2"](torch.relu(fc["fc1"](pooled))) / temperature, dim=1)  # type: ignore[misc]


class DynamicConvNd(TemperatureState, ConvzooLayer, nn.Module):
    """Shapes: (N, C_in, *S) → (N, C_out, *O) as ``Conv*d``; weight (K·C_out, C_in/groups, *k) — the K kernels
    stacked along the first axis, so that a 2-D layer's weight is 4-D and ``model.to(memory_format=
    torch.channels_last)`` works; ``kernels`` is the (K, C_out, C_in/groups, *k) view — and bias (K, C_out).

    Arguments, order and defaults as ``torch.nn.Conv*d``; ``num_kernels`` K, ``reduction`` (of the attention's
    hidden layer) and the softmax ``temperature`` are keyword-only.
    """

    compiles_as_op = True  # compiled on the CPU: one op running the eager forward (measured form); compiled_layer.py

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
        num_kernels: int = 4,
        reduction: int = 4,
        temperature: float = 30.0,
    ) -> None:
        super().__init__()
        in_channels, out_channels, groups = check_groups(in_channels, out_channels, groups)
        num_kernels = check_positive_int(num_kernels, "num_kernels")
        reduction = check_positive_int(reduction, "reduction")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.num_kernels, self.reduction = num_kernels, reduction
        geometry = resolve_geometry(self.dim, kernel_size, stride, padding, dilation)
        self.kernel_size, self.stride, self.dilation = geometry.kernel_size, geometry.stride, geometry.dilation
        self.padding, self.padding_pairs = geometry.padding, geometry.padding_pairs
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        self.temperature = temperature
        self.implementation = "auto"  # or a name from ``_forms``: see ``chosen_form``
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(
            torch.empty(num_kernels * out_channels, in_channels // groups, *self.kernel_size, **factory)
        )
        self.bias = nn.Parameter(torch.empty(num_kernels, out_channels, **factory)) if bias else None
        self.attention = KernelAttention(in_channels, num_kernels, reduction, **factory)
        self.reset_parameters()

    @property
    def kernels(self) -> torch.Tensor:
        """The K kernels, (K, C_out, C_in/groups, *k) (a view of ``weight``)."""
        return bank_view(self.weight, self.num_kernels)

    def kernel_bank(self) -> torch.Tensor:
        return self.kernels

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for k in range(self.num_kernels):  # each kernel initialised as an independent conv
                init_conv_(self.kernels[k], None if self.bias is None else self.bias[k])
        self.attention.fc1.reset_parameters()
        self.attention.fc2.reset_parameters()

    # rank and channels checked on the input as given (an unbatched input's error quoted the batch of one)
    forward = input_checked(planned_forward)

    def plan_forward(self, x: torch.Tensor) -> Runner:
        """Check the window and choose the form once per key (``chosen_form``: measured on the first input of a key)."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        if x.shape[0] == 0:  # an empty batch: the output's shape from a static conv with the first kernel
            return _empty_batch
        if x.device.type == "meta":
            return DynamicConvNd._batch_folded
        if is_tracing(x):
            return DynamicConvNd._unfolded  # the batch stays a dimension of the graph, never a number in it
        name = self.chosen_form(x)
        if name == "batch_folded" and channels_last_format(x) is None:
            return self._batch_folded_runner(x)
        form = self._forms(x)[name].__func__  # type: ignore[attr-defined]
        return lambda m, x: _in_format_of(form(m, x), x)  # a no-op where the form kept it

    def _batch_folded_runner(self, x: torch.Tensor) -> Runner:
        """``_batch_folded`` for inputs of ``x``'s key, its shapes and geometry bound once: the attention (called
        as a module, so its hooks still run), the kernels and biases aggregated by two matmuls, one grouped conv —
        the same ops in the same order, so the same values."""
        n, k, cout = x.shape[0], self.num_kernels, self.out_channels
        kernel_shape = (n * cout, *stored_shape(self, "weight")[1:])
        folded_shape = (1, n * self.in_channels, *x.shape[2:])
        out_shape = conv_output_tensor_shape(tuple(x.shape), cout, self.kernel_size, self.stride, self.padding_pairs,
                                             self.dilation)
        op = _CONV[self.dim]
        stride, dilation, groups, pairs, mode = self.stride, self.dilation, n * self.groups, self.padding_pairs, \
            self.padding_mode
        symmetric = mode == "zeros" and all(lo == hi for lo, hi in pairs)
        pad = tuple(lo for lo, _ in pairs) if symmetric else 0
        weight, bias = parameter_reader(self, "weight"), parameter_reader(self, "bias")

        def run(m: DynamicConvNd, x: torch.Tensor) -> torch.Tensor:
            attention = m._modules["attention"](x, m._temperature)  # type: ignore[misc]
            kernels = (attention @ weight(m).reshape(k, -1)).reshape(kernel_shape)
            b = bias(m)
            folded = x.reshape(folded_shape) if symmetric else pad_pairs(x.reshape(folded_shape), pairs, mode)
            y = op(folded, kernels, None if b is None else (attention @ b).reshape(-1), stride, pad, dilation, groups)
            return y.reshape(out_shape)

        return run

    def _forms(self, x: torch.Tensor) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """The exact eager forms: batch-folded grouped conv and per-sample convs, in NCHW and (2-D) in NHWC."""
        forms = {"batch_folded": self._batch_folded_in_format, "per_sample": self._per_sample}
        if self.dim == 2:
            forms["batch_folded_channels_last"] = self._batch_folded_channels_last
            forms["per_sample_channels_last"] = self._per_sample_channels_last
            forms["batch_folded_chunks_channels_last"] = self._batch_folded_chunks_channels_last
        if self.dim < 3 and triton_forms.offered(x, "DynamicConv"):  # CUDA: the Triton kernel is one more form
            forms[triton_forms.TRITON] = self._triton
        return forms

    def _triton(self, x: torch.Tensor) -> torch.Tensor:
        """The aggregated per-sample kernels applied by convzoo's Triton kernel, one launch for the batch
        (``kernels/triton_per_sample.py``; 1-D and 2-D)."""
        from ..kernels.triton_per_sample import per_sample_conv as triton_per_sample_conv

        weight, bias = self._aggregate(x)
        pairs = self.padding_pairs
        if self.padding_mode != "zeros":
            x, pairs = pad_pairs(x, pairs, self.padding_mode), tuple((0, 0) for _ in pairs)
        return triton_per_sample_conv(x, weight, bias, self.stride, pairs, self.dilation, self.groups)

    def chosen_form(self, x: torch.Tensor) -> str:
        """The eager form ``forward`` runs on ``x``: ``implementation`` unless 'auto', else the fastest of
        ``_forms`` measured once per (configuration, input shape, memory format, device, dtype, backward) and
        cached per process (``form_choice``). Under tracing / compile / export ``forward`` runs ``_unfolded``."""
        choice = self.implementation
        if choice != "auto":
            forms = self._forms(x)
            if choice not in forms:
                raise ValueError(f"implementation={choice!r} must be 'auto' or one of {sorted(forms)} for "
                                 f"{type(self).__name__}")
            return choice
        config = (type(self).__name__, self.in_channels, self.out_channels, self.groups, self.num_kernels,
                  self.kernel_size, self.stride, self.dilation, self.padding_pairs, self.padding_mode,
                  stored(self, "bias") is not None)
        return _CHOICE.for_input(config, x, lambda layer: layer._candidate_forms(x), layer=self,
                                 fallible=(triton_forms.TRITON,))

    def _candidate_forms(self, x: torch.Tensor) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """``_forms`` that 'auto' measures, every one on this machine (forward + backward when gradients are
        wanted): which of them is fastest depends on the CPU and its oneDNN kernels, so none is left out."""
        forms = self._forms(x)
        kept = triton_forms.candidates({name: (lambda f=f: f(x)) for name, f in forms.items()}, x, "DynamicConv")
        return {name: f for name, f in forms.items() if name in kept}

    def _aggregate(self, x: torch.Tensor, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample kernels (N, C_out, C_in/g, *k) and biases (N, C_out): W_n = Σ_k π_nk(x)·W_k, b_n = Σ_k π_nk·b_k,
        each one (N, K) @ (K, ·) matmul. ``channels_last``: every kernel stored channels-last ((C_out, *k, C_in/g)
        order, what an NHWC conv takes without a copy; the bank is read in that order, a copy of it only if it is
        not stored so)."""
        n = x.shape[0]
        attention = self.attention(x, self.temperature)  # (N, K)
        # (K, C_out, *k, C_in/g) or (K, C_out, C_in/g, *k)
        # permutes of non-negative dims (movedim's negative ones reach TorchScript's ONNX export as a Transpose
        # perm that onnxruntime refuses)
        kernels, bias = self.kernels, self.bias  # each read once: a parametrized tensor is evaluated once per call
        d = kernels.dim()
        # channels-last: the kernels' gradient comes back through the permute channel-innermost; grad_in_layout
        # hands it to the parameter in its own strides
        bank = grad_in_layout(kernels).permute(0, 1, *range(3, d), 2) if channels_last else kernels
        weight = (attention @ bank.reshape(self.num_kernels, -1)).reshape(n, *bank.shape[1:])
        bias = attention @ bias if bias is not None else None
        return (weight.permute(0, 1, d - 1, *range(2, d - 1)) if channels_last else weight), bias

    def _batch_folded(self, x: torch.Tensor) -> torch.Tensor:
        """Samples folded into groups: one grouped conv with N·g groups computes the whole batch."""
        n = x.shape[0]
        weight, bias = self._aggregate(x)
        folded = x.reshape(1, n * self.in_channels, *x.shape[2:])
        y = conv_with_pairs(folded, weight.flatten(0, 1), None if bias is None else bias.flatten(), self.stride,
                            self.padding_pairs, self.dilation, n * self.groups, self.padding_mode)
        return y.reshape(n, self.out_channels, *y.shape[2:])

    def _unfolded(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample kernels applied by one batched matmul over window patches (``patches.per_sample_conv``:
        (N, g, C_out/g, C_in/g·prod(k)) @ (N, g, C_in/g·prod(k), prod(O))), in any dimension, with no number
        depending on the batch (ONNX export with a dynamic batch, jit.trace)."""
        weight, bias = self._aggregate(x)
        return per_sample_conv(x, weight, bias, self.stride, self.padding_pairs, self.dilation, self.groups,
                               self.padding_mode)

    def _batch_folded_in_format(self, x: torch.Tensor) -> torch.Tensor:
        """``_batch_folded`` computed in NCHW, the output in ``x``'s memory format."""
        if channels_last_format(x) is not None:
            # folding the batch into groups copies a channels-last input anyway (n and c cannot share one stride):
            # fold in the contiguous format and hand the input's format back
            return _in_format_of(self._batch_folded(x.contiguous()), x)
        return self._batch_folded(x)

    def _batch_folded_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """2-D: the batch-folded grouped conv in NHWC (mkldnn's channels-last grouped conv), the output in ``x``'s
        memory format; ``_folded_chunks_channels_last`` with one chunk."""
        return self._folded_chunks_channels_last(x, x.shape[0])

    def _batch_folded_chunks_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """2-D: ``_folded_chunks_channels_last`` with ``_FOLD_CHUNK`` samples a conv (a chunk's input stays in L2)."""
        return self._folded_chunks_channels_last(x, _FOLD_CHUNK)

    def _folded_chunks_channels_last(self, x: torch.Tensor, chunk: int) -> torch.Tensor:
        """2-D: the batch folded into groups ``chunk`` samples at a time: a chunk's input (G, H, W, C_in) is
        transposed to (H, W, G, C_in) — a channels-last (1, G·C_in, H, W) — and convolved by one NHWC conv with G·g
        groups and the G kernels (G·C_out, C_in/g, kh, kw) (a view of the aggregated kernels); its output (H', W',
        G, C_out) is written into its samples' slice of the NHWC output."""
        n, (h, w) = x.shape[0], x.shape[2:]
        weight, bias = self._aggregate(x, channels_last=True)
        kernels = weight.flatten(0, 1)  # (N·C_out, C_in/g, kh, kw), channels-last: no copy
        biases = None if bias is None else bias.flatten()
        out = None
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            # (G, C_in, H, W) → (1, H, W, G·C_in) by one copy, viewed as the channels-last (1, G·C_in, H, W) (its
            # batch stride the full size: torch's fp64 grouped channels-last conv gets the weight gradient wrong
            # with any other)
            folded = x[start:start + size].permute(2, 3, 0, 1).reshape(1, h, w, -1).permute(0, 3, 1, 2)
            rows = slice(start * self.out_channels, (start + size) * self.out_channels)
            y = conv_with_pairs(folded, kernels[rows], None if biases is None else biases[rows], self.stride,
                                self.padding_pairs, self.dilation, size * self.groups, self.padding_mode)
            if out is None:
                out = torch.empty((n, self.out_channels, *y.shape[2:]), dtype=y.dtype, device=y.device,
                                  memory_format=torch.channels_last)
            out[start:start + size] = y.permute(0, 2, 3, 1).reshape(*y.shape[2:], size, -1).permute(2, 3, 0, 1)
        return _in_format_of(out, x)

    def _per_sample(self, x: torch.Tensor) -> torch.Tensor:
        """One conv per sample with its own kernel: y[n] = W_n ⋆ x[n] + b_n, N native calls."""
        return self._per_sample_convs(x, channels_last=False)

    def _per_sample_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """2-D: one conv per sample with input and kernel in NHWC (mkldnn's fast dense path), the output in
        ``x``'s memory format."""
        return _in_format_of(self._per_sample_convs(x.contiguous(memory_format=torch.channels_last),
                                                    channels_last=True), x)

    def _per_sample_convs(self, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        """y[n] = W_n ⋆ x[n] + b_n by N convs of batch one, the kernels aggregated straight into the layout the convs
        take. Samples are taken apart with ``split`` (backward: one ``cat``), kernels and biases with ``unbind``
        (backward: one ``stack``) — not by indexing, whose backward writes a zero-filled full-size gradient per
        sample (N² work)."""
        weight, bias = self._aggregate(x, channels_last)
        biases = [None] * x.shape[0] if bias is None else bias.unbind(0)
        return torch.cat([conv_with_pairs(x_n, w_n, b_n, self.stride, self.padding_pairs, self.dilation, self.groups,
                                          self.padding_mode)
                          for x_n, w_n, b_n in zip(x.split(1), weight.unbind(0), biases)])

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """Attention + kernel aggregation + the conv, summed part by part:

        - attention: GAP (N·C_in·prod(S) other ops), fc1 N·C_in·hidden and fc2 N·hidden·K MACs, ReLU and
          softmax(z/T) (1 and 4 other ops per element);
        - aggregation W(x) = Σ_k π_k W_k: N·K·C_out·(C_in/g)·prod(k) MACs — multiply-accumulates of weights, so
          MACs (bias aggregation N·K·C_out is other ops, as biases are not MACs);
        - the per-sample conv: N·prod(O)·C_out·(C_in/g)·prod(k) MACs, reading the aggregated kernels.
        """
        n, c = input_shape[0], input_shape[1]
        k, hidden = self.num_kernels, self.attention.fc1.out_features
        bias = 0 if self.bias is None else self.out_channels
        out = conv_output_tensor_shape(input_shape, self.out_channels, self.kernel_size, self.stride, self.padding_pairs, self.dilation)
        kernel = tuple(self.kernels.shape[1:])  # one sample's (C_out, C_in/g, *k)
        gap = LayerCost(0, 0, numel(input_shape), numel(input_shape) + n * c, (n, c))
        fc1 = module_cost(self.attention.fc1, (n, c), (n, hidden))
        fc2 = module_cost(self.attention.fc2, (n, hidden), (n, k))
        weights = self.weight.numel() + k * bias
        aggregated = n * (numel(kernel) + bias)
        aggregation = LayerCost(weights, n * k * numel(kernel), n * k * bias, n * k + weights + aggregated,
                                (n, *kernel))
        conv = LayerCost(0, conv_macs(out, kernel), 0, numel(input_shape) + aggregated + numel(out), out)
        return compose([gap, fc1, elementwise_cost((n, hidden), 1), fc2, elementwise_cost((n, k), 4),
                        aggregation, conv])

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        """π = softmax(FC₂(ReLU(FC₁(GAP(x))))/T), W(x) = Σ π_k W_k, then the conv, per sample (reference.py)."""
        import numpy as np

        from ..oracle import reference as ref
        from .conv import to_numpy

        att = self.attention
        fc = [to_numpy(t) for t in (att.fc1.weight, att.fc1.bias, att.fc2.weight, att.fc2.bias)]
        weight, bias = to_numpy(self.kernels), to_numpy(self.bias)
        if self.padding_mode == "zeros":
            return ref.dynamic_conv(x, weight, bias, *fc, self.temperature, self.stride,
                                    ref.resolve_padding(self.padding, self.kernel_size, self.stride, self.dilation),
                                    self.dilation, self.groups)
        attention = ref.dynamic_attention(x, *fc, self.temperature)
        outputs = []
        for n in range(x.shape[0]):
            w_n = np.tensordot(attention[n], weight, axes=1)
            b_n = None if bias is None else attention[n] @ bias
            outputs.append(ref.correlate(x[n : n + 1], w_n, b_n, self.stride, self.padding, self.dilation,
                                         self.groups, self.padding_mode))
        return np.concatenate(outputs)

    def native_alternatives(self) -> list[Alternative]:
        forms: list[Alternative] = [("native", "batch-folded grouped conv", self._batch_folded),
                                    ("native", "per-sample loop", self._per_sample),
                                    ("native", "window patches + batched matmul", self._unfolded)]
        if self.dim == 2:
            forms += [("native", "batch-folded grouped conv (NHWC)", self._batch_folded_channels_last),
                      ("native", f"batch-folded grouped convs, {_FOLD_CHUNK} samples each (NHWC)",
                       self._batch_folded_chunks_channels_last),
                      ("native", "per-sample loop (NHWC)", self._per_sample_channels_last)]
        peer = self._timm_peer()
        if peer is not None:
            forms.append(("peer", "timm CondConv2d (attention from this layer)",
                          lambda x: peer(x, self.attention(x, self.temperature))))
        return forms

    def _timm_peer(self) -> nn.Module | None:
        """timm's CondConv2d holding this layer's K kernels as its experts (2-D, symmetric zero padding): it
        computes W(x) = Σ_k r_k W_k, b(x) = Σ_k r_k b_k for the routing r it is given — here π(x), so its output is
        this layer's."""
        return timm_condconv_peer(self, self.num_kernels)

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Every kernel starts as W: Σ_k π_k W = W for any attention π (exact when W fits kernel and groups)."""
        from ..dense_kernels import load_, relative_frobenius_error

        blocks, effective = grouped_projection(weight, self.groups, self.kernel_size)
        load_(self.weight, blocks.unsqueeze(0).expand_as(self.kernels).reshape(self.weight.shape))
        load_(self.bias, None if bias is None else bias.unsqueeze(0).expand_as(self.bias))
        return relative_frobenius_error(effective, weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        """The kernel's window, and a global path: its attention pools the whole input, so every output depends
        on every pixel through the kernel weights."""
        return field.window(self.kernel_size, self.stride, self.dilation, [lo for lo, _ in self.padding_pairs]).also_global()

    def stages(self) -> list[Stage]:
        """Attention over the K kernels (a side branch: GAP → FC → ReLU → FC → softmax/T), then the conv with the
        aggregated kernel W(x) = Σ_k π_k(x)·W_k."""
        return [Stage(f"attention π = softmax(FC(ReLU(FC(GAP(x)))) / T) over K={self.num_kernels} kernels", lambda x: self.attention(x, self.temperature),
                      side=True, module=self.attention),
                Stage("conv with the aggregated kernel", self, module=self)]

    def illustrate_(self) -> str | None:
        """Pictures draw the layer at T = 1, where the paper's annealing (30 → 1 over the first epochs) ends: at
        T = 30, as built, the softmax of small logits gives every kernel ≈ 1/K and no choice shows."""
        if self.temperature == 1.0:
            return None
        built, self.temperature = self.temperature, 1.0
        return (f"drawn at temperature T = 1, where training's annealing ends (built with T = {built:g}, at which "
                f"every π_k ≈ 1/{self.num_kernels})")

    def extra_repr(self) -> str:
        return geometry_repr(self, {"num_kernels": self.num_kernels, "temperature": self.temperature})


class DynamicConv1d(DynamicConvNd):
    """1-D dynamic convolution: input (N, C_in, L); see ``DynamicConvNd``."""

    dim = 1


class DynamicConv2d(DynamicConvNd):
    """2-D dynamic convolution: input (N, C_in, H, W); see ``DynamicConvNd``."""

    dim = 2


class DynamicConv3d(DynamicConvNd):
    """3-D dynamic convolution: input (N, C_in, D, H, W); see ``DynamicConvNd``."""

    dim = 3


def _empty_batch(m: DynamicConvNd, x: torch.Tensor) -> torch.Tensor:
    """An empty batch: the output's shape from a static conv with the first kernel."""
    return conv_with_pairs(x, m.weight[: m.out_channels], None, m.stride, m.padding_pairs, m.dilation, m.groups,
                           m.padding_mode)
