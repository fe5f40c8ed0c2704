"""Batch jobs inside `tern serve` (--batch-root): a job scores a file as `tern batch` does and is kept in the
registry's history and audit trail; DELETE stops it within a second and a resumed job finishes the same
bytes; a cron schedule fires; paths outside the batch folder and unknown models are refused."""
import json
import os
import time

import requests

from registry_support import Registry, pack, tern
from test_batch import CREDIT, FEATURES, table


def api(server, method, path, **kwargs):
    return requests.request(method, f"http://{server.url}{path}", timeout=30, **kwargs)


def wait_for(server, job_id, states=("succeeded", "failed", "cancelled"), timeout=120):
    deadline = time.time() + timeout
    while True:
        body = api(server, "GET", f"/api/v1/jobs/{job_id}").json()
        if body["state"] in states:
            return body
        assert time.time() < deadline, body
        time.sleep(0.1)


def registry_with_credit(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1), "--alias", "production")
    return reg


def test_a_job_scores_as_the_cli_does_and_is_kept_in_the_history_and_the_audit(tmp_path):
    reg = registry_with_credit(tmp_path)
    root = tmp_path / "batch"
    root.mkdir()
    table(root / "in.csv", 30_000, 10, FEATURES, seed=2)
    bundle = pack(str(tmp_path), "gbc", "credit", 1)
    tern("batch", bundle, "--input", str(root / "in.csv"), "--output", str(tmp_path / "cli.csv"), "--id-column", "id")
    server = reg.serve("--batch-root", str(root))
    try:
        created = api(server, "POST", "/api/v1/jobs", json={
            "model": "credit@production", "input": "in.csv", "output": "out/scores.csv", "id_column": "id"})
        assert created.status_code == 400 and "cannot write" in created.json()["error"], created.text  # no out/ folder
        (root / "out").mkdir()
        created = api(server, "POST", "/api/v1/jobs", json={
            "model": "credit@production", "input": "in.csv", "output": "out/scores.csv", "id_column": "id"})
        assert created.status_code == 201, created.text
        job = created.json()
        assert job["state"] == "running" and job["model"] == "credit" and job["version"] == 1
        done = wait_for(server, job["id"])
        assert done["state"] == "succeeded" and done["rows"] == 30_000 and done["rejected"] == 0, done
        assert (root / "out" / "scores.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
        listed = api(server, "GET", "/api/v1/jobs").json()["jobs"]
        assert [j["id"] for j in listed if j["id"] == job["id"]]
    finally:
        server.stop()
    # The history survives the server: the registry keeps it, and the audit trail has both ends.
    server = reg.serve("--batch-root", str(root))
    try:
        kept = api(server, "GET", f"/api/v1/jobs/{job['id']}").json()
        assert kept["state"] == "succeeded" and kept["rows"] == 30_000 and kept["created_by"]
    finally:
        server.stop()
    actions = [e["action"] for e in json.loads(reg.cli("audit", "log", "--json").stdout)]
    assert "batch-job-start" in actions and "batch-job-succeeded" in actions


def test_delete_stops_a_job_within_a_second_and_a_resumed_job_finishes_the_same_bytes(tmp_path):
    reg = registry_with_credit(tmp_path)
    root = tmp_path / "batch"
    root.mkdir()
    table(root / "in.csv", 600_000, 10, FEATURES, seed=3)
    bundle = pack(str(tmp_path), "gbc", "credit", 1)
    tern("batch", bundle, "--input", str(root / "in.csv"), "--output", str(tmp_path / "cli.csv"), "--id-column", "id")
    server = reg.serve("--batch-root", str(root))
    try:
        request = {"model": "credit", "input": "in.csv", "output": "scores.csv", "id_column": "id"}
        job = api(server, "POST", "/api/v1/jobs", json=request).json()
        time.sleep(0.5)
        started = time.time()
        stopped = api(server, "DELETE", f"/api/v1/jobs/{job['id']}")
        took = time.time() - started
        assert stopped.status_code == 200 and stopped.json()["state"] == "cancelled", stopped.text
        assert took < 1.0, took
        assert os.path.exists(root / "scores.csv.checkpoint")
        resumed = api(server, "POST", "/api/v1/jobs", json=dict(request, resume=True)).json()
        assert wait_for(server, resumed["id"])["state"] == "succeeded"
        assert (root / "scores.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
    finally:
        server.stop()


def test_a_cron_schedule_fires(tmp_path):
    reg = registry_with_credit(tmp_path)
    root = tmp_path / "batch"
    root.mkdir()
    table(root / "in.csv", 1000, 10, FEATURES)
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("schedules:\n"
                         "  - name: every-two-seconds\n"
                         "    cron: '*/2 * * * * *'\n"
                         "    model: credit@production\n"
                         "    input: in.csv\n"
                         "    output: nightly.csv\n"
                         "    force: true\n")
    server = reg.serve("--batch-root", str(root), "--batch-schedules", str(schedules))
    try:
        deadline = time.time() + 15
        while True:
            jobs = [j for j in api(server, "GET", "/api/v1/jobs").json()["jobs"] if j.get("schedule") == "every-two-seconds"]
            if any(j["state"] == "succeeded" for j in jobs):
                break
            assert time.time() < deadline, jobs
            time.sleep(0.2)
        assert sum(1 for _ in open(root / "nightly.csv")) == 1001
        assert all(j["created_by"] == "schedule:every-two-seconds" for j in jobs)
    finally:
        server.stop()


def test_bad_jobs_are_refused_saying_why(tmp_path):
    reg = registry_with_credit(tmp_path)
    root = tmp_path / "batch"
    root.mkdir()
    table(root / "in.csv", 10, 10, FEATURES)
    outside = tmp_path / "outside"
    outside.mkdir()
    table(outside / "secret.csv", 10, 10, FEATURES)
    os.symlink(outside, root / "linked")  # a folder inside the root that leads out of it
    os.symlink(outside / "secret.csv", root / "secret.csv")
    server = reg.serve("--batch-root", str(root))
    try:
        for body, status, message in [
            ({"model": "credit", "input": "linked/secret.csv", "output": "o.csv"}, 400, "symbolic link"),
            ({"model": "credit", "input": "secret.csv", "output": "o.csv"}, 400, "symbolic link"),
            ({"model": "credit", "input": "in.csv", "output": "linked/o.csv"}, 400, "symbolic link"),
            ({"model": "credit", "input": "in.csv", "output": "in.csv"}, 400, "is the input"),
            ({"model": "credit", "input": "in.csv", "output": "./in.csv.gz"}, 400, "is the input"),
            ({"model": "credit", "input": "../secret.csv", "output": "o.csv"}, 400, "inside the batch folder"),
            ({"model": "credit", "input": "/etc/passwd", "output": "o.csv"}, 400, "inside the batch folder"),
            ({"model": "nothing", "input": "in.csv", "output": "o.csv"}, 404, "nothing"),
            ({"model": "credit", "input": "missing.csv", "output": "o.csv"}, 400, "cannot read the input"),
            ({"model": "credit", "input": "in.csv", "output": "o.csv", "format": "xml"}, 400, "format must be"),
            ({"input": "in.csv"}, 400, "'model' is missing"),
        ]:
            answer = api(server, "POST", "/api/v1/jobs", json=body)
            if answer.status_code == 201:
                answer = api(server, "GET", f"/api/v1/jobs/{answer.json()['id']}")
                wait = wait_for(server, answer.json()["id"])
                assert wait["state"] == "failed" and message in wait["error"], wait
                continue
            assert answer.status_code == status and message in answer.json()["error"], (body, answer.text)
        assert api(server, "DELETE", "/api/v1/jobs/job-nope").status_code == 404
        assert not os.path.exists(root / "o.csv") and not os.path.exists(outside / "o.csv")
        assert (root / "in.csv").stat().st_size > 0
    finally:
        server.stop()
    refused = tern("serve", "--models", str(tmp_path), "--batch-schedules", "x.yaml", check=False)
    assert refused.returncode != 0 and "needs --batch-root" in refused.stderr


def test_a_job_with_explain_adds_the_top_attributions_as_the_cli_does(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reference = os.path.join(os.path.dirname(CREDIT), "..", "..", "..", "data", "credit-reference.csv")
    bundle = pack(reg.tmp, "gbc", "credit", 1, "--reference", reference, "--label-column", "default")
    reg.cli("push", bundle, "--alias", "production")
    reg.cli("push", pack(reg.tmp, "gbc", "bare", 1))
    root = tmp_path / "batch"
    root.mkdir()
    table(root / "in.csv", 2000, 10, FEATURES, seed=7)
    tern("batch", bundle, "--input", str(root / "in.csv"), "--output", str(tmp_path / "cli.csv"), "--id-column", "id", "--explain", "2")
    server = reg.serve("--batch-root", str(root))
    try:
        job = api(server, "POST", "/api/v1/jobs", json={
            "model": "credit", "input": "in.csv", "output": "out.csv", "id_column": "id", "explain": 2}).json()
        assert wait_for(server, job["id"])["state"] == "succeeded"
        assert (root / "out.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
        refused = api(server, "POST", "/api/v1/jobs", json={"model": "bare", "input": "in.csv", "output": "o.csv", "explain": 2})
        assert refused.status_code == 400 and "--reference" in refused.json()["error"], refused.text
    finally:
        server.stop()
