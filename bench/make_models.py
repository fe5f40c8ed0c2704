#!/usr/bin/env python3
"""Trains the benchmark models and writes them as a Tern model repository under bench/models/.

  logreg  logistic regression, 10 features (the credit-risk data of the fixtures)
  gbc     gradient-boosted classifier, 100 trees of depth 3, 10 features
  mlp     MLP 20-256-256-2 on 20 features

All are exported with skl2onnx, zipmap=False. Runs inside .venv-fixtures (created on first use).
Also writes bench/models/<name>/sample.json: 64 input rows for the load generator.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from fixture_venv import ROOT, ensure_venv  # noqa: E402

ensure_venv(__file__)

import numpy as np  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

OUT = os.path.join(ROOT, "bench", "models")
rng = np.random.default_rng(7)


def save(name, model, features, x):
    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, features]))],
                  options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    folder = os.path.join(OUT, name, "1")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    with open(os.path.join(OUT, name, "sample.json"), "w") as f:
        json.dump({"rows": x[:64].astype(np.float32).tolist()}, f)


x10 = rng.normal(size=(5000, 10)).astype(np.float32)
y10 = (x10[:, 0] + 0.5 * x10[:, 1] * x10[:, 2] - x10[:, 3] + rng.normal(scale=0.5, size=5000) > 0).astype(int)
save("logreg", LogisticRegression(max_iter=500).fit(x10, y10), 10, x10)
save("gbc", GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0).fit(x10, y10), 10, x10)
x20 = rng.normal(size=(5000, 20)).astype(np.float32)
y20 = (x20[:, :5].sum(axis=1) + x20[:, 5] * x20[:, 6] > 0).astype(int)
save("mlp", MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=50, random_state=0).fit(x20, y20), 20, x20)
print("benchmark models written to", OUT)
