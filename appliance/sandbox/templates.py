"""Guest templates: one booted guest saved so that new sandboxes start from it in about a second.

A template is kept per key (image version, accel, vCPUs, memory, disk size, QEMU version, guest
user). It is booted once with a placeholder identity, its RAM in a file on a tmpfs (`template_dir`, shared),
an isolated tap and its own overlay of the image; once its guest agent answers and sshd runs, its
device state is saved (x-ignore-shared: < 1 MB) and the domain goes. A clone is a new domain —
own name, MAC, tap, overlay on the template's (frozen) disk, fw_cfg identity — started from that
state with the RAM file private to it, then re-identified over the guest agent (MAC, address,
host keys, authorized keys, hostname from its own fw_cfg; a new machine-id; the clock).

Each build of a key is a new generation, in directories named `<key>-<generation>`, so a rebuild
never touches the disk that live clones' overlays are backed by; `sweep` removes old generations
once no live sandbox names them (`Sandbox.template_key`).

    <template_dir>/<name>/ram          the template's RAM (qemu creates it; libvirt-qemu owns the dir)
    <template_dir>/<name>/state        the saved device state
    <state_dir>/templates/<name>/disk.qcow2   the template's disk, the clones' backing file
    <state_dir>/templates/<name>/template.json  what it is, when made (written last: complete)
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from appliance_base.config import Config

from ..db import utcnow
from ..errors import SandboxError
from ..models import GuestTemplate, TemplateState
from . import disks
from .domain_xml import FW_CFG_IDENTITY, DomainSpec, render
from .hypervisor import Hypervisor
from .identity import GuestIdentity, generate_keypair, write_private

log = logging.getLogger(__name__)

PLACEHOLDER_ADDRESS = "169.254.77.2/16"  # the template's own: never on the bridge
TEMPLATE_MAC = "52:54:00:00:00:01"  # its tap is on no bridge; each clone takes its sandbox's MAC
READY_TIMEOUT = 600.0
AGENT_CONNECT_TIMEOUT = 30.0
RAM_HEADROOM_MB = 64  # free space a template needs on template_dir beyond its guest's memory
BUILDING_GRACE = 3600.0  # an incomplete generation younger than this may be being built: sweep leaves it


@dataclass(frozen=True)
class TemplateKey:
    image_hash: str
    domain_type: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    qemu_version: str
    guest_user: str  # the template's guest made this account at its first boot

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

    @property
    def name(self) -> str:
        """`<key>-<generation>`: what a clone's `Sandbox.template_key` names."""
        return self.disk.parent.name


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
                           self.hv.versions()["hypervisor"], self.config.guest_user)

    def find(self, key: TemplateKey) -> Template | None:
        """The newest complete template of `key`, or None."""
        manifests = sorted(self.disk_root.glob(f"{key.id}-*/template.json"), key=_mtime, reverse=True)
        for manifest in manifests:
            t = self._paths(key, manifest.parent.name)
            if t.ram.exists() and t.state.exists() and t.disk.exists():
                return t
        return None

    def _paths(self, key: TemplateKey, name: str) -> Template:
        return Template(key, self.ram_root / name / "ram", self.ram_root / name / "state",
                        self.disk_root / name / "disk.qcow2")

    def build(self, key: TemplateKey, image) -> Template:
        """Boot, wait for, and save a new generation of the template of `key`."""
        t = self._paths(key, f"{key.id}-{secrets.token_hex(3)}")
        self._record(key, image, state=TemplateState.BUILDING, error=None, made_at=None, build_seconds=None)
        self._check_room(key, image)
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
        except BaseException as e:
            self.hv.destroy(name)
            self._remove_files(t.name)
            self._record(key, image, state=TemplateState.FAILED, error=getattr(e, "message", None) or repr(e))
            raise
        finally:
            self.egress.delete_tap(tap)
            identity.unlink(missing_ok=True)
        took = time.monotonic() - started
        # not over a drop that came while it was being built (the drop removed its RAM: it is unusable)
        GuestTemplate.update(state=TemplateState.READY, made_at=utcnow(), build_seconds=round(took, 1)).where(
            (GuestTemplate.host == (self.config.appliance_host or "")) & (GuestTemplate.key == key.id)
            & (GuestTemplate.state == TemplateState.BUILDING)).execute()
        log.info("template %s (%s) made in %.1f s", t.name, image.dir.name, took)
        return t

    def _check_room(self, key: TemplateKey, image) -> None:
        """The template's RAM file fills as its guest touches memory: on a full tmpfs qemu would die of
        SIGBUS halfway through the boot. Refused up front instead, with what to do."""
        self.ram_root.mkdir(parents=True, exist_ok=True)
        need = key.memory_mb + RAM_HEADROOM_MB
        have = disks.free_mb(self.ram_root)
        if have < need:
            why = (f"{self.ram_root} has {have} MiB free; a template of a {key.memory_mb} MiB guest needs {need} MiB")
            self._record(key, image, state=TemplateState.FAILED, error=why)
            raise SandboxError(why, hint="make the tmpfs larger (or drop templates: 'appliance template list'); "
                                         "guests cold-boot meanwhile")

    def _record(self, key: TemplateKey, image, **fields) -> None:
        """The template's row (what admins see): one per (host, key), updated by each build."""
        host = self.config.appliance_host or ""
        row = GuestTemplate.get_or_none((GuestTemplate.host == host) & (GuestTemplate.key == key.id))
        if row is None:
            row = GuestTemplate(key=key.id, host=host, profile=image.profile, image_hash=key.image_hash,
                                domain_type=key.domain_type, vcpus=key.vcpus, memory_mb=key.memory_mb,
                                disk_gb=key.disk_gb, qemu_version=key.qemu_version)
        for field, value in fields.items():
            setattr(row, field, value)
        row.save()

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

    def retire(self, template: Template, why: str) -> None:
        """No new clones from `template` (its saved state does not start): its RAM and state go now,
        its disk once no live sandbox is backed by it (sweep); the next clone builds a new one."""
        shutil.rmtree(self.ram_root / template.name, ignore_errors=True)
        GuestTemplate.update(state=TemplateState.FAILED, error=why[:2000]).where(
            GuestTemplate.key == template.key.id).execute()

    def current_generations(self) -> set[str]:
        """The generations new clones may start from (their RAM and state are there)."""
        if not self.ram_root.is_dir():
            return set()
        return {d.name for d in self.ram_root.iterdir() if (d / "ram").exists() and (d / "state").exists()}

    def drop_for_image(self, image_hash_suffix: str) -> list[str]:
        """No more clones from the templates whose image hash ends with `image_hash_suffix` (those of
        an environment cache that was dropped): their RAM goes now, their disks with the next sweep
        once no live sandbox uses them."""
        rows = list(GuestTemplate.select().where(GuestTemplate.image_hash.endswith(image_hash_suffix)))
        for row in rows:
            for ram in self.ram_root.glob(f"{row.key}-*"):
                shutil.rmtree(ram, ignore_errors=True)
            GuestTemplate.update(state=TemplateState.DROPPED).where(GuestTemplate.id == row.id).execute()
        return [row.key for row in rows]

    def sweep(self, in_use: set[str]) -> list[str]:
        """Remove every generation that is not the newest complete one of its key and that no live
        sandbox (`in_use`: their template_key) is backed by. Returns the names removed."""
        current: dict[str, tuple[float, str]] = {}
        for manifest in self.disk_root.glob("*-*/template.json"):
            name = manifest.parent.name
            key_id = name.rsplit("-", 1)[0]
            ram = self.ram_root / name
            if (ram / "ram").exists() and (ram / "state").exists():
                stamp = _mtime(manifest)
                if stamp > current.get(key_id, (0.0, ""))[0]:
                    current[key_id] = (stamp, name)
        keep = {name for _, name in current.values()} | in_use
        removed = []
        for root in (self.disk_root, self.ram_root):
            if not root.is_dir():
                continue
            for entry in root.iterdir():
                if not entry.is_dir() or entry.name in keep or entry.name in removed:
                    continue
                built = (self.disk_root / entry.name / "template.json").exists()
                if not built and time.time() - _mtime(entry) < BUILDING_GRACE:
                    continue  # maybe being built right now
                self._remove_files(entry.name)
                removed.append(entry.name)
        if removed:
            log.info("templates: removed unused generations %s", ", ".join(removed))
        return removed

    def _remove_files(self, name: str) -> None:
        shutil.rmtree(self.ram_root / name, ignore_errors=True)
        shutil.rmtree(self.disk_root / name, ignore_errors=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
