"""``quantgate keys ...`` and ``quantgate verify``: signing keys and provenance verification.

Registered by ``quantgate.cli``::

    from quantgate.cli_trust import keys_app, verify
    app.add_typer(keys_app, name="keys")
    app.command()(verify)

Imports stay lazy (cryptography and mlflow load only when a command runs). What the commands
share with ``quantgate.cli`` (``run``, the consoles) is in ``quantgate.cli_base``: this module never
imports ``quantgate.cli``, so the two cannot import in a cycle.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.text import Text

from quantgate.cli_base import err, run

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from quantgate.settings import Settings

EXIT_UNVERIFIED = 3  # like a failed gate: the command worked, the model did not pass

keys_app = typer.Typer(
    help="Signing keys for provenance statements: create one, list the trusted ones.", no_args_is_help=True
)
_out = Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _run(fn: Any) -> Any:
    return run(fn)


@keys_app.command("init")
def init(
    force: bool = typer.Option(False, "--force", help="Replace an existing key (the old public key stays trusted)."),
    publish: bool = typer.Option(
        False, "--publish", help="Also write the public key to registry/trusted_keys/ (commit it for the team)."
    ),
) -> None:
    """Create the ed25519 signing key under $QUANTGATE_HOME/keys/ and trust its public key."""

    def body() -> None:
        from quantgate.cards.signing import init_keys, project_trusted_dir
        from quantgate.settings import get_settings

        s = get_settings()
        info = init_keys(s, force=force, publish=publish)
        _out.print(f"signing key  {info.private_path} (mode 0600)")
        _out.print(f"keyid        {info.keyid}")
        for p in info.public_paths:
            _out.print(f"trusted      {p}")
        if not publish:
            _out.print(
                f"To make the team trust it, commit the public key: quantgate keys init --publish, or copy "
                f"{info.public_paths[0].name} to {project_trusted_dir(s)}/"
            )

    _run(body)


@keys_app.command("list")
def list_keys() -> None:
    """The signing key of this machine and every trusted public key, with where it comes from."""

    def body() -> None:
        from quantgate.cards.signing import (
            PUBLIC_SUFFIXES,
            key_id,
            load_public_key,
            load_signing_key,
            private_key_path,
            trusted_key_dirs,
        )
        from quantgate.settings import get_settings

        s = get_settings()
        key = load_signing_key(s)
        mine = key_id(key.public_key()) if key else None
        _out.print(f"signing key  {private_key_path(s)}: " + (mine or "none (quantgate keys init)"))
        for d in trusted_key_dirs(s):
            files = sorted(p for p in d.glob("*") if p.suffix in PUBLIC_SUFFIXES) if d.is_dir() else []
            _out.print(f"trusted in {d}: {len(files)}")
            for p in files:
                kid = key_id(load_public_key(p.read_bytes(), str(p)))
                _out.print(f"  {kid}{'  (this machine signs with it)' if kid == mine else ''}")

    _run(body)


def resolve_for_verify(ref: str, settings: Settings | None = None) -> ModelVersion:
    """``NAME[/VERSION|@ALIAS]``; a source model's name means its ``<name>-quantized`` model,
    as for ``quantgate promote`` (``adult-income@candidate`` -> ``adult-income-quantized@candidate``)."""
    from mlflow.exceptions import MlflowException

    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client, resolve_version

    name, _, _ = c.parse_model_ref(ref)
    if not name.endswith(c.SUFFIX):
        try:
            client(settings).get_registered_model(c.quantized_name(name))
            ref = c.quantized_name(name) + ref[len(name) :]
        except MlflowException:
            pass
    return resolve_version(ref, settings)


def verify(
    ref: str | None = typer.Argument(
        None, help="NAME[/VERSION|@ALIAS] of a quantized version, e.g. adult-income@candidate."
    ),
    ledger: str | None = typer.Option(
        None, "--ledger", help="Instead: check the promotion ledger of this model (hash chain, removed/edited entries)."
    ),
    policy: Path | None = typer.Option(
        None, "--policy", help="Check against this policy file instead of the one recorded in the statement."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check a version's signed provenance (signature by a trusted key, every file's sha256, the policy),
    or with --ledger NAME the hash chain of a model's promotion ledger."""

    def body() -> None:
        from quantgate.cards.trust import verify_version
        from quantgate.errors import QuantgateError
        from quantgate.settings import get_settings

        if ledger is not None:
            from quantgate.cli_ledger import verify_ledger

            return verify_ledger(ledger, as_json)
        if ref is None:
            raise QuantgateError("nothing to verify", "give NAME, NAME/VERSION or NAME@ALIAS, or --ledger NAME")
        s = get_settings()
        mv = resolve_for_verify(ref, s)
        report = verify_version(mv, settings=s, policy_file=policy)
        if as_json:
            _out.print(json.dumps(report.to_dict(), indent=2), markup=False)
        else:
            for line in report.lines():
                failed = line.startswith(("  FAIL", "NOT"))
                style = "red" if failed else ("green" if line.startswith(("  ok", "verified:")) else "")
                _out.print(Text(line, style=style))
        from quantgate.hardware import host_mismatch

        mismatch = host_mismatch(mv.tags.get("quantgate.target", ""))
        if mismatch:  # a warning, not a failure: the artifact is intact, the verdict's host differs
            err.print(f"[yellow]warning:[/] {mismatch}", highlight=False)
        if not report.passed:
            raise typer.Exit(EXIT_UNVERIFIED)

    _run(body)
