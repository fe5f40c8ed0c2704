"""Validation gates (issue 16): before an alias moves (API, CLI, a rollout's promotion) the candidate and the
version the alias names are scored on the same labelled rows (the bundle's holdout); absolute bounds, the
regression against the current version and p99 latency must hold. The verdict's numbers equal scikit-learn's
on onnxruntime's outputs; it is audited and shown; a failing gate leaves the alias where it was; --force is
audited as such."""
import json

import numpy as np
import pytest
import sklearn.metrics as skm

from registry_support import Registry, api, credit_csv, pack
from test_pack import onnx_outputs


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    holdout = str(tmp / "holdout.csv")
    x, y = credit_csv(holdout, 600, seed=21)
    reg = Registry("sqlite", tmp)
    common = ["--holdout", holdout, "--label-column", "default"]
    reg.cli("push", pack(reg.tmp, "logreg", "credit", 1, *common), "--alias", "production")
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 2, *common))
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 3))  # no holdout kept
    auc = {v: skm.roc_auc_score(y, onnx_outputs(f, {"features": x})["probabilities"][:, 1].astype(np.float64))
           for v, f in ((1, "logreg"), (2, "gbc"))}
    accuracy = {v: skm.accuracy_score(y, onnx_outputs(f, {"features": x})["label"]) for v, f in ((1, "logreg"), (2, "gbc"))}
    server = reg.serve()
    yield reg, server, auc, accuracy
    server.stop()


def production(server):
    return api(server, "GET", "/api/v1/models/credit").json()["aliases"]["production"]


def last_verdict(reg):
    entries = [e for e in json.loads(reg.cli("audit", "log", "--model", "credit", "--json").stdout)
               if e["action"] in ("gate", "gate-forced")]
    return entries[-1]


def set_gate(server, gate):
    answer = api(server, "PUT", "/api/v1/models/credit/gate", json=gate)
    assert answer.status_code == 200, answer.text


def test_a_failing_gate_leaves_the_alias_and_records_every_number(gated):
    reg, server, auc, accuracy = gated
    set_gate(server, {"require": {"roc_auc": auc[2] + 0.001, "accuracy": 0.5}, "max_latency_increase": 50})
    answer = api(server, "PUT", "/api/v1/models/credit/aliases/production", json={"version": 2})
    assert answer.status_code == 409, answer.text
    assert "gate refused credit v2" in answer.json()["error"] and "roc_auc >=" in answer.json()["error"]
    assert production(server) == 1
    entry = last_verdict(reg)
    verdict = entry["after"]
    assert entry["action"] == "gate" and entry["version"] == 2 and verdict["passed"] is False
    assert verdict["candidate_metrics"]["roc_auc"] == pytest.approx(auc[2], abs=1e-9)
    assert verdict["current_metrics"]["roc_auc"] == pytest.approx(auc[1], abs=1e-9)
    assert verdict["candidate_metrics"]["accuracy"] == pytest.approx(accuracy[2], abs=1e-12)
    checks = {c["check"]: c for c in verdict["checks"]}
    assert checks["roc_auc >="]["passed"] is False and checks["accuracy >="]["passed"] is True
    assert verdict["rows"] == 600 and verdict["data"] == "v2's holdout"
    assert verdict["candidate_p99_ms"] > 0 and verdict["current_p99_ms"] > 0
    assert checks["p99 latency increase vs v1 <="]["value"] == pytest.approx(verdict["candidate_p99_ms"] / verdict["current_p99_ms"] - 1)
    # The CLI is refused the same way; --force moves it, audited as forced.
    refused = reg.cli("models", "alias", "credit", "production", "2", check=False)
    assert refused.returncode != 0 and "gate refused" in refused.stderr and production(server) == 1
    reg.cli("models", "alias", "credit", "production", "2", "--force")
    assert last_verdict(reg)["action"] == "gate-forced"
    shown = reg.cli("models", "show", "credit").stdout
    assert "FORCED past: gate failed" in shown and "gate:    accuracy >= 0.5, roc_auc >= " in shown, shown
    reg.cli("models", "alias", "credit", "production", "1", "--force")


def test_the_regression_bound_compares_with_the_current_version(gated):
    reg, server, auc, _ = gated
    better, worse = (1, 2) if auc[1] > auc[2] else (2, 1)
    reg.cli("models", "alias", "credit", "production", str(better), "--force")
    set_gate(server, {"max_regression": {"roc_auc": 0.0}})
    answer = api(server, "PUT", "/api/v1/models/credit/aliases/production", json={"version": worse})
    assert answer.status_code == 409 and "roc_auc regression" in answer.json()["error"], answer.text
    check = last_verdict(reg)["after"]["checks"][0]
    assert check["value"] == pytest.approx(auc[better] - auc[worse], abs=1e-9) and check["passed"] is False
    # Allowing that much regression lets it pass; the verdict is recorded as a pass.
    set_gate(server, {"max_regression": {"roc_auc": auc[better] - auc[worse] + 1e-6}})
    assert api(server, "PUT", "/api/v1/models/credit/aliases/production", json={"version": worse}).status_code == 200
    assert production(server) == worse and last_verdict(reg)["after"]["passed"] is True
    out = reg.cli("models", "gate", "credit", "--check", str(better)).stdout
    assert "gate passed on 600 rows of" in out, out
    # Exit codes a CI step relies on: 2 for a failing gate, with or without --json.
    set_gate(server, {"require": {"roc_auc": 0.999}})
    for extra in [[], ["--json"]]:
        failing = reg.cli("models", "gate", "credit", "--check", str(better), *extra, check=False)
        assert failing.returncode == 2 and "ExitCode" not in failing.stderr, (failing.returncode, failing.stderr)
    reg.cli("models", "alias", "credit", "production", "1", "--force")


def test_a_rollouts_promotion_goes_through_the_gate(gated):
    reg, server, auc, _ = gated
    set_gate(server, {"require": {"roc_auc": 0.999}})
    # The gate runs before the first step: the rollout does not start, and no traffic moves.
    refused = api(server, "POST", "/api/v1/models/credit/rollout", json={"to": 2, "interval": "1h", "auto_promote": False})
    assert refused.status_code == 409 and "validation gate refused to start" in refused.json()["error"], refused.text
    assert api(server, "GET", "/api/v1/models/credit/traffic").status_code == 404
    started = api(server, "POST", "/api/v1/models/credit/rollout", json={"to": 2, "interval": "1h", "auto_promote": False,
                                                                          "skip_gate": True})
    assert started.status_code == 201, started.text
    refused = api(server, "POST", "/api/v1/models/credit/rollout/promote")
    assert refused.status_code == 409 and "gate refused" in refused.json()["error"], refused.text
    assert production(server) == 1
    assert api(server, "GET", "/api/v1/models/credit/rollout").json()["state"] == "running"
    promoted = api(server, "POST", "/api/v1/models/credit/rollout/promote?force=true")
    assert promoted.status_code == 200 and promoted.json()["state"] == "promoted", promoted.text
    assert production(server) == 2 and last_verdict(reg)["action"] == "gate-forced"
    reg.cli("models", "alias", "credit", "production", "1", "--force")


def test_no_labelled_data_and_bad_gates_are_refused(gated):
    reg, server, _, _ = gated
    set_gate(server, {"require": {"roc_auc": 0.5}})
    answer = api(server, "PUT", "/api/v1/models/credit/aliases/production", json={"version": 3})
    assert answer.status_code == 409 and "no labelled data" in answer.json()["error"], answer.text
    assert production(server) == 1
    before = api(server, "GET", "/api/v1/models/credit/gate").json()
    for gate, message in [({}, "needs a bound"), ({"require": {"auc": 0.5}}, "unknown metric"),
                          ({"max_regression": {"roc_auc": -1}}, "0 or more"), ({"require": {"roc_auc": 0.5}, "aliases": []}, "at least one alias"),
                          ({"require": "high"}, "the body must be JSON")]:
        answer = api(server, "PUT", "/api/v1/models/credit/gate", json=gate)
        assert answer.status_code == 400 and message in answer.json()["error"], (gate, answer.text)
    assert api(server, "GET", "/api/v1/models/credit/gate").json()["require"] == before["require"]
    # An alias the gate does not guard moves freely; without the gate, production does too.
    assert api(server, "PUT", "/api/v1/models/credit/aliases/staging", json={"version": 3}).status_code == 200
    assert "no validation gate" in reg.cli("models", "gate", "credit", "--clear").stdout
    assert api(server, "PUT", "/api/v1/models/credit/aliases/production", json={"version": 3}).status_code == 200
    assert api(server, "GET", "/api/v1/models/credit/gate").status_code == 404
    reg.cli("models", "alias", "credit", "production", "1")
