"""Generated domain XML against golden files. Regenerate with UPDATE_GOLDEN=1 and review the diff."""

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from appliance.sandbox.domain_xml import FW_CFG_IDENTITY, DomainSpec, render

GOLDEN = Path(__file__).parent / "golden"

SANDBOX = dict(
    name="appliance-sb-0123456789", sandbox_id="sb-0123456789", instance="feedface00112233",
    vcpus=2, memory_mb=1024, kernel="/img/minimal-abc/vmlinuz", initrd="/img/minimal-abc/initrd.img",
    cmdline="root=/dev/vda rw console=ttyS0 net.ifnames=0", serial_log="/state/sandboxes/sb-0123456789/console.log",
    disk="/state/sandboxes/sb-0123456789/disk.qcow2", tap="aplt0123456789", mac="52:54:00:01:23:45",
    fw_cfg={FW_CFG_IDENTITY: "/state/sandboxes/sb-0123456789/identity.json"},
)

CASES = {
    "sandbox_tcg": DomainSpec(domain_type="qemu", **SANDBOX),
    "sandbox_kvm": DomainSpec(domain_type="kvm", **SANDBOX),
    "accel_probe": DomainSpec(
        name="appliance-accel-probe-1", sandbox_id="accel-probe", instance="accel-probe", domain_type="kvm",
        vcpus=1, memory_mb=256, kernel="/img/vmlinuz", initrd="/probe/probe.cpio",
        cmdline="console=ttyS0 panic=-1 quiet rdinit=/init", serial_log="/probe/probe.log"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_golden(case):
    xml = render(CASES[case])
    path = GOLDEN / f"{case}.xml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(xml)
    assert xml == path.read_text()


def test_tcg_guests_get_a_bounded_translation_cache_and_kvm_guests_do_not():
    tcg = ET.fromstring(render(CASES["sandbox_tcg"]))
    kvm = ET.fromstring(render(CASES["sandbox_kvm"]))
    assert tcg.find("features/tcg/tb-cache").text == "128"
    assert kvm.find("features/tcg") is None
    assert kvm.find("cpu").get("mode") == "host-passthrough"


def test_identity_goes_through_fw_cfg_and_the_tap_is_unmanaged():
    dom = ET.fromstring(render(CASES["sandbox_tcg"]))
    entry = dom.find("sysinfo[@type='fwcfg']/entry")
    assert entry.get("name") == "opt/appliance/identity"
    assert dom.find("features/acpi") is not None, "Linux finds fw_cfg through ACPI"
    target = dom.find("devices/interface[@type='ethernet']/target")
    assert (target.get("dev"), target.get("managed")) == ("aplt0123456789", "no")


def test_metadata_names_sandbox_and_instance():
    dom = ET.fromstring(render(CASES["sandbox_tcg"]))
    tag = dom.find("metadata/{urn:appliance:sandbox:1}sandbox")
    assert (tag.get("id"), tag.get("instance")) == ("sb-0123456789", "feedface00112233")


def test_values_are_escaped():
    spec = DomainSpec(domain_type="qemu", **{**SANDBOX, "cmdline": "a='<x>' & b"})
    dom = ET.fromstring(render(spec))
    assert dom.find("os/cmdline").text == "a='<x>' & b"
