"""The validate package keeps its layers: no import cycle, and the light modules stay light.

Reads the source with ``ast`` (module- and function-level imports alike), so it needs neither
pandas nor GX to run and catches an import that only happens inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "src" / "quantgate" / "validate"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _module_level_imports(path: Path) -> set[str]:
    """Imports that run when the module loads (not inside functions or ``if TYPE_CHECKING``)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    mods = {f"quantgate.validate.{p.stem}": p for p in PKG.glob("*.py") if p.stem != "__init__"}
    return {m: {t for t in _imports(p) if t in mods and t != m} for m, p in mods.items()}


def test_no_import_cycle_inside_validate() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(m) :], m]))
        if m in done:
            return
        for t in sorted(graph[m]):
            visit(t, [*path, m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])


@pytest.mark.parametrize("module", ["schema", "report", "report_html", "columns", "checks", "governance"])
def test_light_modules_load_no_data_library(module: str) -> None:
    """The gate policy and the report models are imported by the CLI and the policy layer."""
    heavy = {"pandas", "numpy", "great_expectations", "evidently"}
    loaded = {m.split(".")[0] for m in _module_level_imports(PKG / f"{module}.py")}
    assert not loaded & heavy


def test_the_policy_model_depends_on_nothing_in_validate() -> None:
    assert not {m for m in _imports(PKG / "schema.py") if m.startswith("quantgate")}
    policy_schema = PKG.parents[0] / "policy" / "schema.py"
    validate_imports = {m for m in _imports(policy_schema) if m.startswith("quantgate.validate")}
    assert validate_imports == {"quantgate.validate.schema"}
