"""The explorer's JSON API against the real modules: numbers from convzoo.cost, dependency sets equal to
viz.connectivity, taps equal to viz.taps, menus that offer exactly the valid values, and the CLI's one-line errors."""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlencode

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import convzoo as cz
from convzoo.layers.form_choice import untimed
from convzoo.viz import serve as S
from convzoo.viz.connectivity import connectivity, prepare
from convzoo.viz.spec import LIMITS, SIZE_CAP
from convzoo.viz.taps import tap_map


@pytest.fixture(scope="module")
def url():
    server = S.make_server(port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert server.server_address[0] == "127.0.0.1"
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, json.loads(response.read())


def error_of(url) -> tuple[int, str]:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=60)
    return info.value.code, json.loads(info.value.read())["error"]


def test_families_and_their_arguments(url):
    status, data = get(url + "/api/families")
    assert status == 200 and [f["name"] for f in data] == [f.name for f in cz.families()]
    by_name = {f["name"]: f for f in data}
    assert "output_padding" in by_name["transposed"]["params"] and "p" in by_name["hetconv"]["params"]
    assert "num_kernels" in by_name["dynamic"]["params"] and "offset_groups" in by_name["deformable"]["params"]
    assert "output_padding" not in by_name["standard"]["params"] and "p" not in by_name["dynamic"]["params"]


def test_layer_numbers_come_from_the_module(url):
    status, data = get(url + "/api/layer?family=hetconv&in_channels=8&out_channels=8&p=4&size=6")
    layer = cz.HetConv2d(8, 8, 3, p=4, padding=1)
    assert status == 200 and data["output_shape"] == [1, 8, 6, 6] and data["maps"] == [[8, 6, 6], [8, 6, 6]]
    assert data["params"] == sum(p.numel() for p in layer.parameters())
    assert data["macs"] == 36 * 8 * (2 * 9 + 6)
    assert "MACs" in data["formula"]


@pytest.mark.parametrize("query,message", [
    ("family=standard&size=1000", "size=1000 is out of range for dim=2: must be between 1 and 24"),
    ("family=standard&in_channels=512", "in_channels=512 is out of range"),
    ("family=grouped&groups=4", "groups=4 must divide"),
    ("family=standard&output_padding=1", "takes no 'output_padding'"),
    ("family=standard&kernel=abc", "must be an integer"),
    ("family=nope", "unknown family"),
    ("family=standard&evil=1", "unknown parameter"),
    ("family=global_depthwise&dim=3", "no dim=3"),
    ("family=standard&in_channels=16&size=22", "exceeds the explorer's budget"),
    ("family=standard&kernel=9&padding=0&size=5", "kernel"),
    ("family=standard&view=stages", "declares no stages"),
])
def test_bad_parameters_are_400_with_a_message(url, query, message):
    code, error = error_of(f"{url}/api/layer?{query}")
    assert code == 400 and message in error


def builds(state) -> bool:
    """Independently of the explorer's meta-device check: the real layer runs on CPU within the budget."""
    try:
        spec = S.layer_spec(state).validate()
        with torch.no_grad():
            y = spec.build()(torch.zeros(1, *spec.input_shape))
    except (ValueError, TypeError, RuntimeError):
        return False
    return y.numel() > 0 and math.prod(spec.input_shape) * y.numel() <= S.BUDGET


def test_every_offered_value_is_valid_and_no_valid_value_is_missing():
    state = {"family": "grouped", "in_channels": 4, "out_channels": 8, "size": 6}
    offered = S.choices(state)
    assert [o["value"] for o in offered["groups"]] == [None, 1, 2, 4]  # the divisors of gcd(4, 8)
    order = S.controls(state)
    for name, options in offered.items():
        if name == "view":  # the view is checked by test_stage_view_from_a_declared_stages
            continue
        values = [o["value"] for o in options]
        earlier = {k: v for k, v in state.items() if k not in order[order.index(name) + 1:]}
        for value in S._candidates(state, name):
            possible = builds(S._with(state, name, value)) or builds(S._with(earlier, name, value))
            assert (value in values) == possible, (name, value)
        for o in options:  # each option's query is a state the API accepts
            assert builds(S.read_query(parse_qs(o["query"])))


def test_the_budget_is_the_size_limit_the_menu_shows():
    offered = S.choices({"family": "standard", "in_channels": 16, "out_channels": 16})
    sizes = [o["value"] for o in offered["size"]]
    largest = max(s for s in range(1, SIZE_CAP[2] + 1) if (16 * s * s) ** 2 <= S.BUDGET)
    assert sizes == list(range(1, largest + 1)) and largest == 11
    one = [o["value"] for o in S.choices({"family": "standard", "in_channels": 1, "out_channels": 1})["size"]]
    assert one == list(range(1, SIZE_CAP[2] + 1))  # 1 channel: every size up to the cap (24)
    assert [o["value"] for o in S.choices({"family": "standard", "dim": 1})["size"]][-1] == SIZE_CAP[1]
    assert LIMITS["in_channels"] == (1, 16)


def test_inert_kernel_is_not_offered_and_family_change_starts_from_defaults():
    assert "kernel" not in S.choices({"family": "pointwise"})
    assert "kernel" not in S.choices({"family": "global_depthwise"})
    option = next(o for o in S.choices({"family": "dilated", "dilation": 3})["kernel"] if o["value"] == 5)
    assert "dilation=3" in option["query"]  # other values kept within a family


def test_a_hand_edited_url_is_repaired_with_notes(url):
    status, data = get(url + "/api/state?" + urlencode(
        {"family": "grouped", "in_channels": 4, "groups": 3, "size": 99, "bogus": 1, "kernel": "x"}))
    assert status == 200 and data["state"] == {"family": "grouped", "in_channels": 4}
    notes = " ".join(data["notes"])
    for part in ("groups=3 dropped", "size=99 dropped", "bogus=1 is not an argument", "kernel='x' must be an integer"):
        assert part in notes
    assert get(url + "/api/state?family=nope")[1]["state"] == {"family": "standard"}


def decode_all(link, n_out, spatial):
    return [S.decode_deps(link["deps"], n, spatial) for n in range(n_out)]


@pytest.mark.parametrize("state,shape", [
    ({"family": "dilated", "in_channels": 2, "size": 7, "dilation": 2}, (2, 7, 7)),
    ({"family": "transposed", "in_channels": 2, "out_channels": 1, "size": 4}, (2, 4, 4)),
    ({"family": "hetconv", "in_channels": 4, "out_channels": 4, "size": 5}, (4, 5, 5)),
    ({"family": "grouped", "dim": 1, "in_channels": 4, "out_channels": 4, "size": 9}, (4, 9)),
    ({"family": "acnet", "in_channels": 2, "out_channels": 2, "size": 5}, (2, 5, 5)),  # branches are read, not held
    ({"family": "repvgg", "in_channels": 2, "out_channels": 2, "size": 5}, (2, 5, 5)),
])
def test_dependency_sets_equal_connectivity(url, state, shape):
    status, data = get(url + "/api/links?" + urlencode(state))
    conn = connectivity(S.layer_spec(state).build(), shape)
    n_out = math.prod(conn.output_shape)
    expected = [torch.nonzero(row).reshape(-1).tolist() for row in conn.mask.reshape(n_out, -1)]
    assert status == 200 and decode_all(data["links"][0], n_out, math.prod(shape[1:])) == expected


@pytest.mark.parametrize("state,shape,out", [
    ({"family": "standard", "in_channels": 2, "out_channels": 2, "size": 5, "padding": 0}, (2, 5, 5), 4),
    ({"family": "transposed", "in_channels": 1, "out_channels": 1, "size": 3}, (1, 3, 3), 14),
    ({"family": "convolution", "in_channels": 1, "out_channels": 1, "size": 4}, (1, 4, 4), 0),
    ({"family": "deformable_v2", "in_channels": 1, "out_channels": 1, "size": 4}, (1, 4, 4), 5),
])
def test_taps_of_one_output_equal_viz_taps(state, shape, out):
    data = S.taps_json(state, 0, out)
    model = S.live(state).model  # the explorer's copy (its offsets seeded), at the explorer's input
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1)) + 0.25
    tm = tap_map(model, shape, x=x)
    index, weight = (t.reshape(-1, math.prod(shape))[out] for t in (tm.index, tm.weight))
    expected = [[i, int(index[i]), round(float(weight[i]), 4)] for i in torch.nonzero(index >= 0).reshape(-1).tolist()]
    assert [r[:3] for r in data["reads"]] == expected and data["kernel_shape"] == list(tm.kernel_shape)


@pytest.mark.parametrize("state,shape,inp", [
    ({"family": "transposed", "in_channels": 1, "out_channels": 1, "size": 3}, (1, 3, 3), 4),  # the k×k stamp
    ({"family": "dilated", "in_channels": 1, "out_channels": 2, "size": 5}, (1, 5, 5), 12),
])
def test_taps_of_the_outputs_reading_one_input_equal_viz_taps(state, shape, inp):
    data = S.column_json(state, 0, inp)
    model = prepare(S.layer_spec(state).build(), shape)
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(1)) + 0.25
    tm = tap_map(model, shape, x=x)
    index, weight = (t.reshape(-1, math.prod(shape))[:, inp] for t in (tm.index, tm.weight))
    expected = [[o, int(index[o]), round(float(weight[o]), 4)] for o in torch.nonzero(index >= 0).reshape(-1).tolist()]
    assert [r[:3] for r in data["reads"]] == expected and len(expected) >= 9


def test_padding_cells_read_by_a_window():
    corner = S.taps_json({"family": "standard", "in_channels": 1, "out_channels": 1, "size": 5}, 0, 0)
    assert sorted((p["tap"], tuple(p["pos"])) for p in corner["padded"]) == [
        (0, (-1, -1)), (1, (-1, 0)), (2, (-1, 1)), (3, (0, -1)), (6, (1, -1))]
    flipped = S.taps_json({"family": "convolution", "in_channels": 1, "out_channels": 1, "size": 5}, 0, 0)
    assert sorted((p["tap"], tuple(p["pos"])) for p in flipped["padded"]) == [
        (2, (1, -1)), (5, (0, -1)), (6, (-1, 1)), (7, (-1, 0)), (8, (-1, -1))]  # the kernel turned 180°
    assert S.taps_json({"family": "transposed", "in_channels": 1, "out_channels": 1, "size": 3}, 0, 0)["padded"] is None


def test_stage_view_from_the_layers_stages(url):
    state = "family=depthwise_separable&in_channels=2&out_channels=3&size=5&view=stages"
    status, data = get(f"{url}/api/layer?{state}")
    assert status == 200 and data["maps"] == [[2, 5, 5], [2, 5, 5], [3, 5, 5]]
    assert len(data["links"]) == 2 and [o["value"] for o in data["choices"]["view"]] == ["layer", "stages"]
    links = get(f"{url}/api/links?{state}")[1]["links"]
    assert S.decode_deps(links[0]["deps"], 12, 25) == [6, 7, 8, 11, 12, 13, 16, 17, 18]  # c0 (2, 2): 3×3, c0 only
    assert S.decode_deps(links[1]["deps"], 2 * 25 + 12, 25) == [12, 37]  # pointwise: one pixel, every channel
    assert [link["kernel_shape"] for link in links] == [[3, 3], [1, 1]]
    assert get(f"{url}/api/taps?{state}&link=1&out=62")[1]["used"] == [0]


def test_side_stage_is_drawn_apart_and_held_fixed_in_the_layer_view(url):
    """Dynamic conv: the attention branch reads the whole input; the conv reads a k×k window with it fixed."""
    stages = get(f"{url}/api/links?family=dynamic&in_channels=2&out_channels=2&size=5&view=stages")[1]["links"]
    (side,) = stages[0]["sides"]
    assert side["shape"] == [4] and abs(sum(side["values"]) - 1) < 1e-3  # softmax over K = 4 kernels
    layer = get(f"{url}/api/links?family=dynamic&in_channels=2&out_channels=2&size=5")[1]["links"][0]
    assert [(s["name"], s["held"]) for s in layer["sides"]] == [(side["name"], True)]
    assert S.decode_deps(layer["deps"], 12, 25) == [c * 25 + s for c in (0, 1) for s in (6, 7, 8, 11, 12, 13, 16,
                                                                                          17, 18)]


# --- what the explorer explains: checked against the layer's own weights and independent constructions ----------


def test_one_palette_the_static_pictures_and_the_page_share(url):
    from matplotlib.colors import to_hex

    from convzoo.viz import draw

    layer = get(url + "/api/layer?family=standard")[1]
    assert layer["palette"]["input"] == to_hex(draw.INPUT) and layer["palette"]["output"] == to_hex(draw.OUTPUT)
    assert layer["palette"]["padding"] == to_hex(draw.PADDING) and layer["palette"]["zero"] == to_hex(draw.ZERO)
    links = get(url + "/api/links?family=standard")[1]["links"]
    assert links[0]["tap_colours"] == [to_hex(c) for c in draw.tap_colours(9)]
    pages = {}
    for name in ("explorer.js", "explorer.css"):  # no colour of a cell or tap written in the page itself
        with urllib.request.urlopen(f"{url}/{name}", timeout=30) as response:
            pages[name] = response.read().decode()
        assert "hsl(" not in pages[name] and "rgb(" not in pages[name], name
    for rule in ("rect.cell.in", "rect.cell.out", "rect.pad", "rect.zero"):
        body = pages["explorer.css"][pages["explorer.css"].index(rule):].split("}")[0]
        assert "var(--" in body and "#" not in body, rule
    assert re.findall(r"#[0-9a-fA-F]{3,6}\b", pages["explorer.js"]) == []


def test_transposed_direct_form_has_the_inserted_zeros_and_padding():
    """ConvTranspose2d(k=3, stride 2, padding 1, output_padding 1) on 3×3 = a plain conv with the kernel flipped on
    the input with 1 zero between cells and k − 1 − p = 1 cell of padding before, 1 + output_padding = 2 after."""
    state = {"family": "transposed", "in_channels": 2, "out_channels": 1, "size": 3}
    link = S.links_json(state)["links"][0]
    assert link["direct"]["size"] == [8, 8] and link["direct"]["zeros"] == [1, 1]
    expected = np.full((8, 8), -2)
    expected[1:6, 1:6] = -1
    for i in range(3):
        for j in range(3):
            expected[1 + 2 * i, 1 + 2 * j] = 3 * i + j
    assert link["direct"]["cells"] == expected.reshape(-1).tolist()
    lv = S.live(state)
    x = lv.inputs[0][0].numpy()
    stretched = np.zeros((2, 8, 8))
    stretched[:, 1:6:2, 1:6:2] = x
    w = lv.model.weight.detach().numpy()[:, 0, ::-1, ::-1]  # (C_in, 3, 3), flipped
    y = lv.output[0, 0].numpy()
    for out in (0, 7, 14, 35):
        data = S.taps_json(state, 0, out)
        i, j = divmod(out, 6)
        flipped = [(2 - u) * 3 + (2 - v) for u in range(3) for v in range(3)]
        assert data["direct"] == [[t, (i + u) * 8 + j + v] for (u, v), t in zip(np.ndindex(3, 3), flipped)]
        direct = float((stretched[:, i:i + 3, j:j + 3] * w).sum() + lv.model.bias[0])
        assert abs(direct - y[i, j]) < 1e-5 and abs(data["y"] - y[i, j]) < 1e-4
        assert abs(data["kernel_sum"] + data["bias"] - data["y"]) < 2e-4 and abs(data["other"]) < 1e-4


def test_window_values_and_weights_are_the_layers():
    state = {"family": "standard", "in_channels": 2, "out_channels": 3, "size": 5}
    lv = S.live(state)
    x = np.pad(lv.inputs[0][0].numpy(), ((0, 0), (1, 1), (1, 1)))
    w, b = lv.model.weight.detach().numpy(), lv.model.bias.detach().numpy()
    for out in (0, 12, 2 * 25 + 24):
        j, i, q = np.unravel_index(out, (3, 5, 5))
        data = S.taps_json(state, 0, out)
        assert [row["c"] for row in data["window"]] == [0, 1]
        for row in data["window"]:
            c = row["c"]
            assert np.allclose(row["w"], w[j, c].reshape(-1), atol=1e-4)
            assert np.allclose(row["x"], x[c, i:i + 3, q:q + 3].reshape(-1), atol=1e-4)  # 0 on the padding
            assert row["zero"] == (x[c, i:i + 3, q:q + 3] == 0).reshape(-1).tolist()
        assert abs(data["bias"] - b[j]) < 1e-4 and abs(data["y"] - float(lv.output.reshape(-1)[out])) < 1e-4
        assert abs(data["kernel_sum"] - float((w[j] * x[:, i:i + 3, q:q + 3]).sum())) < 1e-4
    strip = S.links_json(state)["links"][0]["filters"]  # the kernel of every filter
    assert strip["kind"] == "taps" and np.allclose(
        [[e["w"] for e in f] for f in strip["per_filter"]], w.reshape(3, 2, 9), atol=1e-4)


@pytest.mark.parametrize("size, padding", [(2, 1), (1, 1), (3, 2)])
def test_every_weight_is_shown_where_the_centre_window_reaches_the_padding(size, padding):
    # a 2×2 map with padding 1: output (1, 1), the centre, reads its last row and column of taps from padding; the
    # strip and the hovered window still give those weights (they were empty, so the explorer counted 8 products
    # where the static picture counted 18)
    state = {"family": "standard", "in_channels": 2, "out_channels": 3, "size": size, "padding": padding}
    lv = S.live(state)
    w = lv.model.weight.detach().numpy()
    out_size = size + 2 * padding - 2
    used = np.zeros((3, 3), bool)  # taps that read the input at some output: by hand, from the padded input
    for i in range(out_size):
        for q in range(out_size):
            used |= np.pad(np.ones((size, size)), padding)[i:i + 3, q:q + 3] > 0
    strip = np.array([[[np.nan if v is None else v for v in e["w"]] for e in f]
                      for f in S.links_json(state)["links"][0]["filters"]["per_filter"]], dtype=float)
    assert np.allclose(strip[:, :, used.reshape(-1)], w.reshape(3, 2, 9)[:, :, used.reshape(-1)], atol=1e-4)
    last = 3 * out_size * out_size - 1  # channel 2's last output: its window on the bottom-right padding
    for row in S.taps_json(state, 0, last)["window"]:
        shown = np.array([np.nan if v is None else v for v in row["w"]], dtype=float)
        assert np.allclose(shown[used.reshape(-1)], w[2, row["c"]].reshape(-1)[used.reshape(-1)], atol=1e-4)
        i = q = out_size - 1
        assert row["zero"] == (np.pad(np.ones((size, size)), padding)[i:i + 3, q:q + 3] == 0).reshape(-1).tolist()


def test_dynamic_shows_its_bank_its_attention_and_the_kernel_it_applies():
    state = {"family": "dynamic", "in_channels": 2, "out_channels": 2, "size": 5}
    links = S.links_json(state)["links"]
    lv = S.live(state)
    bank = lv.model.kernel_bank().detach().numpy()  # (K, C_out, C_in, 3, 3)
    assert np.allclose(np.array(links[0]["bank"]["values"]).reshape(bank.shape), bank, atol=1e-4)
    (side,) = links[0]["sides"]
    attention = lv.model.attention(lv.inputs[0], lv.model.temperature)[0].detach().numpy()
    assert side["held"] and np.allclose(side["values"], attention, atol=1e-4)
    assert max(side["values"]) - min(side["values"]) >= 0.1  # visibly chooses (temperature 1)
    data = S.taps_json(state, 0, 25 + 12)  # filter 1 at the centre
    applied = np.einsum("k,kcij->cij", attention, bank[:, 1]).reshape(2, 9)
    assert np.allclose([row["w"] for row in data["window"]], applied, atol=1e-4)
    other = S.links_json({**state, "sample": 3})["links"][0]["sides"][0]["values"]
    assert max(abs(a - b) for a, b in zip(other, side["values"])) > 0.01  # another input sample, another attention


def bilinear_reads(py: float, px: float, size: int) -> set[tuple[int, int]]:
    """The cells a bilinear sample at (py, px) reads with a non-zero weight (torchvision's rule: none outside)."""
    if not (-1 < py < size and -1 < px < size):
        return set()
    y0, x0 = math.floor(py), math.floor(px)
    return {(y, x) for y in (y0, y0 + 1) for x in (x0, x0 + 1) if 0 <= y < size and 0 <= x < size
            and (1 - abs(py - y)) * (1 - abs(px - x)) > 1e-6}


def test_deformable_reads_and_sampling_points_follow_its_offsets(url):
    state = {"family": "deformable", "in_channels": 2, "out_channels": 2, "size": 5}
    lv = S.live(state)
    with torch.no_grad():
        offsets = lv.model.offset_conv(lv.inputs[0])[0].numpy()  # (2·9, 5, 5): dy, dx per tap
    links = get(url + "/api/links?" + urlencode(state))[1]["links"]
    for out in (0, 12, 24):
        oy, ox = divmod(out, 5)
        expected = set()
        points = {}
        for t, (ki, kj) in enumerate(np.ndindex(3, 3)):
            py, px = oy - 1 + ki + offsets[2 * t, oy, ox], ox - 1 + kj + offsets[2 * t + 1, oy, ox]
            expected |= bilinear_reads(py, px, 5)
            points[t] = (py, px)
        reads = S.decode_deps(links[0]["deps"], out, 25)
        assert reads == sorted(c * 25 + y * 5 + x for c in (0, 1) for y, x in expected)
        data = S.taps_json(state, 0, out)
        for c, t, fy, fx, strength, *grid in data["points"]:
            py, px = points[t]
            if 0 <= py <= 4 and 0 <= px <= 4:  # all four neighbours inside: their weighted mean is the point
                assert abs(fy - py) < 2e-3 and abs(fx - px) < 2e-3 and abs(strength - 1) < 1e-3
            if grid:
                assert grid == [oy - 1 + t // 3, ox - 1 + t % 3]  # its regular grid point, offsets at zero


def test_deformable_points_past_the_edge_are_where_its_offsets_put_them(url):
    # a tap sampling past the input's edge was sent as the mean of the cells it reads inside the map (pulled onto
    # the edge cell), and a tap reading only padding was not sent. Hand count from the layer's own offsets and
    # masks: tap t of output o samples o − 1 + (t // 3, t % 3) + Δp with strength its mask, from its grid point
    # o − 1 + (t // 3, t % 3) (in the padding at a border); the drawn padding ring holds every cell it reads
    state = {"family": "deformable_v2", "in_channels": 1, "out_channels": 1, "size": 5}
    lv = S.live(state)
    with torch.no_grad(), untimed():  # the eager forms: timing them (numba compiles) costs seconds
        offset, mask = lv.model.offsets_and_mask(lv.inputs[0])
    past, zeros_only, sampled = 0, 0, []
    for out in (0, 4, 20, 24):  # the corners
        oy, ox = divmod(out, 5)
        points = {p[1]: p for p in get(url + f"/api/taps?{urlencode(state)}&link=0&out={out}")[1]["points"]}
        assert sorted(points) == list(range(9)), (out, sorted(points))
        for t, (c, _, fy, fx, strength, *grid) in points.items():
            py, px = oy - 1 + t // 3 + float(offset[0, 2 * t, oy, ox]), ox - 1 + t % 3 + float(offset[0, 2 * t + 1,
                                                                                                      oy, ox])
            assert abs(fy - py) < 2e-3 and abs(fx - px) < 2e-3, (out, t, (fy, fx), (py, px))
            assert abs(strength - float(mask[0, t, oy, ox])) < 1e-3, (out, t, strength)
            assert grid == [oy - 1 + t // 3, ox - 1 + t % 3], (out, t, grid)
            past += not (0 <= py <= 4 and 0 <= px <= 4)
            zeros_only += not bilinear_reads(py, px, 5)
            sampled.append((py, px))
    assert past >= 10 and zeros_only >= 4, (past, zeros_only)
    link = get(url + "/api/links?" + urlencode(state))[1]["links"][0]
    (top, bottom), (left, right) = link["pad"]
    assert link["layer_pad"] == [[1, 1], [1, 1]] and max(top, bottom, left, right) > 1, link  # the ring reaches past
    for py, px in sampled:  # the cells of its bilinear neighbours lie on the drawn padding
        assert -top <= math.floor(py) and math.ceil(py) <= 4 + bottom, (py, top, bottom)
        assert -left <= math.floor(px) and math.ceil(px) <= 4 + right, (px, left, right)


def test_where_the_zero_extension_does_not_apply_the_points_stay_the_in_map_means(monkeypatch):
    # a layer the extension would change (reflect padding, a side value it cannot hold) gets None from it: its
    # points stay the coefficient-weighted means of the cells it reads inside the map, and no ring is drawn for them
    monkeypatch.setattr(S, "extended_means", lambda *args: None)
    monkeypatch.setattr(S, "extended_reach", lambda *args: None)
    state = {"family": "deformable_v2", "in_channels": 1, "out_channels": 1, "size": 5, "sample": 7}  # its own
    try:
        assert S.links_json(state)["links"][0]["pad"] is None
        coef = S._step_rows(S.live(state), 0, [0]).coef[0].double()  # output (0, 0, 0): (T, 25)
        rows, cols = np.divmod(np.arange(25), 5)
        points = {p[1]: p[2:5] for p in S.taps_json(state, 0, 0)["points"]}
        assert sorted(points) == [t for t in range(9) if coef[t].sum() > 1e-6] != list(range(9))
        for t, (y, x, strength) in points.items():
            total = float(coef[t].sum())
            want = [float(coef[t] @ torch.tensor(rows, dtype=torch.float64)) / total,
                    float(coef[t] @ torch.tensor(cols, dtype=torch.float64)) / total, total]
            assert np.allclose([y, x, strength], want, atol=2e-3), (t, (y, x, strength), want)
    finally:
        S._links_json.cache_clear()  # no answer computed without the extension outlives the test
        S._taps_json.cache_clear()


def test_mixconv_hovered_output_shows_its_groups_kernel():
    state = {"family": "mixconv", "in_channels": 6, "out_channels": 6, "size": 9}
    lv = S.live(state)
    for channel, (group, k) in enumerate([(0, 3), (0, 3), (1, 5), (1, 5), (2, 7), (2, 7)]):
        data = S.taps_json(state, 0, channel * 81 + 40)  # the centre
        (crop,) = data["crop"]
        weight = lv.model.convs[group].weight.detach().numpy()[channel % 2, 0]
        assert crop["c"] == channel and crop["shape"] == [k, k] and np.allclose(crop["w"], weight.reshape(-1),
                                                                                 atol=1e-4)
    strip = S.links_json(state)["links"][0]["filters"]
    assert [[e["shape"] for e in f] for f in strip["per_filter"]] == [[[k, k]] for k in (3, 3, 5, 5, 7, 7)]


def test_hetconv_1x1_kernels_are_drawn_beside_its_kxk_ones():
    """Filter j: k×k kernels on channels (c − j) mod p = 0 (the strip's taps), 1×1 kernels on the others
    ("besides": read not through the kernel parameter), and y = Σ k×k·x + Σ 1×1·x + bias."""
    state = {"family": "hetconv", "in_channels": 4, "out_channels": 4, "size": 5, "p": 2}
    lv = S.live(state)
    kxk, one = lv.model.weight_kxk.detach().numpy(), lv.model.weight_1x1.detach().numpy()  # (4, 2, 3, 3), (4, 2)
    strip = S.links_json(state)["links"][0]["filters"]
    for j in range(4):
        big = [c for c in range(4) if (c - j) % 2 == 0]
        small = [c for c in range(4) if (c - j) % 2]
        for c in range(4):
            w = strip["per_filter"][j][c]["w"]
            if c in big:
                assert np.allclose(w, kxk[j, big.index(c)].reshape(-1), atol=1e-4)
            else:
                assert w == [None] * 9
        assert [(b["c"], b["shape"]) for b in strip["besides"][j]] == [(c, [1, 1]) for c in small]
        assert np.allclose([b["w"][0] for b in strip["besides"][j]], one[j], atol=1e-4)
    x = lv.inputs[0][0].numpy()
    data = S.taps_json(state, 0, 25 + 12)  # filter 1 at the centre (2, 2)
    assert [row["c"] for row in data["window"]] == [1, 3] and [b["c"] for b in data["besides"]] == [0, 2]
    assert np.allclose([b["x"][0] for b in data["besides"]], x[[0, 2], 2, 2], atol=1e-4)
    assert abs(data["other"] - float(one[1] @ x[[0, 2], 2, 2])) < 1e-3
    assert abs(data["kernel_sum"] + data["other"] + data["bias"] - data["y"]) < 1e-3


def test_involution_hovered_output_shows_the_kernel_generated_there():
    state = {"family": "involution", "in_channels": 4, "out_channels": 4, "size": 6, "groups": 2}
    lv = S.live(state)
    with torch.no_grad():
        generated = lv.model.generator(lv.inputs[0])[0].numpy().reshape(2, 9, 6, 6)  # (G, T, H, W)
    shown = {}
    for c, (i, j) in [(0, (2, 2)), (1, (2, 2)), (3, (2, 2)), (0, (3, 4))]:
        (crop,) = S.taps_json(state, 0, c * 36 + i * 6 + j)["crop"]
        assert crop["c"] == c and crop["shape"] == [3, 3]
        assert np.allclose(crop["w"], generated[c // 2, :, i, j], atol=1e-4)
        shown[c, i, j] = crop["w"]
    assert shown[0, 2, 2] == shown[1, 2, 2] != shown[3, 2, 2]  # one kernel per group: channels 0, 1 share it
    assert shown[0, 2, 2] != shown[0, 3, 4]  # and another at another position


def test_subpixel_hovered_output_shows_the_conv_filter_of_its_phase():
    """y[j, 2i + a, 2k + b] = (W[4j + 2a + b] ⋆ x)[i, k] + bias: the kernel shown changes with the phase (a, b)."""
    state = {"family": "subpixel", "in_channels": 2, "out_channels": 2, "size": 4, "view": "layer"}
    lv = S.live(state)
    w = lv.model.conv.weight.detach().numpy()  # (2·4, 2, 3, 3)
    for j, a, b in [(1, 1, 0), (1, 1, 1), (0, 0, 1)]:
        out = j * 64 + (2 * 1 + a) * 8 + (2 * 2 + b)  # low-resolution position (1, 2): every tap inside
        crops = S.taps_json(state, 0, out)["crop"]
        assert [c["c"] for c in crops] == [0, 1]
        assert np.allclose([c["w"] for c in crops], w[4 * j + 2 * a + b].reshape(2, 9), atol=1e-4)


def test_dcnv3_sampling_points_and_their_grid_follow_its_offsets():
    """The sampling stage's points are the layer's own locations (``locations``: centre + grid + offsets, in padded
    coordinates), strength its softmax mask, and each arrow starts at the point's regular grid cell."""
    state = {"family": "dcnv3", "in_channels": 4, "out_channels": 4, "size": 6}
    lv = S.live(state)
    assert [s.name.split(":")[0] for s in lv.steps] == ["input proj", "sampling", "output proj"]
    with torch.no_grad():
        where, masks = lv.model.locations(lv.model.branch(lv.inputs[0]))  # (1, G, H, W, K, 2) as (x, y)
    groups, (pad, _) = lv.model.groups, lv.model.padding_pairs[0]
    for out in (14, 36 + 21, 3 * 36 + 28):
        c_out, oy, ox = np.unravel_index(out, (4, 6, 6))
        points = S.taps_json(state, 1, out)["points"]
        assert sorted((p[0], p[1]) for p in points) == [(c_out, t) for t in range(9)]  # its channel, 9 points
        moved = 0
        for c, t, fy, fx, strength, *grid in points:
            g = c // (4 // groups)
            py, px = float(where[0, g, oy, ox, t, 1]) - pad, float(where[0, g, oy, ox, t, 0]) - pad
            if 0 <= py <= 5 and 0 <= px <= 5:
                assert abs(fy - py) < 2e-3 and abs(fx - px) < 2e-3
                assert abs(strength - float(masks[0, g, oy, ox, t])) < 1e-3
            assert grid == [oy - 1 + t // 3, ox - 1 + t % 3]
            moved += abs(fy - grid[0]) + abs(fx - grid[1]) > 0.1
        assert moved >= 5  # the offsets move the points off the grid: arrows to draw


def test_explorer_defaults_show_each_mechanism():
    """6 channels by default: grouped is not depthwise and the shuffle is not the identity; composites without a
    kernel of their own open stage by stage."""
    assert S.view_of({"family": "standard"}) == "layer" and S.view_of({"family": "depthwise_separable"}) == "stages"
    assert S.view_of({"family": "mixconv"}) == "layer" and S.view_of({"family": "dcnv3"}) == "stages"
    links = S.links_json({"family": "shuffled_grouped"})["links"]
    shuffle = [S.decode_deps(links[1]["deps"], c * 64, 64)[0] // 64 for c in range(6)]
    assert shuffle == [0, 3, 1, 4, 2, 5]  # groups = 2: (g, c/g) transposed
    grouped = S.links_json({"family": "grouped"})["links"][0]
    read = [sorted({i // 64 for i in S.decode_deps(grouped["deps"], c * 64 + 27, 64)}) for c in range(6)]
    assert read == [[0, 1, 2]] * 3 + [[3, 4, 5]] * 3
    assert "view=stages" not in S.query_of({"family": "depthwise_separable", "view": "stages"})
    assert "view=layer" in S.query_of({"family": "depthwise_separable", "view": "layer"})


def test_sample_changes_values_not_validity(url):
    a = get(url + "/api/links?family=standard&in_channels=1&out_channels=1&size=4")[1]["values"]
    b = get(url + "/api/links?family=standard&in_channels=1&out_channels=1&size=4&sample=2")[1]["values"]
    assert len(a[0]) == 16 and a[0] != b[0] and min(b[0]) > 0
    assert [o["value"] for o in S.choices({"family": "standard"})["sample"]] == list(range(S.SAMPLES))
    assert "sample=9 is out of range" in error_of(url + "/api/layer?family=standard&sample=9")[1]


def test_static_page_is_served_and_fetches_nothing_elsewhere(url):
    for name in S.STATIC:
        with urllib.request.urlopen(f"{url}/{name}", timeout=30) as response:
            text = response.read().decode()
        outside = [u for u in re.findall(r"https?://[^\s'\"<>)]+", text) if u != "http://www.w3.org/2000/svg"]
        assert outside == [], name
    with urllib.request.urlopen(url + "/", timeout=30) as response:
        assert b'src="explorer.js"' in response.read()
    assert error_of(url + "/../pyproject.toml")[0] == 404


def test_taps_arguments_are_checked(url):
    assert error_of(url + "/api/taps?family=standard&link=0&out=9999")[0] == 400
    assert "link=3 is out of range" in error_of(url + "/api/taps?family=standard&link=3&out=0")[1]
    assert "must be an integer" in error_of(url + "/api/taps?family=standard&link=0&out=x")[1]


# --- the CLI: one line, exit 2, no traceback ----------------------------------------------------------------------

runner = CliRunner()


def one_line_error(result, *parts):
    text = result.output  # stdout and stderr together
    assert result.exit_code == 2 and "Traceback" not in text, text
    line = [t for t in text.splitlines() if t.strip()]
    assert len(line) == 1 and all(p in line[0] for p in parts), text


@pytest.fixture()
def app():
    from convzoo.cli import app

    return app


@pytest.mark.parametrize("port", ["0", "70000", "-5"])
def test_serve_port_out_of_range(app, port):
    one_line_error(runner.invoke(app, ["serve", "--port", port]), f"--port {port}", "between 1 and 65535")


def test_serve_busy_port(app):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        one_line_error(runner.invoke(app, ["serve", "--port", str(port)]), f"port {port}", "in use")


@pytest.mark.parametrize("content,message", [("{not json", "is not valid JSON"), ('{"a": 1}', "must be a list"),
                                             ('[{"family": "standard"}]', "macs")])
def test_report_bad_rows(app, tmp_path, content, message):
    rows = tmp_path / "rows.json"
    rows.write_text(content)
    one_line_error(runner.invoke(app, ["report", "--rows", str(rows), "-o", str(tmp_path / "r.html")]), message)


def test_report_bad_output_paths(app, tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text("[]")
    one_line_error(runner.invoke(app, ["report", "--rows", str(rows), "-o", str(tmp_path / "missing" / "r.html")]),
                   "missing")
    one_line_error(runner.invoke(app, ["report", "--rows", str(rows), "-o", str(tmp_path)]), "is a directory")
    one_line_error(runner.invoke(app, ["report", "--rows", str(tmp_path / "nope.json")]), "nope.json")


def test_the_guide_states_the_limits_the_code_enforces():
    from pathlib import Path

    page = Path(__file__).parent.parent / "docs" / "guide" / "pictures-and-explorer.md"
    readme = " ".join(page.read_text().split())
    explorer = readme[readme.index("**The explorer.**"):readme.index("**The report.**")]
    for name, (lo, hi) in LIMITS.items():
        if name not in ("in_channels", "out_channels", "dim", "size"):
            assert f"{name} {lo}–{hi}" in explorer, name
    assert f"in/out channels {LIMITS['in_channels'][0]}–{LIMITS['in_channels'][1]}" in explorer
    assert LIMITS["in_channels"] == LIMITS["out_channels"]
    for dim, cap in SIZE_CAP.items():
        assert f"1–{cap} in {dim}-D" in explorer or f"size 1–{cap} in {dim}-D" in explorer
    assert f"2²² = {S.BUDGET:,}" in explorer and S.BUDGET == 2**22
    for channels, size in ((16, 11), (4, 22), (1, 24)):  # the examples given, against the menu
        sizes = [o["value"] for o in S.choices({"family": "standard", "in_channels": channels})["size"]]
        assert f"{channels} → {channels} channels up to {size}×{size}" in explorer or \
            f"{channels} → {channels} up to {size}×{size}" in explorer
        assert sizes[-1] == size


def test_report_settings_are_the_ones_used(tmp_path):
    from convzoo.viz.report import build_report

    timed = build_report(tmp_path / "timed.html", settings={"batch": 1, "in_channels": 4, "out_channels": 6,
                                                             "size": 5, "repeats": 2},
                         names=["pointwise"], figures=[]).read_text()
    assert "Timed here: batch 1, C_in 4 → C_out 6, 5×5 input, k=3, float32" in timed and "2 rounds per family" in timed
    rows = [{"family": "pointwise", "params": 28, "macs": 600, "forward_ms": 0.01}]
    given = build_report(tmp_path / "given.html", rows=rows, rows_source="rows.json", names=["pointwise"],
                         figures=[]).read_text()
    assert "Rows read from rows.json (measured elsewhere); the file does not record their layer shape" in given
    assert "64" not in given.split("Pictures and per-family cost")[0]  # no default shape claimed for given rows
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        build_report(tmp_path / "x.html", rows=rows, names=["nope"])
    with pytest.raises(ValueError, match="no such file"):
        build_report(tmp_path / "x.html", rows=rows, names=["pointwise"], sweep=tmp_path / "missing.json")


def test_report_bad_options(app, tmp_path):
    one_line_error(runner.invoke(app, ["report", "--size", "0", "-o", str(tmp_path / "r.html")]), "--size 0",
                   "positive")
    one_line_error(runner.invoke(app, ["report", "--families", "standard,nope", "-o", str(tmp_path / "r.html")]),
                   "unknown family 'nope'")


def test_macs_time_labels_do_not_collide():
    from matplotlib.text import Text

    from convzoo.viz.report import macs_time_figure

    # Nineteen points, several nearly on top of each other (as with families of equal MACs).
    rows = [{"family": f.name, "macs": 1e6 * (1 + (i % 4) * 0.02), "forward_ms": 0.05 * (1 + (i // 4) * 0.05)}
            for i, f in enumerate(cz.families())]
    fig = macs_time_figure(rows, "test")
    ax = fig.axes[0]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]
    assert len(boxes) == len(rows)
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert overlaps == []
    frame = ax.get_window_extent(renderer)
    assert all(frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1 for b in boxes)
    assert not math.isnan(boxes[0].x0)
