"""A step picture tells the truth: the kernel's flip is said wherever the tap colours are mirrored, the channels
the drawn output does not read are drawn as not read, and every printed sum adds up."""

from __future__ import annotations

import itertools

import pytest
import torch

import convzoo as cz
from convzoo.viz.draw import column, plt, render
from convzoo.viz.picture import layer_block
from convzoo.viz.reads import analyse


def texts(block) -> list[str]:
    """Every text a block draws."""
    fig = render(block)
    out = [t.get_text() for ax in fig.axes for t in ax.texts]
    plt.close(fig)
    return out


def torch_flips(layer: torch.nn.Module, shape: tuple[int, ...], o: tuple[int, ...]) -> tuple[bool, ...]:
    """Per spatial dim: whether the input cells output ``o`` reads, taken in increasing position, meet the kernel's
    taps in decreasing reading order — from torch's own op: weight w[t] = 1 + Σ_d t_d·10^(D−1−d) (digit d of the
    weight is tap coordinate d), the Jacobian of y[o] names the tap behind each input cell."""
    dims = len(shape) - 1
    k = tuple(layer.weight.shape[2:])
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([1 + sum(t[d] * 10 ** (dims - 1 - d) for d in range(dims))
                                         for t in itertools.product(*map(range, k))],
                                        dtype=layer.weight.dtype).reshape(1, 1, *k))
    x = torch.zeros(1, *shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer.double()(v)[(0, 0, *o)], x)[0, 0]
    taps = {tuple(q): int(round(float(jac[tuple(q)]))) - 1 for q in jac.nonzero().tolist()}
    flips = []
    for d in range(dims):
        digit = lambda t: (t // 10 ** (dims - 1 - d)) % 10  # noqa: E731
        pairs = [(digit(taps[p]), digit(taps[q])) for p, q in itertools.permutations(taps, 2)
                 if p[d] < q[d] and all(p[e] == q[e] for e in range(dims) if e != d)]
        assert pairs, "choose an output that reads two cells along every dim"
        flips.append(all(a > b for a, b in pairs))
        assert flips[-1] or all(a < b for a, b in pairs)
    return tuple(flips)


@pytest.mark.parametrize("family, dim, kernel, stride, padding, size", [
    ("transposed", 2, 3, 1, 0, 2),  # gather form (stride 1): the 2×2 → 4×4 of article 001 §6
    ("transposed", 2, 3, 2, 0, 2),  # scatter (stride 2): 2×2 → 5×5, read through zeros inserted
    ("transposed", 2, 3, 2, 1, 4),
    ("transposed", 2, 4, 2, 1, 3),
    ("transposed", 2, 5, 3, 1, 3),
    ("transposed", 1, 3, 2, 0, 4),
    ("standard", 2, 3, 1, 1, 5),
    ("standard", 2, 3, 2, 1, 6),
    ("convolution", 2, 3, 1, 1, 5),
])
def test_the_kernel_is_said_flipped_exactly_when_its_taps_are_met_mirrored(family, dim, kernel, stride, padding,
                                                                           size):
    extra = {"output_padding": 0} if family == "transposed" else {}
    layer = cz.build(family, 1, 1, kernel, dim=dim, stride=stride, padding=padding, bias=False, **extra)
    shape = (1, *(size,) * dim)
    r = analyse(layer, shape)
    # an output two input cells reach along every dim (a scatter output inside the overlap)
    o = next(o for o in itertools.product(*map(range, r.output_shape[1:]))
             if all(len({q[d] for q in (r.index[(0, *o, 0)] >= 0).nonzero().tolist()}) > 1 for d in range(dim)))
    flips = torch_flips(cz.build(family, 1, 1, kernel, dim=dim, stride=stride, padding=padding, bias=False, **extra),
                        shape, o)
    assert len(set(flips)) == 1  # these kernels flip in every dim or none
    drawn = "\n".join(texts(layer_block(layer, shape, position=o)))
    note = "(applied reversed)" if dim == 1 else "(applied rotated 180°)"
    assert (note in drawn) == flips[0], (flips, drawn)
    assert ("applied" in drawn) == flips[0]


def tap_cells(block, n_taps: int) -> int:
    """Cells a block draws in a kernel tap's colour (pale ones on padding included)."""
    from convzoo.viz.draw import tap_colours

    taps = [tuple(round(v, 4) for v in c[:3]) for c in tap_colours(n_taps)]
    fig = render(block)
    n = sum(tuple(round(float(v), 4) for v in face[:3]) in taps
            for ax in fig.axes for coll in ax.collections for face in coll.get_facecolors())
    plt.close(fig)
    return n


def torch_reads(layer: torch.nn.Module, shape: tuple[int, ...], o: tuple[int, ...]) -> list[int]:
    """Input channels output channel 0 at ``o`` depends on: torch's Jacobian of the layer itself."""
    x = torch.rand(1, *shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: layer.double()(v)[(0, 0, *o)], x)[0]
    return [c for c in range(shape[0]) if bool(jac[c].abs().sum() > 0)]


@pytest.mark.parametrize("family, kwargs", [("grouped", {"groups": 2}), ("depthwise", {}),
                                            ("transposed", {"groups": 2, "stride": 2, "padding": 1}),
                                            ("standard", {})])
def test_an_input_channel_the_output_does_not_read_is_drawn_unread(family, kwargs):
    # grouped conv: output c0 reads c0, c1 only — input planes c2, c3 (another group's) carry no tap colour, no
    # kernel, and say '(not read)'; which channels are read is torch's own Jacobian of the layer
    from convzoo.viz.step import gather_input, kernel_block, scatter_input

    shape = (4, 4, 4)
    layer = cz.build(family, 4, 4, 3, **kwargs)
    r = analyse(layer, shape)
    o = r.centre()
    read = torch_reads(cz.build(family, 4, 4, 3, **kwargs), shape, o)
    assert read == {"grouped": [0, 1], "depthwise": [0], "transposed": [0, 1], "standard": [0, 1, 2, 3]}[family]
    every = [0, 1, 2, 3]
    if r.geometry.kind == "gather":
        planes = lambda cs: gather_input(r, 0, o, True, cs)  # noqa: E731
    else:
        planes = lambda cs: column(scatter_input(r, 0, o, True, cs))  # noqa: E731
    # another filter's window drawn on c2, c3 would add its taps: the count is that of the read planes alone
    assert tap_cells(planes(every), r.n_taps) == tap_cells(planes(read), r.n_taps) > 0
    assert tap_cells(kernel_block(r, 0, True, every), r.n_taps) == r.n_taps * len(read)
    drawn = texts(layer_block(layer, shape, numbers=True))
    for c in every:
        assert (f"c{c} (not read)" in drawn) == (c not in read)
    assert not any(t.startswith("filter ") and " on c" in t for t in drawn)  # no other filter's kernel
    unread = [f"c{c}" for c in every if c not in read]
    assert (f"filter 0 has no weights\non {', '.join(unread)}" in drawn) == bool(unread)
    assert ("input channel output c0 does not read" in drawn) == bool(unread)
