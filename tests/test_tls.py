"""TLS and mutual TLS on HTTP and gRPC with certificates made here (openssl): real clients (requests,
tritonclient over https and grpcs, the CLI with --ca-cert), plaintext to a TLS port, a client without a
certificate, and unreadable files at start."""
import os
import subprocess
import time

import numpy as np
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import BINARY, EXAMPLES, ROOT, free_port
from registry_support import Registry, pack

ROW = np.array([[41, 52000, 0.31, 4, 0, 0, 12000, 6.5, 8, 0.42]], dtype=np.float32)
BODY = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 10], "data": ROW.reshape(-1).tolist()}]}


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for localhost and 127.0.0.1, a client certificate, and a stranger's."""
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Tern test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext, ca in (("server", "server.ext", "ca"), ("renewed", "server.ext", "ca"), ("client", "client.ext", "ca")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={'scoring-app' if name == 'client' else 'localhost'}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", ext, cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "stranger.key", "-out", "stranger.pem",
            "-days", "2", "-subj", "/CN=stranger", cwd=d)
    return {p.stem + p.suffix: str(p) for p in d.iterdir()}


class TLSServer:
    def __init__(self, tmp_path, *args):
        self.port, self.grpc_port = free_port(), free_port()
        self.log = open(tmp_path / f"tls-{self.port}.log", "w+")
        self.process = subprocess.Popen(
            [BINARY, "serve", *args, "--host", "127.0.0.1", "--http-port", str(self.port), "--grpc-port", str(self.grpc_port)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=tmp_path)
        deadline = time.time() + 30
        while "serving" not in self.output():
            assert self.process.poll() is None and time.time() < deadline, self.output()
            time.sleep(0.05)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def test_https_and_grpcs_with_a_certificate(tmp_path, certs):
    server = TLSServer(tmp_path, "--models", EXAMPLES, "--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"])
    base = f"https://localhost:{server.port}"
    try:
        answer = requests.post(f"{base}/v2/models/credit-risk/infer", json=BODY, verify=certs["ca.pem"], timeout=10)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["name"] == "label"
        with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust the CA
            requests.get(f"{base}/v2/health/ready", timeout=10)
        # Plaintext to the TLS port: refused cleanly, no hang, and the server carries on.
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://localhost:{server.port}/v2/health/ready", timeout=10)
        http = httpclient.InferenceServerClient(f"localhost:{server.port}", ssl=True, ssl_options={"ca_certs": certs["ca.pem"]})
        tensor = httpclient.InferInput("features", [1, 10], "FP32")
        tensor.set_data_from_numpy(ROW, binary_data=True)
        https_label = http.infer("credit-risk", [tensor]).as_numpy("label")
        grpcs = grpcclient.InferenceServerClient(f"localhost:{server.grpc_port}", ssl=True,
                                                 root_certificates=certs["ca.pem"])
        tensor = grpcclient.InferInput("features", [1, 10], "FP32")
        tensor.set_data_from_numpy(ROW)
        assert grpcs.is_server_ready()
        assert (grpcs.infer("credit-risk", [tensor]).as_numpy("label") == https_label).all()
        plain = grpcclient.InferenceServerClient(f"localhost:{server.grpc_port}")
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=5)
        assert requests.get(f"{base}/v2/health/live", verify=certs["ca.pem"], timeout=10).status_code == 200
    finally:
        server.stop()


def test_mutual_tls_needs_a_client_certificate_the_ca_signed(tmp_path, certs):
    server = TLSServer(tmp_path, "--models", EXAMPLES, "--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
                       "--tls-client-ca", certs["ca.pem"])
    base = f"https://localhost:{server.port}"
    try:
        ok = requests.post(f"{base}/v2/models/credit-risk/infer", json=BODY, verify=certs["ca.pem"], timeout=10,
                           cert=(certs["client.pem"], certs["client.key"]))
        assert ok.status_code == 200
        for cert in (None, (certs["stranger.pem"], certs["stranger.key"])):
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.post(f"{base}/v2/models/credit-risk/infer", json=BODY, verify=certs["ca.pem"], timeout=10, cert=cert)
        tensor = grpcclient.InferInput("features", [1, 10], "FP32")
        tensor.set_data_from_numpy(ROW)
        signed = grpcclient.InferenceServerClient(
            f"localhost:{server.grpc_port}", ssl=True, root_certificates=certs["ca.pem"],
            private_key=certs["client.key"], certificate_chain=certs["client.pem"])
        assert signed.infer("credit-risk", [tensor]).as_numpy("label").shape == (1,)
        anonymous = grpcclient.InferenceServerClient(f"localhost:{server.grpc_port}", ssl=True, root_certificates=certs["ca.pem"])
        with pytest.raises(InferenceServerException):
            anonymous.infer("credit-risk", [tensor], client_timeout=5)
    finally:
        server.stop()


def test_the_cli_speaks_https_with_a_ca_option(tmp_path, certs):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    server = TLSServer(tmp_path, *reg.args, "--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"])
    try:
        url = f"https://localhost:{server.port}"
        listed = subprocess.run([BINARY, "models", "list", "--server", url, "--ca-cert", certs["ca.pem"]],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert listed.returncode == 0 and "credit" in listed.stdout, listed.stderr
        untrusted = subprocess.run([BINARY, "models", "list", "--server", url], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert untrusted.returncode != 0 and "cannot reach" in untrusted.stderr, untrusted.stderr
        assert "--ca-cert" in untrusted.stderr and len(untrusted.stderr.strip().splitlines()) == 1, untrusted.stderr
    finally:
        server.stop()


@pytest.mark.parametrize("flags, message", [
    (["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"],
     "cannot read the TLS certificate /nonexistent.pem (--tls-cert): no such readable file"),
    (["--tls-cert", "KEY_AS_CERT", "--tls-key", "SERVER_KEY"], "(--tls-cert): not PEM"),
    (["--tls-cert", "SERVER_CERT", "--tls-key", "STRANGER_KEY"], "cannot be used together"),
    (["--tls-cert", "SERVER_CERT"], "give --tls-cert and --tls-key together"),
])
def test_unusable_tls_files_fail_at_start_in_one_line(tmp_path, certs, flags, message):
    names = {"KEY_AS_CERT": certs["server.key"], "SERVER_KEY": certs["server.key"], "SERVER_CERT": certs["server.pem"],
             "STRANGER_KEY": certs["stranger.key"]}
    flags = [names.get(f, f) for f in flags]
    result = subprocess.run([BINARY, "serve", "--models", EXAMPLES, "--host", "127.0.0.1", "--http-port", str(free_port()),
                             "--grpc-port", str(free_port()), *flags], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert any(message in line for line in lines[-3:]) and len(lines) <= 3, lines
    assert not any("serving" in line for line in lines)


def served_certificate(port, ca, alpn=None):
    """The DER of the certificate a fresh TLS handshake with 127.0.0.1:port presents."""
    import socket
    import ssl
    context = ssl.create_default_context(cafile=ca)
    if alpn:
        context.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def test_sighup_reloads_the_certificate_for_new_connections(tmp_path, certs):
    import shutil
    import signal
    import ssl
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(certs["server.pem"], cert)
    shutil.copy(certs["server.key"], key)
    der = {name: ssl.PEM_cert_to_DER_cert(open(certs[f"{name}.pem"]).read()) for name in ("server", "renewed")}
    server = TLSServer(tmp_path, "--models", EXAMPLES, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert served_certificate(server.port, certs["ca.pem"]) == der["server"]
        assert served_certificate(server.grpc_port, certs["ca.pem"], ["h2"]) == der["server"]
        shutil.copy(certs["renewed.pem"], cert)
        shutil.copy(certs["renewed.key"], key)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while "TLS certificate reloaded" not in server.output():
            assert time.time() < deadline, server.output()
            time.sleep(0.05)
        assert served_certificate(server.port, certs["ca.pem"]) == der["renewed"]
        assert served_certificate(server.grpc_port, certs["ca.pem"], ["h2"]) == der["renewed"]
        # A broken file is refused and the last good pair kept.
        cert.write_text("not a certificate")
        server.process.send_signal(signal.SIGHUP)
        while "TLS certificate not reloaded; serving the previous one" not in server.output():
            assert time.time() < deadline + 10, server.output()
            time.sleep(0.05)
        assert served_certificate(server.port, certs["ca.pem"]) == der["renewed"]
        answer = requests.post(f"https://localhost:{server.port}/v2/models/credit-risk/infer", json=BODY,
                               verify=certs["ca.pem"], timeout=10)
        assert answer.status_code == 200 and server.process.poll() is None
    finally:
        server.stop()


def test_mutual_tls_without_keys_is_authenticated_and_listens_beyond_loopback(tmp_path, certs):
    """A client certificate the CA signed is a credential: such a server is not an open one, so it does not
    keep to loopback (a server with neither keys nor client certificates does)."""
    port, grpc_port = free_port(), free_port()
    log = open(tmp_path / "mtls.log", "w+")
    process = subprocess.Popen(
        [BINARY, "serve", "--models", EXAMPLES, "--tls-cert", certs["server.pem"], "--tls-key", certs["server.key"],
         "--tls-client-ca", certs["ca.pem"], "--http-port", str(port), "--grpc-port", str(grpc_port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.time() + 30
        while "serving" not in (log.seek(0) or log.read()):
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.05)
        log.seek(0)
        text = log.read()
        assert f"http=0.0.0.0:{port}" in text and "listening on loopback only" not in text, text
    finally:
        process.terminate()
        process.wait(timeout=30)
