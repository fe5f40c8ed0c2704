"""The README and docs/registry.md are a tested path: their command blocks are extracted from the Markdown
(not copied here) and run in order in a fresh folder, and every documented answer is compared with the real
one. A documented command that fails, or an answer that changed, fails this test.

How a block runs: shell blocks run line by line in bash (continuation lines joined) in a temporary folder
that links the project's `examples/`, with `tern` (and `.build/release/tern`) meaning the binary under test.
`tern serve` lines (with or without `&`) start a server in the background; the documented ports (8000 and
8001, and the platforms' 8080 and 5001) are mapped to free ones. A comment right after a command that holds
JSON (`# {...}`) is that command's expected answer; after a `curl`, a comment holding plain text is its
expected output line. Python blocks run with the test venv's interpreter, and a `print(...)` followed by a
`# [[...]]` comment must print those numbers.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import requests

from conftest import BINARY, ROOT, free_port

DOCUMENTED_PORTS = ["8000", "8001", "8080", "5001"]


def blocks(path):
    """(language, lines) of each fenced block of a Markdown file."""
    text = open(os.path.join(ROOT, path)).read()
    return [(m.group(1), m.group(2).splitlines()) for m in re.finditer(r"```(\w+)\n(.*?)```", text, re.S)]


def commands(lines):
    """(command, expected comment or None) pairs: continuation lines joined, prose comments dropped."""
    result, current, attached = [], "", False
    for line in lines:
        if current:
            current += "\n" + line
        elif line.startswith("#"):
            # Only the comment right under a command is its answer; after a blank line, comments are prose.
            if attached and result[-1][1] is None and line.startswith("# "):
                result[-1] = (result[-1][0], line[2:].strip())
            attached = False
            continue
        elif not line.strip():
            attached = False
            continue
        else:
            current = line
        code = strip_comment(current)
        if not code.rstrip().endswith("\\") and code.count("'") % 2 == 0:
            result.append((current, None))
            attached = True
            current = ""
    return result


def strip_comment(command):
    """The command without a trailing `# ...` comment (outside quotes)."""
    quoted = False
    for index, char in enumerate(command):
        if char == "'":
            quoted = not quoted
        elif char == "#" and not quoted and index > 0 and command[index - 1] == " ":
            return command[:index].rstrip()
    return command


def same_json(actual, expected, label):
    if isinstance(expected, float) or isinstance(actual, float):
        assert np.isclose(actual, expected, rtol=1e-5, atol=1e-7), f"{label}: {actual} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{label}: keys {actual} != {expected}"
        for key in expected:
            same_json(actual[key], expected[key], f"{label}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{label}: {actual} != {expected}"
        for index, (a, e) in enumerate(zip(actual, expected)):
            same_json(a, e, f"{label}[{index}]")
    else:
        assert actual == expected, f"{label}: {actual!r} != {expected!r}"


class Session:
    """A fresh folder, `tern` on PATH, documented ports mapped to free ones, servers started by the docs."""

    def __init__(self, tmp):
        self.folder = str(tmp)
        os.symlink(os.path.join(ROOT, "examples"), os.path.join(self.folder, "examples"))
        bin_folder = os.path.join(self.folder, "bin")
        os.makedirs(os.path.join(self.folder, ".build", "release"))
        os.makedirs(bin_folder)
        for link in (os.path.join(bin_folder, "tern"), os.path.join(self.folder, ".build", "release", "tern")):
            os.symlink(BINARY, link)
        self.ports = {port: str(free_port()) for port in DOCUMENTED_PORTS}
        self.env = {k: v for k, v in os.environ.items() if k not in ("TERN_DATA",)}
        self.env["PATH"] = bin_folder + os.pathsep + os.path.dirname(sys.executable) + os.pathsep + self.env["PATH"]
        self.servers = []

    def remap(self, text):
        for documented, real in self.ports.items():
            text = re.sub(rf"(?<=[:=]){documented}\b", real, text)
        return text

    def run(self, command, expected, label):
        command = self.remap(strip_comment(command))
        assignment = re.fullmatch(r"([A-Z_]+)=(\S+)", command.strip())
        if assignment:  # a variable later lines use (T=.build/release/tern)
            self.env[assignment.group(1)] = assignment.group(2)
            return ""
        if re.search(r"(^|\s)(\S*/)?tern serve\b|\$T serve\b", command):
            return self.serve(command, label)
        result = subprocess.run(["bash", "-c", command], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"{label}: `{command}` failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        if expected is None:
            return result.stdout
        if expected[:1] in "{[":
            same_json(json.loads(result.stdout), json.loads(expected), label)
        elif command.lstrip().startswith("curl"):
            assert result.stdout.strip() == expected, f"{label}: {result.stdout.strip()!r} != {expected!r}"
        return result.stdout

    def serve(self, command, label):
        command = command.rstrip().rstrip("&").rstrip()
        if "--http-port" not in command and "AIP_HTTP_PORT" not in command:
            port = self.ports["5001"] if "azureml" in command else self.ports["8000"]
            command += f" --http-port {port}"
        if "--grpc-port" not in command and "--platform" not in command:
            command += f" --grpc-port {self.ports['8001']}"
        port = re.search(r"--http-port (\d+)", command) or re.search(r"AIP_HTTP_PORT=(\d+)", command)
        for process, _ in self.servers:  # a documented server replaces the one before it on the same port
            if process.poll() is None and getattr(process, "port", None) == port.group(1):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        log = open(os.path.join(self.folder, f"server-{len(self.servers)}.log"), "w+")
        process = subprocess.Popen(["bash", "-c", command], cwd=self.folder, env=self.env, stdout=log,
                                   stderr=subprocess.STDOUT)
        process.port = port.group(1)
        self.servers.append((process, log))
        health = "/health" if "vertex" in command else "/" if "azureml" in command else "/v2/health/ready"
        deadline = time.time() + 30
        while time.time() < deadline:
            assert process.poll() is None, f"{label}: `{command}` exited:\n{open(log.name).read()}"
            try:
                if requests.get(f"http://127.0.0.1:{port.group(1)}{health}", timeout=1).status_code == 200:
                    return ""
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{label}: `{command}` did not become ready:\n{open(log.name).read()}")

    def python(self, lines, label):
        source = self.remap("\n".join(lines))
        number = r"-?\d+\.?\d*(?:e[-+]?\d+)?"
        expected = [[float(v) for v in re.findall(number, m.group(1))]
                    for m in re.finditer(r"print\(.*\)\s+# (\[.*\])", source)]
        result = subprocess.run([sys.executable, "-c", source], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"{label}: failed:\n{result.stderr}"
        printed = [line for line in result.stdout.splitlines() if line.strip()]
        assert len(printed) == len(expected), f"{label}: printed {printed}, documented {expected}"
        for line, numbers in zip(printed, expected):
            values = [float(v) for v in re.findall(number, line)]
            np.testing.assert_allclose(values, numbers, rtol=1e-5, err_msg=label)

    def close(self):
        for process, log in self.servers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            log.close()


@pytest.fixture
def session(tmp_path):
    session = Session(tmp_path)
    yield session
    session.close()


def run_file(session, path, skip=()):
    ran = 0
    found = blocks(path)
    for number, (language, lines) in enumerate(found):
        label = f"{path} block {number + 1}"
        if any(marker in "\n".join(lines) for marker in skip):
            continue
        if language == "bash":
            steps = commands(lines)
            # A json block right after a shell block is the answer of its last command.
            if number + 1 < len(found) and found[number + 1][0] == "json" and steps:
                steps[-1] = (steps[-1][0], "\n".join(found[number + 1][1]))
            for command, expected in steps:
                session.run(command, expected, label)
                ran += 1
        elif language == "python":
            session.python(lines, label)
            ran += 1
    return ran


def test_the_readme_runs_as_written(session):
    # The two commands themselves are what CI runs; everything after them is run here, in order.
    session.serve(f"{BINARY} serve --models examples/models", "README: scripts/serve-examples.sh")
    assert run_file(session, "README.md", skip=("scripts/serve-examples.sh", "models/\n  credit-risk/")) >= 20


def test_the_registry_guide_runs_as_written(session):
    assert run_file(session, "docs/registry.md") >= 10
