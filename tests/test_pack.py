"""`tern pack` and `tern inspect`: the reference profile against numpy/scipy, the validation metrics against
scikit-learn, both on the model's real outputs from onnxruntime."""
import json
import os
import zipfile

import numpy as np
import onnxruntime as ort
import pytest
from scipy import stats
from sklearn import metrics as skm

from conftest import FIXTURES
from registry_support import CREDIT_FEATURES, credit_csv, credit_table, manifest, pack, tern, write_csv


def onnx_outputs(fixture, feeds):
    session = ort.InferenceSession(os.path.join(FIXTURES, fixture, "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def inspect_json(path):
    return json.loads(tern("inspect", path, "--json").stdout)


def check_numeric(profile, values, label, rtol=1e-9):
    """`rtol` 1e-9 for data read from the CSV; model outputs differ from Python's onnxruntime within float32's
    precision (1e-6), as Tern runs the rows in other batch sizes."""
    values = np.asarray(values, dtype=np.float64)
    described = stats.describe(values)
    numeric = profile["numeric"]
    assert profile["kind"] == "numeric" and profile["count"] == len(values), label
    np.testing.assert_allclose(numeric["mean"], described.mean, rtol=rtol, err_msg=label)
    np.testing.assert_allclose(numeric["std"], np.sqrt(described.variance), rtol=rtol, err_msg=label)
    np.testing.assert_allclose([numeric["min"], numeric["max"]], described.minmax, rtol=rtol, err_msg=label)
    for level in ["0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"]:
        np.testing.assert_allclose(numeric["quantiles"][level], np.quantile(values, float(level)), rtol=max(rtol, 1e-12),
                                   err_msg=f"{label} q{level}")
    counts, edges = np.histogram(values, bins=10)
    assert numeric["histogram"]["counts"] == counts.tolist(), label
    np.testing.assert_allclose(numeric["histogram"]["edges"], edges, rtol=max(rtol, 1e-12), err_msg=label)
    # The decile bins drift's PSI uses: numpy.quantile's edges (repeats dropped), counts per (e_i, e_i+1].
    deciles = list(dict.fromkeys(np.quantile(values, np.arange(1, 10) / 10).tolist()))
    np.testing.assert_allclose(numeric["deciles"]["edges"], deciles, rtol=max(rtol, 1e-12), err_msg=f"{label} deciles")
    if rtol <= 1e-9:
        assert numeric["deciles"]["edges"] == deciles, label
        counted = np.bincount(np.searchsorted(deciles, values, side="left"), minlength=len(deciles) + 1).tolist()
        assert numeric["deciles"]["counts"] == counted, label


def test_classifier_profile_and_metrics_match_scipy_and_sklearn(tmp_path):
    reference = str(tmp_path / "train.csv")
    holdout = str(tmp_path / "holdout.csv")
    x_ref, _ = credit_csv(reference, 1500, seed=11)
    x_hold, y_hold = credit_csv(holdout, 700, seed=12)
    path = pack(str(tmp_path), "gbc", "credit-risk", 3, "--reference", reference, "--holdout", holdout,
                "--label-column", "default", "--owner", "risk-team", "--tag", "tabular", "--tag", "gbm",
                "--description", "Probability of default")
    bundle = inspect_json(path)
    head = bundle["manifest"]
    assert (head["name"], head["version"], head["owner"], head["tags"]) == ("credit-risk", 3, "risk-team", ["tabular", "gbm"])
    assert head["task"] == "classification" and head["class_labels"] == ["0", "1"]
    assert head["feature_names"] == CREDIT_FEATURES
    assert head["signature"]["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 10]}]
    assert set(head["files"]) == {"model.onnx", "profile.json", "metrics.json", "MODEL_CARD.md", "holdout.csv"}
    # The holdout rows are kept as given, for the validation gate.
    with zipfile.ZipFile(path) as archive, open(holdout, "rb") as f:
        assert archive.read("holdout.csv") == f.read()

    # Reference profile: every feature as scipy/numpy describe the values the CSV holds (float32 -> repr).
    profile = bundle["profile"]
    assert profile["rows"] == 1500 and [f["name"] for f in profile["features"]] == CREDIT_FEATURES
    for index, feature in enumerate(profile["features"]):
        check_numeric(feature, x_ref[:, index].astype(np.float64), feature["name"])
    # ... and the model's outputs on those rows, as onnxruntime computes them.
    out = onnx_outputs("gbc", {"features": x_ref})
    by_name = {p["name"]: p for p in profile["predictions"]}
    labels, counts = np.unique(out["label"], return_counts=True)
    assert by_name["label"]["categorical"]["frequencies"] == {str(k): int(v) for k, v in zip(labels, counts)}
    for c in (0, 1):
        check_numeric(by_name[f"probabilities[{c}]"], out["probabilities"][:, c].astype(np.float64), f"p{c}", rtol=1e-6)
    assert len(profile["sample"]["rows"]) == 1500 and profile["sample"]["columns"] == CREDIT_FEATURES  # all, under 10,000

    # Validation metrics: scikit-learn on onnxruntime's predictions.
    out = onnx_outputs("gbc", {"features": x_hold})
    predicted, proba = out["label"], out["probabilities"].astype(np.float64)
    m = bundle["metrics"]
    assert m["rows"] == 700 and m["label_column"] == "default" and m["classes"] == ["0", "1"]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_hold, predicted), abs=1e-12)
    assert m["precision"] == pytest.approx(skm.precision_score(y_hold, predicted), abs=1e-12)
    assert m["recall"] == pytest.approx(skm.recall_score(y_hold, predicted), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y_hold, predicted), abs=1e-12)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y_hold, proba[:, 1]), abs=1e-9)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_hold, proba), rel=1e-6)
    assert m["confusion_matrix"] == skm.confusion_matrix(y_hold, predicted).tolist()

    card = tern("inspect", path).stdout
    assert "# credit-risk v3" in card and "Probability of default" in card and "risk-team" in card
    assert f"| accuracy | {m['accuracy']:.6g} |" in card
    assert "checksums verified" in card


def test_regressor_metrics_match_sklearn(tmp_path):
    x, _ = credit_table_with_loss(tmp_path)
    out = onnx_outputs("regressor", {"features": x})["variable"].reshape(-1).astype(np.float64)
    truth = (x[:, 6] * (0.2 + 0.5 * x[:, 2])).astype(np.float64)
    m = inspect_json(str(tmp_path / "loss.tern"))["metrics"]
    assert m["task"] == "regression"
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(truth, out), rel=1e-6)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(truth, out)), rel=1e-6)
    assert m["r2"] == pytest.approx(skm.r2_score(truth, out), rel=1e-6)


def credit_table_with_loss(tmp_path):
    from registry_support import credit_table
    x, _ = credit_table(400, seed=5)
    loss = x[:, 6] * (0.2 + 0.5 * x[:, 2])
    rows = [[repr(float(v)) for v in row] + [repr(float(t))] for row, t in zip(x, loss)]
    write_csv(str(tmp_path / "loss.csv"), CREDIT_FEATURES + ["loss"], rows)
    x = np.array([[float(v) for v in row[:-1]] for row in rows], dtype=np.float32)
    tern("pack", os.path.join(FIXTURES, "regressor", "model.onnx"), "--name", "loss", "--holdout",
         str(tmp_path / "loss.csv"), "--label-column", "loss", "-o", str(tmp_path / "loss.tern"))
    return x, loss


def test_categorical_and_missing_values_are_profiled(tmp_path):
    rng = np.random.default_rng(3)
    purposes = np.array(["car", "home", "education", "business"])
    rows = []
    for i in range(300):
        income = "" if i % 10 == 0 else repr(float(rng.lognormal(10, 0.4)))
        rows.append([income, str(int(rng.integers(20, 70))), purposes[rng.integers(0, 4)], int(rng.integers(0, 2))])
    write_csv(str(tmp_path / "ref.csv"), ["income", "age", "purpose", "label"], [r for r in rows if r[0]])
    write_csv(str(tmp_path / "profile.csv"), ["income", "age", "purpose"], [r[:3] for r in rows])
    path = str(tmp_path / "cat.tern")
    # Missing incomes cannot be fed to the model: the error names the file and the value.
    failed = tern("pack", os.path.join(FIXTURES, "pipeline_categorical", "model.onnx"), "--name", "cat",
                  "--reference", str(tmp_path / "profile.csv"), "-o", path, check=False)
    assert failed.returncode == 1 and "profile.csv" in failed.stderr and not os.path.exists(path)
    tern("pack", os.path.join(FIXTURES, "pipeline_categorical", "model.onnx"), "--name", "cat",
         "--reference", str(tmp_path / "ref.csv"), "-o", path)
    features = {f["name"]: f for f in inspect_json(path)["profile"]["features"]}
    kept = [r for r in rows if r[0]]
    assert features["purpose"]["kind"] == "categorical"
    values, counts = np.unique([r[2] for r in kept], return_counts=True)
    assert features["purpose"]["categorical"]["frequencies"] == dict(zip(values.tolist(), counts.tolist()))
    check_numeric(features["income"], [float(r[0]) for r in kept], "income")
    assert "label" not in features


def test_csv_that_does_not_fit_the_model_is_refused(tmp_path):
    write_csv(str(tmp_path / "bad.csv"), ["age", "income", "colour", "default"], [[30, 1000.0, "red", 0]])
    out = str(tmp_path / "bad.tern")
    result = tern("pack", os.path.join(FIXTURES, "gbc", "model.onnx"), "--name", "m", "--holdout",
                  str(tmp_path / "bad.csv"), "--label-column", "default", "-o", out, check=False)
    assert result.returncode == 1 and not os.path.exists(out)
    assert "bad.csv" in result.stderr and "colour" in result.stderr and "debt_ratio" in result.stderr
    result = tern("pack", os.path.join(FIXTURES, "gbc", "model.onnx"), "--name", "m", "--holdout",
                  str(tmp_path / "bad.csv"), "-o", out, check=False)
    assert result.returncode == 1 and "no column 'label'" in result.stderr
    result = tern("pack", os.path.join(FIXTURES, "gbc", "model.onnx"), "--name", "bad/name", "-o", out, check=False)
    assert result.returncode == 1 and "model name 'bad/name'" in result.stderr


def test_pack_refuses_what_push_would_refuse_before_writing(tmp_path):
    """A holdout of 40,000 copies of one row compresses far past push's 100x limit: pack says so and writes
    nothing, rather than writing a bundle push then refuses."""
    x, y = credit_table(1, 5)
    row = [repr(float(v)) for v in x[0]] + [int(y[0])]
    write_csv(str(tmp_path / "same.csv"), CREDIT_FEATURES + ["default"], [row] * 40_000)
    out = str(tmp_path / "same.tern")
    result = tern("pack", os.path.join(FIXTURES, "gbc", "model.onnx"), "--name", "m", "--holdout", str(tmp_path / "same.csv"),
                  "--label-column", "default", "-o", out, check=False)
    assert result.returncode == 1 and not os.path.exists(out), result.stderr
    assert "would be refused by tern push" in result.stderr and "holdout.csv" in result.stderr, result.stderr


def test_bundle_without_data_still_has_manifest_and_card(tmp_path):
    path = pack(str(tmp_path), "logreg", "plain", 1)
    bundle = inspect_json(path)
    assert set(bundle) == {"manifest"} and bundle["manifest"]["version"] == 1
    assert set(manifest(path)["files"]) == {"model.onnx", "MODEL_CARD.md"}
    assert "No holdout set was given" in tern("inspect", path).stdout
