#!/usr/bin/env python3
"""Footprint: start to ready, and memory after load, of Tern's defaults against a small-footprint (edge)
configuration, on the example credit-risk models.

    python3 bench/edge.py [--binary .build/release/tern] [--rounds 5]

Each round starts each configuration afresh (a new data folder), times start to the first 200 from
/v2/health/ready, reads the resident set size (VmRSS) at ready, loads it with wrk (credit-risk v2, 1 row,
8 connections, 5 s, then 32 rows, 64 connections, 5 s; every answer checked against onnxruntime), and reads
the RSS again. Reports medians; docs/performance.md ("A small footprint") has the numbers.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_venv  # noqa: E402

bench_venv.enter(__file__)

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402

import run  # noqa: E402

EDGE = ["--http-threads", "1", "--runner-threads", "1", "--no-grpc", "--drift-memory", "100",
        "--prediction-log-retention", "7d"]


def body(rows):
    with open(os.path.join(ROOT, "examples", "data", "credit-holdout.csv")) as f:
        lines = f.read().splitlines()[1:rows + 1]
    sample = np.array([[float(v) for v in line.split(",")[:10]] for line in lines], dtype=np.float32)
    payload = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(sample.shape), "data": sample.tolist()}]}
    return sample, json.dumps(payload)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build", "release", "tern"))
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    session = run.ort.InferenceSession(os.path.join(ROOT, "examples", "models", "credit-risk", "2", "model.onnx"))
    configurations = {
        "defaults": lambda data: [],
        "edge": lambda data: EDGE + ["--prediction-log", "jsonl:" + os.path.join(data, "log")],
    }
    results = {name: [] for name in configurations}
    with tempfile.TemporaryDirectory() as workdir:
        for round_number in range(args.rounds):
            for name, flags in configurations.items():
                data = tempfile.mkdtemp(dir=workdir)
                port = run.free_port()
                server = run.Server(name, [args.binary, "serve", "--models", os.path.join(ROOT, "examples", "models"),
                                           "--log-level", "warning", *flags(data), "--http-port", str(port)],
                                    port, env={"TERN_DATA": data})
                try:
                    at_ready = run.rss_mb(server.process.pid)
                    cells = []
                    for rows, concurrency in ((1, 8), (32, 64)):
                        sample, payload = body(rows)
                        expected = run.check_answer(server, "credit-risk", sample, payload, session)
                        cells.append(run.load(server, "credit-risk", rows, concurrency, 5, payload, expected, workdir))
                    after = run.rss_mb(server.process.pid)
                finally:
                    server.stop()
                result = {"ready_ms": server.ready_ms, "rss_ready": at_ready, "rss_after": after,
                          "rps_1": cells[0]["rps"], "p99_1": cells[0]["p99_us"], "rows_32": cells[1]["rows_per_s"]}
                results[name].append(result)
                print(f"round {round_number + 1} {name:9} ready {server.ready_ms:.0f} ms, RSS {at_ready:.0f} -> "
                      f"{after:.0f} MB, 1 row c=8 {cells[0]['rps']:.0f} req/s p99 {cells[0]['p99_us']} us, "
                      f"32 rows c=64 {cells[1]['rows_per_s']:.0f} rows/s", flush=True)
    print(f"\ncredit-risk v2, medians of {args.rounds} rounds\n")
    print("| configuration | start to ready | RSS at ready | RSS after load | 1 row, c=8 | p99 | 32 rows, c=64 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        def median(key):
            return statistics.median(r[key] for r in runs)
        print(f"| {name} | {median('ready_ms'):.0f} ms | {median('rss_ready'):.0f} MB | {median('rss_after'):.0f} MB | "
              f"{median('rps_1'):,.0f} req/s | {median('p99_1') / 1000:.2f} ms | {median('rows_32'):,.0f} rows/s |")


if __name__ == "__main__":
    main()
