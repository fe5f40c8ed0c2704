#!/usr/bin/env python3
"""Throughput with 1, 2 and 3 `tern serve` replicas behind nginx (deploy/nginx/tern.conf), sharing one
PostgreSQL registry (bundles in the database), and one replica without nginx for what the proxy costs:
wrk (gbc, 1 row, every answer checked), interleaved rounds, medians. Needs a release build, nginx and
PostgreSQL (scripts/start-postgres.sh starts one).

    python3 bench/scaleout.py [--rounds 2] [--duration 8] [--concurrency 64]
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_venv  # noqa: E402

bench_venv.enter(__file__)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import onnxruntime as ort  # noqa: E402
import requests  # noqa: E402

import run  # noqa: E402

TERN = os.path.join(ROOT, ".build", "release", "tern")


class Nginx:
    """nginx balancing the replicas, with the repository's configuration."""

    def __init__(self, work, ports):
        self.name = f"nginx + {len(ports)} replica" + ("s" if len(ports) > 1 else "")
        prefix = os.path.join(work, f"nginx-{len(ports)}-{uuid.uuid4().hex[:6]}")
        os.makedirs(prefix)
        self.port = run.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        text = open(os.path.join(ROOT, "deploy", "nginx", "tern.conf")).read()
        servers = "\n        ".join(f"server 127.0.0.1:{p};" for p in ports)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(text.replace("{{PREFIX}}", prefix).replace("{{PORT}}", str(self.port)).replace("{{SERVERS}}", servers))
        self.process = subprocess.Popen(["nginx", "-c", conf, "-p", prefix, "-g", "daemon off;"])
        while True:
            try:
                if requests.get(self.url + "/v2/health/ready", timeout=0.5).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    url = os.environ.get("TERN_TEST_POSTGRES_URL") or subprocess.run(
        [os.path.join(ROOT, "scripts", "start-postgres.sh")], capture_output=True, text=True, check=True).stdout.split()[-1]
    name = "tern_bench_" + uuid.uuid4().hex[:8]
    subprocess.run(["psql", url, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    database = url.rsplit("/", 1)[0] + "/" + name
    work = tempfile.mkdtemp()
    bundle = os.path.join(work, "gbc.tern")
    subprocess.run([TERN, "pack", os.path.join(run.BENCH, "models", "gbc", "1", "model.onnx"), "--name", "gbc", "-o", bundle],
                   check=True, capture_output=True)
    subprocess.run([TERN, "push", bundle, "--database", database, "--data", os.path.join(work, "cli"), "--artifacts-in-database",
                    "--alias", "production"], check=True, capture_output=True)
    replicas = []
    for index in range(3):
        port = run.free_port()
        replicas.append(run.Server(f"replica {index + 1}", [
            TERN, "serve", "--database", database, "--data", os.path.join(work, f"replica-{index}"), "--http-port", str(port),
            "--no-grpc", "--prediction-log", "off"], port))
    results = {}
    try:
        sample, body = run.request_body("gbc", 1)
        session = ort.InferenceSession(os.path.join(run.BENCH, "models", "gbc", "1", "model.onnx"), providers=["CPUExecutionProvider"])
        expected = run.check_answer(replicas[0], "gbc", sample, body, session)
        for _ in range(args.rounds):
            result = run.load(replicas[0], "gbc", 1, args.concurrency, args.duration, body, expected, work)
            results.setdefault("1 replica, no proxy", []).append(result)
            for count in (1, 2, 3):
                proxy = Nginx(work, [r.port for r in replicas[:count]])
                try:
                    results.setdefault(proxy.name, []).append(
                        run.load(proxy, "gbc", 1, args.concurrency, args.duration, body, expected, work))
                finally:
                    proxy.stop()
    finally:
        for replica in replicas:
            replica.stop()
        subprocess.run(["psql", url, "-q", "-c", f"DROP DATABASE {name}"], capture_output=True)
    print(f"| gbc, 1 row, c={args.concurrency}, {args.duration} s, median of {args.rounds} | requests/s | p50 | p99 |")
    print("|---|---:|---:|---:|")
    for label, runs in results.items():
        print(f"| {label} | {statistics.median(r['rps'] for r in runs):,.0f} | {statistics.median(r['p50_us'] for r in runs) / 1000:.2f} ms "
              f"| {statistics.median(r['p99_us'] for r in runs) / 1000:.2f} ms |")


if __name__ == "__main__":
    main()
