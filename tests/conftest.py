"""Starts a real `tern serve` for the Python client tests.

The server serves every fixture model (as version 1) and the credit-risk example (versions 1 and 2) from a
temporary model repository, on a free port. TERN_BINARY names the executable (default .build/debug/tern).
"""
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures", "models")
EXAMPLES = os.path.join(ROOT, "examples", "models")
BINARY = os.environ.get("TERN_BINARY", os.path.join(ROOT, ".build", "debug", "tern"))
MODELS = sorted(os.listdir(FIXTURES))

DTYPES = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def golden(name):
    """The golden cases of a fixture: inputs and onnxruntime's outputs as numpy arrays."""
    with open(os.path.join(FIXTURES, name, "golden.json")) as f:
        cases = json.load(f)["cases"]

    def array(t):
        if t["datatype"] == "BYTES":
            return np.array([s.encode() for s in t["data"]], dtype=np.object_).reshape(t["shape"])
        return np.array(t["data"], dtype=DTYPES[t["datatype"]]).reshape(t["shape"])
    return [{"name": c["name"],
             "inputs": [(t["name"], t["datatype"], array(t)) for t in c["inputs"]],
             "outputs": [(t["name"], t["datatype"], array(t)) for t in c["outputs"]]} for c in cases]


def assert_matches(actual, expected, label):
    """Integers, bools and bytes exactly; floats within 1e-5."""
    assert actual is not None, label
    assert tuple(actual.shape) == tuple(expected.shape), f"{label}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=1e-5, atol=1e-5,
                                   err_msg=label)
    elif expected.dtype == np.object_:
        assert [bytes(x) if not isinstance(x, str) else x.encode() for x in actual.reshape(-1)] == \
            list(expected.reshape(-1)), label
    else:
        np.testing.assert_array_equal(actual, expected, err_msg=label)


def run_concurrently(clients, session):
    """Runs `session(index)` for each client on its own thread, all released at once after their set-up.

    `session` is a generator: the code before its `yield` sets up (connects), the code after is the load.
    Failures are collected and reported together.
    """
    failures = []
    barrier = threading.Barrier(clients)

    def run(index):
        try:
            steps = session(index)
            next(steps)
            barrier.wait()
            for _ in steps:
                pass
        except Exception as error:  # noqa: BLE001 - collected and reported below
            failures.append(f"client {index}: {error!r}")
            barrier.abort()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, "\n".join(failures[:5])


def make_repository(path):
    for name in MODELS:
        os.makedirs(os.path.join(path, name, "1"))
        shutil.copy(os.path.join(FIXTURES, name, "model.onnx"), os.path.join(path, name, "1", "model.onnx"))
    shutil.copytree(os.path.join(EXAMPLES, "credit-risk"), os.path.join(path, "credit-risk"))


class Server:
    """`tern serve` on free ports: a model folder (`repository`), or with `repository=None` whatever `extra`
    names (a registry's --data/--database); the log goes beside the folder or into `log_dir`."""

    def __init__(self, repository, *extra, log_dir=None):
        self.port = free_port()
        self.grpc_port = free_port()
        self.url = f"localhost:{self.port}"
        self.grpc_url = f"localhost:{self.grpc_port}"
        self.log = open(os.path.join(log_dir or os.path.join(repository, ".."), f"tern-{self.port}.log"), "w+")
        source = ["--models", repository] if repository else []
        self.process = subprocess.Popen(
            [BINARY, "serve", *source, "--host", "127.0.0.1", "--http-port", str(self.port),
             "--grpc-port", str(self.grpc_port), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if requests.get(f"http://{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    with socket.create_connection(("127.0.0.1", self.grpc_port), timeout=1):
                        return
            except (requests.ConnectionError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError("tern serve did not become ready:\n" + self.output())

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise AssertionError("tern serve did not stop within 30 s of SIGTERM:\n" + self.output()[-4000:]) from None
        self.log.close()


@pytest.fixture(scope="session")
def repository(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tern") / "models")
    make_repository(path)
    return path


@pytest.fixture(scope="session")
def server(repository):
    server = Server(repository)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def converter_data(tmp_path_factory):
    """One data folder whose Python environment converts pickles (`tern pack model.joblib` sets it up on first
    use, about half a minute): the pickle tests and the docs that convert one share it."""
    folder = tmp_path_factory.mktemp("converter")
    pipelines = os.path.join(ROOT, "Tests", "Fixtures", "pipelines")
    result = subprocess.run([BINARY, "pack", os.path.join(pipelines, "german_gb", "model.joblib"), "--sample",
                             os.path.join(pipelines, "german-test.csv"), "--name", "setup", "-o", str(folder / "setup.tern")],
                            capture_output=True, text=True, env=dict(os.environ, TERN_DATA=str(folder)), timeout=900)
    assert result.returncode == 0, f"setting up the pickle converter failed:\n{result.stderr}"
    return str(folder)
