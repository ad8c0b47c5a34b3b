"""Tabular preprocessing (pure numpy/pandas) and the demo MLP."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn


@dataclass(frozen=True)
class TabularPreprocessor:
    """Standardise numeric columns, one-hot categorical ones (unknown categories -> all zeros).

    Kept as plain data (JSON) so it travels inside the logged model and into the model card.
    """

    numeric: list[str]
    categorical: list[str]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(cls, df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> TabularPreprocessor:
        means = {c: float(df[c].astype(float).mean()) for c in numeric}
        stds = {c: float(df[c].astype(float).std() or 1.0) for c in numeric}
        vocab = {c: sorted(map(str, df[c].dropna().unique())) for c in categorical}
        return cls(list(numeric), list(categorical), means, stds, vocab)

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def n_features(self) -> int:
        return len(self.numeric) + sum(len(v) for v in self.vocab.values())

    def feature_names(self) -> list[str]:
        return [*self.numeric, *(f"{c}={v}" for c in self.categorical for v in self.vocab[c])]

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise ValueError(f"input is missing column(s): {', '.join(missing)}")
        parts = []
        if self.numeric:
            num = df[self.numeric].astype(float).to_numpy()
            mu = np.array([self.means[c] for c in self.numeric])
            sd = np.array([self.stds[c] for c in self.numeric])
            parts.append(np.nan_to_num((num - mu) / sd))
        for c in self.categorical:
            cats = pd.Categorical(df[c].astype(str), categories=self.vocab[c])
            onehot = np.zeros((len(df), len(self.vocab[c])), dtype=np.float64)
            codes = cats.codes
            ok = codes >= 0
            onehot[np.nonzero(ok)[0], codes[ok]] = 1.0
            parts.append(onehot)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularPreprocessor:
        return cls(**d)


class TabularMLP(nn.Module):
    """A small MLP classifier: Linear-ReLU blocks and a linear head over ``n_classes`` logits."""

    def __init__(self, n_features: int, hidden: tuple[int, ...] = (128, 64), n_classes: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        prev = n_features
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU()]
            prev = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    hidden: tuple[int, ...] = (128, 64),
    epochs: int = 12,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
) -> TabularMLP:
    """Train with a fixed seed (deterministic on CPU)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = TabularMLP(x.shape[1], hidden, int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-5)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()
