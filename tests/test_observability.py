"""Observability against a live `tern serve`: Prometheus (Debian's) scraping /metrics, the dashboard's and
rules' expressions evaluated by it, request ids in answers and JSON logs, and hostile ids and trace headers."""
import json
import os
import re
import shutil
import subprocess
import time

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import ROOT, Server, free_port

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "tern-dashboard.json")
RULES = os.path.join(ROOT, "deploy", "prometheus", "rules.yml")

ROWS = np.array([[41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42],
                 [23, 18000, 0.72, 2, 3, 1, 25000, 0.5, 3, 0.97]], dtype=np.float32)


def infer_rest(url, rows=ROWS, headers=None, body_id=None, model="credit-risk"):
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape), "data": rows.tolist()}]}
    if body_id is not None:
        body["id"] = body_id
    return requests.post(f"http://{url}/v2/models/{model}/infer", json=body, headers=headers or {}, timeout=10)


def infer_grpc(server, rows=ROWS, metadata=None, model="credit-risk"):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("features", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    return client.infer(model, [tensor], headers=metadata or {})


def scrape(url):
    text = requests.get(f"http://{url}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return text, samples


def requests_total(samples, **labels):
    total = 0.0
    for name, value in samples.items():
        if name.startswith("tern_requests_total{") and all(f'{k}="{v}"' in name for k, v in labels.items()):
            total += value
    return total


@pytest.fixture
def server(repository, tmp_path):
    server = Server(repository, "--log-format", "json", "--access-log", "1", log_dir=str(tmp_path))
    yield server
    server.stop()


def test_metrics_count_every_request_by_model_version_protocol_and_outcome(server):
    _, before = scrape(server.url)
    for _ in range(7):
        assert infer_rest(server.url).status_code == 200
    for _ in range(5):
        infer_grpc(server)
    assert infer_rest(server.url, model="credit-risk", rows=np.zeros((1, 3), np.float32)).status_code == 400
    for name in ["nope", "x" * 300, "a\nb"]:
        assert infer_rest(server.url, model=requests.utils.quote(name, safe="")).status_code == 404
    text, after = scrape(server.url)
    delta = lambda **labels: requests_total(after, **labels) - requests_total(before, **labels)  # noqa: E731
    assert delta(model="credit-risk", version="2", protocol="v2_rest", outcome="success") == 7
    assert delta(model="credit-risk", version="2", protocol="v2_grpc", outcome="success") == 5
    assert delta(model="credit-risk", version="2", protocol="v2_rest", outcome="client_error") == 1
    # Unknown names are counted without creating series of their own.
    assert delta(model="", version="", protocol="v2_rest", outcome="client_error") == 3
    assert "nope" not in text and "xxxx" not in text
    rows = lambda samples: samples.get('tern_rows_predicted_total{model="credit-risk",version="2"}', 0)  # noqa: E731
    assert rows(after) - rows(before) == 12 * 2
    count = 'tern_request_duration_seconds_count{model="credit-risk",version="2"}'
    assert after[count] - before.get(count, 0) == 13
    assert after['tern_model_loaded{model="credit-risk",version="2"}'] == 1
    assert after['tern_requests_in_flight{model="credit-risk",version="2"}'] == 0
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"]:
        assert after[name] > 0, name
    assert abs(after["process_start_time_seconds"] - time.time()) < 600


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")
def test_promtool_accepts_the_metrics_and_the_rules(server):
    infer_rest(server.url)
    text, _ = scrape(server.url)
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr


def dashboard_expressions():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"].replace("$__rate_interval", "1m").replace("$model", ".*")


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian's package) is not installed")
def test_prometheus_scrapes_tern_and_every_dashboard_panel_has_data(repository, tmp_path):
    metrics_port = free_port()
    server = Server(repository, "--metrics-port", str(metrics_port), log_dir=str(tmp_path))
    prometheus_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {RULES}\n"
        "scrape_configs:\n  - job_name: tern\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"

    def query(expr):
        answer = requests.get(f"{api}/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]

    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if query('up{job="tern"} == 1'):
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("Prometheus never scraped tern:\n" + open(tmp_path / "prometheus.log").read())
        # /metrics lives on its own port: the HTTP port has no such route.
        assert requests.get(f"http://{server.url}/metrics", timeout=5).status_code == 404
        sent_rest, sent_grpc = 0, 0
        deadline = time.time() + 6
        while time.time() < deadline:  # several scrapes' worth of traffic, so that rates have two samples
            assert infer_rest(server.url).status_code == 200
            infer_grpc(server)
            sent_rest += 1
            sent_grpc += 1
            time.sleep(0.05)
        time.sleep(2.5)  # the last scrape after the traffic
        counted = query('sum by (protocol) (tern_requests_total{model="credit-risk",outcome="success"})')
        by_protocol = {r["metric"]["protocol"]: float(r["value"][1]) for r in counted if float(r["value"][1])}
        assert by_protocol == {"v2_rest": sent_rest, "v2_grpc": sent_grpc}, (by_protocol, sent_rest, sent_grpc)
        empty = [(title, expr) for title, expr in dashboard_expressions() if not query(expr)]
        assert not empty, f"dashboard panels without data: {empty}"
        rules = requests.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        assert {g["name"] for g in rules} == {"tern-recording", "tern-alerts"}
        assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
        assert query("tern:request_rate:1m"), "the recording rule has no data"
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        server.stop()


def log_lines(server):
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))  # every line is one JSON object
        else:
            raise AssertionError(f"a log line that is not JSON: {line!r}")
    return lines


def test_request_ids_are_honoured_or_made_and_found_in_answers_and_logs(server):
    given = infer_rest(server.url, headers={"X-Request-ID": "loan-7-rest"})
    assert given.status_code == 200 and given.headers["X-Request-ID"] == "loan-7-rest"
    made = infer_rest(server.url)
    made_id = made.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", made_id), made_id
    from_body = infer_rest(server.url, body_id="loan-8-body")
    assert from_body.headers["X-Request-ID"] == "loan-8-body" and from_body.json()["id"] == "loan-8-body"
    refused = infer_rest(server.url, rows=np.zeros((1, 3), np.float32), headers={"X-Request-ID": "bad-1"})
    assert refused.status_code == 400 and refused.headers["X-Request-ID"] == "bad-1"
    v1 = requests.post(f"http://{server.url}/v1/models/credit-risk:predict", json={"instances": ROWS.tolist()},
                       headers={"X-Request-ID": "loan-9-v1"}, timeout=10)
    assert v1.status_code == 200 and v1.headers["X-Request-ID"] == "loan-9-v1"

    channel = grpc.insecure_channel(server.grpc_url)
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    request = service_pb2.ModelInferRequest(model_name="credit-risk")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=[2, 10])
    tensor.contents.fp32_contents.extend(ROWS.reshape(-1).tolist())
    _, call = stub.ModelInfer.with_call(request, metadata=[("x-request-id", "loan-10-grpc")])
    assert ("x-request-id", "loan-10-grpc") in call.initial_metadata()
    _, call = stub.ModelInfer.with_call(request)
    grpc_made = dict(call.initial_metadata())["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", grpc_made)
    with pytest.raises(grpc.RpcError) as failure:
        stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"), metadata=[("x-request-id", "grpc-bad")])
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert ("x-request-id", "grpc-bad") in failure.value.trailing_metadata()

    time.sleep(0.2)
    access = {line["request_id"]: line for line in log_lines(server) if line.get("message") == "request"}
    for request_id, protocol, status in [
        ("loan-7-rest", "v2_rest", "success"), (made_id, "v2_rest", "success"), ("loan-8-body", "v2_rest", "success"),
        ("bad-1", "v2_rest", "client_error"), ("loan-9-v1", "kserve_v1", "success"),
        ("loan-10-grpc", "v2_grpc", "success"), (grpc_made, "v2_grpc", "success"), ("grpc-bad", "v2_grpc", "client_error"),
    ]:
        line = access[request_id]
        assert line["protocol"] == protocol and line["status"] == status, line
        assert float(line["latency_ms"]) > 0 and line["logger"] == "tern.request"
        if status == "success":
            assert line["model"] == "credit-risk" and line["version"] == "2", line


def test_hostile_ids_and_trace_headers_are_contained(server):
    huge = "x" * 10_000
    answer = infer_rest(server.url, headers={"X-Request-ID": huge})
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "x" * 128
    answer = infer_rest(server.url, body_id="line-1\nforged {\"level\":\"critical\"}")
    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "line-1?forged {\"level\":\"critical\"}"
    for traceparent in ["garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01", "00-xyz", "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
                        "00-" + "A" * 32 + "-" + "b" * 16 + "-01", "\x7f" * 10]:
        try:
            answer = infer_rest(server.url, headers={"traceparent": traceparent})
        except (requests.exceptions.InvalidHeader, ValueError):
            continue  # the client library refuses to send it
        # A control character is refused by the HTTP parser itself (400); every other value is ignored.
        assert answer.status_code == (400 if "\x7f" in traceparent else 200), (traceparent, answer.text)
    time.sleep(0.2)
    lines = log_lines(server)  # parses every line as JSON: no line was forged
    assert not any(line.get("level") == "critical" for line in lines)
    forged = [line for line in lines if line.get("request_id", "").startswith("line-1")]
    assert forged and forged[0]["request_id"] == "line-1?forged {\"level\":\"critical\"}"
    assert all("trace_id" not in line for line in lines)
    _, samples = scrape(server.url)
    assert not any("garbage" in name or "xxxx" in name for name in samples)


class OTLPReceiver:
    """An OTLP/HTTP trace receiver (protobuf), as a collector would run it: keeps every span it is sent."""

    def __init__(self):
        import http.server
        import threading
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest, ExportTraceServiceResponse)
        receiver = self
        self.spans = []
        self.paths = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.paths.append((self.path, self.headers.get("Content-Type")))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            receiver.spans.append((service, span))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def attributes(span):
    values = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind)
    return values


def test_traces_join_the_callers_and_reach_an_otlp_receiver(repository, tmp_path, monkeypatch):
    receiver = OTLPReceiver()
    log = str(tmp_path / "p.sqlite")
    server = Server(repository, "--otlp-endpoint", receiver.url, "--log-format", "json", "--access-log", "1",
                    "--prediction-log", log, log_dir=str(tmp_path))
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    grpc_trace, grpc_parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    try:
        assert infer_rest(server.url, headers={"X-Request-ID": "traced-rest",
                                               "traceparent": f"00-{trace_id}-{parent_id}-01"}).status_code == 200
        infer_grpc(server, metadata={"x-request-id": "traced-grpc", "traceparent": f"00-{grpc_trace}-{grpc_parent}-01"})
        assert infer_rest(server.url, headers={"X-Request-ID": "untraced"}).status_code == 200
        deadline = time.time() + 20
        while time.time() < deadline and sum(1 for _, s in receiver.spans if s.kind == s.SPAN_KIND_SERVER) < 3:
            time.sleep(0.2)
        roots = {attributes(s)["tern.request_id"]: s for _, s in receiver.spans if s.kind == s.SPAN_KIND_SERVER}
        assert set(roots) >= {"traced-rest", "traced-grpc", "untraced"}, [s.name for _, s in receiver.spans]
        assert all(path == "/v1/traces" and kind == "application/x-protobuf" for path, kind in receiver.paths)
        assert {service for service, _ in receiver.spans} == {"tern"}
        for request_id, trace, parent, protocol in [("traced-rest", trace_id, parent_id, "v2_rest"),
                                                    ("traced-grpc", grpc_trace, grpc_parent, "v2_grpc")]:
            root = roots[request_id]
            assert root.trace_id.hex() == trace and root.parent_span_id.hex() == parent, request_id
            assert root.name == "infer credit-risk"
            values = attributes(root)
            assert values["tern.model"] == "credit-risk" and values["tern.model_version"] == 2
            assert values["tern.protocol"] == protocol
            children = {s.name: s for _, s in receiver.spans
                        if s.trace_id == root.trace_id and s.parent_span_id == root.span_id}
            assert {"decode", "queue", "run", "encode"} <= set(children), (request_id, sorted(children))
            for child in children.values():
                assert root.start_time_unix_nano <= child.start_time_unix_nano <= child.end_time_unix_nano \
                    <= root.end_time_unix_nano, (request_id, child.name)
            assert children["queue"].end_time_unix_nano <= children["run"].start_time_unix_nano + 1000
            assert attributes(children["run"])["tern.batch.requests"] >= 1
            assert abs(root.start_time_unix_nano / 1e9 - time.time()) < 60
        untraced = roots["untraced"]
        assert untraced.trace_id.hex() not in (trace_id, grpc_trace) and not untraced.parent_span_id
        # The same ids in the access log and the prediction log.
        time.sleep(0.5)
        access = {line["request_id"]: line for line in log_lines(server) if line.get("message") == "request"}
        assert access["traced-rest"]["trace_id"] == trace_id and access["traced-grpc"]["trace_id"] == grpc_trace
        assert "trace_id" not in access["untraced"]
        answer = requests.get(f"http://{server.url}/api/v1/predictions/traced-grpc", timeout=10).json()
        assert answer["predictions"][0]["trace_id"] == grpc_trace
    finally:
        server.stop()
        receiver.close()
