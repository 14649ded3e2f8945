"""No import runs up a layer (shared/DESIGN.md §1): each module imports only from its own layer
and the layers below it. Imports under ``if TYPE_CHECKING:`` are annotations only and exempt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: Layer of each module, by longest matching prefix (lower numbers are lower layers).
LAYERS: dict[str, int] = {
    # 1. Vocabulary: pure data and helpers.
    "taskflow.states": 1,
    "taskflow.exceptions": 1,
    "taskflow.types": 1,
    "taskflow._config": 1,
    "taskflow._serialization": 1,
    "taskflow._plugins": 1,
    "taskflow.logging": 1,
    "taskflow.utils": 1,
    "taskflow": 1,  # the package itself
    # 2. Definitions: what users build.
    "taskflow.atom": 2,
    "taskflow.task": 2,
    "taskflow.retry": 2,
    "taskflow.flow": 2,
    "taskflow.deciders": 2,
    "taskflow.patterns": 2,
    "taskflow.tests": 2,  # upstream's example helpers: tasks and a context manager
    # 3. Persistence (and the engine's view of one flow detail).
    "taskflow.persistence": 3,
    "taskflow.storage": 3,
    "taskflow.utils.persistence_utils": 3,  # upstream's path for persistence helpers
    # 4. Engines.
    "taskflow.engines": 4,
    "taskflow._engine": 4,
    # 5. Distribution.
    "taskflow.jobs": 5,
    "taskflow._jobs": 5,
    "taskflow.conductors": 5,
    "taskflow._conductors": 5,
    "taskflow._workers": 5,  # the worker-based engine's machinery (engines.worker_based: 4)
    "taskflow.engines.worker_based": 5,
    # 6. Faces.
    "taskflow.listeners": 6,
    "taskflow.formatters": 6,
}


def layer_of(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def runtime_imports(tree: ast.AST, package: str) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            for child in node.orelse:  # type: ignore[attr-defined]
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return [name for name in found if name == "taskflow" or name.startswith("taskflow.")]


def _modules() -> list[Path]:
    return sorted((SRC / "taskflow").rglob("*.py"))


def test_every_module_has_a_layer():
    for path in _modules():
        layer_of(module_name(path))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: module_name(p))
def test_no_import_runs_up_a_layer(path: Path):
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    own = layer_of(module)
    tree = ast.parse(path.read_text(), str(path))
    upward = sorted(
        {
            name
            for name in runtime_imports(tree, package)
            if layer_of(name) > own and not _is_submodule_attribute(name)
        }
    )
    assert not upward, f"{module} (layer {own}) imports from higher layers: {upward}"


def _is_submodule_attribute(name: str) -> bool:
    # ``from taskflow.x import y`` is recorded as both "taskflow.x" and "taskflow.x.y"; a name
    # that is not a module of ours (a class, a function) is judged by its module.
    return (
        not (SRC / Path(*name.split("."))).with_suffix(".py").exists()
        and not (SRC / Path(*name.split("."))).is_dir()
    )


def test_the_check_sees_runtime_imports_but_not_annotation_only_ones():
    source = (
        "from typing import TYPE_CHECKING\n"
        "from taskflow import states\n"
        "if TYPE_CHECKING:\n"
        "    from taskflow.engines import base\n"
        "def late():\n"
        "    from taskflow._engine import compiler\n"
        "    import taskflow.listeners.base\n"
        "from . import graph\n"
    )
    found = runtime_imports(ast.parse(source), "taskflow.types")
    assert "taskflow._engine.compiler" in found
    assert "taskflow.listeners.base" in found
    assert "taskflow.types.graph" in found
    assert not any(name.startswith("taskflow.engines") for name in found)
    assert [layer_of(n) for n in ("taskflow.types.graph", "taskflow._engine.compiler")] == [1, 4]
