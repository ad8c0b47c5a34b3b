"""The MLflow adapter: the client, resolving and loading versions, registering a candidate (and
undoing it), alias primitives, who is acting. A leaf: domain work on top of it (promotion,
rollback, reviews, the ledger) lives in :mod:`quantgate.promotion`.

Registry writes are the last step of a flow and are undone if any part fails, so bad input or
a crash never leaves a half-registered version or a moved alias.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quantgate.errors import RegistryError
from quantgate.registry import contract as c
from quantgate.settings import Settings, configure_mlflow, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

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


def model_exists(cl: MlflowClient, name: str) -> bool:
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
    if not model_exists(cl, name):
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
    created_model = not model_exists(cl, name) and _create_unless_there(cl, name, source.name)
    _delete_interrupted(cl, name, f"{source.name}/{source.version}")
    previous = alias_version(cl, name, c.ALIAS_CANDIDATE)
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
            if alias_version(cl, name, c.ALIAS_CANDIDATE) == str(v.version):
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


def alias_version(cl: MlflowClient, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(cl.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if no_such_alias(exc):
            return None
        raise


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
