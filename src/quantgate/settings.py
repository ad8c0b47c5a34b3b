"""Environment-driven settings with embedded defaults.

Everything lives under ``QUANTGATE_HOME`` (default ``./.quantgate``): the MLflow SQLite store,
its artifacts, Prefect's local database, data files the demo writes, keys and inference logs.
``MLFLOW_TRACKING_URI`` and ``PREFECT_API_URL`` switch to servers (PostgreSQL, object store)
without touching code.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Settings read from ``QUANTGATE_*`` environment variables (strict, frozen)."""

    model_config = SettingsConfigDict(env_prefix="QUANTGATE_", extra="forbid", frozen=True, strict=False)

    home: Path = Field(default=Path(".quantgate"), description="Root of all local state.")
    project_dir: Path = Field(
        default=Path("."),
        description="The team's repository: where policies/, registry/ and monitoring/ are read from.",
    )
    alert_webhook: str | None = Field(
        default=None,
        description="URL that every alert is POSTed to (overrides the routes of monitoring/ and quantgate.yaml).",
    )
    notify_outbox: str | None = Field(
        default=None,
        description="Alert outbox: a SQLite file (default $QUANTGATE_HOME/notify/outbox.db) or postgresql://...",
    )
    mlflow_ui_url: str | None = Field(
        default=None,
        description="MLflow UI base URL for links in alerts (default: an http(s) tracking URI, else quantgate ui's).",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads for torch inference (and ONNX Runtime's intra-op pool); unset: torch's own "
        "default, OMP_NUM_THREADS if it is set, else one per core.",
    )
    serve_max_body_mb: int = Field(
        default=128,
        ge=1,
        description="Largest /invocations request body quantgate serve accepts, in MiB; a larger one gets a 413.",
    )
    max_data_file_mb: int = Field(
        default=1024,
        ge=1,
        description="Largest data file (calibration, evaluation, reference, monitoring window) read whole into "
        "memory, in MiB; a larger one is refused with a hint to sample it.",
    )
    dask_address: str | None = Field(
        default=None,
        description="Dask scheduler (e.g. tcp://host:8786) the nightly sweep fans its source versions out to, "
        "one task each; unset: one after another in the flow's own process.",
    )
    # read once, at start-up: mlflow.set_tracking_uri() writes MLFLOW_TRACKING_URI itself,
    # so looking at the environment later cannot tell a server from our own SQLite store
    mlflow_tracking_uri: str | None = Field(default=None, validation_alias="MLFLOW_TRACKING_URI")
    mlflow_registry_uri: str | None = Field(default=None, validation_alias="MLFLOW_REGISTRY_URI")

    @property
    def home_abs(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def artifacts_dir(self) -> Path:
        return self.home_abs / "artifacts"

    @property
    def data_dir(self) -> Path:
        return self.home_abs / "data"

    @property
    def tracking_uri(self) -> str:
        """``MLFLOW_TRACKING_URI`` if set, else the embedded SQLite store."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.home_abs / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def ui_url(self) -> str:
        """Where people open MLflow: ``QUANTGATE_MLFLOW_UI_URL``, an http(s) tracking server, or the
        address ``quantgate ui`` serves on by default."""
        if self.mlflow_ui_url:
            return self.mlflow_ui_url.rstrip("/")
        uri = self.mlflow_tracking_uri or ""
        return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"

    @property
    def embedded_mlflow(self) -> bool:
        return self.mlflow_tracking_uri is None or self.mlflow_tracking_uri.startswith("sqlite:")

    def expand(self, text: str) -> str:
        """A config value with ``${QUANTGATE_HOME}`` as this home (absolute) and other ``${VARS}``
        from the environment."""
        return os.path.expandvars(text.replace("${QUANTGATE_HOME}", str(self.home_abs)))

    def path(self, rel: str | Path) -> Path:
        """Resolve a path from a config file (:meth:`expand`); relative paths are from the project dir."""
        p = Path(self.expand(str(rel))).expanduser()
        return p if p.is_absolute() else (self.project_dir / p).resolve()


def apply_torch_threads(settings: Settings | None = None) -> None:
    """Set torch's intra-op threads to ``QUANTGATE_TORCH_THREADS`` when it is set; otherwise leave
    torch's own default (``OMP_NUM_THREADS``, else one per core)."""
    threads = (settings or get_settings()).torch_threads
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment)."""
    get_settings.cache_clear()


def configure_environment(settings: Settings | None = None) -> Settings:
    """Point MLflow and Prefect at the embedded stores unless servers are configured.

    Called once at start-up by the CLI and by each flow, before anything else imports mlflow or
    prefect, so that nothing ever lands in a stray ``./mlruns`` and Prefect's database sits under
    ``QUANTGATE_HOME``; then :func:`configure_mlflow` points MLflow's fluent API at the store.
    """
    s = settings or get_settings()
    home = s.home_abs
    home.mkdir(parents=True, exist_ok=True)
    s.artifacts_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QUANTGATE_HOME", str(home))
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect's temporary server gets 20 s to start by default: too short on a busy 2-core host
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # bounded retries against a tracking server: MLflow's defaults (7 retries, backoff factor 2,
    # 120 s per request) keep a command silent for about 4 minutes when the server is down; these
    # give up after about 15 s with one line (quantgate.cli_base.unavailable_line). Yours win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    configure_mlflow(s)
    return s


def configure_mlflow(settings: Settings | None = None) -> None:
    """Point MLflow's process-wide (fluent) API at the settings' store: ``mlflow.start_run``,
    ``mlflow.artifacts.*`` and ``models:/`` URIs use it. ``MlflowClient`` objects do not need it
    (``quantgate.registry.mlflow_registry.client`` names its store explicitly).

    A no-op when MLflow already points there, so it is called at start-up (``configure_environment``)
    and before a run is started on a store (``ensure_experiment``), never on every registry read.
    """
    import mlflow

    s = settings or get_settings()
    if mlflow.get_tracking_uri() == s.tracking_uri and mlflow.get_registry_uri() == s.registry_uri:
        return
    # mlflow.set_*_uri also export MLFLOW_*_URI; put the environment back so that a later
    # Settings() still tells a user-configured server from our embedded store
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(s.tracking_uri)
    mlflow.set_registry_uri(s.registry_uri)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
