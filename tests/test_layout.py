"""The code's shape: no import circles, no private name imported across modules, the library free of
orchestration (prefect, mlflow, flows), and modules of one concern (a size bound)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lcmodel", "flows")
#: modules allowed past the size bound, each with its reason (none today)
LONG_MODULES: dict[str, str] = {}
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, list[str], bool]]:
    """(imported module, names, at module level) for every import of a first-party module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top_level = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: relative import (the code base uses absolute imports only)"
            base = node.module or ""
            if base.split(".")[0] in PACKAGES:
                found.append((base, [a.name for a in node.names], id(node) in top_level))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    found.append((a.name, [], id(node) in top_level))
    return found


def test_no_private_name_crosses_a_module_boundary() -> None:
    modules = _modules()
    crossings = []
    for name, path in modules.items():
        for target, names, _ in _imports(path, name, modules):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != name:
                    crossings.append(f"{name} imports {target}.{n}")
    assert crossings == []


def test_the_library_never_imports_orchestration() -> None:
    offenders = []
    for path in sorted((ROOT / "lcmodel").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {m}" for m in mods
                          if m.split(".")[0] in {"prefect", "mlflow", "flows", "prefect_dask"}]
    assert offenders == []


def test_no_import_cycles() -> None:
    """Not even through imports inside functions (the flows once imported each other that way)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for target, names, _top in _imports(path, name, modules):
            resolved = target if target in modules else None
            for n in names:
                if f"{target}.{n}" in modules:
                    deps.add(f"{target}.{n}")
            if resolved and resolved != name:
                deps.add(resolved)
        # a package's own submodules are what it re-exports, not a cycle through it
        graph[name] = {d for d in deps if not name.startswith(d + ".") and not d.startswith(name + ".")}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycles.append(" -> ".join(stack[stack.index(node):] + [node]))
            return
        for dep in sorted(graph.get(node, ())):
            if dep not in done:
                visit(dep, [*stack, node])
        done.add(node)

    done: set[str] = set()
    for node in sorted(graph):
        visit(node, [])
    assert cycles == []


def test_modules_stay_one_concern_sized() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules().values()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert set(long) <= set(LONG_MODULES), long
