"""The house rules of the code base: stages import each other without cycles, and no module
reaches into another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted([*ROOT.glob("tasks/**/*.py"), *ROOT.glob("flows/**/*.py")]):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(tree: ast.AST, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(module, name) for every import of ours, lazy ones included; TYPE_CHECKING ones not."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # annotations only: not an import at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [
                (f"{node.module}.{alias.name}", "")
                for alias in node.names
                if f"{node.module}.{alias.name}" in modules
            ]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name in modules]
    return found


def test_no_import_cycles_between_modules():
    modules = _modules()
    names = list(modules)
    index = {name: i for i, name in enumerate(names)}
    edges = [
        (index[name], index[target])
        for name, path in modules.items()
        for target, _ in _imports(ast.parse(path.read_text()), modules)
        if target != name
    ]
    rows, cols = zip(*edges, strict=True)
    graph = csr_matrix(([1] * len(edges), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(graph, directed=True, connection="strong")
    cycles = [
        sorted(n for n, label in zip(names, labels, strict=True) if label == group)
        for group in set(labels)
        if list(labels).count(group) > 1
    ]
    assert cycles == []


def test_no_module_imports_a_private_name_of_another():
    modules = _modules()
    private = [
        f"{path.relative_to(ROOT)} imports {name} from {target}"
        for path in [*modules.values(), *ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/*.py")]
        for target, name in _imports(ast.parse(path.read_text()), modules)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def _imported_names(tree: ast.AST) -> list[str]:
    """Every dotted name an import statement names: `from a import b` gives a and a.b."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_no_test_module_imports_another_test_module():
    shared = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in ROOT.glob("tests/**/*.py")
        for name in _imported_names(ast.parse(path.read_text()))
        if any(part.startswith("test_") for part in name.split("."))
    ]
    assert shared == [], "shared test code belongs in tests/helpers/"
