"""HTTP/1.1 connection behaviour around the infer route, which is served inside the channel pipeline while
every other route goes through Hummingbird: pipelined requests answered in order, Connection: close,
oversized bodies, keep-alive across many requests."""
import json
import socket

import numpy as np

from conftest import golden

CASE = golden("logreg")[0]
ROWS = CASE["inputs"][0][2]


def infer_body(rows=ROWS):
    return json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": list(rows.shape),
                                   "data": rows.reshape(-1).tolist()}]}).encode()


def request(method, path, body=b"", extra=""):
    return (f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def read_responses(sock, count):
    """Reads `count` responses (Content-Length framed); returns (status, headers, body) for each."""
    data = b""
    answers = []
    sock.settimeout(10)
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} responses"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
        length = int(headers["content-length"])
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside a body"
            data += chunk
        answers.append((status, headers, data[:length]))
        data = data[length:]
    return answers


def probabilities(body):
    out = {o["name"]: o for o in json.loads(body)["outputs"]}["probabilities"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_pipelined_requests_are_answered_in_order(server):
    expected = CASE["outputs"][1][2] if CASE["outputs"][1][0] == "probabilities" else CASE["outputs"][0][2]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            request("POST", "/v2/models/logreg/infer", infer_body())
            + request("GET", "/v2/health/ready")
            + request("POST", "/v2/models/nope/infer", infer_body())
            + request("POST", "/v2/models/logreg/versions/1/infer", infer_body())
            + request("GET", "/v2/models/logreg")
            + request("POST", "/v2/models/logreg/infer", b"{not json"))
        answers = read_responses(sock, 6)
    assert [a[0] for a in answers] == [200, 200, 404, 200, 200, 400]
    np.testing.assert_allclose(probabilities(answers[0][2]), expected, rtol=1e-5)
    assert json.loads(answers[1][2]) == {"ready": True}
    assert "unknown model 'nope'" in json.loads(answers[2][2])["error"]
    np.testing.assert_allclose(probabilities(answers[3][2]), expected, rtol=1e-5)
    assert json.loads(answers[4][2])["name"] == "logreg"
    assert answers[5][1]["content-type"] == "application/json" and "error" in json.loads(answers[5][2])


def test_keep_alive_across_many_requests_and_connection_close(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        for _ in range(200):
            sock.sendall(request("POST", "/v2/models/logreg/infer", infer_body()))
            status, headers, _ = read_responses(sock, 1)[0]
            assert status == 200 and headers["content-type"] == "application/json"
        sock.sendall(request("POST", "/v2/models/logreg/infer", infer_body(), extra="Connection: close\r\n"))
        status, headers, _ = read_responses(sock, 1)[0]
        assert status == 200 and headers.get("connection") == "close"
        sock.settimeout(5)
        assert sock.recv(1) == b"", "the server kept the connection open after Connection: close"


def test_body_over_the_limit_is_refused_and_the_connection_closed(repository, tmp_path):
    from conftest import Server
    server = Server(repository, "--max-request-size", "1K")
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            big = infer_body(np.zeros((64, 10), dtype=np.float32))
            assert len(big) > 1024
            sock.sendall(request("POST", "/v2/models/logreg/infer", big))
            status, _, body = read_responses(sock, 1)[0]
            assert status == 413 and "larger than the limit of 1024 bytes" in json.loads(body)["error"]
            sock.settimeout(5)
            assert sock.recv(1) == b""
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request("POST", "/v2/models/logreg/infer", infer_body()))
            assert read_responses(sock, 1)[0][0] == 200
    finally:
        server.stop()


def test_pipelined_infer_requests_chain(server):
    """Several infer requests in one write: each waits for the one before, then is served in turn."""
    rows = [ROWS * (1 + i) for i in range(4)]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"".join(request("POST", "/v2/models/logreg/infer", infer_body(r)) for r in rows)
                     + request("GET", "/v2/health/live")
                     + request("POST", "/v2/models/logreg/infer", infer_body(rows[0])))
        answers = read_responses(sock, 6)
    assert [a[0] for a in answers] == [200] * 6
    import onnxruntime as ort
    from conftest import FIXTURES
    import os
    session = ort.InferenceSession(os.path.join(FIXTURES, "logreg", "model.onnx"))
    for r, answer in zip(rows + [None, rows[0]], answers):
        if r is None:
            assert json.loads(answer[2]) == {"live": True}
            continue
        np.testing.assert_allclose(probabilities(answer[2]), session.run(["probabilities"], {"features": r})[0], rtol=1e-5)


def test_an_answer_before_its_body_leaves_the_connection_idle_and_a_stop_drains_it(repository, tmp_path):
    """A route that answers without reading the body (a 404 here) may answer before the body arrives; the
    connection is idle once the body has come, so it keeps serving, and a stop closes it after the drain
    linger instead of waiting for an answer that already went (the drain then took its whole timeout)."""
    import time

    from conftest import Server
    server = Server(repository, "--drain-timeout", "20")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        body = b'{"x": 1}'
        sock.sendall(f"POST /no/such/route HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        assert read_responses(sock, 1)[0][0] == 404  # answered with the body still to come
        sock.sendall(body)
        time.sleep(0.3)
        sock.sendall(request("POST", "/v2/models/logreg/infer", infer_body()))  # the same connection serves on
        assert read_responses(sock, 1)[0][0] == 200
        sock.sendall(f"POST /no/such/route HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        assert read_responses(sock, 1)[0][0] == 404
        sock.sendall(body)
        time.sleep(0.3)
        started = time.monotonic()
        server.process.terminate()
        sock.settimeout(15)
        assert sock.recv(1) == b""  # closed by the drain, the client still holding it
        assert server.process.wait(timeout=15) == 0
        assert time.monotonic() - started < 15, "the stop waited for the drain timeout"
    server.log.close()
