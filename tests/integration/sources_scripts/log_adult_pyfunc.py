"""A user's script: a custom mlflow.pyfunc.PythonModel that ships its preprocessing (sklearn)
with a torch MLP on UCI Adult, logged as MLflow's documentation shows (class defined here).

usage: python log_adult_pyfunc.py NAME TRAIN_PARQUET
"""

import sys

import mlflow
import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from torch import nn

name, train_path = sys.argv[1], sys.argv[2]
train = pd.read_parquet(train_path)
label = "income"
numeric = [c for c in train.columns if c != label and pd.api.types.is_numeric_dtype(train[c])]
categorical = [c for c in train.columns if c != label and c not in numeric]


class IncomeModel(mlflow.pyfunc.PythonModel):
    """Preprocessing + torch network, the way teams ship a model with its feature code."""

    def __init__(self, pre: ColumnTransformer, net: nn.Module) -> None:
        self.pre = pre
        self.net = net

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        x = torch.from_numpy(np.asarray(self.pre.transform(model_input), dtype=np.float32))
        with torch.no_grad():
            return torch.softmax(self.net(x), dim=1).numpy()


pre = ColumnTransformer(
    [
        ("num", StandardScaler(), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
    ]
).fit(train)
x = torch.from_numpy(np.asarray(pre.transform(train), dtype=np.float32))
y = torch.from_numpy(train[label].to_numpy().astype(np.int64))
torch.manual_seed(0)
net = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 2))
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for _ in range(8):
    for i in range(0, len(x), 256):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[i : i + 256]), y[i : i + 256]).backward()
        opt.step()
net.eval()
example = train.drop(columns=[label]).head(5)
with mlflow.start_run():
    mlflow.pyfunc.log_model(
        name="model", python_model=IncomeModel(pre, net), input_example=example, registered_model_name=name
    )
