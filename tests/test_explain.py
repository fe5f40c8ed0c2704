"""Explanations end to end: `tern explain` on every fixture and method against shap's own values (written by
tools/make-explain-fixtures.py beside each model), and the server's explain route on a registry bundle: the
same numbers as the CLI, scores equal to the model's own answers, additivity, and clear 4xx errors."""
import csv
import json
import os
import time

import numpy as np
import pytest
import requests

from conftest import ROOT
from registry_support import Registry, pack, tern

EXPLAIN = os.path.join(ROOT, "Tests", "Fixtures", "explain")
FIXTURES = sorted(name for name in os.listdir(EXPLAIN) if os.path.exists(os.path.join(EXPLAIN, name, "shap.json")))
REFERENCE = os.path.join(ROOT, "examples", "data", "credit-reference.csv")


def load(name):
    with open(os.path.join(EXPLAIN, name, "shap.json")) as f:
        return json.load(f)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.mark.parametrize("name", FIXTURES)
def test_the_cli_equals_shap_on_every_fixture_and_method(name, tmp_path):
    fixture = load(name)
    rows = write_csv(tmp_path / "rows.csv", fixture["features"], fixture["rows"])
    background = write_csv(tmp_path / "background.csv", fixture["features"], fixture["background"])
    for method, expected in fixture["methods"].items():
        answer = json.loads(tern("explain", os.path.join(EXPLAIN, name, "model.onnx"), "--input", rows, "--background",
                                 background, "--background-rows", "1000", "--method", method, "--json").stdout)
        assert answer["method"] == method and answer["features"] == fixture["features"]
        shap_values = np.array(expected["values"])  # [row][feature][output]
        outputs = answer["outputs"]
        # A binary classifier's one output is shap's last (a random forest's class-1 probability).
        shift = shap_values.shape[2] - len(outputs)
        margins = np.array([row["margin"] for row in answer["rows"]])
        tolerance = max(1e-6, 1e-7 * np.abs(margins).max())
        for o, output in enumerate(outputs):
            mine = np.array([row["attributions"][output] for row in answer["rows"]])
            np.testing.assert_allclose(mine, shap_values[:, :, o + shift], atol=tolerance, rtol=0, err_msg=f"{name} {method} {output}")
            assert abs(answer["base_values"][o] - expected["base"][o + shift]) < tolerance
            # Additivity: base + attributions = margin.
            np.testing.assert_allclose(answer["base_values"][o] + mine.sum(axis=1), margins[:, o], atol=1e-5 * max(1, np.abs(margins).max()))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    reg = Registry("sqlite", tmp_path_factory.mktemp("explain"))
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1, "--reference", REFERENCE, "--label-column", "default"))
    reg.cli("push", pack(reg.tmp, "gbc", "bare", 1))
    reg.cli("push", pack(reg.tmp, "mlp", "net", 1))
    server = reg.serve()
    yield reg, server
    server.stop()


def explain(server, model, data, shape=None, **parameters):
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": shape or [len(data), len(data[0])],
                        "data": np.asarray(data).reshape(-1).tolist()}]}
    if parameters:
        body["parameters"] = parameters
    return requests.post(f"http://{server.url}/v2/models/{model}/explain", json=body, timeout=30)


def test_the_server_explains_with_the_bundles_reference_sample_as_the_cli_does(served, tmp_path):
    reg, server = served
    with open(REFERENCE) as f:
        reader = csv.reader(f)
        header = next(reader)
        applicants = [[float(v) for v in row[:10]] for _, row in zip(range(5), reader)]
    answer = explain(server, "credit", applicants)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_name"] == "credit" and body["model_version"] == "1" and body["method"] == "interventional"
    assert body["link"] == "logistic" and body["outputs"] == ["class 1"] and body["background_rows"] == 200
    assert body["features"] == header[:10]
    # The scores are the model's own probabilities for the same rows.
    inferred = requests.post(f"http://{server.url}/v2/models/credit/infer", json={"inputs": [
        {"name": "features", "datatype": "FP32", "shape": [5, 10], "data": np.asarray(applicants).reshape(-1).tolist()}]},
        timeout=30).json()
    probabilities = np.array(next(o["data"] for o in inferred["outputs"] if o["name"] == "probabilities")).reshape(5, 2)
    np.testing.assert_allclose([row["score"][0] for row in body["rows"]], probabilities[:, 1], atol=1e-6)
    for row in body["rows"]:
        assert abs(body["base_values"][0] + sum(row["attributions"]["class 1"]) - row["margin"][0]) < 1e-6
    # The CLI on the same bundle (the version the registry holds) gives the same numbers.
    bundle = tmp_path / "credit.tern"
    bundle.write_bytes(requests.get(f"http://{server.url}/api/v1/models/credit/versions/1/bundle", timeout=30).content)
    rows = write_csv(tmp_path / "rows.csv", header[:10], applicants)
    cli = json.loads(tern("explain", str(bundle), "--input", rows, "--json").stdout)
    np.testing.assert_allclose([r["attributions"]["class 1"] for r in cli["rows"]],
                               [r["attributions"]["class 1"] for r in body["rows"]], atol=1e-9)
    # KServe v1's :explain takes the rows :predict takes.
    v1 = requests.post(f"http://{server.url}/v1/models/credit:explain", json={"instances": applicants}, timeout=30)
    assert v1.status_code == 200, v1.text
    np.testing.assert_allclose([r["attributions"]["class 1"] for r in v1.json()["rows"]],
                               [r["attributions"]["class 1"] for r in body["rows"]], atol=1e-5)
    # Versions and the other methods.
    assert explain(server, "credit", applicants[:1], method="path_dependent").json()["method"] == "path_dependent"
    versioned = requests.post(f"http://{server.url}/v2/models/credit/versions/1/explain", json={"inputs": [
        {"name": "features", "datatype": "FP64", "shape": [1, 10], "data": applicants[0]}]}, timeout=30)
    assert versioned.status_code == 200, versioned.text
    np.testing.assert_allclose(versioned.json()["rows"][0]["attributions"]["class 1"], body["rows"][0]["attributions"]["class 1"], atol=1e-5)


@pytest.mark.parametrize("model,data,parameters,status,message", [
    ("credit", [[1, 2, 3]], {}, 400, "explanations take [rows, 10]"),
    ("credit", [[1] * 10], {"method": "magic"}, 400, "parameter method must be"),
    ("credit", [[1] * 10], {"method": "linear"}, 400, "does not apply"),
    ("bare", [[1] * 10], {}, 400, "--reference"),
    ("net", [[0.0] * 20], {}, 400, "MatMul"),
    ("credit", [[1] * 10], {"samples": 3}, 400, "parameter samples must be"),
    ("credit", [[1] * 10], {"method": "kernel", "background_rows": 0}, 400, "parameter background_rows must be"),
    ("nothing", [[1] * 10], {}, 404, "nothing"),
])
def test_bad_explain_requests_are_refused_saying_why(served, model, data, parameters, status, message):
    _, server = served
    answer = explain(server, model, data, **parameters)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"], answer.text
    assert requests.get(f"http://{server.url}/v2/health/ready", timeout=10).status_code == 200


def test_the_cli_refuses_what_it_cannot_explain_in_one_line(tmp_path):
    rows = write_csv(tmp_path / "rows.csv", ["a", "b"], [[1, 2]])
    onnx = os.path.join(EXPLAIN, "sklearn_gbc", "model.onnx")
    for args, message in [
        ((onnx, "--input", rows), "columns"),
        ((onnx, "--input", str(tmp_path / "missing.csv")), "cannot read"),
        ((os.path.join(ROOT, "Tests", "Fixtures", "models", "mlp", "model.onnx"), "--input", rows), "columns"),
        ((os.path.join(ROOT, "Tests", "Fixtures", "models", "mlp", "model.onnx"), "--input",
          write_csv(tmp_path / "wide.csv", [f"f{i}" for i in range(20)], [[0] * 20])), "--background"),
    ]:
        result = tern("explain", *args, check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def shapley_by_enumeration(session, x, background, features):
    """Exact interventional Shapley values of every float output, by the Shapley formula over all coalitions
    of `features` (the others held at x's values, which the background shares): onnxruntime only."""
    from itertools import combinations
    from math import factorial
    m = len(features)

    def value(coalition):
        rows = background.copy()
        for f in coalition:
            rows[:, f] = x[f]
        outputs = [o for o in session.run(None, {session.get_inputs()[0].name: rows.astype(np.float32)})
                   if np.asarray(o).dtype.kind == "f"]
        return np.concatenate([np.asarray(o, dtype=np.float64).reshape(len(rows), -1) for o in outputs], axis=1).mean(axis=0)

    cache = {}
    for size in range(m + 1):
        for coalition in combinations(features, size):
            cache[coalition] = value(coalition)
    phi = {}
    for f in features:
        others = [g for g in features if g != f]
        total = 0
        for size in range(m):
            weight = factorial(size) * factorial(m - size - 1) / factorial(m)
            for coalition in combinations(others, size):
                total = total + weight * (cache[tuple(sorted(coalition + (f,)))] - cache[coalition])
        phi[f] = total
    return phi


def test_kernel_shap_on_a_tree_model_is_exact_interventional_shap(tmp_path):
    """Ten features: every coalition is valued, so KernelSHAP through ONNX Runtime equals shap's exact
    interventional TreeSHAP (the regressor: output space is margin space) to float32 rounding."""
    fixture = load("sklearn_gbr")
    rows = write_csv(tmp_path / "rows.csv", fixture["features"], fixture["rows"][:5])
    background = write_csv(tmp_path / "background.csv", fixture["features"], fixture["background"])
    answer = json.loads(tern("explain", os.path.join(EXPLAIN, "sklearn_gbr", "model.onnx"), "--input", rows, "--background",
                             background, "--method", "kernel", "--kernel-background-rows", "1000", "--json").stdout)
    assert answer["method"] == "kernel" and answer["link"] == "identity" and answer["outputs"] == ["variable"]
    expected = np.array(fixture["methods"]["interventional"]["values"])[:5, :, 0]
    mine = np.array([row["attributions"]["variable"] for row in answer["rows"]])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(mine, expected, atol=1e-6 * scale, rtol=0)
    assert all(e == 0 for row in answer["rows"] for e in row["standard_errors"]["variable"])  # exact: no error
    assert abs(answer["base_values"][0] - fixture["methods"]["interventional"]["base"][0]) < 1e-6 * scale


def test_kernel_shap_equals_the_shapley_formula_on_probabilities(tmp_path):
    """A classifier's probabilities (not its margins) explained by KernelSHAP, against the Shapley formula
    evaluated with onnxruntime over every coalition."""
    import onnxruntime as ort
    fixture = load("sklearn_gbc")
    model = os.path.join(EXPLAIN, "sklearn_gbc", "model.onnx")
    x = np.array(fixture["rows"][:2]), np.array(fixture["background"][:20])
    rows = write_csv(tmp_path / "rows.csv", fixture["features"], x[0])
    background = write_csv(tmp_path / "background.csv", fixture["features"], x[1])
    answer = json.loads(tern("explain", model, "--input", rows, "--background", background, "--method", "kernel", "--json").stdout)
    assert answer["outputs"] == ["probabilities[0]", "probabilities[1]"]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    features = list(range(len(fixture["features"])))
    for r, row in enumerate(answer["rows"]):
        phi = shapley_by_enumeration(session, x[0][r], x[1].copy(), features)
        for o, output in enumerate(answer["outputs"]):
            np.testing.assert_allclose(row["attributions"][output], [phi[f][o] for f in features], atol=1e-6)
            assert abs(answer["base_values"][o] + sum(row["attributions"][output]) - row["margin"][o]) < 1e-6


def test_kernel_shap_samples_a_network_with_honest_errors(tmp_path):
    """An MLP of 20 features (2^20 coalitions: sampled). The background differs from the explained row in 6
    features only, so the exact values are the Shapley formula over those 6 (the other 14 are exactly 0):
    every estimate lies within 4 of its standard errors, the sums add up, and a seed repeats."""
    import onnxruntime as ort
    model = os.path.join(ROOT, "Tests", "Fixtures", "models", "mlp", "model.onnx")
    generator = np.random.default_rng(3)
    x = generator.normal(size=20)
    moving = [1, 4, 7, 11, 15, 18]
    background = np.tile(x, (30, 1))
    background[:, moving] = generator.normal(size=(30, len(moving)))
    names = [f"f{i}" for i in range(20)]
    rows_csv = write_csv(tmp_path / "rows.csv", names, [x])
    background_csv = write_csv(tmp_path / "background.csv", names, background)
    run = lambda seed: json.loads(tern("explain", model, "--input", rows_csv, "--background", background_csv, "--samples", "4096",
                                       "--seed", str(seed), "--json").stdout)
    answer = run(1)
    assert answer["method"] == "kernel"
    phi = shapley_by_enumeration(ort.InferenceSession(model, providers=["CPUExecutionProvider"]), x, background.copy(), moving)
    row = answer["rows"][0]
    output = "probabilities[1]"
    mine, errors = np.array(row["attributions"][output]), np.array(row["standard_errors"][output])
    exact = np.array([phi[f][1] if f in moving else 0.0 for f in range(20)])
    assert (errors > 0).any()
    assert (np.abs(mine - exact) <= 4 * errors + 1e-6).all(), (mine, exact, errors)
    assert abs(answer["base_values"][1] + mine.sum() - row["margin"][1]) < 1e-6
    assert run(1)["rows"][0]["attributions"] == row["attributions"]


def test_explain_true_on_infer_adds_the_explanation_on_every_protocol_and_logs_it(served):
    """`explain: true` on a v2 infer request: the usual outputs unchanged, plus the explanation as tensors,
    over REST JSON, REST binary and gRPC (tritonclient), equal to the explain route's; the prediction log
    keeps it with the prediction."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    reg, server = served
    with open(REFERENCE) as f:
        reader = csv.reader(f)
        next(reader)
        applicants = np.array([[float(v) for v in row[:10]] for _, row in zip(range(3), reader)], dtype=np.float32)
    route = explain(server, "credit", applicants.tolist()).json()
    expected = np.array([row["attributions"]["class 1"] for row in route["rows"]])
    plain = requests.post(f"http://{server.url}/v2/models/credit/infer", json={"inputs": [
        {"name": "features", "datatype": "FP32", "shape": [3, 10], "data": applicants.reshape(-1).tolist()}]}, timeout=30).json()
    body = requests.post(f"http://{server.url}/v2/models/credit/infer", json={"id": "why-1", "parameters": {"explain": True}, "inputs": [
        {"name": "features", "datatype": "FP32", "shape": [3, 10], "data": applicants.reshape(-1).tolist()}]}, timeout=30)
    assert body.status_code == 200, body.text
    outputs = {o["name"]: o for o in body.json()["outputs"]}
    for o in plain["outputs"]:
        assert outputs[o["name"]]["data"] == o["data"]
    assert outputs["explain_attributions"]["shape"] == [3, 10] and outputs["explain_attributions"]["datatype"] == "FP64"
    np.testing.assert_allclose(np.array(outputs["explain_attributions"]["data"]).reshape(3, 10), expected, atol=1e-12)
    assert outputs["explain_base_values"]["data"] == route["base_values"]
    assert outputs["explain_features"]["data"] == route["features"] and outputs["explain_outputs"]["data"] == ["class 1"]

    inputs = [httpclient.InferInput("features", [3, 10], "FP32")]
    inputs[0].set_data_from_numpy(applicants, binary_data=True)
    result = httpclient.InferenceServerClient(server.url).infer("credit", inputs, parameters={"explain": True}, outputs=[
        httpclient.InferRequestedOutput(name, binary_data=True) for name in ("probabilities", "explain_attributions")])
    np.testing.assert_allclose(result.as_numpy("explain_attributions"), expected, atol=1e-12)

    inputs = [grpcclient.InferInput("features", [3, 10], "FP32")]
    inputs[0].set_data_from_numpy(applicants)
    result = grpcclient.InferenceServerClient(server.grpc_url).infer("credit", inputs, parameters={"explain": True})
    np.testing.assert_allclose(result.as_numpy("explain_attributions"), expected, atol=1e-12)
    assert [f.decode() for f in result.as_numpy("explain_features")] == route["features"]

    # The prediction log holds the explanation with the prediction: `tern predictions show` answers why.
    shown = logged(reg, "why-1")
    assert "explain_attributions" in shown.stdout and f"{expected[0][0]:.6g}"[:6] in shown.stdout, shown.stdout


def logged(reg, request_id):
    """`tern predictions show REQUEST_ID` once the prediction log has written it (it writes in batches)."""
    deadline = time.time() + 10
    while True:
        shown = tern("predictions", "show", request_id, *reg.args, check=False)
        if shown.returncode == 0 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert shown.returncode == 0, shown.stderr
    return shown


def requests_counted(server, model, outcome):
    text = requests.get(f"http://{server.url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("tern_requests_total{") and f'model="{model}"' in line and 'protocol="v2_rest"' in line \
                and f'outcome="{outcome}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_the_explain_route_is_counted_and_logged_like_a_prediction(served):
    """The explain route goes through the core as infer does (issue 26): counted in tern_requests_total (a
    refused one as a client error), and kept in the prediction log under its request id, marked as an
    explanation (drift leaves it out)."""
    reg, server = served
    with open(REFERENCE) as f:
        reader = csv.reader(f)
        next(reader)
        applicants = [[float(v) for v in row[:10]] for _, row in zip(range(2), reader)]
    before = requests_counted(server, "credit", "success"), requests_counted(server, "credit", "client_error")
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 10], "data": np.asarray(applicants).reshape(-1).tolist()}]}
    answer = requests.post(f"http://{server.url}/v2/models/credit/explain", json=body, headers={"X-Request-ID": "explained-1"}, timeout=30)
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "explained-1", answer.text
    refused = explain(server, "credit", applicants, method="nonsense")
    assert refused.status_code == 400
    assert requests_counted(server, "credit", "success") == before[0] + 1
    assert requests_counted(server, "credit", "client_error") == before[1] + 1
    shown = logged(reg, "explained-1")
    assert "v2_rest:explain" in shown.stdout and "explain_attributions" in shown.stdout, shown.stdout
    first = answer.json()["rows"][0]["attributions"]["class 1"][0]
    assert f"{first:.6g}"[:6] in shown.stdout, shown.stdout


@pytest.mark.parametrize("parameters,message", [
    ({"explain": "yes"}, "parameter explain must be true or false"),
    ({"explain": True, "explain_method": "magic"}, "parameter explain_method must be"),
    ({"explain": True, "explain_method": "linear"}, "does not apply"),
])
def test_bad_explain_parameters_on_infer_are_refused(served, parameters, message):
    _, server = served
    answer = requests.post(f"http://{server.url}/v2/models/credit/infer", json={"parameters": parameters, "inputs": [
        {"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [1.0] * 10}]}, timeout=30)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    bare = requests.post(f"http://{server.url}/v2/models/bare/infer", json={"parameters": {"explain": True}, "inputs": [
        {"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [1.0] * 10}]}, timeout=30)
    assert bare.status_code == 400 and "--reference" in bare.json()["error"], bare.text


def test_a_model_folder_explains_against_the_reference_csv_beside_its_model(tmp_path):
    """Served from a plain folder (--models): the version's background is reference.csv beside model.onnx;
    without one, the 400 says where to put it."""
    from conftest import Server
    import shutil
    folder = tmp_path / "models" / "credit" / "1"
    folder.mkdir(parents=True)
    shutil.copy(os.path.join(EXPLAIN, "sklearn_gbc", "model.onnx"), folder / "model.onnx")
    other = tmp_path / "models" / "bare" / "1"
    other.mkdir(parents=True)
    shutil.copy(os.path.join(EXPLAIN, "sklearn_gbc", "model.onnx"), other / "model.onnx")
    fixture = load("sklearn_gbc")
    write_csv(folder / "reference.csv", fixture["features"], fixture["background"])
    server = Server(str(tmp_path / "models"))
    try:
        answer = explain(server, "credit", fixture["rows"][:3])
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["background_rows"] == len(fixture["background"]) and body["features"] == fixture["features"]
        np.testing.assert_allclose([r["attributions"]["class 1"] for r in body["rows"]],
                                   np.array(fixture["methods"]["interventional"]["values"])[:3, :, -1], atol=1e-6)
        bare = explain(server, "bare", fixture["rows"][:1])
        assert bare.status_code == 400 and "reference.csv" in bare.json()["error"], bare.text
    finally:
        server.stop()
