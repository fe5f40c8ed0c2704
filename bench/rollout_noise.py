#!/usr/bin/env python3
"""Whether a rollout's verdict survives a noisy machine: N rollouts of a candidate equal to the stable version
and N of one about 3x slower, each with a CPU burner on one core beside the server and two clients loading
it, steps 10,50,100 of a few seconds each. Reports how many were promoted and rolled back, and why.
An equal candidate should be promoted in at least 9 of 10 runs; a 3x slower one rolled back in 10 of 10.

    .venv/bin/python bench/rollout_noise.py [--runs 10] [--interval 4] [--size 128]

Uses .build/release/tern when it exists, else .build/debug/tern (TERN_BINARY overrides), and the test
suite's venv (onnx, requests) and its model builders (tests/controllable_models.py).
"""
import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import controllable_models  # noqa: E402
import requests  # noqa: E402

RELEASE = os.path.join(ROOT, ".build", "release", "tern")
TERN = os.environ.get("TERN_BINARY") or (RELEASE if os.path.exists(RELEASE) else os.path.join(ROOT, ".build", "debug", "tern"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def burn(stop):
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def one_run(work, candidate_size, size, interval):
    data = os.path.join(work, "data")
    for version, model_size in ((1, size), (2, candidate_size)):
        model = controllable_models.slow(os.path.join(work, f"v{version}.onnx"), size=model_size)
        bundle = os.path.join(work, f"v{version}.tern")
        subprocess.run([TERN, "pack", model, "--name", "flaky", "--version", str(version), "-o", bundle], check=True,
                       capture_output=True)
        subprocess.run([TERN, "push", bundle, "--data", data] + (["--alias", "production"] if version == 1 else []),
                       check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([TERN, "serve", "--data", data, "--http-port", str(port), "--no-grpc", "--poll-interval", "0.2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline
            time.sleep(0.05)
        started = requests.post(f"{url}/api/v1/models/flaky/rollout", timeout=30, json={
            "to": 2, "steps": [10, 50, 100], "interval": interval, "min_requests": 40})
        assert started.status_code == 201, started.text
        stop = threading.Event()

        def client():
            session = requests.Session()
            while not stop.is_set():
                session.post(f"{url}/v2/models/flaky/infer", timeout=30, json={
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": [1.0] * 10}]})

        clients = [threading.Thread(target=client) for _ in range(2)]
        for thread in clients:
            thread.start()
        deadline = time.time() + 20 * interval + 30
        try:
            while True:
                state = requests.get(f"{url}/api/v1/models/flaky/rollout", timeout=30).json()
                if state["state"] != "running" or time.time() > deadline:
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        return state["state"], state.get("reason") or "", [e["event"] for e in state["history"]]
    finally:
        server.terminate()
        server.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--interval", type=float, default=4)
    parser.add_argument("--size", type=int, default=128, help="the stable model's matrix size (its cost grows as size^3)")
    args = parser.parse_args()
    stop = multiprocessing.Event()
    burner = multiprocessing.Process(target=burn, args=(stop,))
    burner.start()
    results = {}
    try:
        for name, candidate_size in (("equal", args.size), ("3x slower", round(args.size * 3 ** (1 / 3)))):
            outcomes = []
            for run in range(args.runs):
                with tempfile.TemporaryDirectory() as work:
                    state, reason, history = one_run(work, candidate_size, args.size, args.interval)
                outcomes.append(state)
                print(f"{name:10} run {run + 1:2}: {state:12} {' '.join(history)}  {reason[:150]}", flush=True)
            results[name] = {s: outcomes.count(s) for s in sorted(set(outcomes))}
    finally:
        stop.set()
        burner.join()
    print(json.dumps({"binary": TERN, "runs": args.runs, "interval_s": args.interval, "size": args.size, "results": results}))


if __name__ == "__main__":
    main()
