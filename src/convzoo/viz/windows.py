"""A step's channel pairs sorted by what they do, read from the step's taps (never from a family name):

* ``copies``: pairs through which an output channel is its input channel, unchanged (one tap, weight 1, same
  position; partial conv's untouched channels, a ghost module's intrinsic maps);
* ``window_groups``: the other linked pairs grouped by the window they read — each group with its own kernel
  frame, taps numbered from 0 in that frame and its own dilation (MixConv's 3×3 | 5×5 | 7×7 groups, HetConv's
  k×k and 1×1 kernels, selective kernel's 3×3 and dilated 3×3 branches). A plain conv has one group.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from .reads import Reads
from .taps import DTYPE, TapMap
from .window import fit_geometry


@dataclass
class WindowGroup:
    pairs: torch.Tensor  # bool (C_out, C_in): the channel pairs of the group
    reads: Reads  # the step's reads restricted to the group, in the group's own kernel frame

    @property
    def name(self) -> str:
        """'3×3', '3×3 dilation 2', '1×1'."""
        k = "×".join(map(str, self.reads.kernel_shape))
        g = self.reads.geometry
        dil = sorted({abs(b) for b in g.b}) if g is not None else [1]
        if g is None or dil == [1]:
            return k
        return k + f" dilation {dil[0] if len(dil) == 1 else '×'.join(str(abs(b)) for b in g.b)}"

    def first_pair(self, out_channel: int) -> tuple[int, int]:
        """(filter, input channel) to draw: ``out_channel`` when it has pairs in the group, else the group's first
        filter; its first input channel in the group."""
        rows = self.pairs.any(1)
        j = out_channel if bool(rows[out_channel]) else int(rows.float().argmax())
        return j, int(self.pairs[j].float().argmax())


def copies(r: Reads) -> torch.Tensor:
    """Bool (C_out, C_in): output channel j is input channel c passed through (each output cell reads only the
    cell at its own position of channel c, through one tap of weight 1)."""
    c_out, c_in = r.output_shape[0], r.input_shape[0]
    out = torch.zeros(c_out, c_in, dtype=torch.bool)
    if r.output_shape[1:] != r.input_shape[1:] or r.pair_kernel is None:
        return out
    links = r.channel_links() > 0
    n = math.prod(r.input_shape[1:])
    eye = torch.eye(n, dtype=torch.bool)
    for j in range(c_out):
        read = links[j].nonzero().flatten().tolist()
        if len(read) != 1:
            continue
        c = read[0]
        linked = (r.index[(j, *(slice(None),) * (len(r.input_shape) - 1), c)] != -1).reshape(n, n)
        weights = r.pair_kernel[j, c][~torch.isnan(r.pair_kernel[j, c])]
        if torch.equal(linked, eye) and len(weights) == 1 and abs(float(weights[0]) - 1.0) < 1e-5:
            out[j, c] = True
    return out


def _restricted(r: Reads, pairs: torch.Tensor, frame_taps: list[int], shape: tuple[int, ...]) -> Reads:
    """``r`` with only ``pairs`` linked, frame tap frame_taps[t] renamed t in a kernel of ``shape``."""
    d = len(r.input_shape) - 1
    rename = torch.full((r.n_taps + 1,), -1, dtype=torch.int64)
    for t, f in enumerate(frame_taps):
        if f >= 0:
            rename[f] = t
    mask = pairs.reshape(pairs.shape[0], *(1,) * d, pairs.shape[1], *(1,) * d)
    index = torch.where(mask & (r.index >= 0), rename[r.index.clamp(min=0)], torch.full_like(r.index, -1))
    coef = torch.stack([(index == t).to(DTYPE) for t in range(math.prod(shape))])
    tm = TapMap(r.input_shape, r.output_shape, shape, r.tap_map.parameter if r.tap_map else "", coef)
    kernel = None
    if r.pair_kernel is not None:
        kernel = torch.full((*pairs.shape, math.prod(shape)), float("nan"), dtype=DTYPE)
        for t, f in enumerate(frame_taps):
            if f >= 0:
                kernel[..., t] = torch.where(pairs, r.pair_kernel[..., f], kernel[..., t])
    return dataclasses.replace(r, index=index, tap_map=tm, geometry=fit_geometry(tm), pair_kernel=kernel,
                               kernel_shape=shape)


def window_groups(r: Reads) -> list[WindowGroup]:
    """The linked pairs that are not copies, grouped by the set of kernel taps they use (in order of the first
    filter, then channel, using each); one group (with ``r`` itself) when every pair reads the same window.
    Worked out once per ``r`` (a new list each call)."""
    if r._groups is None:
        r._groups = tuple(_window_groups(r))
    return list(r._groups)


def _window_groups(r: Reads) -> list[WindowGroup]:
    linked = (r.channel_links() > 0) & ~copies(r)
    if r.geometry is None or r.geometry.kind != "gather" or not bool(linked.any()):
        return [WindowGroup(linked, r)]
    used = r.pair_taps()
    keys: dict[tuple[int, ...], torch.Tensor] = {}
    for j, c in linked.nonzero().tolist():
        key = tuple(used[j, c].nonzero().flatten().tolist())
        keys.setdefault(key, torch.zeros_like(linked))[j, c] = True
    if len(keys) == 1:
        return [WindowGroup(linked, r)]
    groups = []
    for key, pairs in keys.items():
        coords = np.array(np.unravel_index(np.array(key), r.kernel_shape)).T  # (n, d) frame coordinates
        lo, hi = coords.min(0), coords.max(0)
        step = [max(1, int(np.gcd.reduce(coords[:, k] - lo[k]))) for k in range(coords.shape[1])]
        shape = tuple(int((h - l) // s + 1) for l, h, s in zip(lo, hi, step))
        frame_taps = []
        for u in np.ndindex(*shape):
            f = tuple(int(l + s * v) for l, s, v in zip(lo, step, u))
            flat = int(np.ravel_multi_index(f, r.kernel_shape))
            frame_taps.append(flat if flat in key else -1)
        groups.append(WindowGroup(pairs, _restricted(r, pairs, frame_taps, shape)))
    return groups
