"""``convzoo serve``: a local web explorer. The page (one static HTML file with a little JavaScript) asks a small
JSON API, and the API answers by building the real module, computing its connectivity by autograd, its cost and
its output shape. Standard library only (``http.server``); binds to 127.0.0.1 by default. Sizes are capped by
``LayerSpec`` so one request stays fast; an out-of-range or invalid parameter is answered with HTTP 400 and
``{"error": "..."}``.

API: ``GET /api/families`` → [{name, title, dims, params: [accepted geometry args]}];
``GET /api/layer?family=NAME&in_channels=&out_channels=&kernel=&dim=&size=&stride=&padding=&dilation=&groups=
&output_padding=&p=`` → {label, input_shape, output_shape, params, macs, layer, image (PNG data URI)}.
"""

from __future__ import annotations

import base64
import json
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from ..analysis.cost import cost
from ..registry import families
from .figures import connectivity_figure, figure_bytes
from .spec import LIMITS, OPTIONAL, LayerSpec, accepted, describe

BASIC = ("in_channels", "out_channels", "kernel", "dim", "size")
_LOCK = threading.Lock()  # matplotlib's pyplot state is not thread-safe


@lru_cache(maxsize=1)
def family_list() -> list[dict[str, Any]]:
    return [{"name": f.name, "title": f.title, "dims": list(f.dims), "params": accepted(f.name)} for f in families()]


def parse_query(query: dict[str, list[str]]) -> LayerSpec:
    """Query string → validated LayerSpec; ValueError with a readable message otherwise."""
    values: dict[str, int] = {}
    for key, items in query.items():
        if key == "family":
            continue
        if key not in BASIC and key not in OPTIONAL:
            raise ValueError(f"unknown parameter {key!r}; known: family, {', '.join(BASIC + OPTIONAL)}")
        raw = items[-1].strip()
        if raw == "":
            continue
        try:
            values[key] = int(raw)
        except ValueError:
            raise ValueError(f"{key}={raw!r} must be an integer") from None
    name = query.get("family", [""])[-1]
    if not name:
        raise ValueError("missing parameter 'family'")
    basic = {k: values.pop(k) for k in BASIC if k in values}
    return LayerSpec(name, **basic, options=values).validate()


@lru_cache(maxsize=256)
def _layer_json(key: str) -> dict[str, Any]:
    spec = LayerSpec(**json.loads(key)).validate()
    module = spec.build()
    with _LOCK:
        picture = figure_bytes(connectivity_figure(module, spec.input_shape, spec.label()), dpi=72)
    report = cost(module, (1, *spec.input_shape))
    return {"label": spec.label(), "input_shape": [1, *spec.input_shape], "output_shape": list(report.output_shape),
            "params": report.params, "macs": report.macs, "layer": f"{type(module).__name__}({describe(module)})",
            "image": "data:image/png;base64," + base64.b64encode(picture).decode()}


def layer_json(spec: LayerSpec) -> dict[str, Any]:
    try:
        return _layer_json(json.dumps(spec.to_dict(), sort_keys=True))
    except (TypeError, RuntimeError) as error:  # the layer's own checks (e.g. groups must divide channels)
        raise ValueError(str(error).splitlines()[0]) from None


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>convzoo explorer</title>
<link rel="icon" href="data:,"><style>body{font-family:sans-serif;margin:1em}label{margin-right:.8em}
input{width:3.5em}#error{color:#b00}img{max-width:100%;display:block}#numbers span{margin-right:1.5em}</style>
</head><body><h1>convzoo explorer</h1><p>Pick a family and its parameters: the picture, output shape, params and
MACs are computed by the real layer on the server (connectivity by autograd). Empty = the family's default.</p>
<div id="controls"><label>family <select id="family"></select></label>
__FIELDS__</div><p id="error"></p>
<p id="numbers"><span>layer: <b id="layer"></b></span><span>input: <b id="input_shape"></b></span>
<span>output: <b id="output_shape"></b></span><span>params: <b id="params"></b></span>
<span>MACs: <b id="macs"></b></span></p><img id="picture" alt="connectivity picture">
<script>
const fields = __NAMES__;
let families = [];
async function update() {
  const fam = families.find(f => f.name === document.getElementById('family').value);
  const q = new URLSearchParams({family: fam.name});
  for (const name of fields) {
    const el = document.getElementById(name);
    const usable = ['in_channels','out_channels','kernel','dim','size'].includes(name) || fam.params.includes(name);
    el.disabled = !usable;
    if (usable && el.value !== '') q.set(name, el.value);
  }
  const response = await fetch('/api/layer?' + q.toString());
  const data = await response.json();
  if (!response.ok) { document.getElementById('error').textContent = data.error; return; }
  document.getElementById('error').textContent = '';
  for (const key of ['layer', 'params', 'macs']) document.getElementById(key).textContent =
      typeof data[key] === 'number' ? data[key].toLocaleString('en') : data[key];
  document.getElementById('input_shape').textContent = '(' + data.input_shape.join(', ') + ')';
  document.getElementById('output_shape').textContent = '(' + data.output_shape.join(', ') + ')';
  document.getElementById('picture').src = data.image;
}
async function init() {
  families = await (await fetch('/api/families')).json();
  const select = document.getElementById('family');
  for (const f of families) { const o = document.createElement('option'); o.value = f.name;
    o.textContent = f.name; select.appendChild(o); }
  select.addEventListener('change', update);
  for (const name of fields) document.getElementById(name).addEventListener('change', update);
  await update();
}
init();
</script></body></html>"""


def page() -> str:
    defaults = {"in_channels": 4, "out_channels": 4, "kernel": 3, "dim": 2, "size": ""}
    names = list(BASIC + OPTIONAL)
    fields = "".join(
        f'<label>{n} <input id="{n}" type="number" min="{LIMITS[n][0]}" max="{LIMITS[n][1]}" '
        f'value="{defaults.get(n, "")}"></label>' for n in names)
    return PAGE.replace("__FIELDS__", fields).replace("__NAMES__", json.dumps(names))


class Handler(BaseHTTPRequestHandler):
    server_version = "convzoo"

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        if url.path in ("/", "/index.html"):
            return self._send(200, page().encode(), "text/html; charset=utf-8")
        if url.path == "/api/families":
            return self._json(200, family_list())
        if url.path == "/api/layer":
            try:
                return self._json(200, layer_json(parse_query(parse_qs(url.query, keep_blank_values=True))))
            except ValueError as error:
                return self._json(400, {"error": str(error)})
        return self._json(404, {"error": f"no such path {url.path!r}; try /, /api/families or /api/layer"})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)


def make_server(host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), Handler)
    server.quiet = quiet  # type: ignore[attr-defined]
    return server


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    server = make_server(host, port)
    print(f"convzoo explorer on http://{host}:{server.server_address[1]}/ (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
