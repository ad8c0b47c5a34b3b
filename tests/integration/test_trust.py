"""Provenance + signatures against a real MLflow store in tmp: attach at record time, verify,
refuse promotion of a tampered, re-gated or unsigned version."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from quantgate.registry import contract as c

pytestmark = pytest.mark.integration

POLICY = "name: trust-test\nrules:\n  - id: acc\n    kind: max_drop\n    metric: accuracy\n    threshold: 0.01\n"
EXPERIMENT = "quantgate-trust-test"


def _log_tiny_model(tmp: Path) -> tuple[str, str]:
    """A real quantgate pyfunc (TabularMLP + preprocessing) logged in a run: (model_uri, run_id)."""
    import mlflow

    from quantgate.models.pyfunc import QuantgatePyfunc
    from quantgate.models.tabular import TabularMLP, TabularPreprocessor
    from quantgate.models.wrapped import WrappedModel

    df = pd.DataFrame({"age": [25.0, 40.0, 61.0, 33.0], "sex": ["F", "M", "F", "M"]})
    pre = TabularPreprocessor.fit(df, ["age"], ["sex"])
    spec = {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]}
    wrapped = WrappedModel(TabularMLP(pre.n_features, (8,)), spec)
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=QuantgatePyfunc(),
            artifacts=wrapped.save(tmp),
            pip_requirements=["torch", "pandas<3"],  # no inference: fast and offline
        )
    return info.model_uri, run.info.run_id


def _sign(model_uri: str, run_id: str, policy: Path, settings: Any, verdict: str = "pass") -> dict[str, str]:
    """Sign a logged candidate of tiny/1 the way steps/record.py does, with a gate of ``verdict``;
    returns the provenance tags for its version."""
    from quantgate.cards.provenance import gate_summary, materials_from_context, policy_file_digest, prefect_builder
    from quantgate.cards.trust import attach_provenance

    ctx = {
        "data": {"paths": {"evaluation": "/d/eval.csv"}, "digests": {"evaluation": "sha256:" + "02" * 32}},
        "policy": {"name": "trust-test", "digest": policy_file_digest(policy)},
        "recipe": {"label": "dynamic-int8", "digest": "sha256:" + "ab" * 32, "json": {"_type": "dynamic-int8"}},
    }
    return attach_provenance(
        model_uri,
        run_id,
        name="tiny-quantized",
        source={"name": "tiny", "version": "1"},
        materials=materials_from_context(ctx, policy_path="policies/trust.yaml"),
        builder=prefect_builder(flow_run_id=f"00000000-{verdict}", flow_name="quantize-model"),
        settings=settings,
        gate=gate_summary(
            verdict=verdict,
            policy_name="trust-test",
            policy_digest=ctx["policy"]["digest"],
            rules={"acc": verdict},
            tags={c.TAG_SOURCE: "tiny/1", c.TAG_VERDICT: verdict},
        ),
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import mlflow

    from quantgate.registry.mlflow_registry import client, ensure_experiment
    from quantgate.settings import get_settings, reset_settings

    home, project = tmp_path_factory.mktemp("trust-home"), tmp_path_factory.mktemp("trust-project")
    (project / "policies").mkdir()
    policy = project / "policies" / "trust.yaml"
    policy.write_text(POLICY)
    saved_uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    saved_environ = dict(os.environ)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUANTGATE_HOME", str(home))
        mp.setenv("QUANTGATE_PROJECT_DIR", str(project))
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "QUANTGATE_SIGNING_KEY", "QUANTGATE_TRUSTED_KEYS"):
            mp.delenv(var, raising=False)
        reset_settings()
        s = get_settings()
        cl = client(s)
        ensure_experiment(EXPERIMENT, s)

        src_uri, src_run = _log_tiny_model(home / "src-files")
        cl.create_registered_model("tiny")
        cl.create_model_version("tiny", src_uri, run_id=src_run)

        model_uri, run_id = _log_tiny_model(home / "cand-files")
        tags = _sign(model_uri, run_id, policy, s)
        cl.create_registered_model("tiny-quantized")
        version_tags = {c.TAG_SOURCE: "tiny/1", c.TAG_VERDICT: "pass", c.TAG_APPROVAL: "approved", **tags}
        mv = cl.create_model_version("tiny-quantized", model_uri, run_id=run_id, tags=version_tags)
        cl.set_registered_model_alias("tiny-quantized", c.ALIAS_CANDIDATE, mv.version)
        stored = Path(unquote(urlparse(cl.get_model_version_download_uri("tiny-quantized", mv.version)).path))
        yield {
            "settings": s,
            "client": cl,
            "tags": tags,
            "run_id": run_id,
            "stored": stored,
            "policy": policy,
            "home": home,
            "project": project,
            "version": mv.version,
        }
    # put mlflow's global URIs back, then the whole environment: set_*_uri export MLFLOW_*_URI (which
    # a later Settings() would read as "a server is configured") and configure_environment() sets
    # PREFECT_HOME & co. to this module's home when they were unset
    mlflow.set_tracking_uri(saved_uris[0])
    mlflow.set_registry_uri(saved_uris[1])
    os.environ.clear()
    os.environ.update(saved_environ)
    reset_settings()


def _cli(*args: str) -> Any:
    from quantgate.cli_trust import keys_app, verify

    app = typer.Typer()
    app.add_typer(keys_app, name="keys")
    app.command()(verify)
    return CliRunner().invoke(app, list(args))


def _failed(report: Any) -> dict[str, str]:
    return {ch.name: ch.detail for ch in report.checks if not ch.passed}


def test_attach_logs_a_signed_statement_over_every_stored_file(store: dict[str, Any]) -> None:
    from quantgate.cards.provenance import dependency, digest_tree, tree_digest

    cl, s = store["client"], store["settings"]
    arts = {a.path for a in cl.list_artifacts(store["run_id"], "provenance")}
    assert arts == {"provenance/statement.json", "provenance/envelope.json"}
    assert store["tags"]["quantgate.provenance"] == "provenance/statement.json"
    key_file = s.home_abs / "keys" / "trusted" / f"{store['tags']['quantgate.signing_key']}.pub"
    assert key_file.exists()  # first use on the embedded store created the key and trusts it
    st = json.loads(
        Path(cl.download_artifacts(store["run_id"], "provenance/statement.json", str(s.home_abs))).read_text()
    )
    files = digest_tree(store["stored"])
    assert {x["name"]: x["digest"]["sha256"] for x in st["subject"]} == files
    assert {"MLmodel", "python_model.pkl", "artifacts/module.pt", "artifacts/spec.json"} <= set(files)
    assert store["tags"]["quantgate.artifact_digest"] == tree_digest(files)
    src_dir = Path(unquote(urlparse(cl.get_model_version_download_uri("tiny", "1")).path))
    src = dependency(st, "source_model") or {}
    assert src["uri"] == "models:/tiny/1"
    assert "sha256:" + src["digest"]["sha256"] == tree_digest(digest_tree(src_dir))


def test_verify_version_passes_and_cli_says_what_it_checked(store: dict[str, Any]) -> None:
    from quantgate.cards.trust import verify_version

    report = verify_version("tiny-quantized@candidate", settings=store["settings"])
    assert report.passed, report.lines()
    names = [ch.name for ch in report.checks]
    assert names == [
        "provenance",
        "signature",
        "statement",
        "file digests",
        "missing files",
        "extra files",
        "policy",
        "statement.json",
        "binding",
        "gate",
        "result tags",
    ]
    result = _cli("verify", "tiny@candidate")  # a source name means its -quantized model
    assert result.exit_code == 0, result.output
    assert "verifying tiny-quantized/1" in result.output and "verified: 11 checks passed" in result.output


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (c.TAG_VERDICT, "fail"),  # a changed result tag
        (c.TAG_TARGET, ""),  # an added one (issue 26: target='' skipped the host check)
        (c.TAG_POLICY_DIGEST, "sha256:" + "0" * 64),
        (c.TAG_RECIPE, "fp32-untouched"),
        (c.TAG_ARTIFACT_DIGEST, "sha256:" + "1" * 64),  # a provenance tag that names another tree
        (c.TAG_SOURCE, None),  # a deleted one
    ],
)
def test_a_result_tag_that_differs_from_the_signed_statement_fails_verify(
    store: dict[str, Any], key: str, value: str | None
) -> None:
    """Issue 26: an EDIT user rewrote result tags and `quantgate verify` still passed 9/9."""
    from quantgate.cards.trust import verify_version

    cl, version = store["client"], store["version"]
    before = cl.get_model_version("tiny-quantized", version).tags.get(key)
    if value is None:
        cl.delete_model_version_tag("tiny-quantized", version, key)
    else:
        cl.set_model_version_tag("tiny-quantized", version, key, value)
    try:
        failed = _failed(verify_version("tiny-quantized@candidate", settings=store["settings"]))
        assert "result tags" in failed and key in failed["result tags"], failed
        result = _cli("verify", "tiny-quantized@candidate")
        assert result.exit_code == 3 and "FAIL  result tags" in result.output
    finally:
        if before is None:
            cl.delete_model_version_tag("tiny-quantized", version, key)
        else:
            cl.set_model_version_tag("tiny-quantized", version, key, before)
    assert verify_version("tiny-quantized@candidate", settings=store["settings"]).passed


def test_a_failed_run_registered_again_as_passing_is_never_promoted(store: dict[str, Any]) -> None:
    """Issue 26: a new version from a signed *failed* run, tagged verdict=pass (and approved in the
    embedded store, which has no identity), reached @champion. The signed verdict decides."""

    from quantgate.cards.trust import signed_verdict, verify_for_promotion, verify_version
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote

    cl, s = store["client"], store["settings"]
    model_uri, run_id = _log_tiny_model(store["home"] / "failed-files")
    tags = _sign(model_uri, run_id, store["policy"], s, verdict="fail")
    forged = {c.TAG_SOURCE: "tiny/1", c.TAG_VERDICT: "pass", c.TAG_APPROVAL: "approved", **tags}
    mv = cl.create_model_version("tiny-quantized", model_uri, run_id=run_id, tags=forged)
    report = verify_version(mv, settings=s)
    assert not report.passed and "quantgate.verdict='pass' but signed 'fail'" in _failed(report)["result tags"]
    with pytest.raises(RegistryError, match="failed verification"):
        promote("tiny", mv.version, settings=s, verify=verify_for_promotion)
    # the same version with the honest tag verifies, and is still refused: its signed verdict is fail
    cl.set_model_version_tag("tiny-quantized", mv.version, c.TAG_VERDICT, "fail")
    report = verify_version(cl.get_model_version("tiny-quantized", mv.version), settings=s)
    assert report.passed and signed_verdict(report) == "fail"
    with pytest.raises(RegistryError, match=r"failed its gate|signed gate verdict is fail"):
        promote("tiny", mv.version, settings=s, verify=verify_for_promotion)
    assert cl.get_registered_model("tiny-quantized").aliases.get("champion") != mv.version
    cl.delete_model_version("tiny-quantized", mv.version)


def test_flipped_byte_in_the_store_fails_verify_and_promotion(store: dict[str, Any]) -> None:
    from quantgate.cards.trust import verify_for_promotion, verify_version
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote

    f = store["stored"] / "artifacts" / "module.pt"
    original = f.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    try:
        report = verify_version("tiny-quantized@candidate", settings=store["settings"])
        assert _failed(report) == {"file digests": "changed: artifacts/module.pt"}
        with pytest.raises(RegistryError, match=r"failed verification, promotion refused.*artifacts/module\.pt"):
            promote("tiny", settings=store["settings"], verify=verify_for_promotion)
        assert "champion" not in store["client"].get_registered_model("tiny-quantized").aliases
        result = _cli("verify", "tiny-quantized@candidate")
        assert result.exit_code == 3 and "FAIL  file digests" in result.output
    finally:
        f.write_bytes(original)
    assert verify_version("tiny-quantized@candidate", settings=store["settings"]).passed


def test_changed_policy_file_fails(store: dict[str, Any]) -> None:
    from quantgate.cards.trust import verify_for_promotion, verify_version
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote

    policy: Path = store["policy"]
    policy.write_text(POLICY.replace("0.01", "0.05"))
    try:
        failed = _failed(verify_version("tiny-quantized@candidate", settings=store["settings"]))
        assert set(failed) == {"policy"} and "changed since the gate" in failed["policy"]
        with pytest.raises(RegistryError, match="policy"):
            promote("tiny", settings=store["settings"], verify=verify_for_promotion)
    finally:
        policy.write_text(POLICY)


def test_unknown_signing_key_is_rejected(store: dict[str, Any], tmp_path: Path, monkeypatch: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from quantgate.cards.signing import ENV_TRUSTED_KEYS, key_id, public_key_pem
    from quantgate.cards.trust import verify_version

    other = Ed25519PrivateKey.generate().public_key()
    (tmp_path / f"{key_id(other)}.pub").write_bytes(public_key_pem(other))
    monkeypatch.setenv(ENV_TRUSTED_KEYS, str(tmp_path))  # trust only someone else's key
    failed = _failed(verify_version("tiny-quantized@candidate", settings=store["settings"]))
    assert set(failed) == {"signature"} and "unknown key" in failed["signature"]


def test_unsigned_version_is_refused(store: dict[str, Any]) -> None:
    import mlflow

    from quantgate.cards.trust import verify_version
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote

    cl = store["client"]
    with mlflow.start_run() as run:  # same files, but a run that never signed anything
        pass
    src = cl.get_model_version("tiny-quantized", store["version"]).source
    tags = {c.TAG_SOURCE: "tiny/1", c.TAG_VERDICT: "pass", c.TAG_APPROVAL: "approved"}
    mv = cl.create_model_version("tiny-quantized", src, run_id=run.info.run_id, tags=tags)
    report = verify_version(mv, settings=store["settings"])
    assert [ch.name for ch in report.checks] == ["provenance"] and not report.passed
    assert "never signed" in report.checks[0].detail

    from quantgate.cards.trust import verify_for_promotion

    with pytest.raises(RegistryError, match="provenance"):
        promote("tiny", mv.version, settings=store["settings"], verify=verify_for_promotion)
    # the signed, untouched candidate is promoted
    promoted, _ = promote("tiny", settings=store["settings"], verify=verify_for_promotion)
    assert promoted.version == store["version"]


def test_keys_cli(tmp_path: Path, monkeypatch: Any, store: dict[str, Any]) -> None:
    from quantgate.settings import reset_settings

    monkeypatch.setenv("QUANTGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QUANTGATE_PROJECT_DIR", str(tmp_path))
    reset_settings()
    try:
        first = _cli("keys", "init")
        assert first.exit_code == 0, first.output
        assert "keyid" in first.output and (tmp_path / "home" / "keys" / "signing.key").exists()
        again = _cli("keys", "init")
        assert again.exit_code == 2 and "already exists" in again.output
        listed = _cli("keys", "list")
        assert listed.exit_code == 0 and "this machine signs with it" in listed.output
    finally:
        monkeypatch.undo()
        reset_settings()
