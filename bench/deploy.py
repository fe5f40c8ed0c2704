#!/usr/bin/env python3
"""What the deployment targets cost at start: the image built by deploy/container/build-local.sh from the
release binary (its size; `podman run` to /v2/health/ready, median of 5), and a Lambda cold start (process
start to the first invocation's answer through a local Runtime API, median of 5). Needs podman and a release
build.

    python3 bench/deploy.py
"""
import http.server
import json
import os
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERN = os.path.join(ROOT, ".build", "release", "tern")
MODELS = os.path.join(ROOT, "examples", "models")
ENV = dict(os.environ, CONTAINERS_CONF=os.path.join(ROOT, "deploy", "container", "containers.conf"))


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(url, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=1) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            time.sleep(0.005)
    return False


def container():
    tag = f"localhost/tern-bench:{uuid.uuid4().hex[:8]}"
    subprocess.run([os.path.join(ROOT, "deploy", "container", "build-local.sh"), TERN, tag], env=ENV, check=True, capture_output=True)
    size = int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", tag], env=ENV, capture_output=True,
                              text=True, check=True).stdout)
    times = []
    for _ in range(5):
        port = free_port()
        name = f"tern-bench-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        subprocess.run(["podman", "run", "-d", "--name", name, "--health-interval", "disable", "--read-only", "--tmpfs", "/tmp",
                        "-p", f"127.0.0.1:{port}:8000", "-v", f"{MODELS}:/models:ro", tag], env=ENV, check=True, capture_output=True)
        assert ready(f"http://127.0.0.1:{port}", started + 60)
        times.append(time.monotonic() - started)
        subprocess.run(["podman", "rm", "-f", "-v", name], env=ENV, capture_output=True)
    subprocess.run(["podman", "rmi", "-f", tag], env=ENV, capture_output=True)
    return size, statistics.median(times)


def lambda_cold_start():
    answered = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if answered.is_set():
                time.sleep(30)
                return
            body = json.dumps({"version": "2.0", "rawPath": "/v2/models/credit-risk/infer", "body": json.dumps({"inputs": [
                {"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]}]}),
                "requestContext": {"http": {"method": "POST"}}}).encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "cold")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answered.set()
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    times = []
    for _ in range(5):
        answered.clear()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started = time.monotonic()
        process = subprocess.Popen([TERN, "serve", "--models", MODELS, "--no-grpc", "--http-port", str(free_port())],
                                   env=dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}"),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert answered.wait(30)
        times.append(time.monotonic() - started)
        process.terminate()
        process.wait(timeout=30)
        server.shutdown()
    return statistics.median(times)


if __name__ == "__main__":
    size, start = container()
    print(f"image (build-local.sh, release binary): {size / 1e6:.0f} MB; podman run to ready: {start * 1000:.0f} ms (median of 5)")
    print(f"Lambda cold start to the first answer (process start, Runtime API on loopback): {lambda_cold_start() * 1000:.0f} ms (median of 5)")
