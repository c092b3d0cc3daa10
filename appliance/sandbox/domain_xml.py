"""Domain XML from a small model. Pure: tested against golden files in tests/unit/golden/."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from .hypervisor import METADATA_NS, METADATA_PREFIX

FW_CFG_IDENTITY = "opt/appliance/identity"
GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
TEMPLATE_RAM_ID = "tmplram"


@dataclass(frozen=True)
class DomainSpec:
    name: str
    sandbox_id: str
    instance: str  # which appliance owns it (see Hypervisor.tagged_domains)
    domain_type: str  # "kvm" or "qemu" (TCG)
    vcpus: int
    memory_mb: int
    kernel: str
    initrd: str
    cmdline: str
    serial_log: str
    disk: str | None = None  # qcow2 overlay; None for the accel probe's diskless guest
    tap: str | None = None
    mac: str | None = None
    fw_cfg: dict[str, str] = field(default_factory=dict)  # fw_cfg name -> host file
    tb_cache_mb: int = 128  # TCG translation cache; qemu's default (~1 GiB) doubles a guest's RSS
    # Templates: the guest's RAM in this file, shared (the template writes it) or private (a clone
    # reads the template's pages and keeps its own changes); a clone also waits for the saved state.
    ram_file: str | None = None
    ram_shared: bool = False
    incoming: bool = False


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def render(spec: DomainSpec) -> str:
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)
    ET.register_namespace("qemu", QEMU_NS)
    dom = ET.Element("domain", type=spec.domain_type)
    _sub(dom, "name", spec.name)
    if spec.ram_file:
        _sub(dom, "genid")  # a new VM generation id per clone: the guest kernel reseeds its CRNG
    meta = _sub(dom, "metadata")
    ET.SubElement(meta, f"{{{METADATA_NS}}}sandbox", id=spec.sandbox_id, instance=spec.instance)
    _sub(dom, "memory", str(spec.memory_mb), unit="MiB")
    _sub(dom, "vcpu", str(spec.vcpus))

    if spec.fw_cfg:
        sysinfo = _sub(dom, "sysinfo", type="fwcfg")
        for name, path in sorted(spec.fw_cfg.items()):
            _sub(sysinfo, "entry", name=name, file=path)

    os_ = _sub(dom, "os")
    _sub(os_, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_, "kernel", spec.kernel)
    _sub(os_, "initrd", spec.initrd)
    _sub(os_, "cmdline", spec.cmdline)

    # ACPI is how the guest kernel finds fw_cfg; APIC for SMP.
    features = _sub(dom, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.domain_type == "qemu":
        tcg = _sub(features, "tcg")
        _sub(tcg, "tb-cache", str(spec.tb_cache_mb), unit="MiB")
    if spec.domain_type == "kvm":
        _sub(dom, "cpu", mode="host-passthrough")
    else:
        # qemu64, TCG's default model, lacks instructions current binaries use (Claude Code's
        # native binary dies with SIGILL on it); 'maximum' is everything TCG can emulate.
        _sub(dom, "cpu", mode="maximum", migratable="on")

    _sub(dom, "clock", offset="utc")
    # A sandbox that stops, for any reason, is gone: nothing restarts it behind the daemon's back.
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        _sub(dom, event, "destroy")

    devices = _sub(dom, "devices")
    _sub(devices, "emulator", "/usr/bin/qemu-system-x86_64")
    if spec.disk:
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type="qcow2", discard="unmap")
        _sub(disk, "source", file=spec.disk)
        _sub(disk, "target", dev="vda", bus="virtio")
    if spec.tap:
        iface = _sub(devices, "interface", type="ethernet")
        if spec.mac:
            _sub(iface, "mac", address=spec.mac)
        # managed='no': the appliance created the tap (on its bridge, under its nft rules).
        _sub(iface, "target", dev=spec.tap, managed="no")
        _sub(iface, "model", type="virtio")
    serial = _sub(devices, "serial", type="file")
    _sub(serial, "source", path=spec.serial_log, append="on")
    _sub(serial, "target", port="0")
    if spec.disk:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
        rng = _sub(devices, "rng", model="virtio")
        # Without it a fresh guest can stall at boot waiting for entropy (sshd, getrandom).
        _sub(rng, "backend", "/dev/urandom", model="random")
    # No balloon (nor free page reporting) on templated guests: on QEMU 7.2 a discard in one clone
    # punches holes in the template's shared RAM file.
    balloon = _sub(devices, "memballoon", model="virtio" if spec.disk and not spec.ram_file else "none")
    if spec.disk and not spec.ram_file:
        balloon.set("freePageReporting", "on")
    if spec.ram_file:
        args = ["-object", f"memory-backend-file,id={TEMPLATE_RAM_ID},size={spec.memory_mb}M,mem-path={spec.ram_file},"
                           f"share={'on' if spec.ram_shared else 'off'}",
                "-machine", f"memory-backend={TEMPLATE_RAM_ID}"]
        if spec.incoming:
            args += ["-incoming", "defer"]
        commandline = ET.SubElement(dom, f"{{{QEMU_NS}}}commandline")
        for arg in args:
            ET.SubElement(commandline, f"{{{QEMU_NS}}}arg", value=arg)

    ET.indent(dom)
    return ET.tostring(dom, encoding="unicode") + "\n"
