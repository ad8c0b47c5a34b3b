"""A user's script: sklearn's 8x8 digits (10 classes), logged with MLflow's defaults.

usage: python log_digits.py NAME cnn|mlp
  cnn: a small Conv2d network on [-1, 1, 8, 8] images, pt2 (the default), ndarray input example
  mlp: a multi-class MLP on 64 flat pixels, pickle, ndarray input example (a tensor signature)
"""

import sys

import mlflow
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

name, kind = sys.argv[1], sys.argv[2]
digits = load_digits()
x = (digits.data / 16.0).astype(np.float32)
y = digits.target
rng = np.random.default_rng(0)
train = rng.permutation(len(x))[:900]  # the test's data files use the same split


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)
        return self.head(torch.flatten(h, 1))


if kind == "cnn":
    model: nn.Module = CNN()
    xs = x.reshape(-1, 1, 8, 8)
else:
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    xs = x
torch.manual_seed(0)
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
xt, yt = torch.from_numpy(xs[train]), torch.from_numpy(y[train])
for _ in range(60):
    for i in range(0, len(xt), 64):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt[i : i + 64]), yt[i : i + 64]).backward()
        opt.step()
model.eval()
with mlflow.start_run():
    if kind == "cnn":
        mlflow.pytorch.log_model(model, name="model", input_example=xs[:5], registered_model_name=name)
    else:
        mlflow.pytorch.log_model(
            model, name="model", input_example=xs[:5], serialization_format="pickle", registered_model_name=name
        )
