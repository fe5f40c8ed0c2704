"""Ground truth after the fact: feedback joined with the prediction log by request id, and each version's live
quality, checked against scikit-learn on the same predictions and labels."""
import json
import subprocess

import numpy as np
import pytest
import requests
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from conftest import BINARY, ROOT
from registry_support import Registry, credit_csv, credit_table, pack


@pytest.fixture
def served(tmp_path):
    reference, holdout = str(tmp_path / "reference.csv"), str(tmp_path / "holdout.csv")
    credit_csv(reference, 800, seed=1)
    credit_csv(holdout, 300, seed=2)
    bundle = pack(str(tmp_path), "gbc", "credit", 1, "--reference", reference, "--holdout", holdout,
                  "--label-column", "default")
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", bundle, "--alias", "production")
    server = registry.serve("--drift-interval", "0.3")
    yield server
    server.stop()


def post(server, payload, content_type=None):
    if content_type:
        return requests.post(f"http://{server.url}/api/v1/feedback", data=payload,
                             headers={"Content-Type": content_type}, timeout=10)
    return requests.post(f"http://{server.url}/api/v1/feedback", json=payload, timeout=10)


def test_feedback_gives_each_version_its_live_quality(served, tmp_path):
    x, y = credit_table(300, seed=9)
    labels, probabilities = [], []
    for index in range(60):
        rows = x[index * 5:(index + 1) * 5].astype(np.float32)
        answer = requests.post(f"http://{served.url}/v2/models/credit/infer", timeout=10,
                               headers={"X-Request-ID": f"loan-{index}"},
                               json={"inputs": [{"name": "features", "datatype": "FP32", "shape": [5, 10],
                                                 "data": rows.ravel().tolist()}]})
        assert answer.status_code == 200
        outputs = {o["name"]: o for o in answer.json()["outputs"]}
        labels += outputs["label"]["data"]
        probabilities += np.array(outputs["probabilities"]["data"]).reshape(5, 2).tolist()
    import time
    time.sleep(0.6)  # the prediction log's writer
    truth = y.astype(int).tolist()
    # Wrong labels first for loan-0: sent again below, the last wins.
    first = post(served, [{"request_id": "loan-0", "label": [1 - t for t in truth[:5]]}])
    assert first.json() == {"accepted": 1, "unknown": 0, "unknown_request_ids": []}
    feedback = [{"request_id": f"loan-{i}", "label": truth[i * 5:(i + 1) * 5], "time": "2026-11-30T10:00:00Z"}
                for i in range(40)]
    feedback += [{"request_id": "never-seen", "label": [1]}, {"request_id": "also-unknown", "value": 0.5}]
    answer = post(served, feedback)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 40, "unknown": 2, "unknown_request_ids": ["never-seen", "also-unknown"]}
    csv = "request_id,label\n" + "".join(f"loan-{i},{truth[i * 5]}\n" for i in range(40, 45))
    assert post(served, csv, "text/csv").status_code == 200  # one label for five rows: counted as mismatched
    csv = "request_id,label\n" + "".join(f"loan-{i},\"[{','.join(map(str, truth[i * 5:(i + 1) * 5]))}]\"\n" for i in range(45, 50))
    # A list written as text is one label "[0,1,...]", which is none of the model's classes: refused, nothing stored.
    refused = post(served, csv, "text/csv")
    assert refused.status_code == 400 and "is not one of credit version 1's classes" in refused.json()["error"], refused.text

    report = requests.get(f"http://{served.url}/api/v1/models/credit/performance", timeout=10).json()
    [version] = report["versions"]
    assert version["version"] == 1 and version["mismatched"] == 5  # the 5 one-label CSV rows
    live = version["live"]
    n = 40 * 5
    assert version["rows"] == n and live["rows"] == n
    t, p, pr = np.array(truth[:n]), np.array(labels[:n]), np.array(probabilities[:n])
    assert live["accuracy"] == pytest.approx(accuracy_score(t, p), rel=1e-12)
    assert live["roc_auc"] == pytest.approx(roc_auc_score(t, pr[:, 1]), rel=1e-9)
    assert live["log_loss"] == pytest.approx(log_loss(t, pr), rel=1e-6)
    assert live["f1"] == pytest.approx(f1_score(t, p), rel=1e-9)
    assert version["validation"]["rows"] == 300 and version["validation"]["roc_auc"] > 0.5
    assert version["label_delay_seconds_median"] is not None
    # The same live quality as gauges in /metrics: computed every --drift-interval, so a pass that ran
    # while the feedback was still arriving shows its value until the next pass.
    deadline = time.time() + 10
    while True:
        text = requests.get(f"http://{served.url}/metrics", timeout=10).text
        lines = [l for l in text.splitlines() if l.startswith('tern_feedback_quality{model="credit",version="1",metric="accuracy"}')]
        if lines and float(lines[0].rsplit(" ", 1)[1]) == pytest.approx(live["accuracy"], rel=1e-12):
            break
        assert time.time() < deadline, f"the feedback gauge never showed {live['accuracy']}: {lines}"
        time.sleep(0.2)
    # And in tern models show, through the server's API and from the prediction log beside the registry.
    for where in (["--server", f"http://{served.url}"], ["--data", str(tmp_path / "data")]):
        shown = subprocess.run([BINARY, "models", "show", "credit", *where], capture_output=True, text=True, cwd=ROOT)
        assert shown.returncode == 0, shown.stderr
        line = next(l for l in shown.stdout.splitlines() if l.strip().startswith("live ("))
        assert line.strip().startswith(f"live ({n // 5} predictions with feedback") and f"accuracy {live['accuracy']:.4f}" in line, line
        shown = subprocess.run([BINARY, "models", "show", "credit", "--json", *where], capture_output=True, text=True, cwd=ROOT)
        assert json.loads(shown.stdout)["live"][0]["live"]["accuracy"] == pytest.approx(live["accuracy"], rel=1e-12)


def test_a_prediction_is_readable_and_takes_feedback_as_soon_as_it_is_answered(served):
    """The log's writer flushes every 250 ms, but the server writes what it has answered before it reads the
    log: feedback posted right after its prediction is accepted, and the record is there, every time."""
    x, _ = credit_table(30, seed=4)
    for index in range(30):
        answer = requests.post(f"http://{served.url}/v2/models/credit/infer", timeout=10,
                               headers={"X-Request-ID": f"now-{index}"},
                               json={"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10],
                                                 "data": x[index].astype(np.float32).tolist()}]})
        assert answer.status_code == 200
        label = answer.json()["outputs"][0]["data"]
        if index % 2:
            record = requests.get(f"http://{served.url}/api/v1/predictions/now-{index}", timeout=10)
            assert record.status_code == 200 and record.json()["predictions"][0]["request_id"] == f"now-{index}", record.text
        accepted = post(served, [{"request_id": f"now-{index}", "label": label}])
        assert accepted.json() == {"accepted": 1, "unknown": 0, "unknown_request_ids": []}, (index, accepted.text)


@pytest.mark.parametrize("payload, message", [
    ({"request_id": "x", "label": 1}, "JSON list"),
    ([{"label": 1}], "request_id"),
    ([{"request_id": "x"}], "label"),
    ([{"request_id": "x", "label": 1, "value": 2}], "one of them"),
    ([{"request_id": "x", "value": "high"}], "value must be a number"),
    ([{"request_id": "x", "label": {"a": 1}}], "label must be a string or a number"),
    ([{"request_id": "x", "label": 1, "time": "yesterday"}], "not a time"),
])
def test_bad_feedback_is_refused_whole(served, payload, message):
    answer = post(served, payload)
    assert answer.status_code == 400 and message in answer.json()["error"], answer.text


def test_feedback_needs_a_database_log(tmp_path):
    from conftest import EXAMPLES, Server
    server = Server(EXAMPLES, "--prediction-log", f"jsonl:{tmp_path / 'log'}", log_dir=str(tmp_path))
    try:
        answer = post(server, [{"request_id": "x", "label": 1}])
        assert answer.status_code == 400 and "database" in answer.json()["error"]
    finally:
        server.stop()
