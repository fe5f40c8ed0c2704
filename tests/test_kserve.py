"""kserve's v2 REST and gRPC clients against a live tern serve (each in its own process; see kserve_clients.py)."""
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kserve_clients.py")


@pytest.mark.parametrize("mode,cases", [("rest", 16), ("grpc", 8)])
def test_kserve_client(server, mode, cases):
    address = f"http://{server.url}" if mode == "rest" else server.grpc_url
    result = subprocess.run([sys.executable, SCRIPT, mode, address], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"kserve {mode}: {cases} cases match" in result.stdout
