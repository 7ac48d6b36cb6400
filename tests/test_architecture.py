"""Imports run one way: no cycle between modules, and no import from a lower layer to a higher.

Every module under ``src/shopsight`` is parsed with ``ast``; imports at the top level and inside
functions count, relative imports are resolved, and a string naming a shopsight module (what
``importlib.import_module`` and lazy registries load at run time) counts as an import too.
Layers, lowest first (a module may import its own layer and the ones below):

    data (with errors, config, progress, distributed) < features < training < models < evaluation
    < {prediction, personas, explain, privacy} < app < {cli, serving}

``pytest -s tests/test_architecture.py`` prints the layer graph.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "shopsight"

LAYERS: list[tuple[str, ...]] = [
    ("shopsight", "errors", "config", "progress", "distributed", "data"),
    ("features",),
    ("training",),
    ("models",),
    ("evaluation",),
    ("prediction", "personas", "explain", "privacy"),
    ("app",),
    ("cli", "serving"),
]
LAYER_OF = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def part_of(module: str) -> str:
    """The layer unit of a module: its top-level subpackage (or ``shopsight`` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer(module: str) -> int:
    return LAYER_OF[part_of(module)]


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in (``a.b.C`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in known:
            return cand
        parts.pop()
    return None


def imports_of(mod: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    package = mod if is_pkg else mod.rpartition(".")[0]
    out: set[str] = set()
    # Logger names look like module names but load nothing.
    logger_names = {
        id(a)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
        == "getLogger"
        for a in node.args
    }
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # ``from pkg import sub`` imports the submodule when there is one
            targets = [f"{prefix}.{a.name}" for a in node.names] or [prefix]
            targets.append(prefix)
            if any(f"{prefix}.{a.name}" in known for a in node.names):
                targets.remove(prefix)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in known
            and node.value != ROOT
            and id(node) not in logger_names
        ):
            targets = [node.value]  # a module loaded by name at run time
        for t in targets:
            if t == ROOT or t.startswith(ROOT + "."):
                hit = _resolve(t, known)
                if hit is not None and hit != mod:
                    out.add(hit)
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(m, p, known) for m, p in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} (layer {layer(a)}) -> {b} (layer {layer(b)})"
        for a, targets in graph.items()
        for b in targets
        if layer(b) > layer(a)
    )


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    g = import_graph()
    edges = Counter()
    for a, targets in g.items():
        for b in targets:
            if part_of(a) != part_of(b):
                edges[(part_of(a), part_of(b))] += 1
    print(f"\n{len(g)} modules, {sum(len(t) for t in g.values())} import edges")
    for i, parts in enumerate(LAYERS):
        n = sum(1 for m in g if part_of(m) in parts)
        print(f"layer {i}: {' '.join(parts)} ({n} modules)")
        for part in parts:
            deps = sorted((b, c) for (a, b), c in edges.items() if a == part)
            if deps:
                print(f"    {part} -> " + ", ".join(f"{b} ({c})" for b, c in deps))
    return g


def test_every_module_is_in_a_layer(graph: dict[str, set[str]]) -> None:
    assert [m for m in graph if part_of(m) not in LAYER_OF] == []


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    print(f"cycles: {len(found)}")
    assert found == []


def test_no_import_from_a_lower_layer_to_a_higher(graph: dict[str, set[str]]) -> None:
    bad = upward(graph)
    print(f"upward imports: {len(bad)}")
    assert bad == []


def test_the_checker_sees_function_level_relative_and_runtime_imports(tmp_path: Path) -> None:
    """The parser itself: an import inside a function, a relative one and a module named in a
    string all make edges; a cycle among them is found."""
    pkg = tmp_path / "shopsight" / "data"
    pkg.mkdir(parents=True)
    (tmp_path / "shopsight" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text("import importlib\nimportlib.import_module('shopsight.data.c')\n")
    (pkg / "c.py").write_text("from shopsight.data.a import f\n")
    known = {module_name_in(p, tmp_path): p for p in tmp_path.rglob("*.py")}
    g = {m: imports_of(m, p, known) for m, p in known.items()}
    assert g["shopsight.data.a"] == {"shopsight.data.b"}
    assert g["shopsight.data.b"] == {"shopsight.data.c"}
    assert cycles(g) == [["shopsight.data.a", "shopsight.data.b", "shopsight.data.c"]]
    assert upward({"shopsight.data.x": {"shopsight.cli"}, "shopsight.cli": set()}) != []


def module_name_in(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)
