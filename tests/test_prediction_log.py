"""The prediction log against a live `tern serve`: every prediction readable back by request id and as a
file, with named inputs and onnxruntime's outputs; 100,000 requests in order; floods dropped and counted;
restarts; sampling, redaction and retention; SQLite and PostgreSQL."""
import http.client
import json
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import threading
import zlib

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.grpc as grpcclient

from conftest import BINARY, EXAMPLES, ROOT, Server
from registry_support import BACKENDS, new_postgres_database

FEATURES = ["age", "income", "debt_ratio", "credit_lines", "late_30d", "late_90d", "loan_amount",
            "employment_years", "open_accounts", "utilization"]
ROWS = np.array([[41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42],
                 [23, 18000, 0.72, 2, 3, 1, 25000, 0.5, 3, 0.97]], dtype=np.float32)


def varint_end(block):
    """An unsealed block's deflated bytes: after its format byte (1) and the varint of its inflated length."""
    assert block[0] == 1
    end = 1
    while block[end] & 0x80:
        end += 1
    return block[end + 1:]


def credit_folder(tmp_path, config=None):
    folder = tmp_path / "models"
    shutil.copytree(os.path.join(EXAMPLES, "credit-risk"), folder / "credit-risk")
    if config is not None:
        (folder / "credit-risk" / "config.yaml").write_text(config)
    return str(folder)


def body(rows, request_id=None):
    payload = {"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape), "data": rows.tolist()}]}
    if request_id:
        payload["id"] = request_id
    return payload


def tern(*args):
    result = subprocess.run([BINARY, *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def logged(log):
    """The log's records in the order written, as `tern predictions export` reads them (JSON Lines)."""
    return [json.loads(line) for line in tern("predictions", "export", "--prediction-log", log, "--format", "jsonl").splitlines()
            if line]


def metric(url, name):
    for line in requests.get(f"http://{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_written(server, count, timeout=30):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        if metric(server.url, "tern_prediction_log_rows_total") >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"the prediction log wrote {metric(server.url, 'tern_prediction_log_rows_total')} of {count}")


def test_predictions_are_readable_by_request_id_on_every_protocol(tmp_path):
    log = str(tmp_path / "predictions.sqlite")
    server = Server(credit_folder(tmp_path), "--prediction-log", log, log_dir=str(tmp_path))
    session = ort.InferenceSession(os.path.join(EXAMPLES, "credit-risk", "2", "model.onnx"))
    labels, probabilities = session.run(None, {"features": ROWS})
    try:
        rest = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS),
                             headers={"X-Request-ID": "application-7"}, timeout=10)
        assert rest.status_code == 200
        client = grpcclient.InferenceServerClient(server.grpc_url)
        tensor = grpcclient.InferInput("features", [2, 10], "FP32")
        tensor.set_data_from_numpy(ROWS)
        client.infer("credit-risk", [tensor], headers={"x-request-id": "application-8"})
        v1 = requests.post(f"http://{server.url}/v1/models/credit-risk:predict", json={"instances": ROWS.tolist()},
                           headers={"X-Request-ID": "application-9"}, timeout=10)
        assert v1.status_code == 200
        refused = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS[:, :3]),
                                headers={"X-Request-ID": "refused-1"}, timeout=10)
        assert refused.status_code == 400
        wait_written(server, 3)
        for request_id, protocol in [("application-7", "v2_rest"), ("application-8", "v2_grpc"), ("application-9", "kserve_v1")]:
            answer = requests.get(f"http://{server.url}/api/v1/predictions/{request_id}", timeout=10)
            assert answer.status_code == 200, answer.text
            [record] = answer.json()["predictions"]
            assert (record["request_id"], record["model"], record["version"], record["protocol"]) == \
                (request_id, "credit-risk", 2, protocol)
            assert record["latency_ms"] > 0 and record["time"].endswith("Z")
            assert [list(row) for row in record["inputs"]] == [FEATURES, FEATURES]  # named columns, in order
            np.testing.assert_allclose([[row[f] for f in FEATURES] for row in record["inputs"]], ROWS, rtol=1e-6)
            assert [row["label"] for row in record["outputs"]] == labels.tolist()
            np.testing.assert_allclose([row["probabilities"] for row in record["outputs"]], probabilities, rtol=1e-5)
        # A refused request is not a prediction.
        missing = requests.get(f"http://{server.url}/api/v1/predictions/refused-1", timeout=10)
        assert missing.status_code == 404 and "refused-1" in missing.json()["error"]
        assert requests.get(f"http://{server.url}/api/v1/predictions?since=yesterday", timeout=10).status_code == 400
        # The CLI reads the same records, from the file and through the server.
        shown = json.loads(tern("predictions", "show", "application-8", "--prediction-log", log))
        assert shown["predictions"][0]["protocol"] == "v2_grpc"
        through = json.loads(tern("predictions", "show", "application-8", "--server", f"http://{server.url}"))
        assert through == shown
        csv = tern("predictions", "export", "--model", "credit-risk", "--since", "1h", "--prediction-log", log).splitlines()
        assert csv[0] == ",".join(["time", "request_id", "model", "version", "protocol", "latency_ms", "row"]
                                  + FEATURES + ["prediction.label", "prediction.probabilities"])
        assert [line.split(",")[1] for line in csv[1:]] == ["application-7"] * 2 + ["application-8"] * 2 + ["application-9"] * 2
        assert csv[1].split(",")[7:10] == ["41.0", "52000.0", "0.31"]
        assert tern("predictions", "export", "--format", "csv", "--server", f"http://{server.url}").splitlines() == csv
        lines = tern("predictions", "export", "--format", "jsonl", "--prediction-log", log).splitlines()
        assert [json.loads(line)["request_id"] for line in lines] == ["application-7", "application-8", "application-9"]
        assert tern("predictions", "export", "--since", "2000-01-01", "--until", "2000-01-02", "--prediction-log", log) == ""
    finally:
        server.stop()


def test_100000_requests_are_all_read_back_in_order(tmp_path):
    log = str(tmp_path / "predictions.sqlite")
    server = Server(credit_folder(tmp_path), "--prediction-log", log, log_dir=str(tmp_path))
    clients, per_client = 8, 12_500
    try:
        def client(index):
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for number in range(per_client):
                row = ROWS[:1].copy()
                row[0, 0] = number
                payload = json.dumps(body(row))
                connection.request("POST", "/v2/models/credit-risk/infer", payload,
                                   {"Content-Type": "application/json", "X-Request-ID": f"c{index}-{number}"})
                answer = connection.getresponse()
                answer.read()
                assert answer.status == 200
            connection.close()

        threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_written(server, clients * per_client, timeout=120)
        assert metric(server.url, "tern_prediction_log_dropped_total") == 0
    finally:
        server.stop()
    rows = [(record["request_id"], record["inputs"]) for record in logged(log)]
    assert len(rows) == clients * per_client
    order = {}
    for request_id, inputs in rows:
        client, number = request_id[1:].split("-")
        # Each client's requests were sequential: the log holds them in the order they were answered.
        assert int(number) == order.get(client, -1) + 1, (request_id, order.get(client))
        order[client] = int(number)
        assert inputs[0]["age"] == int(number)
    assert all(last == per_client - 1 for last in order.values()) and len(order) == clients


def flood(server, rows, clients, per_client):
    """`clients` keep-alive connections each posting `rows` `per_client` times at once; the statuses answered."""
    statuses, lock = [], threading.Lock()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        payload = json.dumps(body(rows))
        for _ in range(per_client):
            connection.request("POST", "/v2/models/credit-risk/infer", payload, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            with lock:
                statuses.append(answer.status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_a_flood_past_the_queue_drops_rows_counts_them_and_fails_no_request(tmp_path):
    server = Server(credit_folder(tmp_path), "--prediction-log", str(tmp_path / "p.sqlite"),
                    "--prediction-log-queue", "20", log_dir=str(tmp_path))
    try:
        statuses = flood(server, ROWS, 16, 1500)
        assert set(statuses) == {200}
        import time
        time.sleep(1.5)  # the writer's last batch
        written = metric(server.url, "tern_prediction_log_rows_total")
        dropped = metric(server.url, "tern_prediction_log_dropped_total")
        assert dropped > 0, "a 20-row queue under 16 clients dropped nothing"
        assert written + dropped == len(statuses)
        assert metric(server.url, "tern_prediction_log_queue_rows") == 0
    finally:
        server.stop()


def test_readers_catching_up_under_load_and_the_writer_take_turns(tmp_path):
    """Every read of the log makes the server write what it has queued first (read-your-writes). Readers
    asking all through a flood must not write beside the writer task (one transaction at a time on the
    store): every prediction is written, none dropped or lost to a failed write, and each read finds its
    own prediction."""
    server = Server(credit_folder(tmp_path), "--prediction-log", str(tmp_path / "p.sqlite"), log_dir=str(tmp_path))
    done, found = threading.Event(), []
    try:
        def reader(index):
            number = 0
            while not done.is_set():
                number += 1
                request_id = f"reader-{index}-{number}"
                requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS, request_id), timeout=10)
                answer = requests.get(f"http://{server.url}/api/v1/predictions/{request_id}", timeout=10)
                found.append(answer.status_code == 200 and len(answer.json()["predictions"]) == 1)

        readers = [threading.Thread(target=reader, args=(index,)) for index in range(2)]
        for thread in readers:
            thread.start()
        statuses = flood(server, ROWS, 8, 1000)
        done.set()
        for thread in readers:
            thread.join()
        assert set(statuses) == {200} and len(found) >= 3 and all(found), (len(found), found.count(False))
        wait_written(server, len(statuses) + len(found))
        assert metric(server.url, "tern_prediction_log_dropped_total") == 0
        assert "prediction log write failed" not in server.output()
    finally:
        server.stop()


def test_the_queue_counts_rows_so_large_requests_cannot_fill_memory(tmp_path):
    """--prediction-log-queue counts predicted rows: with 64, at most one 45-row request waits (two would be 90
    rows), however many clients send them; the queue gauge, sampled all along, never shows more than 64 rows.
    A 100-row request, larger than the whole queue, is still taken when nothing waits."""
    server = Server(credit_folder(tmp_path), "--prediction-log", str(tmp_path / "p.sqlite"),
                    "--prediction-log-queue", "64", log_dir=str(tmp_path))
    rows = np.tile(ROWS, (23, 1))[:45]
    done, seen = threading.Event(), []
    try:
        def watch():
            while not done.is_set():
                seen.append(metric(server.url, "tern_prediction_log_queue_rows"))

        watcher = threading.Thread(target=watch)
        watcher.start()
        statuses = flood(server, rows, 8, 150)
        done.set()
        watcher.join()
        assert set(statuses) == {200}
        import time
        time.sleep(1)  # the writer's last pass
        written = metric(server.url, "tern_prediction_log_rows_total")
        dropped = metric(server.url, "tern_prediction_log_dropped_total")
        assert written + dropped == 8 * 150 and written >= 1
        assert len(seen) > 10 and max(seen) in (0, 45), sorted(set(seen))
        big = requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(np.tile(ROWS, (50, 1)), "big-1"),
                            timeout=10)
        assert big.status_code == 200
        record = requests.get(f"http://{server.url}/api/v1/predictions/big-1", timeout=10).json()["predictions"]
        assert len(record) == 1 and len(record[0]["inputs"]) == 100
    finally:
        server.stop()


def test_a_graceful_stop_writes_everything_and_a_kill_loses_at_most_the_queue(tmp_path):
    log = str(tmp_path / "p.sqlite")
    folder = credit_folder(tmp_path)
    server = Server(folder, "--prediction-log", log, log_dir=str(tmp_path))
    for number in range(300):
        assert requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS),
                             headers={"X-Request-ID": f"before-{number}"}, timeout=10).status_code == 200
    server.process.send_signal(signal.SIGTERM)  # at once: much of it is still queued
    assert server.process.wait(timeout=30) == 0
    server.log.close()
    assert len(logged(log)) == 300, "a graceful stop lost queued predictions"

    server = Server(folder, "--prediction-log", log, log_dir=str(tmp_path))
    for number in range(300):
        requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS),
                      headers={"X-Request-ID": f"killed-{number}"}, timeout=10)
    server.process.kill()
    server.process.wait(timeout=30)
    server.log.close()
    ids = [record["request_id"] for record in logged(log)]
    # What was written survives whole, in order; the rest (the queue at the kill) is lost.
    killed = [i for i in ids if i.startswith("killed-")]
    assert killed == [f"killed-{n}" for n in range(len(killed))]
    assert ids[:300] == [f"before-{n}" for n in range(300)]

    server = Server(folder, "--prediction-log", log, log_dir=str(tmp_path))  # the file opens and takes more
    try:
        requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS),
                      headers={"X-Request-ID": "after"}, timeout=10)
        wait_written(server, 1)
        assert requests.get(f"http://{server.url}/api/v1/predictions/after", timeout=10).status_code == 200
    finally:
        server.stop()


def test_sampling_redaction_and_retention(tmp_path):
    log = str(tmp_path / "p.sqlite")
    folder = credit_folder(tmp_path, "version_policy: {latest: 2}\nprediction_log:\n  sample_rate: 0.25\n  redact: [income, age]\n")
    server = Server(folder, "--prediction-log", log, log_dir=str(tmp_path))
    try:
        for number in range(40):
            requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS),
                          headers={"X-Request-ID": f"s-{number}"}, timeout=10)
        wait_written(server, 10)
        import time
        time.sleep(0.6)
        assert metric(server.url, "tern_prediction_log_rows_total") == 10  # exactly a quarter, spread evenly
    finally:
        server.stop()
    rows = logged(log)
    assert len(rows) == 10
    for record in rows:
        first = record["inputs"][0]
        assert first["income"] == "[redacted]" and first["age"] == "[redacted]" and first["debt_ratio"] == pytest.approx(0.31)
        assert record["outputs"][0]["label"] in (0, 1)
    # Redacted values never reach the file: the blocks, inflated, hold the other features' FP32 bytes only.
    plain = b"".join(zlib.decompress(varint_end(data)) for (data,) in
                     sqlite3.connect(log).execute("SELECT data FROM tern_prediction_blocks").fetchall())
    assert struct.pack("<f", 0.31) in plain and struct.pack("<f", 52000) not in plain and struct.pack("<f", 41) not in plain
    kept = [record["request_id"] for record in rows]
    # Retention at start: at most 4 rows kept, the newest.
    for flag, value, remaining in [("--prediction-log-max-rows", "4", 4), ("--prediction-log-retention", "1s", 0)]:
        server = Server(folder, "--prediction-log", log, flag, value, log_dir=str(tmp_path))
        try:
            import time
            deadline = time.time() + 10
            while [record["request_id"] for record in logged(log)] != kept[len(kept) - remaining:]:
                assert time.time() < deadline, f"{flag} {value} did not leave the newest {remaining} records"
                time.sleep(0.1)
        finally:
            server.stop()
    bad = subprocess.run([BINARY, "serve", "--models", folder, "--prediction-log-retention", "soon"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "not an age" in bad.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_registry_keeps_its_prediction_log_in_its_database(backend, tmp_path):
    data = tmp_path / "data"
    if backend == "sqlite":
        args = ["--data", str(data)]
    else:
        args = ["--database", new_postgres_database(), "--data", str(data)]
    import registry_support
    registry_support.tern("push", registry_support.pack(str(tmp_path), "logreg", "scorer", 1), *args)
    server = Server(None, *args, log_dir=str(tmp_path))
    try:
        answer = requests.post(f"http://{server.url}/v2/models/scorer/infer", headers={"X-Request-ID": "reg-1"}, json={
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": list(range(10))}]}, timeout=10)
        assert answer.status_code == 200, answer.text
        wait_written(server, 1)
    finally:
        server.stop()
    if backend == "sqlite":
        assert os.path.exists(data / "predictions.sqlite")
    shown = json.loads(tern("predictions", "show", "reg-1", *args))
    assert shown["predictions"][0]["model"] == "scorer"
    assert shown["predictions"][0]["outputs"] == answer_outputs(answer.json())


def answer_outputs(response):
    """The v2 answer's outputs as the log stores them: one object per row."""
    rows = response["outputs"][0]["shape"][0]
    out = []
    for row in range(rows):
        item = {}
        for output in response["outputs"]:
            per_row = int(np.prod(output["shape"][1:])) if len(output["shape"]) > 1 else 1
            values = output["data"][row * per_row:(row + 1) * per_row]
            item[output["name"]] = np.array(values).reshape(output["shape"][1:]).tolist() if len(output["shape"]) > 1 else values[0]
        out.append(item)
    return out


def test_prediction_log_off_and_a_bad_location_say_so(tmp_path):
    folder = credit_folder(tmp_path)
    server = Server(folder, "--prediction-log", "off", log_dir=str(tmp_path))
    try:
        requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS), timeout=10)
        assert requests.get(f"http://{server.url}/api/v1/predictions/x", timeout=10).status_code == 404
        assert "tern_prediction_log" not in requests.get(f"http://{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    (tmp_path / "file").write_text("")
    bad = subprocess.run([BINARY, "serve", "--models", folder, "--http-port", "0", "--grpc-port", "0",
                          "--prediction-log", str(tmp_path / "file" / "p.sqlite")], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--prediction-log" in bad.stderr, bad.stderr


def test_json_lines_files_take_the_log_and_are_read_back(tmp_path):
    folder = tmp_path / "log"
    server = Server(credit_folder(tmp_path), "--prediction-log", f"jsonl:{folder}", log_dir=str(tmp_path))
    try:
        for number in range(5):
            assert requests.post(f"http://{server.url}/v2/models/credit-risk/infer", json=body(ROWS),
                                 headers={"X-Request-ID": f"file-{number}"}, timeout=10).status_code == 200
        wait_written(server, 5)
        answer = requests.get(f"http://{server.url}/api/v1/predictions/file-3", timeout=10).json()
        [record] = answer["predictions"]
        assert record["request_id"] == "file-3" and [list(row) for row in record["inputs"]] == [FEATURES, FEATURES]
        page = requests.get(f"http://{server.url}/api/v1/predictions?limit=2", timeout=10).json()
        assert [p["request_id"] for p in page["predictions"]] == ["file-0", "file-1"]
        rest = requests.get(f"http://{server.url}/api/v1/predictions?limit=10&after={page['next']}", timeout=10).json()
        assert [p["request_id"] for p in rest["predictions"]] == ["file-2", "file-3", "file-4"] and "next" not in rest
    finally:
        server.stop()
    [name] = os.listdir(folder)
    assert name.startswith("predictions-") and name.endswith(".jsonl")
    lines = [json.loads(line) for line in open(folder / name)]
    assert [line["request_id"] for line in lines] == [f"file-{n}" for n in range(5)]
    assert lines[0] == requests_free_record(lines[0])
    shown = json.loads(tern("predictions", "show", "file-4", "--prediction-log", f"jsonl:{folder}"))
    assert shown["predictions"][0]["outputs"] == lines[4]["outputs"]
    csv = tern("predictions", "export", "--prediction-log", f"jsonl:{folder}").splitlines()
    assert len(csv) == 1 + 5 * 2 and csv[1].split(",")[1] == "file-0"


def requests_free_record(line):
    """A file's line is the API's record, field for field."""
    assert set(line) == {"time", "request_id", "model", "version", "protocol", "latency_ms", "inputs", "outputs"}
    return line
