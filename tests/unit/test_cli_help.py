"""Every command's ``--help`` renders (Rich reads ``[...]`` in help text as markup: an unescaped
``NAME[/VERSION|@ALIAS]`` made ``quantgate verify --help`` crash with a MarkupError)."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from quantgate.cli import app


def _paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below a (Typer) group: its ``commands`` mapping, recursively."""
    out: list[tuple[str, ...]] = []
    for name, cmd in sorted(group.commands.items()):
        out.append((*prefix, name))
        if getattr(cmd, "commands", None):
            out.extend(_paths(cmd, (*prefix, name)))
    return out


def test_every_command_help_renders() -> None:
    root = typer.main.get_command(app)
    paths = _paths(root)
    assert len(paths) > 15
    runner = CliRunner()
    failed = {}
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        if result.exit_code != 0:
            failed[" ".join(path)] = repr(result.exception)
    assert not failed, failed
