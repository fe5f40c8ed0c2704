"""Progressive rollouts (issue 16): a good candidate is stepped up and promoted; a candidate made to fail is
rolled back automatically under load from 8 clients with zero failed client requests (the stable version
answers its failures), the alert sent and the audit written; pause, resume, abort; bad starts refused; a
rollout survives a restart of the server that drives it."""
import json
import os
import random
import threading
import time

import numpy as np
import pytest
import requests

import controllable_models
from conftest import run_concurrently
from registry_support import POSTGRES_URL, Registry, api, tern
from test_alerts import Receiver, wait_for


def pack_model(reg, build, version, **options):
    model = build(os.path.join(reg.tmp, f"{build.__name__}-{version}.onnx"), **options)
    path = os.path.join(reg.tmp, f"flaky-{version}.tern")
    tern("pack", model, "--name", "flaky", "--version", str(version), "-o", path)
    return path


def infer(session, server, first):
    data = [first] + [1.0] * 9
    response = session.post(f"http://{server.url}/v2/models/flaky/infer", timeout=30, json={
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": data}]})
    assert response.status_code == 200, response.text
    return response.json()


def rollout(server, model="flaky"):
    answer = api(server, "GET", f"/api/v1/models/{model}/rollout")
    assert answer.status_code == 200, answer.text
    return answer.json()


def audit_actions(reg, model="flaky"):
    return [e["action"] for e in json.loads(reg.cli("audit", "log", "--model", model, "--json").stdout)]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry("sqlite", tmp_path_factory.mktemp("rollout"))
    reg.cli("push", pack_model(reg, controllable_models.steady, 1), "--alias", "production")
    reg.cli("push", pack_model(reg, controllable_models.steady, 2, scale=2.0))
    reg.cli("push", pack_model(reg, controllable_models.failing, 3, limit=100, scale=3.0))
    return reg


@pytest.fixture
def alerting(registry, tmp_path):
    receiver = Receiver()
    rules = tmp_path / "rules.yaml"
    rules.write_text(f"interval: 1s\nwebhooks: [{receiver.url}]\nrules:\n"
                     "  - {name: flaky-errors, model: flaky, metric: error_rate, op: '>', threshold: 0.99, window: 60}\n")
    server = registry.serve("--alert-rules", str(rules))
    yield server, receiver
    server.stop()


def test_a_failing_canary_is_rolled_back_under_load_with_no_failed_request(registry, alerting):
    server, receiver = alerting
    # A fallback that keeps calling a failing version (its circuit does not open): judged on the error rate.
    assert api(server, "PUT", "/api/v1/models/flaky/traffic", json={
        "fallback": {"version": 1, "failures_to_open": 100000}}).status_code == 200
    answer = api(server, "POST", "/api/v1/models/flaky/rollout", json={
        "to": 3, "steps": [10, 50, 100], "interval": "60s", "min_requests": 30})
    assert answer.status_code == 201, answer.text
    assert answer.json()["state"] == "running" and answer.json()["stable"] == 1
    versions, failures, started = [], [], time.time()
    lock = threading.Lock()

    def client(index):
        session = requests.Session()
        rng = random.Random(index)
        yield
        mine = []
        for _ in range(250):
            body = infer(session, server, rng.uniform(0, 200))  # v3 fails on about half of these rows
            mine.append((body["model_version"], body.get("parameters", {}).get("fallback_from")))
        with lock:
            versions.extend(mine)

    run_concurrently(8, client)
    wait_for(lambda: rollout(server)["state"] == "rolled_back", "the automatic rollback", timeout=30)
    state = rollout(server)
    # Within the first step's window (60 s), on the error rate, with every number in the reason.
    assert time.time() - started < 60
    assert state["step"] == 0 and "error rate" in state["reason"] and "v3" in state["reason"], state
    assert [e["event"] for e in state["history"]] == ["start", "rollback"]
    # Every client request was answered (infer asserts 200): v3's failures by v1, marked.
    assert len(versions) == 2000 and not failures
    assert any(fallback == "3" for _, fallback in versions), "no request met the canary's failure"
    assert all(version in ("1", "3") for version, _ in versions)
    assert all(version == "1" for version, fallback in versions if fallback == "3")
    # The alert went to the webhooks, the audit holds the rollback, and the canary gets nothing now.
    wait_for(lambda: any(p["commonLabels"]["alertname"] == "TernRolloutRolledBack" for p in receiver.posts), "the rollback alert")
    alert = next(p for p in receiver.posts if p["commonLabels"]["alertname"] == "TernRolloutRolledBack")
    assert alert["commonLabels"]["model"] == "flaky" and alert["commonLabels"]["version"] == "3"
    assert "error rate" in alert["alerts"][0]["annotations"]["summary"]
    assert "rollout-rollback" in audit_actions(registry)
    # The policy from before the rollout, exactly: no 100/0 weights left behind.
    restored = api(server, "GET", "/api/v1/models/flaky/traffic").json()
    assert restored.get("weights", {}) == {} and restored["fallback"]["version"] == 1, restored
    session = requests.Session()
    assert {infer(session, server, 5)["model_version"] for _ in range(30)} == {"1"}
    text = requests.get(f"http://{server.url}/metrics", timeout=10).text
    assert 'tern_rollout_rollbacks_total{model="flaky"} 1' in text
    api(server, "DELETE", "/api/v1/models/flaky/traffic")


def test_a_canary_whose_circuit_opens_is_rolled_back_at_once(registry, alerting):
    server, _ = alerting
    # The rollout's own fallback (the stable version; the circuit opens after 5 failures in a row).
    answer = api(server, "POST", "/api/v1/models/flaky/rollout", json={
        "to": 3, "steps": [50, 100], "interval": "60s", "min_requests": 1000})
    assert answer.status_code == 201, answer.text
    assert api(server, "GET", "/api/v1/models/flaky/traffic").json()["fallback"]["version"] == 1
    session = requests.Session()
    deadline = time.time() + 30
    while rollout(server)["state"] == "running":
        assert time.time() < deadline
        assert infer(session, server, 500)["model_version"] == "1"  # every row fails on v3: v1 answers
    state = rollout(server)
    assert state["state"] == "rolled_back" and "circuit opened" in state["reason"], state
    api(server, "DELETE", "/api/v1/models/flaky/traffic")


def test_a_good_candidate_is_stepped_up_and_promoted(registry, alerting):
    server, _ = alerting
    # (The latency bound is tested on its own below: p99s of a few dozen sub-millisecond requests on a busy
    # test machine differ by more than 1 ms now and then.)
    answer = api(server, "POST", "/api/v1/models/flaky/rollout", json={
        "to": 2, "steps": [20, 60, 100], "interval": 1, "min_requests": 20, "max_latency_ratio": 1000})
    assert answer.status_code == 201, answer.text
    session = requests.Session()
    shares = []
    deadline = time.time() + 60
    while rollout(server)["state"] == "running":
        assert time.time() < deadline, rollout(server)
        seen = [infer(session, server, 5)["model_version"] for _ in range(40)]
        shares.append((rollout(server)["step"], seen.count("2") / len(seen)))
    state = rollout(server)
    assert state["state"] == "promoted", state
    assert [e["event"] for e in state["history"]] == ["start", "step", "step", "promote"], state["history"]
    assert api(server, "GET", "/api/v1/models/flaky").json()["aliases"]["production"] == 2
    # The policy it replaced (none) is back: every request goes to the new production version.
    assert api(server, "GET", "/api/v1/models/flaky/traffic").status_code == 404
    assert {infer(session, server, 5)["model_version"] for _ in range(20)} == {"2"}
    actions = audit_actions(registry)
    assert actions.count("rollout-step") == 2 and "rollout-promote" in actions and "alias" in actions
    # The candidate's share grew with the steps.
    assert max(s for step, s in shares if step == 0) < 0.7
    registry.cli("models", "alias", "flaky", "production", "1")


def test_a_slow_canary_is_rolled_back_on_its_p99_at_the_end_of_its_step(registry, tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack_model(reg, controllable_models.steady, 1), "--alias", "production")
    reg.cli("push", pack_model(reg, controllable_models.slow, 2, size=1500))
    server = reg.serve()
    try:
        answer = api(server, "POST", "/api/v1/models/flaky/rollout", json={
            "to": 2, "steps": [50, 100], "interval": 2, "min_requests": 6, "max_latency_ratio": 3})
        assert answer.status_code == 201, answer.text
        stop = threading.Event()

        def client(index):
            session = requests.Session()
            yield
            while not stop.is_set():
                infer(session, server, 5)

        # One client: below saturation (with the cores saturated by the slow version, the stable version's
        # requests wait behind it too, and the ratio of the two p99s hides it: docs/rollouts.md).
        loader = threading.Thread(target=run_concurrently, args=(1, client))
        loader.start()
        try:
            wait_for(lambda: rollout(server)["state"] != "running", "the end of the first step", timeout=60)
        finally:
            stop.set()
            loader.join()
        state = rollout(server)
        # A first breach of the latency bound judges the step again over a new window; the second rolls back.
        assert state["state"] == "rolled_back" and "p99 latency" in state["reason"], state
        assert "two windows in a row" in state["reason"], state
        assert [e["event"] for e in state["history"]] == ["start", "rejudge", "rollback"], state["history"]
    finally:
        server.stop()


def test_pause_resume_abort_and_bad_starts(registry, alerting):
    server, _ = alerting
    for body, status, message in [
        ({"to": 9}, 404, "no version 9"),
        ({"to": 1}, 409, "already flaky@production"),
        ({"to": 2, "steps": [50, 10]}, 400, "must rise"),
        ({"to": 2, "steps": [0]}, 400, "more than 0"),
        ({"to": 2, "interval": "soon"}, 400, "not a duration"),
        ({"to": 2, "alias": "nope"}, 404, "no alias 'nope'"),
        ({"steps": [5]}, 400, "the body must be JSON"),
    ]:
        answer = api(server, "POST", "/api/v1/models/flaky/rollout", json=body)
        assert answer.status_code == status and message in answer.json()["error"], (body, answer.text)
    out = registry.cli("rollout", "start", "flaky", "--to", "2", "--steps", "30,100", "--interval", "1h").stdout
    assert "v2 against v1 (production): running, step 1 of 2 at 30%" in out, out
    again = api(server, "POST", "/api/v1/models/flaky/rollout", json={"to": 2})
    assert again.status_code == 409 and "already has a running rollout" in again.json()["error"]
    taken = api(server, "PUT", "/api/v1/models/flaky/traffic", json={"weights": {"1": 100}})
    assert taken.status_code == 409 and "rollout to v2 sets its traffic policy" in taken.json()["error"], taken.text
    assert "paused" in registry.cli("rollout", "pause", "flaky").stdout
    assert api(server, "GET", "/api/v1/models/flaky/traffic").json()["weights"] == {"1": 70.0, "2": 30.0}
    assert "running" in registry.cli("rollout", "resume", "flaky").stdout
    status = registry.cli("rollout", "status", "flaky", "--server", f"http://{server.url}").stdout
    assert "this step so far" in status and "candidate v2" in status, status
    assert "aborted" in registry.cli("rollout", "abort", "flaky").stdout
    bad = registry.cli("rollout", "abort", "flaky", check=False)
    assert bad.returncode != 0 and "has ended (aborted)" in bad.stderr
    wait_for(lambda: api(server, "GET", "/api/v1/models/flaky/traffic").status_code == 404, "the traffic policy restored")
    assert api(server, "GET", "/api/v1/models/flaky").json()["aliases"]["production"] == 1
    assert api(server, "POST", "/api/v1/models/flaky/rollout/explode").status_code == 404


def test_a_rollout_survives_a_restart(registry):
    server = registry.serve()
    try:
        answer = api(server, "POST", "/api/v1/models/flaky/rollout", json={"to": 2, "steps": [50, 100], "interval": "1h"})
        assert answer.status_code == 201, answer.text
    finally:
        server.stop()
    server = registry.serve()
    try:
        state = rollout(server)
        assert state["state"] == "running" and state["step"] == 0
        session = requests.Session()
        seen = {infer(session, server, 5)["model_version"] for _ in range(60)}
        assert seen == {"1", "2"}
        assert "current_step" in state and state["current_step"]["candidate"]["requests"] >= 0
        api(server, "POST", "/api/v1/models/flaky/rollout/abort")
    finally:
        server.stop()


def test_a_canary_less_accurate_on_feedback_is_rolled_back_at_the_end_of_its_step(tmp_path):
    """With max_accuracy_drop, ground truth posted for the step's predictions (the prediction log joins it by
    request id) judges the candidate: a version whose labels are the stable one's inverted is rolled back."""
    import onnx
    from conftest import FIXTURES
    from registry_support import credit_table, pack
    model = onnx.load(os.path.join(FIXTURES, "gbc", "model.onnx"))
    graph = model.graph
    label = next(o for o in graph.output if o.name == "label")
    for node in graph.node:
        node.output[:] = ["label_original" if name == "label" else name for name in node.output]
    graph.initializer.append(onnx.helper.make_tensor("one", onnx.TensorProto.INT64, [], [1]))
    graph.node.append(onnx.helper.make_node("Sub", ["one", "label_original"], ["label"]))
    inverted = str(tmp_path / "inverted.onnx")
    onnx.save(model, inverted)
    assert label.name == "label"
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1), "--alias", "production")
    bundle = os.path.join(reg.tmp, "inverted.tern")
    from conftest import EXAMPLES
    holdout = os.path.join(os.path.dirname(EXAMPLES), "data", "credit-holdout.csv")
    tern("pack", inverted, "--name", "credit", "--version", "2", "-o", bundle, "--holdout", holdout, "--label-column", "default")
    reg.cli("push", bundle)
    server = reg.serve()
    try:
        # The gate runs before the first step: with no gate configured, the default one (accuracy on the
        # candidate's holdout at most 0.02 below the stable version's) refuses the inverted model.
        start = {"to": 2, "steps": [50, 100], "interval": 4, "min_requests": 10, "max_latency_ratio": 100}
        refused = api(server, "POST", "/api/v1/models/credit/rollout", json=start)
        assert refused.status_code == 409 and "validation gate refused to start" in refused.json()["error"], refused.text
        assert "--skip-gate" in refused.json()["error"] and api(server, "GET", "/api/v1/models/credit/traffic").status_code == 404
        cli = reg.cli("rollout", "start", "credit", "--to", "2", check=False)
        assert cli.returncode == 1 and "validation gate refused" in cli.stderr, cli.stderr
        # Forced past the gate (audited), it is judged on live quality by default (no max_accuracy_drop given).
        answer = api(server, "POST", "/api/v1/models/credit/rollout", json={**start, "skip_gate": True})
        assert answer.status_code == 201 and answer.json()["gate_skipped"], answer.text
        assert "gate-forced" in audit_actions(reg, "credit")
        x, y = credit_table(400, seed=31)
        session = requests.Session()
        feedback = []
        for index in range(80):
            rows = x[index * 5:(index + 1) * 5].astype(np.float32)
            response = session.post(f"http://{server.url}/v2/models/credit/infer", timeout=30, headers={"X-Request-ID": f"r-{index}"},
                                    json={"inputs": [{"name": "features", "datatype": "FP32", "shape": [5, 10], "data": rows.ravel().tolist()}]})
            assert response.status_code == 200
            feedback.append({"request_id": f"r-{index}", "label": y[index * 5:(index + 1) * 5].astype(int).tolist()})
        time.sleep(0.6)  # the prediction log's writer
        posted = api(server, "POST", "/api/v1/feedback", json=feedback)
        assert posted.status_code == 200 and posted.json()["accepted"] == 80, posted.text
        deadline = time.time() + 30
        while rollout(server, "credit")["state"] == "running":
            assert time.time() < deadline, ("the end of the first step", rollout(server, "credit"))
            time.sleep(0.2)
        state = rollout(server, "credit")
        assert state["state"] == "rolled_back" and "accuracy" in state["reason"] and "on feedback" in state["reason"], state
    finally:
        server.stop()


def test_after_a_rollback_a_promoted_rollout_takes_all_the_traffic(tmp_path):
    """A rollback restores the policy from before its rollout exactly (none here), so a later rollout that is
    promoted leaves every request without a version on the promoted version."""
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack_model(reg, controllable_models.steady, 1), "--alias", "production")
    reg.cli("push", pack_model(reg, controllable_models.steady, 2, scale=2.0))
    reg.cli("push", pack_model(reg, controllable_models.failing, 3, limit=100, scale=3.0))
    server = reg.serve()
    try:
        assert api(server, "POST", "/api/v1/models/flaky/rollout", json={
            "to": 3, "steps": [50, 100], "interval": "60s", "min_requests": 1000}).status_code == 201
        session = requests.Session()
        wait_for_state = time.time() + 30
        while rollout(server)["state"] == "running":
            assert time.time() < wait_for_state
            infer(session, server, 500)  # every row fails on v3: its circuit opens
        assert rollout(server)["state"] == "rolled_back"
        assert api(server, "GET", "/api/v1/models/flaky/traffic").status_code == 404  # nothing left behind
        assert api(server, "POST", "/api/v1/models/flaky/rollout", json={
            "to": 2, "steps": [50, 100], "interval": 1, "min_requests": 10, "max_latency_ratio": 1000}).status_code == 201
        deadline = time.time() + 60
        while rollout(server)["state"] == "running":
            assert time.time() < deadline, rollout(server)
            infer(session, server, 5)
        assert rollout(server)["state"] == "promoted", rollout(server)
        assert api(server, "GET", "/api/v1/models/flaky/traffic").status_code == 404
        assert {infer(session, server, 5)["model_version"] for _ in range(100)} == {"2"}
        # Promoted, then another rollout (back to v1, say): it starts from the promoted version, cleanly.
        again = api(server, "POST", "/api/v1/models/flaky/rollout", json={"to": 1, "steps": [20, 100], "interval": "1h"})
        assert again.status_code == 201 and again.json()["stable"] == 2, again.text
        assert api(server, "GET", "/api/v1/models/flaky/traffic").json()["weights"] == {"1": 20.0, "2": 80.0}
        assert api(server, "POST", "/api/v1/models/flaky/rollout/abort").status_code == 200
        assert api(server, "GET", "/api/v1/models/flaky/traffic").status_code == 404
    finally:
        server.stop()


@pytest.mark.skipif(not POSTGRES_URL, reason="TERN_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL server)")
def test_one_replica_drives_a_rollout_and_another_takes_over_when_it_dies(tmp_path):
    """Two replicas on one PostgreSQL registry: one holds the rollout lease and drives the steps; killed with
    SIGKILL, its lease expires and the other finishes the rollout. No step is taken twice."""
    import signal
    import subprocess
    reg = Registry("postgres", tmp_path, artifacts_in_database=True)
    reg.cli("push", pack_model(reg, controllable_models.steady, 1), "--alias", "production")
    reg.cli("push", pack_model(reg, controllable_models.steady, 2, scale=2.0))
    replicas = [reg.serve(data=str(tmp_path / f"replica-{i}")) for i in range(2)]
    try:
        answer = api(replicas[0], "POST", "/api/v1/models/flaky/rollout", json={
            "to": 2, "steps": [30, 60, 100], "interval": 1, "min_requests": 10, "max_latency_ratio": 1000})
        assert answer.status_code == 201, answer.text

        def holder():
            out = subprocess.run(["psql", reg.database, "-tA", "-c", "SELECT holder FROM tern_leases WHERE name = 'rollouts'"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            return out

        wait_for(lambda: holder() != "", "a replica taking the lease")
        first = holder()
        driving = next(r for r in replicas if first in r.output())  # the driver logs its holder name at start
        other = next(r for r in replicas if r is not driving)
        sessions = [requests.Session(), requests.Session()]
        # Traffic on both replicas; the driver sees its own share.
        while rollout(other)["step"] == 0 and rollout(other)["state"] == "running":
            for replica, session in zip(replicas, sessions):
                infer(session, replica, 5)
        driving.process.send_signal(signal.SIGKILL)
        driving.process.wait(timeout=10)
        deadline = time.time() + 60
        while rollout(other)["state"] == "running":
            assert time.time() < deadline, rollout(other)
            infer(sessions[1], other, 5)
        state = rollout(other)
        assert state["state"] == "promoted", state
        assert [e["event"] for e in state["history"]] == ["start", "step", "step", "promote"], state["history"]
        assert holder() != first
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.stop()
            else:
                replica.log.close()
