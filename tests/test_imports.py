"""The import graph of the pipeline stages: no cycle (module-level or lazy imports) and no import
from a later stage into an earlier one (decay/ops/positional -> model -> data -> train ->
evaluate/analysis, with device/figures/atomic/errors/lock as shared helpers below them all)."""

from __future__ import annotations

import ast
from pathlib import Path

import decaylab

PACKAGE = Path(decaylab.__file__).parent
#: Stage of each top-level module or package; a module may import only from its own or earlier stages.
STAGES = {"atomic": 0, "errors": 0, "lock": 0, "device": 0, "figures": 0, "cli_args": 0,
          "decay": 1, "ops": 1, "positional": 1, "model": 2, "data": 3, "train": 4, "evaluate": 5, "analysis": 5,
          "sweep": 6, "commands": 7, "cli": 7,
          "": 2, "space": 2}  # "": the package root, which re-exports model/; space.py builds models
CHECKED = {name for name, stage in STAGES.items() if stage > 0}  # packages whose imports are checked
INDEPENDENT = {"evaluate", "analysis"}  # stages side by side that must not import each other


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the decaylab modules it imports anywhere in its body (lazy imports included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("decaylab"):
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("decaylab")}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def top(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def forbidden(importer: str, imported: str) -> bool:
    """Whether package ``importer`` may not import package ``imported``."""
    if importer == imported:
        return False
    return STAGES.get(imported, 99) > STAGES[importer] or {importer, imported} <= INDEPENDENT


def test_no_stage_imports_a_later_or_independent_stage():
    wrong = [f"{a} -> {b}" for a, targets in import_graph().items() if top(a) in CHECKED and not a.endswith("__main__")
             for b in targets if forbidden(top(a), top(b))]
    assert not wrong, wrong


def test_no_import_cycle_within_the_stages():
    graph = {a: {b for b in targets if top(b) in CHECKED and not b.startswith(a + ".")}
             for a, targets in import_graph().items() if top(a) in CHECKED}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, " -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else nxt
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
