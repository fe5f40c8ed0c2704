"""The prediction log encrypted at rest (--prediction-log-key): what a model was asked is unreadable in the
database and in JSON Lines files, readable through the API, the CLI, drift and feedback with the key, and
keys rotate (the first key of the file seals, every key opens)."""
import base64
import json
import os
import sqlite3
import struct
import subprocess
import time
import zlib

import numpy as np
import pytest
import requests

from conftest import BINARY, ROOT
from registry_support import Registry, pack

INCOME = 52345.25  # exact in FP32, and unlikely to appear in a file by chance


def key_file(path, *ids):
    path.write_text("".join(f"{i} {base64.b64encode(os.urandom(32)).decode()}\n" for i in ids))
    path.chmod(0o600)
    return path


def infer(server, request_id):
    row = [41, INCOME, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]
    answer = requests.post(f"http://{server.url}/v2/models/credit/infer", headers={"X-Request-ID": request_id}, timeout=10,
                           json={"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": row}]})
    assert answer.status_code == 200, answer.text


def logged(server, request_id):
    deadline = time.time() + 10
    while True:
        answer = requests.get(f"http://{server.url}/api/v1/predictions/{request_id}", timeout=10)
        if answer.status_code == 200:
            return answer.json()["predictions"][0]
        assert time.time() < deadline, answer.text
        time.sleep(0.1)


def sealed_with(database):
    """The key id each block of the log is sealed with, oldest first: a sealed block is its format (2), the
    key id (its length, then the id), then AES-GCM's nonce, ciphertext and tag, which zlib cannot read."""
    ids = []
    with sqlite3.connect(database) as db:
        for (block,) in db.execute("SELECT data FROM tern_prediction_blocks ORDER BY id"):
            assert block[0] == 2, "a block is not sealed"
            ids.append(block[2:2 + block[1]].decode())
            with pytest.raises(zlib.error):
                zlib.decompress(block[2 + block[1]:])
    return ids


def test_a_log_without_a_key_holds_the_values_deflated(tmp_path):
    """The control for the test below: without a key a block inflates, and the income is in it."""
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1), "--alias", "production")
    server = reg.serve()
    try:
        infer(server, "loan-0")
        logged(server, "loan-0")
    finally:
        server.stop()
    with sqlite3.connect(os.path.join(reg.data, "predictions.sqlite")) as db:
        (block,) = db.execute("SELECT data FROM tern_prediction_blocks").fetchone()
    end = 1
    while block[end] & 0x80:
        end += 1
    assert block[0] == 1 and struct.pack("<f", INCOME) in zlib.decompress(block[end + 1:])


def test_records_are_sealed_at_rest_and_open_with_the_key(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1), "--alias", "production")
    keys = key_file(tmp_path / "log.keys", "k1")
    server = reg.serve("--prediction-log-key", str(keys))
    try:
        infer(server, "loan-1")
        record = logged(server, "loan-1")
        assert INCOME in record["inputs"][0].values(), record
        assert requests.post(f"http://{server.url}/api/v1/feedback", json=[{"request_id": "loan-1", "label": 1}],
                             timeout=10).json()["accepted"] == 1
        assert requests.get(f"http://{server.url}/api/v1/models/credit/performance", timeout=10).status_code == 200
    finally:
        server.stop()
    database = os.path.join(reg.data, "predictions.sqlite")
    assert sealed_with(database) == ["k1"]
    for name in os.listdir(reg.data):
        if name.startswith("predictions.sqlite"):
            assert struct.pack("<f", INCOME) not in open(os.path.join(reg.data, name), "rb").read(), name
    # The CLI reads it with the key, and says what is missing without it.
    shown = subprocess.run([BINARY, "predictions", "show", "loan-1", "--data", reg.data, "--prediction-log-key", str(keys)],
                           capture_output=True, text=True, cwd=ROOT)
    assert shown.returncode == 0 and str(INCOME) in shown.stdout, shown.stderr
    bare = subprocess.run([BINARY, "predictions", "show", "loan-1", "--data", reg.data], capture_output=True, text=True, cwd=ROOT)
    assert bare.returncode != 0 and "encrypted: give the key file (--prediction-log-key)" in bare.stderr, bare.stderr

    # Rotation: a new key first seals new records; the old one, kept second, still opens the old ones.
    rotated = tmp_path / "rotated.keys"
    rotated.write_text(key_file(tmp_path / "k2.keys", "k2").read_text() + keys.read_text())
    rotated.chmod(0o600)
    server = reg.serve("--prediction-log-key", str(rotated))
    try:
        infer(server, "loan-2")
        assert INCOME in logged(server, "loan-2")["inputs"][0].values()
        assert INCOME in logged(server, "loan-1")["inputs"][0].values()
    finally:
        server.stop()
    assert sealed_with(database) == ["k1", "k2"]
    # A key file without k1 names the key it lacks.
    only_new = subprocess.run([BINARY, "predictions", "show", "loan-1", "--data", reg.data, "--prediction-log-key",
                               str(tmp_path / "k2.keys")], capture_output=True, text=True, cwd=ROOT)
    assert only_new.returncode != 0 and "encrypted with key 'k1', which the key file does not hold" in only_new.stderr


def test_json_lines_files_are_sealed_too(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1), "--alias", "production")
    keys = key_file(tmp_path / "log.keys", "k1")
    folder = tmp_path / "jsonl"
    server = reg.serve("--prediction-log", f"jsonl:{folder}", "--prediction-log-key", str(keys))
    try:
        infer(server, "loan-9")
        assert INCOME in logged(server, "loan-9")["inputs"][0].values()
    finally:
        server.stop()
    text = "".join(open(folder / name).read() for name in os.listdir(folder))
    line = json.loads(text.splitlines()[0])
    assert line["inputs"].startswith("enc:v1:k1:") and str(INCOME) not in text


def test_a_bad_key_file_stops_the_start_in_one_line(tmp_path):
    bad = tmp_path / "bad.keys"
    bad.write_text("k1 not-base64\n")
    bad.chmod(0o600)
    result = subprocess.run([BINARY, "serve", "--data", str(tmp_path / "data"), "--create", "--prediction-log-key", str(bad)],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode != 0 and "line 1: expected '<key id> <base64 of 32 random bytes>'" in result.stderr, result.stderr


def test_a_key_file_other_users_may_read_is_refused_and_the_log_is_private(tmp_path):
    keys = key_file(tmp_path / "open.keys", "k1")
    keys.chmod(0o644)
    result = subprocess.run([BINARY, "serve", "--data", str(tmp_path / "data"), "--create", "--prediction-log-key", str(keys)],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode != 0 and "may be read by other users (mode 644): chmod 600" in result.stderr, result.stderr
    # The log's own files are the owner's alone.
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "logreg", "credit", 1))
    server = reg.serve()
    try:
        infer(server, "private-1")
        path = os.path.join(reg.data, "predictions.sqlite")
        deadline = time.time() + 10
        while not os.path.exists(path):
            assert time.time() < deadline
            time.sleep(0.1)
        assert os.stat(path).st_mode & 0o777 == 0o600, oct(os.stat(path).st_mode)
    finally:
        server.stop()
