"""One import direction: every module of convzoo sits below the layers, in them, or above them.

Below: what a family file in ``layers/`` calls (argument checks and geometry, stateless ops, the arithmetic of
shapes and cost, the NumPy oracle, dense-kernel math, convzoo's own kernels); it never imports ``layers/``, the
registry, or anything above. Above: what reads layers through the contract (verify, analysis, conversion, perf,
viz, models, train, deploy, cli and the public API in ``__init__.py``); the layers never import it.

The imports are read from the source with ``ast``: top-level imports, imports inside functions, and imports under
``if TYPE_CHECKING:`` alike (a type named from above is still a dependency on above), plus the package
``__init__.py`` that importing a submodule runs (``from ..arithmetic.cost import LayerCost`` runs
``arithmetic/__init__.py`` first: the cycle this test was written against ran through a package's ``__init__``).
``importlib.import_module`` with a constant name counts as an import; below the layers and in them, a dynamic
import must name its module plainly or build it from its own ``__name__`` / ``__package__``.
"""

from __future__ import annotations

import ast
import textwrap
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

BELOW, LAYERS, REGISTRY, ABOVE = 0, 1, 2, 3
SIDE_NAMES = {BELOW: "below the layers", LAYERS: "the layers", REGISTRY: "the registry", ABOVE: "above the layers"}

# Every top-level module or subpackage of convzoo, on its side (a name not here fails
# test_every_module_sits_on_one_side: a new module chooses its side when it is added).
SIDES = {
    "geometry": BELOW,  # argument checks and window geometry (kernel, stride, padding pairs)
    "functional": BELOW,  # stateless ops: correlate / convolve with (before, after) padding, channel_shuffle
    "arithmetic": BELOW,  # output shapes, transposed overlap, LayerCost records and formulas, cost()
    "oracle": BELOW,  # reference.py: the NumPy definitions every layer is checked against
    "dense_kernels": BELOW,  # a dense conv kernel: grouped → dense, fitted to a window, relative error
    "kernels": BELOW,  # convzoo's own kernels: the pure-PyTorch deformable op, numba, Triton
    "layers": LAYERS,
    "registry": REGISTRY,
    "verify": ABOVE,
    "analysis": ABOVE,
    "conversion": ABOVE,
    "perf": ABOVE,
    "viz": ABOVE,
    "models": ABOVE,
    "train": ABOVE,
    "deploy": ABOVE,
    "cli": ABOVE,
    "__main__": ABOVE,
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    line: int
    how: str  # "import", "function", "TYPE_CHECKING", "package __init__", "import_module"


def modules(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name → source file, for every .py under ``src/package`` (a package is its __init__.py)."""
    found = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _nearest(name: str, known: dict[str, Path]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _function_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


OWN_PACKAGE = object()  # a dynamic import built from the module's own __name__ / __package__


def _dynamic_target(call: ast.Call) -> str | object | None:
    """What an ``import_module(...)`` / ``__import__(...)`` call loads: a constant name, OWN_PACKAGE for an f-string
    that starts from the module's own ``__name__`` / ``__package__`` (a module of its own package), None when the
    source cannot tell."""
    arg = call.args[0] if call.args else None
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.FormattedValue):
        head = arg.values[0].value
        if isinstance(head, ast.Name) and head.id in ("__name__", "__package__"):
            return OWN_PACKAGE
    return None


def _is_dynamic_import(call: ast.Call) -> bool:
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return called in ("import_module", "__import__")


def read_imports(src: Path, package: str) -> tuple[list[Import], list[str]]:
    """Every import of a ``package`` module by another, and the dynamic imports whose module cannot be told
    (as "file:line" strings)."""
    known = modules(src, package)
    found: set[Import] = set()
    unreadable: list[str] = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        guarded, in_function = _type_checking_lines(tree), _function_lines(tree)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                # ``from pkg import sub``: the submodule when there is one, else the names of pkg's __init__
                targets = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names]
            elif isinstance(node, ast.Call) and _is_dynamic_import(node):
                target = _dynamic_target(node)
                if target is None:
                    unreadable.append(f"{path.relative_to(src).as_posix()}:{node.lineno}")
                targets = [target] if isinstance(target, str) else []
            else:
                continue
            line = node.lineno
            how = ("import_module" if isinstance(node, ast.Call) else "TYPE_CHECKING" if line in guarded
                   else "function" if line in in_function else "import")
            for target in targets:
                if target != package and not target.startswith(package + "."):
                    continue
                target = _nearest(target, known)
                if target != name:
                    found.add(Import(name, target, line, how))
                # importing a.b.c runs a/__init__ and a/b/__init__ first (the root package and the importer's own
                # packages are already being imported)
                parts = target.split(".")
                for k in range(2, len(parts)):
                    parent = ".".join(parts[:k])
                    if not (name == parent or name.startswith(parent + ".")):
                        found.add(Import(name, parent, line, "package __init__"))
    return sorted(found, key=lambda i: (i.source, i.line, i.target)), unreadable


def side(module: str, package: str, sides: dict[str, int]) -> int | None:
    if module == package:
        return ABOVE  # the public API: imports every side, and nothing below it may import it
    top = module.split(".")[1]
    return sides.get(top)


def up_imports(src: Path, package: str, sides: dict[str, int]) -> list[str]:
    """Imports that run against the direction: a module imports one on a higher side (below → layers, registry
    or above; layers → registry or above; registry → above)."""
    found, _ = read_imports(src, package)
    wrong = []
    for imp in found:
        a, b = side(imp.source, package, sides), side(imp.target, package, sides)
        if a is not None and b is not None and b > a:
            wrong.append(f"{imp.source} ({SIDE_NAMES[a]}) imports {imp.target} ({SIDE_NAMES[b]}), line {imp.line} "
                         f"[{imp.how}]")
    return wrong


def reached_from_layers(src: Path, package: str, sides: dict[str, int]) -> list[str]:
    """Every import that importing the layers runs, directly or through the modules below them, and that reaches a
    module not below them (the layers themselves included: that is a cycle); each as the chain of imports from a
    family file, ``module:line → module [how]`` joined by " ; "."""
    found, _ = read_imports(src, package)
    by_source: dict[str, list[Import]] = {}
    for imp in found:
        by_source.setdefault(imp.source, []).append(imp)
    in_layers = [m for m in modules(src, package) if side(m, package, sides) == LAYERS]
    came_from: dict[str, Import] = {}
    queue, seen, wrong = deque(in_layers), set(in_layers), []
    while queue:
        module = queue.popleft()
        for imp in by_source.get(module, []):
            target_side = side(imp.target, package, sides)
            if target_side == BELOW:
                if imp.target not in seen:
                    seen.add(imp.target)
                    came_from[imp.target] = imp
                    queue.append(imp.target)
                continue
            if module in in_layers and target_side == LAYERS:
                continue  # a family file importing another: inside the layers
            chain, step = [imp], imp
            while step.source in came_from:
                step = came_from[step.source]
                chain.append(step)
            wrong.append(" ; ".join(f"{i.source}:{i.line} → {i.target} [{i.how}]" for i in reversed(chain)))
    return wrong


@cache
def convzoo_imports() -> tuple[list[Import], list[str]]:
    return read_imports(SRC, "convzoo")


def test_every_module_sits_on_one_side():
    unplaced = sorted({m.split(".")[1] for m in modules(SRC, "convzoo") if m != "convzoo"} - set(SIDES))
    assert not unplaced, f"give these a side in SIDES (tests/test_layout.py) and DESIGN.md's layout: {unplaced}"


def test_no_import_runs_against_the_direction():
    wrong = up_imports(SRC, "convzoo", SIDES)
    assert not wrong, "imports that run up:\n" + "\n".join(wrong)


def test_layers_reach_only_what_is_below_them():
    wrong = reached_from_layers(SRC, "convzoo", SIDES)
    assert not wrong, "importing the layers runs modules that are not below them:\n" + "\n".join(wrong)


def test_dynamic_imports_below_the_top_can_be_read():
    """Below the layers, in them and in the registry every ``import_module`` names what it loads (above, where
    nothing can import back, the CLI and models load a user's ``module:attr`` by name)."""
    _, unreadable = convzoo_imports()
    not_above = [u for u in unreadable if SIDES.get(Path(u.split(":")[0]).parts[1].removesuffix(".py"), ABOVE) < ABOVE]
    assert not not_above, f"dynamic imports whose module cannot be read: {not_above}"


def test_reads_the_imports_it_must_check():
    """The reader sees, in convzoo's own source, the kinds of import the rules depend on."""
    found, _ = convzoo_imports()
    edges = {(i.source, i.target, i.how) for i in found}
    assert ("convzoo.layers.conv", "convzoo.functional", "import") in edges
    assert ("convzoo.functional", "convzoo.geometry", "import") in edges
    assert ("convzoo.layers.base", "convzoo.arithmetic.cost", "TYPE_CHECKING") in edges
    assert ("convzoo.layers.base", "convzoo.arithmetic", "package __init__") in edges
    assert ("convzoo.layers.form_choice", "convzoo.layers.base", "function") in edges
    assert ("convzoo.cli.common", "convzoo.models", "function") in edges
    # import_module with a constant name: no such call is left in the source; the small package below has one


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_rules_catch_every_kind_of_wrong_import(tmp_path):
    """A small package with one wrong import of each kind: each is reported, with its line and how it imports."""
    _write(tmp_path, {
        "pkg/__init__.py": "from .layers.base import Layer\n",
        "pkg/layers/__init__.py": "from .base import Layer\n",
        "pkg/layers/base.py": """\
            from typing import TYPE_CHECKING
            from ..stats.cost import Cost
            from ..helpers import check
            if TYPE_CHECKING:
                from ..tools.view import View
            class Layer:
                def run(self):
                    from ..registry import table
            """,
        "pkg/stats/__init__.py": "from .cost import Cost\nfrom .field import field\n",
        "pkg/stats/cost.py": "class Cost: ...\n",
        "pkg/stats/field.py": "from ..layers.base import Layer\n",
        "pkg/helpers.py": """\
            import importlib
            def check():
                importlib.import_module("pkg.layers")
                importlib.import_module(name_from_somewhere)
                importlib.import_module(f"{__package__}.cost")
            """,
        "pkg/registry.py": "from .layers import Layer\ntable = {}\n",
        "pkg/tools/__init__.py": "",
        "pkg/tools/view.py": "from ..registry import table\nclass View: ...\n",
    })
    sides = {"layers": LAYERS, "registry": REGISTRY, "stats": BELOW, "helpers": BELOW, "tools": ABOVE}
    assert sorted(up_imports(tmp_path, "pkg", sides)) == sorted([
        "pkg.layers.base (the layers) imports pkg.tools.view (above the layers), line 5 [TYPE_CHECKING]",
        "pkg.layers.base (the layers) imports pkg.tools (above the layers), line 5 [package __init__]",
        "pkg.layers.base (the layers) imports pkg.registry (the registry), line 8 [function]",
        "pkg.stats.field (below the layers) imports pkg.layers.base (the layers), line 1 [import]",
        "pkg.stats.field (below the layers) imports pkg.layers (the layers), line 1 [package __init__]",
        "pkg.helpers (below the layers) imports pkg.layers (the layers), line 3 [import_module]",
    ])
    via_field = "pkg.layers.base:2 → pkg.stats [package __init__] ; pkg.stats:2 → pkg.stats.field [import] ; "
    assert sorted(reached_from_layers(tmp_path, "pkg", sides)) == sorted([
        "pkg.layers.base:5 → pkg.tools.view [TYPE_CHECKING]",
        "pkg.layers.base:5 → pkg.tools [package __init__]",
        "pkg.layers.base:8 → pkg.registry [function]",
        via_field + "pkg.stats.field:1 → pkg.layers.base [import]",
        via_field + "pkg.stats.field:1 → pkg.layers [package __init__]",
        "pkg.layers.base:3 → pkg.helpers [import] ; pkg.helpers:3 → pkg.layers [import_module]",
    ])
    assert read_imports(tmp_path, "pkg")[1] == ["pkg/helpers.py:4"]


@pytest.mark.parametrize("module, expected", [("convzoo", ABOVE), ("convzoo.layers.conv", LAYERS),
                                              ("convzoo.kernels.depthwise", BELOW), ("convzoo.registry", REGISTRY),
                                              ("convzoo.cli.common", ABOVE), ("convzoo.nowhere", None)])
def test_side_of_a_module(module, expected):
    assert side(module, "convzoo", SIDES) == expected
