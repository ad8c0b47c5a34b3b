"""Everything quantgate does to MLflow, in one adapter.

Registry writes are the last step of a flow and are undone if any part fails, so bad input or
a crash never leaves a half-registered version or a moved alias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quantgate.errors import RegistryError
from quantgate.registry import contract as c
from quantgate.settings import Settings, configure_mlflow, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

    from quantgate.ledger import MlflowLedger
    from quantgate.models.wrapped import WrappedModel


def client(settings: Settings | None = None) -> MlflowClient:
    """A client on the configured store. Changes no global state: MLflow's fluent API is pointed
    at the store once, by ``quantgate.settings.configure_mlflow`` (CLI and flow start-up)."""
    from mlflow.tracking import MlflowClient

    s = settings or get_settings()
    if s.embedded_mlflow:
        s.home_abs.mkdir(parents=True, exist_ok=True)  # the SQLite file's directory
    return MlflowClient(tracking_uri=s.tracking_uri, registry_uri=s.registry_uri)


def ensure_experiment(name: str, settings: Settings | None = None) -> str:
    """Create the experiment with its artifacts under QUANTGATE_HOME (never ./mlruns)."""
    import mlflow

    s = settings or get_settings()
    configure_mlflow(s)  # the runs that follow are started with the fluent API
    cl = client(s)
    exp = cl.get_experiment_by_name(name)
    if exp is None:
        location = (s.artifacts_dir / name).as_uri() if s.embedded_mlflow else None
        exp_id = cl.create_experiment(name, artifact_location=location)
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def does_not_exist(exc: BaseException) -> bool:
    """Whether an MLflow error says the thing does not exist. Anything else (a server down, a
    permission refused, a timeout) is not an answer and must not read as 'absent'."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    return isinstance(exc, MlflowException) and exc.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST)


def no_such_alias(exc: BaseException) -> bool:
    """MLflow's answers for a model or alias that is not there: "does not exist", or (for an alias)
    INVALID_PARAMETER_VALUE "... alias X not found". Anything else is not an answer."""
    code = getattr(exc, "error_code", None)
    return does_not_exist(exc) or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))


def _exists(cl: MlflowClient, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        cl.get_registered_model(name)
        return True
    except MlflowException as exc:
        if does_not_exist(exc):
            return False
        raise


def resolve_version(ref: str, settings: Settings | None = None) -> ModelVersion:
    """``name``, ``name/VERSION`` or ``name@ALIAS`` -> ModelVersion (latest when unqualified)."""
    from mlflow.exceptions import MlflowException

    cl = client(settings)
    name, version, alias = c.parse_model_ref(ref)
    if not _exists(cl, name):
        known = sorted(m.name for m in cl.search_registered_models(max_results=200))
        raise RegistryError(
            f"no registered model named '{name}'",
            f"registered: {', '.join(known) or 'none (run `quantgate demo` or register one)'}",
        )
    try:
        if alias:
            return cl.get_model_version_by_alias(name, alias)
        if version:
            if not version.isdigit():
                raise RegistryError(f"version '{version}' of '{name}' is not a number", "use NAME/3 or NAME@alias")
            return cl.get_model_version(name, version)
    except MlflowException:
        what = f"alias '{alias}'" if alias else f"version {version}"
        versions = sorted(int(v.version) for v in cl.search_model_versions(f"name='{name}'"))
        raise RegistryError(
            f"model '{name}' has no {what}", f"versions: {', '.join(map(str, versions)) or 'none'}"
        ) from None
    versions = cl.search_model_versions(f"name='{name}'")
    if not versions:
        raise RegistryError(f"model '{name}' has no versions")
    return max(versions, key=lambda v: int(v.version))


def load_wrapped(mv: ModelVersion, context: Any = None) -> WrappedModel:
    """Load a registered version as a WrappedModel through its source kind (``quantgate.sources``),
    refusing flavors quantgate cannot quantize. ``context`` (a SourceContext) brings the onboarding
    and data that tensor models need; without it, only what the version records is used."""
    from mlflow.models import Model

    from quantgate.sources import SourceContext, load_source

    ctx = context or SourceContext(mv, Model.load(f"models:/{mv.name}/{mv.version}"))
    return load_source(ctx)


def register_candidate(
    *,
    model_uri: str,
    source: ModelVersion,
    run_id: str,
    tags: dict[str, str],
    description: str,
    passed: bool,
    settings: Settings | None = None,
) -> ModelVersion:
    """Register under ``<source>-quantized``; alias ``candidate`` only if the gate passed.

    All or nothing: if tagging or aliasing fails, the new version is deleted and the previous
    ``candidate`` alias restored.
    """
    from quantgate.faults import fault_point

    cl = client(settings)
    name = c.quantized_name(source.name)
    created_model = not _exists(cl, name) and _create_unless_there(cl, name, source.name)
    _delete_interrupted(cl, name, f"{source.name}/{source.version}")
    previous = _alias_version(cl, name, c.ALIAS_CANDIDATE)
    mv = None
    try:
        # a tracking server checks that a models:/<LoggedModel id> source names its model_id
        rest = model_uri.removeprefix("models:/")
        model_id = rest if model_uri.startswith("models:/") and "/" not in rest and "@" not in rest else None
        mv = cl.create_model_version(
            name,
            model_uri,
            run_id=run_id,
            tags={**tags, c.TAG_REGISTERING: run_id},
            description=description,
            model_id=model_id,
        )
        _wait_ready(cl, name, mv.version)
        fault_point("register")
        if passed:
            cl.set_registered_model_alias(name, c.ALIAS_CANDIDATE, mv.version)
        fault_point("alias")
        cl.delete_model_version_tag(name, mv.version, c.TAG_REGISTERING)  # complete: the last step
        return cl.get_model_version(name, mv.version)
    except BaseException:
        _undo_registration(cl, name, mv.version if mv is not None else None, previous, created_model)
        raise


def _delete_interrupted(cl: MlflowClient, name: str, source_ref: str) -> None:
    """Delete versions of ``source_ref`` whose registration was killed before it completed (they
    still carry ``quantgate.registering``), and the ``candidate`` alias if it points at one: the
    run that registers the source again replaces them, so nothing is left twice."""
    for v in cl.search_model_versions(f"name='{name}'"):
        tags = v.tags or {}
        if c.TAG_REGISTERING in tags and tags.get(c.TAG_SOURCE) == source_ref:
            if _alias_version(cl, name, c.ALIAS_CANDIDATE) == str(v.version):
                cl.delete_registered_model_alias(name, c.ALIAS_CANDIDATE)
            cl.delete_model_version(name, v.version)


def _undo_registration(
    cl: MlflowClient, name: str, version: str | None, previous: str | None, created_model: bool
) -> None:
    """Delete the version this run created, restore the previous ``candidate``, and delete the
    registered model if this run created it and no version is left in it: a run governing
    another version at the same time may have registered into it since."""
    if version is not None:
        cl.delete_model_version(name, version)
    if previous is not None:
        cl.set_registered_model_alias(name, c.ALIAS_CANDIDATE, previous)
    if created_model and not cl.search_model_versions(f"name='{name}'"):
        cl.delete_registered_model(name)


def _create_unless_there(cl: MlflowClient, name: str, source_name: str) -> bool:
    """Create the registered model ``name``; False when the store answers that it already exists.

    Two governance runs at once (a Dask sweep over two versions of one source) can both find it
    missing; the second create is refused with RESOURCE_ALREADY_EXISTS and that run registers
    into the first's model."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        cl.create_registered_model(
            name,
            tags={"quantgate.source_model": source_name},
            description=f"Governed quantized versions of `{source_name}` (quantgate).",
        )
        return True
    except MlflowException as exc:
        if exc.error_code == ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            return False
        raise


def _wait_ready(cl: MlflowClient, name: str, version: str, timeout: float = 60) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if cl.get_model_version(name, version).status == "READY":
            return
        time.sleep(0.2)
    raise RegistryError(f"{name}/{version} did not become READY in {timeout:.0f}s")


def _alias_version(cl: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(cl.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if no_such_alias(exc):
            return None
        raise


def ledger(settings: Settings | None = None) -> MlflowLedger:
    """The promotion ledger in this store (``quantgate.ledger``)."""
    from quantgate.ledger import MlflowLedger

    s = settings or get_settings()
    return MlflowLedger(client(s), s.artifacts_dir.as_uri() if s.embedded_mlflow else None)


def default_actor(settings: Settings | None = None) -> str:
    """Who runs a promotion from this process when nobody says.

    Against a tracking server, the identity it authenticates this client as (MLflow's own
    credentials: ``MLFLOW_TRACKING_USERNAME`` or ``~/.mlflow/credentials``): the server refuses an
    alias move by anyone but the promotion identity, so that is who acted. Against the embedded
    store, which has no identity, the OS user, marked as unauthenticated.
    """
    import getpass

    s = settings or get_settings()
    if not s.embedded_mlflow:
        from mlflow.utils.credentials import read_mlflow_creds

        user = read_mlflow_creds().username
        if user:
            return f"{user} (authenticated by the MLflow server)"
    try:
        return f"{getpass.getuser()} (os user, unauthenticated)"
    except Exception:  # no passwd entry in some containers
        return "unknown (os user, unauthenticated)"


def _quantized(cl: MlflowClient, source: str) -> str:
    name = source if source.endswith(c.SUFFIX) else c.quantized_name(source)
    if not _exists(cl, name):
        raise RegistryError(
            f"'{source}' has no quantized versions ({name} is not registered)",
            f"run: quantgate quantize --model {source}",
        )
    return name


def _check_promotable(mv: ModelVersion, verify: Any) -> str | None:
    """Verdict, approval, then the ``verify`` hook (may raise, may return the provenance digest)."""
    verdict = mv.tags.get(c.TAG_VERDICT)
    approval = mv.tags.get(c.TAG_APPROVAL)
    label = f"{mv.name}/{mv.version}"
    if verdict != "pass":
        raise RegistryError(f"{label} failed its gate (verdict={verdict}); it can never be promoted")
    if approval != "approved":
        raise RegistryError(
            f"{label} is not approved (quantgate.approval={approval})",
            f"a reviewer sets tag quantgate.approval=approved on version {mv.version} in the MLflow UI (quantgate ui)",
        )
    digest = verify(mv) if verify is not None else None
    return digest if isinstance(digest, str) else None


def _record_refusal(
    book: MlflowLedger,
    name: str,
    version: str | None,
    mv: ModelVersion | None,
    champion: str | None,
    actor: str,
    exc: RegistryError,
    what: str,
) -> None:
    tags = dict(mv.tags) if mv is not None else {}
    book.append(
        action="refusal",
        model=name,
        version=version,
        actor=actor,
        previous_champion=champion,
        champion=champion,
        approved_by=tags.get(c.TAG_APPROVED_BY),
        policy_digest=tags.get(c.TAG_POLICY_DIGEST),
        provenance_digest=tags.get(c.TAG_APPROVED_DIGEST),
        reason=f"{what} refused: {exc.one_line()}",
    )


def _move_champion(
    cl: MlflowClient,
    book: MlflowLedger,
    mv: ModelVersion,
    previous: str | None,
    entry: dict[str, Any],
    version_tags: dict[str, str],
) -> dict[str, Any]:
    """@champion -> mv, @previous -> the old champion, tags on mv, one ledger entry: all or nothing.

    Order matters for a process killed half-way (no ``except`` runs then): @previous and the tags
    first, @champion next, the ledger entry last. A kill before @champion moves leaves the old
    champion serving; a kill after it leaves a champion whose ledger entry is missing, which the
    next ``promote`` of the same version records (see :func:`promote`)."""
    from quantgate.faults import fault_point

    name, version = mv.name, str(mv.version)
    old_previous = _alias_version(cl, name, c.ALIAS_PREVIOUS)
    old_tags = {k: mv.tags.get(k) for k in version_tags}
    try:
        if previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_PREVIOUS, previous)
        for k, v in version_tags.items():
            cl.set_model_version_tag(name, version, k, v)
        cl.set_registered_model_alias(name, c.ALIAS_CHAMPION, version)
        fault_point("promote")
        return book.append(**entry)
    except BaseException:
        if previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_CHAMPION, previous)
        else:
            cl.delete_registered_model_alias(name, c.ALIAS_CHAMPION)
        if old_previous is not None:
            cl.set_registered_model_alias(name, c.ALIAS_PREVIOUS, old_previous)
        elif previous is not None:
            cl.delete_registered_model_alias(name, c.ALIAS_PREVIOUS)
        for k, v in old_tags.items():
            if v is None:
                cl.delete_model_version_tag(name, version, k)
            else:
                cl.set_model_version_tag(name, version, k, v)
        raise


@dataclass(frozen=True)
class _AliasMove:
    """A checked move of ``@champion`` on ``name`` to ``mv``, not yet made (see :func:`_checked_move`)."""

    settings: Settings
    cl: MlflowClient
    book: MlflowLedger
    name: str
    actor: str
    current: str | None
    mv: ModelVersion
    digest: str | None

    def entry(self, action: str, reason: str, previous: str | None) -> dict[str, Any]:
        version = str(self.mv.version)
        return {
            "action": action,
            "model": self.name,
            "version": version,
            "actor": self.actor,
            "previous_champion": previous,
            "champion": version,
            "approved_by": self.mv.tags.get(c.TAG_APPROVED_BY),
            "policy_digest": self.mv.tags.get(c.TAG_POLICY_DIGEST),
            "provenance_digest": self.digest or self.mv.tags.get(c.TAG_APPROVED_DIGEST),
            "reason": reason,
        }

    def apply(self, action: str, reason: str, version_tags: dict[str, str]) -> None:
        """Move the aliases, tag the version and append the ``action`` entry: all or nothing."""
        _move_champion(
            self.cl, self.book, self.mv, self.current, self.entry(action, reason, self.current), version_tags
        )

    def record_interrupted(self) -> bool:
        """@champion already points at this version: if the ledger does not say so (a promotion
        killed between the alias move and its entry), append the missing entry. True if it did."""
        stored = self.book.entries(self.name)
        last = stored[-1].entry if stored else {}
        if str(last.get("champion")) == str(self.mv.version):
            return False
        previous = self.mv.tags.get(c.TAG_PREVIOUS_CHAMPION)
        reason = "recorded late: @champion already pointed here but the ledger had no entry (an interrupted promotion)"
        self.book.append(**self.entry("promotion", reason, previous))
        return True


def _checked_move(
    source: str,
    requested: str | None,
    what: str,
    pick: Callable[[MlflowClient, str, str | None], str],
    *,
    settings: Settings | None,
    verify: Any,
    actor: str | None,
    refusal_names_target: bool,
) -> _AliasMove:
    """What promote and rollback share before an alias moves: the quantized model of ``source``,
    its ledger, the actor, the current ``@champion``; then ``pick(client, name, current)`` names the
    target version, which must pass :func:`_check_promotable`. A RegistryError on the way is
    recorded as a ``what`` refusal (naming the picked target when ``refusal_names_target`` and one
    was picked, else ``requested``) and raised."""
    s = settings or get_settings()
    cl = client(s)
    name = _quantized(cl, source)
    book = ledger(s)
    who = actor or default_actor(s)
    current = _alias_version(cl, name, c.ALIAS_CHAMPION)
    target: str | None = None
    mv = None
    try:
        target = pick(cl, name, current)
        mv = resolve_version(f"{name}/{target}", s)
        digest = _check_promotable(mv, verify)
    except RegistryError as exc:
        named = target if refusal_names_target and target is not None else requested
        _record_refusal(book, name, named, mv, current, who, exc, what)
        raise
    return _AliasMove(s, cl, book, name, who, current, mv, digest)


def promote(
    source: str,
    version: str | None = None,
    *,
    settings: Settings | None = None,
    verify: Any = None,
    actor: str | None = None,
) -> tuple[ModelVersion, str | None]:
    """Move ``champion`` to an approved, passing version; refuse anything else.

    ``verify`` (optional callable taking the ModelVersion) runs last and may raise to refuse; what
    it returns, when a string, is recorded as the provenance digest. The old champion becomes
    ``@previous``. The promotion, or the refusal (for a registered model), is a ledger entry by
    ``actor`` (default :func:`default_actor`). Returns (new champion, previous champion or None).
    """

    def pick(cl: MlflowClient, name: str, current: str | None) -> str:
        if version is not None:
            return version
        candidate = _alias_version(cl, name, c.ALIAS_CANDIDATE)
        if candidate is None:
            raise RegistryError(
                f"{name} has no '{c.ALIAS_CANDIDATE}' alias: no version passed its gate",
                "quantize again with another recipe or policy",
            )
        return candidate

    move = _checked_move(
        source, version, "promotion", pick, settings=settings, verify=verify, actor=actor, refusal_names_target=True
    )
    name, mv, previous = move.name, move.mv, move.current
    if previous == str(mv.version):
        move.record_interrupted()
        return mv, previous
    tags = {c.TAG_PROMOTED_AT: datetime.now(UTC).isoformat()}
    if previous is not None:
        tags[c.TAG_PREVIOUS_CHAMPION] = previous
    # a promotion without a verifier is recorded as such, never as "verified"
    move.apply("promotion", "approved and verified" if verify is not None else "approved; NOT verified", tags)
    from quantgate.notify.emit import promoted as notify_promoted  # the alert goes through the outbox

    notify_promoted(move.cl.get_model_version(name, mv.version), previous, settings=move.settings)
    return move.cl.get_model_version(name, mv.version), previous


def rollback(
    source: str,
    to: str | None = None,
    *,
    settings: Settings | None = None,
    verify: Any = None,
    actor: str | None = None,
) -> tuple[ModelVersion, str]:
    """Move ``champion`` back to ``to`` (default: ``@previous``); the replaced champion becomes
    ``@previous``. The target must pass the same checks as a promotion (verdict, approval,
    ``verify``). Only aliases move: the target version itself is left exactly as it was. Recorded
    in the ledger (refusals too, naming ``to``). Returns (new champion, the champion it replaced)."""

    def pick(cl: MlflowClient, name: str, current: str | None) -> str:
        if current is None:
            raise RegistryError(f"{name} has no @champion, so there is nothing to roll back")
        target = to if to is not None else _alias_version(cl, name, c.ALIAS_PREVIOUS)
        if target is None:
            raise RegistryError(
                f"{name} has no @{c.ALIAS_PREVIOUS} alias to roll back to", "name a version: --to VERSION"
            )
        if str(target) == current:
            raise RegistryError(f"{name}/{target} is already @champion", "name another version: --to VERSION")
        return target

    move = _checked_move(
        source, to, "rollback", pick, settings=settings, verify=verify, actor=actor, refusal_names_target=False
    )
    assert move.current is not None  # pick refused a model without @champion
    move.apply("rollback", f"rolled back from v{move.current}", {})
    return move.cl.get_model_version(move.name, move.mv.version), move.current


def record_review(
    name: str, version: str, decision: str, *, settings: Settings | None = None, actor: str | None = None
) -> dict[str, Any]:
    """A ledger entry for a reviewer's decision on ``name/version`` (``approved`` -> approval,
    ``rejected`` -> rejection); who is the server's stamp when present, else ``actor``."""
    s = settings or get_settings()
    cl = client(s)
    mv = cl.get_model_version(name, version)
    action = {"approved": "approval", "rejected": "rejection"}.get(decision)
    if action is None:
        raise RegistryError(f"'{decision}' is not a review decision", "approved or rejected")
    champion = _alias_version(cl, name, c.ALIAS_CHAMPION)
    stamped = mv.tags.get(c.TAG_APPROVED_BY)
    return ledger(s).append(
        action=action,
        model=name,
        version=str(version),
        actor=stamped or actor or "unknown (no server stamp)",
        previous_champion=champion,
        champion=champion,
        approved_by=stamped if action == "approval" else None,
        policy_digest=mv.tags.get(c.TAG_POLICY_DIGEST),
        provenance_digest=mv.tags.get(c.TAG_APPROVED_DIGEST),
        reason=f"{c.TAG_APPROVAL}={decision}",
    )


def registry_snapshot(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every governed version with tags and aliases (for `quantgate status` and tests)."""
    cl = client(settings)
    rows = []
    for rm in cl.search_registered_models(max_results=500):
        aliases: dict[str, list[str]] = {}
        for alias, ver in (rm.aliases or {}).items():
            aliases.setdefault(str(ver), []).append(alias)
        for mv in cl.search_model_versions(f"name='{rm.name}'"):
            rows.append(
                {
                    "name": rm.name,
                    "version": int(mv.version),
                    "aliases": sorted(aliases.get(str(mv.version), [])),  # MLflow answers versions as int or str
                    "tags": dict(mv.tags),
                    "run_id": mv.run_id,
                    "source": mv.source,
                }
            )
    return sorted(rows, key=lambda r: (r["name"], r["version"]))
