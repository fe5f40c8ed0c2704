#!/usr/bin/env python3
"""Builds the explanation fixtures: small real tree and linear models exported to ONNX, with shap's own
attributions for them, so Tern's explainers are compared with shap's on the same model, rows and background.

Runs in the project-local `.venv-fixtures` (tools/fixture_venv.py; shap added to its pins) and writes

  Tests/Fixtures/explain/<name>/model.onnx     the model as skl2onnx / onnxmltools export it
  Tests/Fixtures/explain/<name>/shap.json      rows, background, shap's values and base values per method

Every attribution is in the model's margin space (log-odds for a logistic output, the raw score per class
for softmax, the value for a regressor or a random forest's probabilities), shaped [row][feature][output].
The outputs are committed; tests need neither shap nor the training libraries:
    python3 tools/make-explain-fixtures.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_venv import ROOT, ensure_venv  # noqa: E402

ensure_venv(__file__)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

OUT = os.path.join(ROOT, "Tests", "Fixtures", "explain")
RNG = np.random.default_rng(20261130)
FEATURES = ["age", "income", "debt_ratio", "credit_lines", "late_30d", "late_90d", "loan_amount",
            "employment_years", "open_accounts", "utilization"]


def credit_data(n):
    """The credit-risk table of tools/make-fixtures.py (10 features, a default label, three risk bands)."""
    x = np.stack([
        RNG.integers(21, 75, n), RNG.lognormal(10.8, 0.5, n), RNG.beta(2, 5, n), RNG.poisson(5, n),
        RNG.poisson(0.4, n), RNG.poisson(0.1, n), RNG.lognormal(9.5, 0.7, n), RNG.exponential(6, n),
        RNG.poisson(8, n), RNG.beta(2, 3, n)], axis=1).astype(np.float32)
    logit = (-1.5 - 0.02 * (x[:, 0] - 45) - 0.6 * (np.log(x[:, 1]) - 10.8) + 2.5 * x[:, 2] + 0.8 * x[:, 4]
             + 1.6 * x[:, 5] + 0.4 * (np.log(x[:, 6]) - 9.5) - 0.05 * x[:, 7] + 1.8 * x[:, 9])
    y = (RNG.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    band = np.digitize(logit + RNG.normal(0, 0.5, n), [-1.5, -0.5]).astype(np.int64)
    loss = (x[:, 6] * (0.2 + 0.5 * x[:, 2])).astype(np.float32)
    return x, y, band, loss


def cube(values, rows, features):
    """shap's values as [row][feature][output] whatever shape shap returned them in."""
    if isinstance(values, list):  # older shap: one array per output
        values = np.stack(values, axis=-1)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        values = values[:, :, None]
    assert values.shape[:2] == (rows, features), values.shape
    return values


def bases(expected, outputs):
    return [float(v) for v in np.atleast_1d(np.asarray(expected, dtype=np.float64)).reshape(-1)][:outputs]


def tree_node(onx):
    return next(n for n in onx.graph.node if n.op_type.startswith("TreeEnsemble"))


def set_hitrates(onx, covers):
    """Writes each node's cover (rows of the training data that reached it, as the native model counts
    them) into the ONNX file's nodes_hitrates, which the converters leave at 1.0. `covers(tree, node)`
    gives the native cover of an ONNX node."""
    node = tree_node(onx)
    attributes = {a.name: a for a in node.attribute}
    trees, ids = attributes["nodes_treeids"].ints, attributes["nodes_nodeids"].ints
    values = [float(covers(t, n)) for t, n in zip(trees, ids)]
    if "nodes_hitrates" in attributes:
        del attributes["nodes_hitrates"].floats[:]
        attributes["nodes_hitrates"].floats.extend(values)
    else:
        from onnx import helper
        node.attribute.append(helper.make_attribute("nodes_hitrates", values))


def counted_covers(onx, data):
    """Covers counted by running `data` through the ONNX trees (LightGBM's internal_count is this)."""
    node = tree_node(onx)
    a = {x.name: x for x in node.attribute}
    trees, ids = list(a["nodes_treeids"].ints), list(a["nodes_nodeids"].ints)
    index = {(t, n): i for i, (t, n) in enumerate(zip(trees, ids))}
    feature, value = list(a["nodes_featureids"].ints), list(a["nodes_values"].floats)
    modes = [m.decode() for m in a["nodes_modes"].strings]
    yes, no = list(a["nodes_truenodeids"].ints), list(a["nodes_falsenodeids"].ints)
    counts = [0] * len(ids)
    roots = {}
    for i, (t, n) in enumerate(zip(trees, ids)):
        roots.setdefault(t, i) if n == 0 else None
    for row in data.astype(np.float32):
        for t, i in roots.items():
            while True:
                counts[i] += 1
                if modes[i] == "LEAF":
                    break
                x, v = row[feature[i]], np.float32(value[i])
                go = {"BRANCH_LEQ": x <= v, "BRANCH_LT": x < v, "BRANCH_GTE": x >= v, "BRANCH_GT": x > v}[modes[i]]
                i = index[(t, yes[i] if go else no[i])]
    return lambda t, n: counts[index[(t, n)]]


def xgboost_covers(onx, frame):
    """XGBoost's covers (sums of hessians, which shap uses) mapped onto the ONNX nodes by walking each tree
    in both numberings at once (the converter renumbers nodes)."""
    node = tree_node(onx)
    a = {x.name: x for x in node.attribute}
    trees, ids = list(a["nodes_treeids"].ints), list(a["nodes_nodeids"].ints)
    yes, no, modes = list(a["nodes_truenodeids"].ints), list(a["nodes_falsenodeids"].ints), a["nodes_modes"].strings
    index = {(t, n): i for i, (t, n) in enumerate(zip(trees, ids))}
    native = {row.ID: row for row in frame.itertuples()}
    covers = {}
    for tree in sorted(set(trees)):
        pointed = {yes[i] for i in range(len(ids)) if trees[i] == tree and modes[i] != b"LEAF"} | \
                  {no[i] for i in range(len(ids)) if trees[i] == tree and modes[i] != b"LEAF"}
        root = next(n for t, n in zip(trees, ids) if t == tree and n not in pointed)
        stack = [(root, f"{tree}-0")]
        while stack:
            onnx_id, native_id = stack.pop()
            covers[(tree, onnx_id)] = native[native_id].Cover
            i = index[(tree, onnx_id)]
            if modes[i] != b"LEAF":
                stack.append((yes[i], native[native_id].Yes))
                stack.append((no[i], native[native_id].No))
    return lambda t, n: covers[(t, n)]


def write(name, onx, x, background, methods, note, native=None):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    data = onx.SerializeToString()
    with open(os.path.join(folder, "model.onnx"), "wb") as f:
        f.write(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    outputs = {o.name: np.asarray(v).tolist() for o, v in zip(session.get_outputs(), session.run(None, {"features": x}))
               if not isinstance(v, list)}
    document = {"note": note, "features": FEATURES, "rows": x.tolist(), "background": background.tolist(),
                "onnxruntime": outputs, "methods": {}}
    if native is not None:
        rows_margins, background_margins = native
        document["native_margins"] = np.asarray(rows_margins, dtype=np.float64).reshape(len(x), -1).tolist()
        document["native_background_mean"] = np.asarray(background_margins, dtype=np.float64).reshape(
            len(background), -1).mean(axis=0).tolist()
    for method, (values, base) in methods.items():
        values = cube(values, len(x), len(FEATURES))
        document["methods"][method] = {"values": values.tolist(), "base": bases(base, values.shape[2])}
    with open(os.path.join(folder, "shap.json"), "w") as f:
        json.dump(document, f)
    print(name, {m: np.asarray(v["values"]).shape for m, v in document["methods"].items()})


def main():
    import lightgbm
    import shap
    import xgboost
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType as MLFloat
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y, band, loss = credit_data(3400)
    # Background rows held out of training: training rows sit exactly on split thresholds, where a
    # converter's rounding of a threshold (XGBoost's dump prints them in decimal) routes them differently
    # from the native model, which would test the converter rather than the explainer.
    train, rows, background = x[:3000], x[3000:3020], x[3020:3120]
    sk_type = [("features", FloatTensorType([None, len(FEATURES)]))]
    ml_type = [("features", MLFloat([None, len(FEATURES)]))]
    sk_opset = {"": 17, "ai.onnx.ml": 3}

    def sklearn_covers(estimators):
        return lambda t, n: estimators[t].tree_.weighted_n_node_samples[n]

    def tree_methods(model):
        interventional = shap.TreeExplainer(model, data=background, feature_perturbation="interventional",
                                            model_output="raw")
        path = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
        return {"interventional": (interventional.shap_values(rows, check_additivity=True), interventional.expected_value),
                "path_dependent": (path.shap_values(rows), path.expected_value)}

    gbc = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0).fit(train, y[:3000])
    onx = to_onnx(gbc, initial_types=sk_type, options={id(gbc): {"zipmap": False}}, target_opset=sk_opset)
    set_hitrates(onx, sklearn_covers(gbc.estimators_[:, 0]))
    write("sklearn_gbc", onx, rows, background, tree_methods(gbc),
          "scikit-learn GradientBoostingClassifier, binary: log-odds", (gbc.decision_function(rows), gbc.decision_function(background)))

    gbc100 = GradientBoostingClassifier(n_estimators=100, max_depth=4, random_state=0).fit(train, y[:3000])
    onx = to_onnx(gbc100, initial_types=sk_type, options={id(gbc100): {"zipmap": False}}, target_opset=sk_opset)
    set_hitrates(onx, sklearn_covers(gbc100.estimators_[:, 0]))
    write("sklearn_gbc100", onx, rows, x[3020:3220], {}, "100 trees of depth 4, for bench/explain.py (200-row background)")

    rf = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0).fit(train, y[:3000])
    onx = to_onnx(rf, initial_types=sk_type, options={id(rf): {"zipmap": False}}, target_opset=sk_opset)
    set_hitrates(onx, sklearn_covers(rf.estimators_))
    write("sklearn_rf", onx, rows, background, tree_methods(rf),
          "scikit-learn RandomForestClassifier: probability per class (Tern explains the last class)",
          (rf.predict_proba(rows), rf.predict_proba(background)))

    gbr = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=0).fit(train, loss[:3000])
    onx = to_onnx(gbr, initial_types=sk_type, target_opset=sk_opset)
    set_hitrates(onx, sklearn_covers(gbr.estimators_[:, 0]))
    write("sklearn_gbr", onx, rows, background, tree_methods(gbr), "scikit-learn GradientBoostingRegressor: the value",
          (gbr.predict(rows), gbr.predict(background)))

    xgb = xgboost.XGBClassifier(n_estimators=25, max_depth=3, learning_rate=0.2).fit(train, y[:3000])
    onx = convert_xgboost(xgb, initial_types=ml_type, target_opset=15)
    set_hitrates(onx, xgboost_covers(onx, xgb.get_booster().trees_to_dataframe()))
    write("xgboost_binary", onx, rows, background, tree_methods(xgb), "XGBoost binary: log-odds",
          (xgb.predict(rows, output_margin=True), xgb.predict(background, output_margin=True)))

    lgbm = lightgbm.LGBMClassifier(n_estimators=25, num_leaves=15, verbose=-1).fit(train, y[:3000])
    onx = convert_lightgbm(lgbm, initial_types=ml_type, target_opset=15, zipmap=False)
    set_hitrates(onx, counted_covers(onx, train))
    write("lightgbm_binary", onx, rows, background, tree_methods(lgbm), "LightGBM binary: log-odds",
          (lgbm.predict(rows, raw_score=True), lgbm.predict(background, raw_score=True)))

    lgbm3 = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(train, band[:3000])
    onx = convert_lightgbm(lgbm3, initial_types=ml_type, target_opset=15, zipmap=False)
    set_hitrates(onx, counted_covers(onx, train))
    write("lightgbm_multiclass", onx, rows, background, tree_methods(lgbm3),
          "LightGBM, three classes: raw score per class (softmax)", (lgbm3.predict(rows, raw_score=True), lgbm3.predict(background, raw_score=True)))

    logreg = LogisticRegression(max_iter=2000).fit(train / train.std(axis=0), y[:3000])
    # Fold the scaling into the weights so the ONNX graph is a plain LinearClassifier on raw features.
    logreg.coef_ = logreg.coef_ / train.std(axis=0)
    linear = shap.LinearExplainer(logreg, background)
    write("sklearn_logreg", to_onnx(logreg, initial_types=sk_type, options={id(logreg): {"zipmap": False}},
                                    target_opset=sk_opset),
          rows, background, {"linear": (linear.shap_values(rows), linear.expected_value)},
          "scikit-learn LogisticRegression: log-odds, against the background's mean", (logreg.decision_function(rows), logreg.decision_function(background)))


if __name__ == "__main__":
    main()
