"""Scale-out on existing machinery (issue 15): nginx (Debian's) balancing three `tern serve` replicas that
share one PostgreSQL registry with the bundles in the database. A push and an alias move through one
replica are served by all within the poll interval; SIGKILL of a replica under load from 8 clients loses no
request (nginx retries on the next replica: deploy/nginx/tern.conf); a replica started later catches up."""
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
import requests

from conftest import ROOT, Server, free_port, run_concurrently
from registry_support import POSTGRES_URL, Registry, pack

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="TERN_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL server)")
ROW = [35, 52000, 0.3, 4, 0, 0, 12000, 6, 7, 0.4]


class Nginx:
    def __init__(self, tmp, ports):
        assert shutil.which("nginx"), "nginx is not installed (scripts/test.sh installs it from Debian's packages)"
        self.prefix = os.path.join(tmp, "nginx")
        os.makedirs(self.prefix, exist_ok=True)
        self.port = free_port()
        with open(os.path.join(ROOT, "deploy", "nginx", "tern.conf")) as f:
            text = f.read()
        servers = "\n        ".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in ports)
        text = text.replace("{{PREFIX}}", self.prefix).replace("{{PORT}}", str(self.port)).replace("{{SERVERS}}", servers)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(text)
        self.process = subprocess.Popen(["nginx", "-c", self.conf, "-p", self.prefix, "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert time.time() < deadline and self.process.poll() is None, open(os.path.join(self.prefix, "error.log")).read()
            time.sleep(0.05)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def version_of(url, model="credit"):
    answer = requests.post(f"http://{url}/v2/models/{model}/infer", timeout=30, json={
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW}]})
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


def test_three_replicas_behind_nginx_follow_one_registry_and_survive_a_kill(tmp_path):
    reg = Registry("postgres", tmp_path, artifacts_in_database=True)
    reg.cli("push", pack(reg.tmp, "logreg", "credit", 1), "--alias", "production")
    replicas = [reg.serve(data=str(tmp_path / f"replica-{i}")) for i in range(3)]
    nginx = Nginx(str(tmp_path), [r.port for r in replicas])
    late = None
    try:
        assert {version_of(f"127.0.0.1:{nginx.port}") for _ in range(9)} == {"1"}
        # A push and an alias move through one replica: every replica serves it within the poll interval.
        upload = requests.post(f"http://{replicas[0].url}/api/v1/bundles", timeout=60,
                               data=open(pack(reg.tmp, "gbc", "credit", 2), "rb").read())
        assert upload.status_code == 201, upload.text
        moved = requests.put(f"http://{replicas[0].url}/api/v1/models/credit/aliases/production", json={"version": 2}, timeout=60)
        assert moved.status_code == 200, moved.text
        deadline = time.time() + 5
        while {version_of(r.url) for r in replicas} != {"2"}:
            assert time.time() < deadline, [version_of(r.url) for r in replicas]
            time.sleep(0.1)
        # Under load from 8 clients through nginx, one replica is killed with SIGKILL: no request fails.
        statuses, lock = [], threading.Lock()
        killed = threading.Event()

        def client(index):
            session = requests.Session()
            yield
            mine = []
            for n in range(300):
                answer = session.post(f"http://127.0.0.1:{nginx.port}/v2/models/credit/infer", timeout=30, json={
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW}]})
                mine.append((answer.status_code, answer.json().get("model_version") if answer.status_code == 200 else answer.text))
                if index == 0 and n == 100:
                    replicas[1].process.send_signal(signal.SIGKILL)
                    killed.set()
            with lock:
                statuses.extend(mine)

        run_concurrently(8, client)
        assert killed.is_set() and replicas[1].process.wait(timeout=10) == -signal.SIGKILL
        failed = [s for s in statuses if s[0] != 200]
        assert len(statuses) == 2400 and not failed, failed[:5]
        assert {v for _, v in statuses} == {"2"}
        # A replica started later catches up: it serves what the registry says now (started without
        # --artifacts-in-database, it still reads the bundles the others pushed into the database).
        late = Server(None, "--data", str(tmp_path / "replica-late"), "--database", reg.database, "--poll-interval", "0.2",
                      log_dir=str(tmp_path))
        assert version_of(late.url) == "2"
        assert requests.get(f"http://{late.url}/api/v1/models/credit", timeout=10).json()["aliases"]["production"] == 2
    finally:
        nginx.stop()
        for replica in replicas + ([late] if late else []):
            if replica.process.poll() is None:
                replica.stop()
            else:
                replica.log.close()


def test_a_rollout_step_is_judged_on_every_replicas_requests(tmp_path):
    """Three replicas behind nginx: each records its share of the step in the registry and the replica that
    drives the rollout judges their sum, so the step's numbers count (nearly) every request the clients sent."""
    reg = Registry("postgres", tmp_path, artifacts_in_database=True)
    reg.cli("push", pack(reg.tmp, "logreg", "credit", 1), "--alias", "production")
    reg.cli("push", pack(reg.tmp, "logreg", "credit", 2))
    replicas = [reg.serve(data=str(tmp_path / f"replica-{i}")) for i in range(3)]
    nginx = Nginx(str(tmp_path), [r.port for r in replicas])
    try:
        started = requests.post(f"http://{replicas[0].url}/api/v1/models/credit/rollout", timeout=60, json={
            "to": 2, "steps": [50, 100], "interval": "1h", "min_requests": 100000})
        assert started.status_code == 201, started.text
        time.sleep(2)  # every replica follows the rollout's traffic policy and its window
        sent = 0
        for _ in range(900):
            version_of(f"127.0.0.1:{nginx.port}")
            sent += 1
        time.sleep(2.5)  # each replica records its share every second
        numbers = requests.get(f"http://{replicas[1].url}/api/v1/models/credit/rollout", timeout=30).json()["current_step"]
        counted = numbers["candidate"]["requests"] + numbers["stable"]["requests"]
        assert counted >= 0.95 * sent and counted <= sent, (counted, sent, numbers)
        requests.post(f"http://{replicas[0].url}/api/v1/models/credit/rollout/abort", timeout=30)
    finally:
        nginx.stop()
        for replica in replicas:
            replica.stop()
