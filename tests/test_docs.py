"""The README and every guide in docs/ are a tested path: their command blocks are extracted from the Markdown
(not copied here) and run in order in a fresh folder, and every documented answer is compared with the real
one. A documented command that fails, or an answer that changed, fails this test.

A guide runs in a folder where `docs/fixtures.sh` has made the input files the guides use (customers.csv,
TLS certificates, ...). A block that needs what a test machine does not have (a Kubernetes cluster, a
container engine's registry, your identity provider, minutes of benchmark) is marked with
`<!-- docs-test: syntax-only: why -->` right above it: bash parses it, and every `tern` command in it
names a real subcommand and only flags that subcommand's --help lists.

How a block runs: shell blocks run line by line in bash (continuation lines joined) in a temporary folder
that links the project's `examples/`, with `tern` (and `.build/release/tern`) meaning the binary under test.
`tern serve` lines (with or without `&`) start a server in the background; the documented ports (8000 and
8001, and the platforms' 8080 and 5001) are mapped to free ones. A comment right after a command that holds
JSON (`# {...}`) is that command's expected answer; after a `curl`, a comment holding plain text is its
expected output line (after a `tern` command too; `...` stands for anything). `console` and `text`
blocks whose lines start with `$ ` run those commands, and the lines under each are its expected output,
line by line in order (whitespace aside, `...` standing for anything). Python blocks run with the test venv's interpreter, and a `print(...)` followed by a
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


FENCE = re.compile(r"(?:<!--\s*docs-test:\s*(?P<marker>[^>]*?)\s*-->\s*\n)?```(?P<language>\w*)\n(?P<body>.*?)```", re.S)
SHELL = ("bash", "sh", "shell")


def blocks(path, markers=False):
    """(language, lines) of each fenced block of a Markdown file (and its docs-test marker, with markers)."""
    text = open(os.path.join(ROOT, path)).read()
    found = [(m.group("language"), m.group("body").splitlines(), m.group("marker")) for m in FENCE.finditer(text)]
    return found if markers else [(language, lines) for language, lines, _ in found]


def console_commands(lines):
    """(command, expected output lines) of a console block: `$ ` lines (and their continuations), then output."""
    result, current = [], None
    for line in lines:
        if current is not None:
            current += "\n" + line
        elif line.startswith("$ "):
            current = line[2:]
        elif result:
            result[-1][1].append(line)
            continue
        else:
            continue
        code = strip_comment(current)
        if not code.rstrip().endswith("\\") and code.count("'") % 2 == 0:
            result.append((current, []))
            current = None
    return result


def squeeze(text):
    return re.sub(r"\s+", "", text)


def pattern(expected):
    """A documented output line as a regular expression: whitespace aside, `...` standing for anything."""
    return re.compile(".*?".join(re.escape(part) for part in squeeze(expected).split("...")))


def same_text(actual, expected, label):
    """Every documented line appears in the output, in order (a documented JSON answer is one line, however
    it is wrapped in the docs)."""
    expected = [line for line in expected if line.strip()]
    if expected and expected[0].lstrip()[:1] in "{[":
        expected = [" ".join(expected)]
        lines = [squeeze(actual)]
    else:
        lines = [squeeze(line) for line in actual.splitlines()]
    position = 0
    for line in expected:
        wanted = pattern(line)
        while position < len(lines) and not wanted.fullmatch(lines[position]):
            position += 1
        assert position < len(lines), f"{label}: {line!r} is not in the output (in order):\n{actual}"
        position += 1


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
        for shared in ("examples", "Tests"):  # the project folder's, as a reader running the docs has them
            os.symlink(os.path.join(ROOT, shared), os.path.join(self.folder, shared))
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
        assignment = re.fullmatch(r"([A-Z_]+)=(\$\(.*\)|\S+)", command.strip(), re.S)
        if assignment:  # a variable later lines use (T=.build/release/tern, JOB=$(curl ...))
            name = assignment.group(1)
            result = subprocess.run(["bash", "-c", f'{command.strip()}\nprintf %s "${name}"'], cwd=self.folder,
                                    env=self.env, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, f"{label}: `{command}` failed:\n{result.stderr}"
            self.env[name] = result.stdout
            return ""
        if re.search(r"(^|\s)(\S*/)?tern serve\b|\$T serve\b", command):
            return self.serve(command, label)
        result = subprocess.run(["bash", "-c", command], cwd=self.folder, env=self.env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, f"{label}: `{command}` failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        if expected is None:
            return result.stdout
        if expected[:1] in "{[" and "..." in expected:  # an answer shown in part
            same_text(result.stdout, expected.splitlines(), label)
        elif expected[:1] in "{[":
            same_json(json.loads(result.stdout), json.loads(expected), label)
        elif command.lstrip().startswith("curl"):
            assert result.stdout.strip() == expected, f"{label}: {result.stdout.strip()!r} != {expected!r}"
        elif re.match(r"((\S*/)?tern|\$T)\b", command.lstrip()):
            same_text(result.stdout + result.stderr, [expected], label)
        return result.stdout

    def console(self, command, expected, label):
        """A `$ command` of a console block: it runs, and the lines under it are in what it printed."""
        command = self.remap(strip_comment(command))
        if re.search(r"(^|\s|&& )(\S*/)?tern serve\b", command):
            head, _, _ = command.rpartition("tern serve")
            if head.strip():  # `tern push X && tern serve ... &`: the part before the server, then the server
                self.run(head.rstrip().removesuffix("&&"), None, label)
            return self.serve("tern serve" + command.rpartition("tern serve")[2], label)
        result = subprocess.run(["bash", "-c", command], cwd=self.folder, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=600)  # as a terminal shows both
        assert result.returncode == 0, f"{label}: `{command}` failed ({result.returncode}):\n{result.stdout}"
        same_text(result.stdout, expected, label)

    def syntax(self, lines, label):
        """A block the tests cannot run: bash parses it, and each `tern` command names a real subcommand and
        only the flags its --help lists."""
        source = "\n".join(lines)
        result = subprocess.run(["bash", "-n"], input=source, capture_output=True, text=True)
        assert result.returncode == 0, f"{label}: bash cannot parse it:\n{result.stderr}"
        for command, _ in commands(lines):
            for segment in re.split(r"\s(?:\||&&|;)\s", strip_comment(command)):
                words = segment.replace("\\\n", " ").split()
                while words and "=" in words[0]:
                    words.pop(0)  # PORT=8080 tern serve
                if not words or not re.fullmatch(r"(\S*/)?tern", words[0]):
                    continue
                path, help_text = [], subprocess.run([BINARY, "--help"], capture_output=True, text=True).stdout
                for word in words[1:]:
                    listed = help_text.partition("SUBCOMMANDS:")[2]  # the subcommands this level lists
                    if not re.search(rf"^\s+{re.escape(word)}(\s|$)", listed, re.M):
                        break
                    path.append(word)
                    help_text = subprocess.run([BINARY, *path, "--help"], capture_output=True, text=True).stdout
                assert path, f"{label}: `{segment}` names no tern subcommand"
                for flag in re.findall(r"(?<!\S)(--[a-z][a-z0-9-]*)", segment):
                    assert re.search(rf"{flag}\b", help_text), f"{label}: `tern {' '.join(path)}` has no {flag}"

    def share_converter(self, converter_data):
        """The pickle converter's Python environment, set up once for the test run, where `tern pack
        model.joblib` looks for it (.tern/data/python)."""
        os.makedirs(os.path.join(self.folder, ".tern", "data"), exist_ok=True)
        os.symlink(os.path.join(converter_data, "python"), os.path.join(self.folder, ".tern", "data", "python"))

    def fixtures(self):
        """The input files the guides use, made by the script beside them."""
        result = subprocess.run(["bash", os.path.join(ROOT, "docs", "fixtures.sh")], cwd=self.folder, env=self.env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"docs/fixtures.sh failed:\n{result.stderr}{result.stdout}"

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
            if " ready models=" in open(log.name).read():  # also under TLS, where the probe below cannot look
                return ""
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
    found = blocks(path, markers=True)
    for number, (language, lines, marker) in enumerate(found):
        label = f"{path} block {number + 1}"
        if any(marker in "\n".join(lines) for marker in skip):
            continue
        if marker:
            assert marker.startswith("syntax-only:"), f"{label}: unknown docs-test marker {marker!r}"
            if language in SHELL + ("console",):
                session.syntax([c for c, _ in console_commands(lines)] if language == "console" else lines, label)
                ran += 1
            continue
        if language in ("console", "text"):
            for command, expected in console_commands(lines):
                session.console(command, expected, label)
                ran += 1
        if language in SHELL:
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


def test_the_readme_runs_as_written(session, converter_data):
    # The two commands themselves are what CI runs; everything after them is run here, in order.
    session.fixtures()
    session.share_converter(converter_data)
    session.serve(f"{BINARY} serve --models examples/models", "README: scripts/serve-examples.sh")
    assert run_file(session, "README.md", skip=("scripts/serve-examples.sh", "models/\n  credit-risk/")) >= 20


GUIDES = sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))


@pytest.mark.parametrize("guide", GUIDES)
def test_the_guide_runs_as_written(session, guide, converter_data):
    session.fixtures()
    session.share_converter(converter_data)
    shell = [language for language, _ in blocks(guide) if language in SHELL + ("console",)]
    ran = run_file(session, guide)
    assert ran >= len(shell), f"{guide}: {ran} commands ran for {len(shell)} shell blocks"


def test_a_block_checked_for_syntax_only_still_fails_on_a_wrong_command(session):
    session.syntax(["tern serve --models /models --http-port 8080   # a comment"], "probe")
    with pytest.raises(AssertionError, match="has no --no-such-flag"):
        session.syntax(["PORT=8080 tern serve --models /models --no-such-flag"], "probe")
    with pytest.raises(AssertionError, match="names no tern subcommand"):
        session.syntax(["tern frobnicate --all"], "probe")
    with pytest.raises(AssertionError, match="bash cannot parse"):
        session.syntax(["tern serve --models 'examples"], "probe")


def test_shown_output_is_compared_line_by_line_in_order():
    same_text("a  1\nb 2\nwrote x.tern (12 bytes, sha256 ab)\n", ["a 1", "wrote x.tern (... bytes, sha256 ...)"], "probe")
    with pytest.raises(AssertionError):
        same_text("a 1\nb 2\n", ["b 2", "a 1"], "probe")  # out of order
    with pytest.raises(AssertionError):
        same_text("reference: 700 rows; 1 of 23 columns drifted\n", ["reference: 700 rows; 0 of 23 columns drifted"], "probe")
