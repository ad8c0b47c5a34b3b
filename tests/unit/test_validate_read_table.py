"""read_table on small hand-made files: broken input is a one-line DataError naming file and fix."""

from __future__ import annotations

import bz2
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantgate.data.datasets import read_table
from quantgate.errors import DataError
from quantgate.validate import sample_calibration

CSV = "age,city,y\n31,Oslo,1\n45,Rome,0\n52,Lima,1\n"


def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_table(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and " — " in msg  # names the file, one line, has a fix
    return msg


def test_good_files_read(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    (tmp_path / "a.csv.bz2").write_bytes(bz2.compress(CSV.encode()))
    pd.read_csv(tmp_path / "a.csv").to_parquet(tmp_path / "a.parquet")
    frames = [read_table(tmp_path / n) for n in ("a.csv", "a.csv.bz2", "a.parquet")]
    for df in frames:
        assert list(df.columns) == ["age", "city", "y"] and len(df) == 3


def test_missing_values_are_not_a_broken_line(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("age,city,y\n31,Oslo,\n45,,0\n")
    df = read_table(tmp_path / "a.csv")
    assert df["y"].isna().sum() == 1 and df["city"].isna().sum() == 1


def test_header_only_reads_as_empty_frame(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("age,city,y\n")
    assert read_table(tmp_path / "a.csv").shape == (0, 3)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("a.csv", b"", "is empty (0 bytes)"),
        ("a.parquet", b"", "is empty (0 bytes)"),
        ("a.csv", b"\n\n", "it has no header line"),
        ("a.csv", (CSV + "60,Oslo,1,extra\n").encode(), "line 5 has 4 fields, expected 3"),
        ("a.csv", (CSV + "60,Oslo\n").encode(), "line 5 has 2 fields, expected 3"),
        ("a.csv", (CSV + '60,"Oslo,1\n').encode(), "close the quote"),
        ("a.csv", CSV.replace("Rome", "Rom\xe9").encode("latin-1"), "byte 0xe9 on line 3 is not valid UTF-8"),
        ("a.csv", CSV.encode("utf-16"), "it is UTF-16 text, not UTF-8"),
        ("a.parquet", CSV.encode(), "it looks like CSV text"),
        ("a.parquet", b"PAR1" + b"\x00" * 64, "it is truncated"),
        ("a.parquet", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "does not start with the Parquet magic bytes"),
        ("a.json", b"{}", "unsupported data file type '.json'"),
    ],
)
def test_broken_files(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert needle in _error(path)


def test_directory_and_missing(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    assert "is a directory" in _error(tmp_path / "d.csv")
    assert "data file not found" in _error(tmp_path / "nope.csv")


def test_sample_calibration_tops_up_groups_and_excludes_leaks() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    pool = pd.DataFrame(
        {
            "x": np.arange(n),
            "g": np.where(np.arange(n) < 40, "rare", "common"),
            "y": rng.integers(0, 2, n),
        }
    )
    leak = pool.iloc[[0, 1, 2, 100]]
    out = sample_calibration(pool, 100, sensitive_attributes=["g"], min_group_rows=30, exclude=leak, seed=1)
    assert (out["g"] == "rare").sum() == 30
    assert not set(out["x"]) & {0, 1, 2, 100}
    assert len(out) >= 100 and not out["x"].duplicated().any()
    assert (out.index == out["x"]).all()  # the pool's index is kept, so the caller can drop these rows
    again = sample_calibration(pool, 100, sensitive_attributes=["g"], min_group_rows=30, exclude=leak, seed=1)
    pd.testing.assert_frame_equal(out, again)
    with pytest.raises(DataError, match="not in the data: sex"):
        sample_calibration(pool, 10, sensitive_attributes=["sex"])
