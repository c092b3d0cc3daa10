"""flatten_onto with real qemu-img: a disk three layers deep becomes one layer over the base,
with the same contents (a plain `convert -B` would silently drop the middle layer's data)."""

import subprocess

from appliance.sandbox import disks


def qemu(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def test_flatten_onto_keeps_every_layer_and_backs_onto_the_base(tmp_path):
    base, mid, top, dest = (tmp_path / n for n in ("base.qcow2", "mid.qcow2", "top.qcow2", "cache.qcow2"))
    qemu("qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M")
    qemu("qemu-io", "-c", "write -P 0x11 0 4M", str(base))
    disks.create_overlay(base, mid, 1)
    qemu("qemu-io", "-c", "write -P 0x22 8M 1M", str(mid))  # the template's layer
    disks.create_overlay(mid, top, 1)
    qemu("qemu-io", "-c", "write -P 0x33 16M 1M", str(top))  # the guest's own
    disks.flatten_onto(top, base, dest)
    assert "backing file: " + str(base) in qemu("qemu-img", "info", str(dest))
    assert "identical" in qemu("qemu-img", "compare", str(top), str(dest))
    assert not (tmp_path / "cache.qcow2.part").exists()
