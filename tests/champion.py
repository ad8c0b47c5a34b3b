"""Make a quantized version ``@champion`` for a test, then put the registry back as it was.

Serving and monitoring target ``@champion`` only. The suite's shared quantized candidate is
pending approval, so these tests approve it as a labelled demo reviewer and promote it through
the real ``promote`` (the same checks a person's promotion passes), and on exit remove the alias
(or restore the previous champion) so tests that assert "no champion yet" still hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def champion(settings: Any, registered: str) -> Iterator[tuple[str, str]]:
    """``registered`` is ``"<name>-quantized/<version>"``; yields (name, version) while champion."""
    from mlflow.exceptions import MlflowException

    from quantgate.promotion.service import promote
    from quantgate.registry import contract as c
    from quantgate.registry.mlflow_registry import client

    cl = client(settings)
    name, version = registered.split("/")
    try:
        previous: str | None = str(cl.get_model_version_by_alias(name, c.ALIAS_CHAMPION).version)
    except MlflowException:
        previous = None
    approval = cl.get_model_version(name, version).tags.get(c.TAG_APPROVAL, "pending")
    cl.set_model_version_tag(name, version, c.TAG_APPROVAL, "approved")
    cl.set_model_version_tag(name, version, "quantgate.approved_by", "demo-reviewer")
    promote(name, version, settings=settings)
    try:
        yield name, version
    finally:
        if previous is None:
            cl.delete_registered_model_alias(name, c.ALIAS_CHAMPION)
        else:
            cl.set_registered_model_alias(name, c.ALIAS_CHAMPION, previous)
        cl.set_model_version_tag(name, version, c.TAG_APPROVAL, approval)
