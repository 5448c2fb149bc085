"""No import cycle between the subpackages of ssd_resnet34 (issue 14, "No cycles").

Every module's imports are read with ``ast``, at every depth (function-level lazy imports and
``TYPE_CHECKING`` blocks count: a lazy import is still a dependency), and mapped to the unit they
belong to: a subpackage (``cli``, ``distributed``, ``evaluation.accuracy``, ...) or a top-level
module (``detector``, ``pipeline``, ...). The graph of those units must have no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

from _paths import REPO_ROOT

PACKAGE = REPO_ROOT / "python" / "ssd_resnet34"
NAME = "ssd_resnet34"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(path: Path, root: Path) -> Iterator[str]:
    """Absolute names of the package's modules (or names inside them) that ``path`` imports."""
    is_package = path.name == "__init__.py"
    package = _module_name(path, root).split(".")
    if not is_package:
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == root.name or module.startswith(root.name + "."):
                for alias in node.names:  # "from . import detect" names a module too
                    yield f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == root.name or alias.name.startswith(root.name + "."):
                    yield alias.name


def unit_of(module: str, units: Set[str]) -> Optional[str]:
    """The longest unit that ``module`` (a dotted name) is or lies in."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in units:
            return candidate
    return None


def unit_graph(root: Path) -> Dict[str, Set[str]]:
    """unit -> the units it imports (itself left out). A unit is each package folder (the
    root's own modules are units each)."""
    modules = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    units = {_module_name(p.parent / "__init__.py", root) for p in modules if (p.parent / "__init__.py").is_file()}
    units |= {_module_name(p, root) for p in modules if p.parent == root and p.name != "__init__.py"}
    units.discard(root.name)  # the root package itself re-exports everything: not a unit
    graph: Dict[str, Set[str]] = {unit: set() for unit in units}
    for path in modules:
        source = unit_of(_module_name(path, root), units)
        if source is None:
            continue
        for name in _imported(path, root):
            target = unit_of(name, units)
            if target is not None and target != source:
                graph[source].add(target)
    short = len(root.name) + 1  # "ssd_resnet34.cli" -> "cli"
    return {unit[short:]: {target[short:] for target in targets} for unit, targets in graph.items()}


def nested(unit: str, other: str) -> bool:
    """``evaluation`` and ``evaluation.accuracy``: a package and its own subpackage."""
    return other.startswith(unit + ".") or unit.startswith(other + ".")


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle ``[a, b, ..., a]`` of the graph (ignoring edges between a package and its own
    subpackages, whose ``__init__`` re-exports them), or None."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if nested(node, target):
                continue
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_subpackages():
    graph = unit_graph(PACKAGE)
    assert {"cli", "distributed", "image", "output", "engines", "model"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between subpackages: " + " -> ".join(cycle)


def test_the_command_line_imports_distributed_and_not_the_reverse():
    graph = unit_graph(PACKAGE)
    assert "distributed" in graph["cli"]
    assert "cli" not in graph["distributed"]


def test_the_checker_finds_a_lazy_cycle(tmp_path):
    """A function-level import that closes a cycle (the kind the lazy imports hide) is found."""
    root = tmp_path / NAME
    for folder, text in {
        "a": "from ..b import thing\n",
        "b": "def thing():\n    from ..c.mod import x\n    return x\n",
        "c": "import typing\nif typing.TYPE_CHECKING:\n    pass\n",
    }.items():
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text(text)
    (root / "__init__.py").write_text("")
    (root / "c" / "mod.py").write_text("x = 1\n")
    graph = unit_graph(root)
    assert find_cycle(graph) is None
    (root / "c" / "mod.py").write_text("def late():\n    from ssd_resnet34.a import y\n    return y\n")
    assert find_cycle(unit_graph(root)) == ["a", "b", "c", "a"]
