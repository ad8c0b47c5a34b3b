"""Score a registered model on a labelled file in a fresh process, reading its output the way its
author would (not the way quantgate does): prints {"accuracy": ..., "n": ...} as JSON.

usage: python score.py MODEL_URI DATA LABEL MODE [SHAPE]
  MODE: logit1 (one logit, positive when > 0) | argmax (score matrix) | label (a 'label' column)
        | rt-pipeline (a text-classification pipeline answering rotten/fresh)
  SHAPE: e.g. 1,8,8 to feed a tensor model images from flat columns (else a DataFrame of features)
"""

import json
import sys

import mlflow.pyfunc
import numpy as np
import pandas as pd

uri, data, label, mode = sys.argv[1:5]
shape = [int(d) for d in sys.argv[5].split(",")] if len(sys.argv) > 5 else None
df = pd.read_parquet(data)
model = mlflow.pyfunc.load_model(uri)
features = df.drop(columns=[label])
schema = model.metadata.get_input_schema()
if mode == "rt-pipeline":  # a text pipeline takes the text column
    inputs = features["text"]
elif schema is not None and schema.is_tensor_spec():
    x = features.to_numpy(np.float32)
    inputs = x.reshape(len(x), *shape) if shape else x
else:
    inputs = features[[c for c in schema.input_names()]] if schema is not None else features
out = model.predict(inputs)
if mode == "label":
    pred = np.asarray(out["label"])
elif mode == "rt-pipeline":
    pred = np.asarray(out["label"].map({"rotten": 0, "fresh": 1}))
else:
    arr = np.asarray(out)
    pred = (arr.reshape(-1) > 0).astype(int) if mode == "logit1" else arr.argmax(axis=1)
truth = df[label].to_numpy()
print(json.dumps({"accuracy": float((pred.astype(str) == truth.astype(str)).mean()), "n": len(df)}))
