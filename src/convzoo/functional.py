"""Stateless forms of the convolutions: cross-correlation, true convolution, channel shuffle.

Deep-learning "convolution" is cross-correlation, y[p] = Σ_t w[t]·x[p·s + t·d]; the signal-processing
convolution flips the kernel along every spatial axis first, y[p] = Σ_t w[K-1-t]·x[p·s + t·d]
(article 003 §1.1–1.2); its 'same' padding is scipy.signal.convolve's (``convolve_padding_pairs``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .geometry import PADDING_MODES, IntOrTuple, Padding, PaddingPairs, check_choice, expand, padding_pairs

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_TORCH_PAD_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def pad_pairs(x: torch.Tensor, pairs: PaddingPairs, padding_mode: str = "zeros") -> torch.Tensor:
    """Pad the spatial dims of x (N, C, *S) by one (before, after) pair per dim, with zeros or a torch mode
    ('reflect', 'replicate', 'circular'). The one place convzoo turns padding pairs into ``F.pad``'s list."""
    flat = [v for lo_hi in reversed(pairs) for v in lo_hi]  # F.pad lists the last dim first
    if not any(flat):
        return x
    return F.pad(x, flat) if padding_mode == "zeros" else F.pad(x, flat, mode=_TORCH_PAD_MODE[padding_mode])


def conv_with_pairs(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    pairs: PaddingPairs,
    dilation: tuple[int, ...],
    groups: int,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Cross-correlation with explicit (before, after) padding per dim; one native conv call.

    Symmetric zero padding goes to the conv itself (no copy); anything else is an ``F.pad`` first.
    """
    conv = _CONV[weight.dim() - 2]
    if padding_mode == "zeros" and all(lo == hi for lo, hi in pairs):
        return conv(x, weight, bias, stride, tuple(lo for lo, _ in pairs), dilation, groups)
    return conv(pad_pairs(x, pairs, padding_mode), weight, bias, stride, 0, dilation, groups)


def correlate(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Cross-correlation (what ``torch.nn.Conv*d`` computes) in 1, 2 or 3 spatial dims.

    y[n, o, p] = b[o] + Σ_{c ∈ group(o)} Σ_t w[o, c, t] · x_pad[n, c, p·stride + t·dilation]

    Shapes: x (N, C_in, *S), weight (C_out, C_in/groups, *K), bias (C_out,) → (N, C_out, *O) with
    O = ⌊(S + pad_before + pad_after − dilation·(K−1) − 1) / stride⌋ + 1.

    Example:
        >>> y = correlate(torch.randn(1, 3, 8, 8), torch.randn(4, 3, 3, 3), padding="same")
        >>> tuple(y.shape)
        (1, 4, 8, 8)
    """
    dim = weight.dim() - 2
    if dim not in _CONV:
        raise ValueError(f"weight must have 3, 4 or 5 dims (C_out, C_in/groups, *kernel), got shape {tuple(weight.shape)}")
    if x.dim() != dim + 2:
        raise ValueError(f"input must have {dim + 2} dims for a {dim}-D weight, got shape {tuple(x.shape)}")
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    kernel = tuple(weight.shape[2:])
    s = expand(stride, dim, "stride")
    d = expand(dilation, dim, "dilation")
    return conv_with_pairs(x, weight, bias, s, padding_pairs(padding, kernel, s, d), d, groups, padding_mode)


def flip_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Rotate a kernel by 180° in every spatial axis: turns correlation into convolution and back."""
    return weight.flip(tuple(range(2, weight.dim())))


def convolve_padding_pairs(
    padding: Padding, kernel_size: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...]
) -> PaddingPairs:
    """``padding`` resolved for the true convolution: as ``padding_pairs``, except that 'same' puts the odd element
    of the total d·(k−1) BEFORE the input, as ``scipy.signal.convolve(x, w, mode='same')`` does (it keeps the
    centre of the full convolution, from index ⌊(E−1)/2⌋, E = d·(k−1) + 1). With the kernel flipped, that is
    PyTorch's correlation rule mirrored: k = 4 pads (2, 1) where ``Conv1d(padding='same')`` pads (1, 2)."""
    pairs = padding_pairs(padding, kernel_size, stride, dilation)
    return tuple((hi, lo) for lo, hi in pairs) if isinstance(padding, str) else pairs


def convolve(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """True (signal-processing) convolution: ``correlate`` with the kernel flipped along every spatial axis.

    y[n, o, p] = b[o] + Σ_c Σ_t w[o, c, K−1−t] · x_pad[n, c, p·stride + t·dilation]; same shapes as ``correlate``.
    Summed over input channels it equals ``scipy.signal.convolve(x, w, mode='valid')`` with padding 0, and
    ``mode='same'`` with padding 'same' (the odd element of an even span before the input: ``convolve_padding_pairs``).
    """
    if isinstance(padding, str) and weight.dim() in (3, 4, 5):  # other ranks: correlate's error names them
        dim = weight.dim() - 2
        padding = convolve_padding_pairs(padding, tuple(weight.shape[2:]), expand(stride, dim, "stride"),
                                         expand(dilation, dim, "dilation"))
    return correlate(x, flip_kernel(weight), bias, stride, padding, dilation, groups, padding_mode)


def channels_to_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, *S) → the (N, *S, C) view (``x.movedim(1, -1)``), written as a permute with non-negative dims:
    TorchScript's ONNX exporter (dynamo=False) copies movedim's negative dims into Transpose's perm, which
    onnxruntime refuses."""
    return x.permute(0, *range(2, x.dim()), 1)


def channels_to_first(y: torch.Tensor) -> torch.Tensor:
    """(N, *S, C) → the (N, C, *S) view (``y.movedim(-1, 1)``), as a permute with non-negative dims (see
    ``channels_to_last``)."""
    return y.permute(0, y.dim() - 1, *range(1, y.dim() - 1))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: view C as (groups, C/groups), transpose, flatten.

    Output channel i is input channel (i mod groups)·(C/groups) + ⌊i / groups⌋. x (N, C, *S) → same shape.
    """
    if x.dim() < 2:
        raise ValueError(f"channel_shuffle expects an input (N, C, ...), got shape {tuple(x.shape)}")
    channels = x.shape[1]
    if channels % groups:
        raise ValueError(f"groups={groups} must divide the number of channels {channels}")
    if x.dim() > 3 and channels_to_last(x).is_contiguous() and not x.is_contiguous():
        # channels_last data: shuffle the innermost (channel) axis of the (N, *S, C) view; one copy, the output
        # stays channels_last (the NCHW formulation below would gather across the whole tensor: ~15× slower).
        last = channels_to_last(x)
        shuffled = last.unflatten(-1, (groups, channels // groups)).transpose(-1, -2).flatten(-2)
        return channels_to_first(shuffled)
    n, rest = x.shape[0], x.shape[2:]
    return x.reshape(n, groups, channels // groups, *rest).transpose(1, 2).reshape(n, channels, *rest)
