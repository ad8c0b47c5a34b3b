"""``quantgate users``: people and roles of the quantgate server app (``mlflow server --app-name quantgate``).

A thin layer over MLflow's ``AuthServiceClient`` (basic-auth users, roles, permissions) plus
quantgate's own pieces: the auth config's ``[quantgate]`` section and the audit table.

The admin's credentials come the way MLflow's clients take them: ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` (prompted for when unset). Registered by :mod:`quantgate.cli`::

    from quantgate.cli_users import register as _register_users
    _register_users(app, _run)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from quantgate.cli_base import console, err

users_app = typer.Typer(
    no_args_is_help=True,
    help="Users and approvers of the quantgate MLflow server app (server mode only; `quantgate ui` has no identity).",
)
_runner: list[Callable[..., Any]] = []

LEGACY_DEFAULT_PASSWORD = "password1234"  # what MLflow's basic_auth.ini shipped before 3.x
MIN_PASSWORD = 12

TrackingUri = typer.Option(
    None,
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="The quantgate server, e.g. http://127.0.0.1:5000 (default: $MLFLOW_TRACKING_URI).",
)


def _run(body: Callable[[], Any]) -> Any:
    def guarded() -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return body()
        except MlflowException as exc:  # its answer (403, 404, 409...) or an unreachable server, as one line
            first = (exc.message.strip().splitlines() or [""])[0]
            raise _user_error(f"request to the quantgate server failed: {first}") from None

    return _runner[0](guarded, configure=False) if _runner else guarded()


def _user_error(message: str, hint: str = "") -> Exception:
    from quantgate.errors import QuantgateError

    return QuantgateError(message, hint) if hint else QuantgateError(message)


def _uri(tracking_uri: str | None) -> str:
    if not tracking_uri or not tracking_uri.startswith(("http://", "https://")):
        raise _user_error(
            f"--tracking-uri must be the quantgate server's http(s) URL, got {tracking_uri!r}",
            "start it with: mlflow server --app-name quantgate ... and pass --tracking-uri http://HOST:PORT",
        )
    return tracking_uri.rstrip("/")


def _credentials(prompt_user: str = "admin") -> None:
    """MLflow's clients read MLFLOW_TRACKING_USERNAME/PASSWORD; ask for what is missing."""
    if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        os.environ["MLFLOW_TRACKING_USERNAME"] = typer.prompt("admin user", default=prompt_user)
    if not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        os.environ["MLFLOW_TRACKING_PASSWORD"] = typer.prompt(
            f"password of {os.environ['MLFLOW_TRACKING_USERNAME']}", hide_input=True
        )


def _client(tracking_uri: str | None) -> Any:
    from mlflow.server.auth.client import AuthServiceClient

    uri = _uri(tracking_uri)
    _credentials()
    return AuthServiceClient(uri)


def _check_password(password: str, *, old: str | None = None, who: str = "the user") -> None:
    if len(password) < MIN_PASSWORD:
        raise _user_error(f"the password for {who} is too short ({len(password)} < {MIN_PASSWORD} characters)")
    if password == LEGACY_DEFAULT_PASSWORD:
        raise _user_error(f"'{LEGACY_DEFAULT_PASSWORD}' is MLflow's old public default: choose another password")
    if old is not None and password == old:
        raise _user_error(f"the new password for {who} equals the bootstrap password: choose a different one")


def _role(client: Any, name: str) -> Any | None:
    from quantgate.promotion.auth_app.config import ROLE_WORKSPACE

    return next((r for r in client.list_roles(ROLE_WORKSPACE) if r.name == name), None)


def _server_config(config: Path | None) -> Any:
    from quantgate.promotion.auth_app.config import read_server_config

    return read_server_config(str(config) if config else None)


ConfigOption = typer.Option(
    None,
    "--config",
    envvar="MLFLOW_AUTH_CONFIG_PATH",
    help="The server's auth ini (default: $MLFLOW_AUTH_CONFIG_PATH); its [quantgate] section names the "
    "approvers role, the promotion user and the pipeline user.",
)


@users_app.command("init-config")
def init_config(
    path: Path = typer.Argument(..., help="Where to write the auth ini (refuses to overwrite)."),
    database_uri: str = typer.Option(
        ...,
        "--database-uri",
        help="The auth database (users, roles, audit): sqlite:////abs/path/auth.db or postgresql://user@host:port/db.",
    ),
    admin: str = typer.Option("admin", "--admin", help="The bootstrap admin's user name."),
    promoter: str = typer.Option("quantgate-promoter", "--promoter", help="The only user that moves @champion."),
    approvers_role: str = typer.Option("approvers", "--approvers-role", help="Role whose members approve."),
    pipeline: str = typer.Option(
        "quantgate-pipeline",
        "--pipeline",
        help="The pipeline's identity (the worker that registers candidates): the only user that writes "
        "result tags (verdict, recipe, digests, figures).",
    ),
) -> None:
    """Write the auth config for `mlflow server --app-name quantgate` (MLFLOW_AUTH_CONFIG_PATH).

    It holds no password: the bootstrap admin's comes from MLFLOW_AUTH_ADMIN_PASSWORD at the
    server's first start, and `quantgate users setup` must then replace it.
    """

    def body() -> None:
        if path.exists():
            raise _user_error(f"{path} exists; remove it or choose another path")
        if not database_uri.startswith(("sqlite:///", "postgresql")):
            raise _user_error(f"--database-uri {database_uri!r} is neither sqlite:///... nor postgresql://...")
        path.parent.mkdir(parents=True, exist_ok=True)
        from quantgate.promotion.auth_app.config import auth_config_text

        path.write_text(
            auth_config_text(
                database_uri=database_uri,
                admin=admin,
                promoter=promoter,
                approvers_role=approvers_role,
                pipeline=pipeline,
            )
        )
        console.print(f"wrote {path}; start the server with MLFLOW_AUTH_CONFIG_PATH={path}")

    _run(body)


@users_app.command("setup")
def setup(
    tracking_uri: str | None = TrackingUri,
    config: Path | None = ConfigOption,
    new_password: str | None = typer.Option(
        None, "--new-password", envvar="QUANTGATE_NEW_ADMIN_PASSWORD", help="The admin's new password (prompted)."
    ),
) -> None:
    """First step on a new server: replace the bootstrap admin password, create the approvers role.

    The server refuses every request of the bootstrap admin except this password change until it
    is done. Log in with the bootstrap password (MLFLOW_TRACKING_USERNAME / _PASSWORD or prompt).
    """

    def body() -> None:
        from quantgate.promotion.auth_app.config import ROLE_WORKSPACE

        cfg = _server_config(config)
        client = _client(tracking_uri)
        admin = os.environ["MLFLOW_TRACKING_USERNAME"]
        old = os.environ["MLFLOW_TRACKING_PASSWORD"]
        new = new_password or typer.prompt(f"new password for {admin}", hide_input=True, confirmation_prompt=True)
        _check_password(new, old=old, who=admin)
        client.update_user_password(admin, new, current_password=old)
        os.environ["MLFLOW_TRACKING_PASSWORD"] = new
        console.print(f"password of {admin} changed")
        role = _role(client, cfg.approvers_role)
        if role is None:
            role = client.create_role(ROLE_WORKSPACE, cfg.approvers_role, "may set quantgate.approval (quantgate)")
            client.add_role_permission(role.id, "registered_model", "*", "EDIT")
            console.print(f"role {cfg.approvers_role} created (EDIT on every registered model)")
        else:
            console.print(f"role {cfg.approvers_role} exists")
        console.print(
            f"next: quantgate users add {cfg.promoter} --edit-models; quantgate users add NAME; "
            f"quantgate users grant NAME --role {cfg.approvers_role}"
        )

    _run(body)


@users_app.command("add")
def add(
    username: str = typer.Argument(..., help="The new user's name."),
    tracking_uri: str | None = TrackingUri,
    password: str | None = typer.Option(
        None, "--password", envvar="QUANTGATE_USER_PASSWORD", help="The new user's password (prompted)."
    ),
    edit_models: bool = typer.Option(
        False, "--edit-models", help="Grant EDIT on every registered model (workers that register, the promoter)."
    ),
) -> None:
    """Create a basic-auth user (as admin)."""

    def body() -> None:
        client = _client(tracking_uri)
        pw = password or typer.prompt(f"password for {username}", hide_input=True, confirmation_prompt=True)
        _check_password(pw, who=username)
        client.create_user(username, pw)
        console.print(f"user {username} created")
        if edit_models:
            client.grant_user_permission(username, "registered_model", "*", "EDIT")
            console.print(f"{username}: EDIT on every registered model")

    _run(body)


@users_app.command("grant")
def grant(
    username: str = typer.Argument(..., help="An existing user."),
    tracking_uri: str | None = TrackingUri,
    role: str | None = typer.Option(None, "--role", help="Assign this role (e.g. approvers)."),
    model: str | None = typer.Option(None, "--model", help="Grant --permission on this registered model ('*' = all)."),
    permission: str = typer.Option("EDIT", "--permission", help="READ, USE, EDIT, MANAGE or DENY (with --model)."),
    revoke: bool = typer.Option(False, "--revoke", help="Take the role away instead."),
) -> None:
    """Give a user a role (`--role approvers`) or a permission on registered models (`--model`)."""

    def body() -> None:
        if not role and not model:
            raise _user_error("nothing to grant", "pass --role ROLE and/or --model NAME [--permission EDIT]")
        client = _client(tracking_uri)
        if role:
            r = _role(client, role)
            if r is None:
                raise _user_error(f"no role '{role}' on the server", "run: quantgate users setup (creates 'approvers')")
            if revoke:
                client.unassign_role(username, r.id)
                console.print(f"{username} no longer in role {role}")
            else:
                client.assign_role(username, r.id)
                console.print(f"{username} is in role {role}")
        if model:
            perm = permission.upper()
            if perm not in ("READ", "USE", "EDIT", "MANAGE", "DENY"):
                raise _user_error(f"--permission {permission!r} is not READ, USE, EDIT, MANAGE or DENY")
            client.grant_user_permission(username, "registered_model", model, perm)
            console.print(f"{username}: {perm} on registered model {model}")

    _run(body)


@users_app.command("list")
def list_users(tracking_uri: str | None = TrackingUri, config: Path | None = ConfigOption) -> None:
    """Users with their roles; marks approvers and the promotion identity."""

    def body() -> None:
        from mlflow.utils.credentials import get_default_host_creds
        from mlflow.utils.rest_utils import http_request, verify_rest_response
        from rich.table import Table

        cfg = _server_config(config)
        uri = _uri(tracking_uri)
        _credentials()
        endpoint = "/api/2.0/mlflow/users/list"
        resp = verify_rest_response(http_request(get_default_host_creds(uri), endpoint, "GET"), endpoint)
        table = Table(title=f"users of {uri}")
        for col in ("user", "admin", "roles", "quantgate"):
            table.add_column(col)
        for u in sorted(resp.json().get("users", []), key=lambda u: u["username"]):
            # basic-auth keeps a synthetic per-user role (__user_N__) for direct grants: not shown
            roles = sorted(n for r in u.get("roles", []) if not (n := r.get("name", "")).startswith("__"))
            what = []
            if cfg.approvers_role in roles:
                what.append("approver")
            if u["username"] == cfg.promoter:
                what.append("promoter")
            table.add_row(u["username"], "yes" if u.get("is_admin") else "", ", ".join(roles), ", ".join(what))
        console.print(table)

    _run(body)


@users_app.command("audit")
def audit(
    database_uri: str = typer.Option(
        ..., "--database-uri", help="The auth database the server writes (its ini's database_uri)."
    ),
    model: str | None = typer.Option(None, "--model", help="Only this registered model."),
    limit: int = typer.Option(200, "--limit", min=1),
) -> None:
    """The server's audit of approvals, stamp tags, alias moves and registrations (allowed and refused)."""

    def body() -> None:
        from rich.table import Table

        from quantgate.promotion.auth_app.audit import AuditLog

        rows = AuditLog(database_uri).entries(model, limit)
        if not rows:
            err.print("no audit entries (has the quantgate server app run against this database?)")
            return
        table = Table(title="quantgate audit")
        for col in ("at", "user", "action", "model/version", "key", "value", "outcome", "reason"):
            table.add_column(col, overflow="fold")
        for r in rows:
            ref = f"{r.model}/{r.version}" if r.version else r.model
            table.add_row(
                r.at.isoformat(timespec="seconds"), r.username, r.action, ref, r.key, r.value, r.outcome, r.reason
            )
        console.print(table)

    _run(body)


def register(app: typer.Typer, run: Callable[..., Any]) -> None:
    """Add ``users`` to the main app; ``run`` is the CLI's error handler (``quantgate.cli_base.run``)."""
    _runner[:] = [run]
    app.add_typer(users_app, name="users")
