#!/usr/bin/env python3
"""A long schemathesis run against a live server, as tests/test_openapi.py sets one up (a registry with two
models, a key holding every scope, alert rules, a batch folder), for the record in docs/security.md:

    .venv/bin/python tools/schemathesis-long.py [MINUTES]

Every check, the examples, coverage and fuzzing phases, until the time budget is spent; then the server must
still answer. Prints schemathesis's summary; exits non-zero on a finding.
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import requests  # noqa: E402
from registry_support import Registry, pack  # noqa: E402
from test_security import create_key  # noqa: E402

minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 30
tmp = tempfile.mkdtemp()
reg = Registry("sqlite", tmp)
reg.cli("push", pack(reg.tmp, "gbc", "credit", 1, "--reference", os.path.join(ROOT, "examples", "data", "credit-reference.csv"),
                     "--label-column", "default"))
reg.cli("push", pack(reg.tmp, "logreg", "other", 1))
reg.cli("models", "alias", "credit", "production", "1")
key = create_key(reg, "schemathesis", "infer,read,admin,metrics")
alerts = os.path.join(tmp, "alerts.yaml")
with open(alerts, "w") as f:
    f.write("rules:\n  - {name: errors, model: credit, metric: error_rate, threshold: 0.5}\n")
server = reg.serve("--alert-rules", alerts, "--batch-root", tmp)
# revokeKey aside: given time, it guesses the key's name and revokes it (with force=true), and every later
# request is a 401 (tests/test_openapi.py's short run covers it).
elsewhere = [flag for operation in ("vertexHealth", "azureHealth", "vertexPredict", "azureScore", "revokeKey")
             for flag in ("--exclude-operation-id", operation)]
try:
    result = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run", os.path.join(ROOT, "docs", "openapi.yaml"),
         "--url", f"http://{server.url}", "-H", f"Authorization: Bearer {key}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                     "response_schema_conformance,response_headers_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "100000", "--max-time", str(int(minutes * 60)),
         "--workers", "1", "--request-timeout", "30", "--no-color", *elsewhere],
        capture_output=True, text=True, cwd=ROOT)
    print(result.stdout[-6000:])
    print(result.stderr[-2000:], file=sys.stderr)
    alive = requests.get(f"http://{server.url}/v2/health/live", timeout=10).status_code == 200
    print("server alive after the run:", alive)
    sys.exit(0 if result.returncode == 0 and alive else 1)
finally:
    server.stop()
