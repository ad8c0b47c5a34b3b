"""A user's script: a torch MLP regressor on sklearn's bundled diabetes data (unscaled, so ``sex``
is 1/2 and ``age`` in years), logged with MLflow's defaults (pt2, ndarray input example). The
inputs are standardised inside the model, as a user would bake it in.

usage: python log_diabetes_regressor.py NAME OUT_DIR   (writes reference/calibration/evaluation.parquet)
"""

import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_diabetes
from torch import nn

name, out = sys.argv[1], Path(sys.argv[2])
df = load_diabetes(as_frame=True, scaled=False).frame
features = [c for c in df.columns if c != "target"]
df["age_group"] = pd.cut(df["age"], [0, 40, 55, 200], labels=["under-40", "40-55", "over-55"]).astype(str)
train = df.sample(frac=0.6, random_state=0)
x = train[features].to_numpy(np.float32)


class Regressor(nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("std", torch.from_numpy(std))
        self.body = nn.Sequential(nn.Linear(len(mean), 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std)


torch.manual_seed(0)
model = Regressor(x.mean(axis=0), x.std(axis=0))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
xt, yt = torch.from_numpy(x), torch.from_numpy(train["target"].to_numpy(np.float32)).unsqueeze(1)
for _ in range(400):
    opt.zero_grad()
    nn.functional.mse_loss(model(xt), yt).backward()
    opt.step()
model.eval()
with mlflow.start_run():
    mlflow.pytorch.log_model(model, name="model", input_example=x[:5], registered_model_name=name)
out.mkdir(parents=True, exist_ok=True)
train.to_parquet(out / "reference.parquet")
train.sample(n=150, random_state=1).to_parquet(out / "calibration.parquet")
df.drop(train.index).to_parquet(out / "evaluation.parquet")
