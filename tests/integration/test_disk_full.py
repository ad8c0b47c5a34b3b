"""The disk holding the Parquet inference log fills up while a server is logging (issue 26's
reliability sweep): a real, small tmpfs is mounted and written until it is full. The writer keeps
going and says what was lost and why; everything written before stays readable; no half-written
file is left behind."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mnt)], capture_output=True, text=True, check=False
    )
    if mounted.returncode != 0:  # not root, or no mount permission in this container: not run, said so
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or mounted.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_loses_only_what_did_not_fit_and_says_why(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from quantgate.monitor.inference_log import InferenceLogWriter, InferenceRecord, ParquetSink, read_inferences

    rng = np.random.default_rng(0)
    writer = InferenceLogWriter(ParquetSink(small_disk), max_batch=50, flush_interval=0.05, write_attempts=2)
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
    logged = read_inferences(small_disk)  # what was written before is intact and readable
    assert logged["request_id"].nunique() == stats.written_requests
    assert len(logged) == 4 * stats.written_requests
    assert not list(small_disk.rglob("*.tmp")), "a half-written file was left on the full disk"
