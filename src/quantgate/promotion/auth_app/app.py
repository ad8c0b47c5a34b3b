"""The ``quantgate`` MLflow app: basic-auth, then quantgate's approval rules as Flask hooks.

Registered as the ``mlflow.app`` entry point ``quantgate`` (``mlflow server --app-name quantgate``).
``create_app`` lets MLflow's basic-auth install itself (users, roles, permissions, its own
``before_request``), then adds two hooks. Flask runs ``before_request`` hooks in the order they
were added, so ours sees only requests basic-auth has authenticated and authorised (EDIT on the
model), and can only narrow them:

- ``before_request``: tag writes on model versions, alias moves and version creation are checked
  against :mod:`quantgate.promotion.auth_app.rules`; an approval is verified (signature, files, policy:
  :func:`quantgate.cards.trust.verify_version`) before it may happen. A refusal is a JSON
  ``{"error_code": "PERMISSION_DENIED", "message": ...}`` with 403, which the MLflow UI shows.
- ``after_request``: on success the server writes its stamps (``quantgate.registered_by`` on a new
  version, ``quantgate.approved_by/_at/_digest`` and the note on an approval) straight into the
  registry store; every attempt, allowed or refused (by basic-auth or by us), is audited.

The registry store is the server's own backend (no HTTP round trip, no client identity), so the
stamps cannot come from a client.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quantgate.promotion.auth_app import rules
from quantgate.promotion.auth_app.audit import AuditLog
from quantgate.promotion.auth_app.config import ROLE_WORKSPACE, ServerConfig, read_server_config
from quantgate.promotion.auth_app.stamps import APPROVAL_STAMPS, approval_stamps, statement_digest
from quantgate.registry import contract as c

if TYPE_CHECKING:
    from flask import Flask, Response

_log = logging.getLogger("quantgate.promotion.auth_app")

# REST suffixes (after /api/2.0 or /ajax-api/2.0) -> audited action name
ACTIONS = {
    ("/mlflow/model-versions/set-tag", "POST"): "set-tag",
    ("/mlflow/model-versions/delete-tag", "DELETE"): "delete-tag",
    ("/mlflow/registered-models/alias", "POST"): "set-alias",
    ("/mlflow/registered-models/alias", "DELETE"): "delete-alias",
    ("/mlflow/model-versions/create", "POST"): "create-version",
    ("/mlflow/registered-models/rename", "POST"): "rename-model",
    ("/mlflow/users/update-password", "PATCH"): "update-password",
}
ADMIN_PASSWORD_CHANGED = "admin-password-changed"


def _action(path: str, method: str) -> str | None:
    for (suffix, m), name in ACTIONS.items():
        if m == method and (path.endswith("/2.0" + suffix) or path.endswith("/3.0" + suffix)):
            return name
    return None


class QuantgateHooks:
    """The state the hooks share: configuration, the audit log and the stores."""

    def __init__(self, config: ServerConfig, audit: AuditLog, admin_username: str | None) -> None:
        self.config = config
        self.audit = audit
        self.admin_username = admin_username
        self._admin_ok = False

    # ---- facts the rules need -------------------------------------------------------------
    @staticmethod
    def registry() -> Any:
        from mlflow.server.handlers import _get_model_registry_store

        return _get_model_registry_store()

    def is_approver(self, username: str) -> bool:
        from mlflow.server.auth import store

        user = store.get_user(username)
        return any(
            r.name == self.config.approvers_role and r.workspace == ROLE_WORKSPACE
            for r in store.list_user_roles(user.id)
        )

    def version_tags(self, name: str, version: str) -> dict[str, str] | None:
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.registry().get_model_version(name, str(version)).tags)
        except MlflowException:
            return None  # let MLflow answer with its own 404

    def admin_password_changed(self) -> bool:
        if self._admin_ok:
            return True
        from sqlalchemy import select

        t = self.audit.table
        q = select(t.c.id).where(t.c.action == ADMIN_PASSWORD_CHANGED, t.c.username == self.admin_username)
        with self.audit.engine.connect() as conn:
            self._admin_ok = conn.execute(q.limit(1)).first() is not None
        return self._admin_ok

    # ---- hooks ----------------------------------------------------------------------------
    def before(self) -> Response | None:
        from flask import g, request

        action = _action(request.path, request.method)
        user = getattr(g, "mlflow_authenticated_user", None)
        if user is None:
            return None  # unprotected route (static, health)
        if user == self.admin_username and not self.admin_password_changed() and action != "update-password":
            reason = (
                f"the bootstrap admin '{user}' must change its password before anything else: run quantgate users setup"
            )
            if action is not None:
                self._record(user, action, _params(), "refused", reason)
                g.qg_audited = True
            return _error(403, reason)
        if action is None or action == "update-password":
            return None
        g.qg_action = action
        params = _params()
        g.qg_params = params
        name = str(params.get("name", ""))
        conflict = _conflicting_params()
        if conflict:  # basic-auth and MLflow's handler would read different requests
            self._record(user, action, params, "refused", conflict)
            g.qg_audited = True
            return _error(400, conflict, name=name)
        try:
            decision = self.decide(action, user, params)
        except Exception as exc:  # a check that could not run refuses, and says so
            _log.exception("quantgate check failed")
            decision = rules.Decision.refuse(f"the check could not run ({type(exc).__name__}: {exc})")
        if not decision.allowed:
            self._record(user, action, params, "refused", decision.reason)
            g.qg_audited = True
            status = 400 if "is not one of" in decision.reason else 403
            return _error(status, decision.reason, name=name)
        g.qg_decision = decision
        return None

    def decide(self, action: str, user: str, params: dict[str, Any]) -> rules.Decision:
        from flask import g

        name, version = str(params.get("name", "")), str(params.get("version", ""))
        if action in ("set-tag", "delete-tag"):
            key = str(params.get("key", ""))
            value = str(params["value"]) if action == "set-tag" and params.get("value") is not None else None
            if action == "set-tag" and value is None:
                value = ""
            if c.tag_writer(key) == c.WRITER_ANYONE:  # not quantgate's: MLflow's permissions decide
                return rules.Decision.allow()
            tags = self.version_tags(name, version)
            if tags is None:
                return rules.Decision.allow("no such version: MLflow answers")
            approver = rules.governed(name) and self.is_approver(user)
            decision = rules.tag_write(
                user=user,
                model=name,
                key=key,
                value=value,
                tags=tags,
                is_approver=approver,
                approvers_role=self.config.approvers_role,
                pipeline=self.config.pipeline,
                promoter=self.config.promoter,
            )
            g.qg_previous_approval = tags.get(c.TAG_APPROVAL)
            if decision.allowed and decision.approving:
                return self.verify(name, version, decision)
            return decision
        if action in ("set-alias", "delete-alias"):
            alias = str(params.get("alias", ""))
            target = None
            if action == "set-alias" and rules.protected_alias(alias):
                target = self.version_tags(name, version) or {}
            decision = rules.alias_write(
                user=user, alias=alias, promoter=self.config.promoter, target_tags=target, model=name
            )
            if decision.allowed and decision.approving:
                return self.verify_champion(name, version)
            return decision
        if action == "rename-model":
            return rules.rename(name=name, new_name=str(params.get("new_name", "")))
        if action == "create-version":
            raw = params.get("tags") or []
            tags = {str(t.get("key")): str(t.get("value", "")) for t in raw if isinstance(t, dict)}
            decision = rules.version_create(model=name, tags=tags, user=user, pipeline=self.config.pipeline)
            if decision.allowed and rules.governed(name) and tags.get(c.TAG_VERDICT) == "pass":
                return self.check_signed_pass(name, str(params.get("run_id") or ""))
            return decision
        return rules.Decision.allow()

    def check_signed_pass(self, name: str, run_id: str) -> rules.Decision:
        """A version registered as passing must come from a run whose *signed* verdict is pass."""
        from quantgate.cards.trust import signed_run_gate

        gate, problem = signed_run_gate(run_id, settings=_server_settings())
        if gate is None:
            return rules.Decision.refuse(
                f"a version of {name} registered with verdict pass needs a signed run: {problem}"
            )
        if gate.get("verdict") != "pass":
            return rules.Decision.refuse(
                f"run {run_id}'s signed verdict is {gate.get('verdict')}: it cannot be registered as passing"
            )
        return rules.Decision.allow("signed verdict pass")

    def verify_champion(self, name: str, version: str) -> rules.Decision:
        """@champion only at a version that passes promotion's own checks now: it verifies, its
        signed verdict is pass, its approval is stamped and bound to the verified statement."""
        from quantgate.cards.trust import verify_for_promotion
        from quantgate.errors import RegistryError

        mv = self.registry().get_model_version(name, version)
        try:
            verify_for_promotion(mv, settings=_server_settings(), require_stamp=True, check_host=False)
        except RegistryError as exc:
            return rules.Decision.refuse(f"@champion refused: {exc.one_line()}")
        return rules.Decision.allow("champion verified")

    def verify(self, name: str, version: str, decision: rules.Decision) -> rules.Decision:
        """An approval only of a version whose signed evidence verifies now."""
        from flask import g

        from quantgate.cards.trust import signed_verdict, verify_version

        mv = self.registry().get_model_version(name, version)
        report = verify_version(mv, settings=_server_settings())
        if not report.passed or report.statement is None:
            failed = "; ".join(f"{ch.name}: {ch.detail}" for ch in report.failures()) or "no verified statement"
            return rules.Decision.refuse(f"{name}/{version} failed verification, it cannot be approved ({failed})")
        verdict = signed_verdict(report)
        if verdict != "pass":
            return rules.Decision.refuse(
                f"{name}/{version}'s signed gate verdict is {verdict or 'missing'}, not pass: it can never be approved"
            )
        g.qg_digest = statement_digest(report.statement)
        return decision

    def after(self, resp: Response) -> Response:
        from flask import g, request

        action = getattr(g, "qg_action", None) or _action(request.path, request.method)
        if action is None or getattr(g, "qg_audited", False):
            return resp
        user = getattr(g, "mlflow_authenticated_user", None) or (
            request.authorization.username if request.authorization else "(anonymous)"
        )
        params = getattr(g, "qg_params", None) or _params()
        if action == "update-password":
            if resp.status_code < 400 and str(params.get("username")) == self.admin_username:
                self.audit.record(username=user, action=ADMIN_PASSWORD_CHANGED, outcome="allowed")
                self._admin_ok = False  # re-read: another worker may have changed it too
            return resp
        if resp.status_code in (401, 403) and getattr(g, "qg_decision", None) is None:
            who = "not authenticated" if resp.status_code == 401 else "basic-auth: no permission on this model"
            self._record(user, action, params, "refused", who)
            return resp
        if resp.status_code >= 400:
            self._record(user, action, params, "failed", f"MLflow answered {resp.status_code}")
            return resp
        try:
            reason = self.stamp(action, user, params, resp)
        except Exception as exc:
            _log.exception("quantgate stamping failed")
            self._undo(action, params)
            self._record(user, action, params, "failed", f"stamping failed, change undone: {exc}")
            return _error(500, f"the approval could not be stamped and was undone ({exc})")
        self._record(user, action, params, "allowed", reason)
        return resp

    def stamp(self, action: str, user: str, params: dict[str, Any], resp: Response) -> str:
        from flask import g
        from mlflow.entities.model_registry import ModelVersionTag

        reg = self.registry()
        decision: rules.Decision | None = getattr(g, "qg_decision", None)
        name, version, key = str(params.get("name", "")), str(params.get("version", "")), params.get("key")
        if action == "create-version":
            mv = (resp.get_json(silent=True) or {}).get("model_version", {})
            if rules.governed(str(mv.get("name", ""))):
                reg.set_model_version_tag(mv["name"], str(mv["version"]), ModelVersionTag(c.TAG_REGISTERED_BY, user))
                params["version"] = str(mv["version"])
                return f"registered_by={user}"
            return ""
        if key != c.TAG_APPROVAL or not rules.governed(name):
            return decision.reason if decision else ""
        if action == "set-tag" and decision is not None and decision.approving:
            stamps = approval_stamps(
                user=user,
                at=datetime.now(UTC).isoformat(timespec="seconds"),
                note=decision.note,
                digest=getattr(g, "qg_digest", ""),
            )
            for k, v in stamps.items():
                if v:
                    reg.set_model_version_tag(name, version, ModelVersionTag(k, v))
            return f"approved, digest {stamps[c.TAG_APPROVED_DIGEST]}"
        tags = self.version_tags(name, version) or {}
        for k in APPROVAL_STAMPS:
            if k in tags:
                reg.delete_model_version_tag(name, version, k)
        return decision.reason if decision else ""

    def _undo(self, action: str, params: dict[str, Any]) -> None:
        """Put the approval tag back as it was before a request whose stamping failed."""
        from flask import g
        from mlflow.entities.model_registry import ModelVersionTag

        if action != "set-tag" or params.get("key") != c.TAG_APPROVAL:
            return
        name, version, reg = str(params["name"]), str(params["version"]), self.registry()
        previous = getattr(g, "qg_previous_approval", None)
        try:
            for k in APPROVAL_STAMPS:
                if k in (self.version_tags(name, version) or {}):
                    reg.delete_model_version_tag(name, version, k)
            if previous is None:
                reg.delete_model_version_tag(name, version, c.TAG_APPROVAL)
            else:
                reg.set_model_version_tag(name, version, ModelVersionTag(c.TAG_APPROVAL, previous))
        except Exception:
            _log.exception("quantgate could not undo %s on %s/%s", action, name, version)

    def _record(self, user: str, action: str, params: dict[str, Any], outcome: str, reason: str) -> None:
        self.audit.record(
            username=user,
            action=action,
            outcome=outcome,
            model=str(params.get("name", "")),
            version=str(params.get("version", "")),
            key=str(params.get("key") or params.get("alias") or ""),
            value=str(params.get("value", "")) if params.get("value") is not None else "",
            reason=reason,
        )


def _body() -> dict[str, Any]:
    """The JSON body as MLflow's handlers read it: any content type (``force=True``), a
    double-encoded string decoded once more, no body read as empty."""
    import json

    from flask import request

    body = request.get_json(force=True, silent=True)
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    return body if isinstance(body, dict) else {}


def _params() -> dict[str, Any]:
    """The parameters of the request MLflow will execute: the query for GET, the body otherwise
    (mlflow.server.handlers._get_request_message), whatever the Content-Type says."""
    from flask import request

    if request.method == "GET":
        return dict(request.args.items())
    return _body()


def _conflicting_params() -> str:
    """Why the request is ambiguous ('' when it is not): a parameter in the query string that the
    body (what MLflow executes) lacks or spells differently. basic-auth reads the query of a
    DELETE without a JSON Content-Type, so it would authorise one request while MLflow ran another."""
    from flask import request

    if request.method == "GET" or not request.args:
        return ""
    body = _body()
    for k, v in request.args.items():
        if k not in body or str(body[k]) != v:
            return (
                f"ambiguous request: query parameter {k}={v!r} but the body says "
                f"{body.get(k)!r}; send the parameters in the JSON body only"
            )
    return ""


def _error(status: int, message: str, name: str = "") -> Response:
    from flask import jsonify

    code = {400: "INVALID_PARAMETER_VALUE", 403: "PERMISSION_DENIED"}.get(status, "INTERNAL_ERROR")
    resp = jsonify({"error_code": code, "message": f"quantgate: {message}"})
    resp.status_code = status
    return resp


def _server_settings() -> Any:
    """quantgate Settings on the server's own backend store (the project dir, keys and home come
    from the server's QUANTGATE_* environment)."""
    import os

    from mlflow.server.constants import BACKEND_STORE_URI_ENV_VAR, REGISTRY_STORE_URI_ENV_VAR

    from quantgate.settings import Settings

    backend = os.environ.get(BACKEND_STORE_URI_ENV_VAR)
    registry = os.environ.get(REGISTRY_STORE_URI_ENV_VAR) or backend
    return Settings(MLFLOW_TRACKING_URI=backend, MLFLOW_REGISTRY_URI=registry)


def create_app(app: Flask | None = None) -> Any:
    """The ``mlflow.app`` factory: basic-auth's app with quantgate's hooks added after its own."""
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import auth_config
    from mlflow.server.auth import create_app as basic_auth_app

    flask_app = app or mlflow_app
    served = basic_auth_app(flask_app)  # a FastAPI wrapper under uvicorn, the Flask app otherwise
    hooks = QuantgateHooks(
        read_server_config(), AuditLog(auth_config.database_uri).create(), auth_config.admin_username
    )
    flask_app.before_request(hooks.before)
    flask_app.after_request(hooks.after)
    flask_app.extensions["quantgate"] = hooks
    return served
