"""MkDocs hook that generates the pages that must follow the code: the API reference (from ``convzoo.__all__``
and ``convzoo.viz.__all__``), the family gallery and one page per family (from ``convzoo.families()``).

Nothing here names a family or a public function: a family added to the registry or a name added to ``__all__``
appears on the next build. A public name without a docstring, a family whose picture cannot be drawn, or a
family missing from the gallery is logged as a warning, which ``strict: true`` turns into a failed build.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("mkdocs.hooks.convzoo_docs")  # under "mkdocs": strict mode counts its warnings

# API pages: (slug, title, predicate on the defining module). The first matching group wins; "other" catches a
# public name from a module no group names, so nothing in __all__ is ever left out.
GROUPS = [
    ("layers", "Layers", ("convzoo.layers",)),
    ("registry", "Families (registry)", ("convzoo.registry",)),
    ("analysis", "Arithmetic: shapes, receptive fields, cost", ("convzoo.arithmetic", "convzoo.analysis")),
    ("conversion", "Conversion", ("convzoo.conversion",)),
    ("perf", "Speed: compare, optimize", ("convzoo.perf",)),
    ("functional", "convzoo.functional", ("convzoo.functional",)),
    ("models", "Models", ("convzoo.models",)),
    ("deploy", "Deployment: int8, mobile runtimes", ("convzoo.deploy",)),
    ("other", "Other", ("",)),
]
BENCH = ROOT / "benchmarks" / "results" / "bench_all.json"  # benchmarks/bench_all.py's run: speed ratios per family


def _convzoo() -> ModuleType:
    src = str(ROOT / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    import convzoo
    import convzoo.viz  # noqa: F401  (public subpackage with its own __all__)

    return convzoo


def own_doc(obj: object) -> str | None:
    """The object's own docstring (a class does not inherit its base's here, unlike ``inspect.getdoc``; the
    ``Name(field: type, …)`` line that ``@dataclass`` writes for an undocumented class does not count)."""
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and isinstance(doc, str):
        if doc.startswith(f"{obj.__name__}(") and doc.rstrip().endswith(")") and "\n" not in doc.strip():
            return None
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


def public_names(convzoo: ModuleType) -> list[tuple[str, object]]:
    """Every public name: ``convzoo.X`` for X in ``convzoo.__all__``, ``convzoo.viz.X`` for ``convzoo.viz.__all__``."""
    import convzoo.viz  # noqa: F401  (public subpackage with its own __all__)

    names = [(f"convzoo.{n}", getattr(convzoo, n)) for n in convzoo.__all__]
    names += [(f"convzoo.viz.{n}", getattr(convzoo.viz, n)) for n in convzoo.viz.__all__]
    return names


def undocumented(convzoo: ModuleType | None = None) -> list[str]:
    """Public names (and the public methods a public class defines itself) that have no docstring.

    Data constants (dicts, tuples, strings) carry no docstring of their own and are skipped."""
    convzoo = convzoo or _convzoo()
    missing = []
    for path, obj in public_names(convzoo):
        if not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)):
            continue
        if own_doc(obj) is None:
            missing.append(path)
    return missing


def group_of(obj: object) -> str:
    module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", "") or ""
    for slug, _, prefixes in GROUPS:
        if any(module == p or module.startswith(p + ".") or p == "" for p in prefixes):
            return slug
    return "other"


def api_pages(convzoo: ModuleType) -> dict[str, str]:
    """{'api/<slug>.md': markdown} with one ``::: convzoo.X`` block per public name, and the index."""
    import convzoo.viz  # noqa: F401
    groups: dict[str, list[str]] = {slug: [] for slug, _, _ in GROUPS}
    for n in convzoo.__all__:
        groups[group_of(getattr(convzoo, n))].append(f"convzoo.{n}")
    groups["viz"] = [f"convzoo.viz.{n}" for n in convzoo.viz.__all__]
    titles = {slug: title for slug, title, _ in GROUPS} | {"viz": "Pictures (convzoo.viz)"}
    pages, index = {}, ["# API reference", "",
                        "Generated from the docstrings of every name in `convzoo.__all__` and `convzoo.viz.__all__` "
                        "(a name without a docstring fails the build). Shapes use torch's (N, C, *spatial) order; "
                        "MACs count weight multiply-accumulates (FLOPs = 2 × MACs).", ""]
    for slug, paths in groups.items():
        if not paths:
            continue
        body = [f"# {titles[slug]}", ""]
        for path in paths:
            obj = eval(path, {"convzoo": convzoo})  # noqa: S307 (a dotted name from __all__)
            opts = "\n    options:\n      members: false" if inspect.ismodule(obj) and slug != "functional" else ""
            body += [f"::: {path}{opts}", ""]
        pages[f"api/{slug}.md"] = "\n".join(body)
        index.append(f"- [{titles[slug]}]({slug}.md): " + ", ".join(f"`{p.rsplit('.', 1)[1]}`" for p in paths))
    pages["api/index.md"] = "\n".join(index) + "\n"
    return pages


def api_link(convzoo: ModuleType, obj: object) -> str | None:
    name = type(obj).__name__
    if name in convzoo.__all__ and getattr(convzoo, name) is type(obj):
        return f"../api/{group_of(type(obj))}.md#convzoo.{name}"
    return None


def tutorials_by_family() -> dict[str, list[tuple[str, str]]]:
    """{family: [(title, link from a family page)]} from the ``Families: `a`, `b``` line of each tutorial."""
    found: dict[str, list[tuple[str, str]]] = {}
    for script in sorted((ROOT / "examples").glob("*/*.py")):
        text = script.read_text(encoding="utf-8")
        title = next((ln.strip() for ln in text.splitlines()[1:] if ln.strip() and not ln.startswith(('"', "#"))), "")
        line = re.search(r"\bFamilies: (.*)$", text, re.M)
        for name in re.findall(r"`([a-z0-9_]+)`", line.group(1) if line else ""):
            found.setdefault(name, []).append((title, f"../generated/{script.parent.name}/{script.stem}.md"))
    return found


def bench_rows() -> tuple[dict[str, dict], str]:
    """{family: its summary row} from the committed bench_all run's raw data, and that run's machine line."""
    if not BENCH.exists():
        return {}, ""
    from convzoo.perf.results import read_results
    from convzoo.perf.results_page import machine_line

    run = read_results(BENCH)
    data = run.data or {}
    shapes = {f["family"]: f.get("input_shape") for f in data.get("families", []) if isinstance(f, dict)}
    rows = {r["family"]: dict(r, input_shape=shapes.get(r["family"])) for r in data.get("summary", [])}
    return rows, machine_line(run.machine, run.date)


def family_pages(convzoo: ModuleType, out: Path) -> dict[str, str]:
    """The gallery page and one page per family; pictures drawn from the real layer into ``out``."""
    from convzoo.cli.viz import default_spec
    from convzoo.viz import render

    rows, machine = bench_rows()
    base = rows.get("standard", {}).get("fwd_ms")
    tutorials = tutorials_by_family()
    pages, cards = {}, []
    for fam in convzoo.families():
        dim = 2 if 2 in fam.dims else fam.dims[0]
        shape = (1, 4) + (8,) * dim
        try:
            try:
                out_ch, layer = 8, fam.build(4, 8, dim=dim)
            except ValueError:  # the family's own channel rule (partial, involution keep the width): 4 → 4
                out_ch, layer = 4, fam.build(4, 4, dim=dim)
            cost = convzoo.cost(layer, shape)
        except Exception as exc:  # the card needs a layer and its cost: say which family lacks them
            log.warning("convzoo docs: family %r: build / cost failed: %s: %s", fam.name, type(exc).__name__, exc)
            continue
        formula = " ".join((own_doc(type(layer).cost) or "(the layer's cost() has no docstring)").split())
        picture = out / f"{fam.name}.png"
        try:
            # the picture `convzoo viz NAME` draws at its defaults
            render(fam.name, picture, default_spec(fam.name, dim=2 if 2 in fam.dims else fam.dims[0]))
        except Exception as exc:  # a family that cannot be drawn is a documentation bug: fail strict builds
            log.warning("convzoo docs: family %r: picture failed: %s: %s", fam.name, type(exc).__name__, exc)
            picture = None
        row = rows.get(fam.name)
        if row and base:
            at = f" on input {tuple(row['input_shape'])}" if row.get("input_shape") else ""
            speed = (f"{row['fwd_ms'] / base:.2f}× standard's forward time at {row['mac_ratio']:.2f}× its MACs "
                     f"({row['fwd_ms']:.2f} ms vs {base:.2f} ms{at}, measured by `convzoo bench`)")
        else:
            speed = "not in the committed benchmark yet (run `convzoo bench` and commit its JSON)"
        api = api_link(convzoo, layer)
        tut = tutorials.get(fam.name, [])
        links = [f"[{t}]({link})" for t, link in tut] + [f"[API: `{type(layer).__name__}`]({api})"] * bool(api)
        code = (f"import convzoo as cz\n\nlayer = cz.build({fam.name!r}, 4, {out_ch}{'' if 2 in fam.dims else f', dim={fam.dims[0]}'})"
                f"\nprint(layer)\nprint(cz.cost(layer, {shape}).macs)  # {cost.macs:,}")
        body = [f"# {fam.title}", "", f"`{fam.name}` · {fam.summary} · article {fam.article} · {', '.join(f'{d}-D' for d in fam.dims)}", ""]
        if picture:
            body += [f"![{fam.title}: drawn from the layer at build time]({fam.name}.png)", ""]
        body += ["## Cost", "", f"`{type(layer).__name__}.cost`: {formula}", "",
                 f"For `cz.build({fam.name!r}, 4, {out_ch})` on input {shape}: **{cost.macs:,} MACs**, "
                 f"{cost.params:,} parameters, output {tuple(cost.output_shape)}.", "",
                 "## Measured speed", "",
                 f"{speed}. Source: [the committed benchmark run `bench_all`](../performance/bench_all.md)"
                 + (f" ({machine})." if machine else "."), "",
                 "## Code", "", "```python", code, "```", ""]
        body += ["## Read more", ""] + [f"- {link}" for link in links] if links else []
        pages[f"families/{fam.name}.md"] = "\n".join(body) + "\n"
        img = f"![{fam.name}](families/{fam.name}.png){{ loading=lazy }}" if picture else "(no picture)"
        cards.append(f'<div class="cz-card" markdown>\n\n### [{fam.title}](families/{fam.name}.md)\n\n{img}\n\n'
                     f"`{fam.name}` · article {fam.article}\n\n{formula}\n\n"
                     f"**Speed:** {speed}.\n\n"
                     + " · ".join([f"[family page](families/{fam.name}.md)"]
                                  + [f"[tutorial]({link[3:]})" for _, link in tut[:1]]
                                  + ([f"[API]({api[3:]})"] if api else [])) + "\n\n</div>\n")
    pages["gallery.md"] = "\n".join(
        ["# Family gallery", "",
         f"One card per registered family ({len(cards)}), generated from `convzoo.families()` at build time: the "
         "picture is drawn from the layer itself, the formula is its `cost` docstring, the speed ratio comes from "
         "the committed `benchmarks/results/bench_all.json` (forward time relative to the standard 3×3 conv on the "
         "same layer shape).", "", '<div class="cz-grid" markdown>', ""] + cards + ["</div>", ""])
    return pages


# ---------------------------------------------------------------- MkDocs events
_PAGES: dict[str, str] = {}
_TMP: tempfile.TemporaryDirectory | None = None


def check_docstrings(convzoo: ModuleType | None = None) -> list[str]:
    """Log one warning per undocumented public name (``mkdocs build --strict`` then fails); return them."""
    missing = undocumented(convzoo)
    for path in missing:
        log.warning("convzoo docs: public name %s has no docstring", path)
    return missing


def on_config(config, **kwargs):
    global _TMP
    convzoo = _convzoo()
    check_docstrings(convzoo)
    _TMP = tempfile.TemporaryDirectory(prefix="convzoo-docs-")
    _PAGES.clear()
    _PAGES.update(api_pages(convzoo))
    _PAGES.update(family_pages(convzoo, Path(_TMP.name)))
    nav = config["nav"]
    for i, entry in enumerate(nav):
        (title, target), = entry.items()
        if target == "gallery.md":
            nav[i] = {title: [target] + sorted(p for p in _PAGES if p.startswith("families/"))}
        elif target == "api/index.md":
            nav[i] = {title: [target] + [p for p in _PAGES if p.startswith("api/") and p != target]}
    config["extra_css"] = list(config.get("extra_css", [])) + ["_convzoo.css"]
    return config


CSS = """.md-grid{max-width:75rem}
.cz-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(15rem,1fr));gap:1rem}
.cz-card{border:1px solid var(--md-default-fg-color--lightest);border-radius:.4rem;padding:0 .8rem;font-size:.7rem}
.cz-card img{max-height:14rem;object-fit:contain;width:100%}
"""


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File  # here, so that the tests can import the checks without mkdocs

    for path, text in _PAGES.items():
        files.append(File.generated(config, path, content=text))
    for png in sorted(Path(_TMP.name).glob("*.png")):
        files.append(File.generated(config, f"families/{png.name}", content=png.read_bytes()))
    files.append(File.generated(config, "_convzoo.css", content=CSS))
    return files


def on_post_build(config, **kwargs):
    if _TMP is not None:
        _TMP.cleanup()
