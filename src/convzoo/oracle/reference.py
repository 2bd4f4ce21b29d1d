"""NumPy reference implementations (test oracle) for convzoo.

Every function here is written straight from the mathematical definition, in
float64, with plain Python loops over output positions and kernel taps
(batch and channel axes may be handled with ``einsum`` / ``@``).  The module
deliberately imports neither torch nor scipy, so that it is independent of
the code it is used to test.  It is meant to be read; it is not fast.

Conventions (the same as PyTorch):

* arrays are channel-first, ``x`` has shape ``(N, C, *S)`` with 1, 2 or 3
  spatial dims ``S``;
* ``stride`` and ``dilation`` are an int or a tuple with one entry per
  spatial dim;
* ``padding`` is an int, a tuple of ints (symmetric per dim), a tuple of
  ``(lo, hi)`` pairs, one per spatial dim, or 'valid' / 'same' (resolved here,
  from the kernel and dilation, by ``same_padding`` — never taken from a layer;
  the true ``convolve`` uses scipy's 'same', ``convolve_same_padding``).

Inconsistent shapes or arguments raise ``ValueError`` naming the argument.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Union

import numpy as np

IntOrTuple = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int], Sequence[Sequence[int]]]

__all__ = [
    "pad",
    "resolve_padding",
    "same_padding",
    "correlate",
    "convolve",
    "convolve_same_padding",
    "conv_matrix",
    "transposed_conv",
    "transposed_conv_by_matrix",
    "upsample",
    "channel_shuffle",
    "hetconv_kernel",
    "dynamic_attention",
    "dynamic_conv",
    "bilinear_sample",
    "deform_conv2d",
    "mixconv",
    "batch_norm",
    "branch_sum",
    "pixel_shuffle",
    "partial_conv",
    "ghost_module",
    "condconv",
    "odconv",
    "selective_kernel",
    "involution",
    "dcnv3",
]

PAD_MODES = ("zeros", "reflect", "replicate", "circular")


# ---------------------------------------------------------------------------
# argument helpers
# ---------------------------------------------------------------------------


def _ntuple(value: IntOrTuple, nd: int, name: str) -> tuple[int, ...]:
    """Turn an int or a length-``nd`` sequence of ints into a tuple of ints."""
    if isinstance(value, (int, np.integer)):
        return (int(value),) * nd
    values = tuple(value)
    if len(values) != nd or not all(isinstance(v, (int, np.integer)) for v in values):
        raise ValueError(f"{name} must be an int or a tuple of {nd} ints, got {value!r}")
    return tuple(int(v) for v in values)


def _positive(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(v < 1 for v in values):
        raise ValueError(f"{name} must be >= 1, got {values}")
    return values


def _pad_pairs(padding: Padding, nd: int, name: str = "padding") -> tuple[tuple[int, int], ...]:
    """Normalise ``padding`` to one ``(lo, hi)`` pair of non-negative ints per spatial dim."""
    if isinstance(padding, (int, np.integer)):
        pairs = ((int(padding), int(padding)),) * nd
    else:
        entries = tuple(padding)
        if len(entries) != nd:
            raise ValueError(f"{name} must have one entry per spatial dim ({nd}), got {padding!r}")
        out = []
        for e in entries:
            if isinstance(e, (int, np.integer)):
                out.append((int(e), int(e)))
            else:
                pair = tuple(e)
                if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
                    raise ValueError(f"{name} entries must be ints or (lo, hi) pairs, got {e!r}")
                out.append((int(pair[0]), int(pair[1])))
        pairs = tuple(out)
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise ValueError(f"{name} must be non-negative, got {padding!r}")
    return pairs


def same_padding(kernel: Sequence[int], dilation: IntOrTuple = 1) -> tuple[tuple[int, int], ...]:
    """'same' padding for stride 1: an output the size of the input needs ``dilation*(K-1)`` padded elements per
    dim in total; PyTorch puts the smaller half before, the extra element (odd totals) after."""
    dil = _ntuple(dilation, len(kernel), "dilation")
    pairs = []
    for k, d in zip(kernel, dil):
        total = d * (k - 1)
        before = total // 2
        pairs.append((before, total - before))
    return tuple(pairs)


def resolve_padding(padding: Padding | str, kernel: Sequence[int], stride: IntOrTuple = 1,
                    dilation: IntOrTuple = 1) -> tuple[tuple[int, int], ...]:
    """A constructor's ``padding`` argument as one ``(lo, hi)`` pair per dim ('same' needs stride 1)."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding != "same":
            raise ValueError(f"padding must be 'same', 'valid' or ints, got {padding!r}")
        if any(s != 1 for s in _ntuple(stride, nd, "stride")):
            raise ValueError("padding='same' needs stride 1")
        return same_padding(kernel, dilation)
    return _pad_pairs(padding, nd)


def _spatial_ndim(x: np.ndarray, name: str = "x", allowed: Sequence[int] = (1, 2, 3)) -> int:
    """Number of spatial dims of a ``(N, C, *S)`` array, checked against ``allowed``."""
    nd = x.ndim - 2
    if nd not in allowed:
        raise ValueError(
            f"{name} must have shape (N, C, *S) with {tuple(allowed)} spatial dims, got shape {x.shape}"
        )
    return nd


def _out_size(size: int, lo: int, hi: int, k: int, stride: int, dilation: int, name: str = "x") -> int:
    """floor((S + lo + hi - dilation*(K-1) - 1) / stride) + 1, checked to be positive."""
    span = size + lo + hi - dilation * (k - 1) - 1
    if span < 0:
        raise ValueError(
            f"{name}: padded input size {size + lo + hi} is smaller than the dilated kernel size "
            f"{dilation * (k - 1) + 1}"
        )
    return span // stride + 1


def _flip_spatial(w: np.ndarray) -> np.ndarray:
    """Reverse every axis of ``w`` after the first two (the spatial kernel axes)."""
    return w[(slice(None), slice(None)) + (slice(None, None, -1),) * (w.ndim - 2)]


# ---------------------------------------------------------------------------
# padding
# ---------------------------------------------------------------------------


def _source_index(i: int, size: int, mode: str) -> int | None:
    """Index of the input element that padded position ``i`` (may be <0 or >=size) copies.

    Returns ``None`` for 'zeros' mode outside the input.
    """
    if 0 <= i < size:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    if mode == "circular":
        return i % size
    # reflect (edge not repeated): periodic with period 2*(size-1)
    period = 2 * (size - 1)
    j = i % period
    return j if j < size else period - j


def pad(x: np.ndarray, padding: Padding, mode: str = "zeros") -> np.ndarray:
    """Pad the spatial dims of ``x``.

    x: (N, C, *S) -> (N, C, *(S + lo + hi)).  Padded position ``i`` in ``[-lo, S + hi)``
    takes ``x[src(i)]`` where, for ``i`` outside ``[0, S)``:

    * 'zeros':     0
    * 'reflect':   reflection about the edge element, edge not repeated
                   (``src(-1) = 1``, ``src(S) = S - 2``); needs ``lo, hi < S``
    * 'replicate': ``clip(i, 0, S - 1)``
    * 'circular':  ``i mod S``
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 3:
        raise ValueError(f"x must have shape (N, C, *S) with at least one spatial dim, got {x.shape}")
    if mode not in PAD_MODES:
        raise ValueError(f"mode must be one of {PAD_MODES}, got {mode!r}")
    nd = x.ndim - 2
    pairs = _pad_pairs(padding, nd)
    out = x
    for d, (lo, hi) in enumerate(pairs):
        axis = 2 + d
        size = x.shape[axis]
        if mode == "reflect" and (lo >= size or hi >= size):
            raise ValueError(f"padding {lo, hi} must be smaller than the input size {size} for 'reflect'")
        sources = [_source_index(i, size, mode) for i in range(-lo, size + hi)]
        new_shape = list(out.shape)
        new_shape[axis] = len(sources)
        padded = np.zeros(new_shape, dtype=np.float64)
        for i, src in enumerate(sources):
            if src is not None:
                dst_idx = [slice(None)] * out.ndim
                src_idx = [slice(None)] * out.ndim
                dst_idx[axis] = i
                src_idx[axis] = src
                padded[tuple(dst_idx)] = out[tuple(src_idx)]
        out = padded
    return out


# ---------------------------------------------------------------------------
# correlation / convolution
# ---------------------------------------------------------------------------


def _conv_arrays(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                 groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """x (N, C_in, *S), w (C_out, C_in/groups, *K), bias (C_out,) or None as float64, checked against each other."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nd = _spatial_ndim(x)
    if w.ndim != x.ndim:
        raise ValueError(f"w must have shape (C_out, C_in/groups, *K) with {nd} spatial dims, got {w.shape}")
    c_in, (c_out, c_per_group) = x.shape[1], w.shape[:2]
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if c_in % groups != 0 or c_out % groups != 0:
        raise ValueError(f"groups={groups} must divide C_in={c_in} and C_out={c_out}")
    if c_per_group != c_in // groups:
        raise ValueError(f"w.shape[1] must be C_in/groups = {c_in // groups}, got {c_per_group}")
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {bias.shape}")
    return x, w, bias


def correlate(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Cross-correlation as in deep learning (``torch.nn.functional.conv{1,2,3}d``).

    x: (N, C_in, *S), w: (C_out, C_in / groups, *K), bias: (C_out,) or None.

        y[n, o, p] = b[o] + sum_{c in group(o)} sum_t w[o, c, t] * xpad[n, c, p*stride + t*dilation]

    where ``xpad = pad(x, padding, padding_mode)`` and output channel ``o``
    belongs to group ``o // (C_out / groups)``, which reads input channels
    ``[g*C_in/groups, (g+1)*C_in/groups)``.  Output size per dim:
    ``floor((S + lo + hi - dilation*(K-1) - 1) / stride) + 1``.
    Returns y: (N, C_out, *O).
    """
    x, w, bias = _conv_arrays(x, w, bias, groups)
    nd = x.ndim - 2
    n, c_out, c_per_group = x.shape[0], w.shape[0], w.shape[1]
    stride_t = _positive(_ntuple(stride, nd, "stride"), "stride")
    dil_t = _positive(_ntuple(dilation, nd, "dilation"), "dilation")
    kernel = w.shape[2:]
    pairs = resolve_padding(padding, kernel, stride_t, dil_t)

    xp = pad(x, pairs, padding_mode)
    out_shape = tuple(
        _out_size(x.shape[2 + d], *pairs[d], kernel[d], stride_t[d], dil_t[d]) for d in range(nd)
    )
    y = np.zeros((n, c_out) + out_shape, dtype=np.float64)
    o_per_group = c_out // groups
    for p in itertools.product(*(range(o) for o in out_shape)):
        # receptive field of output position p: xpad[p*stride + t*dilation] for all taps t
        window = tuple(
            slice(p[d] * stride_t[d], p[d] * stride_t[d] + dil_t[d] * (kernel[d] - 1) + 1, dil_t[d])
            for d in range(nd)
        )
        for g in range(groups):
            cs = slice(g * c_per_group, (g + 1) * c_per_group)
            os_ = slice(g * o_per_group, (g + 1) * o_per_group)
            patch = xp[(slice(None), cs) + window]  # (N, C_in/groups, *K)
            # sum over channels c and taps t: flatten (c, t) and contract
            y[(slice(None), os_) + p] = patch.reshape(n, -1) @ w[os_].reshape(o_per_group, -1).T
    if bias is not None:
        y += bias.reshape((1, c_out) + (1,) * nd)
    return y


def convolve_same_padding(kernel: Sequence[int], dilation: IntOrTuple = 1) -> tuple[tuple[int, int], ...]:
    """'same' padding of the true convolution, as ``scipy.signal.convolve(x, w, mode='same')``: the output is the
    centre of the full convolution, full[(E-1)//2 : (E-1)//2 + S] with span E = dilation*(K-1) + 1, which pads
    ``E-1 - (E-1)//2`` before and ``(E-1)//2`` after: the extra element (odd totals) BEFORE, unlike
    ``same_padding`` (PyTorch's correlation rule)."""
    dil = _ntuple(dilation, len(kernel), "dilation")
    pairs = []
    for k, d in zip(kernel, dil):
        total = d * (k - 1)
        pairs.append((total - total // 2, total // 2))
    return tuple(pairs)


def convolve(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """True (signal-processing) convolution, ``scipy.signal.convolve`` summed over each group's input channels.

    x: (N, C_in, *S), w: (C_out, C_in / groups, *K) -> (N, C_out, *O), O as ``correlate``'s.

        y[n, o, p] = b[o] + sum_{c in group(o)} sum_t w[o, c, t] * xpad[n, c, p*stride + dilation*(K-1-t)]

    tap t reads t*dilation before the window's last element (the kernel runs backwards over x; the same sum as
    ``correlate`` with w flipped). ``xpad = pad(x, pairs, padding_mode)``; 'same' resolves to
    ``convolve_same_padding`` (scipy's 'same'), any other padding as for ``correlate``. Written with its own
    loop over taps, not through ``correlate``.
    """
    x, w, bias = _conv_arrays(x, w, bias, groups)
    nd = x.ndim - 2
    n, c_out, c_per_group = x.shape[0], w.shape[0], w.shape[1]
    stride_t = _positive(_ntuple(stride, nd, "stride"), "stride")
    dil_t = _positive(_ntuple(dilation, nd, "dilation"), "dilation")
    kernel = w.shape[2:]
    if isinstance(padding, str) and padding == "same":
        if any(s != 1 for s in stride_t):
            raise ValueError("padding='same' needs stride 1")
        pairs = convolve_same_padding(kernel, dil_t)
    else:
        pairs = resolve_padding(padding, kernel, stride_t, dil_t)
    xp = pad(x, pairs, padding_mode)
    out_shape = tuple(_out_size(x.shape[2 + d], *pairs[d], kernel[d], stride_t[d], dil_t[d]) for d in range(nd))
    y = np.zeros((n, c_out) + out_shape, dtype=np.float64)
    o_per_group = c_out // groups
    for t in itertools.product(*(range(k) for k in kernel)):
        # the input each output position p reads through tap t: xpad[p*stride + dilation*(K-1-t)], all p at once
        first = [dil_t[d] * (kernel[d] - 1 - t[d]) for d in range(nd)]
        taps = tuple(slice(first[d], first[d] + stride_t[d] * (out_shape[d] - 1) + 1, stride_t[d]) for d in range(nd))
        for g in range(groups):
            cs = slice(g * c_per_group, (g + 1) * c_per_group)
            os_ = slice(g * o_per_group, (g + 1) * o_per_group)
            # (N, C_in/groups, *O) x (C_out/groups, C_in/groups) -> (N, C_out/groups, *O)
            y[:, os_] += np.einsum("nc...,oc->no...", xp[(slice(None), cs) + taps], w[(os_, slice(None)) + t])
    if bias is not None:
        y += bias.reshape((1, c_out) + (1,) * nd)
    return y


def conv_matrix(
    input_size: Sequence[int],
    kernel: np.ndarray,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """Matrix of a single-channel, zero-padded correlation ("convolution as a matrix").

    input_size: S (spatial sizes), kernel: array of shape K (spatial only).
    Returns C of shape (prod(O), prod(S)) with

        C[ravel(p), ravel(q)] = sum of kernel[t] over taps t with q = p*stride - lo + t*dilation

    (taps landing in the padding contribute nothing), so that
    ``correlate(x[None, None], kernel[None, None], ...)[0, 0] == (C @ x.ravel()).reshape(O)``.
    """
    size = tuple(int(s) for s in input_size)
    kernel = np.asarray(kernel, dtype=np.float64)
    nd = len(size)
    if nd < 1 or any(s < 1 for s in size):
        raise ValueError(f"input_size must be a non-empty tuple of positive ints, got {input_size!r}")
    if kernel.ndim != nd:
        raise ValueError(
            f"kernel must have {nd} dims (one per spatial dim of input_size), got {kernel.shape}"
        )
    stride_t = _positive(_ntuple(stride, nd, "stride"), "stride")
    dil_t = _positive(_ntuple(dilation, nd, "dilation"), "dilation")
    pairs = _pad_pairs(padding, nd)
    out_shape = tuple(
        _out_size(size[d], *pairs[d], kernel.shape[d], stride_t[d], dil_t[d], "input_size") for d in range(nd)
    )
    c = np.zeros((math.prod(out_shape), math.prod(size)), dtype=np.float64)
    for row, p in enumerate(itertools.product(*(range(o) for o in out_shape))):
        for t in itertools.product(*(range(k) for k in kernel.shape)):
            q = tuple(p[d] * stride_t[d] - pairs[d][0] + t[d] * dil_t[d] for d in range(nd))
            if all(0 <= q[d] < size[d] for d in range(nd)):
                c[row, np.ravel_multi_index(q, size)] += kernel[t]
    return c


# ---------------------------------------------------------------------------
# transposed convolution
# ---------------------------------------------------------------------------


def _transposed_args(
    x: np.ndarray,
    w: np.ndarray,
    stride: IntOrTuple,
    padding: IntOrTuple,
    output_padding: IntOrTuple,
    dilation: IntOrTuple,
    groups: int,
) -> tuple[int, tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Check transposed-conv arguments.

    Returns (nd, stride, padding, output_padding, dilation, output size).
    """
    nd = _spatial_ndim(x)
    if w.ndim != x.ndim:
        raise ValueError(f"w must have shape (C_in, C_out/groups, *K) with {nd} spatial dims, got {w.shape}")
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    c_in = x.shape[1]
    if w.shape[0] != c_in:
        raise ValueError(f"w.shape[0] must equal C_in = {c_in} (ConvTranspose layout), got {w.shape[0]}")
    if c_in % groups != 0:
        raise ValueError(f"groups={groups} must divide C_in={c_in}")
    stride_t = _positive(_ntuple(stride, nd, "stride"), "stride")
    dil_t = _positive(_ntuple(dilation, nd, "dilation"), "dilation")
    pad_t = _ntuple(padding, nd, "padding")
    outpad_t = _ntuple(output_padding, nd, "output_padding")
    if any(v < 0 for v in pad_t):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    for d in range(nd):
        if outpad_t[d] < 0 or (outpad_t[d] >= stride_t[d] and outpad_t[d] >= dil_t[d]):
            raise ValueError(
                f"output_padding must be >= 0 and smaller than stride or dilation, got {output_padding!r}"
            )
    out_size = tuple(
        (x.shape[2 + d] - 1) * stride_t[d] - 2 * pad_t[d] + dil_t[d] * (w.shape[2 + d] - 1) + outpad_t[d] + 1
        for d in range(nd)
    )
    if any(o < 1 for o in out_size):
        raise ValueError(f"padding {padding!r} is too large: output size would be {out_size}")
    return nd, stride_t, pad_t, outpad_t, dil_t, out_size


def transposed_conv(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> np.ndarray:
    """Transposed convolution with PyTorch ``ConvTranspose`` semantics (Dumoulin & Visin construction).

    x: (N, C_in, *S), w: (C_in, C_out / groups, *K), bias: (C_out,) or None -> (N, C_out, *O) with
    ``O = (S - 1)*stride - 2*padding + dilation*(K - 1) + output_padding + 1``.

    1. insert ``stride - 1`` zeros between neighbouring input elements (size (S-1)*stride + 1);
    2. pad each side with ``e = dilation*(K-1) - padding`` zeros (crop ``-e`` if ``e < 0``) and
       ``output_padding`` extra zeros at the high end;
    3. stride-1 correlation (same dilation) with kernel ``w'[g*Co + o, c, t] = w[g*Ci + c, o, K-1-t]``
       (spatially flipped, in/out axes swapped within each group; Ci = C_in/groups, Co = C_out/groups).

    ``padding`` and ``output_padding`` are symmetric: an int or one int per spatial dim.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nd, stride_t, pad_t, outpad_t, dil_t, _ = _transposed_args(
        x, w, stride, padding, output_padding, dilation, groups
    )
    n, c_in = x.shape[:2]
    c_in_g, c_out_g = c_in // groups, w.shape[1]
    c_out = c_out_g * groups
    kernel = w.shape[2:]

    # 1. zero insertion
    dilated_shape = tuple((x.shape[2 + d] - 1) * stride_t[d] + 1 for d in range(nd))
    z = np.zeros((n, c_in) + dilated_shape, dtype=np.float64)
    z[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in stride_t)] = x

    # 2. pad (or crop) each side with dilation*(K-1) - padding, plus output_padding at the end
    crop = []
    pairs = []
    for d in range(nd):
        edge = dil_t[d] * (kernel[d] - 1) - pad_t[d]
        lo, hi = edge, edge + outpad_t[d]
        crop.append(slice(max(-lo, 0), dilated_shape[d] - max(-hi, 0)))
        pairs.append((max(lo, 0), max(hi, 0)))
    z = pad(z[(slice(None), slice(None)) + tuple(crop)], tuple(pairs), "zeros")

    # 3. equivalent forward kernel: swap in/out axes per group and flip spatially
    w_fwd = np.zeros((c_out, c_in_g) + kernel, dtype=np.float64)
    for g in range(groups):
        block = w[g * c_in_g : (g + 1) * c_in_g]  # (C_in/groups, C_out/groups, *K)
        w_fwd[g * c_out_g : (g + 1) * c_out_g] = _flip_spatial(np.swapaxes(block, 0, 1))
    return correlate(z, w_fwd, bias, stride=1, padding=0, dilation=dil_t, groups=groups)


def transposed_conv_by_matrix(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """Transposed convolution (groups=1) as the adjoint of a forward convolution matrix.

    x: (N, C_in, *S), w: (C_in, C_out, *K), bias: (C_out,) or None -> (N, C_out, *O), O as in
    ``transposed_conv``:

        y[n, o] = b[o] + sum_c reshape_O(C_{c,o}^T @ x[n, c].ravel())

    where ``C_{c,o} = conv_matrix(O, w[c, o], stride, padding, dilation)`` is the matrix of the
    forward correlation whose input has the transposed conv's output size O.  Its output size
    is S (or larger, when output_padding >= stride; the extra rows see only zeros in x and are
    dropped).
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    nd, stride_t, pad_t, _, dil_t, out_size = _transposed_args(
        x, w, stride, padding, output_padding, dilation, 1
    )
    n, c_in = x.shape[:2]
    c_out = w.shape[1]
    in_size = x.shape[2:]
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {bias.shape}")
    # output size of the forward conv on an input of size out_size (>= S in every dim)
    fwd_size = tuple(
        _out_size(out_size[d], pad_t[d], pad_t[d], w.shape[2 + d], stride_t[d], dil_t[d]) for d in range(nd)
    )
    y = np.zeros((n, c_out) + out_size, dtype=np.float64)
    for c in range(c_in):
        for o in range(c_out):
            cm = conv_matrix(out_size, w[c, o], stride_t, pad_t, dil_t)
            # keep only the rows (forward output positions) that exist in x
            cm = cm.reshape(fwd_size + (-1,))[tuple(slice(0, s) for s in in_size)].reshape(-1, cm.shape[1])
            y[:, o] += (x[:, c].reshape(n, -1) @ cm).reshape((n,) + out_size)
    if bias is not None:
        y += bias.reshape((1, c_out) + (1,) * nd)
    return y


# ---------------------------------------------------------------------------
# upsampling and channel shuffle
# ---------------------------------------------------------------------------

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


def upsample(x: np.ndarray, scale_factor: IntOrTuple, mode: str = "nearest") -> np.ndarray:
    """Upsample the spatial dims of x: (N, C, *S) -> (N, C, *(S * scale)).

    * 'nearest': ``out[i] = in[floor(i / scale)]`` per axis.
    * 'linear' (1D) / 'bilinear' (2D) / 'trilinear' (3D), align_corners=False: per axis
      ``src = max((i + 0.5)/scale - 0.5, 0)``, ``i0 = floor(src)``, ``i1 = min(i0 + 1, S - 1)``,
      ``lam = src - i0``, ``out[i] = (1 - lam)*in[i0] + lam*in[i1]``, applied separably.
    """
    x = np.asarray(x, dtype=np.float64)
    nd = _spatial_ndim(x)
    scales = _positive(_ntuple(scale_factor, nd, "scale_factor"), "scale_factor")
    if mode != "nearest" and mode != _LINEAR_MODES[nd]:
        raise ValueError(
            f"mode must be 'nearest' or {_LINEAR_MODES[nd]!r} for {nd} spatial dims, got {mode!r}"
        )
    out = x
    for d in range(nd):
        axis = 2 + d
        size, scale = x.shape[axis], scales[d]
        new_shape = list(out.shape)
        new_shape[axis] = size * scale
        res = np.zeros(new_shape, dtype=np.float64)
        for i in range(size * scale):
            dst = [slice(None)] * out.ndim
            dst[axis] = i
            if mode == "nearest":
                res[tuple(dst)] = np.take(out, i // scale, axis=axis)
            else:
                src = max((i + 0.5) / scale - 0.5, 0.0)
                i0 = int(math.floor(src))
                i1 = min(i0 + 1, size - 1)
                lam = src - i0
                res[tuple(dst)] = (1.0 - lam) * np.take(out, i0, axis=axis) + lam * np.take(
                    out, i1, axis=axis
                )
        out = res
    return out


def channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """ShuffleNet channel shuffle. x: (N, C, *S) -> (N, C, *S).

    ``out[:, i] = x[:, (i % groups) * (C // groups) + i // groups]``
    (equivalently: view channels as (groups, C/groups), transpose, flatten).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"x must have shape (N, C, *S), got {x.shape}")
    c = x.shape[1]
    if not isinstance(groups, (int, np.integer)) or groups < 1 or c % groups != 0:
        raise ValueError(f"groups must be a positive int dividing C={c}, got {groups!r}")
    out = np.empty_like(x)
    for i in range(c):
        out[:, i] = x[:, (i % groups) * (c // groups) + i // groups]
    return out


# ---------------------------------------------------------------------------
# HetConv, dynamic convolution
# ---------------------------------------------------------------------------


def hetconv_kernel(w_kxk: np.ndarray, w_1x1: np.ndarray, p: int) -> np.ndarray:
    """Dense HetConv kernel (Singh et al. 2019).

    w_kxk: (C_out, C_in/p, kh, kw), w_1x1: (C_out, C_in - C_in/p) -> K: (C_out, C_in, kh, kw), kh and kw odd
    (square in the paper; any odd kh x kw has a centre tap). For filter j and input channel c:

    * ``(c - j) mod p == 0``: ``K[j, c] = w_kxk[j, c // p]`` (full kh x kw kernel);
    * otherwise ``K[j, c]`` is zero except ``K[j, c, kh//2, kw//2] = w_1x1[j, m]``, where m is the
      rank of c among the channels c' with ``(c' - j) mod p != 0``.

    C_in = p * w_kxk.shape[1] (C_in must be divisible by p).
    """
    w_kxk = np.asarray(w_kxk, dtype=np.float64)
    w_1x1 = np.asarray(w_1x1, dtype=np.float64)
    if not isinstance(p, (int, np.integer)) or p < 1:
        raise ValueError(f"p must be a positive int, got {p!r}")
    if w_kxk.ndim != 4 or any(k % 2 == 0 for k in w_kxk.shape[2:]):
        raise ValueError(f"w_kxk must have shape (C_out, C_in/p, kh, kw) with kh and kw odd (a centre tap for the "
                         f"1x1 kernels), got {w_kxk.shape}")
    c_out, c_in_p, kh, kw = w_kxk.shape
    c_in = c_in_p * p
    if w_1x1.shape != (c_out, c_in - c_in_p):
        raise ValueError(f"w_1x1 must have shape ({c_out}, {c_in - c_in_p}), got {w_1x1.shape}")
    kern = np.zeros((c_out, c_in, kh, kw), dtype=np.float64)
    for j in range(c_out):
        m = 0  # rank among the 1x1 channels of filter j
        for c in range(c_in):
            if (c - j) % p == 0:
                kern[j, c] = w_kxk[j, c // p]
            else:
                kern[j, c, kh // 2, kw // 2] = w_1x1[j, m]
                m += 1
    return kern


def dynamic_attention(
    x: np.ndarray,
    fc1_weight: np.ndarray,
    fc1_bias: np.ndarray,
    fc2_weight: np.ndarray,
    fc2_bias: np.ndarray,
    temperature: float,
) -> np.ndarray:
    """Attention over K kernels for dynamic convolution (Chen et al. 2020).

    x: (N, C_in, *S), fc1_weight: (hidden, C_in), fc1_bias: (hidden,), fc2_weight: (K, hidden),
    fc2_bias: (K,) -> a: (N, K).  For each sample n:
    ``g = mean_S x[n]``, ``h = relu(fc1_weight @ g + fc1_bias)``,
    ``a[n] = softmax((fc2_weight @ h + fc2_bias) / temperature)``.
    """
    x = np.asarray(x, dtype=np.float64)
    fc1_weight = np.asarray(fc1_weight, dtype=np.float64)
    fc1_bias = np.asarray(fc1_bias, dtype=np.float64)
    fc2_weight = np.asarray(fc2_weight, dtype=np.float64)
    fc2_bias = np.asarray(fc2_bias, dtype=np.float64)
    nd = _spatial_ndim(x)
    c_in = x.shape[1]
    if fc1_weight.ndim != 2 or fc1_weight.shape[1] != c_in:
        raise ValueError(f"fc1_weight must have shape (hidden, {c_in}), got {fc1_weight.shape}")
    hidden = fc1_weight.shape[0]
    if fc1_bias.shape != (hidden,):
        raise ValueError(f"fc1_bias must have shape ({hidden},), got {fc1_bias.shape}")
    if fc2_weight.ndim != 2 or fc2_weight.shape[1] != hidden:
        raise ValueError(f"fc2_weight must have shape (K, {hidden}), got {fc2_weight.shape}")
    n_kernels = fc2_weight.shape[0]
    if fc2_bias.shape != (n_kernels,):
        raise ValueError(f"fc2_bias must have shape ({n_kernels},), got {fc2_bias.shape}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    a = np.zeros((x.shape[0], n_kernels), dtype=np.float64)
    for n in range(x.shape[0]):
        g = x[n].mean(axis=tuple(range(1, nd + 1)))  # (C_in,)
        h = np.maximum(fc1_weight @ g + fc1_bias, 0.0)  # (hidden,)
        z = (fc2_weight @ h + fc2_bias) / temperature  # (K,)
        e = np.exp(z - z.max())
        a[n] = e / e.sum()
    return a


def dynamic_conv(
    x: np.ndarray,
    weights: np.ndarray,
    biases: np.ndarray | None,
    fc1_weight: np.ndarray,
    fc1_bias: np.ndarray,
    fc2_weight: np.ndarray,
    fc2_bias: np.ndarray,
    temperature: float,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
) -> np.ndarray:
    """Dynamic convolution (Chen et al. 2020): a per-sample attention-weighted mix of K kernels.

    x: (N, C_in, *S), weights: (K, C_out, C_in/groups, *k), biases: (K, C_out) or None; the fc
    arguments as in ``dynamic_attention``.  For each sample n, with ``a = dynamic_attention(x)[n]``:
    ``W_n = sum_k a[k] weights[k]``, ``b_n = sum_k a[k] biases[k]`` and
    ``y[n] = correlate(x[n:n+1], W_n, b_n, stride, padding, dilation, groups)[0]``.
    Returns (N, C_out, *O).
    """
    x = np.asarray(x, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != x.ndim + 1:
        raise ValueError(f"weights must have shape (K, C_out, C_in/groups, *k), got {weights.shape}")
    attention = dynamic_attention(x, fc1_weight, fc1_bias, fc2_weight, fc2_bias, temperature)
    n_kernels = weights.shape[0]
    if attention.shape[1] != n_kernels:
        raise ValueError(f"weights.shape[0] must equal K = fc2_weight.shape[0] = {attention.shape[1]}")
    if biases is not None:
        biases = np.asarray(biases, dtype=np.float64)
        if biases.shape != (n_kernels, weights.shape[1]):
            raise ValueError(f"biases must have shape ({n_kernels}, {weights.shape[1]}), got {biases.shape}")
    outputs = []
    for n in range(x.shape[0]):
        a = attention[n]
        w_n = np.tensordot(a, weights, axes=1)  # sum_k a[k] weights[k]
        b_n = None if biases is None else a @ biases
        outputs.append(correlate(x[n : n + 1], w_n, b_n, stride, padding, dilation, groups))
    return np.concatenate(outputs, axis=0)


# ---------------------------------------------------------------------------
# deformable convolution
# ---------------------------------------------------------------------------


def bilinear_sample(image: np.ndarray, y: float, x: float) -> np.ndarray:
    """Bilinear sample of image: (C, H, W) at real position (y, x) -> (C,).

    torchvision deform_conv2d convention: 0 if ``y <= -1 or y >= H or x <= -1 or x >= W``;
    otherwise, with ``y0 = floor(y)``, ``x0 = floor(x)``, ``ly = y - y0``, ``lx = x - x0``,

        v = (1-ly)(1-lx) I[y0, x0] + (1-ly) lx I[y0, x0+1] + ly (1-lx) I[y0+1, x0] + ly lx I[y0+1, x0+1]

    where neighbours outside the image count as 0.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W), got {image.shape}")
    _, height, width = image.shape
    result = np.zeros(image.shape[0], dtype=np.float64)
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return result
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    ly, lx = y - y0, x - x0
    for yy, wy in ((y0, 1.0 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1.0 - lx), (x0 + 1, lx)):
            if 0 <= yy < height and 0 <= xx < width:
                result += wy * wx * image[:, yy, xx]
    return result


def deform_conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    offset: np.ndarray,
    mask: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """Deformable convolution v1 (mask None) / v2 (mask given), torchvision.ops.deform_conv2d semantics.

    x: (N, C_in, H, W); weight: (C_out, C_in/groups, kh, kw) with groups = C_in // weight.shape[1];
    offset: (N, 2*G*kh*kw, Ho, Wo) with G = offset groups; mask: (N, G*kh*kw, Ho, Wo) or None;
    bias: (C_out,) or None -> y: (N, C_out, Ho, Wo), Ho/Wo as for a normal conv.
    Input channel c is in offset group ``c // (C_in / G)``.  For tap ``t = i*kw + j`` of group g:
    ``dy = offset[n, 2*(g*kh*kw + t)]``, ``dx = offset[n, 2*(g*kh*kw + t) + 1]``,
    ``m = mask[n, g*kh*kw + t]`` (1 without mask), all at (oh, ow), and

        py = oh*stride_h - pad_h + i*dil_h + dy,   px = ow*stride_w - pad_w + j*dil_w + dx
        y[n, o, oh, ow] = b[o] + sum_{c in group(o)} sum_{i,j} weight[o, c_local, i, j] * m * x_c(py, px)

    where ``x_c(py, px) = bilinear_sample`` (implicit zero padding outside the image).
    """
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    _spatial_ndim(x, "x", allowed=(2,))
    if weight.ndim != 4:
        raise ValueError(f"weight must have shape (C_out, C_in/groups, kh, kw), got {weight.shape}")
    n, c_in, height, width = x.shape
    c_out, c_per_group, kh, kw = weight.shape
    if c_per_group < 1 or c_in % c_per_group != 0:
        raise ValueError(f"weight.shape[1]={c_per_group} must divide C_in={c_in}")
    groups = c_in // c_per_group
    if c_out % groups != 0:
        raise ValueError(f"weight: C_out={c_out} must be divisible by groups={groups}")
    stride_t = _positive(_ntuple(stride, 2, "stride"), "stride")
    pad_t = _ntuple(padding, 2, "padding")
    if any(v < 0 for v in pad_t):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    dil_t = _positive(_ntuple(dilation, 2, "dilation"), "dilation")
    h_out = _out_size(height, pad_t[0], pad_t[0], kh, stride_t[0], dil_t[0])
    w_out = _out_size(width, pad_t[1], pad_t[1], kw, stride_t[1], dil_t[1])
    taps = kh * kw
    if offset.ndim != 4 or offset.shape[1] % (2 * taps) != 0 or offset.shape[1] == 0:
        raise ValueError(f"offset must have shape (N, 2*offset_groups*{taps}, Ho, Wo), got {offset.shape}")
    offset_groups = offset.shape[1] // (2 * taps)
    if offset.shape != (n, 2 * offset_groups * taps, h_out, w_out):
        raise ValueError(
            f"offset must have shape ({n}, {2 * offset_groups * taps}, {h_out}, {w_out}), got {offset.shape}"
        )
    if c_in % offset_groups != 0:
        raise ValueError(f"offset: C_in={c_in} must be divisible by offset_groups={offset_groups}")
    if mask is None:
        mask = np.ones((n, offset_groups * taps, h_out, w_out), dtype=np.float64)
    else:
        mask = np.asarray(mask, dtype=np.float64)
        if mask.shape != (n, offset_groups * taps, h_out, w_out):
            raise ValueError(
                f"mask must have shape ({n}, {offset_groups * taps}, {h_out}, {w_out}), got {mask.shape}"
            )
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64)
        if bias.shape != (c_out,):
            raise ValueError(f"bias must have shape ({c_out},), got {bias.shape}")

    # columns[n, c, i, j, oh, ow] = m * x[n, c](py, px): the deformed, modulated receptive fields
    c_per_offset_group = c_in // offset_groups
    columns = np.zeros((n, c_in, kh, kw, h_out, w_out), dtype=np.float64)
    for b in range(n):
        for g in range(offset_groups):
            channels = slice(g * c_per_offset_group, (g + 1) * c_per_offset_group)
            for oh in range(h_out):
                for ow in range(w_out):
                    for i in range(kh):
                        for j in range(kw):
                            t = i * kw + j
                            dy = offset[b, 2 * (g * taps + t), oh, ow]
                            dx = offset[b, 2 * (g * taps + t) + 1, oh, ow]
                            m = mask[b, g * taps + t, oh, ow]
                            py = oh * stride_t[0] - pad_t[0] + i * dil_t[0] + dy
                            px = ow * stride_t[1] - pad_t[1] + j * dil_t[1] + dx
                            columns[b, channels, i, j, oh, ow] = m * bilinear_sample(x[b, channels], py, px)

    y = np.zeros((n, c_out, h_out, w_out), dtype=np.float64)
    o_per_group = c_out // groups
    for g in range(groups):
        cs = slice(g * c_per_group, (g + 1) * c_per_group)
        os_ = slice(g * o_per_group, (g + 1) * o_per_group)
        y[:, os_] = np.einsum("ncijhw,ocij->nohw", columns[:, cs], weight[os_])
    if bias is not None:
        y += bias.reshape(1, c_out, 1, 1)
    return y


# ---------------------------------------------------------------------------
# MixConv
# ---------------------------------------------------------------------------


def mixconv(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    in_splits: Sequence[int],
    biases: Sequence[np.ndarray | None] | None = None,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
) -> np.ndarray:
    """Mixed depthwise/dense convolution (MixConv, Tan & Le 2019).

    x: (N, C_in, *S) is split along channels into consecutive chunks of sizes ``in_splits``
    (summing to C_in).  Chunk i is correlated with ``weights[i]``: (out_i, in_i / g_i, *k_i),
    ``g_i = in_i // weights[i].shape[1]``, with bias ``biases[i]`` (out_i,) or None, and 'same'
    padding per dim: ``total = dilation*(k_i - 1)``, ``lo = total // 2``, ``hi = total - lo``
    (also used with stride > 1).  Returns the chunk outputs concatenated along channels:
    (N, sum_i out_i, *O).
    """
    x = np.asarray(x, dtype=np.float64)
    nd = _spatial_ndim(x)
    if len(weights) == 0 or len(weights) != len(in_splits):
        raise ValueError(
            "weights and in_splits must be non-empty and of equal length, "
            f"got {len(weights)} and {len(in_splits)}"
        )
    if sum(in_splits) != x.shape[1] or any(s < 1 for s in in_splits):
        raise ValueError(f"in_splits must be positive and sum to C_in={x.shape[1]}, got {list(in_splits)}")
    if biases is None:
        biases = [None] * len(weights)
    if len(biases) != len(weights):
        raise ValueError(f"biases must have one entry per kernel ({len(weights)}), got {len(biases)}")
    dil_t = _positive(_ntuple(dilation, nd, "dilation"), "dilation")
    outputs = []
    start = 0
    for w_i, in_i, b_i in zip(weights, in_splits, biases):
        w_i = np.asarray(w_i, dtype=np.float64)
        if w_i.ndim != x.ndim or w_i.shape[1] < 1 or in_i % w_i.shape[1] != 0:
            raise ValueError(
                f"weights entry of shape {w_i.shape} does not fit an input chunk of {in_i} channels"
            )
        g_i = in_i // w_i.shape[1]
        same = []
        for d in range(nd):
            total = dil_t[d] * (w_i.shape[2 + d] - 1)
            same.append((total // 2, total - total // 2))
        chunk = x[:, start : start + in_i]
        outputs.append(correlate(chunk, w_i, b_i, stride, tuple(same), dil_t, g_i))
        start += in_i
    return np.concatenate(outputs, axis=1)


# ---------------------------------------------------------------------------
# Re-parameterisable multi-branch blocks (ACNet, RepVGG, RepLKNet)
# ---------------------------------------------------------------------------


def batch_norm(
    z: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    eps: float = 1e-5,
    training: bool = False,
) -> np.ndarray:
    """Batch normalisation (Ioffe & Szegedy 2015), per channel c:

        y = gamma[c] * (z - mu[c]) / sqrt(sigma2[c] + eps) + beta[c]

    with (mu, sigma2) the running statistics ``(mean, var)`` at inference (``training=False``), or the batch's
    own mean and biased variance over (N, *S) in training.
    """
    z = np.asarray(z, dtype=np.float64)
    axes = (0,) + tuple(range(2, z.ndim))
    if training:
        mu = z.mean(axis=axes)
        sigma2 = ((z - mu.reshape((1, -1) + (1,) * (z.ndim - 2))) ** 2).mean(axis=axes)
    else:
        mu, sigma2 = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    shape = (1, -1) + (1,) * (z.ndim - 2)
    scale = np.asarray(gamma, dtype=np.float64) / np.sqrt(sigma2 + eps)
    return (z - mu.reshape(shape)) * scale.reshape(shape) + np.asarray(beta, dtype=np.float64).reshape(shape)


def branch_sum(
    x: np.ndarray,
    branches: Sequence[tuple[np.ndarray, np.ndarray | None, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]],
    identity: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    stride: IntOrTuple = 1,
    padding: Padding | str = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    eps: float = 1e-5,
    training: bool = False,
) -> np.ndarray:
    """A training-time re-parameterisable block (ACNet, Ding et al. 2019, eq. 3-4; RepVGG, Ding et al. 2021, eq. 1;
    RepLKNet, Ding et al. 2022, §3): the sum of conv → BN branches, plus BN(x) when ``identity`` is given:

        y = sum_b BN_b(W_b * x + c_b) + BN_id(x)

    ``branches``: (w_b (C_out, C_in/groups, *k_b), c_b (C_out,) or None, (mean, var, gamma, beta)). Every branch reads the same window
    positions: its kernel sits inside the block's largest kernel K (per dim the maximum over branches) at offset
    (K - k_b) // 2, so the block pads x once by ``padding`` (resolved against K) and branch b reads that padded map
    cropped by d*offset before and d*(K - k_b - offset) after. The identity branch needs output shape = input
    shape. Returns (N, C_out, *O).
    """
    x = np.asarray(x, dtype=np.float64)
    nd = _spatial_ndim(x)
    if not branches:
        raise ValueError("branches must not be empty")
    kernel = tuple(max(w.shape[2 + d] for w, _, _ in branches) for d in range(nd))
    dil = _positive(_ntuple(dilation, nd, "dilation"), "dilation")
    pairs = resolve_padding(padding, kernel, stride, dil)
    xp = pad(x, pairs, padding_mode)
    total = None
    for w, c_b, (mean, var, gamma, beta) in branches:
        w = np.asarray(w, dtype=np.float64)
        window = []
        for d in range(nd):
            k_b = w.shape[2 + d]
            before = (kernel[d] - k_b) // 2
            after = kernel[d] - k_b - before
            window.append(slice(dil[d] * before, xp.shape[2 + d] - dil[d] * after))
        z = correlate(xp[(slice(None), slice(None), *window)], w, c_b, stride, 0, dil, groups)
        y_b = batch_norm(z, mean, var, gamma, beta, eps, training)
        total = y_b if total is None else total + y_b
    if identity is not None:
        if total.shape != x.shape:
            raise ValueError(f"the identity branch needs output shape = input shape, got {total.shape} vs {x.shape}")
        total = total + batch_norm(x, *identity, eps, training)
    return total


# ---------------------------------------------------------------------------
# Sub-pixel convolution, partial convolution, Ghost module
# ---------------------------------------------------------------------------


def pixel_shuffle(x: np.ndarray, upscale_factor: int) -> np.ndarray:
    """Periodic shuffling PS (Shi et al. 2016, eq. 4), in any number of spatial dims D, with r = upscale_factor:

        y[n, c, r*p_1 + i_1, ..., r*p_D + i_D] = x[n, c*r^D + (i_1*r^(D-1) + ... + i_D), p_1, ..., p_D]

    (torch.nn.PixelShuffle's channel order in 2-D). x: (N, C*r^D, *S) -> (N, C, *(r*S)).
    """
    x = np.asarray(x, dtype=np.float64)
    nd = _spatial_ndim(x)
    r = int(upscale_factor)
    if r < 1 or x.shape[1] % r**nd:
        raise ValueError(f"upscale_factor={upscale_factor} must be >= 1 with r^{nd} dividing C={x.shape[1]}")
    n, c = x.shape[0], x.shape[1] // r**nd
    y = np.empty((n, c) + tuple(r * s for s in x.shape[2:]), dtype=np.float64)
    for ch in range(c):
        for sub in itertools.product(range(r), repeat=nd):
            flat = 0
            for i in sub:
                flat = flat * r + i
            target = tuple(slice(i, None, r) for i in sub)
            y[(slice(None), ch) + target] = x[:, ch * r**nd + flat]
    return y


def partial_conv(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    padding: Padding | str = "same",
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Partial convolution PConv (Chen et al. 2023, FasterNet, §3.1): a regular conv on the first c_p channels,
    the other channels passed through unchanged:

        y[:, :c_p] = W * x[:, :c_p] (+ b),   y[:, c_p:] = x[:, c_p:]

    w: (c_p, c_p, *K). Stride 1, and the padding must keep the spatial size.
    """
    x = np.asarray(x, dtype=np.float64)
    c_p = np.asarray(w).shape[0]
    if c_p > x.shape[1]:
        raise ValueError(f"w has {c_p} output channels but x only {x.shape[1]} channels")
    head = correlate(x[:, :c_p], w, bias, 1, padding, dilation, 1, padding_mode)
    if head.shape[2:] != x.shape[2:]:
        raise ValueError(f"the padding must keep the spatial size: {x.shape[2:]} became {head.shape[2:]}")
    return np.concatenate([head, x[:, c_p:]], axis=1)


def ghost_module(
    x: np.ndarray,
    w_primary: np.ndarray,
    b_primary: np.ndarray | None,
    w_cheap: np.ndarray,
    b_cheap: np.ndarray | None,
    out_channels: int,
    stride: IntOrTuple = 1,
    padding: Padding | str = 0,
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Ghost module (Han et al. 2020, GhostNet, eq. 2-3): intrinsic maps Y' = X * f' (a conv to m channels), then
    s - 1 cheap linear ops per intrinsic map, y_ij = Phi_ij(y'_i) (a depthwise conv, 'same' padding, stride 1),
    and the output = [Y', the ghost maps] cut to the first ``out_channels`` channels.

    w_primary: (m, C_in, *k); w_cheap: (m*(s-1), 1, *d) — ghost map i*(s-1) + j comes from intrinsic map i.
    """
    x = np.asarray(x, dtype=np.float64)
    intrinsic = correlate(x, w_primary, b_primary, stride, padding, dilation, 1, padding_mode)
    m = intrinsic.shape[1]
    w_cheap = np.asarray(w_cheap, dtype=np.float64)
    ghosts = correlate(intrinsic, w_cheap, b_cheap, 1, same_padding(w_cheap.shape[2:]), 1, m, padding_mode)
    both = np.concatenate([intrinsic, ghosts], axis=1)
    if out_channels > both.shape[1]:
        raise ValueError(f"out_channels={out_channels} exceeds the {both.shape[1]} maps made")
    return both[:, :out_channels]
# issue 15b: CondConv, ODConv, DCNv3, involution, selective kernel
# ---------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _global_mean(x: np.ndarray) -> np.ndarray:
    """(N, C, *S) -> (N, C): the mean over the spatial dims (global average pooling)."""
    return x.reshape(x.shape[0], x.shape[1], -1).mean(axis=2)


def condconv(
    x: np.ndarray,
    weights: np.ndarray,
    biases: np.ndarray | None,
    routing_weight: np.ndarray,
    routing_bias: np.ndarray,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """CondConv (Yang et al. 2019, Eq. 1): per example n,
    ``r = sigmoid(routing_weight @ mean_S x[n] + routing_bias)`` (K independent sigmoids, not a softmax),
    ``W_n = sum_k r[k] weights[k]``, ``b_n = sum_k r[k] biases[k]``, ``y[n] = correlate(x[n], W_n, b_n)``.

    x: (N, C_in, *S); weights: (K, C_out, C_in/groups, *k); biases: (K, C_out) or None;
    routing_weight: (K, C_in); routing_bias: (K,).
    """
    x = np.asarray(x, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n_experts = weights.shape[0]
    if np.shape(routing_weight) != (n_experts, x.shape[1]):
        raise ValueError(f"routing_weight must have shape ({n_experts}, {x.shape[1]}), got {np.shape(routing_weight)}")
    outputs = []
    for n in range(x.shape[0]):
        r = _sigmoid(np.asarray(routing_weight) @ _global_mean(x[n : n + 1])[0] + np.asarray(routing_bias))
        w_n = np.tensordot(r, weights, axes=1)
        b_n = None if biases is None else r @ np.asarray(biases, dtype=np.float64)
        outputs.append(correlate(x[n : n + 1], w_n, b_n, stride, padding, dilation, groups, padding_mode))
    return np.concatenate(outputs, axis=0)


def odconv(
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None,
    heads: dict,
    temperature: float,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """ODConv (Li et al. 2022, Eq. 2) with the attentions shared by the K kernels: per sample n,
    ``z = relu(Ws @ mean_S x[n] + bs)``; ``a_c = sigmoid((Wc z + bc)/T)`` (C_in), ``a_f = sigmoid((Wf z + bf)/T)``
    (C_out), ``a_s = sigmoid((Wsp z + bsp)/T)`` (prod(k), taps row-major), ``a_w = softmax((Wk z + bk)/T)`` (K);
    the kernel ``W_n[o, c, t] = a_f[o] * a_c[g(o)*C_in/groups + c] * a_s[t] * sum_k a_w[k] weights[k, o, c, t]``
    and ``y[n] = correlate(x[n], W_n, bias)``.

    heads: {'squeeze', 'channel', 'filter', 'spatial', 'kernel'} -> (weight, bias) of each fully connected layer.
    """
    x = np.asarray(x, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n_kernels, c_out, c_per = weights.shape[:3]
    kernel = weights.shape[3:]
    o_per = c_out // groups
    outputs = []
    for n in range(x.shape[0]):
        def fc(name: str, v: np.ndarray) -> np.ndarray:
            w, b = heads[name]
            return np.asarray(w, dtype=np.float64) @ v + np.asarray(b, dtype=np.float64)

        z = np.maximum(fc("squeeze", _global_mean(x[n : n + 1])[0]), 0.0)
        a_c = _sigmoid(fc("channel", z) / temperature)
        a_f = _sigmoid(fc("filter", z) / temperature)
        a_s = _sigmoid(fc("spatial", z) / temperature).reshape(kernel)
        a_w = _softmax(fc("kernel", z) / temperature, axis=0)
        w_n = np.zeros((c_out, c_per) + tuple(kernel), dtype=np.float64)
        for o in range(c_out):
            for c in range(c_per):
                mixed = sum(a_w[k] * weights[k, o, c] for k in range(n_kernels))
                w_n[o, c] = a_f[o] * a_c[(o // o_per) * c_per + c] * a_s * mixed
        outputs.append(correlate(x[n : n + 1], w_n, bias, stride, padding, dilation, groups, padding_mode))
    return np.concatenate(outputs, axis=0)


def selective_kernel(
    x: np.ndarray,
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray] | None,
    dilations: Sequence[IntOrTuple],
    squeeze_weight: np.ndarray,
    squeeze_bias: np.ndarray,
    select_weight: np.ndarray,
    select_bias: np.ndarray,
    stride: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Selective kernel convolution (Li et al. 2019, Eqs. 1-6).

    Branch m: ``U_m = relu(correlate(x, weights[m], biases[m], stride, pad_m, dilations[m], groups))`` with the
    symmetric padding ``d*(k-1)/2`` per dim. Fuse: ``U = sum_m U_m``, ``s = mean_S U`` (N, C),
    ``z = relu(squeeze_weight @ s + squeeze_bias)``. Select: ``logits = select_weight @ z + select_bias`` read as
    (M, C) (branch-major), ``a[m, c] = exp(logits[m, c]) / sum_j exp(logits[j, c])``, ``V = sum_m a[m] * U_m``.
    """
    x = np.asarray(x, dtype=np.float64)
    nd = _spatial_ndim(x)
    branches = []
    for m, w in enumerate(weights):
        w = np.asarray(w, dtype=np.float64)
        d = _ntuple(dilations[m], nd, "dilation")
        pads = tuple(dd * (k - 1) // 2 for dd, k in zip(d, w.shape[2:]))
        b = None if biases is None else biases[m]
        branches.append(np.maximum(correlate(x, w, b, stride, pads, d, groups, padding_mode), 0.0))
    n_branches, (n, c) = len(branches), branches[0].shape[:2]
    out = np.zeros_like(branches[0])
    for i in range(n):
        s = sum(u[i] for u in branches).reshape(c, -1).mean(axis=1)
        z = np.maximum(np.asarray(squeeze_weight) @ s + np.asarray(squeeze_bias), 0.0)
        logits = (np.asarray(select_weight) @ z + np.asarray(select_bias)).reshape(n_branches, c)
        a = _softmax(logits, axis=0)
        for m in range(n_branches):
            out[i] += a[m].reshape((c,) + (1,) * nd) * branches[m][i]
    return out


def involve(
    x: np.ndarray,
    kernels: np.ndarray,
    kernel_size: Sequence[int],
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Involution's application of per-position kernels: x (N, C, *S), kernels (N, G*T, *O) (group-major, taps
    row-major), ``xpad = pad(x, padding, padding_mode)``: ``y[n, c, p] = sum_t kernels[n, g*T + t, p] *
    xpad[n, c, p*s + t*d]`` with ``g = c // (C/G)``."""
    x = np.asarray(x, dtype=np.float64)
    kernels = np.asarray(kernels, dtype=np.float64)
    nd = _spatial_ndim(x)
    kernel = tuple(kernel_size)
    s = _ntuple(stride, nd, "stride")
    d = _ntuple(dilation, nd, "dilation")
    pairs = resolve_padding(padding, kernel, s, d)
    xp = pad(x, pairs, padding_mode)
    n, c = x.shape[:2]
    out_shape = tuple(_out_size(x.shape[2 + i], *pairs[i], kernel[i], s[i], d[i]) for i in range(nd))
    taps = list(itertools.product(*(range(k) for k in kernel)))
    groups = kernels.shape[1] // len(taps)
    if kernels.shape != (n, groups * len(taps)) + out_shape or c % groups:
        raise ValueError(f"kernels must have shape (N, G*{len(taps)}, *{out_shape}) with G dividing C={c}, "
                         f"got {kernels.shape}")
    per_group = c // groups
    y = np.zeros((n, c) + out_shape, dtype=np.float64)
    for b in range(n):
        for p in itertools.product(*(range(o) for o in out_shape)):
            h = kernels[(b, slice(None)) + p].reshape(groups, len(taps))
            for ch in range(c):
                total = 0.0
                for t, tap in enumerate(taps):
                    total += h[ch // per_group, t] * xp[(b, ch) + tuple(p[i] * s[i] + tap[i] * d[i] for i in range(nd))]
                y[(b, ch) + p] = total
    return y


def involution(
    x: np.ndarray,
    reduce_weight: np.ndarray,
    reduce_bias: np.ndarray | None,
    span_weight: np.ndarray,
    span_bias: np.ndarray | None,
    kernel_size: Sequence[int],
    groups: int,
    stride: IntOrTuple = 1,
    padding: Padding = 0,
    dilation: IntOrTuple = 1,
    padding_mode: str = "zeros",
) -> np.ndarray:
    """Involution (Li et al. 2021, Eqs. 4 and 6). With ``xpad = pad(x, padding, padding_mode)``, for every sample n
    and output position p: the feature at the window centre ``f = xpad[n, :, p*s + d*((k-1)//2)]``, the kernels
    ``H = (span_weight @ relu(reduce_weight @ f + reduce_bias) + span_bias)`` read as (G, T) (taps row-major), and
    ``y[n, c, p] = sum_t H[c // (C/G), t] * xpad[n, c, p*s + t*d]`` (``involve``).
    """
    x = np.asarray(x, dtype=np.float64)
    nd = _spatial_ndim(x)
    kernel = tuple(kernel_size)
    s = _ntuple(stride, nd, "stride")
    d = _ntuple(dilation, nd, "dilation")
    pairs = resolve_padding(padding, kernel, s, d)
    xp = pad(x, pairs, padding_mode)
    n = x.shape[0]
    out_shape = tuple(_out_size(x.shape[2 + i], *pairs[i], kernel[i], s[i], d[i]) for i in range(nd))
    kernels = np.zeros((n, groups * math.prod(kernel)) + out_shape, dtype=np.float64)
    b0 = 0.0 if reduce_bias is None else np.asarray(reduce_bias)
    b1 = 0.0 if span_bias is None else np.asarray(span_bias)
    for b in range(n):
        for p in itertools.product(*(range(o) for o in out_shape)):
            centre = tuple(p[i] * s[i] + d[i] * ((kernel[i] - 1) // 2) for i in range(nd))
            f = xp[(b, slice(None)) + centre]
            kernels[(b, slice(None)) + p] = (np.asarray(span_weight) @ np.maximum(np.asarray(reduce_weight) @ f + b0,
                                                                                  0.0) + b1)
    return involve(x, kernels, kernel, s, pairs, d, padding_mode)


def dcnv3(
    x: np.ndarray,
    in_weight: np.ndarray,
    in_bias: np.ndarray | None,
    dw_weight: np.ndarray,
    dw_bias: np.ndarray | None,
    norm_weight: np.ndarray,
    norm_bias: np.ndarray,
    norm_eps: float,
    offset_weight: np.ndarray,
    offset_bias: np.ndarray,
    mask_weight: np.ndarray,
    mask_bias: np.ndarray,
    out_weight: np.ndarray,
    out_bias: np.ndarray | None,
    groups: int,
    kernel_size: Sequence[int],
    dilation: IntOrTuple = 1,
    offset_scale: float = 1.0,
) -> np.ndarray:
    """DCNv3 (Wang et al. 2023, Eq. 4) at stride 1 with 'same' padding ``pad = d*(k-1)/2``.

    Per sample and position p = (i, j): ``v = in_weight @ x[:, p] + in_bias`` (projection; zero outside the
    image); the branch ``h = gelu(layernorm(dw(x)[:, p]))`` with ``dw`` the depthwise conv (padding pad, dilation
    d), ``off = offset_weight @ h + offset_bias`` read as (G, K, 2) = (dx, dy) per point, ``m = softmax over K of
    (mask_weight @ h + mask_bias)`` read as (G, K). Point t = (u, w) (row-major) of group g samples ``v`` (its
    channels of group g) bilinearly at
    ``(i + offset_scale * ((u - (kh-1)/2) * dh + dy), j + offset_scale * ((w - (kw-1)/2) * dw + dx))``
    (zero outside the image), times m[g, t]; the sum over t is projected: ``y = out_weight @ sum + out_bias``.
    """
    x = np.asarray(x, dtype=np.float64)
    n, c, height, width = x.shape
    kh, kw = kernel_size
    dh, dw_ = _ntuple(dilation, 2, "dilation")
    pads = ((dh * (kh - 1) // 2,) * 2, (dw_ * (kw - 1) // 2,) * 2)
    branch = correlate(x, dw_weight, dw_bias, 1, pads, (dh, dw_), groups=c)  # (N, C, H, W)
    n_points = kh * kw
    outputs = []
    erf = np.vectorize(math.erf)
    for b in range(n):
        v = np.einsum("oc,chw->ohw", np.asarray(in_weight, dtype=np.float64), x[b])
        if in_bias is not None:
            v = v + np.asarray(in_bias).reshape(c, 1, 1)
        offsets = np.zeros((height, width, groups, n_points, 2), dtype=np.float64)
        masks = np.zeros((height, width, groups, n_points), dtype=np.float64)
        for i in range(height):
            for j in range(width):
                f = branch[b, :, i, j]
                f = (f - f.mean()) / np.sqrt(f.var() + norm_eps) * np.asarray(norm_weight) + np.asarray(norm_bias)
                h = 0.5 * f * (1.0 + erf(f / math.sqrt(2.0)))
                offsets[i, j] = (np.asarray(offset_weight) @ h + np.asarray(offset_bias)).reshape(groups, n_points, 2)
                masks[i, j] = _softmax((np.asarray(mask_weight) @ h + np.asarray(mask_bias)).reshape(groups, n_points),
                                       axis=1)
        summed = dcnv3_sampling(v, offsets, masks, (kh, kw), (dh, dw_), offset_scale)
        out = np.einsum("oc,chw->ohw", np.asarray(out_weight, dtype=np.float64), summed)
        if out_bias is not None:
            out = out + np.asarray(out_bias).reshape(-1, 1, 1)
        outputs.append(out)
    y = np.stack(outputs)
    return y


def dcnv3_sampling(
    v: np.ndarray,
    offsets: np.ndarray,
    masks: np.ndarray,
    kernel_size: Sequence[int],
    dilation: IntOrTuple = 1,
    offset_scale: float = 1.0,
) -> np.ndarray:
    """DCNv3's aggregation for one sample: v (C, H, W), offsets (H, W, G, K, 2) as (dx, dy), masks (H, W, G, K) ->
    (C, H, W) with ``out[c, i, j] = sum_t masks[i, j, g, t] * bilinear_sample(v[c], py, px)`` for c in group g,
    point t = (u, w) row-major, ``py = i + offset_scale * ((u - (kh-1)/2) * dh + dy)``,
    ``px = j + offset_scale * ((w - (kw-1)/2) * dw + dx)``."""
    v = np.asarray(v, dtype=np.float64)
    c, height, width = v.shape
    kh, kw = kernel_size
    dh, dw = _ntuple(dilation, 2, "dilation")
    groups, n_points = masks.shape[2], masks.shape[3]
    per_group = c // groups
    summed = np.zeros((c, height, width), dtype=np.float64)
    for i in range(height):
        for j in range(width):
            for g in range(groups):
                channels = slice(g * per_group, (g + 1) * per_group)
                for t in range(n_points):
                    u, w = divmod(t, kw)
                    py = i + offset_scale * ((u - (kh - 1) / 2) * dh + offsets[i, j, g, t, 1])
                    px = j + offset_scale * ((w - (kw - 1) / 2) * dw + offsets[i, j, g, t, 0])
                    summed[channels, i, j] += masks[i, j, g, t] * bilinear_sample(v[channels], py, px)
    return summed
