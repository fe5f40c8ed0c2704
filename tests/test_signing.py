"""Signed bundles: Ed25519 keys from `tern keys create-signing` and from openssl, `tern pack --sign`, the
signature checked independently (cryptography), and registries and servers with --trusted-keys refusing
unsigned bundles, bundles signed by an untrusted key and bundles edited after signing, at push and at load."""
import base64
import json
import os
import subprocess
import zipfile

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from conftest import BINARY, FIXTURES, ROOT
from registry_support import Registry, api, pack, rewrite_bundle, state, tern


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("signing")
    made = tern("keys", "create-signing", "alice", "-o", str(d)).stdout
    assert "alice.key" in made and "alice.pub" in made
    assert oct(os.stat(d / "alice.key").st_mode & 0o777) == "0o600"
    tern("keys", "create-signing", "mallory", "--out", str(d))
    # A key made by OpenSSL works the same.
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(d / "ops.key")], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(d / "ops.key"), "-pubout", "-out", str(d / "ops.pub")], check=True)
    trusted = d / "trusted"
    trusted.mkdir()
    for name in ("alice", "ops"):
        (trusted / f"{name}.pub").write_bytes((d / f"{name}.pub").read_bytes())
    return d


def signed(tmp, keys, key, version):
    return pack(tmp, "gbc", "credit", version, "--sign", str(keys / f"{key}.key"))


def test_a_signed_bundle_carries_a_signature_anyone_can_check(tmp_path, keys):
    path = signed(str(tmp_path), keys, "alice", 1)
    with zipfile.ZipFile(path) as bundle:
        signature = json.loads(bundle.read("tern.sig"))
        manifest = bundle.read("tern.json")
    assert signature["algorithm"] == "ed25519" and signature["signer"] == "alice"
    public = load_pem_public_key((keys / "alice.pub").read_bytes())
    public.verify(base64.b64decode(signature["signature"]), manifest)  # raises if it does not verify
    assert "signed:  by alice (ed25519 key " + signature["key_id"] in tern("inspect", path).stdout
    ops = signed(str(tmp_path), keys, "ops", 2)
    with zipfile.ZipFile(ops) as bundle:
        load_pem_public_key((keys / "ops.pub").read_bytes()).verify(
            base64.b64decode(json.loads(bundle.read("tern.sig"))["signature"]), bundle.read("tern.json"))


def test_a_registry_with_trusted_keys_takes_only_their_bundles(tmp_path, keys):
    reg = Registry("sqlite", tmp_path)
    trust = ["--trusted-keys", str(keys / "trusted")]
    edited = rewrite_bundle(signed(reg.tmp, keys, "alice", 5), lambda files: files.__setitem__(
        "tern.json", files["tern.json"].replace(b'"name"', b'"description" : "tampered",\n  "name"', 1)))
    edited_path = os.path.join(reg.tmp, "edited.tern")
    open(edited_path, "wb").write(edited)
    for bundle, message in [
        (pack(reg.tmp, "gbc", "credit", 3), "the bundle is not signed; this registry takes only bundles signed by a trusted key"),
        (signed(reg.tmp, keys, "mallory", 4), "is signed by 'mallory'"),
        (edited_path, "the bundle's signature does not match its tern.json: the bundle was changed after 'alice' signed it"),
    ]:
        refused = reg.cli("push", bundle, *trust, check=False)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert json.loads(reg.cli("models", "list", "--json").stdout) == []  # nothing registered by the refusals
    reg.cli("push", signed(reg.tmp, keys, "alice", 1), *trust)
    reg.cli("push", signed(reg.tmp, keys, "ops", 2), *trust)
    pushes = [e for e in json.loads(reg.cli("audit", "log", "--json").stdout) if e["action"] == "push"]
    assert [(e["version"], e["after"]["signer"]) for e in pushes] == [(1, "alice"), (2, "ops")]


def test_a_server_with_trusted_keys_refuses_at_push_and_at_load(tmp_path, keys):
    reg = Registry("sqlite", tmp_path)
    reg.cli("push", pack(reg.tmp, "gbc", "credit", 1))  # unsigned, registered before keys were trusted
    reg.cli("push", signed(reg.tmp, keys, "alice", 2))
    reg.cli("models", "alias", "credit", "production", "1")
    reg.cli("models", "alias", "credit", "staging", "2")
    server = reg.serve("--trusted-keys", str(keys / "trusted"))
    try:
        before = state(server)
        unsigned = api(server, "POST", "/api/v1/bundles", data=open(pack(reg.tmp, "gbc", "credit", 3), "rb").read())
        assert unsigned.status_code == 400 and "not signed" in unsigned.json()["error"]
        untrusted = api(server, "POST", "/api/v1/bundles", data=open(signed(reg.tmp, keys, "mallory", 3), "rb").read())
        assert untrusted.status_code == 400 and "not a trusted key" in untrusted.json()["error"]
        assert state(server) == before
        # A signed version is part of what was signed: it cannot be registered as another.
        renumbered = api(server, "POST", "/api/v1/bundles?version=7", data=open(signed(reg.tmp, keys, "ops", 3), "rb").read())
        assert renumbered.status_code == 400 and "signed (by" in renumbered.json()["error"] and "as version 3" in renumbered.json()["error"]
        assert state(server) == before
        accepted = api(server, "POST", "/api/v1/bundles", data=open(signed(reg.tmp, keys, "ops", 3), "rb").read())
        assert accepted.status_code == 201, accepted.text
        # v1 (unsigned) is not loaded, whatever its alias says; v2 (alice) is.
        assert api(server, "GET", "/v2/models/credit/versions/2/ready").status_code == 200
        assert api(server, "GET", "/v2/models/credit/versions/1/ready").status_code != 200
        assert "not signed" in server.output()
    finally:
        server.stop()


def test_trust_flags_say_what_is_wrong(tmp_path, keys):
    missing = subprocess.run([BINARY, "push", "x.tern", "--trusted-keys", str(tmp_path / "none"), "--data", str(tmp_path)],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode != 0 and "no trusted keys at" in missing.stderr
    (tmp_path / "bad.pub").write_text("not a key")
    bad = subprocess.run([BINARY, "serve", "--data", str(tmp_path), "--trusted-keys", str(tmp_path / "bad.pub")],
                         capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert bad.returncode != 0 and "is not an Ed25519 public key in PEM" in bad.stderr, bad.stderr
