"""Real guests under the accel probe's choice: boot, exec, isolation, destroy, reconcile."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from appliance.errors import SandboxError
from appliance.models import Sandbox, SandboxState
from appliance.sandbox.manager import SandboxRequest
from netpolicy import bridge

pytestmark = [pytest.mark.vm, pytest.mark.root]


def leftovers(manager, hv, sandbox) -> list[str]:
    """Everything of a sandbox that should be gone after it ended."""
    found = []
    if hv.exists(sandbox.domain_name):
        found.append(f"domain {sandbox.domain_name}")
    if sandbox.tap in bridge.links_with_prefix(manager.config.tap_prefix):
        found.append(f"tap {sandbox.tap}")
    if manager.files(sandbox).dir.exists():
        found.append(f"files {manager.files(sandbox).dir}")
    return found


@pytest.fixture(scope="module")
def first(manager):
    sandbox = manager.create(SandboxRequest(memory_mb=768))
    yield sandbox
    if Sandbox.get_by_id(sandbox.id).live:
        manager.destroy(sandbox.id)


def test_boots_and_runs_a_command_with_streamed_output_and_exit_code(manager, first):
    assert first.state == SandboxState.RUNNING and first.ready_at is not None
    assert first.accel == manager.accel().mode
    chunks = []
    with manager.ssh(first) as guest:
        result = guest.exec("hostname; id -un; echo to-stderr >&2; exit 7", on_stdout=chunks.append)
    assert result.exit_code == 7
    assert result.stdout.decode().split() == [first.id, manager.config.guest_user]
    assert result.stderr == b"to-stderr\n"
    assert b"".join(chunks) == result.stdout, "stdout was streamed to the sink"


def test_guest_has_its_identity_and_no_keys_from_the_base_image(manager, first):
    with manager.ssh(first) as guest:
        addr = guest.exec("ip -4 -o addr show eth0").text
        host_key = guest.exec("sudo cat /etc/ssh/ssh_host_ed25519_key.pub").text.split()[1]
        other_keys = guest.exec("ls /etc/ssh/ | grep -c '^ssh_host_' || true").text.strip()
    assert f"{first.address}/24" in addr
    assert host_key == manager.files(first).host_key_pub.read_text().split()[1], "host key is the one we pinned"
    assert other_keys == "2", "only the ed25519 key pair the appliance delivered"


def test_upload_and_download(manager, first):
    payload = bytes(range(256)) * 1000
    with manager.ssh(first) as guest:
        guest.upload(payload, "/tmp/blob", mode=0o600)
        assert guest.download("/tmp/blob") == payload
        assert guest.exec("stat -c %a /tmp/blob").text.strip() == "600"
        with pytest.raises(SandboxError):
            guest.download("/nonexistent")


def test_a_pinned_host_key_mismatch_is_refused(manager, first):
    from appliance.sandbox.guest_ssh import GuestSSH
    from appliance.sandbox.identity import generate_keypair

    files = manager.files(first)
    impostor = GuestSSH(first.address, manager.config.guest_user, files.client_key.read_text(),
                        generate_keypair("impostor").public_openssh)
    with pytest.raises(Exception, match="does not match"):
        impostor.connect()


def test_writes_stay_in_their_own_sandbox_and_never_reach_the_base(manager, first):
    from vmimages.store import Image

    image = Image.from_dir(Path(first.image_dir))  # the exact version its overlay is backed by
    with manager.ssh(first) as guest:
        assert guest.exec("echo secret > /home/agent/marker && sync").exit_code == 0
    second = manager.create(SandboxRequest(memory_mb=768))
    try:
        assert second.address != first.address
        with manager.ssh(second) as guest:
            assert guest.exec("test -e /home/agent/marker").exit_code == 1
        with manager.ssh(first) as guest:
            assert guest.exec("cat /home/agent/marker").text == "secret\n"
    finally:
        manager.destroy(second.id)
    digest = hashlib.sha256(image.disk.read_bytes()).hexdigest()
    assert digest == image.manifest["files"]["disk.qcow2"]["sha256"], "the base image is unchanged"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", "-U", str(manager.files(first).overlay)],
                                     capture_output=True, check=True).stdout)
    assert Path(info["backing-filename"]) == image.disk


def test_destroy_leaves_nothing(manager, hv):
    sandbox = manager.create(SandboxRequest(memory_mb=768))
    assert leftovers(manager, hv, sandbox) != []
    manager.destroy(sandbox.id)
    assert leftovers(manager, hv, sandbox) == []
    row = Sandbox.get_by_id(sandbox.id)
    assert row.state == SandboxState.DESTROYED and row.ended_at is not None
    with pytest.raises(SandboxError, match="already destroyed"):
        manager.destroy(sandbox.id)


def test_reconcile_after_a_crash(manager, hv, first):
    # A crash between starting a guest and recording it: a domain of ours with no row.
    orphan = manager.create(SandboxRequest(memory_mb=768), wait=False)
    Sandbox.delete().where(Sandbox.id == orphan.id).execute()
    # A guest that died behind our back: a live row with no domain.
    vanished = manager.create(SandboxRequest(memory_mb=768), wait=False)
    hv.destroy(vanished.domain_name)
    # Someone else's domain (another appliance instance) must survive.
    foreign_tag = [t for t in hv.tagged_domains() if t.sandbox_id == first.id]
    assert foreign_tag, "precondition: the first sandbox is tagged"

    report = manager.reconcile(creating_grace=0)

    assert orphan.domain_name in report["destroyed_domains"]
    assert leftovers(manager, hv, orphan) == []
    assert vanished.id in report["lost"]
    assert Sandbox.get_by_id(vanished.id).state == SandboxState.LOST
    assert leftovers(manager, hv, vanished) == []
    assert hv.is_running(first.domain_name), "a healthy sandbox is left alone"
    assert manager.reconcile(creating_grace=0) == {k: [] for k in report}, "reconcile is idempotent"


def test_reconcile_leaves_other_instances_domains_alone(manager, hv):
    import libvirt

    from appliance.sandbox.domain_xml import DomainSpec, render

    image = manager.image_store().get(manager.config.default_profile)
    spec = DomainSpec(name="appliance-sb-notmine0001", sandbox_id="sb-notmine0001", instance="another-appliance",
                      domain_type="qemu", vcpus=1, memory_mb=128, kernel=str(image.kernel), initrd=str(image.initrd),
                      cmdline="console=ttyS0", serial_log="/dev/null")
    hv.conn.createXML(render(spec), libvirt.VIR_DOMAIN_START_PAUSED)  # costs nothing while paused
    try:
        report = manager.reconcile(creating_grace=0)
        assert spec.name not in report["destroyed_domains"]
        assert hv.exists(spec.name)
    finally:
        hv.destroy(spec.name)
