"""The explorer's JSON API: numbers from the real modules, out-of-range parameters answered with HTTP 400."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

import convzoo as cz
from convzoo.viz.serve import make_server


@pytest.fixture(scope="module")
def url():
    server = make_server(port=0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert server.server_address[0] == "127.0.0.1"
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_families_and_their_arguments(url):
    status, data = get(url + "/api/families")
    assert status == 200 and [f["name"] for f in data] == [f.name for f in cz.families()]
    by_name = {f["name"]: f for f in data}
    assert "output_padding" in by_name["transposed"]["params"] and "p" in by_name["hetconv"]["params"]
    assert "stride" in by_name["pointwise"]["params"] and "stride" not in by_name["global_depthwise"]["params"]


def test_layer_numbers_come_from_the_module(url):
    status, data = get(url + "/api/layer?family=hetconv&in_channels=8&out_channels=8&p=4&size=6")
    layer = cz.HetConv2d(8, 8, 3, p=4)
    assert status == 200 and data["output_shape"] == [1, 8, 6, 6]
    assert data["params"] == sum(p.numel() for p in layer.parameters())
    assert data["macs"] == 36 * 8 * (2 * 9 + 6)
    assert data["image"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("query,message", [
    ("family=standard&size=1000", "size=1000 is out of range"),
    ("family=standard&in_channels=512", "in_channels=512 is out of range"),
    ("family=grouped&groups=3", "groups=3 must divide"),
    ("family=global_depthwise&stride=2", "takes no 'stride'"),
    ("family=standard&kernel=abc", "must be an integer"),
    ("family=nope", "unknown family"),
    ("family=standard&evil=1", "unknown parameter"),
    ("family=global_depthwise&dim=3", "no dim=3"),
])
def test_bad_parameters_are_400_with_a_message(url, query, message):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{url}/api/layer?{query}", timeout=30)
    assert info.value.code == 400
    assert message in json.loads(info.value.read())["error"]
