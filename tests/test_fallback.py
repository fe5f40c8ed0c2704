"""Fallbacks and circuit breakers (issue 16): when the chosen version fails or is too slow, the fallback
version (else a default answer) answers, marked in the response parameters over REST and gRPC (a header in
the platform formats); a version that keeps failing has its circuit opened (not called) and probed later;
the failures, fallbacks and circuit are in the metrics; bad fallbacks are refused."""
import os
import time

import numpy as np
import pytest
import requests

import controllable_models
from registry_support import Registry, api, tern


def pack_model(reg, build, version, **options):
    model = build(os.path.join(reg.tmp, f"{build.__name__}-{version}.onnx"), **options)
    path = os.path.join(reg.tmp, f"flaky-{version}.tern")
    tern("pack", model, "--name", "flaky", "--version", str(version), "-o", path)
    return path


def infer(server, first, model="flaky", rows=1):
    data = np.full((rows, 10), 1.0, np.float32)
    data[:, 0] = first
    response = requests.post(f"http://{server.url}/v2/models/{model}/infer", timeout=30, json={
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [rows, 10], "data": data.reshape(-1).tolist()}]})
    return response


def metric(server, name, **labels):
    text = requests.get(f"http://{server.url}/metrics", timeout=10).text
    total = None
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    reg = Registry("sqlite", tmp_path_factory.mktemp("fallback"))
    reg.cli("push", pack_model(reg, controllable_models.steady, 1), "--alias", "production")
    reg.cli("push", pack_model(reg, controllable_models.failing, 2, limit=100, scale=2.0))
    reg.cli("push", pack_model(reg, controllable_models.slow, 3, scale=3.0))
    server = reg.serve()
    yield reg, server
    server.stop()


def put(server, policy):
    answer = api(server, "PUT", "/api/v1/models/flaky/traffic", json=policy)
    assert answer.status_code == 200, answer.text
    return answer


def test_a_fallback_version_answers_a_failure_and_the_circuit_opens_and_closes(served):
    import tritonclient.grpc as grpcclient
    reg, server = served
    put(server, {"weights": {"2": 100}, "fallback": {"version": 1, "failures_to_open": 3, "open_seconds": 1.5}})
    # Rows the canary takes: its own answer (the sum times 2), no fallback marks.
    ok = infer(server, 5)
    assert ok.status_code == 200 and ok.json()["model_version"] == "2", ok.text
    assert ok.json()["outputs"][0]["data"] == [2 * (5 + 9)] and "parameters" not in ok.json()
    # A row it fails on: version 1 answers (the plain sum), marked, over REST...
    failed = infer(server, 500)
    assert failed.status_code == 200, failed.text
    body = failed.json()
    assert body["model_version"] == "1" and body["outputs"][0]["data"] == [500 + 9]
    assert body["parameters"]["fallback"] is True and body["parameters"]["fallback_from"] == "2"
    assert "v2 failed" in body["parameters"]["fallback_reason"] and "Gather" in body["parameters"]["fallback_reason"]
    # ... and over gRPC (tritonclient reads the response parameters).
    client = grpcclient.InferenceServerClient(server.grpc_url)
    features = grpcclient.InferInput("features", [1, 10], "FP32")
    features.set_data_from_numpy(np.array([[500] + [1] * 9], dtype=np.float32))
    response = client.infer("flaky", [features]).get_response()
    assert response.model_version == "1" and response.parameters["fallback"].bool_param is True
    assert response.parameters["fallback_from"].string_param == "2"
    # Three failures in a row (the REST one, the gRPC one, one more) open v2's circuit: v2 is not called,
    # even for a row it would take, until the circuit has been open 1.5 s.
    infer(server, 500)
    assert metric(server, "tern_circuit_open", model="flaky", version="2") == 1
    skipped = infer(server, 5).json()
    assert skipped["model_version"] == "1" and "circuit is open" in skipped["parameters"]["fallback_reason"]
    assert skipped["outputs"][0]["data"] == [5 + 9]
    assert metric(server, "tern_fallback_total", model="flaky", version="2", reason="circuit_open") >= 1
    assert metric(server, "tern_fallback_total", model="flaky", version="2", reason="error") == 3
    # After that, one request probes v2; its success closes the circuit.
    time.sleep(1.6)
    probe = infer(server, 5).json()
    assert probe["model_version"] == "2" and "parameters" not in probe, probe
    assert metric(server, "tern_circuit_open", model="flaky", version="2") == 0
    assert {infer(server, 7).json()["model_version"] for _ in range(5)} == {"2"}
    # A failed probe opens it again at once.
    put(server, {"weights": {"2": 100}, "fallback": {"version": 1, "failures_to_open": 1, "open_seconds": 1}})
    infer(server, 500)
    assert infer(server, 5).json()["model_version"] == "1"
    time.sleep(1.1)
    assert infer(server, 500).json()["parameters"]["fallback_reason"].startswith("v2 failed")  # the probe
    assert "circuit is open" in infer(server, 5).json()["parameters"]["fallback_reason"]
    time.sleep(1.1)
    assert infer(server, 5).json()["model_version"] == "2"
    # The failures are v2's in the statistics; the answers v1's.
    stats = requests.get(f"http://{server.url}/v2/models/flaky/versions/2/stats", timeout=10).json()
    assert stats["model_stats"][0]["inference_stats"]["fail"]["count"] >= 5


def test_a_version_that_does_not_answer_in_time_is_answered_for(served):
    reg, server = served
    put(server, {"weights": {"3": 100}, "fallback": {"version": 1, "timeout_ms": 50, "failures_to_open": 100}})
    started = time.monotonic()
    body = infer(server, 4).json()
    took = time.monotonic() - started
    assert body["model_version"] == "1" and body["outputs"][0]["data"] == [4 + 9], body
    assert body["parameters"]["fallback_reason"] == "v3 did not answer within 50 ms"
    assert metric(server, "tern_fallback_total", model="flaky", version="3", reason="timeout") >= 1
    # Without the timeout v3 answers itself (the slow way).
    put(server, {"weights": {"3": 100}, "fallback": {"version": 1}})
    slow_started = time.monotonic()
    body = infer(server, 4).json()
    assert body["model_version"] == "3" and body["outputs"][0]["data"] == [3 * (4 + 9)]
    assert took < time.monotonic() - slow_started  # the fallback did not wait for the slow version


def test_a_default_answer_when_no_version_can_answer(served):
    reg, server = served
    put(server, {"weights": {"2": 100}, "fallback": {"default": {"score": -1}, "failures_to_open": 100}})
    body = infer(server, 700, rows=3).json()
    assert body["outputs"] == [{"name": "score", "datatype": "FP32", "shape": [3, 1], "data": [-1, -1, -1]}], body
    assert body["parameters"]["fallback_source"] == "default" and body["parameters"]["fallback_from"] == "2"
    # The platform formats mark it in a header.
    answer = requests.post(f"http://{server.url}/v1/models/flaky:predict", timeout=30,
                           json={"instances": [[900] + [1] * 9]})
    assert answer.status_code == 200 and answer.json()["predictions"] == [[-1]], answer.text
    assert answer.headers["Tern-Fallback"].startswith("v2 failed")
    # A version that fails, then a fallback version that fails too: the default answers.
    put(server, {"weights": {"2": 100}, "fallback": {"version": 2, "default": {"score": [0]}}})  # not its own fallback
    body = infer(server, 700).json()
    assert body["outputs"][0]["data"] == [0] and body["parameters"]["fallback_source"] == "default", body
    # Without a default, a version that is its own fallback answers for itself: the failure is the client's.
    put(server, {"weights": {"2": 100}, "fallback": {"version": 2}})
    failed = infer(server, 700)
    assert failed.status_code == 400 and "Gather" in failed.json()["error"], failed.text
    api(server, "DELETE", "/api/v1/models/flaky/traffic")


@pytest.mark.parametrize("fallback,message", [
    ({}, "needs a version or a default"),
    ({"version": 9}, "not a version"),
    ({"default": {"probability": [1]}}, "does not have"),
    ({"default": {"score": ["high"]}}, "must be numbers"),
    ({"version": 1, "timeout_ms": 0}, "timeout_ms"),
    ({"version": 1, "failures_to_open": 0}, "failures_to_open"),
    ({"version": 1, "open_seconds": -1}, "open_seconds"),
])
def test_bad_fallbacks_are_refused_and_change_nothing(served, fallback, message):
    reg, server = served
    before = api(server, "GET", "/api/v1/models/flaky").json().get("traffic")
    answer = api(server, "PUT", "/api/v1/models/flaky/traffic", json={"weights": {"2": 100}, "fallback": fallback})
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text
    assert api(server, "GET", "/api/v1/models/flaky").json().get("traffic") == before


def test_the_cli_sets_a_fallback_and_reads_a_policy_file(served):
    reg, server = served
    out = reg.cli("models", "traffic", "flaky", "--weights", "2=100", "--fallback-version", "1",
                  "--fallback-timeout", "250", "--circuit-failures", "4", "--circuit-open", "10").stdout
    assert "fallback v1 after 250 ms" in out and "after 4 failures for 10.0 s" in out, out
    policy = os.path.join(reg.tmp, "traffic.yaml")
    with open(policy, "w") as f:
        f.write("weights: {1: 90, 2: 10}\nfallback:\n  version: 1\n  default: {score: 0}\n")
    out = reg.cli("models", "traffic", "flaky", "--file", policy).stdout
    assert "v1 90.0%, v2 10.0%" in out and "fallback v1 then default answer" in out, out
    shown = reg.cli("models", "show", "flaky").stdout
    assert "fallback v1 then default answer" in shown
    bad = reg.cli("models", "traffic", "flaky", "--fallback-default", "{oops", check=False)
    assert bad.returncode != 0 and "--fallback-default takes JSON" in bad.stderr
    reg.cli("models", "traffic", "flaky", "--clear")
