"""appliance-guest-identity without a VM: parsing, and applying to an alternate root (--root)."""

from __future__ import annotations

import datetime as dt
import importlib.machinery
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from vmimages.profiles import GUEST_DIR

SCRIPT = GUEST_DIR / "rootfs/usr/local/sbin/appliance-guest-identity"
SIZE = 8192

needs_ssh_keygen = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="ssh-keygen not installed")


def load_script():
    loader = importlib.machinery.SourceFileLoader("appliance_guest_identity", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


gi = load_script()


def ed25519_pair():
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


def ca_pem(cn="appliance test CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def identity(**kw):
    host_private, _ = ed25519_pair()
    _, client_public = ed25519_pair()
    doc = {"version": 1, "hostname": "sb-0123456789", "user": "agent",
           "authorized_keys": [client_public + " appliance-sandbox"], "host_key": host_private,
           "address": "10.213.0.5/24", "gateway": "10.213.0.1", "dns": ["10.213.0.1"],
           "proxy": None, "ca_certs": [], "env": {}}
    doc.update(kw)
    return doc


def blob(doc, pad=b" "):
    raw = json.dumps(doc).encode()
    return raw + pad * (SIZE - len(raw))


@pytest.fixture
def guest_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "home/agent").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\nagent:x:1000:1000::/home/agent:/bin/bash\n")
    (root / "etc/environment").write_text('KEEP="me"\n')
    (root / "etc/ssl/certs/ca-certificates.crt").write_text("-----BEGIN CERTIFICATE-----\nBASE\n-----END CERTIFICATE-----\n")
    return root


def run(root, doc_or_blob, tmp_path, *extra):
    path = tmp_path / "identity.json"
    path.write_bytes(doc_or_blob if isinstance(doc_or_blob, bytes) else blob(doc_or_blob))
    return subprocess.run([sys.executable, str(SCRIPT), "--file", str(path), "--root", str(root), *extra],
                          capture_output=True, text=True)


# ---------------------------------------------------------------------------------------- parsing


def test_parse_accepts_padding_and_normalises():
    doc = identity(hostname="SB-ABC", proxy={"http": "http://10.213.0.1:3128", "no_proxy": "localhost"})
    for pad in (b" ", b"\n", b"\0"):
        ident = gi.parse_identity(blob(doc, pad))
        assert ident["hostname"] == "sb-abc" and ident["interface"] == "eth0"
        assert ident["proxy"] == {"http": "http://10.213.0.1:3128", "https": "http://10.213.0.1:3128", "no_proxy": "localhost"}
        assert ident["host_key"].endswith("-----END OPENSSH PRIVATE KEY-----\n")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": 2}, "unsupported identity version 2"),
        ({"version": None}, "unsupported identity version"),
        ({"version": True}, "unsupported identity version"),
        ({"hostname": "bad_name!"}, "hostname"),
        ({"user": "root"}, "user"),
        ({"authorized_keys": []}, "authorized_keys"),
        ({"authorized_keys": ["ssh-ed25519 AAAA x\nssh-rsa BBB"]}, "single line"),
        ({"host_key": "not a key"}, "host_key"),
        ({"address": "10.213.0.5"}, "prefix length"),
        ({"address": "10.213.0.300/24"}, "address"),
        ({"gateway": "nope"}, "gateway"),
        ({"dns": ["1.2.3"]}, "dns"),
        ({"proxy": {"https": "http://x"}}, "proxy"),
        ({"proxy": {"http": "http://x", "ftp": "y"}}, "unknown key"),
        ({"ca_certs": ["not pem"]}, "ca_certs"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"env": {"A": 'quote"d'}}, "quotes"),
        ({"interface": "eth0; rm -rf /"}, "interface"),
    ],
)
def test_parse_refuses_bad_identities(change, message):
    with pytest.raises(gi.IdentityError, match=message):
        gi.parse_identity(blob(identity(**change)))


def test_parse_refuses_garbage():
    for raw in (b"", b" " * SIZE, b"\xff\xfe", b"[1, 2]", b"{not json"):
        with pytest.raises(gi.IdentityError):
            gi.parse_identity(raw)


def test_environment_variables_from_proxy_ca_and_env():
    ident = gi.parse_identity(blob(identity(proxy={"http": "http://p:3128", "no_proxy": "localhost,10.213.0.1"},
                                            ca_certs=[ca_pem()], env={"FOO": "bar", "HTTP_PROXY": "http://override"})))
    v = gi.environment_vars(ident)
    assert v["http_proxy"] == v["https_proxy"] == v["HTTPS_PROXY"] == "http://p:3128"
    assert v["HTTP_PROXY"] == "http://override"  # env wins
    assert v["no_proxy"] == v["NO_PROXY"] == "localhost,10.213.0.1"
    assert v["NODE_EXTRA_CA_CERTS"] == "/etc/ssl/certs/ca-certificates.crt"
    assert v["FOO"] == "bar"
    assert gi.environment_vars(gi.parse_identity(blob(identity()))) == {}


# ---------------------------------------------------------------------------------------- applying


@needs_ssh_keygen
def test_apply_to_an_alternate_root(guest_root, tmp_path):
    doc = identity(proxy={"http": "http://10.213.0.1:3128", "no_proxy": "localhost,127.0.0.1,10.213.0.1"},
                   env={"FOO": "bar baz"}, dns=["10.213.0.1", "10.213.0.2"])
    proc = run(guest_root, doc, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "appliance-identity: applied sb-0123456789 10.213.0.5/24\n"
    # live-only commands are reported, never run
    assert "skipped (alternate root): ip addr add 10.213.0.5/24 dev eth0" in proc.stderr
    assert "ip route replace default via 10.213.0.1 dev eth0" in proc.stderr

    etc = guest_root / "etc"
    assert (etc / "hostname").read_text() == "sb-0123456789\n"
    assert "127.0.1.1\tsb-0123456789\n" in (etc / "hosts").read_text()
    key = etc / "ssh/ssh_host_ed25519_key"
    assert key.read_text() == doc["host_key"].strip() + "\n"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pub = (etc / "ssh/ssh_host_ed25519_key.pub").read_text().split()
    assert pub[0] == "ssh-ed25519"
    ak = guest_root / "home/agent/.ssh/authorized_keys"
    assert ak.read_text() == doc["authorized_keys"][0] + "\n"
    assert stat.S_IMODE(ak.stat().st_mode) == 0o600
    assert stat.S_IMODE(ak.parent.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert (ak.stat().st_uid, ak.stat().st_gid) == (1000, 1000)
    assert (etc / "resolv.conf").read_text().splitlines()[1:] == ["nameserver 10.213.0.1", "nameserver 10.213.0.2"]
    environment = (etc / "environment").read_text()
    assert environment.startswith('KEEP="me"\n')
    assert 'http_proxy="http://10.213.0.1:3128"' in environment and 'NO_PROXY="localhost,127.0.0.1,10.213.0.1"' in environment
    assert 'FOO="bar baz"' in environment
    profile = (etc / "profile.d/appliance-identity.sh").read_text()
    assert "export HTTPS_PROXY=http://10.213.0.1:3128\n" in profile and "export FOO='bar baz'\n" in profile
    r = subprocess.run(["sh", "-c", f". {etc}/profile.d/appliance-identity.sh; echo \"$FOO|$https_proxy\""],
                       capture_output=True, text=True, check=True)
    assert r.stdout == "bar baz|http://10.213.0.1:3128\n"
    assert 'Acquire::http::Proxy "http://10.213.0.1:3128";' in (etc / "apt/apt.conf.d/80appliance-proxy").read_text()


@needs_ssh_keygen
def test_reapplying_is_idempotent_and_replaces_old_values(guest_root, tmp_path):
    ca = ca_pem()
    first = identity(proxy={"http": "http://10.213.0.1:3128"}, ca_certs=[ca], env={"A": "1"})
    assert run(guest_root, first, tmp_path).returncode == 0
    snapshot = {p: p.read_bytes() for p in guest_root.rglob("*") if p.is_file()}
    assert run(guest_root, first, tmp_path).returncode == 0
    assert {p: p.read_bytes() for p in guest_root.rglob("*") if p.is_file()} == snapshot

    bundle = (guest_root / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert bundle.startswith("-----BEGIN CERTIFICATE-----\nBASE\n") and bundle.count(ca.strip()) == 1
    assert (guest_root / "usr/local/share/ca-certificates/appliance/appliance-00.crt").read_text() == ca.strip() + "\n"
    assert os.readlink(guest_root / "etc/ssl/certs/appliance-00.pem") == "/usr/local/share/ca-certificates/appliance/appliance-00.crt"
    if shutil.which("openssl"):
        assert any(os.readlink(p) == "appliance-00.pem" for p in (guest_root / "etc/ssl/certs").glob("*.0"))

    # a new identity: other host, no proxy, no CA, no env
    second = identity(hostname="sb-other", address="10.213.0.9/24")
    proc = run(guest_root, second, tmp_path)
    assert proc.returncode == 0 and "sb-other 10.213.0.9/24" in proc.stdout
    assert (guest_root / "etc/hostname").read_text() == "sb-other\n"
    assert (guest_root / "etc/environment").read_text() == 'KEEP="me"\n'
    assert not (guest_root / "etc/profile.d/appliance-identity.sh").exists()
    assert not (guest_root / "etc/apt/apt.conf.d/80appliance-proxy").exists()
    assert (guest_root / "etc/ssl/certs/ca-certificates.crt").read_text() == "-----BEGIN CERTIFICATE-----\nBASE\n-----END CERTIFICATE-----\n"
    assert list((guest_root / "usr/local/share/ca-certificates/appliance").iterdir()) == []
    assert not [p for p in (guest_root / "etc/ssl/certs").iterdir() if p.is_symlink()]
    assert (guest_root / "etc/ssh/ssh_host_ed25519_key").read_text() == second["host_key"].strip() + "\n"
    assert (guest_root / "home/agent/.ssh/authorized_keys").read_text() == second["authorized_keys"][0] + "\n"


def test_unknown_version_fails_loudly(guest_root, tmp_path):
    proc = run(guest_root, identity(version=7), tmp_path)
    assert proc.returncode == 2
    assert "unsupported identity version 7" in proc.stderr
    assert not (guest_root / "etc/hostname").exists()
    assert proc.stdout == ""


@needs_ssh_keygen
def test_a_missing_user_is_an_error_under_an_alternate_root(guest_root, tmp_path):
    proc = run(guest_root, identity(user="someone"), tmp_path)
    assert proc.returncode == 1 and "someone" in proc.stderr


def test_check_prints_without_secrets(guest_root, tmp_path):
    proc = run(guest_root, identity(), tmp_path, "--check")
    assert proc.returncode == 0
    shown = json.loads(proc.stdout)
    assert "host_key" not in shown and shown["hostname"] == "sb-0123456789"
    assert not (guest_root / "etc/hostname").exists()


def test_missing_file_is_an_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--file", str(tmp_path / "nope"), "--root", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "cannot read" in proc.stderr


@needs_ssh_keygen
def test_ca_changes_reach_update_ca_certificates_hooks_in_the_background(guest_root, tmp_path):
    hooks = guest_root / "etc/ca-certificates/update.d"
    hooks.mkdir(parents=True)
    received = tmp_path / "received"
    hook = hooks / "jks-keystore"
    hook.write_text(f"#!/bin/sh\ncat >> {received}\n")
    hook.chmod(0o755)
    (hooks / "README.txt").write_text("not a hook (run-parts skips names with dots)")

    proc = run(guest_root, identity(ca_certs=[ca_pem()]), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "systemctl start --no-block appliance-ca-refresh.service" in proc.stderr
    assert (guest_root / "run/appliance-ca-delta").read_text() == "+/etc/ssl/certs/appliance-00.pem\n"

    hooks_run = subprocess.run([sys.executable, str(SCRIPT), "--run-ca-hooks", "--root", str(guest_root)],
                               capture_output=True, text=True)
    assert hooks_run.returncode == 0, hooks_run.stderr
    assert received.read_text() == "+/etc/ssl/certs/appliance-00.pem\n"
    assert not (guest_root / "run/appliance-ca-delta").exists()

    # the same certificate again: nothing to tell the hooks
    proc = run(guest_root, identity(ca_certs=[(guest_root / "usr/local/share/ca-certificates/appliance/appliance-00.crt").read_text()]), tmp_path)
    assert "appliance-ca-refresh" not in proc.stderr
    # removed: the hooks hear about it
    proc = run(guest_root, identity(), tmp_path)
    assert (guest_root / "run/appliance-ca-delta").read_text() == "-/etc/ssl/certs/appliance-00.pem\n"
