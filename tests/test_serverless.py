"""Serverless contracts (issue 15): `$PORT` (Cloud Run, Knative, KServe) and AWS Lambda container images
through the Lambda Runtime API, tested against an implementation of the Runtime API's documented HTTP
contract in this file (next invocation, response, error); answers compared with onnxruntime."""
import base64
import http.server
import json
import os
import queue
import subprocess
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import requests

from conftest import BINARY, EXAMPLES, ROOT, free_port

ROW = [[41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]]


def expected_probabilities():
    session = ort.InferenceSession(os.path.join(EXAMPLES, "credit-risk", "2", "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"features": np.array(ROW, dtype=np.float32)})))["probabilities"]


def test_port_comes_from_the_environment_when_no_flag_names_it(tmp_path):
    port = free_port()
    env = dict(os.environ, PORT=str(port))
    process = subprocess.Popen([BINARY, "serve", "--models", EXAMPLES, "--no-grpc"], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline and process.poll() is None
            time.sleep(0.05)
        # tern health reads $PORT too.
        health = subprocess.run([BINARY, "health"], env=env, capture_output=True, text=True, timeout=30)
        assert health.returncode == 0 and health.stdout.strip() == "ready", health
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    bad = subprocess.run([BINARY, "serve", "--models", EXAMPLES], env=dict(os.environ, PORT="eighty"),
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert bad.returncode != 0 and "$PORT is 'eighty'" in bad.stderr
    down = subprocess.run([BINARY, "health", "--url", f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "not ready" in down.stdout


class RuntimeAPI:
    """The Lambda Runtime API's HTTP contract: GET /2018-06-01/runtime/invocation/next hands out the queued
    events (with Lambda-Runtime-Aws-Request-Id), POST .../invocation/{id}/response and .../error record the
    function's answers."""

    def __init__(self):
        self.events = queue.Queue()
        self.answers = {}
        self.first_answer_at = None
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                assert self.path == "/2018-06-01/runtime/invocation/next", self.path
                request_id, event = api.events.get()
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                parts = self.path.split("/")  # /2018-06-01/runtime/invocation/{id}/{response|error}
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if api.first_answer_at is None:
                    api.first_answer_at = time.monotonic()
                api.answers[parts[4]] = (parts[5], json.loads(body), self.headers.get("Lambda-Runtime-Function-Error-Type"))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, request_id, timeout=30):
        deadline = time.time() + timeout
        while request_id not in self.answers:
            assert time.time() < deadline, f"no answer for {request_id}"
            time.sleep(0.01)
        return self.answers[request_id]


@pytest.fixture
def lambda_function():
    api = RuntimeAPI()
    started = time.monotonic()
    api.events.put(("first", {"version": "2.0", "rawPath": "/v2/health/ready", "rawQueryString": "",
                              "requestContext": {"http": {"method": "GET", "path": "/v2/health/ready"}}}))
    process = subprocess.Popen(
        [BINARY, "serve", "--models", EXAMPLES, "--no-grpc", "--http-port", str(free_port())],
        env=dict(os.environ, AWS_LAMBDA_RUNTIME_API=api.address), cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield api, started
    process.terminate()
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output


def test_a_lambda_function_answers_api_gateway_and_function_url_events(lambda_function):
    api, started = lambda_function
    kind, answer, _ = api.wait("first")
    cold_start = api.first_answer_at - started
    print(f"cold start to the first answer: {cold_start * 1000:.0f} ms")
    assert kind == "response" and answer["statusCode"] == 200
    expected = expected_probabilities()
    request = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW}]}
    # HTTP API (v2) / function URL event with a JSON body.
    api.events.put(("v2", {"version": "2.0", "rawPath": "/v2/models/credit-risk/infer", "rawQueryString": "",
                           "headers": {"content-type": "application/json"}, "body": json.dumps(request), "isBase64Encoded": False,
                           "requestContext": {"http": {"method": "POST", "path": "/v2/models/credit-risk/infer"}}}))
    # REST API (v1) event with a base64 body, to the KServe v1 route.
    body = base64.b64encode(json.dumps({"instances": ROW}).encode()).decode()
    api.events.put(("v1", {"httpMethod": "POST", "path": "/v1/models/credit-risk:predict", "headers": {"Content-Type": "application/json"},
                           "queryStringParameters": None, "body": body, "isBase64Encoded": True}))
    # A bad request is the HTTP answer's 400, not a failed invocation.
    api.events.put(("bad", {"version": "2.0", "rawPath": "/v2/models/credit-risk/infer", "body": "{",
                            "requestContext": {"http": {"method": "POST"}}}))
    # An event that is not an HTTP event goes to the error route.
    api.events.put(("odd", {"detail-type": "Scheduled Event", "source": "aws.events"}))
    kind, answer, _ = api.wait("v2")
    assert kind == "response" and answer["statusCode"] == 200 and answer["isBase64Encoded"] is False
    outputs = {o["name"]: o for o in json.loads(answer["body"])["outputs"]}
    np.testing.assert_allclose(np.array(outputs["probabilities"]["data"]).reshape(1, -1), expected, rtol=1e-5)
    kind, answer, _ = api.wait("v1")
    assert kind == "response" and answer["statusCode"] == 200
    np.testing.assert_allclose(np.array(json.loads(answer["body"])["predictions"][0]["probabilities"]), expected[0], rtol=1e-5)
    kind, answer, _ = api.wait("bad")
    assert kind == "response" and answer["statusCode"] == 400 and "error" in json.loads(answer["body"])
    kind, answer, error_type = api.wait("odd")
    assert kind == "error" and error_type == "TernInvocationError" and "not an HTTP event" in answer["errorMessage"]
