"""A custom ``mlflow.pyfunc.PythonModel`` that holds torch networks in its attributes.

This is how most teams ship preprocessing with a torch model. quantgate finds the ``nn.Module``
attributes, quantizes them **in place** (the same Python object, its other attributes and code
untouched), predicts through the model's own ``predict`` and logs the *same class* again with its
artifacts, ``code_paths``, requirements and signature, so the candidate serves exactly like the
source. Example inputs for recipes that need them (ONNX export, static calibration) are captured
from the module's own forward calls while the model predicts on calibration rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.errors import UnsupportedModel
from quantgate.models.outputs import to_array, to_proba
from quantgate.models.wrapped import WrappedModel
from quantgate.sources.base import SourceContext, is_python_model, register_source
from quantgate.sources.layout import resolve_outputs

#: the artifact a PythonModel candidate carries: how quantgate reads it (classes, output, record)
SPEC_ARTIFACT = "quantgate_spec"


def torch_attributes(obj: object) -> dict[str, nn.Module]:
    """The ``nn.Module`` attributes of a PythonModel instance, by attribute name."""
    return {k: v for k, v in vars(obj).items() if isinstance(v, nn.Module)}


@dataclass
class PythonModelWrapped(WrappedModel):
    """A WrappedModel whose predictions go through the PythonModel's own ``predict``."""

    pyfunc: Any = None  # the loaded mlflow PyFuncModel (its python_model is shared, modules swapped in)
    attributes: list[str] = field(default_factory=list)
    root: str = ""  # local copy of the source model directory (code/, requirements.txt)

    def _install(self) -> Any:
        inner = self.pyfunc.unwrap_python_model()
        if len(self.attributes) == 1:
            setattr(inner, self.attributes[0], self.module)
        else:
            for name in self.attributes:
                setattr(inner, name, self.module[name])  # type: ignore[index]
        return inner

    @property
    def input_columns(self) -> list[str]:
        return list(self.spec["feature_columns"])

    def with_module(self, module: nn.Module) -> PythonModelWrapped:
        return PythonModelWrapped(
            module, dict(self.spec), None, pyfunc=self.pyfunc, attributes=list(self.attributes), root=self.root
        )

    def raw_predict(self, df: pd.DataFrame) -> Any:
        self._install()
        return self.pyfunc.predict(df[self.input_columns])

    @torch.inference_mode()
    def predict_proba(self, df: pd.DataFrame, batch_size: int | None = None) -> np.ndarray:
        classes = self.classes
        if len(df) == 0:
            return np.zeros((0, len(classes)), np.float32)
        step = batch_size or 4096
        parts = [
            to_proba(to_array(self.raw_predict(df.iloc[i : i + step])), self.output_reading, classes)
            for i in range(0, len(df), step)
        ]
        return np.concatenate(parts)

    def predict_proba_served(self, df: pd.DataFrame, batch_size: int) -> np.ndarray:
        """Row-order chunks of ``batch_size`` through the PythonModel's own ``predict``."""
        return self.predict_proba(df, batch_size)

    @torch.inference_mode()
    def batches(self, df: pd.DataFrame, batch_size: int) -> list[tuple[torch.Tensor, ...]]:
        """The module's own inputs, captured while the model predicts on ``df`` in chunks."""
        if len(self.attributes) != 1:
            raise UnsupportedModel(
                f"this PythonModel holds {len(self.attributes)} torch modules ({', '.join(self.attributes)}); "
                "recipes that need example inputs (ONNX export, static calibration) take one",
                "use a torch recipe (dynamic-int8, int8-weight-only, fp16) or hold one nn.Module",
            )
        seen: list[tuple[torch.Tensor, ...]] = []

        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if kwargs or not all(isinstance(a, torch.Tensor) for a in args):
                raise UnsupportedModel(
                    f"{self.attributes[0]} is called with keyword or non-tensor arguments",
                    "use a torch recipe (dynamic-int8, int8-weight-only, fp16)",
                )
            seen.append(tuple(a.detach() for a in args))

        handle = self.module.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            for i in range(0, len(df), batch_size):
                self.raw_predict(df.iloc[i : i + batch_size])
        finally:
            handle.remove()
        return seen


def _download(uri: str) -> Path:
    from mlflow.artifacts import download_artifacts

    return Path(download_artifacts(uri))


def load_python_model_source(ctx: SourceContext) -> PythonModelWrapped:
    import mlflow.pyfunc

    root = _download(ctx.uri)
    pyfunc = mlflow.pyfunc.load_model(str(root))
    inner = pyfunc.unwrap_python_model()
    modules = torch_attributes(inner)
    if not modules:
        raise UnsupportedModel(
            f"{ctx.ref} is a PythonModel ({type(inner).__name__}) with no torch nn.Module attribute",
            "quantgate quantizes torch networks held as attributes of the PythonModel (self.net = ...)",
        )
    names = sorted(modules)
    module: nn.Module = modules[names[0]] if len(names) == 1 else nn.ModuleDict(modules)
    stored = (pyfunc._model_impl.context.artifacts or {}).get(SPEC_ARTIFACT)
    if stored:  # a candidate quantgate logged: its reading is recorded
        spec = json.loads(Path(stored).read_text())
        return PythonModelWrapped(module, spec, None, pyfunc=pyfunc, attributes=names, root=str(root))
    sig = ctx.meta.signature
    if sig is not None and sig.inputs is not None and not sig.inputs.is_tensor_spec():
        columns = [str(c) for c in sig.inputs.input_names()]
    else:
        label = getattr(ctx.config, "label", None)
        columns = list(ctx.onboarding("input_columns", []) or []) or [c for c in ctx.columns if c != label]
    spec: dict[str, Any] = {
        "task": "pyfunc-classification",
        "feature_columns": columns,
        "python_model": f"{type(inner).__module__}.{type(inner).__qualname__}",
        "torch_attributes": names,
    }
    wrapped = PythonModelWrapped(module, {**spec, "classes": [0, 1]}, None, pyfunc=pyfunc, attributes=names)
    spec |= resolve_outputs(ctx, wrapped.raw_predict)
    return PythonModelWrapped(module, spec, None, pyfunc=pyfunc, attributes=names, root=str(root))


def log_python_model(candidate: PythonModelWrapped, example: pd.DataFrame, extra: dict[str, str], tmp: Path) -> Any:
    """Log the candidate as the source's own PythonModel class, quantized modules swapped in."""
    import mlflow.pyfunc

    inner = candidate._install()
    root = Path(candidate.root)
    spec_file = tmp / "quantgate_spec.json"
    spec_file.write_text(json.dumps(candidate.spec, indent=2, sort_keys=True, default=str))
    artifacts = {k: str(v) for k, v in (candidate.pyfunc._model_impl.context.artifacts or {}).items()}
    artifacts |= {**extra, SPEC_ARTIFACT: str(spec_file)}
    code_dir = root / (candidate.pyfunc.metadata.flavors["python_function"].get("code") or "code")
    code_paths = [str(p) for p in sorted(code_dir.iterdir())] if code_dir.is_dir() else None
    reqs = root / "requirements.txt"
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=inner,
        artifacts=artifacts,
        code_paths=code_paths,
        pip_requirements=str(reqs) if reqs.exists() else None,
        signature=candidate.pyfunc.metadata.signature,
        input_example=example,
    )


@register_source("python_model", is_python_model)
def load_python_model(ctx: SourceContext) -> WrappedModel:
    return load_python_model_source(ctx)
