"""The layers import one way (ARCHITECTURE.md): read every module's imports with ``ast``.

A package may import itself and the packages listed for it below, nothing else of attnlab;
no attnlab import may sit inside a function (where it would hide a cycle). Imports of optional
third-party packages inside functions are fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "attnlab"

# package -> the attnlab packages it may import (besides itself and the leaf `errors`)
ALLOWED = {
    "attention": set(),
    "models": {"attention"},
    "text": set(),
    "train": set(),
    "io": {"attention", "models", "text"},
    "tasks": {"attention", "models", "text", "io", "train", "inspect"},
    "inspect": {"attention", "models", "text", "io"},
    "cli": {"attention", "models", "text", "io", "train", "tasks", "inspect"},
}
LEAVES = {"errors", "configs"}  # modules of the top level that anyone may import
TOP = {"attention", "models", "inspect", "io"}  # what attnlab/__init__.py re-exports


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def package_of(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def attnlab_imports(tree: ast.AST) -> list[tuple[ast.stmt, str]]:
    """``(node, first package after attnlab)`` for every attnlab import in ``tree``."""
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "attnlab":
                names = [alias.name for alias in node.names]
            elif node.module.startswith("attnlab."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("attnlab.")]
        found += [(node, name) for name in names]
    return found


def test_every_package_is_known():
    packages = {package_of(p) for p in modules()} - {"__init__"}
    assert packages <= set(ALLOWED) | LEAVES, sorted(packages - set(ALLOWED) - LEAVES)


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_the_layers(path):
    package = package_of(path)
    allowed = TOP if package == "__init__" else ALLOWED.get(package, set())
    tree = ast.parse(path.read_text(encoding="utf-8"))
    wrong = [f"line {node.lineno}: attnlab.{name}"
             for node, name in attnlab_imports(tree)
             if name not in allowed | LEAVES | {package}]
    assert not wrong, f"{package} may import only {sorted(allowed)}: {wrong}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_attnlab_import_inside_a_function(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inside = []
    for func in ast.walk(tree):
        if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside += [f"line {node.lineno} in {func.name}()"
                       for node, _ in attnlab_imports(func)]
    assert not inside, f"attnlab imports inside functions: {sorted(set(inside))}"


def test_the_checks_can_fail(tmp_path):
    """The two checks see a lazy import and an upward import in a sample module."""
    tree = ast.parse("from attnlab.train import Trainer\n"
                     "def f():\n    from attnlab.io import load_model\n")
    assert [name for _, name in attnlab_imports(tree)] == ["train", "io"]
    assert "train" not in ALLOWED["models"] and "io" not in ALLOWED["train"]
