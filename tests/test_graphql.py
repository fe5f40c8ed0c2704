"""GraphQL at /graphql against a live `tern serve`: every query's values checked against the REST API's, the
predict mutation against v2 REST's answer (the values' text byte for byte) and onnxruntime's own outputs,
malformed and over-deep documents refused with GraphQL errors, and the same keys, scopes and grants as REST."""
import json
import os
import re

import numpy as np
import onnxruntime as ort
import pytest
import requests

from conftest import EXAMPLES, FIXTURES
from lender_scenario import Lender
from registry_support import credit_table

MODEL_QUERY = """
query Credit($window: Int) {
  model(name: "credit") {
    name defaultVersion shadows
    aliases { name version }
    traffic { version weight }
    versions { number state loaded platform aliases sha256 bytes createdBy featureNames
               inputs { name datatype shape } outputs { name datatype shape } validation { name value } }
    drift(version: "production", window: $window) { version predictions rows referenceRows drifted
      features { feature kind psi ksStatistic ksPValue wasserstein chiSquared drifted liveCount referenceCount } }
    quality { version predictions rows mismatched live { name value } validation { name value } }
    alerts { rule state value threshold }
    audit(limit: 3) { seq action actor version }
  }
}"""


@pytest.fixture(scope="module")
def lender(tmp_path_factory):
    scenario = Lender(tmp_path_factory.mktemp("lender"))
    yield scenario
    scenario.stop()


def graphql(lender, query, variables=None, key="admin", **kwargs):
    return requests.post(f"{lender.url}/graphql", headers=lender.headers(key), timeout=30,
                         json={"query": query, "variables": variables or {}}, **kwargs)


def metrics(items):
    return {m["name"]: m["value"] for m in items}


def test_queries_answer_what_the_rest_api_answers(lender):
    answer = graphql(lender, MODEL_QUERY, {"window": 40})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    model = body["data"]["model"]
    # Fields come back in the order the query asked for them.
    assert list(model)[:3] == ["name", "defaultVersion", "shadows"]

    record = lender.get("/api/v1/models/credit").json()
    assert model["defaultVersion"] == record["default_version"] if "default_version" in record else True
    assert {a["name"]: a["version"] for a in model["aliases"]} == record["aliases"]
    assert {str(t["version"]): t["weight"] for t in model["traffic"]} == {
        str(k): v for k, v in record["traffic"]["weights"].items()}
    assert [v["number"] for v in model["versions"]] == [v["version"] for v in record["versions"]]
    for mine, theirs in zip(model["versions"], record["versions"]):
        assert (mine["state"], mine["sha256"], mine["bytes"], mine["createdBy"]) == (
            theirs["state"], theirs["sha256"], theirs["bytes"], theirs["created_by"])
        assert sorted(mine["aliases"]) == sorted(theirs["aliases"])
        assert metrics(mine["validation"]) == {k: v for k, v in theirs["metrics"].items()
                                               if isinstance(v, float) and not isinstance(v, bool)}
    # The served versions' signatures, as v2 metadata gives them.
    served = lender.get("/v2/models/credit/versions/1").json()
    v1 = model["versions"][0]
    assert v1["loaded"] and v1["platform"] == served["platform"]
    assert [(i["name"], i["datatype"], i["shape"]) for i in v1["inputs"]] == [
        (i["name"], i["datatype"], i["shape"]) for i in served["inputs"]]
    assert v1["featureNames"][:2] == ["age", "income"]

    # Drift: the same numbers as GET /api/v1/models/credit/drift, income among the drifted.
    rest = lender.get("/api/v1/models/credit/drift?window=40&version=production").json()
    drift = model["drift"]
    assert (drift["predictions"], drift["rows"], drift["referenceRows"], drift["drifted"]) == (
        rest["predictions"], rest["rows"], rest["reference_rows"], rest["drifted"])
    assert "income" in drift["drifted"] and drift["rows"] == 800
    by_feature = {f["feature"]: f for f in rest["features"]}
    for feature in drift["features"]:
        theirs = by_feature[feature["feature"]]
        for mine_key, rest_key in [("psi", "psi"), ("ksStatistic", "ks_statistic"), ("ksPValue", "ks_p_value"),
                                   ("wasserstein", "wasserstein"), ("liveCount", "live_count")]:
            assert feature[mine_key] == theirs.get(rest_key), (feature["feature"], mine_key)

    # Live quality: the 20 calm predictions' feedback, as GET .../performance gives it.
    performance = lender.get("/api/v1/models/credit/performance").json()
    quality = {q["version"]: q for q in model["quality"]}
    for version in performance["versions"]:
        mine = quality[version["version"]]
        assert (mine["predictions"], mine["rows"]) == (version["predictions"], version["rows"]) == (20, 400)
        assert metrics(mine["live"])["accuracy"] == version["live"]["accuracy"]

    rest_alerts = lender.get("/api/v1/alerts").json()["alerts"]
    # The value is re-evaluated every 0.3 s: the rule, state and threshold are compared.
    assert [(a["rule"], a["state"], a["threshold"]) for a in model["alerts"]] == [
        (a["rule"], a["state"], a["threshold"]) for a in rest_alerts if a["model"] == "credit"]
    assert model["alerts"][0]["state"] == "firing"

    audit = lender.get("/api/v1/audit?model=credit").json()
    assert [e["seq"] for e in model["audit"]] == [e["seq"] for e in audit][::-1][:3]
    assert model["audit"][0]["action"].startswith("rollout")


def test_lists_and_introspection(lender):
    body = graphql(lender, "{ server { name ready } models { name versions { number } } alerts { rule } jobs { id } "
                   "audit(limit: 1000) { seq model } }").json()
    assert "errors" not in body, body
    data = body["data"]
    assert data["server"] == {"name": "tern", "ready": True}
    assert [m["name"] for m in data["models"]] == [m["name"] for m in lender.get("/api/v1/models").json()]
    assert len(data["audit"]) == len(lender.get("/api/v1/audit").json())
    assert data["jobs"] == [{"id": j["id"]} for j in lender.get("/api/v1/jobs").json()["jobs"]] == [{"id": lender.job}]
    schema = graphql(lender, "{ __schema { mutationType { fields { name } } } __type(name: \"Model\") { fields { name } } }")
    fields = schema.json()["data"]
    assert [f["name"] for f in fields["__schema"]["mutationType"]["fields"]] == ["predict"]
    assert {"drift", "quality", "audit", "versions"} <= {f["name"] for f in fields["__type"]["fields"]}


PREDICT = """
mutation Predict($model: String!, $version: String, $rows: [Float!], $shape: [Int!]!) {
  predict(model: $model, version: $version, id: "graph-1", inputs: [{name: "features", datatype: "FP32", shape: $shape, data: $rows}]) {
    modelName modelVersion id outputs { name datatype shape data }
  }
}"""


def data_texts(text):
    """The text of every `data` array in a JSON answer, in order."""
    return re.findall(r'"data":(\[[^\]]*\])', text)


def test_predict_answers_what_v2_rest_answers(lender):
    rows, _ = credit_table(7, seed=3)
    rows = rows.astype(np.float32)
    answer = graphql(lender, PREDICT, {"model": "credit", "version": "1", "rows": rows.ravel().tolist(), "shape": [7, 10]},
                     key="inferrer")
    assert answer.status_code == 200, answer.text
    rest = requests.post(f"{lender.url}/v2/models/credit/versions/1/infer", headers=lender.headers("inferrer"), timeout=30,
                         json={"id": "graph-1", "inputs": [{"name": "features", "datatype": "FP32", "shape": [7, 10],
                                                            "data": rows.ravel().tolist()}]})
    predicted = answer.json()["data"]["predict"]
    assert (predicted["modelName"], predicted["modelVersion"], predicted["id"]) == ("credit", "1", "graph-1")
    # Byte for byte: the values' text in both answers.
    assert data_texts(answer.text) == data_texts(rest.text)
    assert len(data_texts(answer.text)) == 2
    # And onnxruntime's own outputs for the same rows.
    session = ort.InferenceSession(os.path.join(FIXTURES, "gbc", "model.onnx"))
    expected = session.run(None, {session.get_inputs()[0].name: rows})
    outputs = {o["name"]: o for o in predicted["outputs"]}
    assert outputs["label"]["data"] == expected[0].tolist()
    assert np.array(outputs["probabilities"]["data"], dtype=np.float32).tolist() == expected[1].ravel().tolist()


def test_bad_documents_get_graphql_errors_and_change_nothing(lender):
    before = lender.get("/api/v1/audit").json()
    cases = [
        ('{ models { name ', 400, "Syntax Error"),
        ('{ modelz { name } }', 400, 'Cannot query field "modelz"'),
        ('query A { server { name } } query B { server { name } }', 400, "name one in operationName"),
        ('{ model(name: 3) { name } }', 400, "String"),
        ('{ model(name: "nope") { name } }', 200, None),
        ('{ models { drift(window: 0) { rows } } }', 200, "window must be from 1 to 10000"),
        ('subscription { models { name } }', 400, ""),
    ]
    for query, status, message in cases:
        answer = graphql(lender, query)
        assert answer.status_code == status, (query, answer.status_code, answer.text)
        body = answer.json()
        if message is not None:
            assert body["errors"] and message in body["errors"][0]["message"], (query, body)
    # Over deep: a fragment cannot hide the depth.
    deep = "{ models { versions { inputs { name } } } }"
    assert graphql(lender, deep).status_code == 200
    nested = "fragment V on Version { inputs { name } } { models { versions { ...V } } }"
    assert graphql(lender, nested).status_code == 200
    introspection = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } }"
    refused = graphql(lender, introspection)
    assert refused.status_code == 400, refused.text
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_DEEP" and "levels deep; the limit is 8" in error["message"]
    wide = "{ " + " ".join(f"a{i}: server {{ name }}" for i in range(300)) + " }"
    assert graphql(lender, wide).json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    # A prediction refused: v2's message, the code, the field's path; no data.
    bad = graphql(lender, PREDICT, {"model": "credit", "rows": [1.0], "shape": [1, 10]}, key="inferrer")
    assert bad.status_code == 400, bad.text
    error = bad.json()["errors"][0]
    assert error["extensions"]["code"] == "INVALID_ARGUMENT" and error["path"] == ["predict"]
    assert "holds 1" in error["message"], error
    unknown = graphql(lender, PREDICT, {"model": "nope", "rows": [1.0], "shape": [1, 1]}, key="inferrer")
    assert unknown.status_code == 404 and unknown.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    for body in [b"not json", b'{"query": 3}', b"[]"]:
        answer = requests.post(f"{lender.url}/graphql", data=body, headers={**lender.headers(), "Content-Type": "application/json"},
                               timeout=10)
        assert answer.status_code == 400 and answer.json()["errors"], answer.text
    as_document = requests.post(f"{lender.url}/graphql", data="{ server { name } }",
                                headers={**lender.headers(), "Content-Type": "application/graphql"}, timeout=10)
    assert as_document.json() == {"data": {"server": {"name": "tern"}}}
    assert lender.get("/api/v1/audit").json() == before


def test_auth_is_rest_s(lender):
    query = {"query": "{ models { name } }"}
    anonymous = requests.post(f"{lender.url}/graphql", json=query, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    # Anonymous learns nothing of the document: 401 before a syntax error.
    assert requests.post(f"{lender.url}/graphql", json={"query": "{"}, timeout=10).status_code == 401
    forged = lender.keys["reader"][:-1] + ("0" if lender.keys["reader"][-1] != "0" else "1")
    assert requests.post(f"{lender.url}/graphql", json=query, headers={"Authorization": f"Bearer {forged}"},
                         timeout=10).status_code == 401
    # read: queries, not predict; infer: predict, not queries.
    assert graphql(lender, "{ models { name } }", key="reader").status_code == 200
    refused = graphql(lender, PREDICT, {"model": "credit", "rows": [0.0] * 10, "shape": [1, 10]}, key="reader")
    assert refused.status_code == 403 and "lacks the 'infer' scope" in refused.json()["error"]
    refused = graphql(lender, "{ models { name } }", key="inferrer")
    assert refused.status_code == 403 and "lacks the 'read' scope" in refused.json()["error"]
    assert graphql(lender, PREDICT, {"model": "credit", "rows": [0.0] * 10, "shape": [1, 10]}, key="inferrer").status_code == 200
    # A key granted one model sees that model only, and cannot predict with another.
    limited = graphql(lender, "{ models { name } alerts { model } audit(limit: 1000) { model } }", key="credit-only").json()
    assert [m["name"] for m in limited["data"]["models"]] == ["credit"]
    assert {e["model"] for e in limited["data"]["audit"]} == {"credit"}
    hidden = graphql(lender, '{ model(name: "other") { name } }', key="credit-only").json()
    assert hidden["data"]["model"] is None and "may not use model 'other'" in hidden["errors"][0]["message"], hidden
    other = graphql(lender, PREDICT, {"model": "other", "rows": [0.0] * 10, "shape": [1, 10]}, key="credit-only")
    assert other.status_code == 403, other.text
    # GET runs queries only.
    got = requests.get(f"{lender.url}/graphql", params={"query": "{ server { name } }"}, headers=lender.headers("reader"), timeout=10)
    assert got.json() == {"data": {"server": {"name": "tern"}}}
    mutation = requests.get(f"{lender.url}/graphql", params={"query": PREDICT}, headers=lender.headers("inferrer"), timeout=10)
    assert mutation.status_code == 405


def test_graphql_on_a_model_folder(server):
    """Without a registry: the served models, their signatures and predict; the registry's parts answer empty."""
    body = requests.post(f"http://{server.url}/graphql", timeout=10, json={
        "query": '{ models { name versions { number state loaded } } audit { seq } model(name: "credit-risk") { aliases { name } } }'}).json()
    assert "errors" not in body, body
    names = [m["name"] for m in body["data"]["models"]]
    index = requests.post(f"http://{server.url}/v2/repository/index", json={"ready": True}, timeout=10).json()
    assert names == sorted({entry["name"] for entry in index}) and "credit-risk" in names
    assert body["data"]["audit"] == []
    request = json.load(open(os.path.join(EXAMPLES, "..", "requests", "credit-risk.json")))
    tensor = request["inputs"][0]
    flat = np.array(tensor["data"], dtype=np.float32).ravel().tolist()
    answer = requests.post(f"http://{server.url}/graphql", timeout=10, json={
        "query": PREDICT, "variables": {"model": "credit-risk", "rows": flat, "shape": tensor["shape"]}})
    rest = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", timeout=10, json=request)
    assert data_texts(answer.text) == data_texts(rest.text) and len(data_texts(rest.text)) == 2
