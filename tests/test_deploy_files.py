"""The deployment files (issue 15) checked against real parts: the Helm chart linted and rendered by Helm's own
engine (helm-python-sdk, through tools/render-chart.py) with its default and example values, and the KServe runtime, pass
kubernetes-validate (strict, Kubernetes 1.33), and the arguments they give the container are run by the real
binary; the compose stack's Tern, PostgreSQL and Prometheus parts run as processes with the compose file's
own settings (Prometheus scrapes Tern with Tern's rules); Grafana's provisioning is checked as files; the
Dockerfile and the podman build describe the same image."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time

import kubernetes_validate
import numpy as np
import pytest
import requests
import yaml

from conftest import BINARY, EXAMPLES, ROOT, free_port
from registry_support import POSTGRES_URL, new_postgres_database

sys.path.insert(0, os.path.join(ROOT, "tools"))
render_chart = __import__("render-chart").render_chart
lint_chart = __import__("render-chart").lint_chart

CHART = os.path.join(ROOT, "deploy", "helm", "tern")
K8S = "1.33.0"
ROW = [[41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]]


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def serve_until_ready(args, port, env=None):
    process = subprocess.Popen([BINARY, *args], cwd=ROOT, env=dict(os.environ, **(env or {})),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            raise AssertionError("tern did not become ready with " + " ".join(args) + ":\n" + process.communicate()[0])
        time.sleep(0.05)


def stop(process):
    process.terminate()
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("values", [[], ["values-registry-example.yaml"], ["pvc"]])
def test_the_helm_chart_renders_valid_kubernetes_manifests_whose_arguments_tern_accepts(values, tmp_path):
    files = []
    for name in values:
        if name == "pvc":
            path = tmp_path / "pvc.yaml"
            path.write_text("models: {persistentVolumeClaim: models}\nautoscaling: {enabled: false}\nreplicaCount: 1\n")
            files.append(str(path))
        else:
            files.append(os.path.join(CHART, name))
    linted = lint_chart(CHART, files)
    assert linted["errors"] == [] and all(m["severity"] <= 1 for m in linted["messages"]), linted  # info at most
    manifests = documents(render_chart(CHART, files, release="prod"))
    kinds = sorted(m["kind"] for m in manifests)
    for manifest in manifests:
        kubernetes_validate.validate(manifest, K8S, strict=True)
    deployment = next(m for m in manifests if m["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live" and "startupProbe" in container
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    service = next(m for m in manifests if m["kind"] == "Service")
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "grpc"}
    assert "PodDisruptionBudget" in kinds
    assert ("HorizontalPodAutoscaler" in kinds) == (not values)
    secrets = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Secret"}
    assert ("prod-tern" in secrets) == (values == ["values-registry-example.yaml"])  # the database URL
    # Authentication on by default: the first admin key, generated into a Secret, mounted for --bootstrap-key-file.
    key = base64.b64decode(secrets["prod-tern-admin-key"]["data"]["api-key"]).decode()
    assert re.fullmatch(r"tern_[0-9a-f]{12}_[0-9a-f]{64}", key), key
    (tmp_path / "api-key").write_text(key)
    # The container's arguments, as the image's entrypoint (tern serve --host 0.0.0.0) gets them, run by the
    # real binary: the cluster's paths and the database become local ones.
    http, grpc = free_port(), free_port()
    database = str(tmp_path / "registry.sqlite")
    args = []
    for arg in container["args"]:
        arg = arg.replace("$(TERN_DATABASE_URL)", database).replace("/etc/tern/alert-rules.yaml", str(tmp_path / "rules.yaml"))
        arg = arg.replace("/etc/tern-admin/api-key", str(tmp_path / "api-key"))
        args.append({"/data": str(tmp_path / "data"), "/models": EXAMPLES}.get(arg, arg))
    args = [{container["ports"][0]["containerPort"]: http, container["ports"][1]["containerPort"]: grpc}.get(
        int(a) if a.isdigit() else a, a) for a in args]
    args = [str(a) for a in args]
    if "--alert-rules" in args:
        config = next(m for m in manifests if m["kind"] == "ConfigMap")
        (tmp_path / "rules.yaml").write_text(config["data"]["alert-rules.yaml"])
    assert "--insecure-open" not in args and "--bootstrap-key-file" in args
    process = serve_until_ready(["serve", "--host", "127.0.0.1", *args], http, env={"TERN_DATA": str(tmp_path / "data")})
    try:
        # The Secret's key is the server's first key: nothing without it, everything with it.
        path = "/api/v1/models" if "--database" in args else "/v2/models/credit-risk"
        assert requests.get(f"http://127.0.0.1:{http}{path}", timeout=10).status_code == 401
        assert requests.get(f"http://127.0.0.1:{http}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code == 200
    finally:
        stop(process)


def test_the_kserve_runtime_validates_and_serves_a_storage_initializer_layout(tmp_path):
    runtime = yaml.safe_load(open(os.path.join(ROOT, "deploy", "kserve", "cluster-serving-runtime.yaml")))
    service = yaml.safe_load(open(os.path.join(ROOT, "deploy", "kserve", "inference-service.yaml")))
    assert runtime["kind"] == "ClusterServingRuntime" and runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert {"name": "onnx", "version": "1", "autoSelect": True, "priority": 2} in runtime["spec"]["supportedModelFormats"]
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    predictor = service["spec"]["predictor"]["model"]
    assert predictor["runtime"] == runtime["metadata"]["name"] and predictor["modelFormat"]["name"] == "onnx"
    assert predictor["protocolVersion"] == "v2"
    # KServe's CRDs are not in kubernetes-validate's schemas: the runtime's container is a core Container.
    container = runtime["spec"]["containers"][0]
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runtime"},
                                  "spec": {"containers": [container]}}, K8S, strict=True)
    # The storage initializer leaves model.onnx in /mnt/models; KServe puts the service's name for {{.Name}}.
    models = tmp_path / "mnt-models"
    models.mkdir()
    shutil.copy(os.path.join(EXAMPLES, "credit-risk", "2", "model.onnx"), models / "model.onnx")
    http, grpc = free_port(), free_port()
    args = [{"/mnt/models": str(models), "{{.Name}}": service["metadata"]["name"], "8080": str(http), "9000": str(grpc),
             "0.0.0.0": "127.0.0.1"}.get(a, a) for a in container["args"]]
    assert container["command"] == ["/usr/local/bin/tern"] and args[0] == "serve"
    process = serve_until_ready(args, http)
    try:
        answer = requests.post(f"http://127.0.0.1:{http}/v2/models/credit-risk/infer", timeout=30, json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW}]})
        assert answer.status_code == 200 and answer.json()["model_name"] == "credit-risk", answer.text
        assert requests.get(f"http://127.0.0.1:{http}{container['readinessProbe']['httpGet']['path']}", timeout=5).status_code == 200
    finally:
        stop(process)


@pytest.mark.skipif(not POSTGRES_URL, reason="TERN_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL server)")
def test_the_compose_stack_runs_tern_on_postgresql_scraped_by_prometheus(tmp_path):
    compose = yaml.safe_load(open(os.path.join(ROOT, "deploy", "compose.yaml")))
    services = compose["services"]
    assert set(services) == {"postgres", "tern", "prometheus", "grafana"}
    assert services["tern"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["tern"]["read_only"] is True and services["tern"]["build"]["dockerfile"] == "Dockerfile"
    # Tern with the compose file's own command, its database URL pointed at the test's PostgreSQL.
    database = new_postgres_database()

    def expand(text):
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1), m.group(2)), text)

    command = [expand(str(c)) for c in services["tern"]["command"]]
    assert command[command.index("--database") + 1] == "postgres://tern:tern@postgres:5432/tern"
    command[command.index("--database") + 1] = database
    command[command.index("--data") + 1] = str(tmp_path / "data")
    # Authentication on from the first start: the stack's first admin key is written beside the data.
    assert command[command.index("--bootstrap-key-file") + 1] == "/data/admin.key" and "--insecure-open" not in command
    command[command.index("--bootstrap-key-file") + 1] = str(tmp_path / "data" / "admin.key")
    port = free_port()
    tern = serve_until_ready(["serve", "--host", "127.0.0.1", "--http-port", str(port), "--no-grpc", *command], port)
    prometheus = None
    try:
        # Prometheus with the compose stack's configuration and Tern's rules, pointed at that server.
        config = yaml.safe_load(open(os.path.join(ROOT, "deploy", "compose", "prometheus.yml")))
        mounts = dict(v.split(":")[:2][::-1] for v in services["prometheus"]["volumes"])
        assert mounts["/etc/prometheus/prometheus.yml"] == "./compose/prometheus.yml"
        assert mounts["/etc/prometheus/rules.yml"] == "./prometheus/rules.yml"
        assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["tern:8000"]
        config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
        config["global"]["scrape_interval"] = "1s"
        shutil.copy(os.path.join(ROOT, "deploy", "prometheus", "rules.yml"), tmp_path / "rules.yml")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        check = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        web = free_port()
        prometheus = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{web}"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                result = requests.get(f"http://127.0.0.1:{web}/api/v1/query", params={"query": 'up{job="tern"}'}, timeout=5).json()
                if result["data"]["result"] and result["data"]["result"][0]["value"][1] == "1":
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "Prometheus never scraped Tern"
            time.sleep(0.5)
        groups = requests.get(f"http://127.0.0.1:{web}/api/v1/rules", timeout=10).json()["data"]["groups"]
        assert groups and all(r["health"] in ("ok", "unknown") for g in groups for r in g["rules"])
        # The registry is PostgreSQL: a bundle pushed through this server is in that database.
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=10).status_code == 401
        key = (tmp_path / "data" / "admin.key").read_text().strip()
        assert requests.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=10,
                            headers={"Authorization": f"Bearer {key}"}).json() == []
    finally:
        if prometheus:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        stop(tern)
    # Grafana: the datasource and dashboards provisioning, and the dashboard they provide.
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2][::-1] for v in grafana["volumes"])
    datasources = yaml.safe_load(open(os.path.join(ROOT, "deploy", mounts["/etc/grafana/provisioning/datasources"])
                                      + "/prometheus.yaml"))
    assert datasources["datasources"][0]["type"] == "prometheus" and datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(open(os.path.join(ROOT, "deploy", mounts["/etc/grafana/provisioning/dashboards"]) + "/tern.yaml"))
    dashboard_path = providers["providers"][0]["options"]["path"]
    dashboard_mount = next(target for target, source in mounts.items() if target.startswith(dashboard_path))
    dashboard = json.load(open(os.path.join(ROOT, "deploy", mounts[dashboard_mount])))
    assert dashboard["uid"] == "tern-overview" and dashboard["panels"]


def test_the_dockerfile_and_the_podman_build_describe_the_same_image():
    dockerfile = open(os.path.join(ROOT, "Dockerfile")).read()
    local = open(os.path.join(ROOT, "deploy", "container", "Containerfile.local")).read()

    def settings(text):
        final = text.split("\nFROM ")[-1]
        return [line for line in final.splitlines() if line.split(" ")[0] in ("ENV", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD")]

    assert settings(dockerfile) == settings(local)
    assert re.search(r"ARG SWIFT_IMAGE=", dockerfile) and re.search(r"ARG RUNTIME_IMAGE=", dockerfile)
    assert "--static-swift-stdlib" in dockerfile and "onnxruntime==${ONNXRUNTIME_VERSION}" in dockerfile
    version = re.search(r'VERSION="\$\{TERN_ONNXRUNTIME_VERSION:-([\d.]+)\}"', open(os.path.join(ROOT, "scripts", "install-onnxruntime.sh")).read())
    assert f"ARG ONNXRUNTIME_VERSION={version.group(1)}" in dockerfile
