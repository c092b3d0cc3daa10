"""The `minimal` image honours the guest contract when booted by plain QEMU (no libvirt): the
identity comes in through fw_cfg, sshd answers with the identity's host key only, the user has
passwordless sudo, check-tools runs, and a new identity re-applied over SSH (what a warm start
does) takes effect."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import time

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from helpers import need_root, shared_image_dir

pytestmark = pytest.mark.vm

BOOT_TIMEOUT = 300.0


def keypair():
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


def identity_blob(hostname, host_private, client_public):
    doc = {"version": 1, "hostname": hostname, "user": "agent", "authorized_keys": [client_public],
           "host_key": host_private, "address": "10.0.2.15/24", "gateway": "10.0.2.2", "dns": ["10.0.2.3"],
           "proxy": {"http": "http://10.0.2.2:3128", "no_proxy": "localhost,127.0.0.1"}, "ca_certs": [],
           "env": {"APPLIANCE_TEST": "1"}}
    raw = json.dumps(doc).encode()
    return raw + b" " * (8192 - len(raw))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PinnedHostKey(paramiko.MissingHostKeyPolicy):
    def __init__(self, public_openssh):
        self.expected = public_openssh.split()[1]

    def missing_host_key(self, client, hostname, key):
        if key.get_base64() != self.expected:
            raise paramiko.SSHException("host key does not match the identity's")


def connect(port, client_private, host_public):
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(PinnedHostKey(host_public))
    client.connect("127.0.0.1", port=port, username="agent", pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(client_private)),
                   timeout=10, banner_timeout=10, auth_timeout=10, look_for_keys=False, allow_agent=False)
    return client


def run(client, command):
    _, out, err = client.exec_command(command, timeout=120)
    status = out.channel.recv_exit_status()
    return status, out.read().decode(), err.read().decode()


@pytest.fixture(scope="module")
def image():
    need_root()
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86 not installed")
    from vmimages.build import build_image

    return build_image("minimal", shared_image_dir(), progress=lambda line: None)


@pytest.fixture
def guest(image, tmp_path):
    """A booted minimal guest: (port, client key, host key pair, console log path)."""
    host_private, host_public = keypair()
    client_private, client_public = keypair()
    ident = tmp_path / "identity.json"
    ident.write_bytes(identity_blob("sb-imagetest", host_private, client_public))
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "qcow2", str(overlay)], check=True)
    console = tmp_path / "console.log"
    port = free_port()
    proc = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic", "-no-reboot",
         "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", image.kernel_cmdline,
         "-drive", f"file={overlay},if=virtio,format=qcow2",
         "-fw_cfg", f"name=opt/appliance/identity,file={ident}",
         "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0",
         "-serial", f"file:{console}", "-monitor", "none", "-display", "none"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield port, client_private, (host_private, host_public), console, proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        overlay.unlink(missing_ok=True)


def wait_for_ssh(port, client_private, host_public, proc, console):
    deadline = time.monotonic() + BOOT_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"qemu exited ({proc.returncode}); console:\n{console.read_text(errors='replace')[-3000:]}")
        try:
            return connect(port, client_private, host_public)
        except (OSError, paramiko.SSHException, EOFError) as e:
            last = e
            time.sleep(1)
    pytest.fail(f"no SSH within {BOOT_TIMEOUT:.0f} s ({last}); console:\n{console.read_text(errors='replace')[-3000:]}")


def test_minimal_image_boots_into_its_identity(image, guest):
    port, client_private, (_, host_public), console, proc = guest
    client = wait_for_ssh(port, client_private, host_public, proc, console)
    with client:
        status, out, _ = run(client, "hostname; sudo -n true && echo sudo-ok; check-tools; echo \"proxy=$http_proxy\"")
        assert status == 0
        lines = out.splitlines()
        assert lines[:2] == ["sb-imagetest", "sudo-ok"]
        assert "Python" in out and "git" in out and "proxy=http://10.0.2.2:3128" in out
        status, out, _ = run(client, "ls /etc/ssh/ | grep ssh_host_; cat /etc/machine-id; sudo sshd -T | grep -E '^(passwordauthentication|permitrootlogin) '")
        keys = [line for line in out.splitlines() if line.startswith("ssh_host_")]
        assert keys == ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"]
        assert "passwordauthentication no" in out and "permitrootlogin no" in out
        status, out, _ = run(client, "lsmod | grep -c qemu_fw_cfg; ls /lib/modules/$(uname -r)/modules.dep")
        assert status == 0
    assert "appliance-identity: applied sb-imagetest 10.0.2.15/24" in console.read_text(errors="replace")
    assert image.manifest["kernel_version"]


def test_a_new_identity_reapplied_over_ssh_takes_effect(image, guest, tmp_path):
    port, client_private, (_, host_public), console, proc = guest
    new_host_private, new_host_public = keypair()
    _, other_client_public = keypair()
    client_public = paramiko.Ed25519Key.from_private_key(io.StringIO(client_private))
    blob = identity_blob("sb-warm", new_host_private, f"ssh-ed25519 {client_public.get_base64()}")
    doc = json.loads(blob)
    doc["authorized_keys"].append(other_client_public)
    doc["proxy"] = None
    blob = json.dumps(doc).encode().ljust(8192)

    with wait_for_ssh(port, client_private, host_public, proc, console) as client:
        sftp = client.open_sftp()
        with sftp.open("/tmp/identity.json", "wb") as f:
            f.write(blob)
        sftp.close()
        status, out, err = run(client, "sudo appliance-guest-identity --file /tmp/identity.json")
        assert status == 0, err
        assert out.strip() == "appliance-identity: applied sb-warm 10.0.2.15/24"

    # sshd now presents the new host key (and only it)
    deadline = time.monotonic() + 60
    while True:
        try:
            client = connect(port, client_private, new_host_public)
            break
        except (OSError, paramiko.SSHException, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with client:
        status, out, _ = run(client, "hostname; grep -c . ~/.ssh/authorized_keys; grep -c proxy /etc/environment || true")
        assert out.split() == ["sb-warm", "2", "0"]
    with pytest.raises(paramiko.SSHException):
        connect(port, client_private, host_public)
