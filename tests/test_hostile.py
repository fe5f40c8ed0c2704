"""A hostile client against a real `tern serve`: each case broke (or slowed) the server once; each asserts the
fixed behaviour, and that the server is alive and its registry consistent afterwards.

Loops are bounded in count and time; all traffic stays on loopback.
"""
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import zipfile

import grpc
import numpy as np
import pytest
import requests
from tritonclient.grpc import service_pb2, service_pb2_grpc

from conftest import BINARY, EXAMPLES, Server
from registry_support import Registry, api, pack, rewrite_bundle, state

ROW = [41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]
MAX_VERSION = 999_999_999


def infer_body(rows=1, value=None):
    data = (value if value is not None else ROW) * rows
    return json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [rows, 10], "data": data}]})


def proc_stat(pid):
    """(CPU seconds used, resident MB) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def alive(server):
    response = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", data=infer_body(), timeout=10)
    assert response.status_code == 200, response.text
    return response


def consistent(registry, server):
    """The registry after an attack: its chain verifies, and every stored artifact belongs to a version."""
    verify = registry.cli("audit", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    models = api(server, "GET", "/api/v1/models").json()
    shas = {v["sha256"] for m in models for v in m["versions"]}
    folder = os.path.join(registry.data, "artifacts")
    stored = set()
    for _, _, files in os.walk(folder):
        stored |= {name.split(".")[0] for name in files}
    assert stored <= shas, f"orphan artifacts: {stored - shas}"
    uploads = os.path.join(registry.data, "uploads")
    assert not os.path.isdir(uploads) or not os.listdir(uploads), os.listdir(uploads)


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    registry = Registry("sqlite", tmp)
    bundle = pack(str(tmp), "logreg", "credit-risk", 1)
    registry.cli("push", bundle)
    server = registry.serve()
    yield registry, server, str(tmp), bundle
    server.stop()


# 1. Numbers from outside: versions


def test_huge_versions_are_refused_and_the_next_version_never_overflows(reg):
    registry, server, tmp, bundle = reg
    huge = rewrite_bundle(bundle, lambda files: files.update({"tern.json": json.dumps(
        {**json.loads(files["tern.json"]), "version": 9223372036854775807}).encode()}))
    before = state(server)
    response = api(server, "POST", "/api/v1/bundles", data=huge)
    assert response.status_code == 400 and "between 1 and 999999999" in response.json()["error"], response.text
    response = api(server, "POST", "/api/v1/bundles?version=9223372036854775807", data=open(bundle, "rb").read())
    assert response.status_code == 400, response.text
    assert state(server) == before

    top = pack(tmp, "gbc", "edge", MAX_VERSION)
    assert api(server, "POST", "/api/v1/bundles", data=open(top, "rb").read()).status_code == 201
    plain = pack(tmp, "logreg", "edge", 1)
    no_version = rewrite_bundle(plain, lambda files: files.update({"tern.json": json.dumps(
        {k: v for k, v in json.loads(files["tern.json"]).items() if k != "version"}).encode()}))
    for _ in range(2):  # the crash used to come back on every later push
        response = api(server, "POST", "/api/v1/bundles", data=no_version)
        assert response.status_code == 409 and "highest version" in response.json()["error"], response.text
    alive(server)
    # the CLI refuses out-of-range versions before doing anything
    result = registry.cli("push", bundle, "--version", "9223372036854775807", check=False)
    assert result.returncode != 0 and "between 1 and 999999999" in result.stderr
    consistent(registry, server)


# 2. gRPC: many calls on one connection


def test_a_thousand_concurrent_grpc_calls_on_one_channel_are_all_answered(server):
    request = service_pb2.ModelInferRequest(model_name="credit-risk")
    tensor = request.inputs.add(name="features", datatype="FP32", shape=[1, 10])
    request.raw_input_contents.append(np.array([ROW], dtype=np.float32).tobytes())
    assert tensor.name == "features"
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        futures = [stub.ModelInfer.future(request, timeout=60) for _ in range(1000)]
        codes = {}
        for future in futures:
            try:
                future.result()
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as error:
                codes[error.code().name] = codes.get(error.code().name, 0) + 1
    # every call answered; a refusal, if any, is per call (RESOURCE_EXHAUSTED), never the connection
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"} and codes.get("OK", 0) >= 900, codes


# 3. Upload bombs


def bomb(bundle, profile_bytes, honest=True):
    """A bundle whose profile.json inflates to `profile_bytes` of zeros (deflated to a tiny entry)."""
    with zipfile.ZipFile(bundle) as source:
        files = {name: source.read(name) for name in source.namelist()}
    doc = json.loads(files["tern.json"])
    digest = hashlib.sha256()
    chunk = b"0" * (1 << 20)
    for _ in range(profile_bytes >> 20):
        digest.update(chunk)
    doc["files"]["profile.json"] = {"sha256": digest.hexdigest() if honest else "0" * 64,
                                    "bytes": profile_bytes if honest else 1000}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in files.items():
            if name == "tern.json":
                target.writestr(name, json.dumps(doc))
            elif name != "profile.json":
                target.writestr(name, data)
        with target.open("profile.json", "w", force_zip64=True) as entry:
            for _ in range(profile_bytes >> 20):
                entry.write(chunk)
    return out.getvalue()


@pytest.mark.parametrize("honest", [True, False])
def test_a_zip_bomb_is_refused_before_it_inflates(reg, honest):
    registry, server, _, bundle = reg
    data = bomb(bundle, 512 << 20, honest=honest)
    assert len(data) < 2 << 20
    before = state(server)
    cpu0, rss0 = proc_stat(server.process.pid)
    started = time.time()
    response = api(server, "POST", "/api/v1/bundles", data=data)
    elapsed = time.time() - started
    cpu1, rss1 = proc_stat(server.process.pid)
    assert response.status_code == 400, response.text
    assert "profile.json" in response.json()["error"], response.text
    assert elapsed < 5 and cpu1 - cpu0 < 3, (elapsed, cpu1 - cpu0)
    assert rss1 - rss0 < 100, f"RSS grew {rss1 - rss0:.0f} MB"
    assert state(server) == before
    alive(server)
    consistent(registry, server)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_a_zip_with_two_manifests_is_refused(reg):
    registry, server, _, bundle = reg
    with zipfile.ZipFile(bundle) as source:
        files = {name: source.read(name) for name in source.namelist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
        target.writestr("tern.json", files["tern.json"].replace(b'"credit-risk"', b'"other"'))
    before = state(server)
    response = api(server, "POST", "/api/v1/bundles", data=out.getvalue())
    assert response.status_code == 400 and "twice" in response.json()["error"], response.text
    assert state(server) == before


def test_junk_uploads_are_cheap_and_never_block_inference(reg):
    registry, server, _, _ = reg
    zeros = b"\0" * (64 << 20)
    latencies = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            started = time.time()
            alive(server)
            latencies.append(time.time() - started)
            time.sleep(0.05)

    thread = threading.Thread(target=probe)
    thread.start()
    cpu0, _ = proc_stat(server.process.pid)
    try:
        response = api(server, "POST", "/api/v1/bundles", data=zeros)
    finally:
        stop.set()
        thread.join()
    cpu1, _ = proc_stat(server.process.pid)
    assert response.status_code == 400 and "zip" in response.json()["error"], response.text
    assert cpu1 - cpu0 < 5, f"{cpu1 - cpu0:.1f} s of CPU for 64 MB of zeros"
    assert latencies and max(latencies) < 2, max(latencies)
    index = requests.post(f"http://{server.url}/v2/repository/index", timeout=5)
    assert index.status_code == 200
    consistent(registry, server)


def test_an_abandoned_upload_stops_costing_at_once(reg):
    registry, server, _, _ = reg
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /api/v1/bundles HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1073741824\r\n\r\n")
        chunk = b"\1" * (1 << 20)
        for _ in range(200):
            sock.sendall(chunk)
    time.sleep(1)
    cpu0, rss0 = proc_stat(server.process.pid)
    time.sleep(3)
    cpu1, rss1 = proc_stat(server.process.pid)
    assert cpu1 - cpu0 < 0.5, f"{cpu1 - cpu0:.2f} s of CPU after the client left"
    assert rss1 < 400, rss1
    alive(server)
    consistent(registry, server)


def test_a_body_is_refused_by_its_content_length_before_it_is_read(reg):
    _, server, _, _ = reg
    for path, length in [("/api/v1/bundles", 3_000_000_000), ("/v2/models/credit-risk/infer", 70 << 20),
                         ("/v2/models/credit-risk/infer", 3_000_000_000), ("/v1/models/credit-risk:predict", 70 << 20)]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n".encode())
            answer = sock.recv(4096).decode(errors="replace")
            assert answer.startswith("HTTP/1.1 413"), (path, answer)
            assert "connection: close" in answer.lower() and "--max-" in answer, answer


def test_pushing_the_same_bundle_again_changes_nothing(reg):
    registry, server, tmp, _ = reg
    again = pack(tmp, "gbc", "idempotent", 3)
    first = api(server, "POST", "/api/v1/bundles", data=open(again, "rb").read())
    assert first.status_code == 201, first.text
    before = state(server)
    second = api(server, "POST", "/api/v1/bundles", data=open(again, "rb").read())
    assert second.status_code == 200 and second.json()["version"] == 3, second.text
    assert state(server) == before
    consistent(registry, server)


# 4. Request bodies cost linear CPU


def test_body_cost_grows_linearly_with_its_size(server):
    costs = {}
    for megabytes in (8, 32):
        rows = megabytes * (1 << 20) // 60
        body = infer_body(rows).encode()
        cpu0, _ = proc_stat(server.process.pid)
        for _ in range(2):
            response = requests.post(f"http://{server.url}/v2/models/pipeline_categorical/infer", data=body, timeout=120)
            assert response.status_code == 400  # a real parse of every number, then refused by the signature
        cpu1, _ = proc_stat(server.process.pid)
        costs[megabytes] = (cpu1 - cpu0) / 2
    # linear: 4x the bytes, about 4x the CPU (quadratic was 16x and more)
    assert costs[32] < 8 * max(costs[8], 0.02), costs


# 5. Shutdown drains


def test_sigterm_under_keep_alive_load_loses_no_request(repository):
    server = Server(repository, "--drain-timeout", "10")
    lost, answered = [], []
    stop = threading.Event()
    body = infer_body().encode()
    request = (f"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n"
               .encode() + body)

    def http_client():
        sock = socket.create_connection(("127.0.0.1", server.port))
        reader = sock.makefile("rb")
        try:
            while True:
                try:
                    sock.sendall(request)
                except OSError:
                    return  # the server closed an idle connection before this request was sent: nothing lost
                try:
                    status = reader.readline()
                    if not status:
                        lost.append("closed without an answer")
                        return
                    headers = {}
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        key, _, value = line.decode().partition(":")
                        headers[key.strip().lower()] = value.strip()
                    reader.read(int(headers["content-length"]))
                    answered.append(status)
                    if headers.get("connection") == "close":
                        return
                except OSError as error:
                    lost.append(repr(error))
                    return
        finally:
            sock.close()

    grpc_failures, grpc_ok = [], []

    def grpc_client():
        message = service_pb2.ModelInferRequest(model_name="credit-risk")
        message.inputs.add(name="features", datatype="FP32", shape=[1, 10])
        message.raw_input_contents.append(np.array([ROW], dtype=np.float32).tobytes())
        with grpc.insecure_channel(server.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.ModelInfer(message, timeout=10)
                    grpc_ok.append(1)
                except grpc.RpcError as error:
                    grpc_failures.append((error.code().name, error.details()))
                    return

    threads = [threading.Thread(target=http_client) for _ in range(8)]
    threads += [threading.Thread(target=grpc_client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    started = time.time()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=20)
    took = time.time() - started
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    server.log.close()
    assert code == 0
    assert not lost, lost
    assert len(answered) > 100 and len(grpc_ok) > 20
    # every call on the wire was answered: a client's only failure is its next call, which finds no server
    assert all(name == "UNAVAILABLE" and "connect" in details.lower() for name, details in grpc_failures), grpc_failures
    assert took < 10


# 6. Slow and idle clients


def test_slow_idle_and_half_sent_clients_are_closed_while_a_normal_client_is_served(repository):
    server = Server(repository, "--header-timeout", "2", "--body-timeout", "2", "--idle-timeout", "3")
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
        half = []
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{\"in")
            half.append(sock)
        slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(200)]
        header = b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 100
        latencies = []
        session = requests.Session()
        started = time.time()
        position = 0
        while time.time() - started < 6:
            for sock in slow:  # one byte a second each
                try:
                    sock.send(header[position:position + 1])
                except OSError:
                    pass
            position += 1
            for _ in range(10):
                t0 = time.time()
                assert session.post(f"http://{server.url}/v2/models/credit-risk/infer", data=infer_body(),
                                    timeout=10).status_code == 200
                latencies.append(time.time() - t0)
            time.sleep(max(0.0, 1 - (time.time() - started) % 1))

        def closed(sock):
            sock.settimeout(1)
            try:
                return sock.recv(4096) == b""
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False

        assert all(closed(sock) for sock in idle), "idle connections stayed open past --idle-timeout"
        assert all(closed(sock) for sock in half), "half-sent requests stayed open past --body-timeout"
        assert all(closed(sock) for sock in slow), "slow headers stayed open past --header-timeout"
        assert np.median(latencies) < 0.05, np.median(latencies)
        for sock in idle + half + slow:
            sock.close()
    finally:
        server.stop()


def test_past_the_connection_cap_a_request_gets_a_clear_503(repository):
    server = Server(repository, "--max-connections", "20")
    try:
        # The readiness probe's connection counts until the server has seen it close; a loaded machine
        # may take a moment (CI once counted it among the 25 below).
        time.sleep(1.0)
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(25)]
        time.sleep(0.3)
        answers = []
        for sock in held:  # which five are over the cap depends on the order the event loops took them
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answers.append(sock.recv(4096).decode())
        refused = [a for a in answers if a.startswith("HTTP/1.1 503")]
        assert len(refused) == 5 and sum(a.startswith("HTTP/1.1 200") for a in answers) == 20, answers
        assert all("--max-connections" in a and "connection: close" in a.lower() for a in refused), refused
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert requests.get(f"http://{server.url}/v2/health/live", timeout=5).status_code == 200
    finally:
        server.stop()


# 7. Smaller


@pytest.mark.parametrize("data, message", [
    ("NaN", "finite"), ("Infinity", "finite"), ("-Infinity", "finite"), ("1e39", "out of range for FP32"),
])
def test_non_finite_numbers_are_refused_by_default(server, data, message):
    body = '{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [%s, 1, 1, 1, 1, 1, 1, 1, 1, 1]}]}' % data
    response = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", data=body, timeout=10)
    assert response.status_code == 400 and message in response.json()["error"], response.text
    row = np.array([[np.nan] + ROW[1:]], dtype=np.float32)
    binary_body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10],
                                          "parameters": {"binary_data_size": 40}}]}).encode()
    response = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", data=binary_body + row.tobytes(),
                             headers={"Inference-Header-Content-Length": str(len(binary_body))}, timeout=10)
    assert response.status_code == 400 and "finite" in response.json()["error"], response.text


def test_a_model_config_may_allow_non_finite_values(tmp_path):
    import onnxruntime as ort
    folder = tmp_path / "models" / "trees"
    shutil.copytree(os.path.join(EXAMPLES, "credit-risk", "2"), folder / "1")
    (folder / "config.yaml").write_text("allow_non_finite: true\n")
    server = Server(str(tmp_path / "models"))
    try:
        row = np.array([[np.nan] + ROW[1:]], dtype=np.float32)
        body = '{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [NaN, %s]}]}' % (
            ", ".join(str(v) for v in ROW[1:]))
        response = requests.post(f"http://{server.url}/v2/models/trees/infer", data=body, timeout=10)
        assert response.status_code == 200, response.text
        session = ort.InferenceSession(str(folder / "1" / "model.onnx"))
        expected = session.run(None, {"features": row})
        got = {o["name"]: o["data"] for o in response.json()["outputs"]}
        np.testing.assert_allclose(got["probabilities"], np.asarray(expected[1]).reshape(-1), rtol=1e-5)
    finally:
        server.stop()


def test_duplicate_json_keys_are_refused(server):
    body = '{"inputs": [{"name": "features", "name": "x", "datatype": "FP32", "shape": [1, 10], "data": %s}]}' % ROW
    response = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", data=body, timeout=10)
    assert response.status_code == 400 and "appears twice" in response.json()["error"], response.text


@pytest.mark.parametrize("data, message", [
    ([ROW + [1], ROW[:9]], "an array of 11 where its shape [2, 10] has 10"),
    ([ROW] + ROW, "mixes values and arrays"),
    ([[ROW], [ROW]], "nested 3 deep does not follow its shape [2, 10]"),
])
def test_nested_data_that_disagrees_with_its_shape_is_refused(server, data, message):
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 10], "data": data}]}
    response = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert "input 'features'" in response.json()["error"] and message in response.json()["error"], response.text


def test_flat_and_properly_nested_data_give_the_same_answer(server):
    answers = []
    for data in (ROW + ROW, [ROW, ROW]):
        body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 10], "data": data}]}
        response = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body, timeout=10)
        assert response.status_code == 200, response.text
        answers.append(response.json()["outputs"])
    assert answers[0] == answers[1]


def test_a_huge_model_name_is_not_echoed_whole(server):
    name = "m" * (1 << 20)
    with grpc.insecure_channel(server.grpc_url, options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelMetadata(service_pb2.ModelMetadataRequest(name=name), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND, error.value
    assert len(error.value.details()) < 1000 and "unknown model" in error.value.details()


def test_a_missing_artifact_answers_500_without_a_path(reg):
    registry, server, tmp, _ = reg
    lost = pack(tmp, "logreg", "lost", 1)
    record = api(server, "POST", "/api/v1/bundles", data=open(lost, "rb").read()).json()
    for root, _, files in os.walk(os.path.join(registry.data, "artifacts")):
        for name in files:
            if name.startswith(record["sha256"]):
                os.remove(os.path.join(root, name))
    response = api(server, "GET", "/api/v1/models/lost/versions/1/bundle")
    assert response.status_code == 500, response.text
    assert registry.data not in response.text and "/artifacts" not in response.text, response.text
    assert "server's log" in response.json()["error"]
    # put it back, so the registry is whole for the cases after this one
    api(server, "DELETE", "/api/v1/models/lost/versions/1")
    alive(server)


# Round 2 (issue 25): each attack replayed as it was reported, at the default timeouts.

def test_a_feedback_time_of_1e19_is_a_400_and_the_server_stays_up(reg):
    registry, server, _, _ = reg
    answer = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", data=infer_body(),
                           headers={"X-Request-ID": "time-attack"}, timeout=10)
    assert answer.status_code == 200, answer.text
    for time_value in [1e19, -1e19, 1e300]:
        refused = api(server, "POST", "/api/v1/feedback", json=[{"request_id": "time-attack", "label": 1, "time": time_value}])
        assert refused.status_code == 400 and "feedback item 0: time must be between" in refused.json()["error"], refused.text
    alive(server)


@pytest.mark.parametrize("interval", ["1e300s", "infm", "nan", "-5s", "1e20"])
def test_a_rollout_interval_out_of_range_is_a_400_and_the_server_stays_up(reg, interval):
    registry, server, _, _ = reg
    before = state(server)
    refused = api(server, "POST", "/api/v1/models/credit-risk/rollout", json={"to": 1, "interval": interval})
    assert refused.status_code == 400 and "interval" in refused.json()["error"], refused.text
    assert state(server) == before
    alive(server)


def test_an_alert_rules_file_with_a_huge_duration_stops_the_start_in_one_line(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("interval: 1e300s\nrules:\n  - name: r\n    model: credit-risk\n    metric: error_rate\n"
                     "    threshold: 0.1\n")
    refused = subprocess.run([BINARY, "serve", "--models", EXAMPLES, "--alert-rules", str(rules), "--http-port", "0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, (refused.returncode, refused.stderr[-2000:])  # not a trap's signal
    assert "interval must be between 0 and" in refused.stderr, refused.stderr


BIG_ROWS = 250_000  # about 5.7 MB of JSON answer from logreg: more than loopback's socket buffers


def big_request(close):
    body = infer_body(BIG_ROWS).encode()
    head = (f"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + body


def read_answer(sock, slow=0.0):
    """One HTTP answer read from a socket (after `slow` seconds): its status, headers and body as received."""
    if slow:
        time.sleep(slow)
    reader = sock.makefile("rb")
    status = reader.readline()
    headers = {}
    while True:
        line = reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = reader.read(length)
    return status, headers, body


def test_a_large_answer_with_connection_close_arrives_whole(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(big_request(close=True))
        status, headers, body = read_answer(sock, slow=1.0)  # the answer waits in the server's buffers meanwhile
        assert b"200" in status and headers.get("connection") == "close", (status, headers)
        assert len(body) == int(headers["content-length"]) > 5_000_000, (len(body), headers)
        assert len(json.loads(body)["outputs"][0]["data"]) == BIG_ROWS
    finally:
        sock.close()


def test_eight_large_answers_in_flight_at_sigterm_all_arrive_whole(repository):
    # The prediction log off: writing 2 million logged rows at the stop is the log's cost, not the drain's.
    server = Server(repository, "--prediction-log", "off")
    request = big_request(close=False)
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
    try:
        for sock in socks:
            sock.sendall(request)
        time.sleep(0.5)  # the requests are read and running
        server.process.send_signal(signal.SIGTERM)
        for index, sock in enumerate(socks):
            sock.settimeout(60)
            status, headers, body = read_answer(sock, slow=0.5 if index == 0 else 0.0)
            assert b"200" in status, status
            assert len(body) == int(headers["content-length"]) > 5_000_000, (index, len(body), headers)
        assert server.process.wait(timeout=60) == 0
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def test_a_request_head_trickling_in_is_closed_at_the_header_timeout_not_the_idle_one(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    started = time.time()
    sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\n")
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    took = time.time() - started
    assert 9 <= took < 15, f"closed after {took:.1f} s; the default --header-timeout is 10 s"
    alive(server)


def test_a_body_trickling_a_byte_every_two_seconds_is_closed_by_the_minimum_rate(server):
    sock = socket.create_connection(("127.0.0.1", server.port))
    started = time.time()
    sock.sendall(b"POST /v2/models/credit-risk/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n{")
    closed_after = None
    while time.time() - started < 30:
        time.sleep(2)
        try:
            sock.sendall(b" ")
            sock.settimeout(0.01)
            if sock.recv(4096) == b"":
                closed_after = time.time() - started
                break
        except socket.timeout:
            continue
        except OSError:
            closed_after = time.time() - started
            break
    sock.close()
    assert closed_after is not None and closed_after < 12, closed_after
    alive(server)


def test_a_page_reached_through_dns_rebinding_gets_421_from_an_open_server(server):
    for host in ["evil.example", "evil.example:8000", "127.0.0.1.nip.example"]:
        answer = requests.get(f"http://127.0.0.1:{server.port}/v2", headers={"Host": host}, timeout=5)
        assert answer.status_code == 421 and "does not answer for the host" in answer.json()["error"], answer.text
    for host in ["localhost", f"localhost:{server.port}", f"127.0.0.1:{server.port}", f"[::1]:{server.port}"]:
        assert requests.get(f"http://127.0.0.1:{server.port}/v2", headers={"Host": host}, timeout=5).status_code == 200, host
    alive(server)


def test_the_first_key_is_never_made_over_the_api_of_an_open_server(reg):
    registry, server, _, _ = reg
    refused = api(server, "POST", "/api/v1/keys", json={"name": "mine", "scopes": ["admin"]})
    assert refused.status_code == 403 and "tern keys create" in refused.json()["error"], refused.text
    assert api(server, "GET", "/api/v1/keys").json() == []


def test_a_platform_server_without_keys_serves_inference_but_no_management(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "logreg", "credit-risk", 1))
    server = reg.serve("--platform", "sagemaker", "--default-model", "credit-risk")
    try:
        assert requests.post(f"http://{server.url}/invocations", data="41,52000,0.31,4,0,0,12000,6.5,8,0.42",
                             headers={"Content-Type": "text/csv"}, timeout=10).status_code == 200
        alive(server)
        for method, path, body in [("GET", "/api/v1/models", None), ("POST", "/api/v1/keys", {"name": "x", "scopes": ["admin"]}),
                                   ("PUT", "/api/v1/models/credit-risk/aliases/production", {"version": 1}),
                                   ("POST", "/v2/repository/models/credit-risk/unload", {})]:
            answer = api(server, method, path, json=body)
            assert answer.status_code == 403 and "management is off" in answer.json()["error"], (path, answer.text)
        assert len(reg.cli("keys", "list").stdout.strip().splitlines()) <= 1  # the header alone: no key was made
    finally:
        server.stop()


def test_grants_hold_for_feedback_and_unknown_models_name_only_what_the_key_may_use(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    holdout = os.path.join(os.path.dirname(EXAMPLES), "data", "credit-holdout.csv")
    reg.cli("push", pack(reg.tmp, "logreg", "other", 1, "--holdout", holdout, "--label-column", "default"))
    admin = reg.cli("keys", "create", "root", "--scopes", "admin,infer,read").stdout.strip()
    limited = reg.cli("keys", "create", "limited", "--scopes", "infer,read", "--grant", "credit").stdout.strip()
    server = reg.serve()
    try:
        def call(method, path, key, **kwargs):
            return requests.request(method, f"http://{server.url}{path}", headers={"Authorization": f"Bearer {key}"},
                                    timeout=30, **kwargs)
        body = json.loads(infer_body())
        answered = requests.post(f"http://{server.url}/v2/models/other/infer", json=body, timeout=10,
                                 headers={"Authorization": f"Bearer {admin}", "X-Request-ID": "other-1"})
        assert answered.status_code == 200, answered.text
        deadline = time.time() + 10
        while call("GET", "/api/v1/predictions/other-1", admin).status_code != 200:  # the log's writer has it
            assert time.time() < deadline
            time.sleep(0.1)
        # Feedback for another model's prediction: refused, and its ground truth is not written.
        refused = call("POST", "/api/v1/feedback", limited, json=[{"request_id": "other-1", "label": 1}])
        assert refused.status_code == 403 and "has no grant" in refused.json()["error"], refused.text
        performance = call("GET", "/api/v1/models/other/performance", admin).json()
        assert all(v["predictions"] == 0 for v in performance["versions"]), performance
        # A label the version does not have: refused per item, and the performance API keeps answering.
        out_of_class = call("POST", "/api/v1/feedback", admin, json=[{"request_id": "other-1", "label": "banana"}])
        assert out_of_class.status_code == 400 and "is not one of other version 1's classes" in out_of_class.json()["error"]
        assert call("GET", "/api/v1/models/other/performance", admin).status_code == 200
        # An unknown model: the 404 names only the models the key may use.
        unknown = call("POST", "/v2/models/nope/infer", limited, json=body)
        assert unknown.status_code == 404 and "other" not in unknown.json()["error"], unknown.text
        # An unauthenticated infer with a huge declared body is answered at once, the body never read.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /v2/models/credit/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: 60000000\r\n\r\n")
            sock.settimeout(5)
            assert b" 401 " in sock.recv(4096)
        # The last admin key is revoked only by force; a revocation counts at once on the server that made it.
        last = call("DELETE", "/api/v1/keys/root", admin)
        assert last.status_code == 409 and "last active key with the admin scope" in last.json()["error"], last.text
        assert call("DELETE", "/api/v1/keys/limited", admin).status_code == 200
        assert call("POST", "/v2/models/credit/infer", limited, json=body).status_code == 401
    finally:
        server.stop()


def test_weights_of_1e308_are_refused(reg):
    registry, server, _, _ = reg
    before = state(server)
    refused = api(server, "PUT", "/api/v1/models/credit-risk/traffic", json={"weights": {"1": 1e308}})
    assert refused.status_code == 400 and "weight must be a number between 0 and 1000000" in refused.json()["error"], refused.text
    assert state(server) == before


def test_an_alias_move_buffers_only_a_small_body(reg):
    registry, server, _, _ = reg
    refused = api(server, "PUT", "/api/v1/models/credit-risk/aliases/staging", data=b"{" + b" " * 200_000 + b"}")
    assert refused.status_code == 413, refused.text
    alive(server)


def test_gate_data_is_read_only_under_the_gate_root_and_never_echoed(reg):
    registry, server, _, _ = reg
    secret = os.path.join(registry.tmp, "secret.csv")
    with open(secret, "w") as f:
        f.write("hunter2,password\n1,2\n")
    assert api(server, "PUT", "/api/v1/models/credit-risk/gate", json={"data": secret, "aliases": ["production"],
                                                                      "require": {"accuracy": 0.1}}).status_code == 200
    try:
        answer = api(server, "POST", "/api/v1/models/credit-risk/gate/check", json={"version": 1, "alias": "production"})
        assert answer.status_code == 400 and "--gate-root" in answer.json()["error"], answer.text
        assert "hunter2" not in answer.text
    finally:
        api(server, "DELETE", "/api/v1/models/credit-risk/gate")
    alive(server)


def test_nan_on_the_explain_route_is_a_400(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reference = os.path.join(os.path.dirname(EXAMPLES), "data", "credit-reference.csv")
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1, "--reference", reference, "--label-column", "default"))
    server = reg.serve()
    try:
        body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [float("nan")] + ROW[1:]}]}
        answer = api(server, "POST", "/v2/models/credit/explain", data=json.dumps(body))
        assert answer.status_code == 400 and "finite" in answer.json()["error"], answer.text
        huge = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [200, 10], "data": ROW * 200}],
                "parameters": {"method": "kernel", "samples": 1000000, "background_rows": 200}}
        answer = api(server, "POST", "/v2/models/credit/explain", json=huge)
        assert answer.status_code == 400 and "--max-explain-work" in answer.json()["error"], answer.text
        alive_credit = api(server, "POST", "/v2/models/credit/infer", data=infer_body())
        assert alive_credit.status_code == 200
    finally:
        server.stop()


def test_a_large_compressible_bundle_inflates_to_disk_not_to_memory(tmp_path):
    reg = Registry("sqlite", tmp_path)
    bundle = pack(str(tmp_path), "logreg", "credit-risk", 1)
    reg.cli("push", bundle)
    with zipfile.ZipFile(bundle) as source:
        files = {name: source.read(name) for name in source.namelist()}
    doc0 = json.loads(files["tern.json"])
    doc0["version"] = 2
    files["tern.json"] = json.dumps(doc0).encode()
    block = os.urandom(16 << 10)  # a repeated 16 KiB block deflates about 80 times: under the 100x limit
    size = 200 << 20
    digest = hashlib.sha256()
    for _ in range(size // len(block)):
        digest.update(block)
    doc = json.loads(files["tern.json"])
    doc["files"]["profile.json"] = {"sha256": digest.hexdigest(), "bytes": size}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in files.items():
            if name not in ("tern.json", "profile.json"):
                target.writestr(name, data)
        target.writestr("tern.json", json.dumps(doc))
        with target.open("profile.json", "w", force_zip64=True) as entry:
            for _ in range(size // len(block)):
                entry.write(block)
    data = out.getvalue()
    assert len(data) < 4 << 20
    server = reg.serve()
    try:
        _, rss0 = proc_stat(server.process.pid)
        peak = [rss0]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], proc_stat(server.process.pid)[1])
                time.sleep(0.02)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            api(server, "POST", "/api/v1/bundles", data=data)  # accepted or refused: what matters is the memory
        finally:
            done.set()
            watcher.join()
        assert peak[0] - rss0 < 120, f"RSS grew {peak[0] - rss0:.0f} MB while a {size >> 20} MB entry inflated"
        assert not [name for name in os.listdir(os.path.join(reg.data, "uploads")) if name.startswith(".inflate")] \
            if os.path.isdir(os.path.join(reg.data, "uploads")) else True
        alive(server)
    finally:
        server.stop()


def test_huge_requests_do_not_fill_the_drift_windows(tmp_path):
    """Three 15 MB requests: each is larger than a drift window's budget (10,000 rows and 16 MiB of tensors per
    version), so none is kept in memory, and a drift pass reads a window of ordinary size."""
    reg = Registry("sqlite", tmp_path)
    reference = os.path.join(os.path.dirname(EXAMPLES), "data", "credit-reference.csv")
    reg.cli("push", pack(reg.tmp, "logreg", "credit-risk", 1, "--reference", reference, "--label-column", "default"))
    server = reg.serve("--prediction-log", "off")
    try:
        for _ in range(20):
            alive(server)
        _, rss0 = proc_stat(server.process.pid)
        body = infer_body(250_000)
        for _ in range(3):
            answer = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", data=body, timeout=120)
            assert answer.status_code == 200
        drift = api(server, "GET", "/api/v1/models/credit-risk/drift")
        assert drift.status_code == 200, drift.text
        assert drift.json()["predictions"] == 20, drift.json()  # the ordinary ones; the huge ones are not kept
        _, rss1 = proc_stat(server.process.pid)
        assert rss1 - rss0 < 250, f"RSS grew {rss1 - rss0:.0f} MB"
        alive(server)
    finally:
        server.stop()


@pytest.mark.parametrize("config", [b"{[a]: 1}\n", b"{{max_batch_size: 1}: 2}\n", b"a: &x [1]\nb: *x\n"])
def test_a_bundle_whose_config_yaml_has_a_non_scalar_key_is_a_400_not_a_crash(reg, config):
    """Yams's constructor force-unwraps a mapping key that is not a scalar (found by FuzzParsers): a pushed
    bundle's config.yaml is read without it."""
    registry, server, _, bundle = reg

    def add_config(files):
        doc = json.loads(files["tern.json"])
        doc["files"]["config.yaml"] = {"sha256": hashlib.sha256(config).hexdigest(), "bytes": len(config)}
        files["tern.json"] = json.dumps(doc).encode()
        files["config.yaml"] = config
    before = state(server)
    answer = api(server, "POST", "/api/v1/bundles?version=77", data=rewrite_bundle(bundle, add_config))
    assert answer.status_code == 400 and "config.yaml" in answer.json()["error"], answer.text
    assert state(server) == before
    alive(server)
