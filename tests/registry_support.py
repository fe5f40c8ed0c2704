"""Helpers for the registry tests: data files, bundles, registries on SQLite or PostgreSQL, the CLI."""
import io
import json
import os
import subprocess
import uuid
import zipfile

import numpy as np
import pytest
import requests

from conftest import BINARY, FIXTURES, ROOT, Server

CREDIT_FEATURES = [
    "age", "income", "debt_ratio", "credit_lines", "late_30d", "late_90d", "loan_amount",
    "employment_years", "open_accounts", "utilization",
]
POSTGRES_URL = os.environ.get("TERN_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="TERN_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL server)"))]


def credit_table(rows, seed):
    """Credit-risk rows as the fixture models were trained on, with a `default` label."""
    rng = np.random.default_rng(seed)
    x = np.stack([
        rng.integers(21, 75, rows), rng.lognormal(10.8, 0.5, rows), rng.beta(2, 5, rows), rng.poisson(5, rows),
        rng.poisson(0.4, rows), rng.poisson(0.1, rows), rng.lognormal(9.5, 0.7, rows), rng.exponential(6, rows),
        rng.poisson(8, rows), rng.beta(2, 3, rows),
    ], axis=1).astype(np.float32)
    logit = (-1.5 - 0.02 * (x[:, 0] - 45) - 0.6 * (np.log(x[:, 1]) - 10.8) + 2.5 * x[:, 2] + 0.8 * x[:, 4]
             + 1.6 * x[:, 5] + 0.4 * (np.log(x[:, 6]) - 9.5) - 0.05 * x[:, 7] + 1.8 * x[:, 9])
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y


def write_csv(path, columns, rows):
    with open(path, "w") as f:
        f.write(",".join(columns) + "\n")
        for row in rows:
            f.write(",".join(str(v) for v in row) + "\n")
    return path


def credit_csv(path, rows, seed, label=True):
    x, y = credit_table(rows, seed)
    columns = CREDIT_FEATURES + (["default"] if label else [])
    data = [[repr(float(v)) for v in row] + ([int(t)] if label else []) for row, t in zip(x, y)]
    write_csv(path, columns, data)
    return x, y


def tern(*args, check=True, cwd=ROOT):
    """Runs the CLI; returns the completed process (stdout and stderr as text)."""
    result = subprocess.run([BINARY, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"tern {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def pack(tmp, fixture, name, version, *extra):
    path = os.path.join(tmp, f"{name}-{fixture}-{version}.tern")
    tern("pack", os.path.join(FIXTURES, fixture, "model.onnx"), "--name", name, "--version", str(version),
         "-o", path, *extra)
    return path


def new_postgres_database():
    name = "tern_" + uuid.uuid4().hex[:16]
    subprocess.run(["psql", POSTGRES_URL, "-q", "-c", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return POSTGRES_URL.rsplit("/", 1)[0] + "/" + name


class Registry:
    """A registry for one test: its CLI arguments, SQL access for tampering, and servers on it."""

    def __init__(self, backend, tmp, artifacts_in_database=False, database=None):
        self.backend = backend
        self.tmp = str(tmp)
        self.data = os.path.join(self.tmp, "data")
        self.args = ["--data", self.data]
        if backend == "postgres":
            self.database = database or new_postgres_database()
            self.args += ["--database", self.database]
        # Where new archives go: a flag of the commands that change the registry, and of serve.
        self.change_args = ["--artifacts-in-database"] if artifacts_in_database else []

    def cli(self, *args, check=True):
        changes = args[0] == "push" or args[:1] == ("models",) and args[1] in ("alias", "unalias", "archive", "delete")
        return tern(*args, *self.args, *(self.change_args if changes else []), check=check)

    def serve(self, *extra, data=None):
        args = list(self.args) + self.change_args
        if data:
            args[1] = data
        # A test's registry may start empty (models pushed to the running server): --create says so.
        return Server(None, *args, "--create", "--poll-interval", "0.2", *extra, log_dir=self.tmp)

    def sql(self, statement):
        if self.backend == "sqlite":
            import sqlite3
            with sqlite3.connect(os.path.join(self.data, "registry.sqlite")) as db:
                db.execute(statement)
        else:
            subprocess.run(["psql", self.database, "-q", "-c", statement], check=True, capture_output=True)


def api(server, method, path, **kwargs):
    return requests.request(method, f"http://{server.url}{path}", timeout=30, **kwargs)


def state(server):
    """What must not change when a request is refused: the models and the length of the audit trail."""
    return api(server, "GET", "/api/v1/models").json(), len(api(server, "GET", "/api/v1/audit").json())


def infer(server, model, rows, version=None):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.reshape(-1).tolist()}]}
    return api(server, "POST", path, json=body)


def rewrite_bundle(path, change):
    """A copy of a bundle with `change(files)` applied to its {name: bytes} (the manifest not re-signed)."""
    with zipfile.ZipFile(path) as source:
        files = {name: source.read(name) for name in source.namelist()}
    change(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, data in files.items():
            target.writestr(name, data)
    return out.getvalue()


def manifest(path):
    with zipfile.ZipFile(path) as bundle:
        return json.loads(bundle.read("tern.json"))
