"""Choosing the acceleration: KVM only if a KVM guest really boots here, TCG otherwise.

`/dev/kvm` existing proves nothing (nested KVM guests hang in early boot on some hosts), so `auto`
boots a tiny guest — the image's kernel with a busybox initramfs that prints a marker and powers
off — as a KVM domain, and falls back to TCG if the marker does not appear in time. The result is
cached per host (keyed by qemu, kernel and /dev/kvm) because the probe costs seconds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import SandboxError
from .domain_xml import DomainSpec, render
from .hypervisor import Hypervisor

log = logging.getLogger(__name__)

MARKER = "APPLIANCE-ACCEL-PROBE-OK"
BUSYBOX = Path("/bin/busybox")
QEMU = Path("/usr/bin/qemu-system-x86_64")
INIT_SCRIPT = f"""#!/bin/busybox sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox echo {MARKER} > /dev/ttyS0
/bin/busybox poweroff -f
"""


@dataclass(frozen=True)
class AccelChoice:
    mode: str  # "kvm" or "tcg"
    reason: str
    probed: bool
    key: str = ""

    @property
    def domain_type(self) -> str:
        return "kvm" if self.mode == "kvm" else "qemu"


def newc_archive(files: dict[str, tuple[int, bytes]]) -> bytes:
    """A cpio 'newc' archive (what the kernel unpacks as an initramfs): path -> (mode, content)."""
    out = bytearray()

    def entry(name: str, mode: int, data: bytes, ino: int) -> None:
        encoded = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
        out.extend(b"070701" + b"".join(b"%08X" % v for v in fields) + encoded)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, (mode, data)) in enumerate(sorted(files.items()), start=1):
        entry(name, mode, data, ino)
    entry("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def probe_initramfs() -> bytes:
    if not BUSYBOX.exists():
        raise SandboxError("the acceleration probe needs a static busybox", hint="apt-get install busybox-static")
    return newc_archive({
        "bin": (0o040755, b""),
        "dev": (0o040755, b""),
        "bin/busybox": (0o100755, BUSYBOX.read_bytes()),
        "init": (0o100755, INIT_SCRIPT.encode()),
    })


def _cache_key(kernel: Path) -> str:
    def stamp(p: Path) -> str:
        try:
            st = p.stat()
            return f"{p}:{st.st_size}:{int(st.st_mtime)}"
        except OSError:
            return f"{p}:absent"

    return "|".join(stamp(p) for p in (QEMU, kernel, Path("/dev/kvm")))


def boot_probe(hv: Hypervisor, kernel: Path, work_dir: Path, domain_type: str, timeout: float) -> tuple[float | None, str]:
    """Boot the probe guest: (seconds until the marker, or None; what happened, in words)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(work_dir, 0o711)
    token = uuid.uuid4().hex[:8]
    initrd = work_dir / f"probe-{token}.cpio"
    serial = work_dir / f"probe-{token}.log"
    initrd.write_bytes(probe_initramfs())
    os.chmod(initrd, 0o644)
    name = f"appliance-accel-probe-{token}"
    spec = DomainSpec(
        name=name, sandbox_id="accel-probe", instance="accel-probe", domain_type=domain_type,
        vcpus=1, memory_mb=256, kernel=str(kernel), initrd=str(initrd),
        cmdline="console=ttyS0 panic=-1 quiet rdinit=/init", serial_log=str(serial),
    )

    def marker_seen() -> bool:
        return serial.exists() and MARKER in serial.read_text(errors="replace")

    try:
        try:
            hv.start(render(spec))
        except SandboxError as e:
            last_line = e.message.strip().splitlines()[-1]
            return None, f"the probe guest failed to start: {last_line[-200:]}"
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if marker_seen():
                return time.monotonic() - started, "booted"
            if not hv.is_running(name):
                if marker_seen():
                    return time.monotonic() - started, "booted"
                return None, "the probe guest stopped before it finished booting"
            time.sleep(0.2)
        return None, f"the probe guest did not finish booting within {timeout:.0f} s"
    finally:
        hv.destroy(name)
        initrd.unlink(missing_ok=True)
        serial.unlink(missing_ok=True)


def choose(mode: str, hv: Hypervisor, kernel: Path | None, state_dir: Path, timeout: float) -> AccelChoice:
    """Resolve the configured accel mode (auto|kvm|tcg) into what guests will use."""
    if mode == "tcg":
        return AccelChoice("tcg", "configured accel = tcg", probed=False)
    if mode == "kvm":
        return AccelChoice("kvm", "configured accel = kvm (not probed)", probed=False)
    if not Path("/dev/kvm").exists():
        return _announce(AccelChoice("tcg", "no /dev/kvm on this host", probed=False))
    if not hv.supports_domain_type("kvm"):
        return _announce(AccelChoice("tcg", "libvirt reports no kvm domain type", probed=False))
    if kernel is None:
        return _announce(AccelChoice("tcg", "no guest kernel to probe KVM with yet (build an image)", probed=False))

    cache = state_dir / "accel-probe.json"
    key = _cache_key(kernel)
    try:
        cached = AccelChoice(**json.loads(cache.read_text()))
        if cached.key == key:
            return cached
    except (OSError, ValueError, TypeError):
        pass

    seconds, detail = boot_probe(hv, kernel, state_dir / "probe", "kvm", timeout)
    if seconds is not None:
        choice = AccelChoice("kvm", f"a KVM probe guest booted in {seconds:.1f} s", probed=True, key=key)
    else:
        choice = AccelChoice("tcg", f"KVM does not work here ({detail}; nested virtualization?): "
                                    "guests use TCG", probed=True, key=key)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(choice)))
    tmp.replace(cache)
    return _announce(choice)


def _announce(choice: AccelChoice) -> AccelChoice:
    log.info("acceleration: %s (%s)", choice.mode, choice.reason)
    return choice


def clear_cache(state_dir: Path) -> None:
    (state_dir / "accel-probe.json").unlink(missing_ok=True)
    shutil.rmtree(state_dir / "probe", ignore_errors=True)
