"""The served app: MLflow's scoring server, unchanged, inside a thin ASGI layer that logs.

``mlflow.pyfunc.scoring_server.init(model)`` builds the FastAPI app that ``mlflow models serve``
runs, so ``/invocations``, ``/ping``, ``/health``, ``/version``, the input formats
(``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV, Parquet) and the
signature enforcement (a mismatch is a 400 with MLflow's message) are exactly MLflow's. Two
hooks add the inference log without touching that contract:

- the pyfunc's ``predict`` is wrapped to hand (parsed inputs, predictions) to the current request
  through a context variable (FastAPI runs ``invocations`` in a worker thread that inherits it);
- :class:`InferenceLogMiddleware` (pure ASGI, cheaper than Starlette's ``BaseHTTPMiddleware``)
  owns the request id and the timing, and queues the record when the 200 answer starts, i.e.
  before the client holds its acknowledgement. Writing happens on the writer thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from quantgate.errors import RegistryError
from quantgate.registry import contract as c

if TYPE_CHECKING:
    from quantgate.monitor.inference_log import InferenceLogWriter
    from quantgate.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
#: an incoming id is kept only if it is short and printable (it goes into logs and a header)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


@dataclass(frozen=True)
class ServedModel:
    """What is served: the registered quantized model, a concrete version, how it was asked for."""

    name: str
    version: str
    alias: str | None
    uri: str
    target: str = ""
    """the ISA its verdict was gated for (from the verified statement); empty when none was recorded"""
    unapproved: bool = False
    """served with ``--allow-unapproved`` although its approval does not hold"""

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}" + (f" (@{self.alias})" if self.alias else "")


def resolve_served(ref: str, settings: Settings | None = None, *, allow_unapproved: bool = False) -> ServedModel:
    """``NAME`` -> ``NAME-quantized@champion``; ``NAME[-quantized]@ALIAS`` and ``NAME[-quantized]/VERSION``.

    Only a verified, passing, approved version is served. Before anything is loaded the version's
    signed statement must verify (signature, every file's digest, result tags as signed); its
    *signed* verdict must be pass; its approval must hold (server-stamped and bound to that
    statement in server mode). ``allow_unapproved`` (staging) relaxes only the approval: the start
    is loud and the version is tagged ``quantgate.served_unapproved``. The version number is fixed
    at start-up, so every logged row names the exact version served.
    """
    from quantgate.cards.trust import approval_problems, signed_target, signed_verdict, verify_version
    from quantgate.registry.mlflow_registry import resolve_version
    from quantgate.settings import get_settings

    s = settings or get_settings()
    name, version, alias = c.parse_model_ref(ref.strip())
    if not name:
        raise RegistryError(f"no model named in '{ref}'", "serve NAME, NAME@ALIAS or NAME/VERSION")
    qname = name if name.endswith(c.SUFFIX) else c.quantized_name(name)
    if version is None and alias is None:
        alias = c.ALIAS_CHAMPION
    target = f"{qname}/{version}" if version is not None else f"{qname}@{alias}"
    try:
        mv = resolve_version(target, s)
    except RegistryError as exc:
        if alias == c.ALIAS_CHAMPION:
            raise RegistryError(
                f"{qname} has no '@champion' version to serve",
                f"approve a candidate and run: quantgate promote {qname.removesuffix(c.SUFFIX)}",
            ) from None
        raise exc
    label = f"{qname}/{mv.version}"
    # the policy file is promotion's concern (a serving host need not hold the project's policies)
    report = verify_version(mv, settings=s, check_policy_file=False)
    if not report.passed:
        raise RegistryError(
            f"{label} is not served: it failed verification ({report.summary()})",
            f"run: quantgate verify {label}",
        )
    verdict = signed_verdict(report)
    if verdict != "pass":
        raise RegistryError(f"{label} did not pass its gate (signed verdict {verdict or 'missing'}); it is not served")
    approval = (mv.tags or {}).get(c.TAG_APPROVAL)
    problems = (
        approval_problems(mv, report, require_stamp=not s.embedded_mlflow)
        if approval == "approved"
        else [f"it is not approved ({c.TAG_APPROVAL}={approval})"]
    )
    if problems and not allow_unapproved:
        raise RegistryError(
            f"{label} is not served: {'; '.join(problems)}",
            "approve it in the MLflow UI, or serve it for staging with --allow-unapproved",
        )
    if problems:
        _mark_unapproved(mv, "; ".join(problems), s)
    return ServedModel(
        qname, str(mv.version), alias, f"models:/{qname}/{mv.version}", signed_target(report), unapproved=bool(problems)
    )


def _mark_unapproved(mv: Any, why: str, settings: Settings) -> None:
    """Say loudly that an unapproved version is served, and record it on the version."""
    from quantgate.registry.mlflow_registry import client, default_actor

    log.warning("SERVING AN UNAPPROVED VERSION %s/%s (--allow-unapproved): %s", mv.name, mv.version, why)
    stamp = f"{datetime.now(UTC).isoformat(timespec='seconds')} by {default_actor(settings)}: {why}"
    client(settings).set_model_version_tag(mv.name, str(mv.version), c.TAG_SERVED_UNAPPROVED, stamp[:500])


@dataclass
class _Capture:
    """Filled by the wrapped ``predict`` inside one request."""

    inputs: Any = None
    outputs: Any = None
    done: bool = False


_CAPTURE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("quantgate_capture", default=None)


def capture_predictions(model: Any) -> None:
    """Wrap ``model.predict`` (a PyFuncModel) so each request's inputs and predictions are seen.

    MLflow's ``invocations`` calls ``model.predict(data, params=params)`` when ``params`` is in
    the signature, so the wrapper keeps that parameter; schema enforcement stays inside.
    """
    original = model.predict

    def predict(data: Any, params: dict[str, Any] | None = None) -> Any:
        out = original(data, params=params)
        cap = _CAPTURE.get()
        if cap is not None:
            cap.inputs, cap.outputs, cap.done = data, out, True
        return out

    model.predict = predict


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == REQUEST_ID_HEADER:
            text = value.decode("latin-1").strip()
            if _REQUEST_ID_OK.match(text):
                return text
            break
    return uuid.uuid4().hex


class InferenceLogMiddleware:
    """Request ids on every ``/invocations`` answer and one log record per successful request.

    The record is queued when the 200 response starts, before the body reaches the client, so
    every acknowledged request is in the writer's hands. On the ASGI lifespan shutdown (uvicorn's
    clean stop on SIGTERM/SIGINT) the writer is drained before the app reports it has stopped.
    """

    def __init__(
        self,
        app: ASGIApp,
        served: ServedModel,
        writer: InferenceLogWriter | None,
        on_shutdown: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.served = served
        self.writer = writer
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        stamp = datetime.now(UTC)
        started = time.perf_counter()
        cap = _Capture()
        token = _CAPTURE.set(cap)

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, rid.encode("latin-1"))]
                if message["status"] == 200 and cap.done and self.writer is not None:
                    await self._submit(rid, stamp, (time.perf_counter() - started) * 1000.0, cap)
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            _CAPTURE.reset(token)

    async def _submit(self, rid: str, stamp: datetime, latency_ms: float, cap: _Capture) -> None:
        from quantgate.monitor.inference_log import InferenceRecord

        assert self.writer is not None
        record = InferenceRecord(
            request_id=rid,
            model=self.served.name,
            version=self.served.version,
            timestamp=stamp,
            latency_ms=latency_ms,
            inputs=cap.inputs,
            outputs=cap.outputs,
            unapproved=self.served.unapproved,
        )
        if not self.writer.try_submit(record):  # queue full: wait for room off the event loop
            await asyncio.to_thread(self.writer.submit, record)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_lifespan(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and self.on_shutdown:
                await asyncio.to_thread(self.on_shutdown)
            await send(message)

        await self.app(scope, receive, send_lifespan)


def build_app(
    model: Any,
    served: ServedModel,
    writer: InferenceLogWriter | None,
    on_shutdown: Callable[[], None] | None = None,
    max_body_mb: int | None = None,
) -> ASGIApp:
    """MLflow's scoring app for ``model`` (a loaded PyFuncModel), with the inference log around it
    and :class:`~quantgate.serve.guard.RequestGuard` inside it (413 over ``max_body_mb``, default
    the ``serve_max_body_mb`` setting; error messages clipped).

    ``writer=None`` serves MLflow's app with request ids only (the benchmark's baseline is the bare
    MLflow app). A model without an input signature is refused: nothing could check requests.
    """
    from mlflow.pyfunc import scoring_server

    if model.metadata.get_input_schema() is None:
        raise RegistryError(
            f"{served.name}/{served.version} has no input signature",
            "log the model with a signature so requests can be checked",
        )
    from quantgate.serve.guard import RequestGuard
    from quantgate.settings import get_settings

    if writer is not None:
        capture_predictions(model)
    limit = (max_body_mb or get_settings().serve_max_body_mb) * 1024 * 1024
    guarded = RequestGuard(scoring_server.init(model), max_body_bytes=limit)
    return InferenceLogMiddleware(guarded, served, writer, on_shutdown)
