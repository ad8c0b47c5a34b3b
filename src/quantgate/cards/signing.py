"""ed25519 keys and DSSE envelopes (https://github.com/secure-systems-lab/dsse) for statements.

Key management (see docs/trust.md):

- **Private key**: ``$QUANTGATE_HOME/keys/signing.key`` (PKCS#8 PEM, mode 0600, directory 0700),
  or the file named by ``QUANTGATE_SIGNING_KEY`` (e.g. a mounted secret on a worker).
- **Trusted public keys**: every ``*.pem``/``*.pub`` file in ``<project>/registry/trusted_keys/``
  (reviewed in git, the team's trust root) and in ``$QUANTGATE_HOME/keys/trusted/`` (this
  machine). ``QUANTGATE_TRUSTED_KEYS`` (directories separated by ``:``) replaces both, for a
  verifier that must trust only a fixed set.
- **keyid**: lowercase hex sha256 of the public key's DER SubjectPublicKeyInfo, computed from the
  key itself, never read from a file name.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from quantgate.errors import ConfigError
from quantgate.settings import Settings, get_settings

PAYLOAD_TYPE = "application/vnd.in-toto+json"
PRIVATE_KEY_FILE = "signing.key"
ENV_SIGNING_KEY = "QUANTGATE_SIGNING_KEY"
ENV_TRUSTED_KEYS = "QUANTGATE_TRUSTED_KEYS"
PROJECT_TRUSTED_DIR = Path("registry") / "trusted_keys"
PUBLIC_SUFFIXES = (".pub", ".pem")

TrustedKeys = Mapping[str, Ed25519PublicKey]


# --- keys ------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    return h.finalize().hex()


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem: bytes, source: str = "<bytes>") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ConfigError(f"{source} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{source} is a {type(key).__name__}, not an ed25519 public key")
    return key


def private_key_path(settings: Settings | None = None) -> Path:
    env = os.environ.get(ENV_SIGNING_KEY)
    if env:
        return Path(env).expanduser()
    return (settings or get_settings()).home_abs / "keys" / PRIVATE_KEY_FILE


def local_trusted_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).home_abs / "keys" / "trusted"


def project_trusted_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).path(PROJECT_TRUSTED_DIR)


def trusted_key_dirs(settings: Settings | None = None) -> list[Path]:
    env = os.environ.get(ENV_TRUSTED_KEYS)
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [project_trusted_dir(settings), local_trusted_dir(settings)]


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"signing key {path} is not an unencrypted PEM private key: {exc}", "run: quantgate keys init --force"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"signing key {path} is a {type(key).__name__}, not ed25519", "run: quantgate keys init --force"
        )
    return key


def load_signing_key(settings: Settings | None = None) -> Ed25519PrivateKey | None:
    """The configured private key, or None when there is none yet."""
    path = private_key_path(settings)
    return load_private_key(path) if path.exists() else None


def load_trusted_keys(settings: Settings | None = None, dirs: list[Path] | None = None) -> dict[str, Ed25519PublicKey]:
    """``{keyid: public key}`` from every public key file in the trusted directories.

    A file that is not an ed25519 PEM public key is an error naming it: a broken trust root
    must not silently shrink to "trust nothing" or, worse, be skipped.
    """
    out: dict[str, Ed25519PublicKey] = {}
    for d in dirs if dirs is not None else trusted_key_dirs(settings):
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix in PUBLIC_SUFFIXES:
                key = load_public_key(p.read_bytes(), str(p))
                out[key_id(key)] = key
    return out


@dataclass(frozen=True)
class KeyInfo:
    keyid: str
    private_path: Path
    public_paths: list[Path] = field(default_factory=list)
    created: bool = True


def _write_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``mode`` unless it exists (True if this call created it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def _publish(public_key: Ed25519PublicKey, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key_id(public_key)}.pub"
    if not path.exists():
        tmp = path.with_suffix(".pub.tmp")
        tmp.write_bytes(public_key_pem(public_key))
        os.replace(tmp, path)
    return path


def init_keys(settings: Settings | None = None, *, force: bool = False, publish: bool = False) -> KeyInfo:
    """Create the ed25519 signing key and trust its public key on this machine.

    Refuses to replace an existing key unless ``force`` (the old public key stays trusted, so
    versions signed with it still verify until its ``.pub`` file is removed). ``publish`` also
    writes the public key to ``registry/trusted_keys/`` for review in git.
    """
    s = settings or get_settings()
    path = private_key_path(s)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.name == "keys":
        os.chmod(path.parent, 0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if path.exists() and not force:
        existing = load_private_key(path)
        raise ConfigError(
            f"a signing key already exists: {path} (keyid {key_id(existing.public_key())[:16]}…)",
            "pass --force to replace it; keys signed with the old one keep verifying while its .pub stays trusted",
        )
    if force and path.exists():
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        _write_exclusive(tmp, pem, 0o600)
        os.replace(tmp, path)
    elif not _write_exclusive(path, pem, 0o600):  # another process created it meanwhile
        raise ConfigError(f"a signing key already exists: {path}", "pass --force to replace it")
    os.chmod(path, 0o600)
    pub = key.public_key()
    paths = [_publish(pub, local_trusted_dir(s))]
    if publish:
        paths.append(_publish(pub, project_trusted_dir(s)))
    return KeyInfo(key_id(pub), path, paths, True)


def ensure_signing_key(settings: Settings | None = None, *, create: bool = False) -> tuple[Ed25519PrivateKey, str]:
    """The signing key and its keyid; with ``create``, make one (and trust it locally) if missing."""
    s = settings or get_settings()
    key = load_signing_key(s)
    if key is None:
        if not create:
            raise ConfigError(
                f"no signing key at {private_key_path(s)}",
                f"run: quantgate keys init (or set {ENV_SIGNING_KEY} to the key file)",
            )
        try:
            init_keys(s)
        except ConfigError:
            pass  # a concurrent run created it first; use that one
        key = load_signing_key(s)
        if key is None:  # pragma: no cover - the file vanished between the two calls
            raise ConfigError(f"could not create a signing key at {private_key_path(s)}")
    return key, key_id(key.public_key())


# --- DSSE ------------------------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: what is actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def statement_digest(statement: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of a signed provenance statement (the DSSE payload).

    The statement names every file of the model artifact with its sha256, the source version,
    the policy and recipe digests, so this one value binds an approval to the exact evidence that
    was verified: ``quantgate.approved_digest`` holds it (stamped by the server app), and a
    promotion recomputes it from the verified statement and compares.
    """
    import hashlib

    return "sha256:" + hashlib.sha256(canonical_json(statement)).hexdigest()


def sign_statement(statement: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope over the statement's canonical JSON, signed with ``private_key``."""
    payload = canonical_json(statement)
    sig = private_key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(private_key.public_key()), "sig": base64.b64encode(sig).decode()}],
    }


def _b64decode(text: str) -> bytes:
    """DSSE allows standard or URL-safe base64, padded or not."""
    s = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)


@dataclass(frozen=True)
class EnvelopeCheck:
    """The outcome of checking an envelope's signatures (no statement semantics yet)."""

    payload: bytes | None
    signed_by: str | None  # keyid of a trusted key whose signature verified
    problem: str | None  # why it is not trusted (None when signed_by is set)


def verify_envelope(envelope: Mapping[str, Any], trusted_keys: TrustedKeys) -> EnvelopeCheck:
    """Find one signature by a trusted key that verifies over the PAE of the payload."""
    if not isinstance(envelope, Mapping):
        return EnvelopeCheck(None, None, "envelope is not a JSON object")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        return EnvelopeCheck(None, None, f"payloadType is {envelope.get('payloadType')!r}, expected {PAYLOAD_TYPE}")
    try:
        payload = _b64decode(str(envelope["payload"]))
    except (KeyError, ValueError) as exc:
        return EnvelopeCheck(None, None, f"payload is not base64: {exc}")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        return EnvelopeCheck(payload, None, "envelope has no signatures")
    message = pae(PAYLOAD_TYPE, payload)
    unknown, bad = [], []
    for s in sigs:
        kid = str(s.get("keyid", "")) if isinstance(s, Mapping) else ""
        key = trusted_keys.get(kid)
        if key is None:
            unknown.append(kid[:16] or "<no keyid>")
            continue
        try:
            key.verify(_b64decode(str(s.get("sig", ""))), message)
        except (InvalidSignature, ValueError):
            bad.append(kid[:16])
            continue
        return EnvelopeCheck(payload, kid, None)
    if bad:
        return EnvelopeCheck(payload, None, f"signature by trusted key {', '.join(bad)}… does not verify (tampered)")
    n = len(trusted_keys)
    return EnvelopeCheck(
        payload, None, f"signed only by unknown key(s) {', '.join(unknown)}… ({n} trusted key{'s' * (n != 1)})"
    )
