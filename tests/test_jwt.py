"""Bearer tokens (JWTs) against a live `tern serve`: an OpenID Connect issuer the test serves over HTTP
(discovery document and JWKS), tokens made with PyJWT (RS256, ES256, EdDSA), every route and RPC walked with
them, and every way a token must be refused: expired, not yet valid, another audience or issuer, unsigned,
signed with another key, algorithm confusion, a key the issuer withdrew (revocation by rotation)."""
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import tritonclient.grpc as grpcclient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from conftest import BINARY, FIXTURES, ROOT, free_port
from registry_support import Registry, pack
from test_security import (LACKING, call, create_key, grpc_input, grpc_status, infer_body, walk_routes,
                           walk_rpcs)

AUDIENCE = "tern-test"


class Issuer:
    """An identity provider as far as Tern sees one: a discovery document and a JWKS served over HTTP, the
    keys it signs with, and the ones it publishes (which the test changes to rotate or withdraw keys)."""

    def __init__(self):
        self.keys = {
            "rsa-1": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
            "ec-1": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
            "ed-1": (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
        }
        self.published = set(self.keys)
        self.jwks_reads = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/keys"}
                elif self.path == "/keys":
                    issuer.jwks_reads += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_key(self, kid):
        self.keys[kid] = (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")
        self.published.add(kid)

    def jwks(self):
        keys = []
        for kid in sorted(self.published):
            private, algorithm = self.keys[kid]
            jwk = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(private.public_key()))
            jwk.update(kid=kid, use="sig")
            if kid != "ec-1":  # one key without "alg": Tern infers it from the key's kind and curve
                jwk["alg"] = algorithm
            keys.append(jwk)
        # An encryption key, which a verifier must skip.
        keys.append({"kty": "RSA", "use": "enc", "kid": "enc-1", "n": next(k["n"] for k in keys if "n" in k), "e": "AQAB"})
        return {"keys": keys}

    def token(self, scopes="infer", kid="rsa-1", subject="alice", lifetime=300, key=None, headers=None, **claims):
        private, algorithm = self.keys[kid]
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + lifetime, "scope": scopes}
        payload.update(claims)
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, key or private, algorithm=algorithm,
                          headers={"kid": kid, **(headers or {})})

    def stop(self):
        self.server.shutdown()


@pytest.fixture()
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.stop()


@pytest.fixture()
def served(tmp_path, issuer):
    """A registry with two models, served with the issuer's tokens (and one API key beside them)."""
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 2))
    reg.cli("push", pack(reg.tmp, "logreg", "other", 1))
    reg.cli("models", "alias", "credit", "production", "2")
    key = create_key(reg, "robot", "infer")
    server = reg.serve("--jwt-issuer", issuer.url, "--jwt-audience", AUDIENCE, "--metrics-auth")
    yield reg, server, key
    server.stop()


def status(server, token, path="/v2/models/credit/infer"):
    answer = call(server, "POST", path, token, json=infer_body())
    return answer.status_code, answer.json().get("error", "")


def scoped_tokens(issuer):
    """A token per scope, signed with each algorithm the issuer uses, scope names plain and namespaced."""
    tokens = {
        "infer": issuer.token("tern:infer", kid="ec-1"),
        "read": issuer.token("read openid profile", kid="ed-1"),
        "admin": issuer.token("tern.admin"),
        "metrics": issuer.token("metrics"),
    }
    assert set(tokens) == set(LACKING)
    return tokens


def test_every_route_takes_tokens_with_their_scopes(served, issuer):
    walk_routes(served[1], scoped_tokens(issuer))


def test_every_rpc_takes_tokens_with_their_scopes(served, issuer):
    walk_rpcs(served[1], scoped_tokens(issuer))


def test_tokens_and_api_keys_work_side_by_side(served, issuer):
    _, server, key = served
    assert status(server, key)[0] == 200
    assert status(server, issuer.token())[0] == 200
    assert status(server, issuer.token(kid="ed-1"))[0] == 200
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert grpc_status(lambda: client.infer("credit", [grpc_input()], headers={"authorization": f"Bearer {issuer.token()}"})) == "OK"


@pytest.mark.parametrize("case", [
    "expired", "not-yet-valid", "no-expiry", "other-audience", "other-issuer", "unsigned", "other-key",
    "algorithm-confusion", "edited-claims", "unknown-kid", "garbage",
])
def test_bad_tokens_are_refused_saying_why(served, issuer, case):
    _, server, _ = served
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = issuer.keys["rsa-1"][0].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    tokens = {
        # Past the 60 s clock skew the server allows.
        "expired": (issuer.token(lifetime=-120), "expired"),
        "not-yet-valid": (issuer.token(nbf=int(time.time()) + 600), "not valid before"),
        "no-expiry": (issuer.token(exp=None), "no expiry"),
        "other-audience": (issuer.token(aud="another-service"), "is for 'another-service'"),
        "other-issuer": (issuer.token(iss="https://evil.example.com"), "issuer"),
        "unsigned": (jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "exp": int(time.time()) + 300, "scope": "infer"},
                                None, algorithm="none", headers={"kid": "rsa-1"}), "unsigned"),
        "other-key": (issuer.token(key=stranger), "signature"),
        # The issuer's public key used as an HMAC secret: a verifier that trusts the token's "alg" accepts it.
        "algorithm-confusion": (hmac_token({"iss": issuer.url, "aud": AUDIENCE, "exp": int(time.time()) + 300, "scope": "infer"},
                                           public_pem), "HS256"),
        "edited-claims": (edit(issuer.token("read"), scope="admin infer"), "signature"),
        "unknown-kid": (issuer.token(key=stranger, headers={"kid": "nobody"}), "'nobody'"),
        "garbage": ("not.a.token", "neither"),
    }
    token, why = tokens[case]
    code, error = status(server, token)
    assert code == 401, (case, code, error)
    assert "bearer token refused" in error or "neither" in error, error
    assert why in error, (case, error)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    assert grpc_status(lambda: client.infer("credit", [grpc_input()], headers={"authorization": f"Bearer {token}"})) == "UNAUTHENTICATED"


def hmac_token(claims, secret):
    """HS256 by hand: PyJWT rightly refuses to use a public key as an HMAC secret."""
    encode = lambda data: jwt.utils.base64url_encode(json.dumps(data).encode()).decode()
    signed = encode({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}) + "." + encode(claims)
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return signed + "." + jwt.utils.base64url_encode(signature).decode()


def edit(token, **claims):
    """The token with its claims changed and its signature kept."""
    header, payload, signature = token.split(".")
    decoded = json.loads(jwt.utils.base64url_decode(payload))
    decoded.update(claims)
    return ".".join([header, jwt.utils.base64url_encode(json.dumps(decoded).encode()).decode(), signature])


def test_model_grants_and_audit_identity_come_from_the_token(served, issuer):
    reg, server, _ = served
    limited = issuer.token("infer read admin", subject="credit-team", tern_models=["credit"])
    assert status(server, limited)[0] == 200
    code, error = status(server, limited, "/v2/models/other/infer")
    assert code == 403 and "token:credit-team may not use model 'other'" in error, error
    assert call(server, "GET", "/api/v1/models", limited).status_code == 403
    # A comma-separated string works too.
    both = issuer.token("infer", tern_models="credit,other")
    assert status(server, both, "/v2/models/other/infer")[0] == 200
    moved = call(server, "PUT", "/api/v1/models/credit/aliases/staging", limited, json={"version": 1})
    assert moved.status_code == 200, moved.text
    audit = call(server, "GET", "/api/v1/audit?model=credit", issuer.token("read")).json()
    assert audit[-1]["action"] == "alias" and audit[-1]["actor"] == "token:credit-team", audit[-1]


def test_rotated_keys_are_read_at_once_and_withdrawn_keys_revoke_their_tokens(served, issuer):
    _, server, _ = served
    old = issuer.token()
    assert status(server, old)[0] == 200
    # The issuer rotates: a new key signs, the old one is withdrawn.
    issuer.add_key("rsa-2")
    issuer.published.discard("rsa-1")
    reads = issuer.jwks_reads
    fresh = issuer.token(kid="rsa-2")
    deadline = time.time() + 10
    while (answer := status(server, fresh))[0] != 200:
        assert answer[0] == 401 and "rsa-2" in answer[1], answer
        assert time.time() < deadline, "a token signed with a rotated-in key was not accepted within 10 s"
        time.sleep(0.1)
    assert issuer.jwks_reads > reads
    code, error = status(server, old)
    assert code == 401 and "'rsa-1'" in error, error


def test_issuer_misconfiguration_stops_the_start_with_one_clear_line(tmp_path, issuer):
    (tmp_path / "models" / "credit" / "1").mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, "gbc", "model.onnx"), tmp_path / "models" / "credit" / "1" / "model.onnx")

    def start(*flags):
        port = free_port()
        return subprocess.run([BINARY, "serve", "--models", str(tmp_path / "models"), "--http-port", str(port), "--no-grpc", *flags],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    no_audience = start("--jwt-issuer", issuer.url)
    assert no_audience.returncode != 0 and "--jwt-audience" in no_audience.stderr, no_audience.stderr
    unreachable = f"http://127.0.0.1:{free_port()}"
    down = start("--jwt-issuer", unreachable, "--jwt-audience", AUDIENCE)
    assert down.returncode != 0 and unreachable in down.stderr, down.stderr + down.stdout
    empty = tmp_path / "empty.json"
    empty.write_text('{"keys": []}')
    none = start("--jwt-jwks", str(empty), "--jwt-audience", AUDIENCE)
    assert none.returncode != 0 and "holds no signing key" in none.stderr, none.stderr + none.stdout


def test_a_jwks_file_works_without_discovery(tmp_path, issuer):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))
    server = reg.serve("--jwt-jwks", str(jwks), "--jwt-audience", AUDIENCE, "--jwt-scopes-claim", "roles")
    try:
        assert status(server, issuer.token(None, roles=["infer"], iss="anyone"))[0] == 200
        code, error = status(server, issuer.token("infer"))  # the scope in the wrong claim
        assert code == 403 and "lacks the 'infer' scope" in error, error
    finally:
        server.stop()
