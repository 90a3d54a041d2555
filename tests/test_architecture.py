"""The package's import graph (see ARCHITECTURE.md): no cycle between modules, and every import points
down the pipeline, never from an earlier stage into a later one.

The graph is read from the source with ``ast``: module-level imports and lazy ones inside functions
alike (``import``, ``from … import``, relative imports, ``importlib.import_module("…")``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import decaylab

PACKAGE_DIR = Path(decaylab.__file__).parent

#: The pipeline, earliest first: a module may import from its own stage or an earlier one. A module's
#: stage is that of its top-level name under ``decaylab`` (``decaylab.model.layers`` → ``model``).
STAGES: tuple[tuple[str, ...], ...] = (
    ("atomic", "errors", "lock", "cli_args", "device", "figures"),  # shared helpers
    ("decay",),
    ("ops",),
    ("positional",),  # after ops: TPE runs on the operator
    ("model",),
    ("data",),
    ("train",),
    ("evaluate", "analysis"),
    ("sweep",),
    ("commands", "cli"),
)
#: ``decaylab/__init__.py`` re-exports the model and the operator.
ROOT_STAGE = "model"
#: Packages of one stage that must not import each other (each reads trained models on its own).
PEERS = frozenset({"evaluate", "analysis"})

def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module ``name`` stands for: itself, else the longest enclosing package (None outside decaylab)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """(dotted name, line) of everything ``module`` imports; ``from p import x`` yields ``p.x`` (which
    :func:`resolve` maps to ``p`` when x is not a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            names += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args and isinstance(node.args[0], ast.Constant)):
            names.append((node.args[0].value, node.lineno))
    return names


def import_graph() -> dict[str, dict[str, int]]:
    """importer → {imported module: first line}, for modules of decaylab only."""
    modules = module_files()
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in modules.items():
        for name, line in imported_names(module, path):
            target = resolve(name, modules) if name.startswith("decaylab") else None
            if target is not None and target != module:
                graph[module].setdefault(target, line)
    return graph


def top_name(module: str) -> str:
    """``decaylab.model.layers`` → ``model``; the package itself → :data:`ROOT_STAGE`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT_STAGE


def stage_of(module: str) -> int:
    """Index in :data:`STAGES`; a package's ``__main__`` is an entry point and sits on top."""
    if module.endswith(".__main__"):
        return len(STAGES) - 1
    return next(i for i, names in enumerate(STAGES) if top_name(module) in names)


def where(module: str, target: str, graph) -> str:
    path = module_files()[module].relative_to(PACKAGE_DIR.parent)
    return f"{path}:{graph[module][target]} imports {target}"


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle [a, b, …, a] of the graph, or None (depth-first search, iterative)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if root in state:
            continue
        path, stack = [root], [iter(graph[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(graph[nxt]))
    return None


def test_the_scanner_sees_lazy_and_module_level_imports():
    graph = import_graph()
    assert "decaylab.ops.chunk" in graph["decaylab.ops.api"]  # inside a function
    assert "decaylab.decay.base" in graph["decaylab.decay.spec"]  # at module level
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_every_module_belongs_to_a_stage():
    unplaced = []
    for module in import_graph():
        try:
            stage_of(module)
        except StopIteration:
            unplaced.append(module)
    assert not unplaced, f"add these modules' top-level names to STAGES in {__file__}: {unplaced}"


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + "; ".join(where(a, b, graph) for a, b in zip(cycle, cycle[1:]))


def points_up(module: str, target: str) -> bool:
    """True when ``module`` importing ``target`` goes against the pipeline (or between peers)."""
    peers = top_name(module) != top_name(target) and {top_name(module), top_name(target)} <= PEERS
    return peers or stage_of(target) > stage_of(module)


def reaches(graph: dict[str, dict[str, int]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += graph[node]
    return False


def test_imports_point_down_the_pipeline():
    graph = import_graph()
    wrong = [where(m, t, graph) for m, edges in graph.items() for t in edges if points_up(m, t)]
    assert not wrong, "imports from a later stage (or between evaluate and analysis):\n" + "\n".join(wrong)
