"""``pyproject.toml`` promises only what exists: console scripts, plugin entry points, extras."""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
#: Extras that install tools for working on this project rather than features of it.
DEVELOPMENT_EXTRAS = {"test", "dev"}


def _module_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"no module {module}"
    assert spec.origin, f"no source for {module}"
    return Path(spec.origin).read_text(encoding="utf-8")


def _top_level_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _targets(table: dict[str, str]) -> list[tuple[str, str]]:
    return [tuple(target.split(":")) for target in table.values()]  # type: ignore[misc]


@pytest.mark.parametrize(
    ("module", "attr"),
    [
        *_targets(PROJECT.get("scripts", {})),
        *(
            target
            for group, table in PROJECT.get("entry-points", {}).items()
            if group.startswith("taskflow.")
            for target in _targets(table)
        ),
    ],
)
def test_every_script_and_entry_point_names_an_existing_object(module, attr):
    # Read, not imported: a backend's module needs its optional driver to import.
    assert attr in _top_level_names(_module_source(module))


def _imported_top_modules(directory: Path) -> set[str]:
    """Top-level names of every module imported under ``directory``.

    Statically, by ``import_module("name")``, or as a SQL dialect's ``default_driver``, which
    SQLAlchemy imports for it.
    """
    found: set[str] = set()
    for path in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute | ast.Name)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value.split(".")[0])
            elif (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "default_driver" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                found.add(node.value.value)
    return found


def test_every_feature_extra_installs_only_what_the_package_imports():
    imported = _imported_top_modules(ROOT / "src" / "taskflow")
    unused = {}
    for extra, requirements in PROJECT["optional-dependencies"].items():
        if extra in DEVELOPMENT_EXTRAS:
            continue
        for requirement in requirements:
            name = re.match(r"[A-Za-z0-9_.-]+", requirement)
            assert name is not None, requirement
            module = name[0].lower().replace("-", "_")
            if module not in imported:
                unused.setdefault(extra, []).append(requirement)
    assert unused == {}
