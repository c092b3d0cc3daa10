"""Guest templates: one booted guest saved so that new sandboxes start from it in about a second.

A template is kept per key (image version, accel, vCPUs, memory, disk size, QEMU version). It is
booted once with a placeholder identity, its RAM in a file on a tmpfs (`template_dir`, shared),
an isolated tap and its own overlay of the image; once its guest agent answers and sshd runs, its
device state is saved (x-ignore-shared: < 1 MB) and the domain goes. A clone is a new domain —
own name, MAC, tap, overlay on the template's (frozen) disk, fw_cfg identity — started from that
state with the RAM file private to it, then re-identified over the guest agent (MAC, address,
host keys, authorized keys, hostname from its own fw_cfg; a new machine-id; the clock).

    <template_dir>/<key>/ram          the template's RAM (qemu creates it; libvirt-qemu owns the dir)
    <template_dir>/<key>/state        the saved device state
    <state_dir>/templates/<key>/disk.qcow2   the template's disk, the clones' backing file
    <state_dir>/templates/<key>/template.json  what it is, when made (written last: complete)
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from appliance_base.config import Config

from ..errors import SandboxError
from . import disks
from .domain_xml import FW_CFG_IDENTITY, DomainSpec, render
from .hypervisor import Hypervisor
from .identity import GuestIdentity, generate_keypair, write_private

log = logging.getLogger(__name__)

PLACEHOLDER_ADDRESS = "169.254.77.2/16"  # the template's own: never on the bridge
TEMPLATE_MAC = "52:54:00:00:00:01"  # its tap is on no bridge; each clone takes its sandbox's MAC
READY_TIMEOUT = 600.0
AGENT_CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class TemplateKey:
    image_hash: str
    domain_type: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    qemu_version: str

    @property
    def id(self) -> str:
        raw = json.dumps(self.__dict__, sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Template:
    key: TemplateKey
    ram: Path
    state: Path
    disk: Path


def reidentify_command(mac: str, interface: str = "eth0") -> list[str]:
    """What a clone runs (as root, through its guest agent) to become its sandbox: the MAC of its
    new NIC, then the identity its fw_cfg now holds, then a machine-id of its own."""
    script = (f"ip link set {interface} down && ip link set {interface} address {mac} && ip link set {interface} up"
              " && /usr/local/sbin/appliance-guest-identity"
              # a random one: systemd-machine-id-setup would take the template's VM UUID again
              " && systemd-id128 new > /etc/machine-id.new && mv /etc/machine-id.new /etc/machine-id")
    return ["/bin/sh", "-c", script]


class TemplateStore:
    def __init__(self, config: Config, hv: Hypervisor, egress, instance: str):
        self.config, self.hv, self.egress, self.instance = config, hv, egress, instance
        self.ram_root = Path(config.template_dir)
        self.disk_root = config.state_dir / "templates"

    def key(self, image, domain_type: str, vcpus: int, memory_mb: int, disk_gb: int) -> TemplateKey:
        return TemplateKey(image.profile_hash, domain_type, vcpus, memory_mb, disk_gb,
                           self.hv.versions()["hypervisor"])

    def find(self, key: TemplateKey) -> Template | None:
        """The complete template of `key`, or None."""
        t = self._paths(key)
        manifest = self.disk_root / key.id / "template.json"
        if manifest.exists() and t.ram.exists() and t.state.exists() and t.disk.exists():
            return t
        return None

    def _paths(self, key: TemplateKey) -> Template:
        return Template(key, self.ram_root / key.id / "ram", self.ram_root / key.id / "state",
                        self.disk_root / key.id / "disk.qcow2")

    def build(self, key: TemplateKey, image) -> Template:
        """Boot, wait for, and save the template of `key` (any half-made one is removed first)."""
        t = self._paths(key)
        self.remove(key)
        started = time.monotonic()
        for d in (t.ram.parent, t.disk.parent):
            d.mkdir(parents=True, mode=0o711)
        disks.ensure_traversable(t.ram.parent)
        shutil.chown(t.ram.parent, user="libvirt-qemu")  # qemu creates the RAM file itself
        name = f"appliance-template-{key.id}"
        tap = f"tpl{key.id[:8]}"
        identity = t.disk.parent / "identity.json"
        client = generate_keypair("template")
        host = generate_keypair("template")
        write_private(identity, GuestIdentity(
            hostname="template", user=self.config.guest_user, authorized_keys=[client.public_openssh],
            host_key=host.private_openssh, address=PLACEHOLDER_ADDRESS, gateway="169.254.0.1", dns=[]).to_blob())
        shutil.chown(identity, user="libvirt-qemu")
        disks.create_overlay(image.disk, t.disk, key.disk_gb)
        self.egress.create_lone_tap(tap)
        try:
            self.hv.start(render(self._template_spec(key, image, name, str(t.disk), tap, str(identity),
                                                     str(t.disk.parent / "console.log"), t.ram)))
            self._wait_ready(name, t.disk.parent / "console.log")
            self.hv.save_template(name, t.state)
            (t.disk.parent / "template.json").write_text(json.dumps(
                {"key": key.__dict__, "image_dir": str(image.dir), "made_at": time.time()}, indent=1) + "\n")
        except BaseException:
            self.hv.destroy(name)
            self.remove(key)
            raise
        finally:
            self.egress.delete_tap(tap)
            identity.unlink(missing_ok=True)
        log.info("template %s (%s) made in %.1f s", key.id, image.dir.name, time.monotonic() - started)
        return t

    def _wait_ready(self, name: str, console: Path) -> None:
        deadline = time.monotonic() + min(READY_TIMEOUT, self.config.ready_timeout * 2)
        while time.monotonic() < deadline:
            if not self.hv.is_running(name):
                raise SandboxError(f"the template guest stopped while booting: {console.read_text(errors='replace')[-2000:]}")
            if self.hv.agent_ready(name):
                code, _, _ = self.hv.agent_exec(name, ["/bin/systemctl", "is-active", "--quiet", "ssh",
                                                       "appliance-identity"], timeout=30)
                if code == 0:
                    return
            time.sleep(0.5)
        raise SandboxError("the template guest did not come up", hint="guests cold-boot meanwhile")

    def _template_spec(self, key: TemplateKey, image, name: str, disk: str, tap: str, identity: str,
                       console: str, ram: Path) -> DomainSpec:
        """The template's domain: the devices of a sandbox's (clone_spec), RAM shared in `ram`."""
        return DomainSpec(
            name=name, sandbox_id="template", instance=self.instance, domain_type=key.domain_type, vcpus=key.vcpus,
            memory_mb=key.memory_mb, kernel=str(image.kernel), initrd=str(image.initrd),
            cmdline=image.kernel_cmdline, serial_log=console, disk=disk, tap=tap, mac=TEMPLATE_MAC,
            fw_cfg={FW_CFG_IDENTITY: identity}, ram_file=str(ram), ram_shared=True)

    @staticmethod
    def clone_spec(spec: DomainSpec, template: Template) -> DomainSpec:
        """A sandbox's own domain (`spec`: name, disk, tap, MAC, identity) started from `template`:
        the same devices as the template's, the RAM file private to it, waiting for the state."""
        return replace(spec, ram_file=str(template.ram), ram_shared=False, incoming=True)

    def start_clone(self, template: Template, spec: DomainSpec) -> str:
        """Start `spec` (a clone's domain) from `template` and make it its sandbox; returns its name."""
        name = self.hv.start_clone(render(spec), template.state)
        try:
            self._wait_agent(name)
            code, out, err = self.hv.agent_exec(name, reidentify_command(spec.mac), timeout=120)
            if code != 0:
                raise SandboxError(f"the clone could not take its identity (exit {code}): {(err or out)[-500:]}")
            self.hv.set_guest_time(name)
        except BaseException:
            self.hv.destroy(name)
            raise
        return name

    def _wait_agent(self, name: str) -> None:
        """libvirt takes the clone's guest agent for connected only once it has handled QEMU's
        VSERPORT_CHANGE event, which QEMU sends shortly after the state is loaded: until then every
        agent command is refused ("not connected")."""
        deadline = time.monotonic() + AGENT_CONNECT_TIMEOUT
        while not self.hv.agent_ready(name):
            if time.monotonic() > deadline:
                raise SandboxError(f"the guest agent of clone {name} did not connect within {AGENT_CONNECT_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def remove(self, key: TemplateKey) -> None:
        shutil.rmtree(self.ram_root / key.id, ignore_errors=True)
        shutil.rmtree(self.disk_root / key.id, ignore_errors=True)

