"""A torch module plus the preprocessing that makes it predict on raw rows or raw text.

``WrappedModel`` is what every quantgate step works with: the source model, each quantized
candidate, and what the logged pyfunc serves. It is saved as three artifacts: ``module.pt``
(the whole module, so quantized layers survive), ``spec.json`` (task and preprocessing) and,
for text, ``tokenizer/``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from quantgate.models.outputs import OutputReading, to_array, to_proba
from quantgate.models.tabular import TabularPreprocessor

TASKS = (
    "tabular-classification",
    "text-classification",
    "tensor-classification",
    "pyfunc-classification",
    "tensor-regression",
)


@dataclass
class WrappedModel:
    module: nn.Module
    spec: dict[str, Any]
    tokenizer: Any | None = None
    _pre: TabularPreprocessor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.spec.get("task") not in TASKS:
            raise ValueError(f"unknown task {self.spec.get('task')!r}; expected one of {TASKS}")
        if self.spec["task"] == "tabular-classification":
            self._pre = TabularPreprocessor.from_dict(self.spec["preprocessor"])
        self.module.eval()

    @property
    def task(self) -> str:
        return str(self.spec["task"])

    @property
    def input_columns(self) -> list[str]:
        if self._pre is not None:
            return self._pre.columns
        if self.task == "text-classification":
            return [self.spec.get("text_column", "text")]
        return list(self.spec["feature_columns"])

    def with_module(self, module: nn.Module) -> WrappedModel:
        return WrappedModel(module, dict(self.spec), self.tokenizer)

    def batches(self, df: pd.DataFrame, batch_size: int) -> list[tuple[torch.Tensor, ...]]:
        """Raw rows -> tensors, batched: what calibration, evaluation and latency runs feed in."""
        out: list[tuple[torch.Tensor, ...]] = []
        if self.task == "text-classification":
            texts = df[self.input_columns[0]].astype(str).tolist()
            max_len = int(self.spec.get("max_length", 128))
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(
                    texts[i : i + batch_size],
                    padding=True,
                    truncation=True,  # type: ignore[misc]
                    max_length=max_len,
                    return_tensors="pt",
                )
                out.append((enc["input_ids"], enc["attention_mask"]))
            return out
        if self._pre is not None:
            x = self._pre.transform(df)
        else:
            x = df[self.input_columns].to_numpy(dtype=np.float32)
        shape = self.spec.get("input_shape")
        if shape:  # e.g. images [-1, 1, 28, 28] fed from flat columns in row-major order
            x = x.reshape(len(x), *[int(d) for d in shape[1:]])
        xt = torch.from_numpy(np.ascontiguousarray(x))
        return [(xt[i : i + batch_size],) for i in range(0, len(xt), batch_size)]

    @property
    def classes(self) -> list[Any]:
        if self.task.endswith("-regression"):  # one column: the predicted value (see predict_values)
            return ["prediction"]
        return list(self.spec.get("classes", [0, 1]))

    @property
    def output_reading(self) -> OutputReading:
        """How the module's raw scores are read (``spec["output"]``; logits by default)."""
        kind = self.spec.get("output", "logits")
        return OutputReading(kind, int(self.spec.get("output_width", 0)), False)

    @torch.inference_mode()
    def raw_outputs(self, batch: tuple[torch.Tensor, ...]) -> np.ndarray:
        """One batch through the module, as a 2-D array of scores (or labels)."""
        return to_array(self.module(*batch))

    @torch.inference_mode()
    def predict_proba(self, df: pd.DataFrame, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities ``(n, k)`` in row order, columns in the order of ``classes``.

        Text is batched by length (then put back in order): padding to the longest snippet of a
        batch of similar lengths is several times cheaper than padding to a random one.
        """
        classes = self.classes
        if len(df) == 0:
            return np.zeros((0, len(classes)), np.float32)
        order = np.arange(len(df))
        if self.task == "text-classification":
            order = np.argsort(df[self.input_columns[0]].astype(str).str.len().to_numpy(), kind="stable")
            batch_size = batch_size or 64
        rows = df.iloc[order]
        from quantgate.progress import track

        batches = self.batches(rows, batch_size or 256)
        label = f"predicting {len(df)} rows"
        reading = self.output_reading
        probs = [to_proba(self.raw_outputs(b), reading, classes) for b in track(batches, label, len(batches))]
        out = np.empty((len(df), len(classes)), np.float32)
        out[order] = np.concatenate(probs)
        return out

    @torch.inference_mode()
    def predict_proba_served(self, df: pd.DataFrame, batch_size: int) -> np.ndarray:
        """Class probabilities as a server batching ``batch_size`` requests would produce them:
        the rows in their own order, consecutive batches (the last one shorter), no length sort.
        Dynamic int8 quantizes activations per batch, so this can differ from
        :meth:`predict_proba`."""
        classes = self.classes
        if len(df) == 0:
            return np.zeros((0, len(classes)), np.float32)
        reading = self.output_reading
        return np.concatenate([to_proba(self.raw_outputs(b), reading, classes) for b in self.batches(df, batch_size)])

    @property
    def is_regression(self) -> bool:
        """One continuous value per row (``predict_proba`` then returns it as an ``(n, 1)`` column)."""
        return self.task.endswith("-regression")

    def predict_values(self, df: pd.DataFrame) -> np.ndarray:
        """A regressor's predictions, one float per row."""
        return self.predict_proba(df)[:, 0].astype(np.float64)

    def predict(self, df: pd.DataFrame) -> pd.DataFrame:
        if self.is_regression:
            return pd.DataFrame({"prediction": self.predict_values(df)})
        proba = self.predict_proba(df)
        classes = self.classes
        idx = proba.argmax(axis=1)
        out = {"label": np.asarray(classes)[idx], "score": proba.max(axis=1)}
        if len(classes) == 2:  # the positive class's probability: what a binary client thresholds
            out["probability"] = proba[:, -1]
        return pd.DataFrame(out)

    # --- persistence -------------------------------------------------------------------
    def save(self, directory: Path) -> dict[str, str]:
        """Write the artifacts; returns the name -> path mapping mlflow's log_model takes."""
        directory.mkdir(parents=True, exist_ok=True)
        # cloudpickle (what mlflow.pytorch saves with): a user's class defined in a script's
        # __main__ travels by value, as it did in the source model
        import cloudpickle

        torch.save(self.module, directory / "module.pt", pickle_module=cloudpickle)
        (directory / "spec.json").write_text(json.dumps(self.spec, indent=2, sort_keys=True))
        arts = {"module": str(directory / "module.pt"), "spec": str(directory / "spec.json")}
        if self.tokenizer is not None:
            tok_dir = directory / "tokenizer"
            if tok_dir.exists():
                shutil.rmtree(tok_dir)
            self.tokenizer.save_pretrained(str(tok_dir))
            arts["tokenizer"] = str(tok_dir)
        return arts

    @classmethod
    def load(cls, artifacts: dict[str, str]) -> WrappedModel:
        try:
            module = torch.load(artifacts["module"], weights_only=False, map_location="cpu")
        except RuntimeError as exc:  # damaged bytes: torch's message does not name the file
            raise RuntimeError(f"{exc} (reading {artifacts['module']})") from exc
        spec = json.loads(Path(artifacts["spec"]).read_text())
        tokenizer = None
        if "tokenizer" in artifacts:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(artifacts["tokenizer"], local_files_only=True)
        return cls(module, spec, tokenizer)
