"""The quantgate server app (`mlflow server --app-name quantgate`) over real HTTP with basic auth:
who may approve, what the server stamps, protected aliases, the audit. SQLite, then PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
import requests
from quantgate_server import (
    BOOTSTRAP_PASSWORD,
    Server,
    bootstrap,
    client_env,
    pg_database,
    pg_down,
    register_governed,
    running_server,
    set_alias,
    set_tag,
    users_cli,
    version_tags,
)

from quantgate.registry import contract as c

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(quantgate_server: Server) -> Server:
    return quantgate_server


@pytest.fixture(scope="module")
def ready(server: Server) -> Iterator[dict[str, Any]]:
    """Two candidates registered by rita (one gets tampered with)."""
    with client_env(server) as settings:
        yield {
            "settings": settings,
            "good": register_governed(server, settings, "srvtiny"),
            "tampered": register_governed(server, settings, "srvtamper"),
        }


def test_bootstrap_admin_must_change_its_password(server: Server) -> None:
    status, body = server.pre_setup
    assert status == 403 and "must change its password" in body
    # after `quantgate users setup` the old password is gone and the new one works
    old = requests.get(f"{server.url}/api/2.0/mlflow/users/list", auth=("admin", BOOTSTRAP_PASSWORD), timeout=60)
    assert old.status_code == 401
    new = requests.get(f"{server.url}/api/2.0/mlflow/users/list", auth=server.auth("admin"), timeout=60)
    assert new.status_code == 200 and {"alice", "rita", "bob"} <= {u["username"] for u in new.json()["users"]}
    listed = users_cli(server, "admin", "list", "--config", str(server.config))
    assert listed.exit_code == 0, listed.output
    rows = {line.split("│")[1].strip(): line for line in listed.output.splitlines() if line.count("│") >= 4}
    assert "approver" in rows["alice"] and "approver" not in rows["bob"] and "promoter" in rows["quantgate-promoter"]
    again = users_cli(server, "admin", "add", "bob", QUANTGATE_USER_PASSWORD="another-Password-1")
    assert again.exit_code == 2 and "request to the quantgate server failed" in again.output


def _refused(resp: requests.Response, *needles: str) -> str:
    assert resp.status_code == 403, (resp.status_code, resp.text)
    body = resp.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    for n in needles:
        assert n in body["message"], body["message"]
    return str(body["message"])


def _champion(server: Server, name: str) -> str | None:
    r = requests.get(
        f"{server.url}/api/2.0/mlflow/registered-models/alias",
        params={"name": name, "alias": c.ALIAS_CHAMPION},
        auth=server.auth("bob"),
        timeout=60,
    )
    return str(r.json()["model_version"]["version"]) if r.status_code == 200 else None


def _audit(server: Server, model: str) -> list[Any]:
    from quantgate.promotion.auth_app.audit import AuditLog

    return AuditLog(server.auth_db).entries(model)


def test_registration_is_stamped_and_pending(server: Server, ready: dict[str, Any]) -> None:
    name, version = ready["good"]
    tags = version_tags(server, name, version)
    assert tags[c.TAG_REGISTERED_BY] == "rita"
    assert tags[c.TAG_APPROVAL] == "pending" and c.TAG_APPROVED_BY not in tags
    # a client cannot arrive with a stamp already on a new version
    r = requests.post(
        f"{server.url}/api/2.0/mlflow/model-versions/create",
        json={"name": name, "source": "file:///nowhere", "tags": [{"key": c.TAG_APPROVED_BY, "value": "rita"}]},
        auth=server.auth("rita"),
        timeout=60,
    )
    _refused(r, "server stamp tags")


def test_who_may_approve_and_what_is_stamped(server: Server, ready: dict[str, Any]) -> None:
    from quantgate.cards.trust import verify_version
    from quantgate.promotion.auth_app.stamps import statement_digest
    from quantgate.registry.mlflow_registry import client

    name, version = ready["good"]
    # not an approver (bob has EDIT on every model: basic-auth alone would let him)
    _refused(set_tag(server, "bob", name, version, c.TAG_APPROVAL, "approved", ajax=True), "only members of role")
    # the registrant is an approver, but not of her own version
    _refused(set_tag(server, "rita", name, version, c.TAG_APPROVAL, "approved"), "separation of duties")
    # nobody forges a stamp, not even an approver
    _refused(set_tag(server, "alice", name, version, c.TAG_APPROVED_BY, "alice"), "written by the quantgate server")
    _refused(set_tag(server, "bob", name, version, c.TAG_REGISTERED_BY, "someone"), "written by the quantgate server")
    bad = set_tag(server, "alice", name, version, c.TAG_APPROVAL, "yes please")
    assert bad.status_code == 400 and "is not one of" in bad.json()["message"]
    assert version_tags(server, name, version)[c.TAG_APPROVAL] == "pending"

    ok = set_tag(server, "alice", name, version, c.TAG_APPROVAL, "approved: metrics and card reviewed", ajax=True)
    assert ok.status_code == 200, ok.text
    tags = version_tags(server, name, version)
    assert tags[c.TAG_APPROVAL] == "approved"  # normalised: promotion compares it exactly
    assert tags[c.TAG_APPROVED_BY] == "alice"
    assert tags[c.TAG_APPROVAL_NOTE] == "metrics and card reviewed"
    assert tags[c.TAG_APPROVED_AT].startswith("20") and "T" in tags[c.TAG_APPROVED_AT]
    with client_env(server) as settings:
        from quantgate_server import as_user

        with as_user("alice"):
            report = verify_version(client(settings).get_model_version(name, version), settings=settings)
    assert report.passed and tags[c.TAG_APPROVED_DIGEST] == statement_digest(report.statement)

    # withdrawing the approval removes the stamps it left
    pending = set_tag(server, "alice", name, version, c.TAG_APPROVAL, "pending")
    assert pending.status_code == 200, pending.text
    assert not {c.TAG_APPROVED_BY, c.TAG_APPROVED_DIGEST} & set(version_tags(server, name, version))
    assert set_tag(server, "alice", name, version, c.TAG_APPROVAL, "approved").status_code == 200


def test_tampered_candidate_cannot_be_approved(server: Server, ready: dict[str, Any]) -> None:
    name, version = ready["tampered"]
    r = requests.get(
        f"{server.url}/api/2.0/mlflow/model-versions/get-download-uri",
        params={"name": name, "version": version},
        auth=server.auth("alice"),
        timeout=60,
    )
    stored = Path(unquote(urlparse(r.json()["artifact_uri"]).path))
    (stored / "MLmodel").write_text((stored / "MLmodel").read_text() + "\n# edited after signing\n")
    msg = _refused(set_tag(server, "alice", name, version, c.TAG_APPROVAL, "approved"), "failed verification")
    assert "MLmodel" in msg
    assert version_tags(server, name, version)[c.TAG_APPROVAL] == "pending"


def test_champion_alias_is_protected(server: Server, ready: dict[str, Any]) -> None:
    name, version = ready["good"]
    assert version_tags(server, name, version)[c.TAG_APPROVAL] == "approved"  # after the approval test
    _refused(set_alias(server, "alice", name, c.ALIAS_CHAMPION, version), "protected", "quantgate-promoter")
    _refused(set_alias(server, "bob", name, c.ALIAS_PREVIOUS, version), "protected")
    # the promoter, but not onto a version without a server-stamped approval
    _, other = ready["tampered"]
    tampered_name = ready["tampered"][0]
    _refused(set_alias(server, "quantgate-promoter", tampered_name, c.ALIAS_CHAMPION, other), "server-stamped approval")
    assert _champion(server, name) is None
    ok = set_alias(server, "quantgate-promoter", name, c.ALIAS_CHAMPION, version)
    assert ok.status_code == 200, ok.text
    assert _champion(server, name) == version
    gone = requests.delete(
        f"{server.url}/api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": c.ALIAS_CHAMPION},
        auth=server.auth("rita"),  # she owns the model (MANAGE): basic-auth lets her delete aliases
        timeout=60,
    )
    _refused(gone, "protected")
    assert version_tags(server, name, version) and _champion(server, name) == version
    # bob has EDIT but deleting an alias needs more: basic-auth refuses it itself, and it is audited too
    plain = requests.delete(
        f"{server.url}/api/2.0/mlflow/registered-models/alias",
        json={"name": name, "alias": c.ALIAS_CHAMPION},
        auth=server.auth("bob"),
        timeout=60,
    )
    assert plain.status_code == 403
    assert any(
        r.username == "bob" and r.action == "delete-alias" and "basic-auth" in r.reason for r in _audit(server, name)
    )
    # an ordinary alias is anyone's with EDIT
    assert set_alias(server, "bob", name, "staging-check", version).status_code == 200


def test_every_attempt_is_audited(server: Server, ready: dict[str, Any]) -> None:
    import sqlalchemy

    name, _ = ready["good"]
    rows = _audit(server, name)
    seen = {(r.username, r.action, r.key, r.outcome) for r in rows}
    assert ("rita", "create-version", "", "allowed") in seen
    assert ("bob", "set-tag", c.TAG_APPROVAL, "refused") in seen
    assert ("rita", "set-tag", c.TAG_APPROVAL, "refused") in seen
    assert ("alice", "set-tag", c.TAG_APPROVED_BY, "refused") in seen
    assert ("alice", "set-tag", c.TAG_APPROVAL, "allowed") in seen
    assert ("alice", "set-alias", c.ALIAS_CHAMPION, "refused") in seen
    assert ("quantgate-promoter", "set-alias", c.ALIAS_CHAMPION, "allowed") in seen
    approved = [r for r in rows if r.outcome == "allowed" and r.value.startswith("approved: metrics")]
    assert approved and "digest sha256:" in approved[0].reason
    sod = next(r for r in rows if r.username == "rita" and r.key == c.TAG_APPROVAL)
    assert "separation of duties" in sod.reason
    from typer.testing import CliRunner

    from quantgate.cli import app

    shown = CliRunner().invoke(app, ["users", "audit", "--database-uri", server.auth_db, "--model", name])
    assert shown.exit_code == 0 and "refused" in shown.output and "separation" in shown.output, shown.output
    # append-only, enforced by the database
    engine = sqlalchemy.create_engine(server.auth_db)
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE quantgate_audit SET outcome = 'allowed' WHERE outcome = 'refused'"))
    with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM quantgate_audit"))
    assert len(_audit(server, name)) >= len(rows)


def test_postgresql_backend_and_audit(tmp_path: Path) -> None:
    """The same app on PostgreSQL (MLflow store and auth/audit database): refusal, approval, stamps, audit."""
    if reason := pg_down():
        pytest.skip(reason)
    import sqlalchemy

    with (
        pg_database("qg_srv_mlflow", "postgresql+psycopg") as backend,
        pg_database("qg_srv_auth", "postgresql+psycopg") as auth_db,
    ):
        with running_server(tmp_path, backend_uri=backend, auth_db=auth_db) as server:
            bootstrap(server)
            with client_env(server) as settings:
                name, version = register_governed(server, settings, "pgtiny")
            _refused(set_tag(server, "bob", name, version, c.TAG_APPROVAL, "approved"), "only members of role")
            _refused(set_tag(server, "rita", name, version, c.TAG_APPROVAL, "approved"), "separation of duties")
            ok = set_tag(server, "alice", name, version, c.TAG_APPROVAL, "approved")
            assert ok.status_code == 200, ok.text
            tags = version_tags(server, name, version)
            assert tags[c.TAG_APPROVED_BY] == "alice" and tags[c.TAG_APPROVED_DIGEST].startswith("sha256:")
            outcomes = [(r.username, r.outcome) for r in _audit(server, name) if r.key == c.TAG_APPROVAL]
            assert outcomes == [("bob", "refused"), ("rita", "refused"), ("alice", "allowed")]
            engine = sqlalchemy.create_engine(auth_db)
            try:
                with pytest.raises(sqlalchemy.exc.DatabaseError, match="append-only"), engine.begin() as conn:
                    conn.execute(sqlalchemy.text("DELETE FROM quantgate_audit"))
            finally:
                engine.dispose()
