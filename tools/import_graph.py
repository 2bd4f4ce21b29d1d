"""Which of convzoo's packages import which, read from the source with ``ast`` (nothing is imported or run).

    python tools/import_graph.py [src]      # one line per (package → package): the count and the first imports

A *package* is a sub-package or top-level module of ``convzoo`` (``layers``, ``perf``, ``registry``, ``deform``…);
``convzoo/__init__.py`` is ``convzoo`` itself (the public API, which imports everything). An import inside a
function runs when the function does (``lazy``); one under ``if TYPE_CHECKING:`` never runs (``typing``). The docs
site's Architecture page is drawn from :func:`package_graph` at build time, so it shows the imports as they are.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT_PACKAGE = "convzoo"


@dataclass(frozen=True)
class Import:
    """One import statement's target inside the package: ``module`` imports ``target`` at ``line``."""

    module: str
    target: str
    line: int
    kind: str  # "top" (runs on import), "lazy" (inside a function), "typing" (under TYPE_CHECKING)


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str, src: Path) -> bool:
    base = src.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, src: Path) -> None:
        self.module, self.src, self.found = module, src, []
        self.package = module if is_package else module.rpartition(".")[0]
        self.kind = ["top"]

    def _add(self, target: str, line: int) -> None:
        if target == ROOT_PACKAGE or target.startswith(ROOT_PACKAGE + "."):
            self.found.append(Import(self.module, target, line, self.kind[-1]))

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.kind.append("lazy" if self.kind[-1] == "top" else self.kind[-1])
        self.generic_visit(node)
        self.kind.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        test = ast.unparse(node.test)
        if test in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            self.kind.append("typing")
            for child in node.body:
                self.visit(child)
            self.kind.pop()
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[:len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        for alias in node.names:
            sub = f"{origin}.{alias.name}"
            self._add(sub if _exists(sub, self.src) else origin, node.lineno)


def module_imports(src: Path) -> list[Import]:
    """Every import of a ``convzoo`` module by a ``convzoo`` module under ``src`` (the folder holding ``convzoo/``)."""
    found: list[Import] = []
    for path in sorted((src / ROOT_PACKAGE).rglob("*.py")):
        module = module_name(path, src)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        collector = _Collector(module, path.name == "__init__.py", src)
        collector.visit(tree)
        found += collector.found
    return list(dict.fromkeys(found))  # `from x import a, b`: one import of x


def package_of(module: str) -> str:
    """``convzoo.layers.conv`` → ``layers``; ``convzoo.registry`` → ``registry``; ``convzoo`` → ``convzoo``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT_PACKAGE


def package_graph(src: Path) -> dict[tuple[str, str], list[Import]]:
    """{(importing package, imported package): the imports}, a package's imports of itself left out."""
    graph: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in module_imports(src):
        a, b = package_of(imp.module), package_of(imp.target)
        if a != b:
            graph[(a, b)].append(imp)
    return dict(graph)


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """The groups of packages that import each other, directly or around a loop (strongly connected components
    with more than one package), each sorted, largest first."""
    nodes = sorted({n for edge in edges for n in edge})
    succ: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        succ[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(groups, key=lambda g: (-len(g), g))


def against(order: list[str], graph: dict[tuple[str, str], list[Import]]) -> list[tuple[str, str]]:
    """The package pairs whose imports point up ``order`` (bottom first): the importer sits below what it imports."""
    rank = {p: i for i, p in enumerate(order)}
    return sorted((a, b) for a, b in graph if rank[a] < rank[b])


def layer_order(graph: dict[tuple[str, str], list[Import]]) -> list[str]:
    """The packages from the bottom (imported by the others) to the top (importing them), placed so that as few
    import statements as possible point up the order: sinks first (Eades' greedy ordering, weighted by
    statements), then single packages moved while that lowers the count. Without cycles nothing points up."""
    weight = {edge: len(imports) for edge, imports in graph.items()}
    left = sorted({n for edge in graph for n in edge})
    order: list[str] = []
    while left:
        def key(p: str) -> tuple[int, int, str]:
            out = sum(weight.get((p, q), 0) for q in left)
            into = sum(weight.get((q, p), 0) for q in left)
            return (0 if out == 0 else 1, out - into, p)  # a package importing nothing left goes first

        best = min(left, key=key)
        order.append(best)
        left.remove(best)

    def cost(o: list[str]) -> int:
        return sum(weight[edge] for edge in against(o, graph))

    improved = True
    while improved:
        improved = False
        for p in list(order):
            rest = [q for q in order if q != p]
            best_order = min((rest[:i] + [p] + rest[i:] for i in range(len(order))), key=cost)
            if cost(best_order) < cost(order):
                order, improved = best_order, True
    return order


def main(argv: list[str]) -> None:
    src = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "src"
    graph = package_graph(src)
    for (a, b), imports in sorted(graph.items()):
        kinds = ", ".join(sorted({i.kind for i in imports}))
        first = ", ".join(f"{i.module}:{i.line}" for i in imports[:3])
        print(f"{a:12s} → {b:12s} {len(imports):3d} ({kinds}): {first}")
    for group in cycles(set(graph)):
        print("import each other:", ", ".join(group))
    order = layer_order(graph)
    print("bottom to top:", ", ".join(order))
    for a, b in against(order, graph):
        print(f"against the order: {a} → {b}: " + ", ".join(f"{i.module}:{i.line}" for i in graph[(a, b)]))


if __name__ == "__main__":
    main(sys.argv[1:])
