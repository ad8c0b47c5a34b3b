"""How a column's values are classified, the same way by every check (one definition each).

pandas is imported inside the functions so the pure modules that use these stay cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: what ``pandas.api.types.infer_dtype`` says about a column of strings (or of nulls only)
STRING_KINDS = ("string", "empty")


def is_number(s: pd.Series) -> bool:
    """A numeric dtype that is not bool: what a range, finiteness or numeric drift test applies to."""
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(s.dtype)) and not pd.api.types.is_bool_dtype(s.dtype)


def holds_strings(s: pd.Series) -> bool:
    """Every non-null value is a ``str`` (pyarrow-backed strings included)."""
    import pandas as pd

    return pd.api.types.infer_dtype(s, skipna=True) in STRING_KINDS
