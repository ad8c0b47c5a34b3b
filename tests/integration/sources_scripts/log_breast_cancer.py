"""A user's script: a one-logit binary MLP on sklearn's breast-cancer data, logged with MLflow's
defaults (pt2, ndarray input example) or, with ``pickle``, from a DataFrame input example.

usage: python log_breast_cancer.py NAME pt2|pickle [sigmoid]
"""

import sys

import mlflow
import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

name, fmt = sys.argv[1], sys.argv[2]
sigmoid = len(sys.argv) > 3 and sys.argv[3] == "sigmoid"
df = load_breast_cancer(as_frame=True).frame
features = [c for c in df.columns if c != "target"]
train = df.sample(frac=0.5, random_state=0)
x = train[features].to_numpy(np.float32)
mu, sd = x.mean(0), x.std(0) + 1e-6


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mu", torch.from_numpy(mu))
        self.register_buffer("sd", torch.from_numpy(sd))
        self.fc1 = nn.Linear(len(features), 32)
        self.fc2 = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1((x - self.mu) / self.sd)))


torch.manual_seed(0)
net = Net()
opt = torch.optim.Adam(net.parameters(), lr=1e-2)
xt, yt = torch.from_numpy(x), torch.from_numpy(train["target"].to_numpy(np.float32)).unsqueeze(1)
for _ in range(200):
    opt.zero_grad()
    nn.functional.binary_cross_entropy_with_logits(net(xt), yt).backward()
    opt.step()
model = nn.Sequential(net, nn.Sigmoid()) if sigmoid else net
model.eval()
with mlflow.start_run():
    if fmt == "pickle":
        mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=train[features].head(5),
            serialization_format="pickle",
            registered_model_name=name,
        )
    else:
        mlflow.pytorch.log_model(model, name="model", input_example=x[:5], registered_model_name=name)
