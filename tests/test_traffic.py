"""Traffic policies (issue 16): weights share the requests that name no version (a 10% canary gets 10% +/- 2%
of 20,000 requests from 8 clients), a sticky header always reaches the same version over REST and gRPC, a
named version or alias bypasses the policy, every answer names the version that answered, bad policies are
refused, and changes are audited."""
import json
import threading
from collections import Counter

import numpy as np
import pytest
import requests

from conftest import run_concurrently
from registry_support import Registry, api, pack

ROW = [35, 52000, 0.3, 4, 0, 0, 12000, 6, 7, 0.4]


def infer(session, server, headers=None, model="credit"):
    response = session.post(f"http://{server.url}/v2/models/{model}/infer", headers=headers or {}, timeout=30, json={
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW}]})
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    reg = Registry("sqlite", tmp_path_factory.mktemp("traffic"))
    reg.cli("push", pack(reg.tmp, "logreg", "credit", 1), "--alias", "production")
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 2))
    server = reg.serve()
    yield reg, server
    server.stop()


def test_a_ten_percent_canary_gets_ten_percent_of_twenty_thousand_requests(served):
    reg, server = served
    answer = api(server, "PUT", "/api/v1/models/credit/traffic", json={"weights": {"1": 90, "2": 10}})
    assert answer.status_code == 200 and answer.json()["traffic"]["weights"] == {"1": 90.0, "2": 10.0}, answer.text
    counts = Counter()
    lock = threading.Lock()

    def client(index):
        session = requests.Session()
        yield
        mine = Counter(infer(session, server) for _ in range(2500))
        with lock:
            counts.update(mine)

    run_concurrently(8, client)
    assert sum(counts.values()) == 20_000
    assert 0.08 <= counts["2"] / 20_000 <= 0.12, counts
    # Named versions and aliases bypass the policy.
    session = requests.Session()
    assert {infer(session, server, model="credit@production") for _ in range(50)} == {"1"}
    assert {infer(session, server, model="credit@2") for _ in range(20)} == {"2"}


def test_a_sticky_header_always_reaches_the_same_version_over_rest_and_grpc(served):
    import tritonclient.grpc as grpcclient
    reg, server = served
    assert api(server, "PUT", "/api/v1/models/credit/traffic",
               json={"weights": {"1": 50, "2": 50}, "sticky_header": "x-customer-id"}).status_code == 200
    session = requests.Session()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    features = grpcclient.InferInput("features", [1, 10], "FP32")
    features.set_data_from_numpy(np.array([ROW], dtype=np.float32))
    seen = {}
    for customer in range(60):
        headers = {"x-customer-id": f"customer-{customer}"}
        versions = {infer(session, server, headers) for _ in range(5)}
        versions |= {client.infer("credit", [features], headers=headers).get_response().model_version for _ in range(2)}
        assert len(versions) == 1, (customer, versions)
        seen[customer] = versions.pop()
    assert set(seen.values()) == {"1", "2"}  # both versions get customers
    # Without the header: random by weight.
    assert len({infer(session, server) for _ in range(60)}) == 2


def test_a_sticky_input_always_reaches_the_same_version_over_rest_and_grpc(served):
    """With `sticky_input`, the named input's values pick the version (read from the body, after the header
    would have): the same row always meets the same version, different rows spread by weight."""
    import tritonclient.grpc as grpcclient
    reg, server = served
    answer = api(server, "PUT", "/api/v1/models/credit/traffic", json={"weights": {"1": 50, "2": 50}, "sticky_input": "features"})
    assert answer.status_code == 200, answer.text
    client = grpcclient.InferenceServerClient(server.grpc_url)
    session = requests.Session()
    seen = {}
    for customer in range(40):
        row = [30 + customer, 40000 + 100 * customer, 0.3, 4, 0, 0, 12000, 6, 7, 0.4]
        versions = set()
        for _ in range(4):
            response = session.post(f"http://{server.url}/v2/models/credit/infer", timeout=30, json={
                "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": row}]})
            assert response.status_code == 200, response.text
            versions.add(response.json()["model_version"])
        features = grpcclient.InferInput("features", [1, 10], "FP32")
        features.set_data_from_numpy(np.array([row], dtype=np.float32))
        versions.add(client.infer("credit", [features]).get_response().model_version)
        assert len(versions) == 1, (customer, versions)
        seen[customer] = versions.pop()
    assert set(seen.values()) == {"1", "2"}
    assert "sticky on input features" in reg.cli("models", "show", "credit").stdout
    both = api(server, "PUT", "/api/v1/models/credit/traffic",
               json={"weights": {"1": 1}, "sticky_input": "features", "sticky_header": "x-id"})
    assert both.status_code == 400 and "not both" in both.json()["error"]
    api(server, "DELETE", "/api/v1/models/credit/traffic")


@pytest.mark.parametrize("policy,message", [
    ({"weights": {"7": 100}}, "version 7"),
    ({"weights": {"1": 0, "2": 0}}, "add up to 0"),
    ({"weights": {"1": 100}, "shadows": [1]}, "both weighted and a shadow"),
    ({"weights": {"one": 100}}, "keyed by version number"),
    ({"weights": {}}, "needs weights"),
    ({"weights": {"1": -1}}, "between 0 and 1000000"),
    ({"weights": {"1": 1e308, "2": 1e308}}, "between 0 and 1000000"),
])
def test_bad_policies_are_refused_and_change_nothing(served, policy, message):
    reg, server = served
    before = api(server, "GET", "/api/v1/models/credit").json().get("traffic")
    answer = api(server, "PUT", "/api/v1/models/credit/traffic", json=policy)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert api(server, "GET", "/api/v1/models/credit").json().get("traffic") == before


def test_removing_the_policy_restores_the_default_and_every_change_is_audited(served):
    reg, server = served
    assert api(server, "PUT", "/api/v1/models/credit/traffic", json={"weights": {"2": 1}}).status_code == 200
    session = requests.Session()
    assert {infer(session, server) for _ in range(30)} == {"2"}
    assert api(server, "GET", "/api/v1/models/credit/traffic").json()["weights"] == {"2": 1.0}
    assert api(server, "DELETE", "/api/v1/models/credit/traffic").status_code == 200
    assert {infer(session, server) for _ in range(30)} == {"1"}  # the production alias again
    assert api(server, "GET", "/api/v1/models/credit/traffic").status_code == 404
    assert api(server, "DELETE", "/api/v1/models/credit/traffic").status_code == 404
    entries = [e for e in json.loads(reg.cli("audit", "log", "--json").stdout) if e["action"] == "traffic"]
    removed = entries[-1]
    assert removed.get("after") in (None, "") and removed["before"]["weights"] == {"2": 1.0}, removed
    assert removed["actor"] and any(e.get("after") and e["after"]["weights"] == {"2": 1.0} for e in entries)


def test_a_shadow_version_never_changes_an_answer_and_its_comparison_is_exact(served):
    """Version 1 answers everything, version 2 gets a copy of each request off the request path; the
    answers are exactly version 1's, and the comparison the server reports equals the one computed with
    onnxruntime on the same rows (label agreement, mean and largest probability difference)."""
    import onnxruntime as ort
    import time
    from conftest import FIXTURES
    import os
    reg, server = served
    assert api(server, "PUT", "/api/v1/models/credit/traffic", json={"weights": {"1": 100}, "shadows": [2]}).status_code == 200
    rows = np.random.default_rng(5).normal(size=(200, 10)).astype(np.float32) * np.array(
        [10, 20000, 0.2, 3, 1, 1, 8000, 5, 4, 0.3], dtype=np.float32) + np.array(ROW, dtype=np.float32)
    session = requests.Session()
    v1 = ort.InferenceSession(os.path.join(FIXTURES, "logreg", "model.onnx"), providers=["CPUExecutionProvider"])
    v2 = ort.InferenceSession(os.path.join(FIXTURES, "gbc", "model.onnx"), providers=["CPUExecutionProvider"])
    for row in rows:
        response = session.post(f"http://{server.url}/v2/models/credit/infer", timeout=30, json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": row.tolist()}]})
        body = response.json()
        assert body["model_version"] == "1"
        outputs = {o["name"]: np.array(o["data"]) for o in body["outputs"]}
        label, probabilities = v1.run(None, {"features": row.reshape(1, 10)})
        assert outputs["label"].tolist() == label.tolist()
        np.testing.assert_allclose(outputs["probabilities"], probabilities.reshape(-1), rtol=0, atol=1e-6)
    deadline = time.time() + 20
    while True:
        comparison = api(server, "GET", "/api/v1/models/credit/traffic").json()["shadow_comparison"].get("2", {})
        if comparison.get("requests", 0) + comparison.get("dropped", 0) >= 200 or time.time() > deadline:
            break
        time.sleep(0.1)
    assert comparison["requests"] == 200 and comparison["failed"] == 0 and comparison["dropped"] == 0, comparison
    labels1, probabilities1 = v1.run(None, {"features": rows})
    labels2, probabilities2 = v2.run(None, {"features": rows})
    assert abs(comparison["label_agreement"] - float(np.mean(labels1 == labels2))) < 1e-9
    differences = np.abs(probabilities1.astype(np.float64) - probabilities2.astype(np.float64))
    assert abs(comparison["score_mean_abs_difference"] - differences.mean()) < 1e-6
    assert abs(comparison["score_max_abs_difference"] - differences.max()) < 1e-6
    # The histogram's buckets fit probability differences (0.001 ... 1), not sizes: they tell requests apart.
    metrics = requests.get(f"http://{server.url}/metrics", timeout=10).text
    buckets = {float(line.split('le="')[1].split('"')[0]): float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("tern_shadow_score_abs_difference_bucket") and 'le="+Inf"' not in line}
    assert sorted(buckets)[:3] == [0.001, 0.002, 0.005] and max(buckets) == 1.0, sorted(buckets)
    per_request = differences.reshape(len(rows), -1).mean(axis=1)
    for bound in (0.01, 0.1):
        assert buckets[bound] == float((per_request <= bound).sum()), (bound, buckets, per_request)
    api(server, "DELETE", "/api/v1/models/credit/traffic")


def test_the_cli_sets_and_shows_a_policy_that_a_running_server_follows(served):
    reg, server = served
    result = reg.cli("models", "traffic", "credit", "--weights", "1=0,2=1")
    assert "credit: v1 0.0%, v2 100.0%" in result.stdout, result.stdout
    assert "traffic: v1 0.0%, v2 100.0%" in reg.cli("models", "show", "credit").stdout
    import time
    session = requests.Session()
    deadline = time.time() + 10
    while infer(session, server) != "2":  # the server follows the registry within its poll interval
        assert time.time() < deadline
        time.sleep(0.1)
    assert {infer(session, server) for _ in range(20)} == {"2"}
    bad = reg.cli("models", "traffic", "credit", "--weights", "1=90,9=10", check=False)
    assert bad.returncode != 0 and "version 9" in bad.stderr
    assert "no traffic policy" in reg.cli("models", "traffic", "credit", "--clear").stdout


def test_a_shadow_whose_inputs_do_not_take_the_requests_is_refused(served):
    reg, server = served
    reg.cli("push", pack(reg.tmp, "mlp", "credit", 3))  # 20 features: it cannot shadow the 10-feature versions
    import time
    deadline = time.time() + 10
    while True:
        answer = api(server, "PUT", "/api/v1/models/credit/traffic", json={"weights": {"1": 100}, "shadows": [3]})
        if answer.status_code != 400 or "version 3" not in answer.text or time.time() > deadline:
            break
        time.sleep(0.1)  # until the push is registered
    assert answer.status_code == 400 and "every copy would fail" in answer.json()["error"], answer.text
    assert "features FP32 20" in answer.json()["error"] and "features FP32 10" in answer.json()["error"]
