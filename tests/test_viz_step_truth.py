"""A step picture tells the truth: the kernel's flip is said wherever the tap colours are mirrored, the channels
the drawn output does not read are drawn as not read, and every printed sum adds up."""

from __future__ import annotations

import itertools
from decimal import Decimal

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


def added_up(line: str) -> tuple[Decimal, str, Decimal]:
    """(printed output, '=' or '≈', the printed products and bias added) of a sum line's first line."""
    import re

    first = line.split("\n")[0]
    y, sign, rest = re.fullmatch(r"(\S+) ([=≈]) (.*)", first).groups()
    bias = Decimal(0)
    tail = re.search(r" ([+−]) (\S+) \(bias\)$", rest)
    if tail:
        bias = Decimal(tail.group(2)) * (1 if tail.group(1) == "+" else -1)
        rest = rest[:tail.start()]
    total = sum((Decimal(w) * Decimal(v) for w, v in (t.split("·") for t in rest.split(" + "))), bias)
    return Decimal(y), sign, total


CASES = [("standard", 2, 2, {}, (2, 5, 5)), ("grouped", 4, 4, {"groups": 2}, (4, 4, 4)),
         ("depthwise", 3, 3, {}, (3, 5, 5)), ("dilated", 1, 1, {"dilation": 2}, (1, 6, 6)),
         ("standard", 1, 2, {"stride": 2, "padding": 1}, (1, 6, 6)), ("pointwise", 3, 2, {}, (3, 4, 4)),
         ("transposed", 1, 1, {"stride": 2}, (1, 3, 3)), ("transposed", 2, 2, {"stride": 2, "padding": 0}, (2, 2, 2)),
         ("transposed", 1, 1, {"stride": 1, "padding": 0}, (1, 2, 2))]


@pytest.mark.parametrize("family, c_in, c_out, kwargs, shape", CASES)
def test_numbers_mode_draws_whole_numbers_whose_every_sum_adds_up(family, c_in, c_out, kwargs, shape):
    # `viz --numbers` draws the layer on whole-number weights and inputs (as the articles' 0–3 example): the output
    # is F.conv2d / F.conv_transpose2d on them, and every sum line lists products that add up to it exactly
    import torch.nn.functional as F

    from convzoo.viz.numbers import whole_numbers
    from convzoo.viz.step import sum_line

    layer = cz.build(family, c_in, c_out, 1 if family == "pointwise" else 3, **kwargs)
    built = layer.weight.detach().clone()
    model, x = whole_numbers(layer, shape)
    assert torch.equal(layer.weight, built)  # the layer given is left as it was: a copy is filled
    w, b = model.weight.detach(), model.bias.detach()
    for v, (lo, hi) in ((x, (0, 3)), (w, (-1, 2)), (b, (-1, 1))):
        assert torch.equal(v, v.round()) and lo <= float(v.min()) and float(v.max()) <= hi
    if family == "transposed":
        y = F.conv_transpose2d(x[None], w, b, model.stride, model.padding, model.output_padding, model.groups)[0]
    else:
        y = F.conv2d(x[None], w, b, model.stride, model.padding, model.dilation, model.groups)[0]
    r = analyse(model, shape, x=x)
    assert torch.equal(r.y, y)
    for j in range(y.shape[0]):
        for o in itertools.product(*map(range, y.shape[1:])):
            line = sum_line(r, j, o)
            if " sum of " in line:  # too many products to list: the output and bias, exact
                assert line.startswith(f"{int(y[(j, *o)])} = sum of "), line
                continue
            printed, sign, total = added_up(line)
            assert sign == "=" and printed == total == Decimal(int(y[(j, *o)])), line
    drawn = texts(layer_block(model, shape, numbers=True, x=x))
    assert not any(t in ("-0", "-.0") for t in drawn)


def test_a_decimal_sum_line_says_approximately_where_its_printed_numbers_do_not_add_up():
    # random decimals (a layer drawn as a user built it): a line says '=' only where its printed terms add up
    from convzoo.viz.step import sum_line

    for layer, shape in ((cz.build("standard", 1, 1, 3), (1, 5, 5)), (cz.build("transposed", 1, 1, 3, stride=2),
                                                                       (1, 2, 2))):
        r = analyse(layer, shape)
        signs = set()
        for o in itertools.product(*map(range, r.output_shape[1:])):
            printed, sign, total = added_up(sum_line(r, 0, o))
            assert (sign == "=") == (printed == total), sum_line(r, 0, o)
            signs.add(sign)
        assert "≈" in signs


def test_no_number_is_printed_as_minus_zero():
    from convzoo.viz.draw import fit_numbers, fmt

    assert [fmt(v) for v in (-0.004, -0.0004, 0.00049, -2e-7, 0.76)] == ["-0.004", "-0.0004", "0.0005", "0", "0.76"]
    fitted, size = fit_numbers(["-0.004", "0.76", "-0.0004", "-0.29"], 10)
    assert fitted == ["-.004", ".76", "-.0004", "-.29"] and size == 9  # the small ones drawn smaller, alone


def test_numbers_mode_keeps_the_values_a_user_typed(tmp_path):
    # a typed decimal kernel stays (its bias zero): the other values are whole numbers only where none was typed
    from convzoo.viz import LayerSpec, render

    out = tmp_path / "k.svg"
    render("standard", out, LayerSpec("standard", 1, 1, 3, 2, 4), kernel_values="0.5,0,0;0,0,0;0,0,-0.25",
           input_values="1,2,0,3;2,2,1,0;0,1,3,1;2,0,0,1")
    import xml.etree.ElementTree as ET

    drawn = [t.text for t in ET.parse(out).getroot().iter() if t.tag.endswith("text") and t.text]
    start = drawn.index("on c0")
    assert drawn[start + 1:start + 10] == [".5", "0", "0", "0", "0", "0", "0", "0", "-.25"]
    x = torch.tensor([[1, 2, 0, 3], [2, 2, 1, 0], [0, 1, 3, 1], [2, 0, 0, 1]], dtype=torch.float32)
    k = torch.tensor([[0.5, 0, 0], [0, 0, 0], [0, 0, -0.25]])
    y = torch.nn.functional.conv2d(x[None, None], k[None, None], padding=1)[0, 0]
    centre = next(t for t in drawn if "·" in t)
    printed, sign, total = added_up(centre)
    assert sign == "=" and printed == total == Decimal(str(float(y[2, 2])))


@pytest.mark.parametrize("args", [["standard", "--in", "1", "--out", "1", "--size", "5"],
                                  ["transposed", "--in", "1", "--out", "1", "--size", "2", "--stride", "2"],
                                  ["depthwise_separable", "--in", "2", "--out", "2", "--size", "4"]])
def test_viz_numbers_draws_whole_numbers_and_sums_that_add_up(args, tmp_path):
    # the learner's command: every number in a cell is a whole number, every listed sum adds up exactly
    import re
    import xml.etree.ElementTree as ET

    from typer.testing import CliRunner

    from convzoo.cli import app

    out = tmp_path / "n.svg"
    result = CliRunner().invoke(app, ["viz", *args, "--numbers", "-o", str(out), "--no-title"])
    assert result.exit_code == 0, result.output
    drawn = [t.text for t in ET.parse(out).getroot().iter() if t.tag.endswith("text") and t.text]
    numbers = [t for t in drawn if re.fullmatch(r"-?[0-9.]+", t)]
    assert numbers and all(re.fullmatch(r"-?[0-9]+", t) for t in numbers)
    lines = [t for t in drawn if "·" in t and re.match(r"\S+ [=≈] ", t)]
    assert lines
    for line in lines:
        printed, sign, total = added_up(line)
        assert sign == "=" and printed == total, line
