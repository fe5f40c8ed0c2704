"""docs/openapi.yaml against the server: the document the server answers at /openapi.json is the YAML's,
every route the router holds (on each platform) is described with its scope and nothing else is, and
schemathesis, driven by the document with all its checks, finds no 5xx, no response outside it, no valid
request refused and no invalid one accepted, and 405 with Allow for methods a path does not serve."""
import json
import os
import subprocess
import sys

import pytest
import requests
import yaml

from conftest import ROOT
from registry_support import Registry, pack
from test_security import call, create_key

SPEC = os.path.join(ROOT, "docs", "openapi.yaml")
METHODS = ("get", "put", "post", "delete", "patch")


def load_spec():
    with open(SPEC) as f:
        return yaml.safe_load(f)


def described(spec, platform):
    """(method, router path) -> scope for the operations a server on `platform` has."""
    operations = {}
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            operation = item[method]
            if operation.get("x-tern-platform", platform) != platform:
                continue
            operations[(method.upper(), operation.get("x-tern-route", path))] = operation.get("x-tern-scope")
    return operations


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = Registry("sqlite", tmp_path_factory.mktemp("openapi"))
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1, "--reference", os.path.join(ROOT, "examples", "data", "credit-reference.csv"),
                         "--label-column", "default"))
    reg.cli("push", pack(reg.tmp, "logreg", "other", 1))
    reg.cli("models", "alias", "credit", "production", "1")
    key = create_key(reg, "schemathesis", "infer,read,admin,metrics")
    return reg, key


def test_the_served_document_is_the_yaml(registry):
    reg, key = registry
    server = reg.serve()
    try:
        served = requests.get(f"http://{server.url}/openapi.json", timeout=10)  # open, like the health routes
        assert served.status_code == 200 and served.headers["Content-Type"] == "application/json"
        assert served.json() == load_spec(), "docs/openapi.yaml changed: run tools/embed-openapi.py"
    finally:
        server.stop()


@pytest.mark.parametrize("platform", ["standalone", "vertex", "azureml", "sagemaker"])
def test_every_route_is_described_with_its_scope(registry, platform, tmp_path):
    reg, key = registry
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text("rules:\n  - {name: errors, model: credit, metric: error_rate, threshold: 0.5}\n")
    server = reg.serve("--platform", platform, "--alert-rules", str(alerts), "--metrics-auth", "--batch-root", str(tmp_path))
    try:
        routes = call(server, "GET", "/api/v1/routes", key).json()
    finally:
        server.stop()
    served = {(r["method"], r["path"]): r.get("scope") for r in routes if r["transport"] == "http"}
    spec = described(load_spec(), platform)
    assert set(served) - set(spec) == set(), "routes missing from docs/openapi.yaml"
    assert set(spec) - set(served) == set(), "docs/openapi.yaml describes routes this server does not have"
    for route, scope in served.items():
        assert spec[route] == scope, (route, "x-tern-scope", spec[route], "but the router says", scope)


def test_schemathesis_finds_no_server_error_and_nothing_outside_the_document(registry, tmp_path):
    reg, key = registry
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text("rules:\n  - {name: errors, model: credit, metric: error_rate, threshold: 0.5}\n")
    server = reg.serve("--alert-rules", str(alerts), "--batch-root", str(tmp_path))
    # The other platforms' routes are checked by test_every_route_is_described_with_its_scope.
    elsewhere = [flag for operation in ("vertexHealth", "azureHealth", "vertexPredict", "azureScore")
                 for flag in ("--exclude-operation-id", operation)]
    try:
        schemathesis = os.path.join(os.path.dirname(sys.executable), "schemathesis")
        # Every check schemathesis has (tests/schemathesis.toml names the operations whose valid requests
        # depend on data no schema states, where positive data is not expected to pass), about 5 minutes.
        result = subprocess.run(
            [schemathesis, "--config-file", os.path.join(ROOT, "tests", "schemathesis.toml"), "run", SPEC,
             "--url", f"http://{server.url}", "-H", f"Authorization: Bearer {key}",
             "--phases", "examples,coverage,fuzzing", "--max-examples", "250", "--seed", "7", "--workers", "1",
             "--request-timeout", "30", "--no-color", *elsewhere, "--report", "junit", "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=1200, cwd=ROOT)
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
        # The server is still whole after it.
        assert requests.get(f"http://{server.url}/v2/health/live", timeout=10).status_code == 200
    finally:
        server.stop()


def test_wrong_methods_get_405_with_allow_and_management_bodies_are_read_strictly(registry):
    reg, key = registry
    server = reg.serve()
    auth = {"Authorization": f"Bearer {key}"}
    try:
        base = f"http://{server.url}"
        wrong = requests.request("TRACE", f"{base}/v2/health/live", timeout=10)
        assert wrong.status_code == 405 and wrong.headers["Allow"] == "GET", wrong.text
        wrong = requests.delete(f"{base}/v2/models/credit/infer", headers=auth, timeout=10)
        assert wrong.status_code == 405 and wrong.headers["Allow"] == "POST"
        assert requests.get(f"{base}/v1/models/credit:predict", headers=auth, timeout=10).headers.get("Allow") == "POST"
        assert requests.get(f"{base}/no/such/path", headers=auth, timeout=10).status_code == 404
        before = requests.get(f"{base}/api/v1/models/credit/traffic", headers=auth, timeout=10).json()
        # A misspelt option is refused, not ignored; a null is refused, not read as "absent".
        typo = requests.put(f"{base}/api/v1/models/credit/traffic", headers=auth, timeout=10,
                            json={"weights": {"1": 100}, "sticky_headr": "x-customer-id"})
        assert typo.status_code == 400 and "unknown field 'sticky_headr'" in typo.json()["error"], typo.text
        null = requests.put(f"{base}/api/v1/models/credit/traffic", headers=auth, timeout=10, json={"weights": {"1": 100}, "shadows": None})
        assert null.status_code == 400 and "shadows is null" in null.json()["error"], null.text
        flag = requests.put(f"{base}/api/v1/models/credit/aliases/staging?force=yes", headers=auth, timeout=10, json={"version": 1})
        assert flag.status_code == 400 and "force must be true or false" in flag.json()["error"]
        assert requests.get(f"{base}/api/v1/models/credit/traffic", headers=auth, timeout=10).json() == before
    finally:
        server.stop()
