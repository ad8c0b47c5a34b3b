"""A governed candidate's run holds the reviewer's PNGs, and its card (the version description)
links them so that the MLflow UI shows them: the links, resolved against the UI's address as a
browser would, are fetched through the MLflow server's own app on the same store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = {"plots/group_accuracy.png", "plots/flip_audit.png", "plots/search_tradeoff.png"}


def test_governed_candidate_has_linked_review_plots(
    adult_result: dict[str, Any], settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantgate.registry.mlflow_registry import client

    cl = client(settings)
    name, version = adult_result["registered"].split("/")
    mv = cl.get_model_version(name, version)
    logged = {a.path for a in cl.list_artifacts(mv.run_id, "plots")}
    assert logged == PLOTS  # adult-income has groups, a flip audit and a recipe search
    files = {p: Path(cl.download_artifacts(mv.run_id, p)).read_bytes() for p in sorted(logged)}
    assert all(b.startswith(PNG) and len(b) > 5000 for b in files.values())

    links = re.findall(r"!\[[^\]]+\]\((get-artifact\?[^)]+)\)", mv.description)
    assert len(links) == 3 and all(f"run_uuid={mv.run_id}" in u for u in links)
    card = Path(cl.download_artifacts(mv.run_id, "model_card.md")).read_text()
    assert all(u in card for u in links)  # the logged card is the one that links them

    # the MLflow server's own app (its Flask routes, in process: a server process costs a minute
    # on a loaded 2-core host), on the same store; the version page lives at <base>/#/models/...,
    # so the browser resolves a relative link against <base>/
    import mlflow.server as server
    from mlflow.server import handlers
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setenv(server.BACKEND_STORE_URI_ENV_VAR, settings.tracking_uri)
    monkeypatch.setenv(server.ARTIFACT_ROOT_ENV_VAR, settings.artifacts_dir.as_uri())
    monkeypatch.setattr(handlers, "_tracking_store", None)  # built from the env on first request
    monkeypatch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)  # restored after
    ui = server.app.test_client()
    base = "http://127.0.0.1:5000/"
    for u in links:
        r = ui.get(urljoin(base, u).removeprefix(base[:-1]))
        assert r.status_code == 200, u
        assert r.mimetype == "image/png"
        path = re.search(r"path=([^&]+)", u).group(1).replace("%2F", "/")  # type: ignore[union-attr]
        assert r.data == files[path]
