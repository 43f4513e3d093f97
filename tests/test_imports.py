"""The house's structure: imports flow one way, and the sweep's worker does not load the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ablate"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(lazy: bool) -> dict[str, set[str]]:
    """Module -> the ``ablate`` modules it imports (at module level, or anywhere with ``lazy``)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = ast.walk(tree) if lazy else tree.body
        targets: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        # a name imported from a package is its submodule when one exists, else a name in the package
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(f"{t}.")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


@pytest.mark.parametrize("lazy", [False, True], ids=["module level", "with lazy imports"])
def test_the_import_graph_of_ablate_has_no_cycle(lazy):
    graph = import_graph(lazy)
    assert graph.get("ablate.cli")  # the parser found the package
    assert cycles(graph) == []


def test_the_shared_names_import_nothing():
    assert import_graph(lazy=True)["ablate.names"] == set()


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_nothing_imports_the_cli():
    importers = [m for m, targets in import_graph(lazy=True).items() if "ablate.cli" in targets]
    assert importers == ["ablate.__main__"]  # python -m ablate


def test_the_sweep_worker_does_not_import_the_cli():
    code = "import sys, ablate.sweep.trial; print('ablate.cli' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
