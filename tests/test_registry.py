"""The registry end to end, on SQLite and on PostgreSQL: pack -> push -> alias -> infer -> move -> audit,
refused changes that leave it unchanged, hot swaps under load, load/unload cycles, replicas, kill -9."""
import json
import os
import signal
import socket
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient

from conftest import FIXTURES, run_concurrently
from registry_support import (
    BACKENDS, POSTGRES_URL, Registry, api, credit_csv, credit_table, infer, manifest, pack, rewrite_bundle, state, tern,
)

ROWS, _ = credit_table(4, seed=99)


def expected(fixture, rows=ROWS):
    session = ort.InferenceSession(os.path.join(FIXTURES, fixture, "model.onnx"))
    return session.run(["probabilities"], {"features": rows})[0]


def probabilities(response):
    assert response.status_code == 200, response.text
    body = response.json()
    out = {o["name"]: o for o in body["outputs"]}["probabilities"]
    return body["model_version"], np.array(out["data"], dtype=np.float32).reshape(out["shape"])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("bundles"))
    reference, holdout = os.path.join(tmp, "ref.csv"), os.path.join(tmp, "hold.csv")
    credit_csv(reference, 600, seed=1)
    credit_csv(holdout, 300, seed=2)
    data = ["--reference", reference, "--holdout", holdout, "--label-column", "default"]
    return {
        1: pack(tmp, "logreg", "credit", 1, *data, "--owner", "risk"),
        2: pack(tmp, "gbc", "credit", 2, *data, "--owner", "risk"),
        "xgb": pack(tmp, "xgboost", "credit", 3, *data),
        "tmp": tmp,
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip(backend, bundles, tmp_path):
    registry = Registry(backend, tmp_path)
    out = registry.cli("push", bundles[1], "--alias", "production", "--actor", "ana").stdout
    assert "pushed credit v1" in out and "credit@production -> v1" in out
    server = registry.serve()
    try:
        version, probs = probabilities(infer(server, "credit", ROWS))
        assert version == "1"
        np.testing.assert_allclose(probs, expected("logreg"), rtol=1e-5, atol=1e-6)

        # Push v2 through the server's API (the CLI in remote mode): the newest version can be tried by number
        # while production still answers v1.
        out = registry.cli("push", bundles[2], "--server", f"http://{server.url}", "--actor", "bo").stdout
        assert "pushed credit v2" in out
        version, probs = probabilities(infer(server, "credit@2", ROWS))
        assert version == "2"
        np.testing.assert_allclose(probs, expected("gbc"), rtol=1e-5, atol=1e-6)
        assert probabilities(infer(server, "credit", ROWS))[0] == "1"
        assert probabilities(infer(server, "credit@production", ROWS))[0] == "1"
        assert probabilities(infer(server, "credit", ROWS, version="production"))[0] == "1"

        # Move production: the next request gets v2, no restart.
        registry.cli("models", "alias", "credit", "production", "2", "--server", f"http://{server.url}", "--actor", "cy")
        version, probs = probabilities(infer(server, "credit", ROWS))
        assert version == "2"
        np.testing.assert_allclose(probs, expected("gbc"), rtol=1e-5, atol=1e-6)

        # tritonclient sees the alias as a version string, and the repository index.
        client = httpclient.InferenceServerClient(url=server.url)
        features = httpclient.InferInput("features", list(ROWS.shape), "FP32")
        features.set_data_from_numpy(ROWS)
        result = client.infer("credit", [features], model_version="production")
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected("gbc"), rtol=1e-5, atol=1e-6)
        assert "model_repository" in client.get_server_metadata()["extensions"]
        index = {(e["name"], e["version"]): e["state"] for e in client.get_model_repository_index()}
        assert index == {("credit", "1"): "UNAVAILABLE", ("credit", "2"): "READY"}

        show = json.loads(registry.cli("models", "show", "credit", "--json").stdout)
        assert show["aliases"] == {"production": 2} and show["default_version"] == 2
        v1 = show["versions"][0]
        assert (v1["created_by"], v1["manifest"]["owner"], v1["metrics"]["task"]) == ("ana", "risk", "classification")
        assert "accuracy" in registry.cli("models", "show", "credit").stdout
    finally:
        server.stop()

    log = json.loads(registry.cli("audit", "log", "--json").stdout)
    steps = [(e["seq"], e["actor"], e["action"], e["version"]) for e in log]
    assert steps == [(1, "ana", "push", 1), (2, "ana", "alias", 1), (3, "bo", "push", 2), (4, "cy", "alias", 2)]
    assert log[3]["before"] == {"alias": "production", "version": 1}
    assert log[3]["after"] == {"alias": "production", "version": 2}
    assert "audit trail intact: 4 entries" in registry.cli("audit", "verify").stdout

    registry.sql("UPDATE tern_audit SET actor = 'mallory' WHERE seq = 3")
    broken = registry.cli("audit", "verify", check=False)
    assert broken.returncode == 1 and "entry 3 (push credit) was edited" in broken.stderr
    registry.sql("UPDATE tern_audit SET actor = 'bo' WHERE seq = 3")
    registry.sql("DELETE FROM tern_audit WHERE seq = 4")
    broken = registry.cli("audit", "verify", check=False)
    assert broken.returncode == 1 and "newest were deleted" in broken.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_refused_changes_leave_the_registry_unchanged(backend, bundles, tmp_path):
    registry = Registry(backend, tmp_path)
    registry.cli("push", bundles[1], "--alias", "production")
    server = registry.serve()
    try:
        before = state(server)
        with open(bundles[2], "rb") as f:
            good = f.read()

        def refused(status, fragment, method, path, **kwargs):
            response = api(server, method, path, **kwargs)
            assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
            assert fragment in response.json()["error"], response.text
            assert state(server) == before, f"{method} {path} changed the registry"

        refused(400, "not a Tern bundle", "POST", "/api/v1/bundles", data=b"garbage, not a zip")
        refused(400, "not a Tern bundle", "POST", "/api/v1/bundles", data=good[: len(good) // 2])
        refused(400, "not a Tern bundle", "POST", "/api/v1/bundles", data=b"")

        def swap_model(files):
            files["model.onnx"] = open(os.path.join(FIXTURES, "xgboost", "model.onnx"), "rb").read()
        refused(400, "mismatch for model.onnx", "POST", "/api/v1/bundles", data=rewrite_bundle(bundles[2], swap_model))

        def contradict(files):
            head = json.loads(files["tern.json"])
            head["signature"]["inputs"][0]["shape"] = [-1, 12]
            files["tern.json"] = json.dumps(head).encode()
        refused(400, "declares inputs [features FP32 [-1, 12]] but the model has [features FP32 [-1, 10]]",
                "POST", "/api/v1/bundles", data=rewrite_bundle(bundles[2], contradict))

        def not_onnx(files):
            import hashlib
            junk = b"\x08\x07" * 500
            files["model.onnx"] = junk
            head = json.loads(files["tern.json"])
            head["files"]["model.onnx"] = {"sha256": hashlib.sha256(junk).hexdigest(), "bytes": len(junk)}
            files["tern.json"] = json.dumps(head).encode()
        refused(400, "model.onnx does not load", "POST", "/api/v1/bundles", data=rewrite_bundle(bundles[2], not_onnx))

        def extra(files):
            files["run.sh"] = b"rm -rf /"
        refused(400, "unexpected file 'run.sh'", "POST", "/api/v1/bundles", data=rewrite_bundle(bundles[2], extra))

        def claim_version_1(files):
            files["tern.json"] = json.dumps({**json.loads(files["tern.json"]), "version": 1}).encode()
        other_v1 = rewrite_bundle(bundles[2], claim_version_1)
        refused(409, "already has version 1", "POST", "/api/v1/bundles", data=other_v1)
        with open(bundles[1], "rb") as f:  # the same archive again: its version, nothing changes
            again = api(server, "POST", "/api/v1/bundles", data=f.read())
            assert again.status_code == 200 and again.json()["version"] == 1, again.text
        refused(400, "version must be a whole number", "POST", "/api/v1/bundles?version=zero", data=good)
        refused(404, "no such version", "PUT", "/api/v1/models/credit/aliases/production", json={"version": 7})
        refused(404, "no such version", "PUT", "/api/v1/models/nope/aliases/production", json={"version": 1})
        refused(400, "the body must be", "PUT", "/api/v1/models/credit/aliases/production", data=b"{")
        refused(400, "not a number", "PUT", "/api/v1/models/credit/aliases/3", json={"version": 1})
        refused(409, "alias 'production' points at it", "DELETE", "/api/v1/models/credit/versions/1")
        refused(409, "alias 'production' points at it", "POST", "/api/v1/models/credit/versions/1/archive")
        refused(404, "has no alias 'canary'", "DELETE", "/api/v1/models/credit/aliases/canary")
        refused(404, "has no version 9", "DELETE", "/api/v1/models/credit/versions/9")
        refused(400, "version must be a whole number", "DELETE", "/api/v1/models/credit/versions/x")

        # The CLI says the same, and exits 1.
        result = registry.cli("models", "delete", "credit", "1", check=False)
        assert result.returncode == 1 and "alias 'production' points at it" in result.stderr
        conflicting = os.path.join(str(tmp_path), "other-v1.tern")
        with open(conflicting, "wb") as f:
            f.write(other_v1)
        result = registry.cli("push", conflicting, "--server", f"http://{server.url}", check=False)
        assert result.returncode == 1 and "409" in result.stderr and "already has version 1" in result.stderr
        assert state(server) == before

        # Still serving, and a correct push then goes through.
        assert probabilities(infer(server, "credit", ROWS))[0] == "1"
        assert api(server, "POST", "/api/v1/bundles", data=good).status_code == 201
    finally:
        server.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_archive_delete_and_database_only_artifacts(backend, bundles, tmp_path):
    registry = Registry(backend, tmp_path, artifacts_in_database=backend == "postgres")
    registry.cli("push", bundles[1], "--alias", "production")
    registry.cli("push", bundles[2])
    registry.cli("push", bundles["xgb"])
    registry.cli("models", "archive", "credit", "2")
    registry.cli("models", "delete", "credit", "3")
    listed = registry.cli("models", "list").stdout
    assert "credit  versions: v1, v2 (archived)  default: v1  aliases: production=v1" in listed
    if backend == "postgres":
        assert not os.path.exists(os.path.join(registry.data, "artifacts"))
    server = registry.serve()
    try:
        response = infer(server, "credit@2", ROWS)
        assert response.status_code == 404 and "no loaded version '2'" in response.json()["error"]
        response = api(server, "POST", "/api/v1/models/credit/versions/2/load")
        assert response.status_code == 409 and "archived" in response.json()["error"]
        assert api(server, "GET", "/api/v1/models/credit/versions/1/bundle").content == open(bundles[1], "rb").read()
        # Unpacked models of deleted versions are removed from the server's cache.
        cache = os.path.join(registry.data, "cache")
        assert os.listdir(cache) == [manifest_sha(server, 1)]
        assert api(server, "POST", "/api/v1/bundles?version=4", data=open(bundles["xgb"], "rb").read()).status_code == 201
        assert sorted(os.listdir(cache)) == sorted([manifest_sha(server, 1), manifest_sha(server, 4)])
        assert api(server, "DELETE", "/api/v1/models/credit/versions/4").status_code == 204
        assert os.listdir(cache) == [manifest_sha(server, 1)]
    finally:
        server.stop()
    actions = [e["action"] for e in json.loads(registry.cli("audit", "log", "--json").stdout)]
    assert actions == ["push", "alias", "push", "push", "archive", "delete", "push", "delete"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_alias_moves_under_load_fail_no_request(backend, bundles, tmp_path):
    registry = Registry(backend, tmp_path)
    registry.cli("push", bundles[1], "--alias", "production")
    registry.cli("push", bundles[2])
    answers = {"1": expected("logreg"), "2": expected("gbc")}
    server = registry.serve()
    stop = threading.Event()
    counts = {"1": 0, "2": 0}
    lock = threading.Lock()
    try:
        def client(index):
            import requests
            session = requests.Session()
            yield
            while not stop.is_set():
                response = session.post(f"http://{server.url}/v2/models/credit/infer", timeout=30, json={
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [4, 10], "data": ROWS.reshape(-1).tolist()}]})
                version, probs = probabilities(response)
                np.testing.assert_allclose(probs, answers[version], rtol=1e-5, atol=1e-6)
                with lock:
                    counts[version] += 1

        def mover():
            for move in range(50):
                response = api(server, "PUT", "/api/v1/models/credit/aliases/production", json={"version": 2 - move % 2})
                assert response.status_code == 200, response.text
                time.sleep(0.02)
            stop.set()

        threading.Thread(target=mover).start()
        run_concurrently(8, client)
    finally:
        stop.set()
        server.stop()
    assert counts["1"] > 0 and counts["2"] > 0, counts
    aliases = [e for e in json.loads(registry.cli("audit", "log", "--json").stdout) if e["action"] == "alias"]
    assert len(aliases) == 51


def manifest_sha(server, version):
    return api(server, "GET", f"/api/v1/models/credit/versions/{version}").json()["sha256"]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_load_unload_cycles_return_memory(bundles, tmp_path):
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", bundles[2], "--alias", "production")
    server = registry.serve()
    try:
        client = httpclient.InferenceServerClient(url=server.url)
        features = httpclient.InferInput("features", list(ROWS.shape), "FP32")
        features.set_data_from_numpy(ROWS)

        def cycle():
            client.unload_model("credit")
            assert not client.is_model_ready("credit")
            response = infer(server, "credit", ROWS)
            assert response.status_code == 404, response.text
            client.load_model("credit")
            assert client.is_model_ready("credit")
            np.testing.assert_allclose(client.infer("credit", [features]).as_numpy("probabilities"), expected("gbc"),
                                       rtol=1e-5, atol=1e-6)

        for _ in range(10):
            cycle()
        baseline = rss_kb(server.process.pid)
        for _ in range(100):
            cycle()
        growth = rss_kb(server.process.pid) - baseline
        # A loaded version of this model costs about 0.44 MB (measured: 10 more loaded versions, +4.4 MB), so
        # 100 leaked cycles would show as some 44 MB.
        assert growth < 12_000, f"RSS grew {growth} kB over 100 load/unload cycles"
    finally:
        server.stop()
    actions = [e["action"] for e in json.loads(registry.cli("audit", "log", "--json").stdout)]
    assert actions.count("load") == 110 and actions.count("unload") == 110


def test_unload_lets_running_requests_finish(bundles, tmp_path):
    """A request that has reached its model (its body still arriving) completes on the version being
    unloaded; requests after the unload are told the model is not loaded."""
    import http.client
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", bundles[2], "--alias", "production")
    server = registry.serve()
    try:
        body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [4, 10],
                                       "data": ROWS.reshape(-1).tolist()}]}).encode()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.putrequest("POST", "/v2/models/credit/infer")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        connection.send(body[:20])
        time.sleep(0.2)  # the server has resolved the model and waits for the rest of the body
        assert api(server, "POST", "/v2/repository/models/credit/unload").status_code == 200
        assert infer(server, "credit", ROWS).status_code == 404
        connection.send(body[20:])
        response = connection.getresponse()
        assert response.status == 200
        result = json.loads(response.read())
        out = {o["name"]: o for o in result["outputs"]}["probabilities"]
        np.testing.assert_allclose(np.array(out["data"]).reshape(4, 2), expected("gbc"), rtol=1e-5, atol=1e-6)
    finally:
        server.stop()


@pytest.mark.skipif(not POSTGRES_URL, reason="needs TERN_TEST_POSTGRES_URL")
def test_replicas_follow_an_alias_moved_through_another(bundles, tmp_path):
    registry = Registry("postgres", tmp_path)
    registry.cli("push", bundles[1], "--alias", "production")
    registry.cli("push", bundles[2])
    first = registry.serve()
    second = registry.serve()
    try:
        assert probabilities(infer(second, "credit", ROWS))[0] == "1"
        assert api(first, "PUT", "/api/v1/models/credit/aliases/production", json={"version": 2}).status_code == 200
        deadline = time.time() + 5
        while probabilities(infer(second, "credit", ROWS))[0] != "2":
            assert time.time() < deadline, "the second replica still serves v1 five seconds after the move"
            time.sleep(0.05)
        # A push through the second replica shows on the first.
        assert api(second, "POST", "/api/v1/bundles?version=5", data=open(bundles["xgb"], "rb").read()).status_code == 201
        deadline = time.time() + 5
        while infer(first, "credit@5", ROWS).status_code != 200:
            assert time.time() < deadline, "the first replica does not serve v5 five seconds after its push"
            time.sleep(0.05)
    finally:
        first.stop()
        second.stop()
    assert "audit trail intact: 5 entries" in registry.cli("audit", "verify").stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_during_push_leaves_the_registry_consistent(backend, bundles, tmp_path):
    registry = Registry(backend, tmp_path)
    registry.cli("push", bundles[1], "--alias", "production")
    with open(bundles[2], "rb") as f:
        body = f.read()

    def start_push(server, sent):
        connection = socket.create_connection(("127.0.0.1", server.port))
        connection.sendall((f"POST /api/v1/bundles HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n").encode())
        connection.sendall(body[:sent])
        return connection

    for sent in (len(body) // 2, len(body)):
        server = registry.serve()
        connection = start_push(server, sent)
        if sent == len(body):
            time.sleep(0.01)  # let the server be somewhere inside the push
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        connection.close()
        server.log.close()

        server = registry.serve()
        try:
            models = api(server, "GET", "/api/v1/models").json()
            versions = [v["version"] for v in models[0]["versions"]]
            assert versions in ([1], [1, 2]), versions
            if versions == [1, 2]:
                # All or nothing: a registered version has its whole artifact.
                assert api(server, "GET", "/api/v1/models/credit/versions/2/bundle").content == body
                assert probabilities(infer(server, "credit@2", ROWS))[0] == "2"
                api(server, "DELETE", "/api/v1/models/credit/versions/2")
            verify = api(server, "GET", "/api/v1/audit/verify").json()
            assert verify["ok"], verify
            assert probabilities(infer(server, "credit", ROWS))[0] == "1"
            # The same push, again, goes through.
            assert api(server, "POST", "/api/v1/bundles", data=body).status_code == 201
            assert api(server, "DELETE", "/api/v1/models/credit/versions/2").status_code == 204
        finally:
            server.stop()
    assert manifest(bundles[2])["version"] == 2


@pytest.mark.skipif(not POSTGRES_URL, reason="needs TERN_TEST_POSTGRES_URL")
def test_server_reconnects_when_postgres_drops_its_connection(bundles, tmp_path):
    registry = Registry("postgres", tmp_path)
    registry.cli("push", bundles[1], "--alias", "production")
    registry.cli("push", bundles[2])
    server = registry.serve()
    try:
        name = registry.database.rsplit("/", 1)[1]
        # What a database restart or failover does to the server's connection.
        registry.sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
                     "AND pid <> pg_backend_pid()")
        # Inference never needed the database; the registry answers again at the latest on the second try.
        assert probabilities(infer(server, "credit", ROWS))[0] == "1"
        statuses = []
        for _ in range(2):
            response = api(server, "PUT", "/api/v1/models/credit/aliases/production", json={"version": 2})
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
            assert response.status_code == 503, response.text
        assert statuses[-1] == 200, statuses
        assert probabilities(infer(server, "credit", ROWS))[0] == "2"
        # The prediction log (in the same database) reconnects too: later predictions are recorded.
        deadline, found = time.time() + 10, False
        while not found and time.time() < deadline:
            answer = infer(server, "credit", ROWS)
            time.sleep(0.5)
            found = api(server, "GET", f"/api/v1/predictions/{answer.headers['X-Request-ID']}").status_code == 200
        assert found, "no prediction recorded after the database dropped the connection"
    finally:
        server.stop()
    assert "audit trail intact: 4 entries" in registry.cli("audit", "verify").stdout


def test_grpc_repository_extension(bundles, tmp_path):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException
    registry = Registry("sqlite", tmp_path)
    registry.cli("push", bundles[1], "--alias", "production")
    registry.cli("push", bundles[2])
    server = registry.serve()
    try:
        client = grpcclient.InferenceServerClient(url=server.grpc_url)
        assert "model_repository" in client.get_server_metadata(as_json=True)["extensions"]
        index = client.get_model_repository_index(as_json=True)["models"]
        assert {(m["name"], m["version"], m["state"]) for m in index} == {("credit", "1", "READY"), ("credit", "2", "READY")}
        client.unload_model("credit")
        assert not client.is_model_ready("credit")  # unloaded: not ready (as tritonclient expects), not an error
        assert all(m["state"] == "UNAVAILABLE" for m in client.get_model_repository_index(as_json=True)["models"])
        client.load_model("credit")
        assert client.is_model_ready("credit") and client.is_model_ready("credit", "1")
        with pytest.raises(InferenceServerException) as error:
            client.load_model("nope")
        assert "unknown model 'nope'" in error.value.message()
    finally:
        server.stop()
    log = json.loads(registry.cli("audit", "log", "--json").stdout)
    assert [e["action"] for e in log][-2:] == ["unload", "load"] and log[-1]["actor"].startswith("grpc ")


def test_folder_server_lists_its_models_but_cannot_load_or_unload(server):
    import requests
    index = requests.post(f"http://{server.url}/v2/repository/index", timeout=10).json()
    assert {"name": "credit-risk", "version": "2", "state": "READY"} in index
    response = requests.post(f"http://{server.url}/v2/repository/models/logreg/unload", timeout=10)
    assert response.status_code == 400 and "needs a registry" in response.json()["error"]
    assert "model_repository" not in requests.get(f"http://{server.url}/v2", timeout=10).json()["extensions"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_changes_through_two_servers_keep_one_chain(backend, bundles, tmp_path):
    """Writers on two servers at once: every push lands once, repeats of it get 200 and change nothing, and the
    audit chain holds."""
    registry = Registry(backend, tmp_path)
    registry.cli("push", bundles[1], "--alias", "production")
    servers = [registry.serve(), registry.serve()]
    with open(bundles[2], "rb") as f:
        body = f.read()
    statuses = []
    lock = threading.Lock()
    try:
        def pusher(index):
            import requests
            session = requests.Session()
            yield
            for version in range(10, 16):
                response = session.post(f"http://{servers[index % 2].url}/api/v1/bundles?version={version}",
                                        data=body, timeout=60)
                with lock:
                    statuses.append((version, response.status_code))
                assert response.status_code in (200, 201), response.text
        run_concurrently(4, pusher)
    finally:
        for server in servers:
            server.stop()
    for version in range(10, 16):
        assert sorted(s for v, s in statuses if v == version) == [200, 200, 200, 201], statuses
    models = json.loads(registry.cli("models", "list", "--json").stdout)
    assert [v["version"] for v in models[0]["versions"]] == [1, 10, 11, 12, 13, 14, 15]
    assert "audit trail intact: 8 entries" in registry.cli("audit", "verify").stdout


def test_bundle_config_is_served_and_checked(tmp_path):
    registry = Registry("sqlite", tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text("max_batch_size: 2\ndynamic_batching: false\n")
    path = pack(str(tmp_path), "gbc", "small", 1, "--config", str(config))
    registry.cli("push", path)
    config.write_text("max_batch_size: -3\n")
    result = tern("pack", os.path.join(FIXTURES, "gbc", "model.onnx"), "--name", "small", "--config", str(config),
                  "-o", str(tmp_path / "bad.tern"), check=False)
    assert result.returncode == 1 and "max_batch_size must be an integer >= 0" in result.stderr

    def bad_config(files):
        # A config that does not parse, with the manifest re-signed so that only the config is wrong.
        import hashlib
        files["config.yaml"] = b"max_batch_size: -3\n"
        head = json.loads(files["tern.json"])
        head["files"]["config.yaml"] = {"sha256": hashlib.sha256(files["config.yaml"]).hexdigest(), "bytes": 19}
        head["version"] = 2
        files["tern.json"] = json.dumps(head).encode()
    bad = rewrite_bundle(path, bad_config)
    server = registry.serve()
    try:
        response = api(server, "POST", "/api/v1/bundles", data=bad)
        assert response.status_code == 400 and "max_batch_size must be an integer >= 0" in response.json()["error"]
        assert probabilities(infer(server, "small", ROWS[:2]))[0] == "1"
        response = infer(server, "small", ROWS)
        assert response.status_code == 400
        assert "has batch size 4, above the model's max_batch_size 2" in response.json()["error"]
    finally:
        server.stop()


def test_cli_says_when_a_server_has_no_registry(server, tmp_path):
    result = tern("models", "list", "--server", f"http://{server.url}", check=False)
    assert result.returncode == 1 and "serves no registry" in result.stderr
    result = tern("models", "list", "--server", "http://127.0.0.1:1", check=False)
    assert result.returncode == 1 and "cannot reach http://127.0.0.1:1: connection refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
