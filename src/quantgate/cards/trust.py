"""Provenance and signatures in the MLflow store: attach at record time, verify before promotion.

- :func:`attach_provenance` runs inside ``pipeline.record_candidate`` after ``log_model``: it
  digests the logged model directory as stored, builds the statement, signs it and logs
  ``provenance/statement.json`` and ``provenance/envelope.json`` to the run.
- :func:`verify_version` re-reads a registered version's stored files and its run's envelope
  and checks everything (see :func:`quantgate.cards.verify.verify_model`).
- :func:`verify_for_promotion` is the ``verify`` hook of ``promotion.service.promote``.

Model files are read where MLflow stores them (the ``file://`` location of the embedded store
is read in place; other stores are downloaded to a temporary directory). Never through a
``models:/`` URI: MLflow adds a ``registered_model_meta`` file to such downloads, which is not
part of the artifact.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from quantgate.cards.provenance import build_statement, digest_tree, signed_gate, tree_digest
from quantgate.cards.signing import canonical_json, ensure_signing_key, load_trusted_keys, sign_statement
from quantgate.cards.signing import statement_digest as provenance_digest
from quantgate.cards.verify import (
    Check,
    VerificationReport,
    check_policy,
    check_result_tags,
    recorded_policy_path,
    verify_model,
)
from quantgate.errors import RegistryError
from quantgate.registry import contract as c
from quantgate.settings import Settings, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from quantgate.cards.signing import TrustedKeys

PROVENANCE_DIR = "provenance"
STATEMENT_FILE = f"{PROVENANCE_DIR}/statement.json"
ENVELOPE_FILE = f"{PROVENANCE_DIR}/envelope.json"
from quantgate.registry.contract import TAG_ARTIFACT_DIGEST, TAG_PROVENANCE, TAG_SIGNING_KEY  # noqa: E402


def _storage_uri(model_uri: str, cl: MlflowClient) -> str:
    """Where the files of ``model_uri`` are stored (never a ``models:/`` URI, see module doc)."""
    import mlflow

    if not model_uri.startswith("models:/"):
        return model_uri
    rest = model_uri[len("models:/") :]
    if "/" not in rest and "@" not in rest:  # a LoggedModel id (mlflow 3: models:/m-...)
        return str(mlflow.get_logged_model(rest).artifact_location)
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return str(cl.get_model_version_download_uri(name, cl.get_model_version_by_alias(name, alias).version))
    name, version = rest.rsplit("/", 1)
    return str(cl.get_model_version_download_uri(name, version))


@contextmanager
def _local_tree(uri: str) -> Iterator[Path]:
    """The directory of ``uri`` on this machine: in place for ``file:``, else a temporary copy."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        yield Path(unquote(parsed.path))
        return
    import mlflow

    with tempfile.TemporaryDirectory(prefix="quantgate-verify-") as tmp:
        yield Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))


def source_artifact_digest(name: str, version: str | int, settings: Settings | None = None) -> dict[str, Any]:
    """``{"name", "version", "uri", "digest", "files"}`` for a registered source version: the
    ``source`` argument of :func:`attach_provenance` / ``build_statement``, and ``source.digest``
    for the model card."""
    from quantgate.registry.mlflow_registry import client

    cl = client(settings)
    uri = f"models:/{name}/{version}"
    with _local_tree(_storage_uri(uri, cl)) as d:
        files = digest_tree(d)
    return {"name": name, "version": str(version), "uri": uri, "digest": tree_digest(files), "files": files}


def attach_provenance(
    model_uri: str,
    run_id: str,
    *,
    name: str,
    source: Mapping[str, Any],
    materials: Mapping[str, Mapping[str, Any]],
    builder: Mapping[str, Any],
    settings: Settings | None = None,
    create_key: bool | None = None,
    gate: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Digest, sign and log the provenance of the model just logged at ``model_uri`` in ``run_id``.

    ``source`` needs ``name`` and ``version``; its artifact digest is computed here unless given
    (``source_artifact_digest``). A signing key is created on first use only with the embedded
    store (``create_key=None``): a laptop or the demo just works, while a worker of a server
    deployment must be given the team's key (``quantgate keys init`` / ``QUANTGATE_SIGNING_KEY``)
    instead of inventing one nobody trusts. ``gate`` (``provenance.gate_summary``) is the verdict
    and result tags to sign with it. Returns the provenance tags for the registered version.
    """
    from quantgate.registry.mlflow_registry import client

    s = settings or get_settings()
    cl = client(s)
    src = dict(source)
    if not src.get("digest"):
        computed = source_artifact_digest(str(src["name"]), str(src["version"]), s)
        src = {**computed, **{k: v for k, v in src.items() if v}}
    key, keyid = ensure_signing_key(s, create=s.embedded_mlflow if create_key is None else create_key)
    with _local_tree(_storage_uri(model_uri, cl)) as d:
        files = digest_tree(d)
        statement = build_statement(
            d, name=name, source=src, materials=materials, builder=builder, files=files, gate=gate
        )
    envelope = sign_statement(statement, key)
    cl.log_text(run_id, json.dumps(statement, indent=2, sort_keys=True), STATEMENT_FILE)
    cl.log_text(run_id, json.dumps(envelope, indent=2), ENVELOPE_FILE)
    return {TAG_PROVENANCE: STATEMENT_FILE, TAG_SIGNING_KEY: keyid, TAG_ARTIFACT_DIGEST: tree_digest(files)}


def _read_provenance(cl: MlflowClient, run_id: str, tmp: Path) -> tuple[dict[str, Any] | None, Any, str]:
    """(envelope or None, statement.json or None, problem) from the run's artifacts."""
    try:
        local = Path(cl.download_artifacts(run_id, PROVENANCE_DIR, str(tmp)))
    except Exception as exc:  # mlflow raises different types per store for a missing path
        return None, None, f"run {run_id} has no {PROVENANCE_DIR}/ ({type(exc).__name__}): never signed"
    env_path, st_path = local / "envelope.json", local / "statement.json"
    if not env_path.is_file():
        return None, None, f"run {run_id} has no {ENVELOPE_FILE}: never signed"
    try:
        envelope = json.loads(env_path.read_text())
    except ValueError as exc:
        return None, None, f"{ENVELOPE_FILE} is not JSON: {exc}"
    statement = None
    if st_path.is_file():
        try:
            statement = json.loads(st_path.read_text())
        except ValueError:
            statement = "<not JSON>"
    return envelope, statement, ""


def signed_run_gate(run_id: str, *, settings: Settings | None = None) -> tuple[dict[str, Any] | None, str]:
    """(the gate result signed in run ``run_id`` by a trusted key, or None; why not). What the server
    checks before a version carrying ``quantgate.verdict=pass`` may be created from that run."""
    from quantgate.cards.signing import verify_envelope
    from quantgate.registry.mlflow_registry import client

    if not run_id:
        return None, "no run_id given"
    s = settings or get_settings()
    with tempfile.TemporaryDirectory(prefix="quantgate-prov-") as tmp:
        envelope, _, problem = _read_provenance(client(s), run_id, Path(tmp))
    if envelope is None:
        return None, problem
    env = verify_envelope(envelope, load_trusted_keys(s))
    if not env.signed_by or env.payload is None:
        return None, env.problem or "not signed by a trusted key"
    try:
        gate = signed_gate(json.loads(env.payload))
    except ValueError:
        return None, "the signed payload is not JSON"
    return (gate, "") if gate is not None else (None, "the signed statement carries no gate result")


def verify_version(
    ref: str | ModelVersion,
    *,
    settings: Settings | None = None,
    policy_file: Path | None = None,
    check_policy_file: bool = True,
    trusted_keys: TrustedKeys | None = None,
) -> VerificationReport:
    """Verify a registered version (``NAME/VERSION``, ``NAME@ALIAS`` or a ModelVersion).

    Checks, all reported: the run holds a signed statement; the signature is by a trusted key;
    every stored model file matches its recorded sha256, none missing, none extra; the policy
    file (``policy_file``, else the one recorded, resolved from the project dir) is unchanged;
    ``statement.json`` is the signed payload; the statement is about this model and source; the
    version's result tags (verdict, recipe, policy digest, target, figures) are the signed ones.
    """
    from quantgate.registry.mlflow_registry import client, resolve_version

    s = settings or get_settings()
    cl = client(s)
    mv = resolve_version(ref, s) if isinstance(ref, str) else ref
    label = f"{mv.name}/{mv.version}"
    report = VerificationReport(label)
    if not mv.run_id:
        report.add("provenance", False, f"{label} has no run, so no provenance statement")
        return report
    with tempfile.TemporaryDirectory(prefix="quantgate-prov-") as tmp:
        envelope, statement_file, problem = _read_provenance(cl, mv.run_id, Path(tmp))
    if envelope is None:
        report.add("provenance", False, problem)
        return report
    report.add("provenance", True, f"{ENVELOPE_FILE} in run {mv.run_id}")
    keys = load_trusted_keys(s) if trusted_keys is None else trusted_keys
    with _local_tree(str(cl.get_model_version_download_uri(mv.name, mv.version))) as d:
        inner = verify_model(d, envelope, keys, subject=label)
    report.checks += inner.checks
    report.statement, report.signed_by = inner.statement, inner.signed_by
    st = inner.statement
    if st is None:
        return report

    if policy_file is not None:
        check_policy(report, st, Path(policy_file))
    elif check_policy_file:
        recorded = recorded_policy_path(st)
        if recorded is None:
            report.add("policy", False, "the statement records no policy file")
        else:
            check_policy(report, st, s.path(recorded))

    if statement_file is not None:
        same = isinstance(statement_file, dict) and canonical_json(statement_file) == canonical_json(st)
        report.add(
            "statement.json",
            same,
            "is the signed payload" if same else f"{STATEMENT_FILE} differs from the signed payload (edited?)",
        )
    ext = st.get("predicate", {}).get("buildDefinition", {}).get("externalParameters", {})
    want_source = mv.tags.get(c.TAG_SOURCE)
    ok = ext.get("name") == mv.name and (want_source is None or ext.get("source") == want_source)
    report.add(
        "binding",
        ok,
        f"statement is for {ext.get('name')} from {ext.get('source')}"
        if ok
        else f"statement is for {ext.get('name')} from {ext.get('source')}, "
        f"not {mv.name} from {want_source or '(no quantgate.source tag)'}",
    )
    check_result_tags(report, st, dict(mv.tags or {}), provenance_path=STATEMENT_FILE)
    return report


def signed_verdict(report: VerificationReport) -> str | None:
    """The verdict in the verified statement (``pass``/``fail``), None when not verified or absent.

    What approval, promotion and serving decide from: a ``quantgate.verdict`` tag is only a copy.
    """
    if not report.passed or report.statement is None:
        return None
    gate = signed_gate(report.statement)
    return str(gate["verdict"]) if gate and gate.get("verdict") in ("pass", "fail") else None


def signed_target(report: VerificationReport) -> str:
    """The instruction set the verified statement says the candidate was gated for ('' if none)."""
    gate = signed_gate(report.statement) if report.statement is not None else None
    return str(((gate or {}).get("tags") or {}).get(c.TAG_TARGET, ""))


def approval_problems(mv: ModelVersion, report: VerificationReport, *, require_stamp: bool) -> list[str]:
    """Why an approval does not (or no longer) hold for ``mv``, given its verification report.

    - the server's stamp (``quantgate.approved_by`` and ``quantgate.approved_digest``) is required
      when ``require_stamp`` (server mode: an approval without it did not go through the quantgate
      server app);
    - when ``quantgate.approved_digest`` is present, the version's signed statement must still have
      that digest: the artifact, policy or verdict it vouches for changed since the approval.
    """
    problems = []
    stamped_by, stamped_digest = mv.tags.get(c.TAG_APPROVED_BY), mv.tags.get(c.TAG_APPROVED_DIGEST)
    if require_stamp and not (stamped_by and stamped_digest):
        problems.append(
            f"the approval carries no server stamp ({c.TAG_APPROVED_BY}/{c.TAG_APPROVED_DIGEST}): "
            "approve through `mlflow server --app-name quantgate`"
        )
    if stamped_digest and report.statement is not None:
        now = provenance_digest(report.statement)
        if now != stamped_digest:
            problems.append(
                f"the version changed since it was approved (provenance {now}, approved {stamped_digest}): "
                "approve it again"
            )
    elif stamped_digest:
        problems.append("the approved provenance could not be read back, so the approval cannot be checked")
    return problems


def verify_for_promotion(
    mv: ModelVersion,
    settings: Settings | None = None,
    *,
    require_stamp: bool | None = None,
    check_host: bool = True,
) -> str | None:
    """``promote(..., verify=verify_for_promotion)``: refuse (RegistryError) unless the signed
    provenance verifies, its signed verdict is pass, the approval still binds to it
    (:func:`approval_problems`; the server's stamp required unless the store is embedded, or as
    ``require_stamp`` says) and, when ``check_host``, this host's instruction set is the one the
    candidate was gated for. Returns the provenance digest. The server app checks a ``@champion``
    move with it too (stamp required, no host check: the server is not where the model runs)."""
    from quantgate.hardware import host_mismatch

    s = settings or get_settings()
    report = verify_version(mv, settings=s)
    if not report.passed:
        failed = "; ".join(f"{ch.name}: {ch.detail}" for ch in report.failures())
        raise RegistryError(
            f"{mv.name}/{mv.version} failed verification, promotion refused ({failed})",
            f"run: quantgate verify {mv.name}/{mv.version}",
        )
    verdict = signed_verdict(report)
    if verdict != "pass":
        raise RegistryError(
            f"{mv.name}/{mv.version}: promotion refused, its signed gate verdict is {verdict or 'missing'}, not pass"
        )
    stamp = not s.embedded_mlflow if require_stamp is None else require_stamp
    problems = approval_problems(mv, report, require_stamp=stamp)
    if problems:
        raise RegistryError(f"{mv.name}/{mv.version}: promotion refused, {'; '.join(problems)}")
    mismatch = host_mismatch(signed_target(report)) if check_host else None
    if mismatch:
        raise RegistryError(
            f"{mv.name}/{mv.version}: promotion refused, {mismatch}",
            "promote from a host of the target instruction set, or quantize again for this one",
        )
    return provenance_digest(report.statement) if report.statement is not None else None


__all__ = [
    "ENVELOPE_FILE",
    "STATEMENT_FILE",
    "TAG_ARTIFACT_DIGEST",
    "TAG_PROVENANCE",
    "TAG_SIGNING_KEY",
    "Check",
    "VerificationReport",
    "approval_problems",
    "attach_provenance",
    "provenance_digest",
    "signed_run_gate",
    "signed_target",
    "signed_verdict",
    "source_artifact_digest",
    "verify_for_promotion",
    "verify_version",
]
