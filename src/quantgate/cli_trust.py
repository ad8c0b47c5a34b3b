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
    help="Signing keys for provenance statements: create, rotate, revoke, list.", no_args_is_help=True
)
_out = Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _run(fn: Any, *, configure: bool = True) -> Any:
    return run(fn, configure=configure)


def _say(text: str) -> None:
    """One line of a keys command: never wrapped (paths and key ids stay whole), never markup."""
    _out.print(text, soft_wrap=True, markup=False)


def _encryption_line(encrypted: bool) -> None:
    """Say plainly whether the private key just written is encrypted at rest."""
    from quantgate.cards.signing import PASSPHRASE_HINT, passphrase_source

    if encrypted:
        _say(f"encrypted    yes, with the passphrase from {passphrase_source() or 'the caller'}")
    else:
        _say("encrypted    NO: the private key is stored unencrypted (protected by mode 0600 only)")
        err.print(
            f"[yellow]warning:[/] the signing key is NOT encrypted at rest; to encrypt it, {PASSPHRASE_HINT}"
            " and run: quantgate keys rotate",
            highlight=False,
        )


@keys_app.command("init")
def init(
    force: bool = typer.Option(False, "--force", help="Replace an existing key (the old public key stays trusted)."),
    publish: bool = typer.Option(
        False, "--publish", help="Also write the public key to registry/trusted_keys/ (commit it for the team)."
    ),
) -> None:
    """Create the ed25519 signing key under $QUANTGATE_HOME/keys/ and trust its public key.

    The private key is encrypted at rest when QUANTGATE_SIGNING_KEY_PASSPHRASE (or
    QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE, a file holding it) is set; otherwise it is written
    unencrypted, and the command says so."""

    def body() -> None:
        from quantgate.cards.signing import init_keys, project_trusted_dir
        from quantgate.settings import get_settings

        s = get_settings()
        info = init_keys(s, force=force, publish=publish)
        _say(f"signing key  {info.private_path} (mode 0600)")
        _say(f"keyid        {info.keyid}")
        _encryption_line(info.encrypted)
        for p in info.public_paths:
            _say(f"trusted      {p}")
        if not publish:
            _say(
                f"To make the team trust it, commit the public key: quantgate keys init --publish, or copy "
                f"{info.public_paths[0].name} to {project_trusted_dir(s)}/"
            )

    _run(body, configure=False)


@keys_app.command("rotate")
def rotate(
    revoke_old: bool = typer.Option(
        False, "--revoke-old", help="Also revoke the old key: every statement it signed is then refused."
    ),
    publish: bool = typer.Option(
        False, "--publish", help="Also write the new public key to registry/trusted_keys/ (commit it for the team)."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why, recorded in revoked.txt with --revoke-old."),
) -> None:
    """Replace the signing key with a new one; the old one stays trusted unless --revoke-old.

    The new public key is trusted wherever the old one was (this machine, and registry/trusted_keys/
    when the old one was published there or with --publish). Statements signed with the old key keep
    verifying unless --revoke-old adds it to the revocation list. Prints both key ids."""

    def body() -> None:
        from quantgate.cards.signing import project_trusted_dir, rotate_keys
        from quantgate.settings import get_settings

        s = get_settings()
        r = rotate_keys(s, revoke_old=revoke_old, publish=publish, reason=reason)
        if r.revoked is not None:
            _say(f"old keyid    {r.old_keyid}  REVOKED in {r.revoked.file}: statements it signed are refused")
        else:
            _say(f"old keyid    {r.old_keyid}  still trusted: statements it signed keep verifying")
        _say(f"new keyid    {r.new.keyid}  signs from now on")
        _say(f"signing key  {r.new.private_path} (mode 0600)")
        _encryption_line(r.new.encrypted)
        for p in r.new.public_paths:
            _say(f"trusted      {p}")
        project = project_trusted_dir(s).resolve()
        to_commit = [p for p in r.new.public_paths if p.parent.resolve() == project]
        to_commit += [r.revoked.file] if r.revoked is not None and r.revoked.already is None else []
        if to_commit:
            _say("Commit for the team: " + " ".join(str(p) for p in to_commit))
        else:
            _say(f"To make the team trust the new key, copy {r.new.public_paths[0].name} to {project}/ and commit it")

    _run(body, configure=False)


@keys_app.command("revoke")
def revoke(
    keyid: str = typer.Argument(..., help="The key id to revoke (64 hex, or a unique prefix of a trusted key)."),
    reason: str | None = typer.Option(None, "--reason", help="Why, recorded as a comment in revoked.txt."),
) -> None:
    """Revoke a key: add its id to registry/trusted_keys/revoked.txt (commit it).

    Every statement the key signed is then refused wherever quantgate verifies a signature
    (verify, promote, approval, serve), even while its .pub file stays in a trusted directory."""

    def body() -> None:
        from quantgate.cards.signing import key_id, load_signing_key, revoke_key
        from quantgate.errors import ConfigError
        from quantgate.settings import get_settings

        s = get_settings()
        r = revoke_key(keyid, s, reason=reason)
        if r.already:
            _say(f"revoked      {r.keyid} already ({r.already})")
        else:
            _say(f"revoked      {r.keyid} in {r.file}")
            _say(f"Statements signed by it no longer verify. Commit {r.file} for the team.")
        try:
            key = load_signing_key(s)
        except ConfigError:
            key = None  # e.g. encrypted and no passphrase here: nothing to compare
        if key is not None and key_id(key.public_key()) == r.keyid:
            err.print(
                "[yellow]warning:[/] this machine signs with the revoked key; run: quantgate keys rotate",
                highlight=False,
            )

    _run(body, configure=False)


@keys_app.command("list")
def list_keys() -> None:
    """Show the signing key of this machine and every trusted public key, and which are revoked."""

    def body() -> None:
        from quantgate.cards.signing import (
            PUBLIC_SUFFIXES,
            key_id,
            load_public_key,
            load_revoked,
            load_signing_key,
            private_key_path,
            revocation_files,
            signing_key_is_encrypted,
            trusted_key_dirs,
        )
        from quantgate.errors import ConfigError
        from quantgate.settings import get_settings

        s = get_settings()
        encrypted = signing_key_is_encrypted(s)
        try:
            key = load_signing_key(s)
            mine = key_id(key.public_key()) if key else None
        except ConfigError as exc:
            key, mine = None, f"unreadable ({exc.one_line()})"
        at_rest = {None: "", True: " (encrypted)", False: " (unencrypted)"}[encrypted]
        _say(f"signing key  {private_key_path(s)}: " + (mine or "none (quantgate keys init)") + at_rest)
        revoked = load_revoked(s)
        for d in trusted_key_dirs(s):
            files = sorted(p for p in d.glob("*") if p.suffix in PUBLIC_SUFFIXES) if d.is_dir() else []
            _say(f"trusted in {d}: {len(files)}")
            for p in files:
                kid = key_id(load_public_key(p.read_bytes(), str(p)))
                notes = ["  REVOKED (" + revoked[kid] + ")"] if kid in revoked else []
                notes += ["  (this machine signs with it)"] if kid == mine else []
                _say(f"  {kid}{''.join(notes)}")
        lists = [f for f in revocation_files(s) if f.is_file()]
        if lists:
            _say(f"revoked: {len(revoked)} key{'s' * (len(revoked) != 1)} in {', '.join(map(str, lists))}")
        else:
            _say(f"revoked: none (no {revocation_files(s)[0]})")

    _run(body, configure=False)


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
        None, help="NAME\\[/VERSION|@ALIAS] of a quantized version, e.g. adult-income@candidate."
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
