"""One served lender for the console and GraphQL tests: a registry with two versions of the credit model
(reference and holdout data packed in), API keys per scope, an alert rule on drift, then real traffic, a drift
shift (income tripled), ground truth for the first predictions and a rollout to v2 left at its first step."""
import os
import time

import numpy as np
import requests

from registry_support import Registry, credit_csv, credit_table, pack


class Lender:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        reference = os.path.join(self.tmp, "reference.csv")
        holdout = os.path.join(self.tmp, "holdout.csv")
        credit_csv(reference, 1500, seed=1)
        credit_csv(holdout, 300, seed=2)
        data = ["--reference", reference, "--holdout", holdout, "--label-column", "default"]
        self.registry = Registry("sqlite", self.tmp)
        self.registry.cli("push", pack(self.tmp, "gbc", "credit", 1, *data), "--alias", "production")
        self.registry.cli("push", pack(self.tmp, "gbc", "credit", 2, *data))
        self.registry.cli("push", pack(self.tmp, "logreg", "other", 1))
        self.keys = {}
        for name, scopes, extra in [("admin", "admin,read,infer", []), ("reader", "read", []), ("inferrer", "infer", []),
                                    ("credit-only", "read,infer", ["--grant", "credit"])]:
            self.keys[name] = self.registry.cli("keys", "create", name, "--scopes", scopes, *extra).stdout.strip()
        rules = os.path.join(self.tmp, "alerts.yaml")
        with open(rules, "w") as f:
            f.write("interval: 0.3s\nrules:\n"
                    "  - {name: credit-drift, model: credit, metric: drift.drifted_features, op: '>', threshold: 0,"
                    " window: 20, severity: page}\n")
        batch = os.path.join(self.tmp, "batch")
        os.makedirs(os.path.join(batch, "in"))
        os.makedirs(os.path.join(batch, "out"))
        credit_csv(os.path.join(batch, "in", "applicants.csv"), 200, seed=7, label=False)
        self.server = self.registry.serve(
            "--alert-rules", rules, "--batch-root", batch, "--batch-threads", "1", "--graphql-playground")
        self.url = f"http://{self.server.url}"
        try:
            self.play(batch)
        except BaseException:
            self.server.stop()  # a scenario that fails half-way leaves no server behind
            raise

    def play(self, batch):
        self.truth = {}
        like, labels = credit_table(400, seed=5)
        self.send(like, labels, "calm")
        shifted, shifted_labels = credit_table(400, seed=6)
        shifted[:, 1] *= 3
        self.send(shifted, shifted_labels, "shifted")
        feedback = [{"request_id": rid, "label": label} for rid, label in self.truth.items() if rid.startswith("calm")]
        answer = self.post("/api/v1/feedback", json=feedback)
        assert answer.status_code == 200 and answer.json()["accepted"] == 20, answer.text
        job = self.post("/api/v1/jobs", json={"model": "credit@production", "input": "in/applicants.csv",
                                              "output": "out/scores.csv"})
        assert job.status_code in (200, 201, 202), job.text
        self.job = job.json()["id"]
        deadline = time.time() + 30
        while self.get(f"/api/v1/jobs/{self.job}").json()["state"] != "succeeded":
            assert time.time() < deadline, self.get(f"/api/v1/jobs/{self.job}").text
            time.sleep(0.1)
        started = self.post("/api/v1/models/credit/rollout", json={"to": 2, "steps": [30, 100], "interval": "1h"})
        assert started.status_code in (200, 201), started.text
        deadline = time.time() + 20
        while self.get("/api/v1/alerts").json()["alerts"][0]["state"] != "firing":
            assert time.time() < deadline, self.get("/api/v1/alerts").text
            time.sleep(0.2)

    def headers(self, key="admin"):
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def get(self, path, key="admin", **kwargs):
        return requests.get(self.url + path, headers=self.headers(key), timeout=30, **kwargs)

    def post(self, path, key="admin", **kwargs):
        return requests.post(self.url + path, headers=self.headers(key), timeout=30, **kwargs)

    def send(self, rows, labels, prefix):
        """20 requests of 20 rows, each under its own request id (kept with its true labels for feedback)."""
        for index in range(20):
            chunk = rows[index * 20:(index + 1) * 20].astype(np.float32)
            rid = f"{prefix}-{index}"
            answer = requests.post(
                f"{self.url}/v2/models/credit/infer", timeout=10,
                headers={**self.headers("inferrer"), "X-Request-ID": rid},
                json={"inputs": [{"name": "features", "datatype": "FP32", "shape": list(chunk.shape),
                                  "data": chunk.ravel().tolist()}]})
            assert answer.status_code == 200, answer.text
            self.truth[rid] = [int(v) for v in labels[index * 20:(index + 1) * 20]]

    def stop(self):
        self.server.stop()
