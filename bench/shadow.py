#!/usr/bin/env python3
"""What a shadow version costs online traffic: the same wrk load (credit v1 = gbc, 1 row) on one `tern serve`
from a registry, with no traffic policy and with version 2 (logistic regression) as a shadow of every request,
interleaved rounds; reports requests/s, p50 and p99 of each, and checks every answer. Needs a release build.

    python3 bench/shadow.py [--rounds 3] [--duration 8] [--concurrency 16]
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

import onnxruntime as ort  # noqa: E402
import requests  # noqa: E402

import run  # noqa: E402

TERN = os.path.join(ROOT, ".build", "release", "tern")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    work = tempfile.mkdtemp()
    data = os.path.join(work, "data")
    for version, model in ((1, "gbc"), (2, "logreg")):
        bundle = os.path.join(work, f"{model}.tern")
        subprocess.run([TERN, "pack", os.path.join(run.BENCH, "models", model, "1", "model.onnx"), "--name", "gbc",
                        "--version", str(version), "-o", bundle], check=True, capture_output=True)
        subprocess.run([TERN, "push", bundle, "--data", data] + (["--alias", "production"] if version == 1 else []),
                       check=True, capture_output=True)
    port = run.free_port()
    server = run.Server("tern", [TERN, "serve", "--data", data, "--http-port", str(port), "--no-grpc"], port)
    results = {"no shadow": [], "v2 shadowing every request": []}
    try:
        sample, body = run.request_body("gbc", 1)
        session = ort.InferenceSession(os.path.join(run.BENCH, "models", "gbc", "1", "model.onnx"), providers=["CPUExecutionProvider"])
        expected = run.check_answer(server, "gbc", sample, body, session)
        for _ in range(args.rounds):
            requests.delete(f"{server.url}/api/v1/models/gbc/traffic", timeout=10)
            results["no shadow"].append(run.load(server, "gbc", 1, args.concurrency, args.duration, body, expected, work))
            requests.put(f"{server.url}/api/v1/models/gbc/traffic", json={"weights": {"1": 1}, "shadows": [2]}, timeout=10).raise_for_status()
            results["v2 shadowing every request"].append(run.load(server, "gbc", 1, args.concurrency, args.duration, body, expected, work))
        comparison = requests.get(f"{server.url}/api/v1/models/gbc/traffic", timeout=10).json()["shadow_comparison"]
    finally:
        server.stop()
    print(f"| load (gbc, 1 row, c={args.concurrency}, {args.duration} s, median of {args.rounds}) | requests/s | p50 | p99 |")
    print("|---|---:|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(r['rps'] for r in runs):,.0f} | {statistics.median(r['p50_us'] for r in runs) / 1000:.2f} ms "
              f"| {statistics.median(r['p99_us'] for r in runs) / 1000:.2f} ms |")
    print(f"\nshadow comparison: {comparison}")


if __name__ == "__main__":
    main()
