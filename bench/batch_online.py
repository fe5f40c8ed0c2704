#!/usr/bin/env python3
"""What a server batch job costs online traffic: the same wrk load (gbc, 1 row) on one `tern serve`, without and
with a batch job running (`POST /api/v1/jobs`, --batch-threads 1), interleaved rounds; reports requests/s, p50
and p99 of each and the job's rows/s. Needs a release build of tern.

    python3 bench/batch_online.py [--rounds 3] [--duration 8] [--concurrency 16] [--rows 6000000]
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_venv  # noqa: E402

bench_venv.enter(__file__)

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import requests  # noqa: E402

import run  # noqa: E402

TERN = os.path.join(ROOT, ".build", "release", "tern")


def generate(path, rows):
    generator = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write("id," + ",".join(f"f{i}" for i in range(10)) + "\n")
        for start in range(0, rows, 200_000):
            count = min(200_000, rows - start)
            block = np.round(generator.normal(size=(count, 10)), 4)
            lines = [f"{start + i}," + ",".join(f"{v:.4f}" for v in row) for i, row in enumerate(block)]
            f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rows", type=int, default=6_000_000)
    args = parser.parse_args()
    work = tempfile.mkdtemp()
    root = os.path.join(work, "batch")
    os.makedirs(root)
    generate(os.path.join(root, "in.csv"), args.rows)
    port = run.free_port()
    server = run.Server("tern", [TERN, "serve", "--models", os.path.join(run.BENCH, "models"), "--http-port", str(port),
                                 "--no-grpc", "--batch-root", root, "--batch-threads", "1"], port)
    results = {"without a job": [], "with a job": []}
    job_rates = []
    try:
        sample, body = run.request_body("gbc", 1)
        session = ort.InferenceSession(os.path.join(run.BENCH, "models", "gbc", "1", "model.onnx"), providers=["CPUExecutionProvider"])
        expected = run.check_answer(server, "gbc", sample, body, session)
        for _ in range(args.rounds):
            results["without a job"].append(run.load(server, "gbc", 1, args.concurrency, args.duration, body, expected, work))
            job = requests.post(f"{server.url}/api/v1/jobs", json={"model": "gbc", "input": "in.csv", "output": "out.csv",
                                                                 "id_column": "id", "force": True}, timeout=30).json()
            started = time.time()
            results["with a job"].append(run.load(server, "gbc", 1, args.concurrency, args.duration, body, expected, work))
            state = requests.get(f"{server.url}/api/v1/jobs/{job['id']}", timeout=30).json()
            if state["state"] == "running":
                job_rates.append(state["rows"] / (time.time() - started))
                requests.delete(f"{server.url}/api/v1/jobs/{job['id']}", timeout=30)
            else:
                print(f"note: the job ended ({state['state']}) before the load did; give more --rows", file=sys.stderr)
    finally:
        server.stop()
    print(f"| load (gbc, 1 row, c={args.concurrency}, {args.duration} s, median of {args.rounds}) | requests/s | p50 | p99 |")
    print("|---|---:|---:|---:|")
    for name, runs in results.items():
        print(f"| {name} | {statistics.median(r['rps'] for r in runs):,.0f} | {statistics.median(r['p50_us'] for r in runs) / 1000:.2f} ms "
              f"| {statistics.median(r['p99_us'] for r in runs) / 1000:.2f} ms |")
    if job_rates:
        print(f"\nthe job meanwhile: {statistics.median(job_rates):,.0f} rows/s (--batch-threads 1)")


if __name__ == "__main__":
    main()
