#!/usr/bin/env python3
"""`tern batch` against the script users write today (pandas read_csv in chunks, onnxruntime session.run per
chunk, to_csv), on the same generated CSV, same machine, same run: rows/s and peak RSS of each, at 1M and
4M rows (RSS should stay flat for tern as the input grows).

Runs in the test venv (.venv: pandas, onnxruntime). Needs a release build of tern (`swift build -c release`).

    .venv/bin/python bench/batch.py [--rows 1000000 4000000] [--rounds 2]
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERN = os.path.join(ROOT, ".build", "release", "tern")
MODEL = os.path.join(ROOT, "examples", "models", "credit-risk", "2", "model.onnx")
FEATURES = ["age", "income", "debt_ratio", "credit_lines", "late_30d", "late_90d", "loan_amount", "employment_years",
            "open_accounts", "utilization"]

SCRIPT = r'''
import sys
import numpy as np
import onnxruntime as ort
import pandas as pd
model, source, target = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
first = True
for chunk in pd.read_csv(source, chunksize=100_000):
    ids = chunk.pop("id")
    label, probabilities = session.run(None, {name: chunk.to_numpy(np.float32)})
    out = pd.DataFrame({"id": ids, "label": label, "probabilities_0": probabilities[:, 0], "probabilities_1": probabilities[:, 1]})
    out.to_csv(target, mode="w" if first else "a", header=first, index=False)
    first = False
'''


def generate(path, rows):
    generator = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write("id," + ",".join(FEATURES) + "\n")
        for start in range(0, rows, 200_000):
            count = min(200_000, rows - start)
            frame = pd.DataFrame(np.round(generator.normal(size=(count, len(FEATURES))) * 3, 4))
            frame.insert(0, "id", np.arange(start, start + count))
            frame.to_csv(f, header=False, index=False, float_format="%.4f")


def measure(command):
    """Wall seconds and peak RSS (MiB) of a child process, read from wait4's rusage."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{command[0]} failed: {process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    script = os.path.join(folder, "score.py")
    with open(script, "w") as f:
        f.write(SCRIPT)
    print(f"| rows | tern rows/s | pandas + onnxruntime rows/s | tern / script | tern peak RSS | script peak RSS |"
          f"  (credit-risk v2, 100 trees, {os.cpu_count()} cores, best of {args.rounds})")
    print("|---:|---:|---:|---:|---:|---:|")
    for rows in args.rows:
        source = os.path.join(folder, f"in-{rows}.csv")
        generate(source, rows)
        tern_runs, script_runs = [], []
        for _ in range(args.rounds):  # interleaved
            out = os.path.join(folder, "tern.csv")
            tern_runs.append(measure([TERN, "batch", MODEL, "--input", source, "--output", out, "--id-column", "id",
                                      "--force", "--quiet"]))
            script_runs.append(measure([sys.executable, script, MODEL, source, os.path.join(folder, "script.csv")]))
        tern_time = min(t for t, _ in tern_runs)
        script_time = min(t for t, _ in script_runs)
        print(f"| {rows:,} | {rows / tern_time:,.0f} | {rows / script_time:,.0f} | {script_time / tern_time:.2f}x "
              f"| {max(m for _, m in tern_runs):,.0f} MiB | {max(m for _, m in script_runs):,.0f} MiB |")
        os.remove(source)


if __name__ == "__main__":
    main()
