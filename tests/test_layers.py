"""The import rules docs/architecture.md states, read from the source (no import runs):
engine/ and statemachines/ import neither adapters/ nor api/, and no TF Serving message at
run time; a protocol package (api/tfserving, api/oip) never imports the other's, and what
every protocol shares (api/envelope) imports neither. Imports under `if TYPE_CHECKING:`
are annotations only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# folder → import prefixes its modules must not use at run time
RULES = {
    "engine": ("pyserving.adapters", "pyserving.api", "tensorflow_serving"),
    # the bottom layer: its machines report moves in plain values, so not even engine/
    "statemachines": (
        "pyserving.engine",
        "pyserving.adapters",
        "pyserving.api",
        "tensorflow_serving",
    ),
    "api/envelope": ("pyserving.api.tfserving", "pyserving.api.oip"),
    "api/tfserving": ("pyserving.api.oip",),
    "api/oip": ("pyserving.api.tfserving",),
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import a module runs, at any depth, outside TYPE_CHECKING."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from pyserving.api import oip` names a package too
            found.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def test_type_checking_imports_are_left_out_and_others_found() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import tensorflow_serving.apis\n"
        "if TYPE_CHECKING:\n    from pyserving.api.oip import codec\n"
        "def f():\n    from pyserving.api import oip\n"
    )
    modules = {module for _, module in runtime_imports(source)}
    assert "tensorflow_serving.apis" in modules
    assert "pyserving.api.oip" in modules  # the function's `from pyserving.api import oip`
    assert "pyserving.api.oip.codec" not in modules


@pytest.mark.parametrize("folder", sorted(RULES))
def test_no_import_crosses_the_layers(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"{folder} holds no module: the rule checks nothing"
    banned = RULES[folder]
    crossing = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in runtime_imports(path.read_text())
        if any(module == b or module.startswith(b + ".") for b in banned)
    ]
    assert not crossing, "\n".join(crossing)
