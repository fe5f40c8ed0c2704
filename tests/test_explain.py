"""Explanations end to end: `tern explain` on every fixture and method against shap's own values (written by
tools/make-explain-fixtures.py beside each model), and the server's explain route on a registry bundle: the
same numbers as the CLI, scores equal to the model's own answers, additivity, and clear 4xx errors."""
import csv
import json
import os

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
        ((os.path.join(ROOT, "Tests", "Fixtures", "models", "mlp", "model.onnx"), "--input", rows), "MatMul"),
    ]:
        result = tern("explain", *args, check=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
