"""HetConv (Singh et al. 2019, "HetConv: Heterogeneous Kernel-Based Convolutions", arXiv:1903.04120;
article 003 §2.3): in filter j the kernel on input channel c is k×k when (c − j) mod p == 0 and 1×1
otherwise, so each filter has C_in/p k×k kernels and C_in − C_in/p 1×1 kernels.

Exact and loop-free: the k×k kernels of all filters form a p-group convolution once the input channels are
ordered by residue c mod p and the filters by j mod p; the 1×1 kernels form one dense 1×1 convolution on
the centre taps with the k×k positions left at zero. Published versions either loop over filters or
approximate the pattern with groupwise + pointwise convs; this one equals the masked dense definition.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..arithmetic.cost import LayerCost, conv_output_tensor_shape, numel
from ..functional import pad_pairs
from ..geometry import (
    PADDING_MODES,
    IntOrTuple,
    Padding,
    check_choice,
    check_positive_int,
    check_window_fits,
    resolve_geometry,
)
from .base import (
    Alternative,
    ConvzooLayer,
    Stage,
    _batch_friendly,
    check_input,
    geometry_repr,
    refuse_arguments,
    stored,
)
from .form_choice import (  # the private flags: asked on every call, cheaper than is_tracing (_no_index_kept)
    _COMPILING,
    _DISPATCH_MODE,
    _EXPORTING,
    _FAKE,
    _FUNCTORCH,  # inside vmap / grad / ...
    _JIT_TRACING,
    FormChoice,
    is_tracing,
    memory_format_name,
    tracing_active,
)
from .formats import channels_last_format

if TYPE_CHECKING:
    import numpy as np


def one_by_one_mask(out_channels: int, in_channels: int, p: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean (C_out, C_in): True where filter j uses a 1×1 kernel on channel c, i.e. (c − j) mod p ≠ 0."""
    j = torch.arange(out_channels, device=device).unsqueeze(1)
    c = torch.arange(in_channels, device=device).unsqueeze(0)
    return (c - j) % p != 0


def swap_channel_blocks(x: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """Channel a·j + i → channel b·i + j (the (a, b) → (b, a) transpose of the channel axis), one copy that keeps
    the input's memory format (NCHW stays NCHW, channels_last stays channels_last)."""
    if memory_format_name(x) == "channels_last":
        nhwc = x.permute(0, 2, 3, 1)  # a contiguous view
        return nhwc.unflatten(3, (a, b)).transpose(3, 4).flatten(3).permute(0, 3, 1, 2)
    return x.unflatten(1, (a, b)).transpose(1, 2).flatten(1, 2)


def _no_index_kept(weight: torch.Tensor) -> bool:
    """True where a scatter index must not be built or kept (``HetConv2d._kernel_index``): under compile, export,
    jit tracing, any torch dispatch mode (FakeTensorMode, functionalization, make_fx's proxies, FlopCounterMode), a
    torch.func transform, or on a meta / fake weight. ``form_choice.is_tracing`` less its ONNX and scripting
    checks (ONNX exporters run under jit tracing or export, seen here), ≈0.3 µs against ≈3 µs: asked every call."""
    return bool(_COMPILING() or _EXPORTING() or _JIT_TRACING() or _DISPATCH_MODE() or _FUNCTORCH() is not None
                or weight.is_meta or isinstance(weight, _FAKE))


def _interleave_residues(diagonal: torch.Tensor, off: torch.Tensor, p: int) -> torch.Tensor:
    """(B, M, p, T) diagonal and (B, M, p, p − 1, T) off-diagonal entries → (B, M, p, p, T) with
    out[..., r, r, :] = diagonal[..., r, :] and row r's other p − 1 entries ``off[..., r, :, :]`` in order.
    Row-major, the diagonal of a p×p block sits at r·(p + 1): the p(p − 1) off-diagonal entries cut into p − 1
    chunks of p, each chunk preceded by one diagonal entry and the last diagonal entry appended, are the block."""
    b, m, t = diagonal.shape[0], diagonal.shape[1], diagonal.shape[-1]
    chunks = off.reshape(b, m, p - 1, p, t)
    lead = torch.cat([diagonal[:, :, : p - 1].unsqueeze(3), chunks], dim=3).reshape(b, m, (p - 1) * (p + 1), t)
    return torch.cat([lead, diagonal[:, :, p - 1 :]], dim=2).view(b, m, p, p, t)


IMPLEMENTATIONS = ("auto", "grouped", "grouped_contiguous", "masked_dense", "masked_dense_channels_last")
# (layer configuration, input shape / format / device / dtype, backward) → the fastest exact form
# up to 60 rounds where forms are short, ≥ 5 rounds and 0.15 s where they are long; the masked dense conv (one
# native call, the baseline HetConv must not lose to) is kept unless another form is measured > 5% faster
_CHOICE = FormChoice("HetConv2d", min_rounds=5, max_rounds=60, min_seconds=0.15, prefer="masked_dense", margin=0.05)
_NO_ENTRIES: dict[tuple[Any, ...], Any] = {}
_MAX_DISPATCH = 64  # input keys remembered per layer
# a (C_out, C_in, kh, kw) kernel's dims in memory order, per memory-format name
_MEMORY_ORDER = {"contiguous": (0, 1, 2, 3), "channels_last": (0, 2, 3, 1)}


class HetConv2d(ConvzooLayer, nn.Module):
    """Shapes: (N, C_in, H, W) → (N, C_out, H_out, W_out), as a k×k conv with the same stride/padding.

    Arguments and defaults as ``torch.nn.Conv2d`` less ``groups`` (``p`` sets the pattern; ``groups=`` raises a
    TypeError saying so), the kernel odd so that the 1×1 kernels sit on its centre tap: in_channels … dilation keep
    torch's positions, everything after is keyword-only, so a torch-ordered positional call cannot put its groups
    into ``bias``.

    Parameters: ``weight_kxk`` (C_out, C_in/p, k, k) — filter j's k×k kernel on channel c = (j mod p) + p·m
    is ``weight_kxk[j, m]``; ``weight_1x1`` (C_out, C_in − C_in/p) — filter j's 1×1 kernels on the other
    channels in ascending order; ``bias`` (C_out,). p = 1 is a standard conv; p = C_in has one k×k kernel
    per filter.
    """

    dim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntOrTuple,
        stride: IntOrTuple = 1,
        padding: Padding = 0,
        dilation: IntOrTuple = 1,
        *,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        p: int = 4,
        **unsupported: Any,
    ) -> None:
        refuse_arguments(type(self).__name__, unsupported, {
            "groups": "filter j has k×k kernels on the input channels c ≡ j (mod p) and 1×1 kernels on all others "
                      "(use p)"})
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        out_channels = check_positive_int(out_channels, "out_channels")
        p = check_positive_int(p, "p")
        if in_channels % p:
            raise ValueError(f"p={p} must divide in_channels={in_channels}")
        geometry = resolve_geometry(2, kernel_size, stride, padding, dilation)
        if any(k % 2 == 0 for k in geometry.kernel_size):
            raise ValueError(f"kernel_size={kernel_size!r} must be odd: the 1×1 kernels sit on the centre tap")
        self.kernel_size, self.stride, self.dilation = geometry.kernel_size, geometry.stride, geometry.dilation
        self.padding, self.padding_pairs = geometry.padding, geometry.padding_pairs
        self.padding_mode = check_choice(padding_mode, "padding_mode", PADDING_MODES)
        # zero padding, equal on both sides: the convs pad themselves (else the input is padded first)
        symmetric = self.padding_mode == "zeros" and all(lo == hi for lo, hi in self.padding_pairs)
        self._conv_padding = tuple(lo for lo, _ in self.padding_pairs) if symmetric else None
        self.in_channels, self.out_channels, self.p = in_channels, out_channels, p
        self.implementation = "auto"  # or one of IMPLEMENTATIONS[1:]: see ``chosen_form``
        factory = {"device": device, "dtype": dtype}
        self.weight_kxk = nn.Parameter(torch.empty(out_channels, in_channels // p, *self.kernel_size, **factory))
        self.weight_1x1 = nn.Parameter(torch.empty(out_channels, in_channels - in_channels // p, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's conv rule U(±1/√fan_in) with the filter's true fan-in (C_in/p·k² + C_in − C_in/p),
        # so a HetConv net starts like the dense net it replaces.
        fan_in = self.weight_kxk[0].numel() + self.weight_1x1.shape[1]
        bound = fan_in**-0.5
        for tensor in (self.weight_kxk, self.weight_1x1, self.bias):
            if tensor is not None:
                nn.init.uniform_(tensor, -bound, bound)

    def dense_1x1_weight(self) -> torch.Tensor:
        """(C_out, C_in, 1, 1) weight with the 1×1 kernels in place and zeros at the k×k positions: in eager mode one
        scatter of ``weight_1x1`` into zeros (the positions are fixed by the configuration and kept,
        ``_kernel_index``); under tracing / export / fake or meta tensors the same kernel from shape ops alone
        (``_by_residue``)."""
        w = self.weight_1x1
        if _no_index_kept(w):
            return self._by_residue(None, w).view(self.out_channels, self.in_channels, 1, 1)
        dense = w.new_zeros(self.out_channels * self.in_channels)
        dense.scatter_(0, self._kernel_index(w.device, "1x1")[0], w.reshape(-1))
        return dense.view(self.out_channels, self.in_channels, 1, 1)

    def _by_residue(self, kxk: torch.Tensor | None, one: torch.Tensor) -> torch.Tensor:
        """The masked kernel (C_out, C_in, T) from reshapes, pads and concatenations only (no index tensor: nothing
        data-dependent, nothing kept, the same ops on every device and under every tracer), T = kh·kw for
        ``kxk`` = weight_kxk, T = 1 and zeros at the k×k positions for ``kxk`` None (the 1×1 kernel alone).
        ``one`` = weight_1x1; the 1×1 kernels sit on the centre tap (kh//2, kw//2)."""
        p, cin, cout, (kh, kw) = self.p, self.in_channels, self.out_channels, self.kernel_size
        blocks, rows = -(-cout // p), -(-cout // p) * p  # filters padded to a multiple of p (zeros), sliced off after
        t = 1 if kxk is None else kh * kw
        if kxk is None:
            diagonal = one.new_zeros(blocks, cin // p, p, 1)
        else:
            kxk = F.pad(kxk.reshape(cout, -1), (0, 0, 0, rows - cout))  # (rows, C_in/p · T)
            # filter j = p·b + r, channel block m: [b, m, r, T]
            diagonal = kxk.view(blocks, p, cin // p, t).transpose(1, 2)
        off = F.pad(one, (0, 0, 0, rows - cout))  # row j: channels c = p·m + r', r' ≠ j mod p, ascending in c
        off = off.view(blocks, p, cin // p, p - 1, 1, 1).transpose(1, 2)  # [b, m, r, i, 1, 1]
        if kxk is not None:  # the 1×1 kernel on the centre tap of a k×k window
            off = F.pad(off, (kw // 2, kw // 2, kh // 2, kh // 2))
        dense = _interleave_residues(diagonal, off.reshape(blocks, cin // p, p, p - 1, t), p)  # [b, m, r, r', T]
        return dense.transpose(1, 2).reshape(rows, cin, t)[:cout]

    def _residue_weight(self) -> torch.Tensor:
        """``weight_kxk`` with the filters ordered by residue j mod p (zero filters appended when p ∤ C_out), the
        weight of the p-group k×k conv."""
        p, cout = self.p, self.out_channels
        rows = -(-cout // p) * p
        weight = F.pad(self.weight_kxk, (0, 0, 0, 0, 0, 0, 0, rows - cout)) if rows != cout else self.weight_kxk
        return weight.reshape(rows // p, p, *weight.shape[1:]).transpose(0, 1).reshape(weight.shape)

    def _kxk_part(self, x: torch.Tensor, pairs: tuple[tuple[int, int], ...],
                  weight: torch.Tensor | None = None) -> torch.Tensor:
        p, cout = self.p, self.out_channels
        # Channels ordered by residue r = c mod p: group r holds channels r, r+p, r+2p, …
        x_by_residue = swap_channel_blocks(x, self.in_channels // p, p)
        weight = self._residue_weight() if weight is None else weight
        rows = -(-cout // p) * p  # filters padded to a multiple of p (zeros) when p ∤ C_out
        if any(lo != hi for lo, hi in pairs):
            x_by_residue, pairs = pad_pairs(x_by_residue, pairs), ((0, 0), (0, 0))
        y = F.conv2d(x_by_residue, weight, None, self.stride, tuple(lo for lo, _ in pairs), self.dilation, groups=p)
        y = swap_channel_blocks(y, p, rows // p)
        return y[:, :cout] if rows != cout else y

    def _one_by_one_part(self, x: torch.Tensor, pairs: tuple[tuple[int, int], ...],
                         weight: torch.Tensor | None = None) -> torch.Tensor:
        """The 1×1 kernels' output, (N, C_out, H_out, W_out) as the k×k part's. Output o's centre tap reads input
        o·s − lo + d·(k//2), so the 1×1 conv (stride s) runs on x cropped or zero-padded by lo − d·(k//2) before
        and hi − d·(k//2) after: length H + lo + hi − 2d·(k//2) = H + lo + hi − d(k − 1), whose ⌈·/s⌉ is H_out.
        Only constants are cut (a negative slice end counts from the end), nothing sized from this input, so a
        trace or an export with dynamic H / W holds at every size."""
        cuts: list[slice] = []
        pad: list[int] = []
        for (lo, hi), d, k in zip(pairs, self.dilation, self.kernel_size):
            before, after = lo - d * (k // 2), hi - d * (k // 2)
            cuts.append(slice(max(-before, 0), after if after < 0 else None))
            pad = [max(before, 0), max(after, 0)] + pad  # F.pad lists the last dim first
        if any(c.start or c.stop for c in cuts):
            x = x[:, :, cuts[0], cuts[1]]
        if any(pad):
            x = F.pad(x, pad)
        return F.conv2d(x, self.dense_1x1_weight() if weight is None else weight, None, self.stride)

    def _kernel_index(self, device: torch.device, layout: str) -> tuple[torch.Tensor, ...]:
        """Where the weights' entries go, as flat positions in memory, kept per (device, layout) (integer ops
        only, fixed by the configuration: the weights' values are never kept, see ``dense_weight``). Eager calls
        only: under tracing, compile, export, a dispatch mode, a torch.func transform or on meta / fake tensors
        (``_no_index_kept``) the callers build the kernel from shape ops (``_by_residue``) and nothing is kept, so no
        fake, functional or proxy tensor can land here and be read by a later call.
        layout 'contiguous' / 'channels_last': (weight_kxk's, weight_1x1's) positions in the (C_out, C_in, kh, kw)
        kernel stored in that memory format; weight_kxk[j, m, a, b] → (j, (j mod p) + p·m, a, b), weight_1x1's
        row j → (j, c, kh//2, kw//2) for the channels c with (c − j) mod p ≠ 0, ascending. '1x1': weight_1x1's
        positions (j, c) in the (C_out, C_in) matrix."""
        cache: dict[tuple[torch.device, str], tuple[torch.Tensor, ...]] = self.__dict__.setdefault(
            "_dense_index_cache", {})
        index = cache.get((device, layout))
        if index is None:  # built on the CPU (nonzero has no meta kernel), then moved
            with torch.inference_mode(False):  # a normal tensor even when first built in inference mode
                index = tuple(t.to(device) for t in self._build_kernel_index(layout))
            if all(type(t) is torch.Tensor for t in index):  # only plain tensors are kept (not a subclass's)
                cache[(device, layout)] = index
        return index

    def _build_kernel_index(self, layout: str) -> tuple[torch.Tensor, ...]:
        (kh, kw), p, cin, cout = self.kernel_size, self.p, self.in_channels, self.out_channels
        rows, cols = one_by_one_mask(cout, cin, p).nonzero(as_tuple=True)
        if layout == "1x1":
            return (rows * cin + cols,)
        j = torch.arange(cout).view(-1, 1, 1, 1)
        m = torch.arange(cin // p).view(1, -1, 1, 1)
        a = torch.arange(kh).view(1, 1, -1, 1)
        b = torch.arange(kw).view(1, 1, 1, -1)
        kxk = (((j * cin + j % p + p * m) * kh + a) * kw + b).flatten()
        centre = ((rows * cin + cols) * kh + kh // 2) * kw + kw // 2
        # logical (row-major) position → position in memory: the memory offsets laid out in memory order, read
        # back in logical order
        order, shape = _MEMORY_ORDER[layout], (cout, cin, kh, kw)
        offsets = torch.arange(cout * cin * kh * kw).view([shape[d] for d in order])
        offsets = offsets.permute([order.index(d) for d in range(4)]).flatten()
        return offsets[kxk], offsets[centre]

    def dense_weight(self, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
        """The masked dense (C_out, C_in, k, k) kernel: filter j's k×k kernel on channel c where (c − j) mod p = 0,
        its 1×1 kernel at the centre tap elsewhere, zeros around it; stored in ``memory_format`` (contiguous or
        channels_last). Two scatters into zeros, differentiable. Derived at every call, never kept: a write
        through ``p.data`` (EMA, init, pruning code) moves no version counter that a kept copy could be checked
        against, and torch's own convs follow such writes."""
        if memory_format == torch.contiguous_format:
            layout = "contiguous"
        elif memory_format == torch.channels_last:
            layout = "channels_last"
        else:
            raise ValueError(f"memory_format={memory_format} must be torch.contiguous_format or torch.channels_last "
                             "(the kernel is 4-D)")
        kxk, one = self.weight_kxk, self.weight_1x1
        cout, cin, (kh, kw) = self.out_channels, self.in_channels, self.kernel_size
        if _no_index_kept(kxk):  # nothing kept from a traced call: a fake or traced index would be read by later calls
            return self._by_residue(kxk, one).view(cout, cin, kh, kw).contiguous(memory_format=memory_format)
        at_kxk, at_1x1 = self._kernel_index(kxk.device, layout)
        dense = kxk.new_zeros(cout * cin * kh * kw)
        dense.scatter_(0, at_kxk, kxk.reshape(-1)).scatter_(0, at_1x1, one.reshape(-1))
        if layout == "contiguous":
            return dense.view(cout, cin, kh, kw)
        return dense.view(cout, kh, kw, cin).permute(0, 3, 1, 2)

    def forget_cache(self) -> None:
        """Drop the per-input dispatch table and the scatter indices (both rebuilt on the next call)."""
        self.forget_plans()
        self.__dict__.pop("_dispatch", None)
        self.__dict__.pop("_dense_index_cache", None)

    def _apply(self, fn: Any, recurse: bool = True) -> HetConv2d:
        # .to() / .cuda() / .half(): new dtype or device, so inputs are checked again; an index keyed by a device
        # name may have been moved elsewhere (torch.load's map_location) and is dropped too
        self.forget_cache()
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles start without the caches (tensors derived from this module's storages or, the scatter
        indices, from its configuration: int64, twice the bytes of float32 weights)."""
        return {k: v for k, v in super().__getstate__().items() if k not in ("_dispatch", "_dense_index_cache")}

    def _padded(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[tuple[int, int], ...]]:
        """Non-zero padding modes pad explicitly first; zeros are left to the convs (the pairs they must use)."""
        if self.padding_mode == "zeros":
            return x, self.padding_pairs
        return pad_pairs(x, self.padding_pairs, self.padding_mode), ((0, 0), (0, 0))

    # The forms: f(x, frozen), frozen = x's memory format name ('contiguous' / 'channels_last') where no gradient
    # reaches a parameter (the masked kernel is then built in that format), else None. Every form derives its
    # kernels from the parameters at every call (``dense_weight``).

    def _grouped_form(self, x: torch.Tensor, frozen: str | None = None) -> torch.Tensor:
        """p-group k×k conv on residue-ordered channels + one dense 1×1 conv: (C_in/p)·k² + C_in MACs per output."""
        x, pairs = self._padded(x)
        y = self._kxk_part(x, pairs)
        if self.p > 1:
            y = y + self._one_by_one_part(x, pairs)
        bias = self.bias  # read once: a parametrized bias is evaluated once per call, as by torch's convs
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    def _grouped_contiguous_form(self, x: torch.Tensor, frozen: str | None = None) -> torch.Tensor:
        """The grouped form computed in NCHW, the output handed back in the input's memory format (for
        channels_last inputs where mkldnn's NHWC grouped conv is the slower one)."""
        y = self._grouped_form(x.contiguous(), frozen and "contiguous")
        return y.contiguous(memory_format=torch.channels_last) if memory_format_name(x) == "channels_last" else y

    def _masked_dense_form(self, x: torch.Tensor, frozen: str | None = None) -> torch.Tensor:
        """One dense conv with the masked kernel: C_in·k² MACs per output (more MACs, one fast native call).
        Without autograd (``frozen``: x's format name) the kernel is built in ``x``'s memory format (mkldnn then
        reorders it less), at the same cost as a contiguous one."""
        weight = self.dense_weight(torch.channels_last if frozen == "channels_last" else torch.contiguous_format)
        if self._conv_padding is not None:
            return F.conv2d(x, weight, self.bias, self.stride, self._conv_padding, self.dilation)
        x, pairs = self._padded(x)
        if any(lo != hi for lo, hi in pairs):
            x, pairs = pad_pairs(x, pairs), ((0, 0), (0, 0))
        return F.conv2d(x, weight, self.bias, self.stride, tuple(lo for lo, _ in pairs), self.dilation)

    def _masked_dense_channels_last_form(self, x: torch.Tensor, frozen: str | None = None) -> torch.Tensor:
        """The masked dense conv computed in channels_last, the output handed back in NCHW (for NCHW inputs where
        mkldnn's NCHW conv is the slower one: few channels, many positions)."""
        y = self._masked_dense_form(x.contiguous(memory_format=torch.channels_last), frozen and "channels_last")
        return y.contiguous() if memory_format_name(x) == "contiguous" else y

    def _forms(self, x: torch.Tensor, frozen: bool) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """The exact forms worth timing on ``x``, as ``forward`` runs them (the masked kernel built in x's format
        when ``frozen``); grouped_contiguous only differs from grouped for channels_last. masked_dense_channels_last
        is left to ``implementation``: over the sweep's grid it never beat masked_dense, and where they tie its
        time depends on what ran before (its extra buffers found mapped or not), so a measurement could pick it
        and lose."""
        names = ["grouped", "masked_dense"]
        if memory_format_name(x) == "channels_last":
            names.append("grouped_contiguous")
        slot = memory_format_name(x) if frozen else None
        return {name: functools.partial(_FORMS[name], self, frozen=slot) for name in names}

    @property
    def _config(self) -> tuple[Any, ...]:
        """What besides the input decides which form is fastest: channels, geometry, p, bias."""
        return (self.in_channels, self.out_channels, self.kernel_size, self.stride, self.dilation,
                self.padding_pairs, self.padding_mode, self.p, stored(self, "bias") is not None)

    def chosen_form(self, x: torch.Tensor) -> str:
        """The form ``forward`` runs on ``x``: ``implementation`` unless 'auto'; under tracing / compile / export
        / meta tensors 'grouped' (deterministic, fewest MACs); else the fastest form measured once per
        (configuration, input shape, memory format, device, dtype, backward) and cached per process."""
        choice = self.implementation
        if choice != "auto":
            return check_choice(choice, "implementation", IMPLEMENTATIONS)
        if self.p == 1 or is_tracing(x):
            return "grouped"  # p = 1: the grouped form is a single dense conv already
        frozen = self._weights_frozen()
        return _CHOICE.for_input(self._config, x, lambda layer: layer._forms(x, frozen), layer=self)

    def _weights_frozen(self) -> bool:
        """No gradient can reach a parameter in this pass (grad mode off, or none requires grad): the masked kernel
        may be built in x's memory format."""
        return not torch.is_grad_enabled() or not any(p.requires_grad for p in self._parameters.values()
                                                      if p is not None)

    def _form(self, x: torch.Tensor) -> Callable[..., torch.Tensor]:
        """The checked input's form, as a function f(layer, x, frozen) (``forward`` checked the rank and channels
        of the input as given)."""
        check_window_fits(x.shape[2:], self.kernel_size, self.dilation, self.padding_pairs, type(self).__name__,
                          self.padding_mode)
        # Every form is exact: the grouped form has (C_in/p)·k² + C_in MACs per output against C_in·k² for the
        # masked dense conv, but at small maps a single dense native call wins; ``chosen_form`` measures.
        return _FORMS[self.chosen_form(x)]

    @property
    def implementation(self) -> str:
        """'auto' (the measured choice) or the name of the form to run."""
        return self.__dict__.get("_implementation", "auto")

    @implementation.setter
    def implementation(self, value: str) -> None:
        self.__dict__["_implementation"] = value
        self.__dict__.pop("_dispatch", None)  # the forms were chosen for the old value

    def _dispatch_key(self, x: torch.Tensor, frozen: bool) -> tuple[Any, ...]:
        """What the checks, the contract's input step and the form choice depend on (besides ``implementation``,
        whose setter empties the table)."""
        return (x.shape, x.stride(), x.dtype, x.device, frozen, x.requires_grad and torch.is_grad_enabled(),
                torch.get_num_threads(), _CHOICE.generation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Eager inputs of a key seen before (``_dispatch_key``) passed the contract's input step, the checks and
        the choice then, so they go straight to the form chosen (a sub-millisecond conv would otherwise pay more
        for those than for the conv); the output is still handed back in a channels-last input's format. First
        inputs of a key, unbatched ones, other dtypes and traced calls take ``_forward_checked``."""
        if isinstance(x, torch.Tensor) and not tracing_active(x) and _FUNCTORCH() is None:
            frozen = self._weights_frozen()
            entry = self.__dict__.get("_dispatch", _NO_ENTRIES).get(self._dispatch_key(x, frozen))
            if entry is not None:
                form, slot, fmt = entry
                y = form(self, x, slot)
                return y if fmt is None else y.contiguous(memory_format=fmt)
        # a key not seen before: checked as the caller passed it (the input step would quote a batch of one)
        check_input(x, 2, self.in_channels, type(self).__name__)
        return self._forward_checked(x)

    forward.__convzoo_prepared__ = True  # type: ignore[attr-defined]  # its input step is _forward_checked's

    @_batch_friendly
    def _forward_checked(self, x: torch.Tensor) -> torch.Tensor:
        """The contract's forward (wrapped in ``prepare_input``): check, choose, run, and remember the form for
        the key. The kernels are derived from the parameters at every call (``dense_weight``)."""
        form = self._form(x)
        if tracing_active(x) or _FUNCTORCH() is not None:  # nothing remembered from a traced or vmapped call
            return form(self, x, None)
        frozen = self._weights_frozen()
        slot = memory_format_name(x) if frozen else None
        y = form(self, x, slot)
        if x.dtype == stored(self, "weight_kxk").dtype:  # autocast's mismatched inputs are checked every call
            # the output format is the kernels' (fixed per key): the table says whether to convert it
            fmt = channels_last_format(x)
            fmt = None if fmt is None or y.is_contiguous(memory_format=fmt) else fmt
            table = self.__dict__.setdefault("_dispatch", {})
            if len(table) >= _MAX_DISPATCH:  # inputs of ever-new sizes (detection, variable crops): start over
                table.clear()
            table[self._dispatch_key(x, frozen)] = (form, slot, fmt)
        return y

    # --- the contract ---------------------------------------------------------------------------------------------

    def cost(self, input_shape: tuple[int, ...]) -> LayerCost:
        """The heterogeneous filters' true cost, not the masked dense one:
        MACs = N·HW_out·C_out·(C_in/p)·k² (k×k kernels) + N·HW_out·C_out·(C_in − C_in/p) (1×1 kernels);
        elements = input + weight_kxk + weight_1x1 + bias + output (one layer)."""
        out = conv_output_tensor_shape(input_shape, self.out_channels, self.kernel_size, self.stride, self.padding_pairs,
                             self.dilation)
        per_output = self.weight_kxk[0].numel() + self.weight_1x1.shape[1]  # (C_in/p)·k² + C_in − C_in/p
        params = self.weight_kxk.numel() + self.weight_1x1.numel() + (0 if self.bias is None else self.out_channels)
        return LayerCost(params, numel(out) * per_output, 0, numel(input_shape) + params + numel(out), out)

    def reference_output(self, x: np.ndarray) -> np.ndarray:
        """The definition: the masked dense kernel built by ``reference.hetconv_kernel`` with explicit loops."""
        from ..oracle import reference as ref
        from .conv import to_numpy

        kernel = ref.hetconv_kernel(to_numpy(self.weight_kxk), to_numpy(self.weight_1x1), self.p)
        return ref.correlate(x, kernel, to_numpy(self.bias), self.stride, self.padding, self.dilation, 1,
                             self.padding_mode)

    def native_alternatives(self) -> list[Alternative]:
        def per_filter_loop(x: torch.Tensor) -> torch.Tensor:
            # The published implementations' approach: one conv per filter with its own masked kernel.
            x, pairs = self._padded(x)
            w = self.dense_weight()
            if any(lo != hi for lo, hi in pairs):
                x, pairs = pad_pairs(x, pairs), ((0, 0), (0, 0))
            pad = tuple(lo for lo, _ in pairs)
            outs = [F.conv2d(x, w[j : j + 1], None, self.stride, pad, self.dilation) for j in range(self.out_channels)]
            y = torch.cat(outs, dim=1)
            return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

        return [("native", "masked dense F.conv2d", self._masked_dense_form),
                ("native", "grouped k×k + dense 1×1", self._grouped_form),
                ("naive", "per-filter loop", per_filter_loop)]

    def approximate_dense_(self, weight: torch.Tensor, bias: torch.Tensor | None) -> float:
        """Projection: filter j keeps its k×k kernels on channels (j mod p) + p·m and W's centre tap elsewhere."""
        from ..dense_kernels import fit_kernel, load_, relative_frobenius_error

        out, cin = weight.shape[:2]
        p = self.p
        fitted = fit_kernel(weight, self.kernel_size)
        device = weight.device  # indices on the weight's device: a layer on the meta device converts too
        j = torch.arange(out, device=device)[:, None]
        m = torch.arange(cin // p, device=device)[None, :]
        kxk = fitted[j, j % p + p * m]
        ci, cj = self.kernel_size[0] // 2, self.kernel_size[1] // 2
        # the 1×1 positions in row-major order (weight_1x1's layout), found on the CPU: nonzero has no meta kernel
        rows, cols = (index.to(device) for index in one_by_one_mask(out, cin, p).nonzero(as_tuple=True))
        centre = fitted[rows, cols, ci, cj]
        load_(self.weight_kxk, kxk)
        load_(self.weight_1x1, centre)
        load_(self.bias, bias)
        effective = torch.zeros_like(fitted)
        effective[j, j % p + p * m] = kxk
        effective[rows, cols, ci, cj] = centre  # those (filter, channel) pairs hold no k×k kernel
        return relative_frobenius_error(fit_kernel(effective, tuple(weight.shape[2:])), weight)

    def receptive_field_step(self, field: Any, in_shape: Any, step: Callable[..., Any]) -> Any:
        return field.window(self.kernel_size, self.stride, self.dilation, [lo for lo, _ in self.padding_pairs])

    def stages(self) -> list[Stage]:
        """The two parts summed: the p-group k×k conv on residue-ordered channels and the dense 1×1 on the rest."""
        def kxk(x: torch.Tensor) -> torch.Tensor:
            x, pairs = self._padded(x)
            return self._kxk_part(x, pairs)

        def one_by_one(x: torch.Tensor) -> torch.Tensor:
            x, pairs = self._padded(x)
            return self._one_by_one_part(x, pairs)

        return [Stage(f"k×k kernels (channels c ≡ j mod {self.p})", kxk, side=True),
                Stage("1×1 kernels (the other channels)", one_by_one, side=True),
                Stage("k×k + 1×1 summed", self._grouped_form, module=self)]

    def extra_repr(self) -> str:
        return geometry_repr(self, {"p": self.p})


# name → form f(layer, x, frozen): plain functions, so a dispatch table holds no bound method
_FORMS: dict[str, Callable[..., torch.Tensor]] = {
    "grouped": HetConv2d._grouped_form,
    "grouped_contiguous": HetConv2d._grouped_contiguous_form,
    "masked_dense": HetConv2d._masked_dense_form,
    "masked_dense_channels_last": HetConv2d._masked_dense_channels_last_form,
}
