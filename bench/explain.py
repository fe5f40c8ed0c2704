#!/usr/bin/env python3
"""Explanations per second on one core: `tern explain` against shap's TreeExplainer on the same 100-tree
depth-4 gradient-boosted model, the same 200-row background and the same rows, interleaved rounds in one run.

Runs in `.venv-fixtures` (shap, scikit-learn; tools/fixture_venv.py). Needs a release build of tern
(`swift build -c release`). Retrains the model of Tests/Fixtures/explain/sklearn_gbc100 (the same data and
seed) for shap, and checks that both sides give the same attributions before timing them.

    python3 bench/explain.py [--rows 400] [--rounds 3]
"""
import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from fixture_venv import ROOT, ensure_venv  # noqa: E402

ensure_venv(__file__)

import numpy as np  # noqa: E402

TERN = os.path.join(ROOT, ".build", "release", "tern")
MODEL = os.path.join(ROOT, "Tests", "Fixtures", "explain", "sklearn_gbc100", "model.onnx")


def fixture_data():
    """The data tools/make-explain-fixtures.py trained on (its generator, freshly seeded)."""
    spec = importlib.util.spec_from_file_location("fixtures", os.path.join(ROOT, "tools", "make-explain-fixtures.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x, y, _, _ = module.credit_data(3400)
    return module.FEATURES, x, y


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows.tolist())


def time_tern(rows_csv, background_csv, method):
    start = time.perf_counter()
    out = subprocess.run(["taskset", "-c", "0", TERN, "explain", MODEL, "--input", rows_csv, "--background", background_csv,
                          "--method", method, "--json"], capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import shap
    from sklearn.ensemble import GradientBoostingClassifier

    features, x, y = fixture_data()
    model = GradientBoostingClassifier(n_estimators=100, max_depth=4, random_state=0).fit(x[:3000], y[:3000])
    background, rows = x[3020:3220], x[3000:3000 + args.rows] if args.rows <= 400 else np.tile(x[3000:3400], (args.rows // 400 + 1, 1))[:args.rows]
    os.sched_setaffinity(0, {0})  # shap on one core, as tern
    folder = tempfile.mkdtemp()
    rows_csv, one_csv, background_csv = (os.path.join(folder, n) for n in ("rows.csv", "one.csv", "background.csv"))
    write_csv(rows_csv, features, rows)
    write_csv(one_csv, features, rows[:1])
    write_csv(background_csv, features, background)

    results = {}
    for method, explainer in [
        # An explicit masker: given an array, shap keeps only 100 background rows (Independent's max_samples).
        ("interventional", shap.TreeExplainer(model, data=shap.maskers.Independent(background, max_samples=len(background)),
                                              feature_perturbation="interventional", model_output="raw")),
        ("path_dependent", shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")),
    ]:
        tern_times, shap_times = [], []
        for _ in range(args.rounds):
            fixed, _ = time_tern(one_csv, background_csv, method)  # process start, reading, JSON for one row
            elapsed, answer = time_tern(rows_csv, background_csv, method)
            tern_times.append(max(elapsed - fixed, 1e-9))
            start = time.perf_counter()
            values = explainer.shap_values(rows, check_additivity=False)
            shap_times.append(time.perf_counter() - start)
        if method == "interventional":
            mine = np.array([r["attributions"]["class 1"] for r in answer["rows"]])
            worst = float(np.abs(mine - np.asarray(values).reshape(mine.shape)).max())
            assert worst < 1e-6, f"tern and shap disagree by {worst}"
        tern_rate = len(rows) / statistics.median(tern_times)
        shap_rate = len(rows) / statistics.median(shap_times)
        results[method] = (tern_rate, shap_rate)
    print(f"| method | tern rows/s | shap rows/s | tern / shap |  ({len(rows)} rows, 200-row background, "
          f"100 trees depth 4, one core, median of {args.rounds})")
    print("|---|---|---|---|")
    for method, (tern_rate, shap_rate) in results.items():
        print(f"| {method} | {tern_rate:,.0f} | {shap_rate:,.0f} | {tern_rate / shap_rate:.2f}x |")


if __name__ == "__main__":
    main()
