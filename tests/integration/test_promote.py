"""Promotion: only an approved, passing candidate becomes champion; refusals move nothing."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import snapshot

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_versions(adult_result: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A passing and a failing version of this module's own (fixed recipe, no search), so that
    approving and promoting here changes nothing other tests look at."""
    from helpers import IMPOSSIBLE_POLICY

    from quantgate.flows.quantize import quantize_model

    policy = tmp_path_factory.mktemp("promote") / "impossible.yaml"
    policy.write_text(IMPOSSIBLE_POLICY)
    passing = quantize_model("adult-income/1", recipe="dynamic-int8")
    failing = quantize_model("adult-income/1", recipe="dynamic-int8", policy=str(policy))
    assert passing["verdict"] == "pass" and failing["verdict"] == "fail"
    return {"pass": passing, "fail": failing}


def test_promotion_requires_approval(own_versions: dict[str, Any], settings: Any) -> None:
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote
    from quantgate.registry.mlflow_registry import client

    cl = client(settings)
    name, version = own_versions["pass"]["registered"].split("/")
    assert cl.get_model_version(name, version).tags["quantgate.approval"] == "pending"
    before = snapshot()
    with pytest.raises(RegistryError, match="is not approved"):
        promote("adult-income")
    assert snapshot() == before

    cl.set_model_version_tag(name, version, "quantgate.approval", "approved")  # what the reviewer does in the UI
    mv, previous = promote("adult-income")
    assert (str(mv.version), previous) == (version, None)
    assert str(cl.get_model_version_by_alias(name, "champion").version) == version
    assert "quantgate.promoted_at" in cl.get_model_version(name, version).tags


def test_failed_version_never_promotable(own_versions: dict[str, Any], settings: Any) -> None:
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote
    from quantgate.registry.mlflow_registry import client

    cl = client(settings)
    name, v = own_versions["fail"]["registered"].split("/")
    cl.set_model_version_tag(name, v, "quantgate.approval", "approved")  # even if someone approves it by hand
    before = snapshot()
    with pytest.raises(RegistryError, match="failed its gate"):
        promote("adult-income", version=v)
    assert snapshot() == before


def test_promote_unknown_model(settings: Any, qg_home: Any) -> None:
    from quantgate.errors import RegistryError
    from quantgate.promotion.service import promote

    with pytest.raises(RegistryError, match="has no quantized versions"):
        promote("never-registered")
