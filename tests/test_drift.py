"""`tern drift compare` on real CSV files, every statistic checked against scipy's on the same columns."""
import csv
import json
import os
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from conftest import BINARY, ROOT

MISSING = {"", "nan", "NaN", "NA", "null"}


def write(path, rows, rng, shift=0.0, categories=("car", "home", "edu"), p=(0.5, 0.3, 0.2)):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["age", "income", "late_payments", "purpose"])
        for _ in range(rows):
            age = "" if rng.random() < 0.03 else f"{rng.normal(40 + shift, 10):.2f}"
            out.writerow([age, f"{rng.lognormal(10.8 + shift / 40, 0.4):.0f}", rng.poisson(1 + shift / 10),
                          rng.choice(categories, p=p)])


def column(path, name):
    with open(path) as f:
        return [row[name] for row in csv.DictReader(f)]


def psi(e, a):
    e = np.asarray(e, float) / np.sum(e)
    a = np.asarray(a, float) / np.sum(a)
    e, a = np.where(e == 0, 1e-4, e), np.where(a == 0, 1e-4, a)
    return float(np.sum((a - e) * np.log(a / e)))


def compare(reference, current, *extra):
    result = subprocess.run([BINARY, "drift", "compare", reference, current, "--json", *extra],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return {item["feature"]: item for item in json.loads(result.stdout)}


@pytest.mark.parametrize("shift", [0.0, 6.0])
def test_every_statistic_matches_scipy(tmp_path, shift):
    rng = np.random.default_rng(7)
    reference, current = str(tmp_path / "reference.csv"), str(tmp_path / "current.csv")
    write(reference, 2500, rng)
    write(current, 700, rng, shift=shift, categories=("car", "home", "biz") if shift else ("car", "home", "edu"),
          p=(0.4, 0.3, 0.3) if shift else (0.5, 0.3, 0.2))
    report = compare(reference, current)
    for name in ["age", "income", "late_payments"]:
        ref_cells, cur_cells = column(reference, name), column(current, name)
        r = np.array([float(x) for x in ref_cells if x not in MISSING])
        c = np.array([float(x) for x in cur_cells if x not in MISSING])
        item = report[name]
        assert item["kind"] == "numeric"
        ks = ks_2samp(r, c)
        assert item["ks_statistic"] == pytest.approx(ks.statistic, rel=1e-9)
        assert item["ks_p_value"] == pytest.approx(ks.pvalue, abs=1e-9, rel=1e-9)
        assert item["wasserstein"] == pytest.approx(wasserstein_distance(r, c), rel=1e-9)
        edges = list(dict.fromkeys(np.quantile(r, np.arange(1, 10) / 10).tolist()))
        counts = lambda v: np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1)  # noqa: E731
        assert item["psi"] == pytest.approx(psi(counts(r), counts(c)), rel=1e-9, abs=1e-15)
        assert item["jensen_shannon"] == pytest.approx(float(jensenshannon(counts(r), counts(c), base=2)), rel=1e-9, abs=1e-12)
        assert item["reference_missing_rate"] == pytest.approx((len(ref_cells) - len(r)) / len(ref_cells))
    purpose = report["purpose"]
    ref_cells, cur_cells = column(reference, "purpose"), column(current, "purpose")
    categories = sorted(set(ref_cells) | set(cur_cells))
    table = np.array([[ref_cells.count(k) for k in categories], [cur_cells.count(k) for k in categories]])
    expected = chi2_contingency(table)
    assert purpose["kind"] == "categorical"
    assert purpose["chi_squared"] == pytest.approx(expected.statistic, rel=1e-9)
    assert purpose["chi_squared_p_value"] == pytest.approx(expected.pvalue, abs=1e-9)
    assert purpose["psi"] == pytest.approx(psi(table[0], table[1]), rel=1e-9, abs=1e-15)
    if shift:
        assert purpose["new_categories"] == ["biz"] and purpose["vanished_categories"] == ["edu"]
        assert all(report[name]["drifted"] for name in report), report
    else:
        assert not purpose["new_categories"] and not any(report[name]["drifted"] for name in ["age", "income", "purpose"])
    table_text = subprocess.run([BINARY, "drift", "compare", reference, current], capture_output=True, text=True).stdout
    assert ("DRIFT" in table_text) == bool(shift) and "columns drifted" in table_text
    gate = subprocess.run([BINARY, "drift", "compare", reference, current, "--fail-on-drift"], capture_output=True, text=True)
    assert gate.returncode == (3 if shift else 0)


def test_bad_files_and_columns_are_named(tmp_path):
    rng = np.random.default_rng(1)
    reference = str(tmp_path / "reference.csv")
    write(reference, 50, rng)
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")
    for args, message in [
        ([reference, str(tmp_path / "missing.csv")], "cannot read"),
        ([reference, str(other)], "share no column"),
        ([reference, reference, "--columns", "age,nope"], "column 'nope' is not in both files"),
    ]:
        result = subprocess.run([BINARY, "drift", "compare", *args], capture_output=True, text=True)
        assert result.returncode == 1 and message in result.stderr, result.stderr


def test_a_served_models_drift_against_its_bundles_reference(tmp_path):
    import zipfile

    import requests
    from registry_support import CREDIT_FEATURES, Registry, credit_csv, credit_table, pack

    reference = str(tmp_path / "reference.csv")
    credit_csv(reference, 1500, seed=1)
    bundle = pack(str(tmp_path), "gbc", "credit", 1, "--reference", reference, "--label-column", "default")
    with zipfile.ZipFile(bundle) as archive:
        sample = json.loads(archive.read("profile.json"))["sample"]
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", bundle, "--alias", "production")
    server = registry.serve("--drift-interval", "0.3")
    try:
        url = f"http://{server.url}"
        empty = requests.get(f"{url}/api/v1/models/credit/drift", timeout=10).json()
        assert empty["predictions"] == 0 and empty["features"] == [] and empty["reference_rows"] == len(sample["rows"])

        def send(rows):
            for start in range(0, len(rows), 20):
                chunk = rows[start:start + 20].astype(np.float32)
                answer = requests.post(f"{url}/v2/models/credit/infer", timeout=10, json={"inputs": [
                    {"name": "features", "datatype": "FP32", "shape": list(chunk.shape), "data": chunk.ravel().tolist()}]})
                assert answer.status_code == 200, answer.text
            time.sleep(0.6)  # the prediction log's writer

        import time
        like, _ = credit_table(600, seed=5)
        send(like)
        calm = requests.get(f"{url}/api/v1/models/credit/drift?window=30", timeout=10).json()
        assert calm["predictions"] == 30 and calm["rows"] == 600 and calm["version"] == 1
        shifted = like.copy()
        shifted[:, 1] *= 3  # income triples
        send(shifted)
        drift = requests.get(f"{url}/api/v1/models/credit/drift?window=30", timeout=10).json()
        assert drift["rows"] == 600 and "income" in drift["drifted"], drift["drifted"]
        income = {f["feature"]: f for f in drift["features"]}["income"]
        column = sample["columns"].index("income")
        ref_values = np.array([float(row[column]) for row in sample["rows"]])
        live_values = shifted[:, 1].astype(np.float32).astype(np.float64)  # as the model received them (FP32)
        expected = ks_2samp(ref_values, live_values)
        assert income["ks_statistic"] == pytest.approx(expected.statistic, rel=1e-9)
        assert income["ks_p_value"] == pytest.approx(expected.pvalue, abs=1e-9)
        assert income["wasserstein"] == pytest.approx(wasserstein_distance(ref_values, live_values), rel=1e-6)
        # A time window: everything since a minute ago holds both halves; one in the past holds nothing.
        both = requests.get(f"{url}/api/v1/models/credit/drift?since=1m&window=10000", timeout=10).json()
        assert both["predictions"] == 60 and both["rows"] == 1200
        past = requests.get(f"{url}/api/v1/models/credit/drift?since=2000-01-01&until=2000-01-02", timeout=10).json()
        assert past["predictions"] == 0 and past["features"] == []
        assert requests.get(f"{url}/api/v1/models/credit/drift?since=later", timeout=10).status_code == 400
        # PSI on the whole reference data's decile bins (the profile keeps them), as numpy and the formula give it.
        full = np.array([float(row["income"]) for row in csv.DictReader(open(reference))])
        edges = list(dict.fromkeys(np.quantile(full, np.arange(1, 10) / 10).tolist()))
        counts = lambda v: np.bincount(np.searchsorted(edges, v, side="left"), minlength=len(edges) + 1)  # noqa: E731
        assert income["psi"] == pytest.approx(psi(counts(full), counts(live_values)), rel=1e-9)
        assert income["reference_counts"] == counts(full).tolist()
        calm_income = {f["feature"]: f for f in calm["features"]}["income"]
        assert not calm_income["drifted"], calm_income
        names = set(f["feature"] for f in drift["features"])
        # The inputs, and the predictions themselves (the bundle keeps the model's outputs on its sample).
        assert names == set(CREDIT_FEATURES) | {"prediction.label", "prediction.probabilities[0]", "prediction.probabilities[1]"}
        with zipfile.ZipFile(bundle) as archive:
            outputs = json.loads(archive.read("profile.json"))["outputSample"]
        assert outputs["columns"] == ["label", "probabilities[0]", "probabilities[1]"] and len(outputs["rows"]) == len(sample["rows"])
        p1 = {f["feature"]: f for f in drift["features"]}["prediction.probabilities[1]"]
        ref_p1 = np.array([float(row[2]) for row in outputs["rows"]])
        assert p1["ks_statistic"] > 0 and p1["reference_count"] == len(ref_p1)
        status = subprocess.run([BINARY, "drift", "status", "credit", "--server", url, "--window", "30"],
                                capture_output=True, text=True)
        assert status.returncode == 0 and "income" in status.stdout and "DRIFT" in status.stdout, status.stderr
        gate = subprocess.run([BINARY, "drift", "status", "credit", "--server", url, "--window", "30", "--fail-on-drift"],
                              capture_output=True, text=True)
        assert gate.returncode == 3
        # The same drift as gauges in /metrics (computed every --drift-interval over --drift-window predictions).
        gauge = 'tern_drift_detected{model="credit",version="1",feature="income"} 1'
        deadline = time.time() + 10
        while gauge not in requests.get(f"{url}/metrics", timeout=10).text:
            assert time.time() < deadline, "no drift gauge for income"
            time.sleep(0.2)
        text = requests.get(f"{url}/metrics", timeout=10).text
        assert 'tern_drift_psi{model="credit",version="1",feature="income"}' in text
        assert 'tern_drift_features_drifted{model="credit",version="1"}' in text
        bad = requests.get(f"{url}/api/v1/models/credit/drift?window=0", timeout=10)
        assert bad.status_code == 400 and "window" in bad.json()["error"]
        assert requests.get(f"{url}/api/v1/models/nope/drift", timeout=10).status_code == 404
    finally:
        server.stop()


def test_drift_from_memory_with_the_prediction_log_off(tmp_path):
    """Windows kept in memory serve drift without any database: the same statistics as scipy's, at once."""
    import requests
    from registry_support import Registry, credit_csv, credit_table, pack

    reference = str(tmp_path / "reference.csv")
    credit_csv(reference, 1500, seed=1)
    bundle = pack(str(tmp_path), "gbc", "credit", 1, "--reference", reference, "--label-column", "default")
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", bundle, "--alias", "production")
    server = registry.serve("--prediction-log", "off", "--drift-memory", "40")
    try:
        url = f"http://{server.url}"
        assert requests.get(f"{url}/api/v1/predictions", timeout=10).status_code == 404  # no log at all
        like, _ = credit_table(600, seed=5)
        shifted = like.copy()
        shifted[:, 1] *= 3
        for rows in (like, shifted):
            for start in range(0, len(rows), 20):
                chunk = rows[start:start + 20].astype(np.float32)
                answer = requests.post(f"{url}/v2/models/credit/infer", timeout=10, json={"inputs": [
                    {"name": "features", "datatype": "FP32", "shape": list(chunk.shape), "data": chunk.ravel().tolist()}]})
                assert answer.status_code == 200
        drift = requests.get(f"{url}/api/v1/models/credit/drift?window=30", timeout=10).json()  # no wait: memory
        assert drift["predictions"] == 30 and drift["rows"] == 600 and "income" in drift["drifted"]
        with zipfile.ZipFile(bundle) as archive:
            sample = json.loads(archive.read("profile.json"))["sample"]
        column = sample["columns"].index("income")
        income = {f["feature"]: f for f in drift["features"]}["income"]
        expected = ks_2samp([float(r[column]) for r in sample["rows"]], shifted[:, 1].astype(np.float32).astype(np.float64))
        assert income["ks_statistic"] == pytest.approx(expected.statistic, rel=1e-9)
        # Memory keeps the newest 40 predictions: a window of 40 holds the last 10 calm ones and the 30 shifted.
        kept = requests.get(f"{url}/api/v1/models/credit/drift?window=10000&since=1m", timeout=10).json()
        assert kept["predictions"] == 40 and kept["rows"] == 800
    finally:
        server.stop()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium (Debian's package) is not installed")
def test_the_html_report_renders_in_headless_chromium(tmp_path):
    rng = np.random.default_rng(3)
    reference, current = str(tmp_path / "reference.csv"), str(tmp_path / "current.csv")
    write(reference, 2000, rng)
    write(current, 600, rng, shift=6.0, categories=("car", "home", "biz"), p=(0.4, 0.3, 0.3))
    page = tmp_path / "report.html"
    made = subprocess.run([BINARY, "drift", "report", "--reference", reference, "--current", current, "-o", str(page)],
                          capture_output=True, text=True)
    assert made.returncode == 0 and "4 features, 4 drifted" in made.stdout, made.stderr
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html  # self-contained
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
               "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run(browser + ["--dump-dom", f"file://{page}"], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr, [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    for feature in ["age", "income", "late_payments", "purpose"]:
        assert f'id="f-{feature.replace("_", "-")}"' in dom.stdout
    assert dom.stdout.count("<svg") == 4 and dom.stdout.count('class="badge drift"') >= 4
    shot = tmp_path / "report.png"
    subprocess.run(browser + ["--window-size=1200,1600", f"--screenshot={shot}", f"file://{page}"],
                   capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
