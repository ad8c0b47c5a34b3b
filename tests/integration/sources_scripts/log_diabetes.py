"""A user's script: a regression MLP on sklearn's diabetes data (one output, a continuous target),
logged with MLflow's defaults (pt2, ndarray input example). quantgate governs classifiers, so it
must refuse this model by name, not guess two classes.

usage: python log_diabetes.py NAME OUT_DIR   (writes reference/calibration/evaluation.parquet)
"""

import sys
from pathlib import Path

import mlflow
import numpy as np
import torch
from sklearn.datasets import load_diabetes
from torch import nn

name, out = sys.argv[1], Path(sys.argv[2])
df = load_diabetes(as_frame=True).frame
features = [c for c in df.columns if c != "target"]
train = df.sample(frac=0.6, random_state=0)
x = train[features].to_numpy(np.float32)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(len(features), 32), nn.ReLU(), nn.Linear(32, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
xt, yt = torch.from_numpy(x), torch.from_numpy(train["target"].to_numpy(np.float32)).unsqueeze(1)
for _ in range(300):
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
