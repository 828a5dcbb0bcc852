"""The layers import only downwards: statemachines/ < engine/ < adapters/ < api/.

Read from the source (no imports run), so a new module is checked as soon as it exists.
An import under `if TYPE_CHECKING:` is only an annotation and is allowed in engine/ (its
views name generated messages); statemachines/ imports nothing of pyserving at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ABOVE = {
    "statemachines": ("pyserving.engine", "pyserving.adapters", "pyserving.api"),
    "engine": ("pyserving.adapters", "pyserving.api"),
}


def runtime_imports(tree: ast.Module, include_type_checking: bool) -> list[tuple[int, str]]:
    """(line, module) of every import, skipping `if TYPE_CHECKING:` blocks unless asked."""
    found: list[tuple[int, str]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.extend((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((node.lineno, node.module))
            elif isinstance(node, ast.If):
                guard = ast.unparse(node.test)
                if include_type_checking or guard not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Try):
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.With | ast.AsyncWith | ast.For | ast.While):
                visit(node.body)

    visit(tree.body)
    return found


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    modules = sorted((ROOT / layer).rglob("*.py"))
    assert modules, f"no modules under {layer}/"
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules
        for line, name in runtime_imports(
            ast.parse(path.read_text()), include_type_checking=layer == "statemachines"
        )
        if name.startswith(ABOVE[layer])
    ]
    assert upward == []


def test_the_scan_sees_an_upward_import() -> None:
    """The check itself can fail: an import of engine/ in a machine's module is found."""
    tree = ast.parse("if TYPE_CHECKING:\n    from pyserving.engine.events import Transition\n")
    assert runtime_imports(tree, include_type_checking=True) == [(2, "pyserving.engine.events")]
    assert runtime_imports(tree, include_type_checking=False) == []
