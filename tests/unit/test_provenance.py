"""Provenance statements, DSSE signatures and verification of a model directory (no MLflow)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from quantgate.cards import provenance as prov
from quantgate.cards import signing
from quantgate.cards.verify import verify_model
from quantgate.errors import ConfigError
from quantgate.settings import Settings

POLICY_TEXT = "name: strict\nrules: []\n"


def _model_dir(root: Path) -> Path:
    d = root / "model"
    (d / "artifacts").mkdir(parents=True)
    (d / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (d / "python_model.pkl").write_bytes(b"\x80\x04pickle")
    (d / "artifacts" / "module.pt").write_bytes(os.urandom(4096))
    (d / "artifacts" / "spec.json").write_text('{"task": "tabular-classification"}')
    return d


@pytest.fixture()
def model_dir(tmp_path: Path) -> Path:
    return _model_dir(tmp_path)


@pytest.fixture()
def policy(tmp_path: Path) -> Path:
    p = tmp_path / "strict.yaml"
    p.write_text(POLICY_TEXT)
    return p


def _statement(model_dir: Path, policy: Path) -> dict[str, Any]:
    ctx = {
        "data": {
            "paths": {"calibration": "/d/cal.parquet", "evaluation": "/d/eval.parquet"},
            "digests": {"calibration": "sha256:" + "01" * 32, "evaluation": "sha256:" + "02" * 32},
        },
        "policy": {"name": "strict", "digest": prov.policy_file_digest(policy)},
        "recipe": {"label": "dynamic-int8", "digest": "sha256:" + "ab" * 32, "json": {"_type": "dynamic-int8"}},
        "config": {"policy": "policies/default.yaml"},
    }
    return prov.build_statement(
        model_dir,
        name="tiny-quantized",
        source={"name": "tiny", "version": "1", "digest": "sha256:" + "ee" * 32},
        materials=prov.materials_from_context(ctx, policy_path=policy),
        builder=prov.prefect_builder(flow_run_id="run-123", flow_name="quantize-model"),
    )


@pytest.fixture()
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture()
def signed(model_dir: Path, policy: Path, key: Ed25519PrivateKey) -> dict[str, Any]:
    return signing.sign_statement(_statement(model_dir, policy), key)


def _trusted(key: Ed25519PrivateKey) -> dict[str, Any]:
    return {signing.key_id(key.public_key()): key.public_key()}


def _failed(report: Any) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.passed}


# --- digests and the statement --------------------------------------------------------------


def test_subject_digests_equal_digests_recomputed_from_the_files(model_dir: Path, policy: Path) -> None:
    st = _statement(model_dir, policy)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    expected = {p.relative_to(model_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert prov.digest_tree(model_dir) == expected
    assert prov.subject_digests(st) == expected
    assert [s["name"] for s in st["subject"]] == sorted(expected)  # every file, artifacts/ included
    manifest = "".join(f"{expected[k]}  {k}\n" for k in sorted(expected))
    assert prov.tree_digest(expected) == "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()


def test_statement_is_in_toto_v1_with_slsa_v1_provenance(model_dir: Path, policy: Path) -> None:
    st = _statement(model_dir, policy)
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    build = st["predicate"]["buildDefinition"]
    deps = {d["name"]: d for d in build["resolvedDependencies"]}
    assert deps["source_model"]["uri"] == "models:/tiny/1"
    assert deps["source_model"]["digest"] == {"sha256": "ee" * 32}
    assert deps["calibration_data"]["digest"] == {"sha256": "01" * 32}
    assert deps["evaluation_data"]["annotations"]["path"] == "/d/eval.parquet"
    assert deps["policy"]["digest"] == {"sha256": hashlib.sha256(POLICY_TEXT.encode()).hexdigest()}
    assert deps["policy"]["annotations"]["path"] == str(policy)
    assert deps["recipe"]["digest"] == {"sha256": "ab" * 32}
    assert deps["quantgate"]["uri"].startswith("pkg:pypi/quantgate@")
    assert "torch" in deps and deps["torch"]["uri"].startswith("pkg:pypi/torch@")
    assert build["externalParameters"]["source"] == "tiny/1"
    run = st["predicate"]["runDetails"]
    assert run["builder"]["id"] == "prefect:flow/quantize-model"
    assert run["metadata"]["invocationId"] == "run-123"
    json.dumps(st, allow_nan=False)  # strict JSON


def test_builder_ids() -> None:
    assert prov.prefect_builder(deployment_name="govern-nightly", flow_run_id="r")["id"] == (
        "prefect:deployment/govern-nightly"
    )
    assert prov.prefect_builder()["id"] == "quantgate:local"


def test_policy_digest_matches_load_policy(tmp_path: Path) -> None:
    from quantgate.policy import load_policy

    root = Path(__file__).resolve().parents[2]
    assert (
        prov.policy_file_digest(root / "policies" / "default.yaml")
        == load_policy(root / "policies" / "default.yaml").digest
    )


# --- DSSE --------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec() -> None:
    assert signing.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_sign_verify_round_trip(model_dir: Path, signed: dict[str, Any], key: Ed25519PrivateKey, policy: Path) -> None:
    assert signed["payloadType"] == "application/vnd.in-toto+json"
    assert signed["signatures"][0]["keyid"] == signing.key_id(key.public_key())
    assert json.loads(base64.b64decode(signed["payload"]))["_type"] == "https://in-toto.io/Statement/v1"
    report = verify_model(model_dir, signed, _trusted(key), policy_file=policy)
    assert report.passed, report.lines()
    assert [c.name for c in report.checks] == [
        "signature",
        "statement",
        "file digests",
        "missing files",
        "extra files",
        "policy",
    ]
    assert report.lines()[-1].startswith("verified")


def test_one_flipped_byte_fails_naming_the_file(model_dir: Path, signed: dict[str, Any], key: Any) -> None:
    f = model_dir / "artifacts" / "module.pt"
    data = bytearray(f.read_bytes())
    data[100] ^= 0x01
    f.write_bytes(bytes(data))
    report = verify_model(model_dir, signed, _trusted(key))
    assert not report.passed
    assert _failed(report) == {"file digests": "changed: artifacts/module.pt"}
    assert "artifacts/module.pt" in report.summary()


def test_extra_and_missing_files_fail(model_dir: Path, signed: dict[str, Any], key: Any) -> None:
    (model_dir / "artifacts" / "backdoor.py").write_text("import os")
    (model_dir / "python_model.pkl").unlink()
    failed = _failed(verify_model(model_dir, signed, _trusted(key)))
    assert failed == {
        "missing files": "missing: python_model.pkl",
        "extra files": "not in the statement: artifacts/backdoor.py",
    }


def test_mlflow_registration_file_is_not_an_extra_file(model_dir: Path, signed: dict[str, Any], key: Any) -> None:
    """MLflow writes `registered_model_meta` into the stored artifact when the version is
    registered, after signing: only that root-level file is tolerated, nowhere else."""
    (model_dir / "registered_model_meta").write_text("model_name: m-quantized\nmodel_version: '1'\n")
    assert verify_model(model_dir, signed, _trusted(key)).passed
    (model_dir / "artifacts" / "registered_model_meta").write_text("x")
    assert _failed(verify_model(model_dir, signed, _trusted(key))) == {
        "extra files": "not in the statement: artifacts/registered_model_meta"
    }


def test_registration_file_signed_then_rewritten_is_not_a_change(
    model_dir: Path, policy: Path, key: Ed25519PrivateKey
) -> None:
    """The same artifact registered again (a second version from one run) makes MLflow rewrite the
    `registered_model_meta` it signed with: the registry's bookkeeping, not the model."""
    (model_dir / "registered_model_meta").write_text("model_name: m-quantized\nmodel_version: '1'\n")
    envelope = signing.sign_statement(_statement(model_dir, policy), key)
    (model_dir / "registered_model_meta").write_text("model_name: m-quantized\nmodel_version: '2'\n")
    assert verify_model(model_dir, envelope, _trusted(key)).passed
    (model_dir / "python_model.pkl").write_bytes(b"tampered")
    assert set(_failed(verify_model(model_dir, envelope, _trusted(key)))) == {"file digests"}


def test_signature_by_an_unknown_key_is_rejected(model_dir: Path, signed: dict[str, Any]) -> None:
    other = Ed25519PrivateKey.generate()
    report = verify_model(model_dir, signed, _trusted(other))
    assert set(_failed(report)) == {"signature"}
    assert "unknown key" in _failed(report)["signature"]
    assert not verify_model(model_dir, signed, {}).passed


def test_tampered_payload_is_rejected(model_dir: Path, signed: dict[str, Any], key: Any) -> None:
    # the attacker swaps module.pt AND rewrites its digest in the statement: the signature catches it
    f = model_dir / "artifacts" / "module.pt"
    f.write_bytes(b"evil weights")
    st = json.loads(base64.b64decode(signed["payload"]))
    for s in st["subject"]:
        if s["name"] == "artifacts/module.pt":
            s["digest"]["sha256"] = hashlib.sha256(b"evil weights").hexdigest()
    forged = {**signed, "payload": base64.b64encode(signing.canonical_json(st)).decode()}
    report = verify_model(model_dir, forged, _trusted(key))
    assert not report.passed
    assert "does not verify" in _failed(report)["signature"]


def test_garbage_envelopes_are_rejected(model_dir: Path, signed: dict[str, Any], key: Any) -> None:
    for env in (
        {**signed, "payloadType": "text/plain"},
        {**signed, "payload": "%%%"},
        {**signed, "signatures": []},
        {**signed, "signatures": [{"keyid": signed["signatures"][0]["keyid"], "sig": "AAAA"}]},
    ):
        assert not verify_model(model_dir, env, _trusted(key)).passed


def test_changed_policy_file_fails(model_dir: Path, signed: dict[str, Any], key: Any, policy: Path) -> None:
    policy.write_text(POLICY_TEXT.replace("strict", "lenient"))
    failed = _failed(verify_model(model_dir, signed, _trusted(key), policy_file=policy))
    assert set(failed) == {"policy"} and "changed since the gate" in failed["policy"]


# --- keys --------------------------------------------------------------------------------


def test_keys_init_writes_0600_key_and_trusts_its_public_key(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv(signing.ENV_SIGNING_KEY, raising=False)
    monkeypatch.delenv(signing.ENV_TRUSTED_KEYS, raising=False)
    s = Settings(home=tmp_path / "home", project_dir=tmp_path / "project")
    info = signing.init_keys(s)
    assert info.private_path == tmp_path / "home" / "keys" / "signing.key"
    assert stat.S_IMODE(info.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.private_path.parent.stat().st_mode) == 0o700
    key = signing.load_signing_key(s)
    assert key is not None
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert info.keyid == hashlib.sha256(der).hexdigest()
    assert info.public_paths == [tmp_path / "home" / "keys" / "trusted" / f"{info.keyid}.pub"]
    assert set(signing.load_trusted_keys(s)) == {info.keyid}

    with pytest.raises(ConfigError, match="already exists"):
        signing.init_keys(s)
    rotated = signing.init_keys(s, force=True, publish=True)
    assert rotated.keyid != info.keyid
    assert (tmp_path / "project" / "registry" / "trusted_keys" / f"{rotated.keyid}.pub").exists()
    assert set(signing.load_trusted_keys(s)) == {info.keyid, rotated.keyid}  # the old key stays trusted
    monkeypatch.setenv(signing.ENV_TRUSTED_KEYS, str(tmp_path / "project" / "registry" / "trusted_keys"))
    assert set(signing.load_trusted_keys(s)) == {rotated.keyid}


def test_signing_key_is_created_only_when_asked(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv(signing.ENV_SIGNING_KEY, raising=False)
    s = Settings(home=tmp_path / "home", project_dir=tmp_path)
    with pytest.raises(ConfigError, match="quantgate keys init"):
        signing.ensure_signing_key(s)
    key, kid = signing.ensure_signing_key(s, create=True)
    assert signing.ensure_signing_key(s)[1] == kid == signing.key_id(key.public_key())


def test_a_broken_trusted_key_file_is_an_error(tmp_path: Path) -> None:
    d = tmp_path / "trusted"
    d.mkdir()
    (d / "bad.pub").write_text("not a key")
    with pytest.raises(ConfigError, match=r"bad\.pub"):
        signing.load_trusted_keys(dirs=[d])


# --- code version: the installed distribution, a git commit only from quantgate's own checkout ----


def _git(*args: str, cwd: Path) -> None:
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _repo_with_package(root: Path, project_name: str | None) -> Path:
    """A git repository holding src/quantgate/ (and a pyproject.toml naming ``project_name``)."""
    pkg = root / "src" / "quantgate"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    if project_name:
        (root / "pyproject.toml").write_text(f'[project]\nname = "{project_name}"\nversion = "0"\n')
    _git("init", "-q", cwd=root)
    _git("add", ".", cwd=root)
    _git("commit", "-qm", "x", cwd=root)
    return pkg


def test_code_version_records_the_installed_distribution() -> None:
    from importlib.metadata import version

    assert prov.code_version()["version"] == version("quantgate")


def test_code_version_ignores_the_repository_quantgate_is_installed_in(tmp_path: Path) -> None:
    # a team's repository (another project) that happens to contain the package: not quantgate's commit
    pkg = _repo_with_package(tmp_path / "team", "team-models")
    assert prov.quantgate_checkout(pkg) is None
    assert "git_commit" not in prov.code_version(pkg)
    # site-packages inside a repository (no src/ layout, no pyproject): no commit either
    site = tmp_path / "team" / ".venv" / "lib" / "site-packages" / "quantgate"
    site.mkdir(parents=True)
    assert "git_commit" not in prov.code_version(site)


def test_code_version_records_the_commit_of_a_quantgate_checkout(tmp_path: Path) -> None:
    pkg = _repo_with_package(tmp_path / "qg", "quantgate")
    out = prov.code_version(pkg)
    assert prov.quantgate_checkout(pkg) == (tmp_path / "qg").resolve()
    assert len(out["git_commit"]) == 40 and out["git_dirty"] is False
    # a copy of quantgate's source tree that is not itself a git checkout records no commit
    copy = tmp_path / "vendored"
    (copy / "src" / "quantgate").mkdir(parents=True)
    (copy / "pyproject.toml").write_text('[project]\nname = "quantgate"\n')
    assert "git_commit" not in prov.code_version(copy / "src" / "quantgate")
