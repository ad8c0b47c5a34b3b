"""Import Great Expectations on first use, with its analytics off.

One place for it: the import takes seconds (kept out of ``import quantgate.validate``) and
``GX_ANALYTICS_ENABLED=False`` must be set before it, so nothing is sent anywhere.
"""

from __future__ import annotations

import os
from typing import Any


def import_gx() -> Any:
    """The ``great_expectations`` module, imported with analytics disabled."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    import great_expectations as gx

    return gx
