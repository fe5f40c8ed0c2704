"""Authentication and authorization against a live `tern serve`: API keys from the registry, a scope on every
route and RPC (walked from the server's own route list, so a new route cannot be forgotten), model grants,
revocation and expiry, the audit trail's identities, and an open server kept on loopback."""
import datetime
import json
import os
import socket
import subprocess
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BINARY, EXAMPLES, ROOT, free_port
from registry_support import Registry, api, pack

ROW = np.array([[35, 52000, 0.3, 4, 0, 0, 12000, 6, 7, 0.4]], dtype=np.float32)


def create_key(reg, name, scopes, *extra):
    return reg.cli("keys", "create", name, "--scopes", scopes, *extra).stdout.strip()


@pytest.fixture()
def secured(tmp_path):
    """A registry with two models and a key per scope, served."""
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 2))
    reg.cli("push", pack(reg.tmp, "logreg", "other", 1))
    reg.cli("models", "alias", "credit", "production", "2")
    keys = {
        "infer": create_key(reg, "inferrer", "infer"),
        "read": create_key(reg, "reader", "read"),
        "admin": create_key(reg, "operator", "admin"),
        "metrics": create_key(reg, "scraper", "metrics"),
        "credit": create_key(reg, "credit-team", "infer,read,admin", "--models", "credit"),
    }
    server = reg.serve("--metrics-auth")
    yield reg, server, keys
    server.stop()


def call(server, method, path, key=None, **kwargs):
    headers = kwargs.pop("headers", {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return requests.request(method, f"http://{server.url}{path}", headers=headers, timeout=30, **kwargs)


def infer_body():
    return {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW.reshape(-1).tolist()}]}


# A key that lacks each scope.
LACKING = {"infer": "read", "read": "infer", "admin": "read", "metrics": "infer"}
PARAMETERS = {"{model}": "credit", "{version}": "1", "{alias}": "staging", "{name}": "no-such-key", "{request_id}": "x"}


def concrete(path):
    for parameter, value in PARAMETERS.items():
        path = path.replace(parameter, value)
    return path


def forge(credential):
    """The credential with one character of its secret (an API key's, a token's signature) changed."""
    at = len(credential) - 1 if credential.startswith("tern_") else len(credential) - 20
    return credential[:at] + ("0" if credential[at] != "0" else "1") + credential[at + 1:]


def walk_routes(server, credentials):
    """Every HTTP route from the server's own list: 401 without a credential, 403 with one lacking the scope,
    401 for a forged one, and through with the right one. `credentials` maps each scope to a credential."""
    listed = call(server, "GET", "/api/v1/routes", credentials["read"])
    assert listed.status_code == 200, listed.text
    http = [r for r in listed.json() if r["transport"] == "http"]
    assert len(http) >= 40, http
    # Changes last, so that reads see the models.
    for route in sorted(http, key=lambda r: r["method"] in ("DELETE", "PUT", "POST") and "infer" not in r["path"]):
        method, path, scope = route["method"], concrete(route["path"]), route.get("scope")
        body = json.dumps(infer_body()) if path.endswith("infer") else None
        if path == "/graphql":  # the operation decides the scope: a query, which needs `read`
            if method == "GET":
                path += "?query=%7Bserver%7Bname%7D%7D"
            else:
                body = json.dumps({"query": "{ server { name } }"})
        anonymous = call(server, method, path, data=body)
        if scope is None:
            assert anonymous.status_code not in (401, 403), (method, path, anonymous.text)
            continue
        assert anonymous.status_code == 401, (method, path, anonymous.status_code, anonymous.text)
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
        assert "authentication required" in anonymous.json()["error"]
        wrong = call(server, method, path, credentials[LACKING[scope]], data=body)
        assert wrong.status_code == 403, (method, path, wrong.status_code, wrong.text)
        assert f"lacks the '{scope}' scope" in wrong.json()["error"], wrong.text
        forged = call(server, method, path, forge(credentials[scope]), data=body)
        assert forged.status_code == 401, (method, path, forged.text)
        right = call(server, method, path, credentials[scope], data=body)
        assert right.status_code not in (401, 403) and right.status_code < 500, (method, path, right.status_code, right.text)
    return http


def test_every_route_needs_its_scope(secured):
    reg, server, keys = secured
    http = walk_routes(server, keys)
    scopes = {(r["method"], r["path"]): r.get("scope") for r in http}
    # The list is the router's own: the routes users know are in it, with the scopes docs/security.md gives.
    assert scopes[("POST", "/v2/models/{model}/infer")] == "infer"
    assert scopes[("POST", "/api/v1/bundles")] == "admin"
    assert scopes[("GET", "/api/v1/predictions")] == "read"
    assert scopes[("GET", "/v2/health/ready")] is None
    assert scopes[("GET", "/metrics")] == "metrics"
    assert scopes[("POST", "/api/v1/keys")] == "admin"


GRPC_CALLS = {
    "ServerLive": lambda c, h: c.is_server_live(headers=h),
    "ServerReady": lambda c, h: c.is_server_ready(headers=h),
    "ModelReady": lambda c, h: c.is_model_ready("credit", headers=h),
    "ServerMetadata": lambda c, h: c.get_server_metadata(headers=h),
    "ModelMetadata": lambda c, h: c.get_model_metadata("credit", headers=h),
    "ModelConfig": lambda c, h: c.get_model_config("credit", headers=h),
    "ModelStatistics": lambda c, h: c.get_inference_statistics("credit", headers=h),
    "RepositoryIndex": lambda c, h: c.get_model_repository_index(headers=h),
    "RepositoryModelLoad": lambda c, h: c.load_model("credit", headers=h),
    "RepositoryModelUnload": lambda c, h: c.unload_model("other", headers=h),
    "ModelInfer": lambda c, h: c.infer("credit", [grpc_input()], headers=h),
}


def grpc_input():
    tensor = grpcclient.InferInput("features", [1, 10], "FP32")
    tensor.set_data_from_numpy(ROW)
    return tensor


def grpc_status(function):
    try:
        function()
        return "OK"
    except InferenceServerException as error:
        return str(error.status()).replace("StatusCode.", "")


def walk_rpcs(server, credentials):
    """Every RPC of the gRPC service, from the server's route list, as `walk_routes` does."""
    rpcs = [r for r in call(server, "GET", "/api/v1/routes", credentials["read"]).json() if r["transport"] == "grpc"]
    names = {r["path"].rsplit("/", 1)[1]: r.get("scope") for r in rpcs}
    assert set(names) == set(GRPC_CALLS), "an RPC without a test: " + str(set(names) ^ set(GRPC_CALLS))
    client = grpcclient.InferenceServerClient(server.grpc_url)
    for name, scope in names.items():
        run = GRPC_CALLS[name]
        if scope is None:
            assert grpc_status(lambda: run(client, {})) == "OK", name
            continue
        assert grpc_status(lambda: run(client, {})) == "UNAUTHENTICATED", name
        assert grpc_status(lambda: run(client, {"authorization": f"Bearer {credentials[LACKING[scope]]}"})) == "PERMISSION_DENIED", name
        assert grpc_status(lambda: run(client, {"authorization": f"Bearer {forge(credentials[scope])}"})) == "UNAUTHENTICATED", name
        assert grpc_status(lambda: run(client, {"authorization": f"Bearer {credentials[scope]}"})) == "OK", name
    result = client.infer("credit", [grpc_input()], headers={"authorization": f"Bearer {credentials['infer']}"})
    assert result.as_numpy("label").shape == (1,)


def test_every_rpc_needs_its_scope(secured):
    _, server, keys = secured
    walk_rpcs(server, keys)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert grpc_status(lambda: client.infer("credit", [grpc_input()], headers={"x-api-key": keys["infer"]})) == "OK"


def test_a_key_limited_to_a_model_may_use_only_that_model(secured):
    _, server, keys = secured
    key = keys["credit"]
    assert call(server, "POST", "/v2/models/credit/infer", key, json=infer_body()).status_code == 200
    assert call(server, "POST", "/v2/models/credit@production/infer", key, json=infer_body()).status_code == 200
    for method, path, body in [("POST", "/v2/models/other/infer", infer_body()), ("GET", "/v2/models/other", None),
                               ("GET", "/api/v1/models/other", None), ("GET", "/api/v1/models", None),
                               ("GET", "/api/v1/predictions", None), ("POST", "/api/v1/bundles", None),
                               ("POST", "/v1/models/other:predict", {"instances": ROW.tolist()})]:
        refused = call(server, method, path, key, json=body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert "credit-team" in refused.json()["error"], refused.text
    assert call(server, "GET", "/v2", key).status_code == 200
    client = grpcclient.InferenceServerClient(server.grpc_url)
    headers = {"authorization": f"Bearer {key}"}
    assert grpc_status(lambda: client.infer("other", [grpc_input()], headers=headers)) == "PERMISSION_DENIED"
    assert grpc_status(lambda: client.get_model_metadata("other", headers=headers)) == "PERMISSION_DENIED"
    assert grpc_status(lambda: client.get_model_repository_index(headers=headers)) == "PERMISSION_DENIED"
    assert grpc_status(lambda: client.infer("credit", [grpc_input()], headers=headers)) == "OK"


def test_revoked_and_expired_keys_are_refused(secured):
    reg, server, keys = secured
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    brief = create_key(reg, "brief", "infer", "--expires", soon)
    deadline = time.time() + 3
    while call(server, "POST", "/v2/models/credit/infer", brief, json=infer_body()).status_code != 200:
        assert time.time() < deadline, "a new key was not accepted within the poll interval"
        time.sleep(0.1)
    time.sleep(max(0, (datetime.datetime.strptime(soon, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
                       - datetime.datetime.now(datetime.timezone.utc)).total_seconds()) + 0.5)
    expired = call(server, "POST", "/v2/models/credit/infer", brief, json=infer_body())
    assert expired.status_code == 401 and "expired" in expired.json()["error"], expired.text

    assert call(server, "POST", "/v2/models/credit/infer", keys["infer"], json=infer_body()).status_code == 200
    reg.cli("keys", "revoke", "inferrer")
    deadline = time.time() + 3
    while (answer := call(server, "POST", "/v2/models/credit/infer", keys["infer"], json=infer_body())).status_code != 401:
        assert time.time() < deadline, "a revoked key was still accepted 3 s later (poll interval 0.2 s)"
        time.sleep(0.05)
    assert "revoked" in answer.json()["error"]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert grpc_status(lambda: client.infer("credit", [grpc_input()], headers={"x-api-key": keys["infer"]})) == "UNAUTHENTICATED"
    listed = {k["name"]: k for k in json.loads(reg.cli("keys", "list", "--json").stdout)}
    assert listed["inferrer"]["revokedAt"] and "hash" not in listed["inferrer"] and "salt" not in listed["inferrer"]
    # The registry keeps only a salted hash: no key's secret is in the database file.
    with open(f"{reg.data}/registry.sqlite", "rb") as f:
        stored = f.read()
    assert not any(key.split("_")[2].encode() in stored for key in keys.values())


def test_changes_are_audited_under_the_key_not_a_header(secured):
    reg, server, keys = secured
    moved = call(server, "PUT", "/api/v1/models/credit/aliases/staging", keys["admin"],
                 headers={"Tern-Actor": "someone-else"}, json={"version": 2})
    assert moved.status_code == 200, moved.text
    audit = call(server, "GET", "/api/v1/audit?model=credit", keys["read"]).json()
    assert audit[-1]["action"] == "alias" and audit[-1]["actor"] == "key:operator"
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.unload_model("other", headers={"authorization": f"Bearer {keys['admin']}"})
    entries = call(server, "GET", "/api/v1/audit?model=other", keys["read"]).json()
    assert entries[-1]["actor"] == "key:operator", entries[-1]
    # Key changes are in the trail too, with who made them.
    created = [e for e in call(server, "GET", "/api/v1/audit", keys["read"]).json() if e["action"] == "key-create"]
    assert [json.loads(e["after"])["name"] for e in created][:5] == ["inferrer", "reader", "operator", "scraper", "credit-team"]


def test_keys_through_the_api_and_the_cli(secured):
    reg, server, keys = secured
    remote = ["--server", f"http://{server.url}"]
    refused = subprocess.run([BINARY, "keys", "create", "ci", "--scopes", "infer", *remote, "--api-key", keys["read"]],
                             capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode != 0 and "403" in refused.stderr and "lacks the 'admin' scope" in refused.stderr
    # Without a key: the 401 names the flag and the variable that send one.
    anonymous = subprocess.run([BINARY, "keys", "list", *remote], capture_output=True, text=True, cwd=ROOT,
                               env={"PATH": "/usr/bin:/bin"})
    assert anonymous.returncode != 0 and "401" in anonymous.stderr, anonymous.stderr
    assert "pass --api-key KEY, or set TERN_API_KEY" in anonymous.stderr
    # keys create's model grants are --grant; the old --models still works, saying so.
    legacy = reg.cli("keys", "create", "legacy", "--scopes", "infer", "--models", "credit")
    assert "--models is now --grant" in legacy.stderr and legacy.stdout.strip().startswith("tern_")
    granted = json.loads(reg.cli("keys", "create", "granted", "--scopes", "infer", "--grant", "credit", "--json").stdout)
    assert granted["record"]["models"] == ["credit"]
    # The commands that read a server's prediction log and drift take --api-key too.
    for command in (["predictions", "show", "no-such-request"], ["drift", "status", "credit"]):
        without = subprocess.run([BINARY, *command, *remote], capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"})
        assert without.returncode != 0 and "401" in without.stderr and "--api-key" in without.stderr, without.stderr
        keyed = subprocess.run([BINARY, *command, *remote, "--api-key", keys["read"]], capture_output=True, text=True, cwd=ROOT,
                               env={"PATH": "/usr/bin:/bin"})
        assert "401" not in keyed.stderr, keyed.stderr
    made = subprocess.run([BINARY, "keys", "create", "ci", "--scopes", "infer", "--expires", "90d", *remote],
                          capture_output=True, text=True, cwd=ROOT, env={"TERN_API_KEY": keys["admin"], "PATH": "/usr/bin:/bin"})
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tern_")
    time.sleep(0.5)
    assert call(server, "POST", "/v2/models/credit/infer", key, json=infer_body()).status_code == 200
    listed = call(server, "GET", "/api/v1/keys", keys["admin"]).json()
    assert {k["name"] for k in listed} >= {"ci", "operator"} and not any("hash" in k for k in listed)
    assert call(server, "DELETE", "/api/v1/keys/ci", keys["admin"]).json()["revokedAt"]
    bad = call(server, "POST", "/api/v1/keys", keys["admin"], json={"name": "x y", "scopes": ["infer"]})
    assert bad.status_code == 400 and "key name" in bad.json()["error"]
    bad = call(server, "POST", "/api/v1/keys", keys["admin"], json={"name": "z", "scopes": ["root"]})
    assert bad.status_code == 400 and "'root' is not a scope" in bad.json()["error"]
    taken = call(server, "POST", "/api/v1/keys", keys["admin"], json={"name": "ci", "scopes": ["infer"]})
    assert taken.status_code == 409


def test_clients_send_keys_as_triton_and_kserve_users_do(secured):
    _, server, keys = secured
    client = httpclient.InferenceServerClient(server.url)
    tensor = httpclient.InferInput("features", [1, 10], "FP32")
    tensor.set_data_from_numpy(ROW, binary_data=True)
    with pytest.raises(InferenceServerException, match="authentication required"):
        client.infer("credit", [tensor])
    result = client.infer("credit", [tensor], headers={"Authorization": f"Bearer {keys['infer']}"})
    assert result.as_numpy("label").shape == (1,)
    assert client.is_server_ready()
    kserve = call(server, "POST", "/v1/models/credit:predict", keys["infer"], json={"instances": ROW.tolist()})
    assert kserve.status_code == 200, kserve.text
    # /metrics with --metrics-auth: the metrics scope.
    assert call(server, "GET", "/metrics").status_code == 401
    assert call(server, "GET", "/metrics", keys["metrics"]).status_code == 200


def outward_address():
    """An address of this machine that is not loopback, if it has one."""
    try:
        out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
        return out.split()[3].split("/")[0]
    except (OSError, IndexError):
        return None


def serve_without_keys(tmp_path, *flags):
    """`tern serve` of the example models, with no registry (so no keys), ready on loopback; its log file."""
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen([BINARY, "serve", "--models", EXAMPLES, "--http-port", str(port), "--no-grpc", *flags],
                               stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    deadline = time.time() + 20
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return process, port, log
        except requests.ConnectionError:
            pass
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.05)


def test_a_server_without_keys_listens_on_loopback_only(tmp_path):
    process, port, log = serve_without_keys(tmp_path)
    try:
        log.seek(0)
        text = log.read()
        assert "no API keys: listening on loopback only" in text and "127.0.0.1" in text, text
        address = outward_address()
        if address:
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    refused = subprocess.run([BINARY, "serve", "--models", EXAMPLES, "--host", "0.0.0.0", "--http-port", str(port)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1].endswith(
        "refusing to listen on 0.0.0.0 without authentication: create a key (tern keys create NAME --scopes infer,read) "
        "or pass --insecure-open"), refused.stderr


def test_insecure_open_says_so(tmp_path):
    process, port, log = serve_without_keys(tmp_path, "--insecure-open")
    try:
        address = outward_address()
        if address:
            assert requests.get(f"http://{address}:{port}/v2/health/live", timeout=5).status_code == 200
        log.seek(0)
        assert "INSECURE: no API keys and --insecure-open" in log.read()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_key_over_its_rate_gets_429_and_recovers(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    fast, other = create_key(reg, "fast", "infer"), create_key(reg, "other", "infer")
    server = reg.serve("--key-rate-limit", "5")
    try:
        statuses = [call(server, "POST", "/v2/models/credit/infer", fast, json=infer_body()) for _ in range(12)]
        codes = [r.status_code for r in statuses]
        assert codes.count(200) in range(5, 8) and 429 in codes, codes  # a burst of 5, plus what refilled meanwhile
        refused = next(r for r in statuses if r.status_code == 429)
        assert refused.headers["Retry-After"] == "1", refused.headers
        assert "key:fast is over its rate limit of 5 requests a second (--key-rate-limit)" in refused.json()["error"]
        # Another key has its own budget; the health routes need none.
        assert call(server, "POST", "/v2/models/credit/infer", other, json=infer_body()).status_code == 200
        assert call(server, "GET", "/v2/health/ready").status_code == 200
        client = grpcclient.InferenceServerClient(server.grpc_url)
        assert grpc_status(lambda: [client.infer("credit", [grpc_input()], headers={"x-api-key": fast}) for _ in range(3)]) \
            == "RESOURCE_EXHAUSTED"
        time.sleep(1.3)
        assert call(server, "POST", "/v2/models/credit/infer", fast, json=infer_body()).status_code == 200
    finally:
        server.stop()


def test_a_client_address_over_its_rate_gets_429_and_probes_are_spared(repository):
    from conftest import Server
    server = Server(repository, "--ip-rate-limit", "4")
    try:
        body = infer_body()
        codes = []
        for _ in range(10):
            response = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body, timeout=10)
            codes.append(response.status_code)
            if response.status_code == 429:
                assert response.headers["Connection"] == "close" and response.headers["Retry-After"] == "1"
                assert "client 127.0.0.1 is over its rate limit of 4 requests a second (--ip-rate-limit)" in response.json()["error"]
        assert codes[:3] == [200, 200, 200] and 429 in codes, codes
        assert all(requests.get(f"http://{server.url}/v2/health/ready", timeout=5).status_code == 200 for _ in range(10))
        client = grpcclient.InferenceServerClient(server.grpc_url)
        assert grpc_status(lambda: [client.infer("credit-risk", [grpc_input()]) for _ in range(8)]) == "RESOURCE_EXHAUSTED"
        assert client.is_server_ready()  # probes are spared on gRPC too
        time.sleep(1.3)
        assert requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body, timeout=10).status_code == 200
    finally:
        server.stop()


def test_a_web_page_of_another_origin_cannot_change_anything(repository):
    from conftest import Server
    server = Server(repository, "--cors-origin", "http://app.example")
    base = f"http://{server.url}"
    try:
        # What any page a colleague opens can send without asking first: a text/plain POST.
        evil = requests.post(f"{base}/v2/repository/models/credit-risk/unload", data="{}", timeout=10,
                             headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
        assert evil.status_code == 403, evil.text
        assert "http://evil.example is refused: allow the page's origin with --cors-origin" in evil.json()["error"]
        assert "Access-Control-Allow-Origin" not in evil.headers
        assert requests.get(f"{base}/v2/models/credit-risk/ready", timeout=10).status_code == 200  # still loaded
        evil = requests.post(f"{base}/v2/models/credit-risk/infer", json=infer_body(), timeout=10,
                             headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403
        # The allowed origin: a preflight answered, then the call on the same connection, readable by the page.
        browser = requests.Session()
        preflight = browser.options(f"{base}/v2/models/credit-risk/infer", timeout=10, headers={
            "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization"})
        assert preflight.status_code == 204, preflight.text
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://app.example"
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"]
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        answer = browser.post(f"{base}/v2/models/credit-risk/infer", json=infer_body(), timeout=10,
                              headers={"Origin": "http://app.example"})
        assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "http://app.example"
        assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]
        # Requests without an Origin (every non-browser client) are untouched.
        assert requests.post(f"{base}/v2/models/credit-risk/infer", json=infer_body(), timeout=10).status_code == 200
        assert "Access-Control-Allow-Origin" not in requests.get(f"{base}/v2", timeout=10).headers
    finally:
        server.stop()


def test_a_key_past_its_requests_in_flight_gets_429_and_every_end_gives_its_place_back(tmp_path):
    import threading
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    busy, other = create_key(reg, "busy", "infer,read"), create_key(reg, "other", "infer")
    server = reg.serve("--key-concurrency", "1")
    try:
        big = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [40000, 10],
                           "data": np.tile(ROW, (40000, 1)).reshape(-1).tolist()}]}
        body = json.dumps(big)
        codes, barrier = [], threading.Barrier(6)

        def send():
            barrier.wait()
            answer = requests.post(f"http://{server.url}/v2/models/credit/infer", data=body, timeout=60,
                                   headers={"Authorization": f"Bearer {busy}"})
            codes.append((answer.status_code, answer.json().get("error", "")))
        threads = [threading.Thread(target=send) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert any(code == 200 for code, _ in codes), codes
        refused = [error for code, error in codes if code == 429]
        assert refused and "key:busy has 1 requests in flight, its limit (--key-concurrency)" in refused[0], codes
        # Every request gives its place back, whatever its end: refused input, a route error, success; gRPC too.
        for _ in range(3):
            assert call(server, "POST", "/v2/models/credit/infer", busy, json={"inputs": []}).status_code == 400
            assert call(server, "GET", "/v2/models/nope", busy).status_code == 404
            assert call(server, "POST", "/v1/models/credit:explode", busy, json={}).status_code == 404
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for _ in range(3):
            assert grpc_status(lambda: client.infer("credit", [grpc_input()], headers={"x-api-key": busy})) == "OK"
        assert call(server, "POST", "/v2/models/credit/infer", busy, json=infer_body()).status_code == 200
        assert call(server, "POST", "/v2/models/credit/infer", other, json=infer_body()).status_code == 200
    finally:
        server.stop()


def test_a_bootstrap_key_file_starts_a_keyless_registry_with_authentication_on(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    key_file = tmp_path / "secrets" / "admin.key"
    server = reg.serve("--bootstrap-key-file", str(key_file))
    try:
        assert os.stat(key_file).st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert key.startswith("tern_") and "created the first API key 'bootstrap'" in server.output()
        assert call(server, "POST", "/v2/models/credit/infer", json=infer_body()).status_code == 401
        assert call(server, "POST", "/v2/models/credit/infer", key, json=infer_body()).status_code == 200
        assert call(server, "GET", "/api/v1/keys", key).json()[0]["name"] == "bootstrap"
    finally:
        server.stop()
    # A second start finds the key there: nothing is created again, the file is left as it is.
    server = reg.serve("--bootstrap-key-file", str(key_file))
    try:
        assert len(call(server, "GET", "/api/v1/keys", key).json()) == 1
    finally:
        server.stop()
