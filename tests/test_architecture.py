"""The package's shape: its public names, and (below) imports that point only down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_memsyscalls


def test_public_names_are_all_listed_and_resolve() -> None:
    assert sorted(pytest_memsyscalls.__all__) == sorted(pytest_memsyscalls._PUBLIC)
    for name in [*pytest_memsyscalls.__all__, *pytest_memsyscalls._MODULES]:
        assert getattr(pytest_memsyscalls, name) is not None, name


# --- imports point down, never in a circle -------------------------------------------

# The layers, lowest first. A module may import its own subpackage and any layer below
# its own; layers of the same rank (memory and report) do not import each other.
LAYERS = {"kernel": 0, "environment": 1, "memory": 2, "report": 2, "plugin": 3, "matrix": 4, "cli": 5}
PACKAGE = Path(pytest_memsyscalls.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each module of the package -> the package modules it imports (anywhere in the file,
    lazy imports included: they are dependencies all the same)."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            # `import a.b.c` depends on a.b.c; `from a.b import c` on a.b.c if that is a module, else a.b
            targets |= {c for c in candidates if c in files and c != name and not name.startswith(c + ".")}
        graph[name] = targets
    return graph


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        mine = layer_of(module)
        if mine is None:  # the package's façade (__init__, __main__) may reach any layer
            continue
        for target in targets:
            theirs = layer_of(target)
            if theirs is None:
                found.append(f"{module} -> {target} (the façade)")
            elif theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
                found.append(f"{module} ({mine}) -> {target} ({theirs})")
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_is_in_a_layer() -> None:
    outside = [m for m in import_graph() if layer_of(m) is None
               and m not in ("pytest_memsyscalls", "pytest_memsyscalls.__main__")]
    assert outside == []


def test_no_import_points_up() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_the_checks_see_what_they_look_for() -> None:
    """The checkers themselves, on graphs with a known defect."""
    graph = {"pytest_memsyscalls.kernel.libc": {"pytest_memsyscalls.plugin.settings"},
             "pytest_memsyscalls.plugin.settings": {"pytest_memsyscalls.plugin.leaks"},
             "pytest_memsyscalls.plugin.leaks": {"pytest_memsyscalls.plugin.settings"}}
    assert upward_imports(graph) == ["pytest_memsyscalls.kernel.libc (kernel) -> pytest_memsyscalls.plugin.settings "
                                     "(plugin)"]
    assert cycles(graph) == [["pytest_memsyscalls.plugin.leaks", "pytest_memsyscalls.plugin.settings"]]
