#!/usr/bin/env python3
"""`scripts/bench sandbox`: what a sandbox costs, as JSON lines on stdout (accel mode in every line).

Each figure comes with a baseline measured in the same run:
* image build: total time vs its mmdebstrap stage (a forced build into a scratch image dir);
* cold boot (create → SSH answers with the sandbox key), p50 over --boots boots, vs the bare
  kernel boot of the accel probe (same kernel, a busybox initramfs, no disk, no systemd);
* exec round trip (`true` over an open connection), p50 over 30, vs a TCP connect to the guest's sshd;
* idle guest: host RSS of its qemu process and the guest's own used memory, vs its configured memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from appliance.db import open_database  # noqa: E402
from appliance.sandbox import accel as accel_mod  # noqa: E402
from appliance.sandbox.hypervisor import Hypervisor  # noqa: E402
from appliance.sandbox.manager import SandboxManager, SandboxRequest  # noqa: E402
from netpolicy import bridge  # noqa: E402

from helpers import make_config  # noqa: E402


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--skip-build", action="store_true", help="do not time a forced image build")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="appliance-bench-", dir="/var/tmp"))
    state.chmod(0o711)
    cfg = make_config(state, bridge="aplbench0", subnet="10.216.0.0/24", tap_prefix="aplb", egress_table="applbench")
    open_database(cfg.database_url)
    hv = Hypervisor(cfg.libvirt_uri)
    mgr = SandboxManager(cfg, hv)
    try:
        image = mgr.image_store().get(cfg.default_profile)
        mode = mgr.accel(image.kernel).mode
        domain_type = "kvm" if mode == "kvm" else "qemu"

        if not args.skip_build:
            from vmimages.build import build_image

            scratch = state / "images"
            built = build_image(cfg.default_profile, scratch, progress=lambda line: print(line, file=sys.stderr))
            stages = built.manifest["build"]["stages_s"]
            total = built.manifest["build"]["duration_s"]
            emit(bench="image_build", accel=mode, profile=cfg.default_profile, seconds=total,
                 baseline="mmdebstrap stage", baseline_seconds=stages["mmdebstrap"],
                 ratio=round(total / stages["mmdebstrap"], 2), stages=stages)
            shutil.rmtree(scratch, ignore_errors=True)

        kernel_boot, _ = accel_mod.boot_probe(hv, image.kernel, state / "probe", domain_type, 120)
        boots = []
        for _ in range(args.boots):
            started = time.monotonic()
            sandbox = mgr.create(SandboxRequest())
            boots.append(time.monotonic() - started)
            mgr.destroy(sandbox.id)
        p50 = statistics.median(boots)
        emit(bench="cold_boot", accel=mode, boots=len(boots), p50_s=round(p50, 2),
             samples_s=[round(b, 2) for b in boots], baseline="bare kernel boot (busybox initramfs)",
             baseline_s=round(kernel_boot, 2) if kernel_boot else None,
             ratio=round(p50 / kernel_boot, 2) if kernel_boot else None)

        sandbox = mgr.create(SandboxRequest())
        with mgr.ssh(sandbox) as guest:
            rtts = []
            for _ in range(30):
                t = time.monotonic()
                guest.exec("true")
                rtts.append(time.monotonic() - t)
            tcp = []
            for _ in range(30):
                t = time.monotonic()
                socket.create_connection((sandbox.address, 22), timeout=5).close()
                tcp.append(time.monotonic() - t)
            exec_p50, tcp_p50 = statistics.median(rtts), statistics.median(tcp)
            emit(bench="exec_round_trip", accel=mode, p50_ms=round(exec_p50 * 1000, 1),
                 p95_ms=round(sorted(rtts)[int(len(rtts) * 0.95) - 1] * 1000, 1),
                 baseline="TCP connect to the guest's sshd", baseline_p50_ms=round(tcp_p50 * 1000, 2),
                 ratio=round(exec_p50 / tcp_p50, 1))
            time.sleep(args.idle_seconds)  # let boot-time work settle before measuring "idle"
            used = int(guest.exec("free -m | awk '/^Mem:/ {print $3}'").text.strip())
        pid = hv.qemu_pid(sandbox.domain_name)
        rss = rss_mib(pid)
        emit(bench="idle_guest_memory", accel=mode, memory_mb=sandbox.memory_mb, host_rss_mib=round(rss),
             guest_used_mib=used, baseline="configured guest memory", rss_ratio=round(rss / sandbox.memory_mb, 2),
             guest_used_ratio=round(used / sandbox.memory_mb, 2))
        mgr.destroy(sandbox.id)
    finally:
        for leftover in mgr.list():
            mgr.destroy(leftover.id)
        mgr.reconcile(creating_grace=0)
        mgr.egress.remove_rules()
        bridge.delete_link(cfg.bridge)
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
