#!/usr/bin/env python3
"""Builds Tern's fixture models and their golden outputs.

Creates (once) a project-local venv `.venv-fixtures` with pinned scikit-learn, skl2onnx, onnxmltools,
xgboost, lightgbm, onnx and onnxruntime, re-runs itself inside it, and writes:

  Tests/Fixtures/models/<name>/model.onnx   small real models
  Tests/Fixtures/models/<name>/golden.json  inputs at batch 1 and 64, and onnxruntime's outputs for them
  examples/models/credit-risk/{1,2}/model.onnx   the README's example (logistic regression, then boosting)

The outputs are committed, so Swift tests need no Python. Run again only to change the fixtures:
    python3 tools/make-fixtures.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_venv import ROOT, ensure_venv  # noqa: E402

ensure_venv(__file__)

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pandas as pd  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "models")
EXAMPLES = os.path.join(ROOT, "examples", "models")
RNG = np.random.default_rng(20261123)

CREDIT_FEATURES = [
    "age", "income", "debt_ratio", "credit_lines", "late_30d", "late_90d", "loan_amount",
    "employment_years", "open_accounts", "utilization",
]


def credit_data(n):
    """A synthetic credit-risk table: 10 numeric features and a default label."""
    age = RNG.integers(21, 75, n).astype(np.float32)
    income = RNG.lognormal(10.8, 0.5, n).astype(np.float32)
    debt_ratio = RNG.beta(2, 5, n).astype(np.float32)
    credit_lines = RNG.poisson(5, n).astype(np.float32)
    late_30 = RNG.poisson(0.4, n).astype(np.float32)
    late_90 = RNG.poisson(0.1, n).astype(np.float32)
    loan = RNG.lognormal(9.5, 0.7, n).astype(np.float32)
    employment = RNG.exponential(6, n).astype(np.float32)
    accounts = RNG.poisson(8, n).astype(np.float32)
    utilization = RNG.beta(2, 3, n).astype(np.float32)
    x = np.stack([age, income, debt_ratio, credit_lines, late_30, late_90, loan, employment, accounts,
                  utilization], axis=1)
    logit = (-1.5 - 0.02 * (age - 45) - 0.6 * (np.log(income) - 10.8) + 2.5 * debt_ratio + 0.8 * late_30
             + 1.6 * late_90 + 0.4 * (np.log(loan) - 9.5) - 0.05 * employment + 1.8 * utilization)
    y = (RNG.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y


def set_metadata(model, description, features=None, classes=None):
    model.producer_name = model.producer_name or "tern-fixtures"
    model.doc_string = description
    props = {"description": description}
    if features:
        props["feature_names"] = ",".join(features)
    if classes is not None:
        props["class_labels"] = ",".join(str(c) for c in classes)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model


def write_model(model, folder):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def to_json_data(array):
    if array.dtype.kind in ("U", "S", "O"):
        return [str(v) for v in array.reshape(-1)]
    if array.dtype == np.bool_:
        return [bool(v) for v in array.reshape(-1)]
    if array.dtype.kind == "f":
        return [float(v) for v in array.reshape(-1)]
    return [int(v) for v in array.reshape(-1)]


DATATYPES = {
    np.dtype(np.bool_): "BOOL", np.dtype(np.int8): "INT8", np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64", np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16", np.dtype(np.uint32): "UINT32", np.dtype(np.uint64): "UINT64",
    np.dtype(np.float16): "FP16", np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64",
}


def tensor_json(name, array):
    datatype = "BYTES" if array.dtype.kind in ("U", "S", "O") else DATATYPES[array.dtype]
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": to_json_data(array)}


def zipmap_to_array(rows):
    """ZipMap output (a list of {class: probability}) as a [rows, classes] float32 array, first row's key order."""
    keys = list(rows[0].keys())
    return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)


def golden(folder, feeds_by_case):
    """Runs the saved model with onnxruntime in Python and writes the inputs and outputs per case."""
    session = ort.InferenceSession(os.path.join(folder, "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    cases = []
    for case, feeds in feeds_by_case.items():
        results = session.run(None, feeds)
        outputs = []
        for name, value in zip(names, results):
            if isinstance(value, list):
                value = zipmap_to_array(value)
            outputs.append(tensor_json(name, np.asarray(value)))
        cases.append({"name": case, "inputs": [tensor_json(k, v) for k, v in feeds.items()], "outputs": outputs})
    with open(os.path.join(folder, "golden.json"), "w") as f:
        json.dump({"cases": cases}, f, separators=(",", ":"))


def batches(x, input_name="features"):
    return {"batch1": {input_name: x[:1]}, "batch64": {input_name: x[1:65]}}


def main():
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = credit_data(4000)
    x_train, y_train, x_test = x[:3000], y[:3000], x[3000:]
    credit_type = [("features", FloatTensorType([None, len(CREDIT_FEATURES)]))]

    # Logistic regression (scaled), without ZipMap.
    logreg = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=500))]).fit(x_train, y_train)
    onx = to_onnx(logreg, initial_types=credit_type, options={id(logreg.steps[-1][1]): {"zipmap": False}},
                  target_opset={"": 17, "ai.onnx.ml": 3})
    set_metadata(onx, "Credit risk: probability of default, logistic regression", CREDIT_FEATURES, [0, 1])
    folder = os.path.join(FIXTURES, "logreg")
    write_model(onx, folder)
    golden(folder, batches(x_test))
    write_model(onx, os.path.join(EXAMPLES, "credit-risk", "1"))

    # Gradient-boosted credit-risk classifier, with and without ZipMap.
    gbc = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(x_train, y_train)
    for name, zipmap in (("gbc", False), ("gbc_zipmap", True)):
        options = {id(gbc): {"zipmap": zipmap}}
        onx = to_onnx(gbc, initial_types=credit_type, options=options, target_opset={"": 17, "ai.onnx.ml": 3})
        set_metadata(onx, "Credit risk: probability of default, gradient boosting", CREDIT_FEATURES, [0, 1])
        folder = os.path.join(FIXTURES, name)
        write_model(onx, folder)
        golden(folder, batches(x_test))
        if not zipmap:
            write_model(onx, os.path.join(EXAMPLES, "credit-risk", "2"))

    # XGBoost and LightGBM through onnxmltools.
    import lightgbm
    import xgboost
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MLFloat

    xgb = xgboost.XGBClassifier(n_estimators=25, max_depth=3, learning_rate=0.2).fit(x_train, y_train)
    onx = convert_xgboost(xgb, initial_types=[("features", MLFloat([None, len(CREDIT_FEATURES)]))], target_opset=15)
    set_metadata(onx, "Credit risk, XGBoost", CREDIT_FEATURES, [0, 1])
    folder = os.path.join(FIXTURES, "xgboost")
    write_model(onx, folder)
    golden(folder, batches(x_test))

    lgbm = lightgbm.LGBMClassifier(n_estimators=25, num_leaves=15, verbose=-1).fit(x_train, y_train)
    onx = convert_lightgbm(lgbm, initial_types=[("features", MLFloat([None, len(CREDIT_FEATURES)]))],
                           target_opset=15, zipmap=False)
    set_metadata(onx, "Credit risk, LightGBM", CREDIT_FEATURES, [0, 1])
    folder = os.path.join(FIXTURES, "lightgbm")
    write_model(onx, folder)
    golden(folder, batches(x_test))

    # A regressor: expected loss amount.
    loss = (x_train[:, 6] * (0.2 + 0.5 * x_train[:, 2])).astype(np.float32)
    reg = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(x_train, loss)
    onx = to_onnx(reg, initial_types=credit_type, target_opset={"": 17, "ai.onnx.ml": 3})
    set_metadata(onx, "Expected loss amount, gradient boosting regressor", CREDIT_FEATURES)
    folder = os.path.join(FIXTURES, "regressor")
    write_model(onx, folder)
    golden(folder, batches(x_test))

    # An MLP on 20 features.
    x20 = RNG.normal(size=(3000, 20)).astype(np.float32)
    y20 = (x20[:, :5].sum(axis=1) + 0.5 * x20[:, 5] * x20[:, 6] > 0).astype(np.int64)
    mlp = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0).fit(x20[:2000], y20[:2000])
    onx = to_onnx(mlp, initial_types=[("features", FloatTensorType([None, 20]))],
                  options={id(mlp): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    set_metadata(onx, "MLP on 20 features", [f"f{i}" for i in range(20)], [0, 1])
    folder = os.path.join(FIXTURES, "mlp")
    write_model(onx, folder)
    golden(folder, batches(x20[2000:]))

    # A pipeline with a categorical (string) input: one input per column.
    purposes = np.array(["car", "home", "education", "business", "medical"])
    frame = pd.DataFrame({
        "income": x[:, 1], "age": x[:, 0], "purpose": purposes[RNG.integers(0, len(purposes), len(x))],
    })
    pipe = Pipeline([
        ("prep", ColumnTransformer([
            ("num", StandardScaler(), ["income", "age"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["purpose"]),
        ])),
        ("model", LogisticRegression(max_iter=500)),
    ]).fit(frame[:3000], y_train)
    onx = to_onnx(pipe, initial_types=[
        ("income", FloatTensorType([None, 1])), ("age", FloatTensorType([None, 1])),
        ("purpose", StringTensorType([None, 1])),
    ], options={id(pipe.steps[-1][1]): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    set_metadata(onx, "Credit risk with a categorical loan purpose", ["income", "age", "purpose"], [0, 1])
    folder = os.path.join(FIXTURES, "pipeline_categorical")
    write_model(onx, folder)
    test = frame[3000:]

    def feeds(rows):
        return {
            "income": rows["income"].to_numpy(np.float32).reshape(-1, 1),
            "age": rows["age"].to_numpy(np.float32).reshape(-1, 1),
            "purpose": rows["purpose"].to_numpy(object).reshape(-1, 1),
        }
    golden(folder, {"batch1": feeds(test[:1]), "batch64": feeds(test[1:65])})

    # Every V2 datatype through ONNX Identity: y_T = x_T, shape [-1, 3].
    types = {
        "bool": (TensorProto.BOOL, np.bool_), "int8": (TensorProto.INT8, np.int8),
        "int16": (TensorProto.INT16, np.int16), "int32": (TensorProto.INT32, np.int32),
        "int64": (TensorProto.INT64, np.int64), "uint8": (TensorProto.UINT8, np.uint8),
        "uint16": (TensorProto.UINT16, np.uint16), "uint32": (TensorProto.UINT32, np.uint32),
        "uint64": (TensorProto.UINT64, np.uint64), "fp16": (TensorProto.FLOAT16, np.float16),
        "fp32": (TensorProto.FLOAT, np.float32), "fp64": (TensorProto.DOUBLE, np.float64),
        "bytes": (TensorProto.STRING, object),
    }
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"x_{k}"], [f"y_{k}"]) for k in types],
        "all_types",
        [helper.make_tensor_value_info(f"x_{k}", t, ["batch", 3]) for k, (t, _) in types.items()],
        [helper.make_tensor_value_info(f"y_{k}", t, ["batch", 3]) for k, (t, _) in types.items()],
    )
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tern-fixtures",
                            producer_version="1", domain="ai.tern.test", model_version=7)
    onx.ir_version = 8
    set_metadata(onx, "Identity for every V2 datatype")
    onnx.checker.check_model(onx)
    folder = os.path.join(FIXTURES, "all_types")
    write_model(onx, folder)

    def typed(rows):
        out = {}
        for k, (_, dtype) in types.items():
            if k == "bool":
                out[f"x_{k}"] = RNG.random((rows, 3)) < 0.5
            elif k == "bytes":
                out[f"x_{k}"] = np.array([[f"s{r}-{c}-é✓" for c in range(3)] for r in range(rows)], dtype=object)
            elif dtype in (np.float16, np.float32, np.float64):
                out[f"x_{k}"] = (RNG.normal(size=(rows, 3)) * 100).astype(dtype)
            else:
                info = np.iinfo(dtype)
                values = RNG.integers(info.min, info.max, size=(rows, 3), dtype=dtype, endpoint=True)
                values[0, 0], values[0, 1] = info.min, info.max  # the range's ends must survive the round trip
                out[f"x_{k}"] = values
        return out
    golden(folder, {"batch1": typed(1), "batch64": typed(64)})

    with open(os.path.join(EXAMPLES, "credit-risk", "config.yaml"), "w") as f:
        f.write(EXAMPLE_CONFIG)
    print("fixtures written to", FIXTURES)


EXAMPLE_CONFIG = """\
# Tern model configuration (optional). See the README's configuration reference.
version_policy:
  latest: 2          # serve the two newest versions; requests without a version get the newest
max_batch_size: 256  # largest first dimension a request may have (0 = no limit)
instances: 1         # ONNX Runtime sessions per version
"""

if __name__ == "__main__":
    main()
