"""The registry's upkeep: archives a killed push left unregistered are found and removed (by age, so a push in
progress elsewhere keeps its archive), and commands that only read never create a registry."""
import json
import os
import subprocess
import time

import pytest

from conftest import BINARY, ROOT
from registry_support import BACKENDS, Registry, pack, tern


def plant_orphan(reg, sha, age_seconds):
    """An archive as a push killed before registering it leaves one, `age_seconds` old."""
    folder = os.path.join(reg.data, "artifacts", sha[:2])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{sha}.tern")
    with open(path, "wb") as f:
        f.write(b"PK" + os.urandom(1000))
    then = time.time() - age_seconds
    os.utime(path, (then, then))
    return path


def test_gc_removes_old_unreferenced_archives_and_keeps_everything_else(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    kept = {m["sha256"] for m in json.loads(reg.cli("models", "show", "credit", "--json").stdout)["versions"]}
    old = plant_orphan(reg, "a" * 64, 7200)
    young = plant_orphan(reg, "b" * 64, 60)
    partial = os.path.join(os.path.dirname(old), "." + "a" * 64 + ".1234.partial")
    open(partial, "wb").write(b"half")
    os.utime(partial, (time.time() - 7200,) * 2)

    dry = json.loads(reg.cli("registry", "gc", "--dry-run", "--json").stdout)
    assert dry["artifacts"] == ["a" * 64] and dry["partials"] == 1 and os.path.exists(old)
    done = reg.cli("registry", "gc").stdout
    assert "removed 1 unreferenced archive(s) and 1 half-written file(s)" in done, done
    assert not os.path.exists(old) and not os.path.exists(partial)
    assert os.path.exists(young), "an archive younger than --min-age may belong to a push in progress"
    for sha in kept:
        assert os.path.exists(os.path.join(reg.data, "artifacts", sha[:2], f"{sha}.tern"))
    assert "removed 1" in reg.cli("registry", "gc", "--min-age", "0s").stdout and not os.path.exists(young)
    audit = json.loads(reg.cli("audit", "log", "--json").stdout)
    assert [e["action"] for e in audit].count("gc") == 2
    assert reg.cli("audit", "verify").returncode == 0


def test_a_server_removes_old_orphans_at_start(tmp_path):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    old = plant_orphan(reg, "c" * 64, 7200)
    server = reg.serve()
    try:
        assert not os.path.exists(old)
        assert "removed unreferenced archives" in server.output()
    finally:
        server.stop()


@pytest.mark.parametrize("command", [["models", "list"], ["audit", "log"], ["audit", "verify"], ["keys", "list"],
                                     ["models", "show", "credit"]])
def test_commands_that_only_read_never_create_a_registry(tmp_path, command):
    data = str(tmp_path / "nothing-here")
    result = subprocess.run([BINARY, *command, "--data", data], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode != 0
    assert f"there is no registry at {data}/registry.sqlite" in result.stderr, result.stderr
    assert not os.path.exists(data)
