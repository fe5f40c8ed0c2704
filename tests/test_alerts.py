"""Alerts end to end against `tern serve`: a real webhook receiver (an HTTP server in the test), drift and
accuracy rules that fire and resolve, and the retraining command that pushes a candidate version."""
import http.server
import json
import os
import stat
import threading
import time

import shutil
import subprocess

import numpy as np
import pytest
import requests

from conftest import BINARY
from registry_support import Registry, credit_csv, credit_table, pack


class Receiver:
    """Collects the webhook posts (Alertmanager's JSON)."""

    def __init__(self):
        self.posts = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self, alert):
        return [p["status"] for p in self.posts if p["commonLabels"]["alertname"] == alert]


def wait_for(condition, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def credit_registry(tmp_path, holdout=False):
    """A registry holding the gbc credit model, packed with reference data (and holdout data)."""
    reference = str(tmp_path / "reference.csv")
    credit_csv(reference, 1500, seed=1)
    data = ["--reference", reference, "--label-column", "default"]
    if holdout:
        credit_csv(str(tmp_path / "holdout.csv"), 300, seed=2)
        data += ["--holdout", str(tmp_path / "holdout.csv")]
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", pack(str(tmp_path), "gbc", "credit", 1, *data), "--alias", "production")
    return registry, data


def send_shifted(server):
    """20 requests of 20 rows whose income is three times the reference's."""
    rows, _ = credit_table(400, seed=5)
    rows[:, 1] *= 3
    for index in range(20):
        chunk = rows[index * 20:(index + 1) * 20].astype(np.float32)
        answer = requests.post(f"http://{server.url}/v2/models/credit/infer", timeout=10, json={"inputs": [
            {"name": "features", "datatype": "FP32", "shape": list(chunk.shape), "data": chunk.ravel().tolist()}]})
        assert answer.status_code == 200
    return rows


def test_drift_and_accuracy_alerts_fire_retrain_and_resolve(tmp_path):
    registry, data = credit_registry(tmp_path, holdout=True)
    candidate = pack(str(tmp_path), "logreg", "credit", 2, *data)
    marker = tmp_path / "retrained.txt"
    script = tmp_path / "retrain.sh"
    script.write_text(
        "#!/bin/sh\nset -e\n"
        f"echo \"$TERN_MODEL $TERN_VERSION $TERN_ALERT $(wc -l < \"$TERN_DATA\")\" > {marker}\n"
        f"{BINARY} push {candidate} --alias candidate {' '.join(registry.args)} --actor retrain\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    receiver = Receiver()
    rules = tmp_path / "alerts.yaml"
    rules.write_text(f"""interval: 0.3s
webhooks: [{receiver.url}]
rules:
  - name: credit-drift
    model: credit
    metric: drift.drifted_features
    op: ">"
    threshold: 0
    window: 20
    severity: page
    retrain: {{command: {script}, timeout: 60s}}
  - name: credit-accuracy
    model: credit
    metric: feedback.accuracy
    op: "<"
    threshold: 0.6
    window: 100
""")
    server = registry.serve("--alert-rules", str(rules))
    url = f"http://{server.url}"
    predicted = {}

    def send(rows, prefix):
        for index in range(20):
            chunk = rows[index * 20:(index + 1) * 20].astype(np.float32)
            answer = requests.post(f"{url}/v2/models/credit/infer", headers={"X-Request-ID": f"{prefix}-{index}"}, timeout=10,
                                   json={"inputs": [{"name": "features", "datatype": "FP32", "shape": list(chunk.shape),
                                                     "data": chunk.ravel().tolist()}]})
            assert answer.status_code == 200
            predicted[f"{prefix}-{index}"] = {o["name"]: o for o in answer.json()["outputs"]}["label"]["data"]

    def alert(name):
        return {a["rule"]: a for a in requests.get(f"{url}/api/v1/alerts", timeout=10).json()["alerts"]}[name]

    try:
        like, _ = credit_table(400, seed=5)
        send(like, "calm")
        time.sleep(2)
        assert alert("credit-drift")["state"] == "inactive", alert("credit-drift")
        assert alert("credit-drift")["value"] == 0 and receiver.posts == []
        shifted = like.copy()
        shifted[:, 1] *= 3
        send(shifted, "shifted")
        wait_for(lambda: "firing" in receiver.statuses("credit-drift"), "the drift alert's webhook")
        post = next(p for p in receiver.posts if p["commonLabels"]["alertname"] == "credit-drift")
        assert post["version"] == "4" and post["alerts"][0]["labels"]["model"] == "credit"
        assert post["alerts"][0]["labels"]["severity"] == "page" and post["alerts"][0]["status"] == "firing"
        assert alert("credit-drift")["state"] == "firing"
        wait_for(marker.exists, "the retraining command")
        model, version, name, lines = marker.read_text().split()
        assert (model, version, name) == ("credit", "1", "credit-drift") and int(lines) == 1 + 20 * 20
        wait_for(lambda: requests.get(f"{url}/api/v1/models/credit", timeout=10).json()["aliases"].get("candidate") == 2,
                 "the candidate version")
        wait_for(lambda: any(e["action"] == "retrain" and "succeeded" in (e.get("after") or "")
                             for e in requests.get(f"{url}/api/v1/audit?model=credit", timeout=10).json()),
                 "the retraining run in the audit trail")
        assert alert("credit-drift")["last_retrain"] == "succeeded"

        # Wrong labels for the shifted predictions: accuracy 0 over them.
        wrong = [{"request_id": rid, "label": [1 - v for v in labels]} for rid, labels in predicted.items() if rid.startswith("shifted")]
        assert requests.post(f"{url}/api/v1/feedback", json=wrong, timeout=10).json()["accepted"] == 20
        wait_for(lambda: "firing" in receiver.statuses("credit-accuracy"), "the accuracy alert's webhook")
        assert alert("credit-accuracy")["value"] == 0

        # Normal traffic and true labels: both resolve.
        send(like, "calm-again")
        right = [{"request_id": rid, "label": labels} for rid, labels in predicted.items() if rid.startswith("shifted")]
        requests.post(f"{url}/api/v1/feedback", json=right, timeout=10)
        wait_for(lambda: "resolved" in receiver.statuses("credit-drift"), "the drift alert's resolution")
        wait_for(lambda: "resolved" in receiver.statuses("credit-accuracy"), "the accuracy alert's resolution")
        resolved = [p for p in receiver.posts if p["status"] == "resolved"][0]
        assert resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
        # Resolved says so, with the value now (not the firing wording).
        assert ": resolved: " in resolved["alerts"][0]["annotations"]["summary"], resolved["alerts"][0]["annotations"]
        assert alert("credit-drift")["state"] == "inactive" and alert("credit-drift")["last_resolved"]
        assert 'tern_alert_firing{alert="credit-drift",model="credit",severity="page"} 0' in requests.get(f"{url}/metrics", timeout=10).text
    finally:
        server.stop()


def test_a_malformed_rule_stops_the_server_naming_it(tmp_path):
    import subprocess
    for text, message in [
        ("rules:\n  - name: r1\n    model: m\n    metric: drift.nope\n    threshold: 1\n", "rule 'r1': unknown metric 'drift.nope'"),
        ("rules:\n  - name: r2\n    model: m\n    metric: error_rate\n    threshold: high\n", "rule 'r2': threshold must be a number"),
        ("rules:\n  - name: r3\n    model: m\n    metric: traffic\n    threshold: 1\n    for: soon\n", "rule 'r3': for: 'soon' is not a duration"),
        ("webhooks: [ftp://x]\nrules:\n  - {name: r4, model: m, metric: traffic, threshold: 1}\n", "webhooks must be a list of http(s) URLs"),
        ("rules: []\n", "rules must be a non-empty list"),
    ]:
        path = tmp_path / "rules.yaml"
        path.write_text(text)
        result = subprocess.run([BINARY, "serve", "--models", "examples/models", "--http-port", "0", "--grpc-port", "0",
                                 "--alert-rules", str(path)], capture_output=True, text=True, timeout=60,
                                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert result.returncode == 1 and message in result.stderr, (text, result.stderr)


PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(not (PROMETHEUS and ALERTMANAGER and PROMTOOL),
                    reason="prometheus, promtool and prometheus-alertmanager (Debian's packages) are needed")
def test_exported_rules_fire_through_prometheus_and_alertmanager(tmp_path):
    from conftest import free_port
    registry, _ = credit_registry(tmp_path)
    rules = tmp_path / "alerts.yaml"
    rules.write_text("interval: 0.3s\nrules:\n  - {name: credit-drift, model: credit, metric: drift.drifted_features, "
                     "op: '>', threshold: 0, window: 20, severity: page}\n")
    exported = tmp_path / "prometheus-rules.yml"
    subprocess.run([BINARY, "alerts", "export", str(rules), "-o", str(exported)], check=True)
    check = subprocess.run([PROMTOOL, "check", "rules", str(exported)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    receiver = Receiver()
    alertmanager_port, prometheus_port, metrics_port = free_port(), free_port(), free_port()
    (tmp_path / "alertmanager.yml").write_text(
        "route: {receiver: tern-test, group_wait: 0s, group_interval: 1s, repeat_interval: 1h}\n"
        f"receivers:\n  - name: tern-test\n    webhook_configs: [{{url: '{receiver.url}', send_resolved: true}}]\n")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{exported}']\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{alertmanager_port}']}}]}}]}}\n"
        f"scrape_configs: [{{job_name: tern, static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]}}]\n")
    logs = open(tmp_path / "neighbours.log", "w")
    alertmanager = subprocess.Popen([ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}",
                                     f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                                     "--cluster.listen-address="], stdout=logs, stderr=logs)
    prometheus = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                  stdout=logs, stderr=logs)
    server = registry.serve("--alert-rules", str(rules), "--metrics-port", str(metrics_port))
    try:
        send_shifted(server)
        wait_for(lambda: any(a["labels"].get("rule") == "credit-drift" and a["status"] == "firing"
                             for p in receiver.posts for a in p["alerts"]), "Alertmanager's delivery of the drift alert", timeout=60)
        post = receiver.posts[-1]
        alert = post["alerts"][0]
        assert post["receiver"] == "tern-test" and alert["labels"]["alertname"] == "credit_drift"
        assert alert["labels"]["model"] == "credit" and alert["labels"]["severity"] == "page"
    finally:
        server.stop()
        for process in (prometheus, alertmanager):
            process.terminate()
            process.wait(timeout=30)
        logs.close()


def test_a_hanging_webhook_delays_nothing(tmp_path):
    """A receiver that accepts the connection and never answers: the alert still fires, the API and
    inference answer at once, and the delivery gives up after its retries."""
    import socket
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    registry, _ = credit_registry(tmp_path)
    rules = tmp_path / "alerts.yaml"
    rules.write_text(f"interval: 0.3s\nwebhooks: ['http://127.0.0.1:{hang.getsockname()[1]}/hook']\nrules:\n"
                     "  - {name: credit-drift, model: credit, metric: drift.drifted_features, op: '>', threshold: 0, window: 20}\n")
    server = registry.serve("--alert-rules", str(rules))
    try:
        like = send_shifted(server)
        wait_for(lambda: requests.get(f"http://{server.url}/api/v1/alerts", timeout=10).json()["alerts"][0]["state"] == "firing",
                 "the alert firing")
        for _ in range(10):  # each within its own 2 s timeout, while the webhook hangs
            assert requests.get(f"http://{server.url}/api/v1/alerts", timeout=2).status_code == 200
            assert requests.post(f"http://{server.url}/v2/models/credit/infer", timeout=2, json={"inputs": [
                {"name": "features", "datatype": "FP32", "shape": [1, 10], "data": like[0].astype(np.float32).tolist()}]}).status_code == 200
        wait_for(lambda: "alert webhook failed" in server.output(), "the webhook's timeout in the log", timeout=20)
    finally:
        server.stop()
        hang.close()


def test_latency_and_time_window_rules(tmp_path):
    """latency_p99 (milliseconds over the last seconds) fires on a threshold the server's latency passes and
    stays quiet on one it never reaches; a drift rule over a time window (10m) sees the shifted traffic."""
    registry, _ = credit_registry(tmp_path)
    rules = tmp_path / "alerts.yaml"
    rules.write_text("interval: 0.3s\nrules:\n"
                     "  - {name: slow, model: credit, metric: latency_p99, op: '>', threshold: 0, window: 1m}\n"
                     "  - {name: very-slow, model: credit, metric: latency_p99, op: '>', threshold: 60000, window: 60}\n"
                     "  - {name: drift-10m, model: credit, metric: drift.drifted_features, op: '>', threshold: 0, window: 10m}\n")
    server = registry.serve("--alert-rules", str(rules))
    try:
        started = time.time()
        send_shifted(server)
        elapsed_ms = (time.time() - started) * 1000

        def alerts():
            return {a["rule"]: a for a in requests.get(f"http://{server.url}/api/v1/alerts", timeout=10).json()["alerts"]}
        wait_for(lambda: alerts()["slow"]["state"] == "firing" and alerts()["drift-10m"]["state"] == "firing", "both firing")
        now = alerts()
        # The p99 of 20 requests is the slowest; the server measured less than the client's whole loop took.
        assert 0 < now["slow"]["value"] < elapsed_ms, now["slow"]
        assert now["very-slow"]["state"] == "inactive" and now["very-slow"]["value"] == now["slow"]["value"]
        assert now["drift-10m"]["value"] >= 1
    finally:
        server.stop()
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: w, model: credit, metric: latency_p99, threshold: 5, window: soon}\n")
    result = subprocess.run([BINARY, "alerts", "check", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "rule 'w': window: 'soon' is not a duration" in result.stderr, result.stderr


def test_a_failing_retraining_command_is_retried_and_gets_the_labels(tmp_path):
    """The command fails once and succeeds the second time, after the backoff; TERN_DATA holds the window's
    inputs with a label column where feedback came."""
    registry, _ = credit_registry(tmp_path)
    script = tmp_path / "retrain.sh"
    marker, copy = tmp_path / "tried", tmp_path / "data.csv"
    script.write_text(f"#!/bin/sh\ncp \"$TERN_DATA\" {copy}\nif [ ! -e {marker} ]; then touch {marker}; exit 1; fi\nexit 0\n")
    script.chmod(0o755)
    rules = tmp_path / "alerts.yaml"
    rules.write_text("interval: 0.3s\nrules:\n"
                     "  - {name: credit-drift, model: credit, metric: drift.drifted_features, op: '>', threshold: 0,"
                     f" window: 20, for: 3s, retrain: {{command: {script}, retries: 2, backoff: 0.5s}}}}\n")
    server = registry.serve("--alert-rules", str(rules))
    try:
        rows, truth = credit_table(400, seed=5)
        rows[:, 1] *= 3
        for index in range(20):
            chunk = rows[index * 20:(index + 1) * 20].astype(np.float32)
            answer = requests.post(f"http://{server.url}/v2/models/credit/infer", timeout=10, headers={"X-Request-ID": f"r{index}"},
                                   json={"inputs": [{"name": "features", "datatype": "FP32", "shape": list(chunk.shape),
                                                     "data": chunk.ravel().tolist()}]})
            assert answer.status_code == 200
        time.sleep(0.6)  # the prediction log's writer
        labels = [int(t) for t in truth[:20]]
        assert requests.post(f"http://{server.url}/api/v1/feedback", timeout=10,
                             json=[{"request_id": "r0", "label": labels}]).json()["accepted"] == 1

        def retrains():
            return [e for e in json.loads(registry.cli("audit", "log", "--json").stdout) if e["action"] == "retrain"]
        wait_for(lambda: len(retrains()) == 2, "two retraining runs", timeout=30)
        outcomes = [e["after"] for e in retrains()]
        assert outcomes[0].endswith(": failed with status 1") and outcomes[1].endswith(": succeeded (attempt 2)"), outcomes
        # Read as a retraining script would: the ground truth under the bundle's label column, the model's
        # own outputs under prediction.<name>, never the same name twice.
        import pandas
        frame = pandas.read_csv(copy)
        assert len(set(frame.columns)) == len(frame.columns) and "income" in frame.columns
        assert frame.columns[-1] == "default" and "prediction.label" in frame.columns
        assert frame[frame["request_id"] == "r0"]["default"].tolist() == labels
        assert frame[frame["request_id"] == "r19"]["default"].isna().all()
    finally:
        server.stop()
