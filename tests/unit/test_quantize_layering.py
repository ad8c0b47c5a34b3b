"""quantize/ imports in one direction: base <- backends <- recipes <- tuner/bench (no cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import quantgate.quantize as pkg

ROOT = Path(pkg.__file__).parent


def _graph() -> dict[str, set[str]]:
    mods = {f.stem: f for f in ROOT.glob("*.py") if f.stem != "__init__"}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                if n.startswith("quantgate.quantize."):
                    target = n.split(".")[2]
                    if target in mods and target != m:
                        graph[m].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_import_cycle_in_quantize() -> None:
    graph = _graph()
    assert {"base", "recipes", "onnx_backend", "torch_backend"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_base_imports_no_backend() -> None:
    assert _graph()["base"] == set()


def test_cycle_detector_sees_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
