"""Two governance runs at once (a Dask sweep over two versions of one source, found in a
fresh-clone run: the second run's create of ``<source>-quantized`` was refused): on a real
SQLite store, the refusal means "register into the existing model", and undoing a failed
registration never deletes a model another run has registered into."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import client

pytestmark = pytest.mark.integration


@pytest.fixture()
def cl(tmp_path: Path) -> Any:  # an MlflowClient on a fresh store
    return client(tmp_path)


def test_a_model_created_meanwhile_is_used_not_an_error(cl: Any) -> None:
    from quantgate.registry.mlflow_registry import _create_unless_there

    assert _create_unless_there(cl, "m-quantized", "m") is True
    # the second run found it missing a moment before the first created it: the store refuses
    assert _create_unless_there(cl, "m-quantized", "m") is False
    models = cl.search_registered_models()
    assert [m.name for m in models] == ["m-quantized"] and models[0].tags == {"quantgate.source_model": "m"}


def _version(cl: Any, tmp_path: Path) -> str:  # a version from another run, by the client only
    run = cl.create_run(experiment_id="0")
    return cl.create_model_version("m-quantized", str(tmp_path / "model"), run_id=run.info.run_id).version


def test_undoing_keeps_a_model_another_run_registered_into(cl: Any, tmp_path: Path) -> None:
    from quantgate.registry.mlflow_registry import _create_unless_there, _undo_registration

    assert _create_unless_there(cl, "m-quantized", "m")
    ours, theirs = _version(cl, tmp_path), _version(cl, tmp_path)
    _undo_registration(cl, "m-quantized", ours, None, created_model=True)
    assert [v.version for v in cl.search_model_versions("name='m-quantized'")] == [theirs]
    # with no version left, the model this run created goes too (all or nothing, as before)
    _undo_registration(cl, "m-quantized", theirs, None, created_model=True)
    assert cl.search_registered_models() == []
