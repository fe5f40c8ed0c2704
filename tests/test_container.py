"""The container image (issue 15), built and run with podman: the image is laid out from the built binary
(`deploy/container/build-local.sh`, FROM scratch, as no image registry is reachable here), runs as a non-root
user on a read-only root file system with the example models mounted, starts with authentication on (its
first admin key made on first start, in /data, and the log says how to read it), answers REST and gRPC
(tritonclient) with onnxruntime's values, passes its health check, and on SIGTERM answers the request in
flight and exits 0."""
import json
import os
import shutil
import subprocess
import threading
import time
import uuid

import numpy as np
import onnxruntime as ort
import pytest
import requests

import controllable_models
from conftest import BINARY, EXAMPLES, ROOT, free_port

CONF = os.path.join(ROOT, "deploy", "container", "containers.conf")
ENV = dict(os.environ, CONTAINERS_CONF=CONF)
ROW = [[41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]]


def podman(*args, check=True, timeout=300):
    result = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


@pytest.fixture(scope="module")
def image():
    assert shutil.which("podman"), "podman is not installed (scripts/test.sh installs it from Debian's packages)"
    tag = f"localhost/tern-test:{uuid.uuid4().hex[:8]}"
    subprocess.run([os.path.join(ROOT, "deploy", "container", "build-local.sh"), BINARY, tag], env=ENV, check=True,
                   capture_output=True, timeout=600)
    yield tag
    podman("rmi", "-f", tag, check=False)


@pytest.fixture
def container(image, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(os.path.join(EXAMPLES, "credit-risk"), models / "credit-risk")
    (models / "slow" / "1").mkdir(parents=True)
    controllable_models.slow(str(models / "slow" / "1" / "model.onnx"), size=3000)
    http, grpc = free_port(), free_port()
    name = f"tern-test-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    podman("run", "-d", "--name", name, "--health-interval", "disable", "--read-only", "--tmpfs", "/tmp",
           "-p", f"127.0.0.1:{http}:8000", "-p", f"127.0.0.1:{grpc}:8001", "-v", f"{models}:/models:ro", image)
    deadline = time.time() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.time() < deadline, podman("logs", name, check=False).stdout + podman("logs", name, check=False).stderr
        time.sleep(0.05)
    ready = time.monotonic() - started
    # The image starts safe: the first admin key was made in /data; the log says where to read it.
    key = podman("exec", name, "/usr/local/bin/tern", "keys", "list", "--data", "/data", check=False)
    assert "bootstrap" in key.stdout, key.stdout + key.stderr
    logs = podman("logs", name).stdout + podman("logs", name).stderr
    assert "cat /data/admin.key" in logs, logs
    # The image has no shell: the key file is copied out, as an operator would read it.
    podman("cp", f"{name}:/data/admin.key", str(tmp_path / "admin.key"))
    key = (tmp_path / "admin.key").read_text().strip()
    assert key.startswith("tern_")
    yield name, http, grpc, ready, {"Authorization": f"Bearer {key}"}
    podman("rm", "-f", "-v", name, check=False)


def test_the_image_serves_rest_and_grpc_as_non_root_on_a_read_only_root(image, container):
    import tritonclient.grpc as grpcclient
    name, http, grpc, ready, auth = container
    print(f"image {podman('image', 'inspect', '--format', '{{.Size}}', image).stdout.strip()} bytes; start to ready {ready * 1000:.0f} ms")
    inspected_image = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected_image["Config"]
    assert config["User"] == "10001" and set(config["Volumes"]) == {"/models", "/data"}
    assert config["Entrypoint"][:2] == ["/usr/local/bin/tern", "serve"]
    assert inspected_image["Healthcheck"]["Test"][-3:] == ["health", "--server", "http://127.0.0.1:8000"]
    inspected = json.loads(podman("inspect", name).stdout)[0]
    assert inspected["HostConfig"]["ReadonlyRootfs"] is True
    session = ort.InferenceSession(os.path.join(EXAMPLES, "credit-risk", "2", "model.onnx"))
    expected = session.run(None, {"features": np.array(ROW, dtype=np.float32)})
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW}]}
    # Nothing answers without the key but health: not inference, not management.
    refused = requests.post(f"http://127.0.0.1:{http}/v2/models/credit-risk/infer", timeout=30, json=body)
    assert refused.status_code == 401, refused.text
    unload = requests.post(f"http://127.0.0.1:{http}/v2/repository/models/credit-risk/unload", timeout=30)
    assert unload.status_code == 401, unload.text
    answer = requests.post(f"http://127.0.0.1:{http}/v2/models/credit-risk/infer", timeout=30, json=body, headers=auth)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["label"]["data"] == expected[0].tolist()
    np.testing.assert_allclose(np.array(outputs["probabilities"]["data"]).reshape(1, 2), expected[1], rtol=1e-5)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc}")
    features = grpcclient.InferInput("features", [1, 10], "FP32")
    features.set_data_from_numpy(np.array(ROW, dtype=np.float32))
    result = client.infer("credit-risk", [features], headers={"authorization": auth["Authorization"]})
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected[1], rtol=1e-5)
    assert podman("healthcheck", "run", name, check=False).returncode == 0


def test_sigterm_answers_the_request_in_flight_and_exits_cleanly(container):
    name, http, _, _, auth = container
    answers = []

    def slow_request():
        answers.append(requests.post(f"http://127.0.0.1:{http}/v2/models/slow/infer", timeout=60, headers=auth, json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [[2] * 10]}]}))

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.15)  # the request is running (the slow model takes most of a second)
    podman("kill", "--signal", "TERM", name)
    thread.join(timeout=60)
    assert answers and answers[0].status_code == 200 and answers[0].json()["outputs"][0]["data"] == [20.0], answers
    assert podman("wait", name, timeout=60).stdout.strip() == "0"
    logs = podman("logs", name).stdout + podman("logs", name).stderr
    assert "ready" in logs
