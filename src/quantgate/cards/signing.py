"""ed25519 keys and DSSE envelopes (https://github.com/secure-systems-lab/dsse) for statements.

Key management (see docs/trust.md):

- **Private key**: ``$QUANTGATE_HOME/keys/signing.key`` (PKCS#8 PEM, mode 0600, directory 0700),
  or the file named by ``QUANTGATE_SIGNING_KEY`` (e.g. a mounted secret on a worker).
- **Encrypted at rest**: when a passphrase is configured (``QUANTGATE_SIGNING_KEY_PASSPHRASE``, or
  ``QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE`` naming a file that holds it), the key is written with
  ``cryptography``'s ``BestAvailableEncryption`` (``-----BEGIN ENCRYPTED PRIVATE KEY-----``) and
  read back with the same passphrase. An unencrypted key keeps working, passphrase or not.
- **Trusted public keys**: every ``*.pem``/``*.pub`` file in ``<project>/registry/trusted_keys/``
  (reviewed in git, the team's trust root) and in ``$QUANTGATE_HOME/keys/trusted/`` (this
  machine). ``QUANTGATE_TRUSTED_KEYS`` (directories separated by ``:``) replaces both, for a
  verifier that must trust only a fixed set.
- **Revoked keys**: ``revoked.txt`` (one keyid per line, ``#`` comments) in
  ``<project>/registry/trusted_keys/`` (always read, whatever ``QUANTGATE_TRUSTED_KEYS`` says) and
  in every trusted directory. A signature by a revoked key is refused, naming the key as revoked,
  even while its ``.pub`` file is still in a trusted directory: revocation wins over trust.
- **keyid**: lowercase hex sha256 of the public key's DER SubjectPublicKeyInfo, computed from the
  key itself, never read from a file name.
"""

from __future__ import annotations

import base64
import getpass
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from quantgate.errors import ConfigError
from quantgate.settings import Settings, get_settings

PAYLOAD_TYPE = "application/vnd.in-toto+json"
PRIVATE_KEY_FILE = "signing.key"
ENV_SIGNING_KEY = "QUANTGATE_SIGNING_KEY"
ENV_TRUSTED_KEYS = "QUANTGATE_TRUSTED_KEYS"
ENV_PASSPHRASE = "QUANTGATE_SIGNING_KEY_PASSPHRASE"
ENV_PASSPHRASE_FILE = "QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE"
PROJECT_TRUSTED_DIR = Path("registry") / "trusted_keys"
REVOKED_FILE = "revoked.txt"
PUBLIC_SUFFIXES = (".pub", ".pem")
PASSPHRASE_HINT = f"set {ENV_PASSPHRASE} (or {ENV_PASSPHRASE_FILE} to a file holding it)"

_KEYID = re.compile(r"[0-9a-f]{64}")
_log = logging.getLogger(__name__)

TrustedKeys = Mapping[str, Ed25519PublicKey]


class _Env(Enum):
    PASSPHRASE = "the passphrase configured in the environment"


#: "read the passphrase from QUANTGATE_SIGNING_KEY_PASSPHRASE(_FILE)", the default of every function
#: that reads or writes the private key; pass bytes (or None for "no passphrase") to override it
FROM_ENV: Literal[_Env.PASSPHRASE] = _Env.PASSPHRASE
Passphrase = bytes | None | Literal[_Env.PASSPHRASE]


class TrustedKeySet(dict[str, Ed25519PublicKey]):
    """``{keyid: public key}`` of the keys to trust, and ``revoked``: ``{keyid: where it is revoked}``.

    A revoked key is never among the items, even when its ``.pub`` file is in a trusted directory,
    so code that only looks keys up refuses it too; :func:`verify_envelope` reads ``revoked`` to
    say *revoked* rather than *unknown*.
    """

    def __init__(
        self, keys: Mapping[str, Ed25519PublicKey] | None = None, revoked: Mapping[str, str] | None = None
    ) -> None:
        self.revoked: dict[str, str] = dict(revoked or {})
        super().__init__((k, v) for k, v in (keys or {}).items() if k not in self.revoked)


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


# --- the private key at rest -----------------------------------------------------------------


def passphrase_source() -> str | None:
    """Which environment variable configures the passphrase (None: none is configured)."""
    if os.environ.get(ENV_PASSPHRASE_FILE) is not None:
        return f"the file named by {ENV_PASSPHRASE_FILE}"
    return ENV_PASSPHRASE if os.environ.get(ENV_PASSPHRASE) is not None else None


def signing_key_passphrase() -> bytes | None:
    """The passphrase of the private key: ``QUANTGATE_SIGNING_KEY_PASSPHRASE``, or the contents of
    the file named by ``QUANTGATE_SIGNING_KEY_PASSPHRASE_FILE`` (a trailing newline dropped), or
    None when neither is set. Both set, an empty value or an unreadable file is an error: a secret
    that failed to arrive must not silently mean "write the key unencrypted"."""
    value, file = os.environ.get(ENV_PASSPHRASE), os.environ.get(ENV_PASSPHRASE_FILE)
    if value is not None and file is not None:
        raise ConfigError(f"both {ENV_PASSPHRASE} and {ENV_PASSPHRASE_FILE} are set", "set only one of them")
    if file is not None:
        if not file:
            raise ConfigError(f"{ENV_PASSPHRASE_FILE} is set but empty", "name the file that holds the passphrase")
        path = Path(file).expanduser()
        try:
            data = path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot read the passphrase file {path} ({ENV_PASSPHRASE_FILE}): {exc.strerror or exc}"
            ) from None
        if not data:
            raise ConfigError(f"the passphrase file {path} ({ENV_PASSPHRASE_FILE}) is empty")
        return data
    if value is not None:
        if not value:
            raise ConfigError(
                f"{ENV_PASSPHRASE} is set but empty", f"unset it, or give the passphrase ({ENV_PASSPHRASE})"
            )
        return value.encode()
    return None


def _passphrase(passphrase: Passphrase) -> bytes | None:
    return signing_key_passphrase() if passphrase is FROM_ENV else passphrase


def is_encrypted_pem(pem: bytes) -> bool:
    """True for an encrypted PKCS#8 (``ENCRYPTED PRIVATE KEY``) or legacy OpenSSL encrypted PEM."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem or b"Proc-Type: 4,ENCRYPTED" in pem


def private_key_pem(key: Ed25519PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM of ``key``: encrypted with ``BestAvailableEncryption(passphrase)`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def load_private_key(path: Path, passphrase: Passphrase = FROM_ENV) -> Ed25519PrivateKey:
    """The ed25519 private key in ``path``, decrypted with the configured passphrase if encrypted.

    An encrypted key without a passphrase, or with a wrong one, is a one-line :class:`ConfigError`
    naming the environment variable to set. An unencrypted key loads whether or not a passphrase
    is configured (keys written before encryption existed keep working).
    """
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    encrypted = is_encrypted_pem(pem)
    from_env = passphrase is FROM_ENV
    password = _passphrase(passphrase) if encrypted else None
    if encrypted and not password:
        raise ConfigError(f"the signing key {path} is encrypted and no passphrase is configured", PASSPHRASE_HINT)
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        if encrypted:
            where = passphrase_source() if from_env else None
            raise ConfigError(
                f"wrong passphrase for the encrypted signing key {path}" + (f" (from {where})" if where else ""),
                f"set {ENV_PASSPHRASE} (or {ENV_PASSPHRASE_FILE}) to the passphrase the key was written with",
            ) from None
        raise ConfigError(
            f"signing key {path} is not a PEM private key: {exc}", "run: quantgate keys init --force"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"signing key {path} is a {type(key).__name__}, not ed25519", "run: quantgate keys init --force"
        )
    return key


def load_signing_key(settings: Settings | None = None, passphrase: Passphrase = FROM_ENV) -> Ed25519PrivateKey | None:
    """The configured private key, or None when there is none yet."""
    path = private_key_path(settings)
    return load_private_key(path, passphrase) if path.exists() else None


def signing_key_is_encrypted(settings: Settings | None = None) -> bool | None:
    """Whether the configured private key file is encrypted (None: there is no key file)."""
    path = private_key_path(settings)
    try:
        return is_encrypted_pem(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None


# --- revocation ------------------------------------------------------------------------------


def revoked_list_path(settings: Settings | None = None) -> Path:
    """The team's revocation list, ``<project>/registry/trusted_keys/revoked.txt`` (reviewed in git)."""
    return project_trusted_dir(settings) / REVOKED_FILE


def revocation_files(settings: Settings | None = None, dirs: Iterable[Path] | None = None) -> list[Path]:
    """Every ``revoked.txt`` that counts: the project's, always (choosing other trusted
    directories cannot un-revoke a key), then the one in each trusted directory."""
    s = settings or get_settings()
    out: list[Path] = []
    for p in [revoked_list_path(s), *(d / REVOKED_FILE for d in (trusted_key_dirs(s) if dirs is None else dirs))]:
        if all(p.resolve() != q.resolve() for q in out):
            out.append(p)
    return out


def parse_revoked(text: str, source: str) -> dict[str, str]:
    """``{keyid: "source:line"}`` from a revocation list. A line that is not a 64-hex keyid (after
    ``#`` comments are dropped) is an error naming it: a broken revocation list must not quietly
    revoke nothing."""
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if not _KEYID.fullmatch(line):
            raise ConfigError(
                f"{source}:{n} is not a key id: {raw.strip()!r}",
                "one full 64-hex key id per line, # for comments (quantgate keys list shows them)",
            )
        out.setdefault(line, f"{source}:{n}")
    return out


def load_revoked(settings: Settings | None = None, files: Iterable[Path] | None = None) -> dict[str, str]:
    """``{keyid: where it is revoked}`` from every revocation list that exists."""
    out: dict[str, str] = {}
    for f in revocation_files(settings) if files is None else files:
        if f.is_file():
            for kid, where in parse_revoked(f.read_text(encoding="utf-8"), str(f)).items():
                out.setdefault(kid, where)
    return out


def load_trusted_keys(settings: Settings | None = None, dirs: list[Path] | None = None) -> TrustedKeySet:
    """``{keyid: public key}`` from every public key file in the trusted directories, minus the
    revoked keys (carried in ``.revoked``, see :class:`TrustedKeySet`).

    A file that is not an ed25519 PEM public key is an error naming it: a broken trust root
    must not silently shrink to "trust nothing" or, worse, be skipped.
    """
    s = settings or get_settings()
    use = trusted_key_dirs(s) if dirs is None else dirs
    out: dict[str, Ed25519PublicKey] = {}
    for d in use:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix in PUBLIC_SUFFIXES:
                key = load_public_key(p.read_bytes(), str(p))
                out[key_id(key)] = key
    return TrustedKeySet(out, load_revoked(s, revocation_files(s, use)))


def known_key_ids(settings: Settings | None = None) -> set[str]:
    """Key ids of every public key file in the trusted directories (revoked or not)."""
    out: set[str] = set()
    for d in trusted_key_dirs(settings):
        if d.is_dir():
            for p in d.iterdir():
                if p.is_file() and p.suffix in PUBLIC_SUFFIXES:
                    out.add(key_id(load_public_key(p.read_bytes(), str(p))))
    return out


@dataclass(frozen=True)
class Revocation:
    keyid: str
    file: Path
    already: str | None = None  # where it was revoked before, when it already was


def _expand_keyid(keyid: str, settings: Settings) -> str:
    """A full keyid from a full one or from a unique prefix (>= 8 hex) of a known key."""
    kid = keyid.strip().lower().removesuffix("…").removesuffix(".pub")
    if _KEYID.fullmatch(kid):
        return kid
    if not re.fullmatch(r"[0-9a-f]{8,63}", kid):
        raise ConfigError(f"{keyid!r} is not a key id", "give the 64-hex key id that quantgate keys list shows")
    matches = sorted(k for k in known_key_ids(settings) if k.startswith(kid))
    if len(matches) != 1:
        raise ConfigError(
            f"{len(matches) or 'no'} trusted keys start with {kid}" + (f": {', '.join(matches)}" if matches else ""),
            "give the full 64-hex key id",
        )
    return matches[0]


def revoke_key(keyid: str, settings: Settings | None = None, *, reason: str | None = None) -> Revocation:
    """Append ``keyid`` (full, or a unique prefix of a trusted key) to the project's revocation list."""
    s = settings or get_settings()
    kid = _expand_keyid(keyid, s)
    path = revoked_list_path(s)
    before = load_revoked(s, [path])
    if kid in before:
        return Revocation(kid, path, before[kid])
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        user = "unknown"
    note = " ".join((reason or "revoked").split())  # one line, whatever was passed
    line = f"{kid}  # {note} ({datetime.now(UTC):%Y-%m-%d} by {user})\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = path.read_text(encoding="utf-8") if path.exists() else REVOKED_HEADER
        if existing and not existing.endswith("\n"):
            existing += "\n"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(existing + line, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the revocation list {path}: {exc.strerror or exc}") from None
    return Revocation(kid, path)


REVOKED_HEADER = """\
# Revoked signing keys: one key id (the sha256 of the public key, 64 hex) per line; '#' starts a comment.
# A signature by a key listed here is refused by quantgate verify, promote, approve and serve, even
# while its .pub file is still in a trusted directory. Add one with: quantgate keys revoke KEYID
"""


# --- creating and rotating the key -----------------------------------------------------------


@dataclass(frozen=True)
class KeyInfo:
    keyid: str
    private_path: Path
    public_paths: list[Path] = field(default_factory=list)
    created: bool = True
    encrypted: bool = False


def _write_exclusive(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` with ``mode`` unless it exists (True if this call created it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def _replace_private(path: Path, pem: bytes) -> None:
    """Write ``pem`` to ``path`` atomically, mode 0600 from the first byte."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    _write_exclusive(tmp, pem, 0o600)
    os.replace(tmp, path)


def _publish(public_key: Ed25519PublicKey, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{key_id(public_key)}.pub"
    if not path.exists():
        tmp = path.with_suffix(".pub.tmp")
        tmp.write_bytes(public_key_pem(public_key))
        os.replace(tmp, path)
    return path


def _key_dir(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.name == "keys":
            os.chmod(path.parent, 0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the key directory {path.parent}: {exc.strerror or exc}") from None


def init_keys(
    settings: Settings | None = None, *, force: bool = False, publish: bool = False, passphrase: Passphrase = FROM_ENV
) -> KeyInfo:
    """Create the ed25519 signing key and trust its public key on this machine.

    The key is encrypted with the configured passphrase (``QUANTGATE_SIGNING_KEY_PASSPHRASE`` or
    ``..._FILE``; ``KeyInfo.encrypted`` says whether it was). Refuses to replace an existing key
    unless ``force`` (the old public key stays trusted, so versions signed with it still verify
    until it is revoked). ``publish`` also writes the public key to ``registry/trusted_keys/`` for
    review in git.
    """
    s = settings or get_settings()
    password = _passphrase(passphrase)  # a misconfigured passphrase fails before anything is written
    path = private_key_path(s)
    _key_dir(path)
    if path.exists() and not force:
        try:
            label = f" (keyid {key_id(load_private_key(path, password).public_key())[:16]}…)"
        except ConfigError:
            label = ""
        raise ConfigError(
            f"a signing key already exists: {path}{label}",
            "run: quantgate keys rotate (or pass --force to replace it); "
            "versions signed with the old one keep verifying while its .pub stays trusted",
        )
    key = Ed25519PrivateKey.generate()
    pem = private_key_pem(key, password)
    try:
        if force and path.exists():
            _replace_private(path, pem)
        elif not _write_exclusive(path, pem, 0o600):  # another process created it meanwhile
            raise ConfigError(f"a signing key already exists: {path}", "pass --force to replace it")
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write the signing key {path}: {exc.strerror or exc}") from None
    pub = key.public_key()
    paths = [_publish(pub, local_trusted_dir(s))]
    if publish:
        paths.append(_publish(pub, project_trusted_dir(s)))
    return KeyInfo(key_id(pub), path, paths, True, bool(password))


@dataclass(frozen=True)
class Rotation:
    old_keyid: str
    new: KeyInfo
    revoked: Revocation | None = None  # the old key's revocation (--revoke-old)


def rotate_keys(
    settings: Settings | None = None,
    *,
    revoke_old: bool = False,
    publish: bool = False,
    reason: str | None = None,
    passphrase: Passphrase = FROM_ENV,
) -> Rotation:
    """Replace the signing key with a new one, encrypted with the configured passphrase.

    The new public key is trusted wherever the old one was (this machine always, the project's
    ``registry/trusted_keys/`` when the old key was published there or ``publish``). The old public
    key stays trusted, so statements it signed keep verifying, unless ``revoke_old``: then it is
    added to the project's revocation list and everything it signed is refused.
    """
    s = settings or get_settings()
    password = _passphrase(passphrase)
    path = private_key_path(s)
    if not path.exists():
        raise ConfigError(f"no signing key to rotate at {path}", "run: quantgate keys init")
    old_id = key_id(load_private_key(path, passphrase).public_key())  # the old one must be readable
    key = Ed25519PrivateKey.generate()
    pub = key.public_key()
    targets = [local_trusted_dir(s)]
    if publish:
        targets.append(project_trusted_dir(s))
    targets += [d for d in trusted_key_dirs(s) if (d / f"{old_id}.pub").is_file()]
    paths: list[Path] = []
    try:
        for d in targets:  # trust the new key before it signs anything
            if all(d.resolve() != p.parent.resolve() for p in paths):
                paths.append(_publish(pub, d))
        _replace_private(path, private_key_pem(key, password))
        os.chmod(path, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write the new key: {exc.strerror or exc} ({exc.filename})") from None
    info = KeyInfo(key_id(pub), path, paths, True, bool(password))
    revoked = revoke_key(old_id, s, reason=reason or f"rotated to {info.keyid[:16]}") if revoke_old else None
    return Rotation(old_id, info, revoked)


def ensure_signing_key(settings: Settings | None = None, *, create: bool = False) -> tuple[Ed25519PrivateKey, str]:
    """The signing key and its keyid; with ``create``, make one (and trust it locally) if missing.

    A revoked signing key is refused: everything it signed would fail verification.
    """
    s = settings or get_settings()
    key = load_signing_key(s)
    if key is None:
        if not create:
            raise ConfigError(
                f"no signing key at {private_key_path(s)}",
                f"run: quantgate keys init (or set {ENV_SIGNING_KEY} to the key file)",
            )
        try:
            info = init_keys(s)
        except ConfigError:
            if not private_key_path(s).exists():
                raise  # not "a concurrent run created it first" (then: use that one)
        else:
            if not info.encrypted:  # the embedded default may stay unencrypted, but says so
                _log.warning(
                    "created the signing key %s UNENCRYPTED (mode 0600): to encrypt it, %s and run"
                    " quantgate keys rotate",
                    info.private_path,
                    PASSPHRASE_HINT,
                )
        key = load_signing_key(s)
        if key is None:  # pragma: no cover - the file vanished between the two calls
            raise ConfigError(f"could not create a signing key at {private_key_path(s)}")
    kid = key_id(key.public_key())
    revoked = load_revoked(s)
    if kid in revoked:
        raise ConfigError(
            f"the signing key {private_key_path(s)} (keyid {kid}) is revoked ({revoked[kid]})",
            "run: quantgate keys rotate",
        )
    return key, kid


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


def verify_envelope(
    envelope: Mapping[str, Any], trusted_keys: TrustedKeys, revoked: Mapping[str, str] | Iterable[str] | None = None
) -> EnvelopeCheck:
    """Find one signature by a trusted, unrevoked key that verifies over the PAE of the payload.

    Revoked keys are ``revoked`` (keyids, or ``{keyid: where}``) and, for the :class:`TrustedKeySet`
    that :func:`load_trusted_keys` returns, its ``.revoked``: a signature by one of them is refused
    and named as revoked, even when the key is also in ``trusted_keys``.
    """
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
    revoked_at: dict[str, str] = dict(getattr(trusted_keys, "revoked", None) or {})
    if isinstance(revoked, Mapping):
        revoked_at.update({str(k).lower(): str(v) for k, v in revoked.items()})
    elif revoked is not None:
        revoked_at.update({str(k).lower(): "" for k in revoked})
    message = pae(PAYLOAD_TYPE, payload)
    unknown, bad, refused = [], [], []
    for s in sigs:
        kid = str(s.get("keyid", "")) if isinstance(s, Mapping) else ""
        if kid.lower() in revoked_at:
            refused.append(kid.lower())
            continue
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
    problems = [
        f"signed by revoked key {kid}" + (f" (revoked in {revoked_at[kid]})" if revoked_at[kid] else "")
        for kid in refused
    ]
    if bad:
        problems.append(f"signature by trusted key {', '.join(bad)}… does not verify (tampered)")
    elif unknown or not problems:
        n = len(trusted_keys)
        problems.append(
            f"signed only by unknown key(s) {', '.join(unknown)}… ({n} trusted key{'s' * (n != 1)})"
            if not refused
            else f"also signed by unknown key(s) {', '.join(unknown)}…"
        )
    return EnvelopeCheck(payload, None, "; ".join(problems))
