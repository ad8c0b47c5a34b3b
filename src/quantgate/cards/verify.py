"""Verify a model directory against a signed provenance statement (no MLflow here).

Every check runs and is reported, so a reviewer sees everything that is wrong at once; the
verification passes only if all of them pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from quantgate.cards.provenance import (
    DEP_POLICY,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    artifact_tree_digest,
    dependency,
    digest_tree,
    policy_file_digest,
    signed_gate,
    subject_digests,
)
from quantgate.cards.signing import TrustedKeys, verify_envelope
from quantgate.registry import contract as c


class Check(NamedTuple):
    name: str
    passed: bool
    detail: str


@dataclass
class VerificationReport:
    """What was checked, one :class:`Check` (name, passed, detail) per line."""

    subject: str
    checks: list[Check] = field(default_factory=list)
    statement: dict[str, Any] | None = None
    signed_by: str | None = None

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def add(self, name: str, passed: bool, detail: str) -> bool:
        self.checks.append(Check(name, passed, detail))
        return passed

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def lines(self) -> list[str]:
        width = max((len(c.name) for c in self.checks), default=0)
        out = [f"verifying {self.subject}"]
        out += [f"  {'ok  ' if c.passed else 'FAIL'}  {c.name.ljust(width)}  {c.detail}" for c in self.checks]
        if self.passed:
            out.append(f"verified: {len(self.checks)} checks passed")
        else:
            out.append(f"NOT verified: {len(self.failures())} of {len(self.checks)} checks failed")
        return out

    def summary(self) -> str:
        """One line: the failed checks and their details (for an error message)."""
        if self.passed:
            return f"{self.subject} verified ({len(self.checks)} checks)"
        return f"{self.subject} failed verification: " + "; ".join(f"{c.name}: {c.detail}" for c in self.failures())

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "passed": self.passed,
            "signed_by": self.signed_by,
            "checks": [c._asdict() for c in self.checks],
        }


def _names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


#: files MLflow itself adds to a stored model artifact at registration time (root level only)
MLFLOW_REGISTRATION_FILES = frozenset({"registered_model_meta"})


def verify_model(
    model_dir: Path,
    envelope: Mapping[str, Any],
    trusted_keys: TrustedKeys,
    *,
    policy_file: Path | None = None,
    subject: str | None = None,
) -> VerificationReport:
    """Check ``model_dir`` against a DSSE ``envelope`` signed by one of ``trusted_keys``.

    Checks: the signature (unknown key -> reject), the statement's type, every subject digest
    against a digest recomputed from the files, no missing and no extra files, and, when
    ``policy_file`` is given, that its digest equals the policy recorded in the statement.
    """
    report = VerificationReport(subject or str(model_dir))
    env = verify_envelope(envelope, trusted_keys)
    if env.signed_by:
        report.signed_by = env.signed_by
        report.add("signature", True, f"ed25519, DSSE, by trusted key {env.signed_by[:16]}…")
    else:
        report.add("signature", False, env.problem or "not signed by a trusted key")

    statement: dict[str, Any] | None = None
    if env.payload is not None:
        try:
            parsed = json.loads(env.payload)
            statement = parsed if isinstance(parsed, dict) else None
        except ValueError:
            statement = None
    if statement is None:
        report.add("statement", False, "the signed payload is not a JSON statement")
        return report
    report.statement = statement
    kind_ok = statement.get("_type") == STATEMENT_TYPE and statement.get("predicateType") == PREDICATE_TYPE
    try:
        recorded = subject_digests(statement)
    except ValueError as exc:
        report.add("statement", False, str(exc))
        return report
    report.add(
        "statement",
        kind_ok,
        f"in-toto Statement v1, SLSA provenance v1, {len(recorded)} subjects"
        if kind_ok
        else f"unexpected _type/predicateType: {statement.get('_type')} / {statement.get('predicateType')}",
    )

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        report.add("files", False, f"model directory not found: {model_dir}")
    else:
        actual = digest_tree(model_dir)
        # MLflow writes `registered_model_meta` (the registered name and version, no code or
        # weights) into the stored artifact whenever a version is registered from it: after
        # signing, and again when the same artifact is registered once more. It is the
        # registry's bookkeeping, not the model, so it is neither required nor compared.
        ours = {k: v for k, v in recorded.items() if k not in MLFLOW_REGISTRATION_FILES}
        changed = sorted(k for k in ours if k in actual and actual[k] != ours[k])
        missing = sorted(k for k in ours if k not in actual)
        extra = sorted(k for k in actual if k not in recorded and k not in MLFLOW_REGISTRATION_FILES)
        report.add(
            "file digests",
            not changed,
            f"changed: {_names(changed)}" if changed else f"{len(ours) - len(missing)} files match their sha256",
        )
        report.add("missing files", not missing, f"missing: {_names(missing)}" if missing else "none")
        report.add("extra files", not extra, f"not in the statement: {_names(extra)}" if extra else "none")

    if policy_file is not None:
        check_policy(report, statement, Path(policy_file))
    return report


def check_policy(report: VerificationReport, statement: Mapping[str, Any], policy_file: Path) -> bool:
    """The policy file's digest now equals the one the candidate was gated under."""
    dep = dependency(statement, DEP_POLICY)
    want = str((dep or {}).get("digest", {}).get("sha256", ""))
    if not want:
        return report.add("policy", False, "the statement records no policy digest")
    if not policy_file.is_file():
        return report.add("policy", False, f"policy file not found: {policy_file}")
    have = policy_file_digest(policy_file).removeprefix("sha256:")
    if have == want:
        return report.add("policy", True, f"{policy_file} unchanged since the gate (sha256 {want[:12]}…)")
    return report.add(
        "policy", False, f"{policy_file} changed since the gate: sha256 {have[:12]}… != recorded {want[:12]}…"
    )


def recorded_policy_path(statement: Mapping[str, Any]) -> str | None:
    """The policy file as the flow named it (project-relative or absolute), if recorded."""
    dep = dependency(statement, DEP_POLICY) or {}
    path = dep.get("annotations", {}).get("path") if isinstance(dep.get("annotations"), dict) else None
    return str(path) if path else None


def check_result_tags(
    report: VerificationReport,
    statement: Mapping[str, Any],
    tags: Mapping[str, str],
    *,
    provenance_path: str,
) -> bool:
    """The version's result tags are the ones signed: the statement's ``gate`` byproduct holds the
    verdict and every result tag the version was registered with; each must be on the version with
    the signed value, and no other result tag may be (an added ``quantgate.target`` or verdict is as
    much a forgery as a changed one). The provenance tags must name this statement: its path, the
    key that signed it and its artifact tree digest. Monitoring's tags come after the gate.
    """
    gate = signed_gate(statement)
    if gate is None or not isinstance(gate.get("tags"), dict) or gate.get("verdict") not in ("pass", "fail"):
        report.add(
            "gate",
            False,
            "the statement carries no signed gate result (signed by an older quantgate?): govern it again",
        )
        return report.add("result tags", False, "nothing signed to compare the version's tags with")
    report.add("gate", True, f"signed verdict {gate['verdict']} under policy {gate.get('policy', {}).get('name')}")
    signed: dict[str, str] = {str(k): str(v) for k, v in gate["tags"].items()}
    bound = {c.TAG_PROVENANCE: provenance_path, c.TAG_ARTIFACT_DIGEST: artifact_tree_digest(statement) or ""}
    if report.signed_by:  # an unknown key is the signature check's failure, not a tag's
        bound[c.TAG_SIGNING_KEY] = report.signed_by
    problems = []
    for k, want in {**signed, **bound}.items():
        have = tags.get(k)
        if have is None:
            problems.append(f"{k} missing (signed {want!r})")
        elif have != want:
            problems.append(f"{k}={have!r} but signed {want!r}")
    extra = sorted(
        k
        for k in tags
        if c.result_tag(k) and k not in signed and k not in c.PROVENANCE_TAGS and k not in c.MONITOR_TAGS
    )
    problems += [f"{k}={tags[k]!r} is not in the signed statement" for k in extra]
    if gate["verdict"] != signed.get(c.TAG_VERDICT, gate["verdict"]):
        problems.append(f"the signed tags say verdict {signed.get(c.TAG_VERDICT)!r}, the gate {gate['verdict']!r}")
    detail = (
        "tags disagree with the signed statement: " + _names(problems, limit=4)
        if problems
        else f"{len(signed) + len(bound)} result tags match the signed statement"
    )
    return report.add("result tags", not problems, detail)
