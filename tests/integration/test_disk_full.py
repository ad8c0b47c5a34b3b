"""A full disk (issue 26's reliability sweep): a real, small tmpfs filesystem under the inference log
(its writer alone, then a real ``quantgate serve``) and under the artifact store. The inference log
keeps what it wrote, leaves no half-written file and says how many requests it could not log and
why; a governance run stops with one line naming the full device, registers nothing, and leaves
what was stored before intact.

Mounting a tmpfs needs root (CAP_SYS_ADMIN): elsewhere these tests are skipped, with that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import prefect_server, trained_adult_project
from test_serve import Server
from test_serve import adult_test_rows as adult_test_rows  # a fixture, requested by name below

pytestmark = pytest.mark.integration


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Any]:
    """A function that mounts a tmpfs of ``size`` at a new directory; unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir(parents=True)
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()[:200]}")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(where: Path, leave_bytes: int = 0) -> None:
    """Write a filler file until the filesystem is full (or only ``leave_bytes`` are left)."""
    free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
    with (where / "filler").open("wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave_bytes))
            fh.flush()
            os.fsync(fh.fileno())
        except OSError:
            pass  # full: that is the point


def test_a_full_disk_loses_only_what_did_not_fit_and_says_why(
    small_disk: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The log's writer on its own, written until a 192 KiB disk is full."""
    import logging
    from datetime import UTC, datetime

    import numpy as np

    from quantgate.monitor.inference_log import InferenceLogWriter, InferenceRecord, ParquetSink, read_inferences

    disk = small_disk("disk", "192k")

    rng = np.random.default_rng(0)
    writer = InferenceLogWriter(ParquetSink(disk), max_batch=50, flush_interval=0.05, write_attempts=2)
    sent = 0
    with caplog.at_level(logging.ERROR, logger="quantgate.monitor.inference_log"):
        writer.start()
        for i in range(1200):  # far more than 192 KiB of Parquet
            inputs = pd.DataFrame(rng.normal(size=(4, 8)), columns=[f"x{j}" for j in range(8)])
            outputs = pd.DataFrame({"label": rng.integers(0, 2, 4), "probability": rng.random(4)})
            writer.submit(InferenceRecord(f"r{i}", "m-quantized", "1", datetime.now(UTC), 1.0, inputs, outputs))
            sent += 1
        stats = writer.close()
    assert stats.accepted == sent
    assert stats.written_requests > 0, "the log wrote nothing before the disk filled"
    assert stats.failed_requests > 0 and stats.written_requests + stats.lost == sent
    assert "No space left on device" in (stats.last_error or "")
    assert any("No space left on device" in r.getMessage() for r in caplog.records)
    logged = read_inferences(disk)  # what was written before is intact and readable
    assert logged["request_id"].nunique() == stats.written_requests
    assert len(logged) == 4 * stats.written_requests
    assert not list(disk.rglob("*.tmp")), "a half-written file was left on the full disk"


def test_a_full_disk_under_the_inference_log_loses_only_what_it_reports(
    adult_result: dict[str, Any], settings: Any, adult_test_rows: pd.DataFrame, small_disk: Any
) -> None:
    """Requests keep being answered while the log's disk is full; the rows written before stay
    readable, no half-written file is left, and the stop says how many requests were not logged
    and why (the error is logged as it happens)."""
    from quantgate.monitor.inference_log import read_inferences
    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client

    log = small_disk("log", "1m")
    name, version = adult_result["registered"].split("/")
    cl = client(settings)
    body = {"dataframe_records": json.loads(adult_test_rows.head(4).to_json(orient="records"))}
    server = Server(settings, f"{name}/{version}", "--allow-unapproved", "--inference-log", str(log))
    try:
        before = [server.http.post("/invocations", json=body) for _ in range(3)]
        assert [r.status_code for r in before] == [200] * 3
        deadline = time.monotonic() + 30
        while not list(log.rglob("part-*.parquet")) and time.monotonic() < deadline:  # flushed every 5 s
            time.sleep(0.5)
        written = sorted(log.rglob("part-*.parquet"))
        assert written, "the first requests were never logged"
        _fill(log)
        after = [server.http.post("/invocations", json=body) for _ in range(5)]
        assert [r.status_code for r in after] == [200] * 5  # serving goes on
        code, out = server.stop()
    finally:
        if server.proc.poll() is None:
            server.stop()
        cl.delete_model_version_tag(name, version, c.TAG_SERVED_UNAPPROVED)
    assert code in (0, -15), out[-3000:]  # a clean stop on SIGTERM (uvicorn re-raises the signal after its shutdown)
    assert "No space left on device" in out, out[-3000:]  # logged when the write failed
    assert "warning: 5 acknowledged request(s) were not logged" in out, out[-3000:]
    assert "inference log: 8 request(s) logged: 3 written (12 rows" in out, out[-3000:]
    (log / "filler").unlink()
    rows = read_inferences(log)  # what was written before the disk filled, whole
    assert len(rows) == 12 and rows["request_id"].nunique() == 3
    assert not [p for p in log.rglob(".*") if p.is_file()], "a half-written temporary file was left"


def test_a_full_artifact_store_stops_the_run_in_one_line_and_registers_nothing(tmp_path: Path, small_disk: Any) -> None:
    """The artifact store (``$QUANTGATE_HOME/artifacts``) on a 64 MB tmpfs holding the source model,
    then filled: ``quantgate quantize`` stops with one line naming the full device (exit 4), no
    version or alias is registered, and the source model still loads."""
    from quantgate.registry.mlflow_registry import registry_snapshot
    from quantgate.settings import Settings

    home = tmp_path / "home"
    home.mkdir()
    artifacts = small_disk("home/artifacts", "64m")
    env, source = trained_adult_project(tmp_path, home)
    assert any(artifacts.rglob("MLmodel")), "the source model's artifacts are not on the small disk"
    settings = Settings(home=home, project_dir=Path(env["QUANTGATE_PROJECT_DIR"]))
    before = registry_snapshot(settings)
    _fill(artifacts, leave_bytes=16 * 1024)
    with prefect_server(tmp_path, env) as api:
        proc = subprocess.run(
            [sys.executable, "-m", "quantgate.cli", "quantize", "--model", source, "--recipe", "ort-fp32"],
            env=env | {"PREFECT_API_URL": api},
            cwd=tmp_path,
            text=True,
            capture_output=True,
            timeout=900,
            check=False,
        )
    out = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 4, out
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: no space left on the device"), out
    assert "Traceback" not in proc.stderr, out
    assert registry_snapshot(settings) == before  # no version, no alias, no tag moved
    (artifacts / "filler").unlink()
    loaded = subprocess.run(
        [sys.executable, "-c", f"import mlflow; mlflow.pyfunc.load_model('models:/{source}'); print('ok')"],
        env=env | {"MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"},
        cwd=tmp_path,
        text=True,
        capture_output=True,
        timeout=600,
        check=False,
    )
    assert loaded.returncode == 0 and "ok" in loaded.stdout, loaded.stderr[-3000:]
