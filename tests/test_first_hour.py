"""A newcomer's first hour: startup errors that say what to change and bind nothing, one consistent CLI,
errors that teach, and the Triton calls users arrive with (model config, statistics)."""
import json
import os
import pickle
import shutil
import socket
import subprocess

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import BINARY, EXAMPLES, FIXTURES, ROOT, Server, free_port
from registry_support import credit_csv, tern

ROW = [41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]


def serve_fails(*args):
    """Runs `tern serve` expected to fail at once: its output lines and whether a port it was given is bound."""
    http, grpc = free_port(), free_port()
    result = subprocess.run([BINARY, "serve", "--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
                             *args], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines


def assert_one_line(lines, *words):
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "ready" not in lines[0] and "serving" not in lines[0] and "listening" not in lines[0]


def test_a_mistyped_model_folder_is_one_line_and_nothing_starts():
    assert_one_line(serve_fails("--models", "exmples/models"), "'exmples/models' is not a folder")
    # KServe's spelling of the flag names the same folder.
    assert_one_line(serve_fails("--model_dir", "exmples/models"), "'exmples/models' is not a folder")


def test_a_busy_port_names_the_port_the_protocol_and_the_flag():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for flag, protocol in (("--http-port", "HTTP"), ("--grpc-port", "gRPC")):
            args = ["serve", "--models", EXAMPLES, "--host", "127.0.0.1",
                    "--http-port", str(free_port()), "--grpc-port", str(free_port())]
            args[args.index(flag) + 1] = port
            result = subprocess.run([BINARY, *args], capture_output=True, text=True, timeout=30, cwd=ROOT)
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
            assert result.returncode == 1
            assert_one_line(lines, f"{protocol} port {port}", "in use", flag)


def test_a_pickle_where_a_model_should_be_says_how_to_convert(tmp_path):
    folder = tmp_path / "models" / "churn" / "1"
    folder.mkdir(parents=True)
    with open(folder / "model.onnx", "wb") as f:
        pickle.dump({"weights": [1, 2, 3]}, f)  # a pickle named model.onnx
    assert_one_line(serve_fails("--models", str(tmp_path / "models")), "Python pickle", "skl2onnx", "never loads")
    # A pickle beside where model.onnx should be (model.pkl, the usual name) gets the same recipe.
    other = tmp_path / "elsewhere" / "churn" / "1"
    other.mkdir(parents=True)
    shutil.copy(folder / "model.onnx", other / "model.pkl")
    assert_one_line(serve_fails("--models", str(tmp_path / "elsewhere")), "has no model.onnx", "Python pickle",
                    "tern pack model.pkl --sample data.csv", "StringTensorType")
    # tern pack converts pickles (tests/test_pipelines.py); it needs the rows to convert and check with.
    shutil.copy(folder / "model.onnx", tmp_path / "model.pkl")
    result = tern("pack", str(tmp_path / "model.pkl"), "--name", "churn", check=False)
    assert result.returncode == 1 and "--sample data.csv" in result.stderr
    torch_zip = tmp_path / "model.pt"
    import zipfile
    with zipfile.ZipFile(torch_zip, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("archive/version", b"3\n")
    result = tern("predict", str(torch_zip), "--input", "[[1]]", check=False)
    assert result.returncode == 1 and "PyTorch" in result.stderr and "torch.onnx.export" in result.stderr


def test_pack_takes_a_version_and_tern_prints_its_own(tmp_path):
    out = tmp_path / "v3.tern"
    tern("pack", os.path.join(FIXTURES, "logreg", "model.onnx"), "--name", "credit", "--version", "3", "-o", str(out))
    assert json.loads(tern("inspect", str(out), "--json").stdout)["manifest"]["version"] == 3
    assert tern("--version").stdout.strip() == "0.1.0"


def test_help_lists_only_the_flags_a_command_uses():
    listing = tern("models", "list", "--help").stdout
    assert "--data" in listing and "--actor" not in listing and "--artifacts-in-database" not in listing
    push = tern("push", "--help").stdout
    assert "--actor" in push and "--onnxruntime" in push and "--intra-op-threads" not in push
    assert "--model-repository" in tern("serve", "--help").stdout and "--model_dir" in tern("serve", "--help").stdout
    for command in (["serve"], ["pack"], ["predict"], ["push"]):
        text = tern(*command, "--help").stdout
        long = [line for line in text.splitlines() if len(line) > 80 and not line.startswith("USAGE:")]
        assert not long, long  # the usage line is ArgumentParser's; the rest wraps once, at 80 columns


def test_predict_names_the_model_from_its_folder_and_drops_a_label_column(tmp_path):
    path = tmp_path / "rows.csv"
    x, _ = credit_csv(str(path), 5, seed=3)  # a header, the ten features and a 'default' label
    model = os.path.join(EXAMPLES, "credit-risk", "2", "model.onnx")
    result = tern("predict", model, "--input", str(path), "--ignore-columns", "default")
    answer = json.loads(result.stdout)
    assert answer["model_name"] == "credit-risk" and answer["model_version"] == "2"
    import onnxruntime as ort
    expected = ort.InferenceSession(model).run(None, {"features": x})[1]
    got = np.array(next(o["data"] for o in answer["outputs"] if o["name"] == "probabilities")).reshape(5, 2)
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5)
    # an unused column without --ignore-columns: dropped, with a warning naming it
    result = tern("predict", model, "--input", str(path))
    assert "ignoring columns the model does not use: default" in result.stderr
    assert json.loads(result.stdout)["outputs"] == answer["outputs"]


def test_serve_finds_the_registry_the_other_commands_use(tmp_path):
    bundle = str(tmp_path / "credit.tern")
    tern("pack", os.path.join(FIXTURES, "logreg", "model.onnx"), "--name", "credit", "--version", "1", "-o", bundle)
    env = dict(os.environ, TERN_DATA=str(tmp_path / "data"))
    subprocess.run([BINARY, "push", bundle], env=env, check=True, capture_output=True)
    log = subprocess.run([BINARY, "audit", "log"], env=env, check=True, capture_output=True, text=True).stdout
    assert log.splitlines()[0].split() == ["SEQ", "TIME", "ACTOR", "ACTION", "MODEL", "VERSION", "CHANGE"]
    port = free_port()
    process = subprocess.Popen([BINARY, "serve", "--host", "127.0.0.1", "--http-port", str(port), "--no-grpc"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        for _ in range(200):
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/models/credit", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                import time
                time.sleep(0.05)
        assert requests.get(f"http://127.0.0.1:{port}/v2/models/credit", timeout=5).json()["name"] == "credit"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_errors_point_the_way(server):
    base = f"http://{server.url}"
    unknown = requests.post(f"{base}/v2/models/credit/infer", data="{}", timeout=10).json()["error"]
    assert "unknown model 'credit'" in unknown and "credit-risk" in unknown and "logreg" in unknown
    csv = requests.post(f"{base}/v2/models/credit-risk/infer", data="41,52000,0.31,4,0,0,12000,6.5,8,0.42",
                        headers={"Content-Type": "text/csv"}, timeout=10)
    assert csv.status_code == 400 and "/invocations" in csv.json()["error"], csv.text


def test_tritonclient_reads_model_config_and_statistics_over_http_and_grpc(repository):
    server = Server(repository)
    try:
        http = httpclient.InferenceServerClient(url=server.url)
        grpc = grpcclient.InferenceServerClient(url=server.grpc_url)
        rows = np.array([ROW, ROW, ROW], dtype=np.float32)
        for client, module in ((http, httpclient), (grpc, grpcclient)):
            features = module.InferInput("features", list(rows.shape), "FP32")
            features.set_data_from_numpy(rows)
            for _ in range(2):
                client.infer("credit-risk", [features], model_version="2")
        config = grpc.get_model_config("credit-risk", model_version="2", as_json=True)["config"]
        assert config["name"] == "credit-risk" and config["platform"] == "onnxruntime_onnx"
        assert [i["name"] for i in config["input"]] == ["features"] and config["input"][0]["data_type"] == "TYPE_FP32"
        assert config["input"][0]["dims"] == ["-1", "10"]
        assert http.get_model_config("credit-risk", "2")["input"] == [
            {"name": "features", "data_type": "TYPE_FP32", "dims": [-1, 10]}]

        rest = http.get_inference_statistics("credit-risk", "2")["model_stats"]
        over_grpc = grpc.get_inference_statistics("credit-risk", "2", as_json=True)["model_stats"]
        assert len(rest) == 1 and len(over_grpc) == 1
        stats = rest[0]
        assert (stats["name"], stats["version"]) == ("credit-risk", "2")
        success = stats["inference_stats"]["success"]
        assert success["count"] == 4 and success["ns"] > 0 and stats["inference_count"] == 12
        assert stats["inference_stats"]["fail"]["count"] == 0
        assert 1 <= stats["execution_count"] <= 4 and stats["inference_stats"]["queue"]["count"] == 4
        assert stats["inference_stats"]["compute_infer"]["count"] == 4
        assert int(over_grpc[0]["inference_stats"]["success"]["count"]) == 4
        assert int(over_grpc[0]["inference_count"]) == 12
        # every loaded version, and each version of one model
        names = {(s["name"], s["version"]) for s in http.get_inference_statistics()["model_stats"]}
        assert {("credit-risk", "1"), ("credit-risk", "2"), ("logreg", "1")} <= names
        assert [s["version"] for s in http.get_inference_statistics("credit-risk")["model_stats"]] == ["1", "2"]
        assert http.get_inference_statistics("credit-risk", "1")["model_stats"][0]["inference_count"] == 0
    finally:
        server.stop()


def test_an_installed_tern_finds_onnx_runtime_beside_itself(tmp_path):
    # What scripts/install.sh lays out: PREFIX/bin/tern and PREFIX/lib/tern/libonnxruntime.so*
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    shutil.copy(BINARY, prefix / "bin" / "tern")
    env = {k: v for k, v in os.environ.items() if k != "TERN_ONNXRUNTIME_LIB"}
    model = os.path.join(FIXTURES, "logreg", "model.onnx")
    missing = subprocess.run([str(prefix / "bin" / "tern"), "inspect", model], capture_output=True, text=True,
                             env=env, cwd=str(tmp_path))
    assert missing.returncode == 1 and "ONNX Runtime not found" in missing.stderr
    lib = prefix / "lib" / "tern"
    lib.mkdir(parents=True)
    for name in os.listdir(os.path.join(ROOT, ".tern", "onnxruntime", "lib")):
        shutil.copy(os.path.join(ROOT, ".tern", "onnxruntime", "lib", name), lib / name, follow_symlinks=False)
    found = subprocess.run([str(prefix / "bin" / "tern"), "inspect", model], capture_output=True, text=True,
                           env=env, cwd=str(tmp_path))
    assert found.returncode == 0, found.stderr
    assert "features" in found.stdout


def test_a_typo_in_data_is_refused_and_creates_nothing(tmp_path):
    """`serve --data` on a folder without a registry (a typo, most often) says so instead of serving an empty
    registry; --create starts one on purpose; a folder tern push made is served as before."""
    typo = tmp_path / ".tern" / "dta"
    assert_one_line(serve_fails("--data", str(typo)), "holds no registry (no such folder)", "--create", "tern push")
    assert not typo.exists()
    typo.mkdir(parents=True)
    assert_one_line(serve_fails("--data", str(typo)), "holds no registry (no registry.sqlite in it)")
    assert os.listdir(typo) == []
    from conftest import Server
    server = Server(None, "--data", str(typo), "--create", log_dir=str(tmp_path))
    try:
        assert requests.get(f"http://{server.url}/api/v1/models", timeout=10).json() == []
    finally:
        server.stop()
    assert (typo / "registry.sqlite").exists()
