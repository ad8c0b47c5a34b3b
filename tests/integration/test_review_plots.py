"""A governed candidate's run holds the reviewer's PNGs, and its card (the version description)
links them so that the MLflow UI shows them: the links are fetched from a real `mlflow server`
on the same store, resolved against the UI's address as a browser would."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

pytestmark = pytest.mark.integration

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = {"plots/group_accuracy.png", "plots/flip_audit.png", "plots/search_tradeoff.png"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_governed_candidate_has_linked_review_plots(adult_result: dict[str, Any], settings: Any) -> None:
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

    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            settings.tracking_uri,
            "--default-artifact-root",
            settings.artifacts_dir.as_uri(),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(urljoin(base, "health"), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        for u in links:
            r = httpx.get(urljoin(base, u), timeout=30)  # the version page lives at base + "#/models/..."
            assert r.status_code == 200, u
            path = re.search(r"path=([^&]+)", u).group(1).replace("%2F", "/")  # type: ignore[union-attr]
            assert r.content == files[path]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
