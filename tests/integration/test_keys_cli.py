"""`quantgate keys init|rotate|revoke|list` through the real CLI app (typer's CliRunner) in a tmp
QUANTGATE_HOME and QUANTGATE_PROJECT_DIR: the key encrypted at rest, rotation keeping old
statements verifiable, revocation refusing them (issue 26, "Keys")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

ENCRYPTED_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
PASSPHRASE = "integration passphrase"
POLICY_TEXT = "name: keys\nrules: []\n"


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    from quantgate.settings import reset_settings

    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("QUANTGATE_HOME", str(home))
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(project))
    for var in (
        "QUANTGATE_SIGNING_KEY",
        "QUANTGATE_TRUSTED_KEYS",
        "QUANTGATE_SIGNING_KEY_PASSPHRASE",
        "QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    reset_settings()
    yield {"home": home, "project": project, "tmp": tmp_path}
    reset_settings()


def _cli(*args: str) -> Any:
    from quantgate.cli import app
    from quantgate.settings import reset_settings

    reset_settings()  # each command reads the environment as a new process would
    result = CliRunner().invoke(app, ["keys", *args])
    assert "Traceback" not in result.output, result.output
    return result


def _field(output: str, name: str) -> str:
    """The value printed after ``name`` (``old keyid    3b9c…  still trusted`` -> ``3b9c…``)."""
    line = next(ln for ln in output.splitlines() if ln.startswith(name))
    return line[len(name) :].split()[0]


def _model_and_statement(root: Path) -> tuple[Path, dict[str, Any]]:
    from quantgate.cards import provenance as prov

    d = root / "model"
    (d / "artifacts").mkdir(parents=True)
    (d / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (d / "artifacts" / "module.pt").write_bytes(os.urandom(1024))
    policy = root / "keys.yaml"
    policy.write_text(POLICY_TEXT)
    ctx = {
        "data": {"paths": {"evaluation": "/d/eval.csv"}, "digests": {"evaluation": "sha256:" + "02" * 32}},
        "policy": {"name": "keys", "digest": prov.policy_file_digest(policy)},
        "recipe": {"label": "dynamic-int8", "digest": "sha256:" + "ab" * 32, "json": {"_type": "dynamic-int8"}},
    }
    st = prov.build_statement(
        d,
        name="tiny-quantized",
        source={"name": "tiny", "version": "1", "digest": "sha256:" + "ee" * 32},
        materials=prov.materials_from_context(ctx, policy_path=policy),
        builder=prov.prefect_builder(flow_run_id="run-keys", flow_name="quantize-model"),
    )
    return d, st


def _sign_with_configured_key(statement: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """What attach_provenance does: the configured key (decrypted with the env passphrase) signs."""
    from quantgate.cards.signing import ensure_signing_key, sign_statement
    from quantgate.settings import get_settings, reset_settings

    reset_settings()
    key, kid = ensure_signing_key(get_settings())
    return sign_statement(statement, key), kid


def _verify(model_dir: Path, envelope: dict[str, Any]) -> Any:
    """Verification as promote/verify do it: the trusted keys (and revocations) of this project."""
    from quantgate.cards.signing import load_trusted_keys
    from quantgate.cards.verify import verify_model
    from quantgate.settings import get_settings, reset_settings

    reset_settings()
    return verify_model(model_dir, envelope, load_trusted_keys(get_settings()))


def _signature(report: Any) -> Any:
    return next(ch for ch in report.checks if ch.name == "signature")


def test_init_encrypts_rotate_keeps_old_statements_revoke_refuses_them(
    project: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, proj = project["home"], project["project"]
    key_file = home / "keys" / "signing.key"
    secret = project["tmp"] / "passphrase.txt"
    secret.write_text(PASSPHRASE + "\n")
    monkeypatch.setenv("QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE", str(secret))

    # init with a passphrase: the key file is encrypted
    result = _cli("init", "--publish")
    assert result.exit_code == 0, result.output
    old = _field(result.stdout, "keyid")
    assert key_file.read_bytes().startswith(ENCRYPTED_HEADER)
    assert "encrypted    yes, with the passphrase from the file named by QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE" in (
        result.stdout
    )
    assert (proj / "registry" / "trusted_keys" / f"{old}.pub").is_file()

    model_dir, statement = _model_and_statement(project["tmp"])
    old_envelope, signer = _sign_with_configured_key(statement)
    assert signer == old
    assert _verify(model_dir, old_envelope).passed

    # without the passphrase, or with a wrong one: one line naming the variable, exit 2
    monkeypatch.delenv("QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE")
    result = _cli("rotate")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith("error: the signing key") and len(result.stderr.strip().splitlines()) == 1
    assert "is encrypted and no passphrase is configured" in result.stderr
    assert "QUANTGATE_SIGNING_KEY_PASSPHRASE" in result.stderr
    monkeypatch.setenv("QUANTGATE_SIGNING_KEY_PASSPHRASE", "not it")
    result = _cli("rotate")
    assert result.exit_code == 2 and "wrong passphrase" in result.stderr, result.output
    assert "(from QUANTGATE_SIGNING_KEY_PASSPHRASE)" in result.stderr
    result = _cli("list")  # listing still works and says why the key id is not shown
    assert result.exit_code == 0 and "(encrypted)" in result.stdout and "wrong passphrase" in result.stdout
    monkeypatch.setenv("QUANTGATE_SIGNING_KEY_PASSPHRASE", PASSPHRASE)

    # rotate: both key ids printed, the new key signs, the old statement still verifies
    result = _cli("rotate")
    assert result.exit_code == 0, result.output
    assert _field(result.stdout, "old keyid") == old and "still trusted" in result.stdout
    new = _field(result.stdout, "new keyid")
    assert new != old and len(new) == 64
    assert key_file.read_bytes().startswith(ENCRYPTED_HEADER)
    assert (proj / "registry" / "trusted_keys" / f"{new}.pub").is_file()  # published where the old one was
    new_envelope, signer = _sign_with_configured_key(statement)
    assert signer == new
    assert _verify(model_dir, new_envelope).passed
    assert _verify(model_dir, old_envelope).passed  # the old public key stays trusted

    # revoke the old key (by the 16-hex prefix the reports print): its statement is refused
    result = _cli("revoke", old[:16], "--reason", "rotated out")
    assert result.exit_code == 0, result.output
    revoked_txt = proj / "registry" / "trusted_keys" / "revoked.txt"
    assert f"revoked      {old} in {revoked_txt}" in result.stdout
    assert f"{old}  # rotated out" in revoked_txt.read_text()
    assert (proj / "registry" / "trusted_keys" / f"{old}.pub").is_file()  # still there, still refused
    report = _verify(model_dir, old_envelope)
    assert not report.passed
    assert _signature(report).detail.startswith(f"signed by revoked key {old} (revoked in {revoked_txt}:")
    assert _verify(model_dir, new_envelope).passed
    result = _cli("revoke", old)
    assert result.exit_code == 0 and "already" in result.stdout
    result = _cli("list")
    assert result.exit_code == 0, result.output
    assert f"{old}  REVOKED" in result.stdout and f"{new}  (this machine signs with it)" in result.stdout
    assert "revoked: 1 key in" in result.stdout

    # rotate --revoke-old: the key that signed new_envelope is revoked in the same step
    result = _cli("rotate", "--revoke-old")
    assert result.exit_code == 0, result.output
    assert _field(result.stdout, "old keyid") == new and "REVOKED" in result.stdout
    newest = _field(result.stdout, "new keyid")
    assert "revoked key" in _signature(_verify(model_dir, new_envelope)).detail
    latest_envelope, signer = _sign_with_configured_key(statement)
    assert signer == newest and _verify(model_dir, latest_envelope).passed

    # revoking the key this machine signs with: a warning, and signing then refuses
    result = _cli("revoke", newest)
    assert result.exit_code == 0 and "this machine signs with the revoked key" in result.stderr
    from quantgate.errors import ConfigError

    with pytest.raises(ConfigError, match="is revoked"):
        _sign_with_configured_key(statement)


def test_init_without_a_passphrase_says_the_key_is_unencrypted(project: dict[str, Path]) -> None:
    result = _cli("init")
    assert result.exit_code == 0, result.output
    key_file = project["home"] / "keys" / "signing.key"
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert "encrypted    NO" in result.stdout
    assert "warning: the signing key is NOT encrypted at rest" in result.stderr
    assert "QUANTGATE_SIGNING_KEY_PASSPHRASE" in result.stderr
    result = _cli("init")
    assert result.exit_code == 2 and "a signing key already exists" in result.stderr, result.output
    result = _cli("list")
    assert result.exit_code == 0 and "(unencrypted)" in result.stdout, result.output
