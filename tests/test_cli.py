"""The tern command line: predict, inspect, serve's failure modes and graceful shutdown."""
import json
import os
import re
import signal
import socket
import subprocess
import time

import numpy as np
import requests

from conftest import BINARY, FIXTURES, ROOT, Server, assert_matches, free_port, golden


def tern(*args, env=None, input=None):
    return subprocess.run([BINARY, *args], capture_output=True, text=True, cwd=ROOT, env=env, input=input, timeout=60)


def outputs(stdout):
    response = json.loads(stdout)
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in response["outputs"]}


def test_help_names_every_command():
    result = tern("--help")
    assert result.returncode == 0
    for command in ("serve", "predict", "inspect"):
        assert command in result.stdout
    serve = tern("serve", "--help")
    assert "--models" in serve.stdout and "--http-port" in serve.stdout and "SIGTERM" in serve.stdout


def test_predict_json_rows_matches_onnxruntime():
    case = golden("gbc")[1]
    rows = case["inputs"][0][2].tolist()
    result = tern("predict", os.path.join(FIXTURES, "gbc", "model.onnx"), "--input", json.dumps(rows))
    assert result.returncode == 0, result.stderr
    got = outputs(result.stdout)
    assert_matches(got["probabilities"].astype(np.float32), case["outputs"][1][2], "predict rows")
    np.testing.assert_array_equal(got["label"], case["outputs"][0][2])


def test_predict_v2_and_named_json():
    case = golden("logreg")[0]
    row = case["inputs"][0][2].tolist()
    v2 = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": row[0]}]})
    named = json.dumps({"features": row})
    for text in (v2, named):
        result = tern("predict", os.path.join(FIXTURES, "logreg", "model.onnx"), "--input", text,
                      "--outputs", "probabilities")
        assert result.returncode == 0, result.stderr
        got = outputs(result.stdout)
        assert list(got) == ["probabilities"]
        assert_matches(got["probabilities"].astype(np.float32), case["outputs"][1][2], "predict JSON")


def test_predict_csv_file_with_header_per_input(tmp_path):
    case = golden("pipeline_categorical")[1]
    inputs = {name: array for name, _, array in case["inputs"]}
    path = tmp_path / "rows.csv"
    with open(path, "w") as f:
        f.write("income,age,purpose\n")
        for i in range(len(inputs["age"])):
            f.write(f"{float(inputs['income'][i][0])!r},{float(inputs['age'][i][0])!r},{inputs['purpose'][i][0].decode()}\n")
    result = tern("predict", os.path.join(FIXTURES, "pipeline_categorical", "model.onnx"), "--input", str(path))
    assert result.returncode == 0, result.stderr
    assert_matches(outputs(result.stdout)["probabilities"].astype(np.float32), case["outputs"][1][2], "predict CSV")


def test_predict_csv_without_header():
    case = golden("mlp")[1]
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in case["inputs"][0][2])
    result = tern("predict", os.path.join(FIXTURES, "mlp", "model.onnx"), f"--input={text}", "--input-format", "csv")
    assert result.returncode == 0, result.stderr
    assert_matches(outputs(result.stdout)["probabilities"].astype(np.float32), case["outputs"][1][2], "predict CSV rows")
    # The old spelling still works for a release, saying so.
    old = tern("predict", os.path.join(FIXTURES, "mlp", "model.onnx"), f"--input={text}", "--format", "csv")
    assert old.returncode == 0 and "--format is now --input-format" in old.stderr


def test_predict_errors_are_one_clear_line():
    model = os.path.join(FIXTURES, "logreg", "model.onnx")
    for args, words in [
        (["--input", "[[1,2,3]]"], ["features", "[1, 3]", "[-1, 10]"]),
        (["--input", "{\"nope\": [[1]]}"], ["unexpected keys: 'nope'", "missing inputs: 'features'"]),
        (["--input", "{bad json"], ["malformed JSON at byte 1"]),
        (["--input", "1,2,x,4,5,6,7,8,9,10\n1,2,3,4,5,6,7,8,9,10"], ["not a valid FP32"]),
    ]:
        result = tern("predict", model, *args)
        assert result.returncode != 0
        assert result.stderr.startswith("error: "), result.stderr
        for word in words:
            assert word in result.stderr, (args, result.stderr)
    missing = tern("predict", "/nonexistent.onnx", "--input", "[[1]]")
    assert missing.returncode == 1 and "model file not found" in missing.stderr


def test_inspect_shows_signature_and_metadata():
    result = tern("inspect", os.path.join(FIXTURES, "all_types", "model.onnx"))
    assert result.returncode == 0, result.stderr
    assert "producer:    tern-fixtures" in result.stdout
    assert "version:     7" in result.stdout
    assert "x_fp16  FP16  [-1, 3]" in result.stdout
    assert "y_bytes  BYTES  [-1, 3]" in result.stdout
    zipmap = tern("inspect", os.path.join(FIXTURES, "gbc_zipmap", "model.onnx"))
    assert "output_probability  FP32  [-1, -1]" in zipmap.stdout
    assert "feature_names: age,income" in zipmap.stdout


def test_missing_onnxruntime_exits_1_with_install_hint(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TERN_ONNXRUNTIME_LIB"}
    result = tern("inspect", os.path.join(FIXTURES, "logreg", "model.onnx"), "--onnxruntime", str(tmp_path / "none.so"), env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "install-onnxruntime.sh" in lines[0]
    env["TERN_ONNXRUNTIME_LIB"] = str(tmp_path / "also-none.so")
    result = tern("serve", "--models", "examples/models", "--http-port", "0", env=env)
    assert result.returncode == 1 and "ONNX Runtime not found" in result.stderr


def test_serve_refuses_a_broken_repository(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"not onnx")
    result = tern("serve", "--models", str(tmp_path), "--http-port", "0")
    assert result.returncode == 1
    assert "cannot load model" in result.stderr and "m/1/model.onnx" in result.stderr
    bad_flag = tern("serve", "--models", str(tmp_path), "--max-request-size", "lots")
    assert bad_flag.returncode != 0 and "not a size" in bad_flag.stderr


def test_sigterm_drains_a_request_in_flight(repository):
    server = Server(repository)
    try:
        body = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10],
                                       "data": golden("logreg")[0]["inputs"][0][2].tolist()[0]}]}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as connection:
            head = (f"POST /v2/models/logreg/infer HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
                    "Content-Type: application/json\r\n\r\n").encode()
            connection.sendall(head + body[:20])  # the request is now in flight
            time.sleep(0.2)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            assert server.process.poll() is None, "the server exited with a request in flight"
            # New connections are refused while draining.
            try:
                refused = requests.get(f"http://{server.url}/v2/health/live", timeout=1).status_code != 200
            except requests.ConnectionError:
                refused = True
            assert refused
            connection.sendall(body[20:])
            response = b""
            while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
                chunk = connection.recv(65536)
                if not chunk:
                    break
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert b"probabilities" in response
        assert server.process.wait(timeout=30) == 0
        # The log says the stop began and what it drained, and nothing worse than that.
        output = server.output()
        assert re.search(r"stopping: draining [1-9]\d* HTTP connections? and the calls in flight", output), output
        assert " warning " not in output.split("stopping:")[1] and " error " not in output.split("stopping:")[1], output
    finally:
        server.stop()


def platform_server(tmp_path, platform, env, extra=()):
    """tern serve --platform ... with the platform's environment, on a folder holding one model.onnx."""
    folder = tmp_path / "artifacts"
    folder.mkdir(exist_ok=True)
    (folder / "model.onnx").write_bytes(open(os.path.join(FIXTURES, "gbc", "model.onnx"), "rb").read())
    port = free_port()
    env = {**os.environ, **{k: v.replace("PORT", str(port)).replace("DIR", str(folder)) for k, v in env.items()}}
    process = subprocess.Popen([BINARY, "serve", "--platform", platform, "--host", "127.0.0.1", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=env, text=True)
    return process, port


def wait_http(process, url):
    for _ in range(300):
        assert process.poll() is None, process.stdout.read()
        try:
            if requests.get(url, timeout=0.5).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("not ready")


def check_predictions(response, case, rows):
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == case["outputs"][0][2][:rows].tolist()
    assert_matches(np.array([p["probabilities"] for p in predictions], dtype=np.float32),
                   case["outputs"][1][2][:rows], "platform predictions")


def test_platform_vertex_reads_its_environment(tmp_path):
    case = golden("gbc")[1]
    process, port = platform_server(tmp_path, "vertex", {
        "AIP_HTTP_PORT": "PORT", "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
        "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict", "AIP_STORAGE_URI": "DIR"})
    try:
        wait_http(process, f"http://127.0.0.1:{port}/v1/endpoints/1/deployedModels/2")
        response = requests.post(f"http://127.0.0.1:{port}/v1/endpoints/1/deployedModels/2:predict",
                                 json={"instances": case["inputs"][0][2][:3].tolist()})
        check_predictions(response, case, 3)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_platform_sagemaker_and_azureml(tmp_path):
    case = golden("gbc")[1]
    csv = "\n".join(",".join(repr(float(v)) for v in row) for row in case["inputs"][0][2][:4])
    process, port = platform_server(tmp_path, "sagemaker", {"SAGEMAKER_BIND_TO_PORT": "PORT"},
                                    extra=["--models", str(tmp_path / "artifacts")])
    try:
        wait_http(process, f"http://127.0.0.1:{port}/ping")
        response = requests.post(f"http://127.0.0.1:{port}/invocations", data=csv, headers={"Content-Type": "text/csv"})
        check_predictions(response, case, 4)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # Azure ML's port is 5001; a free port here, so the test never collides.
    port = free_port()
    process = subprocess.Popen([BINARY, "serve", "--platform", "azureml", "--host", "127.0.0.1", "--http-port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, text=True,
                               env={**os.environ, "AZUREML_MODEL_DIR": str(tmp_path / "artifacts")})
    try:
        wait_http(process, f"http://127.0.0.1:{port}/")
        response = requests.post(f"http://127.0.0.1:{port}/score", json={"instances": case["inputs"][0][2][:2].tolist()})
        check_predictions(response, case, 2)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_platform_without_models_says_what_to_do():
    result = tern("serve", "--platform", "vertex", env={**os.environ, "AIP_STORAGE_URI": "gs://bucket/model"})
    assert result.returncode != 0
    assert "not mounted at /gcs/bucket/model" in result.stderr
    result = tern("serve")
    assert result.returncode != 0 and "give --models" in result.stderr


def test_every_command_follows_the_grammar_tern_help_documents():
    """`tern --help` documents one grammar; every subcommand's flags (from ArgumentParser's own dump of the
    command tree) follow it."""
    grammar = tern("--help").stdout
    for flag in ("--models DIR", "--server URL", "--api-key KEY", "--ca-cert FILE", "-o, --output FILE", "--input-format", "--grant"):
        assert flag in grammar, flag
    tree = json.loads(subprocess.run([BINARY, "--experimental-dump-help"], capture_output=True, text=True, check=True).stdout)

    def commands(command, path):
        yield path, command
        for sub in command.get("subcommands") or []:
            if sub["commandName"] != "help":
                yield from commands(sub, path + [sub["commandName"]])

    checked = 0
    for path, command in commands(tree["command"], ["tern"]):
        shown, hidden = set(), set()
        for argument in command.get("arguments") or []:
            names = {("--" if n["kind"] == "long" else "-") + n["name"] for n in argument.get("names") or []}
            (shown if argument.get("shouldDisplay", True) else hidden).update(names)
        where = " ".join(path)
        # --models is the model folder, and only serve has one.
        assert "--models" not in shown or path == ["tern", "serve"], where
        # A command that addresses a server can authenticate to it and trust its certificate (health probes
        # an open route).
        if "--server" in shown and path != ["tern", "health"]:
            assert {"--api-key", "--ca-cert"} <= shown, where
        # Whatever writes a file takes -o as well as --output.
        if "--output" in shown:
            assert "-o" in shown, where
        # No command names its input format --format (that is an output's).
        if "--input" in shown and "--format" in shown:
            assert "--output" in shown, where
        checked += 1
    assert checked > 40


def test_onnx_runtime_keeps_no_device_id_and_sends_no_telemetry_unless_the_operator_allows_it(tmp_path):
    """ONNX Runtime's official builds write a device id under ~/.cache/Microsoft/DeveloperTools and upload usage
    events unless ORT_DISABLE_TELEMETRY=1 is set before the environment is made: Tern sets it unless it is set
    (without that, this HOME gets .cache/Microsoft/DeveloperTools/.onnxruntime/deviceid; the positive case is
    not run here, so that the tests never try to upload anything)."""
    model = os.path.join(ROOT, "examples", "models", "credit-risk", "2", "model.onnx")
    home = tmp_path / "home"
    home.mkdir()
    environment = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    result = subprocess.run([BINARY, "predict", model, "--input", "[[41, 52000, 0.3, 4, 0, 0, 12000, 6, 8, 0.4]]"],
                            capture_output=True, text=True, env={**environment, "HOME": str(home)}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert list(home.rglob("*")) == []
