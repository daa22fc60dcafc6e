"""The package's shape, checked from its source: no import cycles; models are pure PyTorch and do not
reach into data, training, inference or the CLI; Lightning appears only in ``umt/training``.

Imports inside ``if TYPE_CHECKING:`` are annotations only and do not count; imports inside
functions do (they are dependencies all the same, only deferred).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "umt"


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for child in node.body for inner in ast.walk(child))
    return skipped


def _owner(name: str) -> str:
    """The module ``name`` is, or the package it is a name in."""
    while name not in modules():
        name = name.rpartition(".")[0]
    return name


@cache
def imports() -> dict[str, set[str]]:
    """Module -> the umt modules it imports (all imports but annotation-only ones)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_nodes(tree)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets.update(_owner(a.name) for a in node.names if a.name.split(".")[0] == "umt")
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parents, base] if base else parents)
                if base.split(".")[0] == "umt":
                    targets.update(_owner(f"{base}.{a.name}") for a in node.names)
        graph[module] = targets - {module}
    return graph


def test_the_graph_sees_the_package() -> None:
    graph = imports()
    assert "umt.vocab" in graph["umt.models.translator"]
    assert "umt.modalities" in graph["umt.vocab"]
    assert "umt.pretrained" in graph["umt.report"]  # imported inside a function: it counts too


def test_no_import_cycles() -> None:
    graph = imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_models_are_pure_pytorch() -> None:
    forbidden = ("umt.data", "umt.training", "umt.cli", "umt.inference", "umt.demo", "umt.evaluation")
    for module, targets in imports().items():
        if module.startswith("umt.models"):
            bad = sorted(t for t in targets if t.startswith(forbidden))
            assert not bad, f"{module} imports {bad}"


def test_lightning_only_in_training() -> None:
    for module, path in modules().items():
        if module.startswith("umt.training"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(name.split(".")[0] in ("lightning", "pytorch_lightning") for name in names), module
