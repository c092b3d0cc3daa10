import io
import json
import shutil
import subprocess

import paramiko
import pytest

from appliance.models import new_guest_mac
from appliance.sandbox import accel
from appliance.sandbox.hypervisor import Hypervisor
from appliance.sandbox.identity import IDENTITY_SIZE, GuestIdentity, generate_keypair, write_private


def identity(**kw):
    pair = generate_keypair("host")
    values = dict(hostname="sb-1", user="agent", authorized_keys=[generate_keypair("c").public_openssh],
                  host_key=pair.private_openssh, address="10.0.0.2/24", gateway="10.0.0.1", dns=["10.0.0.1"])
    values.update(kw)
    return GuestIdentity(**values)


def test_identity_blob_has_a_fixed_size_and_parses_back():
    blob = identity().to_blob()
    assert len(blob) == IDENTITY_SIZE
    doc = json.loads(blob)
    assert doc["version"] == 1 and doc["address"] == "10.0.0.2/24" and doc["proxy"] is None


def test_oversized_identity_is_refused():
    with pytest.raises(ValueError):
        identity(env={"BIG": "x" * IDENTITY_SIZE}).to_blob()


def test_generated_keys_load_in_paramiko_and_match_their_public_half():
    pair = generate_keypair("comment")
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pair.private_openssh))
    assert pair.public_openssh.split()[1] == key.get_base64()
    assert pair.public_openssh.endswith(" comment")
    assert generate_keypair("x").private_openssh != pair.private_openssh


def test_private_files_are_never_world_readable(tmp_path):
    path = tmp_path / "key"
    write_private(path, "secret")
    assert path.stat().st_mode & 0o777 == 0o600


def test_guest_mac_is_random_locally_administered_unicast():
    macs = {new_guest_mac() for _ in range(50)}
    assert len(macs) == 50  # random, so no guest can derive another's from its sandbox id
    for mac in macs:
        first = int(mac[:2], 16)
        assert first & 0x02 and not first & 0x01 and len(mac) == 17


@pytest.mark.skipif(not shutil.which("cpio"), reason="cpio not installed")
def test_newc_archive_is_read_by_cpio(tmp_path):
    archive = accel.newc_archive({"bin": (0o040755, b""), "bin/hello": (0o100755, b"#!/bin/sh\necho hi\n"),
                                  "odd": (0o100644, b"x")})
    out = subprocess.run(["cpio", "-itv"], input=archive, capture_output=True, check=True)
    listing = out.stdout.decode()
    assert "bin/hello" in listing and "odd" in listing and "-rwxr-xr-x" in listing


def test_newc_archive_alignment():
    archive = accel.newc_archive({"a": (0o100644, b"123")})
    assert len(archive) % 4 == 0
    assert archive.startswith(b"070701")
    assert b"TRAILER!!!" in archive


def test_configured_modes_skip_the_probe(tmp_path):
    hv = Hypervisor("test:///default")
    assert accel.choose("tcg", hv, None, tmp_path, 1).mode == "tcg"
    assert accel.choose("kvm", hv, None, tmp_path, 1).domain_type == "kvm"


def test_auto_falls_back_to_tcg_when_libvirt_cannot_do_kvm(tmp_path, monkeypatch):
    monkeypatch.setattr(accel.Path, "exists", lambda self: True)  # pretend /dev/kvm exists
    choice = accel.choose("auto", Hypervisor("test:///default"), tmp_path / "vmlinuz", tmp_path, 1)
    assert (choice.mode, choice.domain_type, choice.probed) == ("tcg", "qemu", False)
    assert "no kvm domain type" in choice.reason
