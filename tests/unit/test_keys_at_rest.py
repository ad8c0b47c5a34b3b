"""The signing key at rest (passphrase encryption), rotation and the revocation list (issue 26, "Keys").

Pure: keys, PEM files and DSSE envelopes in tmp, no MLflow, no CLI.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from quantgate.cards import signing
from quantgate.errors import ConfigError
from quantgate.settings import Settings

STATEMENT = {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "f", "digest": {"sha256": "00"}}]}
ENCRYPTED_HEADER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


@pytest.fixture()
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No key, passphrase or trust configuration inherited from the environment."""
    for var in (
        signing.ENV_SIGNING_KEY,
        signing.ENV_TRUSTED_KEYS,
        signing.ENV_PASSPHRASE,
        signing.ENV_PASSPHRASE_FILE,
    ):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture()
def s(tmp_path: Path, env: pytest.MonkeyPatch) -> Settings:
    return Settings(home=tmp_path / "home", project_dir=tmp_path / "project")


def _one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    text = exc.value.one_line()
    assert "\n" not in text and "Traceback" not in text
    return text


# --- encryption at rest ----------------------------------------------------------------------


def test_encrypted_pem_round_trip(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = signing.private_key_pem(key, b"correct horse")
    assert pem.startswith(ENCRYPTED_HEADER) and signing.is_encrypted_pem(pem)
    path = tmp_path / "signing.key"
    path.write_bytes(pem)
    loaded = signing.load_private_key(path, b"correct horse")
    assert signing.key_id(loaded.public_key()) == signing.key_id(key.public_key())
    plain = signing.private_key_pem(key, None)
    assert plain.startswith(b"-----BEGIN PRIVATE KEY-----") and not signing.is_encrypted_pem(plain)


def test_wrong_or_missing_passphrase_is_one_line_naming_the_env_var(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    path = tmp_path / "signing.key"
    path.write_bytes(signing.private_key_pem(Ed25519PrivateKey.generate(), b"right"))
    with pytest.raises(ConfigError) as missing:
        signing.load_private_key(path)  # nothing configured in the environment
    text = _one_line(missing)
    assert "is encrypted and no passphrase is configured" in text and str(path) in text
    assert signing.ENV_PASSPHRASE in text and signing.ENV_PASSPHRASE_FILE in text

    env.setenv(signing.ENV_PASSPHRASE, "wrong")
    with pytest.raises(ConfigError) as wrong:
        signing.load_private_key(path)
    text = _one_line(wrong)
    assert text.startswith(f"wrong passphrase for the encrypted signing key {path} (from {signing.ENV_PASSPHRASE})")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        signing.load_private_key(path, b"also wrong")


def test_passphrase_from_env_or_file_encrypts_init_and_loads_back(
    s: Settings, tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("from a file\n")  # a trailing newline, as `echo > file` writes it
    env.setenv(signing.ENV_PASSPHRASE_FILE, str(secret))
    info = signing.init_keys(s)
    assert info.encrypted
    assert info.private_path.read_bytes().startswith(ENCRYPTED_HEADER)
    assert stat.S_IMODE(info.private_path.stat().st_mode) == 0o600
    assert signing.signing_key_is_encrypted(s) is True
    assert signing.load_private_key(info.private_path, b"from a file") is not None  # newline dropped
    assert signing.ensure_signing_key(s)[1] == info.keyid

    env.delenv(signing.ENV_PASSPHRASE_FILE)
    env.setenv(signing.ENV_PASSPHRASE, "from a file")  # the same passphrase, from the variable
    assert signing.ensure_signing_key(s)[1] == info.keyid
    env.delenv(signing.ENV_PASSPHRASE)
    with pytest.raises(ConfigError, match=signing.ENV_PASSPHRASE):
        signing.ensure_signing_key(s)


def test_an_existing_unencrypted_key_keeps_working_when_a_passphrase_is_set(
    s: Settings, env: pytest.MonkeyPatch
) -> None:
    info = signing.init_keys(s)  # no passphrase configured: unencrypted, and KeyInfo says so
    assert not info.encrypted and signing.signing_key_is_encrypted(s) is False
    env.setenv(signing.ENV_PASSPHRASE, "added later")
    assert signing.ensure_signing_key(s)[1] == info.keyid


@pytest.mark.parametrize(
    ("value", "file_text", "match"),
    [
        ("a", "b", "both"),  # which one would win? neither: an error
        ("", None, "set but empty"),  # a CI secret that did not expand
        (None, "", "is empty"),
        (None, "\n", "is empty"),
    ],
)
def test_a_passphrase_misconfiguration_is_an_error_before_anything_is_written(
    s: Settings, tmp_path: Path, env: pytest.MonkeyPatch, value: str | None, file_text: str | None, match: str
) -> None:
    if value is not None:
        env.setenv(signing.ENV_PASSPHRASE, value)
    if file_text is not None:
        (tmp_path / "pw").write_text(file_text)
        env.setenv(signing.ENV_PASSPHRASE_FILE, str(tmp_path / "pw"))
    with pytest.raises(ConfigError, match=match):
        signing.init_keys(s)
    assert not signing.private_key_path(s).exists()


def test_an_unreadable_passphrase_file_is_named(s: Settings, tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    env.setenv(signing.ENV_PASSPHRASE_FILE, str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as exc:
        signing.signing_key_passphrase()
    assert str(tmp_path / "missing") in _one_line(exc) and signing.ENV_PASSPHRASE_FILE in exc.value.message


# --- revocation ------------------------------------------------------------------------------


def _trusted(*keys: Ed25519PrivateKey) -> dict[str, Any]:
    return {signing.key_id(k.public_key()): k.public_key() for k in keys}


def test_verify_envelope_refuses_a_revoked_key_even_when_trusted() -> None:
    key = Ed25519PrivateKey.generate()
    kid = signing.key_id(key.public_key())
    envelope = signing.sign_statement(STATEMENT, key)
    assert signing.verify_envelope(envelope, _trusted(key)).signed_by == kid

    check = signing.verify_envelope(envelope, _trusted(key), revoked={kid: "revoked.txt:4"})
    assert check.signed_by is None and check.payload is not None
    assert check.problem == f"signed by revoked key {kid} (revoked in revoked.txt:4)"
    check = signing.verify_envelope(envelope, signing.TrustedKeySet(_trusted(key), {kid: "list:1"}))
    assert check.signed_by is None and f"revoked key {kid}" in (check.problem or "")
    check = signing.verify_envelope(envelope, _trusted(key), revoked=[kid.upper()])
    assert check.problem == f"signed by revoked key {kid}"


def test_a_second_signature_by_a_trusted_key_still_verifies() -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    envelope = signing.sign_statement(STATEMENT, old)
    envelope["signatures"] += signing.sign_statement(STATEMENT, new)["signatures"]
    check = signing.verify_envelope(envelope, _trusted(old, new), revoked=[signing.key_id(old.public_key())])
    assert check.signed_by == signing.key_id(new.public_key())


def test_revoked_keys_leave_the_trusted_set_and_the_project_list_always_counts(
    s: Settings, tmp_path: Path, env: pytest.MonkeyPatch
) -> None:
    info = signing.init_keys(s, publish=True)
    assert set(signing.load_trusted_keys(s)) == {info.keyid}
    project_list = s.path(signing.PROJECT_TRUSTED_DIR) / "revoked.txt"
    project_list.write_text(f"# the team's list\n\n{info.keyid.upper()}   # lost laptop\n")
    keys = signing.load_trusted_keys(s)
    assert dict(keys) == {} and keys.revoked == {info.keyid: f"{project_list}:3"}

    elsewhere = tmp_path / "only-these"  # a strict verifier trusting another directory
    elsewhere.mkdir()
    (elsewhere / info.public_paths[0].name).write_bytes(info.public_paths[0].read_bytes())
    env.setenv(signing.ENV_TRUSTED_KEYS, str(elsewhere))
    keys = signing.load_trusted_keys(s)
    assert info.keyid not in keys and info.keyid in keys.revoked  # the project's list still applies
    envelope = signing.sign_statement(STATEMENT, signing.load_signing_key(s))  # type: ignore[arg-type]
    assert f"signed by revoked key {info.keyid}" in (signing.verify_envelope(envelope, keys).problem or "")


def test_a_malformed_revocation_line_is_an_error_naming_it(s: Settings) -> None:
    d = s.path(signing.PROJECT_TRUSTED_DIR)
    d.mkdir(parents=True)
    (d / "revoked.txt").write_text("# ok\n3b9c0e51a2f4d7e8  # a prefix is not a key id\n")
    with pytest.raises(ConfigError, match=r"revoked\.txt:2 is not a key id"):
        signing.load_trusted_keys(s)


def test_revoke_key_expands_a_prefix_is_idempotent_and_stops_signing(s: Settings) -> None:
    info = signing.init_keys(s)
    r = signing.revoke_key(info.keyid[:16], s, reason="lost\nlaptop")
    assert r.keyid == info.keyid and r.already is None
    text = r.file.read_text()
    assert text.startswith("# Revoked signing keys") and f"{info.keyid}  # lost laptop (" in text
    assert signing.revoke_key(info.keyid, s).already == f"{r.file}:{len(text.splitlines())}"
    assert r.file.read_text() == text  # revoking twice writes nothing
    with pytest.raises(ConfigError, match=rf"signing key .* \(keyid {info.keyid}\) is revoked .*keys rotate"):
        signing.ensure_signing_key(s)
    with pytest.raises(ConfigError, match="not a key id"):
        signing.revoke_key("not-hex", s)
    with pytest.raises(ConfigError, match="no trusted keys start with"):
        signing.revoke_key("0" * 12 if not info.keyid.startswith("0" * 12) else "f" * 12, s)


# --- rotation --------------------------------------------------------------------------------


def test_rotate_keeps_the_old_key_trusted_unless_revoke_old(s: Settings, env: pytest.MonkeyPatch) -> None:
    old = signing.init_keys(s, publish=True)
    old_envelope = signing.sign_statement(STATEMENT, signing.ensure_signing_key(s)[0])
    env.setenv(signing.ENV_PASSPHRASE, "rotated")  # rotating is how an unencrypted key gets encrypted
    r = signing.rotate_keys(s)
    assert r.old_keyid == old.keyid != r.new.keyid and r.revoked is None and r.new.encrypted
    assert signing.private_key_path(s).read_bytes().startswith(ENCRYPTED_HEADER)
    project = s.path(signing.PROJECT_TRUSTED_DIR)
    assert {p.parent for p in r.new.public_paths} == {signing.local_trusted_dir(s), project}  # where the old one was
    key, kid = signing.ensure_signing_key(s)
    assert kid == r.new.keyid
    keys = signing.load_trusted_keys(s)
    assert signing.verify_envelope(old_envelope, keys).signed_by == old.keyid
    assert signing.verify_envelope(signing.sign_statement(STATEMENT, key), keys).signed_by == kid

    again = signing.rotate_keys(s, revoke_old=True)
    assert again.old_keyid == r.new.keyid and again.revoked is not None
    assert again.revoked.file == project / "revoked.txt"
    keys = signing.load_trusted_keys(s)
    assert set(keys.revoked) == {r.new.keyid}
    assert signing.verify_envelope(old_envelope, keys).signed_by == old.keyid  # never revoked
    assert "revoked key" in (signing.verify_envelope(signing.sign_statement(STATEMENT, key), keys).problem or "")


def test_rotate_needs_a_readable_old_key(s: Settings, env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="no signing key to rotate"):
        signing.rotate_keys(s)
    env.setenv(signing.ENV_PASSPHRASE, "one")
    info = signing.init_keys(s)
    env.setenv(signing.ENV_PASSPHRASE, "two")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        signing.rotate_keys(s)
    env.setenv(signing.ENV_PASSPHRASE, "one")
    assert signing.ensure_signing_key(s)[1] == info.keyid  # nothing was replaced


def test_the_embedded_default_key_says_it_is_unencrypted(s: Settings, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="quantgate.cards.signing"):
        signing.ensure_signing_key(s, create=True)
    assert "UNENCRYPTED" in caplog.text and signing.ENV_PASSPHRASE in caplog.text
    assert not os.environ.get(signing.ENV_PASSPHRASE)
